//! Services (virtual servers): the key packets are matched on and what the data path needs
//! to schedule a new flow.

use crate::addr::{Be16, RawAddr};
use bytemuck::{Pod, Zeroable};

/// Match key of a service: VIP, port (0 = all ports), IP protocol, family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ServiceKey {
    /// Virtual IP.
    pub addr: RawAddr,
    /// Destination port, or 0 for an all-port service.
    pub port: Be16,
    /// IP protocol (TCP, UDP).
    pub proto: u8,
    /// [`crate::addr::family`] tag.
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);

/// Per-service flags (ipvsadm's per-service options).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VipFlags(pub u32);

impl VipFlags {
    /// ipvsadm `-b mh-port`: the scheduling hash covers the whole flow (addresses, ports,
    /// protocol). Without it only the client address is hashed, as IPVS mh does by default,
    /// so all of a client's connections land on one real.
    pub const HASH_PORTS: u32 = 1 << 0;
    /// True when `bit` is set.
    pub const fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// Scheduler of a service. The data path only needs the family (table-driven here);
/// the names are ipvsadm's.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedKind {
    /// Maglev hashing (ipvsadm `mh`): userspace builds the table, the kernel indexes it by
    /// the flow hash.
    Maglev = 1,
}

impl SchedKind {
    /// From the stored byte.
    pub const fn from_u8(v: u8) -> Option<SchedKind> {
        match v {
            1 => Some(SchedKind::Maglev),
            _ => None,
        }
    }
    /// ipvsadm's name.
    pub const fn name(self) -> &'static str {
        match self {
            SchedKind::Maglev => "mh",
        }
    }
}

/// What the data path knows of a service. Replacing this hash value is atomic for readers
/// (the kernel swaps whole elements), which is how a new scheduler table is published:
/// lb-ctl fills a spare region of `SCHED_TABLE`, then writes a `Service` pointing at it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Service {
    /// Index into the per-service stats, 0..MAX_SERVICES.
    pub id: u32,
    /// [`VipFlags`].
    pub flags: VipFlags,
    /// [`SchedKind`] as u8.
    pub sched: u8,
    /// Padding, zero.
    pub _pad: [u8; 3],
    /// First slot of this service's table in `SCHED_TABLE`.
    pub table_base: u32,
    /// Entries in the table (a prime for Maglev); 0 = no real yet.
    pub table_len: u32,
}
const _: () = assert!(core::mem::size_of::<Service>() == 20);

/// Key of the exact VIP address set (`VIPS`): the data path consults it only on rare paths
/// (fragments, unparsed IPv6 extension headers, other protocols) to tell "a VIP's packet we
/// refuse" from "someone else's packet we pass", since the bit filter may say "maybe".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct VipKey {
    /// The VIP.
    pub addr: RawAddr,
    /// [`crate::addr::family`] tag.
    pub family: u8,
    /// Padding, zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);
