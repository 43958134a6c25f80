//! The IPVS model: what a service and its reals are, and the pure planners that turn an
//! ipvsadm-style change into map writes.
//!
//! A change is checked in full against a [`model::Snapshot`] (what the maps hold) by a
//! planner ([`service`], [`real`]) that returns the [`model::Op`]s to perform in a safe
//! order; nothing is written for a refused change. [`table`] builds the scheduler tables
//! and finds room for them in SCHED_TABLE. No I/O here: [`crate::maps`] reads snapshots and performs plans.

pub mod model;
pub mod real;
pub mod service;
pub mod table;
