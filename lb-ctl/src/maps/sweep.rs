//! `lb-ctl sweep`'s map I/O: the expiry of connections and persistence
//! templates, as IPVS's per-connection timers do (ip_vs_conn.c `ip_vs_conn_expire`), done
//! in passes. What expires is decided by [`crate::sweep`]; this file reads and writes.
//!
//! One pass, at the data path's time (`maps::clock::now`, read through `lb_ops`): walk
//! FLOWS4 and FLOWS6 (through `flows`) and collect every flow idle longer than its state's
//! timeout (`lb_common::conn::state_timeout_s`, `--set` timeouts from SETTINGS), and any
//! claimed one (DEAD) left behind. They are removed in the kernel, by `lb_ops` REAP
//! (batches of `REAP_BATCH`): each is claimed by compare-and-swap of its state word only if
//! the word and its stamp are still what the walk read (else it changed: a packet moved or
//! refreshed it, and it stays), then deleted; only what a REAP deleted is booked, by the
//! flags it was removed with (`REAL_EXPIRED`, which only lb-ctl writes: the sweep, and
//! `-a` settling a reused id, both under lb-ctl's pin-directory lock; the walk itself holds
//! no lock, and the booking checks again under the lock that each real's generation is the
//! one the walk saw). A data-path CPU that held the flow
//! cannot move or count it after the claim, so no connection is counted twice. Maps pinned
//! by an lb without `lb_ops` are swept as before: lookup-and-delete, booked by the value
//! taken, a flow that turned fresh put back. Then PERSIST: a template expires when its
//! service's `-p` timeout has passed since it was last used and no live flow is controlled
//! by it (same group, protocol and masked client), as IPVS keeps a template while it
//! controls connections.
//!
//! Differences from IPVS: expiry happens at the next pass (the interval, default 1 s),
//! not at the exact second.

use super::clock;
use super::flows::{self, RawPair};
use super::ops::Ops;
use super::sys::{self, RawMap};
use super::{MapsError, open, open_opt, read_settings};
use crate::sweep::{Controlled, Orphan, Owners, Pass, SweepReport, Tally, add_expiry, reap_entry};
use aya::maps::{Array, HashMap, MapData};
use lb_common::conn::ConnExpiry;
use lb_common::consts::{
    MAP_LBLC, MAP_PERSIST, MAP_REAL_EXPIRED, MAP_REALS, MAP_SERVICES, MAP_TABLE_FILL, MAX_SERVICES,
};
use lb_common::ops::{REAP_BATCH, ReapEntry, reap};
use lb_common::real::ref_id;
use lb_common::tables::{TABLES, Table};
use lb_common::{
    FlowFlags, FlowKey, FlowValue, ForwardMode, LocalityValue, NatReverse, PersistKey,
    PersistValue, Real, Service, ServiceKey,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Clears lblc/lblcr entries (LBLC, when the object has it) unused for
/// `LOCALITY_EXPIRY_S`.
fn expire_locality(dir: &Path, pass: &Pass) -> Result<u64, MapsError> {
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
        if pass.locality_expired(&v) {
            raw.set_zero(&id).map_err(io_err(MAP_LBLC))?;
            n += 1;
        }
    }
    Ok(n)
}

fn io_err(name: &'static str) -> impl FnOnce(std::io::Error) -> MapsError {
    move |source| MapsError::Raw { name, source }
}

/// Removes the NAT_REV entry of an expired NAT flow (key as the data path's insert builds
/// it, `FlowKey::nat_reverse_key`: real → client), if it still belongs to that flow
/// (`FlowKey::owns_nat_reverse`: same VIP and port), so a late reply of an expired
/// connection is no longer translated, as IPVS finds no connection for it. The data path
/// does the same for the flows it expires itself (lb-ebpf `lookup::release_real`). Not
/// for a stale flow (`slot`, its real's id now, holds another real): the key would be the
/// new real's.
fn forget_nat_reverse(
    nat: &RawPair,
    slot: Option<&Real>,
    k: &FlowKey,
    v: &FlowValue,
) -> Result<(), MapsError> {
    let Some(r) = slot.filter(|r| r.referenced_by(v.real_id)) else {
        return Ok(());
    };
    // The flow's own method (a real edited since keeps its older flows' method); 0, a flow
    // of an older lb: the real's.
    if ForwardMode::of_flow(v.fwd, r.mode) != ForwardMode::Nat as u8 {
        return Ok(());
    }
    let (addr, port) = k.nat_dest(&r.addr, r.port);
    let key = k.nat_reverse_key(&addr, port);
    if let Some(rev) = nat.take::<NatReverse>(&key)?
        && !k.owns_nat_reverse(&rev)
    {
        // Another flow's entry: put it back (unless the data path already did).
        nat.insert_new(&key, &rev)?;
    }
    Ok(())
}

/// One sweep pass over the maps pinned under `dir`, at the data path's time now.
pub fn sweep_once(dir: &Path) -> Result<SweepReport, MapsError> {
    sweep_at(dir, clock::now(dir)?)
}

/// One sweep pass as if the time were `now` (the data path's seconds): tests drive time
/// with it (fix the clock with `clock::set_fixed`, send packets, then sweep at a later
/// `now`).
pub fn sweep_at(dir: &Path, now: u32) -> Result<SweepReport, MapsError> {
    // No lock across the walk: each removal is a REAP (a claim by compare-and-swap, then
    // a delete) or, without lb_ops, a lookup-and-delete, which one remover wins, so a pass
    // and an `lb-ctl` change (or another pass) interleave safely; only the
    // read-modify-write of REAL_EXPIRED (`book`) takes the pin-directory lock.
    let pass = Pass {
        now,
        timeouts: read_settings(dir)?.timeouts,
    };
    let mut tally = Tally::default();
    tally.report.now = now;
    let services: HashMap<MapData, ServiceKey, Service> = open(dir, MAP_SERVICES)?;
    let by_id: BTreeMap<u32, Service> = services
        .iter()
        .filter_map(Result::ok)
        .map(|(_, s)| (s.id, s))
        .collect();
    let reals: Array<MapData, Real> = open(dir, MAP_REALS)?;
    let nat = flows::NAT_REV.open_raw(dir)?;
    let mut controlled = Controlled::default();
    let mut fill = [0u64; TABLES as usize];
    let mut owners = Owners::default();
    let mut live = |tally: &mut Tally, k: &FlowKey, v: &FlowValue| {
        tally.report.flows += 1;
        fill[family_table(k, Table::Flows4, Table::Flows6)] += 1;
        owners.flow(k, v);
        if let Some(s) = by_id.get(&v.svc_id) {
            controlled.flow(s, k);
        }
    };
    let mut doomed: Vec<(FlowKey, FlowValue)> = Vec::new();
    for (k, v) in flows::FLOWS.entries::<FlowValue>(dir)? {
        if pass.flow_to_reap(&k, &v) {
            doomed.push((k, v));
        } else {
            live(&mut tally, &k, &v);
        }
    }
    match open_ops(dir)? {
        Some(ops) => {
            // Booked batch by batch, and what was removed is booked even when a later
            // step fails: a flow the kernel deleted is never left counted.
            for chunk in doomed.chunks(REAP_BATCH) {
                let mut batch: Vec<ReapEntry> =
                    chunk.iter().map(|(k, v)| reap_entry(k, v)).collect();
                let mut failed = ops.reap(&mut batch).err();
                if failed.is_none() {
                    for ((k, v), e) in chunk.iter().zip(&batch) {
                        let slot = slot_of(&reals, v.real_id);
                        if tally.reaped(v, e, slot.as_ref()) {
                            live(&mut tally, k, v);
                        } else if e.outcome == reap::REMOVED
                            && let Err(err) = forget_nat_reverse(&nat, slot.as_ref(), k, v)
                        {
                            failed.get_or_insert(err);
                        }
                    }
                }
                book(dir, &tally)?;
                tally.per_real.clear();
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        None => {
            let raw_flows = flows::FLOWS.open_raw(dir)?;
            for (k, _) in doomed {
                if let Some(cur) = raw_flows.take::<FlowValue>(&k)? {
                    if cur.flags & FlowFlags::DEAD == 0
                        && !pass.flow_expired(&k, &cur)
                        && raw_flows.insert_new(&k, &cur)?
                    {
                        live(&mut tally, &k, &cur);
                    } else {
                        let slot = slot_of(&reals, cur.real_id);
                        forget_nat_reverse(&nat, slot.as_ref(), &k, &cur)?;
                        tally.flow(&cur, slot.as_ref());
                    }
                }
            }
        }
    }
    if let Some(persist) = open_opt::<HashMap<MapData, PersistKey, PersistValue>>(dir, MAP_PERSIST)?
    {
        let raw = RawMap::open(&dir.join(MAP_PERSIST)).map_err(io_err(MAP_PERSIST))?;
        let entries: Vec<(PersistKey, PersistValue)> =
            persist.iter().filter_map(Result::ok).collect();
        fill[Table::Persist as usize] = entries.len() as u64;
        for (k, v) in entries {
            let timeout = by_id.get(&v.svc_id).map_or(0, |s| s.persist_timeout_s);
            if controlled.holds(&k) || !pass.template_expired(&v, timeout) {
                continue;
            }
            if let Some(cur) = raw
                .take::<PersistKey, PersistValue>(&k)
                .map_err(io_err(MAP_PERSIST))?
            {
                if !pass.template_expired(&cur, timeout)
                    && raw.insert_new(&k, &cur).map_err(io_err(MAP_PERSIST))?
                {
                    continue;
                }
                fill[Table::Persist as usize] -= 1;
                tally.template(cur.real_id, slot_of(&reals, cur.real_id).as_ref());
            }
        }
    }
    tally.report.locality = expire_locality(dir, &pass)?;
    book(dir, &tally)?;
    tally.report.replies = expire_orphan_replies(&nat, dir, &pass, &owners, &mut fill)?;
    write_fill(dir, &fill)?;
    clock::mark_swept(dir, now)?;
    Ok(tally.report)
}

/// The `TABLE_FILL` index of `k`'s family's table of a pair.
fn family_table(k: &FlowKey, v4: Table, v6: Table) -> usize {
    (if k.is_v4() { v4 } else { v6 }) as usize
}

/// Walks NAT_REV: an entry no live flow owns (`Owners`, from this pass's flow walk) is
/// stamped when first found so, and removed once its window has passed
/// (`Pass::orphan_reply`). Counts what is left per family into `fill`; returns the
/// entries removed. An entry the data path rewrote meanwhile (a new datagram of the same
/// ports writes stamp 0) is put back.
fn expire_orphan_replies(
    nat: &RawPair,
    dir: &Path,
    pass: &Pass,
    owners: &Owners,
    fill: &mut [u64; TABLES as usize],
) -> Result<u64, MapsError> {
    let mut removed = 0;
    for (k, rev) in flows::NAT_REV.entries::<NatReverse>(dir)? {
        let live = owners.own(&k, &rev)
            || match pass.orphan_reply(&rev) {
                Orphan::Keep => true,
                Orphan::Stamp => {
                    let stamped = NatReverse {
                        stamp_s: pass.now.max(1),
                        ..rev
                    };
                    nat.replace(&k, &stamped)?
                }
                Orphan::Expire => match nat.take::<NatReverse>(&k)? {
                    // Written anew by the data path since the walk read it: put back.
                    Some(cur) if cur.stamp_s == 0 => nat.insert_new(&k, &cur)?,
                    Some(_) => {
                        removed += 1;
                        false
                    }
                    None => false,
                },
            };
        if live {
            fill[family_table(&k, Table::NatRev4, Table::NatRev6)] += 1;
        }
    }
    Ok(removed)
}

/// Writes the pass's table fill (TABLE_FILL, when the object has it).
fn write_fill(dir: &Path, fill: &[u64; TABLES as usize]) -> Result<(), MapsError> {
    let Some(mut m) = open_opt::<Array<MapData, u64>>(dir, MAP_TABLE_FILL)? else {
        return Ok(());
    };
    for (i, n) in fill.iter().enumerate() {
        m.set(i as u32, n, 0).map_err(|source| MapsError::Map {
            name: MAP_TABLE_FILL,
            source,
        })?;
    }
    Ok(())
}

/// The REALS slot of a stored reference's id (`None` if unreadable).
fn slot_of(reals: &Array<MapData, Real>, real_ref: u32) -> Option<Real> {
    reals.get(&ref_id(real_ref), 0).ok()
}

/// Adds a tally's expiries to REAL_EXPIRED (wrapping, [`add_expiry`]), under the
/// pin-directory lock (two passes, a pass and `expire_flow`, or a pass and `-a` settling
/// a reused id never interleave it).
fn book(dir: &Path, tally: &Tally) -> Result<(), MapsError> {
    if tally.per_real.is_empty() {
        return Ok(());
    }
    let _lock = sys::lock_dir(dir).map_err(io_err("pin directory lock"))?;
    let mut ex: Array<MapData, ConnExpiry> = open(dir, MAP_REAL_EXPIRED)?;
    let reals: Array<MapData, Real> = open(dir, MAP_REALS)?;
    for (real_ref, add) in &tally.per_real {
        // The id went to another real since the walk (`-a` settled its counts then).
        if !slot_of(&reals, *real_ref).is_some_and(|r| r.referenced_by(*real_ref)) {
            continue;
        }
        let id = ref_id(*real_ref);
        let err = |source| MapsError::Map {
            name: MAP_REAL_EXPIRED,
            source,
        };
        let cur = ex.get(&id, 0).map_err(err)?;
        ex.set(id, add_expiry(cur, add), 0).map_err(err)?;
    }
    Ok(())
}

/// Expires one flow now, whatever its age, as a pass expires an idle one: removed through
/// `lb_ops` REAP (claimed as it is now; a packet moving it in between makes this try
/// again, a few times), its NAT_REV entry forgotten, and counted in REAL_EXPIRED by the
/// flags it was removed with. Returns the value removed (`None`: no such flow, or another
/// remover's). Tests drive expiry with it.
pub fn expire_flow(dir: &Path, key: &FlowKey) -> Result<Option<FlowValue>, MapsError> {
    let raw = flows::FLOWS.open_raw(dir)?;
    let Some(ops) = open_ops(dir)? else {
        // No lb_ops (an older pinned lb): the lookup-and-delete of before.
        let Some(v) = raw.take::<FlowValue>(key)? else {
            return Ok(None);
        };
        return book_one(dir, key, v).map(Some);
    };
    for _ in 0..EXPIRE_TRIES {
        let Some(v) = raw.get::<FlowValue>(key)? else {
            return Ok(None);
        };
        let mut e = [reap_entry(key, &v)];
        ops.reap(&mut e)?;
        match e[0].outcome {
            reap::REMOVED => {
                let v = FlowValue {
                    flags: e[0].flags as u8,
                    ..v
                };
                return book_one(dir, key, v).map(Some);
            }
            reap::CHANGED => continue,
            _ => return Ok(None),
        }
    }
    Err(MapsError::OpFailed {
        op: lb_common::ops::op::REAP,
        status: reap::CHANGED,
    })
}

/// Tries of [`expire_flow`] against packets moving the flow between its read and its claim.
const EXPIRE_TRIES: u32 = 8;

/// Books one flow removed by [`expire_flow`] (its NAT_REV entry forgotten, REAL_EXPIRED
/// by its flags); returns it.
fn book_one(dir: &Path, key: &FlowKey, v: FlowValue) -> Result<FlowValue, MapsError> {
    let reals: Array<MapData, Real> = open(dir, MAP_REALS)?;
    let slot = slot_of(&reals, v.real_id);
    forget_nat_reverse(&flows::NAT_REV.open_raw(dir)?, slot.as_ref(), key, &v)?;
    let mut tally = Tally::default();
    tally.flow(&v, slot.as_ref());
    book(dir, &tally)?;
    Ok(v)
}

/// `lb_ops` pinned under `dir`, or `None` for maps pinned by an lb without it (the sweep
/// then removes flows by lookup-and-delete, as before REAP).
fn open_ops(dir: &Path) -> Result<Option<Ops>, MapsError> {
    match Ops::open(dir) {
        Ok(ops) => Ok(Some(ops)),
        Err(MapsError::NoOps(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Expires one persistence template now, whatever its age, as a pass expires an unused
/// one: taken from PERSIST and counted in REAL_EXPIRED. Returns the value taken (`None`: no
/// such template). Tests drive expiry with it.
pub fn expire_template(dir: &Path, key: &PersistKey) -> Result<Option<PersistValue>, MapsError> {
    let raw = RawMap::open(&dir.join(MAP_PERSIST)).map_err(io_err(MAP_PERSIST))?;
    let Some(v) = raw
        .take::<PersistKey, PersistValue>(key)
        .map_err(io_err(MAP_PERSIST))?
    else {
        return Ok(None);
    };
    let reals: Array<MapData, Real> = open(dir, MAP_REALS)?;
    let mut tally = Tally::default();
    tally.template(v.real_id, slot_of(&reals, v.real_id).as_ref());
    book(dir, &tally)?;
    Ok(Some(v))
}
