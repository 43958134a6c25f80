//! The per-CPU flow cache (docs/datapath.md step 7): a plain packet (UDP, or TCP ACK
//! without SYN/FIN/RST) of a flow cached this CLOCK second goes to the cached real without
//! FLOWS; the first packet of the next second goes through FLOWS (stamping it) again; a
//! FIN / RST / SYN never uses the cache and empties the flow's slot; a cached real that
//! is gone is not used; two flows in one slot each go to their own real.
//!
//! The cases change FLOWS under the cache, which lb-ctl never does: it shows which of the
//! two served a packet.

use super::common::*;
use lb_common::conn::TcpState;
use lb_common::flow_cache::{DEFAULT_CACHE_BITS, cache_slot};
use lb_common::{Counter, Drop, FlowFlags, FlowValue, ForwardMode::Dr, Real, RealFlags};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::Provision;

pub fn cases() -> Vec<Sequence> {
    vec![
        served_for_the_second(false),
        served_for_the_second(true),
        real_gone_not_served(),
        one_slot_two_flows(),
    ]
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
    let (client, vip, ra, rb) = if v6 {
        (CLIENT6, VIP6, REAL6, REAL6_B)
    } else {
        (CLIENT4, VIP4, REAL4, REAL4_B)
    };
    let p = Pkt::tcp(client, vip, 40000, 80);
    let fin = flags(p.clone(), FIN | ACK);
    let a = real(Dr, SVC, ra, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, rb, 80)
    };
    let closing = FlowValue {
        state: TcpState::FinWait as u8,
        flags: FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT,
        ..established(REAL_A, T + 1)
    };
    Sequence {
        name: if v6 {
            "cache_v6_serves_plain_packets_for_the_second"
        } else {
            "cache_v4_serves_plain_packets_for_the_second"
        },
        why: "a plain packet of a flow cached this second skips FLOWS (no stamp); the next second goes through FLOWS; a FIN skips the cache and empties the flow's slot",
        provision: two_reals(&p, vip, &a, &b, T - 10),
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
                "FIN ACK: FLOWS (REAL_A), FIN_WAIT, the slot emptied",
                &fin,
                &a,
                REAL_A,
                closing,
            ),
            to_real(
                "plain ACK after the FIN: FLOWS (REAL_A), not the slot's REAL_B",
                &flags(p.clone(), ACK),
                &a,
                REAL_A,
                closing,
            ),
        ],
    }
}

/// A cached flow whose real is deleted: its next packet is dropped as a FLOWS hit's would
/// be (expire_nodest_conn 0), not sent to the cached real.
fn real_gone_not_served() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
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
    let slot = cache_slot(&key_of(&p), DEFAULT_CACHE_BITS);
    let q = (1024..=u16::MAX)
        .map(|port| Pkt::tcp(CLIENT4, VIP4, port, 80))
        .find(|q| q.ports() != p.ports() && cache_slot(&key_of(q), DEFAULT_CACHE_BITS) == slot)
        .expect("some client port shares the slot of port 40000");
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
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
