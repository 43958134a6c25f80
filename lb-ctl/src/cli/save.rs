//! `-S` / `--save`: the table as ipvsadm commands, one per line, that `-R` reads back.
//!
//! The words and their order are ipvsadm's (ipvsadm.c `print_service_entry` with
//! `FMT_RULE`, and `print_tunnel_rule` of 1.31): `-A -t|-u VIP:PORT -s SCHED [-b FLAGS]
//! [-p TIMEOUT [-M MASK]] [-o]`, then per real `-a -t|-u VIP:PORT -r RIP:PORT -g|-i|-m -w
//! WEIGHT`, with `--tun-type ipip` after a tunnel real's weight. Where ipvsadm would lose
//! something lb keeps, lb appends it in the same syntax so `-S | -R` round-trips: `-x`/`-y`
//! on a real with thresholds, `--persist-group` and `--mh-size` on a service. A one-packet
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
        let _ = write!(out, "-A {svc} -s {}", s.sched);
        if !s.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", s.sched_flags.join(","));
        }
        if let Some(p) = &s.persistent {
            let _ = write!(out, " -p {}", p.timeout_s);
            if let Some(m) = mask_word(p.netmask) {
                let _ = write!(out, " -M {m}");
            }
        }
        if s.one_packet {
            out.push_str(" -o");
        }
        // lb's own: the first service of the same group written before this one names it.
        if let Some(first) = services[..i]
            .iter()
            .find(|t| t.persist_group == s.persist_group && t.addr.proto == s.addr.proto)
        {
            let _ = write!(
                out,
                " --persist-group {}",
                addrport(&first.addr.vip, first.addr.proto, names)
            );
        }
        if let Some(n) = s.mh_size {
            let _ = write!(out, " --mh-size {n}");
        }
        out.push('\n');
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
    }
    out
}
