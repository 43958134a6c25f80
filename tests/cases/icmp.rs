//! ICMP errors about a flow (fragmentation needed, packet too big) follow the flow to its
//! real, found through FLOWS or by scheduling the quoted flow without recording it; NAT
//! rewrites the quote back to the real's address and port. Other ICMP to a VIP passes.

use super::common::*;
use lb_common::{
    Counter, Drop, ForwardMode, ForwardMode::Dr, ForwardMode::Nat, ForwardMode::Tun, Pass, Real,
};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Case, Counts, Output, Sequence, StateCheck};
use lb_tests::packet::{Icmpv4Type, Icmpv6Type, Pkt, frag_needed, packet_too_big};
use lb_tests::provision::{Provision, Table, flow_key};

/// A reply VIP:vport → client:cport as a router would quote it.
fn quoted(proto: u8, v6: bool) -> Pkt {
    let (vip, client) = if v6 { (VIP6, CLIENT6) } else { (VIP4, CLIENT4) };
    match proto {
        TCP => Pkt::tcp(vip, client, 80, 40000),
        _ => Pkt::udp(vip, client, 80, 40000),
    }
}

/// The ICMP error about `q`, from a router to the VIP.
fn error_about(q: &Pkt) -> Pkt {
    if q.ip.is_v6() {
        packet_too_big(ROUTER6, VIP6, 1280, &q.quote())
    } else {
        frag_needed(ROUTER4, VIP4, 1400, &q.quote())
    }
}

/// The flow the quote is about: the quote reversed.
fn quoted_flow(q: &Pkt) -> lb_common::FlowKey {
    let (s, d) = q.ports();
    flow_key(q.ip.dst(), q.ip.src(), d, s, q.proto())
}

/// Expected ICMP packet after NAT: outer destination := real, outer TTL − 1, quote
/// rewritten (common::nat_quote), ICMP checksum computed afresh by the builder.
fn icmp_nat(icmp: &Pkt, q: &Pkt, r: &Real) -> Pkt {
    let rip = lb_common::addr::convert::from_raw(&r.addr, r.family);
    let ttl = icmp.ip.ttl() - 1;
    dr(icmp, r)
        .dst(rip)
        .ttl(ttl)
        .payload(&nat_quote(q, r, icmp.payload.len()))
}

fn expected(mode: ForwardMode, icmp: &Pkt, q: &Pkt, r: &Real) -> Pkt {
    match mode {
        ForwardMode::Nat => icmp_nat(icmp, q, r),
        _ => forwarded(mode, icmp, r),
    }
}

/// The error about an established flow: FLOWS sends it to REAL_B (not in the table).
fn established(
    name: &'static str,
    why: &'static str,
    mode: ForwardMode,
    proto: u8,
    v6: bool,
) -> Sequence {
    let q = quoted(proto, v6);
    let icmp = error_about(&q);
    let (ra, rb) = if v6 {
        (REAL6, REAL6_B)
    } else {
        (REAL4, REAL4_B)
    };
    let port = if mode == Nat { 8080 } else { 80 };
    let a = real(mode, SVC, ra, port);
    let b = Real {
        weight: 0,
        dst_mac: MAC_REAL_B,
        ..real(mode, SVC, rb, port)
    };
    let mut prov = one(&q.ip.src().to_string(), 80, proto, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((quoted_flow(&q), fv(REAL_B, SVC)));
    Case {
        name,
        why,
        provision: prov,
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(expected(mode, &icmp, &q, &b)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::ICMP_TO_REAL,
            fwd_counter(mode),
            Counter::TX,
        ])
        .both(SVC, REAL_B, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(1)],
    }
    .into()
}

/// The error about a flow the table has not seen: scheduled like the flow, not recorded.
fn scheduled(
    name: &'static str,
    why: &'static str,
    mode: ForwardMode,
    proto: u8,
    v6: bool,
) -> Sequence {
    let q = quoted(proto, v6);
    let icmp = error_about(&q);
    let ra = if v6 { REAL6 } else { REAL4 };
    let port = if mode == Nat { 8080 } else { 80 };
    let a = real(mode, SVC, ra, port);
    Case {
        name,
        why,
        provision: one(&q.ip.src().to_string(), 80, proto, a),
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(expected(mode, &icmp, &q, &a)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::ICMP_TO_REAL,
            fwd_counter(mode),
            Counter::TX,
        ])
        .both(SVC, REAL_A, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(0), StateCheck::NatRevCount(0)],
    }
    .into()
}

/// With several reals the error goes where the quoted flow would be scheduled.
fn scheduled_multi() -> Sequence {
    let q = quoted(TCP, false);
    let icmp = error_about(&q);
    let mut prov = one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80));
    prov.services[0].table = Table::Maglev(251);
    prov.reals.push((
        REAL_B,
        Real {
            dst_mac: MAC_REAL_B,
            ..real(Dr, SVC, REAL4_B, 80)
        },
    ));
    prov.reals.push((
        REAL_C,
        Real {
            dst_mac: [2, 0, 0, 0, 1, 4],
            ..real(Dr, SVC, REAL4_C, 80)
        },
    ));
    let id = prov.scheduled(SVC, &quoted_flow(&q));
    let r = *prov.real(id);
    Case {
        name: "icmp4_frag_needed_follows_schedule",
        why: "three reals: the error goes to table[src_hash(quoted flow reversed) % len], as its flow would",
        provision: prov,
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&icmp, &r)),
        counts: Counts::of(&[Counter::RX, Counter::ICMP_TO_REAL, Counter::FWD_DR, Counter::TX]).both(SVC, id, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(0)],
    }
    .into()
}

/// An error whose quoted IPv4 header carries options (IHL 6).
fn quote_options(mode: ForwardMode, name: &'static str, why: &'static str) -> Sequence {
    let q = Pkt::tcp(VIP4, CLIENT4, 80, 40000).options(&[1, 1, 1, 0]);
    let icmp = error_about(&q);
    let port = if mode == Nat { 8080 } else { 80 };
    let r = real(mode, SVC, REAL4, port);
    Case {
        name,
        why,
        provision: one(VIP4, 80, TCP, r),
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(expected(mode, &icmp, &q, &r)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::ICMP_TO_REAL,
            fwd_counter(mode),
            Counter::TX,
        ])
        .both(SVC, REAL_A, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(0)],
    }
    .into()
}

/// The ICMP error's own IPv4 header has options: the ICMP header is found via its IHL.
fn outer_options() -> Sequence {
    let q = quoted(TCP, false);
    let icmp = error_about(&q).options(&[1, 1, 1, 0, 1, 1, 1, 0]);
    let r = real(Dr, SVC, REAL4, 80);
    Case {
        name: "icmp4_frag_needed_outer_options",
        why: "the error's own IPv4 header has options (IHL 7): parsed via IHL and forwarded untouched but for the MACs",
        provision: one(VIP4, 80, TCP, r),
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&icmp, &r)),
        counts: Counts::of(&[Counter::RX, Counter::ICMP_TO_REAL, Counter::FWD_DR, Counter::TX]).both(SVC, REAL_A, inbound(&icmp)),
        state: vec![],
    }
    .into()
}

/// An error quoting much more than 8 bytes of a big reply.
fn long_quote(mode: ForwardMode, v6: bool, name: &'static str, why: &'static str) -> Sequence {
    let big = quoted(if v6 { UDP } else { TCP }, v6).payload(&[0x5a; 1400]);
    let icmp = if v6 {
        packet_too_big(ROUTER6, VIP6, 1280, &big.quote_len(1280 - 48))
    } else {
        frag_needed(ROUTER4, VIP4, 1400, &big.quote_len(576 - 28))
    };
    let port = if mode == Nat { 8080 } else { 80 };
    let r = real(mode, SVC, if v6 { REAL6 } else { REAL4 }, port);
    let vip = if v6 { VIP6 } else { VIP4 };
    Case {
        name,
        why,
        provision: one(vip, 80, big.proto(), r),
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(expected(mode, &icmp, &big, &r)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::ICMP_TO_REAL,
            fwd_counter(mode),
            Counter::TX,
        ])
        .both(SVC, REAL_A, inbound(&icmp)),
        state: vec![StateCheck::FlowCount(0)],
    }
    .into()
}

/// HASH_PORTS with three reals: the error goes to table[flow_hash(quote reversed) % len];
/// several client ports, one step each, so at least two reals are exercised.
fn multi_hash_ports(v6: bool) -> Sequence {
    let (vip, client, addrs) = if v6 {
        (VIP6, CLIENT6, [REAL6, REAL6_B, "2001:db8:2::4"])
    } else {
        (VIP4, CLIENT4, [REAL4, REAL4_B, REAL4_C])
    };
    let mut prov = Provision::default();
    prov.services.push(lb_tests::provision::Svc {
        flags: lb_common::VipFlags::HASH_PORTS,
        table: Table::Maglev(251),
        ..svc(SVC, vip, 80, UDP)
    });
    for (i, a) in addrs.iter().enumerate() {
        let mac = [2, 0, 0, 0, 1, 2 + i as u8];
        prov.reals.push((
            REAL_A + i as u32,
            Real {
                dst_mac: mac,
                ..real(Dr, SVC, a, 80)
            },
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut steps = Vec::new();
    for cport in 40000..40100u16 {
        let q = Pkt::udp(vip, client, 80, cport);
        let id = prov.scheduled(SVC, &quoted_flow(&q));
        if !seen.insert(id) && steps.len() >= 2 {
            continue;
        }
        let icmp = error_about(&q);
        let r = *prov.real(id);
        steps.push(lb_tests::case::Action::Packet(lb_tests::case::Step {
            what: "an error about one more client port",
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
            .both(SVC, id, inbound(&icmp)),
            state: vec![StateCheck::FlowCount(0)],
        }));
        if seen.len() == 3 {
            break;
        }
    }
    assert!(seen.len() >= 2, "the ports should reach at least two reals");
    Sequence {
        name: if v6 {
            "icmp6_ptb_hash_ports_follows_schedule"
        } else {
            "icmp4_frag_needed_hash_ports_follows_schedule"
        },
        why: "with HASH_PORTS each error goes to table[flow_hash(quote reversed, FLOW_SEED) % len], as its flow would",
        provision: prov,
        steps,
    }
}

/// An error about a flow whose real lost ACTIVE (expire_nodest_conn 1): treated as a miss, scheduled to REAL_A,
/// and no flow is written (the stale entry stays as it was).
fn inactive_flow_real() -> Sequence {
    let q = quoted(TCP, false);
    let icmp = error_about(&q);
    let a = real(Dr, SVC, REAL4, 80);
    let b = Real {
        flags: lb_common::RealFlags(0),
        weight: 0,
        dst_mac: MAC_REAL_B,
        ..real(Dr, SVC, REAL4_B, 80)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((quoted_flow(&q), fv(REAL_B, SVC)));
    prov.settings = Some(lb_common::conn::Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    });
    Case {
        name: "icmp4_frag_needed_inactive_flow_real",
        why: "expire_nodest_conn=1: the quoted flow's real is deleted: the error is placed like a new flow of the hashing scheduler (REAL_A), FLOWS left alone (an error is no packet of the connection)",
        provision: prov,
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(dr(&icmp, &a)),
        counts: Counts::of(&[Counter::RX, Counter::ICMP_TO_REAL, Counter::FWD_DR, Counter::TX]).both(SVC, REAL_A, inbound(&icmp)),
        state: vec![StateCheck::Flow(quoted_flow(&q), Some(fv(REAL_B, SVC)))],
    }
    .into()
}

fn dr_v4() -> Provision {
    one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80))
}

fn dr_v6() -> Provision {
    one(VIP6, 80, TCP, real(Dr, SVC, REAL6, 80))
}

pub fn cases() -> Vec<Sequence> {
    let q4 = quoted(TCP, false);
    let q6 = quoted(TCP, true);
    let mut short_l4 = q4.quote();
    short_l4.truncate(20 + 4);
    let mut short_ip = q4.quote();
    short_ip.truncate(12);
    let mut short6 = q6.quote();
    short6.truncate(40 + 4);
    vec![
        established(
            "icmp4_frag_needed_dr_established",
            "frag-needed about an established flow goes to the flow's real, DR, outer TTL kept",
            Dr,
            TCP,
            false,
        ),
        established(
            "icmp6_ptb_dr_established",
            "packet-too-big about an established flow goes to the flow's real, DR",
            Dr,
            TCP,
            true,
        ),
        scheduled(
            "icmp4_frag_needed_dr_scheduled",
            "frag-needed about an unknown flow is scheduled like the flow, no flow recorded",
            Dr,
            TCP,
            false,
        ),
        scheduled(
            "icmp6_ptb_dr_scheduled",
            "packet-too-big about an unknown UDP flow is scheduled, no flow recorded",
            Dr,
            UDP,
            true,
        ),
        established(
            "icmp4_frag_needed_tun_established",
            "frag-needed to a TUN flow: the whole ICMP packet is IPIP-encapsulated",
            Tun,
            TCP,
            false,
        ),
        scheduled(
            "icmp6_ptb_tun_scheduled",
            "packet-too-big to a TUN service: the whole ICMPv6 packet in IP6IP6",
            Tun,
            TCP,
            true,
        ),
        established(
            "icmp4_frag_needed_nat_tcp",
            "NAT: outer dst := real, TTL − 1, quoted src := real:8080, quoted IPv4 and ICMP checksums fixed",
            Nat,
            TCP,
            false,
        ),
        established(
            "icmp4_frag_needed_nat_udp",
            "NAT: the quoted UDP checksum is left as the router quoted it",
            Nat,
            UDP,
            false,
        ),
        established(
            "icmp6_ptb_nat_tcp",
            "NAT IPv6: outer dst := real, hop limit − 1, quote rewritten, ICMPv6 checksum (pseudo-header) fixed",
            Nat,
            TCP,
            true,
        ),
        scheduled(
            "icmp6_ptb_nat_udp_scheduled",
            "NAT IPv6 via scheduling: rewritten like an established one",
            Nat,
            UDP,
            true,
        ),
        scheduled_multi(),
        established(
            "icmp6_ptb_tun_established",
            "packet-too-big about an established TUN flow: IP6IP6 to the flow's real",
            Tun,
            UDP,
            true,
        ),
        scheduled(
            "icmp4_frag_needed_tun_scheduled",
            "frag-needed to a TUN service, no flow: IPIP to the scheduled real",
            Tun,
            UDP,
            false,
        ),
        scheduled(
            "icmp4_frag_needed_nat_scheduled",
            "NAT via scheduling: quote rewritten to the scheduled real",
            Nat,
            TCP,
            false,
        ),
        quote_options(
            Dr,
            "icmp4_frag_needed_quote_options_dr",
            "the quoted IPv4 header has options: its ports are found via the quoted IHL",
        ),
        quote_options(
            Nat,
            "icmp4_frag_needed_quote_options_nat",
            "NAT of a quote with options: the quoted header checksum covers the options and stays valid",
        ),
        outer_options(),
        long_quote(
            Nat,
            false,
            "icmp4_frag_needed_nat_long_quote",
            "a 548-byte quote of a 1500-byte reply (as Linux routers send): quoted tot_len exceeds the quote, NAT still rewrites it",
        ),
        long_quote(
            Nat,
            true,
            "icmp6_ptb_nat_long_quote",
            "a 1232-byte quote (ICMPv6 fills the minimum MTU): NAT rewrite, ICMPv6 checksum over all of it",
        ),
        long_quote(
            Tun,
            false,
            "icmp4_frag_needed_tun_long_quote",
            "a long quote is carried whole inside the tunnel",
        ),
        multi_hash_ports(false),
        multi_hash_ports(true),
        inactive_flow_real(),
        drop_case(
            "icmp4_frag_needed_quote_bad_version",
            "the quoted header is not IPv4 (version 6): an unusable quote, drop IcmpQuote",
            dr_v4(),
            frag_needed(ROUTER4, VIP4, 1400, &{
                let mut b = q4.quote();
                b[0] = 0x65;
                b
            }),
            Drop::IcmpQuote,
        )
        .into(),
        pass_case(
            "icmp4_frag_needed_quoting_icmp",
            "a quote of an ICMP packet names no TCP/UDP service: pass NotBalanced",
            dr_v4(),
            frag_needed(
                ROUTER4,
                VIP4,
                1400,
                &Pkt::icmp4(
                    VIP4,
                    CLIENT4,
                    Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 1, seq: 1 }),
                )
                .payload(b"pingpong")
                .quote(),
            ),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "icmp6_ptb_to_other",
            "packet-too-big to a non-VIP: pass NotVip",
            dr_v6(),
            packet_too_big(ROUTER6, OTHER6, 1280, &q6.quote()),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "icmp6_dest_unreachable_to_vip",
            "ICMPv6 destination unreachable (type 1) is not balanced: pass NotBalanced",
            dr_v6(),
            Pkt::icmp6(
                ROUTER6,
                VIP6,
                Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port),
            )
            .payload(&q6.quote()),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "icmp4_frag_needed_no_service",
            "the quote names a port with no service (VIP:9999): pass NotBalanced",
            dr_v4(),
            error_about(&Pkt::tcp(VIP4, CLIENT4, 9999, 40000)),
            Pass::NotBalanced,
        )
        .into(),
        drop_case(
            "icmp4_frag_needed_quote_l4_short",
            "the quote has the IP header but only 4 of the 8 L4 bytes: drop IcmpQuote",
            dr_v4(),
            frag_needed(ROUTER4, VIP4, 1400, &short_l4),
            Drop::IcmpQuote,
        )
        .into(),
        drop_case(
            "icmp4_frag_needed_quote_ip_short",
            "the quoted IPv4 header is cut short: drop IcmpQuote",
            dr_v4(),
            frag_needed(ROUTER4, VIP4, 1400, &short_ip),
            Drop::IcmpQuote,
        )
        .into(),
        drop_case(
            "icmp6_ptb_quote_short",
            "the quoted IPv6 packet lacks its 8 L4 bytes: drop IcmpQuote",
            dr_v6(),
            packet_too_big(ROUTER6, VIP6, 1280, &short6),
            Drop::IcmpQuote,
        )
        .into(),
        // The same unusable quotes to a non-VIP whose VIP_FILTER slot is the VIP's: the
        // filter says "maybe", VIPS says no, so the packet is not ours to drop.
        pass_case(
            "icmp4_frag_needed_quote_bad_version_to_twin",
            "a quote of version 6 in frag-needed to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr_v4(),
            frag_needed(ROUTER4, filter_twin(VIP4), 1400, &{
                let mut b = q4.quote();
                b[0] = 0x65;
                b
            }),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "icmp4_frag_needed_quote_l4_short_to_twin",
            "a quote with 4 of its 8 L4 bytes to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr_v4(),
            frag_needed(ROUTER4, filter_twin(VIP4), 1400, &short_l4),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "icmp4_frag_needed_quote_ip_short_to_twin",
            "a cut quoted IPv4 header to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr_v4(),
            frag_needed(ROUTER4, filter_twin(VIP4), 1400, &short_ip),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "icmp6_ptb_quote_short_to_twin",
            "a quoted IPv6 packet without its 8 L4 bytes to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr_v6(),
            packet_too_big(ROUTER6, filter_twin(VIP6), 1280, &short6),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "icmp4_frag_needed_ttl1",
            "the TTL check applies to the outer packet of an ICMP error: drop TtlExpired",
            dr_v4(),
            error_about(&q4).ttl(1),
            Drop::TtlExpired,
        )
        .into(),
        pass_case(
            "icmp4_ping_to_vip",
            "echo request to a VIP is not balanced: pass NotBalanced (the director answers itself)",
            dr_v4(),
            Pkt::icmp4(
                CLIENT4,
                VIP4,
                Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 7, seq: 1 }),
            )
            .payload(b"ping"),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "icmp6_ping_to_vip",
            "ICMPv6 echo request to a VIP: pass NotBalanced",
            dr_v6(),
            Pkt::icmp6(
                CLIENT6,
                VIP6,
                Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader { id: 7, seq: 1 }),
            )
            .payload(b"ping"),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "icmp4_ping_to_other",
            "echo request to a non-VIP: pass NotVip",
            dr_v4(),
            Pkt::icmp4(
                CLIENT4,
                OTHER4,
                Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 7, seq: 1 }),
            ),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "icmp4_time_exceeded_to_vip",
            "only frag-needed is balanced: time-exceeded to a VIP passes NotBalanced",
            dr_v4(),
            Pkt::icmp4(
                ROUTER4,
                VIP4,
                Icmpv4Type::TimeExceeded(
                    etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
                ),
            )
            .payload(&q4.quote()),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "icmp4_port_unreachable_to_vip",
            "type 3 code 3 (port unreachable) is not frag-needed: pass NotBalanced",
            dr_v4(),
            Pkt::icmp4(
                ROUTER4,
                VIP4,
                Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
            )
            .payload(&q4.quote()),
            Pass::NotBalanced,
        )
        .into(),
        {
            // OTHER4's filter bit is set (a false positive) but it is no VIP: the error
            // about a "flow" from it must pass as someone else's packet, like a ping would.
            let q = Pkt::tcp(OTHER4, CLIENT4, 80, 40000);
            let mut prov = dr_v4();
            prov.filter_only = vec![lb_tests::packet::addr(OTHER4)];
            pass_case(
                "icmp4_frag_needed_filter_false_positive",
                "frag-needed to an address only the bit filter matches: pass NotVip",
                prov,
                frag_needed(ROUTER4, OTHER4, 1400, &q.quote()),
                Pass::NotVip,
            )
            .into()
        },
        pass_case(
            "icmp4_frag_needed_to_other",
            "frag-needed to a non-VIP: pass NotVip",
            dr_v4(),
            frag_needed(ROUTER4, OTHER4, 1400, &q4.quote()),
            Pass::NotVip,
        )
        .into(),
    ]
}
