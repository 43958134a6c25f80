//! The IPVS connection model in the data path (docs/datapath.md "Connections"): stamping
//! flows with CLOCK, TCP state transitions (`lb_common::conn::tcp_transition`, IPVS's
//! `set_tcp_state`), and the per-real counters that load-driven schedulers and thresholds
//! read.
//!
//! Cost rules: an established flow's packet reads CLOCK (an inlined array read) and stores
//! `last_seen_s` only when the second changed; a TCP packet runs the state table only when
//! its flags can change the state (not for a plain ACK on an ESTABLISHED flow); atomics
//! (`REAL_CONNS`) only when a flow is bound or changes between active and inactive.
//!
//! A flow's state and flags change only by compare-and-swap of its state word
//! (`lb_common::StateWord`, FlowValue bytes 12..16), IPVS's `cp->lock` in `set_tcp_state`:
//! when two CPUs move one flow at once (a client FIN and the real's FIN or RST), one swap
//! wins and only its CPU moves the real's counters; the other reads the new word and
//! decides again. A remover claims the flow the same way (`reap`, `FlowFlags::DEAD`), after
//! which nobody moves or counts it.

use aya_ebpf::helpers::generated::bpf_jiffies64;
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};
use lb_common::{
    Counter, FlowFlags, FlowValue, ForwardMode, Real, StateWord, clock,
    conn::{ConnCounts, ConnMove, Settings, TcpState, conn_counts, tcp_flags, tcp_transition},
    consts::{STATE_CAS_TRIES, proto},
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
/// `flags`: the flags its remover won the claim with (`reap`).
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

/// The flow's state word (`lb_common::STATE_WORD_OFFSET`: state, flags, fwd, _pad; 4-byte
/// aligned, as FlowValue is).
#[inline(always)]
fn state_word(v: *mut FlowValue) -> *mut u32 {
    unsafe { (&raw mut (*v).state).cast::<u32>() }
}

/// The state word as it is now: one 32-bit load (volatile, so the compiler neither splits
/// it into byte loads nor reuses an older read).
#[inline(always)]
unsafe fn load_word(p: *mut u32) -> StateWord {
    StateWord(unsafe { core::ptr::read_volatile(p) })
}

/// `*p = new` if `*p == old` (BPF_CMPXCHG, 32-bit: kernel ≥ 5.12; the x86-64 JIT emits
/// `lock cmpxchg`); whether it was swapped.
#[inline(always)]
unsafe fn swap_word(p: *mut u32, old: StateWord, new: StateWord) -> bool {
    unsafe {
        atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, old.0, new.0)
    }
    .1
}

/// Swaps `*p` from `old` to `NO_REAL` (a claim: true for the one CPU that won it).
/// Safety: `p` points into a map value just looked up.
#[inline(always)]
pub fn claim_u32(p: *mut u32, old: u32) -> bool {
    unsafe {
        atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            p,
            old,
            lb_common::consts::NO_REAL,
        )
    }
    .1
}

/// Claims the flow for removal (sets `FlowFlags::DEAD` by compare-and-swap): the flags it
/// had, which the removal is booked by if this claimer's delete then succeeds, or `None`
/// when another remover claimed it first (that one, or lb-ctl's sweep, deletes and books
/// it) or the swap lost `STATE_CAS_TRIES` times to packets moving the flow (counted
/// `state_cas_exhausted`; the flow stays). A global function (`lb_reap`) as `move_state`.
/// Safety: as `on_packet`.
#[inline(always)]
pub unsafe fn reap(v: *mut FlowValue) -> Option<u8> {
    let r = unsafe { lb_reap(state_word(v)) };
    (r & REAP_WON != 0).then_some(r as u8)
}

/// What `claim_seen` did.
pub enum Claim {
    /// The flow is claimed (by this call, or by another remover before it): delete it; the
    /// flags (DEAD cleared) are what a successful delete books.
    Dead(u8),
    /// Not claimed: its state word or stamp is no longer what the caller saw.
    Changed,
}

/// lb_ops REAP: claims the flow only if its state word is still `seen` and its stamp still
/// `seen_last_s` (what the sweep judged it expired by); a flow another remover claimed
/// already is `Dead` too (its delete books it, whoever deletes). One swap, no retry: a
/// word that changed means a packet moved the flow, and the sweep judges it again next
/// pass. Safety: `v` is a FLOWS value pointer just looked up.
#[inline(always)]
pub unsafe fn claim_seen(v: *mut FlowValue, seen: StateWord, seen_last_s: u32) -> Claim {
    let p = state_word(v);
    let w = unsafe { load_word(p) };
    if w.dead() {
        return Claim::Dead(w.flags() & !FlowFlags::DEAD);
    }
    if w != seen || unsafe { (*v).last_seen_s } != seen_last_s {
        return Claim::Changed;
    }
    let Some(dead) = w.reaped() else {
        return Claim::Changed;
    };
    if unsafe { swap_word(p, w, dead) } {
        return Claim::Dead(w.flags());
    }
    let now = unsafe { load_word(p) };
    if now.dead() {
        Claim::Dead(now.flags() & !FlowFlags::DEAD)
    } else {
        Claim::Changed
    }
}

/// `lb_reap`'s mark of a won claim (above the flags byte).
const REAP_WON: u32 = 1 << 8;

/// `reap`'s body: `REAP_WON | flags` when this call's swap set DEAD, else 0. Safety: as
/// `lb_move_state`.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn lb_reap(word: *mut u32) -> u32 {
    if word.is_null() {
        return 0;
    }
    for _ in 0..STATE_CAS_TRIES {
        let w = unsafe { load_word(word) };
        let Some(dead) = w.reaped() else {
            return 0;
        };
        if unsafe { swap_word(word, w, dead) } {
            return REAP_WON | w.flags() as u32;
        }
    }
    crate::stats::count(Counter::STATE_CAS_EXHAUSTED);
    0
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
/// TCP move its state (and its real's counters) as IPVS does, by compare-and-swap of the
/// state word (`move_state`); a plain ACK on ESTABLISHED does no atomic at all. Safety: `v`
/// is a FLOWS value pointer just looked up, with no helper call in between.
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
    unsafe { move_state(v, real_id, reply, tcp) };
}

/// One packet's state move (`lb_common::conn::tcp_step_word`) as one compare-and-swap of
/// the state word; only the CPU whose swap wins moves the real's counters. A lost swap (the
/// word changed under it: another CPU's packet of this flow, or a remover's claim) reads
/// the word again and decides anew, at most `STATE_CAS_TRIES` times, then gives up and
/// counts `state_cas_exhausted`. A DEAD flow is not moved. `real_id`: the flow's, read
/// with the lookup. A global BPF function (`lb_move_state`), checked once by the verifier:
/// the retry loop inlined at the three places a flow's packet is handled put the program
/// over the verifier's 10^6-instruction limit. Called only by a packet that may change the
/// state (not a plain ACK on ESTABLISHED).
#[inline(always)]
unsafe fn move_state(v: *mut FlowValue, real_id: u32, reply: bool, tcp: u8) {
    unsafe { lb_move_state(state_word(v), real_id, reply as u32, tcp as u32) };
}

/// `move_state`'s body (a global function: pointer and scalar arguments only; the verifier
/// types `word` as 4 bytes of memory that may be NULL). Returns the `ConnMove` made.
/// Safety: `word` is a live FLOWS value's state word or NULL.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn lb_move_state(word: *mut u32, real_id: u32, reply: u32, tcp: u32) -> u32 {
    if word.is_null() {
        return ConnMove::None as u32;
    }
    for _ in 0..STATE_CAS_TRIES {
        let w = unsafe { load_word(word) };
        let Some((next, mv)) = lb_common::conn::tcp_step_word(w, reply != 0, tcp as u8) else {
            return ConnMove::None as u32;
        };
        if unsafe { swap_word(word, w, next) } {
            apply(real_id, mv);
            return mv as u32;
        }
    }
    crate::stats::count(Counter::STATE_CAS_EXHAUSTED);
    ConnMove::None as u32
}
