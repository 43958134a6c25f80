//! Reference programs for `cargo xtask bench` (docs/design.md §6), timed beside `lb_xdp` in the
//! same run so every figure can be read as "extra over doing nothing":
//!
//! - `bench_pass`: returns XDP_PASS and touches nothing — the cost of BPF_PROG_TEST_RUN
//!   itself (dispatch, timer), subtracted from every path.
//! - `bench_floor`: the least a balancer must do — parse Ethernet, IPv4/IPv6 and the TCP/UDP
//!   ports, swap the MACs, XDP_TX. No map, no helper call.
//!
//! - `bench_flow4` / `bench_flow6`: the floor plus the one lookup an established flow
//!   cannot avoid: the 5-tuple in a hash with lb's key types (`FlowKey4` in
//!   `BENCH_FLOWS4`, `FlowKey` in `BENCH_FLOWS6`); hit → swap MACs, XDP_TX, miss →
//!   XDP_DROP (None). What "established flow" costs at the least, on this machine.
//!
//! Two more serve the end-to-end run (veth, network namespaces):
//! - `bench_tx`: writes the frame in `BENCH_FRAME` (when set) and XDP_TX's it; driven with
//!   BPF_F_TEST_XDP_LIVE_FRAMES it is the traffic generator that needs no pktgen. The
//!   rewrite matters: live-frames pages are recycled with whatever the receivers wrote into
//!   them (a forwarded frame's new MACs, a DNAT'd address), so each frame is restored.
//! - `bench_sink`: counts every frame in `BENCH_RX` and drops it; the receiver.
//!
//! Self-contained on purpose (no `pkt.rs`): a reference must not move when the balancer's
//! helpers change. It shares only lb-common's types and header lengths, which are the
//! packet's, not the balancer's.
#![no_std]
#![no_main]

use lb_common::consts::hdr::{ETH_LEN, IPV4_LEN, IPV6_LEN};
use lb_common::{Be16, FlowKey, FlowKey4, FlowValue};

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    macros::xdp,
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};

/// Slot 0: frames seen by `bench_sink`, per CPU. Read by the bench; one slot.
#[map]
static BENCH_RX: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Length of the generator's frame: a minimum Ethernet frame without FCS.
const FRAME_LEN: usize = 60;

/// Slot 0: the frame `bench_tx` sends, as 16-bit words; all zero = send frames as given.
/// Written by the bench before it starts the generator.
#[map]
static BENCH_FRAME: Array<[u16; FRAME_LEN / 2]> = Array::with_max_entries(1, 0);

/// IPv4 flows `bench_flow4` knows (written by the bench). Same key and value as lb's FLOWS4.
#[map]
static BENCH_FLOWS4: HashMap<FlowKey4, FlowValue> = HashMap::with_max_entries(1024, 0);

/// IPv6 flows `bench_flow6` knows. Same key and value as lb's FLOWS6.
#[map]
static BENCH_FLOWS6: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(1024, 0);

/// TCP/UDP ports: the first 4 bytes of either header.
const PORTS_LEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_tx(ctx: XdpContext) -> u32 {
    if let (Some(t), Some(p)) = (BENCH_FRAME.get(0), at(&ctx, 0, FRAME_LEN))
        && t[0] | t[1] | t[2] != 0
    {
        for (i, w) in t.iter().enumerate() {
            st16(p + 2 * i, *w);
        }
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_sink(_ctx: XdpContext) -> u32 {
    if let Some(p) = BENCH_RX.get_ptr_mut(0) {
        unsafe { *p += 1 }
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_floor(ctx: XdpContext) -> u32 {
    match floor(&ctx) {
        Some(a) => a,
        None => xdp_action::XDP_DROP,
    }
}

/// The `len` bytes at `off`, if inside the frame (`len` constant at each call site).
#[inline(always)]
fn at(ctx: &XdpContext, off: usize, len: usize) -> Option<usize> {
    let p = ctx.data() + off;
    if p + len > ctx.data_end() {
        None
    } else {
        Some(p)
    }
}

/// One program per family, each with a single lookup site: LLVM merged the two families'
/// lookups of one program into one call with the map as a phi, and the verifier inlines a
/// map lookup only at a call that always sees one map (BPF_MAP_PTR_POISON otherwise): the
/// generic helper then cost both families +25–30 ns. lb has one call site per table.
#[xdp]
pub fn bench_flow4(ctx: XdpContext) -> u32 {
    match flow4(&ctx) {
        Some(a) => a,
        None => xdp_action::XDP_DROP,
    }
}

#[xdp]
pub fn bench_flow6(ctx: XdpContext) -> u32 {
    match flow6(&ctx) {
        Some(a) => a,
        None => xdp_action::XDP_DROP,
    }
}

/// A 32-bit word as it sits in memory, from two aligned halves (little-endian target).
#[inline(always)]
fn ld32(p: usize) -> u32 {
    ld16(p) as u32 | (ld16(p + 2) as u32) << 16
}

/// IPv4: parse into a `FlowKey4`, look it up, swap the MACs on a hit.
#[inline(always)]
fn flow4(ctx: &XdpContext) -> Option<u32> {
    let eth = at(ctx, 0, ETH_LEN)?;
    if u16::from_be(ld16(eth + 12)) != ETH_P_IP {
        return Some(xdp_action::XDP_PASS);
    }
    let ip = at(ctx, ETH_LEN, IPV4_LEN)?;
    let vihl = unsafe { *(ip as *const u8) };
    if vihl >> 4 != 4 || vihl & 0x0f < 5 {
        return None;
    }
    let proto = unsafe { *((ip + 9) as *const u8) };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Some(xdp_action::XDP_PASS);
    }
    let l4 = at(ctx, ETH_LEN + (vihl & 0x0f) as usize * 4, PORTS_LEN)?;
    // From whole words (ports as they sit in memory, then the protocol with its zero
    // padding), as lb builds it: a `_pad: [0; 3]` initialiser costs a memset call.
    let words = [ld32(ip + 12), ld32(ip + 16), ld32(l4), proto as u32];
    let key = unsafe { core::mem::transmute::<[u32; 4], FlowKey4>(words) };
    unsafe { BENCH_FLOWS4.get(key) }?;
    swap_macs(eth);
    Some(xdp_action::XDP_TX)
}

/// IPv6: parse into a `FlowKey`, look it up, swap the MACs on a hit.
#[inline(always)]
fn flow6(ctx: &XdpContext) -> Option<u32> {
    let eth = at(ctx, 0, ETH_LEN)?;
    if u16::from_be(ld16(eth + 12)) != ETH_P_IPV6 {
        return Some(xdp_action::XDP_PASS);
    }
    let ip = at(ctx, ETH_LEN, IPV6_LEN)?;
    let mut key = FlowKey {
        proto: unsafe { *((ip + 6) as *const u8) },
        family: 6,
        ..FlowKey::default()
    };
    if key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP {
        return Some(xdp_action::XDP_PASS);
    }
    for i in 0..4 {
        key.src[i] = ld32(ip + 8 + 4 * i);
        key.dst[i] = ld32(ip + 24 + 4 * i);
    }
    let l4 = at(ctx, ETH_LEN + IPV6_LEN, PORTS_LEN)?;
    key.sport = Be16(ld16(l4));
    key.dport = Be16(ld16(l4 + 2));
    unsafe { BENCH_FLOWS6.get(key) }?;
    swap_macs(eth);
    Some(xdp_action::XDP_TX)
}

#[inline(always)]
fn swap_macs(eth: usize) {
    let (a, b, c) = (ld16(eth), ld16(eth + 2), ld16(eth + 4));
    st16(eth, ld16(eth + 6));
    st16(eth + 2, ld16(eth + 8));
    st16(eth + 4, ld16(eth + 10));
    st16(eth + 6, a);
    st16(eth + 8, b);
    st16(eth + 10, c);
}

#[inline(always)]
fn ld16(p: usize) -> u16 {
    unsafe { *(p as *const u16) }
}

#[inline(always)]
fn st16(p: usize, v: u16) {
    unsafe { *(p as *mut u16) = v }
}

/// Parse L2/L3/L4 (ports), swap the MACs, XDP_TX. Not TCP/UDP → XDP_PASS; a cut header
/// → drop (None).
#[inline(always)]
fn floor(ctx: &XdpContext) -> Option<u32> {
    let eth = at(ctx, 0, ETH_LEN)?;
    let (l4_off, proto) = match u16::from_be(ld16(eth + 12)) {
        ETH_P_IP => {
            let ip = at(ctx, ETH_LEN, IPV4_LEN)?;
            let vihl = unsafe { *(ip as *const u8) };
            if vihl >> 4 != 4 || vihl & 0x0f < 5 {
                return None;
            }
            let proto = unsafe { *((ip + 9) as *const u8) };
            (ETH_LEN + (vihl & 0x0f) as usize * 4, proto)
        }
        ETH_P_IPV6 => {
            let ip = at(ctx, ETH_LEN, IPV6_LEN)?;
            (ETH_LEN + IPV6_LEN, unsafe { *((ip + 6) as *const u8) })
        }
        _ => return Some(xdp_action::XDP_PASS),
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Some(xdp_action::XDP_PASS);
    }
    let l4 = at(ctx, l4_off, PORTS_LEN)?;
    // Use the ports, so the parse is not optimised away: port 0 is invalid for both.
    if ld16(l4) == 0 || ld16(l4 + 2) == 0 {
        return None;
    }
    swap_macs(eth);
    Some(xdp_action::XDP_TX)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
