//! IP tunnelling (`-i`): IPIP for IPv4, IP6IP6 for IPv6, the outer header built from the
//! spec in docs/datapath.md (see `common::tun`), the inner packet untouched.

use super::common::*;
use lb_common::{Counter, ForwardMode::Tun, Real};
use lb_tests::bpf::{IF_LO, IF_OUT, Verdict};
use lb_tests::case::{Case, Counts, Output, Sequence};
use lb_tests::packet::Pkt;

pub fn cases() -> Vec<Sequence> {
    let tcp4 = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let udp4 = Pkt::udp(CLIENT4, VIP4, 40000, 53);
    let tcp6 = Pkt::tcp(CLIENT6, VIP6, 40000, 80);
    let udp6 = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    vec![
        new_flow_case("tun_v4_tcp_new", "new TCP flow to a TUN real: IPIP outer header (DF copied, TTL 64, id 0), inner untouched", Tun, tcp4.clone(), REAL4, 80).into(),
        new_flow_case("tun_v4_udp_new", "new UDP flow to a TUN real: IPIP", Tun, udp4.clone(), REAL4, 53).into(),
        new_flow_case("tun_v6_tcp_new", "new IPv6 TCP flow to a TUN real: IP6IP6, hop limit 64, next header 41", Tun, tcp6.clone(), REAL6, 80).into(),
        new_flow_case("tun_v6_udp_new", "new IPv6 UDP flow to a TUN real: IP6IP6", Tun, udp6.clone(), REAL6, 53).into(),
        established_case("tun_v4_tcp_established", "a FLOWS hit is tunnelled to its real (REAL_B), no NEW_FLOW", Tun, tcp4.clone(), REAL4, REAL4_B, 80).into(),
        established_case("tun_v4_udp_established", "a UDP FLOWS hit is tunnelled to its real", Tun, udp4.clone(), REAL4, REAL4_B, 53).into(),
        established_case("tun_v6_tcp_established", "an IPv6 TCP FLOWS hit is tunnelled to its real", Tun, tcp6.clone(), REAL6, REAL6_B, 80).into(),
        established_case("tun_v6_udp_established", "an IPv6 UDP FLOWS hit is tunnelled to its real", Tun, udp6.clone(), REAL6, REAL6_B, 53).into(),
        new_flow_case("tun_v4_no_df_tos_copied", "inner without DF gives an outer without DF; the inner TOS is copied", Tun, udp4.clone().df(false).tos(0xb8), REAL4, 53).into(),
        new_flow_case("tun_v6_traffic_class_copied", "the inner traffic class is copied; the outer flow label is 0 whatever the inner's", Tun, tcp6.clone().tos(0x2e).flow_label(0x12345), REAL6, 80).into(),
        new_flow_case("tun_v4_inner_options", "inner IPv4 options travel untouched inside the tunnel", Tun, tcp4.clone().options(&[1, 1, 1, 0]), REAL4, 80).into(),
        new_flow_case("tun_v4_ttl2_inner_kept", "TUN leaves the inner TTL as it was (2); the outer TTL is 64", Tun, tcp4.clone().ttl(2), REAL4, 80).into(),
        redirect_case(),
        padding_case(),
        new_flow_case("tun_v4_full_mtu", "a 1500-byte packet grows to 1520 bytes of IP: the tunnel does not fragment or refuse it", Tun, tcp4.clone().payload(&[0x3c; 1500 - 40]), REAL4, 80).into(),
        new_flow_case("tun_v6_full_mtu", "a 1500-byte IPv6 packet grows by 40 bytes", Tun, udp6.clone().payload(&[0x3c; 1500 - 48]), REAL6, 53).into(),
    ]
}

fn redirect_case() -> Sequence {
    let p = Pkt::tcp(CLIENT6, VIP6, 40000, 80);
    let r = Real {
        ifindex: IF_OUT,
        ..real(Tun, SVC, REAL6, 80)
    };
    let mut prov = one(VIP6, 80, TCP, r);
    prov.tx_ports = vec![IF_OUT];
    Case {
        name: "tun_v6_redirect",
        why: "IP6IP6 to a real on another interface: XDP_REDIRECT with the encapsulated frame",
        provision: prov,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Redirect,
        output: Output::Pkt(tun(&p, &r)),
        counts: Counts::of(&[
            Counter::RX,
            Counter::FWD_TUN,
            Counter::NEW_FLOW,
            Counter::REDIRECT,
        ])
        .both(SVC, REAL_A, new_conn(&p)),
        state: vec![],
    }
    .into()
}

/// A 54-byte TCP ACK padded to the 60-byte Ethernet minimum: the outer length counts the
/// inner IP length only, and the padding stays at the end of the frame.
fn padding_case() -> Sequence {
    let bare = Pkt::tcp(CLIENT4, VIP4, 40000, 80).payload(b"");
    let p = bare.clone().pad(6);
    let mut c = new_flow_case(
        "tun_v4_ethernet_padding",
        "Ethernet padding is not tunnelled as data: outer tot_len = inner tot_len + 20, padding kept after it",
        Tun,
        p,
        REAL4,
        80,
    );
    c.output = Output::Pkt(tun(&bare, &real(Tun, SVC, REAL4, 80)).pad(6));
    c.into()
}
