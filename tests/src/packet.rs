//! Packet builders for the BPF packet cases: a small description of a frame (`Pkt`) that
//! etherparse's `PacketBuilder` turns into bytes, computing every length and checksum from
//! scratch. Expected outputs are described the same way, field by field from
//! docs/datapath.md, so a checksum the program updates incrementally is compared against
//! one computed here in full, never with lb-common's checksum code.
//!
//! Malformed frames start from a well-formed one and apply `Edit`s to the bytes.

use etherparse::{
    DoubleVlanHeader, EtherType, IpFragOffset, IpHeaders, IpNumber, Ipv4Dscp, Ipv4Ecn,
    Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, PacketBuilder,
    SingleVlanHeader, TcpHeader, VlanHeader, VlanId, VlanPcp,
};
use std::net::IpAddr;

pub use etherparse::{Icmpv4Type, Icmpv6Type};

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// One VLAN tag.
pub const VLAN_LEN: usize = 4;

/// The IP header of a [`Pkt`].
#[derive(Clone, Debug)]
pub enum Ip {
    /// IPv4; `total_len`, protocol and checksum are filled in when built.
    V4(Ipv4Header),
    /// IPv6; payload length and next header are filled in when built.
    V6(Ipv6Header),
}

/// What follows the IP header.
#[derive(Clone, Debug)]
pub enum L4 {
    /// TCP; checksum computed when built.
    Tcp(TcpHeader),
    /// UDP with these ports; length and checksum computed when built.
    Udp { sport: u16, dport: u16 },
    /// ICMP; checksum computed over the header and payload.
    Icmp4(Icmpv4Type),
    /// ICMPv6; checksum includes the pseudo-header.
    Icmp6(Icmpv6Type),
    /// Only the payload, under this IP protocol number.
    Raw(u8),
    /// An encapsulated IP packet (IPIP / IP6IP6): the inner packet's IP-level bytes.
    Encap(Box<Pkt>),
}

/// A change to the built bytes, for malformed and edge-case frames.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Keep only the first n bytes.
    Truncate(usize),
    /// Overwrite bytes at an offset from the start of the frame.
    Put(usize, Vec<u8>),
    /// Append n zero bytes (Ethernet padding after the IP packet).
    Pad(usize),
}

/// A frame: Ethernet, up to two VLAN tags, one IP header, L4 and payload.
#[derive(Clone, Debug)]
pub struct Pkt {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// VLAN ids, outermost first: one tag is 802.1Q (0x8100), two are 802.1ad (0x88A8)
    /// outside 802.1Q.
    pub vlans: Vec<u16>,
    /// The IP header.
    pub ip: Ip,
    /// The L4 header.
    pub l4: L4,
    /// Bytes after the L4 header.
    pub payload: Vec<u8>,
    /// Changes applied to the built bytes, in order.
    pub edits: Vec<Edit>,
}

/// Default client-side MACs (a router in front of the director, and the director).
pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The director's MAC on its client-facing interface.
pub const MAC_DIRECTOR: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn v4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => panic!("{a} is not an IPv4 address"),
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => panic!("{a} is not an IPv6 address"),
    }
}

/// Parses an address literal (test tables use literals; a typo is a test bug).
pub fn addr(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("bad address literal {s:?}"))
}

impl Ip {
    /// A default header between two addresses of one family: TTL 64, DF set (as Linux sends
    /// TCP), id 0x1234, no options; IPv6 hop limit 64, flow label 0.
    pub fn new(src: IpAddr, dst: IpAddr) -> Ip {
        match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let mut h = Ipv4Header::new(0, 64, IpNumber(0), v4(src), v4(dst)).unwrap();
                h.identification = 0x1234;
                Ip::V4(h)
            }
            (IpAddr::V6(_), IpAddr::V6(_)) => Ip::V6(Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: IpNumber(0),
                hop_limit: 64,
                source: v6(src),
                destination: v6(dst),
            }),
            _ => panic!("mixed families {src} -> {dst}"),
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        match self {
            Ip::V4(h) => IpAddr::from(h.source),
            Ip::V6(h) => IpAddr::from(h.source),
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            Ip::V4(h) => IpAddr::from(h.destination),
            Ip::V6(h) => IpAddr::from(h.destination),
        }
    }

    /// True for IPv6.
    pub fn is_v6(&self) -> bool {
        matches!(self, Ip::V6(_))
    }

    /// TTL or hop limit.
    pub fn ttl(&self) -> u8 {
        match self {
            Ip::V4(h) => h.time_to_live,
            Ip::V6(h) => h.hop_limit,
        }
    }

    /// IPv4 TOS byte (DSCP and ECN) or IPv6 traffic class.
    pub fn tos(&self) -> u8 {
        match self {
            Ip::V4(h) => (h.dscp.value() << 2) | h.ecn.value(),
            Ip::V6(h) => h.traffic_class,
        }
    }
}

impl Pkt {
    fn new(src: &str, dst: &str, l4: L4, payload: &[u8]) -> Pkt {
        Pkt {
            src_mac: MAC_CLIENT,
            dst_mac: MAC_DIRECTOR,
            vlans: Vec::new(),
            ip: Ip::new(addr(src), addr(dst)),
            l4,
            payload: payload.to_vec(),
            edits: Vec::new(),
        }
    }

    /// A TCP segment (ACK, seq 1000, ack 2000, window 64240) carrying "hello lb"; any TCP
    /// packet may start a flow, so the default is a mid-connection segment.
    pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> Pkt {
        let mut t = TcpHeader::new(sport, dport, 1000, 64240);
        t.ack = true;
        t.acknowledgment_number = 2000;
        t.psh = true;
        Pkt::new(src, dst, L4::Tcp(t), b"hello lb")
    }

    /// A UDP datagram carrying "hello lb".
    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Pkt {
        Pkt::new(src, dst, L4::Udp { sport, dport }, b"hello lb")
    }

    /// An ICMP message with an empty payload.
    pub fn icmp4(src: &str, dst: &str, t: Icmpv4Type) -> Pkt {
        Pkt::new(src, dst, L4::Icmp4(t), b"")
    }

    /// An ICMPv6 message with an empty payload.
    pub fn icmp6(src: &str, dst: &str, t: Icmpv6Type) -> Pkt {
        Pkt::new(src, dst, L4::Icmp6(t), b"")
    }

    /// An IP packet of any protocol with the given payload.
    pub fn raw(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Pkt {
        Pkt::new(src, dst, L4::Raw(proto), payload)
    }

    /// Ethernet source and destination.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Pkt {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds a VLAN tag (inside any already present).
    pub fn vlan(mut self, id: u16) -> Pkt {
        assert!(self.vlans.len() < 2, "the builder writes at most two tags");
        self.vlans.push(id);
        self
    }

    /// Source address (same family).
    pub fn src(mut self, a: IpAddr) -> Pkt {
        match &mut self.ip {
            Ip::V4(h) => h.source = v4(a),
            Ip::V6(h) => h.source = v6(a),
        }
        self
    }

    /// Destination address (same family).
    pub fn dst(mut self, a: IpAddr) -> Pkt {
        match &mut self.ip {
            Ip::V4(h) => h.destination = v4(a),
            Ip::V6(h) => h.destination = v6(a),
        }
        self
    }

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, ttl: u8) -> Pkt {
        match &mut self.ip {
            Ip::V4(h) => h.time_to_live = ttl,
            Ip::V6(h) => h.hop_limit = ttl,
        }
        self
    }

    /// IPv4 TOS byte or IPv6 traffic class.
    pub fn tos(mut self, tos: u8) -> Pkt {
        match &mut self.ip {
            Ip::V4(h) => {
                h.dscp = Ipv4Dscp::try_new(tos >> 2).unwrap();
                h.ecn = Ipv4Ecn::try_new(tos & 3).unwrap();
            }
            Ip::V6(h) => h.traffic_class = tos,
        }
        self
    }

    /// IPv6 flow label.
    pub fn flow_label(mut self, label: u32) -> Pkt {
        match &mut self.ip {
            Ip::V6(h) => h.flow_label = Ipv6FlowLabel::try_new(label).unwrap(),
            Ip::V4(_) => panic!("flow label on IPv4"),
        }
        self
    }

    fn v4_mut(&mut self) -> &mut Ipv4Header {
        match &mut self.ip {
            Ip::V4(h) => h,
            Ip::V6(_) => panic!("IPv4-only field on an IPv6 packet"),
        }
    }

    /// IPv4 don't-fragment bit.
    pub fn df(mut self, df: bool) -> Pkt {
        self.v4_mut().dont_fragment = df;
        self
    }

    /// IPv4 identification.
    pub fn ip_id(mut self, id: u16) -> Pkt {
        self.v4_mut().identification = id;
        self
    }

    /// IPv4 fragment: more-fragments bit and offset (in 8-byte units).
    pub fn fragment(mut self, more: bool, offset: u16) -> Pkt {
        let h = self.v4_mut();
        h.more_fragments = more;
        h.fragment_offset = IpFragOffset::try_new(offset).unwrap();
        h.dont_fragment = false;
        self
    }

    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub fn options(mut self, opts: &[u8]) -> Pkt {
        self.v4_mut().options = opts
            .try_into()
            .expect("IPv4 options: a multiple of 4, at most 40");
        self
    }

    /// Source port (TCP/UDP).
    pub fn sport(mut self, p: u16) -> Pkt {
        match &mut self.l4 {
            L4::Tcp(t) => t.source_port = p,
            L4::Udp { sport, .. } => *sport = p,
            _ => panic!("no ports on {:?}", self.l4),
        }
        self
    }

    /// Destination port (TCP/UDP).
    pub fn dport(mut self, p: u16) -> Pkt {
        match &mut self.l4 {
            L4::Tcp(t) => t.destination_port = p,
            L4::Udp { dport, .. } => *dport = p,
            _ => panic!("no ports on {:?}", self.l4),
        }
        self
    }

    /// TCP flags: SYN only (a connection's first segment).
    pub fn syn(mut self) -> Pkt {
        match &mut self.l4 {
            L4::Tcp(t) => {
                t.syn = true;
                t.ack = false;
                t.psh = false;
                t.acknowledgment_number = 0;
            }
            _ => panic!("SYN on {:?}", self.l4),
        }
        self.payload.clear();
        self
    }

    /// TCP options as raw bytes (a multiple of 4, at most 40), e.g. a SYN's MSS, SACK-OK,
    /// timestamps and window scale.
    pub fn tcp_options(mut self, opts: &[u8]) -> Pkt {
        match &mut self.l4 {
            L4::Tcp(t) => t.set_options_raw(opts).expect("TCP options"),
            _ => panic!("TCP options on {:?}", self.l4),
        }
        self
    }

    /// The payload after the L4 header.
    pub fn payload(mut self, p: &[u8]) -> Pkt {
        self.payload = p.to_vec();
        self
    }

    /// Adds an edit to the built bytes.
    pub fn edit(mut self, e: Edit) -> Pkt {
        self.edits.push(e);
        self
    }

    /// Appends Ethernet padding after the IP packet.
    pub fn pad(self, n: usize) -> Pkt {
        self.edit(Edit::Pad(n))
    }

    /// Keeps only the first n bytes of the frame.
    pub fn truncate(self, n: usize) -> Pkt {
        self.edit(Edit::Truncate(n))
    }

    /// Overwrites bytes at an offset from the IP header.
    pub fn put_l3(self, off: usize, bytes: &[u8]) -> Pkt {
        let at = self.l3_offset() + off;
        self.edit(Edit::Put(at, bytes.to_vec()))
    }

    /// Overwrites bytes at an offset from the L4 header.
    pub fn put_l4(self, off: usize, bytes: &[u8]) -> Pkt {
        let at = self.l4_offset() + off;
        self.edit(Edit::Put(at, bytes.to_vec()))
    }

    /// Sets an IPv4 UDP checksum to 0 ("no checksum", RFC 768).
    pub fn udp_checksum_zero(self) -> Pkt {
        assert!(matches!(self.l4, L4::Udp { .. }) && !self.ip.is_v6());
        self.put_l4(6, &[0, 0])
    }

    /// Offset of the IP header in the frame.
    pub fn l3_offset(&self) -> usize {
        ETH_LEN + VLAN_LEN * self.vlans.len()
    }

    /// Offset of the L4 header in the frame.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset() + self.ip_header_len()
    }

    /// Length of the IP header (with IPv4 options).
    pub fn ip_header_len(&self) -> usize {
        match &self.ip {
            Ip::V4(h) => h.header_len(),
            Ip::V6(_) => Ipv6Header::LEN,
        }
    }

    /// The IP length as the header states it (IPv4 tot_len, IPv6 40 + payload length):
    /// what the data path counts as bytes.
    pub fn ip_len(&self) -> u64 {
        (self.build().len() - self.l3_offset()) as u64
    }

    /// The IP protocol of the L4 part.
    pub fn proto(&self) -> u8 {
        match &self.l4 {
            L4::Tcp(_) => 6,
            L4::Udp { .. } => 17,
            L4::Icmp4(_) => 1,
            L4::Icmp6(_) => 58,
            L4::Raw(p) => *p,
            L4::Encap(inner) if inner.ip.is_v6() => 41,
            L4::Encap(_) => 4,
        }
    }

    /// (source port, destination port) of TCP/UDP, else (0, 0).
    pub fn ports(&self) -> (u16, u16) {
        match &self.l4 {
            L4::Tcp(t) => (t.source_port, t.destination_port),
            L4::Udp { sport, dport } => (*sport, *dport),
            _ => (0, 0),
        }
    }

    /// The frame without edits: every length and checksum computed by etherparse.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let iph = match &self.ip {
            Ip::V4(h) => IpHeaders::Ipv4(h.clone(), Ipv4Extensions::default()),
            Ip::V6(h) => IpHeaders::Ipv6(h.clone(), Ipv6Extensions::default()),
        };
        let tag = |id: u16, ether_type: EtherType| SingleVlanHeader {
            pcp: VlanPcp::ZERO,
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(id).unwrap(),
            ether_type,
        };
        let step = match self.vlans.as_slice() {
            [] => eth.ip(iph),
            [id] => eth.vlan(VlanHeader::Single(tag(*id, EtherType(0)))).ip(iph),
            [outer, inner] => eth
                .vlan(VlanHeader::Double(DoubleVlanHeader {
                    outer: tag(*outer, EtherType(0)),
                    inner: tag(*inner, EtherType(0)),
                }))
                .ip(iph),
            _ => unreachable!("at most two tags"),
        };
        let p = &self.payload;
        let res = match &self.l4 {
            L4::Tcp(t) => step.tcp_header(t.clone()).write(&mut out, p),
            L4::Udp { sport, dport } => step.udp(*sport, *dport).write(&mut out, p),
            L4::Icmp4(t) => step.icmpv4(t.clone()).write(&mut out, p),
            L4::Icmp6(t) => step.icmpv6(*t).write(&mut out, p),
            L4::Raw(proto) => step.write(&mut out, IpNumber(*proto), p),
            L4::Encap(inner) => {
                let mut body = inner.ip_bytes();
                body.extend_from_slice(p);
                step.write(&mut out, IpNumber(self.proto()), &body)
            }
        };
        res.unwrap_or_else(|e| panic!("building {self:?}: {e}"));
        out
    }

    /// The frame's bytes, edits applied.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.build();
        for e in &self.edits {
            match e {
                Edit::Truncate(n) => b.truncate(*n),
                Edit::Put(at, v) => {
                    if b.len() < at + v.len() {
                        b.resize(at + v.len(), 0);
                    }
                    b[*at..at + v.len()].copy_from_slice(v);
                }
                Edit::Pad(n) => b.resize(b.len() + n, 0),
            }
        }
        b
    }

    /// The IP packet (no L2 header), edits applied: what a tunnel carries.
    pub fn ip_bytes(&self) -> Vec<u8> {
        self.bytes()[self.l3_offset()..].to_vec()
    }

    /// What an ICMP error quotes of this packet: its IP header and the first 8 bytes after
    /// it (RFC 792; RFC 4443 allows more, routers that follow RFC 792 send this much).
    pub fn quote(&self) -> Vec<u8> {
        self.quote_len(self.ip_header_len() + 8)
    }

    /// The first `n` bytes of the IP packet (Linux quotes up to 576 bytes for ICMP, up to
    /// the IPv6 minimum MTU for ICMPv6).
    pub fn quote_len(&self, n: usize) -> Vec<u8> {
        let ip = self.ip_bytes();
        ip[..n.min(ip.len())].to_vec()
    }
}

/// An ICMP "fragmentation needed" (type 3 code 4) error about `quoted`.
pub fn frag_needed(src: &str, dst: &str, mtu: u16, quoted: &[u8]) -> Pkt {
    use etherparse::icmpv4::DestUnreachableHeader;
    Pkt::icmp4(
        src,
        dst,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: mtu,
        }),
    )
    .payload(quoted)
}

/// An ICMPv6 "packet too big" (type 2) error about `quoted`.
pub fn packet_too_big(src: &str, dst: &str, mtu: u32, quoted: &[u8]) -> Pkt {
    Pkt::icmp6(src, dst, Icmpv6Type::PacketTooBig { mtu }).payload(quoted)
}

/// An ARP request frame (who-has), 42 bytes.
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[0xff; 6]);
    b.extend_from_slice(&MAC_CLIENT);
    b.extend_from_slice(&0x0806u16.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    b.extend_from_slice(&MAC_CLIENT);
    b.extend_from_slice(&sender);
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(&target);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_offsets() {
        let p = Pkt::tcp("198.18.0.10", "198.18.1.1", 40000, 80);
        assert_eq!(p.bytes().len(), 14 + 20 + 20 + 8);
        assert_eq!(p.ip_len(), 48);
        let p = p.vlan(7).vlan(8).options(&[1, 1, 1, 0]);
        let b = p.bytes();
        assert_eq!(&b[12..14], &[0x88, 0xa8]);
        assert_eq!(&b[16..18], &[0x81, 0x00]);
        assert_eq!(&b[20..22], &[0x08, 0x00]);
        assert_eq!(p.l4_offset(), 22 + 24);
        let q = Pkt::udp("2001:db8::1", "2001:db8::2", 1, 2).quote();
        assert_eq!(q.len(), 48);
    }
}
