//! A connection keeps the forwarding method it was created with (docs/datapath.md step
//! 11; IPVS binds `cp->packet_xmit` from the dest's conn_flags at creation,
//! `ip_vs_bind_xmit`): `ipvsadm -e` switching a real between -m, -g and -i changes new
//! connections only. Each sequence opens a flow, edits the real's mode (and its next hop's
//! MAC, as lb-ctl's `-e` resolves it again), then sends the flow's next packets: looked up
//! in FLOWS, then served from the flow cache, both by the old method to the real's current
//! MACs; a NAT flow's reply is still translated back; a new client's connection takes the
//! new mode.
//!
//! The edit is written as lb-ctl writes it: the REALS slot replaced, the NAT_FILTER bit of
//! a real leaving NAT left set (its NAT flows' replies still come), the bit of a real
//! becoming NAT set.

use super::common::*;
use lb_common::conn::tcp_transition;
use lb_common::{Counter, Drop, FlowValue, ForwardMode, Real, RealFlags};
use lb_tests::bpf::{IF_LO, Verdict};
use lb_tests::case::{Action, Counts, Output, Sequence, StateCheck, Step};
use lb_tests::packet::Pkt;
use lb_tests::provision::Provision;

use ForwardMode::{Dr, Nat, Tun};

pub fn cases() -> Vec<Sequence> {
    vec![
        kept(
            "mode_edit_nat_flow_stays_nat_after_real_to_dr_v4",
            "a NAT connection's packets are still NAT'd (to the real's new MAC) and its reply translated back after -e makes the real DR; a new client goes DR",
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            Nat,
            Dr,
            REAL4,
        ),
        kept(
            "mode_edit_dr_flow_stays_dr_after_real_to_nat_v4",
            "a DR connection's packets are still DR'd (no NAT_REV entry appears) after -e makes the real NAT; a new client goes NAT with its NAT_REV entry",
            Pkt::tcp(CLIENT4, VIP4, 40000, 80),
            Dr,
            Nat,
            REAL4,
        ),
        kept(
            "mode_edit_nat_flow_stays_nat_after_real_to_tun_v6_udp",
            "IPv6 UDP: a NAT flow stays NAT'd and its reply translated after -e makes the real TUN; a new client is tunnelled",
            Pkt::udp(CLIENT6, VIP6, 40000, 53),
            Nat,
            Tun,
            REAL6,
        ),
        kept(
            "mode_edit_tun_flow_stays_tun_after_real_to_nat_v4_udp",
            "UDP: a TUN flow stays tunnelled after -e makes the real NAT; a new client goes NAT",
            Pkt::udp(CLIENT4, VIP4, 40000, 53),
            Tun,
            Nat,
            REAL4,
        ),
        deleted_then_revived(),
    ]
}

/// The real of the sequences: REAL_A of SVC at the service's own port (what `-e` to -g or
/// -i requires), next hop MAC_REAL before the edit.
fn real_at(mode: ForwardMode, raddr: &str, port: u16) -> Real {
    real(mode, SVC, raddr, port)
}

/// The flow value after a client packet `p` of an existing flow: stamped (CLOCK 0) and,
/// for TCP, moved as IPVS's table says; the method stays.
fn moved(v: FlowValue, p: &Pkt) -> FlowValue {
    if p.proto() != TCP {
        return v;
    }
    let st = tcp_transition(v.state, v.flags, false, tcp_flags_of(p));
    FlowValue {
        state: st.state,
        flags: st.flags,
        ..v
    }
}

/// A client packet of an existing flow forwarded to REAL_A by `mode` (with `r`'s current
/// addresses and MACs); `state` checked after it.
fn established(
    what: &'static str,
    p: &Pkt,
    r: &Real,
    mode: ForwardMode,
    state: Vec<StateCheck>,
) -> Action {
    Action::Packet(Step {
        what,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(forwarded(mode, p, r)),
        counts: Counts::of(&[Counter::RX, fwd_counter(mode), Counter::TX]).both(
            SVC,
            REAL_A,
            inbound(p),
        ),
        state,
    })
}

/// A new flow of `p` to REAL_A (`r`, in its mode): forwarded, recorded with that method,
/// and for NAT its NAT_REV entry; `nat_revs` entries in NAT_REV afterwards.
fn opened(what: &'static str, p: &Pkt, r: &Real, nat_revs: usize) -> Action {
    let mode = ForwardMode::from_u8(r.mode).expect("a mode");
    let mut state = vec![
        StateCheck::Flow(key_of(p), Some(fv_new(REAL_A, SVC, p, mode))),
        StateCheck::NatRevCount(nat_revs),
    ];
    if mode == Nat {
        let (k, v) = nat_rev_of(p, r, IF_LO, SVC, REAL_A);
        state.push(StateCheck::NatRev(k, Some(v)));
    }
    Action::Packet(Step {
        what,
        input: p.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(forwarded(mode, p, r)),
        counts: Counts::of(&[
            Counter::RX,
            fwd_counter(mode),
            Counter::NEW_FLOW,
            Counter::TX,
        ])
        .both(SVC, REAL_A, new_conn(p)),
        state,
    })
}

/// Open a flow of `p`'s client to a `from` real, edit the real to `to` (new next-hop MAC),
/// then: the flow's next packet (FLOWS), the one after (flow cache), a NAT flow's reply,
/// and a new client's first packet.
fn kept(
    name: &'static str,
    why: &'static str,
    p: Pkt,
    from: ForwardMode,
    to: ForwardMode,
    raddr: &str,
) -> Sequence {
    let (_, vport) = p.ports();
    let before = real_at(from, raddr, vport);
    let after = Real {
        dst_mac: MAC_REAL_B,
        ..real_at(to, raddr, vport)
    };
    // TCP: a SYN opens the connection, its ACKs are plain packets (cached once
    // ESTABLISHED). UDP: every datagram is plain.
    let (first, next) = if p.proto() == TCP {
        (p.clone().syn(), flags(p.clone(), ACK))
    } else {
        (p.clone(), p.clone())
    };
    // Another client, same ports.
    let (other_client, vip) = if p.ip.is_v6() {
        ("2001:db8::11", VIP6)
    } else {
        (CLIENT4_B, VIP4)
    };
    let (cport, _) = p.ports();
    let other = if p.proto() == TCP {
        Pkt::tcp(other_client, vip, cport, vport).syn()
    } else {
        Pkt::udp(other_client, vip, cport, vport)
    };
    let old_revs = usize::from(from == Nat);
    let v0 = fv_new(REAL_A, SVC, &first, from);
    let v1 = moved(v0, &next);
    let flow_kept = |v: FlowValue| {
        vec![
            StateCheck::Flow(key_of(&p), Some(v)),
            StateCheck::NatRevCount(old_revs),
        ]
    };
    let mut steps = vec![
        opened(
            "first packet: a new flow, by the real's mode",
            &first,
            &before,
            old_revs,
        ),
        Action::Update(Provision {
            reals: vec![(REAL_A, after)],
            ..Provision::default()
        }),
        established(
            "-e changed the real's mode: the flow's next packet (FLOWS) keeps its method",
            &next,
            &after,
            from,
            flow_kept(v1),
        ),
        established(
            "the one after (flow cache): still the flow's method",
            &next,
            &after,
            from,
            flow_kept(v1),
        ),
    ];
    if from == Nat {
        let (_, rev) = nat_rev_of(&first, &before, IF_LO, SVC, REAL_A);
        let reply = reply_of(&first, &before);
        steps.push(Action::Packet(Step {
            what: "the real's reply: still translated back through NAT_REV",
            input: reply.clone().into(),
            ingress: IF_LO,
            verdict: Verdict::Tx,
            output: Output::Pkt(nat_return(&reply, &rev)),
            counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
                SVC,
                REAL_A,
                outbound(&reply),
            ),
            state: vec![StateCheck::NatRevCount(1)],
        }));
    }
    steps.push(opened(
        "a new client: the real's new mode",
        &other,
        &after,
        old_revs + usize::from(to == Nat),
    ));
    Sequence {
        name,
        why,
        provision: one(&p.ip.dst().to_string(), vport, p.proto(), before),
        steps,
    }
}

/// The real's reply to `first` (a NAT flow to `r`), translated back through NAT_REV.
fn reply_translated(what: &'static str, first: &Pkt, r: &Real) -> Action {
    let (_, rev) = nat_rev_of(first, r, IF_LO, SVC, REAL_A);
    let reply = reply_of(first, r);
    Action::Packet(Step {
        what,
        input: reply.clone().into(),
        ingress: IF_LO,
        verdict: Verdict::Tx,
        output: Output::Pkt(nat_return(&reply, &rev)),
        counts: Counts::of(&[Counter::RX, Counter::NAT_RETURN, Counter::TX]).both(
            SVC,
            REAL_A,
            outbound(&reply),
        ),
        state: vec![StateCheck::NatRevCount(1)],
    })
}

/// A NAT real deleted while its flow lives, then added again as DR (IPVS keeps
/// translating a connection's replies whatever becomes of its dest, which waits in the
/// trash). Written as lb-ctl writes it: `-d` makes the REALS slot inactive (every other
/// field kept) and leaves the NAT_FILTER bit set; `-a` of the same real as DR revives the
/// slot, marked WAS_NAT (the bit still set). Meanwhile the client's packets are dropped
/// RealGone (expire_nodest_conn 0), its replies still translated; once revived, the flow
/// is NAT'd again (its method kept) and its replies translated.
fn deleted_then_revived() -> Sequence {
    let p = Pkt::tcp(CLIENT4, VIP4, 40000, 80);
    let before = real_at(Nat, REAL4, 80);
    let deleted = Real {
        flags: RealFlags(before.flags.0 & !RealFlags::ACTIVE),
        ..before
    };
    let revived = Real {
        flags: RealFlags(RealFlags::ACTIVE | RealFlags::WAS_NAT),
        dst_mac: MAC_REAL_B,
        ..real_at(Dr, REAL4, 80)
    };
    let first = p.clone().syn();
    let next = flags(p.clone(), ACK);
    let v0 = fv_new(REAL_A, SVC, &first, Nat);
    let v1 = moved(v0, &next);
    let update = |r: Real| {
        Action::Update(Provision {
            reals: vec![(REAL_A, r)],
            ..Provision::default()
        })
    };
    Sequence {
        name: "mode_edit_nat_flow_replies_translated_after_real_deleted_and_revived_as_dr_v4",
        why: "a NAT real deleted (-d: slot inactive, NAT_FILTER bit kept): its flow's client packets drop RealGone, its replies are still translated; added again as DR (same id, WAS_NAT) the flow is NAT'd again and its replies translated",
        provision: one(VIP4, 80, TCP, before),
        steps: vec![
            opened("first packet: a new NAT flow", &first, &before, 1),
            update(deleted),
            Action::Packet(Step {
                what: "-d: the client's next packet is dropped RealGone, the flow kept",
                input: next.clone().into(),
                ingress: IF_LO,
                verdict: Verdict::Drop,
                output: Output::NotChecked,
                counts: Counts::of(&[Counter::RX, Drop::RealGone.counter()]),
                state: vec![
                    StateCheck::Flow(key_of(&p), Some(v0)),
                    StateCheck::NatRevCount(1),
                ],
            }),
            reply_translated(
                "-d: the deleted real's reply is still translated back (NAT_REV, no REALS check)",
                &first,
                &before,
            ),
            update(revived),
            established(
                "-a as DR revived the slot: the flow's next packet is NAT'd (its method kept)",
                &next,
                &revived,
                Nat,
                vec![
                    StateCheck::Flow(key_of(&p), Some(v1)),
                    StateCheck::NatRevCount(1),
                ],
            ),
            reply_translated(
                "revived as DR (WAS_NAT): the flow's reply still translated",
                &first,
                &before,
            ),
        ],
    }
}
