//! Array maps read and written through `mmap` (`BPF_F_MMAPABLE`, Linux 5.5), for the big
//! arrays every command touches: reading all 65,536 REALS slots (4.7 MB) and REAL_TRASH
//! records (1.5 MB), and writing a 65,537-slot scheduler table. Measured here, the batch syscalls (`batch.rs`) took 15–17 ms
//! for each, because the kernel still copies slot by slot; through a mapping both are
//! plain memory copies well under a millisecond, which is most of what stands between an
//! `lb-ctl -a` and the data path using the new real.
//!
//! The mapping is the map's own memory, the data path's view too: the values read are the
//! live ones and a slot written is visible at once. That is no weaker than the syscalls,
//! which copy an array value in place without a lock as well. Tables are still published
//! as before: the slots are written first, then the service that names them is replaced in
//! SERVICES (a hash map, atomic for readers) by a syscall, which orders the two.
//!
//! A map without `BPF_F_MMAPABLE` (pinned by an older lb) refuses the mapping with
//! `EINVAL`; the functions then return `Ok(None)` / `Ok(false)` and the caller falls back
//! to the batch syscalls.

use bytemuck::Pod;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A shared mapping of an array map's values. Unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps the map's values from byte `start` (rounded down to a page) to byte `end`.
    /// `Ok(None)`: not mmapable. Returns the mapping and where `start` is in it.
    fn new(
        fd: BorrowedFd<'_>,
        start: usize,
        end: usize,
        write: bool,
    ) -> io::Result<Option<(Self, usize)>> {
        let page = page_size();
        let first = start / page * page;
        let len = (end - first).div_ceil(page).max(1) * page;
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let offset =
            libc::off_t::try_from(first).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // SAFETY: a fresh shared mapping of a file descriptor we hold for the call; the
        // kernel checks offset and length against the map (EINVAL when past its end).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINVAL) => Ok(None),
                _ => Err(e),
            };
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(Some((Mapping { base, len }, start - first)))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Bytes between two values of an array map: the value size rounded up to 8, as the
/// kernel lays them out (`round_up(value_size, 8)` in arraymap.c).
const fn stride<V>() -> usize {
    std::mem::size_of::<V>().next_multiple_of(8)
}

/// Reads every slot of an array map with `len` entries. `V` must be the map's value type
/// (aya's typed `Array` checks its size when opened). `Ok(None)`: the map is not mmapable.
pub fn read_all<V: Pod>(fd: BorrowedFd<'_>, len: u32) -> io::Result<Option<Vec<V>>> {
    let n = len as usize;
    let Some((m, _)) = Mapping::new(fd, 0, n * stride::<V>(), false)? else {
        return Ok(None);
    };
    let out = (0..n)
        .map(|i| {
            // SAFETY: slot i lies inside the mapping (n slots of `stride` bytes were
            // mapped), is aligned to 8 within a page-aligned mapping, and holds a Pod
            // value; volatile because the data path and other commands share the memory.
            unsafe { std::ptr::read_volatile(m.base.as_ptr().add(i * stride::<V>()).cast::<V>()) }
        })
        .collect();
    Ok(Some(out))
}

/// Writes `values` into slots `base..base + values.len()` of an array map with `len`
/// entries. Each slot is one volatile store of its value. `Ok(false)`: not mmapable.
/// Slots past the end are refused (`E2BIG`, as the syscalls do) before anything is written.
pub fn write<V: Pod>(fd: BorrowedFd<'_>, len: u32, base: u32, values: &[V]) -> io::Result<bool> {
    let end = (base as usize)
        .checked_add(values.len())
        .filter(|&e| e <= len as usize)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::E2BIG))?;
    if values.is_empty() {
        return Ok(true);
    }
    // Only the pages the slots are on: a table near the end of a large SCHED_TABLE maps
    // what it writes, not everything before it.
    let start = base as usize * stride::<V>();
    let Some((m, at)) = Mapping::new(fd, start, end * stride::<V>(), true)? else {
        return Ok(false);
    };
    for (i, v) in values.iter().enumerate() {
        // SAFETY: slot base + i < end lies inside the mapping (`at` is slot `base`), 8-aligned
        // as in `read_all` (pages are multiples of 8).
        unsafe {
            let p = m.base.as_ptr().add(at + i * stride::<V>());
            std::ptr::write_volatile(p.cast::<V>(), *v);
        }
    }
    // The stores above before whatever publishes them (a SERVICES update).
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    Ok(true)
}
