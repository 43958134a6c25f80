//! The per-CPU flow cache: a direct-mapped, exact-match cache of established flows in
//! front of FLOWS4 / FLOWS6 (Open vSwitch's EMC, for the same reason). A flow table lookup
//! is a call into the kernel's LRU hash (jhash over the key, a bucket walk, a key compare,
//! three or four cache lines); a cache probe is a multiply-shift slot, one array line read
//! by the JIT without a call, and a compare. The cache holds only what a plain packet of
//! an ESTABLISHED (or UDP) flow needs, and only for the second it was filled in: the first
//! packet of every second takes the flow table path, which stamps the flow for the sweep,
//! refreshes its LRU age and refills the slot. Anything that can change the flow's state
//! (SYN, FIN, RST, an ICMP error) never uses the cache (docs/datapath.md step 7).

use bytemuck::{Pod, Zeroable};

use crate::flow::FlowKey;

/// Slot bits per CPU in the object (65,536 slots, 4 MiB per CPU): what a loader gets that
/// does not set `FLOW_CACHE_BITS` (the tests, the bench). 65,536 slots hold tens of
/// thousands of active flows per CPU at a low collision rate (the bench's 10^4-flow row:
/// 282 ns over empty with 4,096 slots, 116 with 65,536).
pub const DEFAULT_CACHE_BITS: u32 = 16;
/// The fewest slot bits per CPU lb-ctl picks (4,096 slots, 256 KiB).
pub const MIN_CACHE_BITS: u32 = 12;
/// The most slot bits per CPU lb-ctl picks.
pub const MAX_CACHE_BITS: u32 = 16;

/// Slot bits per CPU for a director of `cpus` CPUs whose flow tables hold `max_flows` per
/// family: room for twice each CPU's share of the flows (RSS spreads them), within
/// [`MIN_CACHE_BITS`]..=[`MAX_CACHE_BITS`], so the cache's memory follows the flow tables'
/// (1M flows: 4 MiB per CPU up to 32 CPUs, 128 MiB in all beyond) rather than the CPU count.
pub fn cache_bits(max_flows: u32, cpus: u32) -> u32 {
    let share = (max_flows / cpus.max(1)).saturating_mul(2).max(1);
    share
        .checked_next_power_of_two()
        .map_or(32, u32::trailing_zeros)
        .clamp(MIN_CACHE_BITS, MAX_CACHE_BITS)
}

/// FLOW_CACHE's entries for `cpus` possible CPUs of `1 << bits` slots each: one part per
/// CPU id (ids run 0..cpus), indexed by `bpf_get_smp_processor_id()`. A CPU past the map's
/// end just goes without.
pub const fn cache_entries(cpus: u32, bits: u32) -> u32 {
    cpus << bits
}

/// One cached flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CachedFlow {
    /// The flow (all zero: an empty slot, which no packet's key equals: the family is 0).
    pub key: FlowKey,
    /// Its real, id and generation (`crate::real::ref_id`): a stale one misses.
    pub real_id: u32,
    /// Its service.
    pub svc_id: u32,
    /// The CLOCK second the slot was filled in: the slot is used only in that second.
    pub stamp_s: u32,
    /// Packets served from the slot since it was filled: at [`HIT_BUDGET`] the next one goes
    /// through FLOWS (and refills it), so a flow is looked up at least that often even
    /// when CLOCK stands still.
    pub hits: u32,
    /// The TCP sequence number of the packet that filled the slot (0 for UDP): a packet is
    /// served only if its own is near it ([`seq_near`]), so a new connection that reuses
    /// an evicted flow's ports (another initial sequence number) does not take the old
    /// connection's slot, without the SYN having to touch the slot.
    pub seq: u32,
    /// The flow's recorded forwarding method (`FlowValue::fwd`).
    pub fwd: u8,
    /// Padding to a cache line, zero: FLOW_CACHE is mmapable, so its values start on a page
    /// and a 64-byte slot is one line.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<CachedFlow>() == 64);
const _: () = assert!(core::mem::offset_of!(CachedFlow, fwd) == 60);

impl CachedFlow {
    /// Holds `key` → (real, service, forwarding method) from second `now` on, with a fresh
    /// [`HIT_BUDGET`]. Not atomic: each CPU writes only its own part, and XDP does not
    /// re-enter on a CPU (as for every per-CPU map). Word by word, in place: a whole-struct
    /// assignment in BPF code went through two stack copies of the key first.
    #[inline(always)]
    #[expect(
        clippy::manual_memcpy,
        reason = "word stores are what was measured; a slice copy is a memcpy for LLVM to lower"
    )]
    pub fn fill(&mut self, key: &FlowKey, real_id: u32, svc_id: u32, fwd: u8, now: u32, seq: u32) {
        let to: &mut [u32; 10] = bytemuck::cast_mut(&mut self.key);
        let from: &[u32; 10] = bytemuck::cast_ref(key);
        for i in 0..10 {
            to[i] = from[i];
        }
        self.real_id = real_id;
        self.svc_id = svc_id;
        self.stamp_s = now;
        self.hits = 0;
        self.seq = seq;
        self.fwd = fwd;
    }
}

/// Packets a slot serves before its flow is looked up in FLOWS again: bounds, in packets,
/// how long a change made elsewhere (another CPU's FIN, an LRU eviction) goes unseen and
/// how rarely the LRU sees a busy flow referenced, at ~0.5 ns a packet.
pub const HIT_BUDGET: u32 = 256;

/// How far (either way, in sequence space) a served packet's TCP sequence number may be
/// from the one that filled its slot: 4 MiB, far more than one flow sends within a slot's
/// HIT_BUDGET packets (256 jumbo frames: 2.3 MB), and a 1-in-512 chance for a random
/// initial sequence number.
pub const SEQ_WINDOW: u32 = 1 << 22;

/// Whether `seq` is within [`SEQ_WINDOW`] of `filled`, modulo 2^32 (UDP: both 0).
#[inline(always)]
pub fn seq_near(filled: u32, seq: u32) -> bool {
    seq.wrapping_sub(filled).wrapping_add(SEQ_WINDOW) < 2 * SEQ_WINDOW
}

/// 2^32 / φ.
const GOLDEN: u32 = 0x9e37_79b1;
/// A second odd multiplier (Murmur3's finaliser), so the ports do not cancel the addresses.
const MIX: u32 = 0x85eb_ca6b;

/// The slot of a flow in its CPU's part of the cache, of `1 << bits` slots (`bits` in
/// 1..=31). Weak mixing only costs collisions (two active flows taking turns in one slot);
/// the compare keeps it exact. IPv4: the other address words are zero and fold away.
#[inline(always)]
pub fn cache_slot(k: &FlowKey, bits: u32) -> u32 {
    let s = k.src[0] ^ k.src[1] ^ k.src[2] ^ k.src[3];
    let d = k.dst[0] ^ k.dst[1] ^ k.dst[2] ^ k.dst[3];
    let ports = (k.sport.0 as u32) | ((k.dport.0 as u32) << 16);
    let h = (s ^ d.rotate_left(16)).wrapping_mul(GOLDEN) ^ ports ^ k.proto as u32;
    h.wrapping_mul(MIX) >> (32 - bits)
}

/// Whether two keys are the same flow, compared as words with no branch per word (a
/// derived `==` may become a `memcmp` call in BPF code).
#[inline(always)]
pub fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b): (&[u32; 10], &[u32; 10]) = (bytemuck::cast_ref(a), bytemuck::cast_ref(b));
    let mut diff = 0;
    for i in 0..10 {
        diff |= a[i] ^ b[i];
    }
    diff == 0
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;
    use crate::addr::{Be16, family};

    fn key(src: u32, sport: u16) -> FlowKey {
        FlowKey {
            src: [src, 0, 0, 0],
            dst: [0x0101_12c6, 0, 0, 0],
            sport: Be16::from_host(sport),
            dport: Be16::from_host(80),
            proto: 6,
            family: family::V4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn slots_are_in_range_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096u16 {
            let s = cache_slot(&key(0x0a00_12c6, 10_000 + i), 12);
            assert!(s < 1 << 12);
            seen.insert(s);
        }
        // 4096 ports of one client into 4096 slots: a random map fills ~63%.
        assert!(seen.len() > 2400, "{}", seen.len());
        let clients: std::collections::HashSet<u32> = (0..4096u32)
            .map(|i| cache_slot(&key(0xc612_0000 | i, 40000), 12))
            .collect();
        assert!(clients.len() > 2400, "{}", clients.len());
    }

    #[test]
    fn bits_follow_the_flow_tables_share() {
        assert_eq!(cache_bits(1 << 20, 2), MAX_CACHE_BITS);
        assert_eq!(cache_bits(1 << 20, 32), 16);
        assert_eq!(cache_bits(1 << 20, 64), 15);
        assert_eq!(cache_bits(1 << 20, 128), 14);
        assert_eq!(cache_bits(1000, 4), MIN_CACHE_BITS);
        assert_eq!(cache_bits(u32::MAX, 1), MAX_CACHE_BITS);
        assert_eq!(cache_bits(0, 0), MIN_CACHE_BITS);
        assert_eq!(cache_entries(2, 16), 131_072);
    }

    #[test]
    fn seq_near_wraps_both_ways() {
        assert!(seq_near(1000, 1000));
        assert!(seq_near(1000, 1000 + SEQ_WINDOW - 1));
        assert!(!seq_near(1000, 1000 + SEQ_WINDOW));
        assert!(seq_near(1000, 1000u32.wrapping_sub(SEQ_WINDOW)));
        assert!(!seq_near(1000, 1000u32.wrapping_sub(SEQ_WINDOW + 1)));
        assert!(seq_near(u32::MAX - 5, 10));
        assert!(seq_near(10, u32::MAX - 5));
        assert!(!seq_near(1000, 0x9000_0000));
        assert!(seq_near(0, 0));
    }

    #[test]
    fn same_flow_is_whole_key_equality() {
        let a = key(1, 2);
        assert!(same_flow(&a, &a));
        assert!(!same_flow(&a, &key(1, 3)));
        assert!(!same_flow(&a, &FlowKey::default()));
        let mut b = a;
        b._pad[1] = 1;
        assert!(!same_flow(&a, &b));
        b = a;
        b.dst[3] = 1;
        assert!(!same_flow(&a, &b));
    }
}
