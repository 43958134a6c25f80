//! Reference models of IPVS's schedulers, persistence, thresholds and connection
//! accounting, written from the kernel's rules (net/netfilter/ipvs/ip_vs_*.c), not from
//! lb-ebpf. The scheduler tests (tests/tests/sched.rs) drive the real eBPF program and
//! this model with the same events and assert that every choice agrees.
//!
//! A [`Service`] holds its destinations in IPVS list order (`svc->destinations`), each
//! with the counters IPVS keeps on `struct ip_vs_dest` (activeconns, inactconns,
//! persistconns, the OVERLOAD flag), the scheduler's private state, the connections
//! (with their TCP state and INACTIVE flag) and the persistence templates.

pub mod load;
pub mod locality;
pub mod seq;
pub mod table;
pub mod tcp;

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A real server as IPVS's `struct ip_vs_dest` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Our real id.
    pub id: u32,
    /// Its address (dh/sh tables, lblc).
    pub addr: IpAddr,
    /// `dest->weight`.
    pub weight: i32,
    /// `dest->activeconns`.
    pub active: u32,
    /// `dest->inactconns`.
    pub inactive: u32,
    /// `dest->persistconns`.
    pub persist: u32,
    /// `IP_VS_DEST_F_OVERLOAD`.
    pub overloaded: bool,
    /// `dest->u_threshold` (-x), 0 = none.
    pub u_threshold: u32,
    /// `dest->l_threshold` (-y), 0 = 3/4 of the upper one.
    pub l_threshold: u32,
}

impl Dest {
    /// A fresh destination.
    pub fn new(id: u32, addr: IpAddr, weight: i32) -> Dest {
        Dest {
            id,
            addr,
            weight,
            active: 0,
            inactive: 0,
            persist: 0,
            overloaded: false,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
    /// `ip_vs_dest_conn_overhead`: active connections weigh 256 inactive ones.
    pub fn overhead(&self) -> i64 {
        ((self.active as i64) << 8) + self.inactive as i64
    }
    /// `ip_vs_dest_totalconns`.
    pub fn total(&self) -> u32 {
        self.active + self.inactive
    }
}

/// The scheduler of a service and its private state (`svc->sched_data`).
#[derive(Clone, Debug)]
pub enum Sched {
    /// rr: the list position of the last pick (`None` = the list head).
    Rr(Option<usize>),
    /// wrr mark.
    Wrr(seq::WrrMark),
    /// lc.
    Lc,
    /// wlc.
    Wlc,
    /// sed.
    Sed,
    /// nq.
    Nq,
    /// fo.
    Fo,
    /// ovf.
    Ovf,
    /// twos, with the two random numbers the next pick uses (the program draws its own:
    /// tests check validity, not the exact pick).
    Twos,
    /// sh: 256 buckets of list positions, with -b sh-fallback / sh-port.
    Sh {
        /// Buckets (list positions; `None` = no dest).
        buckets: Vec<Option<usize>>,
        /// sh-fallback.
        fallback: bool,
        /// sh-port.
        port: bool,
    },
    /// dh: 256 buckets of list positions.
    Dh(Vec<Option<usize>>),
    /// mh: a table of real ids built by lb-ctl (Maglev), indexed with lb's flow hash.
    Mh {
        /// Slots: real ids (`NO_REAL` = none).
        table: Vec<u32>,
        /// mh-fallback.
        fallback: bool,
        /// mh-port.
        port: bool,
    },
    /// lblc: destination address → list position.
    Lblc(BTreeMap<IpAddr, usize>),
    /// lblcr: destination address → set of list positions (in insertion order).
    Lblcr(BTreeMap<IpAddr, Vec<usize>>),
}

/// A new connection's packet, as far as scheduling cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conn {
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// IP protocol.
    pub proto: u8,
}

/// A connection IPVS keeps (`struct ip_vs_conn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    /// Real id of its dest (listed, or deleted: in the service's trash).
    pub real: u32,
    /// TCP state (or 0 for UDP).
    pub state: tcp::State,
    /// `IP_VS_CONN_F_INACTIVE`.
    pub inactive: bool,
    /// `IP_VS_CONN_F_NOOUTPUT`.
    pub no_output: bool,
    /// Template key it belongs to, if persistent.
    pub template: Option<(IpAddr, u32)>,
}

/// A persistence template (`IP_VS_CONN_F_TEMPLATE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Real id of its dest.
    pub real: u32,
}

/// Persistence settings (`-p`, `-M`).
#[derive(Clone, Copy, Debug)]
pub struct Persist {
    /// Prefix length the client address is masked to (32/128 = the whole address).
    pub prefix: u8,
    /// Persistence group (services sharing templates: an IPVS fwmark service).
    pub group: u32,
}

/// Global settings (sysctls), IPVS's defaults by default.
#[derive(Clone, Copy, Debug)]
pub struct Sysctl {
    /// `expire_quiescent_template`.
    pub expire_quiescent_template: bool,
    /// `expire_nodest_conn`.
    pub expire_nodest_conn: bool,
    /// `conn_reuse_mode` (IPVS's default 1).
    pub conn_reuse_mode: u32,
}

impl Default for Sysctl {
    fn default() -> Sysctl {
        Sysctl {
            expire_quiescent_template: false,
            expire_nodest_conn: false,
            conn_reuse_mode: 1,
        }
    }
}

/// A virtual service.
#[derive(Clone, Debug)]
pub struct Service {
    /// Destinations in IPVS list order.
    pub dests: Vec<Dest>,
    /// The scheduler.
    pub sched: Sched,
    /// Persistence, if `-p`.
    pub persist: Option<Persist>,
    /// One-packet scheduling (`-o`, UDP only).
    pub one_packet: bool,
    /// NAT (masquerading) reals: connections start without IP_VS_CONN_F_NOOUTPUT
    /// (`__ip_vs_update_dest` sets it only for other forwarding methods).
    pub masq: bool,
    /// Deleted dests that still have connections (IPVS's dest trash).
    pub trash: Vec<Dest>,
    /// The real the next pick must be (a random or probe-order choice the program made,
    /// checked against the model's valid set before it is forced here).
    pub force: Option<u32>,
}

/// Templates shared by every service: (masked client, group) → template. Our PersistKey
/// also carries the protocol; tests keep one protocol per group.
pub type Templates = BTreeMap<(IpAddr, u32), Template>;

/// Masks an address to a prefix length.
pub fn mask(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let p = prefix.min(32) as u32;
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let p = prefix.min(128) as u32;
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6((u128::from(v) & m).into())
        }
    }
}

impl Service {
    /// A service with these dests and scheduler; sh/dh/wrr state is built from the dests.
    pub fn new(dests: Vec<Dest>, sched: Sched) -> Service {
        let mut s = Service {
            dests,
            sched,
            persist: None,
            one_packet: false,
            masq: false,
            trash: Vec::new(),
            force: None,
        };
        s.dests_changed();
        s
    }

    /// The scheduler's add_dest/del_dest/upd_dest hook: rebuild what depends on the
    /// dests (sh and dh tables, the wrr mark).
    pub fn dests_changed(&mut self) {
        let dests = self.dests.clone();
        match &mut self.sched {
            Sched::Wrr(m) => m.dest_changed(&dests),
            Sched::Sh { buckets, .. } => *buckets = table::sh_reassign(&dests),
            Sched::Dh(b) => *b = table::dh_assign(&dests),
            _ => {}
        }
    }

    /// `ip_vs_scheduler->schedule`: the list position of the chosen dest, or None.
    /// `rand` gives twos its two random numbers.
    pub fn schedule(&mut self, c: &Conn, rand: (u32, u32)) -> Option<usize> {
        if let Some(id) = self.force.take() {
            let d = self.pos(id);
            // Keep the scheduler's own state moving as IPVS's would have (lblc/lblcr
            // cache the pick).
            match (&mut self.sched, d) {
                (Sched::Lblc(t), Some(d)) => {
                    t.insert(c.vip, d);
                }
                (Sched::Lblcr(t), Some(d)) => {
                    let set = t.entry(c.vip).or_default();
                    if !set.contains(&d) {
                        set.insert(0, d);
                    }
                }
                _ => {}
            }
            return d;
        }
        let dests = &self.dests;
        match &mut self.sched {
            Sched::Rr(cur) => seq::rr(dests, cur),
            Sched::Wrr(m) => m.schedule(dests),
            Sched::Lc => load::lc(dests),
            Sched::Wlc => load::wlc(dests),
            Sched::Sed => load::sed(dests),
            Sched::Nq => load::nq(dests),
            Sched::Fo => load::fo(dests),
            Sched::Ovf => load::ovf(dests),
            Sched::Twos => load::twos(dests, rand),
            Sched::Sh {
                buckets,
                fallback,
                port,
            } => table::sh(dests, buckets, c, *fallback, *port),
            Sched::Dh(b) => table::dh(dests, b, c),
            Sched::Mh {
                table,
                fallback,
                port,
            } => table::mh(dests, table, c, *fallback, *port),
            Sched::Lblc(t) => locality::lblc(dests, t, c),
            Sched::Lblcr(t) => locality::lblcr(dests, t, c),
        }
    }

    /// `ip_vs_bind_dest`: a new connection or template is counted on its dest; new
    /// connections are bound INACTIVE (`__ip_vs_update_dest` puts IP_VS_CONN_F_INACTIVE in
    /// `dest->conn_flags`) and the first state transition may make them active.
    pub fn bind(&mut self, d: usize, template: bool) {
        let dest = &mut self.dests[d];
        if template {
            dest.persist += 1;
        } else {
            dest.inactive += 1;
        }
        if dest.u_threshold != 0 && dest.total() >= dest.u_threshold {
            dest.overloaded = true;
        }
    }

    /// A dest by real id, listed or in the trash.
    pub fn dest_mut(&mut self, id: u32) -> Option<&mut Dest> {
        self.dests
            .iter_mut()
            .chain(self.trash.iter_mut())
            .find(|d| d.id == id)
    }

    /// True when the real was deleted (its connections' packets meet expire_nodest_conn).
    pub fn is_deleted(&self, id: u32) -> bool {
        self.trash.iter().any(|d| d.id == id)
    }

    /// `ip_vs_unbind_dest`: the connection or template leaves its dest; the OVERLOAD flag
    /// clears below the lower threshold (3/4 of the upper one when there is none).
    pub fn unbind(&mut self, id: u32, template: bool, inactive: bool) {
        let Some(dest) = self.dest_mut(id) else {
            return;
        };
        if template {
            dest.persist -= 1;
        } else if inactive {
            dest.inactive -= 1;
        } else {
            dest.active -= 1;
        }
        if dest.l_threshold != 0 {
            if dest.total() < dest.l_threshold {
                dest.overloaded = false;
            }
        } else if dest.u_threshold != 0 {
            if dest.total() * 4 < dest.u_threshold * 3 {
                dest.overloaded = false;
            }
        } else {
            dest.overloaded = false;
        }
    }

    /// List position of a real id.
    pub fn pos(&self, real: u32) -> Option<usize> {
        self.dests.iter().position(|d| d.id == real)
    }
}

/// The whole model: services, connections, templates.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Services by our service id.
    pub services: BTreeMap<u32, Service>,
    /// Live connections: (service id, conn) → entry.
    pub conns: BTreeMap<(u32, Conn), ConnEntry>,
    /// Templates.
    pub templates: Templates,
    /// Template owner: template key → service id of its dest.
    pub template_svc: BTreeMap<(IpAddr, u32), u32>,
    /// Sysctls.
    pub sysctl: Sysctl,
}

/// What the model says a new connection's first packet does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Goes to this real id.
    Real(u32),
    /// No destination available: dropped.
    NoReal,
}

impl Model {
    /// `ip_vs_schedule` (+ `ip_vs_sched_persist`) for the first packet of `c` on service
    /// `svc`, followed by the packet's state transition (TCP flags `flags`, input
    /// direction). Records the connection unless one-packet.
    pub fn new_conn(&mut self, svc: u32, c: Conn, flags: tcp::Flags, rand: (u32, u32)) -> Choice {
        let s = self.services.get_mut(&svc).expect("service");
        let mut tkey = None;
        let pos = if let Some(p) = s.persist {
            let key = (mask(c.client, p.prefix), p.group);
            tkey = Some(key);
            // ip_vs_check_template: the template is valid while its dest is available
            // (configured), unless expire_quiescent_template and its weight is 0.
            let valid = self.templates.get(&key).and_then(|t| {
                let tsvc = self.template_svc.get(&key).copied()?;
                let ts = self.services.get(&tsvc)?;
                let d = ts.pos(t.real)?;
                let ok = !(self.sysctl.expire_quiescent_template && ts.dests[d].weight == 0);
                ok.then_some((tsvc, d))
            });
            // A template of another service of the group: IPVS's fwmark service has one
            // dest list for all its ports; lb's group is several services, so the
            // template's server is this service's real with the same address (none:
            // the template is of no use here and is replaced).
            let valid = valid.and_then(|(tsvc, d)| {
                if tsvc == svc {
                    return Some(d);
                }
                let addr = self.services[&tsvc].dests[d].addr;
                let here = &self.services[&svc];
                let d = here.dests.iter().position(|x| x.addr == addr)?;
                let ok = !(self.sysctl.expire_quiescent_template && here.dests[d].weight == 0);
                ok.then_some(d)
            });
            match valid {
                Some(d) => Some(d),
                None => {
                    if self.templates.contains_key(&key) {
                        self.expire_template(key);
                    }
                    let s = self.services.get_mut(&svc).expect("service");
                    let d = s.schedule(&c, rand);
                    if let Some(d) = d {
                        s.bind(d, true);
                        let real = s.dests[d].id;
                        self.templates.insert(key, Template { real });
                        self.template_svc.insert(key, svc);
                    }
                    d
                }
            }
        } else {
            s.schedule(&c, rand)
        };
        let Some(d) = pos else {
            return Choice::NoReal;
        };
        let s = self.services.get_mut(&svc).expect("service");
        let real = s.dests[d].id;
        if s.one_packet && c.proto == 17 {
            // Bound and freed at once: no lasting count.
            return Choice::Real(real);
        }
        s.bind(d, false);
        let mut e = ConnEntry {
            real,
            state: tcp::State::None,
            inactive: true,
            no_output: !s.masq,
            template: tkey,
        };
        if c.proto == 6 {
            self.transition_entry(svc, &mut e, flags, tcp::Dir::Input);
        }
        self.conns.insert((svc, c), e);
        Choice::Real(real)
    }

    fn transition_entry(&mut self, svc: u32, e: &mut ConnEntry, flags: tcp::Flags, dir: tcp::Dir) {
        let mut dir = dir;
        if e.no_output {
            if dir == tcp::Dir::Output {
                e.no_output = false;
            } else {
                dir = tcp::Dir::InputOnly;
            }
        }
        let new = tcp::next(dir, flags, e.state);
        if new != e.state {
            let dest = self
                .services
                .get_mut(&svc)
                .expect("service")
                .dest_mut(e.real)
                .expect("dest");
            if !e.inactive && new != tcp::State::Established {
                dest.active -= 1;
                dest.inactive += 1;
                e.inactive = true;
            } else if e.inactive && new == tcp::State::Established {
                dest.active += 1;
                dest.inactive -= 1;
                e.inactive = false;
            }
        }
        e.state = new;
    }

    /// `ip_vs_in_hook` before scheduling: the first packet of a new connection
    /// (`is_new_conn`: a TCP SYN) finds connection `c`, not controlled by a template
    /// (`cp->control`). True when IPVS expires it at once (`ip_vs_conn_expire_now`) and
    /// schedules the packet afresh: `expire_nodest_conn` with its dest's weight 0, else with
    /// `conn_reuse_mode` on, `is_new_conn_expected` (TIME_WAIT, CLOSE; with mode bit 2 also
    /// FIN_WAIT without output). No conntrack (IPVS's `conntrack` sysctl 0), so never the
    /// old-conntrack drop.
    pub fn new_conn_expected(&self, svc: u32, c: Conn, flags: tcp::Flags) -> bool {
        if c.proto != 6 || !flags.syn {
            return false;
        }
        let Some(e) = self.conns.get(&(svc, c)) else {
            return false;
        };
        let s = &self.services[&svc];
        let weight0 = s.pos(e.real).is_some_and(|d| s.dests[d].weight == 0);
        // ip_vs_in_hook: the weight-0 branch comes first and does not look at control.
        if self.sysctl.expire_nodest_conn && weight0 {
            return true;
        }
        // is_new_conn_expected: a controlled connection (persistence) is never reused.
        if e.template.is_some() {
            return false;
        }
        let mode = self.sysctl.conn_reuse_mode;
        mode != 0
            && (matches!(e.state, tcp::State::TimeWait | tcp::State::Close)
                || (mode & 2 != 0 && e.state == tcp::State::FinWait && e.no_output))
    }

    /// A SYN on the ports of a connection IPVS then expires (`new_conn_expected`): the new
    /// connection is scheduled first and the old one unbound after, since
    /// `ip_vs_conn_expire_now` only re-arms the old connection's timer and the unbinding
    /// runs when it fires (`ip_vs_conn_expire`), so the scheduler still counts it.
    pub fn reuse_conn(&mut self, svc: u32, c: Conn, flags: tcp::Flags, rand: (u32, u32)) -> Choice {
        let old = self.conns.remove(&(svc, c)).expect("a connection to reuse");
        let choice = self.new_conn(svc, c, flags, rand);
        self.services
            .get_mut(&svc)
            .expect("service")
            .unbind(old.real, false, old.inactive);
        choice
    }

    /// A later packet of a recorded connection (client → VIP, or reply with `Output`).
    pub fn packet(&mut self, svc: u32, c: Conn, flags: tcp::Flags, dir: tcp::Dir) -> Option<u32> {
        let mut e = self.conns.get(&(svc, c))?.clone();
        if c.proto == 6 {
            self.transition_entry(svc, &mut e, flags, dir);
        }
        let real = e.real;
        self.conns.insert((svc, c), e);
        Some(real)
    }

    /// The connection expires (its timer ran out): unbound from its dest.
    pub fn expire(&mut self, svc: u32, c: Conn) -> Option<ConnEntry> {
        let e = self.conns.remove(&(svc, c))?;
        self.services
            .get_mut(&svc)
            .expect("service")
            .unbind(e.real, false, e.inactive);
        Some(e)
    }

    /// A template expires.
    pub fn expire_template(&mut self, key: (IpAddr, u32)) {
        if let Some(t) = self.templates.remove(&key) {
            let tsvc = self.template_svc.remove(&key).expect("template owner");
            let s = self.services.get_mut(&tsvc).expect("service");
            s.unbind(t.real, true, false);
        }
    }

    /// `ip_vs_del_dest`: the real leaves the list (to the trash while connections use it)
    /// and the scheduler's hook runs.
    pub fn delete_real(&mut self, svc: u32, real: u32) {
        let s = self.services.get_mut(&svc).expect("service");
        let d = s.pos(real).expect("real");
        let dest = s.dests.remove(d);
        s.trash.push(dest);
        if let Sched::Rr(Some(cur)) = &mut s.sched {
            // ip_vs_rr_del_dest: a cursor on the deleted dest moves to the one before.
            if *cur >= d {
                *cur = cur.checked_sub(1).unwrap_or(usize::MAX);
            }
        }
        if let Sched::Rr(cur) = &mut s.sched
            && *cur == Some(usize::MAX)
        {
            *cur = None;
        }
        s.dests_changed();
    }

    /// `ip_vs_add_dest`: `ip_vs_trash_get_dest` first looks for the real in the trash,
    /// matching the service's address, port and protocol (not the service object, so a
    /// service deleted and added again finds its old dests) and the real's address and
    /// port; a hit comes back with its connection counters, and `__ip_vs_update_dest`
    /// gives it the command's weight and thresholds (OVERLOAD cleared unless the upper
    /// threshold stays or drops). Otherwise `dest` is new. Either way it goes to the head
    /// of the list (`list_add_rcu` onto `svc->destinations`) and the scheduler's hook
    /// runs. The model keeps the trash per service number (its address); the harness's
    /// reals all use the service's port, so the address decides.
    pub fn add_real(&mut self, svc: u32, dest: Dest) {
        let dest = self.take_from_trash(svc, dest);
        let s = self.services.get_mut(&svc).expect("service");
        s.dests.insert(0, dest);
        // Schedulers that point into the list keep pointing at the same dest.
        match &mut s.sched {
            Sched::Rr(Some(cur)) => *cur += 1,
            Sched::Lblc(t) => t.values_mut().for_each(|p| *p += 1),
            Sched::Lblcr(t) => t
                .values_mut()
                .for_each(|set| set.iter_mut().for_each(|p| *p += 1)),
            _ => {}
        }
        s.dests_changed();
    }

    /// The dest `ip_vs_add_dest` adds for `dest`: its trashed self if there (see
    /// [`Model::add_real`]), else `dest`.
    pub fn take_from_trash(&mut self, svc: u32, dest: Dest) -> Dest {
        let s = self.services.get_mut(&svc).expect("service");
        let Some(t) = s.trash.iter().position(|d| d.addr == dest.addr) else {
            return dest;
        };
        let mut old = s.trash.remove(t);
        if dest.u_threshold == 0 || dest.u_threshold > old.u_threshold {
            old.overloaded = false;
        }
        old.weight = dest.weight;
        old.u_threshold = dest.u_threshold;
        old.l_threshold = dest.l_threshold;
        old
    }

    /// `__ip_vs_del_service` (ipvsadm -D, or -C through `ip_vs_flush`): every dest leaves
    /// the list for the trash, where its connections keep it.
    pub fn delete_service(&mut self, svc: u32) {
        let s = self.services.get_mut(&svc).expect("service");
        let gone = std::mem::take(&mut s.dests);
        s.trash.extend(gone);
    }

    /// Counts of a real in a service: (ActiveConn, InActConn, PersistConn).
    pub fn counts(&self, svc: u32, real: u32) -> (u32, u32, u32) {
        let s = &self.services[&svc];
        let d = s
            .dests
            .iter()
            .chain(s.trash.iter())
            .find(|d| d.id == real)
            .expect("real");
        (d.active, d.inactive, d.persist)
    }
}
