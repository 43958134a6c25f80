//! The values that carry a packet's fate between the stages (leaf: defined here, used by
//! every stage): where it goes ([`Dest`]), how a balanced packet leaves ([`Sent`], [`Out`])
//! and the early way out of `try_lb` ([`Exit`]). Counted once, at exit (`stats::count_exit`).

use lb_common::{Counter, Drop, Pass};

/// Where a packet goes: ids only. Verifier note: no map-value pointer travels in this
/// struct (or in the `Option` that wraps it). LLVM may pack a small aggregate into one
/// register with shifts, and the verifier rejects any shift of a pointer ("pointer
/// arithmetic with >>= operator prohibited"); `forward` re-reads the REALS array (an
/// inlined lookup) instead.
#[derive(Clone, Copy)]
pub struct Dest {
    /// The real's id (REALS index, REAL_STATS index).
    pub real_id: u32,
    /// Its service's id (SVC_STATS index).
    pub svc_id: u32,
    /// How to forward (`ForwardMode` as u8): an established flow's recorded method
    /// (`FlowValue::fwd`), a new flow's the real's mode; 0 (a flow recorded by an older lb)
    /// = the real's current mode.
    pub fwd: u8,
    /// First packet of a newly scheduled flow (NAT records its reverse entry then).
    pub new_flow: bool,
}

/// How a balanced packet leaves.
pub enum Out {
    /// Back out the interface it came in on (XDP_TX).
    Tx,
    /// Out another interface through TX_PORTS (XDP_REDIRECT).
    Redirect,
}

/// A balanced packet on its way out: how it leaves and what was done to it (FWD_DR,
/// FWD_TUN, FWD_NAT or NAT_RETURN), counted at exit with RX in one counters lookup.
pub struct Sent {
    /// The way out.
    pub out: Out,
    /// The forwarding counter: FWD_DR, FWD_TUN, FWD_NAT or NAT_RETURN.
    pub fwd_counter: Counter,
    /// The first packet of a newly scheduled flow: NEW_FLOW is counted with the others.
    pub new_flow: bool,
}

/// An early way out of `try_lb`, carried by `?`: handed to the stack untouched or dropped,
/// each with its reason (never an integer sentinel).
pub enum Exit {
    /// XDP_PASS.
    Pass(Pass),
    /// XDP_DROP.
    Drop(Drop),
}

impl From<Drop> for Exit {
    #[inline(always)]
    fn from(d: Drop) -> Self {
        Exit::Drop(d)
    }
}

impl From<Pass> for Exit {
    #[inline(always)]
    fn from(p: Pass) -> Self {
        Exit::Pass(p)
    }
}
