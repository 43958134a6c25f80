//! Packet cases and the runner that pushes them through BPF_PROG_TEST_RUN.
//!
//! A [`Case`] is one packet: what the maps hold, the input frame, the verdict, the exact
//! output frame and the counter deltas it must cause. A [`Sequence`] is several packets
//! whose state carries over (a flow recorded by the first, a NAT reply after a forward),
//! said explicitly instead of relying on table order. Every case starts from empty maps.

use crate::bpf::{self, Bpf, Verdict};
use crate::check;
use crate::packet::Pkt;
use crate::provision::Provision;
use lb_common::{Counter, Drop, FlowKey, FlowValue, NatReverse, Pass, Traffic};
use lb_ctl::loader::{ObjectFile, object_path};
use libtest_mimic::{Completion, Failed, Trial};
use std::cell::RefCell;
use std::fmt::Write as _;

/// An input frame.
#[derive(Clone, Debug)]
pub enum Input {
    /// Built from a description.
    Pkt(Pkt),
    /// Given as bytes (non-IP frames).
    Bytes(Vec<u8>),
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Input::Pkt(p) => p.bytes(),
            Input::Bytes(b) => b.clone(),
        }
    }
}

impl From<Pkt> for Input {
    fn from(p: Pkt) -> Input {
        Input::Pkt(p)
    }
}

impl From<Vec<u8>> for Input {
    fn from(b: Vec<u8>) -> Input {
        Input::Bytes(b)
    }
}

/// The frame expected after the program.
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a few hundred test values; boxing would only clutter the tables"
)]
pub enum Output {
    /// Byte-for-byte the input.
    Unchanged,
    /// This frame, every byte; its checksums are verified too.
    Pkt(Pkt),
    /// Not compared (dropped frames: what a dropped buffer holds does not matter).
    NotChecked,
}

/// Expected changes of the statistics maps. Counters not listed must not change; services
/// and reals of the provision that are not listed must not change either.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// (counter slot, delta summed over CPUs).
    pub counters: Vec<(Counter, u64)>,
    /// (service id, traffic delta).
    pub svc: Vec<(u32, Traffic)>,
    /// (real id, traffic delta).
    pub real: Vec<(u32, Traffic)>,
}

impl Counts {
    /// Each of these counters once.
    pub fn of(counters: &[Counter]) -> Counts {
        Counts {
            counters: counters.iter().map(|c| (*c, 1)).collect(),
            ..Counts::default()
        }
    }
    /// Adds a service's traffic delta.
    pub fn svc(mut self, id: u32, t: Traffic) -> Counts {
        self.svc.push((id, t));
        self
    }
    /// Adds a real's traffic delta.
    pub fn real(mut self, id: u32, t: Traffic) -> Counts {
        self.real.push((id, t));
        self
    }
    /// Adds the same traffic delta to a service and a real.
    pub fn both(self, svc: u32, real: u32, t: Traffic) -> Counts {
        self.svc(svc, t).real(real, t)
    }
}

/// A map entry to check after a step.
#[derive(Clone, Debug)]
pub enum StateCheck {
    /// FLOWS[key] is this value (or absent).
    Flow(FlowKey, Option<FlowValue>),
    /// NAT_REV[key] is this value (or absent).
    NatRev(FlowKey, Option<NatReverse>),
    /// FLOWS holds this many entries.
    FlowCount(usize),
    /// NAT_REV holds this many entries.
    NatRevCount(usize),
    /// PERSIST holds this many templates.
    PersistCount(usize),
    /// REAL_CONNS[real id] is exactly this (the data path's connection events; the cases
    /// start from zero).
    Conns(u32, lb_common::conn::ConnEvents),
}

/// One packet case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Test name: `<feature>_<what>`.
    pub name: &'static str,
    /// One line: what it expects and why.
    pub why: &'static str,
    /// Map contents before the packet.
    pub provision: Provision,
    /// The frame.
    pub input: Input,
    /// Interface the frame arrives on ([`IF_LO`] unless the case is about redirects).
    pub ingress: u32,
    /// The XDP action.
    pub verdict: Verdict,
    /// The frame after the program.
    pub output: Output,
    /// Counter deltas.
    pub counts: Counts,
    /// Map entries to check afterwards.
    pub state: Vec<StateCheck>,
}

/// One packet of a [`Sequence`].
#[derive(Clone, Debug)]
pub struct Step {
    /// What this step does.
    pub what: &'static str,
    /// The frame.
    pub input: Input,
    /// Interface it arrives on.
    pub ingress: u32,
    /// The XDP action.
    pub verdict: Verdict,
    /// The frame after the program.
    pub output: Output,
    /// Counter deltas of this step alone.
    pub counts: Counts,
    /// Map entries to check after this step.
    pub state: Vec<StateCheck>,
}

/// A step of a sequence: a packet, or a change to the maps (as lb-ctl would make).
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a few hundred test values; boxing would only clutter the tables"
)]
pub enum Action {
    /// Run a packet.
    Packet(Step),
    /// Write more map contents (a changed real, a new table) on top of the current ones.
    Update(Provision),
    /// Remove a flow from FLOWS, as the LRU evicts one.
    Evict(FlowKey),
}

/// Packets whose state carries over, in order.
#[derive(Clone, Debug)]
pub struct Sequence {
    /// Test name.
    pub name: &'static str,
    /// One line: what it expects and why.
    pub why: &'static str,
    /// Map contents before the first step.
    pub provision: Provision,
    /// The steps.
    pub steps: Vec<Action>,
}

impl From<Case> for Sequence {
    fn from(c: Case) -> Sequence {
        Sequence {
            name: c.name,
            why: c.why,
            provision: c.provision,
            steps: vec![Action::Packet(Step {
                what: "the packet",
                input: c.input,
                ingress: c.ingress,
                verdict: c.verdict,
                output: c.output,
                counts: c.counts,
                state: c.state,
            })],
        }
    }
}

fn counter_name(slot: u32) -> String {
    if let Some((_, n)) = Counter::EVENTS.iter().find(|(c, _)| c.0 == slot) {
        return n.to_string();
    }
    if let Some(p) = Pass::ALL.iter().find(|p| p.counter().0 == slot) {
        return p.name().into();
    }
    if let Some(d) = Drop::ALL.iter().find(|d| d.counter().0 == slot) {
        return d.name().into();
    }
    format!("slot {slot}")
}

/// A flow key as "src:sport -> dst:dport proto N".
fn show_key(k: &FlowKey) -> String {
    use lb_common::addr::convert::from_raw;
    let (s, d) = (from_raw(&k.src, k.family), from_raw(&k.dst, k.family));
    let (sp, dp) = (k.sport.to_host(), k.dport.to_host());
    format!("{s}:{sp} -> {d}:{dp} proto {}", k.proto)
}

fn sub(a: &Traffic, b: &Traffic) -> Traffic {
    Traffic {
        conns: a.conns.wrapping_sub(b.conns),
        in_packets: a.in_packets.wrapping_sub(b.in_packets),
        in_bytes: a.in_bytes.wrapping_sub(b.in_bytes),
        out_packets: a.out_packets.wrapping_sub(b.out_packets),
        out_bytes: a.out_bytes.wrapping_sub(b.out_bytes),
    }
}

fn run_step(bpf: &mut Bpf, prov: &Provision, step: &Step) -> anyhow::Result<String> {
    let mut bad = String::new();
    let mut svcs: Vec<u32> = prov.services.iter().map(|s| s.id).collect();
    let mut reals: Vec<u32> = prov.reals.iter().map(|r| r.0).collect();
    svcs.extend(step.counts.svc.iter().map(|x| x.0));
    reals.extend(step.counts.real.iter().map(|x| x.0));
    svcs.sort_unstable();
    svcs.dedup();
    reals.sort_unstable();
    reals.dedup();

    let input = step.input.bytes();
    let before = bpf.snapshot(&svcs, &reals)?;
    let (ret, out) = bpf.run(&input, step.ingress)?;
    let after = bpf.snapshot(&svcs, &reals)?;

    match Verdict::from_ret(ret) {
        Some(v) if v == step.verdict => {}
        v => {
            let _ = writeln!(
                bad,
                "verdict: expected {:?}, got {v:?} ({ret})",
                step.verdict
            );
        }
    }
    let expected = match &step.output {
        Output::Unchanged => Some(input.clone()),
        Output::Pkt(p) => Some(p.bytes()),
        Output::NotChecked => None,
    };
    if let Some(exp) = expected {
        let d = check::diff(&exp, &out);
        if !d.is_empty() {
            let _ = writeln!(bad, "output differs from the expected frame:\n{d}");
        }
        if matches!(step.output, Output::Pkt(_)) {
            // The expectation's own checksums come from etherparse; verify the program's
            // output independently too (catches a wrong checksum even if the expectation
            // were built wrong in the same way).
            for c in check::decode(&out).bad_checksums {
                let _ = writeln!(bad, "output checksum: {c}");
            }
        }
    }

    for slot in 0..lb_common::Counter::SLOTS {
        let got = after.counters[slot as usize].wrapping_sub(before.counters[slot as usize]);
        let want: u64 = step
            .counts
            .counters
            .iter()
            .filter(|(c, _)| c.0 == slot)
            .map(|x| x.1)
            .sum();
        if got != want {
            let _ = writeln!(
                bad,
                "counter {}: expected +{want}, got +{got}",
                counter_name(slot)
            );
        }
    }
    let check_traffic = |bad: &mut String,
                         what: &str,
                         b: &[(u32, Traffic)],
                         a: &[(u32, Traffic)],
                         want: &[(u32, Traffic)]| {
        for ((id, tb), (_, ta)) in b.iter().zip(a) {
            let got = sub(ta, tb);
            let exp =
                want.iter()
                    .filter(|(i, _)| i == id)
                    .fold(Traffic::default(), |mut acc, (_, t)| {
                        acc.add(t);
                        acc
                    });
            if got != exp {
                let _ = writeln!(bad, "{what} {id} traffic: expected {exp:?}, got {got:?}");
            }
        }
    };
    check_traffic(
        &mut bad,
        "service",
        &before.svc,
        &after.svc,
        &step.counts.svc,
    );
    check_traffic(
        &mut bad,
        "real",
        &before.real,
        &after.real,
        &step.counts.real,
    );

    for s in &step.state {
        match s {
            StateCheck::Flow(k, want) => {
                let got = bpf.flow(k)?;
                if got != *want {
                    let _ = writeln!(
                        bad,
                        "FLOWS[{}]: expected {want:?}, got {got:?}",
                        show_key(k)
                    );
                }
            }
            StateCheck::NatRev(k, want) => {
                let got = bpf.nat_rev(k)?;
                if got != *want {
                    let _ = writeln!(
                        bad,
                        "NAT_REV[{}]: expected {want:?}, got {got:?}",
                        show_key(k)
                    );
                }
            }
            StateCheck::FlowCount(n) => {
                let got = bpf.flow_count()?;
                if got != *n {
                    let _ = writeln!(bad, "FLOWS entries: expected {n}, got {got}");
                }
            }
            StateCheck::Conns(id, want) => {
                let got = bpf.real_conns(*id)?;
                if got != *want {
                    let _ = writeln!(bad, "REAL_CONNS[{id}]: expected {want:?}, got {got:?}");
                }
            }
            StateCheck::PersistCount(n) => {
                let got = bpf.persist_count()?;
                if got != *n {
                    let _ = writeln!(bad, "PERSIST entries: expected {n}, got {got}");
                }
            }
            StateCheck::NatRevCount(n) => {
                let got = bpf.nat_rev_count()?;
                if got != *n {
                    let _ = writeln!(bad, "NAT_REV entries: expected {n}, got {got}");
                }
            }
        }
    }
    Ok(bad)
}

/// Runs a sequence on freshly cleared maps; Err describes every mismatch of every step.
pub fn run(bpf: &mut Bpf, seq: &Sequence) -> anyhow::Result<Result<(), String>> {
    bpf.clear()?;
    seq.provision.apply(bpf)?;
    let mut acc = seq.provision.clone();
    let mut report = String::new();
    let multi = seq.steps.len() > 1;
    for (i, a) in seq.steps.iter().enumerate() {
        match a {
            Action::Update(p) => {
                acc.merge(p);
                acc.apply_config(bpf)?;
                p.apply_state(bpf)?;
            }
            Action::Evict(k) => bpf.remove_flow(k)?,
            Action::Packet(step) => {
                let bad = run_step(bpf, &acc, step)?;
                if !bad.is_empty() {
                    if multi {
                        let _ = writeln!(report, "step {} ({}):", i + 1, step.what);
                    }
                    report.push_str(&bad);
                }
            }
        }
    }
    if report.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(report))
    }
}

thread_local! {
    /// The loaded balancer, created on first use in the namespace of the thread that runs
    /// the cases (libtest-mimic runs them on the main thread when test_threads is 1).
    static HARNESS: RefCell<Option<Result<Bpf, String>>> = const { RefCell::new(None) };
}

fn with_harness<T>(f: impl FnOnce(&mut Bpf) -> Result<T, Failed>) -> Result<T, Failed> {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let slot = h.get_or_insert_with(|| {
            let setup = || -> anyhow::Result<Bpf> {
                let path = object_path(ObjectFile::BALANCER, None)?;
                let path = path.canonicalize().unwrap_or(path);
                bpf::enter_netns()?;
                let b = Bpf::load(&path)?;
                eprintln!("packet cases: testing {}", path.display());
                Ok(b)
            };
            setup().map_err(|e| format!("{e:#}"))
        });
        match slot {
            Ok(b) => f(b),
            Err(e) => Err(e.clone().into()),
        }
    })
}

/// Enters the namespace and loads the object now, on the calling thread, and says which
/// object it tests (before libtest's output starts). A failure is reported by every case.
pub fn prepare() {
    if crate::netns::is_root() {
        let _ = with_harness(|_| Ok(()));
    }
}

/// One libtest-mimic trial per sequence; without root each is ignored, saying why.
pub fn trials(seqs: Vec<Sequence>) -> Vec<Trial> {
    let root = crate::netns::is_root();
    seqs.into_iter()
        .map(|seq| {
            Trial::ignorable_test(seq.name, move || {
                if !root {
                    return Ok(Completion::ignored_with("needs root (BPF_PROG_TEST_RUN)"));
                }
                with_harness(|b| match run(b, &seq) {
                    Ok(Ok(())) => Ok(Completion::Completed),
                    Ok(Err(report)) => Err(format!("{}\n{report}", seq.why).into()),
                    Err(e) => Err(format!("harness error: {e:#}").into()),
                })
            })
        })
        .collect()
}
