//! Reading the status values from the pinned maps: one snapshot, then the counters each
//! listing needs. No formatting here.

use super::{
    Counters, Gather, ListedConn, ListedNeighbour, ListedReal, ListedService, Persistence, Rates,
    Stats, TableFill,
};
use crate::ipvs::model::{Endpoint, Proto, ServiceAddr, Snapshot, real_endpoint, sched_flag_names};
use crate::maps::{self, Maps, MapsError};
use aya::maps::{Array, MapData};
use lb_common::addr::{convert, family};
use lb_common::conn::{ConnCounts, state_name, state_timeout_s};
use lb_common::consts::{DEFAULT_MAGLEV_SIZE, MAP_TABLE_FILL};
use lb_common::tables::Table;
use lb_common::{ForwardMode, Real, RealFlags, SchedKind, Service, ServiceKey, VipFlags};
use std::collections::BTreeMap;
use std::path::Path;

/// A service's persistence, when `-p`.
fn persistence(s: &Service, v6: bool) -> Option<Persistence> {
    s.flags.has(VipFlags::PERSISTENT).then(|| Persistence {
        timeout_s: s.persist_timeout_s,
        netmask: convert::from_raw(&s.persist_mask, if v6 { family::V6 } else { family::V4 }),
    })
}

/// A real's next hop as listed; the kernel asked for the route when `next_hop`.
fn neighbour_of(r: &Real, next_hop: bool) -> ListedNeighbour {
    let resolved = !r.flags.has(RealFlags::NO_NEIGHBOUR);
    let ip = crate::ipvs::model::real_ip(r);
    let m = r.dst_mac;
    ListedNeighbour {
        resolved,
        next_hop: next_hop
            .then(|| crate::nexthop::route(ip).ok().flatten())
            .flatten()
            .map(|nh| nh.neighbour_of(ip)),
        mac: resolved.then(|| {
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )
        }),
        interface: interface_name(r.ifindex),
        ifindex: r.ifindex,
    }
}

/// The name of interface `ifindex` in the current network namespace (if_indextoname asks
/// the kernel through a socket of this namespace, unlike /sys under `nsenter --net`).
fn interface_name(ifindex: u32) -> Option<String> {
    if ifindex == 0 {
        return None;
    }
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Every service of `snap` (or only `only`), with its reals in IPVS list order (unsorted:
/// see [`super::sort`]), and what `what` asks for.
pub fn services(
    maps: &Maps,
    snap: &Snapshot,
    only: Option<&ServiceAddr>,
    what: Gather,
) -> Result<Vec<ListedService>, MapsError> {
    // Connection counts come from the data path's counters (REAL_CONNS − REAL_EXPIRED);
    // an object without them falls back to counting FLOWS entries as active.
    let flows = if !what.conns || maps.conn_counts(0)?.is_some() {
        Default::default()
    } else {
        maps.flows_per_real()?
    };
    let mut listed = Vec::new();
    for (k, s) in &snap.services {
        let Some(addr) = ServiceAddr::from_key(k) else {
            continue;
        };
        if only.is_some_and(|a| *a != addr) {
            continue;
        }
        let mut reals = Vec::new();
        for (id, r) in snap.ordered_reals(s.id) {
            let counts = maps.conn_counts(id)?.unwrap_or(ConnCounts {
                active: flows.get(&(r.reference(id), s.id)).copied().unwrap_or(0),
                ..Default::default()
            });
            reals.push(ListedReal {
                ep: real_endpoint(&r),
                mode: mode_of(r.mode),
                weight: r.weight,
                active: counts.active,
                inactive: counts.inactive,
                persistent: counts.persistent,
                u_threshold: r.u_threshold,
                l_threshold: r.l_threshold,
                stats: if what.stats {
                    maps.real_traffic(id)?.into()
                } else {
                    Stats::default()
                },
                rates: if what.rates {
                    maps.real_rates(id, r.generation)?
                } else {
                    Rates::default()
                },
                neighbour: neighbour_of(&r, what.next_hops),
            });
        }
        let kind = SchedKind::from_u8(s.sched);
        listed.push(ListedService {
            addr,
            sched: kind.map_or("?", SchedKind::name),
            sched_flags: sched_flag_names(kind, s.flags),
            persistent: persistence(s, addr.vip.ip.is_ipv6()),
            one_packet: s.flags.has(VipFlags::ONE_PACKET),
            stats: if what.stats {
                maps.svc_traffic(s.id)?.into()
            } else {
                Stats::default()
            },
            rates: if what.rates {
                maps.svc_rates(s.id)?
            } else {
                Rates::default()
            },
            reals,
            persist_group: s.persist_group,
            mh_size: Some(crate::ipvs::service::mh_size_of(s))
                .filter(|&n| kind == Some(SchedKind::Maglev) && n != DEFAULT_MAGLEV_SIZE),
        });
    }
    Ok(listed)
}

/// `-L -c`: flows and persistence templates with the seconds they have left, by the data
/// path's clock.
pub fn conns(maps: &Maps, snap: &Snapshot, dir: &Path) -> Result<Vec<ListedConn>, MapsError> {
    let t = maps::read_settings(dir)?.timeouts;
    // Time left by the clock the flows are stamped with (the kernel's, or a test's).
    let now = maps::clock::now(dir)?;
    let by_id: BTreeMap<u32, (ServiceKey, Service)> = snap
        .services
        .iter()
        .map(|(k, s)| (s.id, (*k, *s)))
        .collect();
    // The real a flow or template names: its id's slot, unless that holds another real
    // now (a stale reference, listed no more).
    let real_of = |real_ref: u32| {
        snap.reals
            .iter()
            .find(|(i, _)| *i == lb_common::real::ref_id(real_ref))
            .map(|(_, r)| *r)
            .filter(|r| r.referenced_by(real_ref))
    };
    let left = |last: u32, timeout: u32| {
        let idle = now.wrapping_sub(last) as i32;
        timeout.saturating_sub(idle.max(0) as u32)
    };
    let mut out = Vec::new();
    for (k, v) in maps.flows()? {
        let Some(r) = real_of(v.real_id) else {
            continue;
        };
        let proto = Proto::from_number(k.proto);
        out.push(ListedConn {
            proto: proto.map_or("IP", Proto::name),
            expire_s: left(v.last_seen_s, state_timeout_s(k.proto, v.state, &t)),
            state: state_name(k.proto, v.state),
            source: Endpoint {
                ip: convert::from_raw(&k.src, k.family),
                port: k.sport.to_host(),
            },
            virt: Endpoint {
                ip: convert::from_raw(&k.dst, k.family),
                port: k.dport.to_host(),
            },
            dest: Endpoint {
                port: if r.port.to_host() == 0 {
                    k.dport.to_host()
                } else {
                    r.port.to_host()
                },
                ..real_endpoint(&r)
            },
            // The flow's own method; 0, a flow of an older lb: its real's mode.
            mode: mode_of(if v.fwd != 0 { v.fwd } else { r.mode }),
        });
    }
    for (k, v) in maps.templates()? {
        let (Some(r), Some((sk, s))) = (real_of(v.real_id), by_id.get(&v.svc_id)) else {
            continue;
        };
        let grouped = snap
            .services
            .iter()
            .filter(|(_, o)| o.persist_group == s.persist_group)
            .count()
            > 1;
        out.push(ListedConn {
            proto: Proto::from_number(k.proto).map_or("IP", Proto::name),
            expire_s: left(v.last_seen_s, s.persist_timeout_s),
            state: "NONE",
            source: Endpoint {
                ip: convert::from_raw(&k.client, k.family),
                port: 0,
            },
            virt: Endpoint {
                ip: convert::from_raw(&sk.addr, sk.family),
                port: if grouped { 0 } else { sk.port.to_host() },
            },
            dest: real_endpoint(&r),
            mode: mode_of(r.mode),
        });
    }
    Ok(out)
}

/// `lb-ctl counters`: every named data-path counter.
pub fn counters(dir: &Path) -> Result<Counters, MapsError> {
    let mut c = Counters::from_slots(&maps::read_counters(dir)?);
    for (t, fill) in tables(dir)? {
        c.0.push((t.entries_name(), fill.entries));
        c.0.push((t.capacity_name(), fill.capacity));
    }
    Ok(c)
}

/// Each state table's entries (at the sweeper's last pass; 0 before any) and capacity.
pub fn tables(dir: &Path) -> Result<Vec<(Table, TableFill)>, MapsError> {
    let counted: Option<Array<MapData, u64>> = maps::open_opt(dir, MAP_TABLE_FILL)?;
    let mut out = Vec::new();
    for t in Table::ALL {
        let Some(size) = maps::pinned_size(dir, t.map())? else {
            continue;
        };
        let entries = counted
            .as_ref()
            .and_then(|m| m.get(&(t as u32), 0).ok())
            .unwrap_or(0);
        out.push((
            t,
            TableFill {
                entries,
                capacity: u64::from(size.entries),
            },
        ));
    }
    Ok(out)
}

/// A stored mode byte as listed (a byte this lb does not know lists as DR).
fn mode_of(b: u8) -> ForwardMode {
    ForwardMode::from_u8(b).unwrap_or(ForwardMode::Dr)
}
