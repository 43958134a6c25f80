//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4), weighted as Katran does: in
//! each round a real claims as many preferred free slots as its weight. lb-ctl builds the
//! table; the data path only indexes it with the flow hash. Every director that sees the same
//! reals builds the same table, and removing one of N reals moves about 1/N of the slots.

use crate::addr::RawAddr;
use crate::consts::{MAX_TABLE_LEN, NO_REAL};
use crate::hash::addr_hash;
use std::vec;
use std::vec::Vec;

const OFFSET_SEED: u32 = 0x6d61_676f;
const SKIP_SEED: u32 = 0x6d61_6773;

/// One real as Maglev sees it: its identity (address, port) picks its permutation, so the
/// table does not depend on ids or on the order reals were added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Value written in the slots this real owns (its real id).
    pub id: u32,
    /// Real address.
    pub addr: RawAddr,
    /// Real port.
    pub port: u16,
    /// Relative weight; 0 takes no slot (quiescent).
    pub weight: u32,
}

/// Why a table cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// Maglev needs a prime table size so every skip generates a full permutation.
    NotPrime(u32),
    /// Table size outside 2..=MAX_TABLE_LEN.
    BadSize(u32),
}

impl core::fmt::Display for MaglevError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MaglevError::NotPrime(n) => write!(f, "Maglev table size {n} is not a prime"),
            MaglevError::BadSize(n) => {
                write!(f, "Maglev table size {n} is outside 2..={MAX_TABLE_LEN}")
            }
        }
    }
}

impl std::error::Error for MaglevError {}

/// True when `n` is prime (trial division; table sizes are at most 2^20).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Builds a table of `size` slots. Slots hold real ids; with no weighted real every slot is
/// [`NO_REAL`].
pub fn build(backends: &[Backend], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !(2..=MAX_TABLE_LEN).contains(&size) {
        return Err(MaglevError::BadSize(size));
    }
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    let m = size as u64;
    let mut table = vec![NO_REAL; size as usize];
    // Sort by identity so the result does not depend on the caller's order.
    let mut live: Vec<(Backend, u64, u64, u64)> = backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| {
            let offset = addr_hash(&b.addr, b.port, OFFSET_SEED) as u64 % m;
            let skip = addr_hash(&b.addr, b.port, SKIP_SEED) as u64 % (m - 1) + 1;
            (*b, offset, skip, 0u64)
        })
        .collect();
    if live.is_empty() {
        return Ok(table);
    }
    live.sort_by_key(|(b, ..)| (b.addr, b.port, b.id));
    let mut filled = 0u64;
    loop {
        for (b, offset, skip, next) in live.iter_mut() {
            for _ in 0..b.weight {
                // The permutation of a prime-sized table visits every slot within m steps,
                // so this finds a free slot while any is left.
                loop {
                    let slot = ((*offset + *next * *skip) % m) as usize;
                    *next += 1;
                    if table[slot] == NO_REAL {
                        table[slot] = b.id;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return Ok(table);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(i: u32, weight: u32) -> Backend {
        Backend {
            id: i,
            addr: [u32::from_ne_bytes([198, 18, 1, i as u8]), 0, 0, 0],
            port: 80,
            weight,
        }
    }

    fn shares(table: &[u32], n: u32) -> Vec<usize> {
        (0..n)
            .map(|i| table.iter().filter(|&&s| s == i).count())
            .collect()
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(build(&[], 65536), Err(MaglevError::NotPrime(65536)));
        assert_eq!(build(&[], 1), Err(MaglevError::BadSize(1)));
        assert!(is_prime(65537) && is_prime(251) && !is_prime(65535));
    }

    #[test]
    fn empty_or_all_quiescent_has_no_real() {
        let t = build(&[backend(0, 0)], 251).unwrap();
        assert!(t.iter().all(|&s| s == NO_REAL));
    }

    #[test]
    fn equal_weights_balance_within_one_slot() {
        let reals: Vec<_> = (0..7).map(|i| backend(i, 1)).collect();
        let t = build(&reals, 65537).unwrap();
        let s = shares(&t, 7);
        let (lo, hi) = (s.iter().min().unwrap(), s.iter().max().unwrap());
        assert!(hi - lo <= 1, "{s:?}");
        assert_eq!(s.iter().sum::<usize>(), 65537);
    }

    #[test]
    fn weights_are_proportional() {
        let reals = [backend(0, 1), backend(1, 2), backend(2, 3)];
        let t = build(&reals, 65537).unwrap();
        let s = shares(&t, 3);
        for (i, w) in [1.0, 2.0, 3.0].iter().enumerate() {
            let want = 65537.0 * w / 6.0;
            assert!((s[i] as f64 - want).abs() < 65537.0 * 0.001, "{s:?}");
        }
    }

    #[test]
    fn independent_of_input_order() {
        let a: Vec<_> = (0..5).map(|i| backend(i, 1 + i)).collect();
        let mut b = a.clone();
        b.reverse();
        assert_eq!(build(&a, 4093).unwrap(), build(&b, 4093).unwrap());
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [3u32, 5, 10, 50] {
            let all: Vec<_> = (0..n).map(|i| backend(i, 1)).collect();
            let before = build(&all, 65537).unwrap();
            let after = build(&all[..n as usize - 1], 65537).unwrap();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let share = moved as f64 / 65537.0;
            assert!(share <= 1.0 / n as f64 + 0.02, "n={n}: moved {share}");
            // Slots of the surviving reals mostly stay: at least the removed real's slots move.
            assert!(share >= 1.0 / n as f64 - 0.01, "n={n}: moved {share}");
        }
    }
}
