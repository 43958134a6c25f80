//! Full state tables (docs/design.md "Flow tables"): the flow and NAT reply tables are
//! plain hashes, so a full one refuses the new entry, counts the refusal, and keeps every
//! entry it holds (an LRU would have evicted a live connection unseen, leaving its real's
//! counts wrong for good). A refused flow fails open: the packet is still forwarded.

use super::common::*;
use lb_common::ForwardMode::{Dr, Nat};
use lb_common::conn::{ConnEvents, TcpState};
use lb_common::{Counter, FlowFlags, FlowKey, FlowValue, NatReverse};
use lb_tests::bpf::{IF_LO, TEST_MAX_FLOWS, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;

pub fn cases() -> Vec<Sequence> {
    vec![flows_full(false), flows_full(true), nat_rev_full()]
}

/// Client `i` of a filled table (not CLIENT4 / CLIENT6, which the cases' new flow uses).
fn filler(i: u32, v6: bool) -> Pkt {
    if v6 {
        let src = format!("2001:db8:9::{:x}", i + 1);
        Pkt::tcp(&src, VIP6, 40000, 80)
    } else {
        let src = format!("198.18.{}.{}", 100 + i / 256, i % 256);
        Pkt::tcp(&src, VIP4, 40000, 80)
    }
}

/// An established DR flow of REAL_A.
fn established() -> FlowValue {
    FlowValue {
        real_id: REAL_A,
        svc_id: SVC,
        state: TcpState::Established as u8,
        flags: FlowFlags::NO_OUTPUT,
        fwd: Dr as u8,
        ..Default::default()
    }
}

/// The family's flow table holds TEST_MAX_FLOWS established flows; a new client's SYN is
/// forwarded (fail open), not recorded, and counted; every old flow is still there.
fn flows_full(v6: bool) -> Sequence {
    let (client, vip, real_addr) = if v6 {
        (CLIENT6, VIP6, REAL6)
    } else {
        (CLIENT4, VIP4, REAL4)
    };
    let r = real(Dr, SVC, real_addr, 80);
    let mut prov = one(vip, 80, TCP, r);
    let old: Vec<FlowKey> = (0..TEST_MAX_FLOWS)
        .map(|i| key_of(&filler(i, v6)))
        .collect();
    prov.flows = old.iter().map(|k| (*k, established())).collect();
    let p = Pkt::tcp(client, vip, 40000, 80).syn();
    let mut state: Vec<StateCheck> = old
        .iter()
        .map(|k| StateCheck::Flow(*k, Some(established())))
        .collect();
    state.push(StateCheck::Flow(key_of(&p), None));
    state.push(StateCheck::FlowCount(TEST_MAX_FLOWS as usize));
    // Not bound: no flow will ever expire to take it back.
    state.push(StateCheck::Conns(REAL_A, ConnEvents::default()));
    Sequence {
        name: if v6 {
            "full_flows6_refuses_new_flow_keeps_all"
        } else {
            "full_flows4_refuses_new_flow_keeps_all"
        },
        why: "the flow table is full of live connections: a new one is forwarded without a flow (fail open, flow_insert_failed), not bound, and no live flow is evicted",
        provision: prov,
        steps: vec![Action::Packet(Step {
            what: "a new client's SYN",
            input: p.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(dr(&p, &r)),
            counts: Counts::of(&[
                Counter::RX,
                Counter::FWD_DR,
                Counter::TX,
                Counter::NEW_FLOW,
                Counter::FLOW_INSERT_FAILED,
            ])
            .both(SVC, REAL_A, new_conn(&p)),
            state,
        })],
    }
}

/// NAT_REV4 holds TEST_MAX_FLOWS replies of other connections; a new NAT connection is
/// recorded and forwarded, its reply entry refused and counted, the old entries kept.
fn nat_rev_full() -> Sequence {
    let r = real(Nat, SVC, REAL4, 80);
    let mut prov = one(VIP4, 80, TCP, r);
    let old: Vec<(FlowKey, NatReverse)> = (0..TEST_MAX_FLOWS)
        .map(|i| nat_rev_of(&filler(i, false), &r, IF_LO, SVC, REAL_A))
        .collect();
    prov.nat_rev = old.clone();
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80).syn();
    let (new_key, _) = nat_rev_of(&p, &r, IF_LO, SVC, REAL_A);
    let mut state: Vec<StateCheck> = old
        .iter()
        .map(|(k, v)| StateCheck::NatRev(*k, Some(*v)))
        .collect();
    state.push(StateCheck::NatRev(new_key, None));
    state.push(StateCheck::NatRevCount(TEST_MAX_FLOWS as usize));
    state.push(StateCheck::Flow(
        key_of(&p),
        Some(fv_new(REAL_A, SVC, &p, Nat)),
    ));
    Sequence {
        name: "full_nat_rev4_refuses_reply_entry_keeps_all",
        why: "NAT_REV is full of other connections' replies: the new NAT connection is recorded and forwarded, its reply entry refused (nat_rev_insert_failed), none of the old ones evicted",
        provision: prov,
        steps: vec![Action::Packet(Step {
            what: "a new client's SYN to the NAT service",
            input: p.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(nat(&p, &r)),
            counts: Counts::of(&[
                Counter::RX,
                Counter::FWD_NAT,
                Counter::TX,
                Counter::NEW_FLOW,
                Counter::NAT_REV_INSERT_FAILED,
            ])
            .both(SVC, REAL_A, new_conn(&p)),
            state,
        })],
    }
}
