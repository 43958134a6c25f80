//! Bounds-checked access to packet bytes and the Ethernet/VLAN walk, shared by both programs.
//!
//! Every packet read or write goes through [`bytes_at`]: the verifier accepts an access only
//! after it has seen `data + off + len <= data_end` on the same pointer. Two rules keep that
//! provable:
//! - `len` is a constant at every call site (after inlining). With a variable `len` the
//!   verifier learns the range of `p + len`, not of `p`, and rejects the access.
//! - `off` is a small bounded value (Ethernet + tags, + IHL×4, ...), so the verifier can
//!   track the variable-offset pointer (it gives up above 0xffff).
//!
//! Every field we touch sits at an even offset from `data`, and XDP frames start at an even
//! address, so u16 accesses are aligned as Rust requires. A u32 field (an IPv4 address 14
//! bytes behind the MAC header sits at 2 mod 4) is not: in Rust a misaligned u32 access is
//! UB, and LLVM's BPF backend splits an `align 1` one into four byte accesses. The kernel
//! allows misaligned packet access on the machines we run on (x86-64, arm64:
//! `HAVE_EFFICIENT_UNALIGNED_ACCESS`), so [`ld32`]/[`st32`] are one BPF instruction each,
//! written in inline assembly, outside Rust's alignment rules (their `wreg` operands need
//! the 32-bit ALU of BPF CPU v3, set in `.cargo/config.toml`). (LLVM's
//! `allows-misaligned-mem-access` feature would do it everywhere, but it also misaligns
//! stack accesses, which the verifier always refuses.)

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Drop,
    consts::{
        ethertype,
        hdr::{ETH_LEN, L2_MAX, VLAN_LEN},
    },
};

/// Address of the `len` bytes at `off` from the frame start, or `None` when they run past
/// the end of the frame. `len` must be a constant at the call site (see the module note).
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, off: usize, len: usize) -> Option<usize> {
    let start = ctx.data();
    let end = ctx.data_end();
    let p = start + off;
    if p + len > end { None } else { Some(p) }
}

/// True when `len` bytes at `off` are inside the frame. Unlike [`bytes_at`] this only
/// compares, so `len` may vary (an IP total length); nothing may be accessed on its say-so.
#[inline(always)]
pub fn fits(ctx: &XdpContext, off: usize, len: usize) -> bool {
    ctx.data() + off + len <= ctx.data_end()
}

/// Reads a byte. Safety: `p` is inside a range proved by [`bytes_at`].
#[inline(always)]
pub unsafe fn ld8(p: usize) -> u8 {
    unsafe { *(p as *const u8) }
}

/// Reads a 16-bit word as it sits in memory. Safety: as [`ld8`], and `p` is even.
#[inline(always)]
pub unsafe fn ld16(p: usize) -> u16 {
    unsafe { *(p as *const u16) }
}

/// Reads a 32-bit word as it sits in memory, in one load at any alignment (see the module
/// note). Safety: `p` is inside a range proved by [`bytes_at`] (or a map value).
#[inline(always)]
pub unsafe fn ld32(p: usize) -> u32 {
    unsafe { ld32_at::<0>(p) }
}

/// `ld32(p + OFF)` with the offset in the instruction (a plain `ld32(p + OFF)` costs two
/// more: LLVM cannot fold an add into an asm operand). Safety: as [`ld32`].
#[inline(always)]
pub unsafe fn ld32_at<const OFF: i16>(p: usize) -> u32 {
    let v: u32;
    // SAFETY: a plain load from a proved range; `pure, readonly` lets LLVM drop or merge it.
    unsafe {
        core::arch::asm!(
            "{v} = *(u32 *)({p} + {off})",
            v = out(wreg) v,
            p = in(reg) p,
            off = const OFF,
            options(pure, readonly, nostack, preserves_flags)
        );
    }
    v
}

/// Writes a byte. Safety: as [`ld8`].
#[inline(always)]
pub unsafe fn st8(p: usize, v: u8) {
    unsafe { *(p as *mut u8) = v }
}

/// Writes a 16-bit word. Safety: as [`ld16`].
#[inline(always)]
pub unsafe fn st16(p: usize, v: u16) {
    unsafe { *(p as *mut u16) = v }
}

/// Writes a 32-bit word in one store at any alignment. Safety: as [`ld32`].
#[inline(always)]
pub unsafe fn st32(p: usize, v: u32) {
    // SAFETY: a plain store into a proved range.
    unsafe {
        core::arch::asm!(
            "*(u32 *)({p} + 0) = {v}",
            v = in(wreg) v,
            p = in(reg) p,
            options(nostack, preserves_flags)
        );
    }
}

// The BPF target we build for is little-endian (bpfel); `split` below relies on it.
// (`to_ne_bytes` shuffles would be endian-neutral, but LLVM lowers them to per-byte masks.)
#[cfg(not(target_endian = "little"))]
compile_error!("lb-ebpf assumes a little-endian target (bpfel)");

/// The two 16-bit halves of a word's memory image, in memory order.
#[inline(always)]
pub const fn split(v: u32) -> (u16, u16) {
    (v as u16, (v >> 16) as u16)
}

/// Walks Ethernet and up to two VLAN tags (0x8100, 0x88A8): returns the L3 offset and the
/// inner EtherType (host order). The tags stay in the frame untouched.
#[inline(always)]
pub fn parse_l2(ctx: &XdpContext) -> Result<(usize, u16), Drop> {
    let p = bytes_at(ctx, 0, ETH_LEN).ok_or(Drop::Truncated)?;
    let mut ether = u16::from_be(unsafe { ld16(p + 12) });
    let mut off = ETH_LEN;
    // Unrolled by hand: two tags at constant offsets keep every access a constant offset
    // from `data`, which the verifier checks without tracking a loop.
    if is_vlan(ether) {
        let t = bytes_at(ctx, ETH_LEN, VLAN_LEN).ok_or(Drop::Truncated)?;
        ether = u16::from_be(unsafe { ld16(t + 2) });
        off = ETH_LEN + VLAN_LEN;
        if is_vlan(ether) {
            let t = bytes_at(ctx, ETH_LEN + VLAN_LEN, VLAN_LEN).ok_or(Drop::Truncated)?;
            ether = u16::from_be(unsafe { ld16(t + 2) });
            off = L2_MAX;
        }
    }
    Ok((off, ether))
}

#[inline(always)]
fn is_vlan(ether: u16) -> bool {
    ether == ethertype::VLAN || ether == ethertype::QINQ
}

/// Byte-wise `&str` equality, usable in `const` (`==` on str is not const yet): both
/// programs check their map statics against the `MAP_*` names lb-ctl opens by.
pub const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
