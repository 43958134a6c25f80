//! `lb_xdp`: the XDP balancer. One straight path per packet — parse → lookup → schedule →
//! forward — with counting at the edges (docs/datapath.md is the contract, STYLE.md §1 the
//! shape). Every packet bumps `RX` on entry and exactly one of TX / REDIRECT / a pass
//! reason / a drop reason on exit.
#![no_std]
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

mod conn;
mod forward;
mod icmp;
mod lookup;
mod maps;
mod parse;
mod pkt;
mod sched;
mod schedule;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Counter, Drop, Pass};

/// How a balanced packet leaves.
pub enum Out {
    /// Back out the interface it came in on (XDP_TX).
    Tx,
    /// Out another interface through TX_PORTS (XDP_REDIRECT).
    Redirect,
}

/// An early way out of `try_lb`, carried by `?`: handed to the stack untouched or dropped,
/// each with its reason (never an integer sentinel).
pub enum Exit {
    /// XDP_PASS.
    Pass(Pass),
    /// XDP_DROP.
    Drop(Drop),
}

impl From<Drop> for Exit {
    #[inline(always)]
    fn from(d: Drop) -> Self {
        Exit::Drop(d)
    }
}

// Inlined into the section entry the macro generates: left out of line, the whole body
// was a BPF-to-BPF call on every packet (~20–30 ns here).
#[xdp]
#[inline(always)]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    stats::count(Counter::RX);
    let (action, counter) = match try_lb(&ctx) {
        Ok(Out::Tx) => (xdp_action::XDP_TX, Counter::TX),
        Ok(Out::Redirect) => (xdp_action::XDP_REDIRECT, Counter::REDIRECT),
        Err(Exit::Pass(p)) => (xdp_action::XDP_PASS, p.counter()),
        Err(Exit::Drop(d)) => (xdp_action::XDP_DROP, d.counter()),
    };
    stats::count(counter);
    action
}

/// The whole per-packet path, in docs/datapath.md's order.
#[inline(always)]
fn try_lb(ctx: &XdpContext) -> Result<Out, Exit> {
    let mut pkt = parse::parse_packet(ctx)?;
    if let Some(rev) = lookup::lookup_nat_reply(&pkt) {
        return forward::forward_nat_return(ctx, &pkt, &rev);
    }
    lookup::lookup_vip(ctx, &mut pkt)?;
    let found = lookup::lookup_dest(&pkt)?;
    pkt.check_ttl()?;
    let dest = schedule::schedule(&pkt, found)?;
    forward::forward(ctx, &pkt, &dest)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
