//! Small helpers: where the workspace is, printing steps, running commands.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}

/// Prints a step header.
pub fn step(msg: &str) {
    println!("==> {msg}");
}

/// Prints a detail line under a step.
pub fn note(msg: &str) {
    println!("    {msg}");
}

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with inherited stdio, printing it first; non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    note(&format!("$ {line}"));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout, or None when it cannot run or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when running as root (the workspace's one `is_root`).
pub use lb_tests::netns::is_root;

/// True when the CI variable says we run in CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A `cargo` command with the variables the outer `cargo run` sets for xtask removed, so
/// they do not leak into a nested build. With `all` (the eBPF build), every toolchain and
/// flag override goes too, so lb-ebpf's rust-toolchain.toml and .cargo/config.toml apply.
pub fn cargo(all: bool) -> Command {
    let mut cmd = Command::new("cargo");
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let run_var = k == "CARGO"
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            );
        let override_var = k == "RUSTUP_TOOLCHAIN"
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
            || k.starts_with("RUSTC")
            || (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TERM_COLOR");
        if run_var || (all && override_var) {
            cmd.env_remove(k);
        }
    }
    cmd
}
