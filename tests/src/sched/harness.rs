//! Drives the real `lb_xdp` program and the reference model (tests/src/model) with the
//! same events and records every disagreement: which real a new connection goes to, the
//! flow's TCP state and INACTIVE flag, and each real's ActiveConn / InActConn /
//! PersistConn as `conn_counts` computes them from REAL_CONNS and REAL_EXPIRED.
//!
//! Services and reals are published as `lb-ctl -A/-E/-a/-e/-d` publishes them: lb-ctl's
//! planners (`lb_ctl::ipvs::service`, `lb_ctl::ipvs::real`) plan against a snapshot of the
//! pinned maps and `lb_ctl::maps::Maps::apply` writes the plan, so every scenario tests
//! lb-ctl's publishing too. The planners choose the map's service and real ids; the
//! scenarios and the model keep the harness's own (real `first_real[svc] + list position`,
//! service = its number), and [`Run`] translates at every map read. A real's next hop is a
//! fake resolver's: lo, and a MAC naming the harness id, so the output frame names the
//! chosen real in the harness's ids.
//!
//! The object is loaded once, pinned under a [`PinDir`], in the harness's network
//! namespace. CLOCK, SETTINGS and expiry go through lb-ctl's `maps` too: a connection
//! expires by the sweep's own `expire_flow` (the FLOWS entry taken, one added to the
//! real's REAL_EXPIRED active or inactive count by the flow's INACTIVE flag), a template by
//! `expire_template` (taken from PERSIST, counted expired). The harness itself only reads
//! maps (FLOWS, PERSIST, SCHED_TABLE) and runs the program.

use crate::model::{self, Choice, Conn, Dest, Model, Persist, Sched, tcp};
use anyhow::{Context, Result, anyhow};
use aya::maps::{Array, HashMap, MapData};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, Pod};
use lb_common::addr::convert::to_raw;
use lb_common::conn::{Settings, Timeouts};
use lb_common::consts::{MAP_FLOWS4, MAP_FLOWS6, MAP_PERSIST, MAP_SCHED_TABLE, PROG_LB, PROG_OPS};
use lb_common::{
    FlowFlags, FlowKey, FlowKey4, FlowValue, ForwardMode, PersistKey, PersistValue, SchedKind,
    VipFlags,
};
use lb_ctl::ipvs::model::{
    Endpoint, ModelError, Op, Proto, RealRef, RealSpec, ServiceAddr, ServiceSpec, Snapshot,
};
use lb_ctl::ipvs::{real, service};
use lb_ctl::loader::{Loader, ObjectFile, object_path};
use lb_ctl::maps::Maps;
use lb_ctl::nexthop::{NextHop, NextHopError};
use lb_ctl::sweep;
use lb_tests::bpf::IF_LO;
use lb_tests::bpf::TEST_CACHE_BITS;
use lb_tests::netns::PinDir;
use lb_tests::packet::{L4, Pkt};
use lb_tests::provision::flow_key;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

/// Service port.
pub const VPORT: u16 = 80;
/// Harness real id → its next-hop MAC (the fake resolver's), so the output frame names
/// the chosen real.
pub const MAC_PREFIX: [u8; 4] = [0x02, 0x00, 0x00, 0x01];
/// FLOWS capacity for scheduler runs: all scenarios share one load (each uses its own
/// VIPs, and the planners give each service and real a fresh id, so nothing needs
/// clearing between them), and the distribution tests open thousands of flows.
pub const SCHED_MAX_FLOWS: u32 = 1 << 17;
/// Services per scenario (scenario k's VIPs are 8k .. 8k+7 in its /24).
pub const SVCS_PER_SCENARIO: u32 = 8;
/// Harness real ids per scenario (scenario k uses ids 64k+1 ..).
pub const REALS_PER_SCENARIO: u32 = 64;
/// CLOCK value during a run.
pub const NOW_S: u32 = 1_000;

/// A real of a scenario.
#[derive(Clone, Copy, Debug)]
pub struct R {
    /// Weight.
    pub w: u32,
    /// -x.
    pub x: u32,
    /// -y.
    pub y: u32,
}

/// Shorthand: a real with weight w and no thresholds.
pub const fn w(w: u32) -> R {
    R { w, x: 0, y: 0 }
}

/// A service of a scenario.
#[derive(Clone, Debug)]
pub struct SvcSpec {
    /// Scheduler.
    pub sched: SchedKind,
    /// VipFlags bits other than PERSISTENT / ONE_PACKET.
    pub flags: u32,
    /// Reals in IPVS list order (ids 1, 2, ...; a second service's reals continue).
    pub reals: Vec<R>,
    /// IP protocol.
    pub proto: u8,
    /// Service port (0 = all ports).
    pub port: u16,
    /// Persistence: (timeout s, prefix length, group).
    pub persist: Option<(u32, u8, u32)>,
    /// -o.
    pub one_packet: bool,
    /// Maglev table size for mh.
    pub mh_size: u32,
    /// NAT reals (-m) instead of DR (-g): replies come back through the program.
    pub nat: bool,
    /// IPv6 service, reals and clients.
    pub v6: bool,
}

impl SvcSpec {
    /// A TCP service on port 80.
    pub fn new(sched: SchedKind, reals: &[R]) -> SvcSpec {
        SvcSpec {
            sched,
            flags: 0,
            reals: reals.to_vec(),
            proto: 6,
            port: VPORT,
            persist: None,
            one_packet: false,
            mh_size: 251,
            nat: false,
            v6: false,
        }
    }
}

/// The loaded program and its maps.
pub struct Lb {
    ebpf: Ebpf,
    /// The same maps as lb-ctl opens them (pinned under `_pins`): snapshots, plan writes,
    /// connection counts.
    maps: Maps,
    /// Removed with everything pinned in it when the program is dropped.
    _pins: PinDir,
}

/// Prefix of the harness's pin directories.
const PIN_PREFIX: &str = "lbsched";

fn map<'a>(e: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    e.map_mut(name)
        .ok_or_else(|| anyhow!("the object has no map {name}"))
}

impl Lb {
    /// Loads the object (fresh maps).
    pub fn load() -> Result<Lb> {
        Lb::load_without(None)
    }

    /// Loads the object as [`Lb::load`] does, then takes away the pin of map `gone` (if
    /// given) before lb-ctl's `Maps` opens the directory: an lb pinned by an older object
    /// that had no such map, as `lb-ctl load` adopts it.
    pub fn load_without(gone: Option<&str>) -> Result<Lb> {
        let path = object_path(ObjectFile::BALANCER, None)?;
        lb_tests::bpf::pin_to_this_cpu()?;
        lb_tests::netns::sweep_stale(PIN_PREFIX);
        let pins = PinDir::create(PIN_PREFIX, "pin")?;
        // lb-ctl's own loader, pinned, so lb-ctl's `Maps` opens the maps as lb-ctl does.
        let mut ebpf = Loader::balancer(&path)
            .pin_dir(pins.path())
            .max_flows(SCHED_MAX_FLOWS)
            .cache_bits(TEST_CACHE_BITS)
            .load()
            .with_context(|| format!("loading {PROG_LB} from {}", path.display()))?;
        // lb_ops pinned beside, as `lb-ctl load` pins it: expiries go through its REAP.
        if let Some(p) = ebpf.program_mut(PROG_OPS) {
            let ops: &mut Xdp = p.try_into()?;
            ops.load()
                .with_context(|| format!("loading {PROG_OPS} from {}", path.display()))?;
            ops.pin(pins.path().join(PROG_OPS))
                .with_context(|| format!("pinning {PROG_OPS}"))?;
        }
        if let Some(name) = gone {
            std::fs::remove_file(pins.path().join(name))
                .with_context(|| format!("unpinning {name}"))?;
        }
        let maps = Maps::open(pins.path())?;
        Ok(Lb {
            ebpf,
            maps,
            _pins: pins,
        })
    }

    /// Whether map `name` is pinned (lb-ctl's loader pins every map of the object).
    pub fn pinned(&self, name: &str) -> bool {
        self._pins.path().join(name).exists()
    }

    /// A snapshot of the maps, as an lb-ctl command reads it.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.maps.snapshot()?)
    }

    /// Plans a change against a snapshot of the maps and writes the plan, as an lb-ctl
    /// command does; returns the plan.
    pub fn lb_ctl(
        &mut self,
        plan: impl FnOnce(&Snapshot) -> Result<Vec<Op>, ModelError>,
    ) -> Result<Vec<Op>> {
        let snap = self.maps.snapshot()?;
        let ops = plan(&snap)?;
        self.maps.apply(&ops)?;
        Ok(ops)
    }

    fn hash<K: Pod, V: Pod>(&mut self, name: &str) -> Result<HashMap<&mut MapData, K, V>> {
        HashMap::try_from(map(&mut self.ebpf, name)?).with_context(|| format!("map {name}"))
    }

    fn array<V: Pod>(&mut self, name: &str) -> Result<Array<&mut MapData, V>> {
        Array::try_from(map(&mut self.ebpf, name)?).with_context(|| format!("map {name}"))
    }

    /// The flow's entry (FLOWS4 or FLOWS6 by its family), if present.
    fn flow(&mut self, key: &FlowKey) -> Result<Option<FlowValue>> {
        let got = if key.is_v4() {
            self.hash::<FlowKey4, FlowValue>(MAP_FLOWS4)?
                .get(&key.v4(), 0)
        } else {
            self.hash::<FlowKey, FlowValue>(MAP_FLOWS6)?.get(key, 0)
        };
        match got {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The pin directory (what lb-ctl's `maps` functions take).
    pub fn dir(&self) -> &Path {
        self._pins.path()
    }

    /// Runs one frame received on lo; (return value, output frame).
    pub fn run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_LB)
            .ok_or_else(|| anyhow!("no program"))?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 512];
        let res = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..TestRunOptions::new()
        })?;
        out.truncate(res.data_size_out as usize);
        Ok((res.return_value, out))
    }
}

/// One scenario's run: the program, the model, the services as written, mismatches.
pub struct Run {
    /// Scenario number: picks its VIPs and ids.
    pub k: u32,
    /// The program.
    pub lb: Lb,
    /// The model.
    pub model: Model,
    /// Service specs by number (1, 2, ...).
    pub specs: Vec<SvcSpec>,
    /// First harness real id of each service.
    pub first_real: Vec<u32>,
    /// Map service id (the planner's) of each service number.
    map_svc: BTreeMap<u32, u32>,
    /// Map real id (the planner's) of each harness real id.
    map_real: BTreeMap<u32, u32>,
    /// Harness real id of each map real id.
    harness_real: BTreeMap<u32, u32>,
    /// Disagreements, one line each.
    pub report: String,
    /// Connections opened, by handle.
    pub conns: Vec<(u32, Conn)>,
    /// New connections checked.
    pub checked: usize,
    /// Choices the program made, by handle (None = dropped).
    pub picks: Vec<Option<u32>>,
    /// CLOCK now.
    pub now: u32,
    /// CLOCK at each connection's last packet, by handle.
    pub last: Vec<u32>,
    /// Harness real ids deleted (lb-ctl -d).
    pub deleted: std::collections::BTreeSet<u32>,
    /// Templates: (masked client, group) → (service, CLOCK of their last use).
    pub tlast: std::collections::BTreeMap<(IpAddr, u32), (u32, u32)>,
}

/// The fake next-hop resolver of harness real `id`: lo, and a MAC naming the id (as
/// [`MAC_PREFIX`] says), so no network is asked.
pub fn next_hop(id: u32) -> impl FnMut(IpAddr) -> Result<NextHop, NextHopError> {
    move |addr| {
        Ok(NextHop {
            ifindex: IF_LO,
            ifname: "lo".into(),
            local_addr: Some(addr),
            src_mac: [0x02, 0, 0, 0, 0, 0x04],
            dst_mac: Some([
                MAC_PREFIX[0],
                MAC_PREFIX[1],
                MAC_PREFIX[2],
                MAC_PREFIX[3],
                (id >> 8) as u8,
                id as u8,
            ]),
            gateway: None,
        })
    }
}

/// The address of client number `n`.
pub fn client(n: u32) -> IpAddr {
    IpAddr::from([198, 18, 100 + (n >> 8) as u8 % 100, (n & 0xff) as u8])
}

/// Address of the `i`-th real (list position) of every service of scenario `k`: the
/// services of one scenario share their servers, as a persistence group's services do.
fn real_addr(k: u32, i: u32, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from([0x2001, 0xdb8, 2, k as u16, 0, 0, 0, i as u16 + 1])
    } else {
        IpAddr::from([198, 19, (k >> 2) as u8, ((k & 3) << 6 | i) as u8])
    }
}

/// The IPv6 address of client number `n` (several words vary, so sh's XOR fold matters).
pub fn client6(n: u32) -> IpAddr {
    IpAddr::from([
        0x2001,
        0xdb8,
        0x100,
        (n >> 8) as u16,
        0,
        n as u16 * 7,
        0,
        n as u16,
    ])
}

/// The VIP of service `j` of scenario `k` (IPv6 when the spec says so).
pub fn vip_of(k: u32, j: u32, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from([0x2001, 0xdb8, 1, k as u16, 0, 0, 0, j as u16 + 1])
    } else {
        vip(k, j)
    }
}

/// VIP of service `j` (0-based) of scenario `k`.
pub fn vip(k: u32, j: u32) -> IpAddr {
    IpAddr::from([198, 19, 200 + (k / 32) as u8, ((k % 32) * 8 + j) as u8])
}

impl Run {
    /// A run of scenario `k` on the loaded program; [`Run::setup`] writes the services.
    pub fn new(k: u32, lb: Lb, specs: Vec<SvcSpec>) -> Run {
        // CLOCK and SETTINGS are set when the object has them; a scenario that needs
        // them fails on its own checks otherwise.
        let _ = lb_ctl::maps::clock::set_fixed(lb.dir(), NOW_S);
        let _ = lb_ctl::maps::write_settings(lb.dir(), &Settings::default());
        let mut run = Run {
            k,
            lb,
            model: Model::default(),
            specs: Vec::new(),
            first_real: Vec::new(),
            map_svc: BTreeMap::new(),
            map_real: BTreeMap::new(),
            harness_real: BTreeMap::new(),
            report: String::new(),
            conns: Vec::new(),
            checked: 0,
            picks: Vec::new(),
            now: NOW_S,
            last: Vec::new(),
            deleted: Default::default(),
            tlast: Default::default(),
        };
        let mut next = k * REALS_PER_SCENARIO + 1;
        for s in specs {
            run.first_real.push(next);
            next += s.reals.len() as u32;
            run.specs.push(s);
        }
        assert!(next <= (k + 1) * REALS_PER_SCENARIO + 1, "too many reals");
        assert!(
            run.specs.len() as u32 <= SVCS_PER_SCENARIO,
            "too many services"
        );
        run
    }

    /// Writes every service into the maps and the model.
    pub fn setup(&mut self) -> Result<()> {
        for j in 0..self.specs.len() as u32 {
            self.create(j + 1)?;
        }
        Ok(())
    }

    /// The model's dests of service `svc` from its spec.
    fn dests(&self, svc: u32) -> Vec<Dest> {
        let s = &self.specs[svc as usize - 1];
        let base = self.first_real[svc as usize - 1];
        s.reals
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted.contains(&(base + *i as u32)))
            .map(|(i, r)| {
                let id = base + i as u32;
                let mut d = Dest::new(id, real_addr(self.k, i as u32, s.v6), r.w as i32);
                d.u_threshold = r.x;
                d.l_threshold = r.y;
                d
            })
            .collect()
    }

    /// Service `svc` as ipvsadm names it (`-t|-u VIP:PORT`).
    fn service_addr(&self, svc: u32) -> ServiceAddr {
        let s = &self.specs[svc as usize - 1];
        ServiceAddr {
            proto: Proto::from_number(s.proto).expect("a TCP or UDP service"),
            vip: Endpoint {
                ip: vip_of(self.k, svc - 1, s.v6),
                port: s.port,
            },
        }
    }

    /// Service `svc` as `-A` / `-E` give it.
    fn service_spec(&self, svc: u32) -> ServiceSpec {
        let s = &self.specs[svc as usize - 1];
        let mut spec = ServiceSpec::with_sched(self.service_addr(svc), s.sched);
        spec.sched_flags = s.flags;
        if let Some((timeout, prefix, group)) = s.persist {
            let ones = if s.v6 {
                IpAddr::from([0xffff_u16; 8])
            } else {
                IpAddr::from([255, 255, 255, 255])
            };
            spec.persistent = Some(timeout);
            spec.netmask = Some(model::mask(ones, prefix));
            if group != svc {
                spec.persist_with = Some(self.service_addr(group));
            }
        }
        spec.one_packet = s.one_packet;
        if s.sched == SchedKind::Maglev {
            spec.mh_size = Some(s.mh_size);
        }
        spec
    }

    /// The real at list position `idx` of service `svc` as `-a` / `-e` give it.
    fn real_spec(&self, svc: u32, idx: usize) -> RealSpec {
        let s = &self.specs[svc as usize - 1];
        let r = s.reals[idx];
        RealSpec {
            service: self.service_addr(svc),
            addr: real_addr(self.k, idx as u32, s.v6),
            port: None,
            mode: if s.nat {
                ForwardMode::Nat
            } else {
                ForwardMode::Dr
            },
            weight: i64::from(r.w),
            u_threshold: r.x,
            l_threshold: r.y,
        }
    }

    /// Plans a change against a snapshot of the maps and writes the plan, as an lb-ctl
    /// command does; returns the plan.
    fn lb_ctl(
        &mut self,
        plan: impl FnOnce(&Snapshot) -> Result<Vec<Op>, ModelError>,
    ) -> Result<Vec<Op>> {
        self.lb.lb_ctl(plan)
    }

    /// Creates service `svc` and its reals with lb-ctl's planners (`-A`, then `-a` for
    /// each real), and in the model.
    fn create(&mut self, svc: u32) -> Result<()> {
        let spec = self.service_spec(svc);
        let ops = self.lb_ctl(|s| service::add(s, &spec))?;
        let id = ops
            .iter()
            .find_map(|op| match op {
                Op::PutService(_, s) => Some(s.id),
                _ => None,
            })
            .context("-A planned no service")?;
        self.map_svc.insert(svc, id);
        // IPVS puts a new real at the head of its service's list: added last to first,
        // the list is the spec's order.
        for idx in (0..self.specs[svc as usize - 1].reals.len()).rev() {
            self.lb_ctl_add(svc, idx)?;
        }
        if spec.mh_size.is_some() {
            // lb-ctl keeps a Maglev size only in the table it built (`mh_size_of`), so
            // `-A --mh-size N` on a service without reals is forgotten by the first `-a`
            // (its table gets the default size). `-E --mh-size N` after the reals, as an
            // operator has to today, gives the table the spec's size.
            self.lb_ctl(|s| service::edit(s, &spec))?;
        }
        self.sync_model(svc, true)
    }

    /// `lb-ctl -a` of the real at list position `idx` of service `svc`; records the map
    /// id the planner gave it.
    fn lb_ctl_add(&mut self, svc: u32, idx: usize) -> Result<()> {
        let real = self.real_spec(svc, idx);
        let id = self.first_real[svc as usize - 1] + idx as u32;
        let ops = self.lb_ctl(|s| real::add(s, &real, &mut next_hop(id)))?;
        let map_id = ops
            .iter()
            .find_map(|op| match op {
                Op::PutReal(m, _) => Some(*m),
                _ => None,
            })
            .context("-a planned no real")?;
        self.map_real.insert(id, map_id);
        self.harness_real.insert(map_id, id);
        Ok(())
    }

    /// Adds the deleted real at list position `idx` of service `svc` again (`lb-ctl -a`
    /// with its spec); the model takes it back from IPVS's trash (`ip_vs_trash_get_dest`)
    /// with its connections, at the head of the list.
    pub fn add_real(&mut self, svc: u32, idx: usize) -> Result<()> {
        let id = self.first_real[svc as usize - 1] + idx as u32;
        self.deleted.remove(&id);
        self.lb_ctl_add(svc, idx)?;
        let d = self
            .dests(svc)
            .into_iter()
            .find(|d| d.id == id)
            .context("the real is in the spec")?;
        self.model.add_real(svc, d);
        self.sync_model(svc, false)
    }

    /// `lb-ctl -C`: every service and real in the maps deleted (the other scenarios'
    /// too: they have finished; each scenario writes its own). The model deletes this
    /// scenario's services, their dests going to IPVS's trash.
    pub fn clear(&mut self) -> Result<()> {
        self.lb_ctl(|s| Ok(service::clear(s)))?;
        for svc in 1..=self.specs.len() as u32 {
            let base = self.first_real[svc as usize - 1];
            self.deleted
                .extend((0..self.specs[svc as usize - 1].reals.len() as u32).map(|i| base + i));
            self.model.delete_service(svc);
        }
        Ok(())
    }

    /// Adds service `svc` and its reals again after [`Run::clear`], as at setup (`-A`,
    /// then `-a` of each real). The model creates the service as at setup (its scheduler
    /// state fresh: a new IPVS service) and takes each real from the trash when it is
    /// there, with its connections.
    pub fn recreate(&mut self, svc: u32) -> Result<()> {
        let base = self.first_real[svc as usize - 1];
        for i in 0..self.specs[svc as usize - 1].reals.len() as u32 {
            self.deleted.remove(&(base + i));
        }
        let trash = std::mem::take(&mut self.model.services.get_mut(&svc).expect("svc").trash);
        self.create(svc)?;
        let s = self.model.services.get_mut(&svc).expect("svc");
        s.trash = trash;
        let fresh = std::mem::take(&mut s.dests);
        let dests = fresh
            .into_iter()
            .map(|d| self.model.take_from_trash(svc, d))
            .collect();
        self.model.services.get_mut(&svc).expect("svc").dests = dests;
        Ok(())
    }

    /// Publishes service `svc` anew from its spec (`-E` with the same options: the reals
    /// list and table rebuilt and written to a fresh region), and updates the model: IPVS's
    /// `ip_vs_edit_service` leaves the scheduler alone when it stays the same (no
    /// `upd_dest`, so wrr keeps its mark and rr its place); only a Maglev table is taken
    /// anew (the same one: same reals).
    pub fn publish(&mut self, svc: u32) -> Result<()> {
        let spec = self.service_spec(svc);
        self.lb_ctl(|s| service::edit(s, &spec))?;
        if self.specs[svc as usize - 1].sched == SchedKind::Maglev {
            let table = self.mh_table(svc)?;
            let s = self.model.services.get_mut(&svc).expect("service");
            if let Sched::Mh { table: t, .. } = &mut s.sched {
                *t = table;
            }
        }
        Ok(())
    }

    /// The `reals_base` service `svc` has in SERVICES (which SCHED_TABLE region its reals
    /// list is in).
    pub fn reals_base(&mut self, svc: u32) -> Result<u32> {
        let addr = self.service_addr(svc);
        let s = self
            .lb
            .maps
            .snapshot()?
            .service(&addr)
            .context("service not in SERVICES")?;
        Ok(s.reals_base)
    }

    /// The Maglev table service `svc` points at in SCHED_TABLE, in harness real ids.
    fn mh_table(&mut self, svc: u32) -> Result<Vec<u32>> {
        let addr = self.service_addr(svc);
        let s = self
            .lb
            .maps
            .snapshot()?
            .service(&addr)
            .context("service not in SERVICES")?;
        let t = self.lb.array::<u32>(MAP_SCHED_TABLE)?;
        (s.table_base..s.table_base + s.table_len)
            .map(|i| {
                let id = t.get(&i, 0)?;
                self.harness_real
                    .get(&id)
                    .copied()
                    .with_context(|| format!("SCHED_TABLE names real {id}, not the harness's"))
            })
            .collect()
    }

    /// The model's service `svc`: created (`fresh`) from the spec, or with its dests'
    /// weights/thresholds (and a Maglev table: the one published) updated.
    fn sync_model(&mut self, svc: u32, fresh: bool) -> Result<()> {
        let spec = self.specs[svc as usize - 1].clone();
        let dests = self.dests(svc);
        let flags = VipFlags(spec.flags);
        let table = if spec.sched == SchedKind::Maglev {
            self.mh_table(svc)?
        } else {
            Vec::new()
        };
        let sched = match spec.sched {
            SchedKind::Rr => Sched::Rr(None),
            SchedKind::Wrr => Sched::Wrr(model::seq::WrrMark::init(&dests)),
            SchedKind::Lc => Sched::Lc,
            SchedKind::Wlc => Sched::Wlc,
            SchedKind::Sed => Sched::Sed,
            SchedKind::Nq => Sched::Nq,
            SchedKind::Fo => Sched::Fo,
            SchedKind::Ovf => Sched::Ovf,
            SchedKind::Twos => Sched::Twos,
            SchedKind::Sh => Sched::Sh {
                buckets: Vec::new(),
                fallback: flags.has(VipFlags::SH_FALLBACK),
                port: flags.has(VipFlags::SH_PORT),
            },
            SchedKind::Dh => Sched::Dh(Vec::new()),
            SchedKind::Maglev => Sched::Mh {
                table: table.clone(),
                fallback: flags.has(VipFlags::MH_FALLBACK),
                port: flags.has(VipFlags::HASH_PORTS),
            },
            SchedKind::Lblc => Sched::Lblc(Default::default()),
            SchedKind::Lblcr => Sched::Lblcr(Default::default()),
        };
        if fresh {
            let mut s = model::Service::new(dests, sched);
            s.persist = spec
                .persist
                .map(|(_, prefix, group)| Persist { prefix, group });
            s.one_packet = spec.one_packet;
            s.masq = spec.nat;
            self.model.services.insert(svc, s);
        } else {
            let s = self.model.services.get_mut(&svc).expect("service");
            for n in dests {
                if let Some(d) = s.dests.iter_mut().find(|d| d.id == n.id) {
                    d.weight = n.weight;
                    d.u_threshold = n.u_threshold;
                    d.l_threshold = n.l_threshold;
                }
            }
            if let Sched::Mh { table: t, .. } = &mut s.sched {
                *t = table;
            }
            s.dests_changed();
        }
        Ok(())
    }

    /// Sets `expire_quiescent_template` in SETTINGS and the model. The scenarios share
    /// one load, so the caller sets it back.
    pub fn set_expire_quiescent_template(&mut self, on: bool) -> Result<()> {
        let mut v = lb_ctl::maps::read_settings(self.lb.dir())?;
        v.expire_quiescent_template = on as u32;
        lb_ctl::maps::write_settings(self.lb.dir(), &v)?;
        self.model.sysctl.expire_quiescent_template = on;
        Ok(())
    }

    /// Sets `expire_nodest_conn` in SETTINGS and the model (the caller sets it back).
    pub fn set_expire_nodest_conn(&mut self, on: bool) -> Result<()> {
        let mut v = lb_ctl::maps::read_settings(self.lb.dir())?;
        v.expire_nodest_conn = on as u32;
        lb_ctl::maps::write_settings(self.lb.dir(), &v)?;
        self.model.sysctl.expire_nodest_conn = on;
        Ok(())
    }

    /// Deletes the real at list position `idx` of the spec (`lb-ctl -d`: the service
    /// republished without it, then its REALS slot marked inactive); the model moves it to
    /// the trash.
    pub fn delete_real(&mut self, svc: u32, idx: usize) -> Result<()> {
        let id = self.first_real[svc as usize - 1] + idx as u32;
        self.deleted.insert(id);
        let gone = RealRef {
            service: self.service_addr(svc),
            addr: real_addr(self.k, idx as u32, self.specs[svc as usize - 1].v6),
            port: None,
        };
        self.lb_ctl(|s| real::delete(s, &gone))?;
        self.model.delete_real(svc, id);
        self.sync_model(svc, false)
    }

    /// Changes a real's weight (`lb-ctl -e`, which republishes the service).
    pub fn set_weight(&mut self, svc: u32, real_idx: usize, w: u32) -> Result<()> {
        self.specs[svc as usize - 1].reals[real_idx].w = w;
        let real = self.real_spec(svc, real_idx);
        let id = self.first_real[svc as usize - 1] + real_idx as u32;
        self.lb_ctl(|s| real::edit(s, &real, &mut next_hop(id)))?;
        self.sync_model(svc, false)
    }

    /// Changes a real's thresholds only (`lb-ctl -e` with the same weight and mode): IPVS's
    /// `ip_vs_edit_dest` still calls the scheduler's `upd_dest` (wrr: `dest_changed`).
    pub fn set_thresholds(&mut self, svc: u32, real_idx: usize, x: u32, y: u32) -> Result<()> {
        let r = &mut self.specs[svc as usize - 1].reals[real_idx];
        (r.x, r.y) = (x, y);
        let real = self.real_spec(svc, real_idx);
        let id = self.first_real[svc as usize - 1] + real_idx as u32;
        self.lb_ctl(|s| real::edit(s, &real, &mut next_hop(id)))?;
        self.sync_model(svc, false)
    }

    /// The map id of harness real `id`.
    fn map_real(&self, id: u32) -> Result<u32> {
        self.map_real
            .get(&id)
            .copied()
            .with_context(|| format!("real {id} was never added"))
    }

    /// The harness id of map real `id` (`None`: not one of this run's reals).
    fn harness_real(&self, id: u32) -> Option<u32> {
        self.harness_real.get(&id).copied()
    }
    fn frame(&self, svc: u32, c: &Conn, flags: tcp::Flags) -> Vec<u8> {
        let (src, dst) = (c.client.to_string(), c.vip.to_string());
        let mut p = if c.proto == 6 {
            Pkt::tcp(&src, &dst, c.cport, c.vport)
        } else {
            Pkt::udp(&src, &dst, c.cport, c.vport)
        };
        if let L4::Tcp(t) = &mut p.l4 {
            t.syn = flags.syn;
            t.fin = flags.fin;
            t.ack = flags.ack;
            t.rst = flags.rst;
            t.psh = false;
        }
        let _ = svc;
        p.bytes()
    }

    fn real_of(ret: u32, out: &[u8]) -> Option<u32> {
        (ret == 3 && out.len() >= 6 && out[..4] == MAC_PREFIX)
            .then(|| u32::from(out[4]) << 8 | u32::from(out[5]))
    }

    fn note(&mut self, line: String) {
        if self.report.lines().count() < 40 {
            self.report.push_str(&line);
            self.report.push('\n');
        }
    }

    /// A new connection from client `n` port `cport` to service `svc`: its first packet
    /// (SYN for TCP) through the program and the model; records a mismatch. Returns a
    /// handle.
    pub fn open(&mut self, svc: u32, n: u32, cport: u16) -> Result<usize> {
        let spec = &self.specs[svc as usize - 1];
        let vport = if spec.port == 0 { 443 } else { spec.port };
        let c = Conn {
            client: if spec.v6 { client6(n) } else { client(n) },
            cport,
            vip: vip_of(self.k, svc - 1, spec.v6),
            vport,
            proto: spec.proto,
        };
        self.open_conn(svc, c)
    }

    /// As [`Run::open`] for a given connection.
    pub fn open_conn(&mut self, svc: u32, c: Conn) -> Result<usize> {
        let flags = if c.proto == 6 {
            tcp::Flags::SYN
        } else {
            tcp::Flags::default()
        };
        // What the model allows when the program's choice is random (twos) or not fixed
        // by IPVS's rules (mh-fallback probe order).
        let s = &self.model.services[&svc];
        let free: Option<Vec<u32>> = match &s.sched {
            Sched::Twos if !self.has_template(svc, &c) => Some(
                model::load::twos_valid(&s.dests)
                    .into_iter()
                    .map(|p| s.dests[p].id)
                    .collect(),
            ),
            Sched::Mh {
                table,
                fallback,
                port,
            } if !self.has_template(svc, &c) => {
                match model::table::mh_strict(&s.dests, table, &c, *fallback, *port) {
                    Err(()) => Some(
                        s.dests
                            .iter()
                            .filter(|d| d.weight > 0 && !d.overloaded)
                            .map(|d| d.id)
                            .collect(),
                    ),
                    Ok(_) => None,
                }
            }
            _ => None,
        };
        let frame = self.frame(svc, &c, flags);
        let (ret, out) = self.lb.run(&frame)?;
        let got = Self::real_of(ret, &out);
        if let Some(valid) = &free
            && let Some(g) = got
        {
            self.model.services.get_mut(&svc).expect("svc").force = Some(g);
            if !valid.contains(&g) {
                self.note(format!(
                    "conn #{} {}:{}: program chose real {g}, not one of the valid {valid:?}",
                    self.conns.len(),
                    c.client,
                    c.cport
                ));
            }
        }
        let want = self.model.new_conn(svc, c, flags, (0, 0));
        self.model.services.get_mut(&svc).expect("svc").force = None;
        let want = match want {
            Choice::Real(r) => Some(r),
            Choice::NoReal => None,
        };
        if got != want && !(free.is_some() && got.is_some()) {
            self.note(format!(
                "conn #{} {}:{} -> {}:{}: program {} (ret {ret}), model {}",
                self.conns.len(),
                c.client,
                c.cport,
                c.vip,
                c.vport,
                got.map_or("dropped".into(), |r| format!("real {r}")),
                want.map_or("no real".into(), |r| format!("real {r}")),
            ));
        }
        self.checked += 1;
        if let Some((_, prefix, group)) = self.specs[svc as usize - 1].persist
            && want.is_some()
        {
            self.tlast
                .insert((model::mask(c.client, prefix), group), (svc, self.now));
        }
        self.check_template(svc, &c)?;
        self.conns.push((svc, c));
        self.picks.push(got);
        self.last.push(self.now);
        self.check_flow(self.conns.len() - 1)?;
        Ok(self.conns.len() - 1)
    }

    /// For a persistent service: the program's template of this client (PERSIST) names
    /// the model's real and was stamped with CLOCK now.
    fn check_template(&mut self, svc: u32, c: &Conn) -> Result<()> {
        let spec = self.specs[svc as usize - 1].clone();
        let Some((_, prefix, group)) = spec.persist else {
            return Ok(());
        };
        let masked = model::mask(c.client, prefix);
        let want = self.model.templates.get(&(masked, group)).map(|t| t.real);
        let (_, got) = self.template(spec.proto, masked, group)?;
        // PERSIST names the map's real id; the model the harness's.
        let got = got.map(|v| (self.harness_real(v.real_id), v.last_seen_s));
        match (got, want) {
            (None, None) => {}
            (Some((Some(g), seen)), Some(w)) if g == w && seen == self.now => {}
            (g, w) => self.note(format!(
                "template of {masked} group {group}: PERSIST (real, last seen) {g:?}, model real {w:?} used at CLOCK {}",
                self.now
            )),
        }
        Ok(())
    }

    fn has_template(&self, svc: u32, c: &Conn) -> bool {
        let s = &self.model.services[&svc];
        s.persist.is_some_and(|p| {
            self.model
                .templates
                .contains_key(&(model::mask(c.client, p.prefix), p.group))
        })
    }

    fn key(c: &Conn) -> FlowKey {
        flow_key(c.client, c.vip, c.cport, c.vport, c.proto)
    }

    /// Compares the program's flow entry (state, INACTIVE) with the model's connection.
    fn check_flow(&mut self, h: usize) -> Result<()> {
        let (svc, c) = self.conns[h];
        let got = self.lb.flow(&Self::key(&c))?;
        let want = self.model.conns.get(&(svc, c)).cloned();
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                let wreal = w.real;
                let ws = if c.proto == 6 { w.state as u8 } else { 0 };
                let gi = g.flags & FlowFlags::INACTIVE != 0;
                // FLOWS names the map's real id; the model the harness's.
                let greal = self.harness_real(g.real_id);
                if greal != Some(wreal) || g.state != ws || gi != w.inactive {
                    self.note(format!(
                        "conn #{h}: flow real {greal:?} (map id {}) state {} inactive {gi}; model real {wreal} state {ws} inactive {}",
                        g.real_id, g.state, w.inactive
                    ));
                }
                if g.last_seen_s != self.last[h] {
                    self.note(format!(
                        "conn #{h}: flow last_seen_s {}, CLOCK at its last packet {}",
                        g.last_seen_s, self.last[h]
                    ));
                }
            }
            (g, w) => self.note(format!(
                "conn #{h}: flow entry {}, model connection {}",
                if g.is_some() { "present" } else { "absent" },
                if w.is_some() { "present" } else { "absent" }
            )),
        }
        Ok(())
    }

    /// A later client packet of connection `h` with these TCP flags.
    pub fn send(&mut self, h: usize, flags: tcp::Flags) -> Result<()> {
        let (svc, c) = self.conns[h];
        let frame = self.frame(svc, &c, flags);
        let (ret, out) = self.lb.run(&frame)?;
        let got = Self::real_of(ret, &out);
        // A connection whose real was deleted: dropped while expire_nodest_conn is 0;
        // with 1 expired and the packet scheduled as a new connection.
        let gone = self
            .model
            .conns
            .get(&(svc, c))
            .is_some_and(|e| self.model.services[&svc].is_deleted(e.real));
        if gone {
            if !self.model.sysctl.expire_nodest_conn {
                if ret != 1 {
                    self.note(format!(
                        "conn #{h} packet {flags:?} to a deleted real: program returned {ret} ({got:?}), IPVS drops it"
                    ));
                }
                return self.check_flow(h);
            }
            // The program removed the flow itself (no sweep): the expiry is the model's
            // to count the IPVS way; the harness adds nothing to REAL_EXPIRED.
            self.model.expire(svc, c);
            let want = self.model.new_conn(svc, c, flags, (0, 0));
            return self.rescheduled(h, got, ret, want, "rescheduled after its real was deleted");
        }
        // IPVS conn_reuse_mode: a SYN that finds a TIME_WAIT or CLOSE connection (or one on
        // a weight-0 real, with expire_nodest_conn) expires it and is a new connection; the
        // program removes the flow itself, so the expiry is the model's to count.
        if self.model.new_conn_expected(svc, c, flags) {
            let want = self.model.reuse_conn(svc, c, flags, (0, 0));
            return self.rescheduled(h, got, ret, want, "SYN reusing its ports");
        }
        let want = self.model.packet(svc, c, flags, tcp::Dir::Input);
        if want.is_some() {
            self.last[h] = self.now;
        }
        if want.is_some() && got != want {
            self.note(format!(
                "conn #{h} packet {flags:?}: program {got:?} (ret {ret}), model {want:?}"
            ));
        }
        self.check_flow(h)
    }

    /// A reply of connection `h` (NAT): real → client with these TCP flags, through the
    /// program's NAT return path; the flow's state follows IPVS's OUTPUT table.
    pub fn reply(&mut self, h: usize, flags: tcp::Flags) -> Result<()> {
        let (svc, c) = self.conns[h];
        let Some(e) = self.model.conns.get(&(svc, c)) else {
            self.note(format!(
                "conn #{h}: reply to a connection the model does not have"
            ));
            return Ok(());
        };
        let real = e.real;
        let raddr = self
            .model
            .services
            .get_mut(&svc)
            .expect("svc")
            .dest_mut(real)
            .expect("dest")
            .addr;
        let (src, dst) = (raddr.to_string(), c.client.to_string());
        let mut p = Pkt::tcp(&src, &dst, VPORT, c.cport);
        if let L4::Tcp(t) = &mut p.l4 {
            t.syn = flags.syn;
            t.fin = flags.fin;
            t.ack = flags.ack;
            t.rst = flags.rst;
            t.psh = false;
        }
        let (ret, _) = self.lb.run(&p.bytes())?;
        if ret != 3 {
            self.note(format!(
                "conn #{h} reply {flags:?}: program returned {ret}, not XDP_TX"
            ));
        }
        self.model.packet(svc, c, flags, tcp::Dir::Output);
        self.last[h] = self.now;
        self.check_flow(h)
    }

    /// Connection `h` expires as lb-ctl's sweep expires it (`expire_flow`: the flow taken
    /// and booked in REAL_EXPIRED by the sweep's own code).
    pub fn expire(&mut self, h: usize) -> Result<()> {
        let (svc, c) = self.conns[h];
        lb_ctl::maps::sweep::expire_flow(self.lb.dir(), &Self::key(&c))?;
        self.model.expire(svc, c);
        Ok(())
    }

    /// Connection `h`'s packet made a new connection (the program's real `got`, return
    /// `ret`) where the model chose `want`: a mismatch is noted (`what` says why it was
    /// new), and the flow is checked.
    fn rescheduled(
        &mut self,
        h: usize,
        got: Option<u32>,
        ret: u32,
        want: Choice,
        what: &str,
    ) -> Result<()> {
        let want = match want {
            Choice::Real(r) => Some(r),
            Choice::NoReal => None,
        };
        if got != want {
            self.note(format!(
                "conn #{h} {what}: program {got:?} (ret {ret}), model {want:?}"
            ));
        }
        self.last[h] = self.now;
        self.check_flow(h)
    }

    /// Moves CLOCK to `now` and expires, as a sweep pass at that time would, every
    /// connection of the scenario idle longer than its state's timeout (default `--set`
    /// timeouts), by the model's state and the CLOCK of its last packet.
    pub fn sweep(&mut self, now: u32) -> Result<()> {
        self.now = now;
        lb_ctl::maps::clock::set_fixed(self.lb.dir(), now)?;
        for h in 0..self.conns.len() {
            let (svc, c) = self.conns[h];
            let Some(e) = self.model.conns.get(&(svc, c)) else {
                continue;
            };
            // The default `--set` timeouts: lb-common's, as the program reads a zero SETTINGS.
            let d = Timeouts::default();
            let timeout = if c.proto == 6 {
                tcp::timeout_s(e.state, d.tcp_s, d.tcpfin_s)
            } else {
                d.udp_s
            };
            let due = sweep::expired(now, self.last[h], timeout);
            // The sweep decides; the model's own rule (IPVS's timer) must agree, so a
            // change of the sweep's boundary fails here, not only in lb-ctl's unit tests.
            if due != tcp::expired(now, self.last[h], timeout) {
                self.note(format!(
                    "conn #{h} idle {} s, timeout {timeout} s: sweep says expired = {due}, \
                     IPVS's timer the opposite",
                    now.wrapping_sub(self.last[h])
                ));
            }
            if due {
                self.expire(h)?;
            }
        }
        // Templates: past their service's -p timeout since last used, and controlling no
        // live connection (IPVS re-arms a template's timer while n_control > 0).
        let mut due = Vec::new();
        let mut disagree = Vec::new();
        for (key, (svc, t)) in &self.tlast {
            let timeout = self.specs[*svc as usize - 1].persist.map_or(0, |p| p.0);
            let in_use = self.model.conns.values().any(|e| e.template == Some(*key));
            if !self.model.templates.contains_key(key) || in_use {
                continue;
            }
            // As the sweep's pass: kept while a live flow controls it, else by its expiry
            // rule, which must agree with IPVS's timer in the model.
            let expired = sweep::expired(now, *t, timeout);
            if expired != tcp::expired(now, *t, timeout) {
                disagree.push(format!(
                    "template {key:?} idle {} s, timeout {timeout} s: sweep says expired = \
                     {expired}, IPVS's timer the opposite",
                    now.wrapping_sub(*t)
                ));
            }
            if expired {
                due.push((*key, *svc));
            }
        }
        for line in disagree {
            self.note(line);
        }
        for ((masked, group), svc) in due {
            self.expire_template_key(svc, masked, group)?;
        }
        Ok(())
    }

    /// Every live connection expires.
    pub fn expire_all(&mut self) -> Result<()> {
        for h in 0..self.conns.len() {
            self.expire(h)?;
        }
        Ok(())
    }

    /// The template of client `n` in group `group` expires (its connections are gone).
    pub fn expire_template(&mut self, svc: u32, n: u32) -> Result<()> {
        let spec = self.specs[svc as usize - 1].clone();
        let (_, prefix, group) = spec.persist.expect("persistent service");
        let masked = model::mask(if spec.v6 { client6(n) } else { client(n) }, prefix);
        self.expire_template_key(svc, masked, group)
    }

    /// The PERSIST key of (masked client, group) for a service's protocol, and its template
    /// if the program holds one.
    fn template(
        &mut self,
        proto: u8,
        masked: IpAddr,
        group: u32,
    ) -> Result<(PersistKey, Option<PersistValue>)> {
        let (addr, family) = to_raw(masked);
        let key = PersistKey {
            client: addr,
            group: self.map_svc[&group],
            family,
            proto,
            _pad: [0; 2],
        };
        let v = match self
            .lb
            .hash::<PersistKey, PersistValue>(MAP_PERSIST)?
            .get(&key, 0)
        {
            Ok(v) => Some(v),
            Err(aya::maps::MapError::KeyNotFound) => None,
            Err(e) => return Err(e.into()),
        };
        Ok((key, v))
    }

    /// The template (masked client, group) expires: removed from PERSIST and counted in
    /// REAL_EXPIRED by lb-ctl's sweep code (`expire_template`).
    pub fn expire_template_key(&mut self, svc: u32, masked: IpAddr, group: u32) -> Result<()> {
        let spec = self.specs[svc as usize - 1].clone();
        let (key, _) = self.template(spec.proto, masked, group)?;
        if lb_ctl::maps::sweep::expire_template(self.lb.dir(), &key)?.is_none() {
            self.note(format!(
                "no PERSIST entry for client {masked} group {group}"
            ));
        }
        self.model.expire_template((masked, group));
        self.tlast.remove(&(masked, group));
        Ok(())
    }

    /// Compares every real's live counts with the model's (deleted reals too: their
    /// connections still count until they expire, as on IPVS's trashed dests).
    pub fn counts(&mut self, what: &str) -> Result<()> {
        for svc in 1..=self.specs.len() as u32 {
            let s = &self.model.services[&svc];
            let ids: Vec<u32> = s.dests.iter().chain(s.trash.iter()).map(|d| d.id).collect();
            for id in ids {
                // As `lb-ctl -L` counts them, by the real's map id.
                let c = self
                    .lb
                    .maps
                    .conn_counts(self.map_real(id)?)?
                    .context("the object keeps no connection counters")?;
                let got = (c.active as u32, c.inactive as u32, c.persistent as u32);
                let want = self.model.counts(svc, id);
                if got != want {
                    self.note(format!(
                        "{what}: real {id} (active, inactive, persistent) = {got:?}, IPVS would show {want:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The program back, and Ok or the report.
    pub fn finish(self) -> (Lb, Result<(), String>) {
        let res = if self.report.is_empty() {
            Ok(())
        } else {
            let mut r = String::new();
            let _ = write!(r, "{}", self.report);
            Err(r)
        };
        (self.lb, res)
    }
}
