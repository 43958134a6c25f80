//! `cargo xtask test [unit|packet|lab|all]`: builds, runs each group's test binaries, sums
//! libtest's `test result:` lines and prints `GROUP: N passed, M failed, K skipped`.
//! Fails on any failure, on a group that could not run, and under CI=true on any skipped
//! (ignored) test: root-only tests must run in CI (DESIGN.md §5).

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
    /// How many result lines were summed.
    pub binaries: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
        self.binaries += o.binaries;
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
        let mut tally = Tally::default();
        let stdout = child.stdout.take().expect("piped");
        let mut echo = std::io::stdout();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(echo, "{l}");
            if let Some(t) = parse_result(&l) {
                tally.add(t);
            }
        }
        let (ok, status) = match child.wait() {
            Ok(s) => (s.success(), s.to_string()),
            Err(e) => (false, e.to_string()),
        };
        if ok && tally.binaries == 0 {
            // Ran and printed no summary: a placeholder `fn main() {}` so far.
            note(&format!("(`{line}` printed no test summary: no tests yet)"));
        } else if !ok && tally.failed == 0 {
            out.broken.push(format!(
                "`{line}` exited with {status} without a failed test"
            ));
        }
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
        if failed > 0 {
            problems.push(format!("{}: {failed} failed", g.name()));
        }
        for b in o.broken {
            problems.push(format!("{}: could not run: {b}", g.name()));
        }
        if ci && ignored > 0 {
            problems.push(format!(
                "{}: {ignored} skipped under CI=true (root-only tests must run in CI)",
                g.name()
            ));
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
                binaries: 2
            }
        );
    }

    #[test]
    fn all_runs_every_group_and_unit_covers_the_pure_crates() {
        let unit = Group::Unit.commands().concat();
        for p in ["lb-common", "lb-ctl", "xtask", "lb-tests"] {
            assert!(unit.contains(&p), "{p} missing from unit");
        }
        assert!(Group::Packet.commands()[0].contains(&"packet"));
        assert!(Group::Packet.commands().iter().all(|c| !c.contains(&"lab")));
        assert!(Group::Lab.commands()[0].contains(&"lab"));
    }
}
