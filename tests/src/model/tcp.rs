//! IPVS's TCP state machine (net/netfilter/ipvs/ip_vs_proto_tcp.c: `tcp_states`,
//! `tcp_state_idx`, `set_tcp_state`, `tcp_timeouts`), the normal (not secure_tcp) table.

/// `IP_VS_TCP_S_*`, same numbering as `lb_common::conn::TcpState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    /// NONE.
    None = 0,
    /// ESTABLISHED.
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

/// Packet direction as IPVS sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → real.
    Input,
    /// Real → client (NAT replies).
    Output,
    /// Client → real on a connection that has seen no reply (`IP_VS_CONN_F_NOOUTPUT`).
    InputOnly,
}

/// TCP flag bits that matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// ACK.
    pub ack: bool,
    /// RST.
    pub rst: bool,
}

impl Flags {
    /// The flag bits of a TCP header byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub fn from_byte(b: u8) -> Flags {
        Flags {
            syn: b & 0x02 != 0,
            fin: b & 0x01 != 0,
            ack: b & 0x10 != 0,
            rst: b & 0x04 != 0,
        }
    }

    /// SYN.
    pub const SYN: Flags = Flags {
        syn: true,
        fin: false,
        ack: false,
        rst: false,
    };
    /// ACK.
    pub const ACK: Flags = Flags {
        syn: false,
        fin: false,
        ack: true,
        rst: false,
    };
    /// FIN+ACK.
    pub const FIN: Flags = Flags {
        syn: false,
        fin: true,
        ack: true,
        rst: false,
    };
    /// SYN+ACK.
    pub const SYNACK: Flags = Flags {
        syn: true,
        fin: false,
        ack: true,
        rst: false,
    };
    /// RST.
    pub const RST: Flags = Flags {
        syn: false,
        fin: false,
        ack: false,
        rst: true,
    };
}

/// Every state, by number.
pub const ALL: [State; 11] = [
    State::None,
    State::Established,
    State::SynSent,
    State::SynRecv,
    State::FinWait,
    State::TimeWait,
    State::Close,
    State::CloseWait,
    State::LastAck,
    State::Listen,
    State::SynAck,
];

use State::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `tcp_states[]`: [direction][syn, fin, ack, rst][current state].
const TABLE: [[[State; 11]; 4]; 3] = [
    // INPUT
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// `tcp_state_idx`: RST first, then SYN, FIN, ACK; none of them → None.
fn idx(f: Flags) -> Option<usize> {
    if f.rst {
        Some(3)
    } else if f.syn {
        Some(0)
    } else if f.fin {
        Some(1)
    } else if f.ack {
        Some(2)
    } else {
        None
    }
}

/// The next state (`set_tcp_state`, after the NOOUTPUT direction fix-up): a segment with
/// none of the four flags moves the connection to CLOSE.
pub fn next(dir: Dir, f: Flags, cur: State) -> State {
    let d = match dir {
        Dir::Input => 0,
        Dir::Output => 1,
        Dir::InputOnly => 2,
    };
    match idx(f) {
        Some(i) => TABLE[d][i][cur as usize],
        None => State::Close,
    }
}

/// `tcp_timeouts[IP_VS_TCP_S_ESTABLISHED]`, the `--set tcp` default: 15 minutes.
pub const IPVS_TCP_S: u32 = 900;
/// `tcp_timeouts[IP_VS_TCP_S_FIN_WAIT]`, the `--set tcpfin` default: 2 minutes.
pub const IPVS_TCPFIN_S: u32 = 120;
/// `udp_timeouts[IP_VS_UDP_S_NORMAL]` (ip_vs_proto_udp.c), the `--set udp` default: 5
/// minutes.
pub const IPVS_UDP_S: u32 = 300;

/// Whether a connection (or template) last used at `last` has expired at `now`, in whole
/// seconds: IPVS arms its timer for `timeout` after each use and the timer fires after
/// that, so a connection idle exactly `timeout` seconds is still there. Wrapping seconds;
/// a stamp after `now` is fresh.
pub fn expired(now: u32, last: u32, timeout: u32) -> bool {
    let idle = now.wrapping_sub(last) as i32;
    idle > timeout as i32
}

/// `tcp_timeouts` in seconds, with `--set tcp tcpfin` applied to ESTABLISHED and FIN_WAIT.
pub fn timeout_s(s: State, tcp: u32, tcpfin: u32) -> u32 {
    match s {
        State::None => 2,
        State::Established => tcp,
        State::SynSent => 120,
        State::SynRecv => 60,
        State::FinWait => tcpfin,
        State::TimeWait => 120,
        State::Close => 10,
        State::CloseWait => 60,
        State::LastAck => 30,
        State::Listen => 120,
        State::SynAck => 120,
    }
}
