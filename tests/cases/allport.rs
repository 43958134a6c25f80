//! All-port services (port 0, ipvsadm's firewall-mark-like "any port" virtual service): the
//! exact (VIP, port) service is tried first, then (VIP, 0). NAT to a real with port 0 keeps
//! the client's destination port, there and back.

use super::common::*;
use lb_common::ForwardMode::{Dr, Nat, Tun};
use lb_common::{Counter, Pass, Real};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Case, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::{Pkt, frag_needed};

/// The same case with its service turned into an all-port service.
fn all_ports(mut c: Case) -> Sequence {
    for s in &mut c.provision.services {
        s.port = 0;
    }
    c.into()
}

fn all_ports_seq(mut s: Sequence) -> Sequence {
    for svc in &mut s.provision.services {
        svc.port = 0;
    }
    s
}

/// (VIP, 80) goes to REAL_A of SVC; any other port to REAL_B of the all-port SVC_B.
fn exact_port_first() -> Sequence {
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC_B, REAL4_B, 0)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.services.push(svc(SVC_B, VIP4, 0, TCP));
    prov.reals.push((REAL_B, b));
    let step = |what, p: Pkt, r: &Real, svc_id, real_id| {
        Action::Packet(Step {
            what,
            input: p.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(dr(&p, r)),
            counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX])
                .both(svc_id, real_id, new_conn(&p)),
            state: vec![StateCheck::Flow(
                key_of(&p),
                Some(fv_new(real_id, svc_id, &p, Dr)),
            )],
        })
    };
    Sequence {
        name: "allport_exact_port_first",
        why: "port 80 matches its own service before the all-port one; port 81 falls to the all-port service",
        provision: prov,
        steps: vec![
            step(
                "to port 80: the exact service",
                Pkt::tcp(CLIENT4, VIP4, 40000, 80),
                &a,
                SVC,
                REAL_A,
            ),
            step(
                "to port 81: the all-port service",
                Pkt::tcp(CLIENT4, VIP4, 40001, 81),
                &b,
                SVC_B,
                REAL_B,
            ),
        ],
    }
}

/// Frag-needed quoting VIP:4321 → client: scheduled through the all-port service.
fn icmp_all_ports() -> Sequence {
    let q = Pkt::tcp(VIP4, CLIENT4, 4321, 40000);
    let icmp = frag_needed(ROUTER4, VIP4, 1400, &q.quote());
    let r = real(Dr, SVC, REAL4, 0);
    let mut prov = one(VIP4, 0, TCP, r);
    prov.services[0].port = 0;
    Case {
        name: "allport_icmp_frag_needed",
        why: "frag-needed about VIP:4321 finds the all-port service and goes to its real",
        provision: prov,
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&icmp, &r)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::ICMP_TO_REAL,
            Counter::FWD_DR,
            Counter::TX,
        ])
        .both(SVC, REAL_A, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(0)],
    }
    .into()
}

/// NAT all-port: the quoted source port stays the VIP port (the real uses the same port).
fn icmp_nat_keeps_port() -> Sequence {
    let q = Pkt::udp(VIP4, CLIENT4, 4321, 40000);
    let icmp = frag_needed(ROUTER4, VIP4, 1400, &q.quote());
    let r = real(Nat, SVC, REAL4, 0);
    let mut prov = one(VIP4, 0, UDP, r);
    prov.services[0].port = 0;
    let rip = lb_common::addr::convert::from_raw(&r.addr, r.family);
    let want = dr(&icmp, &r)
        .dst(rip)
        .ttl(icmp.ip.ttl() - 1)
        .payload(&nat_quote(&q, &r, icmp.payload.len()));
    Case {
        name: "allport_icmp_frag_needed_nat_keeps_port",
        why: "all-port NAT: the quote's source becomes the real's address, its port stays 4321",
        provision: prov,
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(want),
        counts: Counts::of(&[
            Counter::RX,
            Counter::ICMP_TO_REAL,
            Counter::FWD_NAT,
            Counter::TX,
        ])
        .both(SVC, REAL_A, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(0)],
    }
    .into()
}

pub fn cases() -> Vec<Sequence> {
    vec![
        all_ports(new_flow_case(
            "allport_dr_v4_tcp",
            "TCP to any port of an all-port DR service is balanced; the flow key has the real port",
            Dr,
            Pkt::tcp(CLIENT4, VIP4, 40000, 12345),
            REAL4,
            0,
        )),
        all_ports(new_flow_case(
            "allport_tun_v6_tcp",
            "IPv6 TCP to any port of an all-port TUN service: IP6IP6",
            Tun,
            Pkt::tcp(CLIENT6, VIP6, 40000, 2222),
            REAL6,
            0,
        )),
        all_ports(new_flow_case(
            "allport_nat_v4_tcp_keeps_port",
            "NAT to a real with port 0 keeps the destination port (only the address changes); NAT_REV sport = kept port",
            Nat,
            Pkt::tcp(CLIENT4, VIP4, 40000, 8443),
            REAL4,
            0,
        )),
        all_ports(new_flow_case(
            "allport_nat_v6_udp_keeps_port",
            "IPv6 UDP NAT with real port 0 keeps the port",
            Nat,
            Pkt::udp(CLIENT6, VIP6, 40000, 5060),
            REAL6,
            0,
        )),
        all_ports_seq(super::nat_return::forward_then_reply(
            "allport_nat_return_keeps_port",
            "all-port NAT: forward to real:8443, then the reply's source becomes VIP:8443",
            Pkt::tcp(CLIENT4, VIP4, 40000, 8443),
            REAL4,
            0,
        )),
        exact_port_first(),
        icmp_all_ports(),
        icmp_nat_keeps_port(),
        pass_case(
            "allport_other_proto_passes",
            "an all-port TCP service does not take UDP: pass NotVip",
            {
                let mut p = one(VIP4, 0, TCP, real(Dr, SVC, REAL4, 0));
                p.services[0].port = 0;
                p
            },
            Pkt::udp(CLIENT4, VIP4, 40000, 53),
            Pass::NotVip,
        )
        .into(),
    ]
}
