//! Load-driven schedulers over the live counters: lc, wlc, sed, nq, fo, ovf, twos
//! (ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c, ip_vs_nq.c, ip_vs_fo.c, ip_vs_ovf.c,
//! ip_vs_twos.c). Each returns a list position.

use super::Dest;

/// `ip_vs_lc_schedule`: least `overhead` among dests not overloaded with weight ≠ 0;
/// ties keep the earlier one.
pub fn lc(dests: &[Dest]) -> Option<usize> {
    let mut least: Option<(usize, i64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if d.overloaded || d.weight == 0 {
            continue;
        }
        let doh = d.overhead();
        if least.is_none_or(|(_, loh)| doh < loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// The wlc/sed shape: the first dest not overloaded with weight > 0 starts; each later
/// dest not overloaded replaces it when `loh * w(dest) > doh * w(least)`.
fn weighted(dests: &[Dest], oh: impl Fn(&Dest) -> i64) -> Option<usize> {
    let first = dests.iter().position(|d| !d.overloaded && d.weight > 0)?;
    let (mut least, mut loh) = (first, oh(&dests[first]));
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.overloaded {
            continue;
        }
        let doh = oh(d);
        if loh * d.weight as i64 > doh * dests[least].weight as i64 {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// `ip_vs_wlc_schedule`.
pub fn wlc(dests: &[Dest]) -> Option<usize> {
    weighted(dests, Dest::overhead)
}

/// `ip_vs_sed_schedule`: overhead = activeconns + 1.
pub fn sed(dests: &[Dest]) -> Option<usize> {
    weighted(dests, |d| d.active as i64 + 1)
}

/// `ip_vs_nq_schedule`: an idle dest (no active connection) is taken at once; otherwise
/// as sed, over dests not overloaded with weight ≠ 0.
pub fn nq(dests: &[Dest]) -> Option<usize> {
    let mut least: Option<(usize, i64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if d.overloaded || d.weight == 0 {
            continue;
        }
        let doh = d.active as i64 + 1;
        if d.active == 0 {
            return Some(i);
        }
        let better = match least {
            None => true,
            Some((l, loh)) => loh * d.weight as i64 > doh * dests[l].weight as i64,
        };
        if better {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// `ip_vs_fo_schedule`: the highest weight among dests not overloaded (first on ties).
pub fn fo(dests: &[Dest]) -> Option<usize> {
    let mut best: Option<(usize, i32)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.overloaded && d.weight > best.map_or(0, |(_, w)| w) {
            best = Some((i, d.weight));
        }
    }
    best.map(|(i, _)| i)
}

/// `ip_vs_ovf_schedule`: the highest weight among dests not overloaded, with weight ≠ 0
/// and no more active connections than their weight (first on ties).
pub fn ovf(dests: &[Dest]) -> Option<usize> {
    let mut best: Option<(usize, i32)> = None;
    for (i, d) in dests.iter().enumerate() {
        let w = d.weight;
        if d.overloaded || d.active as i64 > w as i64 || w == 0 {
            continue;
        }
        if best.is_none_or(|(_, hw)| w > hw) {
            best = Some((i, w));
        }
    }
    best.map(|(i, _)| i)
}

/// `ip_vs_twos_schedule` with the two random numbers given.
pub fn twos(dests: &[Dest], (r1, r2): (u32, u32)) -> Option<usize> {
    let ok = |d: &Dest| !d.overloaded && d.weight > 0;
    let total: i64 = dests
        .iter()
        .filter(|d| ok(d))
        .map(|d| d.weight as i64)
        .sum();
    let mut choice1 = dests.iter().rposition(ok)?;
    let total = total + 1;
    let (mut rw1, mut rw2) = ((r1 as i64) % total, (r2 as i64) % total);
    // (list position, weight, overhead) of each pick.
    type Pick = Option<(usize, i64, i64)>;
    let (mut c1, mut c2): (Pick, Pick) = (None, None);
    for (i, d) in dests.iter().enumerate() {
        if !ok(d) {
            continue;
        }
        rw1 -= d.weight as i64;
        rw2 -= d.weight as i64;
        if rw1 <= 0 && c1.is_none() {
            c1 = Some((i, d.weight as i64, d.overhead()));
        }
        if rw2 <= 0 && c2.is_none() {
            c2 = Some((i, d.weight as i64, d.overhead()));
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    let (w1, oh1) = match c1 {
        Some((i, w, oh)) => {
            choice1 = i;
            (w, oh)
        }
        None => (-1, 0),
    };
    if let Some((i, w2, oh2)) = c2
        && w2 * oh1 > w1 * oh2
    {
        choice1 = i;
    }
    Some(choice1)
}

/// Every real twos may pick for some pair of random numbers: the valid set a program's
/// (random) choice must fall in.
pub fn twos_valid(dests: &[Dest]) -> Vec<usize> {
    let total: u32 = dests
        .iter()
        .filter(|d| !d.overloaded && d.weight > 0)
        .map(|d| d.weight as u32)
        .sum();
    let mut v = Vec::new();
    for r1 in 0..=total {
        for r2 in 0..=total {
            if let Some(i) = twos(dests, (r1, r2))
                && !v.contains(&i)
            {
                v.push(i);
            }
        }
    }
    v.sort_unstable();
    v
}
