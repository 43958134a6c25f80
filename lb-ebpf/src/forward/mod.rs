//! Forward (docs/datapath.md steps 11–12): rewrite the packet by the flow's forwarding
//! method (the real's mode when the flow was created) — one `match` on `ForwardMode`, one
//! file per mode — count it, then send it out: XDP_TX on the
//! ingress interface, else XDP_REDIRECT through TX_PORTS. Next-hop MACs come from the Real
//! (kept fresh by lb-ctl), so there is no FIB lookup per packet.

pub mod dr;
pub mod nat;
pub mod tun;

use aya_ebpf::programs::XdpContext;
use lb_common::{Counter, Drop, ForwardMode, NatReverse, Real, RealFlags};

use crate::maps::{REALS, TX_PORTS};
use crate::parse::Packet;
use crate::pkt::{bytes_at, ld16, ld32, st16, st32};
use crate::stats::{count, count_in, count_new_flow};
use crate::verdict::{Dest, Exit, Out, Sent};

pub use nat::{forward_nat_icmp_return, forward_nat_return};

/// Rewrites the packet for the real, counts it, picks the way out. A new flow's NEW_FLOW
/// and `conns` are counted with its packet's counters (`count_in`, `count_exit`: two
/// per-CPU lookups fewer), or here when the packet cannot be sent: the flow is bound and
/// recorded all the same, and IPVS counts a connection when it creates it.
#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &Packet, dest: &Dest) -> Result<Sent, Exit> {
    // Checked ACTIVE by lookup/schedule; re-read here by id (see `Dest`).
    let real = REALS.get(dest.real_id).ok_or(Drop::NoReal)?;
    let fwd_counter = match rewrite(ctx, pkt, dest, real) {
        Ok(c) => c,
        Err(e) => {
            if dest.new_flow {
                count_new_flow(dest.svc_id, dest.real_id);
            }
            return Err(e);
        }
    };
    if pkt.quote.is_some() {
        count(Counter::ICMP_TO_REAL);
    }
    count_in(dest.svc_id, dest.real_id, pkt.l3_len, dest.new_flow);
    let out = match send_to_real(ctx, real) {
        Ok(out) => out,
        Err(d) => {
            if dest.new_flow {
                count(Counter::NEW_FLOW);
            }
            return Err(d.into());
        }
    };
    Ok(Sent {
        out,
        fwd_counter,
        new_flow: dest.new_flow,
    })
}

/// Step 11: the rewrite for the flow's forwarding method (recorded when the flow was
/// created, IPVS's `ip_vs_bind_xmit`; 0, from an older lb: the real's mode) with the real's
/// current addresses and MACs; its forwarding counter.
#[inline(always)]
fn rewrite(ctx: &XdpContext, pkt: &Packet, dest: &Dest, real: &Real) -> Result<Counter, Exit> {
    Ok(match ForwardMode::from_u8(ForwardMode::of_flow(dest.fwd, real.mode)) {
        Some(ForwardMode::Dr) => {
            dr::forward_dr(ctx, real)?;
            Counter::FWD_DR
        }
        Some(ForwardMode::Tun) => {
            tun::forward_tun(ctx, pkt, real)?;
            Counter::FWD_TUN
        }
        Some(ForwardMode::Nat) => {
            nat::forward_nat(ctx, pkt, dest, real)?;
            Counter::FWD_NAT
        }
        // A mode byte this program does not know (the flow's, or the real's): unusable.
        None => return Err(Exit::Drop(Drop::NoReal)),
    })
}

/// Step 12 for a real: not sent while its next hop's MAC is not known (`NO_NEIGHBOUR`; one
/// flag test, failing as a redirect fails). After the rewrite and the counting, as IPVS's
/// `ip_vs_in` counts the packet and its connection (created, with a NAT flow's reverse
/// entry recorded by the rewrite) before its transmitter fails.
#[inline(always)]
fn send_to_real(ctx: &XdpContext, real: &Real) -> Result<Out, Drop> {
    if real.flags.has(RealFlags::NO_NEIGHBOUR) {
        return Err(Drop::NoNeighbour);
    }
    send(ctx, real.ifindex)
}

/// Step 12: same interface → XDP_TX, else redirect (a failed redirect: the interface is
/// not in TX_PORTS → drop `Redirect`).
#[inline(always)]
pub fn send(ctx: &XdpContext, ifindex: u32) -> Result<Out, Drop> {
    if ifindex as usize == ctx.ingress_ifindex() {
        return Ok(Out::Tx);
    }
    match TX_PORTS.redirect(ifindex, 0) {
        Ok(_) => Ok(Out::Redirect),
        Err(_) => Err(Drop::Redirect),
    }
}

/// Writes the Ethernet destination and source (the frame's first 12 bytes).
#[inline(always)]
pub fn write_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), Drop> {
    let p = bytes_at(ctx, 0, 12).ok_or(Drop::Truncated)?;
    let (d, s) = (dst.as_ptr() as usize, src.as_ptr() as usize);
    // 4 + 2 and 2 + 4 bytes: eight memory operations, not twelve. The MAC fields sit at
    // even offsets of 8-aligned map values (asserted below), so the u16 reads are
    // aligned; the 32-bit ones go through `ld32` / `st32`, which may be misaligned.
    unsafe {
        st32(p, ld32(d));
        st16(p + 4, ld16(d + 4));
        st16(p + 6, ld16(s));
        st32(p + 8, ld32(s + 2));
    }
    Ok(())
}

const _: () = assert!(core::mem::offset_of!(Real, dst_mac) % 2 == 0);
const _: () = assert!(core::mem::offset_of!(Real, src_mac) % 2 == 0);
const _: () = assert!(core::mem::offset_of!(NatReverse, client_mac) % 2 == 0);
const _: () = assert!(core::mem::offset_of!(NatReverse, local_mac) % 2 == 0);
