//! Scheduler tables: building a service's Maglev table and finding room for it in the
//! shared SCHED_TABLE array.
//!
//! SCHED_TABLE holds the tables of all services back to back; a service's `Service` value
//! says where its table is (`table_base`, `table_len`). The free space is whatever no
//! service's region covers, so it is derived from SERVICES on every run and never stored.
//! A new table always goes into free space, never over the region a live service points
//! at; publishing it is one SERVICES update (see docs/datapath.md), after which the old
//! region is free again.

use crate::ipvs::model::ModelError;
use lb_common::consts::SCHED_TABLE_SLOTS;
use lb_common::maglev::{self, Backend};
use lb_common::sched::{self, Dest};
use lb_common::{Real, SchedKind};

/// A region of SCHED_TABLE: first slot and length.
pub(crate) type Region = (u32, u32);

/// The first free run of `len` slots in a table of `total` slots, given the regions in use
/// (in any order; empty regions are ignored). First fit keeps tables packed at the start.
pub(crate) fn alloc_region(in_use: &[Region], len: u32, total: u32) -> Option<u32> {
    let mut used: Vec<Region> = in_use.iter().copied().filter(|&(_, l)| l > 0).collect();
    used.sort_unstable();
    let mut next_free: u64 = 0;
    for (base, l) in used {
        if u64::from(base) >= next_free + u64::from(len) {
            break;
        }
        next_free = next_free.max(u64::from(base) + u64::from(l));
    }
    (next_free + u64::from(len) <= u64::from(total)).then_some(next_free as u32)
}

/// The scheduler table of a service (lb_common::sched has the contract) from its reals
/// in IPVS order; empty = `table_len` 0 (no table, or no destination available). Only
/// mh, sh and dh have one: rr, wrr and the load-driven schedulers walk the reals list.
pub(crate) fn build(
    kind: SchedKind,
    reals: &[(u32, Real)],
    mh_size: u32,
) -> Result<Vec<u32>, ModelError> {
    let dests: Vec<Dest> = reals
        .iter()
        .map(|(id, r)| Dest {
            id: *id,
            weight: r.weight,
        })
        .collect();
    Ok(match kind {
        SchedKind::Maglev => build_maglev(reals, mh_size)?.unwrap_or_default(),
        SchedKind::Sh => sched::sh_table(&dests),
        SchedKind::Dh => sched::dh_table(&dests),
        _ => Vec::new(),
    })
}

/// Builds the Maglev table of a service from its reals (id, real). `None` when no real has
/// a weight: the service then gets `table_len` 0 (the data path drops `NoReal`) and uses no
/// space.
pub(crate) fn build_maglev(
    reals: &[(u32, Real)],
    size: u32,
) -> Result<Option<Vec<u32>>, ModelError> {
    let backends: Vec<Backend> = reals
        .iter()
        .map(|(id, r)| Backend {
            id: *id,
            addr: r.addr,
            port: r.port.to_host(),
            weight: r.weight,
        })
        .collect();
    if backends.iter().all(|b| b.weight == 0) {
        return Ok(None);
    }
    Ok(Some(maglev::build(&backends, size)?))
}

/// Finds room for a table of `len` slots, given every service's current region.
pub(crate) fn place(in_use: &[Region], len: u32) -> Result<u32, ModelError> {
    alloc_region(in_use, len, SCHED_TABLE_SLOTS).ok_or(ModelError::NoTableSpace(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::consts::DEFAULT_MAGLEV_SIZE;

    #[test]
    fn empty_table_starts_at_zero() {
        assert_eq!(alloc_region(&[], 10, 100), Some(0));
        assert_eq!(alloc_region(&[(0, 0), (5, 0)], 10, 100), Some(0));
    }

    #[test]
    fn first_fit_between_regions() {
        // [0,10) used, [10,20) free, [20,30) used.
        let used = [(20, 10), (0, 10)];
        assert_eq!(alloc_region(&used, 10, 100), Some(10));
        assert_eq!(alloc_region(&used, 11, 100), Some(30));
        assert_eq!(alloc_region(&used, 70, 100), Some(30));
        assert_eq!(alloc_region(&used, 71, 100), None);
    }

    #[test]
    fn never_overlaps_a_live_region() {
        // A service being rebuilt still owns its region: the new one must go elsewhere.
        let used = [(0, 7)];
        assert_eq!(alloc_region(&used, 7, 14), Some(7));
        assert_eq!(alloc_region(&used, 7, 13), None);
    }

    #[test]
    fn overlapping_or_nested_regions_are_tolerated() {
        let used = [(0, 10), (2, 3), (5, 10)];
        assert_eq!(alloc_region(&used, 5, 100), Some(15));
    }

    #[test]
    fn full_size_tables_fit_64_services() {
        let n = DEFAULT_MAGLEV_SIZE;
        let mut used = Vec::new();
        for i in 0..(SCHED_TABLE_SLOTS / n) {
            let base = place(&used, n).unwrap();
            assert_eq!(base, i * n);
            used.push((base, n));
        }
        assert!(matches!(place(&used, n), Err(ModelError::NoTableSpace(_))));
    }

    #[test]
    fn mh_disruption_when_one_real_leaves() {
        use lb_common::addr::convert;
        for n in [3u32, 5, 10, 20] {
            let reals: Vec<(u32, Real)> = (0..n)
                .map(|i| {
                    let ip = format!("198.18.1.{}", 10 + i).parse().unwrap();
                    let r = Real {
                        addr: convert::to_raw(ip).0,
                        weight: 1,
                        ..Default::default()
                    };
                    (i, r)
                })
                .collect();
            let before = build(SchedKind::Maglev, &reals, DEFAULT_MAGLEV_SIZE).unwrap();
            // IPVS order is newest first; the table must not depend on it.
            let mut rev = reals.clone();
            rev.reverse();
            assert_eq!(
                build(SchedKind::Maglev, &rev, DEFAULT_MAGLEV_SIZE).unwrap(),
                before
            );
            let gone = n / 2;
            let rest: Vec<(u32, Real)> =
                reals.iter().copied().filter(|(i, _)| *i != gone).collect();
            let after = build(SchedKind::Maglev, &rest, DEFAULT_MAGLEV_SIZE).unwrap();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let share = moved as f64 / before.len() as f64;
            // Maglev is near-minimal, not minimal: a few slots move between survivors.
            let extra = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| a != b && **a != gone)
                .count();
            eprintln!(
                "mh n={n}: {share:.4} of slots moved (1/n = {:.4}), {extra} between survivors",
                1.0 / n as f64
            );
            assert!(share <= 1.0 / n as f64 + 0.02, "n={n}: {share}");
        }
    }

    #[test]
    fn all_quiescent_has_no_table() {
        let mut r = Real {
            weight: 0,
            ..Default::default()
        };
        assert_eq!(build_maglev(&[(3, r)], DEFAULT_MAGLEV_SIZE).unwrap(), None);
        r.weight = 1;
        let t = build_maglev(&[(3, r)], DEFAULT_MAGLEV_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(t.len(), DEFAULT_MAGLEV_SIZE as usize);
        assert!(t.iter().all(|&s| s == 3));
    }
}
