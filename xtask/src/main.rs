//! `cargo xtask`: the project's one entry point for setup, builds, tests and the demo
//! (docs/design.md §7). Each subcommand prints what it does; failures end with a one-line reason.

mod bench;
mod build;
mod demo;
mod setup;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "lb's build, test and demo tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install everything the build and tests need (idempotent; seconds when done before).
    Setup,
    /// Build the eBPF objects and the userspace workspace (release).
    Build,
    /// Build, then load lb on an interface of this namespace (or detach it), then install
    /// lb-ctl as `ipvsadm` under /usr/local.
    BuildAndLoad {
        /// Interface to attach to.
        #[arg(long)]
        iface: String,
        /// Generic (skb) XDP instead of native.
        #[arg(long)]
        skb: bool,
        /// Detach from the interface instead.
        #[arg(long)]
        detach: bool,
        /// Do not run `lb-ctl install` after loading (the binary in /usr/local/sbin and
        /// its `ipvsadm` link, manual pages and completions).
        #[arg(long)]
        no_install: bool,
    },
    /// Build, then run test groups; each ends with `GROUP: N passed, M failed, K skipped`.
    Test {
        /// unit, packet, lab or all.
        #[arg(default_value = "all")]
        group: test::Group,
        /// Passed to the test binaries (after `--`), e.g. a name filter or --nocapture.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then show DR, TUN and NAT balancing real HTTP traffic in network namespaces.
    Demo {
        /// Requests per service.
        #[arg(long, default_value_t = 12)]
        requests: usize,
        /// Use the binaries already in target/release instead of building first.
        #[arg(long)]
        no_build: bool,
    },
    /// Benchmarks: per-packet cost by path, scale, control plane, end-to-end pps; a table,
    /// optionally JSON and an SVG chart.
    Bench(bench::Args),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Build => build::run(),
        Cmd::BuildAndLoad {
            iface,
            skb,
            detach,
            no_install,
        } => build::build_and_load(&iface, skb, detach, !no_install),
        Cmd::Test { group, args } => test::run(group, &args),
        Cmd::Demo { requests, no_build } => demo::run(requests, !no_build),
        Cmd::Bench(args) => bench::run(args),
    }
}
