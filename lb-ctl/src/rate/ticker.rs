//! The thread of the resident process (`crate::sweeper`) that ticks the rate estimator
//! every [`super::TICK`] on a steady schedule: tick k is due at start + k × period,
//! however long the ticks or the process's expiry passes take (those run on the main
//! thread; a pass over 10^6 flows can take seconds). A tick that overran its period skips
//! the slots it missed rather than running late ones back to back: each tick's arithmetic
//! assumes one period since the previous tick.

use crate::maps::MapsError;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first tick slot (start + k × period, k ≥ 1) strictly after `now`.
pub fn next_slot(start: Instant, period: Duration, now: Instant) -> Instant {
    let elapsed = now.saturating_duration_since(start).as_nanos();
    let p = period.as_nanos().max(1);
    let k = elapsed / p + 1;
    // k × period fits a Duration for any process lifetime (u64 seconds).
    start + Duration::from_nanos(u64::try_from(k * p).unwrap_or(u64::MAX))
}

/// The running thread: it stops and is joined when this is dropped.
pub struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    errors: Receiver<MapsError>,
}

impl Ticker {
    /// Starts ticking the estimators of the lb pinned under `dir` every `period`, with
    /// `tick` (`crate::maps::rate::tick`, or a test's).
    pub fn start(
        dir: PathBuf,
        period: Duration,
        tick: fn(&std::path::Path) -> Result<(), MapsError>,
    ) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (report, errors) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lb-rate".into())
            .spawn(move || {
                let start = Instant::now();
                let mut due = start + period;
                loop {
                    // Woken early by the stop channel (closed when the Ticker is dropped).
                    match stopped.recv_timeout(due.saturating_duration_since(Instant::now())) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    if let Err(e) = tick(&dir)
                        && report.send(e).is_err()
                    {
                        return;
                    }
                    // Never the same slot twice, even if the wait ended a little early.
                    due = next_slot(start, period, Instant::now().max(due));
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
            errors,
        })
    }

    /// The ticks' errors since the last call (for the process's log).
    pub fn errors(&self) -> Vec<MapsError> {
        self.errors.try_iter().collect()
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn slots_are_multiples_of_the_period_from_start() {
        let t0 = Instant::now();
        let p = Duration::from_secs(2);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(next_slot(t0, p, t0), at(2000));
        assert_eq!(next_slot(t0, p, at(1999)), at(2000));
        // A tick that ends exactly on a slot waits for the next one.
        assert_eq!(next_slot(t0, p, at(2000)), at(4000));
        // A tick that took 0.3 s does not shift the schedule.
        assert_eq!(next_slot(t0, p, at(2300)), at(4000));
        // One that overran (ended at 7.1 s, slots 4 s and 6 s missed) resumes on the grid.
        assert_eq!(next_slot(t0, p, at(7100)), at(8000));
    }

    static TICKS: AtomicU32 = AtomicU32::new(0);

    fn count(_: &std::path::Path) -> Result<(), MapsError> {
        TICKS.fetch_add(1, Ordering::SeqCst);
        Err(MapsError::Cpus(std::io::Error::other("test")))
    }

    #[test]
    fn ticks_on_its_period_reports_errors_and_stops_when_dropped() {
        let t = Ticker::start(
            PathBuf::from("/nonexistent"),
            Duration::from_millis(50),
            count,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(275));
        let errors = t.errors();
        drop(t);
        let n = TICKS.load(Ordering::SeqCst);
        // Five slots in 275 ms (50, 100, ..., 250 ms), never more; a loaded machine may
        // run late and skip some.
        assert!((1..=5).contains(&n), "{n} ticks");
        assert!(errors.len() as u32 <= n && !errors.is_empty());
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(TICKS.load(Ordering::SeqCst), n, "no tick after the drop");
    }
}
