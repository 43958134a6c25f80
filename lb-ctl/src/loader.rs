//! Loading, pinning and attaching the XDP programs, and taking them away again.
//!
//! Layout under the pin directory (env `LB_PIN_DIR`, default `/sys/fs/bpf/lb`):
//!
//! ```text
//! lb_xdp              the balancer program
//! lb_ops              lb-ctl's requests to the kernel (test-run only, never attached)
//! SERVICES, REALS...  every map of the object, by name
//! link_<IF>           the bpf_link attaching lb_xdp to interface IF
//! decap/lb_decap      the decap program (real servers), its maps and decap/link_<IF>
//! ```
//!
//! Pins are the state, as IPVS tables are kernel state: a `load` finding `lb_xdp` pinned
//! adopts it instead of loading a new copy, so a restarted controller never interrupts
//! traffic; maps already pinned are reused by name even when the program is loaded anew
//! (a new object keeps the services, reals and flows). Removing a link pin detaches the
//! program from that interface (nothing else holds the link).
//!
//! [`Loader`] is the one way the balancer object is opened and its program loaded, with
//! its options (pinned or not, `--max-flows`, the flow cache's bits): `lb-ctl load` uses
//! it, and so do the packet tests, the scheduler tests and the bench, so all of them run
//! the program with the maps and `.rodata` that `lb-ctl load` gives it.

use crate::maps::sys;
use crate::maps::{self, MapsError};
use aya::programs::links::FdLink;
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};
use aya_obj::programs::XdpAttachType;
use lb_common::consts::{
    DEFAULT_MAX_FLOWS, GLOBAL_FLOW_CACHE_BITS, MAP_CLOCK, MAP_FLOW_CACHE, MAP_FLOWS4, MAP_FLOWS6,
    MAP_NAT_REV4, MAP_NAT_REV6, PIN_DIR, PROG_DECAP, PROG_LB, PROG_OPS,
};
use lb_common::flow_cache::{cache_bits, cache_entries};
use std::io;
use std::path::{Path, PathBuf};

/// Where bpffs is mounted on a normal system; mounted by `load` if it is not.
const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Sub-directory of the pin directory holding the decap program.
const DECAP_DIR: &str = "decap";

/// Why loading, attaching or detaching failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No object file found.
    #[error("cannot find {file} (build it with `cargo xtask build`); tried {}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ObjectNotFound {
        /// File name looked for.
        file: &'static str,
        /// Paths tried.
        tried: Vec<PathBuf>,
    },
    /// An interface does not exist in this network namespace.
    #[error("no interface {0} in this network namespace")]
    NoInterface(String),
    /// bpffs could not be mounted or the pin directory made.
    #[error("cannot prepare the pin directory {0}")]
    PinDir(PathBuf, #[source] io::Error),
    /// The pin directory is not on a bpf filesystem.
    #[error("{0} is not on a bpf filesystem (mount -t bpf bpf DIR)")]
    NotBpffs(PathBuf),
    /// aya could not load the object.
    #[error("cannot load {0}")]
    Object(PathBuf, #[source] Box<EbpfError>),
    /// The object lacks the program.
    #[error("{object} has no program {prog}")]
    NoProgram {
        /// Object file.
        object: PathBuf,
        /// Program name.
        prog: &'static str,
    },
    /// A program operation (load, adopt, attach) failed.
    #[error("{what}")]
    Program {
        /// What was being done.
        what: String,
        /// The aya error.
        #[source]
        error: Box<ProgramError>,
    },
    /// The verifier rejected the program.
    #[error("the kernel refused {prog} from {}: {errno}; verifier: {reason}{}", object.display(), log.as_ref().map(|p| format!(" (full log in {})", p.display())).unwrap_or_default())]
    Verifier {
        /// Program name.
        prog: &'static str,
        /// Object file.
        object: PathBuf,
        /// The syscall's error.
        errno: String,
        /// Last line of the verifier log.
        reason: String,
        /// Where the full log was saved.
        log: Option<PathBuf>,
    },
    /// Pinning failed.
    #[error("cannot pin {0}")]
    Pin(PathBuf, #[source] aya::pin::PinError),
    /// A link pin is live but not on this namespace's interface.
    #[error(
        "{0} is attached to another interface (ifindex {1}), probably in another network namespace sharing this pin directory; give each namespace its own LB_PIN_DIR"
    )]
    ForeignLink(PathBuf, u32),
    /// The attachment is not a bpf_link (netlink fallback), so it cannot be pinned.
    #[error("attaching to {0} gave no bpf_link (netlink attach), which cannot be pinned")]
    NoFdLink(String, #[source] aya::programs::links::LinkError),
    /// Removing pins failed.
    #[error("cannot remove {0}")]
    Remove(PathBuf, #[source] io::Error),
    /// Reading a link pin failed.
    #[error("cannot read link {0}")]
    LinkInfo(PathBuf, #[source] io::Error),
    /// A map write during load failed.
    #[error(transparent)]
    Maps(#[from] MapsError),
    /// `upgrade` with nothing loaded.
    #[error("lb is not loaded under {0} (nothing to upgrade): `lb-ctl load --iface IF`")]
    NotLoaded(PathBuf),
    /// The object file could not be read or parsed.
    #[error("cannot read the maps of {0}: {1}")]
    ObjectMaps(PathBuf, String),
    /// The new object's maps differ from the pinned ones where state lives.
    #[error(
        "cannot upgrade in place: {0}; the state in these maps cannot be adopted (`lb-ctl unload` then `load` starts afresh, dropping connections)"
    )]
    Incompatible(String),
    /// Swapping the program under a link failed.
    #[error("cannot swap lb_xdp under {0}")]
    Swap(PathBuf, #[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The pin directory: `LB_PIN_DIR` or `/sys/fs/bpf/lb`.
pub fn pin_dir() -> PathBuf {
    std::env::var_os("LB_PIN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PIN_DIR))
}

/// Which of the two programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The balancer (`lb_xdp` in lb.bpf.o).
    Balancer,
    /// The decap program for TUN real servers (`lb_decap` in lb-decap.bpf.o).
    Decap,
}

impl Kind {
    fn prog(self) -> &'static str {
        match self {
            Kind::Balancer => PROG_LB,
            Kind::Decap => PROG_DECAP,
        }
    }
    /// Its object file.
    pub fn object(self) -> ObjectFile {
        match self {
            Kind::Balancer => ObjectFile::BALANCER,
            Kind::Decap => ObjectFile::DECAP,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Balancer => "lb",
            Kind::Decap => "lb decap",
        }
    }
    /// Directory of this program's pins.
    pub fn dir(self, pin_dir: &Path) -> PathBuf {
        match self {
            Kind::Balancer => pin_dir.to_path_buf(),
            Kind::Decap => pin_dir.join(DECAP_DIR),
        }
    }
}

/// An eBPF object file the workspace builds, and how [`object_path`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectFile {
    /// The name `cargo xtask build` installs it under in target/release (and an installed
    /// lb-ctl finds it under next to itself).
    pub file: &'static str,
    /// Its bin name in lb-ebpf's own build output.
    pub bin: &'static str,
    /// The environment variable naming the file to use instead of searching (`None`: the
    /// file is always searched for).
    pub env: Option<&'static str>,
}

impl ObjectFile {
    /// The balancer (`lb_xdp`); `LB_BPF_OBJECT` overrides.
    pub const BALANCER: ObjectFile = ObjectFile {
        file: "lb.bpf.o",
        bin: "lb",
        env: Some("LB_BPF_OBJECT"),
    };
    /// The decap program (`lb_decap`); `LB_DECAP_OBJECT` overrides.
    pub const DECAP: ObjectFile = ObjectFile {
        file: "lb-decap.bpf.o",
        bin: "lb-decap",
        env: Some("LB_DECAP_OBJECT"),
    };
}

/// Finds an object file, for lb-ctl, the tests and the bench alike: `explicit`
/// (`--object`), else the file its `env` variable names (set but empty counts as unset),
/// else the **newest** (by modification time; on a tie the first listed) of the candidates
/// that exist: next to the running executable, in `../release` from it, in the workspace's
/// target/release (what `cargo xtask build` installs), and lb-ebpf's own build output.
///
/// Newest, not first found: every candidate is a build of this workspace or an installed
/// copy of one, and a copy must never shadow a later build. With first-found, `lb-ctl load`
/// after a plain `cargo build` in lb-ebpf would load the stale target/release copy while
/// the tests and the bench (which took the newest) loaded the new build. An installed
/// lb-ctl, whose build tree is gone, has only the file next to it. To load one particular
/// file, name it: `--object` or the env variable.
pub fn object_path(obj: ObjectFile, explicit: Option<&Path>) -> Result<PathBuf, LoadError> {
    let not_found = |tried: Vec<PathBuf>| LoadError::ObjectNotFound {
        file: obj.file,
        tried,
    };
    let named = explicit.map(Path::to_path_buf).or_else(|| {
        obj.env
            .and_then(std::env::var_os)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(p) = named {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(not_found(vec![p]))
        };
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        tried.push(dir.join(obj.file));
        tried.push(dir.join("../release").join(obj.file));
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tried.push(ws.join("target/release").join(obj.file));
    tried.push(
        ws.join("lb-ebpf/target/bpfel-unknown-none/release")
            .join(obj.bin),
    );
    match newest(&tried) {
        Some(p) => Ok(p.clone()),
        None => Err(not_found(tried)),
    }
}

/// The most recently modified of the `candidates` that are files; on a tie the first.
fn newest(candidates: &[PathBuf]) -> Option<&PathBuf> {
    let mut best: Option<(std::time::SystemTime, &PathBuf)> = None;
    for p in candidates {
        let Some(t) = p
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
        else {
            continue;
        };
        if best.is_none_or(|(b, _)| t > b) {
            best = Some((t, p));
        }
    }
    best.map(|(_, p)| p)
}

/// The flow cache's size for flow tables of `max_flows` per family: (slot bits per CPU,
/// FLOW_CACHE entries). One part per possible CPU id, sized to the flow tables' share per
/// CPU ([`cache_bits`]); if the CPUs cannot be read, `None`: the object's default
/// (DEFAULT_CACHE_CPUS parts of DEFAULT_CACHE_BITS), where a CPU past it just goes without
/// the cache.
pub fn flow_cache_size(max_flows: u32) -> Option<(u32, u32)> {
    let cpus = aya::util::nr_cpus().ok()? as u32;
    let bits = cache_bits(max_flows, cpus);
    Some((bits, cache_entries(cpus, bits)))
}

/// How to open an object and load its program: pinned under a directory (maps reused by
/// name, the rest pinned, as `lb-ctl load`) or not pinned at all (fresh maps, as the packet
/// tests), the flow tables' size and the flow cache's. Attaching is the caller's: `lb-ctl
/// load` attaches the loaded program to its `--iface`s, the tests never attach.
#[derive(Clone, Debug)]
pub struct Loader {
    kind: Kind,
    object: PathBuf,
    pin_dir: Option<PathBuf>,
    max_flows: u32,
    cache_bits: Option<u32>,
}

impl Loader {
    /// The object of `kind` at `object`, unpinned, flow tables of DEFAULT_MAX_FLOWS, the
    /// flow cache sized from them as `lb-ctl load` sizes it.
    pub fn new(kind: Kind, object: &Path) -> Loader {
        Loader {
            kind,
            object: object.to_path_buf(),
            pin_dir: None,
            max_flows: DEFAULT_MAX_FLOWS,
            cache_bits: None,
        }
    }

    /// The balancer object at `object` (see [`Loader::new`]).
    pub fn balancer(object: &Path) -> Loader {
        Loader::new(Kind::Balancer, object)
    }

    /// Pins the maps under `dir` (reusing those already pinned there); unpinned without.
    pub fn pin_dir(mut self, dir: &Path) -> Loader {
        self.pin_dir = Some(dir.to_path_buf());
        self
    }

    /// Capacity of each family's FLOWS / NAT_REV (`--max-flows`); the flow cache follows it
    /// unless [`Loader::cache_bits`] fixes it.
    pub fn max_flows(mut self, n: u32) -> Loader {
        self.max_flows = n;
        self
    }

    /// Fixes the flow cache's slot bits per CPU (the `FLOW_CACHE_BITS` .rodata global and
    /// FLOW_CACHE's size with it) instead of deriving them from the flow tables.
    pub fn cache_bits(mut self, bits: u32) -> Loader {
        self.cache_bits = Some(bits);
        self
    }

    /// The object file.
    pub fn object(&self) -> &Path {
        &self.object
    }

    /// The flow cache this loader gives the balancer: (bits, FLOW_CACHE entries), `None`
    /// for the object's default.
    pub fn flow_cache(&self) -> Option<(u32, u32)> {
        match self.cache_bits {
            Some(bits) => {
                let cpus = aya::util::nr_cpus().ok()? as u32;
                Some((bits, cache_entries(cpus, bits)))
            }
            None => flow_cache_size(self.max_flows),
        }
    }

    /// Opens the object with the options: maps sized (and pinned, when pinned), the
    /// program not yet loaded into the kernel.
    pub fn open(&self) -> Result<Ebpf, LoadError> {
        let mut loader = EbpfLoader::new();
        let cache = self.flow_cache();
        if self.kind == Kind::Balancer {
            // Per family: each of FLOWS4 and FLOWS6 holds up to max_flows flows.
            for name in [MAP_FLOWS4, MAP_FLOWS6, MAP_NAT_REV4, MAP_NAT_REV6] {
                loader.map_max_entries(name, self.max_flows);
            }
            if let Some((bits, entries)) = &cache {
                loader.override_global(GLOBAL_FLOW_CACHE_BITS, bits, true);
                loader.map_max_entries(MAP_FLOW_CACHE, *entries);
            }
        }
        // Every map of the object (not only the known ones: an upgrade must find REAL_CONNS,
        // CLOCK, PERSIST... as they are): pinned by an earlier load, it is reused; the rest
        // are created and pinned below.
        let names = match &self.pin_dir {
            Some(_) => object_map_names(&self.object)?,
            None => Vec::new(),
        };
        if let Some(dir) = &self.pin_dir {
            for name in &names {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let obj = &self.object;
        let ebpf = loader
            .load_file(obj)
            .map_err(|e| LoadError::Object(obj.clone(), Box::new(e)))?;
        if let Some(dir) = &self.pin_dir {
            // Maps the object has beyond the known ones (not the .rodata/.bss/.data
            // sections, which belong to the program) are pinned too.
            for (name, map) in ebpf.maps() {
                let path = dir.join(name);
                if name.starts_with('.') || path.exists() {
                    continue;
                }
                map.pin(&path)
                    .map_err(|e| LoadError::Pin(path.clone(), e))?;
            }
        }
        Ok(ebpf)
    }

    /// [`Loader::open`], then loads the program into the kernel (a verifier rejection is
    /// [`LoadError::Verifier`], its log saved to a file). The program is not pinned.
    pub fn load(&self) -> Result<Ebpf, LoadError> {
        let mut ebpf = self.open()?;
        let (kind, obj) = (self.kind, &self.object);
        xdp_mut(&mut ebpf, kind, obj)?
            .load()
            .map_err(|e| refused(kind, obj, e))?;
        Ok(ebpf)
    }
}

/// The object's program of `kind`, as XDP.
fn xdp_mut<'a>(ebpf: &'a mut Ebpf, kind: Kind, obj: &Path) -> Result<&'a mut Xdp, LoadError> {
    ebpf.program_mut(kind.prog())
        .ok_or(LoadError::NoProgram {
            object: obj.to_path_buf(),
            prog: kind.prog(),
        })?
        .try_into()
        .map_err(prog_err(format!(
            "{} in {} is not an XDP program",
            kind.prog(),
            obj.display()
        )))
}

/// Mounts bpffs on /sys/fs/bpf if needed and creates `dir` on it.
fn prepare_dir(dir: &Path) -> Result<(), LoadError> {
    let root = Path::new(BPFFS_ROOT);
    if dir.starts_with(root) && !sys::is_bpffs(root) {
        sys::mount_bpffs(root).map_err(|e| LoadError::PinDir(root.to_path_buf(), e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| LoadError::PinDir(dir.to_path_buf(), e))?;
    if !sys::is_bpffs(dir) {
        return Err(LoadError::NotBpffs(dir.to_path_buf()));
    }
    Ok(())
}

fn prog_err(what: impl Into<String>) -> impl FnOnce(ProgramError) -> LoadError {
    let what = what.into();
    move |error| LoadError::Program {
        what,
        error: Box::new(error),
    }
}

/// Loads the program of `kind` and pins it and its maps under `dir`, or adopts the pinned
/// one. Returns the program and whether it was adopted.
fn load_or_adopt(
    kind: Kind,
    dir: &Path,
    object: Option<&Path>,
    max_flows: Option<u32>,
    notes: &mut Vec<String>,
) -> Result<Xdp, LoadError> {
    let prog_pin = dir.join(kind.prog());
    if prog_pin.exists() {
        if let (Kind::Balancer, Some(n)) = (kind, max_flows) {
            check_flows_size(dir, n, notes)?;
        }
        if kind == Kind::Balancer && !dir.join(PROG_OPS).exists() {
            // Adopted from a load that stopped before pinning lb_ops: load it beside.
            let obj = object_path(kind.object(), object)?;
            let mut ebpf = Loader::new(kind, &obj).pin_dir(dir).open()?;
            pin_ops(&mut ebpf, dir, &obj)?;
        }
        return Xdp::from_pin(&prog_pin, XdpAttachType::Interface).map_err(prog_err(format!(
            "cannot adopt the pinned program {}",
            prog_pin.display()
        )));
    }
    let obj = object_path(kind.object(), object)?;
    if kind == Kind::Balancer
        && let Some(n) = max_flows
    {
        check_flows_size(dir, n, notes)?;
    }
    let mut loader = Loader::new(kind, &obj).pin_dir(dir);
    if let Some(n) = max_flows {
        loader = loader.max_flows(n);
    }
    if kind == Kind::Balancer {
        replace_old_clock(dir, notes)?;
    }
    let mut ebpf = loader.load()?;
    if kind == Kind::Balancer {
        pin_ops(&mut ebpf, dir, &obj)?;
    }
    xdp_mut(&mut ebpf, kind, &obj)?
        .pin(&prog_pin)
        .map_err(|e| LoadError::Pin(prog_pin.clone(), e))?;
    notes.push(format!(
        "{}: loaded {} from {}",
        kind.name(),
        kind.prog(),
        obj.display()
    ));
    drop(ebpf);
    Xdp::from_pin(&prog_pin, XdpAttachType::Interface).map_err(prog_err(format!(
        "cannot open the pinned program {}",
        prog_pin.display()
    )))
}

/// Loads `lb_ops` (the requests lb-ctl makes of the kernel, lb-common `ops`) from the
/// balancer's opened object and pins it beside `lb_xdp`.
fn pin_ops(ebpf: &mut Ebpf, dir: &Path, obj: &Path) -> Result<(), LoadError> {
    let pin = dir.join(PROG_OPS);
    if pin.exists() {
        remove_file(&pin)?;
    }
    let ops: &mut Xdp = ebpf
        .program_mut(PROG_OPS)
        .ok_or(LoadError::NoProgram {
            object: obj.to_path_buf(),
            prog: PROG_OPS,
        })?
        .try_into()
        .map_err(prog_err(format!(
            "{PROG_OPS} in {} is not an XDP program",
            obj.display()
        )))?;
    ops.load()
        .map_err(prog_err(format!("cannot load {PROG_OPS}")))?;
    ops.pin(&pin).map_err(|e| LoadError::Pin(pin.clone(), e))
}

/// A CLOCK pinned by an lb older than the kernel clock (a bare u32 of seconds) cannot
/// serve the new program: its pin is replaced by a fresh CLOCK (time then comes from the
/// kernel; flows keep their stamps, which were CLOCK_MONOTONIC seconds, as the new clock's
/// are).
fn replace_old_clock(dir: &Path, notes: &mut Vec<String>) -> Result<(), LoadError> {
    let want = size_of::<lb_common::clock::Clock>() as u32;
    if let Some(size) = maps::pinned_size(dir, MAP_CLOCK)?
        && size.value != want
    {
        remove_file(&dir.join(MAP_CLOCK))?;
        notes.push(format!(
            "note: {MAP_CLOCK} was pinned by an older lb ({} bytes); replaced by the kernel clock",
            size.value
        ));
    }
    Ok(())
}

/// Turns a failed program load into a one-line error; a verifier rejection keeps its
/// last line in the message and its whole log in a file.
fn refused(kind: Kind, obj: &Path, e: ProgramError) -> LoadError {
    let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    else {
        return prog_err(format!(
            "the kernel refused {} from {}",
            kind.prog(),
            obj.display()
        ))(e);
    };
    let log = verifier_log.to_string();
    let reason = verifier_reason(&log).to_string();
    let path = std::env::temp_dir().join(format!("lb-ctl-verifier-{}.log", kind.prog()));
    let saved = std::fs::write(&path, &log).is_ok();
    LoadError::Verifier {
        prog: kind.prog(),
        object: obj.to_path_buf(),
        errno: io_error.to_string(),
        reason,
        log: saved.then_some(path),
    }
}

/// Says so when a flow table is already pinned with another size than `--max-flows` asks
/// for.
fn check_flows_size(dir: &Path, n: u32, notes: &mut Vec<String>) -> Result<(), LoadError> {
    for name in [MAP_FLOWS4, MAP_FLOWS6] {
        let Some(have) = maps::pinned_size(dir, name)?.map(|s| s.entries) else {
            continue;
        };
        if have != n {
            notes.push(format!(
                "note: {name} is already pinned with {have} entries; --max-flows {n} takes effect after `lb-ctl unload`"
            ));
        }
    }
    Ok(())
}

/// Whether XDP program `prog_id` is attached to `iface` in this network namespace (asked
/// by rtnetlink, which answers for the caller's namespace).
fn iface_has_prog(iface: &str, prog_id: u32) -> bool {
    let ifindex = sys::if_index(iface);
    ifindex != 0 && crate::rtnl::link_get(ifindex).is_ok_and(|l| l.xdp_progs.contains(&prog_id))
}

/// Attaches `prog` to `iface` with a link pinned as `<dir>/link_<iface>`, unless it already
/// is. Returns a line for the operator.
fn attach(
    kind: Kind,
    prog: &mut Xdp,
    dir: &Path,
    iface: &str,
    mode: XdpMode,
) -> Result<String, LoadError> {
    let ifindex = sys::if_index(iface);
    if ifindex == 0 {
        return Err(LoadError::NoInterface(iface.to_string()));
    }
    let prog_id = prog
        .info()
        .map_err(prog_err("cannot read the program's id"))?
        .id();
    let link_pin = dir.join(format!("link_{iface}"));
    if link_pin.exists() {
        let info = sys::pinned_link_info(&link_pin)
            .map_err(|e| LoadError::LinkInfo(link_pin.clone(), e))?;
        if info.ifindex == 0 {
            // The interface went away and took the attachment with it: a stale pin.
            std::fs::remove_file(&link_pin).map_err(|e| LoadError::Remove(link_pin.clone(), e))?;
        } else if info.ifindex == ifindex && iface_has_prog(iface, info.prog_id) {
            return Ok(format!("{} already attached to {iface}", kind.name()));
        } else {
            return Err(LoadError::ForeignLink(link_pin, info.ifindex));
        }
    }
    if iface_has_prog(iface, prog_id) {
        return Ok(format!("{} already attached to {iface}", kind.name()));
    }
    let what = format!(
        "cannot attach {} to {iface} (another XDP program on it? `ip link show dev {iface}`)",
        kind.prog()
    );
    let id = prog
        .attach_to_if_index(ifindex, mode)
        .map_err(prog_err(what.clone()))?;
    let link = prog.take_link(id).map_err(prog_err(what.clone()))?;
    let fd_link = FdLink::try_from(link).map_err(|e| LoadError::NoFdLink(iface.to_string(), e))?;
    fd_link
        .pin(&link_pin)
        .map_err(|e| LoadError::Pin(link_pin.clone(), e))?;
    let how = if mode == XdpMode::Skb {
        "generic/skb"
    } else {
        "default"
    };
    Ok(format!(
        "{} attached to {iface} (ifindex {ifindex}, {how} mode)",
        kind.name()
    ))
}

/// What `lb-ctl load` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct LoadRequest {
    /// Interfaces to attach to.
    pub ifaces: Vec<String>,
    /// Generic (skb) XDP instead of the driver's.
    pub skb: bool,
    /// Capacity of each family's FLOWS / NAT_REV (default DEFAULT_MAX_FLOWS).
    pub max_flows: Option<u32>,
    /// Object file (`--object`).
    pub object: Option<PathBuf>,
}

fn check_ifaces(ifaces: &[String]) -> Result<Vec<u32>, LoadError> {
    ifaces
        .iter()
        .map(|i| match sys::if_index(i) {
            0 => Err(LoadError::NoInterface(i.clone())),
            n => Ok(n),
        })
        .collect()
}

/// Whether a pinned map of kernel type `pinned` can serve a program that declares type
/// `object`: the same type, or a hash for an LRU hash and back (same operations; a table
/// pinned by an lb from before the plain-hash tables keeps evicting until `unload`).
fn same_kind(pinned: u32, object: u32) -> bool {
    const HASH: u32 = 1;
    const LRU_HASH: u32 = 9;
    pinned == object || matches!((pinned, object), (HASH, LRU_HASH) | (LRU_HASH, HASH))
}

/// The names of the object's maps (not the `.rodata`/`.bss`/`.data` sections).
fn object_map_names(obj: &Path) -> Result<Vec<String>, LoadError> {
    let bytes =
        std::fs::read(obj).map_err(|e| LoadError::ObjectMaps(obj.to_path_buf(), e.to_string()))?;
    let parsed = aya_obj::Object::parse(&bytes)
        .map_err(|e| LoadError::ObjectMaps(obj.to_path_buf(), e.to_string()))?;
    let mut names: Vec<String> = parsed
        .maps
        .into_keys()
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The pinned maps the object at `obj` would reuse with another key or value size, or
/// another map type (CLOCK excepted: it holds no state and is replaced), as "NAME (key K →
/// K', value V → V')". Sizes and types are what the kernel can tell; a field whose meaning
/// changed at the same size is the build's to declare (none has, so far).
pub fn incompatible_maps(dir: &Path, obj: &Path) -> Result<Vec<String>, LoadError> {
    let bytes =
        std::fs::read(obj).map_err(|e| LoadError::ObjectMaps(obj.to_path_buf(), e.to_string()))?;
    let parsed = aya_obj::Object::parse(&bytes)
        .map_err(|e| LoadError::ObjectMaps(obj.to_path_buf(), e.to_string()))?;
    let mut out = Vec::new();
    let mut names: Vec<&String> = parsed.maps.keys().filter(|n| !n.starts_with('.')).collect();
    names.sort();
    for name in names {
        let m = &parsed.maps[name];
        if name == MAP_CLOCK {
            continue;
        }
        let Some((kind, pinned)) = maps::pinned_layout(dir, name)? else {
            continue;
        };
        if pinned.key != m.key_size() || pinned.value != m.value_size() {
            out.push(format!(
                "{name} (key {} → {}, value {} → {} bytes)",
                pinned.key,
                m.key_size(),
                pinned.value,
                m.value_size()
            ));
        } else if !same_kind(kind, m.map_type()) {
            out.push(format!("{name} (map type {kind} → {})", m.map_type()));
        }
    }
    Ok(out)
}

/// `lb-ctl upgrade`: replaces the running lb_xdp by the object's (a new build) on every
/// interface it is attached to, keeping every pinned map, so services, reals, flows and
/// counters carry on: the new program is loaded against the pinned maps (new maps of
/// the object are created), `lb_ops` replaced, the clock started if its map was new, and
/// then each link's program swapped atomically (`bpf_link_update`: no packet sees no
/// program). Refused, with nothing changed, when a pinned map's layout differs from the
/// object's ([`incompatible_maps`]). Returns lines for the operator.
pub fn upgrade(pin_dir: &Path, object: Option<&Path>) -> Result<Vec<String>, LoadError> {
    use aya::programs::links::{FdLink, PinnedLink};
    use aya::programs::xdp::XdpLink;
    let prog_pin = pin_dir.join(PROG_LB);
    if !prog_pin.exists() {
        return Err(LoadError::NotLoaded(pin_dir.to_path_buf()));
    }
    let _lock = sys::lock_dir(pin_dir).map_err(|e| LoadError::PinDir(pin_dir.to_path_buf(), e))?;
    let obj = object_path(Kind::Balancer.object(), object)?;
    let bad = incompatible_maps(pin_dir, &obj)?;
    if !bad.is_empty() {
        return Err(LoadError::Incompatible(bad.join(", ")));
    }
    let mut out = Vec::new();
    replace_old_clock(pin_dir, &mut out)?;
    // The flow cache's size (a .rodata global) must match the pinned FLOW_CACHE: size the
    // load from the pinned flow table, as `load --max-flows` did.
    let mut loader = Loader::new(Kind::Balancer, &obj).pin_dir(pin_dir);
    if let Some(size) = maps::pinned_size(pin_dir, MAP_FLOWS4)? {
        loader = loader.max_flows(size.entries);
    }
    let mut ebpf = loader.load()?;
    pin_ops(&mut ebpf, pin_dir, &obj)?;
    if let Some(line) = maps::clock::start(pin_dir)? {
        out.push(line);
    }
    let prog = xdp_mut(&mut ebpf, Kind::Balancer, &obj)?;
    for (iface, link_pin) in link_pins(pin_dir) {
        let swap =
            |e: Box<dyn std::error::Error + Send + Sync>| LoadError::Swap(link_pin.clone(), e);
        let fd: FdLink = PinnedLink::from_pin(&link_pin)
            .map_err(|e| swap(Box::new(e)))?
            .into();
        let link = XdpLink::try_from(fd).map_err(|e| swap(Box::new(e)))?;
        prog.attach_to_link(link).map_err(|e| swap(Box::new(e)))?;
        out.push(format!("lb upgraded on {iface} (connections kept)"));
    }
    remove_file(&prog_pin)?;
    prog.pin(&prog_pin)
        .map_err(|e| LoadError::Pin(prog_pin.clone(), e))?;
    out.push(format!("lb: {PROG_LB} is now {}", obj.display()));
    Ok(out)
}

/// `lb-ctl load`: load (or adopt) lb_xdp, pin it and its maps, attach it to every
/// interface and make each a redirect target. Returns lines for the operator.
pub fn load(pin_dir: &Path, req: &LoadRequest) -> Result<Vec<String>, LoadError> {
    let ifindexes = check_ifaces(&req.ifaces)?;
    prepare_dir(pin_dir)?;
    let _lock = sys::lock_dir(pin_dir).map_err(|e| LoadError::PinDir(pin_dir.to_path_buf(), e))?;
    let mut out = Vec::new();
    let mut prog = load_or_adopt(
        Kind::Balancer,
        pin_dir,
        req.object.as_deref(),
        req.max_flows,
        &mut out,
    )?;
    let mode = if req.skb {
        XdpMode::Skb
    } else {
        XdpMode::Default
    };
    // Time runs before the first packet is stamped.
    if let Some(line) = maps::clock::start(pin_dir)? {
        out.push(line);
    }
    for iface in &req.ifaces {
        out.push(attach(Kind::Balancer, &mut prog, pin_dir, iface, mode)?);
    }
    maps::add_tx_ports(pin_dir, &ifindexes)?;
    Ok(out)
}

fn link_pins(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("link_")
                .map(|i| (i.to_string(), e.path()))
        })
        .collect();
    v.sort();
    v
}

fn remove_file(p: &Path) -> Result<(), LoadError> {
    std::fs::remove_file(p).map_err(|e| LoadError::Remove(p.to_path_buf(), e))
}

/// How long [`detach`] waits for the kernel to release a link.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Removes the link pin of `iface`, which detaches the program, and waits (at most
/// [`DETACH_WAIT`]) until the interface no longer runs it: the kernel frees a link whose
/// last reference was a pin from a workqueue (`bpf_link_put` defers to
/// `bpf_link_put_deferred`), so without the wait `unload` could report a detachment that
/// `ip link` does not show yet. Returns the line for the operator, `what` naming the
/// program: detached, or (past the wait) that the kernel is still releasing it.
fn detach(what: &str, iface: &str, pin: &Path) -> Result<String, LoadError> {
    let prog_id = sys::pinned_link_info(pin).ok().map(|i| i.prog_id);
    remove_file(pin)?;
    let Some(prog_id) = prog_id else {
        return Ok(format!("{what} detached from {iface}"));
    };
    let deadline = std::time::Instant::now() + DETACH_WAIT;
    while iface_has_prog(iface, prog_id) {
        if std::time::Instant::now() >= deadline {
            return Ok(format!(
                "{what} unpinned from {iface}; the kernel still runs it there after {} s \
                 (it detaches when the kernel releases the link; check with `ip link show {iface}`)",
                DETACH_WAIT.as_secs()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(format!("{what} detached from {iface}"))
}

fn remove_dir_all(p: &Path) -> Result<(), LoadError> {
    std::fs::remove_dir_all(p).map_err(|e| LoadError::Remove(p.to_path_buf(), e))
}

/// `lb-ctl unload`: detach from the given interfaces; with none, detach everywhere and
/// remove the whole pin directory (program, maps, decap). Returns lines for the operator.
pub fn unload(pin_dir: &Path, ifaces: &[String]) -> Result<Vec<String>, LoadError> {
    let mut out = Vec::new();
    if !pin_dir.exists() {
        out.push(format!("lb is not loaded (no {})", pin_dir.display()));
        return Ok(out);
    }
    if ifaces.is_empty() {
        for (iface, pin) in link_pins(pin_dir) {
            out.push(detach("lb", &iface, &pin)?);
        }
        remove_dir_all(pin_dir)?;
        out.push(format!("removed {}", pin_dir.display()));
        return Ok(out);
    }
    for iface in ifaces {
        let pin = pin_dir.join(format!("link_{iface}"));
        if pin.exists() {
            out.push(detach("lb", iface, &pin)?);
        } else {
            out.push(format!("lb is not attached to {iface}"));
        }
    }
    Ok(out)
}

/// `lb-ctl decap attach`: load (or adopt) lb_decap under `<pin dir>/decap` and attach it.
pub fn decap_attach(
    pin_dir: &Path,
    ifaces: &[String],
    skb: bool,
    object: Option<&Path>,
) -> Result<Vec<String>, LoadError> {
    check_ifaces(ifaces)?;
    let dir = Kind::Decap.dir(pin_dir);
    prepare_dir(&dir)?;
    let _lock = sys::lock_dir(&dir).map_err(|e| LoadError::PinDir(dir.clone(), e))?;
    let mut out = Vec::new();
    let mut prog = load_or_adopt(Kind::Decap, &dir, object, None, &mut out)?;
    let mode = if skb { XdpMode::Skb } else { XdpMode::Default };
    for iface in ifaces {
        out.push(attach(Kind::Decap, &mut prog, &dir, iface, mode)?);
    }
    Ok(out)
}

/// `lb-ctl decap detach`: detach lb_decap; once no interface is left, its pins go too (and
/// the pin directory, if nothing else is in it).
pub fn decap_detach(pin_dir: &Path, ifaces: &[String]) -> Result<Vec<String>, LoadError> {
    let dir = Kind::Decap.dir(pin_dir);
    let mut out = Vec::new();
    for iface in ifaces {
        let pin = dir.join(format!("link_{iface}"));
        if pin.exists() {
            out.push(detach("lb decap", iface, &pin)?);
        } else {
            out.push(format!("lb decap is not attached to {iface}"));
        }
    }
    if dir.exists() && link_pins(&dir).is_empty() {
        remove_dir_all(&dir)?;
        let empty = std::fs::read_dir(pin_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty {
            std::fs::remove_dir(pin_dir)
                .map_err(|e| LoadError::Remove(pin_dir.to_path_buf(), e))?;
        }
    }
    Ok(out)
}

/// The one line of a verifier log that says why a program was refused. The log ends with
/// statistics ("verification time", "processed N insns", "stack depth"); the reason is the
/// last line before them.
pub fn verifier_reason(log: &str) -> &str {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("verification time")
                && !l.starts_with("processed ")
                && !l.starts_with("stack depth")
        })
        .unwrap_or("no verifier log")
}

#[cfg(test)]
mod tests {
    use super::{Loader, flow_cache_size, newest, verifier_reason};
    use lb_common::consts::DEFAULT_MAX_FLOWS;
    use lb_common::flow_cache::{cache_bits, cache_entries};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    /// The object search takes the newest file, the first listed on a tie, and skips
    /// what is missing or not a file.
    #[test]
    fn the_newest_object_wins() {
        let dir = std::env::temp_dir().join(format!("lb-ctl-newest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a-directory")).unwrap();
        let at = |name: &str, secs: u64| {
            let p = dir.join(name);
            let f = std::fs::File::create(&p).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
            p
        };
        let (old, new, same) = (at("old", 1_000), at("new", 2_000), at("same", 2_000));
        let (missing, sub) = (dir.join("missing"), dir.join("a-directory"));
        let cases = [
            (vec![old.clone(), new.clone()], Some(&new)),
            (vec![new.clone(), old.clone()], Some(&new)),
            (vec![new.clone(), same.clone()], Some(&new)),
            (vec![same.clone(), new.clone()], Some(&same)),
            (vec![missing.clone(), sub.clone(), old.clone()], Some(&old)),
            (vec![missing.clone(), sub.clone()], None),
        ];
        for (candidates, want) in &cases {
            assert_eq!(newest(candidates), *want, "{candidates:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_loader_sizes_the_flow_cache_as_lb_ctl_load() {
        let cpus = aya::util::nr_cpus().expect("possible CPUs") as u32;
        let obj = Path::new("lb.bpf.o");
        for (loader, want_bits) in [
            (Loader::balancer(obj), cache_bits(DEFAULT_MAX_FLOWS, cpus)),
            (
                Loader::balancer(obj).max_flows(1 << 17),
                cache_bits(1 << 17, cpus),
            ),
            (Loader::balancer(obj).max_flows(1 << 17).cache_bits(12), 12),
        ] {
            assert_eq!(
                loader.flow_cache(),
                Some((want_bits, cache_entries(cpus, want_bits)))
            );
        }
        assert_eq!(
            Loader::balancer(obj).flow_cache(),
            flow_cache_size(DEFAULT_MAX_FLOWS)
        );
    }

    #[test]
    fn verifier_reason_is_the_last_line_before_the_statistics() {
        let log = "0: (61) r2 = *(u32 *)(r1 +4)\n\
                   1: (71) r3 = *(u8 *)(r2 +0)\n\
                   invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)\n\
                   processed 2 insns (limit 1000000) max_states_per_insn 0\n\
                   stack depth 0\n\
                   verification time 12 usec\n";
        assert_eq!(
            verifier_reason(log),
            "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)"
        );
        assert_eq!(verifier_reason(""), "no verifier log");
    }
}
