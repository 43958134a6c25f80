//! The connection (flow) table and the NAT reply table.

use crate::addr::{Be16, RawAddr};
use bytemuck::{Pod, Zeroable};

/// A flow's 5-tuple plus family. Used for client → VIP flows, and (with source = real,
/// destination = client) as the key of NAT replies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    /// Source address.
    pub src: RawAddr,
    /// Destination address.
    pub dst: RawAddr,
    /// Source port (0 for ICMP).
    pub sport: Be16,
    /// Destination port.
    pub dport: Be16,
    /// IP protocol.
    pub proto: u8,
    /// [`crate::addr::family`] tag.
    pub family: u8,
    /// Padding, zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Where an established flow goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowValue {
    /// Real server id.
    pub real_id: u32,
    /// Service id (for counting without a service lookup).
    pub svc_id: u32,
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 8);

/// How to turn a NAT reply (real → client) back into VIP → client and where to send it:
/// back out the interface the client's packet came in on, to the MAC it came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NatReverse {
    /// The VIP to restore as source.
    pub vip: RawAddr,
    /// The service port to restore as source port.
    pub vport: Be16,
    /// Padding, zero.
    pub _pad: [u8; 2],
    /// Interface the client's packets arrive on.
    pub ifindex: u32,
    /// Source MAC of the client's packets (client or its router).
    pub client_mac: [u8; 6],
    /// Destination MAC of the client's packets (the director's outside interface).
    pub local_mac: [u8; 6],
    /// Service id, for counting.
    pub svc_id: u32,
    /// Real id, for counting.
    pub real_id: u32,
}
const _: () = assert!(core::mem::size_of::<NatReverse>() == 44);
