//! Network-namespace plumbing for the labs: run a closure inside a named namespace (on a
//! fresh thread, because setns(CLONE_NEWNET) only moves the calling thread), run commands
//! with a time bound, and name and remove everything one lab creates.
//!
//! Namespaces are entered with setns or `nsenter --net`, never `ip netns exec`, which
//! remounts /sys and hides the pinned BPF objects under /sys/fs/bpf (DESIGN.md §2).

use super::LabError;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Prefix of every namespace a lab creates: `lblab-<pid>-<n>-<role>`.
pub const NS_PREFIX: &str = "lblab-";
/// Prefix of every pin directory a lab creates: `/sys/fs/bpf/lb-lab-<pid>-<n>[-rI]`.
pub const PIN_PREFIX: &str = "lb-lab-";
/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Default bound on one command (ip, sysctl, lb-ctl).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Labs created by this process so far, so parallel labs in one process get distinct names.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Moves the calling thread into the named network namespace. Only call it on a thread you
/// own and will not reuse for anything else.
pub fn enter(ns: &str) -> std::io::Result<()> {
    let f = File::open(Path::new("/run/netns").join(ns))?;
    // SAFETY: setns on a valid, open namespace fd; it only changes this thread's netns.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside namespace `ns` and returns its result.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let name = ns.to_string();
    let handle = thread::Builder::new()
        .name(format!("netns {ns}"))
        .spawn(move || -> Result<T, LabError> {
            enter(&name).map_err(|e| LabError::io(format!("setns into {name}"), e))?;
            Ok(f())
        })
        .map_err(|e| LabError::io("spawn a thread", e))?;
    handle
        .join()
        .map_err(|_| LabError::Thread(ns.to_string()))?
}

/// Runs a command to completion within `timeout` (killed after it), capturing its output.
/// Non-zero exit is an error carrying stderr.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<String, LabError> {
    let line = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::io(format!("run `{line}`"), e))?;
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
                return Err(LabError::Timeout {
                    cmd: line,
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => {
                thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(LabError::io(format!("wait for `{line}`"), e)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(LabError::Command {
            cmd: line,
            status: status.to_string(),
            stderr: first_lines(&stderr, &stdout),
        })
    }
}

/// `ip ARGS` (split on whitespace) with the default time bound.
pub fn ip(args: &str) -> Result<String, LabError> {
    run(
        Command::new("ip").args(args.split_whitespace()),
        COMMAND_TIMEOUT,
    )
}

fn describe(cmd: &Command) -> String {
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

/// The names of everything one lab creates. Knowing them up front lets a signal handler
/// remove a half-built lab.
#[derive(Debug)]
pub struct Names {
    /// `<pid>-<n>`: unique per process and lab.
    pub tag: String,
    /// Client namespace.
    pub client: String,
    /// Director namespace (runs the balancer).
    pub director: String,
    /// Namespace holding the inside bridge (the L2 segment of director and reals).
    pub switch: String,
    /// Real-server namespaces, real1..realN.
    pub reals: Vec<String>,
    /// The director's LB_PIN_DIR.
    pub pin_dir: PathBuf,
    /// Each real's LB_PIN_DIR (its decap program).
    pub real_pin_dirs: Vec<PathBuf>,
}

impl Names {
    fn new(tag: String, reals: usize) -> Names {
        let ns = |role: &str| format!("{NS_PREFIX}{tag}-{role}");
        Names {
            client: ns("cli"),
            director: ns("dir"),
            switch: ns("sw"),
            reals: (1..=reals).map(|i| ns(&format!("r{i}"))).collect(),
            pin_dir: Path::new(BPFFS).join(format!("{PIN_PREFIX}{tag}")),
            real_pin_dirs: (1..=reals)
                .map(|i| Path::new(BPFFS).join(format!("{PIN_PREFIX}{tag}-r{i}")))
                .collect(),
            tag,
        }
    }

    /// Every namespace, in the order they are created.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut v = vec![
            self.client.as_str(),
            self.director.as_str(),
            self.switch.as_str(),
        ];
        v.extend(self.reals.iter().map(String::as_str));
        v
    }

    fn pin_dirs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.pin_dir).chain(self.real_pin_dirs.iter())
    }
}

/// Removes everything a lab created; cheap to clone, safe to run any number of times and
/// from a signal handler's thread.
#[derive(Clone, Debug)]
pub struct Cleaner {
    names: Arc<Names>,
}

impl Cleaner {
    /// Reserves fresh names (pid + counter) for a lab with `reals` real servers.
    pub fn fresh(reals: usize) -> Cleaner {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        Cleaner {
            names: Arc::new(Names::new(tag, reals)),
        }
    }

    /// The names this cleaner removes.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Deletes the namespaces (which destroys their veths, the bridge and any XDP
    /// attachment) and removes the pin directories. Errors are ignored: whatever is gone
    /// is gone; [`Cleaner::leftovers`] tells what is not.
    pub fn run(&self) {
        for ns in self.names.namespaces().into_iter().rev() {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = ip(&format!("netns del {ns}"));
            }
        }
        for dir in self.names.pin_dirs() {
            remove_pin_dir(dir);
        }
    }

    /// Namespaces and pin directories of this lab that still exist.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .names
            .namespaces()
            .into_iter()
            .filter(|ns| Path::new("/run/netns").join(ns).exists())
            .map(|ns| format!("netns {ns}"))
            .collect();
        left.extend(
            self.names
                .pin_dirs()
                .filter(|d| d.exists())
                .map(|d| format!("pin dir {}", d.display())),
        );
        left
    }
}

fn remove_pin_dir(dir: &Path) {
    // Only ever remove our own directories on bpffs.
    let ours = dir.parent() == Some(Path::new(BPFFS))
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PIN_PREFIX));
    if ours && dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes namespaces and pin directories left by labs whose process is gone (killed by
/// SIGKILL, say), so a crashed run does not pile up state.
pub fn sweep_stale() {
    let dead = |rest: &str| {
        rest.split('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            })
    };
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(NS_PREFIX)
                && dead(rest)
            {
                let _ = ip(&format!("netns del {name}"));
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(BPFFS) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(PIN_PREFIX)
                && dead(rest)
            {
                remove_pin_dir(&e.path());
            }
        }
    }
}
