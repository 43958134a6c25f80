//! The reals as the data path reads them (REALS, SCHED_TABLE; leaf): a configured real by
//! id or by stored reference, whether a flow's real may still take its packets, whether a
//! real may take a new flow, and a service's reals list by position. Array reads the JIT
//! inlines.
//!
//! State that names a real (flows, cached flows, templates, locality entries, NAT reverse
//! entries) stores a reference: the id and the real's generation
//! (`lb_common::real::ref_id`, `Real::referenced_by`). A reference of another generation
//! than the slot's is stale: its real is gone and the id belongs to another real, which
//! it never reaches and whose counters it never moves.

use lb_common::{Drop, Real, RealFlags, consts::NO_REAL, real::ref_id};

use crate::conn;
use crate::maps::{REALS, SCHED_TABLE};

/// A configured (`ACTIVE`) real by id. Array read: inlined by the JIT.
#[inline(always)]
pub fn lookup_real(id: u32) -> Option<&'static Real> {
    REALS.get(id).filter(|r| r.flags.has(RealFlags::ACTIVE))
}

/// The configured real a stored reference names: its slot `ACTIVE` and of the
/// reference's generation.
#[inline(always)]
pub fn lookup_ref(real_ref: u32) -> Option<&'static Real> {
    REALS
        .get(ref_id(real_ref))
        .filter(|r| r.active_for(real_ref))
}

/// The flow's real (a stored reference) is still configured, still the real the flow was
/// made for, and still in the flow's service.
#[inline(always)]
pub fn usable(real_ref: u32, svc_id: u32) -> bool {
    matches!(lookup_ref(real_ref), Some(r) if r.svc_id == svc_id)
}

/// The id whose counters a stored reference's state moves: its id while its slot holds
/// the real it was made for (configured or deleted), else `NO_REAL`, which counts on no
/// real (an id past every per-real array).
#[inline(always)]
pub fn counted(real_ref: u32) -> u32 {
    let id = ref_id(real_ref);
    match REALS.get(id) {
        Some(r) if r.referenced_by(real_ref) => id,
        _ => NO_REAL,
    }
}

/// A configured real that may take a new flow: IPVS's `is_unavailable` plus ours (weight
/// > 0, not overloaded).
#[inline(always)]
pub fn available(real_id: u32) -> Option<&'static Real> {
    let real = lookup_real(real_id)?;
    if real.weight == 0 || conn::overloaded(real_id, real) {
        None
    } else {
        Some(real)
    }
}

/// Real id at position `i` of a reals list starting at SCHED_TABLE slot `base` (`None`
/// past the map's end).
#[inline(always)]
pub fn real_at(base: u32, i: u32) -> Option<u32> {
    SCHED_TABLE.get(base.wrapping_add(i)).copied()
}

/// A scheduler's pick: `NO_REAL` (none available) drops `NoReal`.
#[inline(always)]
pub fn picked(id: u32) -> Result<u32, Drop> {
    if id == NO_REAL {
        Err(Drop::NoReal)
    } else {
        Ok(id)
    }
}
