//! What lb-ctl writes for the data path to schedule a service, built here so both sides and
//! the tests share one definition (the kernel only indexes what userspace built).
//!
//! Contract (agreed between lb-ctl and lb-ebpf; docs/datapath.md has the per-packet side):
//! - **Reals list** (`Service::reals_base`, `reals_len`): every real of the service, weight
//!   0 included, in IPVS's `svc->destinations` order. IPVS adds a new destination at the
//!   head of that list (`list_add_rcu` in `__ip_vs_update_dest`), an edit keeps its place
//!   and a delete removes it, so the list is newest-first. At most
//!   [`crate::consts::MAX_REALS_PER_SERVICE`] entries. Load-driven schedulers (lc wlc sed nq
//!   fo ovf twos lblc lblcr) scan it in this order, as IPVS's `list_for_each_entry` does.
//! - **Table** (`table_base`, `table_len`), by scheduler:
//!   - `mh`: the Maglev table ([`crate::maglev`]), a prime number of slots.
//!   - `sh`: [`TAB_SIZE`] buckets filled as `ip_vs_sh_reassign` fills them ([`sh_table`]).
//!   - `dh`: [`TAB_SIZE`] buckets filled as `ip_vs_dh_reassign` fills them ([`dh_table`]).
//!   - `rr`: the reals with weight > 0 in list order ([`rr_sequence`]); the data path takes
//!     entry `cursor % table_len` and steps over overloaded reals.
//!   - `wrr`: one full period of `ip_vs_wrr_schedule` from a fresh mark ([`wrr_sequence`]).
//!   - load-driven schedulers: no table (`table_len` 0).
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

/// The rr sequence: reals with weight > 0, in list order (`ip_vs_rr_schedule` skips
/// weight-0 and overloaded reals; overload is the data path's to check).
#[cfg(feature = "std")]
pub fn rr_sequence(dests: &[Dest]) -> Vec<u32> {
    dests
        .iter()
        .filter(|d| d.weight > 0)
        .map(|d| d.id)
        .collect()
}

#[cfg(feature = "std")]
fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The wrr sequence: what `ip_vs_wrr_schedule` returns, pick after pick, from a fresh
/// mark (`cl` = list head, `cw` = `mw`) with no real overloaded, over one period. With
/// `di` = gcd of the positive weights and `mw` = max weight − (di − 1), pass k (cw = mw −
/// k·di, while cw > 0) takes, in list order, every real with weight ≥ cw. The passes are
/// cw = 1, di + 1, 2·di + 1, …, mw, so a real of weight w appears w/di times per period:
/// the shares are exactly the weights. Empty when no weight is positive.
///
/// Differences from IPVS: the sequence restarts at its first entry after a change of the
/// real set (IPVS resumes from its current `cw`, rounded); an overloaded real is stepped
/// over to the next entry of the sequence (IPVS keeps searching the same pass).
#[cfg(feature = "std")]
pub fn wrr_sequence(dests: &[Dest]) -> Vec<u32> {
    let di = dests
        .iter()
        .filter(|d| d.weight > 0)
        .fold(0, |g, d| gcd(d.weight, g));
    let max = dests.iter().map(|d| d.weight).max().unwrap_or(0);
    if di == 0 {
        return Vec::new();
    }
    let mw = max - (di - 1);
    let mut seq = Vec::new();
    let mut cw = mw as i64;
    while cw > 0 {
        seq.extend(
            dests
                .iter()
                .filter(|d| i64::from(d.weight) >= cw)
                .map(|d| d.id),
        );
        cw -= i64::from(di);
    }
    seq
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::vec;

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

    #[test]
    fn rr_skips_weight_zero() {
        assert_eq!(rr_sequence(&dests(&[1, 0, 7])), vec![10, 12]);
        assert!(rr_sequence(&dests(&[0])).is_empty());
    }

    /// `ip_vs_wrr_schedule` with no overload, transcribed with the list as a ring whose
    /// head is index `n` (the reference the sequence must equal).
    fn ipvs_wrr(d: &[Dest], picks: usize) -> Vec<u32> {
        let di = d
            .iter()
            .filter(|d| d.weight > 0)
            .fold(0, |g, d| gcd(d.weight, g));
        let di = if di == 0 { 1 } else { di } as i64;
        let mw = d.iter().map(|d| d.weight as i64).max().unwrap_or(0) - (di - 1);
        let n = d.len();
        let (mut cl, mut cw) = (n, mw);
        let mut out = Vec::new();
        'pick: for _ in 0..picks {
            if mw == 0 {
                break;
            }
            let mut p = cl;
            loop {
                p = if p == n { 0 } else { p + 1 };
                if p == n {
                    cw -= di;
                    if cw <= 0 {
                        cw = mw;
                    }
                    continue;
                }
                if i64::from(d[p].weight) >= cw {
                    cl = p;
                    out.push(d[p].id);
                    continue 'pick;
                }
            }
        }
        out
    }

    #[test]
    fn wrr_equals_ipvs_over_periods() {
        for w in [
            vec![1, 2, 3],
            vec![4, 2],
            vec![3, 0, 3],
            vec![5],
            vec![2, 4, 6, 9],
            vec![100, 1],
            vec![0, 7, 14],
        ] {
            let d = dests(&w);
            let seq = wrr_sequence(&d);
            let total: u32 = w.iter().sum();
            let di = w.iter().filter(|&&x| x > 0).fold(0, |g, &x| gcd(x, g));
            assert_eq!(seq.len() as u32, total / di, "{w:?}");
            for (i, &wi) in w.iter().enumerate() {
                assert_eq!(count(&seq, 10 + i as u32) as u32, wi / di, "{w:?}");
            }
            let reference = ipvs_wrr(&d, seq.len() * 3);
            let repeated: Vec<u32> = seq.iter().cycle().take(seq.len() * 3).copied().collect();
            assert_eq!(repeated, reference, "{w:?}");
        }
    }

    #[test]
    fn wrr_example_and_empty() {
        // Weights 1,2,3 → di 1, mw 3: passes w≥3, w≥2, w≥1.
        assert_eq!(
            wrr_sequence(&dests(&[1, 2, 3])),
            vec![12, 11, 12, 10, 11, 12]
        );
        assert!(wrr_sequence(&dests(&[0, 0])).is_empty());
        assert!(wrr_sequence(&[]).is_empty());
    }
}
