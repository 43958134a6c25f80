//! The IPVS connection model (docs/datapath.md "Connections"): a flow's TCP state after
//! each packet, and the real's connection events (REAL_CONNS) as IPVS counts them
//! (ip_vs_conn.c bind, ip_vs_proto_tcp.c set_tcp_state): a new connection is bound
//! inactive; reaching ESTABLISHED makes it active, leaving it inactive again. Also the
//! upper threshold (-x) and one-packet scheduling (-o).

use super::common::*;
use lb_common::ForwardMode::{Dr, Nat};
use lb_common::conn::{ConnEvents, TcpState};
use lb_common::{Counter, Drop, FlowFlags, FlowValue, ForwardMode, Pass, Real, VipFlags};
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
        syn_reuse_after(RST),
        syn_reuse_after(FIN),
        syn_on_established_keeps_real(),
        syn_reuse_persistent_keeps_real(),
        syn_reuse_quiescent_nodest(),
        rst_no_flow(
            "conn_rst_no_flow_passes",
            "an RST of no flow (DR service) is not scheduled (IPVS tcp_conn_schedule: !th->rst): passed to the director's stack, no flow recorded, the real's counters still",
            Dr,
            flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), RST),
            0,
        ),
        rst_no_flow(
            "conn_rst_ack_no_flow_passes",
            "RST+ACK of no flow: passed as any RST, nothing recorded",
            Dr,
            flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), RST | ACK),
            0,
        ),
        rst_no_flow(
            "conn_rst_no_flow_v6_nat_records_nothing",
            "an IPv6 RST of no flow to a NAT service: passed, no flow and no NAT_REV entry",
            Nat,
            flags(Pkt::tcp(CLIENT6, VIP6, 40000, 80), RST),
            0,
        ),
        rst_no_flow(
            "conn_rst_no_flow_persistent_no_template",
            "an RST of no flow to a persistent service: passed, and no persistence template is created (the real's PersistConn stays 0)",
            Dr,
            flags(Pkt::tcp(CLIENT4, VIP4, 40000, 80), RST),
            VipFlags::PERSISTENT,
        ),
    ]
}

/// An RST to a one-real service (`mode`, service flags `svc_flags`) with no flow: passed
/// untouched (`RstNoFlow`), nothing scheduled, recorded or bound, no template.
fn rst_no_flow(
    name: &'static str,
    why: &'static str,
    mode: ForwardMode,
    p: Pkt,
    svc_flags: u32,
) -> Sequence {
    let real_addr = if p.ip.is_v6() { REAL6 } else { REAL4 };
    let mut prov = one(
        &p.ip.dst().to_string(),
        80,
        TCP,
        real(mode, SVC, real_addr, 80),
    );
    prov.services[0].flags = svc_flags;
    Case {
        state: vec![
            StateCheck::FlowCount(0),
            StateCheck::NatRevCount(0),
            StateCheck::PersistCount(0),
            StateCheck::Conns(REAL_A, ConnEvents::default()),
        ],
        ..pass_case(name, why, prov, p, Pass::RstNoFlow)
    }
    .into()
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

/// Two DR reals (REAL_A, REAL_B, weight 1) of SVC on VIP4:80 under rr, in that list order;
/// service flags `svc_flags`.
fn rr_two(svc_flags: u32) -> (lb_tests::provision::Provision, Real, Real) {
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.services[0].flags = svc_flags;
    prov.services[0].table = lb_tests::provision::Table::Sched {
        kind: lb_common::SchedKind::Rr,
        table: Vec::new(),
        reals: vec![REAL_A, REAL_B],
    };
    (prov, a, b)
}

/// IPVS conn_reuse_mode 1 (its default): a SYN that finds its flow in CLOSE (after an RST)
/// or TIME_WAIT (after a FIN of a half-open one) expires it at once and is scheduled as a
/// new connection: rr's next real, the old flow's counts off REAL_A as an expiry takes
/// them, the new flow bound to REAL_B.
fn syn_reuse_after(end: u8) -> Sequence {
    let (prov, a, b) = rr_two(0);
    let base = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let syn = flags(base.clone(), SYN);
    let k = key_of(&base);
    let io = FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT;
    let (name, why, ended, old) = if end == RST {
        (
            "conn_syn_after_rst_rescheduled",
            "conn_reuse_mode 1: SYN (REAL_A), ACK (ESTABLISHED), RST (CLOSE), then a SYN on the same ports: the CLOSE flow is expired (REAL_A: active 0, inactive 0) and the SYN scheduled anew, to rr's next real REAL_B",
            TcpState::Close,
            ev(0, 1, 1),
        )
    } else {
        (
            "conn_syn_after_fin_rescheduled",
            "conn_reuse_mode 1: SYN (REAL_A, SYN_RECV), FIN (TIME_WAIT), then a SYN on the same ports: the TIME_WAIT flow is expired (REAL_A: inactive 0) and the SYN goes to rr's next real REAL_B",
            TcpState::TimeWait,
            ev(0, 0, 0),
        )
    };
    let mut steps = vec![dr_step(
        "SYN: new flow to REAL_A",
        &syn,
        &a,
        true,
        vec![StateCheck::Conns(REAL_A, ev(1, 1, 0))],
    )];
    if end == RST {
        steps.push(dr_step(
            "ACK: ESTABLISHED",
            &flags(base.clone(), ACK),
            &a,
            false,
            vec![StateCheck::Conns(REAL_A, ev(1, 1, 1))],
        ));
    }
    let closed = if end == RST { ev(1, 2, 1) } else { ev(1, 1, 0) };
    steps.push(dr_step(
        "the end of the connection",
        &flags(base.clone(), end),
        &a,
        false,
        vec![
            StateCheck::Flow(k, Some(flow(REAL_A, Dr, ended, io))),
            StateCheck::Conns(REAL_A, closed),
        ],
    ));
    steps.push(fwd_tx(
        "SYN again: the old flow expired, a new connection to REAL_B",
        &syn,
        &b,
        REAL_B,
        true,
        vec![
            StateCheck::Flow(k, Some(fv_new(REAL_B, SVC, &syn, Dr))),
            StateCheck::FlowCount(1),
            StateCheck::Conns(REAL_A, old),
            StateCheck::Conns(REAL_B, ev(1, 1, 0)),
        ],
    ));
    Sequence {
        name,
        why,
        provision: prov,
        steps,
    }
}

/// A SYN on an ESTABLISHED flow (a retransmission, a client that lost its side) is no new
/// connection: it keeps its real.
fn syn_on_established_keeps_real() -> Sequence {
    let (prov, a, _) = rr_two(0);
    let base = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let syn = flags(base.clone(), SYN);
    let k = key_of(&base);
    let o = FlowFlags::NO_OUTPUT;
    Sequence {
        name: "conn_syn_on_established_keeps_real",
        why: "conn_reuse_mode expires only TIME_WAIT and CLOSE connections: a SYN on an ESTABLISHED flow goes to its real (REAL_A), no new connection",
        provision: prov,
        steps: vec![
            dr_step("SYN: new flow to REAL_A", &syn, &a, true, vec![]),
            dr_step(
                "ACK: ESTABLISHED",
                &flags(base.clone(), ACK),
                &a,
                false,
                vec![StateCheck::Conns(REAL_A, ev(1, 1, 1))],
            ),
            dr_step(
                "SYN again: still REAL_A, still ESTABLISHED",
                &syn,
                &a,
                false,
                vec![
                    StateCheck::Flow(k, Some(flow(REAL_A, Dr, TcpState::Established, o))),
                    StateCheck::Conns(REAL_A, ev(1, 1, 1)),
                ],
            ),
        ],
    }
}

/// A persistent service's connections are controlled by their template (IPVS
/// `cp->control`): a SYN on a CLOSE flow keeps it, and its real.
fn syn_reuse_persistent_keeps_real() -> Sequence {
    let (prov, a, _) = rr_two(VipFlags::PERSISTENT);
    let base = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let syn = flags(base.clone(), SYN);
    let k = key_of(&base);
    let io = FlowFlags::INACTIVE | FlowFlags::NO_OUTPUT;
    let tmpl = |e: ConnEvents| ConnEvents { templates: 1, ..e };
    Sequence {
        name: "conn_syn_reuse_persistent_keeps_real",
        why: "a persistent service's connection is controlled by its template, which IPVS's conn_reuse leaves alone: SYN, ACK, RST (CLOSE), then a SYN on the CLOSE flow moves it to SYN_RECV on REAL_A, no new connection",
        provision: prov,
        steps: vec![
            dr_step(
                "SYN: new flow and template to REAL_A",
                &syn,
                &a,
                true,
                vec![StateCheck::Conns(REAL_A, tmpl(ev(1, 1, 0)))],
            ),
            dr_step(
                "ACK: ESTABLISHED",
                &flags(base.clone(), ACK),
                &a,
                false,
                vec![StateCheck::Conns(REAL_A, tmpl(ev(1, 1, 1)))],
            ),
            dr_step(
                "RST: CLOSE",
                &flags(base.clone(), RST),
                &a,
                false,
                vec![StateCheck::Flow(
                    k,
                    Some(flow(REAL_A, Dr, TcpState::Close, io)),
                )],
            ),
            dr_step(
                "SYN again: same flow, SYN_RECV, REAL_A",
                &syn,
                &a,
                false,
                vec![
                    StateCheck::Flow(k, Some(flow(REAL_A, Dr, TcpState::SynRecv, io))),
                    StateCheck::FlowCount(1),
                    StateCheck::PersistCount(1),
                    StateCheck::Conns(REAL_A, tmpl(ev(1, 2, 1))),
                ],
            ),
        ],
    }
}

/// `expire_nodest_conn` 1 and the flow's real quiescent (weight 0, still configured): a
/// SYN expires even an ESTABLISHED flow and is scheduled anew (IPVS ip_vs_in_hook).
fn syn_reuse_quiescent_nodest() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80).syn();
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        weight: 0,
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((
        key_of(&p),
        flow(REAL_B, Dr, TcpState::Established, FlowFlags::NO_OUTPUT),
    ));
    prov.settings = Some(lb_common::conn::Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    });
    Sequence {
        name: "conn_syn_quiescent_real_nodest_rescheduled",
        why: "expire_nodest_conn=1: a SYN whose ESTABLISHED flow is on a weight-0 real expires it (REAL_B's active count taken back) and goes to REAL_A as a new connection",
        provision: prov,
        steps: vec![dr_step(
            "SYN",
            &p,
            &a,
            true,
            vec![
                StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Dr))),
                StateCheck::Conns(REAL_A, ev(1, 1, 0)),
                StateCheck::Conns(REAL_B, ev(u64::MAX, 0, 0)),
            ],
        )],
    }
}
