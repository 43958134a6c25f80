//! What the bench creates outside itself — network namespaces and bpffs pin directories —
//! each behind a guard whose Drop removes it; a Ctrl-C handler removes whatever is still
//! registered, and a new run sweeps what a killed run left behind.
//!
//! Namespaces are entered with setns on a thread of our own or `nsenter --net`, never
//! `ip netns exec`, which hides /sys/fs/bpf (DESIGN.md §2).

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Prefix of every namespace the bench makes: `lbbench-<pid>-<role>`.
const NS_PREFIX: &str = "lbbench-";
/// Prefix of every pin directory: `/sys/fs/bpf/lbbench-<pid>-<role>`.
const BPFFS: &str = "/sys/fs/bpf";

/// Namespaces and pin directories alive now, for the Ctrl-C handler.
static LIVE: Mutex<Vec<Thing>> = Mutex::new(Vec::new());

#[derive(Clone, PartialEq, Eq)]
enum Thing {
    Netns(String),
    PinDir(PathBuf),
}

fn remove(t: &Thing) {
    match t {
        Thing::Netns(n) => {
            if Path::new("/run/netns").join(n).exists() {
                let _ = Command::new("ip").args(["netns", "del", n]).output();
            }
        }
        Thing::PinDir(p) => {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn register(t: Thing) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(t);
}

fn unregister(t: &Thing) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|x| x != t);
}

/// Installs the Ctrl-C handler (once) and removes what killed runs left.
pub fn init() {
    let _ = ctrlc::set_handler(|| {
        let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
        for t in live.iter().rev() {
            remove(t);
        }
        eprintln!("bench interrupted; namespaces and pin directories removed");
        std::process::exit(130);
    });
    sweep_stale();
}

/// Removes `lbbench-<pid>-*` namespaces and pin directories of processes that are gone.
fn sweep_stale() {
    let dead = |name: &str| {
        name.strip_prefix(NS_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            })
    };
    for (dir, netns) in [("/run/netns", true), (BPFFS, false)] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                remove(&if netns {
                    Thing::Netns(name)
                } else {
                    Thing::PinDir(e.path())
                });
            }
        }
    }
}

/// A bpffs directory, removed with everything pinned in it on drop.
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// `/sys/fs/bpf/lbbench-<pid>-<role>`, fresh and empty.
    pub fn new(role: &str) -> Result<PinDir> {
        let path = Path::new(BPFFS).join(format!("{NS_PREFIX}{}-{role}", std::process::id()));
        let t = Thing::PinDir(path.clone());
        remove(&t);
        std::fs::create_dir_all(&path).with_context(|| {
            format!(
                "creating {} (is bpffs mounted? `cargo xtask setup`)",
                path.display()
            )
        })?;
        register(t);
        Ok(PinDir { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let t = Thing::PinDir(self.path.clone());
        remove(&t);
        unregister(&t);
    }
}

/// A named network namespace (`/run/netns/lbbench-<pid>-<role>`), deleted on drop (which
/// destroys its veths and detaches their XDP programs).
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with `lo` up.
    pub fn new(role: &str) -> Result<Netns> {
        let name = format!("{NS_PREFIX}{}-{role}", std::process::id());
        let t = Thing::Netns(name.clone());
        remove(&t);
        sh(&["ip", "netns", "add", &name])?;
        register(t);
        let ns = Netns { name };
        ns.sh(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command run inside the namespace (`nsenter --net`, which keeps /sys/fs/bpf).
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(prog);
        c
    }

    /// Runs a command inside the namespace; non-zero exit is an error with its stderr.
    pub fn sh(&self, args: &[&str]) -> Result<String> {
        let mut c = self.cmd(args[0]);
        c.args(&args[1..]);
        output(&mut c, &args.join(" "))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let t = Thing::Netns(self.name.clone());
        remove(&t);
        unregister(&t);
    }
}

/// Moves the calling thread into a named namespace.
pub fn enter(name: &str) -> Result<()> {
    let f = File::open(Path::new("/run/netns").join(name))
        .with_context(|| format!("opening namespace {name}"))?;
    // SAFETY: setns on an open namespace fd only changes this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to one CPU (best effort).
pub fn pin_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Pins another task (a kernel thread) to one CPU.
pub fn pin_pid(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: as in `pin_cpu`.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!(
            "pinning task {pid} to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Gives a kernel thread SCHED_FIFO priority `prio`: a threaded NAPI kthread then
/// preempts user tasks as the softirq it replaces would, instead of sharing its CPU with
/// whatever else runs there.
pub fn fifo_pid(pid: i32, prio: i32) -> Result<()> {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: a valid sched_param for an existing task.
    if unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) } != 0 {
        bail!(
            "SCHED_FIFO for task {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Runs a host command; non-zero exit is an error with its stderr.
pub fn sh(args: &[&str]) -> Result<String> {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]);
    output(&mut c, &args.join(" "))
}

fn output(c: &mut Command, line: &str) -> Result<String> {
    let out = c.output().with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
