//! The data path's clock: seconds from the kernel's jiffies, so time moves whatever
//! userspace does (docs/design.md "Time").
//!
//! `bpf_jiffies64` is inlined by the verifier into two instructions (a load of `jiffies`),
//! where `bpf_ktime_get_coarse_ns` is a real helper call (~3 ns more per established
//! packet, measured with `bench --compare`). Jiffies tick at the kernel's `HZ`, which BPF
//! cannot read, so `lb-ctl load` measures it once ([`snap_hz`]) and writes a [`Clock`]:
//! the data path turns jiffies into seconds with one multiply and one shift ([`seconds`]);
//! lb-ctl reads the same seconds back through the `lb_ops` program, so both sides share
//! one clock and nothing is ever rebased.
//!
//! Tests pin time by hand with [`Clock::fixed_s`].

use bytemuck::{Pod, Zeroable};

/// The `CLOCK` map's one value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Clock {
    /// Nonzero: the time is this, in seconds, whatever jiffies say (packet cases and
    /// scheduler tests set it; `lb-ctl load` never does).
    pub fixed_s: u32,
    /// `floor(2^32 / HZ)`: seconds = `(jiffies - base_j) * mult >> 32`. 0 until lb-ctl
    /// has measured HZ: the clock then reads 0.
    pub mult: u32,
    /// The jiffies value that was second 0: chosen at load so the clock reads the
    /// seconds of CLOCK_MONOTONIC then (flows stamped by an older lb, from
    /// CLOCK_MONOTONIC, keep their age across an upgrade).
    pub base_j: u64,
    /// The clock's seconds when `lb-ctl sweep` last finished a pass (0: never), for the
    /// `-L` warning that expiry is not running. Only lb-ctl reads and writes it.
    pub swept_s: u32,
    /// Padding, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Clock>() == 24);

/// Seconds of `clock` at `jiffies` (see [`Clock`]). Wraps after 2^32 s (136 years);
/// `(jiffies - base_j) * mult` stays below 2^64 for as long (`mult` < 2^32 / HZ).
#[inline(always)]
pub fn seconds(clock: &Clock, jiffies: u64) -> u32 {
    if clock.fixed_s != 0 {
        return clock.fixed_s;
    }
    (jiffies
        .wrapping_sub(clock.base_j)
        .wrapping_mul(clock.mult as u64)
        >> 32) as u32
}

/// `mult` for a kernel ticking at `hz`.
pub const fn mult_for(hz: u32) -> u32 {
    ((1u64 << 32) / hz as u64) as u32
}

/// The `HZ` values Linux is built with (CONFIG_HZ choices across architectures).
pub const KNOWN_HZ: [u32; 8] = [24, 32, 48, 100, 128, 250, 300, 1000];

/// The kernel's HZ from `ticks` jiffies counted over `elapsed_ns`: the nearest of
/// [`KNOWN_HZ`], if the measure is within 10 % of it (`None`: too short a measure or an
/// unknown HZ; measure longer).
pub fn snap_hz(ticks: u64, elapsed_ns: u64) -> Option<u32> {
    // Ticks per second, in thousandths, integer only (no_std).
    let elapsed_us = elapsed_ns / 1000;
    if elapsed_us == 0 {
        return None;
    }
    let milli_hz = ticks.saturating_mul(1_000_000_000) / elapsed_us;
    let near = KNOWN_HZ
        .iter()
        .copied()
        .min_by_key(|&hz| (hz as u64 * 1000).abs_diff(milli_hz))?;
    let off = (near as u64 * 1000).abs_diff(milli_hz);
    (off * 10 <= near as u64 * 1000).then_some(near)
}

/// The clock for a kernel at `hz`, whose jiffies were `jiffies` when CLOCK_MONOTONIC read
/// `mono_s` seconds: it reads `mono_s` then and advances one second per `hz` jiffies.
pub fn calibrated(hz: u32, jiffies: u64, mono_s: u32) -> Clock {
    let mult = mult_for(hz);
    // The fewest ticks back from `jiffies` that read `mono_s`: mult rounds 2^32/HZ down,
    // so mono_s * HZ ticks could read one second short.
    let back = ((mono_s as u64) << 32).div_ceil(mult as u64);
    Clock {
        fixed_s: 0,
        mult,
        base_j: jiffies.wrapping_sub(back),
        swept_s: 0,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's INITIAL_JIFFIES on 64-bit: (u32)(-300 * HZ).
    fn initial_jiffies(hz: u32) -> u64 {
        (0u32.wrapping_sub(300 * hz)) as u64
    }

    #[test]
    fn fixed_time_wins() {
        let c = Clock {
            fixed_s: 77,
            ..calibrated(250, 5_000_000_000, 1000)
        };
        assert_eq!(seconds(&c, 9_999_999_999), 77);
    }

    #[test]
    fn uncalibrated_clock_reads_zero() {
        assert_eq!(seconds(&Clock::default(), 123_456_789), 0);
    }

    #[test]
    fn calibrated_clock_reads_monotonic_then_and_one_second_per_hz_ticks() {
        for hz in KNOWN_HZ {
            for mono in [0u32, 1, 59, 86_400, 31_536_000] {
                let j0 =
                    initial_jiffies(hz).wrapping_add(mono as u64 * hz as u64 + 300 * hz as u64);
                let c = calibrated(hz, j0, mono);
                assert_eq!(seconds(&c, j0), mono, "hz {hz} mono {mono}");
                // A year later, within 3 s (mult rounds 2^32/HZ down: at most 7e-8 slow).
                let year = 31_536_000u64;
                let later = seconds(&c, j0 + year * hz as u64);
                assert!(
                    (mono as u64 + year).abs_diff(later as u64) <= 3,
                    "hz {hz}: {later} a year after {mono}"
                );
                // Whole seconds: hz ticks later is exactly one more (or the same second
                // if mult's rounding has not yet caught up, never two).
                let next = seconds(&c, j0 + hz as u64);
                assert!(next == mono + 1 || next == mono, "hz {hz}: {next}");
            }
        }
    }

    #[test]
    fn no_overflow_for_a_century_at_1000_hz() {
        let c = calibrated(1000, initial_jiffies(1000), 0);
        let century = 100 * 31_536_000u64;
        let s = seconds(&c, initial_jiffies(1000) + century * 1000);
        assert!((century).abs_diff(s as u64) <= 100 * 3, "{s}");
    }

    #[test]
    fn hz_snaps_to_the_kernel_choices() {
        // 200 ms at 250 Hz: 50 ticks, ±1 of tick phase.
        for ticks in 49..=51 {
            assert_eq!(snap_hz(ticks, 200_000_000), Some(250));
        }
        assert_eq!(snap_hz(60, 200_000_000), Some(300));
        assert_eq!(snap_hz(20, 200_000_000), Some(100));
        assert_eq!(snap_hz(200, 200_000_000), Some(1000));
        // 1000 Hz against a 199 ms sleep that really lasted 200 ms.
        assert_eq!(snap_hz(201, 200_000_000), Some(1000));
        // Nothing near a known HZ, or no time measured.
        assert_eq!(snap_hz(140, 200_000_000), None);
        assert_eq!(snap_hz(5, 0), None);
    }
}
