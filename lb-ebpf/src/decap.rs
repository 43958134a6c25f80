//! `lb_decap`: for TUN real servers. The kernel here has no ipip / ip6tnl devices, so the
//! real strips the director's outer header itself (as Katran's decap program does):
//! IPv4 protocol 4 → remove the outer IPv4 header (IHL×4 bytes), IPv6 next header 41 →
//! remove the 40-byte outer header. The L2 header (with any VLAN tags) is kept, the
//! EtherType stays (the inner family is the outer's), and the packet is always passed, so
//! the inner packet (destination = the VIP on the real's `lo`) reaches the real's stack.
//! Counts go to DECAP_STATS by `DecapCounter`.
#![no_std]
#![feature(asm_experimental_arch)]
#![no_main]

#[expect(dead_code, reason = "shared with lb_xdp, which uses all of it")]
mod pkt;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::map, macros::xdp,
    maps::PerCpuArray, programs::XdpContext,
};
use lb_common::{
    consts::{
        MAP_DECAP_STATS, ethertype,
        hdr::{IPV4_LEN, IPV6_LEN, L2_MAX},
        proto,
    },
    counters::{DECAP_COUNTER_SLOTS, DecapCounter},
};
use pkt::{bytes_at, fits, ld8, ld16, parse_l2, st16};

/// `DecapCounter` slot → per-CPU packet count. Written here; DECAP_COUNTER_SLOTS.
#[map]
static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DECAP_COUNTER_SLOTS, 0);
const _: () = assert!(pkt::same(MAP_DECAP_STATS, "DECAP_STATS"));

#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    let (action, counter) = match try_decap(&ctx) {
        Ok(c) => (xdp_action::XDP_PASS, c),
        Err(c) => (xdp_action::XDP_DROP, c),
    };
    if let Some(p) = DECAP_STATS.get_ptr_mut(counter as u32) {
        unsafe { *p += 1 }
    }
    action
}

/// Ok(what was done, the packet passes) or Err(Malformed, dropped).
#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Result<DecapCounter, DecapCounter> {
    // Not even a whole L2 header: not a tunnel packet, let the stack judge it.
    let Ok((l3, ether)) = parse_l2(ctx) else {
        return Ok(DecapCounter::Passed);
    };
    match ether {
        ethertype::IPV4 => decap_ipv4(ctx, l3),
        ethertype::IPV6 => decap_ipv6(ctx, l3),
        _ => Ok(DecapCounter::Passed),
    }
}

#[inline(always)]
fn decap_ipv4(ctx: &XdpContext, l3: usize) -> Result<DecapCounter, DecapCounter> {
    let Some(p) = bytes_at(ctx, l3, IPV4_LEN) else {
        return Ok(DecapCounter::Passed);
    };
    let (vihl, ip_proto) = unsafe { (ld8(p), ld8(p + 9)) };
    if vihl >> 4 != 4 || ip_proto != proto::IPIP {
        return Ok(DecapCounter::Passed);
    }
    if vihl & 0x0f < 5 {
        return Err(DecapCounter::Malformed);
    }
    // Masked nibble × 4: the verifier sees 20 ≤ hlen ≤ 60.
    let hlen = (vihl & 0x0f) as usize * 4;
    if !fits(ctx, l3 + hlen, IPV4_LEN) {
        return Err(DecapCounter::Malformed);
    }
    strip(ctx, l3, hlen)?;
    Ok(DecapCounter::Ipip)
}

#[inline(always)]
fn decap_ipv6(ctx: &XdpContext, l3: usize) -> Result<DecapCounter, DecapCounter> {
    let Some(p) = bytes_at(ctx, l3, IPV6_LEN) else {
        return Ok(DecapCounter::Passed);
    };
    let (ver, next) = unsafe { (ld8(p) >> 4, ld8(p + 6)) };
    if ver != 6 || next != proto::IPV6 {
        return Ok(DecapCounter::Passed);
    }
    if !fits(ctx, l3 + IPV6_LEN, IPV6_LEN) {
        return Err(DecapCounter::Malformed);
    }
    strip(ctx, l3, IPV6_LEN)?;
    Ok(DecapCounter::Ip6ip6)
}

/// Moves the L2 header (`l3` bytes: 14, 18 or 22) forward by `hlen` over the outer IP
/// header, then shrinks the head by `hlen`.
#[inline(always)]
fn strip(ctx: &XdpContext, l3: usize, hlen: usize) -> Result<(), DecapCounter> {
    let src = bytes_at(ctx, 0, L2_MAX).ok_or(DecapCounter::Malformed)?;
    // The destination starts hlen (variable, ≤ 60) further on. The caller proved
    // l3 + hlen + an inner header ≥ hlen + 34 bytes, so L2_MAX bytes there always fit;
    // the verifier needs this check on the pointer we write through.
    let dst = bytes_at(ctx, hlen, L2_MAX).ok_or(DecapCounter::Malformed)?;
    // Read all words first, then write: the ranges overlap when hlen < l3.
    let mut w = [0u16; 11];
    for (i, v) in w.iter_mut().enumerate() {
        // Words past the L2 header are not copied (they may be the outer IP header).
        if 2 * i < l3 {
            *v = unsafe { ld16(src + 2 * i) };
        }
    }
    for (i, v) in w.iter().enumerate() {
        if 2 * i < l3 {
            unsafe { st16(dst + 2 * i, *v) };
        }
    }
    // SAFETY: ctx.ctx is the program's context; no packet pointer is used after this.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, hlen as i32) } != 0 {
        return Err(DecapCounter::Malformed);
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
