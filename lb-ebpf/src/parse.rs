//! Parse: Ethernet (+ up to two VLAN tags), IPv4 (options skipped via IHL) or IPv6, and the
//! TCP/UDP ports, into one family-agnostic [`Packet`] view (as Katran's `flow_key` union).
//! Only this module and `forward` branch on the address family (docs/design.md §3).
//! Validation follows docs/datapath.md steps 1–2; step 3's gate (`gate::gate`) runs as
//! soon as each family has its addresses, so traffic that is not ours leaves before the
//! rest of the [`Packet`] is built. The L4 header is only classified here
//! ([`L4`]); what a class means (drop, pass, balance) is decided once the destination may
//! be a VIP (`lookup::classify_l4`, step 5), so that code needs no family.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Be16, Drop, FlowKey, Pass,
    addr::family,
    consts::{
        ethertype,
        hdr::{IPV4_LEN, IPV6_LEN, TCP_LEN, UDP_LEN},
        ipv4_frag,
        proto,
    },
};

use crate::gate::{Gate, gate, malformed_to};
use crate::pkt::{bytes_at, fits, ld8, ld16, ld32_at, parse_l2};
use crate::verdict::Exit;

/// Offsets of the packet quoted by an ICMP error (set by `icmp.rs`).
#[derive(Clone, Copy)]
pub struct Quote {
    /// Quoted IP header.
    pub l3_off: usize,
    /// Quoted L4 header (its first 8 bytes are inside the frame).
    pub l4_off: usize,
}

/// The L4 header as balancing sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP/UDP whose header lies inside the IP length: its ports are in the key.
    Ports,
    /// TCP/UDP whose header is cut short.
    Cut,
    /// ICMP on IPv4, ICMPv6 on IPv6: perhaps an error about a flow (`icmp.rs`).
    Icmp,
    /// IPv4 first fragment (MF set, offset 0): its L4 header (ports) is at `l4_off`, but
    /// the rest of the packet is elsewhere, so it is never balanced.
    FirstFragment,
    /// IPv4 later fragment (offset ≠ 0): no ports at all.
    Fragment,
    /// An IPv6 extension header (hop-by-hop, routing, fragment, ESP, AH, destination
    /// options, mobility, HIP, shim6): the ports are not where TCP/UDP's are
    /// ([`walk_ext6`] finds them behind the common ones).
    Ext,
    /// Any other protocol.
    Other,
}

/// What the later stages know of a packet. Offsets are from the frame start.
pub struct Packet {
    /// The flow: straight from the headers for a data packet; for an ICMP error about a
    /// flow, the quoted packet reversed (client → VIP), see `icmp.rs`.
    pub key: FlowKey,
    /// IP header (= length of the L2 header with its tags).
    pub l3_off: usize,
    /// L4 header (after IPv4 options); for IPv6, the first extension header if any
    /// (`L4::Ext`, walked only by [`walk_ext6`]).
    pub l4_off: usize,
    /// IP length (tot_len, or 40 + payload_len): what byte counters and tunnels use.
    /// Bytes after it (Ethernet padding) are left alone.
    pub l3_len: usize,
    /// TTL / hop limit of the (outer) packet.
    pub ttl: u8,
    /// What the L4 header is.
    pub l4: L4,
    /// Set when this is an ICMP error about a flow.
    pub quote: Option<Quote>,
    /// TCP flag byte (FIN SYN RST PSH ACK ...) of a TCP packet; 0 otherwise.
    pub tcp_flags: u8,
    /// TCP sequence number (host order) of a TCP packet; 0 otherwise. Only the flow cache
    /// reads it (`lb_common::flow_cache::seq_near`).
    pub tcp_seq: u32,
    /// What the address filters said (step 3).
    pub gate: Gate,
}

impl Packet {
    /// IPv4 (else IPv6).
    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.key.family == family::V4
    }

    /// End of the IP packet (≤ the frame end, checked by parse).
    #[inline(always)]
    pub fn l3_end(&self) -> usize {
        self.l3_off + self.l3_len
    }

    /// A TCP SYN without RST, not an ICMP error: a packet IPVS schedules as a new
    /// connection (`tcp_conn_schedule`: `th->syn && !th->rst`, SYN+ACK included) and that
    /// may replace an old connection on its ports, so it is scheduled before its flow is
    /// looked up, while any old flow still counts.
    #[inline(always)]
    pub fn opens_connection(&self) -> bool {
        use lb_common::conn::tcp_flags::{RST, SYN};
        self.tcp_flags & (SYN | RST) == SYN && self.quote.is_none()
    }

    /// A TCP SYN (whatever its other flags), not an ICMP error: IPVS's `is_new_conn`, the
    /// packet that may find an old connection on its ports (`lookup::lookup_flow`).
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.tcp_flags & lb_common::conn::tcp_flags::SYN != 0 && self.quote.is_none()
    }

    /// A TCP RST (whatever its other flags), not an ICMP error: it never starts a flow
    /// (IPVS `tcp_conn_schedule` schedules no RST). UDP has no flags (0).
    #[inline(always)]
    pub fn is_rst(&self) -> bool {
        self.tcp_flags & lb_common::conn::tcp_flags::RST != 0 && self.quote.is_none()
    }

    /// A packet that moves no connection state: UDP, or TCP with ACK and none of SYN, FIN,
    /// RST (not an ICMP error). Only these may use the flow cache (`cache.rs`).
    #[inline(always)]
    pub fn is_plain(&self) -> bool {
        use lb_common::conn::tcp_flags::{ACK, FIN, RST, SYN};
        let plain_tcp = self.tcp_flags & (SYN | FIN | RST | ACK) == ACK;
        self.quote.is_none() && (plain_tcp || self.key.proto == lb_common::consts::proto::UDP)
    }

    /// docs/datapath.md step 9: a packet with TTL / hop limit ≤ 1 may not be forwarded.
    #[inline(always)]
    pub fn check_ttl(&self) -> Result<(), Drop> {
        if self.ttl <= 1 {
            Err(Drop::TtlExpired)
        } else {
            Ok(())
        }
    }
}

/// L2 and L3, the address filters (step 3: pass `NotVip` here when neither says maybe),
/// then the L4 class (and the ports when the packet is TCP/UDP).
#[inline(always)]
pub fn parse_packet(ctx: &XdpContext) -> Result<Packet, Exit> {
    let (l3_off, ether) = parse_l2(ctx)?;
    match ether {
        ethertype::IPV4 => parse_ipv4(ctx, l3_off),
        ethertype::IPV6 => parse_ipv6(ctx, l3_off),
        _ => Err(Exit::Pass(Pass::NotIp)),
    }
}

/// What the L4 header gave ([`parse_l4`]); ports and flags zero unless `l4` is `Ports`.
#[derive(Clone, Copy)]
struct Transport {
    l4: L4,
    sport: Be16,
    dport: Be16,
    tcp_flags: u8,
    tcp_seq: u32,
}

impl Transport {
    #[inline(always)]
    const fn only(l4: L4) -> Self {
        Transport {
            l4,
            sport: Be16(0),
            dport: Be16(0),
            tcp_flags: 0,
            tcp_seq: 0,
        }
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize) -> Result<Packet, Exit> {
    // Cut before its destination address: it cannot be shown to be ours, so it passes.
    let p = bytes_at(ctx, l3, IPV4_LEN).ok_or(Pass::NotVip)?;
    let vihl = unsafe { ld8(p) };
    // Masked and scaled from a nibble: the verifier sees hlen ≤ 60.
    let hlen = (vihl & 0x0f) as usize * 4;
    let tot = u16::from_be(unsafe { ld16(p + 2) }) as usize;
    let bad = if vihl >> 4 != 4 || hlen < IPV4_LEN {
        Some(Drop::BadHeader)
    } else if !fits(ctx, l3, hlen) || !fits(ctx, l3, tot) {
        Some(Drop::Truncated)
    } else if tot < hlen {
        Some(Drop::BadHeader)
    } else {
        None
    };
    if let Some(reason) = bad {
        return Err(malformed_to(&[unsafe { ld32_at::<16>(p) }, 0, 0, 0], family::V4, reason));
    }
    let frag = u16::from_be(unsafe { ld16(p + 6) });
    let (src, dst) = unsafe { (ld32_at::<12>(p), ld32_at::<16>(p)) };
    let gate = gate(&[src, 0, 0, 0], &[dst, 0, 0, 0])?;
    let proto = unsafe { ld8(p + 9) };
    let l4_off = l3 + hlen;
    // The key is built once, here, from plain values: built first and patched by the L4
    // parse, its ten words were copied between stack slots at every branch of that parse.
    let t = if frag & (ipv4_frag::MF | ipv4_frag::OFFSET) != 0 {
        // A fragment: more follow, or this one is not the first.
        Transport::only(if frag & ipv4_frag::OFFSET == 0 {
            L4::FirstFragment
        } else {
            L4::Fragment
        })
    } else {
        parse_l4(ctx, proto, true, l4_off, l3 + tot)
    };
    Ok(Packet {
        key: FlowKey {
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
            sport: t.sport,
            dport: t.dport,
            proto,
            family: family::V4,
            _pad: [0; 2],
        },
        l3_off: l3,
        l4_off,
        l3_len: tot,
        ttl: unsafe { ld8(p + 8) },
        l4: t.l4,
        quote: None,
        tcp_flags: t.tcp_flags,
        tcp_seq: t.tcp_seq,
        gate,
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize) -> Result<Packet, Exit> {
    // Cut before (or inside) its destination address: it cannot be shown to be ours.
    let p = bytes_at(ctx, l3, IPV6_LEN).ok_or(Pass::NotVip)?;
    let len = IPV6_LEN + u16::from_be(unsafe { ld16(p + 4) }) as usize;
    let bad = if unsafe { ld8(p) } >> 4 != 6 {
        Some(Drop::BadHeader)
    } else if !fits(ctx, l3, len) {
        Some(Drop::Truncated)
    } else {
        None
    };
    if let Some(reason) = bad {
        let dst = unsafe { read_addr6(p + 24) };
        return Err(malformed_to(&dst, family::V6, reason));
    }
    let (src, dst) = unsafe { (read_addr6(p + 8), read_addr6(p + 24)) };
    let gate = gate(&src, &dst)?;
    let proto = unsafe { ld8(p + 6) };
    let t = parse_l4(ctx, proto, false, l3 + IPV6_LEN, l3 + len);
    Ok(Packet {
        key: FlowKey {
            src,
            dst,
            sport: t.sport,
            dport: t.dport,
            proto,
            family: family::V6,
            _pad: [0; 2],
        },
        l3_off: l3,
        l4_off: l3 + IPV6_LEN,
        l3_len: len,
        ttl: unsafe { ld8(p + 7) },
        l4: t.l4,
        quote: None,
        tcp_flags: t.tcp_flags,
        tcp_seq: t.tcp_seq,
        gate,
    })
}

/// Reads a 16-byte address. Safety: as `pkt::ld16`.
#[inline(always)]
pub unsafe fn read_addr6(p: usize) -> [u32; 4] {
    unsafe {
        [
            ld32_at::<0>(p),
            ld32_at::<4>(p),
            ld32_at::<8>(p),
            ld32_at::<12>(p),
        ]
    }
}

/// The class of a protocol that is neither TCP nor UDP: one value, computed without a
/// store per arm.
#[inline(always)]
fn classify(p: u8, v4: bool) -> L4 {
    let icmp = if v4 { proto::ICMP } else { proto::ICMPV6 };
    if p == icmp {
        L4::Icmp
    } else if !v4 && is_ext(p) {
        L4::Ext
    } else {
        L4::Other
    }
}

/// IPv6 extension headers we do not walk: hop-by-hop 0, routing 43, fragment 44, ESP 50,
/// AH 51, destination options 60, mobility 135, HIP 139, shim6 140.
#[inline(always)]
fn is_ext(p: u8) -> bool {
    const LOW: u64 = 1 | 1 << 43 | 1 << 44 | 1 << 50 | 1 << 51 | 1 << 60;
    const HIGH: u64 = 1 | 1 << (139 - 135) | 1 << (140 - 135);
    if p < 64 {
        LOW >> p & 1 != 0
    } else {
        p >= 135 && p - 135 < 64 && HIGH >> (p - 135) & 1 != 0
    }
}

/// Classifies the L4 header (`proto` at `l4_off`, the IP packet ending at `l3_end`) and
/// reads the ports of a TCP/UDP header that lies inside the IP length. Not for fragments.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, proto: u8, v4: bool, l4_off: usize, l3_end: usize) -> Transport {
    let need = match proto {
        proto::TCP => TCP_LEN,
        proto::UDP => UDP_LEN,
        p => return Transport::only(classify(p, v4)),
    };
    // The IP length check covers the whole header; the verifier only needs a constant
    // range for the words we read.
    let ports = if l4_off + need > l3_end {
        None
    } else {
        bytes_at(ctx, l4_off, UDP_LEN)
    };
    let Some(p) = ports else {
        return Transport::only(L4::Cut);
    };
    let (tcp_flags, tcp_seq) = match bytes_at(ctx, l4_off, TCP_LEN) {
        // Bytes 12–13 (data offset, flags): the flags are the second byte in memory.
        // Bytes 4–7: the sequence number.
        Some(p) if need == TCP_LEN => unsafe {
            (
                ld16(p + 12).to_ne_bytes()[1],
                u32::from_be(ld32_at::<4>(p)),
            )
        },
        _ => (0, 0),
    };
    Transport {
        l4: L4::Ports,
        sport: Be16(unsafe { ld16(p) }),
        dport: Be16(unsafe { ld16(p + 2) }),
        tcp_flags,
        tcp_seq,
    }
}

/// Where an IPv6 packet's upper-layer header is, behind its extension headers
/// ([`walk_ext6`]).
#[derive(Clone, Copy)]
pub enum Upper {
    /// Protocol `proto` at `off` (unfragmented, or in the first fragment).
    At {
        /// The upper-layer protocol.
        proto: u8,
        /// Its header's offset from the frame start.
        off: usize,
    },
    /// A later fragment (fragment header offset ≠ 0) of protocol `proto`: no ports.
    Later {
        /// The protocol the fragment header names.
        proto: u8,
    },
    /// Behind a header not walked (ESP, AH, mobility, HIP, shim6), more than
    /// [`EXT6_WALK`] headers, or a header cut by the IP length.
    Unknown,
}

/// How many IPv6 extension headers [`walk_ext6`] walks: hop-by-hop, destination options,
/// routing and fragment each appear at most once or twice in a sane packet (RFC 8200 §4.1).
pub const EXT6_WALK: usize = 4;

/// docs/datapath.md step 5: walks the IPv6 extension headers whose length is plain
/// (hop-by-hop 0, routing 43, destination options 60: 8 × (1 + byte 1); fragment 44: 8
/// bytes, its offset read) from `pkt.l4_off` to the upper-layer header, at most
/// [`EXT6_WALK`] of them, each inside the IP length. Only for a packet to a filter hit
/// whose next header is an extension (`L4::Ext`): never on the common path.
#[inline(always)]
pub fn walk_ext6(ctx: &XdpContext, pkt: &Packet) -> Upper {
    let end = pkt.l3_end();
    let mut next = pkt.key.proto;
    let mut off = pkt.l4_off;
    for _ in 0..EXT6_WALK {
        if next != 0 && next != 43 && next != 44 && next != 60 {
            break;
        }
        // At most 4 × 2048 bytes past the IPv6 header: a bounded offset for the verifier.
        let Some(p) = (if off + 8 <= end { bytes_at(ctx, off, 8) } else { None }) else {
            return Upper::Unknown;
        };
        let (nh, b1, b2, b3) = unsafe { (ld8(p), ld8(p + 1), ld8(p + 2), ld8(p + 3)) };
        if next == 44 {
            // Fragment offset: the 13 high bits of bytes 2–3.
            if u16::from_be_bytes([b2, b3]) >> 3 != 0 {
                return Upper::Later { proto: nh };
            }
            off += 8;
        } else {
            off += (b1 as usize + 1) * 8;
        }
        next = nh;
    }
    if is_ext(next) {
        Upper::Unknown
    } else {
        Upper::At { proto: next, off }
    }
}

/// The (source, destination) ports of a TCP/UDP header at `off`, if its first 4 bytes lie
/// inside the IP packet ending at `end`.
#[inline(always)]
pub fn read_ports(ctx: &XdpContext, off: usize, end: usize) -> Option<(Be16, Be16)> {
    let p = if off + 4 <= end { bytes_at(ctx, off, 4)? } else { return None };
    Some(unsafe { (Be16(ld16(p)), Be16(ld16(p + 2))) })
}
