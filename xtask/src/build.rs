//! `cargo xtask build` and `build-and-load`: the eBPF objects (nightly, bpfel, build-std,
//! from lb-ebpf/ so its toolchain file and cargo config apply), then the userspace workspace.

use crate::util::{self, cargo, note, root, step};
use anyhow::{Context, Result};
use std::process::Command;
use std::time::Instant;

/// (cargo bin name in lb-ebpf, object file name in target/release).
const OBJECTS: [(&str, &str); 3] = [
    ("lb", "lb.bpf.o"),
    ("lb-decap", "lb-decap.bpf.o"),
    // The bench's reference programs (empty, floor, generator, sink).
    ("lb-bench-ref", "lb-bench-ref.bpf.o"),
];

pub fn run() -> Result<()> {
    let t = Instant::now();
    ebpf()?;
    userspace()?;
    step(&format!("build done in {:.1} s", t.elapsed().as_secs_f64()));
    Ok(())
}

fn ebpf() -> Result<()> {
    step("eBPF objects (lb-ebpf: nightly, bpfel-unknown-none)");
    let root = root();
    let dir = root.join("lb-ebpf");
    util::run(cargo(true).current_dir(&dir).args(["build", "--release"]))?;
    let out = root.join("target/release");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (bin, obj) in OBJECTS {
        let from = dir.join("target/bpfel-unknown-none/release").join(bin);
        let to = out.join(obj);
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        note(&format!(
            "{} ({} bytes)",
            to.display(),
            std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0)
        ));
    }
    Ok(())
}

fn userspace() -> Result<()> {
    step("userspace (workspace, release)");
    util::run(
        cargo(false)
            .current_dir(root())
            .args(["build", "--release", "--workspace"]),
    )
}

/// `install`: after loading, `lb-ctl install` (default prefix), so `ipvsadm` on root's
/// PATH runs this build; nothing is installed when detaching.
pub fn build_and_load(iface: &str, skb: bool, detach: bool, install: bool) -> Result<()> {
    run()?;
    let ctl = root().join("target/release/lb-ctl");
    let mut cmd = Command::new(&ctl);
    if detach {
        step(&format!("detaching lb from {iface}"));
        cmd.args(["unload", "--iface", iface]);
    } else {
        // A loaded lb is upgraded to this build first (maps and connections kept): `load`
        // alone would adopt the pinned program, the old build.
        if lb_ctl::loader::pin_dir()
            .join(lb_common::consts::PROG_LB)
            .exists()
        {
            step("upgrading the loaded lb to this build");
            util::run(Command::new(&ctl).arg("upgrade"))?;
        }
        step(&format!(
            "loading lb on {iface}{}",
            if skb { " (generic XDP)" } else { "" }
        ));
        cmd.args(["load", "--iface", iface]);
        if skb {
            cmd.arg("--skb");
        }
    }
    util::run(&mut cmd)?;
    if install && !detach {
        step(&format!(
            "installing lb-ctl and its `ipvsadm` link under {} (--no-install to skip)",
            lb_ctl::install::DEFAULT_PREFIX
        ));
        util::run(Command::new(&ctl).arg("install"))?;
    }
    Ok(())
}
