//! The packet case tables, one file per feature. Each `cases()` returns its table; a case
//! is a `Case` (one packet) or a `Sequence` (packets whose state carries over).

mod allport;
mod common;
mod dr;
mod icmp;
mod malformed;
mod nat;
mod nat_return;
mod passthrough;
mod tun;
mod vlan;

use lb_tests::case::Sequence;

/// Every table, in a stable order.
pub fn all() -> Vec<Sequence> {
    [
        dr::cases(),
        tun::cases(),
        nat::cases(),
        nat_return::cases(),
        icmp::cases(),
        allport::cases(),
        vlan::cases(),
        passthrough::cases(),
        malformed::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
