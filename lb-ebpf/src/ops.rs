//! `lb_ops`: what lb-ctl asks of the kernel by BPF_PROG_TEST_RUN (`lb_common::ops`). It is
//! never attached to an interface; each run reads one request from the test-run buffer and
//! writes its answer back into it.
//!
//! - `CLOCK`: the kernel's jiffies and the data path's seconds at them, so lb-ctl's sweep
//!   and listings use the very clock the data path stamps flows with.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::ops::{ClockReply, OpHeader, op, status};

use crate::conn;

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
