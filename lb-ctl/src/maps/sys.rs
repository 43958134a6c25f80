//! The few system calls aya 0.14 does not expose: which interface a pinned XDP link is
//! attached to (`bpf_link_info.xdp.ifindex`), whether a path is on bpffs, and mounting it.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// `BPF_OBJ_GET` command of bpf(2).
const BPF_OBJ_GET: libc::c_long = 7;
/// `BPF_OBJ_GET_INFO_BY_FD` command of bpf(2).
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// True when `p` is on a bpf filesystem.
pub(crate) fn is_bpffs(p: &Path) -> bool {
    let Ok(c) = cpath(p) else { return false };
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Mounts bpffs at `p` (`mount -t bpf bpf P`).
pub(crate) fn mount_bpffs(p: &Path) -> io::Result<()> {
    let target = cpath(p)?;
    let fs = c"bpf";
    // SAFETY: all strings are NUL-terminated and outlive the call; no data argument.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the kernel says about a pinned link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    /// `bpf_link_type` (6 = XDP).
    pub kind: u32,
    /// Link id.
    pub id: u32,
    /// Attached program id.
    pub prog_id: u32,
    /// For an XDP link: the interface, or 0 once the interface is gone (defunct link).
    pub ifindex: u32,
}

#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    /// Explicit tail padding: the kernel rejects non-zero bytes past the fields it knows.
    _pad: u32,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `BPF_MAP_LOOKUP_ELEM`.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
/// `BPF_MAP_UPDATE_ELEM`.
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps: Linux 5.14).
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
/// `BPF_NOEXIST` update flag.
pub(crate) const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST` update flag.
pub(crate) const BPF_EXIST: u64 = 2;

/// bpf_attr for the map element commands.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// A pinned map's own fd, for the element commands aya 0.14 lacks.
pub struct RawMap(OwnedFd);

impl RawMap {
    /// Wraps a map fd the caller owns (one just created, in tests).
    pub fn from_fd(fd: OwnedFd) -> RawMap {
        RawMap(fd)
    }

    /// The map's fd.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    /// Opens the pinned map at `p`.
    pub fn open(p: &Path) -> io::Result<RawMap> {
        obj_get(p).map(RawMap)
    }

    fn elem(&self, cmd: libc::c_long, key: &[u8], value: *mut u8, flags: u64) -> io::Result<()> {
        let attr = ElemAttr {
            map_fd: std::os::fd::AsRawFd::as_raw_fd(&self.0) as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value as u64,
            flags,
        };
        // SAFETY: the kernel reads key_size bytes of `key` and reads or writes value_size
        // bytes at `value`; callers pass slices of the map's own key and value types.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &attr as *const ElemAttr,
                std::mem::size_of::<ElemAttr>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes `key` and returns the value it had at that moment; `None` if absent.
    pub fn take<K: bytemuck::Pod, V: bytemuck::Pod>(&self, key: &K) -> io::Result<Option<V>> {
        self.read(BPF_MAP_LOOKUP_AND_DELETE_ELEM, key)
    }

    /// The value at `key`; `None` if absent.
    pub fn get<K: bytemuck::Pod, V: bytemuck::Pod>(&self, key: &K) -> io::Result<Option<V>> {
        self.read(BPF_MAP_LOOKUP_ELEM, key)
    }

    /// A command that copies `key`'s value out (lookup, lookup-and-delete); ENOENT → `None`.
    fn read<K: bytemuck::Pod, V: bytemuck::Pod>(
        &self,
        cmd: libc::c_long,
        key: &K,
    ) -> io::Result<Option<V>> {
        let mut v = V::zeroed();
        match self.elem(
            cmd,
            bytemuck::bytes_of(key),
            bytemuck::bytes_of_mut(&mut v).as_mut_ptr(),
            0,
        ) {
            Ok(()) => Ok(Some(v)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The map's value size in bytes (`bpf_map_info.value_size`).
    pub fn value_size(&self) -> io::Result<u32> {
        // bpf_map_info starts: type, id, key_size, value_size (include/uapi/linux/bpf.h).
        let mut info = [0u32; 32];
        obj_info(&self.0, &mut info)?;
        Ok(info[3])
    }

    /// Writes an all-zero value at `key` (any value type: the size is the map's own).
    pub fn set_zero<K: bytemuck::Pod>(&self, key: &K) -> io::Result<()> {
        let mut zero = vec![0u8; self.value_size()? as usize];
        self.elem(
            BPF_MAP_UPDATE_ELEM,
            bytemuck::bytes_of(key),
            zero.as_mut_ptr(),
            0,
        )
    }

    /// Inserts or replaces `key`.
    pub fn set<K: bytemuck::Pod, V: bytemuck::Pod>(&self, key: &K, v: &V) -> io::Result<()> {
        let mut v = *v;
        self.elem(
            BPF_MAP_UPDATE_ELEM,
            bytemuck::bytes_of(key),
            bytemuck::bytes_of_mut(&mut v).as_mut_ptr(),
            0,
        )
    }

    /// Replaces `key` only if present; false when it was absent (removed meanwhile).
    pub fn replace<K: bytemuck::Pod, V: bytemuck::Pod>(&self, key: &K, v: &V) -> io::Result<bool> {
        let mut v = *v;
        match self.elem(
            BPF_MAP_UPDATE_ELEM,
            bytemuck::bytes_of(key),
            bytemuck::bytes_of_mut(&mut v).as_mut_ptr(),
            BPF_EXIST,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Inserts `key` unless present; false when it was present.
    pub fn insert_new<K: bytemuck::Pod, V: bytemuck::Pod>(
        &self,
        key: &K,
        v: &V,
    ) -> io::Result<bool> {
        let mut v = *v;
        match self.elem(
            BPF_MAP_UPDATE_ELEM,
            bytemuck::bytes_of(key),
            bytemuck::bytes_of_mut(&mut v).as_mut_ptr(),
            BPF_NOEXIST,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Opens a pinned BPF object (`BPF_OBJ_GET`).
fn obj_get(p: &Path) -> io::Result<OwnedFd> {
    let c = cpath(p)?;
    let attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: bpf(BPF_OBJ_GET) reads `attr` (size passed) and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads an object's info struct (`BPF_OBJ_GET_INFO_BY_FD`) into `info`, which the kernel
/// fills up to its length (bpf_map_info, bpf_link_info: include/uapi/linux/bpf.h).
fn obj_info(fd: &OwnedFd, info: &mut [u32]) -> io::Result<()> {
    let attr = InfoAttr {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(fd) as u32,
        info_len: std::mem::size_of_val(info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes into `info`, which we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Seconds of CLOCK_MONOTONIC (what the data path's `CLOCK` holds).
pub fn monotonic_s() -> u32 {
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u32
    }
}

/// Opens a pinned BPF object and reads its link info.
pub(crate) fn pinned_link_info(p: &Path) -> io::Result<LinkInfo> {
    let fd = obj_get(p)?;
    // bpf_link_info: type, id, prog_id, then a union aligned to 8 whose xdp member starts
    // with the ifindex (include/uapi/linux/bpf.h).
    let mut info = [0u32; 16];
    obj_info(&fd, &mut info)?;
    Ok(LinkInfo {
        kind: info[0],
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
    })
}

/// The index of interface `name` in the current network namespace (0 if none).
pub(crate) fn if_index(name: &str) -> u32 {
    let Ok(c) = CString::new(name) else { return 0 };
    // SAFETY: NUL-terminated name; if_nametoindex asks the kernel of this netns.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Holds an exclusive `flock` on a directory until dropped: lb-ctl runs that change the
/// pinned state take it on the pin directory, so two concurrent runs cannot both allocate
/// the same service id, real id or table region (IPVS serialises in the kernel instead).
pub struct DirLock(#[expect(dead_code, reason = "held for its drop, which unlocks")] std::fs::File);

/// Takes the lock on `dir`, waiting for another holder.
pub fn lock_dir(dir: &Path) -> io::Result<DirLock> {
    let f = std::fs::File::open(dir)?;
    // SAFETY: flock on a file descriptor we own; released when it is closed.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    if rc == 0 {
        Ok(DirLock(f))
    } else {
        Err(io::Error::last_os_error())
    }
}
