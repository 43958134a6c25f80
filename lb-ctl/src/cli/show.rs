//! Output shaped exactly like ipvsadm's (`-L -n`, `--stats`, `--rate`, `--exact`) and the counters
//! listing. Pure formatting of already-gathered values ([`crate::status`]); column widths are ipvsadm's own
//! (`print_title`, `print_service_entry` and `print_largenum` in ipvsadm.c).

use crate::cli::ipvsadm::ListFormat;
use crate::cli::names::{Names, addrport};
use crate::ipvs::model::{Endpoint, Proto, ServiceAddr};
use crate::status::{Counters, ListedConn, ListedService, Rates, Stats};
use std::fmt::Write as _;
use std::net::IpAddr;

/// First line of a full listing. ipvsadm prints the IPVS version and its connection hash
/// table size; we print the same values IPVS 1.2.1 reports by default, so tools that parse
/// the line keep working (the flow table is an LRU sized at load time, not a hash table).
pub const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)";

/// What to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `--stats`: traffic columns instead of forward/weight/connections.
    pub stats: bool,
    /// `--exact`: exact numbers instead of K/M/G/T.
    pub exact: bool,
    /// Print the version header (a full `-L`; ipvsadm omits it when one service is named).
    pub header: bool,
    /// Columns.
    pub format: ListFormat,
    /// `--nosort`: keep the order given (reals in IPVS list order).
    pub nosort: bool,
}

/// ipvsadm's `print_largenum`: 9 columns, scaled to K/M/G/T past 10^8 unless exact.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        write!(out, "{i:>w$}", w = if len <= 8 { 9 } else { len + 1 })
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// ipvsadm's service column: "TCP  VIP:PORT", cut at 33 characters for IPv4
/// (`svc_name[33] = '\0'`; an IPv6 one is never cut).
fn svc_name(a: &ServiceAddr, names: &dyn Names) -> String {
    let mut s = format!("{}  {}", a.proto.name(), addrport(&a.vip, a.proto, names));
    if a.vip.ip.is_ipv4() {
        truncate_chars(&mut s, 33);
    }
    s
}

/// ipvsadm's real column, cut at 28 characters for IPv4 (`dname[28] = '\0'`).
fn real_name(e: &Endpoint, proto: Proto, names: &dyn Names) -> String {
    let mut s = addrport(e, proto, names);
    if e.ip.is_ipv4() {
        truncate_chars(&mut s, 28);
    }
    s
}

/// Cuts at `n` characters (host names may be non-ASCII; a byte cut could split one).
fn truncate_chars(s: &mut String, n: usize) {
    if let Some((at, _)) = s.char_indices().nth(n) {
        s.truncate(at);
    }
}

fn traffic(out: &mut String, t: &Stats, exact: bool) {
    for v in [
        t.conns,
        t.in_packets,
        t.out_packets,
        t.in_bytes,
        t.out_bytes,
    ] {
        largenum(out, v, exact);
    }
    out.push('\n');
}

/// `--rate` columns of a service: all five through `print_largenum` (ipvsadm.c,
/// `print_service_entry`, the FMT_RATE branch of the service line).
fn svc_rates(out: &mut String, r: &Rates, exact: bool) {
    for v in [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps] {
        largenum(out, v, exact);
    }
    out.push('\n');
}

/// `--rate` columns of a real: ipvsadm prints CPS, InPPS and OutPPS with a plain `%8u`
/// after a space (never scaled, `--exact` or not) and only the byte rates through
/// `print_largenum` (ipvsadm.c, `print_service_entry`, the FMT_RATE branch of the
/// destination loop).
fn real_rates(out: &mut String, r: &Rates, exact: bool) {
    let _ = write!(out, " {:>8} {:>8} {:>8}", r.cps, r.in_pps, r.out_pps);
    largenum(out, r.in_bps, exact);
    largenum(out, r.out_bps, exact);
    out.push('\n');
}

/// How ipvsadm prints a persistence mask that is not all-ones (IPv4 dotted, IPv6 prefix).
fn mask_text(mask: IpAddr) -> Option<String> {
    match mask {
        IpAddr::V4(a) if u32::from(a) != u32::MAX => Some(a.to_string()),
        IpAddr::V6(a) if u128::from(a) != u128::MAX => {
            Some(u128::from(a).leading_ones().to_string())
        }
        _ => None,
    }
}

/// `-L` / `-L --stats` / `-L --rate` output; addresses and ports named by `names`
/// ([`crate::cli::names::Numeric`] for `-n`).
pub fn list(services: &[ListedService], opts: ListOptions, names: &dyn Names) -> String {
    let mut out = String::new();
    if opts.header {
        out.push_str(HEADER);
        out.push('\n');
    }
    if opts.stats {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else if opts.format == ListFormat::Rate {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        );
    } else if opts.format == ListFormat::Thresholds {
        let _ = writeln!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else if opts.format == ListFormat::PersistentConn {
        let _ = writeln!(
            out,
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        );
    } else if opts.format == ListFormat::TunInfo {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str(
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        );
    } else {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    }
    for s in services {
        if opts.stats {
            let _ = write!(out, "{:<33}", svc_name(&s.addr, names));
            traffic(&mut out, &s.stats, opts.exact);
            for r in &s.reals {
                let _ = write!(out, "  -> {:<28}", real_name(&r.ep, s.addr.proto, names));
                traffic(&mut out, &r.stats, opts.exact);
            }
        } else if opts.format == ListFormat::Rate {
            let _ = write!(out, "{:<33}", svc_name(&s.addr, names));
            svc_rates(&mut out, &s.rates, opts.exact);
            for r in &s.reals {
                let _ = write!(out, "  -> {:<28}", real_name(&r.ep, s.addr.proto, names));
                real_rates(&mut out, &r.rates, opts.exact);
            }
        } else {
            let _ = write!(out, "{} {}", svc_name(&s.addr, names), s.sched);
            if !s.sched_flags.is_empty() {
                let _ = write!(out, " ({})", s.sched_flags.join(","));
            }
            if let Some(p) = &s.persistent {
                let _ = write!(out, " persistent {}", p.timeout_s);
                if let Some(m) = mask_text(p.netmask) {
                    let _ = write!(out, " mask {m}");
                }
            }
            if s.one_packet {
                out.push_str(" ops");
            }
            out.push('\n');
            for r in &s.reals {
                let _ = match opts.format {
                    ListFormat::Thresholds => writeln!(
                        out,
                        "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
                        real_name(&r.ep, s.addr.proto, names),
                        r.u_threshold,
                        r.l_threshold,
                        r.active,
                        r.inactive
                    ),
                    ListFormat::PersistentConn => writeln!(
                        out,
                        "  -> {:<28} {:<9} {:<11} {:<10} {:<10}",
                        real_name(&r.ep, s.addr.proto, names),
                        r.weight,
                        r.persistent,
                        r.active,
                        r.inactive
                    ),
                    // ipvsadm 1.31 `fwd_tun_info`: the tunnel type of a tunnel real
                    // (lb's are IPIP), "n/a" for the others.
                    ListFormat::TunInfo => writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                        real_name(&r.ep, s.addr.proto, names),
                        r.mode.ipvsadm_name(),
                        if r.mode == lb_common::ForwardMode::Tun {
                            "ipip"
                        } else {
                            "n/a"
                        },
                        r.weight,
                        r.active,
                        r.inactive
                    ),
                    // (`--rate` is listed above.)
                    ListFormat::Plain | ListFormat::Rate => writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                        real_name(&r.ep, s.addr.proto, names),
                        r.mode.ipvsadm_name(),
                        r.weight,
                        r.active,
                        r.inactive
                    ),
                };
            }
        }
    }
    out
}

/// ipvsadm's `-L -c` (`list_conn` / `print_conn`): `pro expire state source virtual
/// destination`, expire as MM:SS. With `--persistent-conn` the header gains ipvsadm's
/// "pe name" and "pe_data" columns, empty here (no persistence engine, as IPVS without
/// `--pe`).
pub fn conns(list: &[ListedConn], persistent_conn: bool, names: &dyn Names) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in list {
        let expire = format!("{:02}:{:02}", c.expire_s / 60, c.expire_s % 60);
        let proto = if c.proto == "UDP" {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto,
            expire,
            c.state,
            addrport(&c.source, proto, names),
            addrport(&c.virt, proto, names),
            addrport(&c.dest, proto, names)
        );
    }
    out
}

/// `-L --timeout`.
pub fn timeouts(tcp: u32, tcpfin: u32, udp: u32) -> String {
    format!("Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n")
}

/// `lb-ctl counters`: one `name value` line per named counter.
pub fn counters(c: &Counters) -> String {
    let mut out = String::new();
    for (name, v) in &c.0 {
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::names::Numeric;
    use crate::ipvs::model::Proto;
    use crate::status::{ListedNeighbour, ListedReal, sort};
    use lb_common::{Counter, Drop, ForwardMode, Pass};

    /// `-n` listings.
    fn list(s: &[ListedService], o: ListOptions) -> String {
        super::list(s, o, &Numeric)
    }

    fn ep(s: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: s.parse().unwrap(),
            port,
        }
    }

    fn sample() -> Vec<ListedService> {
        let real = |ip, port, mode, w, active| ListedReal {
            ep: ep(ip, port),
            mode,
            weight: w,
            active,
            inactive: 0,
            persistent: 0,
            u_threshold: 0,
            l_threshold: 0,
            stats: Stats::default(),
            rates: Rates::default(),
            // Unresolved: ipvsadm's columns show nothing of it.
            neighbour: ListedNeighbour::default(),
        };
        let mut v = vec![
            ListedService {
                addr: ServiceAddr {
                    proto: Proto::Udp,
                    vip: ep("198.18.2.1", 53),
                },
                sched: "mh",
                sched_flags: vec![],
                persistent: None,
                one_packet: false,
                stats: Stats::default(),
                rates: Rates::default(),
                reals: vec![real("198.18.1.11", 5353, ForwardMode::Nat, 0, 0)],
                persist_group: 0,
                mh_size: None,
            },
            ListedService {
                addr: ServiceAddr {
                    proto: Proto::Tcp,
                    vip: ep("2001:db8::1", 80),
                },
                sched: "mh",
                sched_flags: vec![],
                persistent: None,
                one_packet: false,
                stats: Stats::default(),
                rates: Rates::default(),
                reals: vec![real("2001:db8::11", 80, ForwardMode::Tun, 2, 7)],
                persist_group: 0,
                mh_size: None,
            },
            ListedService {
                addr: ServiceAddr {
                    proto: Proto::Tcp,
                    vip: ep("198.18.2.1", 80),
                },
                sched: "mh",
                sched_flags: vec!["mh-port"],
                persistent: None,
                one_packet: false,
                stats: Stats::default(),
                rates: Rates::default(),
                reals: vec![
                    real("198.18.1.12", 80, ForwardMode::Dr, 1, 3),
                    real("198.18.1.11", 80, ForwardMode::Dr, 1, 0),
                ],
                persist_group: 0,
                mh_size: None,
            },
        ];
        sort(&mut v, true);
        v
    }

    #[test]
    fn list_matches_ipvsadm() {
        let out = list(
            &sample(),
            ListOptions {
                header: true,
                ..Default::default()
            },
        );
        let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.2.1:80 mh (mh-port)
  -> 198.18.1.11:80               Route   1      0          0         
  -> 198.18.1.12:80               Route   1      3          0         
UDP  198.18.2.1:53 mh
  -> 198.18.1.11:5353             Masq    0      0          0         
TCP  [2001:db8::1]:80 mh
  -> [2001:db8::11]:80            Tunnel  2      7          0         
";
        assert_eq!(out, want);
    }

    /// `--thresholds` and `--persistent-conn`: print_title's "%-33s %-10s %-10s %-10s
    /// %-10s" / "%-33s %-9s %-11s %-10s %-10s" and the real rows "  -> %-28s %-10u %-10u
    /// %-10u %-10u" / "  -> %-28s %-9u %-11u %-10u %-10u"; the service line "%s %s" with
    /// " persistent %u" and " mask %s" (IPv4 `inet_ntoa`) or " mask %i" (IPv6 prefix).
    #[test]
    fn thresholds_persistent_conn_and_masks_match_ipvsadm() {
        let mut v = sample();
        v[0].persistent = Some(crate::status::Persistence {
            timeout_s: 600,
            netmask: "255.255.255.0".parse().unwrap(),
        });
        v[0].reals[0].u_threshold = 1000;
        v[0].reals[0].l_threshold = 800;
        v[0].reals[0].persistent = 4;
        v[2].persistent = Some(crate::status::Persistence {
            timeout_s: 300,
            netmask: "ffff:ffff:ffff:ffff::".parse().unwrap(),
        });
        let out = list(
            &v,
            ListOptions {
                format: ListFormat::Thresholds,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  198.18.2.1:80 mh (mh-port) persistent 600 mask 255.255.255.0
  -> 198.18.1.11:80               1000       800        0          0         
  -> 198.18.1.12:80               0          0          3          0         
UDP  198.18.2.1:53 mh
  -> 198.18.1.11:5353             0          0          0          0         
TCP  [2001:db8::1]:80 mh persistent 300 mask 64
  -> [2001:db8::11]:80            0          0          7          0         
";
        assert_eq!(out, want);
        let out = list(
            &v[..1],
            ListOptions {
                format: ListFormat::PersistentConn,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  198.18.2.1:80 mh (mh-port) persistent 600 mask 255.255.255.0
  -> 198.18.1.11:80               1         4           0          0         
  -> 198.18.1.12:80               1         0           3          0         
";
        assert_eq!(out, want);
    }

    /// ipvsadm 1.31 `--tun-info`: print_title's "Forward TunnelInfo    Weight ..." and the
    /// row "  -> %-28s %-7s %-13s %-6d %-10u %-10u" with `fwd_tun_info` ("ipip", or "n/a").
    #[test]
    fn tun_info_matches_ipvsadm() {
        let out = list(
            &sample(),
            ListOptions {
                format: ListFormat::TunInfo,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  198.18.2.1:80 mh (mh-port)
  -> 198.18.1.11:80               Route   n/a           1      0          0         
  -> 198.18.1.12:80               Route   n/a           1      3          0         
UDP  198.18.2.1:53 mh
  -> 198.18.1.11:5353             Masq    n/a           0      0          0         
TCP  [2001:db8::1]:80 mh
  -> [2001:db8::11]:80            Tunnel  ipip          2      7          0         
";
        assert_eq!(out, want);
    }

    /// print_largenum: "%9llu" under 10^8, then "%8lluK" (÷10^3) under 10^9, "%8lluM"
    /// (÷10^6) under 10^11, "%8lluG" (÷10^9) under 10^14, else "%8lluT" (÷10^12); with
    /// --exact "%*llu", width 9, or the digits + 1 past 8 digits.
    #[test]
    fn largenum_suffixes_and_exact() {
        let cases: [(u64, &str, &str); 8] = [
            (99_999_999, " 99999999", " 99999999"),
            (100_000_000, "  100000K", " 100000000"),
            (999_999_999, "  999999K", " 999999999"),
            (1_000_000_000, "    1000M", " 1000000000"),
            (99_999_999_999, "   99999M", " 99999999999"),
            (123_456_789_012, "     123G", " 123456789012"),
            (100_000_000_000_000, "     100T", " 100000000000000"),
            (u64::MAX, "18446744T", " 18446744073709551615"),
        ];
        for (n, scaled, exact) in cases {
            let mut out = String::new();
            largenum(&mut out, n, false);
            assert_eq!(out, scaled, "{n}");
            let mut out = String::new();
            largenum(&mut out, n, true);
            assert_eq!(out, exact, "{n} exact");
        }
    }

    /// `-L -c --persistent-conn`: ipvsadm 1.31's title adds "%-18s %-16s %s" for
    /// destination, "pe name" and "pe_data"; without a persistence engine the row is the
    /// plain one.
    #[test]
    fn conns_titles_with_and_without_persistent_conn() {
        assert_eq!(
            conns(&[], false, &Numeric),
            "IPVS connection entries\npro expire state       source             virtual            destination\n"
        );
        assert_eq!(
            conns(&[], true, &Numeric),
            "IPVS connection entries\npro expire state       source             virtual            destination        pe name          pe_data\n"
        );
    }

    #[test]
    fn stats_matches_ipvsadm() {
        let mut s = sample();
        s[0].stats = Stats {
            conns: 12,
            in_packets: 345,
            in_bytes: 123_456_789,
            out_packets: 0,
            out_bytes: 2_000_000_000_000,
        };
        let out = list(
            &s[..1],
            ListOptions {
                stats: true,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.2.1:80                      12      345        0  123456K    2000G
  -> 198.18.1.11:80                      0        0        0        0        0
  -> 198.18.1.12:80                      0        0        0        0        0
";
        assert_eq!(out, want);
        let out = list(
            &s[..1],
            ListOptions {
                stats: true,
                exact: true,
                ..Default::default()
            },
        );
        assert!(out.contains("TCP  198.18.2.1:80                      12      345        0 123456789 2000000000000\n"), "{out}");
    }

    /// Goldens printed from ipvsadm's own format strings (Distrotech/ipvsadm ipvsadm.c:
    /// `print_title` l.1407-1411 for the titles, `print_service_entry` l.1498-1504 for a
    /// service, all five through `print_largenum` l.1376-1397, and l.1553-1560 for a real,
    /// `"  -> %-28s %8u %8u %8u"` then two `print_largenum`), with printf's semantics: a
    /// number wider than its field pushes the columns after it.
    #[test]
    fn rate_matches_ipvsadm() {
        let mut s = sample();
        s[0].rates = Rates {
            cps: 12,
            in_pps: 345,
            out_pps: 0,
            in_bps: 123_456_789,
            out_bps: 2_000_000_000_000,
        };
        s[0].reals[0].rates = Rates {
            cps: 5,
            in_pps: 123_456_789,
            out_pps: 0,
            in_bps: 99_999_999,
            out_bps: 100_000_000,
        };
        let opts = ListOptions {
            format: ListFormat::Rate,
            ..Default::default()
        };
        let want = "\
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  198.18.2.1:80                      12      345        0  123456K    2000G
  -> 198.18.1.11:80                      5 123456789        0 99999999  100000K
  -> 198.18.1.12:80                      0        0        0        0        0
";
        assert_eq!(list(&s[..1], opts), want);
        // --exact widens what print_largenum prints; a real's CPS/InPPS/OutPPS (%8u) never
        // change.
        let want = "\
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  198.18.2.1:80                      12      345        0 123456789 2000000000000
  -> 198.18.1.11:80                      5 123456789        0 99999999 100000000
  -> 198.18.1.12:80                      0        0        0        0        0
";
        let exact = ListOptions {
            exact: true,
            ..opts
        };
        assert_eq!(list(&s[..1], exact), want);
        // With the version header of a full listing; --stats wins over --rate
        // (`print_title` tests FMT_STATS first).
        let full = list(
            &s[..1],
            ListOptions {
                header: true,
                ..opts
            },
        );
        assert!(full.starts_with(&format!(
            "{HEADER}\nProt LocalAddress:Port                 CPS"
        )));
        let both = list(
            &s[..1],
            ListOptions {
                stats: true,
                ..opts
            },
        );
        assert!(
            both.starts_with("Prot LocalAddress:Port               Conns"),
            "{both}"
        );
    }

    /// A names table for tests: nothing system-wide, no network.
    struct Named;

    impl Names for Named {
        fn host(&self, ip: IpAddr) -> Option<String> {
            match ip.to_string().as_str() {
                "198.18.2.1" => Some("vip.example.test".into()),
                "198.18.1.11" => Some("a-rather-long-real-server-name.example.test".into()),
                "2001:db8::11" => Some("real6.example.test".into()),
                _ => None,
            }
        }
        fn service(&self, port: u16, proto: Proto) -> Option<String> {
            match (port, proto) {
                (80, Proto::Tcp) => Some("http".into()),
                (53, Proto::Udp) => Some("domain".into()),
                _ => None,
            }
        }
        fn addr_of(&self, _: &str) -> Option<std::net::Ipv4Addr> {
            None
        }
        fn port_of(&self, _: &str, _: Proto) -> Option<u16> {
            None
        }
    }

    /// Without -n: `addrport_to_anyname` names host and port ("%s:%s", IPv6 in brackets);
    /// `print_service_entry` cuts an IPv4 service at 33 characters and an IPv4 real at 28
    /// (`svc_name[33]`, `dname[28]`), never an IPv6 one; "  -> %-28s %-7s %-6d %-10u %-10u".
    #[test]
    fn list_names_hosts_and_ports_without_numeric() {
        let out = super::list(&sample(), ListOptions::default(), &Named);
        let want = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  vip.example.test:http mh (mh-port)
  -> a-rather-long-real-server-na Route   1      0          0         
  -> 198.18.1.12:http             Route   1      3          0         
UDP  vip.example.test:domain mh
  -> a-rather-long-real-server-na Masq    0      0          0         
TCP  [2001:db8::1]:http mh
  -> [real6.example.test]:http    Tunnel  2      7          0         
";
        assert_eq!(out, want);
    }

    /// `print_conn`: "%-3s %-6s %-11s %-18s %-18s %s", each address through
    /// `addrport_to_anyname`.
    #[test]
    fn conns_named_and_numeric() {
        let c = ListedConn {
            proto: "TCP",
            expire_s: 61,
            state: "ESTABLISHED",
            source: ep("198.18.0.1", 40000),
            virt: ep("198.18.2.1", 80),
            dest: ep("198.18.1.12", 80),
            mode: ForwardMode::Dr,
        };
        let head = "IPVS connection entries\npro expire state       source             virtual            destination\n";
        assert_eq!(
            conns(std::slice::from_ref(&c), false, &Numeric),
            format!(
                "{head}TCP 01:01  ESTABLISHED 198.18.0.1:40000   198.18.2.1:80      198.18.1.12:80\n"
            )
        );
        assert_eq!(
            conns(&[c], false, &Named),
            format!(
                "{head}TCP 01:01  ESTABLISHED 198.18.0.1:40000   vip.example.test:http 198.18.1.12:http\n"
            )
        );
    }

    /// A 33-character IPv4 service name is cut; an IPv6 one is not (ipvsadm's
    /// `if (se->af != AF_INET6) svc_name[33] = '\0'`).
    #[test]
    fn cuts_apply_to_ipv4_only() {
        let named = |ip: &str, port| {
            svc_name(
                &ServiceAddr {
                    proto: Proto::Tcp,
                    vip: ep(ip, port),
                },
                &Named,
            )
        };
        assert_eq!(
            named("198.18.1.11", 8080),
            "TCP  a-rather-long-real-server-na"
        );
        assert_eq!(named("198.18.1.11", 8080).len(), 33);
        assert_eq!(
            named("2001:db8::11", 65535),
            "TCP  [real6.example.test]:65535"
        );
        assert_eq!(
            real_name(
                &ep("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                Proto::Tcp,
                &Numeric
            ),
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "not cut at 28"
        );
    }

    #[test]
    fn empty_list_still_has_titles() {
        let out = list(
            &[],
            ListOptions {
                header: true,
                ..Default::default()
            },
        );
        assert_eq!(out.lines().count(), 3);
    }

    #[test]
    fn counters_lists_every_name_once() {
        let mut values = vec![0u64; Counter::SLOTS as usize];
        values[Counter::RX.0 as usize] = 5;
        values[Drop::NoReal.counter().0 as usize] = 2;
        let out = counters(&Counters::from_slots(&values));
        assert!(out.starts_with("rx 5\ntx 0\n"));
        assert!(out.contains("\ndrop_no_real 2\n"));
        assert!(out.contains("\npass_not_vip 0\n"));
        let n = Counter::EVENTS.len() + Pass::ALL.len() + Drop::ALL.len();
        assert_eq!(out.lines().count(), n);
    }
}
