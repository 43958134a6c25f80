//! IP tunnelling (`-i`): IPIP for IPv4 services, IP6IP6 for IPv6 (the real's family is the
//! service's, so the EtherType stays). The head grows by one IP header; the L2 header (with
//! any VLAN tags) moves to the new front, gets DR's MACs, and the outer header goes between
//! it and the untouched inner packet. The real decapsulates with `lb_decap`.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{
    Drop, Real,
    consts::{
        ENCAP_TTL,
        hdr::{ETH_LEN, IPV4_LEN, IPV6_LEN, L2_MAX},
        ipv4_frag,
        proto,
    },
    csum::ipv4_header,
};

use super::write_macs;
use crate::parse::Packet;
use crate::pkt::{bytes_at, ld8, ld16, ld32, split, st16, st32};

/// Encapsulates the packet toward the real.
#[inline(always)]
pub fn forward_tun(ctx: &XdpContext, pkt: &Packet, real: &Real) -> Result<(), Drop> {
    if pkt.is_v4() {
        make_room::<IPV4_LEN>(ctx, pkt.l3_off)?;
        write_macs(ctx, &real.dst_mac, &real.src_mac)?;
        write_outer_v4(ctx, pkt, real)
    } else {
        make_room::<IPV6_LEN>(ctx, pkt.l3_off)?;
        write_macs(ctx, &real.dst_mac, &real.src_mac)?;
        write_outer_v6(ctx, pkt, real)
    }
}

/// Grows the head by `GROW` bytes and moves the L2 header's tail (tags + EtherType, bytes
/// 12..l3) to the new front; the MACs are rewritten after, so they are not copied.
#[inline(always)]
fn make_room<const GROW: usize>(ctx: &XdpContext, l3: usize) -> Result<(), Drop> {
    // SAFETY: ctx.ctx is the program's context. Every packet pointer taken before this
    // call is invalid after it; everything below re-derives them from ctx.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(GROW as i32)) } != 0 {
        return Err(Drop::AdjustHead);
    }
    // A constant range the verifier can check: a frame that held L2 + an IP header still
    // holds L2_MAX + GROW bytes after growing.
    let p = bytes_at(ctx, 0, L2_MAX + GROW).ok_or(Drop::Truncated)?;
    let old = p + GROW;
    // Unrolled: one to five words depending on the tag count. Destination below source,
    // so copying upward never reads a byte already overwritten.
    unsafe {
        st16(p + 12, ld16(old + 12));
        if l3 > ETH_LEN {
            st16(p + 14, ld16(old + 14));
            st16(p + 16, ld16(old + 16));
        }
        if l3 > ETH_LEN + 4 {
            st16(p + 18, ld16(old + 18));
            st16(p + 20, ld16(old + 20));
        }
    }
    Ok(())
}

/// Outer IPv4: v4, IHL 5, inner TOS, inner tot_len + 20, id 0, DF as the inner packet,
/// TTL ENCAP_TTL, protocol 4, checksum, local_addr → real.addr.
#[inline(always)]
fn write_outer_v4(ctx: &XdpContext, pkt: &Packet, real: &Real) -> Result<(), Drop> {
    // Outer header + the inner fixed header (TOS and DF are read from it).
    let p = bytes_at(ctx, pkt.l3_off, 2 * IPV4_LEN).ok_or(Drop::Truncated)?;
    let inner = p + IPV4_LEN;
    let (tos, frag) = unsafe { (ld8(inner + 1), ld16(inner + 6)) };
    let (s0, s1) = split(real.local_addr[0]);
    let (d0, d1) = split(real.addr[0]);
    let mut w: [u16; 10] = [
        u16::from_ne_bytes([0x45, tos]),
        ((pkt.l3_len + IPV4_LEN) as u16).to_be(),
        0,
        frag & ipv4_frag::DF.to_be(),
        u16::from_ne_bytes([ENCAP_TTL, proto::IPIP]),
        0,
        s0,
        s1,
        d0,
        d1,
    ];
    w[5] = ipv4_header(&w);
    // Pairs of words as they sit in memory (bpfel: the first is the low half): five
    // stores, not ten (TUN v4 −3 to −5 ns).
    let pair = |i: usize| u32::from(w[i]) | u32::from(w[i + 1]) << 16;
    unsafe {
        st32(p, pair(0));
        st32(p + 4, pair(2));
        st32(p + 8, pair(4));
        st32(p + 12, real.local_addr[0]);
        st32(p + 16, real.addr[0]);
    }
    Ok(())
}

/// Outer IPv6: v6, inner traffic class, flow label 0, payload = inner 40 + payload_len,
/// next header 41, hop limit ENCAP_TTL, local_addr → real.addr.
#[inline(always)]
fn write_outer_v6(ctx: &XdpContext, pkt: &Packet, real: &Real) -> Result<(), Drop> {
    let p = bytes_at(ctx, pkt.l3_off, 2 * IPV6_LEN).ok_or(Drop::Truncated)?;
    let first = u32::from_be(unsafe { ld32(p + IPV6_LEN) });
    let tclass = (first >> 20) & 0xff;
    unsafe {
        st32(p, (6u32 << 28 | tclass << 20).to_be());
        st16(p + 4, (pkt.l3_len as u16).to_be());
        st16(p + 6, u16::from_ne_bytes([proto::IPV6, ENCAP_TTL]));
        for (i, w) in real.local_addr.iter().enumerate() {
            st32(p + 8 + 4 * i, *w);
        }
        for (i, w) in real.addr.iter().enumerate() {
            st32(p + 24 + 4 * i, *w);
        }
    }
    Ok(())
}
