//! Connection state and accounting, with IPVS's meaning (net/netfilter/ipvs/
//! ip_vs_proto_tcp.c, ip_vs_conn.c): the TCP state a flow is in, which states count as
//! active, the per-state timeouts (`ipvsadm --set tcp tcpfin udp` sets three of them), and
//! the per-real connection counters.
//!
//! Counters are split by writer so that neither side ever does a read-modify-write on a
//! value the other side writes: the data path only adds to [`ConnEvents`] (atomically),
//! lb-ctl only adds to [`ConnExpiry`] (the sweep's expiries; `-a` settling a reused id,
//! [`ConnExpiry::settling`]); live counts are the difference.

use crate::consts::{
    DEFAULT_TCP_TIMEOUT_S, DEFAULT_TCPFIN_TIMEOUT_S, DEFAULT_UDP_TIMEOUT_S, TCP_LAST_TIMEOUT_S,
    TCP_TIMEOUTS_S,
};
use bytemuck::{Pod, Zeroable};

/// IPVS TCP connection states (`IP_VS_TCP_S_*`), stored in `FlowValue::state`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// NONE.
    None = 0,
    /// ESTABLISHED: the only state counted as an active connection.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
}

/// Number of TCP states.
pub const TCP_STATES: usize = 11;
const _: () = assert!(TCP_TIMEOUTS_S.len() == TCP_STATES);

impl TcpState {
    /// From the stored byte.
    pub const fn from_u8(v: u8) -> Option<TcpState> {
        match v {
            0 => Some(TcpState::None),
            1 => Some(TcpState::Established),
            2 => Some(TcpState::SynSent),
            3 => Some(TcpState::SynRecv),
            4 => Some(TcpState::FinWait),
            5 => Some(TcpState::TimeWait),
            6 => Some(TcpState::Close),
            7 => Some(TcpState::CloseWait),
            8 => Some(TcpState::LastAck),
            9 => Some(TcpState::Listen),
            10 => Some(TcpState::SynAck),
            _ => None,
        }
    }
    /// IPVS's name (`ipvsadm -L -c`, /proc/net/ip_vs_conn).
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }
}

/// TCP header flag bits (byte 13 of the header).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// TCP state table event of a header's flags, as IPVS `tcp_state_idx`: RST wins over SYN,
/// SYN over FIN, FIN over ACK. `None` when none of them is set (IPVS then moves the flow
/// to CLOSE).
#[inline(always)]
pub const fn tcp_event(flags: u8) -> Option<usize> {
    if flags & tcp_flags::RST != 0 {
        Some(3)
    } else if flags & tcp_flags::SYN != 0 {
        Some(0)
    } else if flags & tcp_flags::FIN != 0 {
        Some(1)
    } else if flags & tcp_flags::ACK != 0 {
        Some(2)
    } else {
        None
    }
}

const S_NO: u8 = TcpState::None as u8;
const S_ES: u8 = TcpState::Established as u8;
const S_SS: u8 = TcpState::SynSent as u8;
const S_SR: u8 = TcpState::SynRecv as u8;
const S_FW: u8 = TcpState::FinWait as u8;
const S_TW: u8 = TcpState::TimeWait as u8;
const S_CL: u8 = TcpState::Close as u8;
const S_CW: u8 = TcpState::CloseWait as u8;
const S_LA: u8 = TcpState::LastAck as u8;
const S_LI: u8 = TcpState::Listen as u8;

/// Table of [`TCP_STATE_TABLE`]: client → real packets of a flow that has seen a reply.
pub const TCP_DIR_INPUT: usize = 0;
/// Table of [`TCP_STATE_TABLE`]: real → client packets (NAT replies).
pub const TCP_DIR_OUTPUT: usize = 1;
/// Table of [`TCP_STATE_TABLE`]: client → real packets of a flow with no reply seen yet
/// ([`crate::FlowFlags::NO_OUTPUT`]; always so for DR and TUN).
pub const TCP_DIR_INPUT_ONLY: usize = 2;

/// IPVS's TCP state table (`tcp_states` in ip_vs_proto_tcp.c, secure_tcp off), indexed
/// `[direction][event][state]`: direction `TCP_DIR_*`, event from [`tcp_event`] (syn, fin,
/// ack, rst), state the current [`TcpState`]; the value is the next state.
pub const TCP_STATE_TABLE: [[[u8; TCP_STATES]; 4]; 3] = [
    // INPUT
    [
        //  sNO   sES   sSS   sSR   sFW   sTW   sCL   sCW   sLA   sLI   sSA
        [
            S_SR, S_ES, S_ES, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR,
        ], // syn
        [
            S_CL, S_CW, S_SS, S_TW, S_TW, S_TW, S_CL, S_CW, S_LA, S_LI, S_TW,
        ], // fin
        [
            S_CL, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_CL, S_LI, S_ES,
        ], // ack
        [
            S_CL, S_CL, S_CL, S_SR, S_CL, S_CL, S_CL, S_CL, S_LA, S_LI, S_SR,
        ], // rst
    ],
    // OUTPUT
    [
        [
            S_SS, S_ES, S_SS, S_SR, S_SS, S_SS, S_SS, S_SS, S_SS, S_LI, S_SR,
        ], // syn
        [
            S_TW, S_FW, S_SS, S_TW, S_FW, S_TW, S_CL, S_TW, S_LA, S_LI, S_TW,
        ], // fin
        [
            S_ES, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_LA, S_ES, S_ES,
        ], // ack
        [
            S_CL, S_CL, S_SS, S_CL, S_CL, S_TW, S_CL, S_CL, S_CL, S_CL, S_CL,
        ], // rst
    ],
    // INPUT-ONLY
    [
        [
            S_SR, S_ES, S_ES, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR,
        ], // syn
        [
            S_CL, S_FW, S_SS, S_TW, S_FW, S_TW, S_CL, S_CW, S_LA, S_LI, S_TW,
        ], // fin
        [
            S_CL, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_CL, S_LI, S_ES,
        ], // ack
        [
            S_CL, S_CL, S_CL, S_SR, S_CL, S_CL, S_CL, S_CL, S_LA, S_LI, S_CL,
        ], // rst
    ],
];

/// Whether a TCP state counts as an active connection (IPVS `set_tcp_state`: only
/// ESTABLISHED does). UDP flows never move: they stay counted as bound, inactive
/// (IPVS `udp_state_transition` only sets the timeout; see [`bind_flags`]).
#[inline(always)]
pub const fn is_active(state: u8) -> bool {
    state == S_ES
}

/// Flags of a new flow at bind, as IPVS: the real's `conn_flags` always carry
/// `IP_VS_CONN_F_INACTIVE` (ip_vs_ctl.c `__ip_vs_update_dest`), so `ip_vs_bind_dest`
/// counts every new connection inactive, TCP and UDP alike; only a TCP move to ESTABLISHED
/// makes it active. Non-NAT reals add `IP_VS_CONN_F_NOOUTPUT` (DR and TUN never see
/// replies). The data path counts the bind as `opened += 1, to_inactive += 1`, so
/// [`conn_counts`] shows it inactive.
#[inline(always)]
pub const fn bind_flags(nat: bool) -> u8 {
    use crate::flow::FlowFlags;
    if nat {
        FlowFlags::INACTIVE
    } else {
        FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT
    }
}

/// How a state change moves a flow between its real's active and inactive counters.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMove {
    /// Counters unchanged.
    None = 0,
    /// Active → inactive (add 1 to `ConnEvents::to_inactive`).
    ToInactive = 1,
    /// Inactive → active (add 1 to `ConnEvents::to_active`).
    ToActive = 2,
}

/// The outcome of one TCP packet on a flow: its new state and flags, and the counter move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpStep {
    /// New [`TcpState`] as u8.
    pub state: u8,
    /// New [`crate::FlowFlags`].
    pub flags: u8,
    /// Counter move to apply to the flow's real.
    pub conn: ConnMove,
}

/// IPVS `conn_reuse_mode` 1, its default (`ip_vs_in_hook`): the first packet of a new
/// connection (a TCP SYN, `is_new_conn`) that finds a connection expires it at once and is
/// a new connection when `expire_nodest_conn` is on and the connection's real has weight 0
/// (`nodest_quiescent`), or when the connection is in TIME_WAIT or CLOSE
/// (`is_new_conn_expected`) and not controlled by a persistence template (`cp->control`;
/// the caller checks that, for this second reason only, as IPVS does).
/// Mode bit 2 (FIN_WAIT without output) is not IPVS's default and not done. `state`: the
/// flow's [`TcpState`] as u8.
#[inline(always)]
pub fn syn_expires_flow(state: u8, nodest_quiescent: bool) -> bool {
    nodest_quiescent || state == TcpState::TimeWait as u8 || state == TcpState::Close as u8
}

/// IPVS `set_tcp_state` for one packet: `state` and `flow_flags` are the flow's
/// (`FlowValue::state`, `FlowValue::flags`), `reply` is true for a real → client packet
/// (NAT return), `tcp_flags` the header's flag byte. A reply clears `NO_OUTPUT`; a client
/// packet of a flow without a reply uses the INPUT-ONLY table. When the state changes, a
/// flow not marked inactive that leaves ESTABLISHED (or never reached it) becomes inactive,
/// an inactive one that reaches ESTABLISHED becomes active. An unknown stored state is
/// treated as NONE.
#[inline(always)]
pub fn tcp_transition(state: u8, flow_flags: u8, reply: bool, tcp_flags: u8) -> TcpStep {
    use crate::flow::FlowFlags;
    let mut flags = flow_flags;
    let mut dir = if reply { TCP_DIR_OUTPUT } else { TCP_DIR_INPUT };
    if flags & FlowFlags::NO_OUTPUT != 0 {
        if reply {
            flags &= !FlowFlags::NO_OUTPUT;
        } else {
            dir = TCP_DIR_INPUT_ONLY;
        }
    }
    let cur = if (state as usize) < TCP_STATES {
        state
    } else {
        S_NO
    };
    let next = match tcp_event(tcp_flags) {
        Some(ev) => TCP_STATE_TABLE[dir][ev][cur as usize],
        None => S_CL,
    };
    let mut conn = ConnMove::None;
    if next != state {
        let inactive = flags & FlowFlags::INACTIVE != 0;
        if !inactive && next != S_ES {
            flags |= FlowFlags::INACTIVE;
            conn = ConnMove::ToInactive;
        } else if inactive && next == S_ES {
            flags &= !FlowFlags::INACTIVE;
            conn = ConnMove::ToActive;
        }
    }
    TcpStep {
        state: next,
        flags,
        conn,
    }
}

/// [`tcp_transition`] on a flow's whole state word (`crate::StateWord`), as the data path
/// applies it by compare-and-swap: the word to swap in and the counter move the CPU whose
/// swap wins makes, or `None` when the packet changes nothing or the flow is claimed for
/// removal (`FlowFlags::DEAD`: nobody moves or counts it any more). `fwd` and `_pad` are
/// kept.
#[inline(always)]
pub fn tcp_step_word(
    w: crate::StateWord,
    reply: bool,
    tcp_flags: u8,
) -> Option<(crate::StateWord, ConnMove)> {
    if w.dead() {
        return None;
    }
    let st = tcp_transition(w.state(), w.flags(), reply, tcp_flags);
    if st.state == w.state() && st.flags == w.flags() {
        return None;
    }
    Some((w.with(st.state, st.flags), st.conn))
}

/// How long a flow in `state` lives without a packet, as IPVS: TCP by state
/// ([`TCP_TIMEOUTS_S`] with `t.tcp_s` for ESTABLISHED and `t.tcpfin_s` for FIN_WAIT; an
/// unknown state gets [`TCP_LAST_TIMEOUT_S`] as IPVS's `IP_VS_TCP_S_LAST` entry), UDP `t.udp_s`, anything
/// else `t.udp_s` too. A zero in `t` means the default.
pub fn state_timeout_s(proto: u8, state: u8, t: &Timeouts) -> u32 {
    let d = Timeouts::default();
    let or = |v: u32, dflt: u32| if v == 0 { dflt } else { v };
    if proto != crate::consts::proto::TCP {
        return or(t.udp_s, d.udp_s);
    }
    match TcpState::from_u8(state) {
        Some(TcpState::Established) => or(t.tcp_s, d.tcp_s),
        Some(TcpState::FinWait) => or(t.tcpfin_s, d.tcpfin_s),
        Some(s) => TCP_TIMEOUTS_S[s as usize],
        None => TCP_LAST_TIMEOUT_S,
    }
}

/// ipvsadm's state name of a flow (`-L -c`): the TCP state's name, "UDP" for UDP.
pub fn state_name(proto: u8, state: u8) -> &'static str {
    if proto != crate::consts::proto::TCP {
        return "UDP";
    }
    match TcpState::from_u8(state) {
        Some(s) => s.name(),
        None => "ERR!",
    }
}

/// The one state of a UDP flow (IPVS `IP_VS_UDP_S_NORMAL`).
pub const UDP_STATE: u8 = 0;

/// `ipvsadm --set` timeouts, in seconds (defaults as IPVS: [`DEFAULT_TCP_TIMEOUT_S`],
/// [`DEFAULT_TCPFIN_TIMEOUT_S`], [`DEFAULT_UDP_TIMEOUT_S`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp_s: u32,
    /// TCP FIN_WAIT.
    pub tcpfin_s: u32,
    /// UDP.
    pub udp_s: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_s: DEFAULT_TCP_TIMEOUT_S,
            tcpfin_s: DEFAULT_TCPFIN_TIMEOUT_S,
            udp_s: DEFAULT_UDP_TIMEOUT_S,
        }
    }
}

/// Director-wide settings, one element of the `SETTINGS` array, written by lb-ctl: the
/// `--set` timeouts and IPVS's sysctls that change the data path's behaviour.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Settings {
    /// `ipvsadm --set tcp tcpfin udp`; a zero field means the default.
    pub timeouts: Timeouts,
    /// IPVS `expire_nodest_conn` (0 or 1, default 0): with 0 a packet of a flow whose real
    /// was deleted is dropped (`Drop::RealGone`) until the flow expires; with 1 the flow is
    /// expired at that packet and the packet scheduled anew.
    pub expire_nodest_conn: u32,
    /// IPVS `expire_quiescent_template` (0 or 1, default 0): with 1 a persistence template
    /// whose real has weight 0 is not used (and is replaced by a new choice).
    pub expire_quiescent_template: u32,
}
const _: () = assert!(core::mem::size_of::<Settings>() == 20);

/// Connection events on one real, written only by the data path (atomic adds), in the
/// shared (not per-CPU) `REAL_CONNS` array so load-driven schedulers read live values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnEvents {
    /// Connections bound to the real, counted active at bind as IPVS does.
    pub opened: u64,
    /// Active → inactive moves.
    pub to_inactive: u64,
    /// Inactive → active moves.
    pub to_active: u64,
    /// Persistence templates created for the real.
    pub templates: u64,
    /// IPVS `IP_VS_DEST_F_OVERLOAD` as the data path last decided it (0 or 1): set when
    /// the connection count reaches the upper threshold, cleared below the lower one.
    pub overloaded: u64,
}
const _: () = assert!(core::mem::size_of::<ConnEvents>() == 40);

/// Connection expiries on one real, written only by lb-ctl (`REAL_EXPIRED`): its sweep,
/// and `-a` settling an id it gives to another real.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnExpiry {
    /// Active connections expired or removed.
    pub active: u64,
    /// Inactive connections expired or removed.
    pub inactive: u64,
    /// Templates expired or removed.
    pub templates: u64,
}
const _: () = assert!(core::mem::size_of::<ConnExpiry>() == 24);

impl ConnExpiry {
    /// The expiries that bring a real's live counts ([`conn_counts`]) to zero, given its
    /// events `ev`: what lb-ctl writes into REAL_EXPIRED when it gives a deleted real's id
    /// to another real. The old real's connections still counted there are stale from
    /// then on (their references carry the old generation, `crate::Real::generation`), so neither
    /// the data path nor the sweep takes them off again; the new real starts from zero,
    /// as a new IPVS dest does.
    pub fn settling(ev: &ConnEvents) -> ConnExpiry {
        ConnExpiry {
            active: ev
                .opened
                .wrapping_add(ev.to_active)
                .wrapping_sub(ev.to_inactive),
            inactive: ev.to_inactive.wrapping_sub(ev.to_active),
            templates: ev.templates,
        }
    }
}

/// Live counts of one real, as ipvsadm -L shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// ActiveConn.
    pub active: u64,
    /// InActConn.
    pub inactive: u64,
    /// PersistConn.
    pub persistent: u64,
}

/// Live counts from the two writers' counters (wrapping: each side's counters only grow).
#[inline(always)]
pub fn conn_counts(ev: &ConnEvents, ex: &ConnExpiry) -> ConnCounts {
    ConnCounts {
        active: ev
            .opened
            .wrapping_add(ev.to_active)
            .wrapping_sub(ev.to_inactive)
            .wrapping_sub(ex.active),
        inactive: ev
            .to_inactive
            .wrapping_sub(ev.to_active)
            .wrapping_sub(ex.inactive),
        persistent: ev.templates.wrapping_sub(ex.templates),
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;
    use crate::consts::proto;
    use crate::flow::FlowFlags;

    /// Runs packets (reply?, flags) through a new flow; returns states and live counts.
    fn run(nat: bool, pkts: &[(bool, u8)]) -> (std::vec::Vec<TcpState>, ConnCounts) {
        let mut ev = ConnEvents {
            opened: 1,
            to_inactive: 1,
            ..Default::default()
        };
        let (mut state, mut flags) = (TcpState::None as u8, bind_flags(nat));
        let mut states = std::vec::Vec::new();
        for &(reply, f) in pkts {
            let st = tcp_transition(state, flags, reply, f);
            match st.conn {
                ConnMove::None => {}
                ConnMove::ToInactive => ev.to_inactive += 1,
                ConnMove::ToActive => ev.to_active += 1,
            }
            state = st.state;
            flags = st.flags;
            states.push(TcpState::from_u8(state).unwrap());
            // The flow's INACTIVE flag always agrees with the counters.
            let c = conn_counts(&ev, &ConnExpiry::default());
            assert_eq!(c.active + c.inactive, 1);
            assert_eq!(c.inactive == 1, flags & FlowFlags::INACTIVE != 0);
        }
        (states, conn_counts(&ev, &ConnExpiry::default()))
    }

    #[test]
    fn settling_brings_every_count_to_zero() {
        let ev = ConnEvents {
            opened: 10,
            to_inactive: 14,
            to_active: 7,
            templates: 3,
            overloaded: 1,
        };
        let c = conn_counts(&ev, &ConnExpiry::default());
        assert_eq!((c.active, c.inactive, c.persistent), (3, 7, 3));
        assert_eq!(
            conn_counts(&ev, &ConnExpiry::settling(&ev)),
            ConnCounts::default()
        );
        // Wrapped counters (the data path's wrapping −1s) settle too.
        let ev = ConnEvents {
            opened: u64::MAX,
            to_inactive: 0,
            ..Default::default()
        };
        assert_eq!(
            conn_counts(&ev, &ConnExpiry::settling(&ev)),
            ConnCounts::default()
        );
    }

    #[test]
    fn dr_handshake_and_close_follow_input_only_table() {
        use TcpState::*;
        let (s, c) = run(
            false,
            &[(false, SYN), (false, ACK), (false, ACK), (false, FIN | ACK)],
        );
        assert_eq!(s, [SynRecv, Established, Established, FinWait]);
        assert_eq!((c.active, c.inactive), (0, 1));
        let (_, c) = run(false, &[(false, SYN), (false, ACK)]);
        assert_eq!((c.active, c.inactive), (1, 0));
    }

    #[test]
    fn syn_expires_only_time_wait_and_close_or_quiescent_nodest() {
        for st in 0..TCP_STATES as u8 {
            let reuse = st == TcpState::TimeWait as u8 || st == TcpState::Close as u8;
            assert_eq!(syn_expires_flow(st, false), reuse, "state {st}");
            assert!(syn_expires_flow(st, true), "state {st}");
        }
    }

    #[test]
    fn new_flow_is_inactive_until_established() {
        let (s, c) = run(false, &[(false, SYN)]);
        assert_eq!(s, [TcpState::SynRecv]);
        assert_eq!((c.active, c.inactive), (0, 1));
    }

    #[test]
    fn rst_moves_established_to_close_and_inactive() {
        use TcpState::*;
        let (s, c) = run(false, &[(false, SYN), (false, ACK), (false, RST | ACK)]);
        assert_eq!(s, [SynRecv, Established, Close]);
        assert_eq!((c.active, c.inactive), (0, 1));
    }

    #[test]
    fn nat_uses_input_and_output_tables() {
        use TcpState::*;
        // SYN, SYN-ACK, ACK, client FIN, server FIN, client ACK.
        let (s, c) = run(
            true,
            &[
                (false, SYN),
                (true, SYN | ACK),
                (false, ACK),
                (false, FIN | ACK),
                (true, FIN | ACK),
                (false, ACK),
            ],
        );
        assert_eq!(
            s,
            [SynRecv, SynRecv, Established, CloseWait, TimeWait, TimeWait]
        );
        assert_eq!((c.active, c.inactive), (0, 1));
    }

    #[test]
    fn first_reply_clears_no_output() {
        let st = tcp_transition(
            TcpState::SynRecv as u8,
            FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT,
            true,
            SYN | ACK,
        );
        assert_eq!(st.flags, FlowFlags::INACTIVE);
        assert_eq!(st.state, TcpState::SynRecv as u8);
        assert_eq!(st.conn, ConnMove::None);
    }

    #[test]
    fn input_only_fin_on_established_is_fin_wait_input_is_close_wait() {
        let es = TcpState::Established as u8;
        let a = tcp_transition(es, FlowFlags::NO_OUTPUT, false, FIN | ACK);
        let b = tcp_transition(es, 0, false, FIN | ACK);
        assert_eq!(a.state, TcpState::FinWait as u8);
        assert_eq!(b.state, TcpState::CloseWait as u8);
        assert_eq!(a.conn, ConnMove::ToInactive);
        assert_eq!(a.flags, FlowFlags::NO_OUTPUT | FlowFlags::INACTIVE);
    }

    #[test]
    fn no_flags_close_and_event_priority() {
        let st = tcp_transition(TcpState::Established as u8, 0, false, 0);
        assert_eq!(st.state, TcpState::Close as u8);
        assert_eq!(st.conn, ConnMove::ToInactive);
        assert_eq!(tcp_event(RST | SYN | FIN | ACK), Some(3));
        assert_eq!(tcp_event(SYN | FIN | ACK), Some(0));
        assert_eq!(tcp_event(FIN | ACK), Some(1));
        assert_eq!(tcp_event(ACK), Some(2));
        assert_eq!(tcp_event(0x08), None);
    }

    #[test]
    fn unchanged_state_moves_no_counter() {
        // ESTABLISHED + ACK stays: the data path's fast path skips the table for it.
        let es = TcpState::Established as u8;
        for table in &TCP_STATE_TABLE {
            assert_eq!(table[2][es as usize], es);
        }
        let st = tcp_transition(es, FlowFlags::NO_OUTPUT, false, ACK);
        assert_eq!((st.state, st.conn), (es, ConnMove::None));
        // Inactive CLOSE + ACK stays CLOSE, still inactive.
        let cl = TcpState::Close as u8;
        let st = tcp_transition(cl, FlowFlags::INACTIVE, false, ACK);
        assert_eq!(
            (st.state, st.flags, st.conn),
            (cl, FlowFlags::INACTIVE, ConnMove::None)
        );
    }

    /// One CPU of the state-word protocol (lb-ebpf `conn::on_packet`, the removers'
    /// claim): read the word, decide, compare-and-swap; a lost swap reads again, at most
    /// `STATE_CAS_TRIES` times.
    #[derive(Clone, Copy)]
    enum Act {
        /// A TCP packet (reply?, flags).
        Packet(bool, u8),
        /// A remover claiming the flow (DEAD) and booking the removal as the sweep does.
        Reap,
    }

    #[derive(Clone, Copy)]
    struct Cpu {
        act: Act,
        seen: Option<crate::StateWord>,
        tries: u32,
        done: bool,
    }

    #[derive(Clone)]
    struct World {
        w: crate::StateWord,
        ev: ConnEvents,
        ex: ConnExpiry,
        cpus: std::vec::Vec<Cpu>,
    }

    /// Runs one atomic step of CPU `i`: its read, or its decision and swap.
    fn step(mut wd: World, i: usize) -> World {
        let c = &mut wd.cpus[i];
        let Some(seen) = c.seen else {
            c.seen = Some(wd.w);
            return wd;
        };
        let next = match c.act {
            Act::Packet(reply, f) => tcp_step_word(seen, reply, f).map(|(n, mv)| (n, Some(mv))),
            Act::Reap => seen.reaped().map(|n| (n, None)),
        };
        let Some((n, mv)) = next else {
            c.done = true;
            return wd;
        };
        if wd.w != seen {
            c.tries += 1;
            c.seen = None;
            c.done = c.tries == crate::consts::STATE_CAS_TRIES;
            return wd;
        }
        wd.w = n;
        c.done = true;
        match mv {
            Some(ConnMove::ToInactive) => wd.ev.to_inactive += 1,
            Some(ConnMove::ToActive) => wd.ev.to_active += 1,
            Some(ConnMove::None) => {}
            // The claim's winner books the flow by the flags it won with.
            None if seen.flags() & FlowFlags::INACTIVE != 0 => wd.ex.inactive += 1,
            None => wd.ex.active += 1,
        }
        wd
    }

    /// Every interleaving of the CPUs' steps; at each end the real's counts must be what
    /// the word says (one connection, active or inactive by its flag; none once DEAD).
    fn every_interleaving(wd: World, ends: &mut u32) {
        let mut moved = false;
        for i in 0..wd.cpus.len() {
            if !wd.cpus[i].done {
                moved = true;
                every_interleaving(step(wd.clone(), i), ends);
            }
        }
        if moved {
            return;
        }
        *ends += 1;
        let c = conn_counts(&wd.ev, &wd.ex);
        let want = if wd.w.dead() {
            (0, 0)
        } else if wd.w.flags() & FlowFlags::INACTIVE != 0 {
            (0, 1)
        } else {
            (1, 0)
        };
        assert_eq!((c.active, c.inactive), want, "word {:#x}", wd.w.0);
    }

    #[test]
    fn state_word_swaps_count_each_move_once_in_every_interleaving() {
        let starts = [
            (TcpState::Established, 0),
            (TcpState::Established, FlowFlags::NO_OUTPUT),
            (TcpState::SynRecv, FlowFlags::INACTIVE),
            (TcpState::CloseWait, FlowFlags::INACTIVE),
            (TcpState::TimeWait, FlowFlags::INACTIVE),
        ];
        let acts = [
            Act::Packet(false, FIN | ACK),
            Act::Packet(true, FIN | ACK),
            Act::Packet(true, RST),
            Act::Packet(false, ACK),
            Act::Packet(false, SYN),
            Act::Reap,
        ];
        let mut ends = 0;
        for (st, flags) in starts {
            // The connection is bound (inactive), then made active if it is so.
            let active = flags & FlowFlags::INACTIVE == 0;
            let ev = ConnEvents {
                opened: 1,
                to_inactive: 1,
                to_active: active as u64,
                ..Default::default()
            };
            for a in acts {
                for b in acts {
                    for c in [None, Some(Act::Reap), Some(Act::Packet(true, FIN | ACK))] {
                        let cpu = |act| Cpu {
                            act,
                            seen: None,
                            tries: 0,
                            done: false,
                        };
                        let mut cpus = std::vec![cpu(a), cpu(b)];
                        cpus.extend(c.map(cpu));
                        let wd = World {
                            w: crate::StateWord::new(st as u8, flags, 3, 0),
                            ev,
                            ex: ConnExpiry::default(),
                            cpus,
                        };
                        every_interleaving(wd, &mut ends);
                    }
                }
            }
        }
        assert!(ends > 10_000, "{ends} interleavings");
    }

    #[test]
    fn dead_word_moves_no_more_and_step_keeps_fwd() {
        let es = TcpState::Established as u8;
        let w = crate::StateWord::new(es, 0, 3, 0);
        let (n, mv) = tcp_step_word(w, false, FIN | ACK).unwrap();
        assert_eq!(mv, ConnMove::ToInactive);
        assert_eq!(
            n,
            crate::StateWord::new(TcpState::CloseWait as u8, FlowFlags::INACTIVE, 3, 0)
        );
        // A plain ACK on ESTABLISHED changes nothing: no swap at all.
        assert_eq!(tcp_step_word(w, false, ACK), None);
        let dead = w.reaped().unwrap();
        assert_eq!(tcp_step_word(dead, false, FIN | ACK), None);
        assert_eq!(tcp_step_word(dead, true, RST), None);
    }

    #[test]
    fn unknown_state_is_treated_as_none() {
        let st = tcp_transition(200, FlowFlags::INACTIVE, false, SYN);
        assert_eq!(st.state, TcpState::SynRecv as u8);
    }

    #[test]
    fn timeouts_by_state() {
        let t = Timeouts::default();
        let tcp = |s: TcpState| state_timeout_s(proto::TCP, s as u8, &t);
        assert_eq!(tcp(TcpState::Established), 900);
        assert_eq!(tcp(TcpState::FinWait), 120);
        assert_eq!(tcp(TcpState::SynRecv), 60);
        assert_eq!(tcp(TcpState::Close), 10);
        assert_eq!(tcp(TcpState::TimeWait), 120);
        assert_eq!(tcp(TcpState::CloseWait), 60);
        assert_eq!(tcp(TcpState::LastAck), 30);
        assert_eq!(tcp(TcpState::None), 2);
        assert_eq!(state_timeout_s(proto::TCP, 99, &t), 2);
        assert_eq!(state_timeout_s(proto::UDP, UDP_STATE, &t), 300);
        let set = Timeouts {
            tcp_s: 10,
            tcpfin_s: 5,
            udp_s: 7,
        };
        assert_eq!(
            state_timeout_s(proto::TCP, TcpState::Established as u8, &set),
            10
        );
        assert_eq!(
            state_timeout_s(proto::TCP, TcpState::FinWait as u8, &set),
            5
        );
        assert_eq!(
            state_timeout_s(proto::TCP, TcpState::TimeWait as u8, &set),
            120
        );
        assert_eq!(state_timeout_s(proto::UDP, UDP_STATE, &set), 7);
        let zero = Timeouts {
            tcp_s: 0,
            tcpfin_s: 0,
            udp_s: 0,
        };
        assert_eq!(state_timeout_s(proto::UDP, UDP_STATE, &zero), 300);
    }

    #[test]
    fn names_and_round_trip() {
        for v in 0..TCP_STATES as u8 {
            assert_eq!(TcpState::from_u8(v).unwrap() as u8, v);
        }
        assert_eq!(TcpState::from_u8(11), None);
        assert_eq!(state_name(proto::TCP, 1), "ESTABLISHED");
        assert_eq!(state_name(proto::UDP, 0), "UDP");
        assert!(is_active(TcpState::Established as u8));
        assert!(!is_active(TcpState::SynRecv as u8));
    }
}
