//! `cargo xtask setup`: installs what builds and tests need, checking first, so a second run
//! takes seconds (docs/design.md §2 lists the verified steps).

use crate::util::{self, is_root, note, output, step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the build, tests, labs and demo use (nsenter is in util-linux).
const PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "curl",
    "tcpdump",
    "ethtool",
    "netcat-openbsd",
    "iperf3",
    "util-linux",
    "procps",
    // bench: the kernel-path peer of the end-to-end run (nftables DNAT).
    "nftables",
    "build-essential",
    // /etc/services: ipvsadm's service names (`http`, `domain`) in lb-ctl's name tests.
    "netbase",
];
/// bpf-linker release that builds against the nightly sysroot's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run_all() -> Result<()> {
    packages()?;
    rust_src()?;
    bpf_linker()?;
    bpffs()?;
    Ok(())
}

pub fn run() -> Result<()> {
    let t = std::time::Instant::now();
    run_all()?;
    step(&format!("setup done in {:.1} s", t.elapsed().as_secs_f64()));
    Ok(())
}

fn installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

fn packages() -> Result<()> {
    step("Debian packages");
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        note(&format!("already installed: {}", PACKAGES.join(" ")));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "packages missing ({}) and not root: run setup as root",
            missing.join(" ")
        );
    }
    note(&format!("missing: {}", missing.join(" ")));
    let lock = ["-o", "DPkg::Lock::Timeout=120"];
    util::run(Command::new("apt-get").args(lock).arg("update"))?;
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(lock)
            .args(&missing),
    )
}

fn rust_src() -> Result<()> {
    step("rust-src for the nightly toolchain (eBPF build-std)");
    let have = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .is_some_and(|s| s.lines().any(|l| l.trim().starts_with("rust-src")));
    if have {
        note("already installed");
        return Ok(());
    }
    util::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")
}

/// The directory bpf-linker's LLVM_PREFIX points at; its RUNPATH is `<it>/lib`, so it must
/// stay where it is.
fn llvm_prefix() -> Result<PathBuf> {
    Ok(home()?.join(".local/lb-llvm"))
}

/// Makes `<prefix>/lib/libLLVM.so` and `<prefix>/lib/<full soname>` point at the nightly
/// sysroot's libLLVM (replacing links that point elsewhere, e.g. after a nightly update).
fn llvm_links() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed: is the nightly toolchain installed?")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22.1-rust-"))
        })
        .with_context(|| format!("no libLLVM.so.22.1-rust-* in {}", lib.display()))?;
    let dir = llvm_prefix()?.join("lib");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let soname = llvm.file_name().expect("a file").to_owned();
    for name in [std::ffi::OsStr::new("libLLVM.so"), &soname] {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_ok_and(|t| t == llvm) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), llvm.display()))?;
        note(&format!("linked {} -> {}", link.display(), llvm.display()));
    }
    Ok(())
}

fn bpf_linker_version() -> Option<String> {
    let local = home().ok().map(|h| h.join(".cargo/bin/bpf-linker"));
    let candidates = [Some(PathBuf::from("bpf-linker")), local];
    candidates
        .into_iter()
        .flatten()
        .find_map(|bin| output(Command::new(bin).arg("--version")))
}

fn bpf_linker() -> Result<()> {
    step(&format!(
        "bpf-linker {BPF_LINKER_VERSION} against the nightly sysroot's LLVM"
    ));
    llvm_links()?;
    if let Some(v) = bpf_linker_version()
        && v.split_whitespace().any(|w| w == BPF_LINKER_VERSION)
    {
        note(&format!("already installed: {}", v.trim()));
        return Ok(());
    }
    note("building it (about 75 s)");
    util::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", llvm_prefix()?)
            .env_remove("RUSTUP_TOOLCHAIN")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )?;
    match bpf_linker_version() {
        Some(v) if v.contains(BPF_LINKER_VERSION) => Ok(()),
        other => bail!("bpf-linker installed but `bpf-linker --version` says {other:?}"),
    }
}

fn bpffs() -> Result<()> {
    step("bpffs on /sys/fs/bpf");
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/sys/fs/bpf" && f[2] == "bpf"
    });
    if mounted {
        note("already mounted");
        return Ok(());
    }
    if !is_root() {
        bail!("bpffs is not mounted on /sys/fs/bpf and we are not root");
    }
    util::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}
