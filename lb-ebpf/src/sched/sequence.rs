//! Sequence-driven schedulers, rr and wrr: lb-ctl built the sequence (`lb_common::sched`:
//! rr = the reals with weight > 0 in list order; wrr = one period of ip_vs_wrr_schedule),
//! and `SCHED_CURSOR[service id]` holds the next entry to try. A flow takes the first
//! available entry from there (IPVS rr: the first available real after the last one
//! chosen) and the cursor moves past it.
//!
//! Differences from IPVS: the cursor is read and written without a lock (IPVS holds
//! `sched_lock`), so two CPUs scheduling at the same instant may take the same entry; the
//! walk over unavailable (overloaded, quiesced) entries stops after
//! `MAX_REALS_PER_SERVICE` tries; wrr steps over an overloaded real to the next entry of
//! the period (see `lb_common::sched::wrr_sequence`).

use lb_common::{
    Drop, Service,
    consts::{MAX_REALS_PER_SERVICE, NO_REAL},
};

use super::{available, iter};
use crate::maps::{SCHED_CURSOR, SCHED_TABLE};
use aya_ebpf::cty::c_void;

/// rr / wrr: the next available entry of the sequence.
#[inline(always)]
pub fn select(svc: &Service) -> Result<u32, Drop> {
    match lb_sched_seq(svc.id, svc.table_base, svc.table_len) {
        NO_REAL => Err(Drop::NoReal),
        id => Ok(id),
    }
}

/// The cursor walk (a global function, verified once: see `load`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_sched_seq(svc_id: u32, table_base: u32, table_len: u32) -> u32 {
    if table_len == 0 {
        return NO_REAL;
    }
    let Some(cur) = SCHED_CURSOR.get_ptr_mut(svc_id) else {
        return NO_REAL;
    };
    let start = unsafe { *cur }.checked_rem(table_len as u64).unwrap_or(0) as u32;
    let mut s = Walk {
        base: table_base,
        len: table_len,
        start,
        found: NO_REAL,
        next: 0,
    };
    iter::run(table_len.min(MAX_REALS_PER_SERVICE), seq_step, &mut s);
    if s.found != NO_REAL {
        unsafe { *cur = s.next as u64 };
    }
    s.found
}

#[repr(C)]
struct Walk {
    base: u32,
    len: u32,
    start: u32,
    found: u32,
    next: u32,
}

#[inline(never)]
extern "C" fn seq_step(k: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Walk = unsafe { iter::state(ctx) };
    // start < len and k < len: one subtraction wraps the position.
    let mut pos = s.start + k as u32;
    if pos >= s.len {
        pos -= s.len;
    }
    let Some(&id) = SCHED_TABLE.get(s.base.wrapping_add(pos)) else {
        return 1;
    };
    if available(id).is_some() {
        s.found = id;
        s.next = if pos + 1 >= s.len { 0 } else { pos + 1 };
        return 1;
    }
    0
}
