//! The list-walking schedulers, rr (ip_vs_rr.c) and wrr (ip_vs_wrr.c), run as IPVS runs
//! them over the service's reals list (`svc->destinations` order), with IPVS's scheduler
//! state kept in `SCHED_CURSOR[service id]`:
//! - bit 63 ([`VALID`]): set once the service has scheduled (clear = IPVS's fresh state);
//! - bits 41–62 ([`GEN_SHIFT`], [`GEN_MASK`]): the low 22 bits of `Service::list_gen()`
//!   of the list the state belongs to. lb-ctl bumps the generation wherever IPVS calls
//!   `add_dest` / `del_dest` / `upd_dest` (-a, -d, -e), so a different one is that call.
//!   (Not `reals_base`: lb-ctl's regions alternate A→B→A, so two changes with no pick
//!   between them would look like none; 2^22 changes with no pick between them would);
//! - bits 32–40 ([`CL_SHIFT`], [`CL_MASK`]): `cl`, the list position of the last pick
//!   (`HEAD` = the list head);
//! - bits 0–23 ([`CW_MASK`]): wrr's `cw`; rr's last pick's real id (rr has no `cw`; a
//!   real id is below `MAX_REALS`).
//!
//! rr: from the real after the last pick, the first available one (not overloaded,
//! positive weight), wrapping once. After a list change rr finds the last pick's real in the
//! new list and continues after it (IPVS keeps its list position on that real); a deleted
//! last pick restarts at the head. The old list's region is never read.
//! wrr: `ip_vs_wrr_schedule` (mark `cl`, `cw`, `mw`, `di`, with the last-pass stop), and
//! on a list change `ip_vs_wrr_dest_changed` (back to the head, `cw` rounded to the new
//! `di`, or `mw` when above it or 0). `mw` and `di` are recomputed from the list.
//!
//! Difference from IPVS: the state is read and written without a lock (IPVS holds
//! `sched_lock`), so two CPUs scheduling at the same instant may take the same real; a
//! wrr walk gives up after `WRR_MAX_STEPS` list positions (IPVS's bound is the passes).

use aya_ebpf::cty::c_void;
use lb_common::{
    Drop, SchedKind, Service,
    consts::{MAX_REALS, MAX_REALS_PER_SERVICE, NO_REAL, WRR_MAX_STEPS},
};

use super::iter;
use crate::conn;
use crate::maps::SCHED_CURSOR;
use crate::reals::{available, lookup_real, real_at};

/// Cursor bit: the service has scheduled since its state was last reset.
const VALID: u64 = 1 << 63;
/// Cursor field: the list generation (`Service::list_gen()`, low 22 bits, from bit 41).
const GEN_SHIFT: u32 = 41;
/// See [`GEN_SHIFT`].
const GEN_MASK: u32 = 0x3f_ffff;
/// Cursor field `cl` (9 bits, from bit 32): positions 0..MAX_REALS_PER_SERVICE, or `HEAD`.
const CL_SHIFT: u32 = 32;
/// See [`CL_SHIFT`].
const CL_MASK: u32 = 0x1ff;
/// Cursor field `cw` (24 bits, from bit 0): wrr's `cw`, rr's last pick's real id.
const CW_MASK: u32 = 0xff_ffff;
const _: () = assert!(MAX_REALS <= CW_MASK);
/// `cl` of the list head (IPVS's `&svc->destinations`): the largest 9-bit value, past any
/// list position.
const HEAD: u32 = CL_MASK;
const _: () = assert!(MAX_REALS_PER_SERVICE <= HEAD);

#[inline(always)]
fn pack(list_gen: u32, cl: u32, cw: u32) -> u64 {
    VALID
        | ((list_gen as u64 & GEN_MASK as u64) << GEN_SHIFT)
        | ((cl as u64 & CL_MASK as u64) << CL_SHIFT)
        | (cw as u64 & CW_MASK as u64)
}

/// rr / wrr.
#[inline(always)]
pub fn select(svc: &Service) -> Result<u32, Drop> {
    let wrr = (svc.sched == SchedKind::Wrr as u8) as u32;
    match lb_sched_seq(svc.id, svc.reals_base, svc.reals_len, svc.list_gen(), wrr) {
        NO_REAL => Err(Drop::NoReal),
        id => Ok(id),
    }
}

/// The rr / wrr pick (a global function, verified once: see `load`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_sched_seq(
    svc_id: u32,
    reals_base: u32,
    reals_len: u32,
    list_gen: u32,
    wrr: u32,
) -> u32 {
    let n = reals_len.min(MAX_REALS_PER_SERVICE);
    if n == 0 {
        return NO_REAL;
    }
    let Some(cur) = SCHED_CURSOR.get_ptr_mut(svc_id) else {
        return NO_REAL;
    };
    let c = unsafe { *cur };
    let fresh = c & VALID == 0;
    let same = !fresh && ((c >> GEN_SHIFT) & GEN_MASK as u64) as u32 == list_gen & GEN_MASK;
    let mut cl = if fresh {
        HEAD
    } else {
        ((c >> CL_SHIFT) & CL_MASK as u64) as u32
    };
    let cw = (c & CW_MASK as u64) as u32;
    if wrr == 0 {
        if !fresh && !same {
            // The list changed: continue after the last pick's real (kept in the `cw`
            // field), if still listed.
            cl = find(reals_base, n, cw);
        }
        return rr(cur, reals_base, n, list_gen, cl);
    }
    let mut m = Mark {
        base: reals_base,
        n,
        ..Mark::default()
    };
    iter::run(n, weights_step, &mut m);
    if m.di == 0 {
        m.di = 1;
    }
    m.mw = m.max as i64 - (m.di as i64 - 1);
    m.cw = cw as i64;
    if fresh {
        m.cl = HEAD;
        m.cw = m.mw;
    } else if !same {
        // ip_vs_wrr_dest_changed.
        m.cl = HEAD;
        if m.cw > m.mw || m.cw == 0 {
            m.cw = m.mw;
        } else if m.di > 1 {
            m.cw = (m.cw / m.di as i64) * m.di as i64 + 1;
        }
    } else {
        m.cl = cl;
    }
    let id = wrr_pick(&mut m);
    unsafe { *cur = pack(list_gen, m.cl, m.cw.max(0) as u32) };
    id
}

/// Position of real `id` in the list, or `HEAD`.
#[inline(always)]
fn find(base: u32, n: u32, id: u32) -> u32 {
    let mut s = Find { base, id, pos: HEAD };
    iter::run(n, find_step, &mut s);
    s.pos
}

/// [`find`]'s scan state.
#[repr(C)]
struct Find {
    /// The reals list's first SCHED_TABLE slot.
    base: u32,
    /// The real looked for.
    id: u32,
    /// Its position once found, else `HEAD`.
    pos: u32,
}

#[inline(never)]
extern "C" fn find_step(i: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Find = unsafe { iter::state(ctx) };
    match real_at(s.base, i as u32) {
        Some(id) if id == s.id => {
            s.pos = i as u32;
            1
        }
        Some(_) => 0,
        None => 1,
    }
}

/// rr's walk state.
#[repr(C)]
struct Rr {
    base: u32,
    n: u32,
    start: u32,
    found: u32,
    pos: u32,
    _pad: u32,
}

#[inline(always)]
fn rr(cur: *mut u64, base: u32, n: u32, list_gen: u32, cl: u32) -> u32 {
    let start = if cl == HEAD || cl + 1 >= n { 0 } else { cl + 1 };
    let mut s = Rr {
        base,
        n,
        start,
        found: NO_REAL,
        pos: 0,
        _pad: 0,
    };
    iter::run(n, rr_step, &mut s);
    if s.found != NO_REAL {
        unsafe { *cur = pack(list_gen, s.pos, s.found) };
    }
    s.found
}

#[inline(never)]
extern "C" fn rr_step(k: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Rr = unsafe { iter::state(ctx) };
    // start < n and k < n: one subtraction wraps the position.
    let mut pos = s.start + k as u32;
    if pos >= s.n {
        pos -= s.n;
    }
    let Some(id) = real_at(s.base, pos) else {
        return 1;
    };
    if available(id).is_some() {
        s.found = id;
        s.pos = pos;
        return 1;
    }
    0
}

/// wrr's mark and walk state.
#[repr(C)]
#[derive(Default)]
struct Mark {
    base: u32,
    n: u32,
    /// gcd of the positive weights.
    di: u32,
    /// Largest weight.
    max: u32,
    mw: i64,
    cw: i64,
    cl: u32,
    /// Where the walk is (`HEAD` or a position), where it started, where it must stop.
    at: u32,
    last: u32,
    stop: u32,
    last_pass: u32,
    restarted: u32,
    found: u32,
    _pad: u32,
}

#[inline(never)]
extern "C" fn weights_step(i: u64, ctx: *mut c_void) -> i64 {
    let m: &mut Mark = unsafe { iter::state(ctx) };
    let Some(id) = real_at(m.base, i as u32) else {
        return 1;
    };
    let Some(r) = lookup_real(id) else {
        return 0;
    };
    let w = r.weight;
    if w > m.max {
        m.max = w;
    }
    if w > 0 {
        let (mut a, mut b) = (w, m.di);
        for _ in 0..32 {
            if b == 0 {
                break;
            }
            let t = a.checked_rem(b).unwrap_or(0);
            a = b;
            b = t;
        }
        m.di = a;
    }
    0
}

/// `ip_vs_wrr_schedule` from `m.cl` with `m.cw`; leaves the new `cl`/`cw` in `m`.
#[inline(always)]
fn wrr_pick(m: &mut Mark) -> u32 {
    if m.mw <= 0 {
        return NO_REAL;
    }
    m.at = m.cl;
    m.last = m.cl;
    m.stop = NO_REAL;
    m.last_pass = 0;
    m.restarted = 0;
    m.found = NO_REAL;
    iter::run(WRR_MAX_STEPS, wrr_step, m);
    m.found
}

#[inline(never)]
extern "C" fn wrr_step(_: u64, ctx: *mut c_void) -> i64 {
    let m: &mut Mark = unsafe { iter::state(ctx) };
    let next = if m.at == HEAD { 0 } else { m.at + 1 };
    if next >= m.n {
        // End of the list: next pass.
        m.at = HEAD;
        m.cw -= m.di as i64;
        if m.cw <= 0 {
            m.cw = m.mw;
            if m.last_pass != 0 || m.last == HEAD {
                // err_over with `dest` at the list head.
                m.cl = HEAD;
                return 1;
            }
            m.restarted = 1;
        }
        m.last_pass = (m.cw <= m.di as i64) as u32;
        if m.last_pass != 0 && m.restarted != 0 && m.last != HEAD {
            m.stop = m.last;
        }
        return 0;
    }
    m.at = next;
    let Some(id) = real_at(m.base, next) else {
        return 1;
    };
    if let Some(r) = lookup_real(id)
        && !conn::overloaded(id, r)
        && r.weight as i64 >= m.cw
    {
        m.cl = next;
        m.found = id;
        return 1;
    }
    if next == m.stop {
        m.cl = next;
        return 1;
    }
    0
}
