//! Lookups, cheapest first (docs/datapath.md steps 4–8), once the address filters
//! (`gate.rs`, step 3) said "maybe": a NAT reply costs one NAT_REV lookup; a packet to a
//! VIP has its L4 header classified (an ICMP error turned into its flow's key, `icmp.rs`);
//! an established flow costs one FLOWS lookup and array reads; only a new flow pays for
//! the SERVICES lookup.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Drop, FlowKey, FlowValue, ForwardMode, NatReverse, Pass, Service, ServiceKey, VipFlags,
    addr::Be16, real::ref_id,
};

use crate::cache;
use crate::conn;
use crate::flows;
use crate::gate::{Gate, confirm_vip, maybe_nat_real};
use crate::icmp;
use crate::maps::{REALS, SERVICES};
use crate::parse::{L4, Packet, Quote, Upper, read_ports, walk_ext6};
use crate::reals::{lookup_real, usable};
use crate::verdict::{Dest, Exit};

/// Step 4: the reverse entry of a NAT reply (real → client), if this is one.
#[inline(always)]
pub fn lookup_nat_reply(pkt: &Packet) -> Option<NatReverse> {
    if pkt.l4 != L4::Ports {
        return None;
    }
    // A VIP-filter hit that was no VIP's after all has not been through NAT_FILTER yet.
    if pkt.gate == Gate::Vip && !maybe_nat_real(&pkt.key.src) {
        return None;
    }
    flows::nat_reverse(&pkt.key)
}

/// Step 4 for an ICMP packet that is no NAT reply: an error a NAT real sends the client
/// about a packet of a live NAT flow (`icmp::parse_icmp_reply_error`), with the flow's
/// reverse entry, found by the quote reversed. Only behind the NAT_FILTER gate: an ICMP
/// packet that also hit VIP_FILTER has had its key rewritten by balancing and is left alone.
#[inline(always)]
pub fn lookup_nat_icmp_error(ctx: &XdpContext, pkt: &Packet) -> Option<(NatReverse, Quote)> {
    if pkt.l4 != L4::Icmp || pkt.gate != Gate::NatReply {
        return None;
    }
    let (key, quote) = icmp::parse_icmp_reply_error(ctx, pkt)?;
    Some((flows::nat_reverse(&key)?, quote))
}

/// Steps 5–6, for a packet whose destination is in VIP_FILTER: is its L4 header one we
/// balance? TCP/UDP with ports goes on; what is not ours passes, what is ours but
/// unusable drops (each only once VIPS confirms the VIP, `gate::confirm_vip`), and an
/// ICMP error about a flow has that flow's key parsed into the packet (`icmp.rs`).
/// A fragment or extension-header packet drops only when a service may own it
/// (`unbalanced`).
#[inline(always)]
pub fn classify_l4(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Exit> {
    match pkt.l4 {
        L4::Ports => Ok(()),
        // A filter hit is only "maybe": a malformed packet is dropped only once VIPS
        // confirms its destination, else someone else's passes untouched.
        L4::Cut => Err(confirm_vip(&pkt.key, Exit::Drop(Drop::Truncated))),
        // An unusable quote (drop IcmpQuote) leaves the key the outer packet's.
        L4::Icmp => match icmp::parse_icmp_error(ctx, pkt) {
            Err(Exit::Drop(d)) => Err(confirm_vip(&pkt.key, Exit::Drop(d))),
            r => r,
        },
        L4::FirstFragment => {
            let ports = read_ports(ctx, pkt.l4_off, pkt.l3_end());
            Err(unbalanced(pkt, pkt.key.proto, ports, Drop::Fragment))
        }
        L4::Fragment => Err(unbalanced(pkt, pkt.key.proto, None, Drop::Fragment)),
        L4::Ext => Err(match walk_ext6(ctx, pkt) {
            Upper::At { proto, off } => {
                let ports = read_ports(ctx, off, pkt.l3_end());
                unbalanced(pkt, proto, ports, Drop::Ipv6ExtHeader)
            }
            Upper::Later { proto } => unbalanced(pkt, proto, None, Drop::Ipv6ExtHeader),
            Upper::Unknown => confirm_vip(&pkt.key, Exit::Drop(Drop::Ipv6ExtHeader)),
        }),
        L4::Other => Err(confirm_vip(&pkt.key, Exit::Pass(Pass::NotBalanced))),
    }
}

/// Step 5 for what lb cannot balance (a fragment, an IPv6 packet with extension headers)
/// of upper-layer protocol `proto`: dropped for `reason` only when a service may own it,
/// else passed untouched, so the address's other services on the director keep working.
/// With its ports (`ports`: a first fragment, or read behind the extension headers): the
/// service of its port, exact then all-port (step 8's lookup). Without (a later
/// fragment): only an all-port service of the address owns every port; a fragment of
/// another port reaches the director's stack, which cannot reassemble it without the
/// first fragment (dropped here when its port has a service) and lets it time out.
/// Not TCP/UDP: no service's, pass as step 5's other protocols. Rare paths only.
#[inline(always)]
fn unbalanced(pkt: &Packet, proto: u8, ports: Option<(Be16, Be16)>, reason: Drop) -> Exit {
    if proto != lb_common::consts::proto::TCP && proto != lb_common::consts::proto::UDP {
        return confirm_vip(&pkt.key, Exit::Pass(Pass::NotBalanced));
    }
    let (sport, dport) = ports.unwrap_or((Be16(0), Be16(0)));
    let key = FlowKey {
        sport,
        dport,
        proto,
        ..pkt.key
    };
    match lookup_service_key(&key) {
        Some(_) => Exit::Drop(reason),
        None => Exit::Pass(Pass::NotVip),
    }
}

/// Step 8: the service of a packet without a flow (exact port, then all-port).
#[inline(always)]
pub fn lookup_service(pkt: &Packet) -> Result<Service, Exit> {
    match lookup_service_key(&pkt.key) {
        Some(svc) => Ok(svc),
        // An ICMP error about no service of ours is not balanced; counted as NotBalanced
        // only when the address really is a VIP, as for every other ICMP message.
        None if pkt.quote.is_some() => {
            Err(confirm_vip(&pkt.key, Exit::Pass(Pass::NotBalanced)))
        }
        None => Err(Exit::Pass(Pass::NotVip)),
    }
}

/// Step 7: the established flow's destination (its real, and the forwarding method it was
/// created with), if there is a usable one (`None`: schedule it, `schedule::schedule_new`). A FLOWS hit whose real is still configured and in the
/// flow's service: stamp the flow and move its TCP state (`conn::on_packet`; not for an
/// ICMP error, which is no packet of the connection), then cache it if a plain packet may
/// skip all that for the rest of this CLOCK second (at most 256 packets), else make sure
/// the cache does not hold it (`cache::update`). Its real deleted (IPVS: the destination
/// is no longer available), or its id since given to another real (the flow's generation
/// is not the slot's, `reals::usable`): with `expire_nodest_conn` 0, as IPVS's default,
/// drop `RealGone` until the flow expires; with 1 expire the flow now (taking it off its
/// real's counters, as IPVS's unbind, unless the id is another real's now) and schedule
/// the packet as a new one. A SYN that finds a
/// flow it may reuse (`syn_expires`: TIME_WAIT, CLOSE, IPVS conn_reuse_mode) expires it
/// the same way and is scheduled as a new connection.
#[inline(always)]
pub fn lookup_flow(pkt: &Packet) -> Result<Option<Dest>, Drop> {
    let key = &pkt.key;
    let Some(v) = flows::flow_ptr(key) else {
        return Ok(None);
    };
    let (real_ref, svc_id, fwd) = unsafe { ((*v).real_id, (*v).svc_id, (*v).fwd) };
    if !usable(real_ref, svc_id) {
        if conn::settings().expire_nodest_conn == 0 {
            return Err(Drop::RealGone);
        }
        if pkt.quote.is_none() {
            unsafe { expire_flow(key, v) };
        }
        return Ok(None);
    }
    if pkt.is_syn() && unsafe { syn_expires(key, v, real_ref) } {
        return Ok(None);
    }
    let real_id = ref_id(real_ref);
    if pkt.quote.is_none() {
        unsafe { conn::on_packet(v, real_id, key.proto, pkt.tcp_flags, false) };
    }
    let dest = Dest {
        real_id,
        svc_id,
        fwd,
        new_flow: false,
    };
    cache::update(pkt, unsafe { conn::steady(v, key.proto) }, &dest, real_ref);
    Ok(Some(dest))
}

/// IPVS `conn_reuse_mode` 1 (`lb_common::conn::syn_expires_flow`): a SYN that finds its
/// flow on a weight-0 real with `expire_nodest_conn`, or in TIME_WAIT or CLOSE and not
/// controlled by a persistence template, expires it (true: the packet goes on as a new
/// connection, already scheduled by the caller). As `ip_vs_in_hook`, only the TIME_WAIT /
/// CLOSE reason (`is_new_conn_expected`) looks at control: IPVS controls every connection
/// of a persistent service by its template, and lb records no link from flow to template,
/// so the flow's service being persistent (its SERVICES entry now) stands for it. The
/// service lookup runs only for a SYN on a flow that qualifies. `real_ref`: the flow's
/// (usable) real as it stores it. Safety: as `conn::on_packet`.
#[inline(always)]
unsafe fn syn_expires(key: &FlowKey, v: *mut FlowValue, real_ref: u32) -> bool {
    let state = unsafe { (*v).state };
    let quiescent = conn::settings().expire_nodest_conn != 0
        && matches!(lookup_real(ref_id(real_ref)), Some(r) if r.weight == 0);
    if !lb_common::conn::syn_expires_flow(state, quiescent) {
        return false;
    }
    if !quiescent && matches!(lookup_service_key(key), Some(s) if s.flags.has(VipFlags::PERSISTENT))
    {
        return false;
    }
    unsafe { expire_flow(key, v) };
    true
}

/// The data path's own expiry of a flow (expire_nodest_conn, conn_reuse_mode): claimed for
/// removal (`conn::reap`, `FlowFlags::DEAD` set by compare-and-swap), removed from FLOWS,
/// its hold on its real released (`release_real`, by the flags the claim won with), and
/// out of this CPU's cache slot. Only the CPU whose claim wins and whose removal then
/// succeeds releases: a claim lost means another remover (another CPU, the sweep) deletes
/// and books the flow; a removal that fails after a won claim means lb-ctl's sweep deleted
/// the claimed flow first (its REAP deletes claimed flows too; without lb_ops, its
/// lookup-and-delete) and booked it by the frozen flags. Its real (as the flow stores it,
/// with its generation) and method are read after the claim and before the removal, which
/// may free the element for reuse. Safety: as `conn::on_packet`.
#[inline(always)]
unsafe fn expire_flow(key: &FlowKey, v: *mut FlowValue) {
    if let Some(flags) = unsafe { conn::reap(v) } {
        let (real_ref, fwd) = unsafe { ((*v).real_id, (*v).fwd) };
        if flows::flow_remove(key) {
            release_real(key, flags, real_ref, fwd);
        }
    }
    cache::drop_flow_key(key);
}

/// An expired flow's hold on its real: taken off the real's counters as IPVS unbinds it
/// (`conn::unbind`), and a NAT flow's reverse entry (real → client) removed if it is still
/// this flow's (same VIP and port), as lb-ctl's sweep does
/// (`maps::sweep::forget_nat_reverse`): IPVS translates no reply once the connection is
/// gone, and the sweep, which finds entries through FLOWS, would never see this one again.
/// The flow's method is its `fwd`, or (0, an older lb's flow) its real's mode; the key is
/// the insert's (`FlowKey::nat_reverse_key`) from the real's slot, which a deleted real
/// keeps (only `ACTIVE` cleared). Nothing at all when the flow is stale (its id given to
/// another real since, `Real::referenced_by`): the counters are the new real's (lb-ctl
/// settled the old real's at the reuse) and the slot's address is the new real's, not the
/// one the flow's entry is keyed by. Out of line because inlined into both of
/// `expire_flow`'s callers the program no longer verifies (the verifier's
/// 10^6-instruction limit); measured, the static call costs the established paths ~1 ns
/// or less (`bench --compare` against a build without it: −0.2 to +1.2), not the 20–30 ns
/// a call on every packet's way would.
#[inline(never)]
fn release_real(key: &FlowKey, flags: u8, real_ref: u32, fwd: u8) {
    let real_id = ref_id(real_ref);
    let Some(real) = REALS.get(real_id) else {
        return;
    };
    if !real.referenced_by(real_ref) {
        return;
    }
    conn::unbind(real_id, flags);
    if ForwardMode::of_flow(fwd, real.mode) != ForwardMode::Nat as u8 {
        return;
    }
    let (addr, port) = key.nat_dest(&real.addr, real.port);
    flows::nat_reverse_forget(&key.nat_reverse_key(&addr, port), key);
}

#[inline(always)]
fn lookup_service_key(key: &FlowKey) -> Option<Service> {
    let mut skey = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    if let Some(svc) = unsafe { SERVICES.get(skey) } {
        return Some(*svc);
    }
    skey.port = Be16(0);
    unsafe { SERVICES.get(skey) }.copied()
}
