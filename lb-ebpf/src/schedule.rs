//! Schedule a new flow (docs/datapath.md step 10): pick the real with the service's
//! scheduler, then record the flow. The seam for more schedulers is [`select_real`]: one
//! `match` on `SchedKind`, one function per scheduler family (table-driven today;
//! sequence- and load-driven ones slot in beside it, DESIGN.md §3 step 5).

use lb_common::{
    Counter, Drop, FlowKey, FlowValue, SchedKind, Service, VipFlags,
    consts::NO_REAL,
    hash::{FLOW_SEED, flow_hash, src_hash},
};

use crate::Exit;
use crate::lookup::{Found, lookup_real};
use crate::maps::{FLOWS, SCHED_TABLE};
use crate::parse::Packet;
use crate::stats::{count, count_conn};

/// Where a packet goes: ids only. Verifier note: no map-value pointer travels in this
/// struct (or in `Found`, which wraps it). LLVM may pack a small aggregate into one
/// register with shifts, and the verifier rejects any shift of a pointer ("pointer
/// arithmetic with >>= operator prohibited"); `forward` re-reads the REALS array (an
/// inlined lookup) instead.
#[derive(Clone, Copy)]
pub struct Dest {
    /// The real's id (REALS index, REAL_STATS index).
    pub real_id: u32,
    /// Its service's id (SVC_STATS index).
    pub svc_id: u32,
    /// First packet of a flow just recorded (NAT records its reverse entry then).
    pub new_flow: bool,
}

/// An established flow goes where it went; otherwise schedule. An ICMP error about a flow
/// is scheduled like the flow's own packets but records nothing (it is not a connection).
#[inline(always)]
pub fn schedule(pkt: &Packet, found: Found) -> Result<Dest, Exit> {
    let svc = match found {
        Found::Flow(dest) => return Ok(dest),
        Found::Service(svc) => svc,
    };
    let real_id = select_real(&svc, &pkt.key)?;
    lookup_real(real_id).ok_or(Drop::NoReal)?;
    let new_flow = pkt.quote.is_none();
    if new_flow {
        record_flow(&pkt.key, real_id, svc.id);
    }
    Ok(Dest {
        real_id,
        svc_id: svc.id,
        new_flow,
    })
}

/// The scheduler seam: one arm per scheduler family.
#[inline(always)]
fn select_real(svc: &Service, key: &FlowKey) -> Result<u32, Drop> {
    match SchedKind::from_u8(svc.sched) {
        Some(SchedKind::Maglev) => select_table(svc, key),
        // A scheduler this program does not run yet (lb-ctl refuses them), or does not
        // know: nothing to send to.
        _ => Err(Drop::NoReal),
    }
}

/// Table-driven (mh): userspace built the table; hash the flow (whole 5-tuple with
/// `-b mh-port`, else the client address as IPVS mh does) and index it.
#[inline(always)]
fn select_table(svc: &Service, key: &FlowKey) -> Result<u32, Drop> {
    let hash = if svc.flags.has(VipFlags::HASH_PORTS) {
        flow_hash(key, FLOW_SEED)
    } else {
        src_hash(key, FLOW_SEED)
    };
    // checked_rem: table_len 0 (no real yet) is NoReal, and no panic path is emitted.
    let idx = hash.checked_rem(svc.table_len).ok_or(Drop::NoReal)?;
    let id = *SCHED_TABLE
        .get(svc.table_base.wrapping_add(idx))
        .ok_or(Drop::NoReal)?;
    if id == NO_REAL {
        Err(Drop::NoReal)
    } else {
        Ok(id)
    }
}

/// Records a new flow and counts it. A failed insert fails open: the packet is still
/// forwarded, and Maglev sends the flow's next packets to the same real anyway.
#[inline(always)]
fn record_flow(key: &FlowKey, real_id: u32, svc_id: u32) {
    // Connection state and timestamps arrive with the IPVS connection model (issue 4);
    // until then a flow is its real and service only.
    let value = FlowValue {
        real_id,
        svc_id,
        last_seen_s: 0,
        state: 0,
        flags: 0,
        _pad: [0; 2],
    };
    if FLOWS.insert(key, value, 0).is_err() {
        count(Counter::FLOW_INSERT_FAILED);
    }
    count(Counter::NEW_FLOW);
    count_conn(svc_id, real_id);
}
