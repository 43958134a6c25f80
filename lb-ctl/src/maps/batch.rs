//! Batched reads and writes of array maps (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_UPDATE_BATCH`,
//! Linux 5.6), which aya 0.14 lacks.
//!
//! One syscall moves a whole array instead of one syscall per slot: reading the 65,536
//! REALS slots or writing a 65,537-slot scheduler table costs ~75 ms one element at a time
//! and a few ms batched. The kernel still performs the elements one by one, in key order,
//! with the same checks as the single-element commands, so the result is the same as the
//! per-element loop. When the kernel does not know the command (older than 5.6: `EINVAL`)
//! or the map type has no batch operations (`ENOTSUPP`/`EOPNOTSUPP`), the functions return
//! `Ok(None)` / `Ok(false)` and the caller falls back to per-element calls.

use bytemuck::Pod;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `BPF_MAP_LOOKUP_BATCH` command of bpf(2).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// `BPF_MAP_UPDATE_BATCH` command of bpf(2).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// The kernel-internal `ENOTSUPP` (524) that reaches user space from map types without
/// batch operations.
const ENOTSUPP: i32 = 524;

/// `bpf_attr.batch` (include/uapi/linux/bpf.h), 48 bytes.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    /// Key to continue after (lookup), null to start at the first key.
    in_batch: u64,
    /// Out: the last key returned (lookup), where to continue from.
    out_batch: u64,
    /// `count` keys of the map's key size.
    keys: u64,
    /// `count` values of the map's value size.
    values: u64,
    /// In: number of elements; out: number of elements done.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// True when `e` means "this kernel or map type has no batch command".
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(ENOTSUPP) | Some(libc::EOPNOTSUPP)
    )
}

/// Runs one batch command; returns the kernel's `count` (elements done) with the result.
fn batch(cmd: libc::c_long, attr: &mut BatchAttr) -> (u32, io::Result<()>) {
    // SAFETY: `attr` is a valid bpf_attr.batch for the duration of the call; the buffers it
    // points to are owned by the caller, sized for `attr.count` elements of the map's key
    // and value sizes (checked by the callers against the map), and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    let res = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    (attr.count, res)
}

/// At most this many threads share one batch; each takes at least `MIN_CHUNK` slots.
const MAX_THREADS: usize = 4;
/// Below this many slots per thread a second thread costs more than it saves.
const MIN_CHUNK: usize = 8192;

/// Splits `n` slots into chunks for the available cores: the kernel works through a batch
/// one element at a time (~250 ns each), so disjoint key ranges on two cores take half as
/// long.
fn chunk_len(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = cores.min(MAX_THREADS).min(n / MIN_CHUNK).max(1);
    n.div_ceil(threads).max(1)
}

/// Reads slots `start..start + values.len()` of an array map into `values`.
/// `Ok(false)`: unsupported.
fn lookup_range<V: Pod>(
    fd: BorrowedFd<'_>,
    start: u32,
    keys: &mut [u32],
    values: &mut [V],
) -> io::Result<bool> {
    let n = values.len();
    let mut done = 0usize;
    // The key to continue after: none at slot 0, else the slot before `start`.
    let mut prev = start.checked_sub(1);
    let mut next = 0u32;
    while done < n {
        let mut attr = BatchAttr {
            in_batch: prev.as_ref().map_or(0, |p| p as *const u32 as u64),
            out_batch: &mut next as *mut u32 as u64,
            keys: keys[done..].as_mut_ptr() as u64,
            values: values[done..].as_mut_ptr() as u64,
            count: (n - done) as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let (got, res) = batch(BPF_MAP_LOOKUP_BATCH, &mut attr);
        match res {
            Ok(()) => {}
            // ENOENT: the last key was reached; `count` says how many were filled.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                done += got as usize;
                break;
            }
            Err(e) if unsupported(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        if got == 0 {
            break;
        }
        done += got as usize;
        prev = Some(next);
    }
    // An array has every key; anything else means the reply is not what we asked for.
    let in_order = keys.iter().zip(start..).all(|(&k, want)| k == want);
    if done != n || !in_order {
        return Err(io::Error::other(format!(
            "batch lookup from slot {start} returned {done} of {n} slots or out of order"
        )));
    }
    Ok(true)
}

/// Reads every slot of an array map with `len` entries and `u32` keys, in key order
/// (disjoint key ranges on up to [`MAX_THREADS`] threads).
/// `V` must be the map's value type (aya's typed `Array` checks its size when opened).
/// `Ok(None)`: the kernel has no batch lookup; read slot by slot instead.
pub fn lookup_all<V: Pod + Send>(fd: BorrowedFd<'_>, len: u32) -> io::Result<Option<Vec<V>>> {
    let n = len as usize;
    let mut keys = vec![0u32; n];
    let mut values = vec![V::zeroed(); n];
    let chunk = chunk_len(n);
    let results: Vec<io::Result<bool>> = std::thread::scope(|s| {
        let jobs: Vec<_> = keys
            .chunks_mut(chunk)
            .zip(values.chunks_mut(chunk))
            .zip((0u32..).step_by(chunk))
            .map(|((k, v), start)| s.spawn(move || lookup_range(fd, start, k, v)))
            .collect();
        jobs.into_iter().map(join).collect()
    });
    for r in results {
        if !r? {
            return Ok(None);
        }
    }
    Ok(Some(values))
}

/// A scoped thread's result; a panic in it is resumed here.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Writes `values` into slots `start..` of an array map. `Ok(false)`: unsupported.
fn update_range<V: Pod>(fd: BorrowedFd<'_>, start: u32, values: &[V]) -> io::Result<bool> {
    let keys: Vec<u32> = (start..).take(values.len()).collect();
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: values.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    let (_, res) = batch(BPF_MAP_UPDATE_BATCH, &mut attr);
    match res {
        Ok(()) => Ok(true),
        // Unknown command or map type (rejected before any write; an old kernel does not
        // even write `count` back) — or an element the kernel refused with EINVAL, which
        // the per-element fallback rewrites and then reports itself.
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `values` into slots `base..base + values.len()` of an array map with `u32` keys
/// (disjoint key ranges on up to [`MAX_THREADS`] threads, each in key order; every slot is
/// written once, and all are written when this returns — the same end state as a
/// per-element loop; the tables written here are published only afterwards).
/// `V` must be the map's value type. `Ok(false)`: the kernel has no batch update (or
/// refused it with `EINVAL`); write slot by slot instead, which is idempotent over
/// anything already written. On an error, other slots may be written (as with a
/// per-element loop that stops at the failing one).
pub fn update<V: Pod + Sync>(fd: BorrowedFd<'_>, base: u32, values: &[V]) -> io::Result<bool> {
    if values.is_empty() {
        return Ok(true);
    }
    let count = u32::try_from(values.len())
        .ok()
        .filter(|c| base.checked_add(*c).is_some())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::E2BIG))?;
    let chunk = chunk_len(count as usize);
    let results: Vec<io::Result<bool>> = std::thread::scope(|s| {
        let jobs: Vec<_> = values
            .chunks(chunk)
            .zip((base..).step_by(chunk))
            .map(|(v, start)| s.spawn(move || update_range(fd, start, v)))
            .collect();
        jobs.into_iter().map(join).collect()
    });
    let mut supported = true;
    for r in results {
        supported &= r?;
    }
    Ok(supported)
}
