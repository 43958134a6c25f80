//! Shared fixtures of the case tables: addresses, MACs, reals and services, the expected-
//! output rules of each forward mode written out from docs/datapath.md, and short counter
//! helpers. A table file uses these and stays a list of cases.

use etherparse::{IpNumber, Ipv4Dscp, Ipv4Ecn, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use lb_common::addr::convert::to_raw;
use lb_common::consts::ENCAP_TTL;
use lb_common::{
    Be16, Counter, Drop, FlowKey, FlowValue, ForwardMode, NatReverse, Pass, Real, RealFlags,
    Traffic,
};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Case, Counts, Input, Output, StateCheck, Step};
use lb_tests::packet::{Ip, L4, Pkt, addr};
use lb_tests::provision::{Provision, Svc, Table, flow_key};

/// Clients.
pub const CLIENT4: &str = "198.18.0.10";
pub const CLIENT4_B: &str = "198.18.0.11";
pub const CLIENT6: &str = "2001:db8::10";
/// VIPs.
pub const VIP4: &str = "198.18.1.1";
pub const VIP6: &str = "2001:db8:1::1";
/// Real servers.
pub const REAL4: &str = "198.19.0.2";
pub const REAL4_B: &str = "198.19.0.3";
pub const REAL4_C: &str = "198.19.0.4";
pub const REAL6: &str = "2001:db8:2::2";
pub const REAL6_B: &str = "2001:db8:2::3";
/// The director's own address toward the reals (outer source of tunnels).
pub const LOCAL4: &str = "198.19.0.1";
pub const LOCAL6: &str = "2001:db8:2::1";
/// A router that sends ICMP errors.
pub const ROUTER4: &str = "198.18.0.254";
pub const ROUTER6: &str = "2001:db8::fe";
/// Addresses that are not VIPs.
pub const OTHER4: &str = "198.18.2.2";
pub const OTHER6: &str = "2001:db8:3::3";

/// The real's MAC (next hop toward it).
pub const MAC_REAL: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// A second real's MAC.
pub const MAC_REAL_B: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x03];
/// The director's MAC on its real-facing interface.
pub const MAC_OUT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];

/// Service ids.
pub const SVC: u32 = 1;
pub const SVC_B: u32 = 2;
/// Real ids.
pub const REAL_A: u32 = 1;
pub const REAL_B: u32 = 2;
pub const REAL_C: u32 = 3;

/// IP protocols.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Maglev table size of the cases' services (a prime).
pub const TABLE: u32 = 13;

/// True for an IPv6 literal.
pub fn is_v6(a: &str) -> bool {
    addr(a).is_ipv6()
}

/// An active real of `svc` with weight 1, reached through the ingress interface (XDP_TX),
/// next hop MAC_REAL, source MAC_OUT, tunnel source LOCAL4/LOCAL6.
pub fn real(mode: ForwardMode, svc: u32, a: &str, port: u16) -> Real {
    let (raw, family) = to_raw(addr(a));
    let local = if is_v6(a) { LOCAL6 } else { LOCAL4 };
    Real {
        addr: raw,
        local_addr: to_raw(addr(local)).0,
        port: Be16::from_host(port),
        mode: mode as u8,
        family,
        flags: RealFlags(RealFlags::ACTIVE),
        svc_id: svc,
        weight: 1,
        ifindex: IF_LO,
        dst_mac: MAC_REAL,
        src_mac: MAC_OUT,
        ..Default::default()
    }
}

/// A service with a Maglev table of [`TABLE`] slots over its reals.
pub fn svc(id: u32, vip: &str, port: u16, proto: u8) -> Svc {
    Svc {
        id,
        vip: addr(vip),
        port,
        proto,
        flags: 0,
        table: Table::Maglev(TABLE),
    }
}

/// One service (SVC on vip:port/proto) with one real (REAL_A).
pub fn one(vip: &str, port: u16, proto: u8, r: Real) -> Provision {
    Provision {
        services: vec![svc(SVC, vip, port, proto)],
        reals: vec![(REAL_A, r)],
        ..Provision::default()
    }
}

/// The flow key of a client packet (client → VIP).
pub fn key_of(p: &Pkt) -> FlowKey {
    let (s, d) = p.ports();
    flow_key(p.ip.src(), p.ip.dst(), s, d, p.proto())
}

/// TCP flag byte of a packet (FIN SYN RST PSH ACK URG ECE CWR); 0 when not TCP.
pub fn tcp_flags_of(p: &Pkt) -> u8 {
    match &p.l4 {
        L4::Tcp(t) => {
            t.fin as u8
                | (t.syn as u8) << 1
                | (t.rst as u8) << 2
                | (t.psh as u8) << 3
                | (t.ack as u8) << 4
                | (t.urg as u8) << 5
                | (t.ece as u8) << 6
                | (t.cwr as u8) << 7
        }
        _ => 0,
    }
}

/// FLOWS value of a flow just created by its first packet `p` (docs/datapath.md
/// "Connections"): bound as IPVS binds (inactive; NO_OUTPUT unless NAT), then `p`'s TCP
/// transition from NONE (SYN → SYN_RECV, a mid-connection ACK → CLOSE); UDP stays in its
/// one state; the forwarding method recorded. CLOCK is 0 in the cases, so `last_seen_s` is 0.
pub fn fv_new(real_id: u32, svc_id: u32, p: &Pkt, mode: ForwardMode) -> FlowValue {
    use lb_common::conn::{TcpState, UDP_STATE, bind_flags, tcp_transition};
    let flags = bind_flags(mode == ForwardMode::Nat);
    let (state, flags) = if p.proto() == TCP {
        let st = tcp_transition(TcpState::None as u8, flags, false, tcp_flags_of(p));
        (st.state, st.flags)
    } else {
        (UDP_STATE, flags)
    };
    FlowValue {
        real_id,
        svc_id,
        state,
        flags,
        fwd: mode as u8,
        ..Default::default()
    }
}

/// A client packet of SVC forwarded to `r` (real id `id`) in its mode with XDP_TX: a new
/// connection's first packet (NEW_FLOW, `conns`) or one more of an existing one; `state`
/// checked after it.
pub fn fwd_tx(
    what: &'static str,
    p: &Pkt,
    r: &Real,
    id: u32,
    new: bool,
    state: Vec<StateCheck>,
) -> Action {
    let (fwd, out) = match ForwardMode::from_u8(r.mode) {
        Some(ForwardMode::Nat) => (Counter::FWD_NAT, nat(p, r)),
        Some(ForwardMode::Tun) => (Counter::FWD_TUN, tun(p, r)),
        _ => (Counter::FWD_DR, dr(p, r)),
    };
    let mut c = vec![Counter::RX, fwd, Counter::TX];
    if new {
        c.push(Counter::NEW_FLOW);
    }
    let t = if new { new_conn(p) } else { inbound(p) };
    Action::Packet(Step {
        what,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(out),
        counts: Counts::of(&c).both(SVC, id, t),
        state,
    })
}

/// `p` with exactly these TCP flags (FIN 1, SYN 2, RST 4, ACK 16).
pub fn flags(p: Pkt, f: u8) -> Pkt {
    let mut p = p;
    if let L4::Tcp(t) = &mut p.l4 {
        t.fin = f & 1 != 0;
        t.syn = f & 2 != 0;
        t.rst = f & 4 != 0;
        t.psh = false;
        t.ack = f & 16 != 0;
        if !t.ack {
            t.acknowledgment_number = 0;
        }
    }
    p
}

pub const FIN: u8 = 1;
pub const SYN: u8 = 2;
pub const RST: u8 = 4;
pub const ACK: u8 = 16;

/// FLOWS value (state NONE, no flags: what a case provisions when only the real matters).
pub fn fv(real_id: u32, svc_id: u32) -> FlowValue {
    FlowValue {
        real_id,
        svc_id,
        ..Default::default()
    }
}

// ---- Expected outputs, one function per forward mode (docs/datapath.md "Forward modes").

/// DR: Ethernet destination := real.dst_mac, source := real.src_mac; nothing else changes.
pub fn dr(p: &Pkt, r: &Real) -> Pkt {
    p.clone().macs(r.src_mac, r.dst_mac)
}

/// TUN: the L2 header (tags kept) with DR's MACs, then a new outer header, then the
/// untouched inner packet. Outer IPv4: TOS = inner TOS, id 0, DF copied from the inner
/// packet, TTL ENCAP_TTL, protocol 4, source real.local_addr, destination real.addr.
/// Outer IPv6: traffic class = inner's, flow label 0, next header 41, hop limit ENCAP_TTL.
pub fn tun(p: &Pkt, r: &Real) -> Pkt {
    let fam = r.family;
    let local = lb_common::addr::convert::from_raw(&r.local_addr, fam);
    let real = lb_common::addr::convert::from_raw(&r.addr, fam);
    let outer = match (&p.ip, local, real) {
        (Ip::V4(inner), std::net::IpAddr::V4(l), std::net::IpAddr::V4(d)) => {
            let mut h =
                Ipv4Header::new(0, ENCAP_TTL, IpNumber(4), l.octets(), d.octets()).expect("header");
            h.identification = 0;
            h.dont_fragment = inner.dont_fragment;
            h.dscp = Ipv4Dscp::try_new(inner.dscp.value()).unwrap();
            h.ecn = Ipv4Ecn::try_new(inner.ecn.value()).unwrap();
            Ip::V4(h)
        }
        (Ip::V6(inner), std::net::IpAddr::V6(l), std::net::IpAddr::V6(d)) => Ip::V6(Ipv6Header {
            traffic_class: inner.traffic_class,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: 0,
            next_header: IpNumber(41),
            hop_limit: ENCAP_TTL,
            source: l.octets(),
            destination: d.octets(),
        }),
        _ => panic!("real family differs from the packet's"),
    };
    Pkt {
        src_mac: r.src_mac,
        dst_mac: r.dst_mac,
        vlans: p.vlans.clone(),
        ip: outer,
        l4: L4::Encap(Box::new(p.clone())),
        payload: Vec::new(),
        edits: Vec::new(),
    }
}

/// NAT: destination := real.addr, destination port := real.port (0 keeps the client's),
/// TTL − 1, MACs as DR; checksums computed afresh by the builder.
pub fn nat(p: &Pkt, r: &Real) -> Pkt {
    let to = lb_common::addr::convert::from_raw(&r.addr, r.family);
    let port = if r.port.to_host() == 0 {
        p.ports().1
    } else {
        r.port.to_host()
    };
    let ttl = p.ip.ttl() - 1;
    let q = dr(p, r).dst(to).ttl(ttl);
    match p.l4 {
        L4::Tcp(_) | L4::Udp { .. } => q.dport(port),
        _ => q,
    }
}

/// The NAT_REV entry a new NAT flow records (docs/datapath.md NAT): key real → client,
/// value VIP, vport, ingress ifindex, the frame's MACs, ids.
pub fn nat_rev_of(
    p: &Pkt,
    r: &Real,
    ingress: u32,
    svc_id: u32,
    real_id: u32,
) -> (FlowKey, NatReverse) {
    let (cport, vport) = p.ports();
    let rport = if r.port.to_host() == 0 {
        vport
    } else {
        r.port.to_host()
    };
    let rip = lb_common::addr::convert::from_raw(&r.addr, r.family);
    let key = flow_key(rip, p.ip.src(), rport, cport, p.proto());
    let rev = NatReverse {
        vip: to_raw(p.ip.dst()).0,
        vport: Be16::from_host(vport),
        _pad: [0; 2],
        ifindex: ingress,
        client_mac: p.src_mac,
        local_mac: p.dst_mac,
        svc_id,
        real_id,
        // Only the sweep stamps.
        stamp_s: 0,
    };
    (key, rev)
}

/// The real's reply to a client packet as it leaves the real (before the director):
/// real:rport → client:cport, MACs real → director.
pub fn reply_of(p: &Pkt, r: &Real) -> Pkt {
    let (cport, vport) = p.ports();
    let rport = if r.port.to_host() == 0 {
        vport
    } else {
        r.port.to_host()
    };
    let rip = lb_common::addr::convert::from_raw(&r.addr, r.family);
    let s = rip.to_string();
    let c = p.ip.src().to_string();
    let base = match p.l4 {
        L4::Tcp(_) => Pkt::tcp(&s, &c, rport, cport).payload(b"reply from real"),
        L4::Udp { .. } => Pkt::udp(&s, &c, rport, cport).payload(b"reply from real"),
        _ => panic!("NAT replies are TCP or UDP"),
    };
    let mut base = base.macs(r.dst_mac, r.src_mac);
    base.vlans = p.vlans.clone();
    base
}

/// NAT return: source := vip, source port := vport, TTL − 1, Ethernet destination :=
/// client_mac, source := local_mac.
pub fn nat_return(reply: &Pkt, rev: &NatReverse) -> Pkt {
    let fam = if reply.ip.is_v6() { 6 } else { 4 };
    let vip = lb_common::addr::convert::from_raw(&rev.vip, fam);
    let ttl = reply.ip.ttl() - 1;
    reply
        .clone()
        .macs(rev.local_mac, rev.client_mac)
        .src(vip)
        .sport(rev.vport.to_host())
        .ttl(ttl)
}

/// The quote after the NAT rewrite of an ICMP error of `len` quoted bytes: quoted source
/// := real.addr, quoted source port := real.port (or the kept port), the quoted IPv4 header
/// checksum recomputed, and the quoted L4 checksum left as the router quoted it
/// (docs/datapath.md).
pub fn nat_quote(quoted: &Pkt, r: &Real, len: usize) -> Vec<u8> {
    let rip = lb_common::addr::convert::from_raw(&r.addr, r.family);
    let port = if r.port.to_host() == 0 {
        quoted.ports().0
    } else {
        r.port.to_host()
    };
    let orig = quoted.quote_len(len);
    let mut q = quoted.clone().src(rip).sport(port).quote_len(len);
    let at = quoted.ip_header_len()
        + match quoted.l4 {
            L4::Udp { .. } => 6,
            _ => 16,
        };
    if at + 2 <= q.len() {
        q[at..at + 2].copy_from_slice(&orig[at..at + 2]);
    }
    q
}

/// A UDP payload for which `expect(payload)` (the frame the program should produce) has
/// the UDP checksum 0xFFFF: the sum comes out as zero, which RFC 768 sends as all ones
/// because 0 means "no checksum" — the corner an incremental update can get wrong. The
/// first 16-bit word is chosen; in one's complement, adding the checksum of the packet with
/// that word at 0 makes the sum 0xFFFF.
pub fn udp_payload_for_ffff(expect: impl Fn(&[u8]) -> Pkt) -> Vec<u8> {
    let csum = |p: &Pkt| {
        let b = p.bytes();
        let at = p.l4_offset() + 6;
        u16::from_be_bytes([b[at], b[at + 1]])
    };
    let mut payload = vec![0, 0, b'l', b'b', b'-', b'f', b'f', b'f'];
    let c0 = csum(&expect(&payload));
    payload[..2].copy_from_slice(&c0.to_be_bytes());
    assert_eq!(csum(&expect(&payload)), 0xffff, "payload search failed");
    payload
}

/// A SYN's options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7 (20 bytes,
/// as Linux sends them).
pub const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 1, 0xe2, 0x40, 0, 0, 0, 0, 1, 3, 3, 7,
];

// ---- Counters.

/// A new connection: conns, one packet in, its IP length in bytes.
pub fn new_conn(p: &Pkt) -> Traffic {
    Traffic {
        conns: 1,
        in_packets: 1,
        in_bytes: p.ip_len(),
        ..Traffic::default()
    }
}

/// One packet client → real on an existing connection.
pub fn inbound(p: &Pkt) -> Traffic {
    Traffic {
        in_packets: 1,
        in_bytes: p.ip_len(),
        ..Traffic::default()
    }
}

/// One packet real → client (NAT return).
pub fn outbound(p: &Pkt) -> Traffic {
    Traffic {
        out_packets: 1,
        out_bytes: p.ip_len(),
        ..Traffic::default()
    }
}

/// RX and a pass reason.
pub fn passed(r: Pass) -> Counts {
    Counts::of(&[Counter::RX, r.counter()])
}

/// RX and a drop reason.
pub fn dropped(r: Drop) -> Counts {
    Counts::of(&[Counter::RX, r.counter()])
}

/// A case whose packet is passed to the stack untouched.
pub fn pass_case(
    name: &'static str,
    why: &'static str,
    provision: Provision,
    input: impl Into<Input>,
    reason: Pass,
) -> Case {
    Case {
        name,
        why,
        provision,
        input: input.into(),
        ingress: IF_LO,
        verdict: Verdict::Pass,
        output: Output::Unchanged,
        counts: passed(reason),
        state: vec![],
    }
}

/// A case whose packet is dropped for a reason.
pub fn drop_case(
    name: &'static str,
    why: &'static str,
    provision: Provision,
    input: impl Into<Input>,
    reason: Drop,
) -> Case {
    Case {
        name,
        why,
        provision,
        input: input.into(),
        ingress: IF_LO,
        verdict: Verdict::Drop,
        output: Output::NotChecked,
        counts: dropped(reason),
        state: vec![],
    }
}

/// The forward counter of a mode.
pub fn fwd_counter(mode: ForwardMode) -> Counter {
    match mode {
        ForwardMode::Dr => Counter::FWD_DR,
        ForwardMode::Tun => Counter::FWD_TUN,
        ForwardMode::Nat => Counter::FWD_NAT,
    }
}

/// The expected frame of a mode.
pub fn forwarded(mode: ForwardMode, p: &Pkt, r: &Real) -> Pkt {
    match mode {
        ForwardMode::Dr => dr(p, r),
        ForwardMode::Tun => tun(p, r),
        ForwardMode::Nat => nat(p, r),
    }
}

/// A new flow from `p` to a one-real service of `mode` on p's destination: sent out the
/// ingress interface (XDP_TX), NEW_FLOW, conns +1, the flow recorded (and for NAT the
/// reverse entry).
pub fn new_flow_case(
    name: &'static str,
    why: &'static str,
    mode: ForwardMode,
    p: Pkt,
    real_addr: &str,
    real_port: u16,
) -> Case {
    let r = real(mode, SVC, real_addr, real_port);
    let (_, vport) = p.ports();
    let mut state = vec![lb_tests::case::StateCheck::Flow(
        key_of(&p),
        Some(fv_new(REAL_A, SVC, &p, mode)),
    )];
    if mode == ForwardMode::Nat {
        let (k, v) = nat_rev_of(&p, &r, IF_LO, SVC, REAL_A);
        state.push(lb_tests::case::StateCheck::NatRev(k, Some(v)));
    } else {
        state.push(lb_tests::case::StateCheck::NatRevCount(0));
    }
    Case {
        name,
        why,
        provision: one(&p.ip.dst().to_string(), vport, p.proto(), r),
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(forwarded(mode, &p, &r)),
        counts: Counts::of(&[
            Counter::RX,
            fwd_counter(mode),
            Counter::NEW_FLOW,
            Counter::TX,
        ])
        .both(SVC, REAL_A, new_conn(&p)),
        state,
    }
}

/// An established flow: FLOWS sends `p` to REAL_B (weight 0, so not in the table, which
/// only holds REAL_A): forwarded to REAL_B without NEW_FLOW, proving the flow table wins.
pub fn established_case(
    name: &'static str,
    why: &'static str,
    mode: ForwardMode,
    p: Pkt,
    real_addr: &str,
    other_real: &str,
    port: u16,
) -> Case {
    let a = real(mode, SVC, real_addr, port);
    let b = Real {
        weight: 0,
        dst_mac: MAC_REAL_B,
        ..real(mode, SVC, other_real, port)
    };
    let (_, vport) = p.ports();
    let mut prov = one(&p.ip.dst().to_string(), vport, p.proto(), a);
    prov.reals.push((REAL_B, b));
    prov.flows.push((key_of(&p), fv(REAL_B, SVC)));
    Case {
        name,
        why,
        provision: prov,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(forwarded(mode, &p, &b)),
        counts: Counts::of(&[Counter::RX, fwd_counter(mode), Counter::TX]).both(
            SVC,
            REAL_B,
            inbound(&p),
        ),
        state: vec![
            lb_tests::case::StateCheck::FlowCount(1),
            lb_tests::case::StateCheck::NatRevCount(0),
        ],
    }
}

/// An address of `vip`'s family that is no VIP but has the same VIP_FILTER slot
/// (`lb_common::filter::filter_slot`): the filter says "maybe" for it, so a case to it
/// runs the exact VIPS check behind the filter. The nearest address above `vip` that
/// collides (leaked: case packets take `&'static str`).
pub fn filter_twin(vip: &str) -> &'static str {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let slot = |ip: IpAddr| lb_common::filter::filter_slot(&to_raw(ip).0);
    let v = addr(vip);
    let want = slot(v);
    let twin = (1u32..)
        .map(|i| match v {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(i))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(i.into()))),
        })
        .find(|c| slot(*c) == want)
        .expect("some address shares the slot");
    Box::leak(twin.to_string().into_boxed_str())
}
