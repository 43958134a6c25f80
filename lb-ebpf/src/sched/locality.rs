//! Locality-based schedulers (ip_vs_lblc.c, ip_vs_lblcr.c): a cache entry per destination
//! address; a service of ours has one destination address (its VIP), so LBLC is indexed
//! by service id.
//! - lblc: the cached real while it is configured, has weight > 0 and is not "overloaded"
//!   in lblc's sense (active > weight while some real has active·2 < weight); otherwise
//!   the wlc choice, cached.
//! - lblcr: a set of up to `LOCALITY_SET_MAX` reals; the least loaded member (overhead /
//!   weight, skipping weight 0 and threshold-overloaded members) unless overloaded in
//!   lblc's sense, else the wlc choice is added at the head of the set (IPVS list order,
//!   newest first). A set of more than one that has not changed for `LOCALITY_EXPIRY_S`
//!   loses its most loaded member. When the set is full, its most loaded member makes
//!   room (IPVS's list grows without bound).
//!
//! Entries not used for 24 h are the sweep's to expire (lblc_expiration).

use aya_ebpf::cty::c_void;
use lb_common::{
    Drop, LocalityValue, SchedKind, Service,
    consts::{LOCALITY_EXPIRY_S, MAX_REALS_PER_SERVICE, NO_REAL},
    flow::LOCALITY_SET_MAX,
    real::ref_id,
    sched::pick::conn_overhead,
};

use super::{iter, load};
use crate::conn;
use crate::maps::LBLC;
use crate::parse::Packet;
use crate::reals::{lookup_real, lookup_ref, real_at};

/// `replicate` of the global functions below: lblc, one cached real per service.
const LBLC_ONE: u32 = 0;
/// `replicate` of the global functions below: lblcr, a set of reals per service.
const LBLCR_SET: u32 = 1;

#[inline(always)]
fn one(id: u32, now: u32) -> LocalityValue {
    LocalityValue {
        reals: [
            id, NO_REAL, NO_REAL, NO_REAL, NO_REAL, NO_REAL, NO_REAL, NO_REAL,
        ],
        len: 1,
        last_seen_s: now,
        last_mod_s: now,
        _pad: 0,
    }
}

/// lblc / lblcr's `is_overloaded(dest, svc)`.
#[inline(always)]
fn lb_overloaded(base: u32, len: u32, id: u32) -> bool {
    let Some(real) = lookup_real(id) else {
        return true;
    };
    let c = conn::counts(id);
    c.active > real.weight as u64 && lb_lblc_spare(base, len) != 0
}

/// 1 when some real of the list has active·2 < weight (a global function over bpf_loop).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_lblc_spare(reals_base: u32, reals_len: u32) -> u32 {
    let mut s = Spare {
        base: reals_base,
        spare: 0,
    };
    iter::run(reals_len.min(MAX_REALS_PER_SERVICE), spare_step, &mut s);
    s.spare
}

/// [`lb_lblc_spare`]'s scan state.
#[repr(C)]
struct Spare {
    /// The reals list's first SCHED_TABLE slot.
    base: u32,
    /// 1 once a real with active·2 < weight is seen.
    spare: u32,
}

#[inline(never)]
extern "C" fn spare_step(i: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Spare = unsafe { iter::state(ctx) };
    let Some(id) = real_at(s.base, i as u32) else {
        return 1;
    };
    if let Some(r) = lookup_real(id)
        && conn::counts(id).active * 2 < r.weight as u64
    {
        s.spare = 1;
        return 1;
    }
    0
}

/// lblc.
#[inline(always)]
pub fn select_lblc(svc: &Service, _pkt: &Packet) -> Result<u32, Drop> {
    select(svc, LBLC_ONE)
}

/// lblcr.
#[inline(always)]
pub fn select_lblcr(svc: &Service, _pkt: &Packet) -> Result<u32, Drop> {
    select(svc, LBLCR_SET)
}

/// The cached choice if still good, else wlc's, stored. Three global functions called
/// one after the other keep the combined BPF stack (caller + callees) under 512 bytes.
#[inline(always)]
fn select(svc: &Service, replicate: u32) -> Result<u32, Drop> {
    let id = lb_lblc_cached(svc.id, replicate);
    if id != NO_REAL && !lb_overloaded(svc.reals_base, svc.reals_len, id) {
        return Ok(id);
    }
    let id = load::lb_sched_load(svc.reals_base, svc.reals_len, SchedKind::Wlc as u32);
    if id == NO_REAL {
        return Err(Drop::NoReal);
    }
    lb_lblc_store(svc.id, id, replicate);
    Ok(id)
}

/// The cached real of lblc (`replicate` [`LBLC_ONE`]: configured, weight > 0) or the
/// set's least loaded of lblcr ([`LBLCR_SET`]), else `NO_REAL`; stamps the entry, and lets an lblcr set that has
/// not changed for `LOCALITY_EXPIRY_S` drop its most loaded member. The caller applies
/// lblc's overload test.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_lblc_cached(svc_id: u32, replicate: u32) -> u32 {
    let Some(e) = LBLC.get_ptr_mut(svc_id) else {
        return NO_REAL;
    };
    let len = unsafe { (*e).len };
    if len == 0 || len as usize > LOCALITY_SET_MAX {
        return NO_REAL;
    }
    let now = conn::now();
    unsafe { (*e).last_seen_s = now };
    if replicate == LBLC_ONE {
        let r = unsafe { (*e).reals[0] };
        if matches!(lookup_ref(r), Some(real) if real.weight > 0 && real.svc_id == svc_id) {
            return ref_id(r);
        }
        return NO_REAL;
    }
    let (min, max) = set_min_max(e, svc_id);
    if len > 1
        && max != usize::MAX
        && now.wrapping_sub(unsafe { (*e).last_mod_s }) > LOCALITY_EXPIRY_S
    {
        erase(e, max);
    }
    min
}

/// Records the scheduler's choice (as a reference, with its real's generation): lblc
/// replaces the entry; lblcr adds it to the set (a fresh set when there is none).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_lblc_store(svc_id: u32, id: u32, replicate: u32) -> u32 {
    let Some(e) = LBLC.get_ptr_mut(svc_id) else {
        return 0;
    };
    let id = lookup_real(id).map_or(id, |r| r.reference(id));
    let now = conn::now();
    let len = unsafe { (*e).len };
    if replicate == LBLC_ONE || len == 0 || len as usize > LOCALITY_SET_MAX {
        unsafe { *e = one(id, now) };
    } else {
        insert(e, id, now, svc_id);
    }
    0
}

/// (least loaded usable member id, index of the most loaded member) of a set, as IPVS's
/// `ip_vs_dest_set_min` (weight > 0, not overloaded, min overhead/weight, first wins) and
/// `ip_vs_dest_set_max` (weight > 0, max overhead/weight, first wins), in set order. A
/// member whose real is gone (deleted, or its id another real's now) is skipped.
#[inline(always)]
fn set_min_max(e: *mut LocalityValue, svc_id: u32) -> (u32, usize) {
    let (mut least, mut lw, mut loh) = (NO_REAL, 0u64, 0u64);
    let (mut most, mut mw, mut moh) = (usize::MAX, 0u64, 0u64);
    let len = unsafe { (*e).len } as usize;
    for i in 0..LOCALITY_SET_MAX {
        if i >= len {
            break;
        }
        let member = unsafe { (*e).reals[i] };
        let Some(r) = lookup_ref(member).filter(|r| r.svc_id == svc_id) else {
            continue;
        };
        let id = ref_id(member);
        let c = conn::counts(id);
        let oh = conn_overhead(c.active, c.inactive);
        let w = r.weight as u64;
        if w == 0 {
            continue;
        }
        if !conn::overloaded(id, r) && (least == NO_REAL || loh * w > oh * lw) {
            (least, lw, loh) = (id, w, oh);
        }
        if most == usize::MAX || moh * w < oh * mw {
            (most, mw, moh) = (i, w, oh);
        }
    }
    (least, most)
}

/// Removes member `at`, keeping the others' order (IPVS `list_del`; `lastmod` unchanged).
#[inline(always)]
fn erase(e: *mut LocalityValue, at: usize) {
    unsafe {
        let len = (*e).len as usize;
        if at >= LOCALITY_SET_MAX || len == 0 || len > LOCALITY_SET_MAX {
            return;
        }
        // Constant indexes only: shift every member after `at` one place left.
        for i in 0..LOCALITY_SET_MAX - 1 {
            if i >= at {
                (*e).reals[i] = (*e).reals[i + 1];
            }
        }
        (*e).reals[LOCALITY_SET_MAX - 1] = NO_REAL;
        (*e).len = len as u32 - 1;
    }
}

/// Adds a real (`id`: a reference, with its generation) at the head of the set (IPVS
/// `list_add`), unless already a member; a full set first drops its most loaded member.
/// Stamps `last_mod_s`.
#[inline(always)]
fn insert(e: *mut LocalityValue, id: u32, now: u32, svc_id: u32) {
    unsafe {
        let len = (*e).len as usize;
        for i in 0..LOCALITY_SET_MAX {
            if i < len && (*e).reals[i] == id {
                return;
            }
        }
        if len >= LOCALITY_SET_MAX {
            let (_, most) = set_min_max(e, svc_id);
            erase(
                e,
                if most < LOCALITY_SET_MAX {
                    most
                } else {
                    LOCALITY_SET_MAX - 1
                },
            );
        }
        let len = (*e).len as usize;
        // Constant indexes only: shift right from the end, then write the head.
        for j in 0..LOCALITY_SET_MAX - 1 {
            let i = LOCALITY_SET_MAX - 1 - j;
            if i <= len {
                (*e).reals[i] = (*e).reals[i - 1];
            }
        }
        (*e).reals[0] = id;
        (*e).len = (len as u32 + 1).min(LOCALITY_SET_MAX as u32);
        (*e).last_mod_s = now;
    }
}
