//! The resident sweeper: the one process per pin directory that runs expiry passes
//! (IPVS's connection timers) for as long as lb is loaded. `lb-ctl load` starts it
//! ([`ensure`]); it ends by itself when lb is unloaded (the pin directory's CLOCK is gone).
//! Which process is the sweeper is told by a lock, not a pid file (bpffs holds only pins
//! and directories): the sweeper holds an exclusive flock on the directory `sweeper`
//! inside the pin directory for its whole life, so a crashed sweeper leaves nothing stale
//! behind and the next `lb-ctl load` starts another.

use crate::maps::{self, MapsError};
use lb_common::consts::MAP_CLOCK;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The directory under the pin directory whose flock marks the running sweeper.
pub const LOCK_NAME: &str = "sweeper";

/// The lock of the running sweeper, held while this lives.
pub struct Held(#[allow(dead_code, reason = "held for its flock, never read")] File);

/// Takes the sweeper's lock if no process holds it (`None`: a sweeper runs).
pub fn try_hold(dir: &Path) -> io::Result<Option<Held>> {
    let path = dir.join(LOCK_NAME);
    match std::fs::create_dir(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let f = File::open(&path)?;
    // SAFETY: flock on a file descriptor we own; released when it is closed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(Held(f)));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Whether a sweeper holds the lock of `dir`.
pub fn running(dir: &Path) -> io::Result<bool> {
    Ok(try_hold(dir)?.is_none())
}

/// How long [`ensure`] waits for a sweeper it started to take its lock.
const START_WAIT: Duration = Duration::from_secs(2);

/// Starts `lb-ctl sweep` in the background for `dir` unless one runs: a new session, no
/// terminal, standard streams closed, so it outlives the `lb-ctl load` that started it.
/// Returns a line for the operator.
pub fn ensure(dir: &Path, interval_s: u64) -> io::Result<String> {
    if running(dir)? {
        return Ok("sweep: already running".into());
    }
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["sweep", "--interval", &interval_s.to_string()])
        .env("LB_PIN_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches the child from our session.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let t0 = Instant::now();
    while t0.elapsed() < START_WAIT {
        if running(dir)? {
            return Ok(format!(
                "sweep: started (pid {}), expiring idle connections every {interval_s} s",
                child.id()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::other(format!(
        "the sweeper (pid {}) did not start within {} s",
        child.id(),
        START_WAIT.as_secs()
    )))
}

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweeperError {
    /// Another sweeper holds the lock.
    #[error("a sweeper already runs for {0}")]
    AlreadyRunning(std::path::PathBuf),
    /// The lock could not be taken.
    #[error("cannot take the sweeper lock under {0}")]
    Lock(std::path::PathBuf, #[source] io::Error),
}

/// The sweeper's loop: a pass every `interval`, until lb is unloaded (returns `Ok`). A
/// failed pass is reported to `log` and retried at the next interval: expiry must not stop
/// for a passing error (a map being replaced, a full disk for logs).
pub fn run(
    dir: &Path,
    interval: Duration,
    mut log: impl FnMut(&MapsError),
) -> Result<(), SweeperError> {
    let _held = try_hold(dir)
        .map_err(|e| SweeperError::Lock(dir.to_path_buf(), e))?
        .ok_or_else(|| SweeperError::AlreadyRunning(dir.to_path_buf()))?;
    loop {
        if !dir.join(MAP_CLOCK).exists() {
            return Ok(());
        }
        if let Err(e) = maps::sweep::sweep_once(dir) {
            log(&e);
        }
        std::thread::sleep(interval);
    }
}
