//! What a case puts in the maps before its packets: services (with their Maglev tables),
//! reals, established flows, NAT reverse entries and redirect ports, all as lb-common types,
//! written the way docs/datapath.md says lb-ctl writes them.

use crate::bpf::Bpf;
use anyhow::Result;
use lb_common::addr::convert::to_raw;
use lb_common::consts::NO_REAL;
use lb_common::filter::filter_slot;
use lb_common::hash::{FLOW_SEED, flow_hash, src_hash};
use lb_common::maglev::{Backend, build};
use lb_common::{
    Be16, FlowKey, FlowValue, ForwardMode, NatReverse, Real, SchedKind, Service, ServiceKey,
    VipFlags, VipKey,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Scheduler table of a service.
#[derive(Clone, Debug)]
pub enum Table {
    /// Maglev over the service's reals (every real whose `svc_id` is the service's, with
    /// their weights), this many slots (a prime).
    Maglev(u32),
    /// `table_len` 0: no real yet.
    Empty,
    /// These slots exactly (for `NO_REAL` entries and hand-made tables).
    Slots(Vec<u32>),
    /// Another scheduler (lb-common `sched` contract): its table (sh/dh buckets, empty
    /// for rr, wrr and the load-driven ones) and the service's reals list in IPVS order,
    /// written after the table in the service's region.
    Sched {
        /// The scheduler.
        kind: SchedKind,
        /// Its table.
        table: Vec<u32>,
        /// The reals list.
        reals: Vec<u32>,
    },
}

/// A service (virtual server).
#[derive(Clone, Debug)]
pub struct Svc {
    /// Service id (stats index).
    pub id: u32,
    /// VIP.
    pub vip: IpAddr,
    /// Port, 0 for all ports.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`VipFlags`] bits.
    pub flags: u32,
    /// Its scheduler table.
    pub table: Table,
}

/// Map contents of one case.
#[derive(Clone, Debug, Default)]
pub struct Provision {
    /// Services, with their tables.
    pub services: Vec<Svc>,
    /// (real id, real).
    pub reals: Vec<(u32, Real)>,
    /// Established flows.
    pub flows: Vec<(FlowKey, FlowValue)>,
    /// NAT reverse entries.
    pub nat_rev: Vec<(FlowKey, NatReverse)>,
    /// Interfaces in TX_PORTS.
    pub tx_ports: Vec<u32>,
    /// Addresses whose VIP_FILTER bit is set without being a VIP: a filter false positive.
    pub filter_only: Vec<IpAddr>,
    /// SETTINGS[0], when the case sets it (else IPVS defaults: all zero).
    pub settings: Option<lb_common::conn::Settings>,
    /// CLOCK[0] seconds, when the case sets it (else 0).
    pub clock: Option<u32>,
}

/// Slots reserved per service in SCHED_TABLE: service `id` starts at `id * TABLE_STRIDE`.
pub const TABLE_STRIDE: u32 = 4096;

/// A flow key as the data path builds it from a packet.
pub fn flow_key(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> FlowKey {
    let (s, family) = to_raw(src);
    let (d, _) = to_raw(dst);
    FlowKey {
        src: s,
        dst: d,
        sport: Be16::from_host(sport),
        dport: Be16::from_host(dport),
        proto,
        family,
        _pad: [0; 2],
    }
}

impl Svc {
    /// The SERVICES key.
    pub fn key(&self) -> ServiceKey {
        let (addr, family) = to_raw(self.vip);
        ServiceKey {
            addr,
            port: Be16::from_host(self.port),
            proto: self.proto,
            family,
        }
    }
}

impl Provision {
    /// The table a service gets, as written to SCHED_TABLE.
    pub fn table(&self, svc: &Svc) -> Vec<u32> {
        match &svc.table {
            Table::Empty => Vec::new(),
            Table::Slots(s) => s.clone(),
            Table::Sched { table, .. } => table.clone(),
            Table::Maglev(size) => {
                let backends: Vec<Backend> = self
                    .reals
                    .iter()
                    .filter(|(_, r)| r.svc_id == svc.id)
                    .map(|(id, r)| Backend {
                        id: *id,
                        addr: r.addr,
                        port: r.port.to_host(),
                        weight: r.weight,
                    })
                    .collect();
                build(&backends, *size).expect("Maglev table size")
            }
        }
    }

    /// The service with this id.
    pub fn svc(&self, id: u32) -> &Svc {
        self.services
            .iter()
            .find(|s| s.id == id)
            .expect("no such service")
    }

    /// The real with this id.
    pub fn real(&self, id: u32) -> &Real {
        &self
            .reals
            .iter()
            .find(|(i, _)| *i == id)
            .expect("no such real")
            .1
    }

    /// The real a new flow with this key is scheduled to (docs/datapath.md step 10): the
    /// whole-flow hash with HASH_PORTS, else the client-address hash, modulo the table.
    pub fn scheduled(&self, svc_id: u32, key: &FlowKey) -> u32 {
        let svc = self.svc(svc_id);
        let table = self.table(svc);
        if table.is_empty() {
            return NO_REAL;
        }
        let h = if VipFlags(svc.flags).has(VipFlags::HASH_PORTS) {
            flow_hash(key, FLOW_SEED)
        } else {
            src_hash(key, FLOW_SEED)
        };
        table[(h % table.len() as u32) as usize]
    }

    /// Adds another provision's entries (a later step's changes).
    pub fn merge(&mut self, other: &Provision) {
        self.services
            .retain(|s| other.services.iter().all(|o| o.id != s.id));
        self.services.extend(other.services.iter().cloned());
        self.reals
            .retain(|(id, _)| other.reals.iter().all(|(o, _)| o != id));
        self.reals.extend(other.reals.iter().cloned());
        self.flows.extend(other.flows.iter().cloned());
        self.nat_rev.extend(other.nat_rev.iter().cloned());
        self.tx_ports.extend(other.tx_ports.iter().cloned());
        self.filter_only.extend(other.filter_only.iter().cloned());
        self.clock = other.clock.or(self.clock);
    }

    /// Writes everything into the maps (on top of what is there).
    pub fn apply(&self, bpf: &mut Bpf) -> Result<()> {
        self.apply_config(bpf)?;
        self.apply_state(bpf)
    }

    /// Writes what lb-ctl owns: reals, services and their tables, VIPS, the address
    /// filters and TX_PORTS. Idempotent.
    pub fn apply_config(&self, bpf: &mut Bpf) -> Result<()> {
        if let Some(st) = self.settings {
            bpf.put_settings(st)?;
        }
        if let Some(t) = self.clock {
            bpf.put_clock(t)?;
        }
        for (id, r) in &self.reals {
            bpf.put_real(*id, *r)?;
            if r.mode == ForwardMode::Nat as u8 {
                bpf.set_filter_bit(true, filter_slot(&r.addr))?;
            }
        }
        let mut per_vip: BTreeMap<(lb_common::RawAddr, u8), u32> = BTreeMap::new();
        for s in &self.services {
            let table = self.table(s);
            let base = s.id * TABLE_STRIDE;
            bpf.put_table(base, &table)?;
            let (sched, reals) = match &s.table {
                Table::Sched { kind, reals, .. } => (*kind, reals.clone()),
                _ => (SchedKind::Maglev, Vec::new()),
            };
            let reals_base = base + table.len() as u32;
            bpf.put_table(reals_base, &reals)?;
            bpf.put_service(
                s.key(),
                Service {
                    id: s.id,
                    flags: VipFlags(s.flags),
                    sched: sched as u8,
                    list_gen_le: [0; 3],
                    table_base: base,
                    table_len: table.len() as u32,
                    reals_base,
                    reals_len: reals.len() as u32,
                    persist_group: s.id,
                    ..Default::default()
                },
            )?;
            let k = s.key();
            *per_vip.entry((k.addr, k.family)).or_default() += 1;
            bpf.set_filter_bit(false, filter_slot(&k.addr))?;
        }
        for ((addr, family), n) in per_vip {
            bpf.put_vip(
                VipKey {
                    addr,
                    family,
                    _pad: [0; 3],
                },
                n,
            )?;
        }
        for a in &self.filter_only {
            bpf.set_filter_bit(false, filter_slot(&to_raw(*a).0))?;
        }
        for p in &self.tx_ports {
            bpf.put_tx_port(*p)?;
        }
        Ok(())
    }

    /// Writes what the data path owns: established flows and NAT reverse entries.
    pub fn apply_state(&self, bpf: &mut Bpf) -> Result<()> {
        for (k, v) in &self.flows {
            bpf.put_flow(*k, *v)?;
        }
        for (k, v) in &self.nat_rev {
            bpf.put_nat_rev(*k, *v)?;
        }
        Ok(())
    }
}
