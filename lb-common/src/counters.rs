//! Counters: per-CPU, summed by lb-ctl. One named slot per event, never anonymous `v1/v2`
//! pairs; every drop and every pass has its reason.

use bytemuck::{Pod, Zeroable};

/// Traffic of one service or one real server, as ipvsadm --stats shows it. "In" is client to
/// real (through the director); "out" is real to client, which only NAT sees.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Traffic {
    /// New connections scheduled.
    pub conns: u64,
    /// Packets client → real.
    pub in_packets: u64,
    /// Bytes client → real (L3 length, as IPVS counts skb->len).
    pub in_bytes: u64,
    /// Packets real → client (NAT return path).
    pub out_packets: u64,
    /// Bytes real → client.
    pub out_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Traffic>() == 40);

impl Traffic {
    /// Adds another CPU's counts.
    pub fn add(&mut self, o: &Traffic) {
        self.conns += o.conns;
        self.in_packets += o.in_packets;
        self.in_bytes += o.in_bytes;
        self.out_packets += o.out_packets;
        self.out_bytes += o.out_bytes;
    }
}

/// Why a packet was dropped. Every drop bumps exactly one of these.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// A header is cut short by the end of the frame.
    Truncated = 0,
    /// A header field is impossible (IPv4 IHL < 5, version mismatch, length too small).
    BadHeader = 1,
    /// An IPv4 fragment addressed to a VIP: we balance on L4 ports, which fragments lack.
    Fragment = 2,
    /// An IPv6 packet to a VIP whose next header is an extension header we do not parse.
    Ipv6ExtHeader = 3,
    /// TTL / hop limit 0 or 1 on a packet to a VIP: it may not be forwarded another hop.
    TtlExpired = 4,
    /// The service has no real server to send a new flow to (empty or all weight 0).
    NoReal = 5,
    /// XDP_REDIRECT to the egress interface failed (not in the devmap).
    Redirect = 6,
    /// Growing or shrinking the packet (bpf_xdp_adjust_head) failed.
    AdjustHead = 7,
    /// An ICMP error about a VIP flow that quotes a truncated or unusable packet.
    IcmpQuote = 8,
    /// A packet of a flow whose real server was deleted, while `expire_nodest_conn` is 0
    /// (IPVS drops these until the connection expires).
    RealGone = 9,
    /// A packet for a real whose next hop's MAC is not known yet (`RealFlags::NO_NEIGHBOUR`):
    /// not sent; a new flow is still recorded and counted, so the connection's next
    /// packets go through once the MAC is learnt.
    NoNeighbour = 10,
}

impl Drop {
    /// All reasons, for listing.
    pub const ALL: [Drop; 11] = [
        Drop::Truncated,
        Drop::BadHeader,
        Drop::Fragment,
        Drop::Ipv6ExtHeader,
        Drop::TtlExpired,
        Drop::NoReal,
        Drop::Redirect,
        Drop::AdjustHead,
        Drop::IcmpQuote,
        Drop::RealGone,
        Drop::NoNeighbour,
    ];
    /// The counter slot of this reason.
    pub const fn counter(self) -> Counter {
        Counter(Counter::DROP_BASE + self as u32)
    }
    /// Stable name for output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Drop::Truncated => "drop_truncated",
            Drop::BadHeader => "drop_bad_header",
            Drop::Fragment => "drop_fragment",
            Drop::Ipv6ExtHeader => "drop_ipv6_ext_header",
            Drop::TtlExpired => "drop_ttl_expired",
            Drop::NoReal => "drop_no_real",
            Drop::Redirect => "drop_redirect",
            Drop::AdjustHead => "drop_adjust_head",
            Drop::IcmpQuote => "drop_icmp_quote",
            Drop::RealGone => "drop_real_gone",
            Drop::NoNeighbour => "drop_no_neighbour",
        }
    }
}

/// Why a packet was handed to the kernel stack untouched.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp = 0,
    /// Not addressed to a VIP we serve (or the port/protocol has no service).
    NotVip = 1,
    /// To a VIP but neither TCP, UDP nor an ICMP error about a flow (ping, other protocols).
    NotBalanced = 2,
    /// A TCP RST (any flags with RST) to a service, of no flow we know: not scheduled
    /// (IPVS `tcp_conn_schedule` never schedules an RST), left to the director's stack.
    RstNoFlow = 3,
}

impl Pass {
    /// All reasons, for listing.
    pub const ALL: [Pass; 4] = [
        Pass::NotIp,
        Pass::NotVip,
        Pass::NotBalanced,
        Pass::RstNoFlow,
    ];
    /// The counter slot of this reason.
    pub const fn counter(self) -> Counter {
        Counter(Counter::PASS_BASE + self as u32)
    }
    /// Stable name for output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Pass::NotIp => "pass_not_ip",
            Pass::NotVip => "pass_not_vip",
            Pass::NotBalanced => "pass_not_balanced",
            Pass::RstNoFlow => "pass_rst_no_flow",
        }
    }
}

/// A slot of [`CounterBlock`].
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter(pub u32);

impl Counter {
    /// Every packet the balancer saw.
    pub const RX: Counter = Counter(0);
    /// Sent back out the interface it came in on (XDP_TX).
    pub const TX: Counter = Counter(1);
    /// Sent out another interface (XDP_REDIRECT).
    pub const REDIRECT: Counter = Counter(2);
    /// Forwarded by direct routing (MAC rewrite).
    pub const FWD_DR: Counter = Counter(3);
    /// Forwarded in an IPIP / IP6IP6 tunnel.
    pub const FWD_TUN: Counter = Counter(4);
    /// Forwarded with destination NAT.
    pub const FWD_NAT: Counter = Counter(5);
    /// NAT reply rewritten back to VIP:port.
    pub const NAT_RETURN: Counter = Counter(6);
    /// New flow scheduled and recorded.
    pub const NEW_FLOW: Counter = Counter(7);
    /// ICMP error (fragmentation needed / packet too big) sent to the flow's real.
    pub const ICMP_TO_REAL: Counter = Counter(8);
    /// A new flow found its flow table (FLOWS4 or FLOWS6) full: not recorded, the packet
    /// still forwarded (fail open; its next packet is scheduled anew).
    pub const FLOW_INSERT_FAILED: Counter = Counter(9);
    /// A new NAT flow found NAT_REV full: its replies will not be translated back.
    pub const NAT_REV_INSERT_FAILED: Counter = Counter(10);
    /// A new persistence template found PERSIST full: the connection goes to the real
    /// scheduled, without a template (the client's next connection is scheduled anew).
    pub const PERSIST_INSERT_FAILED: Counter = Counter(11);
    /// A packet's TCP state move (or the data path's claim of a flow it expires) given up
    /// after `consts::STATE_CAS_TRIES` compare-and-swaps of its flow's state word, each
    /// lost to another CPU changing the same flow; the packet was still forwarded, the flow
    /// left as the other CPUs made it.
    pub const STATE_CAS_EXHAUSTED: Counter = Counter(12);
    /// First slot of the [`Pass`] reasons.
    pub const PASS_BASE: u32 = 16;
    /// First slot of the [`Drop`] reasons.
    pub const DROP_BASE: u32 = 32;
    /// Size of the counters array.
    pub const SLOTS: u32 = 64;

    /// Named slots that are not pass/drop reasons, for listing.
    pub const EVENTS: [(Counter, &'static str); 13] = [
        (Counter::RX, "rx"),
        (Counter::TX, "tx"),
        (Counter::REDIRECT, "redirect"),
        (Counter::FWD_DR, "fwd_dr"),
        (Counter::FWD_TUN, "fwd_tun"),
        (Counter::FWD_NAT, "fwd_nat"),
        (Counter::NAT_RETURN, "nat_return"),
        (Counter::NEW_FLOW, "new_flow"),
        (Counter::ICMP_TO_REAL, "icmp_to_real"),
        (Counter::FLOW_INSERT_FAILED, "flow_insert_failed"),
        (Counter::NAT_REV_INSERT_FAILED, "nat_rev_insert_failed"),
        (Counter::PERSIST_INSERT_FAILED, "persist_insert_failed"),
        (Counter::STATE_CAS_EXHAUSTED, "state_cas_exhausted"),
    ];
}
const _: () = assert!(Counter::DROP_BASE + Drop::ALL.len() as u32 <= Counter::SLOTS);

/// One CPU's global counters: the single entry of the per-CPU `COUNTERS` array, indexed by
/// [`Counter`]. One entry rather than one array element per slot: every packet bumps `RX`
/// and its exit counter (and a forwarded one its mode's), which is then one map lookup and
/// one cache line instead of three (each per-CPU element is its own allocation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct CounterBlock {
    /// Packets per [`Counter`] slot.
    pub slots: [u64; Counter::SLOTS as usize],
}

impl Default for CounterBlock {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl CounterBlock {
    /// Adds another CPU's counts.
    pub fn add(&mut self, o: &CounterBlock) {
        for (a, b) in self.slots.iter_mut().zip(o.slots.iter()) {
            *a += b;
        }
    }
}
const _: () = assert!(Counter::PASS_BASE + Pass::ALL.len() as u32 <= Counter::DROP_BASE);

/// Slots of the decap program's per-CPU counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapCounter {
    /// IPIP (IPv4 in IPv4) packets decapsulated.
    Ipip = 0,
    /// IP6IP6 packets decapsulated.
    Ip6ip6 = 1,
    /// Other packets passed untouched.
    Passed = 2,
    /// Tunnel packets too short to decapsulate, dropped.
    Malformed = 3,
}
/// Size of the decap counters array.
pub const DECAP_COUNTER_SLOTS: u32 = 4;
