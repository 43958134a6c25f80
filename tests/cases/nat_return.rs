//! NAT return path: a real's reply gets VIP:port back as its source, TTL − 1, and goes to
//! the client's MAC through the client's interface, all from the NAT_REV entry the forward
//! direction recorded. The main cases are sequences: forward first, then the reply. A NAT
//! real's ICMP error to the client about a packet of a NAT flow is translated the same way
//! (IPVS `ip_vs_out_icmp`); any other ICMP from a real passes.

use super::common::*;
use lb_common::{Counter, Drop, ForwardMode::Nat, Pass, Real};
use lb_tests::bpf::{IF_LO, IF_OUT, IF_PEER, Verdict};
use lb_tests::case::{Action, Case, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;

pub fn cases() -> Vec<Sequence> {
    vec![
        forward_then_reply(
            "nat_return_v4_tcp",
            "forward VIP:80 → real:8080, then the reply real:8080 → client leaves as VIP:80 → client",
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            REAL4,
            8080,
        ),
        forward_then_reply(
            "nat_return_v4_udp",
            "UDP: forward, then the reply gets VIP:53 back as source",
            Pkt::udp(CLIENT4, VIP4, 40000, 53),
            REAL4,
            5353,
        ),
        forward_then_reply(
            "nat_return_v6_tcp",
            "IPv6 TCP: forward, then the reply gets VIP:80 back, hop limit − 1",
            Pkt::tcp(CLIENT6, VIP6, 40000, 80),
            REAL6,
            8080,
        ),
        forward_then_reply(
            "nat_return_v6_udp",
            "IPv6 UDP: forward, then the reply gets VIP:53 back",
            Pkt::udp(CLIENT6, VIP6, 40000, 53),
            REAL6,
            5353,
        ),
        two_armed(),
        provisioned_redirect(),
        redirect_missing_port(),
        ttl1_dropped(),
        udp_zero_checksum(),
        pass_case(
            "nat_return_miss_passes",
            "a packet from a NAT real with no NAT_REV entry carries on: not to a VIP, pass NotVip",
            one(VIP4, 80, TCP, real(Nat, SVC, REAL4, 8080)),
            Pkt::tcp(REAL4, CLIENT4, 8080, 40001).macs(MAC_REAL, MAC_OUT),
            Pass::NotVip,
        )
        .into(),
        reply_to_vip_address(false),
        reply_to_vip_address(true),
        fragment_not_returned(),
        padding_case(),
        udp_ffff(),
        ttl1_dropped_v6(),
        ip_options(),
    ]
    .into_iter()
    .chain(icmp_cases())
    .collect()
}

/// Step 1 of every return sequence: a new NAT flow from `p`.
fn forward_step(p: &Pkt, r: &Real, ingress: u32, verdict: Verdict) -> Step {
    let (k, v) = nat_rev_of(p, r, ingress, SVC, REAL_A);
    let out = if verdict == Verdict::Tx {
        Counter::TX
    } else {
        Counter::REDIRECT
    };
    Step {
        what: "client packet: new NAT flow, NAT_REV recorded",
        input: p.clone().into(),
        ingress,
        verdict,
        output: Output::Pkt(nat(p, r)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_NAT, Counter::NEW_FLOW, out]).both(
            SVC,
            REAL_A,
            new_conn(p),
        ),
        state: vec![StateCheck::NatRev(k, Some(v)), StateCheck::NatRevCount(1)],
    }
}

/// The reply step: restored and sent back through the NAT_REV entry's interface.
fn reply_step(p: &Pkt, r: &Real, fwd_ingress: u32, reply_ingress: u32) -> Step {
    let (_, rev) = nat_rev_of(p, r, fwd_ingress, SVC, REAL_A);
    let reply = reply_of(p, r);
    let (verdict, out) = if fwd_ingress == reply_ingress {
        (Verdict::Tx, Counter::TX)
    } else {
        (Verdict::Redirect, Counter::REDIRECT)
    };
    Step {
        what: "the real's reply: source restored to VIP:port, MACs from NAT_REV",
        input: reply.clone().into(),
        ingress: reply_ingress,
        verdict,
        output: Output::Pkt(nat_return(&reply, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, out]).both(
            SVC,
            REAL_A,
            outbound(&reply),
        ),
        state: vec![],
    }
}

pub fn forward_then_reply(
    name: &'static str,
    why: &'static str,
    p: Pkt,
    raddr: &str,
    rport: u16,
) -> Sequence {
    let r = real(Nat, SVC, raddr, rport);
    let (_, vport) = p.ports();
    Sequence {
        name,
        why,
        provision: one(&p.ip.dst().to_string(), vport, p.proto(), r),
        steps: vec![
            Action::Packet(forward_step(&p, &r, IF_LO, Verdict::Tx)),
            Action::Packet(reply_step(&p, &r, IF_LO, IF_LO)),
        ],
    }
}

/// Two-armed director: clients on lbt1 (IF_PEER), reals on lbt0 (IF_OUT). The forward
/// packet is redirected to lbt0; the reply arrives on lbt0 and is redirected to lbt1.
fn two_armed() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = Real {
        ifindex: IF_OUT,
        ..real(Nat, SVC, REAL4, 8080)
    };
    let mut prov = one(VIP4, 80, TCP, r);
    prov.tx_ports = vec![IF_OUT, IF_PEER];
    Sequence {
        name: "nat_return_two_armed_redirects",
        why: "client on one interface, real on another: both directions are XDP_REDIRECT, the reply to the client's interface",
        provision: prov,
        steps: vec![
            Action::Packet(forward_step(&p, &r, IF_PEER, Verdict::Redirect)),
            Action::Packet(reply_step(&p, &r, IF_PEER, IF_OUT)),
        ],
    }
}

/// A NAT_REV entry written directly (as a restarted director would have it).
fn with_rev(
    p: &Pkt,
    r: Real,
    ifindex: u32,
) -> (lb_tests::provision::Provision, lb_common::NatReverse) {
    let (k, v) = nat_rev_of(p, &r, ifindex, SVC, REAL_A);
    let (_, vport) = p.ports();
    let mut prov = one(&p.ip.dst().to_string(), vport, p.proto(), r);
    prov.nat_rev.push((k, v));
    (prov, v)
}

fn provisioned_redirect() -> Sequence {
    let p = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    let r = real(Nat, SVC, REAL6, 5353);
    let (mut prov, rev) = with_rev(&p, r, IF_OUT);
    prov.tx_ports = vec![IF_OUT];
    returned(
        "nat_return_v6_redirect_to_client_interface",
        "the NAT_REV entry names another interface than the reply's: XDP_REDIRECT there",
        prov,
        &reply_of(&p, &r),
        &rev,
        Verdict::Redirect,
    )
}

/// A reply arriving on IF_LO and returned through `rev` with `verdict` (TX or REDIRECT).
fn returned(
    name: &'static str,
    why: &'static str,
    provision: lb_tests::provision::Provision,
    reply: &Pkt,
    rev: &lb_common::NatReverse,
    verdict: Verdict,
) -> Sequence {
    let out = if verdict == Verdict::Tx {
        Counter::TX
    } else {
        Counter::REDIRECT
    };
    Case {
        name,
        why,
        provision,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict,
        output: Output::Pkt(nat_return(reply, rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, out]).both(
            SVC,
            REAL_A,
            outbound(reply),
        ),
        state: vec![],
    }
    .into()
}

fn redirect_missing_port() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(Nat, SVC, REAL4, 8080);
    let (prov, _) = with_rev(&p, r, IF_PEER);
    let reply = reply_of(&p, &r);
    Case {
        name: "nat_return_redirect_not_in_tx_ports",
        why: "the client's interface is missing from TX_PORTS: the rewritten reply cannot leave, drop Redirect",
        provision: prov,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Drop,
        output: Output::NotChecked,
        counts: Counts::of(&[Counter::RX, Drop::Redirect.counter()]).both(SVC, REAL_A, outbound(&reply)),
        state: vec![],
    }
    .into()
}

/// The VIP check comes first (docs/datapath.md steps 3–4): a reply whose client address
/// passes the VIP filter (a false positive, or a VIP of another service) is still returned,
/// since no flow or service of that address takes it.
fn reply_to_vip_address(real_vip: bool) -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(Nat, SVC, REAL4, 8080);
    let (mut prov, rev) = with_rev(&p, r, IF_LO);
    if real_vip {
        prov.services.push(svc(SVC_B, CLIENT4, 443, TCP));
    } else {
        prov.filter_only
            .push(CLIENT4.parse().expect("address literal"));
    }
    let (name, why) = if real_vip {
        (
            "nat_return_to_client_that_is_a_vip",
            "the client address is also a VIP (port 443): the reply to port 40000 has no flow or service there, so it is a NAT reply",
        )
    } else {
        (
            "nat_return_to_client_in_vip_filter",
            "the client address falsely hits the VIP filter: not a VIP after all, so the NAT reply check still runs",
        )
    };
    returned(name, why, prov, &reply_of(&p, &r), &rev, Verdict::Tx)
}

fn ttl1_dropped() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(Nat, SVC, REAL4, 8080);
    let (prov, _) = with_rev(&p, r, IF_LO);
    drop_case(
        "nat_return_ttl1_dropped",
        "a reply with TTL 1 cannot take the director's hop: drop TtlExpired",
        prov,
        reply_of(&p, &r).ttl(1),
        Drop::TtlExpired,
    )
    .into()
}

fn udp_zero_checksum() -> Sequence {
    let p = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let r = real(Nat, SVC, REAL4, 5353);
    let (prov, rev) = with_rev(&p, r, IF_LO);
    let reply = reply_of(&p, &r).udp_checksum_zero();
    Case {
        name: "nat_return_v4_udp_zero_checksum",
        why: "a reply with UDP checksum 0 (none) keeps 0 after the source rewrite",
        provision: prov,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat_return(&reply, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
            SVC,
            REAL_A,
            outbound(&reply),
        ),
        state: vec![],
    }
    .into()
}

fn fragment_not_returned() -> Sequence {
    let p = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let r = real(Nat, SVC, REAL4, 5353);
    let (prov, _) = with_rev(&p, r, IF_LO);
    let frag = reply_of(&p, &r).fragment(true, 0);
    pass_case("nat_return_fragment_passes", "a fragmented reply is not looked up in NAT_REV (no ports to trust); to a non-VIP: pass NotVip", prov, frag, Pass::NotVip).into()
}

/// A bare ACK reply padded to 60 bytes: restored, padding kept, bytes counted without it.
fn padding_case() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(Nat, SVC, REAL4, 8080);
    let (prov, rev) = with_rev(&p, r, IF_LO);
    let reply = reply_of(&p, &r).payload(b"").pad(6);
    Case {
        name: "nat_return_v4_ethernet_padding",
        why: "a padded 60-byte reply: source restored, checksum ignores the padding, padding kept",
        provision: prov,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat_return(&reply, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
            SVC,
            REAL_A,
            outbound(&reply),
        ),
        state: vec![],
    }
    .into()
}

/// The reply's restored UDP checksum sums to zero: it must leave as 0xFFFF (IPv6: a 0 is
/// invalid and the client would drop it).
fn udp_ffff() -> Sequence {
    let p = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    let r = real(Nat, SVC, REAL6, 5353);
    let (prov, rev) = with_rev(&p, r, IF_LO);
    let base = reply_of(&p, &r);
    let payload = udp_payload_for_ffff(|pl| nat_return(&base.clone().payload(pl), &rev));
    let reply = base.payload(&payload);
    Case {
        name: "nat_return_v6_udp_checksum_ffff",
        why: "the restored UDP checksum sums to zero: sent as 0xFFFF, never 0",
        provision: prov,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat_return(&reply, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
            SVC,
            REAL_A,
            outbound(&reply),
        ),
        state: vec![],
    }
    .into()
}

fn ttl1_dropped_v6() -> Sequence {
    let p = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    let r = real(Nat, SVC, REAL6, 5353);
    let (prov, _) = with_rev(&p, r, IF_LO);
    drop_case(
        "nat_return_v6_hop1_dropped",
        "an IPv6 reply with hop limit 1: drop TtlExpired",
        prov,
        reply_of(&p, &r).ttl(1),
        Drop::TtlExpired,
    )
    .into()
}

/// ICMP from a NAT real is not TCP/UDP, so no NAT_REV lookup (unlike IPVS, which would
/// translate an error about a NAT connection): to the client, a non-VIP, pass NotVip.
/// A NAT real's ICMP error to the client about `about` (the client's packet as the real got
/// it, client:cport → real:rport) after the translation (IPVS `ip_vs_out_icmp` +
/// `ip_vs_nat_icmp`): outer source := VIP, TTL − 1, MACs from NAT_REV; the quote's
/// destination := VIP:vport, its IPv4 header checksum recomputed, its L4 checksum (when
/// quoted) left as the real quoted it; the ICMP checksum computed afresh by the builder.
fn icmp_return(icmp: &Pkt, about: &Pkt, rev: &lb_common::NatReverse) -> Pkt {
    let fam = if icmp.ip.is_v6() { 6 } else { 4 };
    let vip = lb_common::addr::convert::from_raw(&rev.vip, fam);
    let len = icmp.payload.len();
    let orig = about.quote_len(len);
    let mut q = about
        .clone()
        .dst(vip)
        .dport(rev.vport.to_host())
        .quote_len(len);
    let at = about.ip_header_len() + if about.proto() == UDP { 6 } else { 16 };
    if at + 2 <= q.len() {
        q[at..at + 2].copy_from_slice(&orig[at..at + 2]);
    }
    let ttl = icmp.ip.ttl() - 1;
    icmp.clone()
        .macs(rev.local_mac, rev.client_mac)
        .src(vip)
        .ttl(ttl)
        .payload(&q)
}

/// A NAT real's ICMP error about a packet of a NAT flow, translated back to the client.
fn icmp_translated(
    name: &'static str,
    why: &'static str,
    p: Pkt,
    r: Real,
    error: impl Fn(&Pkt) -> Pkt,
) -> Sequence {
    let (prov, rev) = with_rev(&p, r, IF_LO);
    let about = nat(&p, &r);
    let icmp = error(&about).macs(MAC_REAL, MAC_OUT);
    Case {
        name,
        why,
        provision: prov,
        input: icmp.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(icmp_return(&icmp, &about, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
            SVC,
            REAL_A,
            outbound(&icmp),
        ),
        state: vec![],
    }
    .into()
}

fn icmp_cases() -> Vec<Sequence> {
    use lb_tests::packet::{Icmpv4Type, Icmpv6Type, frag_needed, packet_too_big};
    let port_unreach = |q: &Pkt| {
        Pkt::icmp4(
            REAL4,
            CLIENT4,
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
        )
        .payload(&q.quote())
    };
    let unknown = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(Nat, SVC, REAL4, 8080);
    let (prov, _) = with_rev(&unknown, r, IF_LO);
    // Another client port: no NAT_REV entry for the quoted packet.
    let other = nat(&Pkt::tcp(CLIENT4, VIP4, 40001, 80), &r);
    let dr_real = real(lb_common::ForwardMode::Dr, SVC, REAL4, 80);
    let dr_about = Pkt::tcp(CLIENT4, VIP4, 40000, 80).macs(MAC_OUT, MAC_REAL);
    vec![
        icmp_translated(
            "nat_return_icmp4_frag_needed",
            "a NAT real's frag-needed to the client about the client's packet (client → real:8080 quoted): outer source := VIP, TTL − 1, quoted destination := VIP:80, quoted IPv4 and ICMP checksums fixed, to the client's MAC as a reply",
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            r,
            |q| frag_needed(REAL4, CLIENT4, 1400, &q.quote()),
        ),
        icmp_translated(
            "nat_return_icmp4_port_unreach_udp",
            "a NAT real's port unreachable (type 3, any code, as IPVS) about a UDP packet: translated, the quoted UDP checksum left as the real quoted it",
            Pkt::udp(CLIENT4, VIP4, 40000, 53),
            real(Nat, SVC, REAL4, 5353),
            port_unreach,
        ),
        icmp_translated(
            "nat_return_icmp6_packet_too_big",
            "a NAT real's packet-too-big to the client: outer source := VIP, hop limit − 1, quoted destination := VIP:80, ICMPv6 checksum (pseudo-header with the new source) fixed",
            Pkt::tcp(CLIENT6, VIP6, 40000, 80),
            real(Nat, SVC, REAL6, 8080),
            |q| packet_too_big(REAL6, CLIENT6, 1280, &q.quote()),
        ),
        icmp_translated(
            "nat_return_icmp6_dest_unreach_long_quote",
            "ICMPv6 destination unreachable (type 1) quoting the whole UDP packet: translated, ICMPv6 checksum over all of it",
            Pkt::udp(CLIENT6, VIP6, 40000, 53).payload(&[0x5a; 200]),
            real(Nat, SVC, REAL6, 5353),
            |q| {
                Pkt::icmp6(
                    REAL6,
                    CLIENT6,
                    Icmpv6Type::DestinationUnreachable(
                        etherparse::icmpv6::DestUnreachableCode::Port,
                    ),
                )
                .payload(&q.quote_len(1000))
            },
        ),
        pass_case(
            "nat_return_icmp_unknown_flow_passes",
            "a NAT real's frag-needed about a packet of no NAT flow (no NAT_REV entry for its quote): passes untouched, NotVip",
            prov,
            frag_needed(REAL4, CLIENT4, 1400, &other.quote()).macs(MAC_REAL, MAC_OUT),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "nat_return_icmp_from_dr_real_passes",
            "a DR real's frag-needed to the client (not in NAT_FILTER): passes untouched, NotVip",
            one(VIP4, 80, TCP, dr_real),
            frag_needed(REAL4, CLIENT4, 1400, &dr_about.quote()).macs(MAC_REAL, MAC_OUT),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "nat_return_icmp_echo_from_real_passes",
            "an ICMP message IPVS does not translate (echo request) from a NAT real: passes, NotVip",
            with_rev(&unknown, r, IF_LO).0,
            Pkt::icmp4(REAL4, CLIENT4, Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 1, seq: 1 }))
                .payload(&nat(&unknown, &r).quote())
                .macs(MAC_REAL, MAC_OUT),
            Pass::NotVip,
        )
        .into(),
    ]
}

/// A reply with IPv4 options: ports found after the options, header checksum kept valid.
fn ip_options() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let r = real(Nat, SVC, REAL4, 8080);
    let (prov, rev) = with_rev(&p, r, IF_LO);
    let reply = reply_of(&p, &r).options(&[0x94, 4, 0, 0]);
    Case {
        name: "nat_return_v4_ip_options",
        why: "a reply with IPv4 options: its ports are found via IHL, source restored, checksums valid",
        provision: prov,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat_return(&reply, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(SVC, REAL_A, outbound(&reply)),
        state: vec![],
    }
    .into()
}
