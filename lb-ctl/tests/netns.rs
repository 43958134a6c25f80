//! Root-only: the lb-ctl binary against the real object in a network namespace it builds —
//! load, adopt, services and reals (with next-hop resolution through a veth peer), listing,
//! refusals that change nothing, decap, unload. Skipped (with a message) without root.
//!
//! Everything lives in two namespaces named after this process and a pin directory
//! /sys/fs/bpf/lb-test-<pid>; a guard removes them even when an assertion fails.

use lb_common::addr::convert;
use lb_common::consts::DEFAULT_MAGLEV_SIZE;
use lb_common::{ForwardMode, RealFlags, VipFlags};
use lb_ctl::loader::{Kind, object_path};
use lb_ctl::maps::Maps;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth pair, and a pin directory; all removed on drop.
struct Lab {
    dir_ns: String,
    real_ns: String,
    pin: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            dir_ns: format!("lbct{pid}d"),
            real_ns: format!("lbct{pid}r"),
            pin: PathBuf::from(format!("/sys/fs/bpf/lb-test-{pid}")),
        };
        let (d, r) = (lab.dir_ns.as_str(), lab.real_ns.as_str());
        sh(&["ip", "netns", "add", d]);
        sh(&["ip", "netns", "add", r]);
        sh(&[
            "ip", "-n", d, "link", "add", "d0", "type", "veth", "peer", "name", "r0", "netns", r,
        ]);
        for (ns, dev, v4, v6) in [
            (d, "d0", "198.18.100.1/24", "2001:db8:100::1/64"),
            (r, "r0", "198.18.100.2/24", "2001:db8:100::2/64"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            sh(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Reals behind a router (the peer) to check the gateway's MAC is used.
        sh(&[
            "ip",
            "-n",
            d,
            "route",
            "add",
            "198.18.101.0/24",
            "via",
            "198.18.100.2",
        ]);
        lab
    }

    /// Runs lb-ctl in a namespace; returns (success, stdout, stderr).
    fn ctl_in(&self, ns: &str, args: &str) -> (bool, String, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg(env!("CARGO_BIN_EXE_lb-ctl"))
            .args(args.split_whitespace())
            .env("LB_PIN_DIR", &self.pin)
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

    fn mac(&self, ns: &str, dev: &str) -> [u8; 6] {
        let out = sh(&["ip", "-n", ns, "-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        lb_ctl::nexthop::parse_mac(v[0]["address"].as_str().unwrap()).unwrap()
    }

    fn has_xdp(&self, ns: &str, dev: &str) -> bool {
        let out = sh(&["ip", "-n", ns, "-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0].get("xdp").is_some()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin);
        for ns in [&self.dir_ns, &self.real_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Whether this test can run; says why not when it cannot.
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (network namespaces, bpffs, XDP)");
        return false;
    }
    if let Err(e) = object_path(Kind::Balancer, None) {
        let msg = format!("no BPF object ({e}); build it: cd lb-ebpf && cargo build --release");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("skipped: {msg}");
        return false;
    }
    true
}

const EMPTY: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
";

#[test]
fn load_configure_list_unload() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let pin: &Path = &lab.pin;

    // Load, then load again: adopted, already attached, nothing broken.
    let out = lab.ok("load --iface d0 --skb --max-flows 4096");
    assert!(out.contains("lb attached to d0"), "{out}");
    assert!(pin.join("lb_xdp").exists() && pin.join("link_d0").exists());
    for m in [
        "SERVICES",
        "REALS",
        "SCHED_TABLE",
        "FLOWS",
        "TX_PORTS",
        "VIP_FILTER",
    ] {
        assert!(pin.join(m).exists(), "{m} pinned");
    }
    assert_eq!(
        lab.ok("load --iface d0 --skb"),
        "lb already attached to d0\n"
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
            "address family mismatch",
        ),
        (
            "-a -t 198.18.2.1:80 -r 198.18.100.3 -w 70000",
            "out of range",
        ),
        ("-a -t 198.18.2.1:80 -r 198.18.100.1", "local address"),
        ("-a -t 198.18.2.1:80 -r 198.18.200.1", "no route"),
        ("-d -t 198.18.2.1:80 -r 198.18.100.9", "No such destination"),
        ("-A -t 198.18.2.1:80 -w 1", "illegal '-w' option"),
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
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.dir_ns))
        .arg(&link)
        .env("LB_PIN_DIR", pin)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(link.parent().unwrap());
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        lab.ok("-L -n"),
        "bare ipvsadm lists"
    );
    lab.ok("-D -u [2001:db8::1]:53");
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

    // Unload everything.
    let out = lab.ok("unload");
    assert!(out.contains("lb detached from d0"), "{out}");
    assert!(!pin.exists());
    assert!(!lab.has_xdp(&lab.dir_ns, "d0"));
    assert!(lab.fails("-L -n").contains("is not pinned"));
}
