//! Direct routing (`-g`): only the MACs change. New and established flows, both families,
//! TCP and UDP, scheduling by the flow hash contract, TTL checks, TX vs redirect.

use super::common::*;
use lb_common::hash::{FLOW_SEED, flow_hash, src_hash};
use lb_common::{Counter, Drop, FlowValue, ForwardMode::Dr, Real, RealFlags, Traffic, VipFlags};
use lb_tests::bpf::{IF_OUT, IF_PEER, Verdict};
use lb_tests::case::{Action, Case, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::{Provision, Table};

pub fn cases() -> Vec<Sequence> {
    let tcp4 = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let udp4 = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let tcp6 = Pkt::tcp(CLIENT6, VIP6, 40000, 80);
    let udp6 = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    let mut v: Vec<Sequence> = vec![
        new_flow_case(
            "dr_v4_tcp_new",
            "new TCP flow to a DR real: MACs rewritten, rest untouched, XDP_TX, flow recorded",
            Dr,
            tcp4.clone(),
            REAL4,
            80,
        )
        .into(),
        new_flow_case(
            "dr_v4_udp_new",
            "new UDP flow to a DR real: MACs rewritten, XDP_TX, flow recorded",
            Dr,
            udp4.clone(),
            REAL4,
            53,
        )
        .into(),
        new_flow_case(
            "dr_v6_tcp_new",
            "new IPv6 TCP flow to a DR real: MACs only, hop limit kept",
            Dr,
            tcp6.clone(),
            REAL6,
            80,
        )
        .into(),
        new_flow_case(
            "dr_v6_udp_new",
            "new IPv6 UDP flow to a DR real: MACs only",
            Dr,
            udp6.clone(),
            REAL6,
            53,
        )
        .into(),
        new_flow_case(
            "dr_v4_tcp_syn_new",
            "a SYN starts a flow like any other segment",
            Dr,
            tcp4.clone().syn(),
            REAL4,
            80,
        )
        .into(),
        established_case(
            "dr_v4_tcp_established",
            "a FLOWS hit goes to its real (REAL_B, not in the table), no NEW_FLOW",
            Dr,
            tcp4.clone(),
            REAL4,
            REAL4_B,
            80,
        )
        .into(),
        established_case(
            "dr_v4_udp_established",
            "a UDP FLOWS hit goes to its real, no NEW_FLOW",
            Dr,
            udp4.clone(),
            REAL4,
            REAL4_B,
            53,
        )
        .into(),
        established_case(
            "dr_v6_tcp_established",
            "an IPv6 TCP FLOWS hit goes to its real, no NEW_FLOW",
            Dr,
            tcp6.clone(),
            REAL6,
            REAL6_B,
            80,
        )
        .into(),
        established_case(
            "dr_v6_udp_established",
            "an IPv6 UDP FLOWS hit goes to its real, no NEW_FLOW",
            Dr,
            udp6.clone(),
            REAL6,
            REAL6_B,
            53,
        )
        .into(),
        new_flow_case(
            "dr_v4_ttl2_kept",
            "TTL 2 passes the TTL check and DR leaves it at 2 (no router hop)",
            Dr,
            tcp4.clone().ttl(2),
            REAL4,
            80,
        )
        .into(),
        new_flow_case(
            "dr_v4_ip_options",
            "IPv4 options are skipped via IHL and kept byte for byte",
            Dr,
            tcp4.clone().options(&[0x94, 0x04, 0, 0, 1, 1, 1, 0]),
            REAL4,
            80,
        )
        .into(),
        new_flow_case(
            "dr_v4_ethernet_padding",
            "bytes after tot_len (Ethernet padding) are kept; counts use the IP length",
            Dr,
            Pkt::udp(CLIENT4, VIP4, 40000, 53).payload(b"").pad(10),
            REAL4,
            53,
        )
        .into(),
        drop_case(
            "dr_v4_ttl1_dropped",
            "TTL 1 to a service may not be forwarded another hop: drop TtlExpired",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            tcp4.clone().ttl(1),
            Drop::TtlExpired,
        )
        .into(),
        drop_case(
            "dr_v4_ttl0_dropped",
            "TTL 0 to a service: drop TtlExpired",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            tcp4.clone().ttl(0),
            Drop::TtlExpired,
        )
        .into(),
        drop_case(
            "dr_v6_hop1_dropped",
            "hop limit 1 to a service: drop TtlExpired",
            one(VIP6, 53, UDP, real(Dr, SVC, REAL6, 53)),
            udp6.clone().ttl(1),
            Drop::TtlExpired,
        )
        .into(),
        drop_case(
            "dr_v6_hop0_dropped",
            "hop limit 0 to a service: drop TtlExpired",
            one(VIP6, 80, TCP, real(Dr, SVC, REAL6, 80)),
            tcp6.clone().ttl(0),
            Drop::TtlExpired,
        )
        .into(),
        {
            let mut c = established_case(
                "dr_v4_established_ttl1_dropped",
                "the TTL check also applies to an established flow",
                Dr,
                tcp4.clone().ttl(1),
                REAL4,
                REAL4_B,
                80,
            );
            c.verdict = Verdict::Drop;
            c.output = Output::NotChecked;
            c.counts = dropped(Drop::TtlExpired);
            c.into()
        },
        new_flow_case(
            "dr_v4_syn_tcp_options",
            "a SYN with MSS/SACK/timestamp/window-scale options is forwarded byte for byte",
            Dr,
            tcp4.clone().syn().tcp_options(&SYN_OPTIONS),
            REAL4,
            80,
        )
        .into(),
        redirect_case(),
        redirect_v6_case(),
        ingress_veth_tx_case(),
        redirect_missing_port_case(),
        unknown_mode_case(),
        mh_src_hash_case(false),
        mh_src_hash_case(true),
        mh_hash_ports_case(false),
        mh_hash_ports_case(true),
        inactive_flow_real_case(false),
        inactive_flow_real_case(true),
        gone_flow_real_case(false),
        gone_flow_real_case(true),
        syn_of_existing_flow_case(),
        moved_flow_real_case(),
        flow_without_service_case(),
    ];
    v.push(quiescent_sequence());
    v.push(tcp_and_udp_same_port());
    v
}

/// Three reals in one table, for the scheduling-contract cases.
fn three_reals(flags: u32, v6: bool) -> Provision {
    let (vip, addrs) = if v6 {
        (VIP6, [REAL6, REAL6_B, "2001:db8:2::4"])
    } else {
        (VIP4, [REAL4, REAL4_B, REAL4_C])
    };
    let mut p = Provision::default();
    p.services.push(lb_tests::provision::Svc {
        flags,
        table: Table::Maglev(251),
        ..svc(SVC, vip, 80, TCP)
    });
    for (i, a) in addrs.iter().enumerate() {
        let mac = [2, 0, 0, 0, 1, 2 + i as u8];
        p.reals.push((
            REAL_A + i as u32,
            Real {
                dst_mac: mac,
                ..real(Dr, SVC, a, 80)
            },
        ));
    }
    p
}

/// One new-flow step to the real the contract picks.
fn scheduled_step(prov: &Provision, p: Pkt, what: &'static str) -> (u32, Action) {
    let id = prov.scheduled(SVC, &key_of(&p));
    let r = *prov.real(id);
    let step =
        Step {
            what,
            input: p.clone().into(),
            ingress: lb_tests::bpf::IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(dr(&p, &r)),
            counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX])
                .both(SVC, id, new_conn(&p)),
            state: vec![StateCheck::Flow(key_of(&p), Some(fv_new(id, SVC, &p, Dr)))],
        };
    (id, Action::Packet(step))
}

/// mh without -b mh-port hashes the client address only (src_hash with FLOW_SEED): clients
/// that hash to different reals land there, and a second port of one client follows its
/// first.
fn mh_src_hash_case(v6: bool) -> Sequence {
    let prov = three_reals(0, v6);
    let table = prov.table(prov.svc(SVC));
    let vip = if v6 { VIP6 } else { VIP4 };
    let client = |i: u8| {
        if v6 {
            format!("2001:db8::{:x}", 0x100 + i as u16)
        } else {
            format!("198.18.0.{i}")
        }
    };
    let mut steps = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in 1..100u8 {
        let p = Pkt::tcp(&client(i), vip, 40000, 80);
        let key = key_of(&p);
        assert_eq!(
            prov.scheduled(SVC, &key),
            table[(src_hash(&key, FLOW_SEED) % 251) as usize]
        );
        if seen.insert(prov.scheduled(SVC, &key)) {
            steps.push(scheduled_step(&prov, p, "a new client").1);
        }
        if seen.len() == 3 {
            break;
        }
    }
    let first = Pkt::tcp(&client(1), vip, 40000, 80);
    let other_port = Pkt::tcp(&client(1), vip, 51234, 80);
    assert_eq!(
        prov.scheduled(SVC, &key_of(&first)),
        prov.scheduled(SVC, &key_of(&other_port))
    );
    steps.push(
        scheduled_step(
            &prov,
            other_port,
            "the first client from another port: same real",
        )
        .1,
    );
    Sequence {
        name: if v6 {
            "dr_v6_mh_schedules_by_client_address"
        } else {
            "dr_v4_mh_schedules_by_client_address"
        },
        why: "a new flow goes to table[src_hash(key, FLOW_SEED) % len]: clients spread over the reals, one client's ports stay together",
        provision: prov,
        steps,
    }
}

/// With HASH_PORTS (-b mh-port) the whole flow is hashed: one client's ports spread over
/// the reals, each to table[flow_hash(key, FLOW_SEED) % len].
fn mh_hash_ports_case(v6: bool) -> Sequence {
    let prov = three_reals(VipFlags::HASH_PORTS, v6);
    let table = prov.table(prov.svc(SVC));
    let (client, vip) = if v6 { (CLIENT6, VIP6) } else { (CLIENT4, VIP4) };
    let mut steps = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for port in 40000..41000u16 {
        let p = Pkt::tcp(client, vip, port, 80);
        let key = key_of(&p);
        let id = table[(flow_hash(&key, FLOW_SEED) % 251) as usize];
        assert_eq!(prov.scheduled(SVC, &key), id);
        if seen.insert(id) {
            steps.push(scheduled_step(&prov, p, "a new flow from one more client port").1);
        }
        if seen.len() == 3 {
            break;
        }
    }
    assert!(seen.len() >= 2);
    Sequence {
        name: if v6 {
            "dr_v6_mh_port_schedules_by_flow_hash"
        } else {
            "dr_v4_mh_port_schedules_by_flow_hash"
        },
        why: "with HASH_PORTS each flow goes to table[flow_hash(key, FLOW_SEED) % len]: one client's ports reach every real",
        provision: prov,
        steps,
    }
}

/// A real on another interface in TX_PORTS: XDP_REDIRECT with the rewritten frame.
fn redirect_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = Real {
        ifindex: IF_OUT,
        ..real(Dr, SVC, REAL4, 80)
    };
    let mut prov = one(VIP4, 80, TCP, r);
    prov.tx_ports = vec![IF_OUT];
    Case {
        name: "dr_v4_redirect",
        why: "the real is on another interface (in TX_PORTS): XDP_REDIRECT, REDIRECT counted instead of TX",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Redirect,
        output: Output::Pkt(dr(&p, &r)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::REDIRECT]).both(SVC, REAL_A, new_conn(&p)),
        state: vec![StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Dr)))],
    }
    .into()
}

fn redirect_v6_case() -> Sequence {
    let p = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    let r = Real {
        ifindex: IF_OUT,
        ..real(Dr, SVC, REAL6, 53)
    };
    let mut prov = one(VIP6, 53, UDP, r);
    prov.tx_ports = vec![IF_OUT];
    Case {
        name: "dr_v6_redirect",
        why: "IPv6 real on another interface: XDP_REDIRECT",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Redirect,
        output: Output::Pkt(dr(&p, &r)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::FWD_DR,
            Counter::NEW_FLOW,
            Counter::REDIRECT,
        ])
        .both(SVC, REAL_A, new_conn(&p)),
        state: vec![],
    }
    .into()
}

/// Frame arrives on the veth whose ifindex the real has: TX, not redirect.
fn ingress_veth_tx_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = Real {
        ifindex: IF_OUT,
        ..real(Dr, SVC, REAL4, 80)
    };
    let mut prov = one(VIP4, 80, TCP, r);
    prov.tx_ports = vec![IF_OUT];
    Case {
        name: "dr_v4_same_ifindex_is_tx",
        why: "received on the real's own interface (ifindex 10, not lo): XDP_TX",
        provision: prov,
        input: p.clone().into(),
        ingress: IF_OUT,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, &r)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX]).both(
            SVC,
            REAL_A,
            new_conn(&p),
        ),
        state: vec![],
    }
    .into()
}

/// The real's interface is not in TX_PORTS: the redirect fails and the packet is dropped.
/// Scheduling and forwarding already happened (steps 10–11), so those are counted.
fn redirect_missing_port_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = Real {
        ifindex: IF_PEER,
        ..real(Dr, SVC, REAL4, 80)
    };
    let mut prov = one(VIP4, 80, TCP, r);
    prov.tx_ports = vec![IF_OUT];
    Case {
        name: "dr_v4_redirect_not_in_tx_ports",
        why: "the real's ifindex is missing from TX_PORTS: redirect fails, drop Redirect (scheduled, not counted FWD_DR)",
        provision: prov,
        input: p.into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Drop,
        output: Output::NotChecked,
        counts: Counts::of(&[Counter::RX, Counter::NEW_FLOW, Drop::Redirect.counter()])
        .both(SVC, REAL_A, new_conn(&Pkt::tcp(CLIENT4, VIP4, 40000, 80))),
        state: vec![],
    }
    .into()
}

/// A real whose forwarding mode this program does not know (a newer lb-ctl's, say): the
/// flow is scheduled and recorded, then its packet dropped in the rewrite. The connection
/// exists all the same, so it is counted (NEW_FLOW, `conns`), but no packet went in.
fn unknown_mode_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = Real {
        mode: 9,
        ..real(Dr, SVC, REAL4, 80)
    };
    Case {
        name: "dr_v4_unknown_mode_dropped",
        why: "the real's mode byte is 9 (no such mode): scheduled and recorded, then dropped NoReal; NEW_FLOW and conns counted, no in_packets",
        provision: one(VIP4, 80, TCP, r),
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Drop,
        output: Output::NotChecked,
        counts: Counts::of(&[Counter::RX, Counter::NEW_FLOW, Drop::NoReal.counter()]).both(
            SVC,
            REAL_A,
            Traffic {
                conns: 1,
                ..Traffic::default()
            },
        ),
        // The mode byte is recorded as it was; every packet of the flow drops the same way.
        state: vec![StateCheck::Flow(
            key_of(&p),
            Some(FlowValue {
                fwd: 9,
                ..fv_new(REAL_A, SVC, &p, Dr)
            }),
        )],
    }
    .into()
}

/// A flow whose real lost ACTIVE (deleted), with `expire_nodest_conn` 1: the flow is
/// expired and the packet scheduled anew. With `syn`, the packet is a SYN, which is
/// scheduled before its flow is looked up: the insert finds the old flow, the lookup then
/// expires it, and the new real is recorded all the same.
fn inactive_flow_real_case(syn: bool) -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let p = if syn { p.syn() } else { p };
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        flags: RealFlags(0),
        weight: 0,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((key_of(&p), fv(REAL_B, SVC)));
    prov.settings = Some(nodest_expire());
    Case {
        name: if syn {
            "dr_syn_inactive_real_rescheduled"
        } else {
            "dr_established_inactive_real_rescheduled"
        },
        why: "expire_nodest_conn=1 (IPVS sysctl): FLOWS points at a real without ACTIVE, so the flow is expired and the packet scheduled anew to REAL_A and re-recorded",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, &a)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX]).both(SVC, REAL_A, new_conn(&p)),
        state: vec![StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Dr)))],
    }
    .into()
}

/// The same with `expire_nodest_conn` 0 (IPVS's default): the packet is dropped
/// (`RealGone`) and the flow kept until it expires; a SYN too, though it was scheduled
/// (to REAL_A) before its flow was found.
fn gone_flow_real_case(syn: bool) -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let p = if syn { p.syn() } else { p };
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        flags: RealFlags(0),
        weight: 0,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((key_of(&p), fv(REAL_B, SVC)));
    Case {
        name: if syn {
            "dr_syn_real_gone_dropped"
        } else {
            "dr_established_real_gone_dropped"
        },
        why: "expire_nodest_conn=0 (IPVS default): a packet of a flow whose real was deleted is dropped RealGone, the flow stays until the sweep expires it",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Drop,
        output: Output::NotChecked,
        counts: Counts::of(&[Counter::RX, Drop::RealGone.counter()]),
        state: vec![StateCheck::Flow(key_of(&p), Some(fv(REAL_B, SVC)))],
    }
    .into()
}

/// A retransmitted SYN (or a reused port) of a flow that exists: the SYN is scheduled
/// first (Maglev says REAL_A), its insert finds the flow, and the flow's real (REAL_B)
/// takes it, its state moved by the SYN. Nothing is counted as a new connection.
fn syn_of_existing_flow_case() -> Sequence {
    use lb_common::conn::tcp_transition;
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80).syn();
    let a = real(Dr, SVC, REAL4, 80);
    let b = real(Dr, SVC, REAL4_B, 80);
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    let first = fv_new(REAL_B, SVC, &p, Dr);
    prov.flows.push((key_of(&p), first));
    let st = tcp_transition(first.state, first.flags, false, tcp_flags_of(&p));
    Case {
        name: "dr_syn_of_existing_flow_keeps_its_real",
        why: "a SYN whose flow exists (to REAL_B; the table has only REAL_A): the flow's real takes it, no new connection",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, &b)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::TX]).both(
            SVC,
            REAL_B,
            inbound(&p),
        ),
        state: vec![StateCheck::Flow(
            key_of(&p),
            Some(FlowValue {
                state: st.state,
                flags: st.flags,
                ..first
            }),
        )],
    }
    .into()
}

/// SETTINGS with IPVS's `expire_nodest_conn` on.
fn nodest_expire() -> lb_common::conn::Settings {
    lb_common::conn::Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    }
}

/// A flow whose real now belongs to another service is rescheduled (expire_nodest_conn 1).
fn moved_flow_real_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let a = real(Dr, SVC, REAL4, 80);
    let b = real(Dr, SVC_B, REAL4_B, 8080);
    let mut prov = one(VIP4, 80, TCP, a);
    prov.services.push(svc(SVC_B, VIP4, 8080, TCP));
    prov.reals.push((REAL_B, b));
    prov.flows.push((key_of(&p), fv(REAL_B, SVC)));
    prov.settings = Some(nodest_expire());
    Case {
        name: "dr_established_real_in_other_service_rescheduled",
        why: "expire_nodest_conn=1: FLOWS points at a real now in another service (its real was deleted and the slot reused): the flow is expired, the packet scheduled to REAL_A",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, &a)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX]).both(SVC, REAL_A, new_conn(&p)),
        state: vec![StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Dr)))],
    }
    .into()
}

/// New flow, then the real is made quiescent (weight 0, table rebuilt without it): the
/// established flow stays, a new client goes to the other real (IPVS quiescent semantics).
fn quiescent_sequence() -> Sequence {
    let first = Pkt::tcp(CLIENT4, VIP4, 40000, 80).syn();
    let again = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let other = Pkt::tcp(CLIENT4_B, VIP4, 50000, 80).syn();
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        weight: 0,
        dst_mac: [2, 0, 0, 0, 1, 3],
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    let a0 = Real { weight: 0, ..a };
    let b1 = Real { weight: 1, ..b };
    let tx = |p: &Pkt, r: &Real, id: u32, new: bool, want: FlowValue| {
        let mut c = vec![Counter::RX, Counter::FWD_DR, Counter::TX];
        if new {
            c.push(Counter::NEW_FLOW);
        }
        let t = if new { new_conn(p) } else { inbound(p) };
        Step {
            what: "",
            input: p.clone().into(),
            ingress: lb_tests::bpf::IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(dr(p, r)),
            counts: Counts::of(&c).both(SVC, id, t),
            state: vec![StateCheck::Flow(key_of(p), Some(want))],
        }
    };
    // The SYN leaves the flow in SYN_RECV (inactive); the client's ACK moves it to
    // ESTABLISHED (active), as IPVS's INPUT-ONLY table does for DR.
    let established = FlowValue {
        state: lb_common::conn::TcpState::Established as u8,
        flags: lb_common::FlowFlags::NO_OUTPUT,
        fwd: Dr as u8,
        ..fv(REAL_A, SVC)
    };
    Sequence {
        name: "dr_flow_survives_quiescent_real",
        why: "a recorded flow keeps its real after the table drops it (weight 0); a new client goes to the new table",
        provision: prov.clone(),
        steps: vec![
            Action::Packet(Step {
                what: "SYN: new flow to REAL_A",
                ..tx(&first, &a, REAL_A, true, fv_new(REAL_A, SVC, &first, Dr))
            }),
            Action::Update(Provision {
                reals: vec![(REAL_A, a0), (REAL_B, b1)],
                ..Provision::default()
            }),
            Action::Packet(Step {
                what: "same flow: still REAL_A, no NEW_FLOW",
                ..tx(&again, &a0, REAL_A, false, established)
            }),
            Action::Packet(Step {
                what: "another client: new table, REAL_B",
                ..tx(&other, &b1, REAL_B, true, fv_new(REAL_B, SVC, &other, Dr))
            }),
        ],
    }
}

/// TCP and UDP services on the same VIP and port are separate services.
fn tcp_and_udp_same_port() -> Sequence {
    let t = Pkt::tcp(CLIENT4, VIP4, 40000, 53);
    let u = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let a = real(Dr, SVC, REAL4, 53);
    let b = Real {
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC_B, REAL4_B, 53)
    };
    let mut prov = one(VIP4, 53, TCP, a);
    prov.services.push(svc(SVC_B, VIP4, 53, UDP));
    prov.reals.push((REAL_B, b));
    let step = |what, p: &Pkt, r: &Real, s, id| {
        Action::Packet(Step {
            what,
            input: p.clone().into(),
            ingress: lb_tests::bpf::IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(dr(p, r)),
            counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::NEW_FLOW, Counter::TX])
                .both(s, id, new_conn(p)),
            state: vec![StateCheck::Flow(key_of(p), Some(fv_new(id, s, p, Dr)))],
        })
    };
    Sequence {
        name: "dr_tcp_and_udp_services_same_port",
        why: "TCP and UDP on VIP:53 are two services: each protocol goes to its own real, two flows recorded",
        provision: prov,
        steps: vec![
            step("TCP to VIP:53", &t, &a, SVC, REAL_A),
            step("UDP to VIP:53", &u, &b, SVC_B, REAL_B),
        ],
    }
}

/// Step 7 comes before step 8: an established flow is forwarded on its FLOWS entry alone
/// (its real active and in the flow's service), even with no SERVICES entry any more.
fn flow_without_service_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let a = real(Dr, SVC, REAL4, 80);
    let prov = Provision {
        reals: vec![(REAL_A, a)],
        flows: vec![(key_of(&p), fv(REAL_A, SVC))],
        filter_only: vec![lb_tests::packet::addr(VIP4)],
        ..Provision::default()
    };
    Case {
        name: "dr_established_needs_no_service_lookup",
        why: "a FLOWS hit to an active real of the flow's service is forwarded without a SERVICES lookup",
        provision: prov,
        input: p.clone().into(),
        ingress: lb_tests::bpf::IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&p, &a)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_DR, Counter::TX]).both(SVC, REAL_A, inbound(&p)),
        state: vec![],
    }
    .into()
}
