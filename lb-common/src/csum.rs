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

/// Checksum field after replacing the 16-bit word `old` by `new` (RFC 1624 eqn. 3:
/// HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u32 + (!old) as u32 + new as u32)
}

/// Checksum field after replacing the 32-bit word `old` by `new`.
#[inline(always)]
pub const fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u32 + ((!old) & 0xffff) + ((!old) >> 16) + (new & 0xffff) + (new >> 16);
    !fold(sum)
}

/// Checksum field after replacing a whole (4-word) address.
#[inline(always)]
pub const fn replace_addr(check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    let c = replace32(check, old[0], new[0]);
    let c = replace32(c, old[1], new[1]);
    let c = replace32(c, old[2], new[2]);
    replace32(c, old[3], new[3])
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

    #[test]
    fn incremental_equals_full_recompute() {
        let mut rng = 0x1234_5678u32;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
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
