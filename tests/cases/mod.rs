//! The packet case tables, one file per feature. Each `cases()` returns its table; a case
//! is a `Case` (one packet) or a `Sequence` (packets whose state carries over).
//!
//! Adding a case: pick the feature's file, describe the maps (`Provision`, usually
//! `common::one(vip, port, proto, common::real(mode, ..))`), build the input with
//! `lb_tests::packet::Pkt`, and build the expected frame from the spec, not from the
//! program: `common::{dr, tun, nat, nat_return}` spell out docs/datapath.md's forward modes,
//! and a frame built by `Pkt` gets every length and checksum computed afresh by etherparse.
//! List the counters the packet must move (`Counts::of`, plus `.both(svc, real, traffic)`);
//! every other counter, service and real of the case must stay still. `pass_case` and
//! `drop_case` cover the common shapes. Names are unique; `-- NAME` runs one case.

mod allport;
mod cache;
mod common;
mod conn;
mod dr;
mod full;
mod icmp;
mod malformed;
mod mode_edit;
mod nat;
mod nat_expiry;
mod nat_return;
mod neighbour;
mod passthrough;
mod real_gen;
mod sched;
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
        nat_expiry::cases(),
        icmp::cases(),
        allport::cases(),
        vlan::cases(),
        passthrough::cases(),
        malformed::cases(),
        conn::cases(),
        cache::cases(),
        mode_edit::cases(),
        sched::cases(),
        full::cases(),
        real_gen::cases(),
        neighbour::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
