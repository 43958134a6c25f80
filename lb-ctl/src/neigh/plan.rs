//! The neighbour follower's decisions, pure: which followed reals a neighbour entry is the
//! next hop of, and how a stored real changes for a next hop (whether an entry's MAC is
//! usable at all is [`Neighbour::usable_mac`]). No I/O, no clock: [`super::follow`] feeds it what netlink and the maps say.

use crate::ipvs::model::real_ip;
use crate::nexthop::NextHop;
use crate::rtnl::Neighbour;
use lb_common::{Real, RealFlags};
use std::net::IpAddr;

/// A real the follower watches: which real it is (slot, generation, address) and its route
/// as last resolved (`None`: no route yet, resolved again at each tick).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Followed {
    /// REALS slot.
    pub id: u32,
    /// The slot's generation when the real was read.
    pub generation: u16,
    /// The real's address.
    pub addr: IpAddr,
    /// Its next hop (the MAC as stored in the real, if it has one).
    pub route: Option<NextHop>,
}

impl Followed {
    /// What the follower first knows of a stored real: its identity only (route to resolve).
    pub fn of(id: u32, r: &Real) -> Followed {
        Followed {
            id,
            generation: r.generation,
            addr: real_ip(r),
            route: None,
        }
    }

    /// Whether `r`, read from the slot now, is still the real this was made for: configured,
    /// same generation (not deleted and its id given to another) and same address. What was
    /// made for another real is never written over it.
    pub fn is(&self, r: &Real) -> bool {
        r.flags.has(RealFlags::ACTIVE) && r.generation == self.generation && real_ip(r) == self.addr
    }

    /// Whether neighbour entry `n` is this real's next hop.
    pub fn next_hop_is(&self, n: &Neighbour) -> bool {
        self.route
            .as_ref()
            .is_some_and(|nh| nh.ifindex == n.ifindex && nh.neighbour_of(self.addr) == n.addr)
    }
}

/// The followed reals whose next hop `n` is and that it gives a MAC: (index into
/// `followed`, the next hop with that MAC). A neighbour without a usable MAC (INCOMPLETE,
/// FAILED, deleted) touches none: a real keeps its last MAC, as IPVS keeps trying a dest
/// whose neighbour failed.
pub fn touched(followed: &[Followed], n: &Neighbour) -> Vec<(usize, NextHop)> {
    let Some(mac) = n.usable_mac() else {
        return Vec::new();
    };
    followed
        .iter()
        .enumerate()
        .filter(|(_, f)| f.next_hop_is(n))
        .filter_map(|(i, f)| {
            let mut nh = f.route.clone()?;
            nh.dst_mac = Some(mac);
            Some((i, nh))
        })
        .collect()
}

/// `r` with its way out taken from `nh`: interface, egress MAC, the tunnel source when
/// `nh` has one of the real's family, and the next hop's MAC (`None`: kept, and the real
/// `NO_NEIGHBOUR`). Only these fields: weight, mode and thresholds are the operator's and
/// stay as they are in the slot now. `None` when nothing would change.
pub fn rewrite(r: &Real, nh: &NextHop) -> Option<Real> {
    let mut w = *r;
    w.ifindex = nh.ifindex;
    w.src_mac = nh.src_mac;
    let family_v4 = real_ip(r).is_ipv4();
    if let Some(local) = nh.local_addr.filter(|a| a.is_ipv4() == family_v4) {
        w.local_addr = lb_common::addr::convert::to_raw(local).0;
    }
    let flags = match nh.dst_mac {
        Some(mac) => {
            w.dst_mac = mac;
            r.flags.0 & !RealFlags::NO_NEIGHBOUR
        }
        None => r.flags.0 | RealFlags::NO_NEIGHBOUR,
    };
    w.flags = RealFlags(flags);
    (w != *r).then_some(w)
}

/// Whether two reads of a real have the same way out (interface, MACs, resolved or not):
/// the follower writes only over what it read, so a concurrent `-e` is never undone.
pub fn same_way_out(a: &Real, b: &Real) -> bool {
    a.ifindex == b.ifindex
        && a.dst_mac == b.dst_mac
        && a.src_mac == b.src_mac
        && unresolved(a) == unresolved(b)
        && a.local_addr == b.local_addr
}

/// Whether the stored real still waits for its next hop's MAC.
pub fn unresolved(r: &Real) -> bool {
    r.flags.has(RealFlags::NO_NEIGHBOUR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::addr::convert::to_raw;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn real(ip: &str, generation: u16, flags: u16, dst_mac: [u8; 6]) -> Real {
        let (addr, family) = to_raw(ip.parse().unwrap());
        Real {
            addr,
            family,
            generation,
            flags: RealFlags(RealFlags::ACTIVE | flags),
            weight: 3,
            ifindex: 2,
            src_mac: SRC,
            dst_mac,
            ..Real::default()
        }
    }

    fn nh(gateway: Option<&str>) -> NextHop {
        NextHop {
            ifindex: 2,
            ifname: "d0".into(),
            local_addr: Some("198.18.0.1".parse().unwrap()),
            src_mac: SRC,
            dst_mac: None,
            gateway: gateway.map(|g| g.parse().unwrap()),
        }
    }

    fn followed(id: u32, ip: &str, route: Option<NextHop>) -> Followed {
        Followed {
            id,
            generation: 1,
            addr: ip.parse().unwrap(),
            route,
        }
    }

    fn neigh(ifindex: u32, ip: &str, mac: Option<[u8; 6]>, state: u16) -> Neighbour {
        Neighbour {
            ifindex,
            addr: ip.parse().unwrap(),
            mac,
            state,
        }
    }

    #[test]
    fn a_neighbour_touches_the_reals_it_is_next_hop_of() {
        let on_link = followed(1, "198.18.0.2", Some(nh(None)));
        let behind_gw = followed(2, "198.18.9.5", Some(nh(Some("198.18.0.2"))));
        let other = followed(3, "198.18.0.3", Some(nh(None)));
        let unrouted = followed(4, "198.18.0.2", None);
        let all = [on_link, behind_gw, other, unrouted];
        let got = touched(&all, &neigh(2, "198.18.0.2", Some(MAC_A), 0x02));
        let ids: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            ids,
            vec![0, 1],
            "the real itself and the real behind it as gateway"
        );
        assert!(got.iter().all(|(_, nh)| nh.dst_mac == Some(MAC_A)));
        // Same address on another interface: not the next hop.
        assert!(touched(&all, &neigh(3, "198.18.0.2", Some(MAC_A), 0x02)).is_empty());
        // FAILED keeps the last MAC: nothing written.
        assert!(touched(&all, &neigh(2, "198.18.0.2", Some(MAC_A), 0x20)).is_empty());
    }

    #[test]
    fn rewrite_clears_the_flag_and_keeps_the_operators_fields() {
        let r = real("198.18.0.2", 1, RealFlags::NO_NEIGHBOUR, [0; 6]);
        let mut to = nh(None);
        to.dst_mac = Some(MAC_A);
        let w = rewrite(&r, &to).unwrap();
        assert_eq!(w.dst_mac, MAC_A);
        assert_eq!(w.flags.0, RealFlags::ACTIVE);
        assert_eq!((w.weight, w.generation), (3, 1));
        // Already so: nothing to write.
        assert_eq!(rewrite(&w, &to), None);
        // A changed MAC is written.
        to.dst_mac = Some(MAC_B);
        assert_eq!(rewrite(&w, &to).unwrap().dst_mac, MAC_B);
        // WAS_NAT survives.
        let nat = real("198.18.0.2", 1, RealFlags::WAS_NAT, MAC_A);
        assert_eq!(
            rewrite(&nat, &to).unwrap().flags.0,
            RealFlags::ACTIVE | RealFlags::WAS_NAT
        );
    }

    #[test]
    fn a_route_found_later_is_written_still_unresolved() {
        let mut r = real("198.18.0.2", 1, RealFlags::NO_NEIGHBOUR, [0; 6]);
        r.ifindex = 0;
        r.src_mac = [0; 6];
        let w = rewrite(&r, &nh(None)).unwrap();
        assert_eq!((w.ifindex, w.src_mac), (2, SRC));
        assert!(unresolved(&w));
        assert_eq!(w.local_addr, to_raw("198.18.0.1".parse().unwrap()).0);
        // A v4 source is not a v6 real's tunnel source.
        let mut r6 = real("2001:db8::2", 1, RealFlags::NO_NEIGHBOUR, [0; 6]);
        r6.ifindex = 0;
        assert_eq!(rewrite(&r6, &nh(None)).unwrap().local_addr, r6.local_addr);
    }

    #[test]
    fn a_way_out_changed_by_another_is_not_the_same() {
        let r = real("198.18.0.2", 1, 0, MAC_A);
        assert!(
            same_way_out(&r, &Real { weight: 9, ..r }),
            "weight is not the way out"
        );
        assert!(!same_way_out(
            &r,
            &Real {
                dst_mac: MAC_B,
                ..r
            }
        ));
        assert!(!same_way_out(&r, &Real { ifindex: 3, ..r }));
        let flagged = real("198.18.0.2", 1, RealFlags::NO_NEIGHBOUR, MAC_A);
        assert!(!same_way_out(&r, &flagged));
    }

    #[test]
    fn only_the_same_real_is_written() {
        let f = followed(1, "198.18.0.2", None);
        assert!(f.is(&real("198.18.0.2", 1, 0, MAC_A)));
        assert!(
            !f.is(&real("198.18.0.2", 2, 0, MAC_A)),
            "id given to another"
        );
        assert!(!f.is(&real("198.18.0.3", 1, 0, MAC_A)), "another address");
        let mut gone = real("198.18.0.2", 1, 0, MAC_A);
        gone.flags = RealFlags(0);
        assert!(!f.is(&gone), "deleted");
    }
}
