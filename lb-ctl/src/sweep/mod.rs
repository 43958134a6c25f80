//! The sweep's decisions, IPVS's connection timers (ip_vs_conn.c `ip_vs_conn_expire`)
//! without the timers: given a flow, a template or a locality entry, the timeouts and the
//! time, keep it or expire it, and what its expiry takes off its real's counters.
//!
//! No I/O and no clock: the caller passes `now` (the data path's seconds). The passes that read and
//! write the maps are [`crate::maps::sweep`].

use lb_common::conn::{ConnExpiry, Timeouts, state_timeout_s};
use lb_common::consts::{FLOWLESS_REPLY_S, LOCALITY_EXPIRY_S};
use lb_common::ops::{ReapEntry, reap};
use lb_common::{
    FlowFlags, FlowKey, FlowValue, LocalityValue, NatReverse, PersistKey, PersistValue, RawAddr,
    Real, Service, StateWord, VipFlags,
};
use std::collections::{BTreeMap, HashSet};

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// The data path's seconds the pass ran at.
    pub now: u32,
    /// Flows left.
    pub flows: u64,
    /// Active flows expired.
    pub active: u64,
    /// Inactive flows expired.
    pub inactive: u64,
    /// Templates expired.
    pub templates: u64,
    /// lblc/lblcr locality entries cleared.
    pub locality: u64,
    /// NAT reply entries no flow owned, removed past their window.
    pub replies: u64,
}

/// Whether a flow or template last seen at `last` has outlived `timeout` at `now`
/// (wrapping seconds; a stamp from the future, which a racing packet may write, is fresh).
pub fn expired(now: u32, last: u32, timeout: u32) -> bool {
    let idle = now.wrapping_sub(last) as i32;
    idle > 0 && idle as u32 > timeout
}

/// Masks a client address with a service's persistence mask.
pub fn masked(addr: &RawAddr, mask: &RawAddr) -> RawAddr {
    core::array::from_fn(|i| addr[i] & mask[i])
}

/// The time of one pass: `now` (the data path's seconds) and the `--set` timeouts. Time
/// runs in the kernel (lb-common `clock`), so stamps never go stale while no sweep runs
/// and a late pass needs no correction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    /// CLOCK seconds of the pass.
    pub now: u32,
    /// `--set` timeouts (zeros mean IPVS's defaults).
    pub timeouts: Timeouts,
}

impl Pass {
    fn expired(&self, stamp: u32, timeout: u32) -> bool {
        expired(self.now, stamp, timeout)
    }

    /// Whether a flow has been idle longer than its state's timeout.
    pub fn flow_expired(&self, k: &FlowKey, v: &FlowValue) -> bool {
        self.expired(
            v.last_seen_s,
            state_timeout_s(k.proto, v.state, &self.timeouts),
        )
    }

    /// Whether the pass asks `lb_ops` to remove the flow ([`reap_entry`]): idle longer
    /// than its state's timeout, or claimed for removal (`FlowFlags::DEAD`) and still in
    /// the table, which a data-path CPU normally deletes within microseconds; a pass
    /// deletes one left behind (its delete books it, as anyone's would).
    pub fn flow_to_reap(&self, k: &FlowKey, v: &FlowValue) -> bool {
        v.flags & FlowFlags::DEAD != 0 || self.flow_expired(k, v)
    }

    /// Whether a template has been unused longer than its service's `-p` timeout
    /// (`persist_timeout_s`; 0 when its service is gone). Whether a live flow still
    /// holds it is [`Controlled`]'s to say.
    pub fn template_expired(&self, v: &PersistValue, persist_timeout_s: u32) -> bool {
        self.expired(v.last_seen_s, persist_timeout_s)
    }

    /// Whether an lblc/lblcr entry in use has been unused for [`LOCALITY_EXPIRY_S`].
    pub fn locality_expired(&self, v: &LocalityValue) -> bool {
        v.len > 0 && self.expired(v.last_seen_s, LOCALITY_EXPIRY_S)
    }
}

/// What a pass does with a NAT reply entry that no live flow owns ([`Pass::orphan_reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orphan {
    /// First seen so: stamp it with the pass's time.
    Stamp,
    /// Within its window ([`FLOWLESS_REPLY_S`] from its stamp): keep it.
    Keep,
    /// Past its window: remove it.
    Expire,
}

impl Pass {
    /// A NAT reply entry no flow owns (a `-o` datagram's, a refused flow's, a gone flow's)
    /// lives [`FLOWLESS_REPLY_S`] from the pass that first finds it so (its `stamp_s`;
    /// the data path writes 0).
    pub fn orphan_reply(&self, rev: &NatReverse) -> Orphan {
        if rev.stamp_s == 0 {
            Orphan::Stamp
        } else if expired(self.now, rev.stamp_s, FLOWLESS_REPLY_S) {
            Orphan::Expire
        } else {
            Orphan::Keep
        }
    }
}

/// Client flows that may own a NAT reply entry (by a hash of their key: 8 bytes a flow;
/// a collision only keeps an orphan one more pass): every live flow forwarded by NAT, or
/// recorded by an lb that did not keep the method (`fwd` 0).
#[derive(Clone, Debug, Default)]
pub struct Owners(HashSet<u64>);

impl Owners {
    fn hash(k: &FlowKey) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(k)
    }
    /// Records a live flow.
    pub fn flow(&mut self, k: &FlowKey, v: &FlowValue) {
        if v.fwd == 0 || v.fwd == lb_common::ForwardMode::Nat as u8 {
            self.0.insert(Self::hash(k));
        }
    }
    /// Whether a live flow owns the entry `rev` at reverse key `k`.
    pub fn own(&self, k: &FlowKey, rev: &NatReverse) -> bool {
        self.0.contains(&Self::hash(&k.nat_owner(rev)))
    }
}

/// Templates held by live flows: IPVS keeps a template while it controls connections
/// (same persistence group, protocol, family and masked client).
#[derive(Clone, Debug, Default)]
pub struct Controlled(HashSet<(u32, u8, u8, RawAddr)>);

impl Controlled {
    /// Records a live flow of service `svc` (nothing unless the service is persistent).
    pub fn flow(&mut self, svc: &Service, k: &FlowKey) {
        if svc.flags.has(VipFlags::PERSISTENT) {
            self.0.insert((
                svc.persist_group,
                k.proto,
                k.family,
                masked(&k.src, &svc.persist_mask),
            ));
        }
    }

    /// Whether a live flow holds the template under `k`.
    pub fn holds(&self, k: &PersistKey) -> bool {
        self.0.contains(&(k.group, k.proto, k.family, k.client))
    }
}

/// What the expiries of a pass take off each real's counters (REAL_EXPIRED adds), and
/// the pass's report. An expiry is booked on its real's id only while the id's slot holds
/// the real it was made for (`Real::referenced_by`): a stale one (the id given to another
/// real since, whose counts lb-ctl settled then) is reported but moves no counter.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Per real reference (id and generation, `Real::reference`): the expiries to add.
    /// Keyed by reference, not id, so the booking can check again, under the lock that
    /// `-a` takes to settle a reused id, that the id still names that real.
    pub per_real: BTreeMap<u32, ConnExpiry>,
    /// The pass's counts.
    pub report: SweepReport,
}

impl Tally {
    /// An expired flow, by the value it had when removed: its `INACTIVE` flag says
    /// whether it leaves the real's active or inactive count. `slot`: the REALS slot of
    /// its real's id now.
    pub fn flow(&mut self, v: &FlowValue, slot: Option<&Real>) {
        let inactive = v.flags & FlowFlags::INACTIVE != 0;
        if inactive {
            self.report.inactive += 1;
        } else {
            self.report.active += 1;
        }
        if let Some(e) = self.booking(v.real_id, slot) {
            if inactive {
                e.inactive += 1;
            } else {
                e.active += 1;
            }
        }
    }

    /// What `lb_ops` REAP did with a flow the pass judged by value `v`: a removed flow is
    /// booked by the flags it was removed with (frozen when it was claimed, whatever
    /// packets did after the walk read `v`); true when the flow stays live (changed since
    /// the walk, or not run), false when it is gone (removed here, or by someone else,
    /// who booked it). `slot`: as [`Tally::flow`].
    pub fn reaped(&mut self, v: &FlowValue, e: &ReapEntry, slot: Option<&Real>) -> bool {
        match e.outcome {
            reap::REMOVED => {
                let removed = FlowValue {
                    flags: e.flags as u8,
                    ..*v
                };
                self.flow(&removed, slot);
                false
            }
            reap::ABSENT => false,
            _ => true,
        }
    }

    /// An expired template of real `real_ref` (as the template stores it); `slot`: the
    /// REALS slot of its id now.
    pub fn template(&mut self, real_ref: u32, slot: Option<&Real>) {
        self.report.templates += 1;
        if let Some(e) = self.booking(real_ref, slot) {
            e.templates += 1;
        }
    }

    /// The expiries of the real a reference names, unless the reference is stale.
    fn booking(&mut self, real_ref: u32, slot: Option<&Real>) -> Option<&mut ConnExpiry> {
        slot.filter(|r| r.referenced_by(real_ref))?;
        Some(self.per_real.entry(real_ref).or_default())
    }
}

/// The REAP request for a flow the pass judged by (`k`, `v`): claimed only if its state
/// word and stamp are still those.
pub fn reap_entry(k: &FlowKey, v: &FlowValue) -> ReapEntry {
    ReapEntry {
        key: *k,
        seen_word: StateWord::of(v).0,
        seen_last_s: v.last_seen_s,
        ..Default::default()
    }
}

/// A real's REAL_EXPIRED value after adding a pass's expiries (wrapping, as the data
/// path's event counters they are subtracted from).
pub fn add_expiry(cur: ConnExpiry, add: &ConnExpiry) -> ConnExpiry {
    ConnExpiry {
        active: cur.active.wrapping_add(add.active),
        inactive: cur.inactive.wrapping_add(add.inactive),
        templates: cur.templates.wrapping_add(add.templates),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::conn::TcpState;
    use lb_common::consts::proto;

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        assert!(!expired(100, 90, 10));
        assert!(expired(101, 90, 10));
        assert!(!expired(90, 95, 1), "a stamp ahead of the clock is fresh");
        assert!(expired(5, u32::MAX - 10, 10), "wraps");
    }

    #[test]
    fn masks_clients() {
        let a = [u32::from_ne_bytes([198, 18, 7, 9]), 0, 0, 0];
        let m = [u32::from_ne_bytes([255, 255, 255, 0]), 0, 0, 0];
        assert_eq!(masked(&a, &m)[0], u32::from_ne_bytes([198, 18, 7, 0]));
    }

    fn flow(state: TcpState, last: u32, inactive: bool) -> (FlowKey, FlowValue) {
        let k = FlowKey {
            proto: proto::TCP,
            ..Default::default()
        };
        let v = FlowValue {
            state: state as u8,
            last_seen_s: last,
            real_id: 7,
            flags: if inactive { FlowFlags::INACTIVE } else { 0 },
            ..Default::default()
        };
        (k, v)
    }

    #[test]
    fn flows_expire_by_state_and_settings() {
        let pass = |now, tcp_s| Pass {
            now,
            timeouts: Timeouts {
                tcp_s,
                ..Default::default()
            },
        };
        let (k, v) = flow(TcpState::Established, 1000, false);
        assert!(!pass(1900, 0).flow_expired(&k, &v), "900 s, IPVS's default");
        assert!(pass(1901, 0).flow_expired(&k, &v));
        assert!(pass(1061, 60).flow_expired(&k, &v), "--set 60");
        let (k, v) = flow(TcpState::SynRecv, 1000, true);
        assert!(!pass(1060, 0).flow_expired(&k, &v));
        assert!(pass(1061, 0).flow_expired(&k, &v), "SYN_RECV: 60 s");
    }

    #[test]
    fn tally_splits_active_inactive_and_templates() {
        let mut t = Tally::default();
        let slot = Some(&Real::default());
        t.flow(&flow(TcpState::Established, 0, false).1, slot);
        t.flow(&flow(TcpState::Close, 0, true).1, slot);
        t.flow(&flow(TcpState::Close, 0, true).1, slot);
        t.template(7, slot);
        t.template(9, slot);
        assert_eq!(
            t.per_real[&7],
            ConnExpiry {
                active: 1,
                inactive: 2,
                templates: 1
            }
        );
        assert_eq!(t.per_real[&9].templates, 1);
        assert_eq!(
            (t.report.active, t.report.inactive, t.report.templates),
            (1, 2, 2)
        );
        let cur = ConnExpiry {
            active: u64::MAX,
            ..Default::default()
        };
        assert_eq!(add_expiry(cur, &t.per_real[&7]).active, 0, "wraps");
    }

    /// A flow or template whose real's id went to another real (the slot's generation
    /// moved on) is reported expired but booked on no real: the new real's counts were
    /// settled when it got the id.
    #[test]
    fn stale_expiries_move_no_counter() {
        let new_real = Real {
            generation: 1,
            ..Real::default()
        };
        let mut t = Tally::default();
        let (_, old) = flow(TcpState::Established, 0, false);
        t.flow(&old, Some(&new_real));
        t.template(7, Some(&new_real));
        assert!(t.per_real.is_empty(), "{:?}", t.per_real);
        assert_eq!((t.report.active, t.report.templates), (1, 1));
        // The new real's own flow (its generation in the reference) is booked, under its
        // reference (the booking checks it again under the lock).
        let mine = FlowValue {
            real_id: new_real.reference(7),
            ..old
        };
        t.flow(&mine, Some(&new_real));
        t.template(new_real.reference(7), Some(&new_real));
        assert_eq!(
            t.per_real[&new_real.reference(7)],
            ConnExpiry {
                active: 1,
                inactive: 0,
                templates: 1
            }
        );
        // No slot to check against: nothing is booked.
        t.flow(&mine, None);
        assert_eq!(t.per_real[&new_real.reference(7)].active, 1);
    }

    #[test]
    fn reap_books_only_what_it_removed_by_the_flags_it_removed_with() {
        let pass = Pass {
            now: 2000,
            timeouts: Timeouts::default(),
        };
        let (k, v) = flow(TcpState::Established, 1000, false);
        assert!(pass.flow_to_reap(&k, &v), "idle past 900 s");
        let (k2, fresh) = flow(TcpState::Established, 1990, false);
        assert!(!pass.flow_to_reap(&k2, &fresh));
        let dead = FlowValue {
            flags: FlowFlags::DEAD,
            ..fresh
        };
        assert!(pass.flow_to_reap(&k2, &dead), "a claimed flow left behind");
        let e = reap_entry(&k, &v);
        assert_eq!(
            (e.key, e.seen_word, e.seen_last_s),
            (k, StateWord::of(&v).0, 1000)
        );
        let mut t = Tally::default();
        let slot = Some(&Real::default());
        // Seen active, but a FIN moved it to inactive before the claim: booked inactive.
        let removed = ReapEntry {
            outcome: reap::REMOVED,
            flags: FlowFlags::INACTIVE as u32,
            ..e
        };
        assert!(!t.reaped(&v, &removed, slot));
        assert_eq!((t.report.active, t.report.inactive), (0, 1));
        for (outcome, live) in [
            (reap::CHANGED, true),
            (reap::PENDING, true),
            (reap::ABSENT, false),
        ] {
            let e = ReapEntry { outcome, ..e };
            assert_eq!(t.reaped(&v, &e, slot), live, "outcome {outcome}");
        }
        assert_eq!(t.per_real[&7].inactive, 1);
        assert_eq!(t.per_real[&7].active, 0, "nothing else booked");
    }

    #[test]
    fn orphan_replies_live_their_window_from_the_first_pass_that_finds_them() {
        let pass = |now| Pass {
            now,
            timeouts: Timeouts::default(),
        };
        let at = |stamp_s| NatReverse {
            stamp_s,
            ..Default::default()
        };
        assert_eq!(pass(500).orphan_reply(&at(0)), Orphan::Stamp);
        assert_eq!(pass(510).orphan_reply(&at(500)), Orphan::Keep);
        assert_eq!(pass(511).orphan_reply(&at(500)), Orphan::Expire);
    }

    #[test]
    fn nat_flows_own_their_reply_entries() {
        let (k, mut v) = flow(TcpState::Established, 0, false);
        let real = [0x0200_13c6, 0, 0, 0];
        let rk = k.nat_reverse_key(&real, lb_common::Be16::from_host(8080));
        let rev = NatReverse {
            vip: k.dst,
            vport: k.dport,
            ..Default::default()
        };
        let mut owners = Owners::default();
        v.fwd = lb_common::ForwardMode::Dr as u8;
        owners.flow(&k, &v);
        assert!(!owners.own(&rk, &rev), "a DR flow owns no reply entry");
        v.fwd = lb_common::ForwardMode::Nat as u8;
        owners.flow(&k, &v);
        assert!(owners.own(&rk, &rev));
        let other_vport = NatReverse {
            vport: lb_common::Be16::from_host(8443),
            ..rev
        };
        assert!(!owners.own(&rk, &other_vport), "another service's entry");
    }

    #[test]
    fn templates_held_by_live_flows() {
        let svc = Service {
            flags: VipFlags(VipFlags::PERSISTENT),
            persist_group: 3,
            persist_mask: [u32::from_ne_bytes([255, 255, 255, 0]), 0, 0, 0],
            ..Default::default()
        };
        let k = FlowKey {
            src: [u32::from_ne_bytes([198, 18, 7, 9]), 0, 0, 0],
            proto: proto::TCP,
            ..Default::default()
        };
        let mut c = Controlled::default();
        c.flow(&svc, &k);
        let mut t = PersistKey {
            group: 3,
            proto: proto::TCP,
            family: k.family,
            client: [u32::from_ne_bytes([198, 18, 7, 0]), 0, 0, 0],
            ..Default::default()
        };
        assert!(c.holds(&t));
        t.group = 4;
        assert!(!c.holds(&t));
        let mut plain = Controlled::default();
        plain.flow(&Service::default(), &k);
        assert!(!plain.holds(&PersistKey { group: 0, ..t }));
    }
}
