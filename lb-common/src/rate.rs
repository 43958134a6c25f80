//! The state of IPVS's rate estimator for one service or one real (`struct
//! ip_vs_estimator`, include/net/ip_vs.h): the counters at the last tick and the scaled
//! moving averages. Kept in the SVC_RATE / REAL_RATE arrays, which only lb-ctl's resident
//! process (the sweeper's rate thread) writes and `-L --rate` reads; the data path never
//! touches them. The arithmetic is lb-ctl's (`lb_ctl::rate`).

use crate::Traffic;
use bytemuck::{Pod, Zeroable};

/// Scaled averages, as IPVS keeps them: packets and connections per second × 2^10, bytes
/// per second × 2^5 (`ip_vs_estimator`'s `cps inpps outpps inbps outbps`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ScaledRates {
    /// Connections per second × 2^10.
    pub cps: u64,
    /// Packets in per second × 2^10.
    pub in_pps: u64,
    /// Packets out per second × 2^10.
    pub out_pps: u64,
    /// Bytes in per second × 2^5.
    pub in_bps: u64,
    /// Bytes out per second × 2^5.
    pub out_bps: u64,
}
const _: () = assert!(core::mem::size_of::<ScaledRates>() == 40);

/// One estimator: all zero is a fresh one (IPVS's zeroed allocation), whose first tick
/// counts everything since the counters were last zeroed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RateState {
    /// The summed counters at the last tick (`last_conns`, `last_inpkts`, ...).
    pub last: Traffic,
    /// The averages.
    pub avg: ScaledRates,
    /// For a real: the `Real::generation` of the real these were estimated for; a slot
    /// holding another generation is another real's, whose estimate starts afresh. 0 for a
    /// service.
    pub generation: u16,
    /// Explicit padding (Pod).
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<RateState>() == 88);
