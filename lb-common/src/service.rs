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
    /// ipvsadm `-b mh-fallback`: when the hashed real is unavailable (weight 0, overloaded),
    /// look further instead of refusing the flow.
    pub const MH_FALLBACK: u32 = 1 << 1;
    /// ipvsadm `-b sh-fallback`: as `MH_FALLBACK`, for sh.
    pub const SH_FALLBACK: u32 = 1 << 2;
    /// ipvsadm `-b sh-port`: sh hashes the client port too.
    pub const SH_PORT: u32 = 1 << 3;
    /// ipvsadm `-p`: persistent service; new connections of a client (masked by
    /// `persist_mask`) go where its template says while the template lives.
    pub const PERSISTENT: u32 = 1 << 4;
    /// ipvsadm `-o`: one-packet scheduling (UDP): every datagram is scheduled on its own and
    /// no flow is recorded.
    pub const ONE_PACKET: u32 = 1 << 5;
    /// True when `bit` is set.
    pub const fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// Scheduler of a service: ipvsadm's names, grouped in the data path by family
/// (docs/design.md §3 step 5): table-driven (mh, sh, dh: userspace builds the table), walking
/// the reals list as IPVS does (rr, wrr: the data path keeps the position) and
/// load-driven (lc, wlc, sed, nq, lblc, lblcr, fo, ovf, twos).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedKind {
    /// Maglev hashing (`mh`): userspace builds the table, the kernel indexes it.
    Maglev = 1,
    /// Round robin (`rr`).
    Rr = 2,
    /// Weighted round robin (`wrr`).
    Wrr = 3,
    /// Least connection (`lc`).
    Lc = 4,
    /// Weighted least connection (`wlc`, ipvsadm's default).
    Wlc = 5,
    /// Locality-based least connection (`lblc`).
    Lblc = 6,
    /// Locality-based least connection with replication (`lblcr`).
    Lblcr = 7,
    /// Destination hashing (`dh`).
    Dh = 8,
    /// Source hashing (`sh`).
    Sh = 9,
    /// Shortest expected delay (`sed`).
    Sed = 10,
    /// Never queue (`nq`).
    Nq = 11,
    /// Weighted failover (`fo`).
    Fo = 12,
    /// Weighted overflow (`ovf`).
    Ovf = 13,
    /// Weighted random twos choice (`twos`).
    Twos = 14,
}

impl SchedKind {
    /// Every scheduler, in ipvsadm's man-page order.
    pub const ALL: [SchedKind; 14] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Lblc,
        SchedKind::Lblcr,
        SchedKind::Dh,
        SchedKind::Sh,
        SchedKind::Sed,
        SchedKind::Nq,
        SchedKind::Fo,
        SchedKind::Ovf,
        SchedKind::Maglev,
        SchedKind::Twos,
    ];
    /// From the stored byte.
    pub const fn from_u8(v: u8) -> Option<SchedKind> {
        match v {
            1 => Some(SchedKind::Maglev),
            2 => Some(SchedKind::Rr),
            3 => Some(SchedKind::Wrr),
            4 => Some(SchedKind::Lc),
            5 => Some(SchedKind::Wlc),
            6 => Some(SchedKind::Lblc),
            7 => Some(SchedKind::Lblcr),
            8 => Some(SchedKind::Dh),
            9 => Some(SchedKind::Sh),
            10 => Some(SchedKind::Sed),
            11 => Some(SchedKind::Nq),
            12 => Some(SchedKind::Fo),
            13 => Some(SchedKind::Ovf),
            14 => Some(SchedKind::Twos),
            _ => None,
        }
    }
    /// ipvsadm's name.
    pub const fn name(self) -> &'static str {
        match self {
            SchedKind::Maglev => "mh",
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Lblc => "lblc",
            SchedKind::Lblcr => "lblcr",
            SchedKind::Dh => "dh",
            SchedKind::Sh => "sh",
            SchedKind::Sed => "sed",
            SchedKind::Nq => "nq",
            SchedKind::Fo => "fo",
            SchedKind::Ovf => "ovf",
            SchedKind::Twos => "twos",
        }
    }
    /// By ipvsadm's name.
    pub fn from_name(name: &str) -> Option<SchedKind> {
        SchedKind::ALL.into_iter().find(|s| s.name() == name)
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
    /// Generation of the reals list, as rr/wrr see it: 24 bits, little-endian, in what
    /// was padding, so the value keeps its 52 bytes (a SERVICES map pinned by an older lb
    /// stays readable, and the established path copies no more than before). Read and
    /// written through [`Service::list_gen`] / [`Service::set_list_gen`]. Their state in
    /// `SCHED_CURSOR` keeps the low 22 bits of the generation it belongs to; a different
    /// one is IPVS's `add_dest` / `del_dest` / `upd_dest`. Bumped by lb-ctl whenever IPVS
    /// would tell the scheduler its destinations changed: -a, -d, -e of a real of this
    /// service; not by -E unless the scheduler changes. Not `reals_base`: lb-ctl's regions
    /// alternate, so two changes without a pick between them could bring back the base the
    /// state has.
    pub list_gen_le: [u8; 3],
    /// First slot of this service's scheduler table in `SCHED_TABLE` (mh, sh, dh: a hash
    /// table; every other scheduler, rr and wrr included, has none).
    pub table_base: u32,
    /// Entries in the table (a prime for Maglev); 0 = no table (no real yet, or a
    /// scheduler that needs none).
    pub table_len: u32,
    /// First slot of the service's list of real ids in `SCHED_TABLE`: what load-driven
    /// schedulers and fallbacks scan (bounded by `MAX_REALS_PER_SERVICE`).
    pub reals_base: u32,
    /// Reals in that list.
    pub reals_len: u32,
    /// Persistence timeout in seconds (`-p`), when `VipFlags::PERSISTENT`.
    pub persist_timeout_s: u32,
    /// Persistence group: services with the same group share templates (an IPVS
    /// firewall-mark service, e.g. http + https). Defaults to the service id.
    pub persist_group: u32,
    /// Client-address mask for templates (`-M`; IPv6: prefix), wire order like addresses.
    pub persist_mask: RawAddr,
}
const _: () = assert!(core::mem::size_of::<Service>() == 52);

impl Service {
    /// Bits of [`Service::list_gen_le`]; generations wrap at this.
    pub const LIST_GEN_MASK: u32 = 0xff_ffff;

    /// The reals list's generation ([`Service::list_gen_le`]).
    #[inline(always)]
    pub fn list_gen(&self) -> u32 {
        let [a, b, c] = self.list_gen_le;
        u32::from_le_bytes([a, b, c, 0])
    }

    /// Sets the generation (its low 24 bits).
    #[inline(always)]
    pub fn set_list_gen(&mut self, generation: u32) {
        let [a, b, c, _] = generation.to_le_bytes();
        self.list_gen_le = [a, b, c];
    }

    /// This value with the next generation: a change of the reals list as the scheduler
    /// sees it.
    #[inline(always)]
    pub fn with_next_list_gen(mut self) -> Service {
        self.set_list_gen(self.list_gen().wrapping_add(1) & Self::LIST_GEN_MASK);
        self
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_generation_is_24_bits_in_the_old_padding() {
        let mut s = Service::default();
        assert_eq!(s.list_gen(), 0);
        s.set_list_gen(0x12_3456);
        assert_eq!(s.list_gen_le, [0x56, 0x34, 0x12], "little-endian");
        assert_eq!(s.list_gen(), 0x12_3456);
        s.set_list_gen(0xff_ffff);
        assert_eq!(s.with_next_list_gen().list_gen(), 0, "wraps at 2^24");
        // The field sits where the padding after `sched` was: the layout is unchanged.
        assert_eq!(core::mem::offset_of!(Service, list_gen_le), 9);
        assert_eq!(core::mem::offset_of!(Service, table_base), 12);
    }
}
