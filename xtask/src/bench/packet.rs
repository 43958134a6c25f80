//! Per-packet cost of each path through `lb_xdp` (docs/design.md §6, §7 names), and how the
//! established-flow cost scales with the flow table and the number of services.
//!
//! The maps are provisioned directly with lb-common types, as lb-ctl would write them:
//! services with their Maglev tables, reals, address filters, established flows and NAT
//! reverse entries. Every timed call's verdict and output are checked against a frame built
//! independently (lb-tests' etherparse builders compute every checksum from scratch).

use super::Ctx;
use super::bpf::{Loaded, Plan, Timed, XDP_DROP, XDP_PASS, XDP_TX, exact, fixed, time_group};
use super::figure::{Figure, summarize};
use anyhow::{Context, Result, bail};
use aya::maps::{Array, HashMap, MapData};
use lb_common::addr::convert::{from_raw, to_raw};
use lb_common::conn::TcpState;
use lb_common::consts::{
    DEFAULT_MAGLEV_SIZE, ENCAP_TTL, MAP_FLOWS4, MAP_FLOWS6, MAP_NAT_FILTER, MAP_NAT_REV4,
    MAP_REALS, MAP_SCHED_TABLE, MAP_SERVICES, MAP_VIP_FILTER, MAP_VIPS, proto,
};
use lb_common::filter::filter_slot;
use lb_common::flow_cache::{DEFAULT_CACHE_BITS, cache_slot};
use lb_common::hash::{FLOW_SEED, flow_hash};
use lb_common::maglev::{Backend, build};
use lb_common::{
    Be16, FlowFlags, FlowKey, FlowKey4, FlowValue, ForwardMode, NatReverse, Real, RealFlags,
    SchedKind, Service, ServiceKey, VipFlags, VipKey,
};
use lb_tests::packet::{Ip, L4, Pkt};
use std::net::{IpAddr, Ipv4Addr};

/// Ingress of every test run without a context: the namespace's loopback. A real on it
/// is XDP_TX, the fast way out.
const IF_LO: u32 = 1;
/// The director's MAC as clients see it, and its egress MAC toward reals.
const MAC_DIRECTOR: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

const VIP4: &str = "198.19.0.1";
const VIP6: &str = "2001:db8:2::1";
/// The new-flow service (Maglev over [`NEW_FLOW_REALS`] reals, `-b mh-port`).
const VIP_NEW: &str = "198.19.0.2";
const NEW_FLOW_REALS: u32 = 100;
/// Not a VIP: pass-through traffic goes here (checked against the filter at setup).
const OTHER4: &str = "198.18.100.1";
const LOCAL4: &str = "198.18.255.254";
const LOCAL6: &str = "2001:db8:3::fe";
const VPORT: u16 = 80;
const NAT_PORT: u16 = 8080;
const CPORT: u16 = 40000;

/// Service ids.
const SVC4: u32 = 0;
const SVC6: u32 = 1;
const SVC_NEW: u32 = 2;
/// First id of the services of the service-count scale runs.
const SVC_SCALE: u32 = 10;
/// First real id of the new-flow service and of the scale services.
const REAL_NEW: u32 = 100;
const REAL_SCALE: u32 = 1000;

/// FLOWS / NAT_REV capacity the bench loads with: the 10^6-flow scale run plus every new
/// flow the new-flow path inserts, with room so the LRU does not evict.
pub const BENCH_MAX_FLOWS: u32 = 1 << 21;

/// A path as docs/design.md §7 names it, with its target (extra ns over pass_empty).
struct PathDef {
    name: String,
    target: Option<f64>,
    v6: bool,
    inputs: Vec<Vec<u8>>,
    check: super::bpf::Check<'static>,
    /// See [`Timed::after_run`].
    after_run: Option<super::bpf::AfterRun<'static>>,
    /// Calls per run when not the plan's.
    calls: Option<usize>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn v4_plus(base: &str, n: u32) -> IpAddr {
    let b: Ipv4Addr = base.parse().expect("IPv4 literal");
    IpAddr::V4(Ipv4Addr::from(u32::from(b) + n))
}

fn mac_of(id: u32) -> [u8; 6] {
    let b = id.to_be_bytes();
    [0x02, 0x00, b[0], b[1], b[2], b[3]]
}

fn real(mode: ForwardMode, svc: u32, id: u32, addr: IpAddr, local: IpAddr, port: u16) -> Real {
    let (a, family) = to_raw(addr);
    Real {
        addr: a,
        local_addr: to_raw(local).0,
        port: Be16::from_host(port),
        mode: mode as u8,
        family,
        flags: RealFlags(RealFlags::ACTIVE),
        svc_id: svc,
        weight: 1,
        ifindex: IF_LO,
        dst_mac: mac_of(id),
        src_mac: MAC_DIRECTOR,
        ..Real::default()
    }
}

/// An established TCP flow's FLOWS value, as lb leaves it after the handshake: ESTABLISHED
/// and active; a DR / TUN flow never sees a reply (`NO_OUTPUT`), a NAT flow has. (A
/// zeroed value is state NONE, which the first ACK moves to CLOSE: not an established
/// flow, and one whose every packet runs the state table.)
fn flow_value(real_id: u32, svc_id: u32, mode: ForwardMode) -> FlowValue {
    FlowValue {
        real_id,
        svc_id,
        state: TcpState::Established as u8,
        flags: if mode == ForwardMode::Nat {
            0
        } else {
            FlowFlags::NO_OUTPUT
        },
        fwd: mode as u8,
        ..FlowValue::default()
    }
}

fn key_of(p: &Pkt) -> FlowKey {
    let (s, d) = p.ports();
    let (src, family) = to_raw(p.ip.src());
    FlowKey {
        src,
        dst: to_raw(p.ip.dst()).0,
        sport: Be16::from_host(s),
        dport: Be16::from_host(d),
        proto: p.proto(),
        family,
        _pad: [0; 2],
    }
}

/// Typed access to the balancer's maps.
struct Maps<'a>(&'a mut Loaded);

impl Maps<'_> {
    fn hash<K: aya::Pod, V: aya::Pod>(&mut self, n: &str) -> Result<HashMap<&mut MapData, K, V>> {
        Ok(HashMap::try_from(self.0.map_mut(n)?)?)
    }
    fn array<V: aya::Pod>(&mut self, n: &str) -> Result<Array<&mut MapData, V>> {
        Ok(Array::try_from(self.0.map_mut(n)?)?)
    }
    fn real(&mut self, id: u32, r: &Real) -> Result<()> {
        self.array(MAP_REALS)?.set(id, *r, 0)?;
        if r.mode == ForwardMode::Nat as u8 {
            self.filter_bit(MAP_NAT_FILTER, &r.addr)?;
        }
        Ok(())
    }
    fn filter_bit(&mut self, map: &str, a: &lb_common::RawAddr) -> Result<()> {
        let (w, bit) = filter_slot(a);
        let mut m = self.array::<u64>(map)?;
        let v = m.get(&w, 0)?;
        m.set(w, v | bit, 0)?;
        Ok(())
    }
    fn filter_has(&mut self, map: &str, a: &lb_common::RawAddr) -> Result<bool> {
        let (w, bit) = filter_slot(a);
        Ok(self.array::<u64>(map)?.get(&w, 0)? & bit != 0)
    }
    /// A TCP service on `vip:port` with its table at `base` (empty table: len 0).
    fn service(
        &mut self,
        id: u32,
        vip: IpAddr,
        flags: u32,
        base: u32,
        table: &[u32],
    ) -> Result<()> {
        let (addr, family) = to_raw(vip);
        if !table.is_empty() {
            let mut t = self.array::<u32>(MAP_SCHED_TABLE)?;
            for (i, s) in table.iter().enumerate() {
                t.set(base + i as u32, *s, 0)?;
            }
        }
        let key = ServiceKey {
            addr,
            port: Be16::from_host(VPORT),
            proto: proto::TCP,
            family,
        };
        let svc = Service {
            id,
            flags: VipFlags(flags),
            sched: SchedKind::Maglev as u8,
            list_gen_le: [0; 3],
            table_base: base,
            table_len: table.len() as u32,
            ..Service::default()
        };
        self.hash(MAP_SERVICES)?.insert(key, svc, 0)?;
        let vk = VipKey {
            addr,
            family,
            _pad: [0; 3],
        };
        self.hash::<VipKey, u32>(MAP_VIPS)?.insert(vk, 1, 0)?;
        self.filter_bit(MAP_VIP_FILTER, &addr)
    }
    fn flow(&mut self, k: &FlowKey, real_id: u32, svc_id: u32, mode: ForwardMode) -> Result<()> {
        let v = flow_value(real_id, svc_id, mode);
        if k.is_v4() {
            self.hash(MAP_FLOWS4)?.insert(k.v4(), v, 0)?;
        } else {
            self.hash(MAP_FLOWS6)?.insert(*k, v, 0)?;
        }
        Ok(())
    }
}

/// The Maglev table of some reals (id, real), as lb-ctl builds it.
fn maglev(reals: &[(u32, Real)]) -> Vec<u32> {
    let b: Vec<Backend> = reals
        .iter()
        .map(|(id, r)| Backend {
            id: *id,
            addr: r.addr,
            port: r.port.to_host(),
            weight: r.weight,
        })
        .collect();
    build(&b, DEFAULT_MAGLEV_SIZE).expect("prime table size")
}

// ---- Expected outputs (docs/datapath.md "Forward modes"), built from scratch.

fn dr(p: &Pkt, r: &Real) -> Pkt {
    p.clone().macs(r.src_mac, r.dst_mac)
}

fn tun(p: &Pkt, r: &Real) -> Pkt {
    let local = from_raw(&r.local_addr, r.family);
    let to = from_raw(&r.addr, r.family);
    let outer = Pkt {
        src_mac: r.src_mac,
        dst_mac: r.dst_mac,
        vlans: Vec::new(),
        ip: Ip::new(local, to),
        l4: L4::Encap(Box::new(p.clone())),
        payload: Vec::new(),
        edits: Vec::new(),
    }
    .ttl(ENCAP_TTL)
    .tos(p.ip.tos());
    if r.family == lb_common::addr::family::V4 {
        let df = matches!(&p.ip, Ip::V4(h) if h.dont_fragment);
        outer.ip_id(0).df(df)
    } else {
        outer
    }
}

fn nat(p: &Pkt, r: &Real) -> Pkt {
    let ttl = p.ip.ttl() - 1;
    dr(p, r)
        .dst(from_raw(&r.addr, r.family))
        .dport(r.port.to_host())
        .ttl(ttl)
}

fn swap_macs(frame: &[u8]) -> Vec<u8> {
    let mut o = frame.to_vec();
    o[..6].copy_from_slice(&frame[6..12]);
    o[6..12].copy_from_slice(&frame[..6]);
    o
}

/// The packet the floor program is timed on: a TCP segment of the path's family.
fn floor_pkt(v6: bool) -> Pkt {
    if v6 {
        Pkt::tcp("2001:db8:1::30", VIP6, CPORT, VPORT)
    } else {
        Pkt::tcp("198.18.0.30", VIP4, CPORT, VPORT)
    }
}

fn floor_frame(v6: bool) -> Vec<u8> {
    floor_pkt(v6).bytes()
}

/// `frame` with the Ethernet addresses a DR forward to real `id` writes.
fn with_real_macs(frame: &[u8], id: u32) -> Vec<u8> {
    let mut o = frame.to_vec();
    o[..6].copy_from_slice(&mac_of(id));
    o[6..12].copy_from_slice(&MAC_DIRECTOR);
    o
}

/// A small deterministic generator (xorshift) for sampling flows.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

/// The figures of every path, the references, and the scale runs.
pub fn run(ctx: &Ctx, obj: &std::path::Path, refs: &mut Loaded) -> Result<Vec<Figure>> {
    // bench_flow4/6's tables know the floor frames' flows.
    {
        let mut m: HashMap<_, FlowKey4, FlowValue> =
            HashMap::try_from(refs.map_mut("BENCH_FLOWS4")?)?;
        m.insert(
            key_of(&floor_pkt(false)).v4(),
            flow_value(1, 0, ForwardMode::Dr),
            0,
        )?;
        let mut m: HashMap<_, FlowKey, FlowValue> =
            HashMap::try_from(refs.map_mut("BENCH_FLOWS6")?)?;
        m.insert(
            key_of(&floor_pkt(true)),
            flow_value(1, 0, ForwardMode::Dr),
            0,
        )?;
    }
    let refs: &Loaded = refs;
    let pass = refs.prog("bench_pass")?;
    let floor = refs.prog("bench_floor")?;
    let flow = [refs.prog("bench_flow4")?, refs.prog("bench_flow6")?];
    let pin = super::sys::pin_dir("paths")?;
    let mut lb = Loaded::balancer(obj, pin.path(), 1 << 17)?;
    let defs = provision(&mut lb, pin.path())?;
    let prog = lb.prog(lb_common::consts::PROG_LB)?;
    let shape = helper_calls(prog);
    let mut pass_all = Vec::new();
    let mut floor_all = Vec::new();
    let mut paths = Vec::new();
    // The least an established flow costs: the floor plus one LRU lookup of a FlowKey.
    let refdefs = [false, true].map(|v6| {
        let f = floor_frame(v6);
        PathDef {
            name: format!("floor_flow_{}", if v6 { "v6" } else { "v4" }),
            target: None,
            v6,
            inputs: vec![f.clone()],
            check: fixed(XDP_TX, swap_macs(&f)),
            after_run: None,
            calls: None,
        }
    });
    for def in refdefs {
        ctx.progress(&format!(
            "{}: reference, floor + one FLOWS-like lookup",
            def.name
        ));
        let f = match time_path(flow[def.v6 as usize], pass, floor, def, ctx.plan) {
            Ok((f, p, fl)) => {
                pass_all.extend(p);
                floor_all.extend(fl);
                f.note("floor + one hash lookup of the family's flow key (bench_flow4/6): the least an established flow costs")
            }
            Err((name, e)) => Figure::failed(name, "ns/pkt", format!("{e:#}")),
        };
        ctx.row(&f);
        paths.push(f);
    }
    for def in defs {
        ctx.progress(&format!(
            "{}: {} runs x {} calls, interleaved with pass_empty and floor",
            def.name,
            ctx.plan.runs,
            def.calls.unwrap_or(ctx.plan.calls)
        ));
        let f = match time_path(prog, pass, floor, def, ctx.plan) {
            Ok((f, p, fl)) => {
                pass_all.extend(p);
                floor_all.extend(fl);
                f
            }
            Err((name, e)) => Figure::failed(name, "ns/pkt", format!("{e:#}")),
        };
        ctx.row(&f);
        paths.push(f);
    }
    let pass_med = summarize(&pass_all).0;
    let mut pf = Figure::from_runs("pass_empty", "ns/pkt", &pass_all).note(
        "empty XDP_PASS program: what BPF_PROG_TEST_RUN itself costs; all runs of all groups",
    );
    pf.extra_over_pass = Some(0.0);
    let mut ff = Figure::from_runs("floor", "ns/pkt", &floor_all)
        .note("parse Ethernet+IP+ports, swap MACs, XDP_TX: no map, no helper call");
    ff.extra_over_pass = Some(ff.median - pass_med);
    ctx.row(&ff);
    ctx.row(&pf);
    let mut figures = vec![ff, pf];
    figures.extend(paths);
    match shape {
        Ok(f) => {
            ctx.row(&f);
            figures.push(f);
        }
        Err(e) => ctx.progress(&format!("no helper-call count: {e:#}")),
    }
    drop(lb);
    drop(pin);
    figures.extend(scale_flows(ctx, obj, &refs.path, pass, floor)?);
    figures.extend(scale_services(ctx, obj, pass, floor)?);
    Ok(figures)
}

/// The empty program timed on a path's first frame (it passes every frame untouched).
fn pass_timed(pass: &aya::programs::Xdp, frame: Vec<u8>) -> Timed<'_> {
    Timed {
        name: "pass_empty".into(),
        prog: pass,
        inputs: vec![frame.clone()],
        check: fixed(XDP_PASS, frame),
        after_run: None,
    }
}

/// `--compare B.o`: the per-packet paths of two builds of `lb_xdp`, each call of A, B and
/// `pass_empty` interleaved in one group, so both see the same machine: run-to-run drift
/// moves all three together (tens of ns on this VM) and drops out of B − A. What does not
/// drop out is where each JIT image lands: two builds with identical instructions measured
/// 0–14 ns apart here depending on which was loaded first. So the pair is loaded twice,
/// A then B and B then A, B − A is given for each order and their mean, and differences
/// within ~10 ns are not a result. Prints one line per path; makes no figures.
pub fn compare(
    ctx: &Ctx,
    obj_a: &std::path::Path,
    obj_b: &std::path::Path,
    refs: &Loaded,
    only: &[String],
    reps: u32,
) -> Result<()> {
    let pass = refs.prog("bench_pass")?;
    // `reps` times: [A, B] loaded in that order, then [B, A]; index 0 of each pair is A.
    let mut pairs = Vec::new();
    let orders = [("ab", [obj_a, obj_b]), ("ba", [obj_b, obj_a])];
    for (r, (tag, order)) in (0..reps).flat_map(|r| orders.map(|o| (r, o))) {
        let mut loaded = Vec::new();
        for (i, obj) in order.into_iter().enumerate() {
            let pin = super::sys::pin_dir(&format!("compare-{r}{tag}{i}"))?;
            let mut lb = Loaded::balancer(obj, pin.path(), 1 << 17)?;
            let defs = provision(&mut lb, pin.path())?;
            loaded.push((pin, lb, defs));
        }
        if tag == "ba" {
            loaded.reverse();
        }
        pairs.push(loaded);
    }
    println!(
        "{:<22} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "path", "A extra", "B extra", "B-A (A 1st)", "B-A (B 1st)", "B-A"
    );
    let names: Vec<String> = pairs[0][0].2.iter().map(|d| d.name.clone()).collect();
    for (k, name) in names.iter().enumerate() {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let mut extras = [Vec::new(), Vec::new()];
        // B − A with A loaded (and run) first, and with B first.
        let mut diffs = [Vec::new(), Vec::new()];
        for (j, pair) in pairs.iter_mut().enumerate() {
            let b_first = j % 2 == 1;
            let (d, e) = time_pair(ctx, pass, pair, k, b_first)?;
            diffs[j % 2].push(d);
            extras[0].push(e[0]);
            extras[1].push(e[1]);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "{name:<22} {:>8.1} {:>8.1} {:>+10.1} {:>+10.1} {:>+8.1}",
            mean(&extras[0]),
            mean(&extras[1]),
            mean(&diffs[0]),
            mean(&diffs[1]),
            mean(&[diffs[0].as_slice(), diffs[1].as_slice()].concat())
        );
    }
    Ok(())
}

/// One path of a loaded [A, B] pair timed with `pass_empty`: median over runs of B − A,
/// and each build's median extra over `pass_empty`. `b_first`: B's block of calls runs
/// before A's in each round, so each load order also has its own run order. Even so, two
/// loads of one identical object read up to ~10 ns apart on a path (mean of both orders
/// ±5 ns, single columns up to ±19): where the kernel puts each instance's JIT image and
/// per-CPU values. A difference below that is not a result.
fn time_pair(
    ctx: &Ctx,
    pass: &aya::programs::Xdp,
    pair: &mut [(super::sys::PinDir, Loaded, Vec<PathDef>)],
    k: usize,
    b_first: bool,
) -> Result<(f64, [f64; 2])> {
    let [a, b] = pair else {
        bail!("a pair has two builds");
    };
    let (da, db) = (&mut a.2[k], &mut b.2[k]);
    let plan = Plan {
        calls: da.calls.unwrap_or(ctx.plan.calls),
        ..ctx.plan
    };
    let first = da.inputs[0].clone();
    let mut group = vec![
        pass_timed(pass, first),
        lb_timed("A", &a.1, da)?,
        lb_timed("B", &b.1, db)?,
    ];
    if b_first {
        group.swap(1, 2);
    }
    let mut m = time_group(&mut group, plan)?;
    if b_first {
        m.swap(1, 2);
    }
    let pass_med = summarize(&m[0]).0;
    let diffs: Vec<f64> = m[1].iter().zip(&m[2]).map(|(x, y)| y - x).collect();
    Ok((
        summarize(&diffs).0,
        [summarize(&m[1]).0 - pass_med, summarize(&m[2]).0 - pass_med],
    ))
}

/// One build's timed program for a path: its inputs, and its check and after-run hook
/// moved out of the definition (each is used by one group only).
fn lb_timed<'a>(label: &str, lb: &'a Loaded, d: &mut PathDef) -> Result<Timed<'a>> {
    Ok(Timed {
        name: format!("{label} {}", d.name),
        prog: lb.prog(lb_common::consts::PROG_LB)?,
        inputs: d.inputs.clone(),
        check: std::mem::replace(
            &mut d.check,
            Box::new(|_, _, _, _| bail!("check used twice")),
        ),
        after_run: d.after_run.take(),
    })
}

/// Where per-packet time goes (docs/design.md §6: each helper call costs ~40–50 ns here): the
/// helper calls in the loaded program's translated code, counted by `bpftool prog dump
/// xlated` (static: every path's calls together), and the program's size.
fn helper_calls(prog: &aya::programs::Xdp) -> Result<Figure> {
    let id = prog.info()?.id().to_string();
    let xlated = super::sys::sh(&["bpftool", "prog", "dump", "xlated", "id", &id])?;
    let mut calls: std::collections::BTreeMap<String, u32> = Default::default();
    let mut insns = 0u32;
    // The map a helper works on is loaded into r1 just before the call.
    let mut last_map: Option<String> = None;
    let mut names: std::collections::HashMap<String, String> = Default::default();
    for l in xlated.lines() {
        let l = l.trim();
        let Some((n, rest)) = l.split_once(": (") else {
            continue;
        };
        if n.parse::<u32>().is_err() {
            continue;
        }
        insns += 1;
        if let Some(m) = rest.split("r1 = map[id:").nth(1) {
            last_map = m.split(']').next().map(str::to_string);
        }
        if let Some(c) = rest.strip_prefix("85) call ") {
            let helper = if c.starts_with("pc") {
                "bpf-to-bpf".to_string()
            } else {
                c.split('#').next().unwrap_or(c).to_string()
            };
            let map = last_map.take().map(|id| {
                names
                    .entry(id.clone())
                    .or_insert_with(|| map_name(&id).unwrap_or(id))
                    .clone()
            });
            let key = match map {
                Some(m) if helper.contains("map") => format!("{helper}({m})"),
                _ => helper,
            };
            *calls.entry(key).or_default() += 1;
        }
    }
    let show = super::sys::sh(&["bpftool", "prog", "show", "id", &id])?;
    let jited = show
        .split_whitespace()
        .skip_while(|w| *w != "jited")
        .nth(1)
        .unwrap_or("?")
        .to_string();
    let total: u32 = calls.values().sum();
    let list: Vec<String> = calls.iter().map(|(k, v)| format!("{k} x{v}")).collect();
    Ok(
        Figure::from_runs("lb_xdp_helper_calls", "calls", &[f64::from(total)]).note(format!(
            "static count in the xlated program ({insns} insns, jited {jited}): {}",
            list.join(", ")
        )),
    )
}

/// A map's name from its id (`bpftool map show id N`: "N: type  name NAME  flags ...").
fn map_name(id: &str) -> Option<String> {
    let out = super::sys::sh(&["bpftool", "map", "show", "id", id]).ok()?;
    let mut w = out.split_whitespace();
    w.find(|x| *x == "name")?;
    w.next().map(str::to_string)
}

type PathResult = std::result::Result<(Figure, Vec<f64>, Vec<f64>), (String, anyhow::Error)>;

/// Times one path in a group with pass_empty (on the path's own first frame) and floor
/// (on a TCP frame of the path's family); the extra is the path's median minus
/// pass_empty's median over the same runs.
fn time_path(
    prog: &aya::programs::Xdp,
    pass: &aya::programs::Xdp,
    floor: &aya::programs::Xdp,
    def: PathDef,
    plan: Plan,
) -> PathResult {
    let name = def.name.clone();
    let res = (|| -> Result<(Figure, Vec<f64>, Vec<f64>)> {
        let first = def.inputs[0].clone();
        let fl = floor_frame(def.v6);
        let fl_out = swap_macs(&fl);
        let mut group = vec![
            pass_timed(pass, first),
            Timed {
                name: "floor".into(),
                prog: floor,
                inputs: vec![fl],
                check: fixed(XDP_TX, fl_out),
                after_run: None,
            },
            Timed {
                name: def.name.clone(),
                prog,
                inputs: def.inputs,
                check: def.check,
                after_run: def.after_run,
            },
        ];
        let plan = Plan {
            calls: def.calls.unwrap_or(plan.calls),
            ..plan
        };
        let m = time_group(&mut group, plan)?;
        let pass_med = summarize(&m[0]).0;
        let mut f = Figure::from_runs(def.name.clone(), "ns/pkt", &m[2]).target(def.target);
        f.extra_over_pass = Some(f.median - pass_med);
        Ok((f, m[0].clone(), m[1].clone()))
    })();
    res.map_err(|e| (name, e))
}

/// Targets of issue 5 (ns over pass_empty).
const T_DR: f64 = 100.0;
const T_NAT: f64 = 110.0;
const T_TUN: f64 = 130.0;
const T_NEW: f64 = 500.0;
const T_PASS: f64 = 20.0;

/// New flows per run of the new-flow path: the same in quick and full runs, so the
/// figure does not depend on how full the flow table got (each run starts from the same
/// table: the flows a run inserted are deleted after it).
const NEW_FLOWS_PER_RUN: usize = 40_000;

/// Writes services, reals, flows and NAT entries for every path; returns the paths. `pin`
/// is where the maps are pinned (the new-flow path opens FLOWS there to clean up).
fn provision(lb: &mut Loaded, pin: &std::path::Path) -> Result<Vec<PathDef>> {
    use ForwardMode::{Dr, Nat, Tun};
    let mut m = Maps(lb);
    let r4: Vec<(u32, Real)> = vec![
        (1, real(Dr, SVC4, 1, ip("198.18.255.1"), ip(LOCAL4), VPORT)),
        (2, real(Tun, SVC4, 2, ip("198.18.255.2"), ip(LOCAL4), VPORT)),
        (
            3,
            real(Nat, SVC4, 3, ip("198.18.255.3"), ip(LOCAL4), NAT_PORT),
        ),
    ];
    let r6: Vec<(u32, Real)> = vec![
        (4, real(Dr, SVC6, 4, ip("2001:db8:3::1"), ip(LOCAL6), VPORT)),
        (
            5,
            real(Tun, SVC6, 5, ip("2001:db8:3::2"), ip(LOCAL6), VPORT),
        ),
        (
            6,
            real(Nat, SVC6, 6, ip("2001:db8:3::3"), ip(LOCAL6), NAT_PORT),
        ),
    ];
    let rn: Vec<(u32, Real)> = (0..NEW_FLOW_REALS)
        .map(|i| {
            let id = REAL_NEW + i;
            let a = v4_plus("198.18.254.1", i);
            (id, real(Dr, SVC_NEW, id, a, ip(LOCAL4), VPORT))
        })
        .collect();
    for (id, r) in r4.iter().chain(&r6).chain(&rn) {
        m.real(*id, r)?;
    }
    let size = DEFAULT_MAGLEV_SIZE;
    let table_new = maglev(&rn);
    m.service(SVC_NEW, ip(VIP_NEW), VipFlags::HASH_PORTS, 0, &table_new)?;
    m.service(SVC4, ip(VIP4), 0, size, &maglev(&r4))?;
    m.service(SVC6, ip(VIP6), 0, 2 * size, &maglev(&r6))?;

    let mut defs = Vec::new();
    let families = [
        (false, VIP4, "198.18.0.", &r4),
        (true, VIP6, "2001:db8:1::", &r6),
    ];
    for (v6, vip, client_net, reals) in families {
        for (k, (mode, target)) in [(Dr, T_DR), (Tun, T_TUN), (Nat, T_NAT)]
            .into_iter()
            .enumerate()
        {
            let (id, r) = reals[k];
            let client = format!("{client_net}{}", 10 + k);
            let p = Pkt::tcp(&client, vip, CPORT, VPORT);
            m.flow(&key_of(&p), id, r.svc_id, mode)?;
            let out = match mode {
                Dr => dr(&p, &r),
                Tun => tun(&p, &r),
                Nat => nat(&p, &r),
            };
            let mode_name = match mode {
                Dr => "dr",
                Tun => "tun",
                Nat => "nat",
            };
            defs.push(PathDef {
                name: format!("{mode_name}_established_{}", if v6 { "v6" } else { "v4" }),
                target: Some(target),
                v6,
                inputs: vec![p.bytes()],
                check: fixed(XDP_TX, out.bytes()),
                after_run: None,
                calls: None,
            });
        }
        // The DR flow's packets when this CPU's flow-cache slot holds another flow: two
        // flows sharing a slot, alternating call by call, so every packet reads FLOWS and
        // refills the slot (as the first packet of each second, or one whose slot a
        // busier flow took, does).
        let (id, r) = reals[0];
        let p = Pkt::tcp(&format!("{client_net}10"), vip, CPORT, VPORT);
        let slot = cache_slot(&key_of(&p), DEFAULT_CACHE_BITS);
        let q = (1024..=u16::MAX)
            .map(|port| Pkt::tcp(&format!("{client_net}10"), vip, port, VPORT))
            .find(|q| q.ports() != p.ports() && cache_slot(&key_of(q), DEFAULT_CACHE_BITS) == slot)
            .context("no client port shares the DR flow's cache slot")?;
        m.flow(&key_of(&q), id, r.svc_id, Dr)?;
        let (pb, qb) = (p.bytes(), q.bytes());
        let (po, qo) = (dr(&p, &r).bytes(), dr(&q, &r).bytes());
        let first = pb.clone();
        defs.push(PathDef {
            name: format!("dr_established_{}_uncached", if v6 { "v6" } else { "v4" }),
            target: None,
            v6,
            inputs: vec![pb, qb],
            check: exact(XDP_TX, move |_, input| {
                if input == first.as_slice() {
                    po.clone()
                } else {
                    qo.clone()
                }
            }),
            after_run: None,
            calls: None,
        });
    }

    // NAT return: the real's reply to the NAT client of the v4 service.
    let (nat_id, nat_real) = r4[2];
    let client = "198.18.0.12";
    let reply = Pkt::tcp("198.18.255.3", client, NAT_PORT, CPORT)
        .macs(nat_real.dst_mac, nat_real.src_mac)
        .ttl(64);
    let rev = NatReverse {
        vip: to_raw(ip(VIP4)).0,
        vport: Be16::from_host(VPORT),
        ifindex: IF_LO,
        client_mac: MAC_CLIENT,
        local_mac: MAC_DIRECTOR,
        svc_id: SVC4,
        real_id: nat_id,
        ..NatReverse::default()
    };
    let key = key_of(&reply).v4();
    if m.hash::<FlowKey4, NatReverse>(MAP_NAT_REV4).is_ok() {
        m.hash::<FlowKey4, NatReverse>(MAP_NAT_REV4)?
            .insert(key, rev, 0)?;
    } else {
        // An object from before `stamp_s` (`--compare` against an older build): its
        // values are the first 44 bytes, the same fields.
        let old: NatReverse44 = bytemuck::pod_read_unaligned(&bytemuck::bytes_of(&rev)[..44]);
        m.hash::<FlowKey4, NatReverse44>(MAP_NAT_REV4)?
            .insert(key, old, 0)?;
    }
    let back = reply
        .clone()
        .macs(MAC_DIRECTOR, MAC_CLIENT)
        .src(ip(VIP4))
        .sport(VPORT)
        .ttl(63);
    defs.push(PathDef {
        name: "nat_return_v4".into(),
        target: Some(T_NAT),
        v6: false,
        inputs: vec![reply.bytes()],
        check: fixed(XDP_TX, back.bytes()),
        after_run: None,
        calls: None,
    });

    // New flows: a distinct client address and port on every call of a run, scheduled by
    // Maglev over 100 reals and recorded in FLOWS4 (an LRU insert); each flow is checked
    // recorded and deleted after each run. A new connection's first packet is a SYN (the
    // target's figure); a mid-connection packet of a flow the director does not know (a
    // takeover) is timed beside it: it pays a flow lookup first.
    for (suffix, first, syn) in [
        ("", "198.19.64.0", true),
        ("_midstream", "198.19.192.0", false),
    ] {
        let mut inputs = Vec::with_capacity(NEW_FLOWS_PER_RUN);
        let mut keys = Vec::with_capacity(NEW_FLOWS_PER_RUN);
        let mut want = Vec::with_capacity(NEW_FLOWS_PER_RUN);
        for i in 0..NEW_FLOWS_PER_RUN as u32 {
            let src = v4_plus(first, i % 16384).to_string();
            let p = Pkt::tcp(&src, VIP_NEW, 10000 + (i / 16384) as u16, VPORT);
            let p = if syn { p.syn() } else { p };
            let k = key_of(&p);
            want.push(table_new[(flow_hash(&k, FLOW_SEED) % size) as usize]);
            keys.push(k.v4());
            inputs.push(p.bytes());
        }
        let mut flows: HashMap<MapData, FlowKey4, FlowValue> = lb_ctl::maps::open(pin, MAP_FLOWS4)?;
        defs.push(PathDef {
            name: format!("new_flow_{}_v4{suffix}", SchedKind::Maglev.name()),
            target: syn.then_some(T_NEW),
            v6: false,
            inputs,
            check: exact(XDP_TX, move |i, input| {
                with_real_macs(input, want[i % want.len()])
            }),
            after_run: Some(Box::new(move |calls| {
                for i in calls {
                    let k = &keys[i % keys.len()];
                    flows.remove(k).with_context(|| {
                        format!("call {i}: its flow was not recorded in {MAP_FLOWS4}")
                    })?;
                }
                Ok(())
            })),
            calls: Some(NEW_FLOWS_PER_RUN),
        });
    }

    // Pass-through: a destination whose VIP_FILTER bit is clear (no hash lookup at all).
    let mut n = 0;
    let other = loop {
        let a = v4_plus(OTHER4, n);
        if !m.filter_has(MAP_VIP_FILTER, &to_raw(a).0)? {
            break a;
        }
        n += 1;
    };
    let p = Pkt::tcp("198.18.0.20", &other.to_string(), CPORT, VPORT).bytes();
    defs.push(PathDef {
        name: "pass_through_v4".into(),
        target: Some(T_PASS),
        v6: false,
        inputs: vec![p.clone()],
        check: fixed(XDP_PASS, p),
        after_run: None,
        calls: None,
    });

    // Malformed: IPv4 with IHL 4 (16-byte header) to a VIP → drop BadHeader.
    let p = Pkt::tcp("198.18.0.21", VIP4, CPORT, VPORT)
        .put_l3(0, &[0x44])
        .bytes();
    defs.push(PathDef {
        name: "drop_malformed".into(),
        target: None,
        v6: false,
        inputs: vec![p.clone()],
        check: fixed(XDP_DROP, p),
        after_run: None,
        calls: None,
    });
    Ok(defs)
}

/// Number of distinct frames a scale run cycles through.
fn samples(ctx: &Ctx, n: u32) -> u32 {
    n.min((ctx.plan.runs * ctx.plan.calls) as u32).min(200_000)
}

/// The DR target for a scale row of `n` flows or services: only the one-flow row carries
/// it. The targets are per path, for an established flow; a random flow per call
/// among many measures the memory hierarchy (the one-lookup reference at 10^6 flows reads
/// ~3x the DR target on this machine), so those rows are read beside their reference.
fn scale_target(n: u32) -> Option<f64> {
    (n == 1).then_some(T_DR)
}

/// DR established with 1, 10^4 and 10^6 flows in FLOWS: each call hits a random one of
/// them, so the lookup touches as much of the table as real traffic would.
fn scale_flows(
    ctx: &Ctx,
    obj: &std::path::Path,
    ref_obj: &std::path::Path,
    pass: &aya::programs::Xdp,
    floor: &aya::programs::Xdp,
) -> Result<Vec<Figure>> {
    let pin = super::sys::pin_dir("scale-flows")?;
    let mut lb = Loaded::balancer(obj, pin.path(), BENCH_MAX_FLOWS)?;
    // The same flows in `bench_flow4`'s table: what one LRU lookup costs at each size,
    // beside lb's whole path (a random flow per call misses the caches for both).
    let mut refs = Loaded::refs_sized(ref_obj, &["bench_flow4"], "BENCH_FLOWS4", BENCH_MAX_FLOWS)?;
    let r = real(
        ForwardMode::Dr,
        SVC4,
        1,
        ip("198.18.255.1"),
        ip(LOCAL4),
        VPORT,
    );
    {
        let mut m = Maps(&mut lb);
        m.real(1, &r)?;
        m.service(SVC4, ip(VIP4), 0, 0, &maglev(&[(1, r)]))?;
    }
    let key = |i: u32| {
        let src = v4_plus("198.18.0.0", i % 65536);
        let mut k = key_of(&Pkt::tcp("198.18.0.1", VIP4, 1, VPORT));
        k.src = to_raw(src).0;
        k.sport = Be16::from_host(1024 + (i / 65536) as u16);
        k
    };
    let mut figures = Vec::new();
    let mut have = 0u32;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (n, label) in [(1u32, "1"), (10_000, "1e4"), (1_000_000, "1e6")] {
        let name = format!("dr_established_v4_flows_{label}");
        let t = std::time::Instant::now();
        {
            let mut flows: HashMap<_, FlowKey4, FlowValue> =
                HashMap::try_from(lb.map_mut(MAP_FLOWS4)?)?;
            for i in have..n {
                flows
                    .insert(key(i).v4(), flow_value(1, SVC4, ForwardMode::Dr), 0)
                    .with_context(|| format!("inserting flow {i}"))?;
            }
            let mut floor_flows: HashMap<_, FlowKey4, FlowValue> =
                HashMap::try_from(refs.map_mut("BENCH_FLOWS4")?)?;
            for i in have..n {
                floor_flows
                    .insert(key(i).v4(), flow_value(1, SVC4, ForwardMode::Dr), 0)
                    .with_context(|| format!("inserting reference flow {i}"))?;
            }
        }
        if n > have + 1000 {
            ctx.progress(&format!(
                "{} flows inserted in {:.2} s ({:.0} inserts/s from userspace)",
                n - have,
                t.elapsed().as_secs_f64(),
                f64::from(n - have) / t.elapsed().as_secs_f64()
            ));
        }
        have = n;
        let inputs: Vec<Vec<u8>> = (0..samples(ctx, n))
            .map(|_| {
                let k = key(rng.below(n));
                let src = from_raw(&k.src, k.family).to_string();
                Pkt::tcp(&src, VIP4, k.sport.to_host(), VPORT).bytes()
            })
            .collect();
        ctx.progress(&format!("{name}: {} distinct frames", inputs.len()));
        let reference = PathDef {
            name: format!("floor_flow_v4_flows_{label}"),
            target: None,
            v6: false,
            inputs: inputs.clone(),
            check: exact(XDP_TX, |_, input| swap_macs(input)),
            after_run: None,
            calls: None,
        };
        let f = match time_path(refs.prog("bench_flow4")?, pass, floor, reference, ctx.plan) {
            Ok((f, ..)) => f.note(format!(
                "floor + one hash lookup (bench_flow4), {n} flows in its table, a random one per call"
            )),
            Err((name, e)) => Figure::failed(name, "ns/pkt", format!("{e:#}")),
        };
        ctx.row(&f);
        figures.push(f);
        let def = PathDef {
            name,
            target: scale_target(n),
            v6: false,
            inputs,
            check: exact(XDP_TX, |_, input| with_real_macs(input, 1)),
            after_run: None,
            calls: None,
        };
        let prog = lb.prog(lb_common::consts::PROG_LB)?;
        let f = match time_path(prog, pass, floor, def, ctx.plan) {
            Ok((f, ..)) => f.note(format!("{n} flows in FLOWS4, a random one per call")),
            Err((name, e)) => Figure::failed(name, "ns/pkt", format!("{e:#}")),
        };
        ctx.row(&f);
        figures.push(f);
    }
    // FLOWS4 full: a new connection is scheduled and forwarded without a flow (fail open,
    // flow_insert_failed). A plain hash refuses at once; an LRU would evict a live flow.
    let t = std::time::Instant::now();
    let mut full = have;
    {
        let mut flows: HashMap<_, FlowKey4, FlowValue> =
            HashMap::try_from(lb.map_mut(MAP_FLOWS4)?)?;
        while full < BENCH_MAX_FLOWS
            && flows
                .insert(key(full).v4(), flow_value(1, SVC4, ForwardMode::Dr), 0)
                .is_ok()
        {
            full += 1;
        }
    }
    ctx.progress(&format!(
        "FLOWS4 filled to {full} flows in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let inputs: Vec<Vec<u8>> = (0..samples(ctx, 10_000))
        .map(|j| {
            let k = key(BENCH_MAX_FLOWS + j);
            let src = from_raw(&k.src, k.family).to_string();
            Pkt::tcp(&src, VIP4, k.sport.to_host(), VPORT).syn().bytes()
        })
        .collect();
    let def = PathDef {
        name: "new_flow_table_full_v4".into(),
        target: None,
        v6: false,
        inputs,
        check: exact(XDP_TX, |_, input| with_real_macs(input, 1)),
        after_run: None,
        calls: None,
    };
    let prog = lb.prog(lb_common::consts::PROG_LB)?;
    let f = match time_path(prog, pass, floor, def, ctx.plan) {
        Ok((f, ..)) => f.note(format!(
            "FLOWS4 full ({full} flows): a new client's SYN scheduled (mh) and forwarded without a flow, the insert refused"
        )),
        Err((name, e)) => Figure::failed(name, "ns/pkt", format!("{e:#}")),
    };
    ctx.row(&f);
    figures.push(f);
    Ok(figures)
}

/// DR established with 1, 100 and 10,000 services (one VIP, one real and one flow each);
/// each call hits a random service's flow.
fn scale_services(
    ctx: &Ctx,
    obj: &std::path::Path,
    pass: &aya::programs::Xdp,
    floor: &aya::programs::Xdp,
) -> Result<Vec<Figure>> {
    let pin = super::sys::pin_dir("scale-svcs")?;
    let mut lb = Loaded::balancer(obj, pin.path(), 1 << 16)?;
    let client = "198.18.2.1";
    let vip = |i: u32| v4_plus("198.19.128.0", i);
    let mut figures = Vec::new();
    let mut have = 0u32;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for (n, label) in [(1u32, "1"), (100, "100"), (10_000, "1e4")] {
        let name = format!("dr_established_v4_services_{label}");
        {
            let mut m = Maps(&mut lb);
            for i in have..n {
                let (svc, id) = (SVC_SCALE + i, REAL_SCALE + i);
                let a = v4_plus("198.18.200.0", i);
                let r = real(ForwardMode::Dr, svc, id, a, ip(LOCAL4), VPORT);
                m.real(id, &r)?;
                m.service(svc, vip(i), 0, 0, &[])?;
                let p = Pkt::tcp(client, &vip(i).to_string(), CPORT, VPORT);
                m.flow(&key_of(&p), id, svc, ForwardMode::Dr)?;
            }
        }
        have = n;
        let mut want = Vec::new();
        let inputs: Vec<Vec<u8>> = (0..samples(ctx, n))
            .map(|_| {
                let i = rng.below(n);
                want.push(REAL_SCALE + i);
                Pkt::tcp(client, &vip(i).to_string(), CPORT, VPORT).bytes()
            })
            .collect();
        let def = PathDef {
            name,
            target: scale_target(n),
            v6: false,
            inputs,
            check: exact(XDP_TX, move |i, input| {
                with_real_macs(input, want[i % want.len()])
            }),
            after_run: None,
            calls: None,
        };
        let prog = lb.prog(lb_common::consts::PROG_LB)?;
        let f = match time_path(prog, pass, floor, def, ctx.plan) {
            Ok((f, ..)) => f.note(format!(
                "{n} services (VIP, real, flow each), a random one per call"
            )),
            Err((name, e)) => Figure::failed(name, "ns/pkt", format!("{e:#}")),
        };
        ctx.row(&f);
        figures.push(f);
    }
    if have == 0 {
        bail!("no service scale run");
    }
    Ok(figures)
}

/// `NatReverse` as objects before its `stamp_s` field laid it out (44 bytes), so `--compare`
/// can time an older build.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NatReverse44([u32; 11]);
// SAFETY: plain bytes, as aya::Pod requires.
unsafe impl aya::Pod for NatReverse44 {}
