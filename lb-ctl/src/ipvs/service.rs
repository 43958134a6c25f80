//! Planning changes to virtual services (ipvsadm `-A`, `-E`, `-D`, `-C`, `-Z`): pure
//! functions from a [`Snapshot`] and a request to the ordered map writes, or a refusal.
//!
//! Ordering rules (docs/datapath.md): a service is complete in SERVICES before its VIP's
//! filter bit lets packets reach the lookup; a table is written before the `Service` value
//! that points at it; a real is marked inactive only after no table references it.

use crate::ipvs::model::{
    Filter, ModelError, Op, SchedChoice, ServiceAddr, ServiceSpec, Snapshot, Trashed,
    check_unicast, real_ip, vip_key,
};
use crate::ipvs::table;
use lb_common::consts::{
    DEFAULT_MAGLEV_SIZE, MAX_PERSIST_TIMEOUT_S, MAX_REALS_PER_SERVICE, MAX_SERVICES, MAX_TABLE_LEN,
};
use lb_common::filter::filter_slot;
use lb_common::maglev;
use lb_common::{
    ForwardMode, RawAddr, Real, RealFlags, SchedKind, Service, VipFlags, addr::convert,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The persistence mask of a service as stored: all-ones (/32, /128) unless `-M` says
/// otherwise. An IPv4 mask must be contiguous; an IPv6 one is built from a prefix.
fn persist_mask<S>(spec: &ServiceSpec<S>) -> Result<RawAddr, ModelError> {
    let vip = spec.addr.vip.ip;
    let mask = match spec.netmask {
        None => match vip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        },
        Some(m) => {
            let contiguous = match m {
                IpAddr::V4(a) => {
                    let v = u32::from(a);
                    v.leading_ones() + v.trailing_zeros() == 32
                }
                IpAddr::V6(a) => {
                    let v = u128::from(a);
                    v.leading_ones() + v.trailing_zeros() == 128
                }
            };
            if m.is_ipv4() != vip.is_ipv4() || !contiguous {
                return Err(ModelError::Netmask(m));
            }
            m
        }
    };
    Ok(convert::to_raw(mask).0)
}

/// Checks the scheduler, flags and persistence of a spec; returns the service with those
/// fields set (id, group and table fields are the caller's).
fn apply_spec<S: SchedChoice>(
    spec: &ServiceSpec<S>,
    mut svc: Service,
) -> Result<Service, ModelError> {
    let kind = spec.sched.kind()?;
    let mut flags = spec.sched_flags;
    if let Some(t) = spec.persistent {
        if t == 0 || t > MAX_PERSIST_TIMEOUT_S {
            return Err(ModelError::PersistTimeout(t));
        }
        flags |= VipFlags::PERSISTENT;
    }
    if spec.one_packet {
        flags |= VipFlags::ONE_PACKET;
    }
    if let Some(n) = spec.mh_size
        && (!maglev::is_prime(n) || n > MAX_TABLE_LEN)
    {
        return Err(ModelError::Maglev(maglev::MaglevError::NotPrime(n)));
    }
    svc.sched = kind as u8;
    svc.flags = VipFlags(flags);
    svc.persist_timeout_s = spec.persistent.unwrap_or(0);
    svc.persist_mask = persist_mask(spec)?;
    Ok(svc)
}

/// The persistence group a spec asks for: the named service's group, else `own`.
fn group_for<S>(snap: &Snapshot, spec: &ServiceSpec<S>, own: u32) -> Result<u32, ModelError> {
    match &spec.persist_with {
        None => Ok(own),
        Some(a) => Ok(snap
            .service(a)
            .ok_or(ModelError::NoSuchService(*a))?
            .persist_group),
    }
}

/// Maglev table size of a service: what it was built with, else the default.
pub(crate) fn mh_size_of(svc: &Service) -> u32 {
    if svc.sched == SchedKind::Maglev as u8 && svc.table_len > 0 {
        svc.table_len
    } else {
        DEFAULT_MAGLEV_SIZE
    }
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

/// The writes deleting real `id` (stored as `r`) from `service`: its REALS slot made
/// inactive (every other field kept), then its [`Trashed`] record in REAL_TRASH, so `-a`
/// of the same real in the same service takes the id back.
pub(crate) fn trash_ops(id: u32, r: &Real, service: ServiceAddr, stamp: u32) -> [Op; 2] {
    [
        Op::PutReal(id, deactivated(r)),
        Op::PutTrash(id, Trashed { service, stamp }),
    ]
}

/// The inactive form of a real: `ACTIVE` cleared, every other field kept.
pub(crate) fn deactivated(r: &Real) -> Real {
    let mut r = *r;
    r.flags = RealFlags(r.flags.0 & !RealFlags::ACTIVE);
    r
}

/// The id `-A` gives a new service: the id its reals' trash records name, when that id
/// is free (a service deleted and added again — `-D` or `-C`, then `-A` — keeps its id,
/// so its flows and templates carry on once its reals are back, as IPVS's trash keys on
/// the service's address, not its object); else the lowest id neither in use nor named
/// by another service's trash; else the lowest id not in use.
fn service_id(snap: &Snapshot, addr: &ServiceAddr) -> Result<u32, ModelError> {
    // An id that is still some group's name is not reused: the new service would join it.
    let used: BTreeSet<u32> = snap
        .services
        .iter()
        .flat_map(|(_, s)| [s.id, s.persist_group])
        .collect();
    let mine = snap
        .trash()
        .filter(|(_, r, t)| t.service == *addr && !used.contains(&r.svc_id))
        .max_by_key(|(_, _, t)| t.stamp)
        .map(|(_, r, _)| r.svc_id);
    let claimed: BTreeSet<u32> = snap.trash().map(|(_, r, _)| r.svc_id).collect();
    mine.or_else(|| (0..MAX_SERVICES).find(|i| !used.contains(i) && !claimed.contains(i)))
        .or_else(|| (0..MAX_SERVICES).find(|i| !used.contains(i)))
        .ok_or(ModelError::TooManyServices(MAX_SERVICES))
}

/// Whether a real's address belongs in NAT_FILTER: the real is NAT, or was NAT and may
/// still have NAT connections whose replies must be translated (`RealFlags::WAS_NAT`).
/// Asked of every REALS slot, active or not: a deleted real keeps its slot (lb's trash)
/// and its NAT connections live on, their replies translated as long as the bit is set
/// (IPVS's `conn_out_get` finds a connection whatever became of its dest).
pub(crate) fn in_nat_filter(r: &Real) -> bool {
    r.mode == ForwardMode::Nat as u8 || r.flags.has(RealFlags::WAS_NAT)
}

/// Addresses that keep a NAT_FILTER bit: of every REALS slot, active or deleted (the slot
/// still holds the deleted real until its id goes to another real), whose real is
/// [`in_nat_filter`], excluding the real ids in `except`. A bit kept for a deleted real
/// whose connections are all gone costs only a NAT_REV miss for its address's traffic
/// (the filter only says "maybe").
pub(crate) fn nat_addrs(snap: &Snapshot, except: &[u32]) -> Vec<IpAddr> {
    snap.reals
        .iter()
        .filter(|(id, r)| in_nat_filter(r) && !except.contains(id))
        .map(|(_, r)| real_ip(r))
        .collect()
}

/// NAT_FILTER as it should be: the bits of [`nat_addrs`] (word → mask).
fn nat_bits(snap: &Snapshot) -> BTreeMap<u32, u64> {
    bits_of(nat_addrs(snap, &[]))
}

/// Addresses that keep a VIP_FILTER bit: every live service's VIP, and every VIP a
/// deleted real in the trash was deleted from (its flows' client packets must still reach
/// the flow lookup, to be dropped `RealGone` as IPVS drops a connection's packets while
/// its dest is unavailable, and not be passed to the director's own stack, which would
/// reset the connection before `-a` brings the real back). Excludes the trash records of
/// the real ids in `except`.
pub(crate) fn vip_addrs(snap: &Snapshot, except: &[u32]) -> BTreeSet<IpAddr> {
    let live = snap
        .services
        .iter()
        .filter_map(|(k, _)| ServiceAddr::from_key(k))
        .map(|a| a.vip.ip);
    let trashed = snap
        .trash()
        .filter(|(id, _, _)| !except.contains(id))
        .map(|(_, _, t)| t.service.vip.ip);
    live.chain(trashed).collect()
}

/// A bit set per address, as a filter's words (word → mask).
fn bits_of(addrs: impl IntoIterator<Item = IpAddr>) -> BTreeMap<u32, u64> {
    let mut bits = BTreeMap::new();
    for (w, m) in addrs.into_iter().map(slot_of) {
        *bits.entry(w).or_insert(0) |= m;
    }
    bits
}

/// `-A`: add a service.
pub fn add<S: SchedChoice>(snap: &Snapshot, spec: &ServiceSpec<S>) -> Result<Vec<Op>, ModelError> {
    check_unicast(spec.addr.vip.ip)?;
    let svc = apply_spec(spec, Service::default())?;
    if snap.service(&spec.addr).is_some() {
        return Err(ModelError::ServiceExists(spec.addr));
    }
    let id = service_id(snap, &spec.addr)?;
    let svc = Service {
        id,
        persist_group: group_for(snap, spec, id)?,
        ..svc
    };
    let ip = spec.addr.vip.ip;
    let (word, mask) = slot_of(ip);
    Ok(vec![
        Op::ZeroSvcStats(id),
        Op::ClearLocality(id),
        Op::ResetCursor(id),
        Op::PutService(spec.addr.key(), svc),
        Op::PutVip(vip_key(ip), services_on(snap, ip) + 1),
        Op::FilterSet(Filter::Vip, word, mask),
    ])
}

/// `-E`: change a service's scheduler, flags and persistence (as ipvsadm, the options
/// given replace the old ones; lb's `--mh-size` and `--persist-group` stay unless given).
/// Its id and reals stay; a new table is published when the scheduler or size changed.
pub fn edit<S: SchedChoice>(snap: &Snapshot, spec: &ServiceSpec<S>) -> Result<Vec<Op>, ModelError> {
    let old = snap
        .service(&spec.addr)
        .ok_or(ModelError::NoSuchService(spec.addr))?;
    let mut svc = apply_spec(spec, old)?;
    if spec.persist_with.is_some() {
        svc.persist_group = group_for(snap, spec, old.id)?;
    }
    let size = spec.mh_size.unwrap_or_else(|| mh_size_of(&old));
    let reals = snap.ordered_reals(old.id);
    // IPVS's ip_vs_edit_service leaves the scheduler's state alone unless the scheduler
    // changes; then the new one starts fresh (init_service). lb's list generation stays
    // with the scheduler, so rr/wrr keep their place; on a change it moves too, so a
    // pick between the new `Service` and the cursor's reset is not taken for the same list.
    let resched = svc.sched != old.sched;
    if resched {
        svc.set_list_gen(old.with_next_list_gen().list_gen());
    }
    let mut ops = publish(snap, &spec.addr, old, svc, &reals, size)?;
    if resched {
        ops.push(Op::ResetCursor(old.id));
    }
    Ok(ops)
}

/// `-D`: delete a service and its reals.
pub fn delete(snap: &Snapshot, addr: &ServiceAddr) -> Result<Vec<Op>, ModelError> {
    let svc = snap.service(addr).ok_or(ModelError::NoSuchService(*addr))?;
    let ip = addr.vip.ip;
    let left_on_vip = services_on(snap, ip) - 1;
    let mut ops = Vec::new();
    // The VIP's filter bit stays while its reals are in the trash (`vip_addrs`): this
    // service's reals go there now, so only a service without reals can take it away.
    let has_reals = snap.reals_of(svc.id).next().is_some();
    if left_on_vip == 0 && !has_reals {
        let mut keep = vip_addrs(snap, &[]);
        keep.remove(&ip);
        ops.extend(filter_cleanup(Filter::Vip, [ip], keep));
    }
    ops.push(Op::DelService(addr.key()));
    ops.push(if left_on_vip == 0 {
        Op::DelVip(vip_key(ip))
    } else {
        Op::PutVip(vip_key(ip), left_on_vip)
    });
    // Its reals go to the trash; their NAT_FILTER bits stay (`nat_addrs`): replies of
    // their NAT connections are still translated.
    let stamp = snap.next_stamp();
    for (i, (id, r)) in snap.reals_of(svc.id).enumerate() {
        ops.extend(trash_ops(*id, r, *addr, stamp + i as u32));
    }
    Ok(ops)
}

/// `-C`: delete every service and real (to the trash, as `-D`).
pub fn clear(snap: &Snapshot) -> Vec<Op> {
    let addr_of: BTreeMap<u32, ServiceAddr> = snap
        .services
        .iter()
        .filter_map(|(k, s)| Some((s.id, ServiceAddr::from_key(k)?)))
        .collect();
    // VIP_FILTER keeps the VIPs of every real going to the trash now or already there
    // (`vip_addrs`), so their flows' packets are dropped `RealGone` until the same
    // configuration comes back, and loses the rest.
    let trash_vips = snap
        .active_reals()
        .filter_map(|(_, r)| addr_of.get(&r.svc_id))
        .map(|a| a.vip.ip)
        .chain(snap.trash().map(|(_, _, t)| t.service.vip.ip));
    let mut ops = vec![Op::FilterRebuild(Filter::Vip, bits_of(trash_vips))];
    let vips: BTreeSet<IpAddr> = addr_of.values().map(|a| a.vip.ip).collect();
    ops.extend(snap.services.iter().map(|(k, _)| Op::DelService(*k)));
    ops.extend(vips.into_iter().map(|ip| Op::DelVip(vip_key(ip))));
    let stamp = snap.next_stamp();
    for (i, (id, r)) in snap.active_reals().enumerate() {
        match addr_of.get(&r.svc_id) {
            Some(a) => ops.extend(trash_ops(*id, r, *a, stamp + i as u32)),
            None => ops.push(Op::PutReal(*id, deactivated(r))),
        }
    }
    // Every real is now in the trash (its slot's mode and flags kept): NAT_FILTER keeps
    // the bits of the NAT and WAS_NAT ones, whose connections' replies are still
    // translated, and loses any other.
    ops.push(Op::FilterRebuild(Filter::Nat, nat_bits(snap)));
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

/// The ops that give service `addr` (stored as `old`) the value `new` with the reals list
/// `reals` (IPVS order) and the scheduler table built from it: both go to one free region
/// of SCHED_TABLE (reals list first), then the `Service` value is replaced to point at
/// them. Nothing is written when nothing changed.
pub(crate) fn publish(
    snap: &Snapshot,
    addr: &ServiceAddr,
    old: Service,
    mut new: Service,
    reals: &[(u32, Real)],
    mh_size: u32,
) -> Result<Vec<Op>, ModelError> {
    if reals.len() as u32 > MAX_REALS_PER_SERVICE {
        return Err(ModelError::TooManyRealsInService(
            *addr,
            MAX_REALS_PER_SERVICE,
        ));
    }
    let kind = SchedKind::from_u8(new.sched).unwrap_or(SchedKind::Wlc);
    let list: Vec<u32> = reals.iter().map(|(id, _)| *id).collect();
    let table = table::build(kind, reals, mh_size)?;
    let mut ops = Vec::new();
    if list.is_empty() && table.is_empty() {
        (new.reals_base, new.reals_len, new.table_base, new.table_len) = (0, 0, 0, 0);
    } else {
        let in_use: Vec<table::Region> = snap
            .services
            .iter()
            .flat_map(|(_, s)| [(s.reals_base, s.reals_len), (s.table_base, s.table_len)])
            .collect();
        let len = (list.len() + table.len()) as u32;
        let base = table::place(&in_use, len)?;
        new.reals_base = base;
        new.reals_len = list.len() as u32;
        new.table_base = base + new.reals_len;
        new.table_len = table.len() as u32;
        let mut slots = list;
        slots.extend(table);
        ops.push(Op::WriteTable { base, slots });
    }
    if new != old || !ops.is_empty() {
        ops.push(Op::PutService(addr.key(), new));
    }
    Ok(ops)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ipvs::model::{Endpoint, Proto};

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
        ServiceSpec::with_sched(sa(s, port), SchedKind::Maglev)
    }

    #[test]
    fn add_allocates_ids_and_sets_vip() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        assert_eq!(ops[0], Op::ZeroSvcStats(0));
        assert_eq!(ops[1], Op::ClearLocality(0));
        assert_eq!(ops[2], Op::ResetCursor(0));
        assert!(matches!(ops[3], Op::PutService(_, s) if s.id == 0 && s.table_len == 0));
        assert_eq!(
            ops[4],
            Op::PutVip(vip_key("198.18.2.1".parse().unwrap()), 1)
        );
        assert!(matches!(ops[5], Op::FilterSet(Filter::Vip, _, _)));
        snap.apply(&ops);
        let ops = add(&snap, &spec("198.18.2.1", 443)).unwrap();
        assert_eq!(ops[0], Op::ZeroSvcStats(1));
        assert_eq!(
            ops[4],
            Op::PutVip(vip_key("198.18.2.1".parse().unwrap()), 2)
        );
    }

    #[test]
    fn add_refuses_duplicates_and_other_schedulers() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        snap.apply(&ops);
        let e = add(&snap, &spec("198.18.2.1", 80)).unwrap_err();
        assert_eq!(e.to_string(), "Service already exists: TCP 198.18.2.1:80");
        let named = |name: &str| ServiceSpec::with_sched(sa("198.18.2.2", 80), name.to_string());
        let e = add(&snap, &named("bogus")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Scheduler not found: bogus (one of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos)"
        );
        assert!(add(&snap, &named("mh")).is_ok(), "a name is resolved");
        let mut s = spec("198.18.2.2", 80);
        s.mh_size = Some(65536);
        assert!(add(&snap, &s).is_err(), "Maglev needs a prime size");
        let e = add(&snap, &spec("0.0.0.0", 80)).unwrap_err();
        assert!(matches!(e, ModelError::BadAddress(_)));
    }

    #[test]
    fn edit_replaces_flags_and_persistence() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        snap.apply(&ops);
        let mut s = spec("198.18.2.1", 80);
        s.sched_flags = VipFlags::HASH_PORTS;
        s.persistent = Some(600);
        s.netmask = Some("255.255.255.0".parse().unwrap());
        let ops = edit(&snap, &s).unwrap();
        let Op::PutService(_, svc) = ops[0] else {
            panic!("{ops:?}")
        };
        assert!(svc.flags.has(VipFlags::HASH_PORTS) && svc.flags.has(VipFlags::PERSISTENT));
        assert_eq!(svc.persist_timeout_s, 600);
        assert_eq!(svc.persist_mask[0], u32::from_ne_bytes([255, 255, 255, 0]));
        assert_eq!((svc.table_base, svc.table_len), (0, 0), "no real: no table");
        snap.apply(&ops);
        s.netmask = Some("255.0.255.0".parse().unwrap());
        assert!(matches!(edit(&snap, &s), Err(ModelError::Netmask(_))));
        s.netmask = Some("2001:db8::".parse().unwrap());
        assert!(matches!(edit(&snap, &s), Err(ModelError::Netmask(_))));
        // -E without -p ends persistence, as ipvsadm.
        let ops = edit(&snap, &spec("198.18.2.1", 80)).unwrap();
        let Op::PutService(_, svc) = ops[0] else {
            panic!()
        };
        assert!(!svc.flags.has(VipFlags::PERSISTENT));
        assert!(matches!(
            edit(&snap, &spec("198.18.2.9", 80)),
            Err(ModelError::NoSuchService(_))
        ));
    }

    #[test]
    fn persistence_groups() {
        let mut snap = Snapshot::default();
        let mut http = spec("198.18.2.1", 80);
        http.persistent = Some(300);
        let ops = add(&snap, &http).unwrap();
        snap.apply(&ops);
        let mut https = spec("198.18.2.1", 443);
        https.persistent = Some(300);
        https.persist_with = Some(sa("198.18.2.1", 80));
        let ops = add(&snap, &https).unwrap();
        snap.apply(&ops);
        let g = |snap: &Snapshot, port| snap.service(&sa("198.18.2.1", port)).unwrap();
        assert_eq!(g(&snap, 443).id, 1);
        assert_eq!(g(&snap, 443).persist_group, 0, "joins http's group");
        let mut other = spec("198.18.2.1", 22);
        other.persist_with = Some(sa("198.18.2.9", 80));
        assert!(matches!(
            add(&snap, &other),
            Err(ModelError::NoSuchService(_))
        ));
        // With http gone, its id stays taken while https still names group 0.
        let ops = delete(&snap, &sa("198.18.2.1", 80)).unwrap();
        snap.apply(&ops);
        let ops = add(&snap, &spec("198.18.2.2", 80)).unwrap();
        let Op::PutService(_, s) = ops[3] else {
            panic!()
        };
        assert_eq!(s.id, 2);
        assert_eq!(s.persist_group, 2);
        assert_eq!(s.persist_mask[0], u32::MAX, "all-ones mask by default");
    }

    #[test]
    fn delete_keeps_shared_vip_bit() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        snap.apply(&ops);
        let ops = add(&snap, &spec("198.18.2.1", 443)).unwrap();
        snap.apply(&ops);
        let ops = delete(&snap, &sa("198.18.2.1", 80)).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::FilterClear(..))));
        assert!(ops.contains(&Op::PutVip(vip_key("198.18.2.1".parse().unwrap()), 1)));
        snap.apply(&ops);
        let ops = delete(&snap, &sa("198.18.2.1", 443)).unwrap();
        assert!(matches!(ops[0], Op::FilterClear(Filter::Vip, _, _)));
        assert!(ops.contains(&Op::DelVip(vip_key("198.18.2.1".parse().unwrap()))));
    }

    #[test]
    fn clear_removes_everything() {
        let mut snap = Snapshot::default();
        let ops = add(&snap, &spec("198.18.2.1", 80)).unwrap();
        snap.apply(&ops);
        let ops = add(&snap, &spec("2001:db8::1", 80)).unwrap();
        snap.apply(&ops);
        let ops = clear(&snap);
        // No real anywhere, so no VIP keeps its bit.
        assert_eq!(
            ops.first(),
            Some(&Op::FilterRebuild(Filter::Vip, BTreeMap::new()))
        );
        assert_eq!(
            ops.last(),
            Some(&Op::FilterRebuild(Filter::Nat, BTreeMap::new()))
        );
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::DelService(_)))
                .count(),
            2
        );
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::DelVip(_))).count(), 2);
    }
}
