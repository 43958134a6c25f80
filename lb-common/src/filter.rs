//! Address bit filters: one array lookup (inlined by the JIT, no helper call) tells the data
//! path that a destination is certainly not a VIP, so pass-through traffic skips every hash
//! lookup. A set bit only means "maybe": the hash lookup decides.

use crate::addr::RawAddr;
use crate::consts::FILTER_WORDS;
use crate::hash::addr_hash;

const FILTER_SEED: u32 = 0x6669_6c74;

/// (word index, bit mask) of an address in a filter of [`FILTER_WORDS`] u64 words.
#[inline(always)]
pub fn filter_slot(a: &RawAddr) -> (u32, u64) {
    let h = addr_hash(a, 0, FILTER_SEED);
    ((h >> 6) & (FILTER_WORDS - 1), 1u64 << (h & 63))
}
