//! Traffic that is not ours passes to the stack untouched, with its reason counted: non-IP,
//! not to a VIP, a VIP's other port or protocol, protocols we do not balance, and address
//! filter false positives.

use super::common::*;
use lb_common::ForwardMode::Dr;
use lb_common::Pass;
use lb_tests::case::Sequence;
use lb_tests::packet::{MAC_CLIENT, Pkt, addr, arp_request};
use lb_tests::provision::Provision;

fn dr4() -> Provision {
    one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80))
}

fn dr6() -> Provision {
    one(VIP6, 53, UDP, real(Dr, SVC, REAL6, 53))
}

/// OTHER4/OTHER6 get a VIP_FILTER bit without being VIPs: the filter says "maybe".
fn collision() -> Provision {
    let mut p = dr4();
    p.filter_only = vec![addr(OTHER4), addr(OTHER6)];
    p
}

fn lldp() -> Vec<u8> {
    let mut b = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    b.extend_from_slice(&MAC_CLIENT);
    b.extend_from_slice(&[0x88, 0xcc, 0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1, 0, 0]);
    b.resize(60, 0);
    b
}

pub fn cases() -> Vec<Sequence> {
    vec![
        pass_case(
            "pass_arp",
            "ARP is not IP: pass NotIp, untouched",
            dr4(),
            arp_request([198, 18, 0, 10], [198, 18, 1, 1]),
            Pass::NotIp,
        )
        .into(),
        pass_case(
            "pass_lldp",
            "LLDP (0x88cc) is not IP: pass NotIp",
            dr4(),
            lldp(),
            Pass::NotIp,
        )
        .into(),
        pass_case(
            "pass_v4_not_vip",
            "TCP to an address that is no VIP: the filter says no, pass NotVip",
            dr4(),
            Pkt::tcp(CLIENT4, OTHER4, 40000, 80),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_v6_not_vip",
            "IPv6 UDP to a non-VIP: pass NotVip",
            dr6(),
            Pkt::udp(CLIENT6, OTHER6, 40000, 53),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_no_services",
            "with no service at all everything IP passes NotVip",
            Provision::default(),
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_vip_other_port",
            "TCP to the VIP on a port without a service (and no all-port service): pass NotVip",
            dr4(),
            Pkt::tcp(CLIENT4, VIP4, 40000, 443),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_vip_other_proto",
            "UDP to a VIP that only has a TCP service on that port: pass NotVip",
            dr4(),
            Pkt::udp(CLIENT4, VIP4, 40000, 80),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_v6_vip_other_port",
            "IPv6 UDP to the VIP on another port: pass NotVip",
            dr6(),
            Pkt::udp(CLIENT6, VIP6, 40000, 54),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_vip_gre",
            "GRE (47) to a VIP is not balanced: pass NotBalanced",
            dr4(),
            Pkt::raw(CLIENT4, VIP4, 47, &[0, 0, 0x08, 0, 1, 2, 3, 4]),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "pass_v6_vip_sctp",
            "SCTP (132) to an IPv6 VIP: pass NotBalanced",
            dr6(),
            Pkt::raw(CLIENT6, VIP6, 132, &[0; 12]),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "pass_gre_not_vip",
            "GRE to a non-VIP: pass NotVip",
            dr4(),
            Pkt::raw(CLIENT4, OTHER4, 47, &[0, 0, 0x08, 0, 1, 2, 3, 4]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_filter_collision_tcp",
            "TCP to a filter false positive: no service, pass NotVip",
            collision(),
            Pkt::tcp(CLIENT4, OTHER4, 40000, 80),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_filter_collision_gre",
            "GRE to a filter false positive: VIPS says not a VIP, pass NotVip",
            collision(),
            Pkt::raw(CLIENT4, OTHER4, 47, &[0; 8]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_filter_collision_v6_ping",
            "ICMPv6 echo to a filter false positive: not in VIPS, pass NotVip",
            collision(),
            Pkt::icmp6(
                CLIENT6,
                OTHER6,
                lb_tests::packet::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader {
                    id: 1,
                    seq: 1,
                }),
            ),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "pass_from_vip_port",
            "a packet from the VIP (the director's own reply) is not to a VIP: pass NotVip",
            dr4(),
            Pkt::tcp(VIP4, CLIENT4, 80, 40000),
            Pass::NotVip,
        )
        .into(),
    ]
}
