//! Table-driven schedulers: sh (ip_vs_sh.c) and dh (ip_vs_dh.c) with their 256-bucket
//! tables built from the dest list, and mh over lb-ctl's Maglev table.
//!
//! IPVS's own mh (ip_vs_mh.c) builds its table with siphash permutations; lb uses
//! lb-common's Maglev (the Katran construction) and its flow hash instead, a deliberate
//! difference (docs/datapath.md), so the model takes the table as lb-ctl built it and
//! keeps IPVS's rules around it: an unavailable real (weight 0 or overloaded) gets no
//! new connection, and with mh-fallback another available real does.

use super::{Conn, Dest};
use lb_common::consts::NO_REAL;
use lb_common::hash::{FLOW_SEED, flow_hash, src_hash};
use std::net::IpAddr;

/// `IP_VS_SH_TAB_BITS`, `IP_VS_DH_TAB_BITS`: 256 buckets.
pub const TAB_BITS: u32 = 8;
/// Buckets of an sh or dh table.
pub const TAB_SIZE: usize = 1 << TAB_BITS;

/// include/linux/hash.h `hash_32` (generic): multiply by GOLDEN_RATIO_32, keep the top
/// `bits` bits.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// The address fold both use: IPv4 as a host-order word; IPv6 the XOR of its four words.
pub fn fold(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(v) => u32::from(v),
        IpAddr::V6(v) => {
            let o = v.octets();
            (0..4)
                .map(|i| u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
                .fold(0, |x, w| x ^ w)
        }
    }
}

/// `ip_vs_sh_hashkey`.
pub fn sh_hashkey(addr: IpAddr, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32((port as u32).wrapping_add(fold(addr)), TAB_BITS))
        & (TAB_SIZE as u32 - 1)) as usize
}

/// `ip_vs_dh_hashkey`.
pub fn dh_hashkey(addr: IpAddr) -> usize {
    hash_32(fold(addr), TAB_BITS) as usize
}

/// `ip_vs_sh_reassign`: walk the dest list, each dest filling as many consecutive
/// buckets as its weight (at least one, so a weight-0 dest keeps a bucket and is then
/// unavailable), wrapping until all 256 are filled.
pub fn sh_reassign(dests: &[Dest]) -> Vec<Option<usize>> {
    if dests.is_empty() {
        return vec![None; TAB_SIZE];
    }
    let mut b = Vec::with_capacity(TAB_SIZE);
    let (mut p, mut count) = (0usize, 0i32);
    for _ in 0..TAB_SIZE {
        b.push(Some(p));
        count += 1;
        if count >= dests[p].weight {
            p = (p + 1) % dests.len();
            count = 0;
        }
    }
    b
}

/// `ip_vs_dh_assign`: dests one bucket each, cycling through the list.
pub fn dh_assign(dests: &[Dest]) -> Vec<Option<usize>> {
    (0..TAB_SIZE)
        .map(|i| (!dests.is_empty()).then(|| i % dests.len()))
        .collect()
}

/// sh/mh `is_unavailable`: weight ≤ 0 or overloaded.
fn unavailable(d: &Dest) -> bool {
    d.weight <= 0 || d.overloaded
}

/// `ip_vs_sh_schedule` (with `ip_vs_sh_get` / `ip_vs_sh_get_fallback`): the client
/// address (and with sh-port its source port) picks a bucket; with sh-fallback an
/// unavailable dest makes it probe `hashkey(addr, port, (ihash + offset) % 256)`.
pub fn sh(
    dests: &[Dest],
    buckets: &[Option<usize>],
    c: &Conn,
    fallback: bool,
    port: bool,
) -> Option<usize> {
    let port = if port { c.cport } else { 0 };
    let ihash = sh_hashkey(c.client, port, 0);
    let d = buckets[ihash]?;
    if !unavailable(&dests[d]) {
        return Some(d);
    }
    if !fallback {
        return None;
    }
    for offset in 0..TAB_SIZE as u32 {
        let roffset = (offset + ihash as u32) % TAB_SIZE as u32;
        let h = sh_hashkey(c.client, port, roffset);
        let d = buckets[h]?;
        if !unavailable(&dests[d]) {
            return Some(d);
        }
    }
    None
}

/// `ip_vs_dh_schedule`: the destination address (the VIP for a VIP service) picks the
/// bucket; an unavailable dest gets nothing.
pub fn dh(dests: &[Dest], buckets: &[Option<usize>], c: &Conn) -> Option<usize> {
    let d = buckets[dh_hashkey(c.vip)]?;
    (!unavailable(&dests[d])).then_some(d)
}

/// The slot an mh table gives a connection: lb's flow hash (whole 5-tuple with mh-port,
/// else the client address), modulo the table.
pub fn mh_slot(table: &[u32], c: &Conn, port: bool) -> usize {
    let key = lb_tests_flow_key(c);
    let h = if port {
        flow_hash(&key, FLOW_SEED)
    } else {
        src_hash(&key, FLOW_SEED)
    };
    (h % table.len() as u32) as usize
}

fn lb_tests_flow_key(c: &Conn) -> lb_common::FlowKey {
    lb_tests::provision::flow_key(c.client, c.vip, c.cport, c.vport, c.proto)
}

/// mh: the table's real when available; unavailable without mh-fallback → None; with
/// mh-fallback: `Err(())` from [`mh_strict`] means "any available real" (the probe order
/// is lb's, IPVS's rehash depends on its siphash); here the first available real in list
/// order stands in, and tests check validity instead for that case.
pub fn mh(dests: &[Dest], table: &[u32], c: &Conn, fallback: bool, port: bool) -> Option<usize> {
    match mh_strict(dests, table, c, fallback, port) {
        Ok(d) => d,
        Err(()) => dests.iter().position(|d| !unavailable(d)),
    }
}

/// mh where the model is exact: Ok(choice); Err(()) when the hashed real is unavailable
/// and mh-fallback is on (the program may pick any available real).
pub fn mh_strict(
    dests: &[Dest],
    table: &[u32],
    c: &Conn,
    fallback: bool,
    port: bool,
) -> Result<Option<usize>, ()> {
    if table.is_empty() {
        return Ok(None);
    }
    let id = table[mh_slot(table, c, port)];
    if id == NO_REAL {
        return Ok(None);
    }
    let Some(d) = dests.iter().position(|d| d.id == id) else {
        return Ok(None);
    };
    if !unavailable(&dests[d]) {
        return Ok(Some(d));
    }
    if !fallback || dests.iter().all(unavailable) {
        return Ok(None);
    }
    Err(())
}
