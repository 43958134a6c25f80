//! Schedulers other than mh through the data path (docs/datapath.md "Schedulers"): the
//! seams (table, rr/wrr walk of the reals list, load scan) and their provisioning
//! (lb-common `sched` contract). Exact equivalence with IPVS's schedulers is the sched test target's job
//! (tests/tests/sched.rs, against reference models); these cases pin one behaviour each.

use super::common::*;
use lb_common::sched::{Dest, dh_table};
use lb_common::{Counter, Drop, ForwardMode::Dr, Pass, Real, SchedKind};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::{Provision, Table};

pub fn cases() -> Vec<Sequence> {
    vec![
        dh_hashes_vip(),
        dh_quiesced(),
        rr_cycles(),
        rr_rst_no_flow_keeps_position(),
        wlc_least_loaded(),
    ]
}

/// Two DR reals (REAL_A, REAL_B; weight `w`) of SVC on VIP4:80 with scheduler `kind`.
fn two(kind: SchedKind, w: u32, table: impl Fn(&[Dest]) -> Vec<u32>) -> (Provision, Real, Real) {
    let a = Real {
        weight: w,
        ..real(Dr, SVC, REAL4, 80)
    };
    let b = Real {
        weight: w,
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let dests = [
        Dest {
            id: REAL_A,
            weight: w,
        },
        Dest {
            id: REAL_B,
            weight: w,
        },
    ];
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.services[0].table = Table::Sched {
        kind,
        table: table(&dests),
        reals: vec![REAL_A, REAL_B],
    };
    (prov, a, b)
}

/// A new flow (SYN) from `client` to VIP4:80, sent to real `id`.
fn to(what: &'static str, client: &str, r: &Real, id: u32) -> Action {
    let p = Pkt::tcp(client, VIP4, 40000, 80).syn();
    Action::Packet(Step {
        what,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, r)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX]).both(
            SVC,
            id,
            new_conn(&p),
        ),
        state: vec![StateCheck::Flow(key_of(&p), Some(fv_new(id, SVC, &p, Dr)))],
    })
}

/// ip_vs_dh.c: bucket = hash_32(ntohl(daddr), 8) (GOLDEN_RATIO_32 multiply, top 8 bits),
/// written out here.
fn dh_bucket(vip: &str) -> usize {
    let a: std::net::Ipv4Addr = vip.parse().unwrap();
    (u32::from(a).wrapping_mul(0x61C8_8647) >> 24) as usize
}

fn dh_hashes_vip() -> Sequence {
    let (prov, a, b) = two(SchedKind::Dh, 1, dh_table);
    let t = dh_table(&[
        Dest {
            id: REAL_A,
            weight: 1,
        },
        Dest {
            id: REAL_B,
            weight: 1,
        },
    ]);
    let id = t[dh_bucket(VIP4)];
    let r = if id == REAL_A { a } else { b };
    Sequence {
        name: "sched_dh_hashes_the_vip",
        why: "dh hashes the destination address (the VIP): every client lands in bucket hash_32(ntohl(VIP), 8)",
        provision: prov,
        steps: vec![
            to("first client", CLIENT4, &r, id),
            to("second client: same bucket", CLIENT4_B, &r, id),
        ],
    }
}

fn dh_quiesced() -> Sequence {
    let (prov, _, _) = two(SchedKind::Dh, 0, dh_table);
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80).syn();
    Sequence {
        name: "sched_dh_quiesced_real_no_real",
        why: "dh does not fall back: the VIP's bucket names a real of weight 0, so the flow finds no real (IPVS returns no destination)",
        provision: prov,
        steps: vec![Action::Packet(Step {
            what: "SYN",
            input: p.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Drop,
            output: Output::NotChecked,
            counts: Counts::of(&[Counter::RX, Drop::NoReal.counter()]),
            state: vec![StateCheck::FlowCount(0)],
        })],
    }
}

fn rr_cycles() -> Sequence {
    let (prov, a, b) = two(SchedKind::Rr, 1, |_| Vec::new());
    Sequence {
        name: "sched_rr_cycles_in_list_order",
        why: "rr takes the reals in list order, one new flow each, and wraps around",
        provision: prov,
        steps: vec![
            to("first: REAL_A", CLIENT4, &a, REAL_A),
            to("second: REAL_B", CLIENT4_B, &b, REAL_B),
            to("third: REAL_A again", "198.18.0.12", &a, REAL_A),
        ],
    }
}

/// An RST of no flow is not scheduled: the rr position does not move, so the next SYN
/// goes where it would have gone without the RST.
fn rr_rst_no_flow_keeps_position() -> Sequence {
    let (prov, a, b) = two(SchedKind::Rr, 1, |_| Vec::new());
    let rst = flags(Pkt::tcp(CLIENT4_B, VIP4, 40000, 80), RST);
    Sequence {
        name: "sched_rr_rst_no_flow_keeps_position",
        why: "an RST of no flow passes without being scheduled (IPVS schedules no RST): rr's last pick stays REAL_A, so the next SYN goes to REAL_B",
        provision: prov,
        steps: vec![
            to("first: REAL_A", CLIENT4, &a, REAL_A),
            Action::Packet(Step {
                what: "RST of no flow: passed, rr not moved",
                input: rst.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Pass,
                output: Output::Unchanged,
                counts: passed(Pass::RstNoFlow),
                state: vec![StateCheck::FlowCount(1)],
            }),
            to("next SYN: REAL_B", "198.18.0.12", &b, REAL_B),
        ],
    }
}

fn wlc_least_loaded() -> Sequence {
    let (prov, a, b) = two(SchedKind::Wlc, 1, |_| Vec::new());
    Sequence {
        name: "sched_wlc_least_loaded",
        why: "wlc: both idle → the first in the list (REAL_A); REAL_A now has one (inactive) connection → REAL_B; equal again → REAL_A (a tie keeps the first)",
        provision: prov,
        steps: vec![
            to("first: REAL_A", CLIENT4, &a, REAL_A),
            to("second: REAL_B", CLIENT4_B, &b, REAL_B),
            to("third: tie, REAL_A", "198.18.0.12", &a, REAL_A),
        ],
    }
}
