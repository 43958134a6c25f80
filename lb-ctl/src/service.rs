//! Planning changes to virtual services (ipvsadm `-A`, `-E`, `-D`, `-C`, `-Z`): pure
//! functions from a [`Snapshot`] and a request to the ordered map writes, or a refusal.
//!
//! Ordering rules (docs/datapath.md): a service is complete in SERVICES before its VIP's
//! filter bit lets packets reach the lookup; a table is written before the `Service` value
//! that points at it; a real is marked inactive only after no table references it.

use crate::model::{
    Filter, ModelError, Op, ServiceAddr, ServiceSpec, Snapshot, check_unicast, real_ip, vip_key,
};
use crate::table;
use lb_common::consts::MAX_SERVICES;
use lb_common::filter::filter_slot;
use lb_common::{ForwardMode, Real, RealFlags, SchedKind, Service, VipFlags, addr::convert};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Checks the scheduler and its flags; returns the stored (sched, flags).
fn check_sched(spec: &ServiceSpec) -> Result<(u8, VipFlags), ModelError> {
    if spec.sched != SchedKind::Maglev.name() {
        return Err(ModelError::UnsupportedScheduler(spec.sched.clone()));
    }
    let flags = if spec.hash_ports {
        VipFlags::HASH_PORTS
    } else {
        0
    };
    Ok((SchedKind::Maglev as u8, VipFlags(flags)))
}

/// Number of services on a VIP.
fn services_on(snap: &Snapshot, ip: IpAddr) -> u32 {
    snap.services
        .iter()
        .filter_map(|(k, _)| ServiceAddr::from_key(k))
        .filter(|a| a.vip.ip == ip)
        .count() as u32
}

/// The filter bit of an address.
pub(crate) fn slot_of(ip: IpAddr) -> (u32, u64) {
    filter_slot(&convert::to_raw(ip).0)
}

/// `FilterClear` ops for the bits of `removed` that no address in `remaining` still needs
/// (the filter has one bit per address hash, so two addresses may share one).
pub(crate) fn filter_cleanup(
    filter: Filter,
    removed: impl IntoIterator<Item = IpAddr>,
    remaining: impl IntoIterator<Item = IpAddr>,
) -> Vec<Op> {
    let keep: BTreeSet<(u32, u64)> = remaining.into_iter().map(slot_of).collect();
    let drop: BTreeSet<(u32, u64)> = removed.into_iter().map(slot_of).collect();
    drop.difference(&keep)
        .map(|&(w, m)| Op::FilterClear(filter, w, m))
        .collect()
}

/// The inactive form of a real (what deleting it writes).
pub(crate) fn deactivated(r: &Real) -> Real {
    let mut r = *r;
    r.flags = RealFlags(r.flags.0 & !RealFlags::ACTIVE);
    r
}

/// Addresses of active NAT reals, excluding the real ids in `except`.
pub(crate) fn nat_addrs(snap: &Snapshot, except: &[u32]) -> Vec<IpAddr> {
    snap.active_reals()
        .filter(|(id, r)| r.mode == ForwardMode::Nat as u8 && !except.contains(id))
        .map(|(_, r)| real_ip(r))
        .collect()
}

/// `-A`: add a service.
pub fn add(snap: &Snapshot, spec: &ServiceSpec) -> Result<Vec<Op>, ModelError> {
    check_unicast(spec.addr.vip.ip)?;
    let (sched, flags) = check_sched(spec)?;
    if snap.service(&spec.addr).is_some() {
        return Err(ModelError::ServiceExists(spec.addr));
    }
    let used: BTreeSet<u32> = snap.services.iter().map(|(_, s)| s.id).collect();
    let id = (0..MAX_SERVICES)
        .find(|i| !used.contains(i))
        .ok_or(ModelError::TooManyServices(MAX_SERVICES))?;
    let svc = Service {
        id,
        flags,
        sched,
        _pad: [0; 3],
        table_base: 0,
        table_len: 0,
        persist_group: id,
        ..Default::default()
    };
    let ip = spec.addr.vip.ip;
    let (word, mask) = slot_of(ip);
    Ok(vec![
        Op::ZeroSvcStats(id),
        Op::PutService(spec.addr.key(), svc),
        Op::PutVip(vip_key(ip), services_on(snap, ip) + 1),
        Op::FilterSet(Filter::Vip, word, mask),
    ])
}

/// `-E`: change a service's scheduler and flags (as ipvsadm, the options given replace
/// the old ones). Its id, reals and table stay.
pub fn edit(snap: &Snapshot, spec: &ServiceSpec) -> Result<Vec<Op>, ModelError> {
    let (sched, flags) = check_sched(spec)?;
    let mut svc = snap
        .service(&spec.addr)
        .ok_or(ModelError::NoSuchService(spec.addr))?;
    svc.sched = sched;
    svc.flags = flags;
    Ok(vec![Op::PutService(spec.addr.key(), svc)])
}

/// `-D`: delete a service and its reals.
pub fn delete(snap: &Snapshot, addr: &ServiceAddr) -> Result<Vec<Op>, ModelError> {
    let svc = snap.service(addr).ok_or(ModelError::NoSuchService(*addr))?;
    let ip = addr.vip.ip;
    let left_on_vip = services_on(snap, ip) - 1;
    let mut ops = Vec::new();
    if left_on_vip == 0 {
        let other_vips = snap
            .services
            .iter()
            .filter_map(|(k, _)| ServiceAddr::from_key(k))
            .map(|a| a.vip.ip)
            .filter(|&v| v != ip);
        ops.extend(filter_cleanup(Filter::Vip, [ip], other_vips));
    }
    ops.push(Op::DelService(addr.key()));
    ops.push(if left_on_vip == 0 {
        Op::DelVip(vip_key(ip))
    } else {
        Op::PutVip(vip_key(ip), left_on_vip)
    });
    let gone: Vec<(u32, Real)> = snap.reals_of(svc.id).copied().collect();
    let gone_ids: Vec<u32> = gone.iter().map(|(id, _)| *id).collect();
    for (id, r) in &gone {
        ops.push(Op::PutReal(*id, deactivated(r)));
    }
    let gone_nat = gone
        .iter()
        .filter(|(_, r)| r.mode == ForwardMode::Nat as u8)
        .map(|(_, r)| real_ip(r));
    ops.extend(filter_cleanup(
        Filter::Nat,
        gone_nat,
        nat_addrs(snap, &gone_ids),
    ));
    Ok(ops)
}

/// `-C`: delete every service and real.
pub fn clear(snap: &Snapshot) -> Vec<Op> {
    let mut ops = vec![Op::FilterZero(Filter::Vip)];
    let mut vips = BTreeSet::new();
    for (k, _) in &snap.services {
        ops.push(Op::DelService(*k));
        if let Some(a) = ServiceAddr::from_key(k) {
            vips.insert(a.vip.ip);
        }
    }
    ops.extend(vips.into_iter().map(|ip| Op::DelVip(vip_key(ip))));
    for (id, r) in snap.active_reals() {
        ops.push(Op::PutReal(*id, deactivated(r)));
    }
    ops.push(Op::FilterZero(Filter::Nat));
    ops
}

/// `-Z`: zero the counters of one service (and its reals) or of all.
pub fn zero(snap: &Snapshot, addr: Option<&ServiceAddr>) -> Result<Vec<Op>, ModelError> {
    let svcs: Vec<Service> = match addr {
        Some(a) => vec![snap.service(a).ok_or(ModelError::NoSuchService(*a))?],
        None => snap.services.iter().map(|(_, s)| *s).collect(),
    };
    let mut ops = Vec::new();
    for s in svcs {
        ops.push(Op::ZeroSvcStats(s.id));
        ops.extend(snap.reals_of(s.id).map(|(id, _)| Op::ZeroRealStats(*id)));
    }
    Ok(ops)
}

/// The ops that give service `addr` (currently `svc`) the table built from `reals`:
/// the table goes to a free region, then the `Service` value is replaced to point at it.
pub(crate) fn publish(
    snap: &Snapshot,
    addr: &ServiceAddr,
    svc: Service,
    reals: &[(u32, Real)],
) -> Result<Vec<Op>, ModelError> {
    let mut new = svc;
    let mut ops = Vec::new();
    match table::build_maglev(reals)? {
        None => {
            new.table_base = 0;
            new.table_len = 0;
        }
        Some(slots) => {
            let len = slots.len() as u32;
            let in_use: Vec<table::Region> = snap
                .services
                .iter()
                .map(|(_, s)| (s.table_base, s.table_len))
                .collect();
            let base = table::place(&in_use, len)?;
            new.table_base = base;
            new.table_len = len;
            ops.push(Op::WriteTable { base, slots });
        }
    }
    if new != svc || !ops.is_empty() {
        ops.push(Op::PutService(addr.key(), new));
    }
    Ok(ops)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Endpoint, Proto};

    pub(crate) fn sa(s: &str, port: u16) -> ServiceAddr {
        ServiceAddr {
            proto: Proto::Tcp,
            vip: Endpoint {
                ip: s.parse().unwrap(),
                port,
            },
        }
    }

    pub(crate) fn spec(s: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            addr: sa(s, port),
            sched: "mh".into(),
            hash_ports: false,
        }
    }

    /// Applies ops to a snapshot the way the maps would change (enough for planning tests).
    pub(crate) fn apply(snap: &mut Snapshot, ops: &[Op]) {
        for op in ops {
            match op {
                Op::PutService(k, s) => {
                    snap.services.retain(|(x, _)| x != k);
                    snap.services.push((*k, *s));
                }
                Op::DelService(k) => snap.services.retain(|(x, _)| x != k),
                Op::PutReal(id, r) => {
                    snap.reals.retain(|(x, _)| x != id);
                    snap.reals.push((*id, *r));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn add_allocates_ids_and_sets_vip() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        assert_eq!(ops[0], Op::ZeroSvcStats(0));
        assert!(matches!(ops[1], Op::PutService(_, s) if s.id == 0 && s.table_len == 0));
        assert_eq!(
            ops[2],
            Op::PutVip(vip_key("198.18.2.1".parse().unwrap()), 1)
        );
        assert!(matches!(ops[3], Op::FilterSet(Filter::Vip, _, _)));
        apply(&mut snap, &ops);
        let ops = add(&snap, &spec("198.18.2.1", 443)).unwrap();
        assert_eq!(ops[0], Op::ZeroSvcStats(1));
        assert_eq!(
            ops[2],
            Op::PutVip(vip_key("198.18.2.1".parse().unwrap()), 2)
        );
    }

    #[test]
    fn add_refuses_duplicates_and_other_schedulers() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        apply(&mut snap, &ops);
        let e = add(&snap, &spec("198.18.2.1", 80)).unwrap_err();
        assert_eq!(e.to_string(), "Service already exists: TCP 198.18.2.1:80");
        let mut s = spec("198.18.2.2", 80);
        s.sched = "wlc".into();
        let e = add(&snap, &s).unwrap_err();
        assert_eq!(e.to_string(), "scheduler wlc is not supported yet");
        let e = add(&snap, &spec("0.0.0.0", 80)).unwrap_err();
        assert!(matches!(e, ModelError::BadAddress(_)));
    }

    #[test]
    fn edit_replaces_flags_keeps_table() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        apply(&mut snap, &ops);
        snap.services[0].1.table_base = 7;
        snap.services[0].1.table_len = 11;
        let mut s = spec("198.18.2.1", 80);
        s.hash_ports = true;
        let ops = edit(&snap, &s).unwrap();
        let Op::PutService(_, svc) = ops[0] else {
            panic!("{ops:?}")
        };
        assert!(svc.flags.has(VipFlags::HASH_PORTS));
        assert_eq!((svc.table_base, svc.table_len), (7, 11));
        assert!(matches!(
            edit(&snap, &spec("198.18.2.9", 80)),
            Err(ModelError::NoSuchService(_))
        ));
    }

    #[test]
    fn delete_keeps_shared_vip_bit() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        apply(&mut snap, &ops);
        let ops = add(&snap, &spec("198.18.2.1", 443)).unwrap();
        apply(&mut snap, &ops);
        let ops = delete(&snap, &sa("198.18.2.1", 80)).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::FilterClear(..))));
        assert!(ops.contains(&Op::PutVip(vip_key("198.18.2.1".parse().unwrap()), 1)));
        apply(&mut snap, &ops);
        let ops = delete(&snap, &sa("198.18.2.1", 443)).unwrap();
        assert!(matches!(ops[0], Op::FilterClear(Filter::Vip, _, _)));
        assert!(ops.contains(&Op::DelVip(vip_key("198.18.2.1".parse().unwrap()))));
    }

    #[test]
    fn clear_removes_everything() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        apply(&mut snap, &ops);
        let ops = add(&snap, &spec("2001:db8::1", 80)).unwrap();
        apply(&mut snap, &ops);
        let ops = clear(&snap);
        assert_eq!(ops.first(), Some(&Op::FilterZero(Filter::Vip)));
        assert_eq!(ops.last(), Some(&Op::FilterZero(Filter::Nat)));
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::DelService(_)))
                .count(),
            2
        );
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::DelVip(_))).count(), 2);
    }
}
