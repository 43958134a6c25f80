//! The one network-namespace guard of lb's tests, labs and bench, and the one `sh` and
//! `is_root` (users: the packet harness `bpf.rs`, the labs `lab/`, lb-ctl's
//! `tests/netns.rs`, and `cargo xtask bench`/`demo`).
//!
//! A [`Netns`] is a named namespace `/run/netns/<prefix>-<pid>-<role>`, deleted on drop
//! (which destroys its veths and detaches their XDP programs), also when a test panics;
//! a [`PinDir`] is the same for a bpffs directory. Both register while alive, so
//! [`remove_on_ctrlc`] can remove them on Ctrl-C, and [`sweep_stale`] removes what a
//! killed process (SIGKILL) left under a prefix. Like aya's `run_netns`
//! (`test/integration-test/src/tests.rs`), a namespace is entered by one thread only.
//!
//! Namespaces are entered with setns(CLONE_NEWNET) on a thread of our own, or with
//! `nsenter --net` for a command, never `ip netns exec`, which remounts /sys and hides the
//! pinned BPF objects under /sys/fs/bpf (docs/design.md §2). Test networks: only 198.18.0.0/15
//! and 2001:db8::/32.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// Default bound on one command (ip, sysctl, lb-ctl).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a command or a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command exited non-zero.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// First lines of its stderr (or stdout).
        stderr: String,
    },
    /// A command ran past its time bound and was killed.
    #[error("`{cmd}` did not finish within {secs} s")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The bound.
        secs: u64,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A thread working inside a namespace panicked.
    #[error("a thread working in namespace {0} panicked")]
    Thread(String),
}

impl Error {
    /// An [`Error::Io`] saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// True when running as root (namespaces, XDP, bpffs, BPF_PROG_TEST_RUN).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a host command (`args[0]` with the rest) within [`COMMAND_TIMEOUT`]; returns its
/// stdout, or an error carrying its stderr.
pub fn sh(args: &[&str]) -> Result<String, Error> {
    run(Command::new(args[0]).args(&args[1..]), COMMAND_TIMEOUT)
}

/// `ip ARGS` (split on whitespace) on the host, within [`COMMAND_TIMEOUT`].
pub fn ip(args: &str) -> Result<String, Error> {
    run(
        Command::new("ip").args(args.split_whitespace()),
        COMMAND_TIMEOUT,
    )
}

/// Runs a command to completion within `timeout` (killed after it), capturing its output.
/// Non-zero exit is an error carrying stderr.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<String, Error> {
    let line = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run `{line}`"), e))?;
    let read = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    cmd: line,
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => {
                thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io(format!("wait for `{line}`"), e)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(Error::Command {
            cmd: line,
            status: status.to_string(),
            stderr: first_lines(&stderr, &stdout),
        })
    }
}

/// A command as one line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn first_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect();
    lines.join(" | ")
}

/// Moves the calling thread into the named network namespace (only the network one:
/// the mount namespace, and with it /sys/fs/bpf, stays). Only call it on a thread you own
/// and will not reuse for anything else.
pub fn enter(name: &str) -> Result<(), Error> {
    let f = File::open(Path::new(NETNS_DIR).join(name))
        .map_err(|e| Error::io(format!("open namespace {name}"), e))?;
    // SAFETY: setns on a valid, open namespace fd; it only changes this thread's netns.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::io(
            format!("setns into {name}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside the named namespace and returns its result.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = name.to_string();
    thread::Builder::new()
        .name(format!("netns {name}"))
        .spawn(move || -> Result<T, Error> {
            enter(&ns)?;
            Ok(f())
        })
        .map_err(|e| Error::io("spawn a thread", e))?
        .join()
        .map_err(|_| Error::Thread(name.to_string()))?
}

/// What is alive now, for the Ctrl-C handler.
#[derive(Clone, PartialEq, Eq)]
enum Thing {
    Netns(String),
    PinDir(PathBuf),
}

static LIVE: Mutex<Vec<Thing>> = Mutex::new(Vec::new());

/// Per-process counter, so two guards of one role in one process get distinct names.
static NEXT: AtomicU32 = AtomicU32::new(0);

fn live() -> std::sync::MutexGuard<'static, Vec<Thing>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove(t: &Thing) {
    match t {
        Thing::Netns(n) => {
            if Path::new(NETNS_DIR).join(n).exists() {
                let _ = ip(&format!("netns del {n}"));
            }
        }
        Thing::PinDir(p) => {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Removes every namespace and pin directory still alive in this process (newest first).
pub fn remove_live() {
    let things = std::mem::take(&mut *live());
    for t in things.iter().rev() {
        remove(t);
    }
}

/// Installs a Ctrl-C handler that removes what is alive and exits 130 (best effort: a
/// handler installed earlier stays).
pub fn remove_on_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        remove_live();
        eprintln!("interrupted: namespaces and pin directories removed");
        std::process::exit(130);
    });
}

/// `<prefix>-<pid>-<n>-<role>`: a fresh name of this process.
fn fresh_name(prefix: &str, role: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{role}", std::process::id())
}

/// Removes the namespaces and pin directories named `<prefix>-<pid>-...` of processes that
/// are gone (killed by SIGKILL, say), so a crashed run does not pile up state.
pub fn sweep_stale(prefix: &str) {
    let dead = |name: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            })
    };
    for (dir, netns) in [(NETNS_DIR, true), (BPFFS, false)] {
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

/// A named network namespace, deleted on drop (also on panic), with `lo` up.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `/run/netns/<prefix>-<pid>-<n>-<role>` with `lo` up.
    pub fn new(prefix: &str, role: &str) -> Result<Netns, Error> {
        Netns::named(fresh_name(prefix, role))
    }

    /// Creates the namespace `name` (replacing a leftover of that name) with `lo` up.
    pub fn named(name: String) -> Result<Netns, Error> {
        let t = Thing::Netns(name.clone());
        remove(&t);
        ip(&format!("netns add {name}"))?;
        live().push(t);
        let ns = Netns { name };
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    /// Its name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// A command to run inside the namespace: `nsenter --net=... -- prog`, which keeps
    /// /sys/fs/bpf visible.
    pub fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(prog);
        c
    }

    /// Runs `args` inside the namespace within [`COMMAND_TIMEOUT`]; returns stdout.
    pub fn sh(&self, args: &[&str]) -> Result<String, Error> {
        let mut c = self.cmd(args[0]);
        c.args(&args[1..]);
        run(&mut c, COMMAND_TIMEOUT)
    }

    /// `ip -n <name> ARGS` (split on whitespace).
    pub fn ip(&self, args: &str) -> Result<String, Error> {
        ip(&format!("-n {} {args}", self.name))
    }

    /// Sets sysctls (`key=value`) of this namespace. `ip netns exec` is fine for this one:
    /// sysctl needs the namespace's /proc/sys/net, not bpffs.
    pub fn sysctl(&self, settings: &[&str]) -> Result<String, Error> {
        run(
            Command::new("ip")
                .args(["netns", "exec", &self.name, "sysctl", "-qw"])
                .args(settings),
            COMMAND_TIMEOUT,
        )
    }

    /// A veth pair: `dev` here, `peer_dev` in `peer` (or here too with `None`). `opts` go
    /// on this end's `link add` (e.g. `address 02:..` or `index 10`), `peer_opts` on the
    /// peer's. Both ends stay down.
    pub fn veth(
        &self,
        dev: &str,
        opts: &str,
        peer: Option<&Netns>,
        peer_dev: &str,
        peer_opts: &str,
    ) -> Result<(), Error> {
        let netns = peer
            .map(|p| format!("netns {}", p.name))
            .unwrap_or_default();
        self.ip(&format!(
            "link add {dev} {opts} type veth peer name {peer_dev} {peer_opts} {netns}"
        ))?;
        Ok(())
    }

    /// Adds `addr/plen` to `dev` (IPv6 without DAD, usable at once).
    pub fn addr(&self, dev: &str, addr: std::net::IpAddr, plen: u8) -> Result<(), Error> {
        let nodad = if addr.is_ipv6() { " nodad" } else { "" };
        self.ip(&format!("addr add {addr}/{plen} dev {dev}{nodad}"))?;
        Ok(())
    }

    /// Sets `dev` up.
    pub fn up(&self, dev: &str) -> Result<(), Error> {
        self.ip(&format!("link set {dev} up"))?;
        Ok(())
    }

    /// Moves the calling thread into this namespace (see [`enter`]).
    pub fn enter(&self) -> Result<(), Error> {
        enter(&self.name)
    }

    /// Runs `f` on a fresh thread inside this namespace (see [`in_netns`]).
    pub fn run_in<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        in_netns(&self.name, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let t = Thing::Netns(self.name.clone());
        remove(&t);
        live().retain(|x| *x != t);
    }
}

/// A bpffs directory `/sys/fs/bpf/<prefix>-<pid>-<n>-<role>`, removed with everything
/// pinned in it on drop (also on panic). Not created: `lb-ctl load` (or [`PinDir::create`])
/// makes it.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Reserves a fresh directory name (nothing is created yet).
    pub fn new(prefix: &str, role: &str) -> PinDir {
        let path = Path::new(BPFFS).join(fresh_name(prefix, role));
        let t = Thing::PinDir(path.clone());
        remove(&t);
        live().push(t);
        PinDir { path }
    }

    /// As [`PinDir::new`], and creates the directory.
    pub fn create(prefix: &str, role: &str) -> Result<PinDir, Error> {
        let d = PinDir::new(prefix, role);
        std::fs::create_dir_all(&d.path).map_err(|e| {
            Error::io(
                format!(
                    "creating {} (is bpffs mounted? `cargo xtask setup`)",
                    d.path.display()
                ),
                e,
            )
        })?;
        Ok(d)
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
        live().retain(|x| *x != t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_are_per_process_and_distinct() {
        let pid = std::process::id();
        let (a, b) = (fresh_name("lbx", "dir"), fresh_name("lbx", "dir"));
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(n.starts_with(&format!("lbx-{pid}-")), "{n}");
            assert!(n.ends_with("-dir"), "{n}");
        }
    }

    #[test]
    fn sh_reports_failure_with_stderr() {
        assert_eq!(sh(&["echo", "hi"]).expect("echo runs"), "hi\n");
        match sh(&["sh", "-c", "echo oops >&2; exit 3"]) {
            Err(Error::Command { stderr, .. }) => assert_eq!(stderr, "oops"),
            other => panic!("want a Command error, got {other:?}"),
        }
    }
}
