//! Reals whose next hop's MAC is not known yet (`RealFlags::NO_NEIGHBOUR`: lb-ctl added them
//! while their next hop did not answer). IPVS creates the connection and then fails to
//! transmit; lb the same: the packet is dropped `NoNeighbour` after it was counted (as
//! `ip_vs_in` counts it before the transmitter runs), a new flow still recorded and counted
//! (a NAT flow with its reverse entry), and once the neighbour follower has
//! written the MAC and cleared the flag, the same flow's next packet is forwarded, every
//! byte checked.

use super::common::*;
use lb_common::{Counter, Drop, ForwardMode, Real, RealFlags};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::Provision;

use ForwardMode::{Dr, Nat, Tun};

pub fn cases() -> Vec<Sequence> {
    vec![
        resolved_later(
            "neighbour_dr_v4_tcp_unresolved_then_resolved",
            "DR: a SYN to a real with no MAC yet is dropped NoNeighbour, the flow recorded and counted; an ACK while still unresolved is dropped too (no new connection); after the MAC is written and the flag cleared the next ACK goes out DR",
            Dr,
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            REAL4,
        ),
        resolved_later(
            "neighbour_tun_v6_udp_unresolved_then_resolved",
            "TUN, IPv6 UDP: the first datagram to an unresolved real is dropped NoNeighbour with its flow recorded; once resolved the flow's next datagram is tunnelled",
            Tun,
            Pkt::udp(CLIENT6, VIP6, 40000, 53),
            REAL6,
        ),
        resolved_later(
            "neighbour_nat_v4_tcp_unresolved_then_resolved",
            "NAT: the first SYN to an unresolved real is dropped NoNeighbour, its flow and NAT_REV entry recorded (the connection exists, as IPVS's); once resolved the next ACK is NAT'd",
            Nat,
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            REAL4,
        ),
    ]
}

/// The client's packet and the later one of the same flow: a SYN then ACKs for TCP,
/// the same datagram for UDP.
fn first_and_next(p: &Pkt) -> (Pkt, Pkt) {
    if p.proto() == TCP {
        (p.clone().syn(), flags(p.clone(), ACK))
    } else {
        (p.clone(), p.clone())
    }
}

fn resolved_later(
    name: &'static str,
    why: &'static str,
    mode: ForwardMode,
    p: Pkt,
    raddr: &str,
) -> Sequence {
    let (_, vport) = p.ports();
    let resolved = real(mode, SVC, raddr, vport);
    let unresolved = Real {
        flags: RealFlags(RealFlags::ACTIVE | RealFlags::NO_NEIGHBOUR),
        dst_mac: [0; 6],
        ..resolved
    };
    let (first, next) = first_and_next(&p);
    let first_in = new_conn(&first);
    let mut recorded = vec![
        StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &first, mode))),
        StateCheck::FlowCount(1),
    ];
    let nat_revs = if mode == Nat {
        let (k, v) = nat_rev_of(&first, &resolved, IF_LO, SVC, REAL_A);
        recorded.push(StateCheck::NatRev(k, Some(v)));
        1
    } else {
        0
    };
    recorded.push(StateCheck::NatRevCount(nat_revs));
    Sequence {
        name,
        why,
        provision: one(&p.ip.dst().to_string(), vport, p.proto(), unresolved),
        steps: vec![
            Action::Packet(Step {
                what: "first packet: dropped NoNeighbour, the flow recorded, a connection counted",
                input: first.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Drop,
                output: Output::NotChecked,
                counts: Counts::of(&[Counter::RX, Drop::NoNeighbour.counter(), Counter::NEW_FLOW])
                    .both(SVC, REAL_A, first_in),
                state: recorded,
            }),
            Action::Packet(Step {
                what: "the flow's next packet, still unresolved: dropped NoNeighbour, no new connection",
                input: next.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Drop,
                output: Output::NotChecked,
                counts: Counts::of(&[Counter::RX, Drop::NoNeighbour.counter()]).both(
                    SVC,
                    REAL_A,
                    inbound(&next),
                ),
                state: vec![StateCheck::FlowCount(1), StateCheck::NatRevCount(nat_revs)],
            }),
            // What the neighbour follower writes: the MAC, the flag cleared.
            Action::Update(Provision {
                reals: vec![(REAL_A, resolved)],
                ..Provision::default()
            }),
            Action::Packet(Step {
                what: "resolved: the flow's next packet is forwarded by its method",
                input: next.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Tx,
                output: Output::Pkt(forwarded(mode, &next, &resolved)),
                counts: Counts::of(&[Counter::RX, fwd_counter(mode), Counter::TX]).both(
                    SVC,
                    REAL_A,
                    inbound(&next),
                ),
                state: vec![StateCheck::FlowCount(1), StateCheck::NatRevCount(nat_revs)],
            }),
        ],
    }
}
