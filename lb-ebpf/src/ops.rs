//! `lb_ops`: what lb-ctl asks of the kernel by BPF_PROG_TEST_RUN (`lb_common::ops`). It is
//! never attached to an interface; each run reads one request from the test-run buffer and
//! writes its answer back into it.
//!
//! - `CLOCK`: the kernel's jiffies and the data path's seconds at them, so lb-ctl's sweep
//!   and listings use the very clock the data path stamps flows with.
//! - `REAP`: the sweep's removal of flows, which userspace cannot do safely: a
//!   lookup-and-delete copies a value that a data-path CPU holding a pointer to the element
//!   may still move (and count) after the copy. Here each flow is claimed by
//!   compare-and-swap of its state word (`conn::claim_seen`, FlowFlags::DEAD) as the data
//!   path's own removals claim it, then deleted; only a successful delete is reported
//!   `REMOVED`, for the sweep to book.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::ops::{
    ClockReply, OpHeader, REAP_BATCH, ReapEntry, ReapHeader, op, reap as outcome, status,
};
use lb_common::{FlowKey, StateWord};

use crate::conn::{self, Claim};
use crate::flows;

#[xdp]
pub fn lb_ops(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + size_of::<OpHeader>() > end {
        return xdp_action::XDP_ABORTED;
    }
    let hdr = start as *mut OpHeader;
    let payload = start + size_of::<OpHeader>();
    let done = match unsafe { (*hdr).op } {
        op::CLOCK => clock(payload, end),
        op::REAP => reap(payload, end),
        _ => status::UNKNOWN_OP,
    };
    unsafe { (*hdr).status = done };
    xdp_action::XDP_PASS
}

fn clock(payload: usize, end: usize) -> u32 {
    if payload + size_of::<ClockReply>() > end {
        return status::SHORT;
    }
    let j = conn::jiffies();
    let reply = payload as *mut ClockReply;
    unsafe {
        (*reply).jiffies = j;
        (*reply).now_s = conn::now_at(j);
        (*reply)._pad = 0;
    }
    status::OK
}

/// `REAP`: each entry's flow claimed (if still as the sweep saw it) and deleted, its
/// outcome and flags written back in place. A bounded loop over at most `REAP_BATCH`
/// entries, each bounds-checked against the buffer's end.
fn reap(payload: usize, end: usize) -> u32 {
    if payload + size_of::<ReapHeader>() > end {
        return status::SHORT;
    }
    let count = unsafe { (*(payload as *const ReapHeader)).count } as usize;
    let first = payload + size_of::<ReapHeader>();
    for i in 0..REAP_BATCH {
        if i >= count {
            break;
        }
        let e = first + i * size_of::<ReapEntry>();
        if e + size_of::<ReapEntry>() > end {
            return status::SHORT;
        }
        unsafe { reap_one(e as *mut ReapEntry) };
    }
    status::OK
}

/// One entry of `REAP`. Safety: `e` points at a whole entry inside the buffer.
#[inline(always)]
unsafe fn reap_one(e: *mut ReapEntry) {
    let key: FlowKey = unsafe { core::ptr::read(&raw const (*e).key) };
    let (seen, seen_last_s) = unsafe { (StateWord((*e).seen_word), (*e).seen_last_s) };
    let (done, flags) = match flows::flow_ptr(&key) {
        None => (outcome::ABSENT, 0),
        Some(v) => match unsafe { conn::claim_seen(v, seen, seen_last_s) } {
            Claim::Changed => (outcome::CHANGED, 0),
            // Claimed: whoever deletes it books it (another remover beat this delete).
            Claim::Dead(flags) if flows::flow_remove(&key) => (outcome::REMOVED, flags as u32),
            Claim::Dead(_) => (outcome::ABSENT, 0),
        },
    };
    unsafe {
        (*e).outcome = done;
        (*e).flags = flags;
    }
}
