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
