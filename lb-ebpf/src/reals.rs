//! The reals as the data path reads them (REALS, SCHED_TABLE; leaf): a configured real by
//! id, whether a flow's real may still take its packets, whether a real may take a new
//! flow, and a service's reals list by position. Array reads the JIT inlines.

use lb_common::{Drop, Real, RealFlags, consts::NO_REAL};

use crate::conn;
use crate::maps::{REALS, SCHED_TABLE};

/// A configured (`ACTIVE`) real by id. Array read: inlined by the JIT.
#[inline(always)]
pub fn lookup_real(id: u32) -> Option<&'static Real> {
    REALS.get(id).filter(|r| r.flags.has(RealFlags::ACTIVE))
}

/// The flow's real is still configured and still in the flow's service.
#[inline(always)]
pub fn usable(real_id: u32, svc_id: u32) -> bool {
    matches!(lookup_real(real_id), Some(r) if r.svc_id == svc_id)
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
