//! `-S` / `--save`: the table as ipvsadm commands, one per line, that `-R` reads back.
//!
//! The words and their order are ipvsadm's (ipvsadm.c `print_service_entry` with
//! `FMT_RULE`, and `print_tunnel_rule` of 1.31): `-A -t|-u VIP:PORT -s SCHED
//! [-p TIMEOUT [-M MASK]] [-o] [-b FLAGS]`, then per real `-a -t|-u VIP:PORT -r RIP:PORT -g|-i|-m -w
//! WEIGHT`, with `--tun-type ipip` after a tunnel real's weight. Where ipvsadm would lose
//! something lb keeps, lb appends it in the same syntax so `-S | -R` round-trips: `-x`/`-y`
//! on a real with thresholds, `--persist-group` on a service, and a Maglev table size as
//! an `-E` of the service with `--mh-size` after its reals (lb keeps the size in the
//! table the reals fill, so it is given once they are there). A one-packet
//! service is written `-o`, the option `-R` reads (ipvsadm 1.26 wrote ` ops`, which its own
//! parser refuses).

use crate::cli::names::{Names, addrport};
use crate::status::ListedService;
use lb_common::ForwardMode;
use std::fmt::Write as _;
use std::net::IpAddr;

/// ipvsadm's `fwd_switch`.
fn fwd_switch(m: ForwardMode) -> &'static str {
    match m {
        ForwardMode::Dr => "-g",
        ForwardMode::Tun => "-i",
        ForwardMode::Nat => "-m",
    }
}

/// The `-M` word of a persistent service: a dotted mask (IPv4) or a prefix length
/// (IPv6), only when not all-ones.
fn mask_word(mask: IpAddr) -> Option<String> {
    match mask {
        IpAddr::V4(a) if u32::from(a) != u32::MAX => Some(a.to_string()),
        IpAddr::V6(a) if u128::from(a) != u128::MAX => {
            Some(u128::from(a).leading_ones().to_string())
        }
        _ => None,
    }
}

/// The rules of `services`, in the order given (sorted, as ipvsadm's `list_all`).
pub fn rules(services: &[ListedService], names: &dyn Names) -> String {
    let mut out = String::new();
    for (i, s) in services.iter().enumerate() {
        let svc = format!(
            "{} {}",
            s.addr.proto.flag(),
            addrport(&s.addr.vip, s.addr.proto, names)
        );
        let mut line = format!("{svc} -s {}", s.sched);
        if let Some(p) = &s.persistent {
            let _ = write!(line, " -p {}", p.timeout_s);
            if let Some(m) = mask_word(p.netmask) {
                let _ = write!(line, " -M {m}");
            }
        }
        if s.one_packet {
            line.push_str(" -o");
        }
        // ipvsadm writes the scheduler flags last (after -p, -M, --pe and -o).
        if !s.sched_flags.is_empty() {
            let _ = write!(line, " -b {}", s.sched_flags.join(","));
        }
        // lb's own: the first service of the same group written before this one names it.
        if let Some(first) = services[..i]
            .iter()
            .find(|t| t.persist_group == s.persist_group && t.addr.proto == s.addr.proto)
        {
            let _ = write!(
                line,
                " --persist-group {}",
                addrport(&first.addr.vip, first.addr.proto, names)
            );
        }
        let _ = writeln!(out, "-A {line}");
        for r in &s.reals {
            let _ = write!(
                out,
                "-a {svc} -r {} {} -w {}",
                addrport(&r.ep, s.addr.proto, names),
                fwd_switch(r.mode),
                r.weight
            );
            if r.mode == ForwardMode::Tun {
                out.push_str(" --tun-type ipip");
            }
            if r.u_threshold != 0 {
                let _ = write!(out, " -x {}", r.u_threshold);
            }
            if r.l_threshold != 0 {
                let _ = write!(out, " -y {}", r.l_threshold);
            }
            out.push('\n');
        }
        if let Some(n) = s.mh_size {
            let _ = writeln!(out, "-E {line} --mh-size {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::names::Numeric;
    use crate::ipvs::model::{Endpoint, Proto, ServiceAddr};
    use crate::status::{ListedNeighbour, ListedReal, Persistence, Rates, Stats};

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn real(ip: &str, port: u16, mode: ForwardMode, weight: u32) -> ListedReal {
        ListedReal {
            ep: ep(ip, port),
            mode,
            weight,
            active: 0,
            inactive: 0,
            persistent: 0,
            u_threshold: 0,
            l_threshold: 0,
            stats: Stats::default(),
            rates: Rates::default(),
            neighbour: ListedNeighbour::default(),
        }
    }

    fn svc(proto: Proto, ip: &str, port: u16, sched: &'static str, id: u32) -> ListedService {
        ListedService {
            addr: ServiceAddr {
                proto,
                vip: ep(ip, port),
            },
            sched,
            sched_flags: vec![],
            persistent: None,
            one_packet: false,
            stats: Stats::default(),
            rates: Rates::default(),
            reals: vec![],
            persist_group: id,
            mh_size: None,
        }
    }

    /// Each golden line is ipvsadm.c `print_service_entry`'s FMT_RULE output, built from
    /// its format strings: the service "-A %s -s %s" (svc_name "%s %s": "-t"/"-u" and
    /// `addrport_to_anyname`), " -p %u", " -M %s" (`inet_ntoa`) or " -M %i" (IPv6 prefix),
    /// " -o", then " -b " and the flags (1.31 l.2001-2015); each real "-a %s -r %s %s -w %d" (`fwd_switch`), a tunnel
    /// real through 1.31's `print_tunnel_rule` ("... -w %d --tun-type %s").
    #[test]
    fn rules_are_ipvsadms_save_lines() {
        let mut dr = svc(Proto::Tcp, "198.18.2.1", 80, "wlc", 0);
        dr.reals = vec![
            real("198.18.1.11", 80, ForwardMode::Dr, 1),
            real("198.18.1.12", 80, ForwardMode::Dr, 3),
        ];
        let mut persist = svc(Proto::Tcp, "198.18.2.1", 443, "sh", 1);
        persist.sched_flags = vec!["sh-fallback", "sh-port"];
        persist.persistent = Some(Persistence {
            timeout_s: 600,
            netmask: "255.255.255.0".parse().unwrap(),
        });
        persist.reals = vec![real("198.18.1.11", 443, ForwardMode::Tun, 0)];
        let mut nat = svc(Proto::Udp, "198.18.2.3", 53, "rr", 2);
        nat.one_packet = true;
        nat.reals = vec![real("198.18.1.13", 5353, ForwardMode::Nat, 65535)];
        let mut v6 = svc(Proto::Tcp, "2001:db8:2::1", 80, "mh", 3);
        v6.sched_flags = vec!["mh-port"];
        v6.persistent = Some(Persistence {
            timeout_s: 300,
            netmask: "ffff:ffff:ffff:ffff::".parse().unwrap(),
        });
        v6.reals = vec![
            real("2001:db8:1::11", 80, ForwardMode::Dr, 1),
            real("2001:db8:1::12", 80, ForwardMode::Tun, 2),
        ];
        let mut v6_full_mask = svc(Proto::Udp, "2001:db8:2::2", 0, "wrr", 4);
        v6_full_mask.persistent = Some(Persistence {
            timeout_s: 60,
            netmask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        });
        let out = rules(&[dr, persist, nat, v6, v6_full_mask], &Numeric);
        let want = "\
-A -t 198.18.2.1:80 -s wlc
-a -t 198.18.2.1:80 -r 198.18.1.11:80 -g -w 1
-a -t 198.18.2.1:80 -r 198.18.1.12:80 -g -w 3
-A -t 198.18.2.1:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 198.18.2.1:443 -r 198.18.1.11:443 -i -w 0 --tun-type ipip
-A -u 198.18.2.3:53 -s rr -o
-a -u 198.18.2.3:53 -r 198.18.1.13:5353 -m -w 65535
-A -t [2001:db8:2::1]:80 -s mh -p 300 -M 64 -b mh-port
-a -t [2001:db8:2::1]:80 -r [2001:db8:1::11]:80 -g -w 1
-a -t [2001:db8:2::1]:80 -r [2001:db8:1::12]:80 -i -w 2 --tun-type ipip
-A -u [2001:db8:2::2]:0 -s wrr -p 60
";
        assert_eq!(out, want);
    }

    #[test]
    fn lbs_extras_follow_in_the_same_syntax() {
        // What ipvsadm's save line cannot hold, appended so -S | -R loses nothing.
        let mut http = svc(Proto::Tcp, "198.18.2.1", 80, "mh", 7);
        http.persistent = Some(Persistence {
            timeout_s: 300,
            netmask: "255.255.255.255".parse().unwrap(),
        });
        http.mh_size = Some(251);
        let mut r = real("198.18.1.11", 80, ForwardMode::Dr, 1);
        (r.u_threshold, r.l_threshold) = (100, 50);
        http.reals = vec![r];
        let mut https = svc(Proto::Tcp, "198.18.2.1", 443, "mh", 9);
        https.persistent = http.persistent;
        https.persist_group = 7;
        let mut other_proto = svc(Proto::Udp, "198.18.2.1", 443, "rr", 10);
        other_proto.persist_group = 7;
        let out = rules(&[http, https, other_proto], &Numeric);
        let want = "\
-A -t 198.18.2.1:80 -s mh -p 300
-a -t 198.18.2.1:80 -r 198.18.1.11:80 -g -w 1 -x 100 -y 50
-E -t 198.18.2.1:80 -s mh -p 300 --mh-size 251
-A -t 198.18.2.1:443 -s mh -p 300 --persist-group 198.18.2.1:80
-A -u 198.18.2.1:443 -s rr
";
        assert_eq!(out, want);
    }

    /// Without -n, `addrport_to_anyname` names the host and the port ("%s:%s").
    #[test]
    fn names_without_numeric() {
        struct Names1;
        impl Names for Names1 {
            fn host(&self, ip: IpAddr) -> Option<String> {
                (ip == "198.18.2.1".parse::<IpAddr>().unwrap()).then(|| "vip.example.test".into())
            }
            fn service(&self, port: u16, proto: Proto) -> Option<String> {
                (port == 80 && proto == Proto::Tcp).then(|| "http".into())
            }
            fn addr_of(&self, _: &str) -> Option<std::net::Ipv4Addr> {
                None
            }
            fn port_of(&self, _: &str, _: Proto) -> Option<u16> {
                None
            }
        }
        let mut s = svc(Proto::Tcp, "198.18.2.1", 80, "rr", 0);
        s.reals = vec![real("198.18.1.11", 8080, ForwardMode::Nat, 1)];
        assert_eq!(
            rules(&[s], &Names1),
            "-A -t vip.example.test:http -s rr\n-a -t vip.example.test:http -r 198.18.1.11:8080 -m -w 1\n"
        );
    }
}
