//! Counting: global per-CPU counters (one slot per event and per pass/drop reason) and
//! per-service / per-real `Traffic`. All per-CPU arrays: the JIT inlines their lookups (no
//! helper call) and no atomics are needed. lb-ctl sums the CPUs.

use lb_common::{Counter, CounterBlock, Traffic};

use crate::maps::{COUNTERS, REAL_STATS, SVC_STATS};
use crate::verdict::Sent;

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
pub fn count_exit(exit: Counter, sent: Option<Sent>) {
    let Some(b) = COUNTERS.get_ptr_mut(0) else {
        return;
    };
    let b = unsafe { &mut *b };
    b.slots[Counter::RX.0 as usize] += 1;
    bump(b, exit);
    if let Some(s) = sent {
        bump(b, s.fwd_counter);
        if s.new_flow {
            bump(b, Counter::NEW_FLOW);
        }
    }
}

/// A slot past the block (impossible: every `Counter` is below SLOTS, asserted in
/// lb-common) is skipped rather than proved to the verifier by a panic path.
#[inline(always)]
fn bump(b: &mut CounterBlock, c: Counter) {
    if let Some(s) = b.slots.get_mut(c.0 as usize) {
        *s += 1;
    }
}

/// A packet client → real: `in_packets`/`in_bytes` on the service and the real, and
/// `conns` when it is a new flow's first (one lookup of each for both: a new flow's
/// counters cost ~25 ns more when counted apart).
#[inline(always)]
pub fn count_in(svc_id: u32, real_id: u32, bytes: usize, new_flow: bool) {
    update(svc_id, real_id, |t| {
        t.in_packets += 1;
        t.in_bytes += bytes as u64;
        if new_flow {
            t.conns += 1;
        }
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

/// A new connection whose packet was dropped in its rewrite: NEW_FLOW and `conns` on the
/// service and the real, as for one that was sent.
#[inline(always)]
pub fn count_new_flow(svc_id: u32, real_id: u32) {
    count(Counter::NEW_FLOW);
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
