//! The rate estimator's maps (SVC_RATE, REAL_RATE): one tick over every service and real
//! ([`tick`]), and the rates a listing shows. The arithmetic is `crate::rate`'s. Only the
//! resident process ticks; listings only read, `-Z` and a reused id zero an entry
//! (`Maps::apply`). An lb loaded by a build without these maps has no rates: ticks do
//! nothing and listings show zeros.

use super::{Maps, MapsError, err, open_opt, read_array};
use crate::rate::{self, Rates};
use aya::maps::{Array, MapData};
use lb_common::Real;
use lb_common::consts::{MAP_REAL_RATE, MAP_SERVICES, MAP_SVC_RATE};
use lb_common::rate::RateState;
use std::path::Path;

/// The estimator arrays, when the pinned object has them.
pub(super) struct RateMaps {
    pub(super) svc: Array<MapData, RateState>,
    pub(super) real: Array<MapData, RateState>,
}

impl RateMaps {
    /// Opens both, or `None` when the object predates them.
    pub(super) fn open(dir: &Path) -> Result<Option<RateMaps>, MapsError> {
        let svc = open_opt(dir, MAP_SVC_RATE)?;
        let real = open_opt(dir, MAP_REAL_RATE)?;
        Ok(svc.zip(real).map(|(svc, real)| RateMaps { svc, real }))
    }
}

/// One tick of every service's and every real's estimator, with their counters now (the
/// lb pinned under `dir`). Not under the pin directory's lock: a command's `-Z` racing a
/// tick may see its zeroed entry written over with the tick's, and the next tick then
/// finds the counters went down and restarts the estimate (`rate::tick`).
pub fn tick(dir: &Path) -> Result<(), MapsError> {
    let mut maps = Maps::open(dir)?;
    let Some(RateMaps { mut svc, mut real }) = maps.rates.take() else {
        return Ok(());
    };
    for r in maps.services.iter() {
        let (_, s) = r.map_err(err(MAP_SERVICES))?;
        let now = maps.svc_traffic(s.id)?;
        let old = svc.get(&s.id, 0).map_err(err(MAP_SVC_RATE))?;
        svc.set(s.id, rate::tick(&old, &now, 0), 0)
            .map_err(err(MAP_SVC_RATE))?;
    }
    let zero = Real::default();
    for (id, r) in read_array(&maps.reals, lb_common::consts::MAP_REALS)? {
        if r == zero {
            continue;
        }
        let now = maps.real_traffic(id)?;
        let old = real.get(&id, 0).map_err(err(MAP_REAL_RATE))?;
        real.set(id, rate::tick(&old, &now, r.generation), 0)
            .map_err(err(MAP_REAL_RATE))?;
    }
    Ok(())
}

impl Maps {
    /// A service's rates (zero when the object keeps none).
    pub fn svc_rates(&self, id: u32) -> Result<Rates, MapsError> {
        let Some(rm) = &self.rates else {
            return Ok(Rates::default());
        };
        Ok(rate::read(&rm.svc.get(&id, 0).map_err(err(MAP_SVC_RATE))?))
    }

    /// The rates of the real at `id` (zero when the object keeps none, or while the entry
    /// is still an earlier real's of that id: `generation` is the real's).
    pub fn real_rates(&self, id: u32, generation: u16) -> Result<Rates, MapsError> {
        let Some(rm) = &self.rates else {
            return Ok(Rates::default());
        };
        let s = rm.real.get(&id, 0).map_err(err(MAP_REAL_RATE))?;
        Ok(if s.generation == generation {
            rate::read(&s)
        } else {
            Rates::default()
        })
    }

    /// Restarts a service's estimator (`-Z`, a reused id): as `ip_vs_zero_estimator`
    /// after the counters are zeroed.
    pub(super) fn zero_svc_rate(&mut self, id: u32) -> Result<(), MapsError> {
        if let Some(rm) = &mut self.rates {
            rm.svc
                .set(id, RateState::default(), 0)
                .map_err(err(MAP_SVC_RATE))?;
        }
        Ok(())
    }

    /// Restarts a real's estimator, as [`Maps::zero_svc_rate`].
    pub(super) fn zero_real_rate(&mut self, id: u32) -> Result<(), MapsError> {
        if let Some(rm) = &mut self.rates {
            rm.real
                .set(id, RateState::default(), 0)
                .map_err(err(MAP_REAL_RATE))?;
        }
        Ok(())
    }
}
