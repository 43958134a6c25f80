//! `cargo xtask bench [--json FILE] [--quick] [--plot FILE.svg] [--compare B.o]`: the benchmarks of
//! docs/design.md §6 — per-packet cost of each path by BPF_PROG_TEST_RUN beside an empty and a
//! floor program, scale with flows and services, control-plane costs, and end-to-end
//! packets per second through a director namespace (and nftables DNAT as the kernel's
//! peer). Prints a table while it runs; no test asserts a timing, targets are reported.
//!
//! Modules: [`figure`] (figures, table, JSON), [`bpf`] (loading, the timing loop),
//! [`packet`] (paths and scale), [`ctl`] (control plane), [`e2e`] (veth namespaces),
//! [`plot`] (the SVG chart), [`sys`] (namespace and pin-directory guards).

mod bpf;
mod ctl;
mod e2e;
mod figure;
mod packet;
mod plot;
mod sys;

use crate::util::{self, note, root, step};
use anyhow::{Context, Result, bail};
use bpf::{Loaded, Plan};
use figure::Figure;
use lb_ctl::loader::{ObjectFile, object_path};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the figures as JSON (docs/design.md §7 schema) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Shorter runs (under 2 minutes): fewer calls and runs per figure.
    #[arg(long)]
    pub quick: bool,
    /// Draw the per-path costs and their targets as a bar chart (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Use the objects and binaries already built instead of building first.
    #[arg(long)]
    pub no_build: bool,
    /// Run only these parts (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Instead of the figures: time this other build of lb (an lb.bpf.o) against the
    /// current one, interleaved call by call, and print B − A for each per-packet path.
    #[arg(long, value_name = "OBJ")]
    pub compare: Option<PathBuf>,
    /// With --compare: only these paths (comma-separated names, e.g. dr_established_v4).
    #[arg(long, value_delimiter = ',', requires = "compare")]
    pub paths: Vec<String>,
    /// With --compare: loaded pairs per load order. Each load of an object lands its JIT
    /// image and per-CPU values elsewhere, which alone moves a path by up to ~10 ns; more
    /// pairs average that out (time grows with them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8), requires = "compare")]
    pub pairs: u32,
}

/// The parts of the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Per-packet paths and their scale runs (BPF_PROG_TEST_RUN).
    Packet,
    /// Memory per flow, Maglev build, map update rate, lb-ctl to data path.
    Ctl,
    /// Packets per second through a director namespace (lb, nftables DNAT).
    E2e,
}

/// What every part of the bench needs: the run's size and the printing.
pub struct Ctx {
    /// Workspace root.
    pub root: PathBuf,
    /// Size of each per-packet group.
    pub plan: Plan,
    /// `--quick`.
    pub quick: bool,
    start: Instant,
}

impl Ctx {
    /// A progress line (with the elapsed time).
    pub fn progress(&self, msg: &str) {
        println!("  [{:>5.1}s] {msg}", self.start.elapsed().as_secs_f64());
        let _ = std::io::stdout().flush();
    }

    /// A finished figure's table row.
    pub fn row(&self, f: &Figure) {
        println!("{}", figure::row(f));
        let _ = std::io::stdout().flush();
    }
}

/// The reference programs in lb-bench-ref.bpf.o.
const REF_PROGS: [&str; 6] = [
    "bench_pass",
    "bench_floor",
    "bench_flow4",
    "bench_flow6",
    "bench_tx",
    "bench_sink",
];

pub fn run(args: Args) -> Result<()> {
    if !util::is_root() {
        bail!("the bench loads BPF programs and makes network namespaces: run it as root");
    }
    let t = Instant::now();
    if !args.no_build {
        crate::build::run()?;
    }
    sys::init();
    let root = root();
    let ctx = Ctx {
        root: root.clone(),
        plan: if args.quick {
            Plan {
                runs: 5,
                calls: 40_000,
                block: 500,
            }
        } else {
            Plan {
                runs: 10,
                calls: 100_000,
                block: 1000,
            }
        },
        quick: args.quick,
        start: Instant::now(),
    };
    let lb_obj = object_path(ObjectFile::BALANCER, None)?;
    let ref_obj = object_path(bpf::REF_OBJECT, None)?;
    let machine = machine(&ctx);
    step(&format!(
        "bench{}: {} on {}",
        if args.quick { " --quick" } else { "" },
        lb_obj.display(),
        machine["cpu"].as_str().unwrap_or("?")
    ));
    note(&format!(
        "per-packet: {} runs x {} calls per program (repeat=1, fresh copy, kernel-reported ns)",
        ctx.plan.runs, ctx.plan.calls
    ));
    let mut refs = Loaded::refs(&ref_obj, &REF_PROGS)?;
    if let Some(other) = &args.compare {
        step_line(
            &ctx,
            &format!("A = {}, B = {}", lb_obj.display(), other.display()),
        );
        packet::compare(&ctx, &lb_obj, other, &refs, &args.paths, args.pairs)?;
        step(&format!(
            "compare done in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        return Ok(());
    }
    println!("{}", figure::header());

    let mut figures = Vec::new();
    let mut failed_parts = Vec::new();
    let mut part = |name: &str, r: Result<Vec<Figure>>, figures: &mut Vec<Figure>| match r {
        Ok(f) => figures.extend(f),
        Err(e) => {
            println!("  {name} could not run: {e:#}");
            failed_parts.push(format!("{name}: {e:#}"));
        }
    };
    let wanted = |p: Part| args.only.is_empty() || args.only.contains(&p);
    if wanted(Part::Packet) {
        step_line(&ctx, "per-packet paths (BPF_PROG_TEST_RUN)");
        part(
            "per-packet",
            packet::run(&ctx, &lb_obj, &mut refs),
            &mut figures,
        );
    }
    if wanted(Part::Ctl) {
        step_line(&ctx, "control plane");
        part("control plane", ctl::run(&ctx, &lb_obj), &mut figures);
    }
    if wanted(Part::E2e) {
        step_line(&ctx, "end to end (veth, XDP live frames)");
        part(
            "end to end",
            e2e::run(&ctx, &lb_obj, &ref_obj),
            &mut figures,
        );
    }

    step(&format!(
        "bench done in {:.1} s: {} figures",
        t.elapsed().as_secs_f64(),
        figures.len()
    ));
    println!("{}", figure::header());
    for f in &figures {
        println!("{}", figure::row(f));
    }
    summary(&figures);
    if let Some(path) = &args.json {
        let doc = json!({
            "machine": machine,
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        note(&format!("wrote {}", path.display()));
    }
    if let Some(path) = &args.plot {
        if plot::draw(path, &figures, &machine)? {
            note(&format!("wrote {}", path.display()));
        } else {
            note("no per-packet figure to plot: --plot needs the packet part");
        }
    }
    let broken: Vec<&Figure> = figures.iter().filter(|f| f.failed.is_some()).collect();
    if !failed_parts.is_empty() || !broken.is_empty() {
        bail!(
            "{} figure(s) failed and {} part(s) could not run (see above)",
            broken.len(),
            failed_parts.len()
        );
    }
    Ok(())
}

fn step_line(ctx: &Ctx, what: &str) {
    step(&format!(
        "{what} [{:.1}s]",
        ctx.start.elapsed().as_secs_f64()
    ));
}

/// Targets met and missed, one line each.
fn summary(figures: &[Figure]) {
    let met: Vec<&str> = figures
        .iter()
        .filter(|f| f.met() == Some(true))
        .map(|f| f.name.as_str())
        .collect();
    let missed: Vec<String> = figures
        .iter()
        .filter(|f| f.met() == Some(false))
        .map(|f| match f.target {
            Some(t) if f.failed.is_none() => format!("{} ({:.1} > {t})", f.name, f.judged()),
            _ => format!("{} (failed)", f.name),
        })
        .collect();
    note(&format!("targets met ({}): {}", met.len(), met.join(", ")));
    note(&format!(
        "targets missed ({}): {}",
        missed.len(),
        if missed.is_empty() {
            "none".into()
        } else {
            missed.join(", ")
        }
    ));
}

/// The `machine` object of the JSON: what the figures were measured on.
fn machine(ctx: &Ctx) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = util::output(std::process::Command::new("uname").arg("-r"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let commit = util::output(
        std::process::Command::new("git")
            .current_dir(&ctx.root)
            .args(["rev-parse", "--short", "HEAD"]),
    )
    .map(|s| s.trim().to_string());
    let date = util::output(std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
        .map(|s| s.trim().to_string());
    let jit = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim() == "1")
        .ok();
    json!({
        "cpu": cpu,
        "cores": cores,
        "memory_gib": mem_gib,
        "kernel": kernel,
        "bpf_jit": jit,
        "commit": commit,
        "date": date,
        "quick": ctx.quick,
        "calls_per_run": ctx.plan.calls,
        "runs": ctx.plan.runs,
    })
}
