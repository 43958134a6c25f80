//! Bounded loops through the `bpf_loop` helper: the verifier checks the step function once
//! (with an unknown index) instead of walking every iteration of an inlined loop, which
//! for the 256-real scans exceeds the 1M-instruction budget. The kernel inlines
//! `bpf_loop` into a plain loop (flags 0), so it costs no helper call per iteration.

use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop};

/// A step: index, the caller's state. Returns 0 to go on, 1 to stop.
pub type Step = extern "C" fn(u64, *mut c_void) -> i64;

/// Runs `step(i, state)` for i in 0..n until it returns 1.
#[inline(always)]
pub fn run<S>(n: u32, step: Step, state: &mut S) {
    unsafe {
        bpf_loop(
            n,
            step as *const () as *mut c_void,
            state as *mut S as *mut c_void,
            0,
        )
    };
}

/// The caller's state behind a step's context pointer. Safety: `ctx` is the `&mut S`
/// given to [`run`] with the same `S`.
#[inline(always)]
pub unsafe fn state<'a, S>(ctx: *mut c_void) -> &'a mut S {
    unsafe { &mut *(ctx as *mut S) }
}
