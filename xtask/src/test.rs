//! `cargo xtask test [unit|packet|lab|all]`: builds, runs each group's test binaries, sums
//! libtest's `test result:` lines and prints `GROUP: N passed, M failed, K skipped`.
//! Fails on any failure, on a group that could not run, on a group that ran no test (every
//! test skipped, or a filter that matched nothing), on a test binary that printed no
//! summary or holds no test at all (e.g. an empty cases directory), and under CI=true on any
//! skipped (ignored) test: root-only tests must run in CI (docs/design.md §5).

use crate::util::{self, cargo, in_ci, note, root, step};
use anyhow::{Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Instant;

/// A test group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Pure logic, no root: unit tests of lb-common, lb-ctl, xtask and lb-tests.
    Unit,
    /// BPF_PROG_TEST_RUN packet cases (root), and any other lb-tests target but lab.
    Packet,
    /// Network-namespace labs with real traffic, and lb-ctl's integration tests
    /// (namespaces, BPF maps; root).
    Lab,
    /// unit, packet and lab, in that order.
    All,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Unit => "unit",
            Group::Packet => "packet",
            Group::Lab => "lab",
            Group::All => "all",
        }
    }

    /// The `cargo test` argument lists of this group.
    fn commands(self) -> Vec<Vec<&'static str>> {
        let base = ["test", "--release"];
        let with = |rest: &[&'static str]| base.iter().chain(rest).copied().collect();
        match self {
            Group::Unit => vec![
                with(&[
                    "-p",
                    "lb-common",
                    "-p",
                    "lb-ctl",
                    "-p",
                    "xtask",
                    "--features",
                    "lb-common/user",
                    "--lib",
                    "--bins",
                ]),
                with(&["-p", "lb-tests", "--lib"]),
                // lb-ctl's one root-free integration test: install into a temporary
                // prefix and run the built binary through its `ipvsadm` link. (The lab
                // group's `--test *` runs it again, for a fraction of a second.)
                with(&["-p", "lb-ctl", "--test", "install"]),
            ],
            // packet first, then every other lb-tests target but lab (e.g. sched), so a
            // new test binary runs in CI without an xtask change.
            Group::Packet => lb_tests_targets()
                .into_iter()
                .filter(|t| t != "lab")
                .map(|t| with(&["-p", "lb-tests", "--test", t.leak()]))
                .collect(),
            Group::Lab => {
                let mut v = vec![with(&["-p", "lb-tests", "--test", "lab"])];
                // lb-ctl's own integration tests (namespaces, BPF maps) need root too.
                if has_integration_tests("lb-ctl") {
                    v.push(with(&["-p", "lb-ctl", "--test", "*"]));
                }
                v
            }
            Group::All => vec![],
        }
    }
}

/// lb-tests' integration test targets (tests/tests/*.rs), `packet` first.
fn lb_tests_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("tests/tests"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|t| (t != "packet", t.clone()));
    v
}

/// True when `<crate>/tests/` holds an integration test file.
fn has_integration_tests(krate: &str) -> bool {
    std::fs::read_dir(root().join(krate).join("tests")).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
    })
}

/// Summed `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Tests a name filter left out.
    pub filtered: u64,
    /// How many result lines were summed.
    pub binaries: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
        self.filtered += o.filtered;
        self.binaries += o.binaries;
    }

    /// Tests that ran to a verdict (passed or failed); skipped ones did not.
    fn ran(&self) -> u64 {
        self.passed + self.failed
    }

    /// A binary with no test at all: nothing ran, was skipped, or was filtered out.
    fn is_empty(&self) -> bool {
        self.passed + self.failed + self.ignored + self.filtered == 0
    }
}

/// Parses libtest's (and libtest-mimic's) summary line:
/// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
pub fn parse_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut t = Tally {
        binaries: 1,
        ..Tally::default()
    };
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => t.passed = n,
            "failed" => t.failed = n,
            "ignored" => t.ignored = n,
            "filtered" => t.filtered = n,
            _ => {}
        }
    }
    Some(t)
}

/// What one group did.
struct Outcome {
    tally: Tally,
    /// Commands that exited non-zero while reporting no failed test (did not build or
    /// crashed).
    broken: Vec<String>,
}

/// What one `cargo test` command's summary lines (one per test binary) and exit status
/// (`None` = success) say: the summed tally and why the command cannot count as a clean
/// run. A command that exited 0 without a summary (a `fn main() {}`, a harness that never
/// reached libtest) tested nothing; a binary with no test at all, not even one filtered
/// out or skipped, is an empty table (e.g. a cases directory with no case).
fn judge_command(results: &[Tally], status: Option<&str>) -> (Tally, Vec<String>) {
    let mut tally = Tally::default();
    for r in results {
        tally.add(*r);
    }
    let mut problems = Vec::new();
    match status {
        None if results.is_empty() => problems.push("printed no test summary".to_string()),
        Some(status) if tally.failed == 0 => {
            problems.push(format!("exited with {status} without a failed test"))
        }
        _ => {}
    }
    let empty = results.iter().filter(|r| r.is_empty()).count();
    if empty > 0 {
        problems.push(format!(
            "ran {empty} test binary(ies) holding no test at all"
        ));
    }
    (tally, problems)
}

/// Why a group's run is not a pass, given its summed tally (failures and commands that could
/// not run are reported apart). A group in which no test ran to a verdict proves nothing:
/// every test skipped (no root), or a filter that matched nothing. Under CI=true a skipped
/// test is itself a failure: root-only tests must run in CI.
fn judge_group(name: &str, t: &Tally, ci: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if t.failed > 0 {
        problems.push(format!("{name}: {} failed", t.failed));
    }
    if t.ran() == 0 {
        problems.push(format!(
            "{name}: ran no test ({} skipped, {} filtered out)",
            t.ignored, t.filtered
        ));
    }
    if ci && t.ignored > 0 {
        problems.push(format!(
            "{name}: {} skipped under CI=true (root-only tests must run in CI)",
            t.ignored
        ));
    }
    problems
}

fn run_group(group: Group, extra: &[String]) -> Outcome {
    let mut out = Outcome {
        tally: Tally::default(),
        broken: Vec::new(),
    };
    for args in group.commands() {
        let mut cmd = cargo(false);
        cmd.current_dir(root()).args(&args);
        if !extra.is_empty() {
            cmd.arg("--").args(extra);
        }
        let line = util::describe(&cmd);
        note(&format!("$ {line}"));
        let mut child = match cmd.stdout(Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => {
                out.broken.push(format!("`{line}`: {e}"));
                continue;
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let mut echo = std::io::stdout();
        let mut results = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(echo, "{l}");
            results.extend(parse_result(&l));
        }
        let status = match child.wait() {
            Ok(s) if s.success() => None,
            Ok(s) => Some(s.to_string()),
            Err(e) => Some(e.to_string()),
        };
        let (tally, problems) = judge_command(&results, status.as_deref());
        out.broken
            .extend(problems.into_iter().map(|p| format!("`{line}` {p}")));
        out.tally.add(tally);
    }
    out
}

pub fn run(group: Group, extra: &[String]) -> Result<()> {
    let mut problems = Vec::new();
    if let Err(e) = crate::build::run() {
        // Run the groups anyway: their own output says what the broken build breaks.
        problems.push(format!("build: {e:#}"));
    }
    let groups = match group {
        Group::All => vec![Group::Unit, Group::Packet, Group::Lab],
        g => vec![g],
    };
    let ci = in_ci();
    for g in groups {
        step(&format!("test group {}", g.name()));
        let t = Instant::now();
        let o = run_group(g, extra);
        let Tally {
            passed,
            failed,
            ignored,
            ..
        } = o.tally;
        note(&format!(
            "({} took {:.1} s)",
            g.name(),
            t.elapsed().as_secs_f64()
        ));
        println!(
            "{}: {passed} passed, {failed} failed, {ignored} skipped",
            g.name()
        );
        problems.extend(judge_group(g.name(), &o.tally, ci));
        for b in o.broken {
            problems.push(format!("{}: could not run: {b}", g.name()));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    bail!("{} problem(s) in the test run", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summary() {
        let t = parse_result(
            "test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 3 filtered out; finished in 0.05s",
        );
        assert_eq!(
            t,
            Some(Tally {
                passed: 12,
                failed: 0,
                ignored: 2,
                filtered: 3,
                binaries: 1
            })
        );
        let t = parse_result(
            "test result: FAILED. 2 passed; 6 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.42s",
        );
        assert_eq!(
            t,
            Some(Tally {
                passed: 2,
                failed: 6,
                ignored: 0,
                filtered: 0,
                binaries: 1
            })
        );
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(parse_result("test foo ... ok"), None);
        assert_eq!(parse_result("running 3 tests"), None);
    }

    #[test]
    fn sums() {
        let mut t = Tally::default();
        for l in [
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "test result: ok. 0 passed; 0 failed; 4 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            t.add(parse_result(l).unwrap());
        }
        assert_eq!(
            t,
            Tally {
                passed: 1,
                failed: 0,
                ignored: 4,
                filtered: 0,
                binaries: 2
            }
        );
    }

    fn line(passed: u64, failed: u64, ignored: u64, filtered: u64) -> Tally {
        let l = format!(
            "test result: ok. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; {filtered} filtered out; finished in 0.01s"
        );
        parse_result(&l).unwrap()
    }

    #[test]
    fn a_command_without_summary_or_with_an_empty_binary_is_broken() {
        // Exit 0, no summary line: nothing was tested.
        let (_, p) = judge_command(&[], None);
        assert_eq!(p, ["printed no test summary"]);
        // One binary with tests, one holding none (an empty cases directory).
        let (t, p) = judge_command(&[line(3, 0, 0, 0), line(0, 0, 0, 0)], None);
        assert_eq!(t.passed, 3);
        assert_eq!(p, ["ran 1 test binary(ies) holding no test at all"]);
        // A binary whose tests a filter left out is not empty.
        let (_, p) = judge_command(&[line(3, 0, 0, 0), line(0, 0, 0, 7)], None);
        assert!(p.is_empty(), "{p:?}");
        // Non-zero exit: broken unless a test failed (then the failure says it).
        let (_, p) = judge_command(&[line(3, 0, 0, 0)], Some("exit status: 101"));
        assert_eq!(p, ["exited with exit status: 101 without a failed test"]);
        let (_, p) = judge_command(&[line(3, 1, 0, 0)], Some("exit status: 101"));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_group_that_ran_nothing_fails() {
        assert!(judge_group("unit", &line(5, 0, 0, 0), false).is_empty());
        assert_eq!(
            judge_group("packet", &line(0, 0, 0, 12), false),
            ["packet: ran no test (0 skipped, 12 filtered out)"]
        );
        // All skipped (no root): nothing ran, so no pass, CI or not.
        assert_eq!(
            judge_group("lab", &line(0, 0, 4, 0), false),
            ["lab: ran no test (4 skipped, 0 filtered out)"]
        );
        assert_eq!(
            judge_group("lab", &line(2, 0, 1, 0), true),
            ["lab: 1 skipped under CI=true (root-only tests must run in CI)"]
        );
        assert!(judge_group("lab", &line(2, 0, 1, 0), false).is_empty());
        assert_eq!(
            judge_group("unit", &line(2, 1, 0, 0), false),
            ["unit: 1 failed"]
        );
    }

    #[test]
    fn all_runs_every_group_and_unit_covers_the_pure_crates() {
        let unit = Group::Unit.commands().concat();
        for p in ["lb-common", "lb-ctl", "xtask", "lb-tests"] {
            assert!(unit.contains(&p), "{p} missing from unit");
        }
        assert!(
            unit.contains(&"install"),
            "lb-ctl's install test needs no root"
        );
        assert!(Group::Packet.commands()[0].contains(&"packet"));
        assert!(Group::Packet.commands().iter().all(|c| !c.contains(&"lab")));
        assert!(Group::Lab.commands()[0].contains(&"lab"));
    }
}
