//! End to end: packets per second through a director namespace on veth (docs/design.md §6).
//!
//! ```text
//!  gen ns              dir ns (director)                          sink ns
//!  lbb-gen <──veth──> lbb-in [lb_xdp]   lbb-out [lb_xdp] <──veth──> lbb-sink [bench_sink]
//!  198.18.0.2         198.18.0.1        198.18.1.1                  198.18.1.2, .3 (reals)
//! ```
//!
//! The generator is `bench_tx` run by BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on
//! lbb-gen: every frame is XDP_TX'd out of lbb-gen into lbb-in — no pktgen needed (the
//! kernel here has none). The receiver `bench_sink` counts and drops. The same director
//! then balances with nftables DNAT (numgen over the two reals) instead of lb: the kernel's
//! own path, what a user without IPVS would run. In that variant lbb-in runs the empty
//! XDP_PASS program so veth takes XDP frames and hands them to the stack.
//!
//! CPUs: the generator thread is pinned to CPU 1; lbb-in's NAPI is made threaded and its
//! kthread pinned to CPU 0, so everything the director does (and the sink's tiny program,
//! which runs in the same softirq) happens on CPU 0. The figure is packets received at the
//! sink per second: what one director core forwards. Without threaded NAPI, veth would
//! process frames in the generator's own softirq (one CPU for everything) and the
//! kernel-stack variant would starve in ksoftirqd.

use super::Ctx;
use super::bpf::Loaded;
use super::ctl::{iface_index, iface_mac};
use super::figure::Figure;
use super::sys::{self, Netns};
use anyhow::{Context, Result, anyhow, bail};
use aya::maps::{Array, PerCpuArray};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, XdpMode};
use lb_tests::packet::Pkt;
use std::path::Path;
use std::time::{Duration, Instant};

const VIP: &str = "198.19.0.1";
const PORT: u16 = 80;
const REALS: [&str; 2] = ["198.18.1.2", "198.18.1.3"];
/// The generator's frame length (bench_tx's BENCH_FRAME holds exactly this much).
const FRAME_LEN: usize = 60;
/// Frames per live-frames batch (the kernel's default is 64).
const BATCH: u32 = 64;
/// Frames per BPF_PROG_TEST_RUN call of the generator.
const REPEAT: u32 = 1 << 18;
/// The CPU the generator (and with it the whole path) runs on.
const GEN_CPU: usize = 1;
/// The CPU the director's NAPI thread runs on.
const DIR_CPU: usize = 0;

/// The three namespaces and their veths.
struct Topology {
    gen_ns: Netns,
    dir: Netns,
    sink: Netns,
    /// lbb-in's MAC (the frames' destination).
    in_mac: [u8; 6],
    gen_mac: [u8; 6],
    gen_ifindex: u32,
    sink_ifindex: u32,
}

impl Topology {
    fn new(tag: &str) -> Result<Topology> {
        let gen_ns = sys::netns(&format!("{tag}-gen"))?;
        let dir = sys::netns(&format!("{tag}-dir"))?;
        let sink = sys::netns(&format!("{tag}-sink"))?;
        gen_ns.sh(&[
            "ip",
            "link",
            "add",
            "lbb-gen",
            "type",
            "veth",
            "peer",
            "name",
            "lbb-in",
            "netns",
            dir.name(),
        ])?;
        dir.sh(&[
            "ip",
            "link",
            "add",
            "lbb-out",
            "type",
            "veth",
            "peer",
            "name",
            "lbb-sink",
            "netns",
            sink.name(),
        ])?;
        gen_ns.sh(&["ip", "addr", "add", "198.18.0.2/24", "dev", "lbb-gen"])?;
        dir.sh(&["ip", "addr", "add", "198.18.0.1/24", "dev", "lbb-in"])?;
        dir.sh(&["ip", "addr", "add", "198.18.1.1/24", "dev", "lbb-out"])?;
        for r in REALS {
            sink.sh(&["ip", "addr", "add", &format!("{r}/24"), "dev", "lbb-sink"])?;
        }
        gen_ns.sh(&["ip", "link", "set", "lbb-gen", "up"])?;
        dir.sh(&["ip", "link", "set", "lbb-in", "up"])?;
        dir.sh(&["ip", "link", "set", "lbb-out", "up"])?;
        sink.sh(&["ip", "link", "set", "lbb-sink", "up"])?;
        let sink_mac = iface_mac(&sink, "lbb-sink")?;
        let mac = fmt_mac(&sink_mac);
        for r in REALS {
            dir.sh(&[
                "ip",
                "neigh",
                "replace",
                r,
                "lladdr",
                &mac,
                "dev",
                "lbb-out",
                "nud",
                "permanent",
            ])?;
        }
        Ok(Topology {
            in_mac: iface_mac(&dir, "lbb-in")?,
            gen_mac: iface_mac(&gen_ns, "lbb-gen")?,
            gen_ifindex: iface_index(&gen_ns, "lbb-gen")?,
            sink_ifindex: iface_index(&sink, "lbb-sink")?,
            gen_ns,
            dir,
            sink,
        })
    }

    /// A minimum-size UDP frame client → VIP:80 (60 bytes before the FCS).
    fn frame(&self) -> Vec<u8> {
        let f = Pkt::udp("198.18.0.2", VIP, 12345, PORT)
            .payload(&[0x5a; 18])
            .macs(self.gen_mac, self.in_mac)
            .bytes();
        debug_assert_eq!(f.len(), FRAME_LEN);
        f
    }
}

/// Makes lbb-in's NAPI threaded (it exists once an XDP program is attached), pins its
/// kthread to [`DIR_CPU`] and gives it SCHED_FIFO, the precedence softirq work has. sysfs is per namespace, so this one write goes through
/// `ip netns exec` (which only hides bpffs, not needed here).
fn thread_napi(dir: &Netns) -> Result<()> {
    let f = "/sys/class/net/lbb-in/threaded";
    sys::sh(&[
        "ip",
        "netns",
        "exec",
        dir.name(),
        "sh",
        "-c",
        &format!("echo 1 > {f}"),
    ])
    .context("making lbb-in's NAPI threaded")?;
    let mut pinned = 0;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with("napi/lbb-in-") {
            sys::pin_pid(pid, DIR_CPU)?;
            sys::fifo_pid(pid, 50)?;
            pinned += 1;
        }
    }
    if pinned == 0 {
        bail!("no napi/lbb-in-* thread after enabling threaded NAPI");
    }
    Ok(())
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Attaches a reference program (native mode) to an interface of a namespace: from a
/// thread inside it, since the ifindex is resolved in the caller's namespace.
fn attach(refs: &mut Loaded, prog: &str, ns: &Netns, ifindex: u32) -> Result<()> {
    let name = ns.name().to_string();
    let p = refs.prog_mut(prog)?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            sys::enter(&name)?;
            p.attach_to_if_index(ifindex, XdpMode::Driver)
                .with_context(|| format!("attaching {prog} in {name}"))?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow!("attach thread panicked"))?
    })
}

fn sink_count(refs: &mut Loaded) -> Result<u64> {
    let m = PerCpuArray::<_, u64>::try_from(refs.map_mut("BENCH_RX")?)?;
    Ok(m.get(&0, 0)?.iter().sum())
}

/// Drives the generator for about `secs` seconds per run, `runs` times; returns received
/// packets per second at the sink for each run, and what share of the sent frames arrived.
fn measure(
    ctx: &Ctx,
    refs: &mut Loaded,
    topo: &Topology,
    runs: usize,
    secs: f64,
) -> Result<(Vec<f64>, f64)> {
    let frame = topo.frame();
    // bench_tx restores this frame before every send (pages come back modified).
    let words: [u16; FRAME_LEN / 2] =
        std::array::from_fn(|i| u16::from_ne_bytes([frame[2 * i], frame[2 * i + 1]]));
    Array::<_, [u16; FRAME_LEN / 2]>::try_from(refs.map_mut("BENCH_FRAME")?)?.set(0, words, 0)?;
    let md: [u32; 6] = [0, frame.len() as u32, 0, topo.gen_ifindex, 0, 0];
    let md: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let gen_name = topo.gen_ns.name().to_string();
    let mut pps = Vec::new();
    let (mut sent_all, mut got_all) = (0u64, 0u64);
    // A short warm-up run: the first packet creates the flow, the rings fill.
    for run in 0..=runs {
        let before = sink_count(refs)?;
        let dur = if run == 0 { 0.1 } else { secs };
        let prog = refs.prog("bench_tx")?;
        let (sent, elapsed) = std::thread::scope(|s| {
            s.spawn(|| -> Result<(u64, f64)> {
                sys::enter(&gen_name)?;
                sys::pin_cpu(GEN_CPU);
                let t = Instant::now();
                let mut sent = 0u64;
                while t.elapsed().as_secs_f64() < dur {
                    prog.test_run(TestRunOptions {
                        data_in: Some(&frame),
                        ctx_in: Some(&md),
                        repeat: REPEAT,
                        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                        ..TestRunOptions::new()
                    })
                    .context("BPF_PROG_TEST_RUN (live frames)")?;
                    sent += u64::from(REPEAT);
                }
                Ok((sent, t.elapsed().as_secs_f64()))
            })
            .join()
            .map_err(|_| anyhow!("generator thread panicked"))?
        })?;
        // Frames still in the veth rings are counted when they drain.
        std::thread::sleep(Duration::from_millis(20));
        let got = sink_count(refs)? - before;
        if run == 0 {
            if got == 0 {
                bail!("no frame reached the sink during the warm-up ({sent} sent)");
            }
            continue;
        }
        sent_all += sent;
        got_all += got;
        pps.push(got as f64 / elapsed);
    }
    ctx.progress(&format!(
        "{got_all} of {sent_all} generated frames reached the sink ({:.1}%)",
        got_all as f64 * 100.0 / sent_all.max(1) as f64
    ));
    Ok((pps, (got_all as f64 / sent_all.max(1) as f64).min(1.0)))
}

pub fn run(ctx: &Ctx, lb_obj: &Path, ref_obj: &Path) -> Result<Vec<Figure>> {
    let (runs, secs) = if ctx.quick { (3, 0.5) } else { (5, 2.0) };
    let mut figures = Vec::new();
    let mut push = |f: Figure| {
        ctx.row(&f);
        figures.push(f);
    };
    match lb_variant(ctx, lb_obj, ref_obj, runs, secs) {
        Ok(fs) => fs.into_iter().for_each(&mut push),
        Err(e) => push(Figure::failed("e2e_pps_veth", "pps", format!("{e:#}"))),
    }
    push(
        nft_variant(ctx, ref_obj, runs, secs)
            .unwrap_or_else(|e| Figure::failed("e2e_pps_nft_dnat", "pps", format!("{e:#}"))),
    );
    Ok(figures)
}

/// lb on the director: loaded and attached by `lb-ctl load`, one service, one DR real.
fn lb_variant(
    ctx: &Ctx,
    lb_obj: &Path,
    ref_obj: &Path,
    runs: usize,
    secs: f64,
) -> Result<Vec<Figure>> {
    if let Some(why) = super::bpf::refused() {
        bail!("{why} (not tried again)");
    }
    let topo = Topology::new("e2e")?;
    let pin = sys::pin_dir("e2e")?;
    let ctl = ctx.root.join("target/release/lb-ctl");
    let lb_ctl = |args: &[&str]| -> Result<()> {
        let mut c = topo.dir.cmd(&ctl);
        c.env("LB_PIN_DIR", pin.path())
            .env("LB_BPF_OBJECT", lb_obj)
            .args(args);
        let o = c.output().context("running lb-ctl")?;
        if !o.status.success() {
            bail!(
                "lb-ctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(())
    };
    lb_ctl(&["load", "--iface", "lbb-in", "--iface", "lbb-out"])?;
    let svc = format!("{VIP}:{PORT}");
    lb_ctl(&["-A", "-u", &svc, "-s", "mh"])?;
    lb_ctl(&["-a", "-u", &svc, "-r", REALS[0], "-g"])?;
    let mut refs = Loaded::refs(ref_obj, &["bench_tx", "bench_sink"])?;
    attach(&mut refs, "bench_sink", &topo.sink, topo.sink_ifindex)?;
    thread_napi(&topo.dir)?;
    ctx.progress(&format!(
        "lb on lbb-in (native), DR to {} via lbb-out; {runs} runs of {secs} s",
        REALS[0]
    ));
    let (pps, share) = measure(ctx, &mut refs, &topo, runs, secs)?;
    let live = Figure::from_runs("e2e_pps_veth", "pps", &pps).note(format!(
        "one UDP flow, 60-byte frames, director on CPU {DIR_CPU}, generator on CPU {GEN_CPU}; {:.1}% of generated frames forwarded",
        share * 100.0
    ));
    let pktgen = pktgen(ctx, &mut refs, &topo, runs, secs);
    Ok(vec![live, pktgen])
}

/// The kernel's path on the same director: forwarding with nftables DNAT (numgen).
fn nft_variant(ctx: &Ctx, ref_obj: &Path, runs: usize, secs: f64) -> Result<Figure> {
    if sys::sh(&["nft", "--version"]).is_err() {
        bail!("nft is not installed (`cargo xtask setup` installs nftables)");
    }
    let topo = Topology::new("nft")?;
    let d = &topo.dir;
    d.sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    d.sh(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])?;
    d.sh(&["sysctl", "-qw", "net.ipv4.conf.lbb-in.rp_filter=0"])?;
    let rules = format!(
        "table ip lbbench {{ chain pre {{ type nat hook prerouting priority dstnat; policy accept; \
         ip daddr {VIP} udp dport {PORT} dnat to numgen inc mod 2 map {{ 0 : {}, 1 : {} }}; }}; }}",
        REALS[0], REALS[1]
    );
    let mut c = d.cmd("nft");
    c.arg(&rules);
    let o = c.output().context("running nft")?;
    if !o.status.success() {
        bail!("nft failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    let mut refs = Loaded::refs(ref_obj, &["bench_tx", "bench_sink", "bench_pass"])?;
    let in_index = iface_index(d, "lbb-in")?;
    attach(&mut refs, "bench_pass", d, in_index)?;
    attach(&mut refs, "bench_sink", &topo.sink, topo.sink_ifindex)?;
    thread_napi(d)?;
    ctx.progress(&format!(
        "nftables DNAT (numgen, 2 reals) on the director, XDP_PASS on lbb-in; {runs} runs of {secs} s"
    ));
    let (pps, share) = measure(ctx, &mut refs, &topo, runs, secs)?;
    Ok(
        Figure::from_runs("e2e_pps_nft_dnat", "pps", &pps).note(format!(
            "same frames and core; kernel forwarding + conntrack + DNAT; {:.1}% of generated frames forwarded",
            share * 100.0
        )),
    )
}

/// The same lb director driven by the kernel's pktgen from the generator namespace, where
/// the kernel has it (/proc/net/pktgen). This kernel has none, so the figure says so and the
/// live-frames generator above is the measurement. Not exercised here: written to the
/// pktgen interface as documented (Documentation/networking/pktgen.rst).
fn pktgen(ctx: &Ctx, refs: &mut Loaded, topo: &Topology, runs: usize, secs: f64) -> Figure {
    const NAME: &str = "e2e_pps_veth_pktgen";
    if !Path::new("/proc/net/pktgen").exists() {
        let mut f = Figure::from_runs(NAME, "pps", &[]);
        f.note = Some(
            "pktgen absent (no /proc/net/pktgen in this kernel): XDP live frames generated e2e_pps_veth"
                .into(),
        );
        return f;
    }
    match pktgen_runs(ctx, refs, topo, runs, secs) {
        Ok(pps) => Figure::from_runs(NAME, "pps", &pps)
            .note("pktgen (one kthread, 60-byte UDP) into the lb director"),
        Err(e) => Figure::failed(NAME, "pps", format!("{e:#}")),
    }
}

fn pktgen_runs(
    ctx: &Ctx,
    refs: &mut Loaded,
    topo: &Topology,
    runs: usize,
    secs: f64,
) -> Result<Vec<f64>> {
    let gen_name = topo.gen_ns.name().to_string();
    let in_mac = fmt_mac(&topo.in_mac);
    // pktgen is per network namespace: /proc/thread-self/net is the calling thread's.
    let pg = "/proc/thread-self/net/pktgen";
    let write = |file: &str, cmd: &str| -> Result<()> {
        std::fs::write(format!("{pg}/{file}"), cmd)
            .with_context(|| format!("pktgen: writing {cmd:?} to {file}"))
    };
    let setup = || -> Result<()> {
        let thread = format!("kpktgend_{GEN_CPU}");
        write(&thread, "rem_device_all")?;
        write(&thread, "add_device lbb-gen")?;
        for cmd in [
            "count 0".to_string(),
            "clone_skb 0".into(),
            "pkt_size 60".into(),
            "delay 0".into(),
            format!("dst {VIP}"),
            format!("dst_mac {in_mac}"),
            "src_min 198.18.0.2".into(),
            "src_max 198.18.0.2".into(),
            "udp_src_min 12345".into(),
            "udp_src_max 12345".into(),
            format!("udp_dst_min {PORT}"),
            format!("udp_dst_max {PORT}"),
        ] {
            write("lbb-gen", &cmd)?;
        }
        Ok(())
    };
    let mut pps = Vec::new();
    for _ in 0..runs {
        let before = sink_count(refs)?;
        let elapsed = std::thread::scope(|s| -> Result<f64> {
            let starter = s.spawn(|| -> Result<f64> {
                sys::enter(&gen_name)?;
                setup()?;
                let t = Instant::now();
                // Blocks until a "stop".
                write("pgctrl", "start")?;
                Ok(t.elapsed().as_secs_f64())
            });
            std::thread::sleep(Duration::from_secs_f64(secs));
            s.spawn(|| -> Result<()> {
                sys::enter(&gen_name)?;
                write("pgctrl", "stop")
            })
            .join()
            .map_err(|_| anyhow!("pktgen stop thread panicked"))??;
            starter
                .join()
                .map_err(|_| anyhow!("pktgen thread panicked"))?
        })?;
        std::thread::sleep(Duration::from_millis(20));
        pps.push((sink_count(refs)? - before) as f64 / elapsed);
    }
    ctx.progress("pktgen runs done");
    Ok(pps)
}
