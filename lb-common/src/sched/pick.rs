//! The scheduler math that decides a real, defined once: the XDP program calls these to
//! pick a bucket or slot, and userspace can call the same functions to answer "which real
//! would this flow get" with the kernel's own arithmetic (docs/design.md §1). Pure
//! functions of the flow key and numbers: no maps, no I/O. The tests' IPVS reference
//! models (tests/src/model) keep their own derivation on purpose, so that they check this
//! code rather than repeat it. Which real a bucket holds is the table's business (`sched::sh_table`,
//! `sched::dh_table`, `maglev`: built by lb-ctl).
//!
//! - sh (ip_vs_sh.c): bucket `hash_32(ntohs(port) + ntohl(fold(saddr)), 8)`; sh-fallback
//!   walks `(offset + 2·ihash) % 256` for offset 0..256.
//! - dh (ip_vs_dh.c): bucket `hash_32(ntohl(fold(daddr)), 8)`.
//! - mh: our Maglev hash (`src_hash`, or `flow_hash` with `-b mh-port`) modulo the table;
//!   mh-fallback rehashes the first slot with [`mh_rehash`].
//! - lc, wlc, twos, lblc, lblcr weigh a real's load by [`conn_overhead`].

use super::TAB_SIZE;
use crate::{
    FlowKey, RawAddr,
    consts::proto,
    hash::{FLOW_SEED, flow_hash, src_hash},
};

/// log2 of [`TAB_SIZE`]: the bits `hash_32` keeps for an sh/dh bucket (`IP_VS_SH_TAB_BITS`,
/// `IP_VS_DH_TAB_BITS`).
pub const TAB_BITS: u32 = 8;
const _: () = assert!(1 << TAB_BITS == TAB_SIZE);

/// The kernel's `GOLDEN_RATIO_32` (include/linux/hash.h), `hash_32`'s multiplier.
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's `hash_32(val, bits)` (GOLDEN_RATIO_32 multiply, top `bits` bits).
/// `bits` is 1..=32.
#[inline(always)]
pub const fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// IPVS's address fold: the IPv4 address, or the XOR of the four IPv6 words; host order.
/// (IPv4 keys carry zeros in words 1–3, so one expression serves both.)
#[inline(always)]
pub fn addr_fold(a: &RawAddr) -> u32 {
    u32::from_be(a[0] ^ a[1] ^ a[2] ^ a[3])
}

/// sh's bucket, `ip_vs_sh_hashkey(af, saddr, port, 0)`: `port` is the client port with
/// `-b sh-port` (TCP/UDP only), else 0.
#[inline(always)]
pub fn sh_bucket(key: &FlowKey, with_port: bool) -> u32 {
    let port = if with_port && (key.proto == proto::TCP || key.proto == proto::UDP) {
        u16::from_be(key.sport.0) as u32
    } else {
        0
    };
    hash_32(port.wrapping_add(addr_fold(&key.src)), TAB_BITS)
}

/// Bucket `offset` (0..TAB_SIZE) of sh-fallback's walk from bucket `ihash` (< TAB_SIZE),
/// `ip_vs_sh_get_fallback`: roffset = (offset + ihash) % 256, then the bucket
/// `(roffset + ihash) % 256`, i.e. `(offset + 2·ihash) % 256`.
#[inline(always)]
pub fn sh_fallback_bucket(ihash: u32, offset: u32) -> u32 {
    (offset + 2 * ihash) % TAB_SIZE
}

/// dh's bucket, `ip_vs_dh_hashkey(af, daddr)` (kernels before `hash_32` used
/// `(… · 2654435761) & 255`).
#[inline(always)]
pub fn dh_bucket(key: &FlowKey) -> u32 {
    hash_32(addr_fold(&key.dst), TAB_BITS)
}

/// mh's hash of a flow: the client address, or with `-b mh-port` the whole flow. IPVS mh
/// hashes with hsiphash, a different function over the same fields: the table semantics
/// (Maglev, minimal disruption) hold, but a given client may land elsewhere.
#[inline(always)]
pub fn mh_hash(key: &FlowKey, ports: bool) -> u32 {
    if ports {
        flow_hash(key, FLOW_SEED)
    } else {
        src_hash(key, FLOW_SEED)
    }
}

/// mh's slot of a flow in a table of `table_len` slots; `None` for an empty table.
#[inline(always)]
pub fn mh_slot(key: &FlowKey, ports: bool, table_len: u32) -> Option<u32> {
    mh_hash(key, ports).checked_rem(table_len)
}

/// The `i`-th try's hash for mh-fallback (1..=`MH_FALLBACK_TRIES`), from the first slot:
/// the slot mixed with `i` times the 32-bit golden ratio, through MurmurHash3's `fmix32`
/// finaliser, so successive tries land far apart. The caller takes it modulo the table.
#[inline(always)]
pub fn mh_rehash(first: u32, i: u32) -> u32 {
    let mut h = first ^ i.wrapping_mul(FALLBACK_STEP);
    h = (h ^ (h >> 16)).wrapping_mul(FMIX32_C1);
    h = (h ^ (h >> 13)).wrapping_mul(FMIX32_C2);
    h ^ (h >> 16)
}

/// 2^32 / φ: spreads the try numbers over the word (as `hash_32`'s multiplier, other sign).
const FALLBACK_STEP: u32 = 0x9e37_79b9;
/// MurmurHash3 `fmix32`'s first multiplier.
const FMIX32_C1: u32 = 0x85eb_ca6b;
/// MurmurHash3 `fmix32`'s second multiplier.
const FMIX32_C2: u32 = 0xc2b2_ae35;

/// IPVS `ip_vs_dest_conn_overhead`: a real's load as the least-connection family weighs
/// it, active connections counting 256 inactive ones.
#[inline(always)]
pub const fn conn_overhead(active: u64, inactive: u64) -> u64 {
    (active << 8) + inactive
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Be16, addr::family};

    fn v4(src: [u8; 4], sport: u16, dst: [u8; 4], proto: u8) -> FlowKey {
        FlowKey {
            src: [u32::from_ne_bytes(src), 0, 0, 0],
            dst: [u32::from_ne_bytes(dst), 0, 0, 0],
            sport: Be16(sport.to_be()),
            dport: Be16(80u16.to_be()),
            proto,
            family: family::V4,
            _pad: [0; 2],
        }
    }

    // Expected values below were computed from the kernel's formulas (include/linux/hash.h
    // `hash_32`, ip_vs_sh.c / ip_vs_dh.c hashkeys, MurmurHash3 `fmix32`) in Python, apart
    // from this code: hash_32(v, 8) = (v · 0x61C88647 mod 2^32) >> 24.
    #[test]
    fn hash_32_is_the_kernels() {
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(2, 8), 0xC3);
        assert_eq!(hash_32(0x0A00_0001, 8), 0x27);
        assert_eq!(hash_32(0, 8), 0);
        // bits 32 keeps the whole product.
        assert_eq!(hash_32(1, 32), 0x61C8_8647);
    }

    #[test]
    fn addr_fold_is_host_order_xor() {
        let k = v4([10, 0, 0, 1], 0, [0; 4], proto::TCP);
        assert_eq!(addr_fold(&k.src), 0x0A00_0001);
        // IPv6 2001:db8::1 → 0x20010db8 ^ 0 ^ 0 ^ 1.
        let a = [
            u32::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8]),
            0,
            0,
            u32::from_ne_bytes([0, 0, 0, 1]),
        ];
        assert_eq!(addr_fold(&a), 0x2001_0db9);
    }

    #[test]
    fn sh_bucket_follows_ip_vs_sh_hashkey() {
        let k = v4([10, 0, 0, 1], 1, [192, 0, 2, 1], proto::TCP);
        // Without the port: hash_32(0x0A000001, 8).
        assert_eq!(sh_bucket(&k, false), 0x27);
        // With port 1: hash_32(1 + 0x0A000001, 8).
        assert_eq!(sh_bucket(&k, true), 0x89);
        // Not TCP/UDP: the port is not hashed.
        let icmp = v4([10, 0, 0, 1], 1, [192, 0, 2, 1], proto::ICMP);
        assert_eq!(sh_bucket(&icmp, true), 0x27);
    }

    #[test]
    fn dh_bucket_hashes_the_destination() {
        // 0.0.0.2 → hash_32(2, 8).
        let k = v4([10, 0, 0, 1], 1, [0, 0, 0, 2], proto::UDP);
        assert_eq!(dh_bucket(&k), 0xC3);
    }

    #[test]
    fn sh_fallback_walks_twice_the_bucket() {
        assert_eq!(sh_fallback_bucket(0, 0), 0);
        assert_eq!(sh_fallback_bucket(5, 3), 13);
        // (255 + 2 · 200) % 256 = 655 % 256 = 143.
        assert_eq!(sh_fallback_bucket(200, 255), 143);
    }

    #[test]
    fn mh_rehash_is_fmix32_of_the_mixed_slot() {
        // Every step of fmix32 keeps 0.
        assert_eq!(mh_rehash(0, 0), 0);
        // fmix32(0 ^ 1 · 0x9e3779b9).
        assert_eq!(mh_rehash(0, 1), 0x92ca_2f0e);
        // fmix32(7).
        assert_eq!(mh_rehash(7, 0), 0x18c9_aec4);
        // fmix32(5 ^ 3 · 0x9e3779b9 mod 2^32).
        assert_eq!(mh_rehash(5, 3), 0x41b9_d641);
    }

    #[test]
    fn mh_slot_is_none_for_an_empty_table() {
        let k = v4([10, 0, 0, 1], 1, [192, 0, 2, 1], proto::TCP);
        assert_eq!(mh_slot(&k, false, 0), None);
        assert_eq!(mh_slot(&k, false, 1), Some(0));
        assert!(mh_slot(&k, true, 65_537).unwrap() < 65_537);
    }

    #[test]
    fn overhead_counts_an_active_connection_as_256() {
        assert_eq!(conn_overhead(0, 0), 0);
        assert_eq!(conn_overhead(1, 0), 256);
        assert_eq!(conn_overhead(2, 3), 515);
    }
}
