//! Root-only: the lb-ctl binary against the real object in a network namespace it builds —
//! load, adopt, services and reals (with next-hop resolution through a veth peer), listing,
//! refusals that change nothing, decap, unload. A `harness = false` binary: without root or
//! without the BPF object every trial is reported ignored with the reason (never passed),
//! which `CI=true cargo xtask test` counts as a failure.
//!
//! Everything lives in two namespaces and a pin directory named `lbctl-<pid>-<n>-<role>`,
//! guards of `lb_tests::netns` that remove them even when an assertion fails.

use lb_common::addr::convert;
use lb_common::consts::DEFAULT_MAGLEV_SIZE;
use lb_common::{ForwardMode, RealFlags, VipFlags};
use lb_ctl::loader::{ObjectFile, object_path};
use lb_ctl::maps::Maps;
use lb_tests::netns::{self, Netns, PinDir};
use std::path::Path;

/// Prefix of this binary's namespaces and pin directories (`lbctl-<pid>-<n>-<role>`).
const PREFIX: &str = "lbctl";

/// Two namespaces joined by a veth pair, and a pin directory: guards of
/// [`lb_tests::netns`], removed on drop, also when an assertion fails.
struct Lab {
    pin: PinDir,
    dir_ns: Netns,
    real_ns: Netns,
}

impl Lab {
    /// `tag` names the labs of trials running in parallel (each also gets its own number).
    fn new(tag: &str) -> Lab {
        netns::sweep_stale(PREFIX);
        let dir_ns = Netns::new(PREFIX, &format!("{tag}d")).expect("director namespace");
        let real_ns = Netns::new(PREFIX, &format!("{tag}r")).expect("real namespace");
        let lab = Lab {
            pin: PinDir::new(PREFIX, tag),
            dir_ns,
            real_ns,
        };
        lab.dir_ns
            .veth("d0", "", Some(&lab.real_ns), "r0", "")
            .expect("veth d0/r0");
        for (ns, dev, v4, v6) in [
            (&lab.dir_ns, "d0", "198.18.100.1", "2001:db8:100::1"),
            (&lab.real_ns, "r0", "198.18.100.2", "2001:db8:100::2"),
        ] {
            ns.addr(dev, v4.parse().unwrap(), 24).expect("v4 address");
            ns.addr(dev, v6.parse().unwrap(), 64).expect("v6 address");
            ns.up(dev).expect("link up");
        }
        // Reals behind a router (the peer) to check the gateway's MAC is used.
        lab.dir_ns
            .ip("route add 198.18.101.0/24 via 198.18.100.2")
            .expect("route");
        lab
    }

    /// Runs lb-ctl in a namespace; returns (success, stdout, stderr).
    fn ctl_in(&self, ns: &Netns, args: &str) -> (bool, String, String) {
        let out = ns
            .cmd(env!("CARGO_BIN_EXE_lb-ctl"))
            .args(args.split_whitespace())
            .env("LB_PIN_DIR", self.pin.path())
            .output()
            .expect("run lb-ctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &str) -> String {
        let (ok, out, err) = self.ctl_in(&self.dir_ns, args);
        assert!(ok, "lb-ctl {args} failed: {err}");
        out
    }

    fn fails(&self, args: &str) -> String {
        let (ok, _, err) = self.ctl_in(&self.dir_ns, args);
        assert!(!ok, "lb-ctl {args} should have failed");
        assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
        err
    }

    /// Runs `prog` (lb-ctl, or a link to it named `ipvsadm`) in the director namespace
    /// with `input` on stdin; returns (exit status, stdout, stderr).
    fn run_as(&self, prog: &Path, args: &str, input: &str) -> (i32, String, String) {
        use std::io::Write as _;
        let mut child = self
            .dir_ns
            .cmd(prog)
            .args(args.split_whitespace())
            .env("LB_PIN_DIR", self.pin.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run lb-ctl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn link(&self, ns: &Netns, dev: &str) -> serde_json::Value {
        let out = ns
            .ip(&format!("-j link show dev {dev}"))
            .expect("ip link show");
        serde_json::from_str(&out).unwrap()
    }

    fn mac(&self, ns: &Netns, dev: &str) -> [u8; 6] {
        let v = self.link(ns, dev);
        lb_ctl::nexthop::parse_mac(v[0]["address"].as_str().unwrap()).unwrap()
    }

    fn has_xdp(&self, ns: &Netns, dev: &str) -> bool {
        self.link(ns, dev)[0].get("xdp").is_some()
    }
}

/// Why these trials cannot run here, if they cannot: not root, or no BPF object. Under
/// CI=true a missing object fails every trial instead (`Err`): CI builds it first.
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
    let tests: [(&str, fn()); 4] = [
        ("load_configure_list_unload", load_configure_list_unload),
        (
            "save_clear_restore_as_ipvsadm",
            save_clear_restore_as_ipvsadm,
        ),
        (
            "schedulers_persistence_timeouts_sweep",
            schedulers_persistence_timeouts_sweep,
        ),
        (
            "live_syns_are_counted_and_expire",
            live_syns_are_counted_and_expire,
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

const EMPTY: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
";

fn load_configure_list_unload() {
    let lab = Lab::new("a");
    let pin: &Path = lab.pin.path();

    // Load, then load again: adopted, already attached, nothing broken.
    let out = lab.ok("load --iface d0 --skb --max-flows 4096");
    assert!(out.contains("lb attached to d0"), "{out}");
    // The resident sweeper (connection expiry) started with it.
    let started = |out: &str| -> u32 {
        out.lines()
            .find_map(|l| l.strip_prefix("sweep: started (pid "))
            .and_then(|l| l.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("a sweeper is started: {out}"))
    };
    // Ended: gone, or a zombie its new parent has not reaped yet.
    let ended = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
            st.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    let old_sweeper = started(&out);
    assert!(lb_ctl::sweeper::running(pin).unwrap());
    assert!(pin.join("lb_xdp").exists() && pin.join("link_d0").exists());
    for m in [
        "SERVICES",
        "REALS",
        "SCHED_TABLE",
        "FLOWS4",
        "FLOWS6",
        "TX_PORTS",
        "VIP_FILTER",
    ] {
        assert!(pin.join(m).exists(), "{m} pinned");
    }
    // The flow cache: one part per CPU, sized from --max-flows.
    {
        use lb_common::flow_cache::{cache_bits, cache_entries};
        let cpus = aya::util::nr_cpus().unwrap() as u32;
        let cache = lb_ctl::maps::pinned_size(pin, lb_common::consts::MAP_FLOW_CACHE)
            .unwrap()
            .expect("FLOW_CACHE pinned");
        let bits = cache_bits(4096, cpus);
        assert_eq!(cache.entries, cache_entries(cpus, bits));
        assert_eq!(cache.value, 64);
    }
    assert_eq!(
        lab.ok("load --iface d0 --skb"),
        "lb already attached to d0\nsweep: already running\n"
    );
    assert!(lab.has_xdp(&lab.dir_ns, "d0"));
    assert_eq!(lab.ok("-L -n"), EMPTY);

    // Services and reals.
    lab.ok("-A -t 198.18.2.1:80 -s mh -b mh-port");
    lab.ok("-a -t 198.18.2.1:80 -r 198.18.100.2 -g");
    lab.ok("-a -t 198.18.2.1:80 -r 198.18.101.5:8080 -m -w 3");
    lab.ok("-A -u [2001:db8::1]:53");
    lab.ok("-a -u [2001:db8::1]:53 -r [2001:db8:100::2] -i -w 2");
    let listing = lab.ok("-L -n");
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.2.1:80 mh (mh-port)
  -> 198.18.100.2:80              Route   1      0          0         
  -> 198.18.101.5:8080            Masq    3      0          0         
UDP  [2001:db8::1]:53 wlc
  -> [2001:db8:100::2]:53         Tunnel  2      0          0         
";
    assert_eq!(listing, want);

    // What the maps hold.
    let peer_mac = lab.mac(&lab.real_ns, "r0");
    let own_mac = lab.mac(&lab.dir_ns, "d0");
    {
        let maps = Maps::open(pin).unwrap();
        let snap = maps.snapshot().unwrap();
        assert_eq!(snap.services.len(), 2);
        let tcp = snap
            .services
            .iter()
            .find(|(k, _)| k.proto == 6)
            .map(|(_, s)| *s)
            .unwrap();
        assert!(tcp.flags.has(VipFlags::HASH_PORTS));
        assert_eq!(tcp.table_len, DEFAULT_MAGLEV_SIZE);
        let reals: Vec<_> = snap.reals_of(tcp.id).collect();
        assert_eq!(reals.len(), 2);
        for (_, r) in &reals {
            assert!(r.flags.has(RealFlags::ACTIVE));
            assert_eq!(
                r.dst_mac, peer_mac,
                "on-link real and gateway are both the peer"
            );
            assert_eq!(r.src_mac, own_mac);
            assert_eq!(r.svc_id, tcp.id);
        }
        let nat = reals
            .iter()
            .find(|(_, r)| r.mode == ForwardMode::Nat as u8)
            .unwrap();
        assert_eq!(nat.1.port.to_host(), 8080);
        assert_eq!(nat.1.weight, 3);
        let udp = snap.services.iter().find(|(k, _)| k.proto == 17).unwrap().1;
        let (_, tun) = snap.reals_of(udp.id).next().unwrap();
        assert_eq!(
            tun.local_addr,
            convert::to_raw("2001:db8:100::1".parse().unwrap()).0,
            "tunnel source = the director's address toward the real"
        );
    }

    // Refusals change nothing.
    for (args, why) in [
        ("-A -t 198.18.2.1:80", "Service already exists"),
        ("-A -t 198.18.2.2:80 -s bogus", "Scheduler not found: bogus"),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.3 -x 5 -y 6",
            "lower threshold 6 is higher than upper threshold 5",
        ),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.2",
            "Destination already exists",
        ),
        ("-a -t 198.18.2.9:80 -r 198.18.100.2", "No such service"),
        (
            "-a -t 198.18.2.1:80 -r [2001:db8:100::2]",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -t 198.18.2.1:80 -r [2001:db8:100::2] -i",
            "address family mismatch",
        ),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.3 -w 70000",
            "illegal weight specified",
        ),
        ("-a -t 198.18.2.1:80 -r 198.18.100.1", "local address"),
        ("-d -t 198.18.2.1:80 -r 198.18.100.9", "No such destination"),
        ("-A -t 198.18.2.1:80 -w 1", "Illegal 'weight' option"),
    ] {
        let err = lab.fails(args);
        assert!(err.contains(why), "{args}: {err}");
    }
    assert_eq!(lab.ok("-L -n"), want);

    // Edit, stats, delete.
    lab.ok("-e -t 198.18.2.1:80 -r 198.18.101.5:8080 -m -w 0");
    assert!(
        lab.ok("-L -n")
            .contains("  -> 198.18.101.5:8080            Masq    0 ")
    );
    let stats = lab.ok("-L -n --stats");
    assert!(stats.contains(
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
    ));
    assert!(stats.contains(
        "\nTCP  198.18.2.1:80                       0        0        0        0        0\n"
    ));
    let one = lab.ok("-L -n -t 198.18.2.1:80");
    assert!(
        one.starts_with("Prot LocalAddress:Port") && !one.contains("UDP"),
        "{one}"
    );
    lab.ok("-d -t 198.18.2.1:80 -r 198.18.100.2");
    {
        let snap = Maps::open(pin).unwrap().snapshot().unwrap();
        assert_eq!(snap.active_reals().count(), 2);
        let tcp = snap.services.iter().find(|(k, _)| k.proto == 6).unwrap().1;
        assert_eq!(tcp.table_len, 0, "only a quiescent real left: no table");
    }
    lab.ok("-Z");
    lab.ok("-Z -t 198.18.2.1:80");
    // Invoked as `ipvsadm` (a symlink), the same binary speaks only ipvsadm.
    let link = std::env::temp_dir().join(format!("lbct{}/ipvsadm", std::process::id()));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lb-ctl"), &link).unwrap();
    let out = lab
        .dir_ns
        .cmd(&link)
        .env("LB_PIN_DIR", pin)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(link.parent().unwrap());
    assert!(out.status.success());
    // ipvsadm's list_all(FMT_NONE): names, not numbers (/etc/services: http, domain).
    let bare = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(bare, lab.ok("-L"), "bare ipvsadm lists");
    assert!(bare.contains("TCP  198.18.2.1:http mh"), "{bare}");
    assert!(bare.contains("UDP  [2001:db8::1]:domain wlc"), "{bare}");
    lab.ok("-D -u [2001:db8::1]:53");
    // A real with no route yet is accepted, as ipvsadm accepts any address: nothing
    // printed, stored unresolved with no interface (the neighbour follower routes it
    // later), listed like any other real.
    assert_eq!(lab.ok("-a -t 198.18.2.1:80 -r 198.18.200.1"), "");
    {
        let snap = Maps::open(pin).unwrap().snapshot().unwrap();
        let (_, r) = snap
            .active_reals()
            .find(|(_, r)| r.addr == raw("198.18.200.1"))
            .expect("the unrouted real is stored");
        assert!(r.flags.has(lb_common::RealFlags::NO_NEIGHBOUR));
        assert_eq!((r.ifindex, r.dst_mac), (0, [0; 6]));
    }
    assert!(lab.ok("-L -n").contains("  -> 198.18.200.1:80"));
    let counters = lab.ok("counters");
    assert!(counters.starts_with("rx "), "{counters}");
    assert!(counters.contains("\ndrop_no_real "));
    lab.ok("-C");
    assert_eq!(lab.ok("-L -n"), EMPTY);
    assert_eq!(
        Maps::open(pin)
            .unwrap()
            .snapshot()
            .unwrap()
            .active_reals()
            .count(),
        0
    );

    // Decap on the real's side (its own pin directory would be usual; a sub-directory here).
    let (ok, out, err) = lab.ctl_in(&lab.real_ns, "decap attach --iface r0 --skb");
    assert!(ok, "{err}");
    assert!(out.contains("lb decap attached to r0"), "{out}");
    assert!(pin.join("decap/lb_decap").exists());
    let (ok, out, _) = lab.ctl_in(&lab.real_ns, "decap detach --iface r0");
    assert!(ok && out.contains("detached"), "{out}");
    assert!(!pin.join("decap").exists());
    assert!(!lab.has_xdp(&lab.real_ns, "r0"));

    // An upgrade ends the old lb-ctl's sweeper and starts its own.
    let listed = lab.ok("-L -n");
    let up = lab.ok("upgrade");
    assert!(up.contains("lb upgraded on d0 (connections kept)"), "{up}");
    let sweeper_pid = started(&up);
    assert_ne!(sweeper_pid, old_sweeper);
    // The old one ends at its next pass; the new one, waiting on the lock, takes over.
    let t0 = std::time::Instant::now();
    while !(ended(old_sweeper) && lb_ctl::sweeper::running(pin).unwrap())
        && t0.elapsed().as_secs() < 5
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        ended(old_sweeper),
        "the old sweeper (pid {old_sweeper}) ended"
    );
    assert!(
        !ended(sweeper_pid),
        "the new sweeper (pid {sweeper_pid}) runs"
    );
    assert!(lb_ctl::sweeper::running(pin).unwrap());
    assert_eq!(lab.ok("-L -n"), listed, "the configuration is kept");

    // The sweeper expires a connection idle past its timeout with no command run (a
    // flow of a real id no test uses, so no count shown here moves).
    {
        use aya::maps::{HashMap, MapData};
        use lb_common::conn::TcpState;
        use lb_common::{FlowFlags, FlowKey4, FlowValue};
        let now = lb_ctl::maps::clock::now(pin).unwrap();
        let mut flows: HashMap<MapData, FlowKey4, FlowValue> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_FLOWS4).unwrap();
        let key = flow_key(
            "198.18.7.9",
            999,
            "198.18.2.1",
            80,
            lb_common::consts::proto::TCP,
        );
        let idle = FlowValue {
            real_id: lb_common::consts::MAX_REALS - 1,
            svc_id: 0,
            last_seen_s: now - 901,
            state: TcpState::Established as u8,
            flags: FlowFlags::NO_OUTPUT,
            fwd: lb_common::ForwardMode::Dr as u8,
            _pad: 0,
        };
        flows.insert(key, idle, 0).unwrap();
        let t0 = std::time::Instant::now();
        while flows.get(&key, 0).is_ok() && t0.elapsed().as_secs() < 4 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            flows.get(&key, 0).is_err(),
            "the sweeper expired the idle flow"
        );
    }

    // Unload everything; the sweeper stops by itself.
    let out = lab.ok("unload");
    assert!(out.contains("lb detached from d0"), "{out}");
    assert!(!pin.exists());
    let t0 = std::time::Instant::now();
    while !ended(sweeper_pid) && t0.elapsed().as_secs() < 4 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        ended(sweeper_pid),
        "the sweeper (pid {sweeper_pid}) ended with lb"
    );
    assert!(!lab.has_xdp(&lab.dir_ns, "d0"));
    assert!(lab.fails("-L -n").contains("is not pinned"));
}

/// The whitespace-separated fields of the first line of `out` that contains `needle`.
fn row(out: &str, needle: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle} in\n{out}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn raw(ip: &str) -> lb_common::RawAddr {
    convert::to_raw(ip.parse().unwrap()).0
}

/// An IPv4 flow's key in FLOWS4.
fn flow_key(client: &str, cport: u16, vip: &str, vport: u16, proto: u8) -> lb_common::FlowKey4 {
    lb_common::FlowKey {
        src: raw(client),
        dst: raw(vip),
        sport: lb_common::Be16::from_host(cport),
        dport: lb_common::Be16::from_host(vport),
        proto,
        family: lb_common::addr::family::V4,
        _pad: [0; 2],
    }
    .v4()
}

fn schedulers_persistence_timeouts_sweep() {
    use aya::maps::{Array, HashMap, MapData};
    use lb_common::conn::{ConnEvents, TcpState};
    use lb_common::{FlowFlags, FlowKey, FlowKey4, FlowValue, PersistKey, PersistValue, SchedKind};
    let lab = Lab::new("b");
    let pin: &Path = lab.pin.path();
    // Expiry is driven by hand here: no resident sweeper.
    lab.ok("load --iface d0 --skb --max-flows 4096 --no-sweep");

    // wrr over three reals: the reals list is newest first; no table (the data path walks
    // the list as IPVS does).
    lab.ok("-A -t 198.18.3.1:80 -s wrr");
    lab.ok("-a -t 198.18.3.1:80 -r 198.18.100.2 -w 1");
    lab.ok("-a -t 198.18.3.1:80 -r 198.18.101.5 -w 2 -x 10 -y 5");
    lab.ok("-a -t 198.18.3.1:80 -r 198.18.101.6 -w 3");
    let (svc, order) = {
        let maps = Maps::open(pin).unwrap();
        let snap = maps.snapshot().unwrap();
        let svc = snap.services[0].1;
        let order = snap.orders[&svc.id].clone();
        (svc, order)
    };
    assert_eq!(svc.sched, SchedKind::Wrr as u8);
    assert_eq!(svc.table_len, 0, "rr/wrr publish no table");
    assert_eq!(order.len(), 3);
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "newest first: {order:?}"
    );
    let nosort = lab.ok("-L -n --nosort");
    let pos = |s: &str| nosort.find(s).unwrap();
    assert!(pos("198.18.101.6:80") < pos("198.18.101.5:80"));
    assert!(pos("198.18.101.5:80") < pos("198.18.100.2:80"));
    assert_eq!(
        row(&lab.ok("-L -n --thresholds"), "198.18.101.5:80"),
        ["->", "198.18.101.5:80", "10", "5", "0", "0"]
    );

    // Scheduler change republishes: sh with both flags, 256 buckets.
    lab.ok("-E -t 198.18.3.1:80 -s sh -b sh-fallback,sh-port");
    assert!(
        lab.ok("-L -n")
            .contains("TCP  198.18.3.1:80 sh (sh-fallback,sh-port)\n")
    );
    let svc = Maps::open(pin).unwrap().snapshot().unwrap().services[0].1;
    assert_eq!((svc.table_len, svc.reals_len), (256, 3));
    lab.ok("-E -t 198.18.3.1:80 -s mh --mh-size 251");
    assert_eq!(
        Maps::open(pin).unwrap().snapshot().unwrap().services[0]
            .1
            .table_len,
        251
    );

    // Persistence, groups, one-packet.
    lab.ok("-A -t 198.18.3.1:443 -s rr -p 600 -M 255.255.255.0 --persist-group 198.18.3.1:80");
    lab.ok("-a -t 198.18.3.1:443 -r 198.18.100.2");
    lab.ok("-A -u 198.18.3.1:53 -s lc -o");
    lab.ok("-a -u 198.18.3.1:53 -r 198.18.100.2:5353 -m");
    let listing = lab.ok("-L -n");
    assert!(listing.contains("TCP  198.18.3.1:443 rr persistent 600 mask 255.255.255.0\n"));
    assert!(listing.contains("UDP  198.18.3.1:53 lc ops\n"));
    let https = {
        let snap = Maps::open(pin).unwrap().snapshot().unwrap();
        let https = snap
            .services
            .iter()
            .find(|(k, _)| k.port.to_host() == 443)
            .unwrap()
            .1;
        assert_eq!(https.persist_group, svc.id, "shares the :80 group");
        assert!(https.flags.has(VipFlags::PERSISTENT));
        https
    };
    for (args, why) in [
        (
            "-A -t 198.18.3.2:80 -s sh -b mh-port",
            "incompatible scheduler flag",
        ),
        ("-A -t 198.18.3.2:80 -s mh --mh-size 1000", "not a prime"),
        ("-A -t 198.18.3.2:80 -p -M 255.0.255.0", "illegal netmask"),
        (
            "-A -t 198.18.3.2:80 --persist-group 198.18.9.9:80",
            "No such service",
        ),
    ] {
        let err = lab.fails(args);
        assert!(err.contains(why), "{args}: {err}");
    }

    // The rest needs the connection-model maps of the issue-4 object.
    {
        // Load measured HZ and started the kernel clock at CLOCK_MONOTONIC's seconds.
        let c = lb_ctl::maps::clock::read(pin).unwrap().unwrap();
        assert!(
            c.mult != 0 && c.fixed_s == 0,
            "load starts the clock: {c:?}"
        );
        let (now, mono) = (
            lb_ctl::maps::clock::now(pin).unwrap(),
            lb_ctl::maps::sys::monotonic_s(),
        );
        assert!(
            now.abs_diff(mono) <= 2,
            "kernel clock {now}, monotonic {mono}"
        );
    }
    assert!(
        pin.join(lb_common::consts::MAP_SETTINGS).exists(),
        "the object has a SETTINGS map (timeouts, sysctl, sweep)"
    );
    assert_eq!(
        lab.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    lab.ok("--set 100 20 30");
    lab.ok("--set 0 0 30");
    assert_eq!(
        lab.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 20 30\n"
    );
    assert_eq!(
        lab.ok("sysctl"),
        "expire_nodest_conn 0\nexpire_quiescent_template 0\n"
    );
    lab.ok("sysctl expire_nodest_conn 1");
    assert_eq!(
        lab.ok("sysctl expire_nodest_conn"),
        "expire_nodest_conn 1\n"
    );
    assert!(lab.fails("sysctl expire_nodest_conn 2").contains("0 or 1"));
    assert!(lab.fails("sysctl bogus 1").contains("unknown setting"));

    // Flows as the data path would have left them on the :443 real: one ESTABLISHED
    // (active) idle past the tcp timeout, one SYN_RECV (inactive) fresh, one UDP
    // (inactive) idle past the udp timeout; and two templates, one stale, one fresh.
    let snap = Maps::open(pin).unwrap().snapshot().unwrap();
    let (rid, _) = snap.ordered_reals(https.id)[0];
    let dns = snap
        .services
        .iter()
        .find(|(k, _)| k.port.to_host() == 53)
        .unwrap()
        .1;
    let (nat_rid, _) = snap.ordered_reals(dns.id)[0];
    let nat_rev_key = FlowKey {
        src: raw("198.18.100.2"),
        dst: raw("198.18.9.9"),
        sport: lb_common::Be16::from_host(5353),
        dport: lb_common::Be16::from_host(4000),
        proto: lb_common::consts::proto::UDP,
        family: lb_common::addr::family::V4,
        _pad: [0; 2],
    }
    .v4();
    let now = lb_ctl::maps::clock::now(pin).unwrap();
    {
        let mut flows: HashMap<MapData, FlowKey4, FlowValue> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_FLOWS4).unwrap();
        let fv = |state: TcpState, flags: u8, last: u32| FlowValue {
            real_id: rid,
            svc_id: https.id,
            last_seen_s: last,
            state: state as u8,
            flags,
            fwd: lb_common::ForwardMode::Dr as u8,
            _pad: 0,
        };
        let tcp = lb_common::consts::proto::TCP;
        let udp = lb_common::consts::proto::UDP;
        let nout = FlowFlags::NO_OUTPUT;
        flows
            .insert(
                flow_key("198.18.7.1", 1000, "198.18.3.1", 443, tcp),
                fv(TcpState::Established, nout, now - 101),
                0,
            )
            .unwrap();
        flows
            .insert(
                flow_key("198.18.8.2", 1001, "198.18.3.1", 443, tcp),
                fv(TcpState::SynRecv, nout | FlowFlags::INACTIVE, now),
                0,
            )
            .unwrap();
        let mut u = fv(TcpState::None, nout | FlowFlags::INACTIVE, now - 31);
        u.state = lb_common::conn::UDP_STATE;
        flows
            .insert(flow_key("198.18.7.3", 53, "198.18.3.1", 443, udp), u, 0)
            .unwrap();
        let mut conns: Array<MapData, ConnEvents> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_REAL_CONNS).unwrap();
        conns
            .set(
                rid,
                ConnEvents {
                    opened: 3,
                    to_inactive: 3,
                    to_active: 1,
                    templates: 2,
                    overloaded: 0,
                },
                0,
            )
            .unwrap();
        let mut persist: HashMap<MapData, PersistKey, PersistValue> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_PERSIST).unwrap();
        let pk = |c: &str| PersistKey {
            client: raw(c),
            group: https.persist_group,
            family: lb_common::addr::family::V4,
            proto: tcp,
            _pad: [0; 2],
        };
        let pv = |last: u32| PersistValue {
            real_id: rid,
            svc_id: https.id,
            last_seen_s: last,
            _pad: 0,
        };
        persist.insert(pk("198.18.7.0"), pv(now - 601), 0).unwrap();
        // Stale too, but a live flow (198.18.8.2) is controlled by it: kept.
        persist.insert(pk("198.18.8.0"), pv(now - 601), 0).unwrap();
        // An idle UDP flow on the NAT real, with its reply entry.
        flows
            .insert(
                flow_key("198.18.9.9", 4000, "198.18.3.1", 53, udp),
                FlowValue {
                    real_id: nat_rid,
                    svc_id: dns.id,
                    last_seen_s: now - 40,
                    state: lb_common::conn::UDP_STATE,
                    flags: FlowFlags::INACTIVE,
                    fwd: lb_common::ForwardMode::Nat as u8,
                    _pad: 0,
                },
                0,
            )
            .unwrap();
        conns
            .set(
                nat_rid,
                ConnEvents {
                    opened: 1,
                    to_inactive: 1,
                    ..Default::default()
                },
                0,
            )
            .unwrap();
        let mut nat: HashMap<MapData, FlowKey4, lb_common::NatReverse> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_NAT_REV4).unwrap();
        let rev = lb_common::NatReverse {
            vip: raw("198.18.3.1"),
            vport: lb_common::Be16::from_host(53),
            svc_id: dns.id,
            real_id: nat_rid,
            ..Default::default()
        };
        nat.insert(nat_rev_key, rev, 0).unwrap();
    }
    let before = lab.ok("-L -n --persistent-conn -t 198.18.3.1:443");
    assert!(
        before.contains("Weight    PersistConn ActiveConn InActConn"),
        "{before}"
    );
    assert_eq!(
        row(&before, "198.18.100.2:443"),
        ["->", "198.18.100.2:443", "1", "2", "1", "2"]
    );
    let out = lab.ok("sweep --once");
    assert!(
        out.contains("flows 1 expired active 1 inactive 2 templates 1"),
        "{out}"
    );
    // The pass counted what each table holds now; `counters` shows it by its capacity.
    let counted = lab.ok("counters");
    for want in [
        "table_flows4_entries 1\n",
        "table_flows4_capacity 4096\n",
        "table_flows6_entries 0\n",
        "table_flows6_capacity 4096\n",
        "table_nat_rev4_entries 0\n",
        "table_nat_rev4_capacity 4096\n",
        "table_persist_entries 1\n",
        "table_persist_capacity 262144\n",
        "flow_insert_failed 0\n",
    ] {
        assert!(counted.contains(want), "{want}in {counted}");
    }
    // The JSON listing carries the same fill.
    {
        let v: serde_json::Value = serde_json::from_str(&lab.ok("-L -n --json")).unwrap();
        let t = &v["tables"];
        assert_eq!(t[0]["table"], "flows4", "{v}");
        assert_eq!(
            (t[0]["entries"].as_u64(), t[0]["capacity"].as_u64()),
            (Some(1), Some(4096))
        );
        assert_eq!(t[4]["table"], "persist", "{v}");
    }
    // NAT reply entries no flow owns (a -o datagram's) are stamped by the first pass that
    // finds them so and removed FLOWLESS_REPLY_S later; one a live NAT flow owns stays.
    {
        use lb_common::consts::{FLOWLESS_REPLY_S, proto::UDP};
        let mut nat: HashMap<MapData, FlowKey4, lb_common::NatReverse> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_NAT_REV4).unwrap();
        let mut flows: HashMap<MapData, FlowKey4, FlowValue> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_FLOWS4).unwrap();
        let rev = lb_common::NatReverse {
            vip: raw("198.18.3.1"),
            vport: lb_common::Be16::from_host(53),
            svc_id: dns.id,
            real_id: nat_rid,
            ..Default::default()
        };
        // real 198.18.100.2:5353 → client; the orphan's client sent on port 7000.
        let orphan = flow_key("198.18.100.2", 5353, "198.18.9.7", 7000, UDP);
        let owned = flow_key("198.18.100.2", 5353, "198.18.9.8", 7001, UDP);
        nat.insert(orphan, rev, 0).unwrap();
        nat.insert(owned, rev, 0).unwrap();
        let t = lb_ctl::maps::clock::now(pin).unwrap();
        let fresh = FlowValue {
            real_id: nat_rid,
            svc_id: dns.id,
            last_seen_s: t + FLOWLESS_REPLY_S + 1,
            state: lb_common::conn::UDP_STATE,
            flags: FlowFlags::INACTIVE,
            fwd: lb_common::ForwardMode::Nat as u8,
            _pad: 0,
        };
        flows
            .insert(
                flow_key("198.18.9.8", 7001, "198.18.3.1", 53, UDP),
                fresh,
                0,
            )
            .unwrap();
        let rep = lb_ctl::maps::sweep::sweep_at(pin, t).unwrap();
        assert_eq!(rep.replies, 0, "{rep:?}");
        assert_eq!(
            nat.get(&orphan, 0).unwrap().stamp_s,
            t,
            "stamped when found"
        );
        assert_eq!(nat.get(&owned, 0).unwrap().stamp_s, 0, "owned: left alone");
        let rep = lb_ctl::maps::sweep::sweep_at(pin, t + FLOWLESS_REPLY_S).unwrap();
        assert_eq!(rep.replies, 0, "within its window: {rep:?}");
        let rep = lb_ctl::maps::sweep::sweep_at(pin, t + FLOWLESS_REPLY_S + 1).unwrap();
        assert_eq!(rep.replies, 1, "{rep:?}");
        assert!(nat.get(&orphan, 0).is_err(), "the orphan is gone");
        assert!(nat.get(&owned, 0).is_ok(), "the owned entry stays");
        let counted = lab.ok("counters");
        assert!(counted.contains("table_nat_rev4_entries 1\n"), "{counted}");
        // Leave the tables as they were for what follows.
        flows
            .remove(&flow_key("198.18.9.8", 7001, "198.18.3.1", 53, UDP))
            .unwrap();
        nat.remove(&owned).unwrap();
    }
    // A table 90 % full makes listings warn (on stderr; stdout stays ipvsadm's).
    {
        let mut fill: Array<MapData, u64> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_TABLE_FILL).unwrap();
        fill.set(lb_common::tables::Table::Flows4 as u32, 3700, 0)
            .unwrap();
        let (ok, _, err) = lab.ctl_in(&lab.dir_ns, "-L -n");
        assert!(
            ok && err.contains("FLOWS4 holds 3700 of its 4096 entries"),
            "{err}"
        );
        fill.set(lb_common::tables::Table::Flows4 as u32, 3600, 0)
            .unwrap();
        let (ok, _, err) = lab.ctl_in(&lab.dir_ns, "-L -n");
        assert!(ok && !err.contains("FLOWS4"), "under 90 %: {err}");
    }
    {
        let nat: HashMap<MapData, FlowKey4, lb_common::NatReverse> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_NAT_REV4).unwrap();
        assert!(
            nat.get(&nat_rev_key, 0).is_err(),
            "reply entry gone with its flow"
        );
    }
    assert_eq!(
        row(&lab.ok("-L -n -u 198.18.3.1:53"), "198.18.100.2:5353")[4..],
        ["0", "0"]
    );
    let after = lab.ok("-L -n --persistent-conn -t 198.18.3.1:443");
    assert_eq!(
        row(&after, "198.18.100.2:443"),
        ["->", "198.18.100.2:443", "1", "1", "0", "1"]
    );
    let conns = lab.ok("-L -n -c");
    assert!(
        conns.starts_with(
            "IPVS connection entries\npro expire state       source             virtual            destination\n"
        ),
        "{conns}"
    );
    let flow = row(&conns, "198.18.8.2:1001");
    assert_eq!(flow[0], "TCP");
    assert!(flow[1] == "01:00" || flow[1] == "00:59", "{flow:?}");
    assert_eq!(
        flow[2..],
        [
            "SYN_RECV",
            "198.18.8.2:1001",
            "198.18.3.1:443",
            "198.18.100.2:443"
        ]
    );
    let tpl = row(&conns, "198.18.8.0:0");
    assert_eq!(tpl[0], "TCP");
    assert_eq!(tpl[1], "00:00", "past its timeout, kept by its flow");
    assert_eq!(
        tpl[2..],
        ["NONE", "198.18.8.0:0", "198.18.3.1:0", "198.18.100.2:443"]
    );
    assert_eq!(conns.lines().count(), 4, "{conns}");

    // An IPv6 flow lives in FLOWS6 (FLOWS4 has IPv4's 16-byte keys): listed, then expired
    // by the same sweep.
    {
        let mut flows6: HashMap<MapData, FlowKey, FlowValue> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_FLOWS6).unwrap();
        let key = FlowKey {
            src: raw("2001:db8:7::1"),
            dst: raw("2001:db8:3::1"),
            sport: lb_common::Be16::from_host(1000),
            dport: lb_common::Be16::from_host(443),
            proto: lb_common::consts::proto::TCP,
            family: lb_common::addr::family::V6,
            _pad: [0; 2],
        };
        let v = FlowValue {
            real_id: rid,
            svc_id: https.id,
            last_seen_s: lb_ctl::maps::clock::now(pin).unwrap() - 1000,
            state: TcpState::Established as u8,
            flags: FlowFlags::NO_OUTPUT,
            // Recorded as TUN (the real was -i when it began): listed so, the real is -g now.
            fwd: lb_common::ForwardMode::Tun as u8,
            _pad: 0,
        };
        flows6.insert(key, v, 0).unwrap();
        let listed = lab.ok("-L -n -c");
        let row6 = row(&listed, "[2001:db8:7::1]:1000");
        assert_eq!(
            row6[2..4],
            ["ESTABLISHED", "[2001:db8:7::1]:1000"],
            "{listed}"
        );
        let json: serde_json::Value = serde_json::from_str(&lab.ok("-L -n -c --json")).unwrap();
        let c6 = json["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"]["address"] == "2001:db8:7::1")
            .unwrap();
        assert_eq!(c6["forward"], "tunnel", "{json}");
        let out = lab.ok("sweep --once");
        assert!(
            out.contains("flows 1 expired active 1 inactive 0 templates 0"),
            "{out}"
        );
        assert!(flows6.get(&key, 0).is_err(), "the IPv6 flow is gone");
    }

    // Time runs in the kernel with no sweeper running: flows are stamped with it.
    let start = lb_ctl::maps::clock::now(pin).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2300));
    let later = lb_ctl::maps::clock::now(pin).unwrap();
    assert!(
        (2..=3).contains(&(later - start)),
        "the clock runs: {start} → {later}"
    );

    // No expiry pass for a while (this lab loaded with --no-sweep): listings warn on
    // stderr, and say nothing once a sweeper runs.
    let c = lb_ctl::maps::clock::read(pin).unwrap().unwrap();
    lb_ctl::maps::clock::write(
        pin,
        &lb_common::clock::Clock {
            swept_s: later - 60,
            ..c
        },
    )
    .unwrap();
    let (ok, _, err) = lab.ctl_in(&lab.dir_ns, "-L -n");
    assert!(
        ok && err.contains("no connection expiry pass for 60 s"),
        "{err}"
    );
    let mut daemon = lab
        .dir_ns
        .cmd(env!("CARGO_BIN_EXE_lb-ctl"))
        .args(["sweep", "--interval", "1"])
        .env("LB_PIN_DIR", pin)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (ok, _, err) = lab.ctl_in(&lab.dir_ns, "-L -n");
    assert!(
        ok && err.is_empty(),
        "no warning while a sweeper runs: {err}"
    );
    // A second sweeper has nothing to do.
    let second = lab.ok("sweep");
    assert!(second.contains("already runs"), "{second}");
    let alive = daemon.try_wait().unwrap().is_none();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(alive, "sweep daemon exited early");
    assert!(
        lab.ok("-L -n -c").contains("SYN_RECV"),
        "the fresh flow stays"
    );

    // lblc/lblcr locality entries unused for a day are cleared; a fresh one stays.
    {
        assert!(
            pin.join(lb_common::consts::MAP_LBLC).exists(),
            "LBLC pinned"
        );
        let lblc = lb_ctl::maps::sys::RawMap::open(&pin.join(lb_common::consts::MAP_LBLC)).unwrap();
        let c = lb_ctl::maps::clock::now(pin).unwrap();
        let loc = |last: u32| lb_common::LocalityValue {
            len: 1,
            last_seen_s: last,
            ..Default::default()
        };
        // A day ahead of CLOCK rather than back from it: CLOCK is monotonic seconds, less
        // than a day on a machine booted today. Last: that sweep expires every flow.
        let day_on = c + 86_401;
        lblc.set(&svc.id, &loc(c)).unwrap();
        lblc.set(&https.id, &loc(day_on)).unwrap();
        let rep = lb_ctl::maps::sweep::sweep_at(pin, day_on).unwrap();
        assert_eq!(rep.locality, 1, "{rep:?}");
        let get = |id: u32| {
            lblc.get::<u32, lb_common::LocalityValue>(&id)
                .unwrap()
                .unwrap()
        };
        assert_eq!(get(svc.id).len, 0);
        assert_eq!(get(https.id).len, 1);
    }
}

/// Live packets through the attached program: a client's SYNs make one inactive
/// connection (IPVS binds inactive, SYN_RECV stays inactive), visible in `-L` and `-L -c`;
/// a sweep past the SYN_RECV timeout expires it and the counts return to zero.
fn live_syns_are_counted_and_expire() {
    let lab = Lab::new("c");
    let pin: &Path = lab.pin.path();
    lab.ok("load --iface d0 --skb --no-sweep");
    assert!(
        pin.join(lb_common::consts::MAP_REAL_CONNS).exists(),
        "the object keeps connection counters (REAL_CONNS)"
    );
    lab.ok("-A -t 198.18.4.1:80 -s wlc");
    lab.ok("-a -t 198.18.4.1:80 -r 198.18.100.2 -g");
    lab.real_ns
        .ip("route add 198.18.4.0/24 via 198.18.100.1")
        .expect("route to the VIPs");
    // The real does not own the VIP, so the SYN (sent back to it by DR) goes unanswered:
    // the client retransmits on the same flow until the timeout.
    let _ = lab
        .real_ns
        .cmd("timeout")
        .args(["2", "bash", "-c", "exec 3<>/dev/tcp/198.18.4.1/80"])
        .output();
    let list = lab.ok("-L -n -t 198.18.4.1:80");
    assert_eq!(
        row(&list, "198.18.100.2:80"),
        ["->", "198.18.100.2:80", "Route", "1", "0", "1"],
        "{list}\n{}",
        lab.ok("counters")
    );
    let conns = lab.ok("-L -n -c");
    let flow = row(&conns, "198.18.4.1:80");
    assert_eq!(flow[0], "TCP");
    assert_eq!(flow[2], "SYN_RECV", "{conns}");
    assert_eq!(flow[5], "198.18.100.2:80");
    // An upgrade swaps in a new lb_xdp (here the same build, loaded anew) under the live
    // link, keeping the maps: the flow and its count stay, and the new program balances
    // the next connection with them.
    let before = lb_ctl::sweeper::pinned_prog_id(pin).expect("lb_xdp pinned");
    // A pinned map whose layout is not the object's (here another map pinned under
    // SETTINGS's name: a per-CPU array of 512-byte values) refuses the upgrade, naming it,
    // and changes nothing.
    {
        let settings = pin.join(lb_common::consts::MAP_SETTINGS);
        // Held open while unpinned, pinned back after.
        let kept = aya::maps::MapData::from_pin(&settings).unwrap();
        std::fs::remove_file(&settings).unwrap();
        aya::maps::MapData::from_pin(pin.join(lb_common::consts::MAP_COUNTERS))
            .unwrap()
            .pin(&settings)
            .unwrap();
        let err = lab.fails("upgrade");
        assert!(
            err.contains("cannot upgrade in place: SETTINGS (key 4 → 4, value 512 →"),
            "{err}"
        );
        assert_eq!(
            lb_ctl::sweeper::pinned_prog_id(pin),
            Some(before),
            "nothing changed"
        );
        std::fs::remove_file(&settings).unwrap();
        kept.pin(&settings).unwrap();
    }
    let up = lab.ok("upgrade");
    assert!(up.contains("lb upgraded on d0 (connections kept)"), "{up}");
    assert!(
        !up.contains("sweep:"),
        "no sweeper ran (--no-sweep), none is started: {up}"
    );
    let after = lb_ctl::sweeper::pinned_prog_id(pin).expect("lb_xdp pinned");
    assert_ne!(before, after, "a new program is pinned");
    let link = lb_ctl::maps::sys::pinned_link_prog_id(&pin.join("link_d0")).unwrap();
    assert_eq!(link, after, "the link runs the new program");
    assert_eq!(row(&lab.ok("-L -n -c"), "198.18.4.1:80")[2], "SYN_RECV");
    let _ = lab
        .real_ns
        .cmd("timeout")
        .args(["2", "bash", "-c", "exec 3<>/dev/tcp/198.18.4.1/80"])
        .output();
    assert_eq!(
        row(&lab.ok("-L -n -t 198.18.4.1:80"), "198.18.100.2:80")[4..],
        ["0", "2"],
        "the new program counted a second connection on the kept counters: {}\n{}",
        lab.ok("counters"),
        lab.ok("-L -n -c")
    );
    // Stamped by the kernel's clock, which ran with no sweeper (loaded --no-sweep).
    {
        use aya::maps::{HashMap, MapData};
        let flows: HashMap<MapData, lb_common::FlowKey4, lb_common::FlowValue> =
            lb_ctl::maps::open(pin, lb_common::consts::MAP_FLOWS4).unwrap();
        let now = lb_ctl::maps::clock::now(pin).unwrap();
        let stamps: Vec<u32> = flows.iter().map(|r| r.unwrap().1.last_seen_s).collect();
        assert!(
            stamps.len() == 2 && stamps.iter().all(|s| now.abs_diff(*s) <= 5),
            "flow stamped {stamps:?}, clock {now}"
        );
    }
    // Past SYN_RECV's 60 s.
    let clock = lb_ctl::maps::clock::now(pin).unwrap();
    let rep = lb_ctl::maps::sweep::sweep_at(pin, clock + 61).unwrap();
    assert_eq!((rep.active, rep.inactive, rep.flows), (0, 2, 0), "{rep:?}");
    assert_eq!(
        row(&lab.ok("-L -n -t 198.18.4.1:80"), "198.18.100.2:80")[4..],
        ["0", "0"]
    );
}

/// `-S | -C | -R` restores the same table, and ipvsadm's own words and exit statuses when
/// invoked as `ipvsadm` (a link named so): a refused command or restore stream changes
/// nothing.
fn save_clear_restore_as_ipvsadm() {
    let lab = Lab::new("s");
    lab.ok("load --iface d0 --skb --max-flows 4096");
    let links = tempdir_named("ipvsadm-link");
    let ipvsadm = links.join("ipvsadm");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lb-ctl"), &ipvsadm).unwrap();
    let ctl = Path::new(env!("CARGO_BIN_EXE_lb-ctl"));

    for cmd in [
        "-A -t 198.18.2.1:80 -s wlc -p 600 -M 255.255.255.0",
        "-a -t 198.18.2.1:80 -r 198.18.100.2 -g -w 2",
        "-a -t 198.18.2.1:80 -r 198.18.101.5:8080 -m -w 3 -x 100 -y 50",
        // A service name on input (/etc/services: http = 80/tcp).
        "-A -t 198.18.2.1:https -s mh -b mh-port -p 600 --persist-group 198.18.2.1:http",
        "-a -t 198.18.2.1:443 -r 198.18.100.2 -g",
        "-E -t 198.18.2.1:443 -s mh -b mh-port -p 600 --mh-size 251",
        "-A -u 198.18.2.3:53 -s rr -o",
        "-a -u 198.18.2.3:53 -r 198.18.101.6:5353 -m -w 0",
        "-A -t [2001:db8:2::1]:80 -s sh -b sh-fallback -p 60 -M 64",
        "-a -t [2001:db8:2::1]:80 -r [2001:db8:100::2] -i --tun-type ipip -w 4",
    ] {
        lab.ok(cmd);
    }
    let saved = lab.ok("-S -n");
    // ipvsadm's FMT_RULE lines (print_service_entry, print_tunnel_rule), sorted as
    // list_all sorts; lb's extras (-x/-y, --persist-group, --mh-size) after them.
    let want = "\
-A -t 198.18.2.1:80 -s wlc -p 600 -M 255.255.255.0
-a -t 198.18.2.1:80 -r 198.18.100.2:80 -g -w 2
-a -t 198.18.2.1:80 -r 198.18.101.5:8080 -m -w 3 -x 100 -y 50
-A -t 198.18.2.1:443 -s mh -p 600 -b mh-port --persist-group 198.18.2.1:80
-a -t 198.18.2.1:443 -r 198.18.100.2:443 -g -w 1
-E -t 198.18.2.1:443 -s mh -p 600 -b mh-port --persist-group 198.18.2.1:80 --mh-size 251
-A -u 198.18.2.3:53 -s rr -o
-a -u 198.18.2.3:53 -r 198.18.101.6:5353 -m -w 0
-A -t [2001:db8:2::1]:80 -s sh -p 60 -M 64 -b sh-fallback
-a -t [2001:db8:2::1]:80 -r [2001:db8:100::2]:80 -i -w 4 --tun-type ipip
";
    assert_eq!(saved, want);
    let listing = lab.ok("-L -n --thresholds");
    let groups = |pin: &Path| -> Vec<(u16, bool)> {
        let snap = Maps::open(pin).unwrap().snapshot().unwrap();
        let mut v: Vec<(u16, bool)> = snap
            .services
            .iter()
            .map(|(k, s)| {
                let shared = snap
                    .services
                    .iter()
                    .any(|(k2, o)| k2 != k && o.persist_group == s.persist_group);
                (k.port.to_host(), shared)
            })
            .collect();
        v.sort();
        v
    };
    let groups_before = groups(lab.pin.path());
    // Everything a snapshot of the maps holds (services, reals, lists, trash).
    let maps_now = |pin: &Path| format!("{:?}", Maps::open(pin).unwrap().snapshot().unwrap());
    let maps_before = maps_now(lab.pin.path());

    // As ipvsadm: refused commands print ipvsadm's text first, exit as ipvsadm does, and
    // change nothing.
    for (args, starts, code) in [
        ("-A -t 198.18.2.1:80", "Service already exists", 255),
        (
            "-a -t 198.18.2.9:80 -r 198.18.100.2",
            "Service not defined",
            255,
        ),
        ("-D -t 198.18.2.9:80", "No such service", 255),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.2",
            "Destination already exists",
            255,
        ),
        (
            "-d -t 198.18.2.1:80 -r 198.18.100.9",
            "No such destination",
            255,
        ),
        (
            "-e -t 198.18.2.1:80 -r 198.18.100.9 -w 1",
            "No such destination",
            255,
        ),
        (
            "-A -t 198.18.2.7:80 -s nosuch",
            "Scheduler or persistence engine not found",
            255,
        ),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.3 -w 65536",
            "illegal weight specified",
            2,
        ),
        (
            "-A -t 198.18.2.7:99999",
            "illegal virtual server address[:port] specified",
            2,
        ),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.3:x -m",
            "illegal real server address[:port] specified",
            2,
        ),
        (
            "-A -t 198.18.2.7:80 -p -M 255.255.0.x",
            "illegal virtual server persistent mask specified",
            2,
        ),
        (
            "-A -t [2001:db8:2::7]:80 -p -M 129",
            "illegal ipv6 netmask specified",
            2,
        ),
        (
            "-E -t 198.18.2.1:80 -p -M 255.0.255.0",
            "illegal netmask",
            255,
        ),
        (
            "-A -t nosuchhost.invalid:80",
            "illegal virtual server address[:port] specified",
            2,
        ),
        (
            "-A -t 198.18.2.7:80 -o",
            "One-Packet Scheduling is only for UDP virtual services",
            2,
        ),
        (
            "-a -t 198.18.2.1:80 -r [2001:db8:100::2]",
            "Different address family is allowed only for tunneling servers",
            2,
        ),
        (
            "-a -t 198.18.2.1:80 -r [2001:db8:100::2] -i",
            "address family mismatch",
            255,
        ),
        ("-L -Z", "invalid option `-Z'", 2),
        (
            "-L -n --stats -X -X",
            "multiple 'exact' options specified",
            2,
        ),
        (
            "-A -t 198.18.2.7:80 -w 1",
            "Illegal 'weight' option with the 'add-service' command",
            2,
        ),
        ("-L -c --stats", "options conflicts in the list command", 2),
        (
            "-A -f 1 -s rr",
            "firewall-mark services (-f) are not available in lb",
            2,
        ),
        (
            "--start-daemon master",
            "--start-daemon: lb has no IPVS sync daemon",
            2,
        ),
        ("-Q", "-Q: unknown option", 255),
        // tryhelp_exit names the program as invoked: here the link's whole path.
        (
            "-n",
            &*format!(
                "Try `{0} -h' or '{0} --help' for more information.",
                ipvsadm.display()
            ),
            255,
        ),
    ] {
        let (status, _, err) = lab.run_as(&ipvsadm, args, "");
        assert_eq!(status, code, "ipvsadm {args}: {err}");
        assert!(err.starts_with(starts), "ipvsadm {args}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert_eq!(lab.ok("-S -n"), saved, "ipvsadm {args} changed nothing");
        assert_eq!(
            maps_now(lab.pin.path()),
            maps_before,
            "ipvsadm {args}: maps as they were"
        );
    }

    // A restore stream with a refused line applies nothing, and names the line.
    let bad = format!("-C\n{saved}-a -t 198.18.2.1:80 -r 198.18.100.2 -g\n");
    let (status, _, err) = lab.run_as(ctl, "-R", &bad);
    assert_ne!(status, 0);
    assert!(err.contains("line 12: Destination already exists"), "{err}");
    assert_eq!(lab.ok("-S -n"), saved, "all or nothing");
    assert_eq!(
        maps_now(lab.pin.path()),
        maps_before,
        "all or nothing: maps as they were"
    );

    // -S | -C | -R: the same table back.
    lab.ok("-C");
    assert_eq!(lab.ok("-S -n"), "");
    let (status, out, err) = lab.run_as(&ipvsadm, "-R", &saved);
    assert_eq!((status, out.as_str()), (0, ""), "{err}");
    assert_eq!(lab.ok("-S -n"), saved);
    assert_eq!(lab.ok("-L -n --thresholds"), listing);
    assert_eq!(
        groups(lab.pin.path()),
        groups_before,
        "the :80/:443 group again"
    );
    // As ipvsadm -R reads ipvsadm-save's output: comments and the word ipvsadm.
    lab.ok("-C");
    let script: String = saved.lines().map(|l| format!("ipvsadm {l}\n")).collect();
    let (status, _, err) = lab.run_as(ctl, "--restore", &format!("# lb\n\n{script}"));
    assert_eq!(status, 0, "{err}");
    assert_eq!(lab.ok("-S -n"), saved);

    // A stream that starts with -C replaces the table in one go.
    let (status, _, err) = lab.run_as(ctl, "-R", &format!("-C\n{saved}"));
    assert_eq!(status, 0, "{err}");
    assert_eq!(lab.ok("-S -n"), saved);
    assert_eq!(groups(lab.pin.path()), groups_before);

    // ipvsadm 1.31's --tun-info column.
    let tun = lab.ok("-L -n --tun-info");
    assert!(
        tun.contains("  -> [2001:db8:100::2]:80         Tunnel  ipip          4      "),
        "{tun}"
    );
    assert!(
        tun.contains("  -> 198.18.100.2:80              Route   n/a           2      "),
        "{tun}"
    );

    // -L --daemon: no sync daemon runs; bare ipvsadm: the listing.
    assert_eq!(lab.run_as(&ipvsadm, "-L --daemon", "").1, "");
    let (status, out, _) = lab.run_as(&ipvsadm, "", "");
    assert_eq!(status, 0);
    assert!(out.starts_with("IP Virtual Server version"), "{out}");
    lab.ok("unload");
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir_named(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("{PREFIX}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}
