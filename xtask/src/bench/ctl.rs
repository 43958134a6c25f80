//! Control-plane costs (docs/design.md §6): memory per flow and per service from the kernel's
//! own map info, Maglev build time, the rate at which lb-ctl's library adds reals, and the
//! time from issuing an `lb-ctl` command to the data path using what it wrote.

use super::Ctx;
use super::bpf::{self, Loaded, XDP_DROP, XDP_REDIRECT, run_once};
use super::figure::{Figure, summarize};
use super::sys::{self, Netns};
use anyhow::{Context, Result, bail};
use lb_common::consts::{
    DEFAULT_MAGLEV_SIZE, DEFAULT_MAX_FLOWS, MAP_FLOW_CACHE, MAP_FLOWS4, MAP_FLOWS6, MAP_NAT_REV4,
    MAP_NAT_REV6, MAP_SCHED_TABLE, MAP_SERVICES, MAP_SVC_STATS, MAP_VIPS, PROG_LB,
};
use lb_common::maglev::{self, Backend};
use lb_ctl::cli::ipvsadm::IpvsCommand;
use lb_ctl::maps::Maps;
use lb_ctl::nexthop::NextHop;
use lb_tests::packet::Pkt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Targets of issue 5.
const T_BYTES_PER_FLOW: f64 = 128.0;
const T_MAGLEV_MS: f64 = 20.0;
const T_CTL_MS: f64 = 50.0;

/// Where the control-plane tests put their services (not used by the per-packet paths).
const VIP_CTL: &str = "198.19.1.1";
const VIP_RATE: &str = "198.19.1.2";
const PORT: u16 = 80;
/// The lab segment of the ctl→datapath test: the director's side and the reals.
const NET_CTL: &str = "198.18.1.1/24";

fn v4(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn v4_plus(base: &str, n: u32) -> IpAddr {
    let b: Ipv4Addr = base.parse().expect("IPv4 literal");
    IpAddr::V4(Ipv4Addr::from(u32::from(b) + n))
}

pub fn run(ctx: &Ctx, obj: &Path) -> Result<Vec<Figure>> {
    let pin = sys::pin_dir("ctl")?;
    let lb = Loaded::balancer(obj, pin.path(), DEFAULT_MAX_FLOWS)?;
    let mut figures = Vec::new();
    let mut push = |f: Figure| {
        ctx.row(&f);
        figures.push(f);
    };
    for f in memory(pin.path())? {
        push(f);
    }
    for n in [10u32, 100, 1000] {
        push(maglev(ctx, n));
    }
    push(
        update_rate(ctx, pin.path()).unwrap_or_else(|e| {
            Figure::failed("map_update_reals_per_s", "reals/s", format!("{e:#}"))
        }),
    );
    push(
        ctl_to_datapath(ctx, &lb, pin.path(), "ctl_to_datapath_ms").unwrap_or_else(|e| {
            Figure::failed("ctl_to_datapath_ms", "ms", format!("{e:#}")).target(Some(T_CTL_MS))
        }),
    );
    push(while_sweeping(ctx, &lb, pin.path()).unwrap_or_else(|e| {
        Figure::failed("ctl_to_datapath_sweeping_ms", "ms", format!("{e:#}")).target(Some(T_CTL_MS))
    }));
    Ok(figures)
}

/// Bytes per flow and per service, from the sizes the kernel reports for the pinned maps.
/// Per family: `bytes_per_flow` is IPv6's (FLOWS6, the larger key, which the target is
/// about), `*_v4` IPv4's (FLOWS4).
fn memory(pin: &Path) -> Result<Vec<Figure>> {
    let one = |name: &str, unit, v: f64| Figure::from_runs(name.to_string(), unit, &[v]);
    let mut out = Vec::new();
    for (suffix, flows_map, rev_map) in [
        ("", MAP_FLOWS6, MAP_NAT_REV6),
        ("_v4", MAP_FLOWS4, MAP_NAT_REV4),
    ] {
        let flows = bpf::map_size(pin, flows_map)?;
        let rev = bpf::map_size(pin, rev_map)?;
        let kv = f64::from(flows.key + flows.value);
        out.push(
            one(&format!("bytes_per_flow{suffix}"), "bytes", kv)
                .target(Some(T_BYTES_PER_FLOW))
                .note(format!(
                    "{flows_map} key {} + value {} (kernel map info)",
                    flows.key, flows.value
                )),
        );
        if let Some(m) = flows.memlock {
            out.push(
                one(
                    &format!("bytes_per_flow_kernel{suffix}"),
                    "bytes",
                    m as f64 / f64::from(flows.entries),
                )
                .note(format!(
                    "{flows_map} memlock {} B / {} entries: element header, key, value, buckets",
                    m, flows.entries
                )),
            );
        }
        out.push(
            one(
                &format!("bytes_per_nat_flow{suffix}"),
                "bytes",
                kv + f64::from(rev.key + rev.value),
            )
            .note(format!(
                "a NAT flow also has a {rev_map} entry: key {} + value {}",
                rev.key, rev.value
            )),
        );
    }
    let svc = bpf::map_size(pin, MAP_SERVICES)?;
    let vips = bpf::map_size(pin, MAP_VIPS)?;
    let table = bpf::map_size(pin, MAP_SCHED_TABLE)?;
    let stats = bpf::map_size(pin, MAP_SVC_STATS)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)? as u32;
    let per_service = svc.key
        + svc.value
        + vips.key
        + vips.value
        + table.value * DEFAULT_MAGLEV_SIZE
        + stats.value * cpus;
    out.push(
        one("bytes_per_service", "bytes", f64::from(per_service)).note(format!(
            "SERVICES {}+{}, VIPS {}+{}, a {DEFAULT_MAGLEV_SIZE}-slot table x {} B, SVC_STATS {} B x {cpus} CPUs",
            svc.key, svc.value, vips.key, vips.value, table.value, stats.value
        )),
    );
    let cache = bpf::map_size(pin, MAP_FLOW_CACHE)?;
    out.push(
        one(
            "flow_cache_bytes_per_cpu",
            "bytes",
            f64::from(cache.value) * f64::from(cache.entries) / f64::from(cpus),
        )
        .note(format!(
            "FLOW_CACHE {} slots x {} B over {cpus} CPUs: a fixed cost per CPU, not per flow",
            cache.entries, cache.value
        )),
    );
    Ok(out)
}

fn backend(i: u32) -> Backend {
    Backend {
        id: i,
        addr: lb_common::addr::convert::to_raw(v4_plus("198.18.4.0", i)).0,
        port: PORT,
        weight: 1,
    }
}

/// Maglev table of 65537 slots over `n` reals: lb-common's builder, which lb-ctl runs on
/// every change to a service's reals.
fn maglev(ctx: &Ctx, n: u32) -> Figure {
    let name = format!("maglev_build_{DEFAULT_MAGLEV_SIZE}x{n}_ms");
    let reals: Vec<Backend> = (0..n).map(backend).collect();
    let runs = if ctx.quick { 5 } else { 11 };
    let mut ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let table = maglev::build(&reals, DEFAULT_MAGLEV_SIZE);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !matches!(table, Ok(ref t) if t.len() == DEFAULT_MAGLEV_SIZE as usize) {
            return Figure::failed(name, "ms", "the table was not built");
        }
    }
    let f = Figure::from_runs(name, "ms", &ms).note("lb_common::maglev::build, weights 1");
    if n == 1000 {
        f.target(Some(T_MAGLEV_MS))
    } else {
        f
    }
}

/// A resolver that answers at once, so the rate counts map work, not `ip` commands.
fn fake_resolver(_: IpAddr) -> Result<NextHop, lb_ctl::nexthop::NextHopError> {
    Ok(NextHop {
        ifindex: 1,
        ifname: "lo".into(),
        local_addr: Some(v4("198.18.255.254")),
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: Some([2, 0, 0, 0, 1, 1]),
        gateway: None,
    })
}

/// Reals added per second through lb-ctl's library (snapshot → plan → apply, as one
/// `lb-ctl -a` does, with next-hop resolution answered at once).
fn update_rate(ctx: &Ctx, pin: &Path) -> Result<Figure> {
    // Specs through lb-ctl's own command-line parser: what `lb-ctl -A/-a` would plan.
    let svc = format!("{VIP_RATE}:{PORT}");
    let IpvsCommand::AddService(spec) =
        lb_ctl::cli::ipvsadm::parse(&["-A", "-u", &svc, "-s", "mh"])?
    else {
        bail!("lb-ctl parsed -A as something else");
    };
    let mut maps = Maps::open(pin)?;
    let snap = maps.snapshot()?;
    maps.apply(&lb_ctl::ipvs::service::add(&snap, &spec)?)?;
    let (runs, per_run) = if ctx.quick { (3, 4) } else { (5, 8) };
    let mut rates = Vec::new();
    let (mut t_snap, mut t_plan, mut t_apply) = (0.0, 0.0, 0.0);
    let mut next = 0u32;
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..per_run {
            let a = Instant::now();
            let snap = maps.snapshot()?;
            let b = Instant::now();
            let addr = v4_plus("198.18.5.0", next).to_string();
            let IpvsCommand::AddReal(spec) =
                lb_ctl::cli::ipvsadm::parse(&["-a", "-u", &svc, "-r", &addr, "-g"])?
            else {
                bail!("lb-ctl parsed -a as something else");
            };
            next += 1;
            let ops = lb_ctl::ipvs::real::add(&snap, &spec, &mut fake_resolver)?;
            let c = Instant::now();
            maps.apply(&ops)?;
            t_snap += (b - a).as_secs_f64();
            t_plan += (c - b).as_secs_f64();
            t_apply += c.elapsed().as_secs_f64();
        }
        rates.push(f64::from(per_run) / t.elapsed().as_secs_f64());
    }
    let n = f64::from(next);
    let f = Figure::from_runs("map_update_reals_per_s", "reals/s", &rates).note(format!(
        "lb-ctl library, per real: snapshot {:.1} ms, plan (Maglev) {:.1} ms, apply {:.1} ms",
        t_snap / n * 1e3,
        t_plan / n * 1e3,
        t_apply / n * 1e3
    ));
    ctx.progress(&format!("{} reals added through the lb-ctl library", next));
    Ok(f)
}

/// A namespace where the reals of the ctl→datapath test are on-link, with permanent
/// neighbour entries so lb-ctl resolves them without ARP.
fn ctl_netns() -> Result<(Netns, [u8; 6])> {
    let ns = sys::netns("ctl")?;
    ns.sh(&[
        "ip", "link", "add", "ctl0", "type", "veth", "peer", "name", "ctl1",
    ])?;
    ns.sh(&["ip", "addr", "add", NET_CTL, "dev", "ctl0"])?;
    ns.sh(&["ip", "link", "set", "ctl0", "up"])?;
    ns.sh(&["ip", "link", "set", "ctl1", "up"])?;
    let mac = iface_mac(&ns, "ctl1")?;
    Ok((ns, mac))
}

/// The MAC of an interface in a namespace (from `ip -j`, not /sys: docs/design.md §2).
pub fn iface_mac(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let out = ns.sh(&["ip", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let s = v[0]["address"]
        .as_str()
        .with_context(|| format!("no MAC on {dev}"))?;
    lb_ctl::nexthop::parse_mac(s).with_context(|| format!("bad MAC {s}"))
}

/// The ifindex of an interface in a namespace.
pub fn iface_index(ns: &Netns, dev: &str) -> Result<u32> {
    let out = ns.sh(&["ip", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    v[0]["ifindex"]
        .as_u64()
        .map(|i| i as u32)
        .with_context(|| format!("no ifindex for {dev}"))
}

/// `lb-ctl ARGS` in `ns`, on the bench's pin directory.
fn lb_ctl(ctx: &Ctx, ns: &Netns, pin: &Path, args: &[&str]) -> Command {
    let mut c = ns.cmd(ctx.root.join("target/release/lb-ctl"));
    c.env("LB_PIN_DIR", pin).args(args);
    c
}

fn check(mut c: Command) -> Result<()> {
    let out = c.output().context("running lb-ctl")?;
    if !out.status.success() {
        bail!(
            "lb-ctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// From issuing `lb-ctl -a` (a new process, as an operator runs it) to the first packet
/// the data path sends to the new real: a poller runs new-flow packets through `lb_xdp`
/// the whole time (they drop with NoReal until the service has a real).
fn ctl_to_datapath(ctx: &Ctx, lb: &Loaded, pin: &Path, name: &str) -> Result<Figure> {
    let bin = ctx.root.join("target/release/lb-ctl");
    if !bin.is_file() {
        bail!("{} is missing: run `cargo xtask build`", bin.display());
    }
    let (ns, real_mac) = ctl_netns()?;
    let svc = format!("{VIP_CTL}:{PORT}");
    check(lb_ctl(ctx, &ns, pin, &["-A", "-u", &svc, "-s", "mh"]))?;
    let prog = lb.prog(PROG_LB)?;
    let runs = if ctx.quick { 3 } else { 7 };
    let (mut total, mut cmd, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut sport = 1024u16;
    let frame = |sport: u16| Pkt::udp("198.18.3.1", VIP_CTL, sport, PORT).bytes();
    let mut out = vec![0u8; 512];
    for run in 0..runs {
        let addr = v4_plus("198.18.1.10", run);
        let a = addr.to_string();
        ns.sh(&[
            "ip",
            "neigh",
            "replace",
            &a,
            "lladdr",
            &fmt_mac(&real_mac),
            "dev",
            "ctl0",
            "nud",
            "permanent",
        ])?;
        // Nothing to send to yet.
        let (ret, _, _) = run_once(prog, &frame(sport), &mut out)?;
        if ret != XDP_DROP {
            bail!(
                "before the real is added the data path returned {}",
                bpf::verdict(ret)
            );
        }
        let returned: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let child = {
            let mut c = lb_ctl(ctx, &ns, pin, &["-a", "-u", &svc, "-r", &a, "-g"]);
            let returned = returned.clone();
            let t0 = Instant::now();
            let h = std::thread::spawn(move || {
                let r = c.output();
                *returned.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                r
            });
            (t0, h)
        };
        let (t0, handle) = child;
        let deadline = t0 + Duration::from_secs(10);
        let seen = loop {
            sport = sport.wrapping_add(1).max(1024);
            let (ret, _, len) = run_once(prog, &frame(sport), &mut out)?;
            if ret == XDP_REDIRECT {
                if out[..6] != real_mac || len == 0 {
                    bail!("the new real was chosen but the frame goes to another MAC");
                }
                break Instant::now();
            }
            if Instant::now() > deadline {
                bail!("the data path did not use the new real within 10 s");
            }
            // Leave the other core to lb-ctl; 20 µs is far below what is measured.
            std::thread::sleep(Duration::from_micros(20));
        };
        let res = handle
            .join()
            .map_err(|_| anyhow::anyhow!("lb-ctl thread panicked"))?;
        let o = res.context("running lb-ctl")?;
        if !o.status.success() {
            bail!(
                "lb-ctl -a failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        let ret_at = returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expect("set before done");
        total.push((seen - t0).as_secs_f64() * 1e3);
        cmd.push((ret_at - t0).as_secs_f64() * 1e3);
        // Negative: the data path used the real before the process had exited.
        after.push(if seen >= ret_at {
            (seen - ret_at).as_secs_f64() * 1e3
        } else {
            -((ret_at - seen).as_secs_f64() * 1e3)
        });
        check(lb_ctl(ctx, &ns, pin, &["-d", "-u", &svc, "-r", &a]))?;
    }
    check(lb_ctl(ctx, &ns, pin, &["-D", "-u", &svc]))?;
    Ok(Figure::from_runs(name.to_string(), "ms", &total)
        .target(Some(T_CTL_MS))
        .note(format!(
            "lb-ctl -a as a new process; the command itself takes {:.1} ms (median), the data path used the real {:+.2} ms from its return (median)",
            summarize(&cmd).0,
            summarize(&after).0
        )))
}

/// Flows in the table while [`while_sweeping`] measures.
const SWEPT_FLOWS: u32 = 1_000_000;

/// `ctl_to_datapath_ms` while sweep passes walk [`SWEPT_FLOWS`] flows back to back (none
/// idle, so each pass walks them all and removes nothing): a change must not wait for a
/// pass (passes take the pin-directory lock only to book expiries).
fn while_sweeping(ctx: &Ctx, lb: &Loaded, pin: &Path) -> Result<Figure> {
    use aya::maps::{HashMap, MapData};
    use lb_common::{FlowKey4, FlowValue, clock::Clock, conn::TcpState};
    const NOW: u32 = 1_000_000;
    lb_ctl::maps::clock::write(
        pin,
        &Clock {
            fixed_s: NOW,
            ..Default::default()
        },
    )?;
    let t = Instant::now();
    {
        let mut flows: HashMap<MapData, FlowKey4, FlowValue> = lb_ctl::maps::open(pin, MAP_FLOWS4)?;
        for i in 0..SWEPT_FLOWS {
            // Clients in 198.18.0.0/16, ports from 1024, to 198.19.9.9:80.
            let k = FlowKey4 {
                src: u32::from_ne_bytes([198, 18, (i >> 8) as u8, i as u8]),
                dst: u32::from_ne_bytes([198, 19, 9, 9]),
                sport: lb_common::Be16::from_host(1024 + (i >> 16) as u16),
                dport: lb_common::Be16::from_host(PORT),
                proto: lb_common::consts::proto::TCP,
                _pad: [0; 3],
            };
            let v = FlowValue {
                real_id: 0,
                svc_id: 0,
                last_seen_s: NOW,
                state: TcpState::Established as u8,
                flags: lb_common::FlowFlags::NO_OUTPUT,
                fwd: lb_common::ForwardMode::Dr as u8,
                _pad: 0,
            };
            flows
                .insert(k, v, 0)
                .with_context(|| format!("inserting flow {i}"))?;
        }
    }
    ctx.progress(&format!(
        "{SWEPT_FLOWS} flows inserted in {:.1} s; sweeping them back to back",
        t.elapsed().as_secs_f64()
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (stop, pin) = (stop.clone(), pin.to_path_buf());
        std::thread::spawn(move || -> Result<(u32, Duration, u64)> {
            let (mut passes, t0, mut walked) = (0u32, Instant::now(), u64::MAX);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = lb_ctl::maps::sweep::sweep_at(&pin, NOW)?;
                walked = walked.min(r.flows);
                passes += 1;
            }
            Ok((passes, t0.elapsed(), walked))
        })
    };
    let fig = ctl_to_datapath(ctx, lb, pin, "ctl_to_datapath_sweeping_ms");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (passes, took, walked) = sweeper
        .join()
        .map_err(|_| anyhow::anyhow!("sweep thread panicked"))??;
    let fig = fig?;
    if passes == 0 {
        bail!("no sweep pass ended while ctl_to_datapath ran");
    }
    let pass_ms = took.as_secs_f64() * 1e3 / f64::from(passes);
    Ok(fig.note(format!(
        "while sweep passes walk {walked} flows or more back to back ({passes} passes, {pass_ms:.0} ms each)"
    )))
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
