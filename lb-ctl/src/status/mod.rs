//! What lb is doing now, as typed values gathered once from the pinned maps ([`gather`])
//! and rendered by whoever needs them: ipvsadm's text (`crate::cli::show`), JSON
//! (`crate::cli::json`, shape in docs/json.md), a metrics exporter.
//!
//! The values derive `serde::Serialize` with the field names docs/json.md documents: the
//! JSON is an interface scripts parse, so a rename here is a breaking change there.

pub mod gather;
pub mod order;

pub use gather::{conns, counters, services};

use crate::ipvs::model::{Endpoint, ServiceAddr};
pub use crate::rate::Rates;
use lb_common::{Counter, Drop, ForwardMode, Pass, Traffic};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::net::IpAddr;

/// Traffic of a service or a real, summed over CPUs (IPVS's `ip_vs_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in (client → real).
    pub in_packets: u64,
    /// Packets out (real → client; NAT only, as IPVS sees replies only then).
    pub out_packets: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
}

impl From<Traffic> for Stats {
    fn from(t: Traffic) -> Stats {
        Stats {
            conns: t.conns,
            in_packets: t.in_packets,
            out_packets: t.out_packets,
            in_bytes: t.in_bytes,
            out_bytes: t.out_bytes,
        }
    }
}

/// How a real is reached, as JSON names it (ipvsadm's Forward column, lower case).
fn forward_name<S: Serializer>(m: &ForwardMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match m {
        ForwardMode::Dr => "route",
        ForwardMode::Tun => "tunnel",
        ForwardMode::Nat => "masq",
    })
}

/// A real server as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListedReal {
    /// Address and port.
    #[serde(flatten)]
    pub ep: Endpoint,
    /// Forwarding mode.
    #[serde(rename = "forward", serialize_with = "forward_name")]
    pub mode: ForwardMode,
    /// Configured weight.
    pub weight: u32,
    /// ActiveConn column.
    #[serde(rename = "active_conns")]
    pub active: u64,
    /// InActConn column.
    #[serde(rename = "inactive_conns")]
    pub inactive: u64,
    /// PersistConn column (`--persistent-conn`).
    #[serde(rename = "persistent_conns")]
    pub persistent: u64,
    /// Uthreshold (`--thresholds`).
    pub u_threshold: u32,
    /// Lthreshold (`--thresholds`).
    pub l_threshold: u32,
    /// Traffic (zero unless gathered, see [`Gather`]).
    pub stats: Stats,
    /// Rates, from the estimator (zero unless gathered, see [`Gather`]).
    pub rates: Rates,
    /// Where its packets go next (JSON only: ipvsadm's listing has no such column).
    pub neighbour: ListedNeighbour,
}

/// A real's next hop as lb sends to it: what the data path holds (interface, MAC, whether
/// the MAC is known), and the next hop the kernel's route names now.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListedNeighbour {
    /// The next hop's MAC is known and packets are sent (`false`: the real is
    /// `NO_NEIGHBOUR`, its packets dropped `drop_no_neighbour` until the MAC is learnt).
    pub resolved: bool,
    /// The next hop: the real itself on-link, else the gateway (from the kernel's route at
    /// listing time; `None` when not gathered or when there is no route).
    pub next_hop: Option<IpAddr>,
    /// The next hop's MAC the data path writes (`None` while unresolved).
    pub mac: Option<String>,
    /// Egress interface name (`None`: no route yet, or the index names no interface).
    pub interface: Option<String>,
    /// Egress interface index (0: no route yet).
    pub ifindex: u32,
}

/// A service's persistence (`-p`, `-M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Persistence {
    /// Template timeout, seconds.
    pub timeout_s: u32,
    /// Client mask (all-ones unless `-M`).
    pub netmask: IpAddr,
}

/// A service as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListedService {
    /// Protocol, VIP, port.
    #[serde(flatten)]
    pub addr: ServiceAddr,
    /// Scheduler name.
    #[serde(rename = "scheduler")]
    pub sched: &'static str,
    /// Scheduler flag names (`-b`).
    #[serde(rename = "scheduler_flags")]
    pub sched_flags: Vec<&'static str>,
    /// `-p`: timeout and mask.
    pub persistent: Option<Persistence>,
    /// `-o`.
    pub one_packet: bool,
    /// Traffic (zero unless gathered, see [`Gather`]).
    pub stats: Stats,
    /// Rates, from the estimator (zero unless gathered, see [`Gather`]).
    pub rates: Rates,
    /// Its reals.
    pub reals: Vec<ListedReal>,
    /// Its persistence group: the service id that names it (its own id unless
    /// `--persist-group` joined another's). For `-S`, not in the JSON.
    #[serde(skip)]
    pub persist_group: u32,
    /// `--mh-size` when it differs from the default (an mh service with a table). For
    /// `-S`, not in the JSON.
    #[serde(skip)]
    pub mh_size: Option<u32>,
}

/// What to read besides the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gather {
    /// Traffic of every service and real (one per-CPU read each).
    pub stats: bool,
    /// Rates of every service and real (one read each).
    pub rates: bool,
    /// Connection counts (free from the data path's counters; an older object without
    /// them needs a walk of the flow tables).
    pub conns: bool,
    /// Each real's next hop by the kernel's route now (one route lookup per real).
    pub next_hops: bool,
}

/// Sorts services and their reals in ipvsadm's order (family, protocol, address, port;
/// reals by address and port, compared as libipvs compares them: [`order`]). Without
/// `reals_too` reals keep IPVS's list order.
pub fn sort(services: &mut Vec<ListedService>, reals_too: bool) {
    order::merge_sort_by(services, |a, b| order::cmp_services(&a.addr, &b.addr));
    if !reals_too {
        return;
    }
    for s in services.iter_mut() {
        order::merge_sort_by(&mut s.reals, |a, b| order::cmp_reals(&a.ep, &b.ep));
    }
}

/// One connection entry of `-L -c` (a flow or a persistence template).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListedConn {
    /// "TCP" / "UDP" (IPVS prints the protocol of templates too).
    #[serde(rename = "protocol")]
    pub proto: &'static str,
    /// Seconds left before expiry.
    pub expire_s: u32,
    /// State name ("ESTABLISHED", "UDP", "NONE" for a template).
    pub state: &'static str,
    /// Client (template: masked client, port 0).
    pub source: Endpoint,
    /// VIP and port (template: port 0 for a group spanning ports).
    #[serde(rename = "virtual")]
    pub virt: Endpoint,
    /// Real.
    #[serde(rename = "destination")]
    pub dest: Endpoint,
    /// The flow's forwarding method, kept from its creation (`FlowValue::fwd`); a template:
    /// its real's current mode. JSON only (ipvsadm's `-L -c` shows none).
    #[serde(rename = "forward", serialize_with = "forward_name")]
    pub mode: ForwardMode,
}

/// Every named data-path counter, per-CPU summed, in listing order: events, pass
/// reasons, drop reasons; then each state table's entries and capacity
/// (`table_<name>_entries`, `table_<name>_capacity`). JSON: one object, name → value, in
/// that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub Vec<(&'static str, u64)>);

/// A state table's fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableFill {
    /// Entries at the sweeper's last pass (0 before any).
    pub entries: u64,
    /// max_entries.
    pub capacity: u64,
}

impl Counters {
    /// Every named counter slot, in listing order: events, pass reasons, drop reasons.
    pub fn names() -> Vec<(u32, &'static str)> {
        let mut v: Vec<(u32, &'static str)> =
            Counter::EVENTS.iter().map(|(c, n)| (c.0, *n)).collect();
        v.extend(Pass::ALL.iter().map(|p| (p.counter().0, p.name())));
        v.extend(Drop::ALL.iter().map(|d| (d.counter().0, d.name())));
        v
    }

    /// The named counters from the summed COUNTERS slots (by slot index; a slot past the
    /// end reads 0).
    pub fn from_slots(values: &[u64]) -> Counters {
        Counters(
            Counters::names()
                .into_iter()
                .map(|(slot, name)| (name, values.get(slot as usize).copied().unwrap_or(0)))
                .collect(),
        )
    }

    /// The value of the counter named `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

impl Serialize for Counters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, v) in &self.0 {
            m.serialize_entry(name, v)?;
        }
        m.end()
    }
}
