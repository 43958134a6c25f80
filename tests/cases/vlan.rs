//! VLAN tags (802.1Q, and 802.1ad outside 802.1Q) are skipped when parsing and kept
//! unchanged on output, in every mode and on the NAT return path.

use super::common::*;
use lb_common::ForwardMode::{Dr, Nat, Tun};
use lb_common::{Drop, Pass};
use lb_tests::case::Sequence;
use lb_tests::packet::{Pkt, arp_request};

/// A frame with three tags (one more than the parser skips) around an IPv4 packet.
fn three_tags() -> Vec<u8> {
    let mut b = Pkt::tcp(CLIENT4, VIP4, 40000, 80).vlan(10).vlan(20).bytes();
    b.splice(18..18, [0x81, 0x00, 0x00, 30]);
    b
}

/// An ARP request inside one 802.1Q tag.
fn tagged_arp() -> Vec<u8> {
    let arp = arp_request([198, 18, 0, 10], [198, 18, 1, 1]);
    let mut b = arp[..12].to_vec();
    b.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    b.extend_from_slice(&arp[12..]);
    b
}

pub fn cases() -> Vec<Sequence> {
    let tcp4 = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let udp6 = Pkt::udp(CLIENT6, VIP6, 40000, 53);
    vec![
        new_flow_case(
            "vlan1_dr_v4_tcp",
            "one 802.1Q tag: skipped to find IPv4, kept on the DR output",
            Dr,
            tcp4.clone().vlan(100),
            REAL4,
            80,
        )
        .into(),
        new_flow_case(
            "vlan2_dr_v6_udp",
            "802.1ad + 802.1Q tags: skipped to find IPv6, both kept on the DR output",
            Dr,
            udp6.clone().vlan(100).vlan(200),
            REAL6,
            53,
        )
        .into(),
        new_flow_case(
            "vlan1_tun_v4_tcp",
            "one tag: the outer IPv4 header goes after the tag, the tag stays in front",
            Tun,
            tcp4.clone().vlan(100),
            REAL4,
            80,
        )
        .into(),
        new_flow_case(
            "vlan2_tun_v6_udp",
            "two tags: the outer IPv6 header goes after both tags",
            Tun,
            udp6.clone().vlan(100).vlan(200),
            REAL6,
            53,
        )
        .into(),
        new_flow_case(
            "vlan1_nat_v4_tcp",
            "one tag: NAT rewrite behind the tag, tag kept",
            Nat,
            tcp4.clone().vlan(100),
            REAL4,
            8080,
        )
        .into(),
        new_flow_case(
            "vlan2_nat_v6_udp",
            "two tags: NAT rewrite of IPv6 behind both tags",
            Nat,
            udp6.clone().vlan(100).vlan(200),
            REAL6,
            5353,
        )
        .into(),
        super::nat_return::forward_then_reply(
            "vlan2_nat_return_v4_tcp",
            "two tags both ways: forward, then the tagged reply is restored with its tags kept",
            tcp4.clone().vlan(100).vlan(200),
            REAL4,
            8080,
        ),
        pass_case(
            "vlan1_not_vip_passes",
            "a tagged packet to a non-VIP passes untouched, tag and all",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            Pkt::tcp(CLIENT4, OTHER4, 40000, 80).vlan(100),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "vlan1_arp_passes",
            "ARP inside a tag is not IP: pass NotIp",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            tagged_arp(),
            Pass::NotIp,
        )
        .into(),
        pass_case(
            "vlan3_tags_not_parsed",
            "a third tag is more than the parser skips: its EtherType is not IP, pass NotIp",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            three_tags(),
            Pass::NotIp,
        )
        .into(),
        drop_case(
            "vlan1_tag_cut",
            "the frame ends inside the VLAN tag: drop Truncated",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            tcp4.clone().vlan(100).truncate(16),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "vlan2_inner_tag_cut",
            "the frame ends inside the second tag: drop Truncated",
            one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80)),
            tcp4.clone().vlan(100).vlan(200).truncate(20),
            Drop::Truncated,
        )
        .into(),
    ]
}
