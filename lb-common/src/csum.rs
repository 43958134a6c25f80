//! Internet checksum arithmetic (RFC 1071) and incremental updates (RFC 1624), used by the
//! data path for NAT rewrites and encapsulation headers. Values are the 16-bit words as they
//! sit in memory (wire order read as native u16), which one's-complement sums allow: the
//! sum is byte-order independent (RFC 1071 §2(B)).

/// Folds a 32-bit accumulator into 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The RFC 1624 terms (~m + m') for the 16-bit word `old` becoming `new`. Deltas add up
/// as plain integers: several changes cost one [`apply`] (one fold) instead of one each.
#[inline(always)]
pub const fn delta16(old: u16, new: u16) -> u32 {
    (!old) as u32 + new as u32
}

/// [`delta16`] for both halves of a 32-bit word.
#[inline(always)]
pub const fn delta32(old: u32, new: u32) -> u32 {
    ((!old) & 0xffff) + ((!old) >> 16) + (new & 0xffff) + (new >> 16)
}

/// [`delta32`] for a whole (4-word) address.
#[inline(always)]
pub const fn delta_addr(old: &[u32; 4], new: &[u32; 4]) -> u32 {
    delta32(old[0], new[0])
        + delta32(old[1], new[1])
        + delta32(old[2], new[2])
        + delta32(old[3], new[3])
}

/// Checksum field after the changes whose deltas sum to `delta` (RFC 1624 eqn. 3:
/// HC' = ~(~HC + Σ(~m + m'))). End-around-carry addition does not depend on grouping, so
/// one fold of the sum equals a fold per change. `fold` is exact for any u32, so `delta`
/// may hold up to 65,000 terms of ≤ 0x1fffe; callers add at most a dozen.
#[inline(always)]
pub const fn apply(check: u16, delta: u32) -> u16 {
    !fold((!check) as u32 + delta)
}

/// Checksum field after replacing the 16-bit word `old` by `new`.
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    apply(check, delta16(old, new))
}

/// Checksum field after replacing the 32-bit word `old` by `new`.
#[inline(always)]
pub const fn replace32(check: u16, old: u32, new: u32) -> u16 {
    apply(check, delta32(old, new))
}

/// Checksum field after replacing a whole (4-word) address.
#[inline(always)]
pub const fn replace_addr(check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    apply(check, delta_addr(old, new))
}

/// Header checksum of a 20-byte IPv4 header given as ten 16-bit words (checksum word
/// zero). Straight-line for the verifier.
#[inline(always)]
pub const fn ipv4_header(w: &[u16; 10]) -> u16 {
    let sum = w[0] as u32
        + w[1] as u32
        + w[2] as u32
        + w[3] as u32
        + w[4] as u32
        + w[5] as u32
        + w[6] as u32
        + w[7] as u32
        + w[8] as u32
        + w[9] as u32;
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full recompute over native-order words, the slow obvious way.
    fn full(words: &[u16]) -> u16 {
        let mut s: u32 = 0;
        for w in words {
            s += *w as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// A xorshift32 stream: reproducible test words without a crate.
    fn xorshift(mut x: u32) -> impl FnMut() -> u32 {
        move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        }
    }

    #[test]
    fn incremental_equals_full_recompute() {
        let mut next = xorshift(0x1234_5678);
        for _ in 0..10_000 {
            let mut words: [u16; 12] = core::array::from_fn(|_| next() as u16);
            let check = full(&words);
            let i = (next() % 5) as usize * 2;
            let old = words[i] as u32 | (words[i + 1] as u32) << 16;
            let new = next();
            words[i] = new as u16;
            words[i + 1] = (new >> 16) as u16;
            let want = full(&words);
            let got = replace32(check, old, new);
            // 0x0000 and 0xffff are the same value in one's complement.
            assert!(got == want || (got ^ want) == 0xffff && (got == 0 || want == 0));
            let j = 11;
            let old16 = words[j];
            words[j] = next() as u16;
            assert!(
                matches!(replace16(got, old16, words[j]), x if x == full(&words) || (x ^ full(&words)) == 0xffff)
            );
        }
    }

    #[test]
    fn summed_deltas_equal_full_recompute() {
        let mut next = xorshift(0x9e37_79b9);
        for _ in 0..10_000 {
            // A pseudo-header-like block: two addresses (16 words) and a port word.
            let mut words: [u16; 17] = core::array::from_fn(|_| next() as u16);
            let check = full(&words);
            let as_addr = |w: &[u16]| -> [u32; 4] {
                core::array::from_fn(|i| w[2 * i] as u32 | (w[2 * i + 1] as u32) << 16)
            };
            let old = as_addr(&words[8..16]);
            let new: [u32; 4] = core::array::from_fn(|_| next());
            for i in 0..4 {
                words[8 + 2 * i] = new[i] as u16;
                words[9 + 2 * i] = (new[i] >> 16) as u16;
            }
            let old_port = words[16];
            words[16] = next() as u16;
            let want = full(&words);
            let got = apply(check, delta_addr(&old, &new) + delta16(old_port, words[16]));
            assert!(got == want || (got ^ want) == 0xffff && (got == 0 || want == 0));
            // The same as one replace per change.
            let stepwise = replace16(replace_addr(check, &old, &new), old_port, words[16]);
            assert!(got == stepwise || (got ^ stepwise) == 0xffff);
        }
    }

    #[test]
    fn ipv4_header_known_vector() {
        // Classic example header (Wikipedia "IPv4 header checksum"): checksum 0xb861.
        let be: [u16; 10] = [
            0x4500, 0x0073, 0x0000, 0x4000, 0x4011, 0x0000, 0xc0a8, 0x0001, 0xc0a8, 0x00c7,
        ];
        // Feed wire-order words read natively, as the data path does.
        let native = be.map(|w| u16::from_ne_bytes(w.to_be_bytes()));
        let c = ipv4_header(&native);
        assert_eq!(u16::from_be_bytes(c.to_ne_bytes()), 0xb861);
    }
}
