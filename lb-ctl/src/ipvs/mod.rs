//! The IPVS model: what a service and its reals are, and the pure planners that turn an
//! ipvsadm-style change into map writes.
//!
//! A change is checked in full against a [`model::Snapshot`] (what the maps hold) by a
//! planner ([`service`], [`real`]) that returns the [`model::Op`]s to perform in a safe
//! order; nothing is written for a refused change. [`model::Snapshot::apply`] performs a
//! plan in memory, so plans chain (plan, apply, plan the next change against the result)
//! without touching a map. `table` builds the scheduler tables
//! and finds room for them in SCHED_TABLE. No I/O here: [`crate::maps`] reads snapshots and performs plans.

pub mod model;
pub mod real;
pub mod service;
pub(crate) mod table;

#[cfg(test)]
mod tests {
    use super::model::{
        Endpoint, Op, Proto, RealRef, RealSpec, ServiceAddr, ServiceSpec, Snapshot, Trashed,
    };
    use crate::nexthop::{NextHop, NextHopError};
    use lb_common::consts::SCHED_TABLE_SLOTS;
    use lb_common::{ForwardMode, Real, SchedKind, Service, ServiceKey};
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    /// The maps a snapshot is read from, kept whole (SCHED_TABLE included), with the
    /// reading `Maps::snapshot` does.
    #[derive(Default)]
    struct FakeMaps {
        services: Vec<(ServiceKey, Service)>,
        reals: BTreeMap<u32, Real>,
        table: BTreeMap<u32, u32>,
        trash: BTreeMap<u32, Trashed>,
    }

    impl FakeMaps {
        fn write(&mut self, ops: &[Op]) {
            for op in ops {
                match op {
                    Op::PutService(k, s) => {
                        self.services.retain(|(x, _)| x != k);
                        self.services.push((*k, *s));
                    }
                    Op::DelService(k) => self.services.retain(|(x, _)| x != k),
                    Op::PutReal(id, r) => {
                        self.reals.insert(*id, *r);
                    }
                    Op::PutTrash(id, t) => {
                        self.trash.insert(*id, *t);
                    }
                    Op::ClearTrash(id) => {
                        self.trash.remove(id);
                    }
                    Op::WriteTable { base, slots } => {
                        assert!(base + slots.len() as u32 <= SCHED_TABLE_SLOTS);
                        for (i, id) in slots.iter().enumerate() {
                            self.table.insert(base + i as u32, *id);
                        }
                    }
                    _ => {}
                }
            }
        }

        fn snapshot(&self) -> Snapshot {
            let orders = self
                .services
                .iter()
                .map(|(_, s)| {
                    let ids = (s.reals_base..s.reals_base + s.reals_len)
                        .map(|i| self.table[&i])
                        .collect();
                    (s.id, ids)
                })
                .collect();
            Snapshot {
                services: self.services.clone(),
                reals: self.reals.iter().map(|(i, r)| (*i, *r)).collect(),
                orders,
                trashed: self.trash.clone(),
            }
        }
    }

    fn nh(_: IpAddr) -> Result<NextHop, NextHopError> {
        Ok(NextHop {
            ifindex: 2,
            ifname: "d0".into(),
            local_addr: Some("198.18.0.1".parse().unwrap()),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: Some([2, 0, 0, 0, 0, 2]),
            gateway: None,
        })
    }

    fn sorted(mut s: Snapshot) -> Snapshot {
        s.services.sort_by_key(|(_, v)| v.id);
        s.reals.sort_by_key(|(i, _)| *i);
        s
    }

    /// Plans chained in memory equal plans made one at a time against the maps: the
    /// same ops, and the same snapshot at the end.
    #[test]
    fn plans_chain_through_snapshot_apply() {
        let addr = |vip: &str, port| ServiceAddr {
            proto: Proto::Tcp,
            vip: Endpoint {
                ip: vip.parse().unwrap(),
                port,
            },
        };
        let web = addr("198.18.2.1", 80);
        let dns = addr("198.18.2.1", 53);
        let real = |svc, ip: &str, w| RealSpec {
            service: svc,
            addr: ip.parse().unwrap(),
            port: None,
            mode: ForwardMode::Dr,
            weight: w,
            u_threshold: 0,
            l_threshold: 0,
        };
        type Plan = Box<dyn Fn(&Snapshot) -> Vec<Op>>;
        let changes: Vec<Plan> = vec![
            Box::new(move |s| {
                let spec = ServiceSpec {
                    mh_size: Some(251),
                    ..ServiceSpec::with_sched(web, SchedKind::Maglev)
                };
                super::service::add(s, &spec).unwrap()
            }),
            Box::new(move |s| super::real::add(s, &real(web, "198.18.1.11", 1), &mut nh).unwrap()),
            Box::new(move |s| super::real::add(s, &real(web, "198.18.1.12", 2), &mut nh).unwrap()),
            Box::new(move |s| super::service::add(s, &ServiceSpec::new(dns)).unwrap()),
            Box::new(move |s| super::real::add(s, &real(dns, "198.18.1.11", 1), &mut nh).unwrap()),
            Box::new(move |s| super::real::edit(s, &real(web, "198.18.1.11", 0), &mut nh).unwrap()),
            Box::new(move |s| {
                let gone = RealRef {
                    service: web,
                    addr: "198.18.1.12".parse().unwrap(),
                    port: None,
                };
                super::real::delete(s, &gone).unwrap()
            }),
            Box::new(move |s| {
                let spec = ServiceSpec::with_sched(web, SchedKind::Wrr);
                super::service::edit(s, &spec).unwrap()
            }),
            Box::new(move |s| super::service::delete(s, &dns).unwrap()),
        ];
        let mut maps = FakeMaps::default();
        let mut chained = Snapshot::default();
        let mut plans = Vec::new();
        for change in &changes {
            let from_maps = change(&maps.snapshot());
            let from_chain = change(&chained);
            assert_eq!(
                from_chain, from_maps,
                "the chain planned what the maps would"
            );
            chained.apply(&from_chain);
            maps.write(&from_maps);
            plans.push(from_chain);
            assert_eq!(
                format!("{:?}", sorted(chained.clone())),
                format!("{:?}", sorted(maps.snapshot()))
            );
        }
        // Written in order at the end, the chained plans give the same maps.
        let mut later = FakeMaps::default();
        for p in &plans {
            later.write(p);
        }
        assert_eq!(
            format!("{:?}", sorted(later.snapshot())),
            format!("{:?}", sorted(chained.clone()))
        );
        let web_svc = chained.service(&web).unwrap();
        assert_eq!(chained.ordered_reals(web_svc.id).len(), 1);
        assert!(chained.service(&dns).is_none());
    }
}
