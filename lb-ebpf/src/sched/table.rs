//! Table-driven schedulers: lb-ctl built the table (`lb_common::sched`, `maglev`), the
//! data path hashes the packet and indexes it. The hashes, buckets and rehashes are
//! lb-common's (`lb_common::sched::pick`), so userspace computes the same slot; this file
//! reads the table and checks the real.
//! - mh: our Maglev table and hash (`src_hash`, or `flow_hash` with `-b mh-port`); IPVS
//!   mh hashes with hsiphash — a different function over the same fields, so the table
//!   semantics (Maglev, minimal disruption) hold but a given client may land elsewhere.
//!   mh-fallback: IPVS walks up to the whole table with a second hash per offset; we try
//!   `MH_FALLBACK_TRIES` rehashes of the first slot (then `NoReal`), which finds an
//!   available real unless nearly all are unavailable.
//! - sh (ip_vs_sh.c): bucket `hash_32(ntohs(port) + ntohl(fold(saddr)), 8)`, port = the
//!   client port with `-b sh-port` else 0; unavailable → `NoReal`, or with `-b sh-fallback`
//!   IPVS's walk `(offset + 2·ihash) % 256` for offset 0..256.
//! - dh (ip_vs_dh.c): bucket `hash_32(ntohl(fold(daddr)), 8)` (kernels before hash_32
//!   used `(… · 2654435761) & 255`); unavailable → `NoReal`.

use aya_ebpf::cty::c_void;
use lb_common::{
    Drop, Service, VipFlags,
    consts::{MH_FALLBACK_TRIES, NO_REAL},
    sched::{
        TAB_SIZE,
        pick::{dh_bucket, mh_rehash, mh_slot, sh_bucket, sh_fallback_bucket},
    },
};

use super::iter;
use crate::maps::SCHED_TABLE;
use crate::parse::Packet;
use crate::reals::{available, picked};

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
    let idx = mh_slot(&pkt.key, svc.flags.has(VipFlags::HASH_PORTS), svc.table_len)
        .ok_or(Drop::NoReal)?;
    let id = slot(svc, idx).ok_or(Drop::NoReal)?;
    if available(id).is_some() {
        return Ok(id);
    }
    if !svc.flags.has(VipFlags::MH_FALLBACK) {
        return Err(Drop::NoReal);
    }
    picked(lb_mh_fallback(svc.table_base, svc.table_len, idx))
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
        let h = mh_rehash(first, i);
        let Some(id) = slot_at(table_base, table_len, h.checked_rem(table_len).unwrap_or(0)) else {
            break;
        };
        if available(id).is_some() {
            return id;
        }
    }
    NO_REAL
}

/// sh, with `-b sh-port` and `-b sh-fallback`.
#[inline(always)]
pub fn select_sh(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    let ihash = sh_bucket(&pkt.key, svc.flags.has(VipFlags::SH_PORT));
    let id = slot(svc, ihash).ok_or(Drop::NoReal)?;
    if available(id).is_some() {
        return Ok(id);
    }
    if !svc.flags.has(VipFlags::SH_FALLBACK) {
        return Err(Drop::NoReal);
    }
    picked(lb_sh_fallback(svc.table_base, svc.table_len, ihash))
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
    let idx = sh_fallback_bucket(s.ihash, offset as u32);
    let Some(id) = slot_at(s.base, s.len, idx) else {
        return 1;
    };
    if available(id).is_some() {
        s.found = id;
        return 1;
    }
    0
}

/// dh: the destination address's bucket; unavailable → `NoReal`.
#[inline(always)]
pub fn select_dh(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    let id = slot(svc, dh_bucket(&pkt.key)).ok_or(Drop::NoReal)?;
    available(id).map(|_| id).ok_or(Drop::NoReal)
}
