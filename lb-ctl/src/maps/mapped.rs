//! Array maps read and written through `mmap` (`BPF_F_MMAPABLE`, Linux 5.5), for the two
//! big arrays every command touches: reading all 65,536 REALS slots (4.7 MB) and writing a
//! 65,537-slot scheduler table. Measured here, the batch syscalls (`batch.rs`) took 15–17 ms
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::sys::{RawMap, test_array as array};
    use std::os::fd::AsFd;

    /// `BPF_F_MMAPABLE` in bpf_attr.map_flags.
    const BPF_F_MMAPABLE: u32 = 1 << 10;

    /// Slot `i` read back by syscall (BPF_MAP_LOOKUP_ELEM): independent of the mapping.
    fn get<V: Pod>(m: &RawMap, i: u32) -> V {
        m.get::<u32, V>(&i)
            .expect("lookup")
            .expect("array slots exist")
    }

    #[test]
    fn writes_land_where_the_syscall_reads_them() {
        // A u32 value, as SCHED_TABLE: 8 bytes apart in the kernel's layout.
        let len = 3 * 65_537 + 5;
        let Some(fd) = array(len, 4, BPF_F_MMAPABLE) else {
            return;
        };
        let vals: Vec<u32> = (0..65_537u32).map(|i| i * 7 + 1).collect();
        assert!(write(fd.as_fd(), len, 65_538, &vals).expect("mmap write"));
        // At the start too (offset 0, not page-rounded down from elsewhere).
        assert!(write(fd.as_fd(), len, 0, &[9u32, 8]).expect("mmap write"));
        // Past the end: refused, nothing written.
        let e = write(fd.as_fd(), len, len - 2, &vals[..3]).expect_err("slots past the end");
        assert_eq!(e.raw_os_error(), Some(libc::E2BIG));
        let m = RawMap::from_fd(fd);
        for (slot, want) in [
            (0, 9),
            (1, 8),
            (2, 0),
            (65_537, 0),
            (65_538, 1),
            (65_538 + 100, 701),
            (131_074, 458_753),
            (131_075, 0),
            (len - 2, 0),
        ] {
            assert_eq!(get::<u32>(&m, slot), want, "slot {slot}");
        }
    }

    #[test]
    fn reads_what_the_syscall_wrote() {
        // An odd-sized value (12 bytes, 16 apart), as the maps' structs.
        let Some(fd) = array(1000, 12, BPF_F_MMAPABLE) else {
            return;
        };
        let m = RawMap::from_fd(fd);
        for i in [0u32, 1, 499, 999] {
            let mut v = [0u8; 12];
            v[..4].copy_from_slice(&(i + 1).to_ne_bytes());
            v[11] = 0xaa;
            m.set(&i, &v).expect("update");
        }
        let all = read_all::<[u8; 12]>(m.fd(), 1000)
            .expect("mmap read")
            .expect("mmapable");
        assert_eq!(all.len(), 1000);
        for (i, v) in all.iter().enumerate() {
            if [0, 1, 499, 999].contains(&i) {
                assert_eq!(&v[..4], &(i as u32 + 1).to_ne_bytes());
                assert_eq!(v[11], 0xaa);
            } else {
                assert_eq!(*v, [0u8; 12], "slot {i}");
            }
        }
    }

    #[test]
    fn a_map_without_the_flag_falls_back() {
        let Some(fd) = array(16, 4, 0) else {
            return;
        };
        assert!(read_all::<u32>(fd.as_fd(), 16).expect("no error").is_none());
        assert!(!write(fd.as_fd(), 16, 0, &[1u32, 2]).expect("no error"));
    }
}
