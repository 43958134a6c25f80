//! Malformed and edge-case frames (docs/datapath.md steps 1, 2, 5 and 10): each is dropped
//! with its named reason, or passed when it is not ours.
//!
//! Not covered here: a frame shorter than 14 bytes (drop Truncated). BPF_PROG_TEST_RUN
//! refuses XDP input shorter than ETH_HLEN with EINVAL, so no test run can feed one.

use super::common::*;
use lb_common::ForwardMode::{Dr, Nat};
use lb_common::consts::NO_REAL;
use lb_common::{Drop, Pass, Real, RealFlags};
use lb_tests::case::Sequence;
use lb_tests::packet::{Pkt, addr};
use lb_tests::provision::{Provision, Table};

fn dr4() -> Provision {
    one(VIP4, 80, TCP, real(Dr, SVC, REAL4, 80))
}

fn dr6() -> Provision {
    one(VIP6, 80, TCP, real(Dr, SVC, REAL6, 80))
}

fn be(v: u64) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

/// IPv6 extension header bytes (8 bytes, next header TCP), then a TCP-looking body (to
/// port 80). As a fragment header (44) its offset is 32: a later fragment.
fn ext6(dst: &str, next: u8) -> Pkt {
    ext6_with(
        dst,
        next,
        &[[6, 0, 1, 4, 0, 0, 0, 0]],
        &Pkt::tcp(CLIENT6, VIP6, 40000, 80),
    )
}

/// IPv6 to `dst` with first next header `first`, then the 8-byte extension headers
/// `exts` (each one's first byte naming the next), then `inner`'s IP payload.
fn ext6_with(dst: &str, first: u8, exts: &[[u8; 8]], inner: &Pkt) -> Pkt {
    let mut body = exts.concat();
    body.extend_from_slice(&inner.ip_bytes()[40..]);
    // etherparse would try to write the extension headers itself: build with "no next
    // header" (59), then put the real next header in place.
    Pkt::raw(CLIENT6, dst, 59, &body).put_l3(6, &[first])
}

/// An all-port TCP service on the VIP (port 0).
fn allport(vip: &str) -> Provision {
    let r = if is_v6(vip) { REAL6 } else { REAL4 };
    one(vip, 0, TCP, real(Dr, SVC, r, 0))
}

pub fn cases() -> Vec<Sequence> {
    let tcp4 = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let tcp6 = Pkt::tcp(CLIENT6, VIP6, 40000, 80);
    let l3 = tcp4.l3_offset();
    let (t4, t6) = (filter_twin(VIP4), filter_twin(VIP6));
    let twin4 = Pkt::tcp(CLIENT4, t4, 40000, 80);
    let twin6 = Pkt::tcp(CLIENT6, t6, 40000, 80);
    let tcp6_22 = Pkt::tcp(CLIENT6, VIP6, 40000, 22);
    let mut collision = dr4();
    collision.filter_only = vec![addr(OTHER4)];
    vec![
        pass_case(
            "bad_v4_header_cut",
            "19 bytes of IPv4 header, to a VIP: the destination (bytes 16–19) is cut, so the \
             packet cannot be shown to be ours and passes NotVip (it was dropped Truncated \
             before only malformed packets to a VIP were dropped)",
            dr4(),
            tcp4.clone().truncate(l3 + 19),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "bad_v4_version",
            "EtherType IPv4 but version 6 in the header: drop BadHeader",
            dr4(),
            tcp4.clone().put_l3(0, &[0x65]),
            Drop::BadHeader,
        )
        .into(),
        drop_case(
            "bad_v4_ihl_below_5",
            "IHL 4 (16 bytes) is impossible: drop BadHeader",
            dr4(),
            tcp4.clone().put_l3(0, &[0x44]),
            Drop::BadHeader,
        )
        .into(),
        drop_case(
            "bad_v4_ihl_beyond_frame",
            "IHL 15 (60 bytes) on a 48-byte IP packet: drop Truncated",
            dr4(),
            tcp4.clone().put_l3(0, &[0x4f]),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "bad_v4_tot_len_beyond_frame",
            "tot_len 100 bytes longer than the frame: drop Truncated",
            dr4(),
            tcp4.clone().put_l3(2, &be(tcp4.ip_len() + 100)),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "bad_v4_tot_len_below_ihl",
            "tot_len 16 < IHL×4 = 20: drop BadHeader",
            dr4(),
            tcp4.clone().put_l3(2, &be(16)),
            Drop::BadHeader,
        )
        .into(),
        pass_case(
            "bad_v6_header_cut",
            "39 bytes of IPv6 header, to a VIP: the destination (bytes 24–39) is cut, so the \
             packet cannot be shown to be ours and passes NotVip (it was dropped Truncated \
             before only malformed packets to a VIP were dropped)",
            dr6(),
            tcp6.clone().truncate(l3 + 39),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "bad_v6_version",
            "EtherType IPv6 but version 4 in the header: drop BadHeader",
            dr6(),
            tcp6.clone().put_l3(0, &[0x40]),
            Drop::BadHeader,
        )
        .into(),
        drop_case(
            "bad_v6_payload_len_beyond_frame",
            "40 + payload_len beyond the frame: drop Truncated",
            dr6(),
            tcp6.clone().put_l3(4, &be(tcp6.ip_len() - 40 + 100)),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "bad_tcp4_cut_to_vip",
            "TCP header of 10 bytes to a VIP: drop Truncated",
            dr4(),
            Pkt::raw(CLIENT4, VIP4, TCP, &[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0]),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "bad_udp4_cut_to_vip",
            "UDP header of 4 bytes to a VIP: drop Truncated",
            one(VIP4, 53, UDP, real(Dr, SVC, REAL4, 53)),
            Pkt::raw(CLIENT4, VIP4, UDP, &[0x9c, 0x40, 0, 53]),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "bad_tcp6_cut_to_vip",
            "IPv6 TCP header of 12 bytes to a VIP: drop Truncated",
            dr6(),
            Pkt::raw(
                CLIENT6,
                VIP6,
                TCP,
                &[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0],
            ),
            Drop::Truncated,
        )
        .into(),
        drop_case(
            "bad_udp6_cut_to_vip",
            "IPv6 UDP header of 6 bytes to a VIP: drop Truncated",
            dr6(),
            Pkt::raw(CLIENT6, VIP6, UDP, &[0x9c, 0x40, 0, 53, 0, 8]),
            Drop::Truncated,
        )
        .into(),
        drop_case("bad_tcp4_cut_by_tot_len", "tot_len ends 10 bytes into the TCP header (the rest lies in what would be padding): drop Truncated", dr4(), tcp4.clone().put_l3(2, &be(30)), Drop::Truncated).into(),
        pass_case(
            "bad_tcp4_cut_to_other",
            "a cut TCP header to a non-VIP is not ours to judge: pass NotVip",
            dr4(),
            Pkt::raw(CLIENT4, OTHER4, TCP, &[0x9c, 0x40, 0, 80]),
            Pass::NotVip,
        )
        .into(),
        // The same malformed kinds to someone else: an address whose VIP_FILTER slot is the
        // VIP's (the filter says "maybe", VIPS says no), or one the filter already rules out.
        pass_case(
            "bad_v4_version_to_twin",
            "version 6 in an IPv4 header to a non-VIP sharing the VIP's filter slot: not ours, pass NotVip",
            dr4(),
            twin4.clone().put_l3(0, &[0x65]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v4_version_to_other",
            "version 6 in an IPv4 header to a non-VIP outside the filter: pass NotVip",
            dr4(),
            Pkt::tcp(CLIENT4, OTHER4, 40000, 80).put_l3(0, &[0x65]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v4_ihl_below_5_to_twin",
            "IHL 4 to a non-VIP sharing the VIP's filter slot: not ours, pass NotVip",
            dr4(),
            twin4.clone().put_l3(0, &[0x44]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v4_ihl_beyond_frame_to_twin",
            "IHL 15 beyond the frame to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr4(),
            twin4.clone().put_l3(0, &[0x4f]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v4_tot_len_beyond_frame_to_twin",
            "tot_len beyond the frame to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr4(),
            twin4.clone().put_l3(2, &be(twin4.ip_len() + 100)),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v4_tot_len_below_ihl_to_twin",
            "tot_len 16 < 20 to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr4(),
            twin4.clone().put_l3(2, &be(16)),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v6_version_to_twin",
            "version 4 in an IPv6 header to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr6(),
            twin6.clone().put_l3(0, &[0x40]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v6_version_to_other",
            "version 4 in an IPv6 header to a non-VIP outside the filter: pass NotVip",
            dr6(),
            Pkt::tcp(CLIENT6, OTHER6, 40000, 80).put_l3(0, &[0x40]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_v6_payload_len_beyond_frame_to_twin",
            "40 + payload_len beyond the frame to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr6(),
            twin6.clone().put_l3(4, &be(twin6.ip_len() - 40 + 100)),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_tcp4_cut_to_twin",
            "a 10-byte TCP header to a non-VIP sharing the VIP's filter slot: VIPS says no, pass NotVip",
            dr4(),
            Pkt::raw(CLIENT4, t4, TCP, &[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_udp4_cut_to_twin",
            "a 4-byte UDP header to a non-VIP sharing the VIP's filter slot: pass NotVip",
            one(VIP4, 53, UDP, real(Dr, SVC, REAL4, 53)),
            Pkt::raw(CLIENT4, t4, UDP, &[0x9c, 0x40, 0, 53]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_tcp6_cut_to_twin",
            "a 12-byte IPv6 TCP header to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr6(),
            Pkt::raw(CLIENT6, t6, TCP, &[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_udp6_cut_to_twin",
            "a 6-byte IPv6 UDP header to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr6(),
            Pkt::raw(CLIENT6, t6, UDP, &[0x9c, 0x40, 0, 53, 0, 8]),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "bad_tcp4_cut_by_tot_len_to_twin",
            "tot_len ends 10 bytes into the TCP header, to a non-VIP sharing the VIP's filter slot: pass NotVip",
            dr4(),
            twin4.clone().put_l3(2, &be(30)),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "frag_first_to_vip",
            "first fragment (MF) to a VIP: we balance on ports, fragments lack them: drop Fragment",
            dr4(),
            tcp4.clone().fragment(true, 0),
            Drop::Fragment,
        )
        .into(),
        pass_case(
            "frag_later_to_vip",
            "a later fragment (offset 185, no ports) to a VIP address with only a port-80 \
             service: it may be another service's on the director, pass NotVip (was drop \
             Fragment before fragments for no VIP:port passed)",
            dr4(),
            Pkt::raw(CLIENT4, VIP4, TCP, &[0xab; 64]).fragment(false, 185),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "frag_later_to_allport_vip",
            "a later fragment to a VIP address with an all-port TCP service, which owns every port: drop Fragment",
            allport(VIP4),
            Pkt::raw(CLIENT4, VIP4, TCP, &[0xab; 64]).fragment(false, 185),
            Drop::Fragment,
        )
        .into(),
        pass_case(
            "frag_first_to_vip_other_port",
            "a first fragment to VIP:22, no service there (only port 80): pass NotVip",
            dr4(),
            Pkt::tcp(CLIENT4, VIP4, 40000, 22).fragment(true, 0),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "frag_first_udp_to_tcp_vip",
            "a first UDP fragment to VIP:80, whose service is TCP: pass NotVip",
            dr4(),
            Pkt::udp(CLIENT4, VIP4, 40000, 80).fragment(true, 0),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "frag_first_to_allport_vip",
            "a first fragment to VIP:22 under an all-port TCP service: drop Fragment",
            allport(VIP4),
            Pkt::tcp(CLIENT4, VIP4, 40000, 22).fragment(true, 0),
            Drop::Fragment,
        )
        .into(),
        pass_case(
            "frag_first_other_proto_to_vip",
            "a first fragment of protocol 47 (GRE) to a VIP: no service's, pass NotBalanced as unfragmented",
            dr4(),
            Pkt::raw(CLIENT4, VIP4, 47, &[0xab; 64]).fragment(true, 0),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "frag_to_other",
            "a fragment to a non-VIP: pass NotVip",
            dr4(),
            Pkt::tcp(CLIENT4, OTHER4, 40000, 80).fragment(true, 0),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "frag_to_filter_collision",
            "a fragment to a filter false positive: VIPS says no, pass NotVip",
            collision,
            Pkt::raw(CLIENT4, OTHER4, TCP, &[0xab; 64]).fragment(true, 10),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "ext6_hop_by_hop_to_vip",
            "IPv6 hop-by-hop header (0) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 0),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_routing_to_vip",
            "IPv6 routing header (43) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 43),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        pass_case(
            "ext6_fragment_to_vip",
            "IPv6 fragment header (44) with offset 32, a later fragment, to a VIP address \
             with only a port-80 service: may be another service's, pass NotVip (was drop \
             Ipv6ExtHeader before extension headers for no VIP:port passed)",
            dr6(),
            ext6(VIP6, 44),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "ext6_fragment_later_to_allport_vip",
            "an IPv6 later fragment to a VIP address with an all-port TCP service: drop Ipv6ExtHeader",
            allport(VIP6),
            ext6(VIP6, 44),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_fragment_first_to_vip",
            "an IPv6 first fragment (offset 0, M) of TCP to VIP:80: a service's, drop Ipv6ExtHeader",
            dr6(),
            ext6_with(VIP6, 44, &[[6, 0, 0, 1, 0, 0, 0, 7]], &tcp6),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        pass_case(
            "ext6_fragment_first_other_port",
            "an IPv6 first fragment of TCP to VIP:22, no service there: pass NotVip",
            dr6(),
            ext6_with(VIP6, 44, &[[6, 0, 0, 1, 0, 0, 0, 7]], &tcp6_22),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "ext6_hop_by_hop_other_port",
            "hop-by-hop then TCP to VIP:22, no service there: pass NotVip",
            dr6(),
            ext6_with(VIP6, 0, &[[6, 0, 1, 4, 0, 0, 0, 0]], &tcp6_22),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "ext6_chain_other_port",
            "destination options, then routing (16 bytes), then TCP to VIP:22: pass NotVip",
            dr6(),
            ext6_with(VIP6, 60, &[[43, 0, 1, 4, 0, 0, 0, 0], [6, 1, 0, 0, 0, 0, 0, 0], [0; 8]], &tcp6_22),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "ext6_chain_to_vip",
            "destination options, then routing (16 bytes), then TCP to VIP:80: a service's, drop Ipv6ExtHeader",
            dr6(),
            ext6_with(VIP6, 60, &[[43, 0, 1, 4, 0, 0, 0, 0], [6, 1, 0, 0, 0, 0, 0, 0], [0; 8]], &tcp6),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_chain_too_long_to_vip",
            "five hop-by-hop headers before TCP: more than the walk's 4, the port unknown: to a VIP, drop Ipv6ExtHeader",
            dr6(),
            ext6_with(VIP6, 0, &[[0, 0, 0, 0, 0, 0, 0, 0]; 4].iter().copied().chain([[6, 0, 0, 0, 0, 0, 0, 0]]).collect::<Vec<_>>(), &tcp6_22),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        pass_case(
            "ext6_hop_by_hop_udp_to_tcp_vip",
            "hop-by-hop then UDP to VIP:80, whose service is TCP: pass NotVip",
            dr6(),
            ext6_with(VIP6, 0, &[[17, 0, 0, 0, 0, 0, 0, 0]], &Pkt::udp(CLIENT6, VIP6, 40000, 80)),
            Pass::NotVip,
        )
        .into(),
        pass_case(
            "ext6_hop_by_hop_other_proto_to_vip",
            "hop-by-hop then protocol 47 (GRE) to a VIP: no service's, pass NotBalanced",
            dr6(),
            ext6_with(VIP6, 0, &[[47, 0, 0, 0, 0, 0, 0, 0]], &tcp6),
            Pass::NotBalanced,
        )
        .into(),
        drop_case(
            "ext6_dest_opts_to_vip",
            "IPv6 destination options (60) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 60),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_esp_to_vip",
            "ESP (50) to a VIP is in the extension list: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 50),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_ah_to_vip",
            "AH (51) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 51),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_mobility_to_vip",
            "IPv6 mobility header (135) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 135),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_hip_to_vip",
            "HIP (139) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 139),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        drop_case(
            "ext6_shim6_to_vip",
            "shim6 (140) to a VIP: drop Ipv6ExtHeader",
            dr6(),
            ext6(VIP6, 140),
            Drop::Ipv6ExtHeader,
        )
        .into(),
        // Neighbours of the extension numbers are ordinary protocols.
        pass_case(
            "ext6_neighbour_136_to_vip",
            "UDP-Lite (136, between mobility and HIP) to an IPv6 VIP: pass NotBalanced",
            dr6(),
            ext6(VIP6, 136),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "ext6_neighbour_61_to_vip",
            "protocol 61 (just past destination options) to an IPv6 VIP: pass NotBalanced",
            dr6(),
            ext6(VIP6, 61),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "ext6_icmpv4_on_v6_to_vip",
            "ICMP for IPv4 (1) inside IPv6 to a VIP: no ICMP error of ours, pass NotBalanced",
            dr6(),
            ext6(VIP6, 1),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "v4_proto_0_to_vip",
            "protocol 0 on IPv4 (hop-by-hop only means something in IPv6): pass NotBalanced",
            dr4(),
            Pkt::raw(CLIENT4, VIP4, 0, &[0; 12]),
            Pass::NotBalanced,
        )
        .into(),
        pass_case(
            "ext6_to_other",
            "an IPv6 extension header to a non-VIP: pass NotVip",
            dr6(),
            ext6(OTHER6, 0),
            Pass::NotVip,
        )
        .into(),
        drop_case(
            "noreal_empty_table",
            "a service with table_len 0 (no real yet): drop NoReal",
            Provision {
                services: vec![lb_tests::provision::Svc {
                    table: Table::Empty,
                    ..svc(SVC, VIP4, 80, TCP)
                }],
                ..Provision::default()
            },
            tcp4.clone(),
            Drop::NoReal,
        )
        .into(),
        drop_case(
            "noreal_v6_all_quiescent",
            "every real at weight 0: the table is all NO_REAL, drop NoReal",
            one(
                VIP6,
                80,
                TCP,
                Real {
                    weight: 0,
                    ..real(Nat, SVC, REAL6, 80)
                },
            ),
            tcp6.clone(),
            Drop::NoReal,
        )
        .into(),
        drop_case(
            "noreal_slot_no_real",
            "the hashed slot holds NO_REAL: drop NoReal",
            Provision {
                services: vec![lb_tests::provision::Svc {
                    table: Table::Slots(vec![NO_REAL; 7]),
                    ..svc(SVC, VIP4, 80, TCP)
                }],
                ..Provision::default()
            },
            tcp4.clone(),
            Drop::NoReal,
        )
        .into(),
        drop_case(
            "noreal_inactive_real",
            "the table names a real without ACTIVE: drop NoReal",
            one(
                VIP4,
                80,
                TCP,
                Real {
                    flags: RealFlags(0),
                    ..real(Dr, SVC, REAL4, 80)
                },
            ),
            tcp4.clone(),
            Drop::NoReal,
        )
        .into(),
    ]
}
