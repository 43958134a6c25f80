//! The service model: what an operator configures (virtual services and their real
//! servers), the snapshot of the pinned maps a change is checked against, and the map writes
//! ([`Op`]) a change turns into.
//!
//! Every lb-ctl run is a fresh process, as ipvsadm is: the kernel maps are the only state.
//! A command reads a [`Snapshot`], a pure planner ([`crate::ipvs::service`], [`crate::ipvs::real`])
//! validates the whole change against it and returns the list of writes in the order they
//! must happen, and [`crate::maps::Maps::apply`] performs them. A refused command writes
//! nothing.

use lb_common::addr::{convert, family};
use lb_common::consts::proto;
use lb_common::{
    Be16, ForwardMode, Real, RealFlags, SchedKind, Service, ServiceKey, TrashRecord, VipFlags,
    VipKey,
};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a service (ipvsadm `-t` / `-u`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (`-t`).
    Tcp,
    /// UDP (`-u`).
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => proto::TCP,
            Proto::Udp => proto::UDP,
        }
    }
    /// From an IP protocol number.
    pub const fn from_number(n: u8) -> Option<Proto> {
        match n {
            proto::TCP => Some(Proto::Tcp),
            proto::UDP => Some(Proto::Udp),
            _ => None,
        }
    }
    /// ipvsadm's listing word ("TCP", "UDP").
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
    /// ipvsadm's option (`-t`, `-u`).
    pub const fn flag(self) -> &'static str {
        match self {
            Proto::Tcp => "-t",
            Proto::Udp => "-u",
        }
    }
}

/// An address and port, printed as ipvsadm does: `198.18.0.1:80`, `[2001:db8::1]:80`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// Port (host order); 0 = all ports.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// Identity of a virtual service: protocol, VIP and port (0 = all ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceAddr {
    /// TCP or UDP.
    pub proto: Proto,
    /// VIP and port.
    pub vip: Endpoint,
}

impl ServiceAddr {
    /// The SERVICES map key.
    pub fn key(&self) -> ServiceKey {
        let (addr, fam) = convert::to_raw(self.vip.ip);
        ServiceKey {
            addr,
            port: Be16::from_host(self.vip.port),
            proto: self.proto.number(),
            family: fam,
        }
    }
    /// Back from a SERVICES key; `None` for a key lb-ctl would never write.
    pub fn from_key(k: &ServiceKey) -> Option<ServiceAddr> {
        if k.family != family::V4 && k.family != family::V6 {
            return None;
        }
        Some(ServiceAddr {
            proto: Proto::from_number(k.proto)?,
            vip: Endpoint {
                ip: convert::from_raw(&k.addr, k.family),
                port: k.port.to_host(),
            },
        })
    }
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto.name(), self.vip)
    }
}

/// JSON: `{"address": "198.18.0.1", "port": 80}` (docs/json.md).
impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Endpoint", 2)?;
        st.serialize_field("address", &self.ip)?;
        st.serialize_field("port", &self.port)?;
        st.end()
    }
}

/// JSON: `{"protocol": "TCP", "address": "198.18.0.1", "port": 80}` (docs/json.md).
impl Serialize for ServiceAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ServiceAddr", 3)?;
        st.serialize_field("protocol", self.proto.name())?;
        st.serialize_field("address", &self.vip.ip)?;
        st.serialize_field("port", &self.vip.port)?;
        st.end()
    }
}

/// One scheduler flag of ipvsadm's `-b`: the one table the parser and the listings read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedFlag {
    /// The scheduler it belongs to.
    pub sched: SchedKind,
    /// Its name (`-b sh-port`, and in listings).
    pub name: &'static str,
    /// ipvsadm's generic alias for the same flag of this scheduler (`flag-1`, `flag-2`).
    pub alias: &'static str,
    /// The [`VipFlags`] bit.
    pub bit: u32,
}

/// Every scheduler flag lb knows, in listing order (IPVS's `IP_VS_SVC_F_SCHED_*` names).
pub const SCHED_FLAGS: [SchedFlag; 4] = [
    SchedFlag {
        sched: SchedKind::Sh,
        name: "sh-fallback",
        alias: "flag-1",
        bit: VipFlags::SH_FALLBACK,
    },
    SchedFlag {
        sched: SchedKind::Sh,
        name: "sh-port",
        alias: "flag-2",
        bit: VipFlags::SH_PORT,
    },
    SchedFlag {
        sched: SchedKind::Maglev,
        name: "mh-fallback",
        alias: "flag-1",
        bit: VipFlags::MH_FALLBACK,
    },
    SchedFlag {
        sched: SchedKind::Maglev,
        name: "mh-port",
        alias: "flag-2",
        bit: VipFlags::HASH_PORTS,
    },
];

/// The names of a service's scheduler flags that are set, in [`SCHED_FLAGS`] order.
pub fn sched_flag_names(sched: Option<SchedKind>, f: VipFlags) -> Vec<&'static str> {
    SCHED_FLAGS
        .iter()
        .filter(|e| Some(e.sched) == sched && f.has(e.bit))
        .map(|e| e.name)
        .collect()
}

/// Every scheduler's name in ipvsadm's order, space-separated (help and error texts).
pub fn sched_names() -> String {
    SchedKind::ALL.map(SchedKind::name).join(" ")
}

/// The VIPS key of an address.
pub(crate) fn vip_key(ip: IpAddr) -> VipKey {
    let (addr, fam) = convert::to_raw(ip);
    VipKey {
        addr,
        family: fam,
        _pad: [0; 3],
    }
}

/// A service as `-A` / `-E` give it. `S` is how the scheduler is given: typed
/// ([`SchedKind`], the default: what a config file or a daemon builds), or by the name an
/// ipvsadm command line typed (`String`, see [`SchedChoice`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec<S = SchedKind> {
    /// Which service.
    pub addr: ServiceAddr,
    /// Scheduler (ipvsadm `-s`, default `wlc` as ipvsadm).
    pub sched: S,
    /// Scheduler flags (`-b`), already resolved for the scheduler: [`lb_common::VipFlags`] bits
    /// `HASH_PORTS`, `MH_FALLBACK`, `SH_FALLBACK`, `SH_PORT`.
    pub sched_flags: u32,
    /// `-p [TIMEOUT]`: persistence timeout in seconds.
    pub persistent: Option<u32>,
    /// `-M NETMASK` (IPv4 mask, or an IPv6 prefix given as a mask address).
    pub netmask: Option<IpAddr>,
    /// `-o`: one-packet scheduling.
    pub one_packet: bool,
    /// lb's `--persist-group -t|-u VIP:PORT`: share that service's persistence templates
    /// (an IPVS firewall-mark service spanning several ports, e.g. http + https).
    pub persist_with: Option<ServiceAddr>,
    /// lb's `--mh-size PRIME`: Maglev table size (default 65537; kept by `-E` without it).
    pub mh_size: Option<u32>,
}

impl ServiceSpec {
    /// A spec with ipvsadm's defaults (wlc, no flags, not persistent).
    pub fn new(addr: ServiceAddr) -> ServiceSpec {
        ServiceSpec::with_sched(addr, SchedKind::Wlc)
    }
}

impl<S> ServiceSpec<S> {
    /// A spec with scheduler `sched` and ipvsadm's other defaults (no flags, not
    /// persistent).
    pub fn with_sched(addr: ServiceAddr, sched: S) -> ServiceSpec<S> {
        ServiceSpec {
            addr,
            sched,
            sched_flags: 0,
            persistent: None,
            netmask: None,
            one_packet: false,
            persist_with: None,
            mh_size: None,
        }
    }
}

/// How a [`ServiceSpec`] gives its scheduler. A name is resolved by the planner where it
/// checks the scheduler, so a bad name is refused in the same order, with the same
/// message, as IPVS refuses it ("Scheduler not found").
pub trait SchedChoice {
    /// The scheduler, or why there is none.
    fn kind(&self) -> Result<SchedKind, ModelError>;
}

impl SchedChoice for SchedKind {
    fn kind(&self) -> Result<SchedKind, ModelError> {
        Ok(*self)
    }
}

impl SchedChoice for String {
    fn kind(&self) -> Result<SchedKind, ModelError> {
        SchedKind::from_name(self).ok_or_else(|| ModelError::UnsupportedScheduler(self.clone()))
    }
}

/// A real server as `-a` / `-e` give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealSpec {
    /// The service it belongs to.
    pub service: ServiceAddr,
    /// Real server address.
    pub addr: IpAddr,
    /// Port as given; `None` = the service's port.
    pub port: Option<u16>,
    /// How packets reach it.
    pub mode: ForwardMode,
    /// Weight as given (checked to be 0..=65535 before any write).
    pub weight: i64,
    /// Upper connection threshold (`-x`, 0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`).
    pub l_threshold: u32,
}

/// A real server as `-d` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealRef {
    /// The service it belongs to.
    pub service: ServiceAddr,
    /// Real server address.
    pub addr: IpAddr,
    /// Port as given; `None` = the service's port.
    pub port: Option<u16>,
}

/// What the pinned maps hold, read at the start of a command.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every SERVICES entry.
    pub services: Vec<(ServiceKey, Service)>,
    /// Every REALS slot that was ever written (not all-zero), active or not.
    pub reals: Vec<(u32, Real)>,
    /// Each service's reals list as published in SCHED_TABLE (id → real ids, IPVS order).
    pub orders: BTreeMap<u32, Vec<u32>>,
    /// The REAL_TRASH records (real id → record; empty when the pinned object has no
    /// REAL_TRASH). A record counts only while its REALS slot is inactive.
    pub trashed: BTreeMap<u32, Trashed>,
}

impl Snapshot {
    /// The service stored under `addr`.
    pub fn service(&self, addr: &ServiceAddr) -> Option<Service> {
        let key = addr.key();
        self.services
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| *s)
    }

    /// Active reals of the service with id `svc_id`.
    pub fn reals_of(&self, svc_id: u32) -> impl Iterator<Item = &(u32, Real)> {
        self.reals
            .iter()
            .filter(move |(_, r)| r.flags.has(RealFlags::ACTIVE) && r.svc_id == svc_id)
    }

    /// Active reals of service `svc_id` in IPVS list order (newest first): the published
    /// reals list, then any active real it lacks (none unless written by an older lb-ctl),
    /// newest id first.
    pub fn ordered_reals(&self, svc_id: u32) -> Vec<(u32, Real)> {
        let mine: Vec<(u32, Real)> = self.reals_of(svc_id).copied().collect();
        let listed = self.orders.get(&svc_id).cloned().unwrap_or_default();
        let mut out: Vec<(u32, Real)> = listed
            .iter()
            .filter_map(|id| mine.iter().find(|(i, _)| i == id).copied())
            .collect();
        let mut rest: Vec<(u32, Real)> = mine
            .into_iter()
            .filter(|(i, _)| !listed.contains(i))
            .collect();
        rest.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        out.extend(rest);
        out
    }

    /// Every deleted (inactive) real with a [`Trashed`] record.
    pub fn trash(&self) -> impl Iterator<Item = (u32, Real, Trashed)> + '_ {
        self.reals.iter().filter_map(|(id, r)| {
            let t = self.trashed.get(id)?;
            (!r.flags.has(RealFlags::ACTIVE)).then_some((*id, *r, *t))
        })
    }

    /// The stamp of the next deletion: one more than any in REAL_TRASH.
    pub fn next_stamp(&self) -> u32 {
        self.trash()
            .map(|(_, _, t)| t.stamp)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Every active real.
    pub fn active_reals(&self) -> impl Iterator<Item = &(u32, Real)> {
        self.reals
            .iter()
            .filter(|(_, r)| r.flags.has(RealFlags::ACTIVE))
    }

    /// Performs a plan in memory, as [`crate::maps::Maps::apply`] changes the maps, so
    /// plans chain: plan a change, apply it here, plan the next one against the result,
    /// then write every plan in order. Only what a snapshot holds changes: SERVICES,
    /// REALS, REAL_TRASH and each service's published reals list (read back from the plan's
    /// `WriteTable` that covers the region a `PutService` points at; a service whose
    /// list region is unchanged keeps its list).
    pub fn apply(&mut self, ops: &[Op]) {
        let mut written: Vec<(u32, &[u32])> = Vec::new();
        for op in ops {
            match op {
                Op::WriteTable { base, slots } => written.push((*base, slots)),
                Op::PutService(k, s) => {
                    let (base, len) = (s.reals_base, s.reals_len as usize);
                    let list = written.iter().rev().find_map(|(b, slots)| {
                        let at = base.checked_sub(*b)? as usize;
                        slots.get(at..at + len)
                    });
                    match (len, list) {
                        (0, _) => {
                            self.orders.insert(s.id, Vec::new());
                        }
                        (_, Some(list)) => {
                            self.orders.insert(s.id, list.to_vec());
                        }
                        (_, None) => {}
                    }
                    match self.services.iter_mut().find(|(x, _)| x == k) {
                        Some(slot) => slot.1 = *s,
                        None => self.services.push((*k, *s)),
                    }
                }
                Op::DelService(k) => {
                    if let Some(i) = self.services.iter().position(|(x, _)| x == k) {
                        let (_, s) = self.services.remove(i);
                        self.orders.remove(&s.id);
                    }
                }
                Op::PutReal(id, r) => match self.reals.iter_mut().find(|(x, _)| x == id) {
                    Some(slot) => slot.1 = *r,
                    None => self.reals.push((*id, *r)),
                },
                Op::PutTrash(id, t) => {
                    self.trashed.insert(*id, *t);
                }
                Op::ClearTrash(id) => {
                    self.trashed.remove(id);
                }
                Op::PutVip(..)
                | Op::DelVip(_)
                | Op::FilterSet(..)
                | Op::FilterClear(..)
                | Op::FilterZero(_)
                | Op::FilterRebuild(..)
                | Op::ZeroSvcStats(_)
                | Op::ClearLocality(_)
                | Op::ResetCursor(_)
                | Op::ZeroRealStats(_)
                | Op::SettleConns(_)
                | Op::AddTxPort(_) => {}
            }
        }
    }
}

/// lb-ctl's record of a deleted real, kept in REAL_TRASH under the real's id: IPVS's dest
/// trash (`ip_vs_trash_get_dest`), in the only state a later lb-ctl process can read. The
/// real's REALS slot keeps all its fields, `ACTIVE` cleared; the data path never reads
/// REAL_TRASH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trashed {
    /// The virtual service the real was deleted from (IPVS matches `dest->vaddr`,
    /// `vport` and `protocol`, not the service object: a service deleted and added again
    /// gets its reals back).
    pub service: ServiceAddr,
    /// Order of deletion: one more than the highest stamp in REAL_TRASH at the time (so
    /// never 0). The allocator reuses the lowest stamp first (deleted longest ago).
    pub stamp: u32,
}

impl Trashed {
    /// The stored form.
    pub fn record(&self) -> TrashRecord {
        let (vip, family) = convert::to_raw(self.service.vip.ip);
        TrashRecord {
            vip,
            port: Be16::from_host(self.service.vip.port),
            proto: self.service.proto.number(),
            family,
            stamp: self.stamp,
        }
    }

    /// Back from the stored form; `None` for an empty slot (stamp 0) or one lb-ctl would
    /// never write.
    pub fn from_record(t: &TrashRecord) -> Option<Trashed> {
        if t.stamp == 0 {
            return None;
        }
        let key = ServiceKey {
            addr: t.vip,
            port: t.port,
            proto: t.proto,
            family: t.family,
        };
        Some(Trashed {
            service: ServiceAddr::from_key(&key)?,
            stamp: t.stamp,
        })
    }
}

/// The address of a stored real.
pub(crate) fn real_ip(r: &Real) -> IpAddr {
    convert::from_raw(&r.addr, r.family)
}

/// The endpoint (address, port) of a stored real.
pub(crate) fn real_endpoint(r: &Real) -> Endpoint {
    Endpoint {
        ip: real_ip(r),
        port: r.port.to_host(),
    }
}

/// Which address bit filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// VIP_FILTER: VIP addresses.
    Vip,
    /// NAT_FILTER: addresses of NAT-mode reals.
    Nat,
}

/// One map write. A plan is a `Vec<Op>` applied in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace a SERVICES entry (atomic for readers: how a table is published).
    PutService(ServiceKey, Service),
    /// Remove a SERVICES entry.
    DelService(ServiceKey),
    /// Set the number of services on a VIP.
    PutVip(VipKey, u32),
    /// Remove a VIP (no service left on it).
    DelVip(VipKey),
    /// Write a REALS slot.
    PutReal(u32, Real),
    /// Write a deleted real's REAL_TRASH record (nothing when the object has no
    /// REAL_TRASH: the real then comes back with a fresh id).
    PutTrash(u32, Trashed),
    /// Clear a REAL_TRASH record: the id is revived or given to another real.
    ClearTrash(u32),
    /// Write `slots` into SCHED_TABLE starting at `base`.
    WriteTable {
        /// First slot.
        base: u32,
        /// Real ids.
        slots: Vec<u32>,
    },
    /// Set bits in a filter word.
    FilterSet(Filter, u32, u64),
    /// Clear bits in a filter word.
    FilterClear(Filter, u32, u64),
    /// Clear a whole filter.
    FilterZero(Filter),
    /// Make a filter hold exactly these bits (word → mask; every other word zero). Each
    /// word that changes is written once, so a bit set before and after is never seen
    /// clear.
    FilterRebuild(Filter, BTreeMap<u32, u64>),
    /// Reset a service's per-CPU stats (a reused id starts from zero).
    ZeroSvcStats(u32),
    /// Clear a service id's lblc/lblcr locality entry (LBLC, when the object has it), so a
    /// reused id starts without the old service's destinations.
    ClearLocality(u32),
    /// Reset a service id's rr/wrr state (SCHED_CURSOR) to IPVS's fresh one (list head,
    /// no mark), so a new service on a reused or revived id starts as IPVS's new service.
    ResetCursor(u32),
    /// Reset a real's per-CPU stats.
    ZeroRealStats(u32),
    /// Bring a real id's live connection counts to zero (REAL_EXPIRED :=
    /// `ConnExpiry::settling` of REAL_CONNS): its id given to another real, whose slot
    /// already has the new generation, so the old real's state never moves them again.
    SettleConns(u32),
    /// Make an interface a redirect target (TX_PORTS).
    AddTxPort(u32),
}

/// Why a change is refused. Nothing has been written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `-A` of a service that exists.
    #[error("Service already exists: {0}")]
    ServiceExists(ServiceAddr),
    /// A command names a service that does not exist.
    #[error("No such service: {0}")]
    NoSuchService(ServiceAddr),
    /// `-a` of a real that exists in the service.
    #[error("Destination already exists: {real} in {service}")]
    RealExists {
        /// The service.
        service: ServiceAddr,
        /// The real.
        real: Endpoint,
    },
    /// `-e` / `-d` of a real the service does not have.
    #[error("No such destination: {real} in {service}")]
    NoSuchReal {
        /// The service.
        service: ServiceAddr,
        /// The real.
        real: Endpoint,
    },
    /// The real's address family differs from the VIP's.
    #[error(
        "address family mismatch: real {real} for {service} (real and VIP must both be IPv4 or both IPv6)"
    )]
    FamilyMismatch {
        /// The service.
        service: ServiceAddr,
        /// The real's address.
        real: IpAddr,
    },
    /// Weight outside 0..=65535.
    #[error("weight {0} is out of range (0..65535)")]
    Weight(i64),
    /// A scheduler IPVS does not have.
    #[error("Scheduler not found: {0} (one of {names})", names = sched_names())]
    UnsupportedScheduler(String),
    /// A service would get more reals than a load-driven scheduler scans.
    #[error("too many real servers in {0} (at most {1})")]
    TooManyRealsInService(ServiceAddr, u32),
    /// `-x` / `-y` out of order (IPVS refuses it with ERANGE).
    #[error("lower threshold {l} is higher than upper threshold {u}")]
    Thresholds {
        /// Upper.
        u: u32,
        /// Lower.
        l: u32,
    },
    /// `-M` of the wrong family or not a contiguous mask.
    #[error("illegal netmask {0} for this service")]
    Netmask(IpAddr),
    /// `-p 0` or more than IPVS allows.
    #[error("illegal persistence timeout {0}")]
    PersistTimeout(u32),
    /// An address that cannot be a VIP or a real (unspecified, multicast, broadcast).
    #[error("{0} cannot be used as a service or real server address")]
    BadAddress(IpAddr),
    /// All MAX_SERVICES service ids are taken.
    #[error("too many services (at most {0})")]
    TooManyServices(u32),
    /// All MAX_REALS real ids are taken by active reals.
    #[error("too many real servers (at most {0})")]
    TooManyReals(u32),
    /// SCHED_TABLE has no free run of slots for the new table.
    #[error("no free region of {0} slots in SCHED_TABLE (too many services with real servers)")]
    NoTableSpace(u32),
    /// A tunnel real needs the director's own address toward it (the outer source).
    #[error(
        "no source address of the same family toward tunnel real {0} (its route has no preferred source)"
    )]
    NoTunnelSource(IpAddr),
    /// The Maglev table cannot be built.
    #[error("cannot build the Maglev table")]
    Maglev(#[from] lb_common::maglev::MaglevError),
    /// The real's next hop cannot be resolved.
    #[error(transparent)]
    NextHop(#[from] crate::nexthop::NextHopError),
}

/// Refuses addresses no service or real can have.
pub(crate) fn check_unicast(ip: IpAddr) -> Result<(), ModelError> {
    let bad =
        ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(a) if a.is_broadcast());
    if bad {
        Err(ModelError::BadAddress(ip))
    } else {
        Ok(())
    }
}

/// Checks the weight range (ipvsadm `-w`, as IPVS limits it in practice).
pub(crate) fn check_weight(w: i64) -> Result<u32, ModelError> {
    if (0..=65535).contains(&w) {
        Ok(w as u32)
    } else {
        Err(ModelError::Weight(w))
    }
}

/// The port a real gets: IPVS forces the service port for DR and TUN (the packet keeps
/// its destination port); a NAT real without a port uses the service port (0 for an
/// all-port service: the client's port is kept).
pub(crate) fn effective_port(mode: ForwardMode, given: Option<u16>, svc_port: u16) -> u16 {
    match mode {
        ForwardMode::Nat => given.unwrap_or(svc_port),
        ForwardMode::Dr | ForwardMode::Tun => svc_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_display() {
        let e = Endpoint {
            ip: "198.18.0.1".parse().unwrap(),
            port: 80,
        };
        assert_eq!(e.to_string(), "198.18.0.1:80");
        let e = Endpoint {
            ip: "2001:db8::1".parse().unwrap(),
            port: 443,
        };
        assert_eq!(e.to_string(), "[2001:db8::1]:443");
    }

    #[test]
    fn service_key_round_trip() {
        for s in ["198.18.2.1", "2001:db8::7"] {
            let a = ServiceAddr {
                proto: Proto::Udp,
                vip: Endpoint {
                    ip: s.parse().unwrap(),
                    port: 53,
                },
            };
            let k = a.key();
            assert_eq!(k.port.to_host(), 53);
            assert_eq!(ServiceAddr::from_key(&k), Some(a));
        }
    }

    #[test]
    fn trash_record_round_trip() {
        for (vip, proto) in [("198.18.2.1", Proto::Tcp), ("2001:db8::7", Proto::Udp)] {
            let t = Trashed {
                service: ServiceAddr {
                    proto,
                    vip: Endpoint {
                        ip: vip.parse().unwrap(),
                        port: 65535,
                    },
                },
                stamp: 7,
            };
            let rec = t.record();
            assert_eq!(rec.port.to_host(), 65535);
            assert_eq!(Trashed::from_record(&rec), Some(t));
            assert_eq!(
                Trashed::from_record(&TrashRecord { stamp: 0, ..rec }),
                None,
                "no record"
            );
            assert_eq!(Trashed::from_record(&TrashRecord::default()), None);
        }
    }

    #[test]
    fn ports_follow_ipvs() {
        assert_eq!(effective_port(ForwardMode::Dr, Some(8080), 80), 80);
        assert_eq!(effective_port(ForwardMode::Tun, None, 80), 80);
        assert_eq!(effective_port(ForwardMode::Nat, Some(8080), 80), 8080);
        assert_eq!(effective_port(ForwardMode::Nat, None, 80), 80);
        assert_eq!(effective_port(ForwardMode::Nat, None, 0), 0);
    }

    #[test]
    fn weights_and_addresses() {
        assert_eq!(check_weight(0).unwrap(), 0);
        assert_eq!(check_weight(65535).unwrap(), 65535);
        assert!(matches!(
            check_weight(65536),
            Err(ModelError::Weight(65536))
        ));
        assert!(matches!(check_weight(-1), Err(ModelError::Weight(-1))));
        assert!(check_unicast("0.0.0.0".parse().unwrap()).is_err());
        assert!(check_unicast("224.0.0.1".parse().unwrap()).is_err());
        assert!(check_unicast("ff02::1".parse().unwrap()).is_err());
        assert!(check_unicast("198.18.0.1".parse().unwrap()).is_ok());
    }
}
