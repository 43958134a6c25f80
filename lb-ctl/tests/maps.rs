//! Root-only: [`lb_ctl::maps::batch`] and [`lb_ctl::maps::mapped`] against real BPF
//! arrays the test creates (BPF_MAP_CREATE needs root or CAP_BPF). A binary of its own,
//! not unit tests of the library, so that a trial that cannot create a map is reported
//! ignored with the reason (which `CI=true cargo xtask test` counts as a failure) rather
//! than passing without running. `cargo test -p lb-ctl --test maps [-- FILTER]`.

use bytemuck::Pod;
use lb_ctl::maps::sys::RawMap;
use lb_ctl::maps::{batch, mapped};
use libtest_mimic::{Arguments, Completion, Trial};
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// `BPF_F_MMAPABLE` in bpf_attr.map_flags.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A fresh `BPF_MAP_TYPE_ARRAY` of `len` u32 keys → `value_size` bytes with `map_flags`.
fn try_array(len: u32, value_size: u32, map_flags: u32) -> io::Result<OwnedFd> {
    // map_type, key_size, value_size, max_entries, map_flags (start of bpf_attr).
    let attr: [u32; 5] = [2, 4, value_size, len, map_flags];
    // SAFETY: a valid BPF_MAP_CREATE attr of the given size; the fd returned is ours.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0 as libc::c_long, attr.as_ptr(), 20usize) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// As [`try_array`]; panics when the map cannot be made (the trial already checked it can).
fn array(len: u32, value_size: u32, map_flags: u32) -> OwnedFd {
    try_array(len, value_size, map_flags).expect("BPF_MAP_CREATE")
}

/// Why these trials cannot run here, if they cannot.
fn cannot_run() -> Option<String> {
    try_array(1, 4, 0)
        .err()
        .map(|e| format!("cannot create a BPF map ({e}): needs root or CAP_BPF"))
}

/// Slot `i` read back by syscall (BPF_MAP_LOOKUP_ELEM): independent of the mapping.
fn get<V: Pod>(m: &RawMap, i: u32) -> V {
    m.get::<u32, V>(&i)
        .expect("lookup")
        .expect("array slots exist")
}

fn batch_update_then_lookup_round_trip() {
    // An array of u32 → [u8; 12] (an odd-sized value, like the maps' structs).
    let fd = array(1000, 12, 0);
    let vals: Vec<[u8; 12]> = (0..300u32)
        .map(|i| {
            let mut v = [0u8; 12];
            v[..4].copy_from_slice(&i.to_ne_bytes());
            v[11] = 0xaa;
            v
        })
        .collect();
    assert!(batch::update(fd.as_fd(), 500, &vals).expect("batch update"));
    let all = batch::lookup_all::<[u8; 12]>(fd.as_fd(), 1000)
        .expect("batch lookup")
        .expect("kernel has batch lookup");
    assert_eq!(all.len(), 1000);
    assert!(all[..500].iter().all(|v| *v == [0u8; 12]));
    assert_eq!(&all[500..800], &vals[..]);
    assert!(all[800..].iter().all(|v| *v == [0u8; 12]));
    // Past the end: refused like a per-element write (E2BIG), not treated as unsupported.
    let e = batch::update(fd.as_fd(), 900, &vals).expect_err("slots past the end");
    assert_eq!(e.raw_os_error(), Some(libc::E2BIG));
}

fn batch_large_maps_split_into_ranges() {
    // As SCHED_TABLE: a 65,537-slot table written at an odd base, then everything read.
    let len = 3 * 65_537 + 5;
    let fd = array(len, 12, 0);
    let vals: Vec<[u8; 12]> = (0..65_537u32)
        .map(|i| {
            let mut v = [0u8; 12];
            v[4..8].copy_from_slice(&(i * 7 + 1).to_ne_bytes());
            v
        })
        .collect();
    assert!(batch::update(fd.as_fd(), 65_538, &vals).expect("batch update"));
    let all = batch::lookup_all::<[u8; 12]>(fd.as_fd(), len)
        .expect("batch lookup")
        .expect("kernel has batch lookup");
    assert_eq!(all.len(), len as usize);
    assert!(all[..65_538].iter().all(|v| *v == [0u8; 12]));
    assert_eq!(&all[65_538..131_075], &vals[..]);
    assert!(all[131_075..].iter().all(|v| *v == [0u8; 12]));
}

fn mapped_writes_land_where_the_syscall_reads_them() {
    // A u32 value, as SCHED_TABLE: 8 bytes apart in the kernel's layout.
    let len = 3 * 65_537 + 5;
    let fd = array(len, 4, BPF_F_MMAPABLE);
    let vals: Vec<u32> = (0..65_537u32).map(|i| i * 7 + 1).collect();
    assert!(mapped::write(fd.as_fd(), len, 65_538, &vals).expect("mmap write"));
    // At the start too (offset 0, not page-rounded down from elsewhere).
    assert!(mapped::write(fd.as_fd(), len, 0, &[9u32, 8]).expect("mmap write"));
    // Past the end: refused, nothing written.
    let e = mapped::write(fd.as_fd(), len, len - 2, &vals[..3]).expect_err("slots past the end");
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

fn mapped_reads_what_the_syscall_wrote() {
    // An odd-sized value (12 bytes, 16 apart), as the maps' structs.
    let m = RawMap::from_fd(array(1000, 12, BPF_F_MMAPABLE));
    for i in [0u32, 1, 499, 999] {
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&(i + 1).to_ne_bytes());
        v[11] = 0xaa;
        m.set(&i, &v).expect("update");
    }
    let all = mapped::read_all::<[u8; 12]>(m.fd(), 1000)
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

fn mapped_a_map_without_the_flag_falls_back() {
    let fd = array(16, 4, 0);
    assert!(
        mapped::read_all::<u32>(fd.as_fd(), 16)
            .expect("no error")
            .is_none()
    );
    assert!(!mapped::write(fd.as_fd(), 16, 0, &[1u32, 2]).expect("no error"));
}

fn main() {
    let args = Arguments::from_args();
    let why_not = cannot_run();
    let tests: [(&str, fn()); 5] = [
        (
            "batch::update_then_lookup_round_trip",
            batch_update_then_lookup_round_trip,
        ),
        (
            "batch::large_maps_split_into_ranges",
            batch_large_maps_split_into_ranges,
        ),
        (
            "mapped::writes_land_where_the_syscall_reads_them",
            mapped_writes_land_where_the_syscall_reads_them,
        ),
        (
            "mapped::reads_what_the_syscall_wrote",
            mapped_reads_what_the_syscall_wrote,
        ),
        (
            "mapped::a_map_without_the_flag_falls_back",
            mapped_a_map_without_the_flag_falls_back,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let why_not = why_not.clone();
            Trial::ignorable_test(name, move || match why_not {
                Some(why) => Ok(Completion::ignored_with(why)),
                None => {
                    f();
                    Ok(Completion::Completed)
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
