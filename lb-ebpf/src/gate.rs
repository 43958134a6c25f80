//! The address filters (docs/datapath.md step 3) and the exact VIP check behind them: bit
//! filters (array reads the JIT inlines) gate every hash lookup, so traffic that is neither
//! a NAT reply nor to a VIP costs no helper call and is passed as soon as its addresses
//! are read. A filter only says "maybe"; [`confirm_vip`] asks VIPS before a packet that is
//! not ours is counted as anything but `NotVip`.

use aya_ebpf::maps::Array;
use lb_common::{Drop, FlowKey, Pass, VipKey, addr::RawAddr, filter::filter_slot};

use crate::maps::{NAT_FILTER, VIP_FILTER, VIPS};
use crate::verdict::Exit;

/// What the address filters say a packet may be (step 3's gate, [`gate`]).
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

/// The source may be a NAT real (its bit is set in NAT_FILTER).
#[inline(always)]
pub fn maybe_nat_real(src: &RawAddr) -> bool {
    in_filter(&NAT_FILTER, src)
}

/// `exit` when the key's destination really is a VIP (exact VIPS lookup), else pass
/// `NotVip`: the bit filter only says "maybe", and someone else's packet must pass
/// untouched and be counted as not ours.
#[inline(always)]
pub fn confirm_vip(key: &FlowKey, exit: Exit) -> Exit {
    confirm_vip_addr(&key.dst, key.family, exit)
}

/// A malformed IP header (docs/datapath.md step 2) whose destination could still be read:
/// dropped for `reason` only when that destination is a VIP (VIP_FILTER, then the exact
/// VIPS lookup); anything else passes `NotVip` untouched (the director's own traffic,
/// other hosts' on the NIC). Only malformed packets pay the lookup.
#[inline(always)]
pub fn malformed_to(dst: &RawAddr, fam: u8, reason: Drop) -> Exit {
    if in_filter(&VIP_FILTER, dst) {
        confirm_vip_addr(dst, fam, Exit::Drop(reason))
    } else {
        Exit::Pass(Pass::NotVip)
    }
}

/// [`confirm_vip`] for an address and family.
#[inline(always)]
fn confirm_vip_addr(a: &RawAddr, fam: u8, exit: Exit) -> Exit {
    // Built from whole words: a `_pad: [0; 3]` initialiser makes LLVM emit an out-of-line
    // memset (a BPF-to-BPF call) for the three odd bytes. Little-endian: the family byte
    // comes first in the last word, then the zero padding (layout asserted in lb-common).
    let vip: VipKey = unsafe {
        core::mem::transmute::<[u32; 5], VipKey>([a[0], a[1], a[2], a[3], fam as u32])
    };
    if unsafe { VIPS.get(vip) }.is_some() {
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
