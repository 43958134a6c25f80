//! The per-CPU flow cache (`lb_common::flow_cache`, docs/datapath.md step 7): a plain
//! packet of a flow cached this CLOCK second goes to its real, by its recorded forwarding
//! method, without a FLOWS lookup; a FLOWS hit of a plain packet fills the slot when the
//! next may skip the lookup, and empties it when not; a FIN or RST empties it first.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use lb_common::{
    FlowKey,
    flow_cache::{CachedFlow, DEFAULT_CACHE_BITS, HIT_BUDGET, cache_slot, same_flow, seq_near},
    real::ref_id,
};

use crate::conn;
use crate::maps::FLOW_CACHE;
use crate::parse::Packet;
use crate::reals::usable;
use crate::verdict::Dest;

/// Slot bits per CPU (`lb_common::flow_cache::cache_bits`), set by the loader in .rodata
/// with FLOW_CACHE's size to match; the verifier reads it as a constant.
#[unsafe(no_mangle)]
static FLOW_CACHE_BITS: u32 = DEFAULT_CACHE_BITS;

/// This CPU's slot for the flow (the verifier inlines the CPU id and the array read).
/// None only past the map's end (more CPUs than the map was sized for): no cache.
#[inline(always)]
fn slot(key: &FlowKey) -> Option<*mut CachedFlow> {
    // Volatile: a plain read would be folded to the compiled-in default.
    let bits = unsafe { core::ptr::read_volatile(&FLOW_CACHE_BITS) };
    let cpu = unsafe { bpf_get_smp_processor_id() };
    FLOW_CACHE.get_ptr_mut(cpu << bits | cache_slot(key, bits))
}

/// Step 7's first try: the cached real of a plain packet's flow, if cached this CLOCK
/// second with hits to spare, its sequence number near the cached one (not a new
/// connection on the same ports) and the real still usable (as a FLOWS hit is checked:
/// configured, in the service, and the real the slot was filled for, not a later one of
/// its id).
/// A FIN or RST empties its flow's slot first, so the next plain packet sees the state it
/// moved. A SYN does not touch the cache: its slot is a cold line (a random one per new
/// connection, ~70 ns), and the sequence check keeps a reused port's packets from an old
/// connection's slot.
#[inline(always)]
pub fn hit(pkt: &Packet) -> Option<Dest> {
    if pkt.quote.is_some() || pkt.opens_connection() {
        return None;
    }
    let c = unsafe { &mut *slot(&pkt.key)? };
    if !pkt.is_plain() {
        forget(c, &pkt.key);
        return None;
    }
    if c.stamp_s != conn::now()
        || c.hits >= HIT_BUDGET
        || !seq_near(c.seq, pkt.tcp_seq)
        || !same_flow(&c.key, &pkt.key)
    {
        return None;
    }
    let (real_ref, svc_id, fwd) = (c.real_id, c.svc_id, c.fwd);
    if !usable(real_ref, svc_id) {
        return None;
    }
    c.hits += 1;
    Some(Dest {
        real_id: ref_id(real_ref),
        svc_id,
        fwd,
        new_flow: false,
    })
}

/// After a usable FLOWS hit of a plain packet, stamped and moved (`steady`: a plain packet
/// leaves the flow as it is): cache it (`dest`: the flow's real, service and method;
/// `real_ref`: its real as the flow stores it, with its generation) for this second, else
/// empty its slot. (Other packets emptied it in [`hit`]; an ICMP error about a flow
/// changes nothing.)
#[inline(always)]
pub fn update(pkt: &Packet, steady: bool, dest: &Dest, real_ref: u32) {
    if !pkt.is_plain() {
        return;
    }
    let Some(c) = slot(&pkt.key) else {
        return;
    };
    let c = unsafe { &mut *c };
    if steady {
        c.fill(
            &pkt.key,
            real_ref,
            dest.svc_id,
            dest.fwd,
            conn::now(),
            pkt.tcp_seq,
        );
    } else {
        forget(c, &pkt.key);
    }
}

/// The flow was removed from FLOWS here (its real gone with expire_nodest_conn 1, or a
/// SYN reusing its ports, conn_reuse_mode): its slot, if it holds it, is emptied too.
#[inline(always)]
pub fn drop_flow_key(key: &FlowKey) {
    if let Some(c) = slot(key) {
        forget(unsafe { &mut *c }, key);
    }
}

/// Empties the slot if it holds the flow.
#[inline(always)]
fn forget(c: &mut CachedFlow, key: &FlowKey) {
    if same_flow(&c.key, key) {
        // Never equal to a CLOCK second in use (u32 seconds: 136 years).
        c.stamp_s = u32::MAX;
    }
}
