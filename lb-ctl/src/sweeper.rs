//! The resident sweeper: the one process per pin directory that runs expiry passes
//! (IPVS's connection timers), and on threads of their own ticks the rate estimator (IPVS's
//! estimation timer, [`crate::rate::ticker`]) and follows the neighbour table
//! ([`crate::neigh::follow`]), for as long as lb is loaded. `lb-ctl load` starts it
//! ([`ensure`]); it ends by itself when lb is unloaded (the pin directory's CLOCK is gone)
//! or upgraded (another lb_xdp pinned; `lb-ctl upgrade` then starts its own).
//! Which process is the sweeper is told by a lock, not a pid file (bpffs holds only pins
//! and directories): the sweeper holds an exclusive flock on the directory `sweeper`
//! inside the pin directory for its whole life, so a crashed sweeper leaves nothing stale
//! behind and the next `lb-ctl load` starts another.

use crate::maps::{self, MapsError};
use crate::rate::{self, ticker::Ticker};
use lb_common::consts::{MAP_CLOCK, PROG_LB};
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

/// The lock's directory under `dir`, made if missing, opened.
fn lock_file(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK_NAME);
    match std::fs::create_dir(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    File::open(&path)
}

/// Takes the sweeper's lock if no process holds it (`None`: a sweeper runs).
pub fn try_hold(dir: &Path) -> io::Result<Option<Held>> {
    let f = lock_file(dir)?;
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

/// Takes the sweeper's lock, waiting for the process that holds it to end.
fn hold_waiting(dir: &Path) -> io::Result<Held> {
    let f = lock_file(dir)?;
    // SAFETY: flock on a file descriptor we own; released when it is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(Held(f))
    } else {
        Err(io::Error::last_os_error())
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
    let child = spawn(dir, interval_s, false)?;
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

/// Starts `lb-ctl sweep` detached (`takeover`: waiting for the running sweeper to end).
fn spawn(dir: &Path, interval_s: u64, takeover: bool) -> io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["sweep", "--interval", &interval_s.to_string()]);
    if takeover {
        cmd.arg("--takeover");
    }
    cmd.env("LB_PIN_DIR", dir)
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
    cmd.spawn()
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
    /// The rate estimator's thread could not be started.
    #[error("cannot start the rate estimator's thread for {0}")]
    Thread(std::path::PathBuf, #[source] io::Error),
    /// The neighbour follower's thread could not be started.
    #[error("cannot start the neighbour follower")]
    Follower(#[source] io::Error),
}

/// Why [`run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// lb was unloaded.
    Unloaded,
    /// lb was upgraded (`lb-ctl upgrade` starts the new lb-ctl's sweeper).
    Upgraded,
}

/// The id of the program pinned as lb_xdp (`None`: none, or unreadable).
pub fn pinned_prog_id(dir: &Path) -> Option<u32> {
    let prog = aya::programs::Xdp::from_pin(
        dir.join(PROG_LB),
        aya_obj::programs::XdpAttachType::Interface,
    )
    .ok()?;
    prog.info().ok().map(|i| i.id())
}

/// The sweeper's loop: a pass every `interval`, until lb is unloaded or upgraded (a new
/// lb_xdp pinned: its lb-ctl may know better). A failed pass is reported to `log` and
/// retried at the next interval: expiry must not stop for a passing error. Beside it, a
/// thread ticks the rate estimator every 2 s ([`rate::ticker`]); its failures go to `log`
/// too, at the next pass.
pub fn run(
    dir: &Path,
    interval: Duration,
    takeover: bool,
    mut log: impl FnMut(&MapsError),
) -> Result<Ended, SweeperError> {
    let lock_err = |e| SweeperError::Lock(dir.to_path_buf(), e);
    let _held = if takeover {
        hold_waiting(dir).map_err(lock_err)?
    } else {
        // A few tries: `running` probes by taking the lock for an instant.
        let mut held = None;
        for _ in 0..5 {
            held = try_hold(dir).map_err(lock_err)?;
            if held.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        held.ok_or_else(|| SweeperError::AlreadyRunning(dir.to_path_buf()))?
    };
    let prog = pinned_prog_id(dir);
    // The rate estimator's own thread and schedule, so a long pass does not delay a tick;
    // it stops when this returns.
    let rates = Ticker::start(dir.to_path_buf(), rate::TICK, maps::rate::tick)
        .map_err(|e| SweeperError::Thread(dir.to_path_buf(), e))?;
    // Neighbour following runs beside expiry, for the life of this process.
    crate::neigh::follow::spawn(dir).map_err(SweeperError::Follower)?;
    loop {
        rates.errors().iter().for_each(&mut log);
        if !dir.join(MAP_CLOCK).exists() {
            return Ok(Ended::Unloaded);
        }
        if pinned_prog_id(dir) != prog {
            return Ok(Ended::Upgraded);
        }
        if let Err(e) = maps::sweep::sweep_once(dir) {
            log(&e);
        }
        std::thread::sleep(interval);
    }
}

/// After `lb-ctl upgrade`: starts this lb-ctl's sweeper, which waits for the old lb's to
/// see the new program and end (at its next pass, however long that one takes) and then
/// takes over. `None` when no sweeper ran before.
pub fn restart_after_upgrade(
    dir: &Path,
    was_running: bool,
    interval_s: u64,
) -> io::Result<Option<String>> {
    if !was_running {
        return Ok(None);
    }
    let child = spawn(dir, interval_s, true)?;
    Ok(Some(format!(
        "sweep: started (pid {}), taking over when the previous sweeper ends its pass",
        child.id()
    )))
}
