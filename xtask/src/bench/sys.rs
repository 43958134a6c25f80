//! What the bench creates outside itself — network namespaces and bpffs pin directories —
//! through the one guard of the workspace, `lb_tests::netns` (removed on drop, on Ctrl-C,
//! and by the next run when a run was killed), named `lbbench-<pid>-<n>-<role>`; and CPU
//! and scheduling settings of its threads.

use anyhow::{Result, bail};
pub use lb_tests::netns::{Netns, PinDir, enter, sh};

/// Prefix of every namespace and pin directory the bench makes.
const PREFIX: &str = "lbbench";

/// Installs the Ctrl-C handler (once) and removes what killed runs left.
pub fn init() {
    lb_tests::netns::remove_on_ctrlc();
    lb_tests::netns::sweep_stale(PREFIX);
}

/// A fresh namespace `lbbench-<pid>-<n>-<role>` with `lo` up, deleted on drop.
pub fn netns(role: &str) -> Result<Netns> {
    Ok(Netns::new(PREFIX, role)?)
}

/// A fresh, empty bpffs directory `/sys/fs/bpf/lbbench-<pid>-<n>-<role>`, removed with
/// its pins on drop.
pub fn pin_dir(role: &str) -> Result<PinDir> {
    Ok(PinDir::create(PREFIX, role)?)
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
