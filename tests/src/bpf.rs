//! The BPF test-run harness: a private network namespace (so the test owns `lo`, ifindex 1,
//! and a veth pair to redirect to), the real balancer object loaded with small flow tables,
//! typed access to its maps, and BPF_PROG_TEST_RUN of `lb_xdp` on one frame.

use crate::netns::Netns;
use anyhow::{Context, Result, anyhow, bail};
use aya::maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, Pod};
use lb_common::consts::{
    MAP_CLOCK, MAP_COUNTERS, MAP_FLOW_CACHE, MAP_FLOWS4, MAP_FLOWS6, MAP_NAT_FILTER, MAP_NAT_REV4,
    MAP_NAT_REV6, MAP_PERSIST, MAP_REAL_CONNS, MAP_REAL_STATS, MAP_REALS, MAP_SCHED_CURSOR,
    MAP_SCHED_TABLE, MAP_SERVICES, MAP_SETTINGS, MAP_SVC_STATS, MAP_TX_PORTS, MAP_VIP_FILTER,
    MAP_VIPS, PROG_LB, PROG_OPS,
};
use lb_common::flow_cache::MIN_CACHE_BITS;
use lb_common::{
    CounterBlock, FlowKey, FlowKey4, FlowValue, NatReverse, Real, Service, ServiceKey, Traffic,
    VipKey,
};
use lb_ctl::loader::Loader;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Ingress interface of every test run without an explicit one: the namespace's loopback,
/// which BPF_PROG_TEST_RUN uses as the frame's device. A real on this ifindex is XDP_TX.
pub const IF_LO: u32 = 1;
/// One end of the harness's veth pair, in TX_PORTS when a case lists it: a redirect target.
pub const IF_OUT: u32 = 10;
/// The other end of the veth pair: exists, but cases leave it out of TX_PORTS.
pub const IF_PEER: u32 = 11;

/// Flow-table capacity the harness loads with (FLOWS and NAT_REV), small so a load is quick.
pub const TEST_MAX_FLOWS: u32 = 1024;

/// The flow cache's slot bits per CPU in the tests (`FLOW_CACHE_BITS`, set at load as
/// lb-ctl sets it): the fewest lb-ctl picks, so emptying the cache for every case stays
/// cheap on many-CPU machines, and the program runs with a value other than its default.
pub const TEST_CACHE_BITS: u32 = MIN_CACHE_BITS;

/// Pins the calling thread to the CPU it is on: the flow cache is per CPU, so a sequence
/// whose packets ran on two CPUs would see two caches.
pub fn pin_to_this_cpu() -> Result<()> {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned here.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getcpu");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}

/// Possible CPUs (FLOW_CACHE has a part for each).
pub fn cpus() -> Result<u32> {
    let n = aya::util::nr_cpus().map_err(|(f, e)| anyhow!("{f}: {e}"))?;
    Ok(n as u32)
}

/// XDP verdicts (enum xdp_action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// XDP_ABORTED.
    Aborted = 0,
    /// XDP_DROP.
    Drop = 1,
    /// XDP_PASS.
    Pass = 2,
    /// XDP_TX.
    Tx = 3,
    /// XDP_REDIRECT.
    Redirect = 4,
}

impl Verdict {
    /// The verdict of a program return value.
    pub fn from_ret(v: u32) -> Option<Verdict> {
        [
            Verdict::Aborted,
            Verdict::Drop,
            Verdict::Pass,
            Verdict::Tx,
            Verdict::Redirect,
        ]
        .into_iter()
        .find(|x| *x as u32 == v)
    }
}

/// Moves the calling thread into a fresh network namespace (a [`Netns`] guard of the
/// harness) with `lo` up and a veth pair (ifindex [`IF_OUT`] and [`IF_PEER`]).
/// BPF_PROG_TEST_RUN runs frames as received on this namespace's `lo`, and devmap entries
/// must name devices of this namespace. The host's interfaces are never touched. Commands
/// spawned afterwards inherit the namespace. The guard is dropped once the thread is in:
/// its name goes, and the kernel frees the namespace with the thread, so not even a killed
/// run leaves it behind.
pub fn enter_netns() -> Result<()> {
    let ns = Netns::new("lbpkt", "harness")?;
    ns.veth(
        "lbt0",
        &format!("index {IF_OUT}"),
        None,
        "lbt1",
        &format!("index {IF_PEER}"),
    )?;
    ns.up("lbt0")?;
    ns.up("lbt1")?;
    ns.enter()?;
    Ok(())
}

/// Map slots written by the harness since the last [`Bpf::clear`].
#[derive(Default)]
struct Touched {
    reals: BTreeSet<u32>,
    services: BTreeSet<u32>,
    sched: BTreeSet<u32>,
    vip_words: BTreeSet<u32>,
    nat_words: BTreeSet<u32>,
}

/// The loaded balancer and its maps.
pub struct Bpf {
    ebpf: Ebpf,
    /// The object file it came from.
    pub path: PathBuf,
    touched: Touched,
}

/// Counter slots summed over CPUs, and the traffic of some services and reals.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every `COUNTERS` slot, summed over CPUs.
    pub counters: Vec<u64>,
    /// (service id, traffic summed over CPUs).
    pub svc: Vec<(u32, Traffic)>,
    /// (real id, traffic summed over CPUs).
    pub real: Vec<(u32, Traffic)>,
}

impl Bpf {
    /// Loads the object with small flow tables and loads `lb_xdp` into the kernel.
    pub fn load(path: &Path) -> Result<Bpf> {
        pin_to_this_cpu()?;
        // lb-ctl's own loader, unpinned: the maps and .rodata `lb-ctl load` would give,
        // with small flow tables and the fewest cache bits.
        let mut ebpf = Loader::balancer(path)
            .max_flows(TEST_MAX_FLOWS)
            .cache_bits(TEST_CACHE_BITS)
            .load()
            .with_context(|| format!("loading {PROG_LB} from {}", path.display()))?;
        // lb_ops too, when the object has it (lb-ctl's requests to the kernel, `run_ops`).
        if let Some(p) = ebpf.program_mut(PROG_OPS) {
            let ops: &mut Xdp = p.try_into()?;
            ops.load()
                .with_context(|| format!("loading {PROG_OPS} from {}", path.display()))?;
        }
        Ok(Bpf {
            ebpf,
            path: path.to_owned(),
            touched: Touched::default(),
        })
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("the object has no map {name}"))
    }

    fn hash<K: Pod, V: Pod>(&mut self, name: &str) -> Result<HashMap<&mut MapData, K, V>> {
        HashMap::try_from(self.map_mut(name)?).with_context(|| format!("map {name}"))
    }

    fn array<V: Pod>(&mut self, name: &str) -> Result<Array<&mut MapData, V>> {
        Array::try_from(self.map_mut(name)?).with_context(|| format!("map {name}"))
    }

    fn clear_hash<K: Pod, V: Pod>(&mut self, name: &str) -> Result<()> {
        let mut m = self.hash::<K, V>(name)?;
        let keys: Vec<K> = m.keys().collect::<Result<_, _>>()?;
        for k in keys {
            m.remove(&k)?;
        }
        Ok(())
    }

    /// Empties every map the cases write: hash maps entirely, array slots the harness wrote.
    /// Statistics are not cleared: cases check deltas.
    pub fn clear(&mut self) -> Result<()> {
        self.clear_hash::<ServiceKey, Service>(MAP_SERVICES)?;
        self.clear_hash::<VipKey, u32>(MAP_VIPS)?;
        self.clear_hash::<FlowKey4, FlowValue>(MAP_FLOWS4)?;
        self.clear_hash::<FlowKey, FlowValue>(MAP_FLOWS6)?;
        self.clear_hash::<FlowKey4, NatReverse>(MAP_NAT_REV4)?;
        self.clear_hash::<FlowKey, NatReverse>(MAP_NAT_REV6)?;
        {
            let mut ports = DevMapHash::try_from(self.map_mut(MAP_TX_PORTS)?)?;
            let keys: Vec<u32> = ports.keys().collect::<Result<_, _>>()?;
            for k in keys {
                ports.remove(k)?;
            }
        }
        // The connection model's state (IPVS counters, templates, cursors, locality
        // entries, clock, settings) starts from zero in every case, as after a fresh load.
        self.clear_hash::<lb_common::PersistKey, lb_common::PersistValue>(MAP_PERSIST)?;
        self.array::<lb_common::conn::Settings>(MAP_SETTINGS)?.set(
            0,
            lb_common::conn::Settings::default(),
            0,
        )?;
        // Time 0, stopped (no HZ measured: the kernel clock reads 0 too).
        self.array::<lb_common::clock::Clock>(MAP_CLOCK)?.set(
            0,
            lb_common::clock::Clock::default(),
            0,
        )?;
        self.zero_flow_cache()?;
        let t = std::mem::take(&mut self.touched);
        let mut conns = self.array::<lb_common::conn::ConnEvents>(MAP_REAL_CONNS)?;
        for &i in &t.reals {
            conns.set(i, lb_common::conn::ConnEvents::default(), 0)?;
        }
        let mut cursors = self.array::<u64>(MAP_SCHED_CURSOR)?;
        for &i in &t.services {
            cursors.set(i, 0, 0)?;
        }
        // LBLC's values (`LocalityValue`, 48 bytes) as words: all zero is no entry.
        const LOCALITY_WORDS: usize = size_of::<lb_common::LocalityValue>() / 4;
        let mut lblc = self.array::<[u32; LOCALITY_WORDS]>(lb_common::consts::MAP_LBLC)?;
        for &i in &t.services {
            lblc.set(i, [0; LOCALITY_WORDS], 0)?;
        }
        let mut reals = self.array::<Real>(MAP_REALS)?;
        for i in t.reals {
            reals.set(i, Real::default(), 0)?;
        }
        let mut sched = self.array::<u32>(MAP_SCHED_TABLE)?;
        for i in t.sched {
            sched.set(i, 0, 0)?;
        }
        let mut f = self.array::<u64>(MAP_VIP_FILTER)?;
        for i in t.vip_words {
            f.set(i, 0, 0)?;
        }
        let mut f = self.array::<u64>(MAP_NAT_FILTER)?;
        for i in t.nat_words {
            f.set(i, 0, 0)?;
        }
        Ok(())
    }

    /// Empties every CPU's flow cache (one memset through mmap). A
    /// case's cached flows must not serve the next case's packets, whose CLOCK second (0)
    /// and flow keys are often the same.
    pub fn zero_flow_cache(&mut self) -> Result<()> {
        use std::os::fd::{AsFd, AsRawFd};
        let map = match self.map_mut(MAP_FLOW_CACHE)? {
            aya::maps::Map::Array(m) => m,
            _ => bail!("{MAP_FLOW_CACHE} is not an array"),
        };
        let info = map.info().context("FLOW_CACHE info")?;
        let len = info.max_entries() as usize * info.value_size() as usize;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a shared read-write mapping of the map's own length, written and unmapped
        // here; the kernel allows it for BPF_F_MMAPABLE arrays.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error()).context("mmap FLOW_CACHE");
            }
            std::ptr::write_bytes(p.cast::<u8>(), 0, len);
            libc::munmap(p, len);
        }
        Ok(())
    }

    /// SERVICES[key] = svc.
    pub fn put_service(&mut self, key: ServiceKey, svc: Service) -> Result<()> {
        self.touched.services.insert(svc.id);
        Ok(self.hash(MAP_SERVICES)?.insert(key, svc, 0)?)
    }

    /// VIPS[key] = count.
    pub fn put_vip(&mut self, key: VipKey, count: u32) -> Result<()> {
        Ok(self.hash(MAP_VIPS)?.insert(key, count, 0)?)
    }

    /// REALS[id] = real.
    pub fn put_real(&mut self, id: u32, real: Real) -> Result<()> {
        self.touched.reals.insert(id);
        Ok(self.array(MAP_REALS)?.set(id, real, 0)?)
    }

    /// SCHED_TABLE[base..] = slots.
    pub fn put_table(&mut self, base: u32, slots: &[u32]) -> Result<()> {
        let mut m = self.array::<u32>(MAP_SCHED_TABLE)?;
        for (i, s) in slots.iter().enumerate() {
            m.set(base + i as u32, *s, 0)?;
        }
        self.touched.sched.extend(base..base + slots.len() as u32);
        Ok(())
    }

    /// Sets a bit in VIP_FILTER (`nat` false) or NAT_FILTER (`nat` true).
    pub fn set_filter_bit(&mut self, nat: bool, (word, bit): (u32, u64)) -> Result<()> {
        let name = if nat { MAP_NAT_FILTER } else { MAP_VIP_FILTER };
        let mut m = self.array::<u64>(name)?;
        let v = m.get(&word, 0)?;
        m.set(word, v | bit, 0)?;
        if nat {
            self.touched.nat_words.insert(word);
        } else {
            self.touched.vip_words.insert(word);
        }
        Ok(())
    }

    /// SETTINGS[0] = settings (timeouts, expire_nodest_conn, expire_quiescent_template).
    pub fn put_settings(&mut self, v: lb_common::conn::Settings) -> Result<()> {
        Ok(self.array(MAP_SETTINGS)?.set(0, v, 0)?)
    }

    /// Fixes the data path's time at `t` seconds (`Clock::fixed_s`).
    pub fn put_clock(&mut self, t: u32) -> Result<()> {
        let c = lb_common::clock::Clock {
            fixed_s: t,
            ..Default::default()
        };
        Ok(self.array(MAP_CLOCK)?.set(0, c, 0)?)
    }

    /// REAL_CONNS[id]: the data path's connection events of a real.
    pub fn real_conns(&mut self, id: u32) -> Result<lb_common::conn::ConnEvents> {
        Ok(self.array(MAP_REAL_CONNS)?.get(&id, 0)?)
    }

    /// FLOWS[key] = value (FLOWS4 or FLOWS6 by the key's family).
    pub fn put_flow(&mut self, key: FlowKey, v: FlowValue) -> Result<()> {
        self.put_by_family(MAP_FLOWS4, MAP_FLOWS6, &key, v)
    }

    /// Removes FLOWS[key] (FLOWS4 or FLOWS6 by the key's family), as the LRU evicts it.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        if key.is_v4() {
            Ok(self
                .hash::<FlowKey4, FlowValue>(MAP_FLOWS4)?
                .remove(&key.v4())?)
        } else {
            Ok(self.hash::<FlowKey, FlowValue>(MAP_FLOWS6)?.remove(key)?)
        }
    }

    /// NAT_REV[key] = value (NAT_REV4 or NAT_REV6 by the key's family).
    pub fn put_nat_rev(&mut self, key: FlowKey, v: NatReverse) -> Result<()> {
        self.put_by_family(MAP_NAT_REV4, MAP_NAT_REV6, &key, v)
    }

    fn put_by_family<V: Pod>(
        &mut self,
        v4: &'static str,
        v6: &'static str,
        key: &FlowKey,
        v: V,
    ) -> Result<()> {
        if key.is_v4() {
            Ok(self.hash::<FlowKey4, V>(v4)?.insert(key.v4(), v, 0)?)
        } else {
            Ok(self.hash::<FlowKey, V>(v6)?.insert(key, v, 0)?)
        }
    }

    fn get_by_family<V: Pod>(
        &mut self,
        v4: &'static str,
        v6: &'static str,
        key: &FlowKey,
    ) -> Result<Option<V>> {
        if key.is_v4() {
            get_opt(self.hash::<FlowKey4, V>(v4)?.get(&key.v4(), 0))
        } else {
            get_opt(self.hash::<FlowKey, V>(v6)?.get(key, 0))
        }
    }

    /// TX_PORTS[ifindex] = ifindex.
    pub fn put_tx_port(&mut self, ifindex: u32) -> Result<()> {
        let mut m = DevMapHash::try_from(self.map_mut(MAP_TX_PORTS)?)?;
        m.insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("TX_PORTS[{ifindex}]"))?;
        Ok(())
    }

    /// FLOWS[key], if present (FLOWS4 or FLOWS6 by the key's family).
    pub fn flow(&mut self, key: &FlowKey) -> Result<Option<FlowValue>> {
        self.get_by_family(MAP_FLOWS4, MAP_FLOWS6, key)
    }

    /// NAT_REV[key], if present (NAT_REV4 or NAT_REV6 by the key's family).
    pub fn nat_rev(&mut self, key: &FlowKey) -> Result<Option<NatReverse>> {
        self.get_by_family(MAP_NAT_REV4, MAP_NAT_REV6, key)
    }

    /// Number of flows, both families.
    pub fn flow_count(&mut self) -> Result<usize> {
        Ok(self.hash::<FlowKey4, FlowValue>(MAP_FLOWS4)?.keys().count()
            + self.hash::<FlowKey, FlowValue>(MAP_FLOWS6)?.keys().count())
    }

    /// Empties PERSIST, FLOWS4 and NAT_REV4 (between rounds of a hammer).
    pub fn clear_persist_and_flows4(&mut self) -> Result<()> {
        self.clear_hash::<lb_common::PersistKey, lb_common::PersistValue>(MAP_PERSIST)?;
        self.clear_hash::<FlowKey4, FlowValue>(MAP_FLOWS4)?;
        self.clear_hash::<FlowKey4, NatReverse>(MAP_NAT_REV4)?;
        Ok(())
    }

    /// PERSIST[k] = v: a template as the data path would have written it.
    pub fn put_persist(
        &mut self,
        k: lb_common::PersistKey,
        v: lb_common::PersistValue,
    ) -> Result<()> {
        self.hash::<lb_common::PersistKey, lb_common::PersistValue>(MAP_PERSIST)?
            .insert(k, v, 0)?;
        Ok(())
    }

    /// Number of persistence templates (PERSIST).
    pub fn persist_count(&mut self) -> Result<usize> {
        Ok(self
            .hash::<lb_common::PersistKey, lb_common::PersistValue>(MAP_PERSIST)?
            .keys()
            .count())
    }

    /// Number of NAT reply entries, both families.
    pub fn nat_rev_count(&mut self) -> Result<usize> {
        Ok(self
            .hash::<FlowKey4, NatReverse>(MAP_NAT_REV4)?
            .keys()
            .count()
            + self
                .hash::<FlowKey, NatReverse>(MAP_NAT_REV6)?
                .keys()
                .count())
    }

    /// All counters and the traffic of the given services and reals, summed over CPUs.
    pub fn snapshot(&mut self, svcs: &[u32], reals: &[u32]) -> Result<Snapshot> {
        let counters = {
            let m = PerCpuArray::<_, CounterBlock>::try_from(self.map_mut(MAP_COUNTERS)?)?;
            let mut total = CounterBlock::default();
            for cpu in m.get(&0, 0)?.iter() {
                total.add(cpu);
            }
            total.slots.to_vec()
        };
        let traffic = |this: &mut Bpf, name: &str, ids: &[u32]| -> Result<Vec<(u32, Traffic)>> {
            let m = PerCpuArray::<_, Traffic>::try_from(this.map_mut(name)?)?;
            ids.iter()
                .map(|id| {
                    let mut t = Traffic::default();
                    for c in m.get(id, 0)?.iter() {
                        t.add(c);
                    }
                    Ok((*id, t))
                })
                .collect()
        };
        let svc = traffic(self, MAP_SVC_STATS, svcs)?;
        let real = traffic(self, MAP_REAL_STATS, reals)?;
        Ok(Snapshot {
            counters,
            svc,
            real,
        })
    }

    /// Runs `lb_ops` once on request `op` with `payload` (lb-common `ops`) and returns the
    /// payload as the program left it; an error when the object has no `lb_ops` or the
    /// program reports a status other than OK.
    pub fn run_ops(&self, op: u32, payload: &[u8]) -> Result<Vec<u8>> {
        use lb_common::ops::{OP_BUFFER_MIN, OpHeader, status};
        let prog: &Xdp = self
            .ebpf
            .program(PROG_OPS)
            .ok_or_else(|| anyhow!("no program {PROG_OPS} in {}", self.path.display()))?
            .try_into()?;
        let hdr = OpHeader {
            op,
            status: status::PENDING,
        };
        let mut buf = bytemuck::bytes_of(&hdr).to_vec();
        buf.extend_from_slice(payload);
        buf.resize(buf.len().max(OP_BUFFER_MIN), 0);
        let mut out = vec![0u8; buf.len()];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(&buf),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .context("BPF_PROG_TEST_RUN of lb_ops")?;
        out.truncate(res.data_size_out as usize);
        let n = size_of::<OpHeader>();
        let got: OpHeader = bytemuck::pod_read_unaligned(out.get(..n).context("short reply")?);
        if got.status != status::OK {
            bail!("{PROG_OPS} op {op}: status {}", got.status);
        }
        Ok(out.split_off(n))
    }

    /// Runs `lb_xdp` once on a copy of `frame` received on `ingress`; returns the program's
    /// return value and the frame as it left the program.
    pub fn run(&self, frame: &[u8], ingress: u32) -> Result<(u32, Vec<u8>)> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_LB)
            .ok_or_else(|| anyhow!("no program {PROG_LB}"))?
            .try_into()?;
        // Room for the largest growth (IP6IP6 adds 40 bytes) and more.
        let mut out = vec![0u8; frame.len() + 512];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data 0 and data_end = the frame's length.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ingress, 0, 0];
        let md_bytes: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: (ingress != IF_LO).then_some(md_bytes.as_slice()),
                repeat: 1,
                ..TestRunOptions::new()
            })
            .context("BPF_PROG_TEST_RUN")?;
        out.truncate(res.data_size_out as usize);
        Ok((res.return_value, out))
    }
}

fn get_opt<V>(r: Result<V, aya::maps::MapError>) -> Result<Option<V>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
