//! What lb-ctl writes for the data path to schedule a service, built here so both sides and
//! the tests share one definition (the kernel only indexes what userspace built).
//!
//! Contract (agreed between lb-ctl and lb-ebpf; docs/datapath.md has the per-packet side):
//! - **Reals list** (`Service::reals_base`, `reals_len`): every real of the service, weight
//!   0 included, in IPVS's `svc->destinations` order. IPVS adds a new destination at the
//!   head of that list (`list_add_rcu` in `__ip_vs_update_dest`), an edit keeps its place
//!   and a delete removes it, so the list is newest-first. At most
//!   [`crate::consts::MAX_REALS_PER_SERVICE`] entries. Load-driven schedulers (lc wlc sed nq
//!   fo ovf twos lblc lblcr) scan it in this order, as IPVS's `list_for_each_entry` does,
//!   and rr/wrr walk it as IPVS walks `svc->destinations`.
//! - **Table** (`table_base`, `table_len`), by scheduler:
//!   - `mh`: the Maglev table ([`crate::maglev`]), a prime number of slots.
//!   - `sh`: [`TAB_SIZE`] buckets filled as `ip_vs_sh_reassign` fills them ([`sh_table`]).
//!   - `dh`: [`TAB_SIZE`] buckets filled as `ip_vs_dh_reassign` fills them ([`dh_table`]).
//!   - every other scheduler: no table (`table_len` 0). That includes rr and wrr: the
//!     data path runs IPVS's own walk (`ip_vs_rr_schedule`, `ip_vs_wrr_schedule`) over
//!     the reals list, keeping its position per service, so it needs no table.
//!
//!   A table never holds [`crate::consts::NO_REAL`] except Maglev's with no weighted real,
//!   which lb-ctl does not publish (`table_len` 0 instead). `table_len` 0 for a
//!   table-driven scheduler means "no destination available".
//! - Both lists live in SCHED_TABLE, reals list first then the table, in one region that
//!   no live service points at; publishing is the single SERVICES update.

#[cfg(feature = "std")]
use std::vec::Vec;

pub mod pick;

/// Buckets of an sh or dh table (`IP_VS_SH_TAB_SIZE`, `IP_VS_DH_TAB_SIZE`: 1 << 8).
pub const TAB_SIZE: u32 = 1 << 8;

/// One real as the builders see it: its id and weight, given in IPVS list order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Real id (what the table slots hold).
    pub id: u32,
    /// Weight (`-w`).
    pub weight: u32,
}

/// The sh table, as `ip_vs_sh_reassign`: walking the list cyclically, each real fills as
/// many consecutive buckets as its weight, and at least one (IPVS moves on only once
/// `++count >= weight`, so a weight-0 real still gets a bucket; the scheduler then refuses
/// it, or sh-fallback looks further). Empty list → empty table.
#[cfg(feature = "std")]
pub fn sh_table(dests: &[Dest]) -> Vec<u32> {
    let mut t = Vec::new();
    if dests.is_empty() {
        return t;
    }
    let (mut p, mut count) = (0usize, 0u32);
    for _ in 0..TAB_SIZE {
        let d = dests[p];
        t.push(d.id);
        count += 1;
        if count >= d.weight {
            p = (p + 1) % dests.len();
            count = 0;
        }
    }
    t
}

/// The dh table, as `ip_vs_dh_reassign`: one bucket per real, cyclically, weights
/// ignored. Empty list → empty table.
#[cfg(feature = "std")]
pub fn dh_table(dests: &[Dest]) -> Vec<u32> {
    if dests.is_empty() {
        return Vec::new();
    }
    (0..TAB_SIZE as usize)
        .map(|i| dests[i % dests.len()].id)
        .collect()
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn dests(w: &[u32]) -> Vec<Dest> {
        w.iter()
            .enumerate()
            .map(|(i, &weight)| Dest {
                id: 10 + i as u32,
                weight,
            })
            .collect()
    }

    fn count(t: &[u32], id: u32) -> usize {
        t.iter().filter(|&&x| x == id).count()
    }

    #[test]
    fn sh_fills_by_weight_in_list_order() {
        let t = sh_table(&dests(&[1, 2, 3]));
        assert_eq!(t.len(), 256);
        assert_eq!(&t[..8], &[10, 11, 11, 12, 12, 12, 10, 11]);
        // 256 = 42 rounds of 6 + 4: [10, 11, 11, 12].
        assert_eq!((count(&t, 10), count(&t, 11), count(&t, 12)), (43, 86, 127));
        assert!(sh_table(&[]).is_empty());
    }

    #[test]
    fn sh_weight_zero_still_takes_one_bucket() {
        let t = sh_table(&dests(&[0, 1]));
        assert_eq!(&t[..4], &[10, 11, 10, 11]);
        assert_eq!(count(&t, 10), 128);
    }

    #[test]
    fn dh_ignores_weights() {
        let t = dh_table(&dests(&[5, 0, 1]));
        assert_eq!(t.len(), 256);
        assert_eq!(&t[..4], &[10, 11, 12, 10]);
        assert_eq!((count(&t, 10), count(&t, 11)), (86, 85));
        assert!(dh_table(&[]).is_empty());
    }
}
