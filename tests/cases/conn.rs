//! The IPVS connection model (docs/datapath.md "Connections"): a flow's TCP state after
//! each packet, and the real's connection events (REAL_CONNS) as IPVS counts them
//! (ip_vs_conn.c bind, ip_vs_proto_tcp.c set_tcp_state): a new connection is bound
//! inactive; reaching ESTABLISHED makes it active, leaving it inactive again. Also the
//! upper threshold (-x) and one-packet scheduling (-o).

use super::common::*;
use lb_common::conn::{ConnEvents, TcpState};
use lb_common::{Counter, Drop, FlowFlags, FlowValue, ForwardMode, Real, VipFlags};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Case, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;

pub fn cases() -> Vec<Sequence> {
    vec![
        dr_tcp_lifecycle(),
        nat_reply_moves_state(),
        udp_bound_inactive(),
        upper_threshold(),
        one_packet_udp(),
    ]
}

fn flow(real_id: u32, mode: ForwardMode, state: TcpState, flags: u8) -> FlowValue {
    FlowValue {
        real_id,
        svc_id: SVC,
        state: state as u8,
        flags,
        fwd: mode as u8,
        ..Default::default()
    }
}

fn ev(opened: u64, to_inactive: u64, to_active: u64) -> ConnEvents {
    ConnEvents {
        opened,
        to_inactive,
        to_active,
        ..Default::default()
    }
}

/// A client packet forwarded by DR to REAL_A (XDP_TX), new or not.
fn dr_step(what: &'static str, p: &Pkt, r: &Real, new: bool, want: Vec<StateCheck>) -> Action {
    fwd_tx(what, p, r, REAL_A, new, want)
}

/// DR: SYN, ACK, data, FIN, RST through IPVS's INPUT-ONLY table.
fn dr_tcp_lifecycle() -> Sequence {
    let base = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(ForwardMode::Dr, SVC, REAL4, 80);
    let k = key_of(&base);
    let io = FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT;
    let o = FlowFlags::NO_OUTPUT;
    let st = |v: FlowValue, e: ConnEvents| {
        vec![StateCheck::Flow(k, Some(v)), StateCheck::Conns(REAL_A, e)]
    };
    Sequence {
        name: "conn_dr_tcp_lifecycle",
        why: "DR flows use IPVS's INPUT-ONLY table: SYN → SYN_RECV (bound inactive), ACK → ESTABLISHED (active), data keeps it, FIN → FIN_WAIT (inactive), RST → CLOSE (no move)",
        provision: one(VIP4, 80, TCP, r),
        steps: vec![
            dr_step(
                "SYN: new flow, SYN_RECV, counted inactive",
                &flags(base.clone(), SYN),
                &r,
                true,
                st(
                    flow(REAL_A, ForwardMode::Dr, TcpState::SynRecv, io),
                    ev(1, 1, 0),
                ),
            ),
            dr_step(
                "ACK: ESTABLISHED, to_active",
                &flags(base.clone(), ACK),
                &r,
                false,
                st(
                    flow(REAL_A, ForwardMode::Dr, TcpState::Established, o),
                    ev(1, 1, 1),
                ),
            ),
            dr_step(
                "data (PSH ACK): unchanged",
                &base,
                &r,
                false,
                st(
                    flow(REAL_A, ForwardMode::Dr, TcpState::Established, o),
                    ev(1, 1, 1),
                ),
            ),
            dr_step(
                "FIN ACK: FIN_WAIT, to_inactive",
                &flags(base.clone(), FIN | ACK),
                &r,
                false,
                st(
                    flow(REAL_A, ForwardMode::Dr, TcpState::FinWait, io),
                    ev(1, 2, 1),
                ),
            ),
            dr_step(
                "RST: CLOSE, already inactive",
                &flags(base.clone(), RST),
                &r,
                false,
                st(
                    flow(REAL_A, ForwardMode::Dr, TcpState::Close, io),
                    ev(1, 2, 1),
                ),
            ),
        ],
    }
}

/// NAT: the real's replies move the client flow's state through the OUTPUT table.
fn nat_reply_moves_state() -> Sequence {
    let base = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(ForwardMode::Nat, SVC, REAL4, 8080);
    let k = key_of(&base);
    let (_, rev) = nat_rev_of(&base, &r, IF_LO, SVC, REAL_A);
    let reply = |f: u8| flags(reply_of(&base, &r), f);
    let nat_step =
        |what, p: &Pkt, new: bool, want: Vec<StateCheck>| fwd_tx(what, p, &r, REAL_A, new, want);
    let ret_step = |what, p: &Pkt, want: Vec<StateCheck>| {
        Action::Packet(Step {
            what,
            input: p.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(nat_return(p, &rev)),
            counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
                SVC,
                REAL_A,
                outbound(p),
            ),
            state: want,
        })
    };
    let i = FlowFlags::INACTIVE;
    let st = |v: FlowValue, e: ConnEvents| {
        vec![StateCheck::Flow(k, Some(v)), StateCheck::Conns(REAL_A, e)]
    };
    Sequence {
        name: "conn_nat_reply_moves_state",
        why: "NAT flows use IPVS's INPUT table for client packets and OUTPUT for replies: SYN → SYN_RECV, SYN-ACK reply keeps it, ACK → ESTABLISHED, the real's FIN → FIN_WAIT (inactive), the client's ACK keeps FIN_WAIT",
        provision: one(VIP4, 80, TCP, r),
        steps: vec![
            nat_step(
                "SYN: new flow, SYN_RECV, inactive (no NO_OUTPUT for NAT)",
                &flags(base.clone(), SYN),
                true,
                st(
                    flow(REAL_A, ForwardMode::Nat, TcpState::SynRecv, i),
                    ev(1, 1, 0),
                ),
            ),
            ret_step(
                "SYN ACK reply: OUTPUT syn keeps SYN_RECV",
                &reply(SYN | ACK),
                st(
                    flow(REAL_A, ForwardMode::Nat, TcpState::SynRecv, i),
                    ev(1, 1, 0),
                ),
            ),
            nat_step(
                "ACK: ESTABLISHED, to_active",
                &flags(base.clone(), ACK),
                false,
                st(
                    flow(REAL_A, ForwardMode::Nat, TcpState::Established, 0),
                    ev(1, 1, 1),
                ),
            ),
            ret_step(
                "FIN ACK reply: FIN_WAIT, to_inactive",
                &reply(FIN | ACK),
                st(
                    flow(REAL_A, ForwardMode::Nat, TcpState::FinWait, i),
                    ev(1, 2, 1),
                ),
            ),
            nat_step(
                "client ACK: INPUT ack keeps FIN_WAIT",
                &flags(base.clone(), ACK),
                false,
                st(
                    flow(REAL_A, ForwardMode::Nat, TcpState::FinWait, i),
                    ev(1, 2, 1),
                ),
            ),
        ],
    }
}

/// UDP: bound inactive, never moves.
fn udp_bound_inactive() -> Sequence {
    let p = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let r = real(ForwardMode::Dr, SVC, REAL4, 53);
    let k = key_of(&p);
    let v = FlowValue {
        real_id: REAL_A,
        svc_id: SVC,
        flags: FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT,
        fwd: ForwardMode::Dr as u8,
        ..Default::default()
    };
    let st = vec![
        StateCheck::Flow(k, Some(v)),
        StateCheck::Conns(REAL_A, ev(1, 1, 0)),
    ];
    Sequence {
        name: "conn_udp_bound_inactive",
        why: "a UDP flow is bound inactive (IPVS dest conn_flags carry INACTIVE) and no packet moves it: InActConn 1",
        provision: one(VIP4, 53, UDP, r),
        steps: vec![
            dr_step("first datagram: new flow", &p, &r, true, st.clone()),
            dr_step("second datagram: same flow, no move", &p, &r, false, st),
        ],
    }
}

/// -x 1: the first connection overloads the only real; the next client finds none.
fn upper_threshold() -> Sequence {
    let a = Pkt::tcp(CLIENT4, VIP4, 40000, 80).syn();
    let b = Pkt::tcp(CLIENT4_B, VIP4, 40000, 80).syn();
    let r = Real {
        u_threshold: 1,
        ..real(ForwardMode::Dr, SVC, REAL4, 80)
    };
    let over = ConnEvents {
        overloaded: 1,
        ..ev(1, 1, 0)
    };
    Sequence {
        name: "conn_upper_threshold_overloads_real",
        why: "u_threshold 1: binding the first connection brings active+inactive to 1 ≥ 1, so the real is overloaded (IPVS ip_vs_bind_dest) and mh refuses it for the next client: NoReal",
        provision: one(VIP4, 80, TCP, r),
        steps: vec![
            dr_step(
                "first client: bound, overloaded",
                &a,
                &r,
                true,
                vec![StateCheck::Conns(REAL_A, over)],
            ),
            Action::Packet(Step {
                what: "second client: the only real is overloaded",
                input: b.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Drop,
                output: Output::NotChecked,
                counts: Counts::of(&[Counter::RX, Drop::NoReal.counter()]),
                state: vec![StateCheck::Conns(REAL_A, over), StateCheck::FlowCount(1)],
            }),
        ],
    }
}

/// -o: every UDP datagram is scheduled alone; nothing is recorded or bound.
fn one_packet_udp() -> Sequence {
    let p = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let r = real(ForwardMode::Dr, SVC, REAL4, 53);
    let mut prov = one(VIP4, 53, UDP, r);
    prov.services[0].flags = VipFlags::ONE_PACKET;
    Case {
        name: "conn_one_packet_udp_records_nothing",
        why: "-o (one-packet scheduling): the datagram is scheduled and forwarded (a connection in the stats), no flow is recorded and the real's counters do not move (IPVS binds and unbinds at once)",
        provision: prov,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, &r)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX])
            .both(SVC, REAL_A, new_conn(&p)),
        state: vec![StateCheck::FlowCount(0), StateCheck::Conns(REAL_A, ConnEvents::default())],
    }
    .into()
}
