//! NAT (`-m`), client → real direction: destination address and port rewritten, TTL − 1,
//! checksums valid, NAT_REV recorded on a new flow.

use super::common::*;
use lb_common::{Counter, Drop, ForwardMode::Nat, Real};
use lb_tests::bpf::{IF_LO, IF_OUT, Verdict};
use lb_tests::case::{Case, Counts, Output, Sequence, StateCheck};
use lb_tests::packet::Pkt;

pub fn cases() -> Vec<Sequence> {
    let tcp4 = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let udp4 = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let tcp6 = Pkt::tcp(CLIENT6, VIP6, 40000, 80);
    let udp6 = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    vec![
        new_flow_case("nat_v4_tcp_new", "new TCP flow to a NAT real: dst VIP:80 → real:8080, TTL − 1, checksums valid, NAT_REV recorded", Nat, tcp4.clone(), REAL4, 8080).into(),
        new_flow_case("nat_v4_udp_new", "new UDP flow to a NAT real: dst VIP:53 → real:5353, UDP checksum updated", Nat, udp4.clone(), REAL4, 5353).into(),
        new_flow_case("nat_v6_tcp_new", "new IPv6 TCP flow to a NAT real: dst rewritten, hop limit − 1, TCP checksum updated", Nat, tcp6.clone(), REAL6, 8080).into(),
        new_flow_case("nat_v6_udp_new", "new IPv6 UDP flow to a NAT real: dst rewritten, UDP checksum updated", Nat, udp6.clone(), REAL6, 5353).into(),
        new_flow_case("nat_v4_same_port", "a real port equal to the VIP port: only the address changes", Nat, tcp4.clone(), REAL4, 80).into(),
        established_case("nat_v4_tcp_established", "a FLOWS hit is NATed to its real (REAL_B), no NEW_FLOW, no new NAT_REV entry", Nat, tcp4.clone(), REAL4, REAL4_B, 8080).into(),
        established_case("nat_v4_udp_established", "a UDP FLOWS hit is NATed to its real", Nat, udp4.clone(), REAL4, REAL4_B, 5353).into(),
        established_case("nat_v6_tcp_established", "an IPv6 TCP FLOWS hit is NATed to its real", Nat, tcp6.clone(), REAL6, REAL6_B, 8080).into(),
        established_case("nat_v6_udp_established", "an IPv6 UDP FLOWS hit is NATed to its real", Nat, udp6.clone(), REAL6, REAL6_B, 5353).into(),
        new_flow_case("nat_v4_udp_zero_checksum_stays_zero", "an IPv4 UDP checksum of 0 (none) stays 0 after the rewrite", Nat, udp4.clone().udp_checksum_zero(), REAL4, 5353).into(),
        new_flow_case("nat_v4_ip_options", "with IPv4 options the header checksum (over the options too) stays valid", Nat, tcp4.clone().options(&[1, 1, 1, 0, 0x94, 4, 0, 0]), REAL4, 8080).into(),
        new_flow_case("nat_v4_ttl2_becomes_1", "TTL 2 passes the check and leaves as 1 (the director is a hop)", Nat, tcp4.clone().ttl(2), REAL4, 8080).into(),
        new_flow_case("nat_v4_syn_big_payload", "a bigger segment: incremental checksum over a longer payload", Nat, tcp4.clone().payload(&[0xa5; 1000]), REAL4, 8080).into(),
        drop_case("nat_v6_hop1_dropped", "hop limit 1 to a NAT service: drop TtlExpired before any rewrite", one(VIP6, 80, TCP, real(Nat, SVC, REAL6, 8080)), tcp6.clone().ttl(1), Drop::TtlExpired).into(),
        redirect_case(),
        new_flow_case("nat_v4_ethernet_padding", "a 54-byte ACK padded to 60: the checksum update ignores the padding, which is kept", Nat, tcp4.clone().payload(b"").pad(6), REAL4, 8080).into(),
        new_flow_case("nat_v4_tos_kept", "the TOS byte (DSCP/ECN) is kept; the header checksum stays valid", Nat, udp4.clone().tos(0xb9), REAL4, 5353).into(),
        new_flow_case("nat_v6_traffic_class_flow_label_kept", "IPv6 NAT keeps traffic class and flow label", Nat, tcp6.clone().tos(0x2e).flow_label(0xabcde), REAL6, 8080).into(),
        from_nat_real_to_vip(),
        inactive_rescheduled(),
        udp_ffff(false),
        udp_ffff(true),
        new_flow_case("nat_v6_syn_tcp_options", "a SYN with MSS/SACK/timestamp/window-scale options: NAT leaves the options, checksum valid", Nat, tcp6.clone().syn().tcp_options(&SYN_OPTIONS), REAL6, 8080).into(),
        new_flow_case("nat_v4_full_mtu", "a 1500-byte IP packet: NAT with the checksum over a full payload", Nat, tcp4.clone().payload(&[0x3c; 1500 - 40]), REAL4, 8080).into(),
    ]
}

fn redirect_case() -> Sequence {
    let p = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let r = Real {
        ifindex: IF_OUT,
        ..real(Nat, SVC, REAL4, 5353)
    };
    let mut prov = one(VIP4, 53, UDP, r);
    prov.tx_ports = vec![IF_OUT];
    let (k, v) = nat_rev_of(&p, &r, IF_LO, SVC, REAL_A);
    Case {
        name: "nat_v4_redirect",
        why: "NAT to a real on another interface: XDP_REDIRECT; NAT_REV remembers the client's interface (lo)",
        provision: prov,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Redirect,
        output: Output::Pkt(nat(&p, &r)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_NAT, Counter::NEW_FLOW, Counter::REDIRECT])
            .both(SVC, REAL_A, new_conn(&p)),
        state: vec![StateCheck::NatRev(k, Some(v))],
    }
    .into()
}

/// A NAT real talking to the VIP itself: its address is in NAT_FILTER but the packet is no
/// reply (NAT_REV miss), so it carries on and is balanced like any client's.
fn from_nat_real_to_vip() -> Sequence {
    let p = Pkt::tcp(REAL4_B, VIP4, 33333, 80);
    let mut c = new_flow_case(
        "nat_from_nat_real_to_vip",
        "source in NAT_FILTER but no NAT_REV entry: not a reply, balanced as a new flow",
        Nat,
        p,
        REAL4,
        8080,
    );
    c.provision.reals.push((
        REAL_B,
        Real {
            weight: 0,
            ..real(Nat, SVC, REAL4_B, 8080)
        },
    ));
    c.into()
}

/// The rewritten UDP checksum must be 0xFFFF, never 0 (RFC 768; for IPv6 a 0 makes the
/// receiver drop the datagram, RFC 8200 §8.1).
fn udp_ffff(v6: bool) -> Sequence {
    let (client, vip, raddr) = if v6 {
        (CLIENT6, VIP6, REAL6)
    } else {
        (CLIENT4, VIP4, REAL4)
    };
    let r = real(Nat, SVC, raddr, 5353);
    let base = Pkt::udp(client, vip, 40000, 53);
    let payload = udp_payload_for_ffff(|pl| nat(&base.clone().payload(pl), &r));
    let name = if v6 {
        "nat_v6_udp_checksum_ffff"
    } else {
        "nat_v4_udp_checksum_ffff"
    };
    new_flow_case(
        name,
        "the rewritten UDP checksum sums to zero: it must be sent as 0xFFFF, not 0 (no checksum)",
        Nat,
        base.payload(&payload),
        raddr,
        5353,
    )
    .into()
}

/// A NAT flow whose real lost ACTIVE is scheduled anew (expire_nodest_conn 1): to REAL_A, with a NAT_REV entry
/// for REAL_A (the reply will come from there).
fn inactive_rescheduled() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let a = real(Nat, SVC, REAL4, 8080);
    let b = Real {
        flags: lb_common::RealFlags(0),
        weight: 0,
        ..real(Nat, SVC, REAL4_B, 8080)
    };
    let mut prov = one(VIP4, 80, TCP, a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((key_of(&p), fv(REAL_B, SVC)));
    prov.settings = Some(lb_common::conn::Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    });
    let (k, v) = nat_rev_of(&p, &a, IF_LO, SVC, REAL_A);
    Case {
        name: "nat_established_inactive_real_rescheduled",
        why: "expire_nodest_conn=1: FLOWS points at a deleted (inactive) real: the flow is expired and the packet rescheduled to REAL_A, flow and NAT_REV recorded for REAL_A",
        provision: prov,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat(&p, &a)),
        counts: Counts::of(&[Counter::RX, Counter::FWD_NAT, Counter::NEW_FLOW, Counter::TX]).both(SVC, REAL_A, new_conn(&p)),
        state: vec![StateCheck::Flow(key_of(&p), Some(fv_new(REAL_A, SVC, &p, Nat))), StateCheck::NatRev(k, Some(v)), StateCheck::NatRevCount(1)],
    }
    .into()
}
