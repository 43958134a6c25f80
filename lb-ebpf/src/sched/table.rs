//! Table-driven schedulers: lb-ctl built the table (`lb_common::sched`, `maglev`), the
//! data path hashes the packet and indexes it.
//! - mh: our Maglev table and hash (`src_hash`, or `flow_hash` with `-b mh-port`); IPVS
//!   mh hashes with hsiphash — a different function over the same fields, so the table
//!   semantics (Maglev, minimal disruption) hold but a given client may land elsewhere.
//!   mh-fallback: IPVS walks up to the whole table with a second hash per offset; we try
//!   [`MH_FALLBACK_TRIES`] rehashes of the first slot (then `NoReal`), which finds an
//!   available real unless nearly all are unavailable.
//! - sh (ip_vs_sh.c): bucket `hash_32(ntohs(port) + ntohl(fold(saddr)), 8)`, port = the
//!   client port with `-b sh-port` else 0; unavailable → `NoReal`, or with `-b sh-fallback`
//!   IPVS's walk `(offset + 2·ihash) % 256` for offset 0..256.
//! - dh (ip_vs_dh.c): bucket `hash_32(ntohl(fold(daddr)), 8)` (kernels before hash_32
//!   used `(… · 2654435761) & 255`); unavailable → `NoReal`.

use lb_common::{
    Drop, FlowKey, Service, VipFlags,
    consts::{NO_REAL, proto},
    hash::{FLOW_SEED, flow_hash, src_hash},
};

use super::{available, iter};
use crate::maps::SCHED_TABLE;
use crate::parse::Packet;
use aya_ebpf::cty::c_void;

/// Rehashes mh-fallback tries before giving up.
pub const MH_FALLBACK_TRIES: u32 = 32;
/// sh/dh buckets (`IP_VS_SH_TAB_SIZE`, `IP_VS_DH_TAB_SIZE`).
const TAB_SIZE: u32 = 256;

/// Slot `idx` of the service's table (`None` past its end or for `NO_REAL`).
#[inline(always)]
fn slot(svc: &Service, idx: u32) -> Option<u32> {
    slot_at(svc.table_base, svc.table_len, idx)
}

#[inline(always)]
fn slot_at(base: u32, len: u32, idx: u32) -> Option<u32> {
    if idx >= len {
        return None;
    }
    let id = *SCHED_TABLE.get(base.wrapping_add(idx))?;
    if id == NO_REAL { None } else { Some(id) }
}

/// mh: Maglev, with `-b mh-port` hashing the whole flow and `-b mh-fallback` rehashing.
#[inline(always)]
pub fn select_mh(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    let key = &pkt.key;
    let idx = mh_hash(key, svc.flags.has(VipFlags::HASH_PORTS))
        .checked_rem(svc.table_len)
        .ok_or(Drop::NoReal)?;
    let id = slot(svc, idx).ok_or(Drop::NoReal)?;
    if available(id).is_some() {
        return Ok(id);
    }
    if !svc.flags.has(VipFlags::MH_FALLBACK) {
        return Err(Drop::NoReal);
    }
    found(lb_mh_fallback(svc.table_base, svc.table_len, idx))
}

/// mh-fallback walk (a global function, verified once: see `load`): rehashes of the
/// first slot until an available real; an empty slot ends it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_mh_fallback(table_base: u32, table_len: u32, first: u32) -> u32 {
    if table_len == 0 {
        return NO_REAL;
    }
    for i in 1..=MH_FALLBACK_TRIES {
        let mut h = first ^ i.wrapping_mul(0x9e37_79b9);
        h = (h ^ (h >> 16)).wrapping_mul(0x85eb_ca6b);
        h = (h ^ (h >> 13)).wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        let Some(id) = slot_at(table_base, table_len, h.checked_rem(table_len).unwrap_or(0)) else {
            break;
        };
        if available(id).is_some() {
            return id;
        }
    }
    NO_REAL
}

#[inline(always)]
fn found(id: u32) -> Result<u32, Drop> {
    if id == NO_REAL {
        Err(Drop::NoReal)
    } else {
        Ok(id)
    }
}

#[inline(always)]
fn mh_hash(key: &FlowKey, ports: bool) -> u32 {
    if ports {
        flow_hash(key, FLOW_SEED)
    } else {
        src_hash(key, FLOW_SEED)
    }
}

/// The kernel's `hash_32(val, bits)` (GOLDEN_RATIO_32 multiply, top bits).
#[inline(always)]
pub const fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// IPVS's address fold: the IPv4 address, or the XOR of the four IPv6 words; host order.
/// (IPv4 keys carry zeros in words 1–3, so one expression serves both.)
#[inline(always)]
pub fn addr_fold(a: &[u32; 4]) -> u32 {
    u32::from_be(a[0] ^ a[1] ^ a[2] ^ a[3])
}

/// `ip_vs_sh_hashkey(af, addr, port, 0)`.
#[inline(always)]
pub fn sh_bucket(pkt: &Packet, with_port: bool) -> u32 {
    let k = &pkt.key;
    let port = if with_port && (k.proto == proto::TCP || k.proto == proto::UDP) {
        u16::from_be(k.sport.0) as u32
    } else {
        0
    };
    hash_32(port.wrapping_add(addr_fold(&k.src)), 8)
}

/// sh, with `-b sh-port` and `-b sh-fallback`.
#[inline(always)]
pub fn select_sh(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    let ihash = sh_bucket(pkt, svc.flags.has(VipFlags::SH_PORT));
    let id = slot(svc, ihash).ok_or(Drop::NoReal)?;
    if available(id).is_some() {
        return Ok(id);
    }
    if !svc.flags.has(VipFlags::SH_FALLBACK) {
        return Err(Drop::NoReal);
    }
    found(lb_sh_fallback(svc.table_base, svc.table_len, ihash))
}

/// ip_vs_sh_get_fallback's walk (a global function, verified once: see `load`): roffset =
/// (offset + ihash) % 256, bucket = (roffset + ihash) % 256; an empty bucket ends it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_sh_fallback(table_base: u32, table_len: u32, ihash: u32) -> u32 {
    let mut s = ShWalk {
        base: table_base,
        len: table_len,
        ihash: ihash % TAB_SIZE,
        found: NO_REAL,
    };
    iter::run(TAB_SIZE, sh_step, &mut s);
    s.found
}

#[repr(C)]
struct ShWalk {
    base: u32,
    len: u32,
    ihash: u32,
    found: u32,
}

#[inline(never)]
extern "C" fn sh_step(offset: u64, ctx: *mut c_void) -> i64 {
    let s: &mut ShWalk = unsafe { iter::state(ctx) };
    let idx = (offset as u32 + 2 * s.ihash) % TAB_SIZE;
    let Some(id) = slot_at(s.base, s.len, idx) else {
        return 1;
    };
    if available(id).is_some() {
        s.found = id;
        return 1;
    }
    0
}

/// `ip_vs_dh_hashkey(af, daddr)`.
#[inline(always)]
pub fn dh_bucket(pkt: &Packet) -> u32 {
    hash_32(addr_fold(&pkt.key.dst), 8)
}

/// dh: the destination address's bucket; unavailable → `NoReal`.
#[inline(always)]
pub fn select_dh(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    let id = slot(svc, dh_bucket(pkt)).ok_or(Drop::NoReal)?;
    available(id).map(|_| id).ok_or(Drop::NoReal)
}
