//! Real ids that come back (issue 13; docs/datapath.md "Real ids"): a deleted real's id
//! given to another real gets the slot's next generation (`Real::generation`), and
//! everything that still names the old real, a flow, a cached flow, a persistence
//! template, a locality entry, a NAT reverse entry, carries the old one. None of it
//! reaches the new real, and none of it moves the new real's counters.
//!
//! The cases write the reused slot as lb-ctl's `-a` does (`lb_ctl::ipvs::real::add`: the
//! new real, the next generation); the state of the old real is either provisioned with
//! generation 0 (what the slot had) or made by packets before the slot changes.

use super::common::*;
use lb_common::conn::{ConnEvents, Settings, TcpState};
use lb_common::{Counter, Drop, FlowFlags, FlowValue, ForwardMode, Real, SchedKind, VipFlags};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::{Provision, Table};

use ForwardMode::{Dr, Nat};

pub fn cases() -> Vec<Sequence> {
    vec![
        old_flow_dropped(),
        old_flow_expired_moves_no_counter(),
        old_cached_flow_not_served(),
        old_template_reschedules(),
        old_locality_entry_reschedules(SchedKind::Lblc),
        old_locality_entry_reschedules(SchedKind::Lblcr),
        old_nat_reply_counts_on_no_real(),
    ]
}

/// The real lb-ctl writes at a reused id: another address (REAL4_C, its own MAC) in the
/// same service, mode `mode`, port `port`, the slot's next generation (the old real's
/// was 0).
fn newcomer(mode: ForwardMode, port: u16) -> Real {
    Real {
        dst_mac: [0x02, 0, 0, 0, 0x01, 0x04],
        generation: 1,
        ..real(mode, SVC, REAL4_C, port)
    }
}

/// The reuse itself: REALS[`id`] := `r`.
fn reuse(id: u32, r: Real) -> Action {
    Action::Update(Provision {
        reals: vec![(id, r)],
        ..Provision::default()
    })
}

/// SVC on VIP4:80/TCP under rr, list [REAL_A, REAL_B]: REAL_A (REAL4) and, at REAL_B,
/// `at_b`.
fn rr(at_b: Real, svc_flags: u32, kind: SchedKind) -> Provision {
    let mut prov = one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80));
    prov.reals.push((REAL_B, at_b));
    prov.services[0].flags = svc_flags;
    prov.services[0].table = Table::Sched {
        kind,
        table: Vec::new(),
        reals: vec![REAL_A, REAL_B],
    };
    prov
}

/// An ESTABLISHED DR flow of the old real at REAL_B (generation 0: the bare id).
fn old_flow() -> FlowValue {
    FlowValue {
        real_id: REAL_B,
        svc_id: SVC,
        state: TcpState::Established as u8,
        flags: FlowFlags::NO_OUTPUT,
        fwd: Dr as u8,
        ..Default::default()
    }
}

fn ev(opened: u64, to_inactive: u64, templates: u64) -> ConnEvents {
    ConnEvents {
        opened,
        to_inactive,
        templates,
        ..Default::default()
    }
}

/// A packet dropped `RealGone`, the flow of `p` left as `flow`.
fn real_gone(what: &'static str, p: &Pkt, flow: FlowValue) -> Action {
    Action::Packet(Step {
        what,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Drop,
        output: Output::NotChecked,
        counts: dropped(Drop::RealGone),
        state: vec![
            StateCheck::Flow(key_of(p), Some(flow)),
            StateCheck::Conns(REAL_B, ConnEvents::default()),
        ],
    })
}

/// expire_nodest_conn 0: a flow of the old real whose id went to another real of the same
/// service, active: dropped `RealGone` as after `-d`, not sent to the new real.
fn old_flow_dropped() -> Sequence {
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let mut prov = rr(newcomer(Dr, 80), 0, SchedKind::Rr);
    prov.flows.push((key_of(&p), old_flow()));
    Sequence {
        name: "real_gen_old_flow_not_sent_to_new_real",
        why: "an ESTABLISHED flow of a deleted real whose id went to another real of the same service (the next generation): its packet is dropped RealGone (expire_nodest_conn 0), as after -d, not forwarded to the new real",
        provision: prov,
        steps: vec![real_gone("the old flow's ACK: RealGone", &p, old_flow())],
    }
}

/// expire_nodest_conn 1: the old flow is expired and its packet scheduled anew (rr: REAL_A,
/// the head), and the expiry takes nothing off the new real's counters (the data path's
/// unbind is the old real's, whose counts lb-ctl settled at the reuse).
fn old_flow_expired_moves_no_counter() -> Sequence {
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let a = real(Dr, SVC, REAL4, 80);
    let mut prov = rr(newcomer(Dr, 80), 0, SchedKind::Rr);
    prov.flows.push((key_of(&p), old_flow()));
    prov.settings = Some(Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    });
    Sequence {
        name: "real_gen_old_flow_expired_moves_no_counter",
        why: "expire_nodest_conn 1: a flow of a deleted real whose id went to another real is expired by the data path and its packet scheduled anew (REAL_A), with no unbind on the id's new real (its REAL_CONNS stay zero)",
        provision: prov,
        steps: vec![fwd_tx(
            "the old flow's ACK: expired, rescheduled to REAL_A",
            &p,
            &a,
            REAL_A,
            true,
            vec![
                StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Dr))),
                StateCheck::FlowCount(1),
                StateCheck::Conns(REAL_A, ev(1, 1, 0)),
                StateCheck::Conns(REAL_B, ConnEvents::default()),
            ],
        )],
    }
}

/// A flow of the old real cached on this CPU, then the id given to another real: the
/// slot misses (its generation is not the slot's), so the packet meets the flow, which
/// is stale too: RealGone, not the cached real id's new owner.
fn old_cached_flow_not_served() -> Sequence {
    const T: u32 = 100;
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let old = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let flow = FlowValue {
        last_seen_s: T,
        ..old_flow()
    };
    let mut prov = rr(old, 0, SchedKind::Rr);
    prov.flows.push((key_of(&p), flow));
    prov.clock = Some(T);
    Sequence {
        name: "real_gen_cached_flow_not_sent_to_new_real",
        why: "a flow cached for the second, its real deleted and the id given to another real of the service within that second: the cache slot misses (another generation) and the flow is stale, RealGone; not served to the new real from the cache",
        provision: prov,
        steps: vec![
            fwd_tx(
                "the flow's ACK: to the old real, cached",
                &p,
                &old,
                REAL_B,
                false,
                vec![StateCheck::Flow(key_of(&p), Some(flow))],
            ),
            reuse(REAL_B, newcomer(Dr, 80)),
            real_gone("the next ACK, same second: RealGone", &p, flow),
        ],
    }
}

/// A persistence template for the old real at REAL_A, made by a SYN (rr's first pick);
/// the id then given to another real of the service: the client's next connection is
/// scheduled anew (rr's next, REAL_B) and gets a new template, and the stale one's
/// replacement takes nothing off the new real's PersistConn.
fn old_template_reschedules() -> Sequence {
    let syn = |port| flags(Pkt::tcp(CLIENT4, VIP4, port, 80), SYN);
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    Sequence {
        name: "real_gen_old_template_not_used",
        why: "a persistence template of a deleted real whose id went to another real of the service is no template: the client's next connection is scheduled anew (REAL_B) with a new template, and the new real at the id keeps its counters",
        provision: rr(b, VipFlags::PERSISTENT, SchedKind::Rr),
        steps: vec![
            fwd_tx(
                "SYN: REAL_A, with a template",
                &syn(40000),
                &a,
                REAL_A,
                true,
                vec![
                    StateCheck::PersistCount(1),
                    StateCheck::Conns(REAL_A, ev(1, 1, 1)),
                ],
            ),
            reuse(REAL_A, newcomer(Dr, 80)),
            fwd_tx(
                "the client's next SYN: the template is stale, rr gives REAL_B",
                &syn(40001),
                &b,
                REAL_B,
                true,
                vec![
                    StateCheck::PersistCount(1),
                    StateCheck::Conns(REAL_A, ev(1, 1, 1)),
                    StateCheck::Conns(REAL_B, ev(1, 1, 1)),
                ],
            ),
        ],
    }
}

/// lblc (lblcr): the locality entry (the set's one member) names the old real at REAL_A
/// (wlc's first pick); the id then given to another real of the service: the entry is no
/// entry (the member no member), wlc picks again (REAL_B, the least loaded: REAL_A's id
/// still counts the old real's connection here, which lb-ctl would have settled).
fn old_locality_entry_reschedules(kind: SchedKind) -> Sequence {
    let syn = |port| flags(Pkt::tcp(CLIENT4, VIP4, port, 80), SYN);
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let (name, why) = if kind == SchedKind::Lblc {
        (
            "real_gen_old_locality_entry_not_used",
            "lblc: a locality entry naming a deleted real whose id went to another real of the service is no entry: the scheduler picks again (wlc: REAL_B), not the id's new real",
        )
    } else {
        (
            "real_gen_old_lblcr_member_not_used",
            "lblcr: a set member naming a deleted real whose id went to another real of the service is no member: the set has no usable real, wlc picks again (REAL_B), not the id's new real",
        )
    };
    Sequence {
        name,
        why,
        provision: rr(b, 0, kind),
        steps: vec![
            fwd_tx(
                "SYN: wlc gives REAL_A, cached for the VIP",
                &syn(40000),
                &a,
                REAL_A,
                true,
                vec![],
            ),
            reuse(REAL_A, newcomer(Dr, 80)),
            fwd_tx(
                "the next SYN: the entry is stale, wlc gives REAL_B",
                &syn(40001),
                &b,
                REAL_B,
                true,
                vec![],
            ),
        ],
    }
}

/// A NAT flow of the old real at REAL_B (REAL4_B:8080) and its NAT_REV entry; the id
/// then given to another NAT real at the same address and port (so NAT_FILTER keeps the
/// bit): the old connection's replies are still translated, as IPVS's connection holds
/// its dest, but counted on the service only, and a FIN reply does not move the stale
/// flow (which would move the new real's counters).
fn old_nat_reply_counts_on_no_real() -> Sequence {
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let old = Real {
        dst_mac: MAC_REAL_B,
        ..real(Nat, SVC, REAL4_B, 8080)
    };
    let new = Real {
        generation: 1,
        ..old
    };
    let flow = FlowValue {
        flags: 0,
        fwd: Nat as u8,
        ..old_flow()
    };
    let (kr, rev) = nat_rev_of(&p, &old, IF_LO, SVC, REAL_B);
    let mut prov = rr(new, 0, SchedKind::Rr);
    prov.flows.push((key_of(&p), flow));
    prov.nat_rev.push((kr, rev));
    let reply = reply_of(&p, &old);
    let fin = flags(reply.clone(), FIN | ACK);
    let step = |what, r: &Pkt| {
        Action::Packet(Step {
            what,
            input: r.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(nat_return(r, &rev)),
            counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX])
                .svc(SVC, outbound(r)),
            state: vec![
                StateCheck::Flow(key_of(&p), Some(flow)),
                StateCheck::Conns(REAL_B, ConnEvents::default()),
            ],
        })
    };
    Sequence {
        name: "real_gen_old_nat_reply_counts_on_no_real",
        why: "a NAT_REV entry of a deleted real whose id went to another NAT real at the same address: its replies are still translated (IPVS's connection holds its dest) but counted on the service only, and a FIN reply leaves the stale flow and the new real's counters alone",
        provision: prov,
        steps: vec![
            step(
                "the old connection's reply: translated, no real counted",
                &reply,
            ),
            step("its FIN: translated, the stale flow not moved", &fin),
        ],
    }
}
