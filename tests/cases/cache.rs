//! The per-CPU flow cache (docs/datapath.md step 7): a plain packet (UDP, or TCP ACK
//! without SYN/FIN/RST) of a flow cached this CLOCK second goes to the cached real without
//! FLOWS, for at most `HIT_BUDGET` packets; the first packet of the next second goes
//! through FLOWS (stamping it) again; a FIN or RST empties the flow's slot before anything
//! else, so the state it moves is what the next plain packet sees; a new connection on an
//! evicted flow's ports (another ISN) is not served from the old slot; a flow that is not
//! ESTABLISHED is not cached; a cached real that is gone is not used; two flows in one
//! slot each go to their own real.
//!
//! The cases change FLOWS under the cache, which lb-ctl never does: it shows which of the
//! two served a packet. The harness pins itself to one CPU (the cache is per CPU).

use super::common::*;
use lb_common::conn::{TcpState, UDP_STATE};
use lb_common::flow_cache::{HIT_BUDGET, cache_slot};
use lb_common::{Counter, Drop, FlowFlags, FlowValue, ForwardMode::Dr, Real, RealFlags};
use lb_tests::bpf::{IF_LO, TEST_CACHE_BITS, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::Provision;

pub fn cases() -> Vec<Sequence> {
    vec![
        served_for_the_second(false),
        served_for_the_second(true),
        port_reused_after_eviction(),
        udp_served(),
        hit_budget(),
        real_gone_not_served(),
        one_slot_two_flows(),
    ]
}

/// REAL_A and REAL_B of SVC (B with its own MAC) in `v6`'s family, on `port`.
fn reals_ab(v6: bool, port: u16) -> (Real, Real) {
    let (ra, rb) = if v6 {
        (REAL6, REAL6_B)
    } else {
        (REAL4, REAL4_B)
    };
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, rb, port)
    };
    (real(Dr, SVC, ra, port), b)
}

/// A third real for SVC (its own address and MAC) in `v6`'s family.
fn real_c(v6: bool) -> Real {
    Real {
        dst_mac: [0x02, 0, 0, 0, 0x01, 0x04],
        ..real(Dr, SVC, if v6 { "2001:db8:2::4" } else { REAL4_C }, 80)
    }
}

/// The first CLOCK second of the cases.
const T: u32 = 100;

/// An ESTABLISHED DR flow (active, no reply seen) to `real_id`, last seen at `seen`.
fn established(real_id: u32, seen: u32) -> FlowValue {
    FlowValue {
        real_id,
        svc_id: SVC,
        last_seen_s: seen,
        state: TcpState::Established as u8,
        flags: FlowFlags::NO_OUTPUT,
        fwd: Dr as u8,
        ..Default::default()
    }
}

/// `p` forwarded by DR to `r` (id `id`) as an established flow's packet; FLOWS then holds
/// `flow` for it.
fn to_real(what: &'static str, p: &Pkt, r: &Real, id: u32, flow: FlowValue) -> Action {
    fwd_tx(
        what,
        p,
        r,
        id,
        false,
        vec![StateCheck::Flow(key_of(p), Some(flow))],
    )
}

fn set_flow(p: &Pkt, v: FlowValue) -> Action {
    Action::Update(Provision {
        flows: vec![(key_of(p), v)],
        ..Provision::default()
    })
}

fn set_clock(t: u32) -> Action {
    Action::Update(Provision {
        clock: Some(t),
        ..Provision::default()
    })
}

/// Two DR reals of SVC on `vip`:80/TCP (REAL_B with its own MAC), the flow of `p` to
/// REAL_A last seen at `seen`, CLOCK at T.
fn two_reals(p: &Pkt, vip: &str, a: &Real, b: &Real, seen: u32) -> Provision {
    let mut prov = one(vip, 80, TCP, *a);
    prov.reals.push((REAL_B, *b));
    prov.flows.push((key_of(p), established(REAL_A, seen)));
    prov.clock = Some(T);
    prov
}

fn served_for_the_second(v6: bool) -> Sequence {
    let (client, vip) = if v6 { (CLIENT6, VIP6) } else { (CLIENT4, VIP4) };
    let p = Pkt::tcp(client, vip, 40000, 80);
    let ack = flags(p.clone(), ACK);
    let (a, b) = reals_ab(v6, 80);
    let c = real_c(v6);
    let closing = |real_id| FlowValue {
        state: TcpState::FinWait as u8,
        flags: FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT,
        ..established(real_id, T + 1)
    };
    let mut prov = two_reals(&p, vip, &a, &b, T - 10);
    prov.reals.push((REAL_C, c));
    Sequence {
        name: if v6 {
            "cache_v6_serves_plain_packets_for_the_second"
        } else {
            "cache_v4_serves_plain_packets_for_the_second"
        },
        why: "a plain packet of a flow cached this second skips FLOWS (no stamp); the next second goes through FLOWS; a FIN empties the slot; a FIN_WAIT flow is not cached",
        provision: prov,
        steps: vec![
            to_real(
                "first packet: FLOWS (REAL_A), stamped T, cached",
                &p,
                &a,
                REAL_A,
                established(REAL_A, T),
            ),
            set_flow(&p, established(REAL_B, T - 5)),
            to_real(
                "same second: the cache's REAL_A; FLOWS not read, not stamped",
                &p,
                &a,
                REAL_A,
                established(REAL_B, T - 5),
            ),
            set_clock(T + 1),
            to_real(
                "next second: FLOWS again (REAL_B), stamped, cached",
                &p,
                &b,
                REAL_B,
                established(REAL_B, T + 1),
            ),
            set_flow(&p, established(REAL_A, T + 1)),
            to_real(
                "FIN ACK: FLOWS (REAL_A), FIN_WAIT",
                &flags(p.clone(), FIN | ACK),
                &a,
                REAL_A,
                closing(REAL_A),
            ),
            set_flow(&p, closing(REAL_C)),
            to_real(
                "ACK after the FIN: FLOWS (REAL_C); the slot (REAL_B) was emptied, not refilled (REAL_A)",
                &ack,
                &c,
                REAL_C,
                closing(REAL_C),
            ),
            set_flow(&p, closing(REAL_A)),
            to_real(
                "ACK again: FLOWS (REAL_A); a FIN_WAIT flow was not cached (REAL_C)",
                &ack,
                &a,
                REAL_A,
                closing(REAL_A),
            ),
        ],
    }
}

/// `p` with this TCP sequence number.
fn seq(p: Pkt, n: u32) -> Pkt {
    let mut p = p;
    if let lb_tests::packet::L4::Tcp(t) = &mut p.l4 {
        t.sequence_number = n;
    }
    p
}

/// A cached flow evicted from FLOWS, then its ports reused by a new connection in the same
/// second: the new connection's sequence numbers (another ISN) are far from the slot's, so
/// its handshake ACK goes to the new flow's real, not the evicted flow's cached one. The
/// SYN itself does not touch the cache.
fn port_reused_after_eviction() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let syn = seq(p.clone().syn(), 0x9000_0000);
    let ack = seq(flags(p.clone(), ACK), 0x9000_0001);
    // REAL_A at weight 0: still serving its flow, out of the table; new flows go to REAL_B.
    let (a, b) = reals_ab(false, 80);
    let a = Real { weight: 0, ..a };
    let new_b = FlowValue {
        last_seen_s: T,
        ..fv_new(REAL_B, SVC, &syn, Dr)
    };
    Sequence {
        name: "cache_port_reused_after_eviction_not_served",
        why: "a new connection on an evicted cached flow's ports (another ISN) is not served from the old slot: its ACK goes to its own real",
        provision: two_reals(&p, VIP4, &a, &b, T),
        steps: vec![
            to_real("cached (REAL_A)", &p, &a, REAL_A, established(REAL_A, T)),
            Action::Evict(key_of(&p)),
            fwd_tx(
                "SYN, another ISN: a new flow, REAL_B",
                &syn,
                &b,
                REAL_B,
                true,
                vec![StateCheck::Flow(key_of(&p), Some(new_b))],
            ),
            to_real(
                "its ACK: FLOWS (REAL_B), ESTABLISHED",
                &ack,
                &b,
                REAL_B,
                established(REAL_B, T),
            ),
        ],
    }
}

/// UDP datagrams are plain packets: cached and served as TCP ACKs are.
fn udp_served() -> Sequence {
    let p = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let (a, b) = reals_ab(false, 53);
    let udp = |real_id, seen| FlowValue {
        real_id,
        svc_id: SVC,
        last_seen_s: seen,
        state: UDP_STATE,
        flags: FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT,
        ..Default::default()
    };
    let mut prov = one(VIP4, 53, UDP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((key_of(&p), udp(REAL_A, T - 10)));
    prov.clock = Some(T);
    Sequence {
        name: "cache_udp_served_for_the_second",
        why: "a UDP flow is cached like an ESTABLISHED TCP one: FLOWS, then the cache for the second, then FLOWS",
        provision: prov,
        steps: vec![
            to_real("FLOWS (REAL_A), cached", &p, &a, REAL_A, udp(REAL_A, T)),
            set_flow(&p, udp(REAL_B, T - 5)),
            to_real("the cache's REAL_A", &p, &a, REAL_A, udp(REAL_B, T - 5)),
            set_clock(T + 1),
            to_real(
                "next second: FLOWS (REAL_B)",
                &p,
                &b,
                REAL_B,
                udp(REAL_B, T + 1),
            ),
        ],
    }
}

/// A slot serves HIT_BUDGET packets, then its flow is looked up again (CLOCK standing
/// still, as when no sweep runs).
fn hit_budget() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let (a, b) = reals_ab(false, 80);
    let mut steps = vec![
        to_real(
            "FLOWS (REAL_A), cached",
            &p,
            &a,
            REAL_A,
            established(REAL_A, T),
        ),
        set_flow(&p, established(REAL_B, T - 5)),
    ];
    for _ in 0..HIT_BUDGET {
        steps.push(to_real(
            "served by the cache (REAL_A)",
            &p,
            &a,
            REAL_A,
            established(REAL_B, T - 5),
        ));
    }
    steps.push(to_real(
        "budget spent: FLOWS (REAL_B), same second",
        &p,
        &b,
        REAL_B,
        established(REAL_B, T),
    ));
    Sequence {
        name: "cache_hit_budget",
        why: "a slot serves HIT_BUDGET packets, then the flow is looked up in FLOWS again even within the second",
        provision: two_reals(&p, VIP4, &a, &b, T),
        steps,
    }
}

/// A cached flow whose real is deleted: its next packet is dropped as a FLOWS hit's would
/// be (expire_nodest_conn 0), not sent to the cached real.
fn real_gone_not_served() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let (a, b) = reals_ab(false, 80);
    let gone = Real {
        flags: RealFlags(0),
        weight: 0,
        ..a
    };
    Sequence {
        name: "cache_real_gone_not_served",
        why: "a cache hit checks its real as a FLOWS hit does: deleted → RealGone, not the cached real",
        provision: two_reals(&p, VIP4, &a, &b, T),
        steps: vec![
            to_real("cached", &p, &a, REAL_A, established(REAL_A, T)),
            Action::Update(Provision {
                reals: vec![(REAL_A, gone)],
                ..Provision::default()
            }),
            Action::Packet(Step {
                what: "REAL_A deleted: dropped RealGone",
                input: p.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Drop,
                output: Output::NotChecked,
                counts: Counts::of(&[Counter::RX, Drop::RealGone.counter()]),
                state: vec![StateCheck::Flow(key_of(&p), Some(established(REAL_A, T)))],
            }),
        ],
    }
}

/// Two flows whose keys share a slot take turns in it; each packet goes to its own flow's
/// real (the slot is matched on the whole key, not trusted by position).
fn one_slot_two_flows() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let slot = cache_slot(&key_of(&p), TEST_CACHE_BITS);
    let q = (1024..=u16::MAX)
        .map(|port| Pkt::tcp(CLIENT4, VIP4, port, 80))
        .find(|q| q.ports() != p.ports() && cache_slot(&key_of(q), TEST_CACHE_BITS) == slot)
        .expect("some client port shares the slot of port 40000");
    let (a, b) = reals_ab(false, 80);
    let mut prov = two_reals(&p, VIP4, &a, &b, T);
    prov.flows.push((key_of(&q), established(REAL_B, T)));
    Sequence {
        name: "cache_one_slot_two_flows",
        why: "flows sharing a slot evict each other and each still goes to its own real",
        provision: prov,
        steps: vec![
            to_real("flow 1 → REAL_A", &p, &a, REAL_A, established(REAL_A, T)),
            to_real("flow 2 → REAL_B", &q, &b, REAL_B, established(REAL_B, T)),
            to_real(
                "flow 1 again → REAL_A",
                &p,
                &a,
                REAL_A,
                established(REAL_A, T),
            ),
            to_real(
                "flow 2 again → REAL_B",
                &q,
                &b,
                REAL_B,
                established(REAL_B, T),
            ),
        ],
    }
}
