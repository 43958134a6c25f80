//! Network-namespace labs: real HTTP traffic from a client through lb to real servers, one
//! trial per forward mode and family, plus plain-routing trials that check the topology
//! itself (so a failure says whether the lab or the balancer is at fault).
//!
//! All trials share one lab (one director, one BPF load), built by the first trial that
//! needs it and removed when the run ends, or on Ctrl-C. Needs root; without it every trial
//! is reported as ignored with the reason.

use lb_common::{Counter, ForwardMode};
use lb_tests::lab::{self, Family, Lab};
use lb_tests::netns;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Requests per trial: with mh-port hashing, all of them landing on one of three reals has
/// probability 3^-11.
const REQUESTS: usize = 12;

/// The lab shared by all trials: built once (or its error kept), dropped after the run.
struct Shared {
    lab: Mutex<Option<Result<Arc<Lab>, String>>>,
    lb: Mutex<Option<Result<(), String>>>,
}

impl Shared {
    fn lab(&self) -> Result<Arc<Lab>, Failed> {
        let mut g = self.lab.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(
                Lab::new()
                    .map(Arc::new)
                    .map_err(|e| format!("building the lab: {e}")),
            );
        }
        g.as_ref().expect("set above").clone().map_err(Failed::from)
    }

    /// The lab with lb loaded on the director and decap on the reals.
    fn lab_with_lb(&self) -> Result<Arc<Lab>, Failed> {
        let lab = self.lab()?;
        let mut g = self.lb.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(lab.start_lb().map_err(|e| format!("starting lb: {e}")));
        }
        g.as_ref()
            .expect("set above")
            .clone()
            .map_err(Failed::from)?;
        Ok(lab)
    }

    fn teardown(&self) {
        let lab = self.lab.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(lab); // the last Arc: Lab::drop stops servers, its guards delete namespaces and pins
        netns::remove_live(); // anything a half-built lab left registered
    }
}

/// Sends REQUESTS requests to `to`; passes when all are answered and ≥2 reals answered.
fn check_spread(lab: &Lab, to: SocketAddr) -> Result<(), Failed> {
    let answers = lab.http_get_many(to, REQUESTS).map_err(|e| e.to_string())?;
    let reals: BTreeSet<&String> = answers.iter().flatten().collect();
    if answers.len() < REQUESTS || answers.iter().any(Result::is_err) || reals.len() < 2 {
        return Err(format!(
            "{REQUESTS} requests to {to}: {}; need all answered by ≥2 reals",
            lab::summarize(&answers)
        )
        .into());
    }
    Ok(())
}

/// How much counter `name` grew from `before` to `after` (absent = 0).
fn counter_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, name: &str) -> u64 {
    let at = |m: &BTreeMap<String, u64>| m.get(name).copied().unwrap_or(0);
    at(after).saturating_sub(at(before))
}

/// A director script run while its real is down exits 0 and prints nothing (as with
/// ipvsadm); the real coming up, and later changing its MAC, needs no further command for
/// traffic through the VIP to reach it. Its own lab ([`lab::neigh`]), dropped at the end.
fn real_down_at_config() -> Result<(), String> {
    use lab::neigh::{NeighLab, REAL_MAC_2};
    let lab = NeighLab::new().map_err(|e| format!("building the lab: {e}"))?;
    let out = lab
        .run_script()
        .map_err(|e| format!("the director script failed while the real is down: {e}"))?;
    if !out.is_empty() {
        return Err(format!(
            "the director script printed {out:?}; ipvsadm prints nothing"
        ));
    }
    let n = lab.neighbour()?;
    if n["resolved"] != false {
        return Err(format!("the real is down, yet listed resolved: {n}"));
    }
    // Traffic while it is down: not sent, counted under its drop reason.
    let drops = |l: &NeighLab| -> Result<u64, String> {
        let text = l.ctl(&["counters"]).map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|line| line.strip_prefix("drop_no_neighbour"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or(format!("no drop_no_neighbour in `lb-ctl counters`: {text}"))
    };
    let before = drops(&lab)?;
    if let Ok(name) = lab.get_vip() {
        return Err(format!(
            "the real is down, yet {name} answered through the VIP"
        ));
    }
    let after = drops(&lab)?;
    if after <= before {
        return Err(format!(
            "a request while the real is down left drop_no_neighbour at {after}"
        ));
    }
    lab.real_up().map_err(|e| e.to_string())?;
    let up = lab.wait_for("traffic to the VIP after the real came up", |l| {
        l.get_vip()
            .and_then(|name| (name == "real1").then_some(()).ok_or(name))
    })?;
    eprintln!("real up → traffic through the VIP: {up:?}");
    let n = lab.neighbour()?;
    if n["resolved"] != true || n["interface"] != "in0" || n["next_hop"] != lab::neigh::REAL {
        return Err(format!("after the real came up: {n}"));
    }
    lab.real_mac_changes().map_err(|e| e.to_string())?;
    lab.wait_for("the listing to show the real's new MAC", |l| {
        let n = l.neighbour()?;
        (n["mac"] == REAL_MAC_2).then_some(()).ok_or(n.to_string())
    })?;
    let moved = lab.wait_for("traffic to the VIP after the real's MAC changed", |l| {
        l.get_vip()
            .and_then(|name| (name == "real1").then_some(()).ok_or(name))
    })?;
    eprintln!("MAC changed → traffic through the VIP: {moved:?}");
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // One trial at a time: they share one lab and its cumulative counters, and each reads
    // its own before/after difference.
    args.test_threads = Some(1);
    let shared = Arc::new(Shared {
        lab: Mutex::new(None),
        lb: Mutex::new(None),
    });
    // Ctrl-C removes every namespace and pin directory alive.
    netns::remove_on_ctrlc();
    let root = netns::is_root();
    let skip = |name: String, run: Box<dyn FnOnce() -> Result<(), Failed> + Send>| {
        Trial::ignorable_test(name, move || {
            if !root {
                return Ok(Completion::ignored_with(
                    "needs root: network namespaces, XDP, bpffs",
                ));
            }
            run().map(|()| Completion::Completed)
        })
    };

    let mut trials = Vec::new();
    for f in Family::ALL {
        // Plain routing, no balancer: the client reaches each real's own address through
        // the director's kernel.
        let s = shared.clone();
        trials.push(skip(
            format!("routing_{}", f.name()),
            Box::new(move || {
                let lab = s.lab()?;
                for i in 1..=lab::REALS {
                    let to = SocketAddr::new(lab::real_addr(i, f), lab::HTTP_PORT);
                    let got = lab.http_get_many(to, 1).map_err(|e| e.to_string())?;
                    match &got[0] {
                        Ok(name) if *name == lab::real_name(i) => {}
                        other => return Err(format!("GET {to}: {other:?}").into()),
                    }
                }
                Ok(())
            }),
        ));
    }
    for mode in lab::MODES {
        for f in Family::ALL {
            let s = shared.clone();
            trials.push(skip(
                format!("{}_{}", lab::mode_name(mode), f.name()),
                Box::new(move || {
                    let lab = s.lab_with_lb()?;
                    let vip = lab.add_service(mode, f).map_err(|e| e.to_string())?;
                    let before = lab.counters().map_err(|e| e.to_string())?;
                    check_spread(&lab, vip)?;
                    // The traffic went through lb, not around it: this trial's own requests
                    // moved the mode's counters, at least one packet per request each way
                    // (a SYN in, a SYN-ACK back for NAT). Counters are cumulative over the
                    // lab's life, so only the difference across this trial says anything;
                    // trials run one at a time (see `main`), so no other trial adds to it.
                    let after = lab.counters().map_err(|e| e.to_string())?;
                    let mut need = vec![lab::forward_counter(mode)];
                    if mode == ForwardMode::Nat {
                        need.push(lab::counter_name(Counter::NAT_RETURN));
                    }
                    for name in need {
                        let moved = counter_delta(&before, &after, name);
                        if moved < REQUESTS as u64 {
                            return Err(format!(
                                "director counter {name} moved by {moved} for {REQUESTS} requests \
                                 (before {before:?}, after {after:?})"
                            )
                            .into());
                        }
                    }
                    Ok(())
                }),
            ));
        }
    }

    trials.push(skip(
        "dr_real_down_at_config_v4".into(),
        Box::new(|| real_down_at_config().map_err(Failed::from)),
    ));

    let conclusion = libtest_mimic::run(&args, trials);
    shared.teardown();
    conclusion.exit();
}
