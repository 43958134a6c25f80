//! The neighbour follower: a thread of the resident process (`crate::sweeper::run`) that keeps
//! every real's next-hop MAC current. Once a second it reads the configured reals, resolves
//! the route of those it has none for, and probes the next hop of those still
//! `NO_NEIGHBOUR`; between ticks it applies the kernel's neighbour events; every
//! [`DUMP_EVERY`] ticks, and after events were lost (ENOBUFS), it reads the whole neighbour
//! table again. A real is written under the pin directory's lock, re-read there and written
//! only if it is still the same real ([`Followed::is`]), and only its next-hop fields
//! ([`plan::rewrite`]), so a concurrent `-e` or `-d` is never undone.

use super::plan::{self, Followed};
use crate::maps::{Maps, MapsError};
use crate::nexthop::{self, NextHop, NextHopError};
use crate::rtnl::{self, Events, Neighbour, Subscription};
use lb_common::Real;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often unresolved reals are probed and unrouted ones routed again.
const TICK: Duration = Duration::from_secs(1);
/// Ticks between two full reads of the neighbour table (repairing anything missed).
const DUMP_EVERY: u32 = 10;

/// Why one tick of the follower failed (it retries at the next).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The maps could not be read or written.
    #[error(transparent)]
    Maps(#[from] MapsError),
    /// Netlink failed.
    #[error("neighbour table (rtnetlink)")]
    Netlink(#[source] io::Error),
    /// The pin directory's lock could not be taken.
    #[error("cannot lock the pin directory")]
    Lock(#[source] io::Error),
}

/// Starts the follower for the lb pinned under `dir`; it runs for the life of the process,
/// reporting each failed tick to stderr.
pub fn spawn(dir: &Path) -> io::Result<std::thread::JoinHandle<()>> {
    let mut f = Follower {
        dir: dir.to_path_buf(),
        maps: None,
        sub: None,
        followed: Vec::new(),
        ticks: 0,
        lost: true,
    };
    std::thread::Builder::new()
        .name("neigh".into())
        .spawn(move || {
            loop {
                if let Err(e) = f.tick() {
                    eprintln!("lb-ctl sweep: neighbour follower: {}", chain(&e));
                    // Start again from a fresh socket and a full read.
                    f.sub = None;
                    std::thread::sleep(TICK);
                }
            }
        })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

struct Follower {
    dir: PathBuf,
    maps: Option<Maps>,
    sub: Option<Subscription>,
    /// The configured reals as last read, with what the follower knows of them.
    followed: Vec<(Followed, Real)>,
    ticks: u32,
    /// Events may have been missed: read the table in full.
    lost: bool,
}

impl Follower {
    fn tick(&mut self) -> Result<(), FollowError> {
        let start = Instant::now();
        // Subscribed before the dump, so nothing falls between the two.
        if self.sub.is_none() {
            self.sub = Some(Subscription::open().map_err(FollowError::Netlink)?);
            self.lost = true;
        }
        self.refresh()?;
        if self.lost || self.ticks.is_multiple_of(DUMP_EVERY) {
            self.lost = false;
            for n in rtnl::neighbours().map_err(FollowError::Netlink)? {
                self.on_neighbour(&n)?;
            }
        }
        self.ticks = self.ticks.wrapping_add(1);
        while let Some(left) = TICK.checked_sub(start.elapsed()) {
            let Some(sub) = self.sub.as_mut() else { break };
            match sub.recv(left).map_err(FollowError::Netlink)? {
                Events::Lost => {
                    self.lost = true;
                    break;
                }
                Events::Changed(ns) => {
                    for n in &ns {
                        self.on_neighbour(n)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn maps(&mut self) -> Result<&Maps, FollowError> {
        if self.maps.is_none() {
            self.maps = Some(Maps::open(&self.dir)?);
        }
        Ok(self.maps.as_ref().expect("opened above"))
    }

    /// Reads the configured reals again; routes those without a route (every real, every
    /// [`DUMP_EVERY`] ticks, so a changed route is followed too); probes the next hop of
    /// those still unresolved. A real whose way out someone else changed (`-e`) is routed
    /// afresh: what the follower knew of it is stale.
    fn refresh(&mut self) -> Result<(), FollowError> {
        let reals = self.maps()?.active_reals()?;
        let reroute_all = self.ticks.is_multiple_of(DUMP_EVERY);
        let mut next = Vec::with_capacity(reals.len());
        for (id, r) in reals {
            let known = self.followed.iter().find(|(f, _)| f.id == id && f.is(&r));
            let f = match known {
                Some((f, seen)) if plan::same_way_out(seen, &r) && !reroute_all => f.clone(),
                _ => Followed::of(id, &r),
            };
            next.push((f, r));
        }
        self.followed = next;
        for i in 0..self.followed.len() {
            if self.followed[i].0.route.is_none() {
                let addr = self.followed[i].0.addr;
                match nexthop::route(addr) {
                    Ok(Some(nh)) => {
                        self.followed[i].0.route = Some(nh.clone());
                        if plan::unresolved(&self.followed[i].1) {
                            self.write(i, &nh)?;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => report(addr, &e),
                }
            }
            let (f, r) = &self.followed[i];
            if plan::unresolved(r)
                && let Some(nh) = &f.route
            {
                nexthop::probe(nh.neighbour_of(f.addr), nh.ifindex);
            }
        }
        Ok(())
    }

    fn on_neighbour(&mut self, n: &Neighbour) -> Result<(), FollowError> {
        let followed: Vec<Followed> = self.followed.iter().map(|(f, _)| f.clone()).collect();
        for (i, nh) in plan::touched(&followed, n) {
            // Nothing new for the real as last read: no lock taken.
            if plan::rewrite(&self.followed[i].1, &nh).is_some() {
                self.write(i, &nh)?;
            }
        }
        Ok(())
    }

    /// Writes followed real `i` toward `nh`, under the lock, if it is still the same real
    /// and its way out is still as the follower last read it (else someone changed it
    /// since, and the next tick reads and routes it afresh).
    fn write(&mut self, i: usize, nh: &NextHop) -> Result<(), FollowError> {
        let _lock = crate::maps::sys::lock_dir(&self.dir).map_err(FollowError::Lock)?;
        let (f, seen) = self.followed[i].clone();
        let maps = self.maps.as_mut().expect("opened by refresh");
        let now = maps.real(f.id)?;
        if !f.is(&now) || !plan::same_way_out(&seen, &now) {
            return Ok(());
        }
        if let Some(w) = plan::rewrite(&now, nh) {
            let mut ops = Vec::new();
            if nh.routed() {
                // The redirect target first: the real is usable as soon as it is written.
                ops.push(crate::ipvs::model::Op::AddTxPort(nh.ifindex));
            }
            ops.push(crate::ipvs::model::Op::PutReal(f.id, w));
            maps.apply(&ops)?;
            self.followed[i].1 = w;
        } else {
            self.followed[i].1 = now;
        }
        Ok(())
    }
}

fn report(addr: std::net::IpAddr, e: &NextHopError) {
    eprintln!(
        "lb-ctl sweep: neighbour follower: real server {addr}: {}",
        chain(e)
    );
}
