//! NAT_REV when the data path expires a flow itself (docs/datapath.md step 7 and
//! "Connections": `expire_nodest_conn` 1 with the flow's real gone or quiescent, and port
//! reuse, IPVS `conn_reuse_mode`): a NAT flow's reverse entry goes with it, as IPVS
//! translates no reply once the connection is gone, but only if the entry is the flow's
//! (same VIP and port, as lb-ctl's sweep checks); a DR flow touches no entry.

use super::common::*;
use lb_common::ForwardMode::{Dr, Nat};
use lb_common::conn::{Settings, TcpState};
use lb_common::{Be16, FlowValue, ForwardMode, Pass, Real, RealFlags};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Case, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::{Provision, Table};

pub fn cases() -> Vec<Sequence> {
    vec![
        syn_reuse_forgets(RST),
        syn_reuse_forgets(FIN),
        nodest_forgets(Nat as u8),
        nodest_forgets(0),
        nodest_keeps_other_flows_entry(),
        dr_flow_expiry_keeps_entry(),
    ]
}

/// Two NAT reals (REAL_A on REAL4, REAL_B on REAL4_B, port 8080) of SVC on VIP4:80 under
/// rr, in that order.
fn rr_nat() -> (Provision, Real, Real) {
    let a = real(Nat, SVC, REAL4, 8080);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Nat, SVC, REAL4_B, 8080)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.services[0].table = Table::Sched {
        kind: lb_common::SchedKind::Rr,
        table: Vec::new(),
        reals: vec![REAL_A, REAL_B],
    };
    (prov, a, b)
}

/// A reply from the old real that no NAT_REV entry covers: passed untouched (`NotVip`).
fn late_reply_passes(p: &Pkt, r: &Real) -> Action {
    Action::Packet(Step {
        what: "a late reply of the old real on the same ports: no entry, passed untouched",
        input: reply_of(p, r).into(),
        ingress: IF_LO,
        verdict: Verdict::Pass,
        output: Output::Unchanged,
        counts: passed(Pass::NotVip),
        state: vec![],
    })
}

/// conn_reuse_mode 1 on a NAT service: SYN to REAL_A (NAT_REV for REAL_A), the end of the
/// connection (RST: CLOSE after ACK; FIN: TIME_WAIT), a SYN on the same ports expires the
/// flow and goes to rr's next real REAL_B: REAL_A's entry gone, REAL_B's recorded; a late
/// segment of REAL_A on the 4-tuple is then not turned into the client's new connection.
fn syn_reuse_forgets(end: u8) -> Sequence {
    let (prov, a, b) = rr_nat();
    let base = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let syn = flags(base.clone(), SYN);
    let (ka, ra) = nat_rev_of(&syn, &a, IF_LO, SVC, REAL_A);
    let (kb, rb) = nat_rev_of(&syn, &b, IF_LO, SVC, REAL_B);
    let (name, why) = if end == RST {
        (
            "nat_expiry_syn_after_rst_forgets_rev",
            "conn_reuse_mode 1, NAT: SYN (REAL_A), ACK, RST (CLOSE), SYN again: the CLOSE flow is expired with its NAT_REV entry (REAL_A → client), the new flow to REAL_B records its own; REAL_A's late reply passes untranslated",
        )
    } else {
        (
            "nat_expiry_syn_after_fin_forgets_rev",
            "conn_reuse_mode 1, NAT: SYN (REAL_A), FIN (TIME_WAIT), SYN again: the TIME_WAIT flow is expired with its NAT_REV entry, the new flow to REAL_B records its own; REAL_A's late reply passes untranslated",
        )
    };
    let mut steps = vec![fwd_tx(
        "SYN: new flow to REAL_A, NAT_REV recorded",
        &syn,
        &a,
        REAL_A,
        true,
        vec![StateCheck::NatRev(ka, Some(ra)), StateCheck::NatRevCount(1)],
    )];
    if end == RST {
        steps.push(fwd_tx(
            "ACK",
            &flags(base.clone(), ACK),
            &a,
            REAL_A,
            false,
            vec![],
        ));
    }
    steps.push(fwd_tx(
        "the end of the connection: the entry stays",
        &flags(base.clone(), end),
        &a,
        REAL_A,
        false,
        vec![StateCheck::NatRev(ka, Some(ra))],
    ));
    steps.push(fwd_tx(
        "SYN again: the old flow and its entry expired, a new connection to REAL_B",
        &syn,
        &b,
        REAL_B,
        true,
        vec![
            StateCheck::Flow(key_of(&syn), Some(fv_new(REAL_B, SVC, &syn, Nat))),
            StateCheck::NatRev(ka, None),
            StateCheck::NatRev(kb, Some(rb)),
            StateCheck::NatRevCount(1),
        ],
    ));
    steps.push(late_reply_passes(&base, &a));
    Sequence {
        name,
        why,
        provision: prov,
        steps,
    }
}

/// SVC on VIP4:80 with REAL_A (NAT, REAL4:8080) and REAL_B deleted (`ACTIVE` cleared, its
/// other fields kept, as lb-ctl leaves the slot; on REAL4_B:8080 in mode `b_mode`), an
/// ESTABLISHED flow of `p` on REAL_B recorded with method byte `fwd`, and
/// `expire_nodest_conn` 1.
fn nodest(p: &Pkt, b_mode: ForwardMode, fwd: u8) -> (Provision, Real, Real) {
    let a = real(Nat, SVC, REAL4, 8080);
    let b = Real {
        flags: RealFlags(0),
        dst_mac: MAC_REAL_B,
        ..real(b_mode, SVC, REAL4_B, 8080)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((
        key_of(p),
        FlowValue {
            real_id: REAL_B,
            svc_id: SVC,
            state: TcpState::Established as u8,
            fwd,
            ..Default::default()
        },
    ));
    prov.settings = Some(Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    });
    (prov, a, b)
}

/// The client's ACK, rescheduled to REAL_A by NAT (a new flow and its NAT_REV entry);
/// `state` checked after it.
fn rescheduled(p: &Pkt, a: &Real, mut state: Vec<StateCheck>) -> Action {
    state.push(StateCheck::Flow(
        key_of(p),
        Some(fv_new(REAL_A, SVC, p, Nat)),
    ));
    fwd_tx(
        "the client's ACK: its flow's real is gone, expired, rescheduled to REAL_A",
        p,
        a,
        REAL_A,
        true,
        state,
    )
}

/// expire_nodest_conn 1, the NAT flow's real deleted: the flow is expired by the data path
/// and its NAT_REV entry (REAL_B → client) with it, by the flow's method (`fwd` NAT) or,
/// for a flow of an older lb (`fwd` 0), by its real's mode (NAT).
fn nodest_forgets(fwd: u8) -> Sequence {
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let (mut prov, a, b) = nodest(&p, Nat, fwd);
    let (kb, rb) = nat_rev_of(&p, &b, IF_LO, SVC, REAL_B);
    prov.nat_rev.push((kb, rb));
    let (ka, ra) = nat_rev_of(&p, &a, IF_LO, SVC, REAL_A);
    let (name, why) = if fwd == 0 {
        (
            "nat_expiry_nodest_forgets_rev_fwd0",
            "expire_nodest_conn=1, a flow recorded without a method (fwd 0) on a deleted NAT real: expired with its NAT_REV entry (the real's mode says NAT); the packet goes to REAL_A, which gets its own entry",
        )
    } else {
        (
            "nat_expiry_nodest_forgets_rev",
            "expire_nodest_conn=1, a NAT flow whose real was deleted: expired with its NAT_REV entry (REAL_B → client); the packet goes to REAL_A, which gets its own entry; REAL_B's late reply passes untranslated",
        )
    };
    Sequence {
        name,
        why,
        provision: prov,
        steps: vec![
            rescheduled(
                &p,
                &a,
                vec![
                    StateCheck::NatRev(kb, None),
                    StateCheck::NatRev(ka, Some(ra)),
                    StateCheck::NatRevCount(1),
                ],
            ),
            late_reply_passes(&p, &b),
        ],
    }
}

/// expire_nodest_conn 1, the NAT flow's real deleted, but the entry at the flow's reverse
/// key is another flow's (same client ports to the same real, for VIP4:443): kept.
fn nodest_keeps_other_flows_entry() -> Sequence {
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let (mut prov, a, b) = nodest(&p, Nat, Nat as u8);
    let (kb, mut other) = nat_rev_of(&p, &b, IF_LO, SVC, REAL_B);
    other.vport = Be16::from_host(443);
    prov.nat_rev.push((kb, other));
    let (ka, ra) = nat_rev_of(&p, &a, IF_LO, SVC, REAL_A);
    Sequence {
        name: "nat_expiry_nodest_keeps_other_flows_rev",
        why: "expire_nodest_conn=1, a NAT flow whose real was deleted is expired, but the NAT_REV entry at its reverse key names VIP4:443, another flow's: kept (the sweep's check), REAL_A's recorded beside it",
        provision: prov,
        steps: vec![rescheduled(
            &p,
            &a,
            vec![
                StateCheck::NatRev(kb, Some(other)),
                StateCheck::NatRev(ka, Some(ra)),
                StateCheck::NatRevCount(2),
            ],
        )],
    }
}

/// expire_nodest_conn 1, a DR flow whose real was deleted (and had been edited to NAT
/// before: the flow keeps its DR method): the expiry touches no NAT_REV entry, not even
/// one at the key a NAT flow of it would have, naming its VIP and port.
fn dr_flow_expiry_keeps_entry() -> Sequence {
    let p = flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), ACK);
    let (mut prov, a, b) = nodest(&p, Nat, Dr as u8);
    let (kb, rb) = nat_rev_of(&p, &b, IF_LO, SVC, REAL_B);
    prov.nat_rev.push((kb, rb));
    let (ka, ra) = nat_rev_of(&p, &a, IF_LO, SVC, REAL_A);
    Case {
        name: "nat_expiry_dr_flow_keeps_rev",
        why: "expire_nodest_conn=1, a DR flow (fwd DR) on a deleted real whose mode is now NAT: expired, but by its own method DR it has no NAT_REV entry, so the one at its would-be key stays",
        provision: prov,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat(&p, &a)),
        counts: lb_tests::case::Counts::of(&[
            lb_common::Counter::RX,
            lb_common::Counter::FWD_NAT,
            lb_common::Counter::NEW_FLOW,
            lb_common::Counter::TX,
        ])
        .both(SVC, REAL_A, new_conn(&p)),
        state: vec![
            StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Nat))),
            StateCheck::NatRev(kb, Some(rb)),
            StateCheck::NatRev(ka, Some(ra)),
            StateCheck::NatRevCount(2),
        ],
    }
    .into()
}
