//! Schedule a new flow (docs/datapath.md step 10): persistence template, else the
//! service's scheduler ([`crate::sched`]); then bind and record the flow (IPVS
//! `ip_vs_schedule` / `ip_vs_sched_persist`, `ip_vs_conn_new`).

use lb_common::{
    Counter, Drop, PersistKey, PersistValue, Real, Service, VipFlags,
    consts::{MAX_REALS_PER_SERVICE, NO_REAL, proto},
    real::ref_id,
};

use crate::conn;
use crate::flows::{self, BPF_NOEXIST, EEXIST, Insert};
use crate::lookup::lookup_service;
use crate::maps::{PERSIST, REAL_CONNS};
use crate::parse::Packet;
use crate::reals::{counted, lookup_real, lookup_ref, real_at};
use crate::sched;
use crate::stats::count;
use crate::verdict::{Dest, Exit};

/// A newly scheduled real, and whether its flow was found already recorded.
pub struct Scheduled {
    /// Where the packet goes.
    pub dest: Dest,
    /// The insert found the flow there (`BPF_NOEXIST`): another CPU recorded it first, or
    /// the packet is a SYN, scheduled before any lookup (`crate::destination`), of a flow
    /// that exists. Nothing was recorded or bound: the caller looks the flow up.
    pub exists: bool,
}

/// A packet to a VIP without a usable flow: its service (step 8), the TTL check (9), and a
/// real (10). A TCP RST of no flow is not scheduled: as IPVS (`tcp_conn_schedule` wants
/// `!th->rst`, else NF_ACCEPT) it passes to the director's stack (`RstNoFlow`), with no
/// scheduler state moved, no template and no flow. An ICMP error about a flow we do not know is sent where a hashing scheduler
/// (mh, sh, dh) would put the flow, and records nothing; with any other scheduler it is not
/// ours to place (IPVS passes ICMP that matches no connection), so it passes `NotBalanced`.
///
/// Inlined like everything on the packet path: measured, a single static BPF-to-BPF call
/// in `lb_xdp` (this function or `gate::confirm_vip` out of line) cost 20–30 ns on every path,
/// even on those that never make the call.
#[inline(always)]
pub fn schedule_new(pkt: &Packet) -> Result<Scheduled, Exit> {
    let svc = lookup_service(pkt)?;
    if pkt.is_rst() {
        return Err(Exit::Pass(lb_common::Pass::RstNoFlow));
    }
    pkt.check_ttl()?;
    if pkt.quote.is_some() {
        if !sched::is_hashing(&svc) {
            return Err(Exit::Pass(lb_common::Pass::NotBalanced));
        }
        let real_id = sched::select_real(&svc, pkt)?;
        lookup_real(real_id).ok_or(Drop::NoReal)?;
        return Ok(Scheduled {
            dest: Dest {
                real_id,
                svc_id: svc.id,
                fwd: 0,
                new_flow: false,
            },
            exists: false,
        });
    }
    let real_id = if svc.flags.has(VipFlags::PERSISTENT) {
        select_persistent(&svc, pkt)?
    } else {
        sched::select_real(&svc, pkt)?
    };
    let real = lookup_real(real_id).ok_or(Drop::NoReal)?;
    // -o: every UDP datagram is its own connection, gone once sent (IPVS binds and
    // unbinds it at once, so the real's counters do not move); nothing is recorded.
    let one_packet = svc.flags.has(VipFlags::ONE_PACKET) && pkt.key.proto == proto::UDP;
    let dest = Dest {
        real_id,
        svc_id: svc.id,
        fwd: real.mode,
        new_flow: true,
    };
    let exists = !one_packet && record_flow(pkt, real, &dest) == Insert::Exists;
    // NEW_FLOW and the `conns` stats are counted with the packet (`Dest::new_flow`).
    Ok(Scheduled { dest, exists })
}

/// Records a flow scheduled earlier whose insert found it there, but which is gone now
/// (its real was deleted and `expire_nodest_conn` removed it, or it expired in between).
#[inline(always)]
pub fn record_scheduled(pkt: &Packet, dest: &Dest) {
    if let Some(real) = lookup_real(dest.real_id) {
        record_flow(pkt, real, dest);
    }
}

/// Records a new flow (state after its first packet, CLOCK stamp, the forwarding method its
/// packet goes by, `dest.fwd`, its real with the real's generation) and binds it. A failed
/// insert (the table full) fails open: the packet is still forwarded, and nothing is
/// counted as bound, since no flow will expire to balance it. A flow already there is
/// left as it is (`BPF_NOEXIST`) and bound once, by whoever recorded it.
#[inline(always)]
fn record_flow(pkt: &Packet, real: &Real, dest: &Dest) -> Insert {
    let real_ref = real.reference(dest.real_id);
    let mut value = conn::new_flow_value(dest, pkt.key.proto, pkt.tcp_flags);
    value.real_id = real_ref;
    let done = flows::flow_insert_new(&pkt.key, &value);
    match done {
        Insert::Done => conn::bind(dest.real_id, real),
        Insert::Failed => count(Counter::FLOW_INSERT_FAILED),
        Insert::Exists => {}
    }
    done
}

/// Persistent service (IPVS `ip_vs_sched_persist`): the client's template (masked address
/// in the service's persistence group) names the real while it lives; otherwise schedule
/// and create it. A template whose real is gone (deleted, or its id given to another real
/// since: the template's generation is not the slot's), or quiescent (weight 0) while
/// `expire_quiescent_template` is set, is replaced (IPVS `ip_vs_check_template`); an
/// overloaded or quiescent real otherwise keeps its clients, as in IPVS. A template of
/// another service of the group names that service's real: the real of this service with
/// the same address is used (a firewall-mark service's one real set, spelled as several
/// services).
#[inline(always)]
fn select_persistent(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    let k = &pkt.key;
    let m = &svc.persist_mask;
    let pkey = PersistKey {
        client: [
            k.src[0] & m[0],
            k.src[1] & m[1],
            k.src[2] & m[2],
            k.src[3] & m[3],
        ],
        group: svc.persist_group,
        family: k.family,
        proto: k.proto,
        _pad: [0; 2],
    };
    let now = conn::now();
    // A stale template's real id, to claim below.
    let (mut stale, mut seen) = (core::ptr::null_mut::<u32>(), NO_REAL);
    if let Some(t) = PERSIST.get_ptr_mut(pkey) {
        let (t_real, t_svc) = unsafe { ((*t).real_id, (*t).svc_id) };
        match template_real(svc, t_real, t_svc) {
            Some(id) => {
                unsafe {
                    if (*t).last_seen_s != now {
                        (*t).last_seen_s = now;
                    }
                }
                return Ok(id);
            }
            None => (stale, seen) = (unsafe { &raw mut (*t).real_id }, t_real),
        }
    }
    // One template per client, as IPVS's under its lock: of the CPUs that find it stale,
    // the one whose claim wins takes it off its real's count and overwrites it (insert
    // flags 0); the others, and a client with no template, insert only where none is
    // (BPF_NOEXIST), and follow the template they find there.
    let flags = unsafe { lb_persist_claim(stale, seen) };
    let real_id = sched::select_real(svc, pkt)?;
    let real = lookup_real(real_id).ok_or(Drop::NoReal)?;
    let v = PersistValue {
        real_id: real.reference(real_id),
        svc_id: svc.id,
        last_seen_s: now,
        _pad: 0,
    };
    match PERSIST.insert(pkey, v, flags) {
        Ok(()) => conn::bind_template(real_id, real),
        // Another CPU made the client's template first: its real is the client's.
        Err(EEXIST) => {
            if let Some(t) = unsafe { PERSIST.get(pkey) }
                && t.svc_id == svc.id
                && lookup_ref(t.real_id).is_some()
            {
                return Ok(ref_id(t.real_id));
            }
        }
        Err(_) => count(Counter::PERSIST_INSERT_FAILED),
    }
    Ok(real_id)
}

/// Claims a stale template by swapping its real (`seen`, as stored) for NO_REAL: the one
/// CPU that wins takes it off that real's PersistConn (unless the id is another real's
/// now, `counted`) and gets insert flags 0 (overwrite its claim); everyone else, and a
/// null `real_id` (no template), gets BPF_NOEXIST. A global function, verified once: its
/// branches inlined put the program over the verifier's instruction limit. Safety:
/// `real_id` is null or points into a PERSIST value just looked up.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn lb_persist_claim(real_id: *mut u32, seen: u32) -> u64 {
    if real_id.is_null() || seen == NO_REAL || !conn::claim_u32(real_id, seen) {
        return BPF_NOEXIST;
    }
    if let Some(ev) = REAL_CONNS.get_ptr_mut(counted(seen)) {
        conn::atomic_add(unsafe { &raw mut (*ev).templates }, u64::MAX);
    }
    0
}

/// The real a template (`t_real`: its real as stored, with the generation) sends this
/// service's connection to, if still usable.
#[inline(always)]
fn template_real(svc: &Service, t_ref: u32, t_svc: u32) -> Option<u32> {
    let real = lookup_ref(t_ref)?;
    let t_real = ref_id(t_ref);
    if real.svc_id != t_svc {
        return None;
    }
    if real.weight == 0 && conn::settings().expire_quiescent_template != 0 {
        return None;
    }
    if t_svc == svc.id {
        return Some(t_real);
    }
    // Another service of the group: its real's address among this service's reals.
    match lb_group_real(svc.reals_base, svc.reals_len, t_real) {
        NO_REAL => None,
        id => Some(id),
    }
}

/// The real of a reals list with the address of real `t_real` (a global function, verified
/// once: see `sched::load`); `NO_REAL` when none, or when it is quiescent and
/// `expire_quiescent_template` is set.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_group_real(reals_base: u32, reals_len: u32, t_real: u32) -> u32 {
    let Some(t) = lookup_real(t_real) else {
        return NO_REAL;
    };
    let mut s = Group {
        addr: t.addr,
        base: reals_base,
        family: t.family as u32,
        found: NO_REAL,
    };
    sched::iter::run(reals_len.min(MAX_REALS_PER_SERVICE), group_step, &mut s);
    if s.found != NO_REAL
        && let Some(r) = lookup_real(s.found)
        && r.weight == 0
        && conn::settings().expire_quiescent_template != 0
    {
        return NO_REAL;
    }
    s.found
}

#[repr(C)]
struct Group {
    addr: [u32; 4],
    base: u32,
    family: u32,
    found: u32,
}

#[inline(never)]
extern "C" fn group_step(i: u64, ctx: *mut aya_ebpf::cty::c_void) -> i64 {
    let s: &mut Group = unsafe { sched::iter::state(ctx) };
    let Some(id) = real_at(s.base, i as u32) else {
        return 1;
    };
    if let Some(r) = lookup_real(id)
        && r.addr == s.addr
        && r.family as u32 == s.family
    {
        s.found = id;
        return 1;
    }
    0
}
