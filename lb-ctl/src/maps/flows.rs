//! The data path's flow tables, one pair per family (FLOWS4 / FLOWS6, NAT_REV4 /
//! NAT_REV6): IPv4 entries are keyed by the 16-byte `FlowKey4`, IPv6 ones by `FlowKey`.
//! Callers see one table of `FlowKey`s: keys are widened on the way out and narrowed by
//! family on the way in.

use super::sys::RawMap;
use super::{MapsError, open};
use aya::maps::{HashMap, MapData};
use lb_common::consts::{MAP_FLOWS4, MAP_FLOWS6, MAP_NAT_REV4, MAP_NAT_REV6};
use lb_common::{FlowKey, FlowKey4};
use std::path::Path;

/// A pair of tables by name: (IPv4, IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub &'static str, pub &'static str);

/// Client → VIP flows (`FlowValue`).
pub const FLOWS: Pair = Pair(MAP_FLOWS4, MAP_FLOWS6);
/// NAT replies, real → client (`NatReverse`).
pub const NAT_REV: Pair = Pair(MAP_NAT_REV4, MAP_NAT_REV6);

impl Pair {
    /// The name of the table holding `key`.
    pub fn name_of(self, key: &FlowKey) -> &'static str {
        if key.is_v4() { self.0 } else { self.1 }
    }

    /// Calls `f` with every entry of both tables, IPv4's first (a walk of each, two
    /// syscalls per entry: for listings and sweeps).
    pub fn for_each<V: aya::Pod>(
        self,
        dir: &Path,
        mut f: impl FnMut(FlowKey, V),
    ) -> Result<(), MapsError> {
        let err = |name| move |source| MapsError::Map { name, source };
        let v4: HashMap<MapData, FlowKey4, V> = open(dir, self.0)?;
        for item in v4.iter() {
            let (k, v) = item.map_err(err(self.0))?;
            f(k.widen(), v);
        }
        let v6: HashMap<MapData, FlowKey, V> = open(dir, self.1)?;
        for item in v6.iter() {
            let (k, v) = item.map_err(err(self.1))?;
            f(k, v);
        }
        Ok(())
    }

    /// Every entry of both tables, IPv4's first.
    pub fn entries<V: aya::Pod>(self, dir: &Path) -> Result<Vec<(FlowKey, V)>, MapsError> {
        let mut all = Vec::new();
        self.for_each(dir, |k, v| all.push((k, v)))?;
        Ok(all)
    }

    /// Both tables' fds, for element commands on single keys.
    pub fn open_raw(self, dir: &Path) -> Result<RawPair, MapsError> {
        let raw = |name: &'static str| {
            RawMap::open(&dir.join(name)).map_err(|source| MapsError::Raw { name, source })
        };
        Ok(RawPair {
            names: self,
            v4: raw(self.0)?,
            v6: raw(self.1)?,
        })
    }
}

/// A [`Pair`] opened for element commands (lookup-and-delete, insert-if-absent).
pub struct RawPair {
    names: Pair,
    v4: RawMap,
    v6: RawMap,
}

impl RawPair {
    /// Removes `key` and returns the value it had at that moment; `None` if absent.
    pub fn take<V: bytemuck::Pod>(&self, key: &FlowKey) -> Result<Option<V>, MapsError> {
        if key.is_v4() {
            self.v4.take(&key.v4())
        } else {
            self.v6.take(key)
        }
        .map_err(|source| self.err(key, source))
    }

    /// The value under `key` now; `None` if absent.
    pub fn get<V: bytemuck::Pod>(&self, key: &FlowKey) -> Result<Option<V>, MapsError> {
        if key.is_v4() {
            self.v4.get(&key.v4())
        } else {
            self.v6.get(key)
        }
        .map_err(|source| self.err(key, source))
    }

    /// Replaces `key` only if present; false when it was gone.
    pub fn replace<V: bytemuck::Pod>(&self, key: &FlowKey, v: &V) -> Result<bool, MapsError> {
        if key.is_v4() {
            self.v4.replace(&key.v4(), v)
        } else {
            self.v6.replace(key, v)
        }
        .map_err(|source| self.err(key, source))
    }

    /// Inserts `key` unless present; false when it was (the data path put it back first).
    pub fn insert_new<V: bytemuck::Pod>(&self, key: &FlowKey, v: &V) -> Result<bool, MapsError> {
        if key.is_v4() {
            self.v4.insert_new(&key.v4(), v)
        } else {
            self.v6.insert_new(key, v)
        }
        .map_err(|source| self.err(key, source))
    }

    fn err(&self, key: &FlowKey, source: std::io::Error) -> MapsError {
        MapsError::Raw {
            name: self.names.name_of(key),
            source,
        }
    }
}
