//! The list-walking schedulers: rr (ip_vs_rr.c) and wrr (ip_vs_wrr.c).

use super::Dest;

fn usable(d: &Dest) -> bool {
    !d.overloaded && d.weight > 0
}

/// `ip_vs_rr_schedule`: from the dest after the last pick (the head at first), the next
/// dest that is not overloaded and has weight > 0, wrapping once; the pick becomes the
/// new position. Nothing usable → None (position unchanged).
pub fn rr(dests: &[Dest], cur: &mut Option<usize>) -> Option<usize> {
    let n = dests.len();
    if n == 0 {
        return None;
    }
    let start = cur.map_or(0, |c| c + 1);
    // From the head: one pass over the list; from a dest: to the end, then from the head
    // up to and including that dest.
    for k in 0..n {
        let i = (start + k) % n;
        if usable(&dests[i]) {
            *cur = Some(i);
            return Some(i);
        }
    }
    None
}

/// The wrr mark (`struct ip_vs_wrr_mark`): `cl` is the list position of the last pick,
/// `None` for the list head.
#[derive(Clone, Debug, Default)]
pub struct WrrMark {
    /// Current dest (None = head).
    pub cl: Option<usize>,
    /// Current weight.
    pub cw: i32,
    /// Maximum weight, reduced by di - 1.
    pub mw: i32,
    /// Weight step: gcd of the positive weights.
    pub di: i32,
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl WrrMark {
    /// `ip_vs_wrr_init_svc`.
    pub fn init(dests: &[Dest]) -> WrrMark {
        let mut m = WrrMark::default();
        m.di = gcd_weight(dests);
        m.mw = max_weight(dests) - (m.di - 1);
        m.cw = m.mw;
        m
    }

    /// `ip_vs_wrr_dest_changed`: back to the head, weights re-read.
    pub fn dest_changed(&mut self, dests: &[Dest]) {
        self.cl = None;
        self.di = gcd_weight(dests);
        self.mw = max_weight(dests) - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    /// `ip_vs_wrr_schedule`.
    pub fn schedule(&mut self, dests: &[Dest]) -> Option<usize> {
        if self.mw == 0 {
            return None;
        }
        let n = dests.len();
        // Positions are 0..n, the head is n (like the list head in the kernel's circular
        // list); `dest` walks it.
        let head = n;
        let mut dest = self.cl.unwrap_or(head);
        let last = dest;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            // list_for_each_entry_continue: from the entry after `dest` to the end.
            let mut i = if dest == head { 0 } else { dest + 1 };
            while i < n {
                let d = &dests[i];
                if !d.overloaded && d.weight >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if Some(i) == stop {
                    self.cl = Some(i);
                    return None;
                }
                i += 1;
            }
            dest = head;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last == head {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last != head {
                stop = Some(last);
            }
        }
    }
}

fn gcd_weight(dests: &[Dest]) -> i32 {
    let mut g = 0;
    for d in dests {
        if d.weight > 0 {
            g = if g > 0 { gcd(d.weight, g) } else { d.weight };
        }
    }
    if g > 0 { g } else { 1 }
}

fn max_weight(dests: &[Dest]) -> i32 {
    dests.iter().map(|d| d.weight).fold(0, i32::max)
}

/// One full wrr cycle from a fresh mark with no overload: what lb-ctl writes as the wrr
/// sequence (list positions).
pub fn wrr_cycle(dests: &[Dest]) -> Vec<usize> {
    let mut m = WrrMark::init(dests);
    let total: i32 = dests.iter().map(|d| d.weight.max(0)).sum();
    let g = gcd_weight(dests);
    let len = (total / g.max(1)) as usize;
    (0..len).filter_map(|_| m.schedule(dests)).collect()
}
