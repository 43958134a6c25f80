//! NAT (`-m`, masquerading): the client's packet gets destination := real.addr:real.port and
//! TTL − 1 (the director is a router hop here), checksums fixed incrementally; the first
//! packet of a flow records the reverse entry, and the real's reply (found in NAT_REV) gets
//! source := VIP:vport and goes back the way the client's packet came. An ICMP error about
//! a NAT flow has its quote rewritten instead ([`rewrite_quote`]): a router's to the VIP
//! towards the real, the real's own to the client back as from the VIP.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Be16, Counter, Drop, FlowKey, NatReverse, RawAddr, Real,
    consts::{
        NO_REAL,
        hdr::{ICMP_LEN, IPV4_LEN, IPV6_LEN, QUOTE_L4_LEN, TCP_LEN, UDP_LEN},
        proto,
    },
    csum::{apply, delta_addr, delta16, delta32},
};

use super::{send, write_macs};
use crate::conn;
use crate::flows;
use crate::parse::{Packet, Quote, read_addr6};
use crate::pkt::{bytes_at, ld8, ld16, ld32, st8, st16, st32};
use crate::reals::counted;
use crate::stats::{count, count_out};
use crate::verdict::{Dest, Exit, Sent};

/// Which end of the packet a rewrite changes.
#[derive(Clone, Copy)]
pub enum Side {
    /// Source address and port (NAT return; the quoted packet of an ICMP error).
    Src,
    /// Destination address and port (client → real).
    Dst,
}

impl Side {
    /// The other end: a quoted packet goes the other way from the ICMP error quoting it.
    #[inline(always)]
    fn other(self) -> Side {
        match self {
            Side::Src => Side::Dst,
            Side::Dst => Side::Src,
        }
    }
}

/// What an IP header rewrite changed, for the checksums that cover it further out.
pub struct L3Change {
    /// The address change as a checksum delta (`csum::delta32` / `delta_addr`): computed
    /// in the family's own branch, so IPv4 sums two words, not eight.
    pub addr_delta: u32,
    /// IPv4 header checksum before and after (both 0 for IPv6, which has none).
    pub old_check: u16,
    /// See `old_check`.
    pub new_check: u16,
}

/// Client → real. An ICMP error about the flow gets its quote rewritten instead.
#[inline(always)]
pub fn forward_nat(ctx: &XdpContext, pkt: &Packet, dest: &Dest, real: &Real) -> Result<(), Drop> {
    // A real port of 0 keeps the client's destination port (all-port services).
    let (addr, port) = pkt.key.nat_dest(&real.addr, real.port);
    if let Some(q) = pkt.quote {
        rewrite_quote(ctx, pkt, &q, Side::Dst, &addr, port)?;
    } else {
        if dest.new_flow {
            // Before the rewrite: the entry needs the frame's MACs as they arrived.
            record_reverse(ctx, pkt, dest, real.reference(dest.real_id), &addr, port);
        }
        let l3 = rewrite_l3(ctx, pkt.l3_off, pkt.is_v4(), Side::Dst, &addr, true)?;
        rewrite_l4(ctx, pkt, Side::Dst, l3.addr_delta, port)?;
    }
    write_macs(ctx, &real.dst_mac, &real.src_mac)
}

/// The NAT rewrite of an ICMP error and its quote (IPVS `ip_vs_nat_icmp`): the outer
/// header's `outer` end := `addr` (TTL − 1), the quoted packet's other end := `addr`:`port`,
/// and the checksums covering them follow: outer IPv4 header, quoted IPv4 header, ICMP
/// (ICMPv6's covers the outer addresses too). The quoted L4 checksum stays, as IPVS leaves
/// it: the quote is truncated anyway. A router's error to the VIP about a reply
/// (`forward_nat`, `Side::Dst`): outer destination and quoted source := real:rport, so the
/// real sees the error about its own reply. A NAT real's error to the client about a
/// client packet (`forward_nat_icmp_return`, `Side::Src`): outer source and quoted
/// destination := VIP:vport, as IPVS `ip_vs_out_icmp` sends it.
#[inline(always)]
fn rewrite_quote(
    ctx: &XdpContext,
    pkt: &Packet,
    q: &Quote,
    outer: Side,
    addr: &RawAddr,
    port: Be16,
) -> Result<(), Drop> {
    let v4 = pkt.is_v4();
    let outer_l3 = rewrite_l3(ctx, pkt.l3_off, v4, outer, addr, true)?;
    let inner = outer.other();
    let inner_l3 = rewrite_l3(ctx, q.l3_off, v4, inner, addr, false)?;
    let t = bytes_at(ctx, q.l4_off, QUOTE_L4_LEN).ok_or(Drop::IcmpQuote)?;
    let at = t + if matches!(inner, Side::Src) { 0 } else { 2 };
    let old_port = unsafe { ld16(at) };
    unsafe { st16(at, port.0) };
    let p = bytes_at(ctx, pkt.l4_off, ICMP_LEN).ok_or(Drop::Truncated)?;
    let mut delta = inner_l3.addr_delta
        + delta16(inner_l3.old_check, inner_l3.new_check)
        + delta16(old_port, port.0);
    if !v4 {
        // ICMPv6's pseudo-header holds the outer addresses.
        delta += outer_l3.addr_delta;
    }
    unsafe { st16(p + 2, apply(ld16(p + 2), delta)) };
    Ok(())
}

/// Real → client (docs/datapath.md "NAT return"): source := VIP:vport, TTL − 1, back to
/// the client's MAC from ours, out the interface the client's packets came in on. Counted
/// on the service, and on the real unless the entry is stale (its real's id given to
/// another real since: still translated, as IPVS's connection holds its dest, but not
/// the new real's traffic).
#[inline(always)]
pub fn forward_nat_return(ctx: &XdpContext, pkt: &Packet, rev: &NatReverse) -> Result<Sent, Exit> {
    pkt.check_ttl()?;
    track_reply_state(pkt, rev);
    let vip = family_addr(pkt, &rev.vip);
    let l3 = rewrite_l3(ctx, pkt.l3_off, pkt.is_v4(), Side::Src, &vip, true)?;
    rewrite_l4(ctx, pkt, Side::Src, l3.addr_delta, rev.vport)?;
    write_macs(ctx, &rev.client_mac, &rev.local_mac)?;
    count_out(rev.svc_id, counted(rev.real_id), pkt.l3_len);
    Ok(Sent {
        out: send(ctx, rev.ifindex)?,
        fwd_counter: Counter::NAT_RETURN,
        new_flow: false,
    })
}

/// A NAT real's ICMP error to the client about a packet of a live NAT flow (IPVS
/// `ip_vs_out_icmp` + `ip_vs_nat_icmp`; docs/datapath.md "NAT return"): outer source := VIP
/// (TTL − 1), quoted destination := VIP:vport ([`rewrite_quote`]), then back to the client
/// as the flow's replies go, counted as one (NAT_RETURN). The flow's state is not moved:
/// an error is no packet of the connection.
#[inline(always)]
pub fn forward_nat_icmp_return(
    ctx: &XdpContext,
    pkt: &Packet,
    rev: &NatReverse,
    q: &Quote,
) -> Result<Sent, Exit> {
    pkt.check_ttl()?;
    let vip = family_addr(pkt, &rev.vip);
    rewrite_quote(ctx, pkt, q, Side::Src, &vip, rev.vport)?;
    write_macs(ctx, &rev.client_mac, &rev.local_mac)?;
    count_out(rev.svc_id, counted(rev.real_id), pkt.l3_len);
    Ok(Sent {
        out: send(ctx, rev.ifindex)?,
        fwd_counter: Counter::NAT_RETURN,
        new_flow: false,
    })
}

/// A TCP reply with SYN, FIN or RST moves the client flow's state through IPVS's OUTPUT
/// table (and clears its NO_OUTPUT). Plain ACKs and UDP replies skip the FLOWS lookup that
/// would only restamp the flow: the client's own packets keep it fresh (a difference from
/// IPVS, which also restarts the timer on replies; it keeps the reply path free of a hash
/// lookup).
#[inline(always)]
fn track_reply_state(pkt: &Packet, rev: &NatReverse) {
    use lb_common::conn::tcp_flags::{FIN, RST, SYN};
    if pkt.key.proto != proto::TCP || pkt.tcp_flags & (SYN | FIN | RST) == 0 {
        return;
    }
    let key = FlowKey {
        src: pkt.key.dst,
        dst: family_addr(pkt, &rev.vip),
        sport: pkt.key.dport,
        dport: rev.vport,
        proto: pkt.key.proto,
        family: pkt.key.family,
        _pad: [0; 2],
    };
    // A stale flow (its real's id given to another real) does not move: its state would
    // move the new real's counters.
    if let Some(v) = flows::flow_ptr(&key) {
        let real_id = counted(unsafe { (*v).real_id });
        if real_id != NO_REAL {
            unsafe { conn::on_packet(v, real_id, proto::TCP, pkt.tcp_flags, true) };
        }
    }
}

/// NAT_REV entry for the real's replies: {real:port → client:cport}
/// (`FlowKey::nat_reverse_key`, as the flow's expiry finds it again) → VIP:vport, ingress
/// interface and the frame's MACs. A failed insert is counted and the packet still goes.
/// An entry no flow owns (a `-o` datagram's, or one whose flow the full table refused)
/// is aged out by the sweep (`FLOWLESS_REPLY_S`).
#[inline(always)]
fn record_reverse(
    ctx: &XdpContext,
    pkt: &Packet,
    dest: &Dest,
    real_ref: u32,
    addr: &RawAddr,
    port: Be16,
) {
    let Some(p) = bytes_at(ctx, 0, 12) else {
        return;
    };
    // The frame's source is the client (or its router); its destination is our MAC.
    // MACs are built from loaded words, not zero-filled then written: a `[0; 6]`
    // initialiser makes LLVM emit an out-of-line memset (a BPF-to-BPF call).
    let rev = NatReverse {
        vip: pkt.key.dst,
        vport: pkt.key.dport,
        _pad: [0; 2],
        ifindex: ctx.ingress_ifindex() as u32,
        client_mac: unsafe { read_mac(p + 6) },
        local_mac: unsafe { read_mac(p) },
        svc_id: dest.svc_id,
        real_id: real_ref,
        // The sweep stamps an entry no flow owns when it first finds it.
        stamp_s: 0,
    };
    let key = pkt.key.nat_reverse_key(addr, port);
    if !flows::nat_reverse_insert(&key, &rev) {
        count(Counter::NAT_REV_INSERT_FAILED);
    }
}

/// Six bytes at an even offset of the frame. Safety: as `pkt::ld16`.
#[inline(always)]
unsafe fn read_mac(p: usize) -> [u8; 6] {
    let (a, b, c) = unsafe {
        (
            ld16(p).to_ne_bytes(),
            ld16(p + 2).to_ne_bytes(),
            ld16(p + 4).to_ne_bytes(),
        )
    };
    [a[0], a[1], b[0], b[1], c[0], c[1]]
}

/// An address as this packet's family stores it: IPv4 keeps word 0 and zeroes the rest, so
/// a stray word in a map value cannot leak into keys or checksums.
#[inline(always)]
pub fn family_addr(pkt: &Packet, a: &RawAddr) -> RawAddr {
    if pkt.is_v4() { [a[0], 0, 0, 0] } else { *a }
}

/// Replaces the source or destination address of the IP header at `l3` (optionally with
/// TTL / hop limit − 1) and fixes the IPv4 header checksum.
#[inline(always)]
pub fn rewrite_l3(
    ctx: &XdpContext,
    l3: usize,
    v4: bool,
    side: Side,
    new: &RawAddr,
    dec_ttl: bool,
) -> Result<L3Change, Drop> {
    if v4 {
        let p = bytes_at(ctx, l3, IPV4_LEN).ok_or(Drop::Truncated)?;
        let a = p + if matches!(side, Side::Src) { 12 } else { 16 };
        unsafe {
            let old = ld32(a);
            st32(a, new[0]);
            let old_check = ld16(p + 10);
            let addr_delta = delta32(old, new[0]);
            let mut delta = addr_delta;
            if dec_ttl {
                // TTL shares a 16-bit word with the protocol; the checksum sees the word.
                let w = ld16(p + 8);
                st8(p + 8, ld8(p + 8).wrapping_sub(1));
                delta += delta16(w, ld16(p + 8));
            }
            let c = apply(old_check, delta);
            st16(p + 10, c);
            Ok(L3Change {
                addr_delta,
                old_check,
                new_check: c,
            })
        }
    } else {
        let p = bytes_at(ctx, l3, IPV6_LEN).ok_or(Drop::Truncated)?;
        let a = p + if matches!(side, Side::Src) { 8 } else { 24 };
        unsafe {
            let old = read_addr6(a);
            st32(a, new[0]);
            st32(a + 4, new[1]);
            st32(a + 8, new[2]);
            st32(a + 12, new[3]);
            if dec_ttl {
                st8(p + 7, ld8(p + 7).wrapping_sub(1));
            }
            Ok(L3Change {
                addr_delta: delta_addr(&old, new),
                old_check: 0,
                new_check: 0,
            })
        }
    }
}

/// Which L4 checksum a rewrite has to fix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L4Csum {
    /// TCP: checksum at offset 16.
    Tcp,
    /// UDP: checksum at offset 6; a computed 0 is sent as all ones.
    Udp,
    /// IPv4 UDP sent without a checksum (0, RFC 768): it stays 0.
    Unset,
}

/// Replaces the port on `side` and fixes the TCP/UDP checksum for it and for the address
/// change in the pseudo-header (`addr_delta`, from `rewrite_l3`).
#[inline(always)]
fn rewrite_l4(
    ctx: &XdpContext,
    pkt: &Packet,
    side: Side,
    addr_delta: u32,
    port: Be16,
) -> Result<(), Drop> {
    let port_off = if matches!(side, Side::Src) { 0 } else { 2 };
    // One bytes_at per protocol: each range is a constant, as the verifier needs.
    match pkt.key.proto {
        proto::TCP => {
            let p = bytes_at(ctx, pkt.l4_off, TCP_LEN).ok_or(Drop::Truncated)?;
            unsafe { fix_l4(p, port_off, L4Csum::Tcp, addr_delta, port) };
        }
        proto::UDP => {
            let p = bytes_at(ctx, pkt.l4_off, UDP_LEN).ok_or(Drop::Truncated)?;
            let kind = if pkt.is_v4() && unsafe { ld16(p + 6) } == 0 {
                L4Csum::Unset
            } else {
                L4Csum::Udp
            };
            unsafe { fix_l4(p, port_off, kind, addr_delta, port) };
        }
        _ => {}
    }
    Ok(())
}

/// Safety: `p` is a checked L4 header of the protocol `kind` names.
#[inline(always)]
unsafe fn fix_l4(p: usize, port_off: usize, kind: L4Csum, addr_delta: u32, port: Be16) {
    let csum_off = match kind {
        L4Csum::Tcp => 16,
        L4Csum::Udp | L4Csum::Unset => 6,
    };
    unsafe {
        let old_port = ld16(p + port_off);
        st16(p + port_off, port.0);
        if kind == L4Csum::Unset {
            return;
        }
        let mut c = apply(ld16(p + csum_off), addr_delta + delta16(old_port, port.0));
        if kind == L4Csum::Udp && c == 0 {
            c = 0xffff;
        }
        st16(p + csum_off, c);
    }
}
