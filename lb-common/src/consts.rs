//! Capacities, map names and wire constants. Map names are the names the XDP programs give
//! their maps and the file names under the pin directory; lb-ctl opens maps by these.

/// Default pin directory on bpffs: program, links and maps of one director.
pub const PIN_DIR: &str = "/sys/fs/bpf/lb";

/// service key → [`crate::Service`]. Written by lb-ctl.
pub const MAP_SERVICES: &str = "SERVICES";
/// real id → [`crate::Real`] (array). Written by lb-ctl.
pub const MAP_REALS: &str = "REALS";
/// real id → [`crate::TrashRecord`] of a deleted real (array, mmapable, MAX_REALS). Written
/// and read by lb-ctl only.
pub const MAP_REAL_TRASH: &str = "REAL_TRASH";
/// `crate::tables::Table` index → u64 entries the sweeper counted at its last pass
/// (array; lb-ctl only).
pub const MAP_TABLE_FILL: &str = "TABLE_FILL";
/// IPv4 flows: [`crate::FlowKey4`] → [`crate::FlowValue`], LRU. Written by the data path.
pub const MAP_FLOWS4: &str = "FLOWS4";
/// IPv6 flows: [`crate::FlowKey`] → [`crate::FlowValue`], LRU. Written by the data path.
pub const MAP_FLOWS6: &str = "FLOWS6";
/// IPv4 NAT reply key (real → client, [`crate::FlowKey4`]) → [`crate::NatReverse`], LRU.
/// Written by the data path.
pub const MAP_NAT_REV4: &str = "NAT_REV4";
/// IPv6 NAT reply key (real → client, [`crate::FlowKey`]) → [`crate::NatReverse`], LRU.
/// Written by the data path.
pub const MAP_NAT_REV6: &str = "NAT_REV6";
/// (CPU, slot) → [`crate::flow_cache::CachedFlow`] (array, `1 << FLOW_CACHE_BITS` slots per
/// possible CPU). Written by the data path only.
pub const MAP_FLOW_CACHE: &str = "FLOW_CACHE";
/// lb_xdp's global (.rodata) with the flow cache's slot bits per CPU, set at load.
pub const GLOBAL_FLOW_CACHE_BITS: &str = "FLOW_CACHE_BITS";
/// CPUs the FLOW_CACHE map is built for in the object (8 MiB); every loader sizes it for
/// the machine's possible CPUs (`flow_cache::cache_entries`), and a CPU past its end goes
/// without the cache.
pub const DEFAULT_CACHE_CPUS: u32 = 2;
/// Scheduler tables of all services (array of real ids). Written by lb-ctl.
pub const MAP_SCHED_TABLE: &str = "SCHED_TABLE";
/// service id → per-CPU [`crate::Traffic`].
pub const MAP_SVC_STATS: &str = "SVC_STATS";
/// real id → per-CPU [`crate::Traffic`].
pub const MAP_REAL_STATS: &str = "REAL_STATS";
/// service id → [`crate::rate::RateState`]: the rate estimator of `-L --rate` (array,
/// MAX_SERVICES). Written by lb-ctl's resident process every [`RATE_TICK_S`]; the data
/// path never touches it.
pub const MAP_SVC_RATE: &str = "SVC_RATE";
/// real id → [`crate::rate::RateState`] (array, MAX_REALS). As [`MAP_SVC_RATE`].
pub const MAP_REAL_RATE: &str = "REAL_RATE";
/// Seconds between two ticks of the rate estimator: IPVS's estimator period
/// (ip_vs_est.c, `2*HZ`), which its arithmetic assumes (rates are per 2 s, then scaled).
pub const RATE_TICK_S: u64 = 2;
/// [`crate::Counter`] → per-CPU packet count.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// ifindex → ifindex devmap for XDP_REDIRECT. Written by lb-ctl.
pub const MAP_TX_PORTS: &str = "TX_PORTS";
/// Bit filter of VIP addresses (array of u64 words). Written by lb-ctl.
pub const MAP_VIP_FILTER: &str = "VIP_FILTER";
/// Bit filter of NAT real-server addresses (array of u64 words). Written by lb-ctl.
pub const MAP_NAT_FILTER: &str = "NAT_FILTER";
/// Decap program counters: [`crate::counters::DecapCounter`] → per-CPU packet count.
pub const MAP_DECAP_STATS: &str = "DECAP_STATS";

/// Name of the balancer program in the object file.
pub const PROG_LB: &str = "lb_xdp";
/// Name of the decap program in the object file.
pub const PROG_DECAP: &str = "lb_decap";
/// Name of the operations program (`crate::ops`), beside `lb_xdp` in the balancer's object
/// and pinned next to it.
pub const PROG_OPS: &str = "lb_ops";

/// Capacity of the service hash (keys are VIP, port, protocol).
pub const MAX_SERVICES: u32 = 16_384;
/// Capacity of the real-server array; ids are 0..MAX_REALS.
pub const MAX_REALS: u32 = 65_536;
/// Default flow-table capacity (LRU entries) of each family's FLOWS and NAT_REV; lb-ctl can
/// size them at load time.
pub const DEFAULT_MAX_FLOWS: u32 = 1 << 20;
/// Slots of u32 real ids shared by all scheduler tables (16 MiB).
pub const SCHED_TABLE_SLOTS: u32 = 1 << 22;
/// Default Maglev table size: a prime, as Maglev requires; 65537 as Katran and IPVS mh-style
/// tables use for fine weight resolution.
pub const DEFAULT_MAGLEV_SIZE: u32 = 65_537;
/// Largest table a service may have.
pub const MAX_TABLE_LEN: u32 = 1 << 20;
/// Entry of a scheduler table with no usable real.
pub const NO_REAL: u32 = u32::MAX;
/// Capacity of the redirect devmap (interfaces).
pub const MAX_TX_PORTS: u32 = 64;

/// 64-bit words in each address bit filter (2^18 bits, 32 KiB).
pub const FILTER_WORDS: u32 = 1 << 12;

/// Hop limit / TTL written into outer headers (IPIP, IP6IP6), as Linux tunnels default.
pub const ENCAP_TTL: u8 = 64;

/// EtherTypes, host order (compare after `u16::from_be`).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88A8;
    /// ARP.
    pub const ARP: u16 = 0x0806;
}

/// IP protocol numbers.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4-in-IP encapsulation (RFC 2003).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6-in-IP encapsulation (RFC 2473).
    pub const IPV6: u8 = 41;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// [`crate::VipKey`] → number of services on that address (hash). Written by lb-ctl.
pub const MAP_VIPS: &str = "VIPS";

/// Persistence templates: [`crate::PersistKey`] → [`crate::PersistValue`], LRU. Written
/// by the data path; expired by lb-ctl's sweep.
pub const MAP_PERSIST: &str = "PERSIST";
/// real id → [`crate::conn::ConnEvents`] (shared array; data path atomic adds).
pub const MAP_REAL_CONNS: &str = "REAL_CONNS";
/// real id → [`crate::conn::ConnExpiry`] (array; written by lb-ctl's sweep only).
pub const MAP_REAL_EXPIRED: &str = "REAL_EXPIRED";
/// One [`crate::clock::Clock`]: how the data path turns jiffies into seconds (written by
/// `lb-ctl load`), or a time fixed by a test.
pub const MAP_CLOCK: &str = "CLOCK";
/// service id → u64 rr/wrr state (IPVS's last pick's list position, wrr's current weight
/// or rr's last pick's real id, and the `Service::list_gen()` they belong to; layout in
/// lb-ebpf `sched/walk.rs`). Array, written by the data path; lb-ctl only zeroes an entry
/// (`-A`, and `-E` changing the scheduler). No table is involved.
pub const MAP_SCHED_CURSOR: &str = "SCHED_CURSOR";

/// Seconds a NAT reply entry that no flow owns (a `-o` datagram's) lives after the sweep
/// first finds it so: the window for its replies. IPVS keeps no state at all for a
/// one-packet connection (and so translates no reply without conntrack); lb translates
/// replies that come within this window.
pub const FLOWLESS_REPLY_S: u32 = 10;

/// Capacity of the persistence template table.
pub const MAX_PERSIST: u32 = 1 << 18;
/// Most reals a load-driven scheduler scans per new flow (bounded loop in the kernel).
pub const MAX_REALS_PER_SERVICE: u32 = 256;
/// Default persistence timeout, seconds (ipvsadm -p without a value): libipvs.h's
/// `IPVS_SVC_PERSISTENT_TIMEOUT (6*60)`, which ipvsadm's `parse_timeout(NULL)` returns
/// (its manual page says 300; the code, and so every listing, says 360).
pub const DEFAULT_PERSIST_TIMEOUT_S: u32 = 6 * 60;
/// One [`crate::conn::Settings`] (array of 1): timeouts and sysctl-like settings. Written
/// by lb-ctl; read by the data path only on rare paths (a flow whose real is gone).
pub const MAP_SETTINGS: &str = "SETTINGS";
/// Locality entries of lblc / lblcr: service id → [`crate::flow::LocalityValue`] (array,
/// MAX_SERVICES). Written by the data path; lb-ctl's sweep may clear entries unused for
/// 24 h (IPVS lblc_expiration) and must clear a service id's entry when it reuses the id.
pub const MAP_LBLC: &str = "LBLC";

/// Header lengths the data path parses and writes, in bytes.
pub mod hdr {
    /// Ethernet header without tags.
    pub const ETH_LEN: usize = 14;
    /// One 802.1Q / 802.1ad tag.
    pub const VLAN_LEN: usize = 4;
    /// Largest L2 header the data path accepts: Ethernet + two tags.
    pub const L2_MAX: usize = ETH_LEN + 2 * VLAN_LEN;
    /// IPv4 header without options.
    pub const IPV4_LEN: usize = 20;
    /// IPv6 fixed header.
    pub const IPV6_LEN: usize = 40;
    /// Minimum TCP header.
    pub const TCP_LEN: usize = 20;
    /// UDP header.
    pub const UDP_LEN: usize = 8;
    /// ICMP / ICMPv6 header: type, code, checksum, 4 bytes (unused / MTU).
    pub const ICMP_LEN: usize = 8;
    /// L4 bytes an ICMP error quotes at least (RFC 792): the ports are in them.
    pub const QUOTE_L4_LEN: usize = 8;
}

/// Bits of the IPv4 flags / fragment offset word (bytes 6–7 of the header), host order.
pub mod ipv4_frag {
    /// Don't fragment.
    pub const DF: u16 = 0x4000;
    /// More fragments.
    pub const MF: u16 = 0x2000;
    /// The fragment offset, in 8-byte units.
    pub const OFFSET: u16 = 0x1fff;
}

/// The ICMPv4 and ICMPv6 messages the data path balances (errors about a flow, for
/// path-MTU discovery; docs/datapath.md "ICMP errors").
pub mod icmp {
    /// ICMPv4 type 3, destination unreachable (RFC 792).
    pub const V4_DEST_UNREACH: u8 = 3;
    /// ICMPv4 code 4 of type 3: fragmentation needed and DF set (RFC 1191).
    pub const V4_FRAG_NEEDED: u8 = 4;
    /// ICMPv6 type 2, packet too big (RFC 4443; any code).
    pub const V6_PACKET_TOO_BIG: u8 = 2;
    /// ICMPv4 type 4, source quench (RFC 792): one of the errors a NAT real's are translated
    /// for (IPVS `ip_vs_out_icmp`), with type 3 (any code) and type 11.
    pub const V4_SOURCE_QUENCH: u8 = 4;
    /// ICMPv4 type 11, time exceeded (RFC 792).
    pub const V4_TIME_EXCEEDED: u8 = 11;
    /// ICMPv6 types below 128 are errors (RFC 4443 §2.1; 128 and up are informational):
    /// a NAT real's are translated whatever their type, as IPVS `ip_vs_out_icmp_v6`
    /// (`icmp6_type & ICMPV6_INFOMSG_MASK`).
    pub const V6_INFO_MASK: u8 = 0x80;
}

/// Rehashes of the first slot mh-fallback tries before giving up with `NoReal` (IPVS walks
/// up to the whole table; 32 finds an available real unless nearly all are unavailable).
pub const MH_FALLBACK_TRIES: u32 = 32;
/// Compare-and-swaps one packet tries on its flow's state word before giving up the move
/// (lb-ebpf `conn::on_packet`; the verifier wants the loop bounded). A swap fails only when
/// another CPU changed the word between this CPU's read and its swap, each time by a packet
/// of the same flow: 4 tries outlast any real burst; a give-up counts `state_cas_exhausted`
/// and leaves the flow as the other CPUs made it, with its counters agreeing.
pub const STATE_CAS_TRIES: u32 = 4;
/// Most list positions one wrr pick visits in the kernel (bounded `bpf_loop`; IPVS's bound
/// is the passes).
pub const WRR_MAX_STEPS: u32 = 1 << 14;

/// IPVS's `lblc_expiration` / `lblcr_expiration` default, a day, in seconds: how long an
/// lblc/lblcr locality entry may go unused before lb-ctl's sweep clears it, and how long an
/// lblcr set may stay unchanged before the data path drops its most loaded member.
pub const LOCALITY_EXPIRY_S: u32 = 24 * 3600;

// Expiry: how long idle connections, templates and locality entries live. The data path
// stamps, lb-ctl's sweep expires by these (lb_common::conn::state_timeout_s).

/// IPVS's TCP timeouts per state (`tcp_timeouts` in ip_vs_proto_tcp.c), seconds, indexed
/// by [`crate::conn::TcpState`]: NONE, ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT,
/// TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK. ESTABLISHED and FIN_WAIT are
/// replaced by the `--set` timeouts when set ([`crate::conn::Timeouts`]). One entry per
/// [`crate::conn::TCP_STATES`] (conn.rs asserts it; named here only in comments, so this
/// file imports nothing).
pub const TCP_TIMEOUTS_S: [u32; 11] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];
/// Timeout of a TCP state outside the table, seconds (IPVS's `IP_VS_TCP_S_LAST` entry).
pub const TCP_LAST_TIMEOUT_S: u32 = 2;
/// `ipvsadm --set` default for TCP ESTABLISHED, seconds (IPVS's 15 minutes).
pub const DEFAULT_TCP_TIMEOUT_S: u32 = 900;
/// `ipvsadm --set` default for TCP FIN_WAIT, seconds.
pub const DEFAULT_TCPFIN_TIMEOUT_S: u32 = 120;
/// `ipvsadm --set` default for UDP, seconds (IPVS's `udp_timeouts[NORMAL]`, 5 minutes).
pub const DEFAULT_UDP_TIMEOUT_S: u32 = 300;
/// Longest persistence timeout lb-ctl accepts (`-p`), seconds: 31 days. ipvsadm takes any
/// u32, but the kernel stores seconds × HZ in an int, so keep well inside that.
pub const MAX_PERSIST_TIMEOUT_S: u32 = 31 * 24 * 3600;
