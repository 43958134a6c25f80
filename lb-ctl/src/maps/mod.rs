//! The only place that opens the pinned maps and writes them (the loader only creates and
//! pins them when it loads the object; its other reads, a pinned flow table's size and
//! CLOCK at load, are functions here).
//!
//! Maps are pinned by the loader under the pin directory with their own names (the
//! `MAP_*` consts of lb-common). Each lb-ctl run opens the ones it needs with
//! `MapData::from_pin`, reads a [`Snapshot`], and applies a plan of [`Op`]s in order.
//!
//! Files: this one ([`Maps`]: snapshot, plan writes, stats and connection counts;
//! settings; counters), [`sweep`] (the sweep's passes: CLOCK, expiry writes), [`rate`] (the
//! rate estimator's ticks and read-out), [`sys`] (the
//! raw system calls aya 0.14 lacks: element commands, bpffs, links, the pin-directory
//! lock), `flows` (the per-family flow tables as one), `mapped` (the big arrays through
//! mmap) and `batch` (batched array reads and writes, where a map cannot be mapped).

pub mod batch;
pub mod clock;
mod flows;
pub mod mapped;
pub mod ops;
pub mod rate;
pub mod sweep;
pub mod sys;

use crate::ipvs::model::{Filter, Op, Snapshot, Trashed};
use aya::maps::{
    Array, DevMapHash, HashMap, IterableMap, Map, MapData, MapError, PerCpuArray, PerCpuValues,
};
use lb_common::conn::{ConnCounts, ConnEvents, ConnExpiry, Settings, conn_counts};
use lb_common::consts::{
    FILTER_WORDS, MAP_COUNTERS, MAP_LBLC, MAP_NAT_FILTER, MAP_PERSIST, MAP_REAL_CONNS,
    MAP_REAL_EXPIRED, MAP_REAL_STATS, MAP_REAL_TRASH, MAP_REALS, MAP_SCHED_CURSOR, MAP_SCHED_TABLE,
    MAP_SERVICES, MAP_SETTINGS, MAP_SVC_STATS, MAP_TX_PORTS, MAP_VIP_FILTER, MAP_VIPS,
};
use lb_common::{
    CounterBlock, FlowKey, FlowValue, PersistKey, PersistValue, Real, RealFlags, Service,
    ServiceKey, Traffic, TrashRecord, VipKey,
};
use std::collections::{BTreeMap, HashMap as StdHashMap};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Why a map cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    /// The map's pin file is missing.
    #[error("map {name} is not pinned under {dir} (is lb loaded? `lb-ctl load --iface IF`)")]
    NotPinned {
        /// Map name.
        name: &'static str,
        /// Pin directory.
        dir: PathBuf,
    },
    /// A map operation failed.
    #[error("map {name}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The aya error.
        source: MapError,
    },
    /// A TX_PORTS update failed.
    #[error("map {MAP_TX_PORTS}")]
    TxPorts(#[from] aya::maps::xdp::XdpMapError),
    /// A raw map command (lookup-and-delete, no-exist insert, batch) or the lock failed.
    #[error("map {name}")]
    Raw {
        /// Map name.
        name: &'static str,
        /// The system error.
        source: io::Error,
    },
    /// The number of CPUs (for per-CPU values) is unknown.
    #[error("cannot count CPUs")]
    Cpus(#[source] io::Error),
    /// `lb_ops` is not pinned (lb not loaded, or loaded by an lb without it).
    #[error("lb_ops is not pinned under {0} (is lb loaded? `lb-ctl load --iface IF`)")]
    NoOps(PathBuf),
    /// Opening or running `lb_ops` failed.
    #[error("cannot run {path}")]
    Ops {
        /// The program's pin.
        path: PathBuf,
        /// The aya error.
        source: Box<aya::programs::ProgramError>,
    },
    /// `lb_ops` refused an operation (`lb_common::ops::status`).
    #[error(
        "lb_ops operation {op} failed with status {status} (2: unknown to this lb_ops, 3: short buffer)"
    )]
    OpFailed {
        /// The operation code.
        op: u32,
        /// The status the program wrote.
        status: u32,
    },
    /// The kernel's HZ could not be measured.
    #[error(
        "cannot measure the kernel's HZ: {0} jiffies in {1} ms is near none of 24, 32, 48, 100, 128, 250, 300, 1000"
    )]
    Hz(u64, u64),
}

fn err(name: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Map { name, source }
}

/// Opens one pinned map as the typed aya map `M`.
pub fn open<M>(dir: &Path, name: &'static str) -> Result<M, MapsError>
where
    M: TryFrom<Map, Error = MapError>,
{
    let path = dir.join(name);
    if !path.exists() {
        return Err(MapsError::NotPinned {
            name,
            dir: dir.to_path_buf(),
        });
    }
    let data = MapData::from_pin(&path).map_err(err(name))?;
    let map = Map::from_map_data(data).map_err(err(name))?;
    M::try_from(map).map_err(err(name))
}

/// The kernel's own view of a pinned map: key and value size, capacity, and the memory it
/// charges for it (`memlock` in fdinfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSize {
    /// Key bytes.
    pub key: u32,
    /// Value bytes.
    pub value: u32,
    /// max_entries.
    pub entries: u32,
    /// Bytes the kernel accounts for the whole map.
    pub memlock: Option<u64>,
}

/// The [`MapSize`] of the map pinned as `name` under `dir` (`None`: not pinned).
pub fn pinned_size(dir: &Path, name: &'static str) -> Result<Option<MapSize>, MapsError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(err(name))?;
    let info = data.info().map_err(err(name))?;
    let fd = data.fd().as_fd().as_raw_fd();
    let memlock = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse().ok())
        });
    Ok(Some(MapSize {
        key: info.key_size(),
        value: info.value_size(),
        entries: info.max_entries(),
        memlock,
    }))
}

/// The kernel's `bpf_map_type` number of a pinned map, and its [`MapSize`], for a map known
/// only by a name read at run time (an object's map list); errors name it "pinned map".
pub fn pinned_layout(dir: &Path, name: &str) -> Result<Option<(u32, MapSize)>, MapsError> {
    const LABEL: &str = "pinned map";
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(err(LABEL))?;
    let info = data.info().map_err(err(LABEL))?;
    let kind = info.map_type().map_or(u32::MAX, |t| t as u32);
    Ok(Some((
        kind,
        MapSize {
            key: info.key_size(),
            value: info.value_size(),
            entries: info.max_entries(),
            memlock: None,
        },
    )))
}

/// Adds interfaces to TX_PORTS (ifindex → ifindex), the XDP_REDIRECT targets.
pub(crate) fn add_tx_ports(dir: &Path, ifindexes: &[u32]) -> Result<(), MapsError> {
    let mut tx: DevMapHash<MapData> = open(dir, MAP_TX_PORTS)?;
    for &i in ifindexes {
        tx.insert(i, i, None, 0)?;
    }
    Ok(())
}

/// Number of possible CPUs (the length of per-CPU values).
fn nr_cpus() -> Result<usize, MapsError> {
    aya::util::nr_cpus().map_err(|(_, e)| MapsError::Cpus(e))
}

/// Sums per-CPU counters.
fn sum_traffic(v: &PerCpuValues<Traffic>) -> Traffic {
    let mut t = Traffic::default();
    for c in v.iter() {
        t.add(c);
    }
    t
}

/// Per-CPU sum of every COUNTERS slot, by slot index.
pub(crate) fn read_counters(dir: &Path) -> Result<Vec<u64>, MapsError> {
    let counters: PerCpuArray<MapData, CounterBlock> = open(dir, MAP_COUNTERS)?;
    let mut total = CounterBlock::default();
    for cpu in counters.get(&0, 0).map_err(err(MAP_COUNTERS))?.iter() {
        total.add(cpu);
    }
    Ok(total.slots.to_vec())
}

/// Opens a pinned map if it is there (maps of newer objects; an older pinned object lacks
/// them).
pub fn open_opt<M>(dir: &Path, name: &'static str) -> Result<Option<M>, MapsError>
where
    M: TryFrom<Map, Error = MapError>,
{
    if dir.join(name).exists() {
        open(dir, name).map(Some)
    } else {
        Ok(None)
    }
}

/// The settings (`--set` timeouts, sysctl-like switches); all zero = IPVS's defaults.
pub fn read_settings(dir: &Path) -> Result<Settings, MapsError> {
    let Some(m) = open_opt::<Array<MapData, Settings>>(dir, MAP_SETTINGS)? else {
        return Ok(Settings::default());
    };
    m.get(&0, 0).map_err(err(MAP_SETTINGS))
}

/// Replaces the settings.
pub fn write_settings(dir: &Path, s: &Settings) -> Result<(), MapsError> {
    let mut m: Array<MapData, Settings> = open(dir, MAP_SETTINGS)?;
    m.set(0, s, 0).map_err(err(MAP_SETTINGS))
}

/// Every slot of an array map, by index: through a mapping when the map is mmapable, else
/// one batch lookup, else one lookup per slot.
fn read_array<V: bytemuck::Pod + aya::Pod + Send>(
    map: &Array<MapData, V>,
    name: &'static str,
) -> Result<Vec<(u32, V)>, MapsError> {
    let fd = map.map().fd().as_fd();
    let raw = |source| MapsError::Raw { name, source };
    let len = map.len();
    let all = match crate::maps::mapped::read_all::<V>(fd, len).map_err(raw)? {
        Some(all) => Some(all),
        None => crate::maps::batch::lookup_all::<V>(fd, len).map_err(raw)?,
    };
    match all {
        Some(all) => Ok((0u32..).zip(all).collect()),
        None => (0..len)
            .map(|i| Ok((i, map.get(&i, 0).map_err(err(name))?)))
            .collect(),
    }
}

/// The balancer's maps that lb-ctl reads and writes.
pub struct Maps {
    services: HashMap<MapData, ServiceKey, Service>,
    vips: HashMap<MapData, VipKey, u32>,
    reals: Array<MapData, Real>,
    /// `None` when the pinned object predates REAL_TRASH: no trash is kept then (a real
    /// added again gets a fresh id).
    real_trash: Option<Array<MapData, TrashRecord>>,
    sched: Array<MapData, u32>,
    svc_stats: PerCpuArray<MapData, Traffic>,
    real_stats: PerCpuArray<MapData, Traffic>,
    tx_ports: DevMapHash<MapData>,
    vip_filter: Array<MapData, u64>,
    nat_filter: Array<MapData, u64>,
    real_conns: Option<Array<MapData, ConnEvents>>,
    real_expired: Option<Array<MapData, ConnExpiry>>,
    /// The rate estimators; `None` when the pinned object predates them.
    rates: Option<rate::RateMaps>,
    dir: PathBuf,
}

impl Maps {
    /// Opens the pinned maps under `dir`.
    pub fn open(dir: &Path) -> Result<Maps, MapsError> {
        Ok(Maps {
            services: open(dir, MAP_SERVICES)?,
            vips: open(dir, MAP_VIPS)?,
            reals: open(dir, MAP_REALS)?,
            real_trash: open_opt(dir, MAP_REAL_TRASH)?,
            sched: open(dir, MAP_SCHED_TABLE)?,
            svc_stats: open(dir, MAP_SVC_STATS)?,
            real_stats: open(dir, MAP_REAL_STATS)?,
            tx_ports: open(dir, MAP_TX_PORTS)?,
            vip_filter: open(dir, MAP_VIP_FILTER)?,
            nat_filter: open(dir, MAP_NAT_FILTER)?,
            real_conns: open_opt(dir, MAP_REAL_CONNS)?,
            real_expired: open_opt(dir, MAP_REAL_EXPIRED)?,
            rates: rate::RateMaps::open(dir)?,
            dir: dir.to_path_buf(),
        })
    }

    /// Every configured real (ACTIVE REALS slots), by id.
    pub fn active_reals(&self) -> Result<Vec<(u32, Real)>, MapsError> {
        Ok(read_array(&self.reals, MAP_REALS)?
            .into_iter()
            .filter(|(_, r)| r.flags.has(RealFlags::ACTIVE))
            .collect())
    }

    /// One REALS slot as it is now.
    pub fn real(&self, id: u32) -> Result<Real, MapsError> {
        self.reals.get(&id, 0).map_err(err(MAP_REALS))
    }

    /// Reads services and every REALS slot ever written.
    pub fn snapshot(&self) -> Result<Snapshot, MapsError> {
        let services = self
            .services
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(err(MAP_SERVICES))?;
        let zero = Real::default();
        let reals = read_array(&self.reals, MAP_REALS)?
            .into_iter()
            .filter(|(_, r)| *r != zero)
            .collect();
        let trashed = match &self.real_trash {
            Some(m) => read_array(m, MAP_REAL_TRASH)?
                .into_iter()
                .filter_map(|(id, t)| Some((id, Trashed::from_record(&t)?)))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut orders = BTreeMap::new();
        for (_, s) in &services {
            let ids = (s.reals_base..s.reals_base.saturating_add(s.reals_len))
                .map(|i| self.sched.get(&i, 0).map_err(err(MAP_SCHED_TABLE)))
                .collect::<Result<Vec<u32>, _>>()?;
            orders.insert(s.id, ids);
        }
        Ok(Snapshot {
            services,
            reals,
            orders,
            trashed,
        })
    }

    /// Live connection counts of a real (ActiveConn, InActConn, PersistConn); `None`
    /// when the pinned object keeps no connection counters.
    pub fn conn_counts(&self, id: u32) -> Result<Option<ConnCounts>, MapsError> {
        let (Some(ev), Some(ex)) = (&self.real_conns, &self.real_expired) else {
            return Ok(None);
        };
        let e = ev.get(&id, 0).map_err(err(MAP_REAL_CONNS))?;
        let x = ex.get(&id, 0).map_err(err(MAP_REAL_EXPIRED))?;
        Ok(Some(conn_counts(&e, &x)))
    }

    /// Per-CPU sum of a service's traffic.
    pub fn svc_traffic(&self, id: u32) -> Result<Traffic, MapsError> {
        let v = self.svc_stats.get(&id, 0).map_err(err(MAP_SVC_STATS))?;
        Ok(sum_traffic(&v))
    }

    /// Per-CPU sum of a real's traffic.
    pub fn real_traffic(&self, id: u32) -> Result<Traffic, MapsError> {
        let v = self.real_stats.get(&id, 0).map_err(err(MAP_REAL_STATS))?;
        Ok(sum_traffic(&v))
    }

    /// Number of flows per (real as stored, with its generation; service id). Walks both
    /// flow tables whole (two syscalls per flow): for listing only.
    pub(crate) fn flows_per_real(&self) -> Result<StdHashMap<(u32, u32), u64>, MapsError> {
        let mut n = StdHashMap::new();
        crate::maps::flows::FLOWS.for_each(&self.dir, |_, v: FlowValue| {
            *n.entry((v.real_id, v.svc_id)).or_insert(0) += 1;
        })?;
        Ok(n)
    }

    /// Every flow, IPv4's first (for `-L -c`).
    pub(crate) fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, MapsError> {
        crate::maps::flows::FLOWS.entries(&self.dir)
    }

    /// Every PERSIST entry (none when the object has no templates).
    pub(crate) fn templates(&self) -> Result<Vec<(PersistKey, PersistValue)>, MapsError> {
        let Some(m) =
            open_opt::<HashMap<MapData, PersistKey, PersistValue>>(&self.dir, MAP_PERSIST)?
        else {
            return Ok(Vec::new());
        };
        m.iter().map(|r| r.map_err(err(MAP_PERSIST))).collect()
    }

    fn filter(&mut self, f: Filter) -> (&mut Array<MapData, u64>, &'static str) {
        match f {
            Filter::Vip => (&mut self.vip_filter, MAP_VIP_FILTER),
            Filter::Nat => (&mut self.nat_filter, MAP_NAT_FILTER),
        }
    }

    /// Performs a plan's writes in order. On an error the writes before it stay done.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), MapsError> {
        let cpus = nr_cpus()?;
        let zeroes =
            || PerCpuValues::try_from(vec![Traffic::default(); cpus]).map_err(MapsError::Cpus);
        for op in ops {
            match op {
                Op::PutService(k, s) => self.services.insert(k, s, 0).map_err(err(MAP_SERVICES))?,
                Op::DelService(k) => self.services.remove(k).map_err(err(MAP_SERVICES))?,
                Op::PutVip(k, n) => self.vips.insert(k, n, 0).map_err(err(MAP_VIPS))?,
                Op::DelVip(k) => match self.vips.remove(k) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(err(MAP_VIPS)(e)),
                },
                Op::PutReal(id, r) => self.reals.set(*id, r, 0).map_err(err(MAP_REALS))?,
                Op::PutTrash(id, t) => {
                    if let Some(m) = &mut self.real_trash {
                        m.set(*id, t.record(), 0).map_err(err(MAP_REAL_TRASH))?;
                    }
                }
                Op::ClearTrash(id) => {
                    if let Some(m) = &mut self.real_trash {
                        m.set(*id, TrashRecord::default(), 0)
                            .map_err(err(MAP_REAL_TRASH))?;
                    }
                }
                Op::WriteTable { base, slots } => {
                    let fd = self.sched.map().fd().as_fd();
                    let raw = |source| MapsError::Raw {
                        name: MAP_SCHED_TABLE,
                        source,
                    };
                    let len = self.sched.len();
                    if crate::maps::mapped::write(fd, len, *base, slots).map_err(raw)?
                        || crate::maps::batch::update(fd, *base, slots).map_err(raw)?
                    {
                        continue;
                    }
                    for (i, s) in slots.iter().enumerate() {
                        self.sched
                            .set(base + i as u32, s, 0)
                            .map_err(err(MAP_SCHED_TABLE))?;
                    }
                }
                Op::FilterSet(f, word, mask) | Op::FilterClear(f, word, mask) => {
                    let set = matches!(op, Op::FilterSet(..));
                    let (map, name) = self.filter(*f);
                    let old = map.get(word, 0).map_err(err(name))?;
                    let new = if set { old | mask } else { old & !mask };
                    if new != old {
                        map.set(*word, new, 0).map_err(err(name))?;
                    }
                }
                Op::FilterZero(f) => {
                    let (map, name) = self.filter(*f);
                    for w in 0..FILTER_WORDS.min(map.len()) {
                        if map.get(&w, 0).map_err(err(name))? != 0 {
                            map.set(w, 0, 0).map_err(err(name))?;
                        }
                    }
                }
                Op::FilterRebuild(f, bits) => {
                    let (map, name) = self.filter(*f);
                    for w in 0..FILTER_WORDS.min(map.len()) {
                        let want = bits.get(&w).copied().unwrap_or(0);
                        if map.get(&w, 0).map_err(err(name))? != want {
                            map.set(w, want, 0).map_err(err(name))?;
                        }
                    }
                }
                Op::ZeroSvcStats(id) => {
                    self.svc_stats
                        .set(*id, zeroes()?, 0)
                        .map_err(err(MAP_SVC_STATS))?;
                    self.zero_svc_rate(*id)?;
                }
                Op::ZeroRealStats(id) => {
                    self.real_stats
                        .set(*id, zeroes()?, 0)
                        .map_err(err(MAP_REAL_STATS))?;
                    self.zero_real_rate(*id)?;
                }
                Op::SettleConns(id) => {
                    if let (Some(ev), Some(ex)) = (&self.real_conns, &mut self.real_expired) {
                        let e = ev.get(id, 0).map_err(err(MAP_REAL_CONNS))?;
                        ex.set(*id, ConnExpiry::settling(&e), 0)
                            .map_err(err(MAP_REAL_EXPIRED))?;
                    }
                }
                Op::AddTxPort(i) => self.tx_ports.insert(*i, *i, None, 0)?,
                Op::ClearLocality(id) => self.zero_if_pinned(MAP_LBLC, *id)?,
                Op::ResetCursor(id) => self.zero_if_pinned(MAP_SCHED_CURSOR, *id)?,
            }
        }
        Ok(())
    }

    /// Writes an all-zero value at `id` of the pinned map `name`, when the object has it
    /// (LBLC and SCHED_CURSOR came after the first pinned layouts).
    fn zero_if_pinned(&self, name: &'static str, id: u32) -> Result<(), MapsError> {
        let path = self.dir.join(name);
        if !path.exists() {
            return Ok(());
        }
        crate::maps::sys::RawMap::open(&path)
            .and_then(|m| m.set_zero(&id))
            .map_err(|source| MapsError::Raw { name, source })
    }
}
