//! Lookups, cheapest first (docs/datapath.md steps 3–8): the address bit filters (array
//! reads the JIT inlines) gate every hash lookup, so traffic that is neither a NAT reply nor
//! to a VIP costs no helper call and is passed as soon as its addresses are read; an
//! established flow costs one FLOWS lookup and array reads; only a new flow pays for the
//! SERVICES lookup.

use aya_ebpf::{maps::Array, programs::XdpContext};
use lb_common::{
    Drop, FlowKey, NatReverse, Pass, Real, RealFlags, Service, ServiceKey, VipKey,
    addr::{Be16, RawAddr},
    filter::filter_slot,
};

use crate::Exit;
use crate::cache;
use crate::conn;
use crate::flows;
use crate::icmp;
use crate::maps::{NAT_FILTER, REALS, SERVICES, VIP_FILTER, VIPS};
use crate::parse::{L4, Packet};
use crate::schedule::Dest;

/// What the flow lookup found for a packet to a VIP.
pub enum Found {
    /// An established flow to a real that is still usable.
    Flow(Dest),
    /// No usable flow: schedule (`schedule::schedule_new`).
    Miss,
}

/// What the address filters say a packet may be (step 3's gate, `gate`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The destination is in VIP_FILTER: balance it. (The NAT filter is not asked yet: VIP
    /// traffic never pays for it unless balancing finds no VIP after all.)
    Vip,
    /// Not a VIP, but the source is in NAT_FILTER: perhaps a NAT reply.
    NatReply,
}

/// Step 3, from the two addresses alone, as soon as the IP header is read (`parse`):
/// neither a VIP destination nor a NAT real source → pass `NotVip` before anything else
/// is parsed. Pass-through traffic thus costs two array reads (no helper call). Called
/// with each family's own address words, so the filter hash folds its zero words away for
/// IPv4.
#[inline(always)]
pub fn gate(src: &RawAddr, dst: &RawAddr) -> Result<Gate, Pass> {
    if in_filter(&VIP_FILTER, dst) {
        Ok(Gate::Vip)
    } else if in_filter(&NAT_FILTER, src) {
        Ok(Gate::NatReply)
    } else {
        Err(Pass::NotVip)
    }
}

/// Step 4: the reverse entry of a NAT reply (real → client), if this is one.
#[inline(always)]
pub fn lookup_nat_reply(pkt: &Packet) -> Option<NatReverse> {
    if pkt.l4 != L4::Ports {
        return None;
    }
    // A VIP-filter hit that was no VIP's after all has not been through NAT_FILTER yet.
    if pkt.gate == Gate::Vip && !in_filter(&NAT_FILTER, &pkt.key.src) {
        return None;
    }
    flows::nat_reverse(&pkt.key)
}

/// Steps 5–6, for a packet whose destination is in VIP_FILTER: is this a packet we
/// balance? Passes what is not ours, drops what is ours but unusable, and turns an ICMP
/// error about a flow into that flow's key (`icmp.rs`).
#[inline(always)]
pub fn lookup_vip(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Exit> {
    match pkt.l4 {
        L4::Ports => Ok(()),
        L4::Cut => Err(Exit::Drop(Drop::Truncated)),
        L4::Icmp => icmp::parse_icmp_error(ctx, pkt),
        L4::Fragment => Err(unless_vip(pkt, Exit::Drop(Drop::Fragment))),
        L4::Ext => Err(unless_vip(pkt, Exit::Drop(Drop::Ipv6ExtHeader))),
        L4::Other => Err(unless_vip(pkt, Exit::Pass(Pass::NotBalanced))),
    }
}

/// Step 7: the established flow, if there is a usable one.
#[inline(always)]
pub fn lookup_dest(pkt: &Packet) -> Result<Found, Exit> {
    Ok(match lookup_flow(pkt)? {
        Some(dest) => Found::Flow(dest),
        None => Found::Miss,
    })
}

/// Step 8: the service of a packet without a flow (exact port, then all-port).
#[inline(always)]
pub fn lookup_service(pkt: &Packet) -> Result<Service, Exit> {
    match lookup_service_key(&pkt.key) {
        Some(svc) => Ok(svc),
        // An ICMP error about no service of ours is not balanced; counted as NotBalanced
        // only when the address really is a VIP, as for every other ICMP message.
        None if pkt.quote.is_some() => Err(unless_vip(pkt, Exit::Pass(Pass::NotBalanced))),
        None => Err(Exit::Pass(Pass::NotVip)),
    }
}

/// A FLOWS hit whose real is still configured and in the flow's service: stamp the
/// flow and move its TCP state (`conn::on_packet`; not for an ICMP error, which is no
/// packet of the connection), then cache it if a plain packet may skip all that for the
/// rest of this CLOCK second (at most 256 packets), else make sure the cache does not
/// hold it (`cache::update`). Its real deleted (IPVS:
/// the destination is no longer available): with `expire_nodest_conn` 0, as IPVS's
/// default, drop `RealGone` until the flow expires; with 1 expire the flow now (taking it
/// off its real's counters, as IPVS's unbind) and schedule the packet as a new one.
#[inline(always)]
fn lookup_flow(pkt: &Packet) -> Result<Option<Dest>, Drop> {
    let key = &pkt.key;
    let Some(v) = flows::flow_ptr(key) else {
        return Ok(None);
    };
    let (real_id, svc_id) = unsafe { ((*v).real_id, (*v).svc_id) };
    if !usable(real_id, svc_id) {
        if conn::settings().expire_nodest_conn == 0 {
            return Err(Drop::RealGone);
        }
        if pkt.quote.is_none() {
            let flags = unsafe { (*v).flags };
            if flows::flow_remove(key) {
                conn::unbind(real_id, flags);
            }
            cache::drop_flow(pkt);
        }
        return Ok(None);
    }
    if pkt.quote.is_none() {
        unsafe { conn::on_packet(v, real_id, key.proto, pkt.tcp_flags, false) };
    }
    cache::update(pkt, unsafe { conn::steady(v, key.proto) }, real_id, svc_id);
    Ok(Some(Dest {
        real_id,
        svc_id,
        new_flow: false,
    }))
}

/// The flow's real is still configured and still in the flow's service.
#[inline(always)]
pub fn usable(real_id: u32, svc_id: u32) -> bool {
    matches!(lookup_real(real_id), Some(r) if r.svc_id == svc_id)
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

/// A configured (`ACTIVE`) real by id. Array read: inlined by the JIT.
#[inline(always)]
pub fn lookup_real(id: u32) -> Option<&'static Real> {
    REALS.get(id).filter(|r| r.flags.has(RealFlags::ACTIVE))
}

/// `exit` when the destination really is a VIP (exact VIPS lookup), else pass `NotVip`:
/// the bit filter only says "maybe", and someone else's packet must pass untouched.
#[inline(always)]
pub fn unless_vip(pkt: &Packet, exit: Exit) -> Exit {
    let a = pkt.key.dst;
    // Built from whole words: a `_pad: [0; 3]` initialiser makes LLVM emit an out-of-line
    // memset (a BPF-to-BPF call) for the three odd bytes. Little-endian: the family byte
    // comes first in the last word, then the zero padding (layout asserted in lb-common).
    let key: VipKey = unsafe {
        core::mem::transmute::<[u32; 5], VipKey>([a[0], a[1], a[2], a[3], pkt.key.family as u32])
    };
    if unsafe { VIPS.get(key) }.is_some() {
        exit
    } else {
        Exit::Pass(Pass::NotVip)
    }
}

/// The address's bit in a filter (VIP_FILTER / NAT_FILTER). Inlined so each call site
/// names one map: the verifier inlines an array lookup only when the map is known there.
#[inline(always)]
fn in_filter(filter: &Array<u64>, a: &RawAddr) -> bool {
    let (word, bit) = filter_slot(a);
    matches!(filter.get(word), Some(w) if w & bit != 0)
}
