//! `lb-ctl sweep`: the clock and the expiry of connections and persistence templates, as
//! IPVS's per-connection timers do (ip_vs_conn.c `ip_vs_conn_expire`), done in passes.
//!
//! One pass: write `CLOCK` (seconds of CLOCK_MONOTONIC, what the data path stamps flows
//! with), then walk FLOWS4 and FLOWS6 ([`crate::flows`]) and remove every flow idle longer than its state's timeout
//! (`lb_common::conn::state_timeout_s`, `--set` timeouts from SETTINGS). A flow is removed
//! with lookup-and-delete, so the value counted is the one the data path last wrote: its
//! `INACTIVE` flag says whether it leaves the real's active or inactive count
//! (`REAL_EXPIRED`, which only the sweep writes; lb-ctl's pin-directory lock keeps two
//! sweeps apart). A flow that turned fresh between the walk and the delete is put back.
//! Then PERSIST: a template expires when its service's `-p` timeout has passed since it
//! was last used and no live flow is controlled by it (same group, protocol and masked
//! client), as IPVS keeps a template while it controls connections.
//!
//! Differences from IPVS: expiry happens at the next pass (the interval, default 1 s),
//! not at the exact second.

use crate::flows::{self, RawPair};
use crate::maps::{self, MapsError, open, open_opt};
use crate::sys::{self, RawMap};
use aya::maps::{Array, HashMap, MapData};
use lb_common::conn::{ConnExpiry, Timeouts, state_timeout_s};
use lb_common::consts::{
    MAP_CLOCK, MAP_LBLC, MAP_PERSIST, MAP_REAL_EXPIRED, MAP_REALS, MAP_SERVICES, MAX_SERVICES,
};
use lb_common::{
    FlowFlags, FlowKey, FlowValue, ForwardMode, LocalityValue, NatReverse, PersistKey,
    PersistValue, Real, Service, ServiceKey,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// CLOCK value written.
    pub now: u32,
    /// Flows left.
    pub flows: u64,
    /// Active flows expired.
    pub active: u64,
    /// Inactive flows expired.
    pub inactive: u64,
    /// Templates expired.
    pub templates: u64,
    /// lblc/lblcr locality entries cleared.
    pub locality: u64,
}

/// IPVS's `lblc_expiration` / `lblcr_expiration` default: an entry unused for a day goes.
pub const LOCALITY_EXPIRY_S: u32 = 24 * 3600;

/// Clears lblc/lblcr entries (LBLC, when the object has it) unused for
/// [`LOCALITY_EXPIRY_S`].
fn expire_locality(dir: &Path, now: u32, rebase: Option<Rebase>) -> Result<u64, MapsError> {
    let path = dir.join(MAP_LBLC);
    if !path.exists() {
        return Ok(0);
    }
    let raw = RawMap::open(&path).map_err(io_err(MAP_LBLC))?;
    let mut n = 0;
    for id in 0..MAX_SERVICES {
        let Some(v) = raw
            .get::<u32, LocalityValue>(&id)
            .map_err(io_err(MAP_LBLC))?
        else {
            break;
        };
        if v.len > 0
            && expired(
                now,
                Rebase::last_seen(rebase, v.last_seen_s),
                LOCALITY_EXPIRY_S,
            )
        {
            raw.set_zero(&id).map_err(io_err(MAP_LBLC))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Whether a flow or template last seen at `last` has outlived `timeout` at `now`
/// (wrapping seconds; a stamp from the future, which a racing packet may write, is fresh).
pub fn expired(now: u32, last: u32, timeout: u32) -> bool {
    let idle = now.wrapping_sub(last) as i32;
    idle > 0 && idle as u32 > timeout
}

/// Whether a template last used at `last` expires at `now`: past its service's `-p`
/// `timeout` and controlling no live flow (`in_use`), as IPVS re-arms a template's timer
/// while it controls connections.
pub fn template_expires(now: u32, last: u32, timeout: u32, in_use: bool) -> bool {
    !in_use && expired(now, last, timeout)
}

/// Books an expired flow on its real's expiry counts: its value's `INACTIVE` flag says
/// whether it leaves the active or the inactive count. Returns true for inactive.
pub fn book_flow(e: &mut ConnExpiry, v: &FlowValue) -> bool {
    let inactive = v.flags & FlowFlags::INACTIVE != 0;
    if inactive {
        e.inactive += 1;
    } else {
        e.active += 1;
    }
    inactive
}

/// A real's REAL_EXPIRED value with one pass's expiries `add` added (wrapping: the counts
/// only grow, and live counts are differences of them).
pub fn add_expiry(cur: ConnExpiry, add: &ConnExpiry) -> ConnExpiry {
    ConnExpiry {
        active: cur.active.wrapping_add(add.active),
        inactive: cur.inactive.wrapping_add(add.inactive),
        templates: cur.templates.wrapping_add(add.templates),
    }
}

/// Masks a client address with a service's persistence mask.
pub fn masked(addr: &lb_common::RawAddr, mask: &lb_common::RawAddr) -> lb_common::RawAddr {
    core::array::from_fn(|i| addr[i] & mask[i])
}

fn io_err(name: &'static str) -> impl FnOnce(std::io::Error) -> MapsError {
    move |source| MapsError::Raw { name, source }
}

/// Removes the NAT_REV entry of an expired NAT flow (key as docs/datapath.md: real →
/// client), if it still belongs to that flow (same VIP and port), so a late reply of an
/// expired connection is no longer translated, as IPVS finds no connection for it.
fn forget_nat_reverse(
    nat: &RawPair,
    reals: &Array<MapData, Real>,
    k: &FlowKey,
    v: &FlowValue,
) -> Result<(), MapsError> {
    let Ok(r) = reals.get(&v.real_id, 0) else {
        return Ok(());
    };
    if r.mode != ForwardMode::Nat as u8 {
        return Ok(());
    }
    let key = FlowKey {
        src: r.addr,
        dst: k.src,
        sport: if r.port.to_host() == 0 {
            k.dport
        } else {
            r.port
        },
        dport: k.sport,
        proto: k.proto,
        family: k.family,
        _pad: [0; 2],
    };
    if let Some(rev) = nat.take::<NatReverse>(&key)?
        && (rev.vip != k.dst || rev.vport != k.dport)
    {
        // Another flow's entry: put it back (unless the data path already did).
        nat.insert_new(&key, &rev)?;
    }
    Ok(())
}

/// CLOCK as the data path sees it (0 when the object has none).
pub fn read_clock(dir: &Path) -> Result<u32, MapsError> {
    let Some(clock) = open_opt::<Array<MapData, u32>>(dir, MAP_CLOCK)? else {
        return Ok(0);
    };
    clock.get(&0, 0).map_err(|source| MapsError::Map {
        name: MAP_CLOCK,
        source,
    })
}

/// Writes CLOCK only (what every pass does first): now, by CLOCK_MONOTONIC.
pub fn tick(dir: &Path) -> Result<u32, MapsError> {
    set_clock(dir, sys::monotonic_s())
}

/// Writes `now` into CLOCK (when the object has it).
pub fn set_clock(dir: &Path, now: u32) -> Result<u32, MapsError> {
    if let Some(mut clock) = open_opt::<Array<MapData, u32>>(dir, MAP_CLOCK)? {
        clock.set(0, now, 0).map_err(|source| MapsError::Map {
            name: MAP_CLOCK,
            source,
        })?;
    }
    Ok(now)
}

/// One sweep pass over the maps pinned under `dir`, at the current time.
pub fn sweep_once(dir: &Path) -> Result<SweepReport, MapsError> {
    sweep_at(dir, sys::monotonic_s())
}

/// One sweep pass as if the time were `now` (CLOCK seconds): tests drive time with it
/// (write CLOCK with [`set_clock`], send packets, then sweep at a later `now`).
pub fn sweep_at(dir: &Path, now: u32) -> Result<SweepReport, MapsError> {
    sweep_pass(dir, now, None)
}

/// A stopped clock being started again: while CLOCK was not advancing (no sweep ran), the
/// data path stamped every packet with the stale value, so a stamp at or before
/// `clock_was` only says "seen some time before `since`". Such flows and templates are
/// timed from `since`, so a restarted sweep never expires a connection it cannot know to
/// be idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebase {
    /// CLOCK as the sweep found it.
    pub clock_was: u32,
    /// When the sweep started.
    pub since: u32,
}

impl Rebase {
    fn last_seen(rebase: Option<Rebase>, stamp: u32) -> u32 {
        match rebase {
            Some(r) if (r.clock_was.wrapping_sub(stamp) as i32) >= 0 => r.since,
            _ => stamp,
        }
    }
}

/// What `lb-ctl sweep` (the daemon) starts with: a [`Rebase`] when CLOCK is more than
/// `slack` seconds behind now (no sweep was keeping it).
pub fn rebase_for(dir: &Path, slack: u32) -> Result<Option<Rebase>, MapsError> {
    let Some(clock) = open_opt::<Array<MapData, u32>>(dir, MAP_CLOCK)? else {
        return Ok(None);
    };
    let was = clock.get(&0, 0).map_err(|source| MapsError::Map {
        name: MAP_CLOCK,
        source,
    })?;
    let now = sys::monotonic_s();
    Ok((now.wrapping_sub(was) > slack).then_some(Rebase {
        clock_was: was,
        since: now,
    }))
}

/// One pass at `now`, with stale stamps rebased (see [`Rebase`]).
pub fn sweep_pass(dir: &Path, now: u32, rebase: Option<Rebase>) -> Result<SweepReport, MapsError> {
    let seen = |stamp: u32| Rebase::last_seen(rebase, stamp);
    let _lock = sys::lock_dir(dir).map_err(io_err("pin directory lock"))?;
    let now = set_clock(dir, now)?;
    let timeouts: Timeouts = maps::read_settings(dir)?.timeouts;
    let mut rep = SweepReport {
        now,
        ..Default::default()
    };
    let services: HashMap<MapData, ServiceKey, Service> = open(dir, MAP_SERVICES)?;
    let by_id: BTreeMap<u32, Service> = services
        .iter()
        .filter_map(Result::ok)
        .map(|(_, s)| (s.id, s))
        .collect();
    let raw_flows = flows::FLOWS.open_raw(dir)?;
    let reals: Array<MapData, Real> = open(dir, MAP_REALS)?;
    let nat = flows::NAT_REV.open_raw(dir)?;
    let mut expiry: BTreeMap<u32, ConnExpiry> = BTreeMap::new();
    // (group, proto, family, masked client) of live flows of persistent services.
    let mut controlled: HashSet<(u32, u8, u8, lb_common::RawAddr)> = HashSet::new();
    for (k, v) in flows::FLOWS.entries::<FlowValue>(dir)? {
        let timeout = state_timeout_s(k.proto, v.state, &timeouts);
        let mut live = Some(v);
        if expired(now, seen(v.last_seen_s), timeout) {
            live = None;
            if let Some(cur) = raw_flows.take::<FlowValue>(&k)? {
                let t = state_timeout_s(k.proto, cur.state, &timeouts);
                if !expired(now, seen(cur.last_seen_s), t) && raw_flows.insert_new(&k, &cur)? {
                    live = Some(cur);
                } else {
                    forget_nat_reverse(&nat, &reals, &k, &cur)?;
                    if book_flow(expiry.entry(cur.real_id).or_default(), &cur) {
                        rep.inactive += 1;
                    } else {
                        rep.active += 1;
                    }
                }
            }
        }
        if let Some(v) = live {
            rep.flows += 1;
            if let Some(s) = by_id.get(&v.svc_id)
                && s.flags.has(lb_common::VipFlags::PERSISTENT)
            {
                controlled.insert((
                    s.persist_group,
                    k.proto,
                    k.family,
                    masked(&k.src, &s.persist_mask),
                ));
            }
        }
    }
    if let Some(persist) = open_opt::<HashMap<MapData, PersistKey, PersistValue>>(dir, MAP_PERSIST)?
    {
        let raw = RawMap::open(&dir.join(MAP_PERSIST)).map_err(io_err(MAP_PERSIST))?;
        let entries: Vec<(PersistKey, PersistValue)> =
            persist.iter().filter_map(Result::ok).collect();
        for (k, v) in entries {
            let timeout = by_id.get(&v.svc_id).map_or(0, |s| s.persist_timeout_s);
            let in_use = controlled.contains(&(k.group, k.proto, k.family, k.client));
            if !template_expires(now, seen(v.last_seen_s), timeout, in_use) {
                continue;
            }
            if let Some(cur) = raw
                .take::<PersistKey, PersistValue>(&k)
                .map_err(io_err(MAP_PERSIST))?
            {
                if !expired(now, seen(cur.last_seen_s), timeout)
                    && raw.insert_new(&k, &cur).map_err(io_err(MAP_PERSIST))?
                {
                    continue;
                }
                expiry.entry(cur.real_id).or_default().templates += 1;
                rep.templates += 1;
            }
        }
    }
    rep.locality = expire_locality(dir, now, rebase)?;
    if !expiry.is_empty() {
        let mut ex: Array<MapData, ConnExpiry> = open(dir, MAP_REAL_EXPIRED)?;
        for (id, add) in expiry {
            let err = |source| MapsError::Map {
                name: MAP_REAL_EXPIRED,
                source,
            };
            let cur = ex.get(&id, 0).map_err(err)?;
            ex.set(id, add_expiry(cur, &add), 0).map_err(err)?;
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        assert!(!expired(100, 90, 10));
        assert!(expired(101, 90, 10));
        assert!(!expired(90, 95, 1), "a stamp ahead of the clock is fresh");
        assert!(expired(5, u32::MAX - 10, 10), "wraps");
    }

    #[test]
    fn stale_stamps_count_from_the_restart() {
        let r = Some(Rebase {
            clock_was: 100,
            since: 5000,
        });
        assert_eq!(Rebase::last_seen(r, 100), 5000);
        assert_eq!(Rebase::last_seen(r, 40), 5000);
        assert_eq!(
            Rebase::last_seen(r, 5001),
            5001,
            "stamped after the restart"
        );
        assert_eq!(Rebase::last_seen(None, 40), 40);
        assert!(!expired(5000 + 900, Rebase::last_seen(r, 100), 900));
        assert!(expired(5000 + 901, Rebase::last_seen(r, 100), 900));
    }

    #[test]
    fn expired_flows_and_templates_are_booked_by_kind() {
        let mut e = ConnExpiry::default();
        let flow = |flags| FlowValue {
            flags,
            ..Default::default()
        };
        assert!(!book_flow(&mut e, &flow(0)));
        assert!(book_flow(&mut e, &flow(FlowFlags::INACTIVE)));
        assert!(book_flow(
            &mut e,
            &flow(FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT)
        ));
        e.templates += 1;
        let cur = ConnExpiry {
            active: u64::MAX,
            inactive: 5,
            templates: 0,
        };
        assert_eq!(
            add_expiry(cur, &e),
            ConnExpiry {
                active: 0,
                inactive: 7,
                templates: 1
            }
        );
        assert!(template_expires(400, 99, 300, false));
        assert!(!template_expires(400, 99, 300, true), "controls a flow");
        assert!(!template_expires(399, 99, 300, false));
    }

    #[test]
    fn masks_clients() {
        let a = [u32::from_ne_bytes([198, 18, 7, 9]), 0, 0, 0];
        let m = [u32::from_ne_bytes([255, 255, 255, 0]), 0, 0, 0];
        assert_eq!(masked(&a, &m)[0], u32::from_ne_bytes([198, 18, 7, 0]));
    }
}
