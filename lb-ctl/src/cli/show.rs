//! Output shaped exactly like ipvsadm's (`-L -n`, `--stats`, `--exact`) and the counters
//! listing. Pure formatting of already-gathered values ([`crate::status`]); column widths are ipvsadm's own
//! (`print_title`, `print_service_entry` and `print_largenum` in ipvsadm.c).

use crate::cli::ipvsadm::ListFormat;
use crate::ipvs::model::{Endpoint, ServiceAddr};
use crate::status::{Counters, ListedConn, ListedService, Stats};
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

/// ipvsadm's service column: "TCP  VIP:PORT", cut at 33 characters for IPv4.
fn svc_name(a: &ServiceAddr) -> String {
    let mut s = format!("{}  {}", a.proto.name(), a.vip);
    if a.vip.ip.is_ipv4() {
        s.truncate(33);
    }
    s
}

/// ipvsadm's real column, cut at 28 characters for IPv4.
fn real_name(e: &Endpoint) -> String {
    let mut s = e.to_string();
    if e.ip.is_ipv4() {
        s.truncate(28);
    }
    s
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

/// `-L -n` / `-L -n --stats` output.
pub fn list(services: &[ListedService], opts: ListOptions) -> String {
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
    } else {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    }
    for s in services {
        if opts.stats {
            let _ = write!(out, "{:<33}", svc_name(&s.addr));
            traffic(&mut out, &s.stats, opts.exact);
            for r in &s.reals {
                let _ = write!(out, "  -> {:<28}", real_name(&r.ep));
                traffic(&mut out, &r.stats, opts.exact);
            }
        } else {
            let _ = write!(out, "{} {}", svc_name(&s.addr), s.sched);
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
                        real_name(&r.ep),
                        r.u_threshold,
                        r.l_threshold,
                        r.active,
                        r.inactive
                    ),
                    ListFormat::PersistentConn => writeln!(
                        out,
                        "  -> {:<28} {:<9} {:<11} {:<10} {:<10}",
                        real_name(&r.ep),
                        r.weight,
                        r.persistent,
                        r.active,
                        r.inactive
                    ),
                    ListFormat::Plain => writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                        real_name(&r.ep),
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
pub fn conns(list: &[ListedConn], persistent_conn: bool) -> String {
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
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto, expire, c.state, c.source, c.virt, c.dest
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
    use crate::ipvs::model::Proto;
    use crate::status::{ListedNeighbour, ListedReal, sort};
    use lb_common::{Counter, Drop, ForwardMode, Pass};

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
                reals: vec![real("198.18.1.11", 5353, ForwardMode::Nat, 0, 0)],
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
                reals: vec![real("2001:db8::11", 80, ForwardMode::Tun, 2, 7)],
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
                reals: vec![
                    real("198.18.1.12", 80, ForwardMode::Dr, 1, 3),
                    real("198.18.1.11", 80, ForwardMode::Dr, 1, 0),
                ],
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
