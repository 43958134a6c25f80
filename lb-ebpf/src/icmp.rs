//! ICMP errors about a flow (docs/datapath.md "ICMP errors", as Katran's handle_icmp.h):
//! a router that cannot forward a real's too-big reply sends "fragmentation needed"
//! (ICMPv4 3/4) or "packet too big" (ICMPv6 2) to the VIP, quoting the reply's IP header and
//! first 8 L4 bytes (VIP:vport → client:cport). We balance it with the quoted flow reversed,
//! so it reaches the real that owns the connection and path-MTU discovery works.
//!
//! A NAT real's own ICMP error to a client, about a packet of the client's it received
//! (client:cport → real:rport quoted), is parsed here too ([`parse_icmp_reply_error`]): the
//! quote reversed is the flow's NAT_REV key, as IPVS `ip_vs_out_icmp` finds the connection.
//!
//! This module only parses (step 6); NAT's rewrite of the quote is `forward::nat::rewrite_quote`.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Be16, Drop, FlowKey, Pass, RawAddr,
    addr::family,
    consts::{
        hdr::{ICMP_LEN, IPV4_LEN, IPV6_LEN, QUOTE_L4_LEN},
        icmp::{
            V4_DEST_UNREACH, V4_FRAG_NEEDED, V4_SOURCE_QUENCH, V4_TIME_EXCEEDED,
            V6_INFO_MASK, V6_PACKET_TOO_BIG,
        },
        proto,
    },
};

use crate::gate::confirm_vip;
use crate::parse::{Packet, Quote, read_addr6};
use crate::pkt::{bytes_at, ld8, ld16, ld32_at};
use crate::verdict::Exit;

/// Turns an ICMP error about a flow into that flow's key (client → VIP) and records where
/// the quote is. Any other ICMP message to a VIP is not balanced.
#[inline(always)]
pub fn parse_icmp_error(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Exit> {
    let hdr = if pkt.l4_off + ICMP_LEN <= pkt.l3_end() {
        bytes_at(ctx, pkt.l4_off, ICMP_LEN)
    } else {
        None
    };
    let Some(p) = hdr else {
        return Err(confirm_vip(&pkt.key, Exit::Pass(Pass::NotBalanced)));
    };
    let (ty, code) = unsafe { (ld8(p), ld8(p + 1)) };
    let v4 = pkt.is_v4();
    let about_flow = if v4 {
        ty == V4_DEST_UNREACH && code == V4_FRAG_NEEDED
    } else {
        ty == V6_PACKET_TOO_BIG
    };
    if !about_flow {
        return Err(confirm_vip(&pkt.key, Exit::Pass(Pass::NotBalanced)));
    }
    let q = pkt.l4_off + ICMP_LEN;
    let (key, quote) = if v4 {
        parse_quote_v4(ctx, q, pkt.l3_end())?
    } else {
        parse_quote_v6(ctx, q, pkt.l3_end())?
    };
    pkt.key = key;
    pkt.quote = Some(quote);
    Ok(())
}

/// Step 4, for an ICMP packet from a maybe-NAT real (docs/datapath.md "NAT return"): an
/// error IPVS translates for a NAT connection (`ip_vs_out_icmp`: ICMPv4 destination
/// unreachable of any code, source quench, time exceeded; `ip_vs_out_icmp_v6`: any ICMPv6
/// error, type < 128) quoting a TCP/UDP packet. The quote is the client's packet as the real got
/// it (client:cport → real:rport); reversed, it is the NAT_REV key (real:rport →
/// client:cport). `None` for anything else, which passes untouched as before.
#[inline(always)]
pub fn parse_icmp_reply_error(ctx: &XdpContext, pkt: &Packet) -> Option<(FlowKey, Quote)> {
    if pkt.l4_off + ICMP_LEN > pkt.l3_end() {
        return None;
    }
    let ty = unsafe { ld8(bytes_at(ctx, pkt.l4_off, ICMP_LEN)?) };
    let v4 = pkt.is_v4();
    let handled = if v4 {
        ty == V4_DEST_UNREACH || ty == V4_SOURCE_QUENCH || ty == V4_TIME_EXCEEDED
    } else {
        ty & V6_INFO_MASK == 0
    };
    if !handled {
        return None;
    }
    let q = pkt.l4_off + ICMP_LEN;
    let parsed = if v4 {
        parse_quote_v4(ctx, q, pkt.l3_end())
    } else {
        parse_quote_v6(ctx, q, pkt.l3_end())
    };
    parsed.ok()
}

/// Quoted IPv4 header (options skipped via IHL) and its first 8 L4 bytes, inside the ICMP
/// packet's IP length.
#[inline(always)]
fn parse_quote_v4(ctx: &XdpContext, q: usize, end: usize) -> Result<(FlowKey, Quote), Exit> {
    if q + IPV4_LEN > end {
        return Err(Exit::Drop(Drop::IcmpQuote));
    }
    let p = bytes_at(ctx, q, IPV4_LEN).ok_or(Drop::IcmpQuote)?;
    let vihl = unsafe { ld8(p) };
    if vihl >> 4 != 4 || vihl & 0x0f < 5 {
        return Err(Exit::Drop(Drop::IcmpQuote));
    }
    let l4 = q + (vihl & 0x0f) as usize * 4;
    let t = quoted_l4(ctx, l4, end)?;
    let (src, dst) = unsafe { (ld32_at::<12>(p), ld32_at::<16>(p)) };
    let key = quoted_key(
        unsafe { ld8(p + 9) },
        family::V4,
        [src, 0, 0, 0],
        [dst, 0, 0, 0],
        t,
    )?;
    Ok((
        key,
        Quote {
            l3_off: q,
            l4_off: l4,
        },
    ))
}

/// Quoted IPv6 header and its first 8 L4 bytes.
#[inline(always)]
fn parse_quote_v6(ctx: &XdpContext, q: usize, end: usize) -> Result<(FlowKey, Quote), Exit> {
    if q + IPV6_LEN > end {
        return Err(Exit::Drop(Drop::IcmpQuote));
    }
    let p = bytes_at(ctx, q, IPV6_LEN).ok_or(Drop::IcmpQuote)?;
    if unsafe { ld8(p) } >> 4 != 6 {
        return Err(Exit::Drop(Drop::IcmpQuote));
    }
    let l4 = q + IPV6_LEN;
    let t = quoted_l4(ctx, l4, end)?;
    let (src, dst) = unsafe { (read_addr6(p + 8), read_addr6(p + 24)) };
    let key = quoted_key(unsafe { ld8(p + 6) }, family::V6, src, dst, t)?;
    Ok((
        key,
        Quote {
            l3_off: q,
            l4_off: l4,
        },
    ))
}

/// The quoted L4 bytes, which must be whole.
#[inline(always)]
fn quoted_l4(ctx: &XdpContext, l4: usize, end: usize) -> Result<usize, Drop> {
    if l4 + QUOTE_L4_LEN > end {
        return Err(Drop::IcmpQuote);
    }
    bytes_at(ctx, l4, QUOTE_L4_LEN).ok_or(Drop::IcmpQuote)
}

/// The quoted packet VIP:vport → client:cport, reversed into the flow's own direction.
/// A quote of anything but TCP/UDP cannot belong to a service of ours.
#[inline(always)]
fn quoted_key(
    ip_proto: u8,
    fam: u8,
    src: RawAddr,
    dst: RawAddr,
    l4: usize,
) -> Result<FlowKey, Exit> {
    if ip_proto != proto::TCP && ip_proto != proto::UDP {
        return Err(Exit::Pass(Pass::NotBalanced));
    }
    let (sport, dport) = unsafe { (ld16(l4), ld16(l4 + 2)) };
    Ok(FlowKey {
        src: dst,
        dst: src,
        sport: Be16(dport),
        dport: Be16(sport),
        proto: ip_proto,
        family: fam,
        _pad: [0; 2],
    })
}
