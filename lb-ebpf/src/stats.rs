//! Counting: global per-CPU counters (one slot per event and per pass/drop reason) and
//! per-service / per-real `Traffic`. All per-CPU arrays: the JIT inlines their lookups (no
//! helper call) and no atomics are needed. lb-ctl sums the CPUs.

use lb_common::{Counter, CounterBlock, Traffic};

use crate::maps::{COUNTERS, REAL_STATS, SVC_STATS};

/// Bumps one global counter (the rare events: the exit ones go through [`count_exit`]).
#[inline(always)]
pub fn count(c: Counter) {
    if let Some(b) = COUNTERS.get_ptr_mut(0) {
        bump(unsafe { &mut *b }, c);
    }
}

/// Every packet's exit: `RX`, the verdict's counter, and a forwarded packet's FWD_* /
/// NAT_RETURN, in one lookup of this CPU's block.
#[inline(always)]
pub fn count_exit(exit: Counter, what: Option<Counter>) {
    let Some(b) = COUNTERS.get_ptr_mut(0) else {
        return;
    };
    let b = unsafe { &mut *b };
    b.slots[Counter::RX.0 as usize] += 1;
    bump(b, exit);
    if let Some(w) = what {
        bump(b, w);
    }
}

/// The slot is masked into the block behind an optimisation barrier rather than bounds
/// checked: LLVM knows a `Pass`/`Drop` discriminant's range and drops a plain check, which
/// only holds while the verifier can follow that value from where it was set (it cannot
/// once it went through the stack). Every `Counter` is below SLOTS (asserted in
/// lb-common), so the mask never changes a slot. Measured against the checked form: equal
/// or 3–9 ns faster on every path (an A/B of both builds, interleaved).
#[inline(always)]
fn bump(b: &mut CounterBlock, c: Counter) {
    let i = core::hint::black_box(c.0) as usize & (Counter::SLOTS as usize - 1);
    b.slots[i] += 1;
}

/// A packet client → real: `in_packets`/`in_bytes` on the service and the real.
#[inline(always)]
pub fn count_in(svc_id: u32, real_id: u32, bytes: usize) {
    update(svc_id, real_id, |t| {
        t.in_packets += 1;
        t.in_bytes += bytes as u64;
    });
}

/// A NAT reply real → client: `out_packets`/`out_bytes` on the service and the real.
#[inline(always)]
pub fn count_out(svc_id: u32, real_id: u32, bytes: usize) {
    update(svc_id, real_id, |t| {
        t.out_packets += 1;
        t.out_bytes += bytes as u64;
    });
}

/// A new connection scheduled: `conns` on the service and the real.
#[inline(always)]
pub fn count_conn(svc_id: u32, real_id: u32) {
    update(svc_id, real_id, |t| t.conns += 1);
}

/// Applies `f` to this CPU's `Traffic` of the service and of the real. An id out of range
/// (a bad map entry) just goes uncounted: counting never drops a packet.
#[inline(always)]
fn update(svc_id: u32, real_id: u32, f: impl Fn(&mut Traffic)) {
    if let Some(p) = SVC_STATS.get_ptr_mut(svc_id) {
        f(unsafe { &mut *p });
    }
    if let Some(p) = REAL_STATS.get_ptr_mut(real_id) {
        f(unsafe { &mut *p });
    }
}
