//! The connection (flow) table and the NAT reply table.

use crate::addr::{Be16, RawAddr, family};
use bytemuck::{Pod, Zeroable};

/// A flow's 5-tuple plus family. Used for client → VIP flows, and (with source = real,
/// destination = client) as the key of NAT replies: as is in the IPv6 tables (FLOWS6,
/// NAT_REV6), as [`FlowKey4`] in the IPv4 ones. Everything else (hashes, persistence,
/// listings) sees this one type.
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

/// An IPv4 flow's key in FLOWS4 and NAT_REV4: the 5-tuple in 16 bytes, the family implied
/// by the table. The kernel hashes and compares the whole key on every lookup and insert;
/// 16 bytes instead of [`FlowKey`]'s 40 measured ~10 ns less per lookup and ~30 ns less
/// per new flow (a miss, then an insert).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey4 {
    /// Source address (wire order, as `RawAddr`'s first word).
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port.
    pub sport: Be16,
    /// Destination port.
    pub dport: Be16,
    /// IP protocol.
    pub proto: u8,
    /// Padding, zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowKey4>() == 16);

impl FlowKey {
    /// Whether the key is an IPv4 flow's (kept in the `*4` tables).
    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.family == family::V4
    }

    /// Where NAT sends this client flow on a real at `addr`:`port`: the real's address as
    /// the flow's family stores it (IPv4: word 0, the rest zero, so a stray word cannot
    /// leak into keys or checksums) and its port, or the client's destination port for a
    /// real port of 0 (all-port services). The data path rewrites the client's packets to
    /// it; [`FlowKey::nat_reverse_key`] turns it into the flow's NAT_REV key.
    #[inline(always)]
    pub fn nat_dest(&self, addr: &RawAddr, port: Be16) -> (RawAddr, Be16) {
        let a = if self.is_v4() {
            [addr[0], 0, 0, 0]
        } else {
            *addr
        };
        (a, if port.0 == 0 { self.dport } else { port })
    }

    /// The NAT_REV key of this client flow sent by NAT to `addr`:`port` (from
    /// [`FlowKey::nat_dest`]): the real's replies, real:port → client:cport. The one
    /// derivation of the key: the data path's insert (a NAT flow's first packet) and its
    /// own expiry, and lb-ctl's sweep, all build it here.
    #[inline(always)]
    pub fn nat_reverse_key(&self, addr: &RawAddr, port: Be16) -> FlowKey {
        FlowKey {
            src: *addr,
            dst: self.src,
            sport: port,
            dport: self.sport,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }

    /// The client flow a NAT_REV entry (`rev` at this reverse key, real:port →
    /// client:cport) was made for: client:cport → VIP:vport. The inverse of
    /// [`FlowKey::nat_reverse_key`], for lb-ctl's sweep to tell entries no flow owns.
    pub fn nat_owner(&self, rev: &NatReverse) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: rev.vip,
            sport: self.dport,
            dport: rev.vport,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }

    /// Whether `rev`, the NAT_REV entry at this client flow's reverse key, is this flow's:
    /// the same VIP and port (another flow of the same client ports to the same real, for
    /// another service, may have replaced it). Only then does the flow's expiry remove it.
    #[inline(always)]
    pub fn owns_nat_reverse(&self, rev: &NatReverse) -> bool {
        rev.vip == self.dst && rev.vport == self.dport
    }

    /// The IPv4 tables' key (meaningful for an IPv4 key only). Assembled from four words:
    /// field by field, the three padding bytes become a call to an out-of-line memset in
    /// BPF code.
    #[inline(always)]
    pub fn v4(&self) -> FlowKey4 {
        let [s0, s1] = self.sport.0.to_ne_bytes();
        let [d0, d1] = self.dport.0.to_ne_bytes();
        bytemuck::cast([
            self.src[0],
            self.dst[0],
            u32::from_ne_bytes([s0, s1, d0, d1]),
            u32::from_ne_bytes([self.proto, 0, 0, 0]),
        ])
    }
}

impl FlowKey4 {
    /// The same flow as a [`FlowKey`] (what every reader of the tables works with).
    pub fn widen(&self) -> FlowKey {
        FlowKey {
            src: [self.src, 0, 0, 0],
            dst: [self.dst, 0, 0, 0],
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            family: family::V4,
            _pad: [0; 2],
        }
    }
}

/// Where an established flow goes, and its connection state as IPVS keeps it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowValue {
    /// The real: its id and generation (`crate::real::ref_id`, `Real::reference`). A flow
    /// whose generation is not its slot's now is a flow whose real is gone (the id went
    /// to another real): treated as after `-d`, never sent to the slot's new real.
    pub real_id: u32,
    /// Service id (for counting without a service lookup).
    pub svc_id: u32,
    /// `CLOCK` seconds when the flow last saw a packet; lb-ctl's sweep expires the flow
    /// when `now - last_seen` exceeds its state's timeout.
    pub last_seen_s: u32,
    /// [`crate::conn::TcpState`] as u8 for TCP; [`crate::conn::UDP_STATE`] for UDP.
    pub state: u8,
    /// [`FlowFlags`] bits.
    pub flags: u8,
    /// The [`crate::ForwardMode`] (as u8) the flow was created with, the real's mode then:
    /// its packets are forwarded that way for the flow's life, whatever the real's mode is
    /// now (IPVS binds a connection's transmitter at creation, `ip_vs_bind_xmit`; `-e`
    /// changes only new connections). 0 = not recorded (a flow written by an older lb):
    /// the real's current mode.
    pub fwd: u8,
    /// Padding, zero.
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 16);
const _: () = assert!(core::mem::offset_of!(FlowValue, fwd) == 14);
const _: () = assert!(core::mem::offset_of!(FlowValue, state) == STATE_WORD_OFFSET);
const _: () = assert!(core::mem::offset_of!(FlowValue, flags) == STATE_WORD_OFFSET + 1);
const _: () = assert!(core::mem::offset_of!(FlowValue, _pad) == STATE_WORD_OFFSET + 3);

/// Byte offset in [`FlowValue`] of its state word (`state`, `flags`, `fwd`, `_pad`, one
/// aligned u32): the unit the data path changes with one compare-and-swap, so two CPUs
/// moving a flow at once (a client FIN and the real's FIN) cannot both count the move.
pub const STATE_WORD_OFFSET: usize = 12;

/// A flow's state word, [`FlowValue`] bytes 12..16 read as one little-endian u32 (both
/// sides are little-endian: bpfel and x86-64): `state` in the low byte, then `flags`,
/// `fwd`, `_pad`. Every change of `state` or `flags` once the flow is in the table is a
/// compare-and-swap of the whole word (lb-ebpf `conn.rs`), and so is the removal claim
/// ([`StateWord::reaped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateWord(pub u32);

impl StateWord {
    /// The word of these four bytes.
    #[inline(always)]
    pub const fn new(state: u8, flags: u8, fwd: u8, pad: u8) -> StateWord {
        StateWord(u32::from_le_bytes([state, flags, fwd, pad]))
    }

    /// The word of a value.
    #[inline(always)]
    pub const fn of(v: &FlowValue) -> StateWord {
        StateWord::new(v.state, v.flags, v.fwd, v._pad)
    }

    /// `FlowValue::state`.
    #[inline(always)]
    pub const fn state(self) -> u8 {
        self.0.to_le_bytes()[0]
    }

    /// `FlowValue::flags` ([`FlowFlags`]).
    #[inline(always)]
    pub const fn flags(self) -> u8 {
        self.0.to_le_bytes()[1]
    }

    /// The same word with `state` and `flags` replaced (`fwd` and `_pad` kept).
    #[inline(always)]
    pub const fn with(self, state: u8, flags: u8) -> StateWord {
        let b = self.0.to_le_bytes();
        StateWord::new(state, flags, b[2], b[3])
    }

    /// Whether the flow has been claimed for removal ([`FlowFlags::DEAD`]): nobody moves
    /// or counts it any more.
    #[inline(always)]
    pub const fn dead(self) -> bool {
        self.flags() & FlowFlags::DEAD != 0
    }

    /// The word that claims the flow for removal (DEAD set, all else kept), or `None` when
    /// it is claimed already. Only an unclaimed flow's word changes, so once a
    /// compare-and-swap from `self` to this word wins, `self.flags()` are the flags the
    /// removal is booked by (by whoever then deletes the entry).
    #[inline(always)]
    pub const fn reaped(self) -> Option<StateWord> {
        if self.dead() {
            None
        } else {
            Some(self.with(self.state(), self.flags() | FlowFlags::DEAD))
        }
    }
}

/// Per-flow flag bits (`FlowValue::flags`).
pub struct FlowFlags;

impl FlowFlags {
    /// Counted in the real's inactive connections (IPVS `IP_VS_CONN_F_INACTIVE`).
    pub const INACTIVE: u8 = 1 << 0;
    /// No real → client packet seen yet: TCP states follow IPVS's input-only table
    /// (`IP_VS_CONN_F_NOOUTPUT`). Always set for DR and TUN, which never see replies.
    pub const NO_OUTPUT: u8 = 1 << 1;
    /// Claimed for removal: set by compare-and-swap of the state word
    /// ([`StateWord::reaped`]) by whoever removes the flow (the data path's
    /// expire_nodest_conn and conn_reuse_mode expiries, lb-ctl's sweep through `lb_ops`
    /// REAP). Set once; after it the word never changes, no CPU moves the flow's state or
    /// its real's counters, and the claimed entry is deleted: whoever's delete succeeds
    /// books the removal (the data path's unbind, or REAL_EXPIRED) by the frozen flags.
    pub const DEAD: u8 = 1 << 2;
}

/// Key of a persistence template (`PERSIST`): the client's masked address in a
/// persistence group.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PersistKey {
    /// Client address & `Service::persist_mask`.
    pub client: RawAddr,
    /// `Service::persist_group`.
    pub group: u32,
    /// [`crate::addr::family`] tag.
    pub family: u8,
    /// IP protocol of the service.
    pub proto: u8,
    /// Padding, zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<PersistKey>() == 24);

/// A persistence template: where the client's connections go while it lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PersistValue {
    /// The real: id and generation (`crate::real::ref_id`); a stale one (another real has
    /// the id now) is no template: the client is scheduled anew.
    pub real_id: u32,
    /// Service id of the real.
    pub svc_id: u32,
    /// `CLOCK` seconds when a connection last used the template.
    pub last_seen_s: u32,
    /// Padding, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<PersistValue>() == 16);

/// Most reals in an lblcr destination set.
pub const LOCALITY_SET_MAX: usize = 8;

/// A locality entry (`LBLC[service id]`): lblc uses `reals[0]` (`len` 1); lblcr the set
/// `reals[..len]`; `len` 0 = none. IPVS keys these on the destination address; a service
/// of ours has one (its VIP), so the service id is the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LocalityValue {
    /// The reals, ids and generations (`crate::real::ref_id`); a stale one is no member.
    pub reals: [u32; LOCALITY_SET_MAX],
    /// Entries used in `reals`.
    pub len: u32,
    /// `CLOCK` seconds of the last use (lb-ctl's sweep expires unused entries, IPVS's
    /// lblc_expiration / lblcr_expiration, 24 h).
    pub last_seen_s: u32,
    /// `CLOCK` seconds of the last change of the set (lblcr).
    pub last_mod_s: u32,
    /// Padding, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<LocalityValue>() == 48);

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
    /// The real, id and generation (`crate::real::ref_id`), for counting: a stale one
    /// (another real has the id now) counts on no real.
    pub real_id: u32,
    /// 0 as the data path writes it. The sweep sets it to the time it first found no flow
    /// owning the entry (a `-o` datagram's, or one whose flow the full table refused, or
    /// a flow's that is gone), and removes the entry [`crate::consts::FLOWLESS_REPLY_S`]
    /// later: the window for the replies of a connection lb keeps no flow of.
    pub stamp_s: u32,
}
// 48 bytes (44 before the stamp): `bytes_per_nat_flow` in the bench went 140 → 144.
const _: () = assert!(core::mem::size_of::<NatReverse>() == 48);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_key_keeps_every_field_and_widens_back() {
        let k = FlowKey {
            src: [0x0100_12c6, 0, 0, 0],
            dst: [0x6400_12c6, 0, 0, 0],
            sport: Be16::from_host(40000),
            dport: Be16::from_host(80),
            proto: 17,
            family: family::V4,
            _pad: [0; 2],
        };
        let k4 = k.v4();
        assert_eq!(
            k4,
            FlowKey4 {
                src: 0x0100_12c6,
                dst: 0x6400_12c6,
                sport: Be16::from_host(40000),
                dport: Be16::from_host(80),
                proto: 17,
                _pad: [0; 3],
            }
        );
        assert_eq!(k4.widen(), k);
        assert!(k.is_v4());
        assert!(
            !FlowKey {
                family: family::V6,
                ..k
            }
            .is_v4()
        );
    }

    #[test]
    fn state_word_is_bytes_12_to_16_of_the_value() {
        let v = FlowValue {
            real_id: 7,
            svc_id: 9,
            last_seen_s: 11,
            state: 1,
            flags: FlowFlags::NO_OUTPUT,
            fwd: 3,
            _pad: 0,
        };
        let bytes = bytemuck::bytes_of(&v);
        let raw = u32::from_le_bytes(
            bytes[STATE_WORD_OFFSET..STATE_WORD_OFFSET + 4]
                .try_into()
                .unwrap(),
        );
        let w = StateWord::of(&v);
        assert_eq!(w.0, raw);
        assert_eq!((w.state(), w.flags()), (1, FlowFlags::NO_OUTPUT));
        let n = w.with(5, FlowFlags::INACTIVE);
        assert_eq!(n, StateWord::new(5, FlowFlags::INACTIVE, 3, 0));
    }

    #[test]
    fn reaped_sets_dead_once_and_keeps_the_rest() {
        let w = StateWord::new(4, FlowFlags::INACTIVE, 2, 0);
        assert!(!w.dead());
        let d = w.reaped().unwrap();
        assert!(d.dead());
        assert_eq!(
            d,
            StateWord::new(4, FlowFlags::INACTIVE | FlowFlags::DEAD, 2, 0)
        );
        // A second remover finds it claimed: nothing to swap, nothing to book.
        assert_eq!(d.reaped(), None);
        // DEAD is its own bit.
        assert_eq!(
            FlowFlags::DEAD & (FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT),
            0
        );
    }

    #[test]
    fn nat_reverse_key_swaps_ends_to_the_real() {
        let k = FlowKey {
            src: [0x0a00_12c6, 0, 0, 0],
            dst: [0x0101_12c6, 0, 0, 0],
            sport: Be16::from_host(40000),
            dport: Be16::from_host(80),
            proto: 6,
            family: family::V4,
            _pad: [0; 2],
        };
        // IPv4 keeps word 0 of the real's address; port 0 keeps the client's dport.
        let (a, p) = k.nat_dest(&[0x0200_13c6, 7, 7, 7], Be16(0));
        assert_eq!((a, p), ([0x0200_13c6, 0, 0, 0], Be16::from_host(80)));
        let (a, p) = k.nat_dest(&a, Be16::from_host(8080));
        assert_eq!(p, Be16::from_host(8080));
        let r = k.nat_reverse_key(&a, p);
        assert_eq!(
            r,
            FlowKey {
                src: a,
                dst: k.src,
                sport: Be16::from_host(8080),
                dport: Be16::from_host(40000),
                ..k
            }
        );
        let mut rev = NatReverse {
            vip: k.dst,
            vport: k.dport,
            ..Default::default()
        };
        assert!(k.owns_nat_reverse(&rev));
        assert_eq!(r.nat_owner(&rev), k, "the entry leads back to its flow");
        rev.vport = Be16::from_host(443);
        assert!(!k.owns_nat_reverse(&rev));
        // IPv6 keeps all four words.
        let k6 = FlowKey {
            family: family::V6,
            ..k
        };
        assert_eq!(k6.nat_dest(&[1, 2, 3, 4], Be16(0)).0, [1, 2, 3, 4]);
    }
}
