//! `lb_xdp`: the XDP balancer. One straight path per packet — parse → lookup → schedule →
//! forward — with counting at the edges (docs/datapath.md is the contract, docs/design.md §3 the
//! shape). Every packet bumps, on exit, `RX` and exactly one of TX / REDIRECT / a pass
//! reason / a drop reason (and a forwarded one its FWD_* or NAT_RETURN).
#![no_std]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
#![no_main]

mod cache;
mod conn;
mod flows;
mod forward;
mod gate;
mod icmp;
mod lookup;
mod maps;
mod ops;
mod parse;
mod pkt;
mod reals;
mod sched;
mod schedule;
mod stats;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Counter, Pass};

use crate::gate::Gate;
use crate::parse::Packet;
use crate::verdict::{Dest, Exit, Out, Sent};

// Inlined into the section entry the macro generates: left out of line, the whole body
// was a BPF-to-BPF call on every packet (~20–30 ns here).
#[xdp]
#[inline(always)]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let (action, exit, sent) = match try_lb(&ctx) {
        Ok(s @ Sent { out: Out::Tx, .. }) => (xdp_action::XDP_TX, Counter::TX, Some(s)),
        Ok(
            s @ Sent {
                out: Out::Redirect, ..
            },
        ) => (xdp_action::XDP_REDIRECT, Counter::REDIRECT, Some(s)),
        Err(Exit::Pass(p)) => (xdp_action::XDP_PASS, p.counter(), None),
        Err(Exit::Drop(d)) => (xdp_action::XDP_DROP, d.counter(), None),
    };
    stats::count_exit(exit, sent);
    action
}

/// The whole per-packet path, in docs/datapath.md's order. Parsing passes what the address
/// filters say is neither to a VIP nor a NAT reply (the usual case). A packet that may be
/// for a VIP is balanced; one that turns out not to be may still be a NAT reply. VIP
/// traffic thus never pays the NAT check, and replies never go to a VIP.
#[inline(always)]
fn try_lb(ctx: &XdpContext) -> Result<Sent, Exit> {
    let mut pkt = parse::parse_packet(ctx)?;
    if pkt.gate == Gate::Vip {
        match balance(ctx, &mut pkt) {
            Err(Exit::Pass(Pass::NotVip)) => {}
            done => return done,
        }
    }
    nat_return(ctx, &pkt)
}

/// Steps 5–12: a packet to a VIP, to its real.
#[inline(always)]
fn balance(ctx: &XdpContext, pkt: &mut Packet) -> Result<Sent, Exit> {
    lookup::classify_l4(ctx, pkt)?;
    let dest = destination(pkt)?;
    forward::forward(ctx, pkt, &dest)
}

/// Steps 7–10: the flow's real, else a newly scheduled one. A SYN opens a connection, so
/// its flow is almost never there: it is scheduled and recorded (`BPF_NOEXIST`) without
/// a lookup first, which saves a new connection the lookup's miss (~45 ns). Only when
/// that does not go through, the flow found there (a retransmitted SYN, a reused port)
/// or the scheduling failed, is the flow looked up, and the packet then goes where any
/// other would. A non-SYN packet whose insert finds the flow (another CPU recorded it in
/// between) looks it up the same way.
#[inline(always)]
fn destination(pkt: &Packet) -> Result<Dest, Exit> {
    let syn = pkt.opens_connection();
    if let Some(dest) = cache::hit(pkt) {
        pkt.check_ttl()?;
        return Ok(dest);
    }
    if !syn && let Some(dest) = lookup::lookup_flow(pkt)? {
        pkt.check_ttl()?;
        return Ok(dest);
    }
    let new = schedule::schedule_new(pkt);
    let look = match &new {
        Ok(s) => s.exists,
        Err(_) => syn,
    };
    if !look {
        return new.map(|s| s.dest);
    }
    match lookup::lookup_flow(pkt)? {
        Some(dest) => {
            pkt.check_ttl()?;
            Ok(dest)
        }
        // Not there after all, or removed by the lookup (its real gone, with
        // expire_nodest_conn 1; or a SYN reusing the ports of a TIME_WAIT or CLOSE flow,
        // IPVS conn_reuse_mode): as for a miss, the new real, now recorded; or what
        // scheduling said (as it would say again). A SYN's real was picked while the old
        // flow still counted on its real, as in IPVS, whose `ip_vs_conn_expire_now` only
        // re-arms the old connection's timer: it is unbound after the new one is scheduled.
        None => {
            let s = new?;
            schedule::record_scheduled(pkt, &s.dest);
            Ok(s.dest)
        }
    }
}

/// Step 4: not for a VIP; a NAT reply (real → client) goes back as from the VIP, and so
/// does a NAT real's ICMP error about a packet of the flow (asked only for ICMP).
#[inline(always)]
fn nat_return(ctx: &XdpContext, pkt: &Packet) -> Result<Sent, Exit> {
    match lookup::lookup_nat_reply(pkt) {
        Some(rev) => forward::forward_nat_return(ctx, pkt, &rev),
        None => match lookup::lookup_nat_icmp_error(ctx, pkt) {
            Some((rev, quote)) => forward::forward_nat_icmp_return(ctx, pkt, &rev, &quote),
            None => Err(Exit::Pass(Pass::NotVip)),
        },
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
