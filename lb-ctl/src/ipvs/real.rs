//! Planning changes to real servers (ipvsadm `-a`, `-e`, `-d`): pure functions from a
//! [`Snapshot`], a request and a next-hop resolver to the ordered map writes.
//!
//! Everything that can be checked against the snapshot is checked before the resolver is
//! called (it may send a datagram to trigger ARP), and nothing is written unless the whole
//! plan was built.

use crate::ipvs::model::{
    Endpoint, Filter, ModelError, Op, RealRef, RealSpec, ServiceAddr, Snapshot, check_unicast,
    check_weight, effective_port, real_endpoint, real_ip,
};
use crate::ipvs::service::{
    filter_cleanup, in_nat_filter, mh_size_of, nat_addrs, publish, slot_of, trash_ops, vip_addrs,
};
use crate::nexthop::{NextHop, NextHopError};
use lb_common::addr::convert;
use lb_common::consts::{MAX_REALS, MAX_REALS_PER_SERVICE};
use lb_common::{Be16, ForwardMode, Real, RealFlags, Service};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Resolves a real's next hop (see [`crate::nexthop::resolve`]); tests pass a fake.
pub type Resolver<'a> = dyn FnMut(IpAddr) -> Result<NextHop, NextHopError> + 'a;

/// The service a request names, checked against the real's family.
fn service_for(snap: &Snapshot, svc: &ServiceAddr, real: IpAddr) -> Result<Service, ModelError> {
    let s = snap.service(svc).ok_or(ModelError::NoSuchService(*svc))?;
    if svc.vip.ip.is_ipv4() != real.is_ipv4() {
        return Err(ModelError::FamilyMismatch {
            service: *svc,
            real,
        });
    }
    Ok(s)
}

/// The active real of service `svc_id` at `ep`.
fn find(snap: &Snapshot, svc_id: u32, ep: Endpoint) -> Option<(u32, Real)> {
    snap.reals_of(svc_id)
        .find(|(_, r)| real_endpoint(r) == ep)
        .copied()
}

/// The deleted real of `service` at `ep` still in its REALS slot (IPVS's
/// `ip_vs_trash_get_dest`: same service address, port and protocol, same real address
/// and port, by its REAL_TRASH record), the most recently deleted if several. A slot
/// since given to another real is active, or has that real's record or none (taking an
/// id clears its record), so it never matches.
fn revivable(snap: &Snapshot, service: &ServiceAddr, ep: Endpoint) -> Option<u32> {
    snap.trash()
        .filter(|(_, r, t)| t.service == *service && real_endpoint(r) == ep)
        .max_by_key(|(_, _, t)| t.stamp)
        .map(|(id, _, _)| id)
}

/// A free real id: never-used slots first (so a deleted real's id, which old flows may
/// still name, is reused as late as possible), then the inactive one deleted longest ago
/// (lowest [`crate::ipvs::model::Trashed`] stamp; a slot deleted without a record counts
/// as oldest).
fn alloc_id(snap: &Snapshot) -> Result<u32, ModelError> {
    let written: BTreeSet<u32> = snap.reals.iter().map(|(id, _)| *id).collect();
    if let Some(id) = (0..MAX_REALS).find(|i| !written.contains(i)) {
        return Ok(id);
    }
    snap.reals
        .iter()
        .filter(|(_, r)| !r.flags.has(RealFlags::ACTIVE))
        .map(|(id, _)| (snap.trashed.get(id).map_or(0, |t| t.stamp), *id))
        .min()
        .map(|(_, id)| id)
        .ok_or(ModelError::TooManyReals(MAX_REALS))
}

/// The generation a real added at an id gets (`Real::generation`): a slot never written
/// starts at 0; the same real revived from the trash keeps its slot's, so its connections
/// carry on; any other real given a deleted real's id gets the next one, so everything
/// that still names the old real (flows, templates, locality entries, cache slots, NAT
/// reverse entries) is stale and never reaches the new one.
fn generation_for(old_slot: Option<&Real>, revived: bool) -> u16 {
    match old_slot {
        None => 0,
        Some(o) if revived => o.generation,
        Some(o) => Real::next_gen(o.generation),
    }
}

/// Builds the stored form of a real.
fn make_real(
    spec: &RealSpec,
    svc_id: u32,
    port: u16,
    weight: u32,
    nh: &NextHop,
) -> Result<Real, ModelError> {
    let (addr, family) = convert::to_raw(spec.addr);
    let local = nh.local_addr.filter(|a| a.is_ipv4() == spec.addr.is_ipv4());
    // An unrouted real gets its source with its route, from the neighbour follower.
    if spec.mode == ForwardMode::Tun && local.is_none() && nh.routed() {
        return Err(ModelError::NoTunnelSource(spec.addr));
    }
    // A next hop that did not answer yet: stored, not sent to until the follower learns
    // its MAC (ipvsadm accepts a real that is down).
    let flags = match nh.dst_mac {
        Some(_) => RealFlags::ACTIVE,
        None => RealFlags::ACTIVE | RealFlags::NO_NEIGHBOUR,
    };
    Ok(Real {
        addr,
        local_addr: local.map(|a| convert::to_raw(a).0).unwrap_or_default(),
        port: Be16::from_host(port),
        mode: spec.mode as u8,
        family,
        flags: RealFlags(flags),
        // The caller's to set: the slot's, moved on or kept (`generation_for`).
        generation: 0,
        svc_id,
        weight,
        ifindex: nh.ifindex,
        dst_mac: nh.dst_mac.unwrap_or_default(),
        src_mac: nh.src_mac,
        u_threshold: spec.u_threshold,
        l_threshold: spec.l_threshold,
    })
}

/// IPVS refuses a lower threshold above the upper one (`-ERANGE` in ip_vs_add_dest /
/// ip_vs_edit_dest).
fn check_thresholds(spec: &RealSpec) -> Result<(), ModelError> {
    if spec.l_threshold > spec.u_threshold {
        return Err(ModelError::Thresholds {
            u: spec.u_threshold,
            l: spec.l_threshold,
        });
    }
    Ok(())
}

/// `-a`: add a real server to a service. A real deleted from the same service (by `-d`,
/// `-D` or `-C`) gets its old id back while no other real has taken it, so its
/// connections carry on, as IPVS takes the dest back from its trash; coming back as DR
/// or TUN after NAT (or WAS_NAT), it is marked `WAS_NAT` and keeps its NAT_FILTER bit.
/// A deleted real's id given to another real takes the old real's NAT_FILTER bit with
/// it, unless another real still needs it.
pub fn add(
    snap: &Snapshot,
    spec: &RealSpec,
    resolve: &mut Resolver<'_>,
) -> Result<Vec<Op>, ModelError> {
    let svc = service_for(snap, &spec.service, spec.addr)?;
    check_unicast(spec.addr)?;
    let weight = check_weight(spec.weight)?;
    check_thresholds(spec)?;
    let port = effective_port(spec.mode, spec.port, spec.service.vip.port);
    let ep = Endpoint {
        ip: spec.addr,
        port,
    };
    if find(snap, svc.id, ep).is_some() {
        return Err(ModelError::RealExists {
            service: spec.service,
            real: ep,
        });
    }
    let revived = revivable(snap, &spec.service, ep);
    let id = match revived {
        Some(id) => id,
        None => alloc_id(snap)?,
    };
    // What the slot held before: the deleted real revived, another deleted real whose id
    // is reused, or nothing.
    let old_slot = snap.reals.iter().find(|(i, _)| *i == id).map(|(_, r)| *r);
    let old_reals = snap.ordered_reals(svc.id);
    if old_reals.len() as u32 >= MAX_REALS_PER_SERVICE {
        return Err(ModelError::TooManyRealsInService(
            spec.service,
            MAX_REALS_PER_SERVICE,
        ));
    }
    let nh = resolve(spec.addr)?;
    let mut real = make_real(spec, svc.id, port, weight, &nh)?;
    real.generation = generation_for(old_slot.as_ref(), revived.is_some());
    // A revived real's connections carry on with the method they were created with: if
    // some may be NAT (the deleted real was NAT or WAS_NAT) and it comes back as DR or
    // TUN, it is WAS_NAT, as `-e` out of NAT makes it, so their replies keep the bit.
    if revived.is_some()
        && spec.mode != ForwardMode::Nat
        && old_slot.is_some_and(|o| in_nat_filter(&o))
    {
        real.flags = RealFlags(real.flags.0 | RealFlags::WAS_NAT);
    }

    // IPVS puts a new destination at the head of the service's list.
    let mut reals = vec![(id, real)];
    reals.extend(old_reals);
    let publish_ops = publish(
        snap,
        &spec.service,
        svc,
        next_gen(svc),
        &reals,
        mh_size_of(&svc),
    )?;

    let mut ops = vec![Op::ZeroRealStats(id)];
    if snap.trashed.contains_key(&id) {
        // Revived or given to another real: no longer in the trash (before the slot is
        // active again, so no active slot ever has a record).
        ops.push(Op::ClearTrash(id));
    }
    // The NAT bit before the slot: a revived real's older flows are forwarded as soon as
    // the slot is active, and their replies need the bit (as `-e` orders it).
    if in_nat_filter(&real) {
        let (w, m) = slot_of(spec.addr);
        ops.push(Op::FilterSet(Filter::Nat, w, m));
    }
    ops.push(Op::PutReal(id, real));
    // Another real's id: once the slot has the new generation, nothing of the old real
    // moves the id's counters any more; what it still counted (connections and templates
    // that now never expire on this id) is settled, so the new real starts from zero.
    // Before the publish: no packet can bind to the new real yet.
    if revived.is_none() && old_slot.is_some() {
        ops.push(Op::SettleConns(id));
    }
    if nh.routed() {
        ops.push(Op::AddTxPort(nh.ifindex));
    }
    ops.extend(publish_ops);
    // A deleted real's id given to another real: the old real's NAT_FILTER bit goes
    // unless another slot (or the new real) still needs it, and the VIP bit its trash
    // record kept goes unless a live service or another trashed real still needs it.
    if let Some(old) = old_slot.filter(in_nat_filter) {
        let mut keep = nat_addrs(snap, &[id]);
        if in_nat_filter(&real) {
            keep.push(spec.addr);
        }
        ops.extend(filter_cleanup(Filter::Nat, [real_ip(&old)], keep));
    }
    if revived.is_none()
        && let Some(t) = snap.trashed.get(&id)
    {
        let keep = vip_addrs(snap, &[id]);
        ops.extend(filter_cleanup(Filter::Vip, [t.service.vip.ip], keep));
    }
    Ok(ops)
}

/// `-e`: change a real's forwarding mode and weight (as ipvsadm, options not given take
/// their defaults). Its next hop is resolved again, which also refreshes its MACs. A new
/// mode applies to new connections only (IPVS binds a connection's transmitter when it is
/// created; the data path keeps each flow's method): a real leaving NAT keeps its
/// NAT_FILTER bit, marked `WAS_NAT`, so replies of its NAT connections are still
/// translated, until its id goes to another real (deleting it keeps the bit: its
/// connections live on, see [`delete`]).
pub fn edit(
    snap: &Snapshot,
    spec: &RealSpec,
    resolve: &mut Resolver<'_>,
) -> Result<Vec<Op>, ModelError> {
    let svc = service_for(snap, &spec.service, spec.addr)?;
    let weight = check_weight(spec.weight)?;
    check_thresholds(spec)?;
    let port = effective_port(spec.mode, spec.port, spec.service.vip.port);
    let ep = Endpoint {
        ip: spec.addr,
        port,
    };
    let (id, old) = find(snap, svc.id, ep).ok_or(ModelError::NoSuchReal {
        service: spec.service,
        real: ep,
    })?;
    let nh = resolve(spec.addr)?;
    let mut real = make_real(spec, svc.id, port, weight, &nh)?;
    real.generation = old.generation;
    // A next hop that stopped answering (FAILED) keeps its last MAC, as the neighbour
    // follower keeps it: IPVS also goes on sending to such a dest.
    if nh.dst_mac.is_none() && !old.flags.has(RealFlags::NO_NEIGHBOUR) && old.ifindex == nh.ifindex
    {
        real.dst_mac = old.dst_mac;
        real.flags = RealFlags(real.flags.0 & !RealFlags::NO_NEIGHBOUR);
    }

    let mut ops = Vec::new();
    if nh.routed() {
        ops.push(Op::AddTxPort(nh.ifindex));
    }
    let was_nat = old.mode == ForwardMode::Nat as u8;
    let is_nat = spec.mode == ForwardMode::Nat;
    if !is_nat && in_nat_filter(&old) {
        real.flags = RealFlags(real.flags.0 | RealFlags::WAS_NAT);
    }
    if is_nat && !was_nat {
        let (w, m) = slot_of(spec.addr);
        ops.push(Op::FilterSet(Filter::Nat, w, m));
    }
    ops.push(Op::PutReal(id, real));
    // IPVS's ip_vs_edit_dest calls the scheduler's `upd_dest` (wrr: dest_changed) on
    // any -e: the list generation moves even when only thresholds or the mode changed.
    if old.weight != weight {
        let reals: Vec<(u32, Real)> = snap
            .ordered_reals(svc.id)
            .into_iter()
            .map(|(i, r)| if i == id { (i, real) } else { (i, r) })
            .collect();
        ops.extend(publish(
            snap,
            &spec.service,
            svc,
            next_gen(svc),
            &reals,
            mh_size_of(&svc),
        )?);
    } else {
        ops.push(Op::PutService(spec.service.key(), next_gen(svc)));
    }
    Ok(ops)
}

/// `svc` with its next list generation: what IPVS's `add_dest` / `del_dest` / `upd_dest`
/// tell the scheduler (see `Service::list_gen_le`).
fn next_gen(svc: Service) -> Service {
    svc.with_next_list_gen()
}

/// `-d`: remove a real from its service. The new table is published first; only then is
/// the real marked inactive (flows still on it then meet `expire_nodest_conn`; its other
/// fields stay), and its [`crate::ipvs::model::Trashed`] record, which `-a` revives it by,
/// goes into REAL_TRASH. A NAT (or WAS_NAT) real keeps its NAT_FILTER bit: the replies
/// of its connections are still translated while they live, as IPVS's (the bit goes when
/// the id is given to another real, [`add`]).
pub fn delete(snap: &Snapshot, rref: &RealRef) -> Result<Vec<Op>, ModelError> {
    let svc = service_for(snap, &rref.service, rref.addr)?;
    let ep = Endpoint {
        ip: rref.addr,
        port: rref.port.unwrap_or(rref.service.vip.port),
    };
    let (id, old) = find(snap, svc.id, ep).ok_or(ModelError::NoSuchReal {
        service: rref.service,
        real: ep,
    })?;
    let reals: Vec<(u32, Real)> = snap
        .ordered_reals(svc.id)
        .into_iter()
        .filter(|(i, _)| *i != id)
        .collect();
    let mut ops = publish(
        snap,
        &rref.service,
        svc,
        next_gen(svc),
        &reals,
        mh_size_of(&svc),
    )?;
    ops.extend(trash_ops(id, &old, rref.service, snap.next_stamp()));
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::service::tests::{sa, spec};
    use lb_common::consts::{DEFAULT_MAGLEV_SIZE, NO_REAL};

    fn nh(addr: IpAddr) -> Result<NextHop, NextHopError> {
        let local: IpAddr = if addr.is_ipv4() {
            "198.18.0.1".parse().unwrap()
        } else {
            "2001:db8::1".parse().unwrap()
        };
        Ok(NextHop {
            ifindex: 2,
            ifname: "d0".into(),
            local_addr: Some(local),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: Some([2, 0, 0, 0, 0, 2]),
            gateway: None,
        })
    }

    fn never(_: IpAddr) -> Result<NextHop, NextHopError> {
        panic!("the resolver must not be called for a refused request")
    }

    fn rspec(svc: &str, rip: &str, port: Option<u16>, mode: ForwardMode, w: i64) -> RealSpec {
        RealSpec {
            service: sa(svc, 80),
            addr: rip.parse().unwrap(),
            port,
            mode,
            weight: w,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    /// The plan of a `-a` that must be accepted.
    fn add_ok(snap: &Snapshot, spec: &RealSpec) -> Vec<Op> {
        add(snap, spec, &mut nh).unwrap()
    }

    /// `-a` accepted and applied to `snap`; its plan.
    fn added(snap: &mut Snapshot, spec: &RealSpec) -> Vec<Op> {
        let ops = add_ok(snap, spec);
        snap.apply(&ops);
        ops
    }

    fn with_service(vip: &str) -> Snapshot {
        let mut snap = Snapshot::default();
        let ops = crate::ipvs::service::add(&snap, &spec(vip, 80)).unwrap();
        snap.apply(&ops);
        snap
    }

    /// The scheduler table part of what a plan writes (after the reals list).
    fn table_of(ops: &[Op]) -> Option<Vec<u32>> {
        let s = service_of(ops)?;
        ops.iter()
            .find_map(|o| match o {
                Op::WriteTable { slots, .. } => Some(slots[s.reals_len as usize..].to_vec()),
                _ => None,
            })
            .filter(|t| !t.is_empty())
    }

    /// The reals list part.
    fn list_of(ops: &[Op]) -> Option<Vec<u32>> {
        let s = service_of(ops)?;
        ops.iter().find_map(|o| match o {
            Op::WriteTable { slots, .. } => Some(slots[..s.reals_len as usize].to_vec()),
            _ => None,
        })
    }

    fn service_of(ops: &[Op]) -> Option<Service> {
        ops.iter().find_map(|o| match o {
            Op::PutService(_, s) => Some(*s),
            _ => None,
        })
    }

    /// `list_gen` moves wherever IPVS calls the scheduler's add_dest/del_dest/upd_dest:
    /// -a, -d, any -e (thresholds only too, without a new table); -E keeps it unless the
    /// scheduler changes, and then resets the cursor after the new service is written.
    #[test]
    fn list_gen_follows_ipvs_dest_changes() {
        let mut snap = with_service("198.18.2.1");
        let addr = sa("198.18.2.1", 80);
        let gen_of = |snap: &Snapshot| snap.service(&addr).unwrap().list_gen();
        assert_eq!(gen_of(&snap), 0);
        for rip in ["198.18.1.11", "198.18.1.12"] {
            let ops = add(
                &snap,
                &rspec("198.18.2.1", rip, None, ForwardMode::Dr, 1),
                &mut nh,
            );
            snap.apply(&ops.unwrap());
        }
        assert_eq!(gen_of(&snap), 2);
        let mut r = rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Dr, 1);
        (r.u_threshold, r.l_threshold) = (50, 10);
        let ops = edit(&snap, &r, &mut nh).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::WriteTable { .. })));
        assert_eq!(service_of(&ops).map(|s| s.list_gen()), Some(3));
        snap.apply(&ops);
        r.weight = 2;
        snap.apply(&edit(&snap, &r, &mut nh).unwrap());
        assert_eq!(gen_of(&snap), 4);
        let gone = RealRef {
            service: addr,
            addr: "198.18.1.11".parse().unwrap(),
            port: None,
        };
        snap.apply(&delete(&snap, &gone).unwrap());
        assert_eq!(gen_of(&snap), 5);
        let ops = crate::ipvs::service::edit(&snap, &spec("198.18.2.1", 80)).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::ResetCursor(_))));
        snap.apply(&ops);
        assert_eq!(gen_of(&snap), 5);
        let wrr = crate::ipvs::model::ServiceSpec::with_sched(addr, lb_common::SchedKind::Wrr);
        let ops = crate::ipvs::service::edit(&snap, &wrr).unwrap();
        let put = ops.iter().position(|o| matches!(o, Op::PutService(..)));
        let reset = ops.iter().position(|o| matches!(o, Op::ResetCursor(_)));
        assert!(put.is_some() && put < reset, "{ops:?}");
        snap.apply(&ops);
        assert_eq!(gen_of(&snap), 6);
    }

    #[test]
    fn add_writes_real_then_table_then_service() {
        let snap = with_service("198.18.2.1");
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
        );
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                Op::ZeroRealStats(_) => "zero",
                Op::PutReal(..) => "real",
                Op::AddTxPort(_) => "tx",
                Op::WriteTable { .. } => "table",
                Op::PutService(..) => "service",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["zero", "real", "tx", "table", "service"]);
        let Op::PutReal(0, r) = ops[1] else { panic!() };
        assert_eq!(r.port.to_host(), 80, "DR real gets the service port");
        assert_eq!(r.svc_id, 0);
        assert_eq!(r.weight, 1);
        assert_eq!(r.mode, ForwardMode::Dr as u8);
        assert!(r.flags.has(RealFlags::ACTIVE));
        assert_eq!(r.dst_mac, [2, 0, 0, 0, 0, 2]);
        let t = table_of(&ops).unwrap();
        assert_eq!(t.len(), DEFAULT_MAGLEV_SIZE as usize);
        assert!(t.iter().all(|&s| s == 0));
        let s = service_of(&ops).unwrap();
        assert_eq!((s.reals_base, s.reals_len), (0, 1));
        assert_eq!((s.table_base, s.table_len), (1, DEFAULT_MAGLEV_SIZE));
        assert_eq!(list_of(&ops).unwrap(), [0]);
    }

    #[test]
    fn second_real_gets_a_fresh_region() {
        let mut snap = with_service("198.18.2.1");
        added(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
        );
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Dr, 1),
        );
        let s = service_of(&ops).unwrap();
        assert_eq!(
            s.reals_base,
            DEFAULT_MAGLEV_SIZE + 1,
            "never over the live table"
        );
        assert_eq!(s.table_base, s.reals_base + 2);
        assert_eq!(list_of(&ops).unwrap(), [1, 0], "newest first, as IPVS");
        let t = table_of(&ops).unwrap();
        assert!(t.contains(&0) && t.contains(&1));
        snap.apply(&ops);
        // The third goes to free space again: never over the live (second) region.
        let live = service_of(&ops).unwrap();
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.13", None, ForwardMode::Dr, 1),
        );
        let s = service_of(&ops).unwrap();
        let live_end = live.reals_base + live.reals_len + live.table_len;
        assert!(
            s.reals_base >= live_end || s.reals_base + s.reals_len + s.table_len <= live.reals_base
        );
        assert_eq!(list_of(&ops).unwrap(), [2, 1, 0]);
    }

    #[test]
    fn refusals_happen_before_resolution() {
        let snap = with_service("198.18.2.1");
        let e = add(
            &snap,
            &rspec("198.18.2.9", "198.18.1.11", None, ForwardMode::Dr, 1),
            &mut never,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "No such service: TCP 198.18.2.9:80");
        let e = add(
            &snap,
            &rspec("198.18.2.1", "2001:db8::11", None, ForwardMode::Dr, 1),
            &mut never,
        )
        .unwrap_err();
        assert!(matches!(e, ModelError::FamilyMismatch { .. }), "{e}");
        let e = add(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 65536),
            &mut never,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "weight 65536 is out of range (0..65535)");
        let e = add(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, -1),
            &mut never,
        )
        .unwrap_err();
        assert!(matches!(e, ModelError::Weight(-1)));
        let mut snap = snap;
        added(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
        );
        let e = add(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", Some(80), ForwardMode::Tun, 3),
            &mut never,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Destination already exists: 198.18.1.11:80 in TCP 198.18.2.1:80"
        );
    }

    #[test]
    fn nat_port_and_filter() {
        let mut snap = with_service("198.18.2.1");
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", Some(8080), ForwardMode::Nat, 1),
        );
        let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!("{ops:?}")
        };
        assert_eq!(r.port.to_host(), 8080);
        assert!(
            ops.iter()
                .any(|o| matches!(o, Op::FilterSet(Filter::Nat, ..)))
        );
        snap.apply(&ops);
        // A second NAT real on the same address in the same service at another port.
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1),
        );
        let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!("{ops:?}")
        };
        assert_eq!(
            r.port.to_host(),
            80,
            "NAT without a port takes the service port"
        );
        snap.apply(&ops);
        // Deleting one keeps the NAT bit: the other still uses the address.
        let ops = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: Some(8080),
            },
        )
        .unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::FilterClear(..))));
        snap.apply(&ops);
        let ops = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: None,
            },
        )
        .unwrap();
        // The last NAT real on the address: the bit stays too (its connections' replies).
        assert!(!ops.iter().any(|o| matches!(o, Op::FilterClear(..))));
    }

    #[test]
    fn delete_publishes_before_deactivating() {
        let mut snap = with_service("198.18.2.1");
        for rip in ["198.18.1.11", "198.18.1.12"] {
            added(
                &mut snap,
                &rspec("198.18.2.1", rip, None, ForwardMode::Dr, 1),
            );
        }
        let ops = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: None,
            },
        )
        .unwrap();
        let pos_svc = ops
            .iter()
            .position(|o| matches!(o, Op::PutService(..)))
            .unwrap();
        let pos_real = ops
            .iter()
            .position(|o| matches!(o, Op::PutReal(..)))
            .unwrap();
        assert!(pos_svc < pos_real);
        let Op::PutReal(0, r) = ops[pos_real] else {
            panic!()
        };
        assert!(!r.flags.has(RealFlags::ACTIVE));
        assert!(table_of(&ops).unwrap().iter().all(|&s| s == 1));
        snap.apply(&ops);
        // A new real does not reuse the deleted real's id while fresh ids remain.
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.13", None, ForwardMode::Dr, 1),
        );
        assert!(matches!(ops[1], Op::PutReal(2, _)));
        // Deleting the last weighted real leaves an empty table (no region).
        snap.apply(&ops);
        for rip in ["198.18.1.12", "198.18.1.13"] {
            let ops = delete(
                &snap,
                &RealRef {
                    service: sa("198.18.2.1", 80),
                    addr: rip.parse().unwrap(),
                    port: None,
                },
            )
            .unwrap();
            snap.apply(&ops);
        }
        assert_eq!(snap.services[0].1.table_len, 0);
        let e = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.12".parse().unwrap(),
                port: None,
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "No such destination: 198.18.1.12:80 in TCP 198.18.2.1:80"
        );
    }

    #[test]
    fn quiescent_real_takes_no_slot() {
        let mut snap = with_service("198.18.2.1");
        added(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
        );
        let ops = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 0),
            &mut nh,
        )
        .unwrap();
        let s = service_of(&ops).unwrap();
        assert_eq!(s.table_len, 0);
        assert!(table_of(&ops).is_none());
        // The real stays active (its flows continue), with weight 0.
        let r = ops
            .iter()
            .find_map(|o| match o {
                Op::PutReal(_, r) => Some(*r),
                _ => None,
            })
            .unwrap();
        assert!(r.flags.has(RealFlags::ACTIVE));
        assert_eq!(r.weight, 0);
        assert!(
            !table_of(&add_ok(
                &snap,
                &rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Dr, 2)
            ))
            .unwrap()
            .contains(&NO_REAL)
        );
    }

    #[test]
    fn edit_same_weight_keeps_table_and_mode_change_keeps_nat_bit() {
        let mut snap = with_service("198.18.2.1");
        added(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1),
        );
        // NAT → DR: the NAT connections keep their method, so their replies still need
        // the NAT_FILTER bit; the real is marked WAS_NAT instead of losing it.
        let ops = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
            &mut nh,
        )
        .unwrap();
        assert!(table_of(&ops).is_none());
        assert!(!ops.iter().any(|o| matches!(o, Op::FilterClear(..))));
        let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!("{ops:?}")
        };
        assert_eq!(r.mode, ForwardMode::Dr as u8);
        assert!(r.flags.has(RealFlags::WAS_NAT) && r.flags.has(RealFlags::ACTIVE));
        snap.apply(&ops);
        // DR → TUN: still WAS_NAT, still no clear.
        let ops = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Tun, 1),
            &mut nh,
        )
        .unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::FilterClear(..))));
        let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!("{ops:?}")
        };
        assert!(r.flags.has(RealFlags::WAS_NAT));
        snap.apply(&ops);
        // Deleting it keeps the bit: its NAT connections live on in the trash.
        let gone = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: None,
            },
        )
        .unwrap();
        assert!(!gone.iter().any(|o| matches!(o, Op::FilterClear(..))));
        // Back to NAT: the bit is set again (idempotent), WAS_NAT no longer needed.
        let ops = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1),
            &mut nh,
        )
        .unwrap();
        assert!(
            ops.iter()
                .any(|o| matches!(o, Op::FilterSet(Filter::Nat, ..)))
        );
        let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!("{ops:?}")
        };
        assert!(!r.flags.has(RealFlags::WAS_NAT));
        let e = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.99", None, ForwardMode::Dr, 1),
            &mut never,
        )
        .unwrap_err();
        assert!(matches!(e, ModelError::NoSuchReal { .. }));
    }

    fn with_sched(sched: &str, weights: &[i64]) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut sp = spec("198.18.2.1", 80);
        sp.sched = lb_common::SchedKind::from_name(sched).unwrap();
        let ops = crate::ipvs::service::add(&snap, &sp).unwrap();
        snap.apply(&ops);
        for (i, w) in weights.iter().enumerate() {
            let rip = format!("198.18.1.{}", 11 + i);
            added(
                &mut snap,
                &rspec("198.18.2.1", &rip, None, ForwardMode::Dr, *w),
            );
        }
        snap
    }

    #[test]
    fn tables_per_scheduler_follow_ipvs_order() {
        use lb_common::sched::{self as sc, Dest};
        // Reals 0, 1, 2 added in that order: IPVS's list is 2, 1, 0.
        let d = |w: [u32; 3]| -> Vec<Dest> {
            [2u32, 1, 0]
                .iter()
                .map(|&id| Dest {
                    id,
                    weight: w[id as usize],
                })
                .collect()
        };
        for (sched, want) in [
            ("wrr", vec![]),
            ("rr", vec![]),
            ("sh", sc::sh_table(&d([1, 2, 3]))),
            ("dh", sc::dh_table(&d([1, 2, 3]))),
            ("lc", vec![]),
            ("wlc", vec![]),
            ("twos", vec![]),
        ] {
            let snap = with_sched(sched, &[1, 2, 3]);
            let s = snap.services[0].1;
            assert_eq!(snap.orders[&s.id], [2, 1, 0], "{sched}");
            assert_eq!(s.reals_len, 3);
            assert_eq!(s.table_len as usize, want.len(), "{sched}");
            // Re-plan the last add to see the written table.
            let mut again = snap.clone();
            let ops = delete(
                &again,
                &RealRef {
                    service: sa("198.18.2.1", 80),
                    addr: "198.18.1.13".parse().unwrap(),
                    port: None,
                },
            )
            .unwrap();
            again.apply(&ops);
            let ops = add(
                &again,
                &rspec("198.18.2.1", "198.18.1.13", None, ForwardMode::Dr, 3),
                &mut nh,
            )
            .unwrap();
            let id = real_id_of(&ops);
            assert_eq!(
                list_of(&ops).unwrap(),
                [id, 1, 0],
                "{sched}: new real first"
            );
            let t = table_of(&ops).unwrap_or_default();
            let want: Vec<u32> = want.iter().map(|&x| if x == 2 { id } else { x }).collect();
            assert_eq!(t, want, "{sched}");
        }
    }

    #[test]
    fn weight_zero_keeps_its_place_in_the_list() {
        let mut snap = with_sched("wlc", &[1, 1]);
        let ops = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 0),
            &mut nh,
        )
        .unwrap();
        snap.apply(&ops);
        let s = snap.services[0].1;
        assert_eq!(snap.orders[&s.id], [1, 0]);
        assert_eq!(snap.ordered_reals(s.id)[1].1.weight, 0);
    }

    #[test]
    fn thresholds_are_stored_and_checked() {
        let snap = with_service("198.18.2.1");
        let mut r = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1);
        (r.u_threshold, r.l_threshold) = (100, 60);
        let ops = add(&snap, &r, &mut nh).unwrap();
        let Op::PutReal(_, real) = ops[1] else {
            panic!()
        };
        assert_eq!((real.u_threshold, real.l_threshold), (100, 60));
        r.l_threshold = 101;
        let e = add(&snap, &r, &mut never).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lower threshold 101 is higher than upper threshold 100"
        );
        (r.u_threshold, r.l_threshold) = (0, 5);
        assert!(matches!(
            add(&snap, &r, &mut never),
            Err(ModelError::Thresholds { .. })
        ));
    }

    #[test]
    fn at_most_max_reals_per_service() {
        let mut snap = with_sched("lc", &[]);
        for i in 0..MAX_REALS_PER_SERVICE {
            let rip = format!("198.18.{}.{}", 10 + i / 200, 1 + i % 200);
            added(
                &mut snap,
                &rspec("198.18.2.1", &rip, None, ForwardMode::Dr, 1),
            );
        }
        let e = add(
            &snap,
            &rspec("198.18.2.1", "198.18.99.1", None, ForwardMode::Dr, 1),
            &mut never,
        )
        .unwrap_err();
        assert!(matches!(e, ModelError::TooManyRealsInService(..)), "{e}");
    }

    fn real_id_of(ops: &[Op]) -> u32 {
        ops.iter()
            .find_map(|o| match o {
                Op::PutReal(id, _) => Some(*id),
                _ => None,
            })
            .unwrap()
    }

    fn del(snap: &mut Snapshot, rip: &str, port: Option<u16>) {
        let ops = delete(
            snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: rip.parse().unwrap(),
                port,
            },
        )
        .unwrap();
        snap.apply(&ops);
    }

    fn add_to(snap: &mut Snapshot, spec: &RealSpec) -> u32 {
        let ops = add(snap, spec, &mut nh).unwrap();
        snap.apply(&ops);
        real_id_of(&ops)
    }

    #[test]
    fn a_deleted_real_added_again_gets_its_id_back() {
        let mut snap = with_sched("wlc", &[1, 1]);
        // Reals 0 (198.18.1.11) and 1 (198.18.1.12); list [1, 0].
        del(&mut snap, "198.18.1.11", None);
        let t = snap.trashed.get(&0).expect("a trash record");
        assert_eq!(t.service, sa("198.18.2.1", 80));
        // Another real takes a fresh id, not the deleted one's.
        let other = rspec("198.18.2.1", "198.18.1.13", None, ForwardMode::Dr, 1);
        assert_eq!(add_to(&mut snap, &other), 2);
        // The same (service, address, port) again: the old id, at the list's head.
        let again = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 5);
        let ops = add(&snap, &again, &mut nh).unwrap();
        assert_eq!(real_id_of(&ops), 0, "revived");
        assert_eq!(list_of(&ops).unwrap(), [0, 2, 1]);
        let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!()
        };
        assert!(r.flags.has(RealFlags::ACTIVE));
        assert!(ops.contains(&Op::ClearTrash(0)), "out of the trash");
        assert_eq!((r.weight, r.u_threshold, r.l_threshold), (5, 0, 0));
        assert_eq!(
            r.local_addr,
            convert::to_raw("198.18.0.1".parse().unwrap()).0
        );
        snap.apply(&ops);
        // Another port of the same address is another real: a fresh id.
        del(&mut snap, "198.18.1.11", None);
        let mut nat = rspec("198.18.2.1", "198.18.1.11", Some(8080), ForwardMode::Nat, 1);
        assert_eq!(add_to(&mut snap, &nat), 3);
        // The same address and port in another service: a fresh id.
        let ops = crate::ipvs::service::add(&snap, &spec("198.18.2.2", 80)).unwrap();
        snap.apply(&ops);
        nat = rspec("198.18.2.2", "198.18.1.11", None, ForwardMode::Dr, 1);
        assert_eq!(add_to(&mut snap, &nat), 4);
        // Back in its own service, it still finds its slot.
        let back = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1);
        assert_eq!(add_to(&mut snap, &back), 0);
    }

    #[test]
    fn a_deleted_real_keeps_its_slot_and_goes_to_the_trash() {
        let mut snap = with_sched("wlc", &[1, 1]);
        let (_, before) = snap.reals[0];
        let ops = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: None,
            },
        )
        .unwrap();
        // The table without it first, then the slot, then the record.
        let at = |f: fn(&Op) -> bool| ops.iter().position(f).unwrap();
        let put_service = at(|o| matches!(o, Op::PutService(..)));
        let put_real = at(|o| matches!(o, Op::PutReal(..)));
        let put_trash = at(|o| matches!(o, Op::PutTrash(..)));
        assert!(put_service < put_real && put_real < put_trash);
        // Only ACTIVE is cleared: the slot is the real as it was (a packet racing the
        // deletion reads its own fields).
        let Op::PutReal(0, after) = ops[put_real] else {
            panic!()
        };
        let mut expect = before;
        expect.flags = RealFlags(before.flags.0 & !RealFlags::ACTIVE);
        assert_eq!(after, expect);
        let Op::PutTrash(0, t) = ops[put_trash] else {
            panic!()
        };
        assert_eq!(t.service, sa("198.18.2.1", 80));
        assert_eq!(t.stamp, 1, "the first deletion");
        snap.apply(&ops);
        assert_eq!(snap.trash().map(|(id, _, _)| id).collect::<Vec<_>>(), [0]);
        // A record beside an active slot is no trash.
        snap.reals[0].1.flags = RealFlags(RealFlags::ACTIVE);
        assert_eq!(snap.trash().count(), 0);
    }

    #[test]
    fn a_slot_given_to_another_real_is_not_revived() {
        let mut snap = with_sched("wlc", &[1, 1]);
        // Every other id in use, so the allocator must reuse a deleted real's id.
        let mut filler = snap.reals[0].1;
        filler.svc_id = 999;
        snap.reals.extend((2..MAX_REALS).map(|id| (id, filler)));
        // 198.18.1.12 (id 1) deleted first, then 198.18.1.11 (id 0).
        del(&mut snap, "198.18.1.12", None);
        del(&mut snap, "198.18.1.11", None);
        // A new real takes the id deleted longest ago (1), not the lowest (0).
        let s = rspec("198.18.2.1", "198.18.1.99", None, ForwardMode::Dr, 1);
        assert_eq!(add_to(&mut snap, &s), 1);
        // 198.18.1.11 gets its id back; 198.18.1.12's went to 198.18.1.99: not revived.
        let r = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1);
        assert_eq!(add_to(&mut snap, &r), 0);
        let t = rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Dr, 1);
        assert!(matches!(
            add(&snap, &t, &mut never),
            Err(ModelError::TooManyReals(_))
        ));
        // Deleted again, 198.18.1.99's slot carries its own record, not 198.18.1.12's.
        del(&mut snap, "198.18.1.99", None);
        assert_eq!(add_to(&mut snap, &t), 1, "the only free id, as a fresh one");
        let Some((_, r)) = snap.reals.iter().find(|(i, _)| *i == 1) else {
            panic!()
        };
        assert_eq!(
            real_endpoint(r).ip,
            "198.18.1.12".parse::<IpAddr>().unwrap()
        );
    }

    /// Issue 13: a deleted real's id given to another real moves the slot's generation on
    /// (everything naming the old real is stale) and settles the id's connection counts,
    /// after the slot is written and before the publish; the same real revived from the
    /// trash, and `-e`, keep it (its connections carry on).
    #[test]
    fn a_reused_id_moves_its_generation_and_a_revived_one_keeps_it() {
        let mut snap = with_sched("wlc", &[1, 1]);
        // Every other id in use, so the allocator must reuse a deleted real's id.
        let mut filler = snap.reals[0].1;
        filler.svc_id = 999;
        snap.reals.extend((2..MAX_REALS).map(|id| (id, filler)));
        let gen_of = |snap: &Snapshot| snap.reals.iter().find(|(i, _)| *i == 0).unwrap().1;
        assert_eq!(gen_of(&snap).generation, 0);
        let r11 = |w| rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, w);

        // Revived: same id, same generation, counts carried on.
        del(&mut snap, "198.18.1.11", None);
        let ops = add(&snap, &r11(1), &mut nh).unwrap();
        assert_eq!(real_id_of(&ops), 0);
        assert!(
            !ops.iter().any(|o| matches!(o, Op::SettleConns(_))),
            "{ops:?}"
        );
        snap.apply(&ops);
        assert_eq!(gen_of(&snap).generation, 0, "revived: its flows carry on");
        snap.apply(&edit(&snap, &r11(3), &mut nh).unwrap());
        assert_eq!(gen_of(&snap).generation, 0, "-e keeps it");
        assert_eq!(gen_of(&snap).weight, 3);

        // Deleted, then its id given to another real: the next generation.
        del(&mut snap, "198.18.1.11", None);
        assert_eq!(gen_of(&snap).generation, 0, "-d keeps it");
        let other = rspec("198.18.2.1", "198.18.1.99", None, ForwardMode::Dr, 1);
        let ops = add(&snap, &other, &mut nh).unwrap();
        assert_eq!(real_id_of(&ops), 0);
        let at = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).unwrap();
        let put = at(&|o| matches!(o, Op::PutReal(0, r) if r.generation == 1));
        let settle = at(&|o| *o == Op::SettleConns(0));
        let publish = at(&|o| matches!(o, Op::PutService(..)));
        assert!(put < settle && settle < publish, "{ops:?}");
        snap.apply(&ops);
        assert_eq!(gen_of(&snap).generation, 1);

        // The old real back after its id went: a new real (its record went with the id),
        // so the id's next generation again.
        del(&mut snap, "198.18.1.99", None);
        let ops = add(&snap, &r11(1), &mut nh).unwrap();
        assert_eq!(real_id_of(&ops), 0);
        assert!(ops.contains(&Op::SettleConns(0)));
        snap.apply(&ops);
        assert_eq!(gen_of(&snap).generation, 2);

        // A never-written id starts at 0, and generations wrap.
        assert_eq!(generation_for(None, false), 0);
        let last = Real {
            generation: u16::MAX,
            ..Real::default()
        };
        assert_eq!(generation_for(Some(&last), false), 0);
        assert_eq!(generation_for(Some(&last), true), u16::MAX);
    }

    fn vip_clears(ops: &[Op]) -> Vec<(u32, u64)> {
        ops.iter()
            .filter_map(|o| match o {
                Op::FilterClear(Filter::Vip, w, m) => Some((*w, *m)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_deleted_service_keeps_its_vip_bit_while_its_reals_are_in_the_trash() {
        // IPVS drops a connection's packets while its dest is unavailable; passed to the
        // director's stack instead, a local VIP would answer them with a reset.
        let mut snap = with_service("198.18.2.1");
        add_to(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
        );
        let ops = crate::ipvs::service::delete(&snap, &sa("198.18.2.1", 80)).unwrap();
        assert_eq!(vip_clears(&ops), [], "{ops:?}");
        assert!(ops.iter().any(|o| matches!(o, Op::PutTrash(0, _))));
        // Without reals nothing holds the bit.
        let snap = with_service("198.18.2.1");
        let ops = crate::ipvs::service::delete(&snap, &sa("198.18.2.1", 80)).unwrap();
        assert_eq!(vip_clears(&ops), [slot("198.18.2.1")]);
    }

    #[test]
    fn clear_keeps_the_vip_bits_of_trashed_reals() {
        let mut snap = Snapshot::default();
        for vip in ["198.18.2.1", "198.18.2.2"] {
            let ops = crate::ipvs::service::add(&snap, &spec(vip, 80)).unwrap();
            snap.apply(&ops);
        }
        assert_ne!(slot("198.18.2.1"), slot("198.18.2.2"), "pick unshared bits");
        add_to(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
        );
        let ops = crate::ipvs::service::clear(&snap);
        let (w, m) = slot("198.18.2.1");
        assert_eq!(
            ops.first(),
            Some(&Op::FilterRebuild(Filter::Vip, [(w, m)].into())),
            "only the VIP with a real in the trash keeps its bit"
        );
        snap.apply(&ops);
        // A second -C keeps it too: the trash still names the VIP.
        let ops = crate::ipvs::service::clear(&snap);
        assert_eq!(
            ops.first(),
            Some(&Op::FilterRebuild(Filter::Vip, [(w, m)].into()))
        );
    }

    #[test]
    fn a_reused_slot_drops_the_old_vip_bit() {
        let mut snap = with_service("198.18.2.1");
        let old_vip = "198.18.2.1";
        let new_vip = "198.18.3.1";
        assert_ne!(slot(old_vip), slot(new_vip), "pick unshared bits");
        assert_eq!(
            add_to(
                &mut snap,
                &rspec(old_vip, "198.18.1.11", None, ForwardMode::Dr, 1)
            ),
            0
        );
        // Every other id in use, so the allocator must reuse the deleted real's id.
        let mut filler = snap.reals[0].1;
        filler.svc_id = 999;
        snap.reals.extend((1..MAX_REALS).map(|id| (id, filler)));
        let ops = crate::ipvs::service::delete(&snap, &sa(old_vip, 80)).unwrap();
        snap.apply(&ops);
        let ops = crate::ipvs::service::add(&snap, &spec(new_vip, 80)).unwrap();
        snap.apply(&ops);
        let ops = add_ok(
            &snap,
            &rspec(new_vip, "198.18.1.21", None, ForwardMode::Dr, 1),
        );
        assert_eq!(real_id_of(&ops), 0);
        assert_eq!(
            vip_clears(&ops),
            [slot(old_vip)],
            "the trash no longer names the old VIP"
        );
    }

    #[test]
    fn clear_then_the_same_config_gets_the_same_ids() {
        let mut snap = Snapshot::default();
        for vip in ["198.18.2.1", "198.18.2.2"] {
            let ops = crate::ipvs::service::add(&snap, &spec(vip, 80)).unwrap();
            snap.apply(&ops);
        }
        let r1 = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1);
        let r2 = rspec("198.18.2.2", "198.18.1.11", None, ForwardMode::Dr, 1);
        assert_eq!((add_to(&mut snap, &r1), add_to(&mut snap, &r2)), (0, 1));
        let ops = crate::ipvs::service::clear(&snap);
        snap.apply(&ops);
        assert_eq!(snap.trash().count(), 2);
        // Added again in the other order: each service and real gets its old id, by its
        // address (IPVS's trash matches vaddr/vport/protocol), not by the order.
        let ops = crate::ipvs::service::add(&snap, &spec("198.18.2.2", 80)).unwrap();
        snap.apply(&ops);
        let ops = crate::ipvs::service::add(&snap, &spec("198.18.2.3", 80)).unwrap();
        snap.apply(&ops);
        let ops = crate::ipvs::service::add(&snap, &spec("198.18.2.1", 80)).unwrap();
        snap.apply(&ops);
        let id = |snap: &Snapshot, vip| snap.service(&sa(vip, 80)).unwrap().id;
        assert_eq!(id(&snap, "198.18.2.2"), 1);
        assert_eq!(id(&snap, "198.18.2.1"), 0);
        assert_eq!(
            id(&snap, "198.18.2.3"),
            2,
            "not an id another service's trash names"
        );
        assert_eq!((add_to(&mut snap, &r2), add_to(&mut snap, &r1)), (1, 0));
        assert_eq!(snap.trash().count(), 0);
    }

    fn nat_clears(ops: &[Op]) -> Vec<(u32, u64)> {
        ops.iter()
            .filter_map(|o| match o {
                Op::FilterClear(Filter::Nat, w, m) => Some((*w, *m)),
                _ => None,
            })
            .collect()
    }

    fn nat_sets(ops: &[Op]) -> Vec<(u32, u64)> {
        ops.iter()
            .filter_map(|o| match o {
                Op::FilterSet(Filter::Nat, w, m) => Some((*w, *m)),
                _ => None,
            })
            .collect()
    }

    fn slot(ip: &str) -> (u32, u64) {
        slot_of(ip.parse().unwrap())
    }

    /// IPVS translates a connection's replies while it lives, its dest deleted or not
    /// (`conn_out_get` finds it; the dest waits in the trash): `-d` of a NAT or WAS_NAT
    /// real keeps its NAT_FILTER bit.
    #[test]
    fn a_deleted_nat_real_keeps_its_nat_bit() {
        let mut snap = with_service("198.18.2.1");
        let nat = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1);
        add_to(&mut snap, &nat);
        let ops = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: None,
            },
        )
        .unwrap();
        assert!(ops.iter().any(|o| matches!(o, Op::PutTrash(0, _))));
        assert_eq!(nat_clears(&ops), [], "{ops:?}");
        snap.apply(&ops);
        // WAS_NAT (NAT → TUN by -e) likewise.
        let was = rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Nat, 1);
        add_to(&mut snap, &was);
        let ops = edit(
            &snap,
            &rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Tun, 1),
            &mut nh,
        )
        .unwrap();
        snap.apply(&ops);
        let ops = delete(
            &snap,
            &RealRef {
                service: sa("198.18.2.1", 80),
                addr: "198.18.1.12".parse().unwrap(),
                port: None,
            },
        )
        .unwrap();
        assert_eq!(nat_clears(&ops), [], "{ops:?}");
    }

    /// A NAT real deleted, then added again as DR or TUN: its old id comes back with its
    /// NAT connections, which stay NAT, so the real is WAS_NAT and its bit is set.
    #[test]
    fn a_nat_real_revived_in_another_mode_is_was_nat() {
        for again in [ForwardMode::Dr, ForwardMode::Tun] {
            let mut snap = with_service("198.18.2.1");
            let id = add_to(
                &mut snap,
                &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1),
            );
            del(&mut snap, "198.18.1.11", None);
            let ops = add_ok(&snap, &rspec("198.18.2.1", "198.18.1.11", None, again, 1));
            assert_eq!(real_id_of(&ops), id, "revived");
            let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
                panic!("{ops:?}")
            };
            assert_eq!(r.mode, again as u8);
            assert!(
                r.flags.has(RealFlags::WAS_NAT) && r.flags.has(RealFlags::ACTIVE),
                "{again:?}"
            );
            assert_eq!(nat_sets(&ops), [slot("198.18.1.11")]);
            assert_eq!(nat_clears(&ops), []);
            snap.apply(&ops);
            // Deleted and revived once more (now WAS_NAT): still WAS_NAT.
            del(&mut snap, "198.18.1.11", None);
            let ops = add_ok(
                &snap,
                &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1),
            );
            let Some(Op::PutReal(_, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
                panic!("{ops:?}")
            };
            assert!(r.flags.has(RealFlags::WAS_NAT));
            assert_eq!(nat_sets(&ops), [slot("198.18.1.11")]);
        }
        // Revived as NAT: NAT, no WAS_NAT needed. A DR real revived as DR: neither.
        let mut snap = with_service("198.18.2.1");
        add_to(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1),
        );
        add_to(
            &mut snap,
            &rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Dr, 1),
        );
        del(&mut snap, "198.18.1.11", None);
        del(&mut snap, "198.18.1.12", None);
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Nat, 1),
        );
        let Some(Op::PutReal(0, r)) = ops.iter().find(|o| matches!(o, Op::PutReal(..))) else {
            panic!("{ops:?}")
        };
        assert!(!r.flags.has(RealFlags::WAS_NAT));
        assert_eq!(nat_sets(&ops), [slot("198.18.1.11")]);
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Dr, 1),
        );
        let Op::PutReal(1, r) = ops[2] else {
            panic!("{ops:?}")
        };
        assert!(!r.flags.has(RealFlags::WAS_NAT));
        assert_eq!(nat_sets(&ops), []);
    }

    /// A deleted NAT real's id given to another real: the old address's bit goes, unless
    /// another real (active or deleted, NAT or WAS_NAT) or the new one still needs it.
    #[test]
    fn a_reused_slot_drops_the_old_nat_bit() {
        let mut snap = with_sched("wlc", &[]);
        let nat = |ip, port| rspec("198.18.2.1", ip, port, ForwardMode::Nat, 1);
        assert_eq!(add_to(&mut snap, &nat("198.18.1.11", None)), 0);
        assert_eq!(add_to(&mut snap, &nat("198.18.1.12", None)), 1);
        assert_eq!(add_to(&mut snap, &nat("198.18.1.12", Some(8080))), 2);
        // Every other id in use, so the allocator must reuse a deleted real's id.
        let mut filler = snap.reals[0].1;
        (filler.svc_id, filler.mode) = (999, ForwardMode::Dr as u8);
        snap.reals.extend((3..MAX_REALS).map(|id| (id, filler)));
        del(&mut snap, "198.18.1.11", None);
        del(&mut snap, "198.18.1.12", None);
        // Id 0 (198.18.1.11, deleted first) goes to a DR real: its bit goes.
        let dr = rspec("198.18.2.1", "198.18.1.21", None, ForwardMode::Dr, 1);
        let ops = add(&snap, &dr, &mut nh).unwrap();
        assert_eq!(real_id_of(&ops), 0);
        assert_eq!(nat_clears(&ops), [slot("198.18.1.11")]);
        assert_eq!(nat_sets(&ops), []);
        let put = ops
            .iter()
            .position(|o| matches!(o, Op::PutReal(..)))
            .unwrap();
        let clear = ops
            .iter()
            .position(|o| matches!(o, Op::FilterClear(..)))
            .unwrap();
        assert!(put < clear, "the slot is reused before its bit goes");
        snap.apply(&ops);
        // Id 1 (198.18.1.12:80) goes to another real: 198.18.1.12:8080 (id 2, active)
        // still needs the bit.
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.22", None, ForwardMode::Dr, 1),
        );
        assert_eq!(real_id_of(&ops), 1);
        assert_eq!(nat_clears(&ops), []);
        snap.apply(&ops);
        // Id 2 deleted, then reused: a deleted NAT real at the same address (its own
        // slot, id 1, is gone) — nothing else needs the bit now.
        del(&mut snap, "198.18.1.12", Some(8080));
        let trashed_nat = snap.reals.iter().find(|(i, _)| *i == 2).unwrap().1;
        assert!(!trashed_nat.flags.has(RealFlags::ACTIVE));
        // With another deleted NAT real at that address kept in a slot, the bit stays.
        let mut other = trashed_nat;
        other.port = Be16::from_host(9090);
        let mut kept = snap.clone();
        kept.reals[5] = (5, other);
        let stamp = kept.next_stamp();
        kept.trashed.insert(
            5,
            crate::ipvs::model::Trashed {
                service: sa("198.18.2.1", 80),
                stamp,
            },
        );
        let ops = add(
            &kept,
            &rspec("198.18.2.1", "198.18.1.23", None, ForwardMode::Dr, 1),
            &mut nh,
        )
        .unwrap();
        assert_eq!(real_id_of(&ops), 2);
        assert_eq!(nat_clears(&ops), [], "a deleted NAT real still needs it");
        // Without it, the bit goes; given to a NAT real at the same address, it stays.
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.23", None, ForwardMode::Dr, 1),
        );
        assert_eq!(nat_clears(&ops), [slot("198.18.1.12")]);
        let ops = add(&snap, &nat("198.18.1.12", Some(7070)), &mut nh).unwrap();
        assert_eq!(real_id_of(&ops), 2);
        assert_eq!(nat_clears(&ops), []);
        assert_eq!(nat_sets(&ops), [slot("198.18.1.12")]);
    }

    /// Two services: 198.18.2.1 with a NAT, a WAS_NAT (NAT, then `-e` to DR) and a DR
    /// real; 198.18.2.2 with a NAT real.
    fn nat_setup() -> Snapshot {
        let mut snap = Snapshot::default();
        for vip in ["198.18.2.1", "198.18.2.2"] {
            let ops = crate::ipvs::service::add(&snap, &spec(vip, 80)).unwrap();
            snap.apply(&ops);
        }
        let r = |vip, rip, mode| rspec(vip, rip, None, mode, 1);
        add_to(&mut snap, &r("198.18.2.1", "198.18.1.11", ForwardMode::Nat));
        add_to(&mut snap, &r("198.18.2.1", "198.18.1.12", ForwardMode::Nat));
        let ops = edit(
            &snap,
            &r("198.18.2.1", "198.18.1.12", ForwardMode::Dr),
            &mut nh,
        )
        .unwrap();
        snap.apply(&ops);
        add_to(&mut snap, &r("198.18.2.1", "198.18.1.13", ForwardMode::Dr));
        add_to(&mut snap, &r("198.18.2.2", "198.18.1.14", ForwardMode::Nat));
        snap
    }

    /// `-D`: the service's NAT and WAS_NAT reals go to the trash with their NAT_FILTER
    /// bits (their connections' replies are still translated, as IPVS's).
    #[test]
    fn a_deleted_service_keeps_the_nat_bits_of_its_reals() {
        let snap = nat_setup();
        let ops = crate::ipvs::service::delete(&snap, &sa("198.18.2.1", 80)).unwrap();
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::PutTrash(..))).count(),
            3
        );
        assert_eq!(nat_clears(&ops), [], "{ops:?}");
        assert!(!ops.contains(&Op::FilterZero(Filter::Nat)));
    }

    /// `-C`: NAT_FILTER is rebuilt from what remains, every real now in the trash: the
    /// NAT and WAS_NAT ones keep their bits, a DR real's address has none.
    #[test]
    fn clear_rebuilds_the_nat_filter_from_the_trash() {
        let mut snap = nat_setup();
        let ops = crate::ipvs::service::clear(&snap);
        let mut want = std::collections::BTreeMap::new();
        for ip in ["198.18.1.11", "198.18.1.12", "198.18.1.14"] {
            let (w, m) = slot(ip);
            *want.entry(w).or_insert(0u64) |= m;
        }
        assert_eq!(
            ops.last(),
            Some(&Op::FilterRebuild(Filter::Nat, want.clone()))
        );
        let (w, m) = slot("198.18.1.13");
        assert_eq!(want.get(&w).copied().unwrap_or(0) & m, 0, "no DR bit");
        assert!(!ops.contains(&Op::FilterZero(Filter::Nat)));
        // Cleared again (nothing active): the same bits, the slots still hold them.
        snap.apply(&ops);
        assert_eq!(
            crate::ipvs::service::clear(&snap).last(),
            Some(&Op::FilterRebuild(Filter::Nat, want))
        );
    }

    #[test]
    fn tunnel_needs_a_source_address() {
        let snap = with_service("198.18.2.1");
        let mut no_src = |a: IpAddr| {
            let mut h = nh(a)?;
            h.local_addr = None;
            Ok(h)
        };
        let e = add(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Tun, 1),
            &mut no_src,
        )
        .unwrap_err();
        assert!(matches!(e, ModelError::NoTunnelSource(_)));
        let ops = add_ok(
            &snap,
            &rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Tun, 1),
        );
        let Op::PutReal(_, r) = ops[1] else { panic!() };
        assert_eq!(
            r.local_addr,
            convert::to_raw("198.18.0.1".parse().unwrap()).0
        );
    }

    fn no_mac(a: IpAddr) -> Result<NextHop, NextHopError> {
        Ok(NextHop {
            dst_mac: None,
            ..nh(a)?
        })
    }

    #[test]
    fn a_real_whose_next_hop_is_down_is_added_unresolved() {
        let snap = with_service("198.18.2.1");
        let spec = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1);
        let ops = add(&snap, &spec, &mut no_mac).unwrap();
        let r = ops
            .iter()
            .find_map(|o| match o {
                Op::PutReal(_, r) => Some(*r),
                _ => None,
            })
            .unwrap();
        assert_eq!(r.flags.0, RealFlags::ACTIVE | RealFlags::NO_NEIGHBOUR);
        assert_eq!(r.ifindex, 2);
        assert!(ops.contains(&Op::AddTxPort(2)));
        // No route at all: accepted too, with no interface to add to TX_PORTS, even as a
        // tunnel (its source comes with the route).
        let tun = rspec("198.18.2.1", "198.18.1.12", None, ForwardMode::Tun, 1);
        let ops = add(&snap, &tun, &mut |_| Ok(NextHop::unrouted())).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::AddTxPort(_))));
        assert!(ops.iter().any(|o| matches!(
            o,
            Op::PutReal(_, r) if r.flags.has(RealFlags::NO_NEIGHBOUR) && r.ifindex == 0
        )));
    }

    #[test]
    fn edit_keeps_the_last_mac_of_a_next_hop_that_stopped_answering() {
        let mut snap = with_service("198.18.2.1");
        let spec = rspec("198.18.2.1", "198.18.1.11", None, ForwardMode::Dr, 1);
        added(&mut snap, &spec);
        let e = RealSpec { weight: 4, ..spec };
        let put = |ops: Vec<Op>| {
            ops.into_iter()
                .find_map(|o| match o {
                    Op::PutReal(_, r) => Some(r),
                    _ => None,
                })
                .unwrap()
        };
        let r = put(edit(&snap, &e, &mut no_mac).unwrap());
        assert_eq!(r.dst_mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(r.flags.0, RealFlags::ACTIVE);
        assert_eq!(r.weight, 4);
        // Another interface now: the old MAC means nothing there.
        let mut moved = |a: IpAddr| {
            Ok(NextHop {
                ifindex: 3,
                ..no_mac(a)?
            })
        };
        let r = put(edit(&snap, &e, &mut moved).unwrap());
        assert!(r.flags.has(RealFlags::NO_NEIGHBOUR));
    }
}
