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

/// Per-real flags (16 bits: the low half of what was a u32, see [`Real::generation`]).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RealFlags(pub u16);

impl RealFlags {
    /// The slot holds a configured real. A flow whose real lost this bit is rescheduled.
    pub const ACTIVE: u16 = 1 << 0;
    /// The real was NAT (`-m`) and `-e` made it DR or TUN: connections created while it was
    /// NAT stay NAT (`FlowValue::fwd`) and their replies still come through the director,
    /// so lb-ctl keeps the real's address in NAT_FILTER (also once the real is deleted,
    /// until its id goes to another real). Also set by `-a` reviving a deleted NAT real as
    /// DR or TUN. Read by lb-ctl only.
    pub const WAS_NAT: u16 = 1 << 1;
    /// The next hop's MAC is not known yet (`dst_mac` is stale or zero): the data path sends
    /// nothing to this real and drops its packets (`Drop::NoNeighbour`), new flows still
    /// recorded, as IPVS creates the connection before transmission fails. Set by lb-ctl
    /// `-a` / `-e` when neighbour resolution did not answer in its short wait; cleared by
    /// the resident process's neighbour follower once the kernel learns the MAC.
    pub const NO_NEIGHBOUR: u16 = 1 << 2;
    /// True when `bit` is set.
    pub const fn has(self, bit: u16) -> bool {
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
    /// Generation of the slot: which of the reals that had this id over time this one is.
    /// Every stored reference to a real (flows, cached flows, templates, locality entries,
    /// NAT reverse entries) carries the generation it was made for ([`Real::reference`]);
    /// one whose generation is not the slot's now is stale ([`Real::referenced_by`]): the
    /// real it named is gone, its id given to another. lb-ctl moves it on when it gives
    /// the id to another (service, address, port), and keeps it when `-a` revives the
    /// same real from the trash. It sits in what was the high half of a u32 `flags`
    /// (little-endian), so `Real` keeps its 72 bytes and a REALS map pinned by an older lb
    /// stays readable: its reals read as generation 0, the generation its flows carry.
    pub generation: u16,
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
const _: () = assert!(core::mem::offset_of!(Real, generation) == 38);

/// Bits of a stored real reference that hold the real's id: ids run 0..`MAX_REALS`.
pub const REF_ID_BITS: u32 = 16;
const _: () = assert!(crate::consts::MAX_REALS == 1 << REF_ID_BITS);

/// The id (REALS index) of a stored real reference: `FlowValue::real_id`,
/// `PersistValue::real_id`, `LocalityValue::reals`, `CachedFlow::real_id` and
/// `NatReverse::real_id` hold the id in the low [`REF_ID_BITS`] bits and the real's
/// [`Real::generation`] above them. A reference written by an lb older than generations has
/// generation 0.
#[inline(always)]
pub const fn ref_id(r: u32) -> u32 {
    r & ((1 << REF_ID_BITS) - 1)
}

/// The generation of a stored real reference (see [`ref_id`]).
#[inline(always)]
pub const fn ref_gen(r: u32) -> u16 {
    (r >> REF_ID_BITS) as u16
}

impl Real {
    /// The reference to this real, at `id`, that state naming it stores: id and generation.
    #[inline(always)]
    pub const fn reference(&self, id: u32) -> u32 {
        ref_id(id) | (self.generation as u32) << REF_ID_BITS
    }

    /// Whether stored reference `r`, whose id is this real's slot, names this real: made
    /// for its generation. Otherwise the reference is stale, made for an earlier real of
    /// the slot: a flow of it is a flow whose real is gone, a template or locality entry
    /// is absent, a cache slot misses, and no counter of this real moves for it.
    #[inline(always)]
    pub const fn referenced_by(&self, r: u32) -> bool {
        ref_gen(r) == self.generation
    }

    /// Whether the slot is configured (`ACTIVE`) and stored reference `r` names this real
    /// ([`Real::referenced_by`]): the flags and the generation read as the one word they
    /// were, one masked compare (what every established packet asks of its real).
    #[inline(always)]
    pub const fn active_for(&self, r: u32) -> bool {
        let word = self.flags.0 as u32 | (self.generation as u32) << REF_ID_BITS;
        let gen_bits = !((1u32 << REF_ID_BITS) - 1);
        let mask = gen_bits | RealFlags::ACTIVE as u32;
        word & mask == (r & gen_bits) | RealFlags::ACTIVE as u32
    }

    /// The generation after `generation` (wrapping at 2^16: a reference would have to outlive
    /// 65,536 reuses of its id to match again).
    pub const fn next_gen(generation: u16) -> u16 {
        generation.wrapping_add(1)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_the_high_half_of_the_old_flags_word() {
        let r = Real {
            flags: RealFlags(RealFlags::ACTIVE | RealFlags::WAS_NAT),
            generation: 0xbeef,
            ..Real::default()
        };
        // An older lb read a u32 at this offset: its flags are still the low bits.
        let bytes = bytemuck::bytes_of(&r);
        let old = u32::from_le_bytes(bytes[36..40].try_into().unwrap());
        assert_eq!(old, 0xbeef_0003);
        assert_eq!(core::mem::offset_of!(Real, flags), 36);
        assert_eq!(core::mem::offset_of!(Real, svc_id), 40);
        // A slot an older lb wrote (high half zero) reads as generation 0.
        let mut old_slot = bytes.to_vec();
        old_slot[38..40].copy_from_slice(&[0, 0]);
        let back: Real = bytemuck::pod_read_unaligned(&old_slot);
        assert_eq!(back.generation, 0);
        assert!(back.flags.has(RealFlags::ACTIVE));
    }

    #[test]
    fn references_carry_id_and_generation() {
        let r = Real {
            generation: 7,
            ..Real::default()
        };
        let at = r.reference(0xffff);
        assert_eq!((ref_id(at), ref_gen(at)), (0xffff, 7));
        assert!(r.referenced_by(at));
        // Made for the slot's earlier real, or by an older lb (generation 0): stale.
        let older = Real::default().reference(0xffff);
        assert_eq!(
            older, 0xffff,
            "generation 0 is the bare id, as an older lb stored it"
        );
        assert!(!r.referenced_by(older));
        assert!(Real::default().referenced_by(older));
        assert!(!Real { generation: 8, ..r }.referenced_by(at));
        // Configured and of the reference's generation, whatever the other flags.
        let active = Real {
            flags: RealFlags(RealFlags::ACTIVE | RealFlags::WAS_NAT),
            ..r
        };
        assert!(active.active_for(at));
        assert!(!r.active_for(at), "not ACTIVE");
        assert!(!active.active_for(older), "another generation");
        assert!(
            !Real {
                generation: 8,
                ..active
            }
            .active_for(at)
        );
        assert_eq!(Real::next_gen(7), 8);
        assert_eq!(Real::next_gen(u16::MAX), 0);
    }
}
