//! Locality-based schedulers: lblc (ip_vs_lblc.c) and lblcr (ip_vs_lblcr.c), keyed by
//! the packet's destination address (for a VIP service: the VIP).

use super::{Conn, Dest};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `__ip_vs_lblc_schedule` (also lblcr's `__ip_vs_lblcr_schedule`): weighted least
/// connection; the first dest not overloaded with weight > 0 starts, later ones (not
/// overloaded) replace it when `loh * w > doh * w(least)`.
pub fn wlc_like(dests: &[Dest]) -> Option<usize> {
    let first = dests.iter().position(|d| !d.overloaded && d.weight > 0)?;
    let (mut least, mut loh) = (first, dests[first].overhead());
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.overloaded {
            continue;
        }
        let doh = d.overhead();
        if loh * d.weight as i64 > doh * dests[least].weight as i64 {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// lblc's `is_overloaded`: more active connections than weight while some dest has
/// fewer than half its weight.
fn lblc_overloaded(d: &Dest, dests: &[Dest]) -> bool {
    d.active as i64 > d.weight as i64
        && dests
            .iter()
            .any(|o| (o.active as i64) * 2 < o.weight as i64)
}

/// `ip_vs_lblc_schedule`.
pub fn lblc(dests: &[Dest], t: &mut BTreeMap<IpAddr, usize>, c: &Conn) -> Option<usize> {
    if let Some(&d) = t.get(&c.vip)
        && d < dests.len()
        && dests[d].weight > 0
        && !lblc_overloaded(&dests[d], dests)
    {
        return Some(d);
    }
    let d = wlc_like(dests)?;
    t.insert(c.vip, d);
    Some(d)
}

/// lblcr: the set's least-loaded member (`ip_vs_dest_set_min`), a new member when it is
/// missing or overloaded (`is_overloaded` as lblc), set shrinking is time-based
/// (`sysctl_lblcr_expiration`) and not modelled.
pub fn lblcr(dests: &[Dest], t: &mut BTreeMap<IpAddr, Vec<usize>>, c: &Conn) -> Option<usize> {
    let set = t.entry(c.vip).or_default();
    // ip_vs_dest_set_min: the first member not overloaded with weight > 0, then later
    // members replace it by weighted overhead.
    let min = {
        let mut least: Option<(usize, i64)> = None;
        for &m in set.iter() {
            let d = &dests[m];
            if d.overloaded {
                continue;
            }
            match least {
                None if d.weight > 0 => least = Some((m, d.overhead())),
                None => {}
                Some((l, loh)) => {
                    let doh = d.overhead();
                    if loh * d.weight as i64 > doh * dests[l].weight as i64 {
                        least = Some((m, doh));
                    }
                }
            }
        }
        least.map(|(m, _)| m)
    };
    if let Some(m) = min
        && !lblc_overloaded(&dests[m], dests)
    {
        return Some(m);
    }
    let d = wlc_like(dests)?;
    // ip_vs_dest_set_insert: list_add_rcu, the newest member first.
    if !set.contains(&d) {
        set.insert(0, d);
    }
    Some(d)
}
