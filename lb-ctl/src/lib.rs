//! lb-ctl: the controller of lb, the XDP layer-4 load balancer.
//!
//! Like ipvsadm, every run is a short-lived process and the kernel holds the state: the
//! program, its maps and its links are pinned under a bpffs directory ([`loader`]), and the
//! admin commands read and write those maps ([`maps`]). A change is checked in full against
//! a [`model::Snapshot`] by pure planners ([`service`], [`real`]) that return the map writes
//! in a safe order; nothing is written for a refused change.
//!
//! Module map: [`loader`] (load, pin, attach, detach), [`maps`] (the only map I/O, with
//! [`flows`]: the per-family flow tables as one),
//! [`model`] (types, snapshot, ops, validation errors), [`service`] / [`real`] (planners),
//! [`table`] (scheduler tables per `lb_common::sched` and SCHED_TABLE regions),
//! [`nexthop`] (egress interface and MACs via `ip -j`), [`ipvsadm`] (ipvsadm's command
//! line), [`show`] (ipvsadm's output), [`ctl`] (runs a command), [`sweep`] (CLOCK and the
//! expiry of connections and templates, IPVS's timers), [`sys`] (the few raw system
//! calls aya 0.14 lacks), [`mapped`] (the big arrays through mmap), [`batch`] (batched array
//! reads and writes, where a map cannot be mapped).
#![warn(missing_docs)]

pub mod batch;
pub mod ctl;
pub mod flows;
pub mod ipvsadm;
pub mod loader;
pub mod mapped;
pub mod maps;
pub mod model;
pub mod nexthop;
pub mod real;
pub mod service;
pub mod show;
pub mod sweep;
pub mod sys;
pub mod table;
