//! lb-ctl: the controller of lb, the XDP layer-4 load balancer.
//!
//! Like ipvsadm, every run is a short-lived process and the kernel holds the state: the
//! program, its maps and its links are pinned under a bpffs directory ([`loader`]), and the
//! admin commands read and write those maps ([`maps`]). A change is checked in full against
//! an [`ipvs::model::Snapshot`] by pure planners ([`ipvs`]) that return the map writes in a
//! safe order; nothing is written for a refused change.
//!
//! Module map (folders are what a daemon builds on):
//! - [`ipvs`]: the typed model (services, reals, snapshot, ops, validation errors), the
//!   planners ([`ipvs::service`], [`ipvs::real`]) and scheduler tables (`ipvs::table`).
//!   Pure.
//! - [`maps`]: the only map I/O: snapshots, performing plans, statistics, settings,
//!   counters, and the sweep's passes ([`maps::sweep`]); raw system calls in [`maps::sys`].
//! - [`status`]: what lb is doing, as typed values gathered once from the maps (listings,
//!   connections, counters) for every renderer: ipvsadm text, JSON, a metrics exporter.
//! - [`sweep`]: the expiry decisions of IPVS's connection timers. Pure, time passed in.
//! - [`rate`]: IPVS's rate estimator (`-L --rate`): its arithmetic, pure, and the thread
//!   of the resident process that ticks it.
//! - [`sweeper`]: the resident process that runs the expiry passes, and the neighbour
//!   follower, while lb is loaded.
//! - [`cli`]: ipvsadm's command line ([`cli::ipvsadm`]), output ([`cli::show`]), JSON
//!   ([`cli::json`], docs/json.md) and running a command ([`cli::ctl`]).
//! - [`loader`]: load, pin, attach, detach.
//! - [`nexthop`]: a real's egress interface and MACs, by [`rtnl`].
//! - [`rtnl`]: rtnetlink requests (route get, link get, neighbour dump and events).
//! - [`neigh`]: neighbour following: the resident process keeps each real's next-hop MAC
//!   current (pure decisions in [`neigh::plan`], the thread in [`neigh::follow`]).
//! - [`install`]: `lb-ctl install` / `uninstall`: the executable, the `ipvsadm` link,
//!   manual pages and completions under a prefix.
//!
//! Room to grow, one folder each: `config/` (config files into the typed model),
//! `check/` (health checkers), `vrrp/`, `metrics/` (an exporter over [`status`]),
//! `daemon/` (the long-running process tying them together).
#![warn(missing_docs)]

pub mod cli;
pub mod install;
pub mod ipvs;
pub mod loader;
pub mod maps;
pub mod neigh;
pub mod nexthop;
pub mod rate;
pub mod rtnl;
pub mod status;
pub mod sweep;
pub mod sweeper;
