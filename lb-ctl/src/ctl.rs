//! Running an admin command against the pinned maps: read a snapshot, plan, apply; or
//! gather what a listing shows.

use crate::ipvsadm::IpvsCommand;
use crate::maps::{self, Maps, MapsError};
use crate::model::{ModelError, Op, ServiceAddr, real_endpoint};
use crate::show::{self, ListOptions, ListedReal, ListedService};
use crate::{nexthop, real, service};
use lb_common::{ForwardMode, SchedKind, VipFlags};
use std::path::Path;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The change was refused; nothing was written.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The maps could not be opened, read or written.
    #[error(transparent)]
    Maps(#[from] MapsError),
    /// The pin directory could not be locked.
    #[error("cannot lock {0}")]
    Lock(std::path::PathBuf, #[source] std::io::Error),
}

/// Help text of the ipvsadm-style commands (printed by `-h` and `lb-ctl --help`).
pub const IPVSADM_HELP: &str = "\
ipvsadm-compatible commands (lb-ctl -A ..., or invoked as `ipvsadm`):
  -A|--add-service  -t|-u VIP:PORT [-s mh] [-b mh-port]   add a virtual service
  -E|--edit-service -t|-u VIP:PORT [-s mh] [-b mh-port]   change its scheduler flags
  -D|--delete-service -t|-u VIP:PORT                      delete it and its reals
  -a|--add-server  -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m] [-w WEIGHT]
  -e|--edit-server -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m] [-w WEIGHT]
  -d|--delete-server -t|-u VIP:PORT -r RIP[:PORT]
  -L|-l|--list [-n] [--stats] [--exact] [-t|-u VIP:PORT]
  -C|--clear                                              delete every service
  -Z|--zero [-t|-u VIP:PORT]                              zero the traffic counters
  -h|--help

  -g gatewaying (direct routing, the default)  -i ipip (tunnel)  -m masquerading (NAT)
  -w weight 0..65535 (default 1; 0 = quiescent: no new flows)
  -s scheduler: only mh (Maglev hashing) so far; it is the default
  -b mh-port: hash addresses and ports (default: the client address only, as IPVS mh)
  IPv6 addresses in brackets: [2001:db8::1]:80. A VIP without a port is an all-port
  service; a NAT real without a port uses the service's port.

Examples:
  lb-ctl -A -t 198.18.2.1:80 -s mh -b mh-port
  lb-ctl -a -t 198.18.2.1:80 -r 198.18.1.11:80 -g -w 1
  lb-ctl -a -t 198.18.2.1:80 -r 198.18.1.12:8080 -m -w 2
  lb-ctl -a -u [2001:db8::1]:53 -r [2001:db8:1::11] -i
  lb-ctl -L -n
  lb-ctl -L -n --stats
  lb-ctl -d -t 198.18.2.1:80 -r 198.18.1.11
  lb-ctl -C
";

/// Version line (`-v`).
pub const VERSION: &str = concat!(
    "lb-ctl v",
    env!("CARGO_PKG_VERSION"),
    " (ipvsadm command syntax, IPVS v1.2.1 listing format)\n"
);

fn plan_and_apply(
    dir: &Path,
    plan: impl FnOnce(&crate::model::Snapshot) -> Result<Vec<Op>, ModelError>,
) -> Result<(), CtlError> {
    let mut maps = Maps::open(dir)?;
    let _lock = crate::sys::lock_dir(dir).map_err(|e| CtlError::Lock(dir.to_path_buf(), e))?;
    let snap = maps.snapshot()?;
    let ops = plan(&snap)?;
    maps.apply(&ops)?;
    Ok(())
}

/// Runs one ipvsadm command against the maps pinned under `dir`; returns its output.
pub fn run_ipvsadm(dir: &Path, cmd: &IpvsCommand) -> Result<String, CtlError> {
    let mut resolve = nexthop::resolve;
    match cmd {
        IpvsCommand::AddService(s) => plan_and_apply(dir, |snap| service::add(snap, s))?,
        IpvsCommand::EditService(s) => plan_and_apply(dir, |snap| service::edit(snap, s))?,
        IpvsCommand::DelService(a) => plan_and_apply(dir, |snap| service::delete(snap, a))?,
        IpvsCommand::AddReal(r) => plan_and_apply(dir, |snap| real::add(snap, r, &mut resolve))?,
        IpvsCommand::EditReal(r) => plan_and_apply(dir, |snap| real::edit(snap, r, &mut resolve))?,
        IpvsCommand::DelReal(r) => plan_and_apply(dir, |snap| real::delete(snap, r))?,
        IpvsCommand::Clear => plan_and_apply(dir, |snap| Ok(service::clear(snap)))?,
        IpvsCommand::Zero(a) => plan_and_apply(dir, |snap| service::zero(snap, a.as_ref()))?,
        IpvsCommand::List {
            service,
            stats,
            exact,
        } => return list(dir, service.as_ref(), *stats, *exact),
        IpvsCommand::Help => return Ok(IPVSADM_HELP.to_string()),
        IpvsCommand::Version => return Ok(VERSION.to_string()),
    }
    Ok(String::new())
}

/// `-L -n [--stats] [--exact] [-t|-u VIP:PORT]`.
pub fn list(
    dir: &Path,
    only: Option<&ServiceAddr>,
    stats: bool,
    exact: bool,
) -> Result<String, CtlError> {
    let maps = Maps::open(dir)?;
    let snap = maps.snapshot()?;
    if let Some(a) = only {
        snap.service(a).ok_or(ModelError::NoSuchService(*a))?;
    }
    // ActiveConn counts the flows in FLOWS pointing at each real; InActConn stays 0 until
    // the data path tracks TCP states (FIN/RST move a flow from active to inactive).
    let flows = if stats {
        Default::default()
    } else {
        maps.flows_per_real()?
    };
    let mut listed = Vec::new();
    for (k, s) in &snap.services {
        let Some(addr) = ServiceAddr::from_key(k) else {
            continue;
        };
        if only.is_some_and(|a| *a != addr) {
            continue;
        }
        let mut reals = Vec::new();
        for (id, r) in snap.reals_of(s.id) {
            reals.push(ListedReal {
                ep: real_endpoint(r),
                mode: ForwardMode::from_u8(r.mode).unwrap_or(ForwardMode::Dr),
                weight: r.weight,
                active: flows.get(&(*id, s.id)).copied().unwrap_or(0),
                inactive: 0,
                stats: if stats {
                    maps.real_traffic(*id)?
                } else {
                    Default::default()
                },
            });
        }
        listed.push(ListedService {
            addr,
            sched: SchedKind::from_u8(s.sched).map_or("?", SchedKind::name),
            hash_ports: s.flags.has(VipFlags::HASH_PORTS),
            stats: if stats {
                maps.svc_traffic(s.id)?
            } else {
                Default::default()
            },
            reals,
        });
    }
    show::sort(&mut listed);
    Ok(show::list(
        &listed,
        ListOptions {
            stats,
            exact,
            header: only.is_none(),
        },
    ))
}

/// `lb-ctl counters`.
pub fn counters(dir: &Path) -> Result<String, CtlError> {
    Ok(show::counters(&maps::read_counters(dir)?))
}
