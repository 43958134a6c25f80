//! Root-only: `-L --rate` against the real object, loaded in a network namespace: the
//! rates listed after known traffic and a known number of ticks are the ones IPVS's
//! estimator computes (transcribed here, independently of lb-ctl's `rate` module), `-Z`
//! zeroes them, an lb loaded without the estimator's maps gets them on `lb-ctl upgrade`,
//! and the resident process ticks every 2 s. A `harness = false` binary, like netns.rs:
//! without root or without the BPF object every trial is reported ignored with the reason.
//!
//! Namespaces and the pin directory are `lbrate-<pid>-<n>-<role>` guards of
//! `lb_tests::netns`, removed even when an assertion fails.

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use lb_common::Traffic;
use lb_common::consts::{MAP_REAL_RATE, MAP_REAL_STATS, MAP_SVC_RATE, MAP_SVC_STATS};
use lb_ctl::loader::{ObjectFile, object_path};
use lb_ctl::maps::Maps;
use lb_tests::netns::{self, Netns, PinDir};
use std::path::Path;
use std::time::{Duration, Instant};

const PREFIX: &str = "lbrate";

/// A director namespace joined by a veth pair to a real's, and a pin directory.
struct Lab {
    pin: PinDir,
    dir_ns: Netns,
    _real_ns: Netns,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        netns::sweep_stale(PREFIX);
        let dir_ns = Netns::new(PREFIX, &format!("{tag}d")).expect("director namespace");
        let real_ns = Netns::new(PREFIX, &format!("{tag}r")).expect("real namespace");
        dir_ns
            .veth("d0", "", Some(&real_ns), "r0", "")
            .expect("veth d0/r0");
        for (ns, dev, v4) in [
            (&dir_ns, "d0", "198.18.100.1"),
            (&real_ns, "r0", "198.18.100.2"),
        ] {
            ns.addr(dev, v4.parse().unwrap(), 24).expect("address");
            ns.up(dev).expect("link up");
        }
        Lab {
            pin: PinDir::new(PREFIX, tag),
            dir_ns,
            _real_ns: real_ns,
        }
    }

    fn ok(&self, args: &str) -> String {
        let out = self
            .dir_ns
            .cmd(env!("CARGO_BIN_EXE_lb-ctl"))
            .args(args.split_whitespace())
            .env("LB_PIN_DIR", self.pin.path())
            .output()
            .expect("run lb-ctl");
        assert!(
            out.status.success(),
            "lb-ctl {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The one service's id and its one real's id.
    fn ids(&self) -> (u32, u32) {
        let snap = Maps::open(self.pin.path()).unwrap().snapshot().unwrap();
        assert_eq!((snap.services.len(), snap.reals.len()), (1, 1));
        (snap.services[0].1.id, snap.reals[0].0)
    }
}

/// Writes `total` into the per-CPU stats map `name` at `id`, spread over the CPUs (CPU 0
/// gets the remainder), as the data path's per-CPU counters would hold it.
fn write_stats(pin: &Path, name: &'static str, id: u32, total: Traffic) {
    let mut m: PerCpuArray<MapData, Traffic> = lb_ctl::maps::open(pin, name).unwrap();
    let n = aya::util::nr_cpus().unwrap() as u64;
    let share = |v: u64, cpu: u64| v / n + if cpu == 0 { v % n } else { 0 };
    let per: Vec<Traffic> = (0..n)
        .map(|c| Traffic {
            conns: share(total.conns, c),
            in_packets: share(total.in_packets, c),
            in_bytes: share(total.in_bytes, c),
            out_packets: share(total.out_packets, c),
            out_bytes: share(total.out_bytes, c),
        })
        .collect();
    m.set(id, PerCpuValues::try_from(per).unwrap(), 0).unwrap();
}

/// IPVS's estimator for one counter over successive samples, transcribed from
/// ip_vs_est.c (`estimation_timer` / `ip_vs_chain_estimation`: `rate = (now - last) <<
/// shift; avg += (rate - avg) >> 2`, last starting at 0) and read out as
/// `ip_vs_read_estimator` does (`(avg + round) >> scale`). In 128-bit integers, where
/// the values here cannot wrap; `>> 2` of a negative s64 floors, as `div_euclid` does.
fn kernel_rate(samples: &[u64], shift: u32, round: i128, scale: u32) -> u64 {
    let (mut last, mut avg) = (0i128, 0i128);
    for &s in samples {
        let rate = (s as i128 - last) << shift;
        last = s as i128;
        avg += (rate - avg).div_euclid(4);
    }
    ((avg + round) >> scale) as u64
}

fn pps(samples: &[u64]) -> u64 {
    kernel_rate(samples, 9, 0x1FF, 10)
}

fn bps(samples: &[u64]) -> u64 {
    kernel_rate(samples, 4, 0xF, 5)
}

/// The `-L -n --rate -t` listing ipvsadm prints for these rates (all below 10^8, so no
/// K/M suffix): ipvsadm.c `print_title` (`"%-33s %8s %8s %8s %8s %8s\n  ->
/// RemoteAddress:Port\n"`), `print_service_entry`'s service line (`"%-33s"` and five
/// `print_largenum`, `"%9llu"` here) and real line (`"  -> %-28s %8u %8u %8u"` and two
/// `print_largenum`).
fn ipvsadm_rate_listing(svc: &str, s: [u64; 5], real: &str, r: [u64; 5]) -> String {
    let mut out = format!(
        "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
        "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
    );
    out += &format!("{svc:<33}");
    for v in s {
        out += &format!("{v:>9}");
    }
    out += &format!(
        "\n  -> {real:<28} {:>8} {:>8} {:>8}{:>9}{:>9}\n",
        r[0], r[1], r[2], r[3], r[4]
    );
    out
}

/// Counters after tick `k` of a service taking 50 conns, 1000 packets and 1.2 MB in, and
/// 800 packets and 2 MB out per tick; its real takes a share.
fn traffic(k: u64, per: [u64; 5]) -> Traffic {
    Traffic {
        conns: k * per[0],
        in_packets: k * per[1],
        out_packets: k * per[2],
        in_bytes: k * per[3],
        out_bytes: k * per[4],
    }
}

const SVC_PER_TICK: [u64; 5] = [50, 1000, 800, 1_200_000, 2_000_000];
const REAL_PER_TICK: [u64; 5] = [20, 400, 300, 500_000, 700_000];

/// The rates the kernel lists after `k` ticks of `per` each.
fn kernel_rates(k: u64, per: [u64; 5]) -> [u64; 5] {
    let samples = |i: usize| (1..=k).map(|t| t * per[i]).collect::<Vec<_>>();
    [
        pps(&samples(0)),
        pps(&samples(1)),
        pps(&samples(2)),
        bps(&samples(3)),
        bps(&samples(4)),
    ]
}

fn listed_rates_follow_the_kernel_formula() {
    let lab = Lab::new("a");
    let pin = lab.pin.path();
    lab.ok("load --iface d0 --skb --no-sweep");
    lab.ok("-A -t 198.18.4.1:80 -s rr");
    lab.ok("-a -t 198.18.4.1:80 -r 198.18.100.2 -g");
    let (sid, rid) = lab.ids();
    let list = || lab.ok("-L -n --rate -t 198.18.4.1:80");
    let want = |k| {
        ipvsadm_rate_listing(
            "TCP  198.18.4.1:80",
            kernel_rates(k, SVC_PER_TICK),
            "198.18.100.2:80",
            kernel_rates(k, REAL_PER_TICK),
        )
    };
    assert_eq!(list(), want(0), "no tick yet: all zero");
    for k in 1..=6 {
        write_stats(pin, MAP_SVC_STATS, sid, traffic(k, SVC_PER_TICK));
        write_stats(pin, MAP_REAL_STATS, rid, traffic(k, REAL_PER_TICK));
        lb_ctl::maps::rate::tick(pin).unwrap();
        assert_eq!(list(), want(k), "after tick {k}");
    }
    // The model against a hand computation: 1000 packets a tick (500/s) is rate 512,000,
    // averages 128,000; 224,000; 296,000; 350,000; 390,500; 420,875, read (420,875 +
    // 511) >> 10 = 411.
    assert_eq!(kernel_rates(6, SVC_PER_TICK)[1], 411);
    // The same numbers in the JSON listing.
    let v: serde_json::Value = serde_json::from_str(&lab.ok("-L -n --json")).unwrap();
    let r = kernel_rates(6, SVC_PER_TICK);
    assert_eq!(
        v["services"][0]["rates"],
        serde_json::json!({"cps": r[0], "in_pps": r[1], "out_pps": r[2], "in_bps": r[3], "out_bps": r[4]})
    );
    let r = kernel_rates(6, REAL_PER_TICK);
    assert_eq!(
        v["services"][0]["reals"][0]["rates"],
        serde_json::json!({"cps": r[0], "in_pps": r[1], "out_pps": r[2], "in_bps": r[3], "out_bps": r[4]})
    );

    // -Z zeroes the rates with the counters (ip_vs_zero_stats), at once; the next tick
    // counts only what came after.
    lab.ok("-Z");
    assert_eq!(list(), want(0), "-Z: rates zero at once");
    write_stats(pin, MAP_SVC_STATS, sid, traffic(1, SVC_PER_TICK));
    write_stats(pin, MAP_REAL_STATS, rid, traffic(1, REAL_PER_TICK));
    lb_ctl::maps::rate::tick(pin).unwrap();
    assert_eq!(list(), want(1), "a fresh estimate after -Z");
    // A tick that raced -Z writes its state back over the zeroed entry (here put there
    // by hand: the counters of a later tick, a high average); the next tick finds the
    // counters below that state's and restarts the estimate.
    lab.ok("-Z");
    let mut svc_rate: aya::maps::Array<MapData, lb_common::rate::RateState> =
        lb_ctl::maps::open(pin, MAP_SVC_RATE).unwrap();
    let racing = lb_common::rate::RateState {
        last: traffic(5, SVC_PER_TICK),
        avg: lb_common::rate::ScaledRates {
            in_pps: 1 << 30,
            ..Default::default()
        },
        ..Default::default()
    };
    svc_rate.set(sid, racing, 0).unwrap();
    write_stats(pin, MAP_SVC_STATS, sid, traffic(1, SVC_PER_TICK));
    lb_ctl::maps::rate::tick(pin).unwrap();
    assert_eq!(
        list().lines().nth(2),
        want(1).lines().nth(2),
        "counters below the last tick's: a fresh estimate"
    );

    // An lb loaded by a build without the estimator's maps: no rates (zeros, no error),
    // ticks do nothing; `upgrade` creates the maps, and ticks resume.
    std::fs::remove_file(pin.join(MAP_SVC_RATE)).unwrap();
    std::fs::remove_file(pin.join(MAP_REAL_RATE)).unwrap();
    lb_ctl::maps::rate::tick(pin).unwrap();
    assert_eq!(list(), want(0), "no estimator maps: zeros");
    let up = lab.ok("upgrade");
    assert!(up.contains("lb upgraded on d0 (connections kept)"), "{up}");
    assert!(pin.join(MAP_SVC_RATE).exists() && pin.join(MAP_REAL_RATE).exists());
    assert_eq!(list(), want(0), "new maps start from zero");
    lab.ok("-Z");
    write_stats(pin, MAP_SVC_STATS, sid, traffic(1, SVC_PER_TICK));
    write_stats(pin, MAP_REAL_STATS, rid, traffic(1, REAL_PER_TICK));
    lb_ctl::maps::rate::tick(pin).unwrap();
    assert_eq!(list(), want(1), "ticking on the upgraded lb's new maps");
}

/// The resident process (started by `lb-ctl load`) ticks every 2 s: after one write of
/// the counters, the listed InPPS steps through the kernel's decay, one step per tick.
fn the_sweeper_ticks_every_two_seconds() {
    let lab = Lab::new("b");
    let pin = lab.pin.path();
    let out = lab.ok("load --iface d0 --skb");
    assert!(out.contains("sweep: started"), "{out}");
    lab.ok("-A -t 198.18.4.1:80 -s rr");
    lab.ok("-a -t 198.18.4.1:80 -r 198.18.100.2 -g");
    let (sid, _) = lab.ids();
    let in_pps = || -> u64 {
        let v: serde_json::Value = serde_json::from_str(&lab.ok("-L -n --json")).unwrap();
        v["services"][0]["rates"]["in_pps"].as_u64().unwrap()
    };
    // 10,000 packets once; then none: the kernel's reads for ticks 1..=3.
    write_stats(
        pin,
        MAP_SVC_STATS,
        sid,
        Traffic {
            in_packets: 10_000,
            ..Traffic::default()
        },
    );
    let expect: Vec<u64> = (1..=3).map(|k| pps(&vec![10_000; k])).collect();
    assert_eq!(expect, [1250, 937, 703]);
    let t0 = Instant::now();
    let mut seen: Vec<(u64, Duration)> = Vec::new();
    while seen.len() < 3 && t0.elapsed() < Duration::from_secs(10) {
        let v = in_pps();
        if seen.last().map_or(v != 0, |(last, _)| *last != v) {
            seen.push((v, t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let values: Vec<u64> = seen.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, expect, "one kernel step per tick: {seen:?}");
    for w in seen.windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(
            gap > Duration::from_millis(1500) && gap < Duration::from_millis(2500),
            "ticks 2 s apart: {seen:?}"
        );
    }
    lab.ok("unload");
}

/// Why these trials cannot run here, if they cannot (as netns.rs).
fn cannot_run() -> Option<Result<String, String>> {
    if !netns::is_root() {
        return Some(Ok("needs root (network namespaces, bpffs, XDP)".into()));
    }
    if let Err(e) = object_path(ObjectFile::BALANCER, None) {
        let msg = format!("no BPF object ({e}); build it: cargo xtask build");
        return Some(if std::env::var("CI").as_deref() == Ok("true") {
            Err(msg)
        } else {
            Ok(msg)
        });
    }
    None
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let why_not = cannot_run();
    let tests: [(&str, fn()); 2] = [
        (
            "listed_rates_follow_the_kernel_formula",
            listed_rates_follow_the_kernel_formula,
        ),
        (
            "the_sweeper_ticks_every_two_seconds",
            the_sweeper_ticks_every_two_seconds,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let why_not = why_not.clone();
            libtest_mimic::Trial::ignorable_test(name, move || match why_not {
                Some(Ok(why)) => Ok(libtest_mimic::Completion::ignored_with(why)),
                Some(Err(fail)) => Err(fail.into()),
                None => {
                    f();
                    Ok(libtest_mimic::Completion::Completed)
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
