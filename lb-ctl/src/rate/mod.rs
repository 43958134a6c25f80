//! IPVS's rate estimator (net/netfilter/ipvs/ip_vs_est.c), the numbers `-L --rate` prints:
//! every [`RATE_TICK_S`] seconds each service's and each real's summed counters are
//! sampled and a moving average of their growth is kept, scaled to keep precision in
//! integers. Pure: the caller passes the counters in ([`tick`]) and reads the averages out
//! ([`read`]); the map I/O is `crate::maps::rate`, the thread that ticks is [`ticker`].
//!
//! The arithmetic is the kernel's, the same in the timer version (`estimation_timer`,
//! e.g. v5.15) and the kthread one (`ip_vs_chain_estimation`, v6.2+): per tick, for
//! connections and packets `rate = (now - last) << 9` (per 2 s, × 2^10 per second), for
//! bytes `rate = (now - last) << 4` (× 2^5 per second), then `avg += (rate - avg) >> 2`
//! with a signed (arithmetic) shift, all in wrapping 64-bit integers. The read-out
//! (`ip_vs_read_estimator`) rounds to nearest, a half down: `(avg + 0x1FF) >> 10`, `(avg + 0xF) >> 5`.

pub mod ticker;

use lb_common::Traffic;
use lb_common::consts::RATE_TICK_S;
use lb_common::rate::{RateState, ScaledRates};

/// Rates of a service or a real, as ipvsadm `--rate` prints them (IPVS's `ip_vs_kstats`
/// rate fields after `ip_vs_read_estimator`). Field names are docs/json.md's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rates {
    /// Connections per second (CPS).
    pub cps: u64,
    /// Packets in per second (InPPS).
    pub in_pps: u64,
    /// Packets out per second (OutPPS).
    pub out_pps: u64,
    /// Bytes in per second (InBPS).
    pub in_bps: u64,
    /// Bytes out per second (OutBPS).
    pub out_bps: u64,
}

/// `avg += (rate - avg) >> 2` as the kernel computes it: the difference as a signed 64-bit
/// value, shifted arithmetically, added back with wrap-around.
fn ewma(avg: u64, rate: u64) -> u64 {
    avg.wrapping_add(((rate as i64).wrapping_sub(avg as i64) >> 2) as u64)
}

/// Whether any counter is below its value at the last tick: the counters were zeroed
/// since (`-Z`, or the id given to a new service or real). 64-bit counters do not wrap in
/// practice (2^64 bytes is 46 years at 100 Gbit/s).
fn went_down(last: &Traffic, now: &Traffic) -> bool {
    now.conns < last.conns
        || now.in_packets < last.in_packets
        || now.out_packets < last.out_packets
        || now.in_bytes < last.in_bytes
        || now.out_bytes < last.out_bytes
}

/// One tick of the estimator `state` with the counters `now` (summed over CPUs).
/// `generation` is the real's `Real::generation` (0 for a service): an estimator kept for
/// another generation is another real's. Such a one, or one whose counters went down
/// since its last tick, restarts as a fresh one first (all zero, as IPVS allocates it, and
/// as `ip_vs_zero_stats` leaves it: rates 0, last = the zero point), so its first tick
/// counts what came since the counters were zeroed.
pub fn tick(state: &RateState, now: &Traffic, generation: u16) -> RateState {
    let base = if state.generation != generation || went_down(&state.last, now) {
        RateState::default()
    } else {
        *state
    };
    let (last, avg) = (&base.last, &base.avg);
    RateState {
        last: *now,
        avg: ScaledRates {
            cps: ewma(avg.cps, now.conns.wrapping_sub(last.conns) << 9),
            in_pps: ewma(
                avg.in_pps,
                now.in_packets.wrapping_sub(last.in_packets) << 9,
            ),
            out_pps: ewma(
                avg.out_pps,
                now.out_packets.wrapping_sub(last.out_packets) << 9,
            ),
            in_bps: ewma(avg.in_bps, now.in_bytes.wrapping_sub(last.in_bytes) << 4),
            out_bps: ewma(avg.out_bps, now.out_bytes.wrapping_sub(last.out_bytes) << 4),
        },
        generation,
        _pad: [0; 6],
    }
}

/// The rates an estimator shows (`ip_vs_read_estimator`: rounded to nearest, a half down).
pub fn read(state: &RateState) -> Rates {
    let pps = |v: u64| v.wrapping_add(0x1FF) >> 10;
    let bps = |v: u64| v.wrapping_add(0xF) >> 5;
    Rates {
        cps: pps(state.avg.cps),
        in_pps: pps(state.avg.in_pps),
        out_pps: pps(state.avg.out_pps),
        in_bps: bps(state.avg.in_bps),
        out_bps: bps(state.avg.out_bps),
    }
}

/// The tick period, as a `Duration`.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(RATE_TICK_S);

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters after `secs` seconds of a constant rate per second.
    fn traffic(secs: u64, cps: u64, pps: u64, bps: u64) -> Traffic {
        Traffic {
            conns: cps * secs,
            in_packets: pps * secs,
            in_bytes: bps * secs,
            out_packets: pps * secs / 2,
            out_bytes: bps * secs / 2,
        }
    }

    #[test]
    fn constant_rate_converges_as_the_kernels() {
        // 1000 packets/s in: 2000 per tick, rate = 2000 << 9 = 1,024,000. By hand from
        // avg += (rate - avg) >> 2, starting at 0: 256,000; 448,000; 592,000; 700,000;
        // 781,000; 841,750; 887,312 ((1,024,000 − 841,750) >> 2 = 45,562). Read out
        // (avg + 511) >> 10: 250, 437 (448,511 / 1024 = 437.99), 578, 684, 763, 822, 867.
        let want_avg = [
            256_000u64, 448_000, 592_000, 700_000, 781_000, 841_750, 887_312,
        ];
        let want_pps = [250u64, 437, 578, 684, 763, 822, 867];
        let mut s = RateState::default();
        for (i, (a, r)) in want_avg.iter().zip(want_pps).enumerate() {
            s = tick(&s, &traffic(2 * (i as u64 + 1), 0, 1000, 0), 0);
            assert_eq!(s.avg.in_pps, *a, "tick {}", i + 1);
            assert_eq!(read(&s).in_pps, r, "tick {}", i + 1);
        }
        // Long after: the avg stops within 3 of the rate (the shift floors), which reads as
        // exactly 1000.
        for i in 8..=60 {
            s = tick(&s, &traffic(2 * i, 0, 1000, 0), 0);
        }
        assert!(
            (1_023_997..=1_024_000).contains(&s.avg.in_pps),
            "{}",
            s.avg.in_pps
        );
        assert_eq!(read(&s).in_pps, 1000);
        assert_eq!(read(&s).out_pps, 500);
    }

    #[test]
    fn bytes_are_scaled_by_2_to_the_5() {
        // 1,000,000 bytes/s: 2,000,000 per tick, rate = 2,000,000 << 4 = 32,000,000;
        // first avg 8,000,000, read (8,000,000 + 15) >> 5 = 250,000.
        let s = tick(&RateState::default(), &traffic(2, 0, 0, 1_000_000), 0);
        assert_eq!(s.avg.in_bps, 8_000_000);
        assert_eq!(read(&s).in_bps, 250_000);
        assert_eq!(s.avg.out_bps, 4_000_000);
        assert_eq!(read(&s).out_bps, 125_000);
        // Rounding to nearest, an exact half down: bytes avg 16 (0.5) reads 0, 17 reads 1;
        // connections avg 512 (0.5) reads 0, 513 reads 1.
        let at = |cps: u64, in_bps: u64| {
            read(&RateState {
                avg: ScaledRates {
                    cps,
                    in_bps,
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        assert_eq!((at(0, 16).in_bps, at(0, 17).in_bps), (0, 1));
        assert_eq!((at(512, 0).cps, at(513, 0).cps), (0, 1));
    }

    #[test]
    fn a_burst_decays_by_three_quarters_a_tick() {
        // 100 connections in one tick, then none: rate 100 << 9 = 51,200.
        let mut s = tick(&RateState::default(), &traffic(1, 100, 0, 0), 0);
        assert_eq!(s.avg.cps, 12_800);
        assert_eq!(read(&s).cps, 12); // (12,800 + 511) >> 10 = 12.99, floored
        let now = traffic(1, 100, 0, 0);
        // avg += (0 − avg) >> 2 with an arithmetic shift: −3,200 → 9,600; −2,400 → 7,200;
        // −1,800 → 5,400.
        for (avg, cps) in [(9_600u64, 9u64), (7_200, 7), (5_400, 5)] {
            s = tick(&s, &now, 0);
            assert_eq!((s.avg.cps, read(&s).cps), (avg, cps));
        }
        // A negative difference not a multiple of 4 rounds toward −∞, as `>> 2` on s64:
        // avg 5 → 5 + (−5 >> 2) = 5 − 2 = 3.
        let five = RateState {
            last: now,
            avg: ScaledRates {
                cps: 5,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(tick(&five, &now, 0).avg.cps, 3);
        // And it never reaches 0 from 3 by itself: 3 + (−3 >> 2) = 3 − 1 = 2, 2 − 1 = 1,
        // 1 − 1 = 0.
        let mut t = tick(&five, &now, 0);
        for want in [2, 1, 0, 0] {
            t = tick(&t, &now, 0);
            assert_eq!(t.avg.cps, want);
        }
    }

    #[test]
    fn no_traffic_reads_zero() {
        let mut s = RateState::default();
        for _ in 0..5 {
            s = tick(&s, &Traffic::default(), 0);
        }
        assert_eq!(s, RateState::default());
        assert_eq!(read(&s), Rates::default());
    }

    #[test]
    fn counters_that_went_down_restart_the_estimate() {
        // Steady 1000 pps, then -Z zeroes the counters; 300 packets came since.
        let mut s = RateState::default();
        for i in 1..=10 {
            s = tick(&s, &traffic(2 * i, 10, 1000, 0), 0);
        }
        assert!(read(&s).in_pps > 900);
        let after = Traffic {
            in_packets: 300,
            ..Traffic::default()
        };
        let z = tick(&s, &after, 0);
        // As from a fresh estimator: rate 300 << 9 = 153,600, avg 38,400, reads
        // (38,400 + 511) >> 10 = 37.
        assert_eq!(z, tick(&RateState::default(), &after, 0));
        assert_eq!(z.avg.in_pps, 38_400);
        assert_eq!(
            read(&z),
            Rates {
                in_pps: 37,
                ..Rates::default()
            }
        );
        assert_eq!(z.last, after);
    }

    #[test]
    fn another_generation_starts_from_zero() {
        let mut s = RateState::default();
        for i in 1..=10 {
            s = tick(&s, &traffic(2 * i, 10, 1000, 100_000), 7);
        }
        assert_eq!(s.generation, 7);
        // The id now holds generation 8, whose counters (not zeroed yet, in a race with
        // -a) happen to be higher: still a fresh estimate, counting from 0.
        let now = traffic(100, 10, 1000, 100_000);
        let n = tick(&s, &now, 8);
        assert_eq!(n, tick(&RateState::default(), &now, 8));
        assert_eq!(n.generation, 8);
        assert_eq!(n.avg.in_pps, (100_000u64 << 9) >> 2);
    }

    #[test]
    fn extremes_wrap_as_the_kernels_u64() {
        // The kernel's u64/s64 arithmetic, computed independently in 128 bits, modulo 2^64.
        let kernel = |avg: u64, diff: u64, shift: u32| -> u64 {
            let rate = ((diff as u128) << shift) as u64;
            let d = (rate as i64 as i128) - (avg as i64 as i128);
            // (s64)rate - (s64)avg wraps in 64 bits before the shift.
            let d = d as i64 >> 2;
            ((avg as u128 + d as u64 as u128) & u64::MAX as u128) as u64
        };
        for (avg, diff) in [
            (0u64, u64::MAX),
            (u64::MAX, 0),
            (1 << 63, 1 << 55),
            (u64::MAX / 3, u64::MAX / 5),
            (12_345, 1 << 60),
        ] {
            let s = RateState {
                avg: ScaledRates {
                    cps: avg,
                    in_bps: avg,
                    ..Default::default()
                },
                ..Default::default()
            };
            let now = Traffic {
                conns: diff,
                in_bytes: diff,
                ..Traffic::default()
            };
            let t = tick(&s, &now, 0);
            assert_eq!(t.avg.cps, kernel(avg, diff, 9), "cps {avg} {diff}");
            assert_eq!(t.avg.in_bps, kernel(avg, diff, 4), "bps {avg} {diff}");
            // The read-out wraps too instead of panicking.
            let _ = read(&t);
        }
        assert_eq!(
            read(&RateState {
                avg: ScaledRates {
                    cps: u64::MAX,
                    ..Default::default()
                },
                ..Default::default()
            })
            .cps,
            0
        ); // (2^64 − 1 + 0x1FF) mod 2^64 = 0x1FE, >> 10
    }
}
