//! Real servers: where a flow goes and how it gets there.

use crate::addr::{Be16, RawAddr};
use bytemuck::{Pod, Zeroable};

/// How packets reach a real server (ipvsadm -g / -i / -m).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardMode {
    /// Direct routing (`-g`, gatewaying): rewrite MACs only; the real has the VIP locally.
    Dr = 1,
    /// IP tunnelling (`-i`, ipip): IPIP for IPv4, IP6IP6 for IPv6.
    Tun = 2,
    /// NAT (`-m`, masquerading): rewrite destination address and port; replies come back
    /// through the director and get the VIP restored as source.
    Nat = 3,
}

impl ForwardMode {
    /// The method (as u8) a flow's packets go by: the one it was created with
    /// (`FlowValue::fwd`), or for a flow recorded before lb kept it (0) its real's mode now
    /// (`real_mode`, `Real::mode`).
    #[inline(always)]
    pub const fn of_flow(fwd: u8, real_mode: u8) -> u8 {
        if fwd != 0 { fwd } else { real_mode }
    }

    /// From the stored byte.
    pub const fn from_u8(v: u8) -> Option<ForwardMode> {
        match v {
            1 => Some(ForwardMode::Dr),
            2 => Some(ForwardMode::Tun),
            3 => Some(ForwardMode::Nat),
            _ => None,
        }
    }
    /// ipvsadm's "Forward" column word.
    pub const fn ipvsadm_name(self) -> &'static str {
        match self {
            ForwardMode::Dr => "Route",
            ForwardMode::Tun => "Tunnel",
            ForwardMode::Nat => "Masq",
        }
    }
}

/// Per-real flags.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RealFlags(pub u32);

impl RealFlags {
    /// The slot holds a configured real. A flow whose real lost this bit is rescheduled.
    pub const ACTIVE: u32 = 1 << 0;
    /// The real was NAT (`-m`) and `-e` made it DR or TUN: connections created while it was
    /// NAT stay NAT (`FlowValue::fwd`) and their replies still come through the director,
    /// so lb-ctl keeps the real's address in NAT_FILTER (also once the real is deleted,
    /// until its id goes to another real). Also set by `-a` reviving a deleted NAT real as
    /// DR or TUN. Read by lb-ctl only.
    pub const WAS_NAT: u32 = 1 << 1;
    /// True when `bit` is set.
    pub const fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// A real server, indexed by its id in the `REALS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Real {
    /// Real server address (RIP).
    pub addr: RawAddr,
    /// The director's own address toward this real: the outer source of tunnel packets.
    pub local_addr: RawAddr,
    /// Real server port (NAT rewrites the destination port to it).
    pub port: Be16,
    /// [`ForwardMode`] as u8.
    pub mode: u8,
    /// [`crate::addr::family`] tag.
    pub family: u8,
    /// [`RealFlags`].
    pub flags: RealFlags,
    /// Id of the service this real belongs to.
    pub svc_id: u32,
    /// Weight as configured (the data path uses the table; kept for listing).
    pub weight: u32,
    /// Egress interface toward the next hop.
    pub ifindex: u32,
    /// Next hop's MAC (the real itself on a shared segment, else the gateway).
    pub dst_mac: [u8; 6],
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
    /// Upper connection threshold (`-x`): at active + inactive ≥ this the real is
    /// overloaded and gets no new flows. 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`): an overloaded real takes new flows again below
    /// this (0 = below 3/4 of the upper one, as IPVS).
    pub l_threshold: u32,
}
const _: () = assert!(core::mem::size_of::<Real>() == 72);

/// lb-ctl's record of a deleted real, indexed by the real's id in the `REAL_TRASH` array:
/// IPVS's dest trash (`ip_vs_trash_get_dest`), kept where a later lb-ctl run finds it. `-a`
/// of the same (service address, port, protocol, real address, port) gives the real its
/// old id back while no other real has taken it. Written and read by lb-ctl only; the data
/// path never reads it. All zero (`stamp` 0) = no record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TrashRecord {
    /// VIP of the service the real was deleted from (IPVS matches `dest->vaddr`, not the
    /// service object: a service deleted and added again gets its reals back).
    pub vip: RawAddr,
    /// That service's port (0 = all ports).
    pub port: Be16,
    /// That service's IP protocol number (`consts::proto`).
    pub proto: u8,
    /// [`crate::addr::family`] tag of `vip`.
    pub family: u8,
    /// Order of deletion: one more than the highest stamp in the map at the time, so
    /// never 0 for a record; the allocator reuses the id deleted longest ago first.
    pub stamp: u32,
}
// No implicit padding (Pod), and a multiple of 8: the array's value stride is the size.
const _: () = assert!(core::mem::size_of::<TrashRecord>() == 24);
