//! Load-driven schedulers: one bounded scan of the service's reals list (IPVS
//! `svc->destinations` order, built by lb-ctl) with the live counters
//! (`conn::counts`: ActiveConn, InActConn as IPVS keeps them).
//!
//! lc, wlc, sed, nq, fo and ovf all keep "the best so far" and replace it only by a
//! strictly better real, so one scan serves them: each scheduler gives a real a cost
//! `num / den`, and `d` beats `least` when `num_d · den_least < num_least · den_d`
//! (u64 products, no division):
//! - lc (ip_vs_lc.c): num = overhead = active·256 + inactive (`conn_overhead`), den = 1;
//! - wlc (ip_vs_wlc.c): num = overhead, den = weight;
//! - sed (ip_vs_sed.c): num = active + 1, den = weight;
//! - nq (ip_vs_nq.c): as sed, but the first real with no active connection is taken at once;
//! - fo (ip_vs_fo.c): the highest weight: num = 1, den = weight;
//! - ovf (ip_vs_ovf.c): as fo among reals whose active connections do not exceed their
//!   weight.
//!
//! Every one skips unavailable reals (weight 0, overloaded, not configured).
//!
//! Verifier note: each scan is a global BPF function (`#[no_mangle] extern "C"`, scalar
//! arguments only), which the verifier checks once on its own; inlined, every bounded loop
//! would be walked again on every path into it and the program exceeds the 1M-instruction
//! budget.
//! twos (ip_vs_twos.c) picks two reals at random by weight (bpf_get_prandom_u32) and keeps
//! the one with the lower overhead per weight.

use aya_ebpf::{cty::c_void, helpers::bpf_get_prandom_u32};
use lb_common::{
    Drop, SchedKind, Service,
    consts::{MAX_REALS_PER_SERVICE, NO_REAL},
    sched::pick::conn_overhead,
};

use super::iter;
use crate::conn;
use crate::reals::{available, picked, real_at};

/// lc, wlc, sed, nq, fo, ovf.
#[inline(always)]
pub fn select(svc: &Service, kind: SchedKind) -> Result<u32, Drop> {
    picked(lb_sched_load(svc.reals_base, svc.reals_len, kind as u32))
}

/// twos.
#[inline(always)]
pub fn select_twos(svc: &Service) -> Result<u32, Drop> {
    picked(lb_sched_twos(svc.reals_base, svc.reals_len))
}

/// Scan state of lc/wlc/sed/nq/fo/ovf.
#[repr(C)]
struct Scan {
    base: u32,
    kind: u32,
    best: u32,
    done: u32,
    bnum: u64,
    bden: u64,
}

/// The lc/wlc/sed/nq/fo/ovf scan (global function, see the module note); `NO_REAL` when no
/// real is available.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_sched_load(reals_base: u32, reals_len: u32, kind: u32) -> u32 {
    let mut s = Scan {
        base: reals_base,
        kind,
        best: NO_REAL,
        done: 0,
        bnum: 0,
        bden: 1,
    };
    iter::run(reals_len.min(MAX_REALS_PER_SERVICE), load_step, &mut s);
    s.best
}

#[inline(never)]
extern "C" fn load_step(i: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Scan = unsafe { iter::state(ctx) };
    let Some(id) = real_at(s.base, i as u32) else {
        return 1;
    };
    let Some(real) = available(id) else {
        return 0;
    };
    let c = conn::counts(id);
    let w = real.weight as u64;
    let overhead = conn_overhead(c.active, c.inactive);
    let (num, den) = match SchedKind::from_u8(s.kind as u8) {
        Some(SchedKind::Lc) => (overhead, 1),
        Some(SchedKind::Sed) => (c.active + 1, w),
        Some(SchedKind::Nq) => {
            if c.active == 0 {
                s.best = id;
                return 1;
            }
            (c.active + 1, w)
        }
        Some(SchedKind::Ovf) => {
            if c.active > w {
                return 0;
            }
            (1, w)
        }
        Some(SchedKind::Fo) => (1, w),
        // wlc (and lblc / lblcr's wlc-like choice)
        _ => (overhead, w),
    };
    if s.best == NO_REAL || num * s.bden < s.bnum * den {
        s.best = id;
        s.bnum = num;
        s.bden = den;
    }
    0
}

/// twos state.
#[repr(C)]
struct Twos {
    base: u32,
    c1: u32,
    c2: u32,
    /// Which choices are made: [`HAVE_FIRST`], [`HAVE_SECOND`].
    have: u32,
    total: u64,
    r1: i64,
    r2: i64,
    w1: u64,
    o1: u64,
    w2: u64,
    o2: u64,
}

/// `Twos::have` bit: the first random weight has run down (`c1`, `w1`, `o1` are set).
const HAVE_FIRST: u32 = 1;
/// `Twos::have` bit: the second one has (`c2`, `w2`, `o2`).
const HAVE_SECOND: u32 = 2;
/// Both choices made: the scan stops.
const HAVE_BOTH: u32 = HAVE_FIRST | HAVE_SECOND;

/// twos: total weight of the available reals, two random weights in [0, total], the first
/// real at which each runs down to ≤ 0, and the second choice when
/// `weight2 · overhead1 > weight1 · overhead2`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_sched_twos(reals_base: u32, reals_len: u32) -> u32 {
    let n = reals_len.min(MAX_REALS_PER_SERVICE);
    let mut s = Twos {
        base: reals_base,
        c1: NO_REAL,
        c2: NO_REAL,
        have: 0,
        total: 0,
        r1: 0,
        r2: 0,
        w1: 0,
        o1: 0,
        w2: 0,
        o2: 0,
    };
    iter::run(n, twos_sum, &mut s);
    if s.c1 == NO_REAL {
        return NO_REAL;
    }
    // Weights are u32 and the list ≤ MAX_REALS_PER_SERVICE: no overflow, never 0;
    // checked_rem only so that no panic path is emitted.
    let total = s.total + 1;
    let r = |t: u64| {
        (unsafe { bpf_get_prandom_u32() } as u64)
            .checked_rem(t)
            .unwrap_or(0)
    };
    s.r1 = r(total) as i64;
    s.r2 = r(total) as i64;
    iter::run(n, twos_pick, &mut s);
    if s.have & HAVE_SECOND != 0 && s.w2 * s.o1 > s.w1 * s.o2 {
        return s.c2;
    }
    s.c1
}

#[inline(never)]
extern "C" fn twos_sum(i: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Twos = unsafe { iter::state(ctx) };
    let Some(id) = real_at(s.base, i as u32) else {
        return 1;
    };
    if let Some(real) = available(id) {
        s.total += real.weight as u64;
        s.c1 = id;
    }
    0
}

#[inline(never)]
extern "C" fn twos_pick(i: u64, ctx: *mut c_void) -> i64 {
    let s: &mut Twos = unsafe { iter::state(ctx) };
    let Some(id) = real_at(s.base, i as u32) else {
        return 1;
    };
    let Some(real) = available(id) else {
        return 0;
    };
    let w = real.weight as i64;
    s.r1 -= w;
    s.r2 -= w;
    if s.r1 <= 0 && s.have & HAVE_FIRST == 0 {
        let c = conn::counts(id);
        s.c1 = id;
        s.w1 = w as u64;
        s.o1 = conn_overhead(c.active, c.inactive);
        s.have |= HAVE_FIRST;
    }
    if s.r2 <= 0 && s.have & HAVE_SECOND == 0 {
        let c = conn::counts(id);
        s.c2 = id;
        s.w2 = w as u64;
        s.o2 = conn_overhead(c.active, c.inactive);
        s.have |= HAVE_SECOND;
    }
    if s.have == HAVE_BOTH { 1 } else { 0 }
}
