//! The IPVS connection model in the data path (docs/datapath.md "Connections"): stamping
//! flows with CLOCK, TCP state transitions (`lb_common::conn::tcp_transition`, IPVS's
//! `set_tcp_state`), and the per-real counters that load-driven schedulers and thresholds
//! read.
//!
//! Cost rules: an established flow's packet reads CLOCK (an inlined array read) and stores
//! `last_seen_s` only when the second changed; a TCP packet runs the state table only when
//! its flags can change the state (not for a plain ACK on an ESTABLISHED flow); atomics
//! (`REAL_CONNS`) only when a flow is bound or changes between active and inactive.

use core::intrinsics::{AtomicOrdering, atomic_xadd};
use aya_ebpf::helpers::generated::bpf_jiffies64;
use lb_common::{
    FlowFlags, FlowValue, ForwardMode, Real, clock,
    conn::{ConnCounts, ConnMove, Settings, TcpState, conn_counts, tcp_flags, tcp_transition},
    consts::proto,
};

use crate::maps::{CLOCK, REAL_CONNS, REAL_EXPIRED, SETTINGS};
use crate::verdict::Dest;

const ES: u8 = TcpState::Established as u8;

/// The data path's seconds (`lb_common::clock`): the kernel's jiffies, which the verifier
/// inlines into a load (no helper call), scaled by CLOCK (0 until `lb-ctl load` writes it).
#[inline(always)]
pub fn now() -> u32 {
    now_at(jiffies())
}

/// The kernel's jiffies.
#[inline(always)]
pub fn jiffies() -> u64 {
    unsafe { bpf_jiffies64() }
}

/// The data path's seconds at `jiffies`.
#[inline(always)]
pub fn now_at(jiffies: u64) -> u32 {
    match CLOCK.get(0) {
        Some(c) => clock::seconds(c, jiffies),
        None => 0,
    }
}

/// The director-wide settings (all zero, i.e. IPVS defaults, until lb-ctl writes them).
#[inline(always)]
pub fn settings() -> Settings {
    SETTINGS.get(0).copied().unwrap_or_default()
}

/// Atomic `*p += n` (a BPF atomic add; the result is not used, so no fetch). The BPF
/// target has no `AtomicU64::fetch_add` in core, hence the intrinsic.
#[inline(always)]
pub fn atomic_add(p: *mut u64, n: u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
}

#[inline(always)]
fn add1(p: *mut u64) {
    atomic_add(p, 1);
}

/// Live counts of a real (ActiveConn, InActConn, PersistConn).
#[inline(always)]
pub fn counts(real_id: u32) -> ConnCounts {
    match (REAL_CONNS.get(real_id), REAL_EXPIRED.get(real_id)) {
        (Some(ev), Some(ex)) => conn_counts(ev, ex),
        _ => ConnCounts::default(),
    }
}

/// A new connection bound to the real (IPVS `ip_vs_bind_dest`): counted inactive (see
/// `lb_common::conn::bind_flags`), and the real marked overloaded when its connections
/// reach the upper threshold.
#[inline(always)]
pub fn bind(real_id: u32, real: &Real) {
    let Some(ev) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    unsafe {
        add1(&raw mut (*ev).opened);
        add1(&raw mut (*ev).to_inactive);
    }
    mark_overload(real_id, real);
}

/// A flow the data path itself removes (expire_nodest_conn): IPVS's unbind, done on the
/// data path's own counters with wrapping adds of −1 (REAL_EXPIRED is the sweep's):
/// an inactive flow takes back its bind (`opened`, `to_inactive`), an active one `opened`.
#[inline(always)]
pub fn unbind(real_id: u32, flags: u8) {
    let Some(ev) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    unsafe {
        atomic_add(&raw mut (*ev).opened, u64::MAX);
        if flags & FlowFlags::INACTIVE != 0 {
            atomic_add(&raw mut (*ev).to_inactive, u64::MAX);
        }
    }
}

/// A persistence template created for the real (`persistconns` + 1; IPVS binds templates
/// too, so the threshold check runs as for a connection, on active + inactive).
#[inline(always)]
pub fn bind_template(real_id: u32, real: &Real) {
    let Some(ev) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    unsafe { add1(&raw mut (*ev).templates) };
    mark_overload(real_id, real);
}

#[inline(always)]
fn mark_overload(real_id: u32, real: &Real) {
    if real.u_threshold == 0 {
        return;
    }
    let c = counts(real_id);
    if c.active.wrapping_add(c.inactive) >= real.u_threshold as u64
        && let Some(ev) = REAL_CONNS.get_ptr_mut(real_id)
    {
        unsafe { (*ev).overloaded = 1 };
    }
}

/// IPVS `IP_VS_DEST_F_OVERLOAD` as a scheduler sees it. Set at bind; IPVS clears it when a
/// connection of the real goes away and the total falls below the lower threshold (or
/// below 3/4 of the upper one when there is no lower one); the sweep cannot write
/// REAL_CONNS, so the clearing is done here, when a scheduler looks, which is the only time
/// the flag matters. No upper threshold → never overloaded.
#[inline(always)]
pub fn overloaded(real_id: u32, real: &Real) -> bool {
    if real.u_threshold == 0 {
        return false;
    }
    let Some(ev) = REAL_CONNS.get_ptr_mut(real_id) else {
        return false;
    };
    if unsafe { (*ev).overloaded } == 0 {
        return false;
    }
    let c = counts(real_id);
    let total = c.active.wrapping_add(c.inactive);
    let below = if real.l_threshold != 0 {
        total < real.l_threshold as u64
    } else {
        total * 4 < real.u_threshold as u64 * 3
    };
    if below {
        unsafe { (*ev).overloaded = 0 };
    }
    !below
}

/// Applies a state change's counter move to the real.
#[inline(always)]
fn apply(real_id: u32, mv: ConnMove) {
    let Some(ev) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    match mv {
        ConnMove::None => {}
        ConnMove::ToInactive => unsafe { add1(&raw mut (*ev).to_inactive) },
        ConnMove::ToActive => unsafe { add1(&raw mut (*ev).to_active) },
    }
}

/// The value of a new flow after its first packet: bound (state NONE, `bind_flags` for its
/// forwarding method, which it keeps), then that packet's transition. From NONE a client
/// packet never reaches ESTABLISHED, so the bind's inactive count stands and no move is
/// needed.
#[inline(always)]
pub fn new_flow_value(dest: &Dest, l4: u8, tcp: u8) -> FlowValue {
    let flags = lb_common::conn::bind_flags(dest.fwd == ForwardMode::Nat as u8);
    let (state, flags) = if l4 == proto::TCP {
        let st = tcp_transition(TcpState::None as u8, flags, false, tcp);
        (st.state, st.flags)
    } else {
        (lb_common::conn::UDP_STATE, flags)
    };
    FlowValue {
        real_id: dest.real_id,
        svc_id: dest.svc_id,
        last_seen_s: now(),
        state,
        flags,
        fwd: dest.fwd,
        _pad: 0,
    }
}

/// Whether a plain packet (`Packet::is_plain`) of the flow leaves it as it is: a TCP flow
/// ESTABLISHED (an ACK keeps it so in every table), or UDP. Safety: as `on_packet`.
#[inline(always)]
pub unsafe fn steady(v: *const FlowValue, l4: u8) -> bool {
    l4 != proto::TCP || unsafe { (*v).state } == ES
}

/// A packet of an established flow (`reply`: a NAT reply, real → client): stamp it, and for
/// TCP move its state (and its real's counters) as IPVS does. Safety: `v` is a FLOWS value
/// pointer just looked up, with no helper call in between.
#[inline(always)]
pub unsafe fn on_packet(v: *mut FlowValue, real_id: u32, l4: u8, tcp: u8, reply: bool) {
    let t = now();
    unsafe {
        if (*v).last_seen_s != t {
            (*v).last_seen_s = t;
        }
    }
    if l4 != proto::TCP {
        return;
    }
    let (state, flags) = unsafe { ((*v).state, (*v).flags) };
    // ESTABLISHED + plain ACK stays ESTABLISHED in every table; only a reply on a flow
    // still marked NO_OUTPUT changes (its flag). The common case ends here.
    let plain_ack =
        tcp & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0 && tcp & tcp_flags::ACK != 0;
    if state == ES && plain_ack && !(reply && flags & FlowFlags::NO_OUTPUT != 0) {
        return;
    }
    let st = tcp_transition(state, flags, reply, tcp);
    if st.state != state || st.flags != flags {
        unsafe {
            (*v).state = st.state;
            (*v).flags = st.flags;
        }
        apply(real_id, st.conn);
    }
}
