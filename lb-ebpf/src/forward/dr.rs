//! Direct routing (`-g`): the real has the VIP on a local interface, so only the Ethernet
//! addresses change; IP header, TTL and payload go out untouched.

use aya_ebpf::programs::XdpContext;
use lb_common::{Drop, Real};

use super::write_macs;

/// Ethernet destination := the real's next hop, source := our egress MAC.
#[inline(always)]
pub fn forward_dr(ctx: &XdpContext, real: &Real) -> Result<(), Drop> {
    write_macs(ctx, &real.dst_mac, &real.src_mac)
}
