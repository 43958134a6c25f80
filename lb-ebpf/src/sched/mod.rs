//! The schedulers, one module per family (docs/design.md §3 step 5), each as the kernel's
//! ip_vs_<name>.c decides (docs/datapath.md "Schedulers"):
//! - [`table`]: mh, sh, dh — userspace built the table, we hash and index it (with the
//!   sh-fallback / mh-fallback walks);
//! - [`walk`]: rr, wrr — IPVS's walk of the service's reals list, its position and
//!   weight state kept per service in SCHED_CURSOR (no table);
//! - [`load`]: lc, wlc, sed, nq, fo, ovf, twos — a bounded scan of the service's reals list
//!   with the live connection counters;
//! - [`locality`]: lblc, lblcr — a cache entry per destination address over wlc.
//!
//! Availability is IPVS's `is_unavailable` plus ours: a real is schedulable when it is
//! configured (`ACTIVE`), has weight > 0 and is not overloaded (`reals::available`).
//! The math that picks a bucket or slot is lb-common's (`lb_common::sched::pick`), so
//! userspace computes the same choice.

pub mod iter;
pub mod load;
pub mod locality;
pub mod walk;
pub mod table;

use lb_common::{Drop, SchedKind, Service};

use crate::parse::Packet;

/// The scheduler seam: one arm per scheduler family.
#[inline(always)]
pub fn select_real(svc: &Service, pkt: &Packet) -> Result<u32, Drop> {
    match SchedKind::from_u8(svc.sched) {
        Some(SchedKind::Maglev) => table::select_mh(svc, pkt),
        Some(SchedKind::Sh) => table::select_sh(svc, pkt),
        Some(SchedKind::Dh) => table::select_dh(svc, pkt),
        Some(SchedKind::Rr) | Some(SchedKind::Wrr) => walk::select(svc),
        Some(SchedKind::Twos) => load::select_twos(svc),
        Some(SchedKind::Lblc) => locality::select_lblc(svc, pkt),
        Some(SchedKind::Lblcr) => locality::select_lblcr(svc, pkt),
        Some(k) => load::select(svc, k),
        None => Err(Drop::NoReal),
    }
}

/// True for schedulers whose choice is a pure function of the packet (and the table), so
/// an ICMP error about a flow we no longer know can be sent where the flow went.
#[inline(always)]
pub fn is_hashing(svc: &Service) -> bool {
    matches!(
        SchedKind::from_u8(svc.sched),
        Some(SchedKind::Maglev) | Some(SchedKind::Sh) | Some(SchedKind::Dh)
    )
}
