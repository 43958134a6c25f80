//! The data path's clock as lb-ctl sees it (lb-common `clock`): started by `lb-ctl load`
//! (HZ measured once, CLOCK written), read back through `lb_ops` so the sweep and the
//! listings use the very seconds the data path stamps flows with, and fixed by tests.

use super::ops::Ops;
use super::{MapsError, open, open_opt, sys};
use aya::maps::{Array, MapData};
use lb_common::clock::{self, Clock};
use lb_common::consts::MAP_CLOCK;
use std::path::Path;
use std::time::{Duration, Instant};

fn err(source: aya::maps::MapError) -> MapsError {
    MapsError::Map {
        name: MAP_CLOCK,
        source,
    }
}

/// CLOCK as written (`None`: the object has no CLOCK).
pub fn read(dir: &Path) -> Result<Option<Clock>, MapsError> {
    let Some(m) = open_opt::<Array<MapData, Clock>>(dir, MAP_CLOCK)? else {
        return Ok(None);
    };
    m.get(&0, 0).map(Some).map_err(err)
}

/// Replaces CLOCK.
pub fn write(dir: &Path, c: &Clock) -> Result<(), MapsError> {
    let mut m: Array<MapData, Clock> = open(dir, MAP_CLOCK)?;
    m.set(0, c, 0).map_err(err)
}

/// Fixes the data path's time at `t` seconds (packet cases and scheduler tests drive time
/// with it; 0 lets jiffies run it again). Returns `t`.
pub fn set_fixed(dir: &Path, t: u32) -> Result<u32, MapsError> {
    let c = read(dir)?.unwrap_or_default();
    write(dir, &Clock { fixed_s: t, ..c })?;
    Ok(t)
}

/// The data path's seconds now: a fixed time, else what `lb_ops` reads.
pub fn now(dir: &Path) -> Result<u32, MapsError> {
    match read(dir)? {
        Some(c) if c.fixed_s != 0 => Ok(c.fixed_s),
        _ => Ok(Ops::open(dir)?.clock()?.now_s),
    }
}

/// Records that a sweep pass ended at `now` (for [`expiry_lag`]). Each pass writes the
/// whole CLOCK value back with only this field changed: the data path reads the same
/// `mult` and `base_j` before, during and after.
pub fn mark_swept(dir: &Path, now: u32) -> Result<(), MapsError> {
    if let Some(c) = read(dir)? {
        write(dir, &Clock { swept_s: now, ..c })?;
    }
    Ok(())
}

/// Seconds since the last sweep pass ended (or, before the first, since the clock
/// started), by the data path's clock: `None` when time is fixed by a test or the clock
/// is not started.
pub fn expiry_lag(dir: &Path) -> Result<Option<u32>, MapsError> {
    let Some(c) = read(dir)? else {
        return Ok(None);
    };
    if c.fixed_s != 0 || c.mult == 0 {
        return Ok(None);
    }
    let now = Ops::open(dir)?.clock()?.now_s;
    Ok(Some(now.saturating_sub(c.swept_s)))
}

/// How long [`start`] counts jiffies to measure HZ (the measure is retried, longer, if it
/// lands on no known HZ).
const HZ_MEASURE: Duration = Duration::from_millis(120);

/// Starts the clock on fresh maps (`lb-ctl load`): measures the kernel's HZ through
/// `lb_ops` and writes CLOCK so it reads CLOCK_MONOTONIC's seconds now. A started clock
/// (maps reused from an earlier load) is left alone. Returns a line for the operator when
/// it started the clock.
pub fn start(dir: &Path) -> Result<Option<String>, MapsError> {
    let c = read(dir)?.unwrap_or_default();
    if c.mult != 0 || c.fixed_s != 0 {
        return Ok(None);
    }
    let ops = Ops::open(dir)?;
    let mut wait = HZ_MEASURE;
    let mut last = (0, 0);
    for _ in 0..3 {
        let (j0, t0) = (ops.clock()?.jiffies, Instant::now());
        std::thread::sleep(wait);
        let j1 = ops.clock()?.jiffies;
        let elapsed = t0.elapsed();
        let ticks = j1.wrapping_sub(j0);
        if let Some(hz) = clock::snap_hz(ticks, elapsed.as_nanos() as u64) {
            let mono = sys::monotonic_s();
            // Expiry is "late" counting from the clock's start until the first pass.
            let started = Clock {
                swept_s: mono,
                ..clock::calibrated(hz, j1, mono)
            };
            write(dir, &started)?;
            return Ok(Some(format!(
                "clock: kernel HZ {hz} ({ticks} jiffies in {} ms); time runs in the kernel",
                elapsed.as_millis()
            )));
        }
        last = (ticks, elapsed.as_millis() as u64);
        wait *= 2;
    }
    Err(MapsError::Hz(last.0, last.1))
}
