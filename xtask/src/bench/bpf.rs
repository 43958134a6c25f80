//! The programs under test and the timing loop.
//!
//! `lb_xdp` is loaded from the object every other tool uses (target/release/lb.bpf.o after
//! `cargo xtask build`) by lb-ctl's own [`lb_ctl::loader::Loader`], as `lb-ctl load
//! --max-flows N` loads it (the same flow tables, FLOW_CACHE and FLOW_CACHE_BITS), with its
//! maps pinned in a bench pin directory, so lb-ctl (library and CLI) can work on the same
//! maps. The reference programs come from lb-bench-ref.bpf.o.
//!
//! Timing (docs/design.md §6): BPF_PROG_TEST_RUN with repeat = 1 on a fresh copy of the input
//! per call, the kernel-reported duration of each call, every return value and output
//! checked. A path is timed in a group with `pass_empty` and `floor`, interleaved in blocks
//! within each run, so the three share the machine's state of the moment. A run's value is
//! the mean of its calls between the 40th and 60th percentile ([`central_mean`]); a
//! figure's median, min and max are over runs.

use super::figure::central_mean;
use anyhow::{Context, Result, anyhow, bail};
use aya::maps::Map;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use lb_common::consts::PROG_LB;
use lb_ctl::loader::ObjectFile;
pub use lb_ctl::maps::MapSize;
use std::path::{Path, PathBuf};

/// XDP verdicts (enum xdp_action).
pub const XDP_DROP: u32 = 1;
/// XDP_PASS.
pub const XDP_PASS: u32 = 2;
/// XDP_TX.
pub const XDP_TX: u32 = 3;
/// XDP_REDIRECT.
pub const XDP_REDIRECT: u32 = 4;

/// The reference object the bench compares lb with (no environment override: it is
/// always found by `lb_ctl::loader::object_path`'s search).
pub const REF_OBJECT: ObjectFile = ObjectFile {
    file: "lb-bench-ref.bpf.o",
    bin: "lb-bench-ref",
    env: None,
};

/// Why the balancer failed to load, once it has: a refused program can take the verifier a
/// minute (a million instructions), so the other parts do not try again.
static REFUSED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The balancer's load failure, if it failed before.
pub fn refused() -> Option<String> {
    REFUSED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// An object with its XDP programs loaded.
pub struct Loaded {
    ebpf: Ebpf,
    /// The object file.
    pub path: PathBuf,
}

impl Loaded {
    /// The balancer with each family's FLOWS / NAT_REV sized `max_flows` and every map pinned under
    /// `pin_dir`.
    pub fn balancer(path: &Path, pin_dir: &Path, max_flows: u32) -> Result<Loaded> {
        if let Some(why) = refused() {
            bail!("{why} (not tried again)");
        }
        // lb-ctl's own loader, as `lb-ctl load --max-flows max_flows` loads it: the same
        // map sizes, the same FLOW_CACHE and FLOW_CACHE_BITS, every map pinned by name.
        let loaded = lb_ctl::loader::Loader::balancer(path)
            .pin_dir(pin_dir)
            .max_flows(max_flows)
            .load();
        match loaded {
            Ok(ebpf) => Ok(Loaded {
                ebpf,
                path: path.to_owned(),
            }),
            Err(e) => {
                let why = anyhow::Error::from(e).context(format!("loading {PROG_LB}"));
                *REFUSED.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{why:#}"));
                Err(why)
            }
        }
    }

    /// The reference programs' object, each of `progs` loaded.
    pub fn refs(path: &Path, progs: &[&str]) -> Result<Loaded> {
        Self::load_refs(EbpfLoader::new(), path, progs)
    }

    /// The reference programs with one map's capacity changed (the scale runs' flow
    /// table for `bench_flow4`).
    pub fn refs_sized(path: &Path, progs: &[&str], map: &str, max: u32) -> Result<Loaded> {
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(map, max);
        Self::load_refs(loader, path, progs)
    }

    fn load_refs(mut loader: EbpfLoader<'_>, path: &Path, progs: &[&str]) -> Result<Loaded> {
        let ebpf = loader
            .load_file(path)
            .with_context(|| format!("loading {}", path.display()))?;
        let mut l = Loaded {
            ebpf,
            path: path.to_owned(),
        };
        for p in progs {
            l.load_prog(p)?;
        }
        Ok(l)
    }

    fn load_prog(&mut self, name: &str) -> Result<()> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("{} has no program {name}", self.path.display()))?
            .try_into()
            .with_context(|| format!("{name} is not an XDP program"))?;
        match prog.load() {
            Ok(()) => Ok(()),
            Err(aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            }) => {
                // One line, as lb-ctl does: the last line of the log before its statistics;
                // the whole log goes to a file.
                let log = verifier_log.to_string();
                let reason = lb_ctl::loader::verifier_reason(&log).to_string();
                let file = std::env::temp_dir().join(format!("lb-bench-verifier-{name}.log"));
                let _ = std::fs::write(&file, &log);
                bail!(
                    "the kernel refused {name} from {}: {io_error}; verifier: {reason} (log in {})",
                    self.path.display(),
                    file.display()
                )
            }
            Err(e) => Err(e).with_context(|| format!("loading {name}")),
        }
    }

    /// A loaded program.
    pub fn prog(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
            .try_into()?)
    }

    /// A program, mutable (to attach it).
    pub fn prog_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
            .try_into()?)
    }

    /// A map of the object.
    pub fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("{} has no map {name}", self.path.display()))
    }
}

/// The [`MapSize`] of the map pinned as `name` under `pin` (lb-ctl's maps/ opens it).
pub fn map_size(pin: &Path, name: &'static str) -> Result<MapSize> {
    lb_ctl::maps::pinned_size(pin, name)?
        .with_context(|| format!("{name} is not pinned under {}", pin.display()))
}

/// One BPF_PROG_TEST_RUN call: return value, kernel-reported duration (ns) and output
/// length (written into `out`).
pub fn run_once(prog: &Xdp, input: &[u8], out: &mut [u8]) -> Result<(u32, u32, usize)> {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(out),
            repeat: 1,
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok((
        r.return_value,
        u32::try_from(r.duration.as_nanos()).unwrap_or(u32::MAX),
        r.data_size_out as usize,
    ))
}

/// The check of one call: (call number, input, return value, output) → ok or why not.
pub type Check<'a> = Box<dyn FnMut(usize, &[u8], u32, &[u8]) -> Result<()> + 'a>;

/// One program timed in a group: what it runs on and how its result is checked.
pub struct Timed<'a> {
    /// Name for messages.
    pub name: String,
    /// The program.
    pub prog: &'a Xdp,
    /// Inputs; call `i` of the whole group uses `inputs[i % len]`.
    pub inputs: Vec<Vec<u8>>,
    /// Checks every call.
    pub check: Check<'a>,
    /// Runs after each run (untimed) with the range of call numbers that run made: undoes
    /// state the calls left (the new-flow path deletes the flows it inserted).
    pub after_run: Option<AfterRun<'a>>,
}

/// See [`Timed::after_run`].
pub type AfterRun<'a> = Box<dyn FnMut(std::ops::Range<usize>) -> Result<()> + 'a>;

/// How long a group runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Runs; each yields one median per program.
    pub runs: usize,
    /// Calls per program per run.
    pub calls: usize,
    /// Calls in a row for one program before switching to the next.
    pub block: usize,
}

/// Runs a group: `plan.runs` runs, each alternating between the programs in blocks of
/// `plan.block` calls until each made `plan.calls`. Returns, per program, the median
/// kernel-reported ns of each run ([`central_mean`]). Stops at the first failed check.
pub fn time_group(group: &mut [Timed<'_>], plan: Plan) -> Result<Vec<Vec<f64>>> {
    let mut medians = vec![Vec::with_capacity(plan.runs); group.len()];
    let mut call = vec![0usize; group.len()];
    let mut out = vec![0u8; 4096];
    let mut samples: Vec<Vec<u32>> = vec![Vec::with_capacity(plan.calls); group.len()];
    for _ in 0..plan.runs {
        for s in samples.iter_mut() {
            s.clear();
        }
        let first = call.clone();
        let mut done = 0;
        while done < plan.calls {
            let n = plan.block.min(plan.calls - done);
            for (gi, t) in group.iter_mut().enumerate() {
                for _ in 0..n {
                    let i = call[gi];
                    let input = &t.inputs[i % t.inputs.len()];
                    let (ret, ns, len) = run_once(t.prog, input, &mut out)?;
                    if len > out.len() {
                        bail!("{}: output of {len} bytes overflowed the buffer", t.name);
                    }
                    (t.check)(i, input, ret, &out[..len])
                        .with_context(|| format!("{}: call {i}", t.name))?;
                    samples[gi].push(ns);
                    call[gi] += 1;
                }
            }
            done += n;
        }
        for (gi, s) in samples.iter_mut().enumerate() {
            medians[gi].push(central_mean(s));
        }
        for (gi, t) in group.iter_mut().enumerate() {
            if let Some(f) = t.after_run.as_mut() {
                f(first[gi]..call[gi]).with_context(|| format!("{}: after a run", t.name))?;
            }
        }
    }
    Ok(medians)
}

/// A check that every call returns `ret` and outputs `expected(input)` exactly.
pub fn exact<'a>(ret: u32, expected: impl Fn(usize, &[u8]) -> Vec<u8> + 'a) -> Check<'a> {
    Box::new(move |i, input, got_ret, out| {
        if got_ret != ret {
            bail!(
                "returned {} where {} was expected",
                verdict(got_ret),
                verdict(ret)
            );
        }
        let want = expected(i, input);
        if out != want.as_slice() {
            bail!("{}", diff(&want, out));
        }
        Ok(())
    })
}

/// A check for a fixed input: the first output must equal `expected`, and every later
/// call's output must equal it too (compared without rebuilding).
pub fn fixed<'a>(ret: u32, expected: Vec<u8>) -> Check<'a> {
    Box::new(move |_, _, got_ret, out| {
        if got_ret != ret {
            bail!(
                "returned {} where {} was expected",
                verdict(got_ret),
                verdict(ret)
            );
        }
        if out != expected.as_slice() {
            bail!("{}", diff(&expected, out));
        }
        Ok(())
    })
}

/// The name of an XDP verdict.
pub fn verdict(v: u32) -> String {
    match v {
        0 => "XDP_ABORTED".into(),
        XDP_DROP => "XDP_DROP".into(),
        XDP_PASS => "XDP_PASS".into(),
        XDP_TX => "XDP_TX".into(),
        XDP_REDIRECT => "XDP_REDIRECT".into(),
        other => format!("verdict {other}"),
    }
}

/// Where two frames differ, for a one-line error.
pub fn diff(want: &[u8], got: &[u8]) -> String {
    if want.len() != got.len() {
        return format!(
            "output is {} bytes where {} were expected",
            got.len(),
            want.len()
        );
    }
    let at = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join("")
    };
    let end = (at + 8).min(want.len());
    format!(
        "output differs from byte {at}: expected {}.. got {}..",
        hex(&want[at..end]),
        hex(&got[at..end])
    )
}
