//! Connection state and accounting, with IPVS's meaning (net/netfilter/ipvs/
//! ip_vs_proto_tcp.c, ip_vs_conn.c): the TCP state a flow is in, which states count as
//! active, the per-state timeouts (`ipvsadm --set tcp tcpfin udp` sets three of them), and
//! the per-real connection counters.
//!
//! Counters are split by writer so that neither side ever does a read-modify-write on a
//! value the other side writes: the data path only adds to [`ConnEvents`] (atomically),
//! lb-ctl's sweep only adds to [`ConnExpiry`]; live counts are the difference.

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

/// The one state of a UDP flow (IPVS `IP_VS_UDP_S_NORMAL`).
pub const UDP_STATE: u8 = 0;

/// `ipvsadm --set` timeouts, in seconds (defaults as IPVS: 900 120 300).
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
            tcp_s: 900,
            tcpfin_s: 120,
            udp_s: 300,
        }
    }
}

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

/// Connection expiries on one real, written only by lb-ctl's sweep (`REAL_EXPIRED`).
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
