//! Running an admin command against the pinned maps: read a snapshot, plan, apply; or
//! gather what a listing shows.

use crate::cli::ipvsadm::{IpvsCommand, ListFormat};
use crate::cli::json;
use crate::cli::names::{Names, Numeric, System};
use crate::cli::show::{self, ListOptions};
use crate::cli::{restore, save};
use crate::ipvs::model::{ModelError, Op, SCHED_FLAGS, ServiceAddr, sched_names};
use crate::ipvs::{real, service};
use crate::maps::{self, Maps, MapsError};
use crate::nexthop;
use crate::status::{self, Gather};
use lb_common::SchedKind;
use lb_common::conn::{Settings, Timeouts};
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
    /// A bad `lb-ctl sysctl` request.
    #[error("{0}")]
    Sysctl(String),
    /// The pin directory could not be locked.
    #[error("cannot lock {0}")]
    Lock(std::path::PathBuf, #[source] std::io::Error),
    /// `-R` could not read its standard input.
    #[error("cannot read the commands from stdin")]
    Stdin(#[source] std::io::Error),
    /// A line of a `-R` stream was refused; nothing was written.
    #[error(transparent)]
    Restore(#[from] Box<restore::RestoreError>),
}

/// `names` for a listing: numbers with `-n`, the system's names without.
fn names_for(numeric: bool) -> &'static dyn Names {
    if numeric { &Numeric } else { &System }
}

/// Help text of the ipvsadm-style commands (printed by `-h` and `lb-ctl --help`):
/// `HELP_TEMPLATE` with the scheduler and flag names filled in from their tables.
pub fn ipvsadm_help() -> String {
    let mut flags: Vec<String> = Vec::new();
    let mut aliases: Vec<&str> = Vec::new();
    for kind in SchedKind::ALL {
        let names: Vec<&str> = SCHED_FLAGS
            .iter()
            .filter(|f| f.sched == kind)
            .map(|f| f.name)
            .collect();
        if !names.is_empty() {
            flags.push(format!("{} ({})", names.join(","), kind.name()));
        }
    }
    for f in &SCHED_FLAGS {
        if !aliases.contains(&f.alias) {
            aliases.push(f.alias);
        }
    }
    HELP_TEMPLATE
        .replace("{SCHEDULERS}", &sched_names())
        .replace(
            "{FLAGS}",
            &format!("{}; {} as ipvsadm", flags.join(" / "), aliases.join(", ")),
        )
}

/// [`ipvsadm_help`] before the names are filled in.
const HELP_TEMPLATE: &str = "\
ipvsadm-compatible commands (lb-ctl -A ..., or invoked as `ipvsadm`):
  -A|--add-service  -t|-u VIP:PORT [-s SCHED] [-b FLAGS] [-p [TIMEOUT]] [-M MASK] [-o]
                    [--persist-group VIP:PORT] [--mh-size PRIME]
  -E|--edit-service (same options; those given replace the old ones)
  -D|--delete-service -t|-u VIP:PORT                      delete it and its reals
  -a|--add-server  -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m] [-w WEIGHT] [-x UTHR] [-y LTHR]
                   [--tun-type ipip]
  -e|--edit-server -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m] [-w WEIGHT] [-x UTHR] [-y LTHR]
  -d|--delete-server -t|-u VIP:PORT -r RIP[:PORT]
  -L|-l|--list [-n] [--stats|--rate|--thresholds|--persistent-conn|--tun-info] [--exact] [--nosort|--sort]
               [-t|-u VIP:PORT] [--json]
  -L -c [-n] [--persistent-conn] [--json]                 connections and templates
  -L --timeout [--json]                                   Timeout (tcp tcpfin udp)
  -L --daemon                                             sync daemons (none with lb)
  -S|--save [-n]                                          the table as ipvsadm commands
  -R|--restore                                            commands from stdin, all or none
  --set TCP TCPFIN UDP                                    timeouts in seconds (0 = keep)
  -C|--clear                                              delete every service
  -Z|--zero [-t|-u VIP:PORT]                              zero the traffic counters
  -h|--help   -v|--version

  -s {SCHEDULERS} (default wlc, as ipvsadm)
  -b {FLAGS}
  -p persistence, TIMEOUT seconds (default 360); -M client netmask (IPv6: prefix length)
  -o one-packet scheduling (UDP: every datagram scheduled on its own)
  --persist-group VIP:PORT  share that service's persistence templates (as one IPVS
      firewall-mark service for several ports, e.g. http + https); same protocol
  --mh-size PRIME  Maglev table size (default 65537)
  -g gatewaying (direct routing, the default)  -i ipip (tunnel)  -m masquerading (NAT)
  -w weight 0..65535 (default 1; 0 = quiescent: no new flows)
  -x/-y upper/lower connection thresholds (0 = none; overloaded from -x until below -y)
  -n numeric: without it addresses and ports print as host and service names, as
  ipvsadm; names are also accepted on input (www.example.com:http, IPv4 hosts).
  IPv6 addresses in brackets: [2001:db8::1]:80. A VIP without a port is an all-port
  service; a NAT real without a port uses the service's port. -L sorts reals as ipvsadm
  does; --nosort shows IPVS's list order (newest first), which schedulers follow.
  -R reads ipvsadm commands, one per line (as -S writes them; `#` lines and blank lines
  skipped), checks every line against the state the lines before it leave, and changes
  nothing if one is refused (the message names the line).
  A real may be added while it is down: lb asks the kernel to resolve its next hop and
  sends to it once the MAC is known (until then its packets are dropped and counted
  drop_no_neighbour). Connections expire, --rate is estimated (every 2 s) and next hops
  are followed only while `lb-ctl sweep` runs (IPVS's timers; `lb-ctl load` starts it);
  settings:
  `lb-ctl sysctl expire_nodest_conn|expire_quiescent_template 0|1`.
  Refused, in one line, with what to use instead: -f/-6 firewall marks (XDP runs before
  netfilter; use --persist-group), --start-daemon/--stop-daemon/--syncid/--mcast-*
  (connection sync belongs to the director daemon), --pe, --tun-type gue|gre and the
  --tun-port/--tun-*csum options (lb's tunnels are IPIP).
  Invoked as `ipvsadm`, errors are ipvsadm's texts (lb's detail after them) and exit
  statuses: 2 for a refused command line, 255 for an unknown option or a change IPVS
  would refuse (\"Service already exists\", \"No such destination\", ...).

Examples:
  lb-ctl -A -t 198.18.2.1:80 -s mh -b mh-port
  lb-ctl -a -t 198.18.2.1:80 -r 198.18.1.11:80 -g -w 1
  lb-ctl -a -t 198.18.2.1:80 -r 198.18.1.12:8080 -m -w 2 -x 1000 -y 800
  lb-ctl -A -t 198.18.2.1:443 -s wrr -p 600 -M 255.255.255.0 --persist-group 198.18.2.1:80
  lb-ctl -a -u [2001:db8::1]:53 -r [2001:db8:1::11] -i
  lb-ctl -L -n
  lb-ctl -L -n -c
  lb-ctl --set 900 60 300
  lb-ctl -S -n > /etc/lb/rules          # save
  lb-ctl -C && lb-ctl -R < /etc/lb/rules # restore
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
    plan: impl FnOnce(&crate::ipvs::model::Snapshot) -> Result<Vec<Op>, ModelError>,
) -> Result<(), CtlError> {
    let mut maps = Maps::open(dir)?;
    let _lock =
        crate::maps::sys::lock_dir(dir).map_err(|e| CtlError::Lock(dir.to_path_buf(), e))?;
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
            format,
            nosort,
            json,
            numeric,
        } => {
            let opts = ListOptions {
                stats: *stats,
                exact: *exact,
                header: service.is_none(),
                format: *format,
                nosort: *nosort,
            };
            return list(dir, service.as_ref(), opts, *json, names_for(*numeric));
        }
        IpvsCommand::ListConns {
            persistent_conn,
            json,
            numeric,
        } => return list_conns(dir, *persistent_conn, *json, names_for(*numeric)),
        // No sync daemon runs with lb: ipvsadm's `list_daemon` prints nothing then.
        IpvsCommand::ListDaemon => return Ok(String::new()),
        IpvsCommand::Save { numeric } => return save_rules(dir, names_for(*numeric)),
        IpvsCommand::Restore => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(CtlError::Stdin)?;
            restore(dir, &text, &System)?;
        }
        IpvsCommand::ListTimeout { json } => {
            let t = effective_timeouts(&maps::read_settings(dir)?.timeouts);
            return Ok(if *json {
                json::timeouts(t.tcp_s, t.tcpfin_s, t.udp_s)
            } else {
                show::timeouts(t.tcp_s, t.tcpfin_s, t.udp_s)
            });
        }
        IpvsCommand::SetTimeout([tcp, fin, udp]) => {
            let _lock = crate::maps::sys::lock_dir(dir)
                .map_err(|e| CtlError::Lock(dir.to_path_buf(), e))?;
            let mut s = maps::read_settings(dir)?;
            set_timeouts(&mut s, [*tcp, *fin, *udp]);
            maps::write_settings(dir, &s)?;
        }
        IpvsCommand::Help => return Ok(ipvsadm_help()),
        IpvsCommand::Version => return Ok(VERSION.to_string()),
    }
    Ok(String::new())
}

/// Timeouts with zeros replaced by IPVS's defaults.
pub(crate) fn effective_timeouts(t: &Timeouts) -> Timeouts {
    let d = Timeouts::default();
    let or = |v: u32, x: u32| if v == 0 { x } else { v };
    Timeouts {
        tcp_s: or(t.tcp_s, d.tcp_s),
        tcpfin_s: or(t.tcpfin_s, d.tcpfin_s),
        udp_s: or(t.udp_s, d.udp_s),
    }
}

/// `-L -n [--stats|--rate|--thresholds|--persistent-conn] [--exact] [--nosort] [-t|-u VIP:PORT]`
/// (or `--json`: every field, whatever the columns).
pub fn list(
    dir: &Path,
    only: Option<&ServiceAddr>,
    opts: ListOptions,
    json: bool,
    names: &dyn Names,
) -> Result<String, CtlError> {
    let maps = Maps::open(dir)?;
    let snap = maps.snapshot()?;
    if let Some(a) = only {
        snap.service(a).ok_or(ModelError::NoSuchService(*a))?;
    }
    let what = if json {
        Gather {
            stats: true,
            rates: true,
            conns: true,
            next_hops: true,
        }
    } else {
        // --stats wins over --rate, as in ipvsadm's `print_title`.
        let rates = !opts.stats && opts.format == ListFormat::Rate;
        Gather {
            stats: opts.stats,
            rates,
            conns: !opts.stats && !rates,
            next_hops: false,
        }
    };
    let mut listed = status::services(&maps, &snap, only, what)?;
    status::sort(&mut listed, !opts.nosort);
    Ok(if json {
        json::services(&listed, &status::gather::tables(dir)?)
    } else {
        show::list(&listed, opts, names)
    })
}

/// `-L -c [--json]`: flows and persistence templates with the seconds they have left, by
/// CLOCK.
pub fn list_conns(
    dir: &Path,
    persistent_conn: bool,
    json: bool,
    names: &dyn Names,
) -> Result<String, CtlError> {
    let maps = Maps::open(dir)?;
    let snap = maps.snapshot()?;
    let list = status::conns(&maps, &snap, dir)?;
    Ok(if json {
        json::conns(&list)
    } else {
        show::conns(&list, persistent_conn, names)
    })
}

/// `-S [-n]`: every service and real as the ipvsadm commands that make them, sorted as
/// ipvsadm sorts them.
pub fn save_rules(dir: &Path, names: &dyn Names) -> Result<String, CtlError> {
    let maps = Maps::open(dir)?;
    let snap = maps.snapshot()?;
    let what = Gather {
        stats: false,
        rates: false,
        conns: false,
        next_hops: false,
    };
    let mut listed = status::services(&maps, &snap, None, what)?;
    status::sort(&mut listed, true);
    Ok(save::rules(&listed, names))
}

/// `-R`: reads ipvsadm commands from `text` and applies them all, or none when a line is
/// refused (the error names the line).
pub fn restore(dir: &Path, text: &str, names: &dyn Names) -> Result<(), CtlError> {
    let cmds = restore::commands(text, names).map_err(Box::new)?;
    let mut maps = Maps::open(dir)?;
    let _lock =
        crate::maps::sys::lock_dir(dir).map_err(|e| CtlError::Lock(dir.to_path_buf(), e))?;
    let snap = maps.snapshot()?;
    let mut resolve = nexthop::resolve;
    let (ops, sets) = restore::plan(&snap, &cmds, &mut resolve).map_err(Box::new)?;
    maps.apply(&ops)?;
    if !sets.is_empty() {
        let mut s = maps::read_settings(dir)?;
        for t in sets {
            set_timeouts(&mut s, t);
        }
        maps::write_settings(dir, &s)?;
    }
    Ok(())
}

/// `--set TCP TCPFIN UDP` on the settings: as IPVS, a 0 leaves that timeout unchanged.
fn set_timeouts(s: &mut Settings, [tcp, fin, udp]: [u32; 3]) {
    for (slot, v) in [
        (&mut s.timeouts.tcp_s, tcp),
        (&mut s.timeouts.tcpfin_s, fin),
        (&mut s.timeouts.udp_s, udp),
    ] {
        if v != 0 {
            *slot = v;
        }
    }
}

/// Where a setting lives in [`Settings`].
type SettingField = fn(&mut Settings) -> &mut u32;

/// The sysctl-like settings lb keeps: IPVS's name and the [`Settings`] field, the one table
/// the listing, the lookup and the error text read.
const SYSCTLS: [(&str, SettingField); 2] = [
    ("expire_nodest_conn", |s| &mut s.expire_nodest_conn),
    ("expire_quiescent_template", |s| {
        &mut s.expire_quiescent_template
    }),
];

/// `lb-ctl sysctl [NAME [VALUE]]`: list, show or set a setting.
pub fn sysctl(dir: &Path, name: Option<&str>, value: Option<u32>) -> Result<String, CtlError> {
    let mut s = maps::read_settings(dir)?;
    let Some(name) = name else {
        return Ok(SYSCTLS
            .iter()
            .map(|(n, field)| format!("{n} {}\n", field(&mut s)))
            .collect());
    };
    let Some((_, field)) = SYSCTLS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = SYSCTLS.iter().map(|(n, _)| *n).collect();
        return Err(CtlError::Sysctl(format!(
            "unknown setting {name} (one of {})",
            names.join(", ")
        )));
    };
    match value {
        None => Ok(format!("{name} {}\n", field(&mut s))),
        Some(v) if v > 1 => Err(CtlError::Sysctl(format!("{name} is 0 or 1, not {v}"))),
        Some(v) => {
            let _lock = crate::maps::sys::lock_dir(dir)
                .map_err(|e| CtlError::Lock(dir.to_path_buf(), e))?;
            // Re-read under the lock so a concurrent --set is not lost.
            let mut s = maps::read_settings(dir)?;
            *field(&mut s) = v;
            maps::write_settings(dir, &s)?;
            Ok(String::new())
        }
    }
}

/// `lb-ctl counters [--json]`.
pub fn counters(dir: &Path, json: bool) -> Result<String, CtlError> {
    let c = status::counters(dir)?;
    Ok(if json {
        json::counters(&c)
    } else {
        show::counters(&c)
    })
}

/// A listing's warning when connection expiry is not running: no sweep pass for more
/// than [`EXPIRY_LATE_S`] seconds since the last one (or since lb was loaded), so idle connections and templates stay counted
/// (wlc/lc, thresholds and persistence act on them). `None` when expiry keeps up, time is
/// fixed by a test, or lb is not loaded.
pub fn expiry_warning(dir: &Path) -> Option<String> {
    let lag = maps::clock::expiry_lag(dir).ok()??;
    (lag > EXPIRY_LATE_S).then(|| format!(
        "no connection expiry pass for {lag} s: idle connections stay counted; `lb-ctl load` (again) starts the sweeper, or run `lb-ctl sweep`"
    ))
}

/// Seconds without a sweep pass after which listings warn (passes run every second).
pub const EXPIRY_LATE_S: u32 = 10;

/// Percent of a table's capacity from which listings warn.
pub const TABLE_FULL_WARN_PCT: u64 = 90;

/// What a listing warns about on stderr: expiry not running ([`expiry_warning`]), and
/// state tables at [`TABLE_FULL_WARN_PCT`] % of their capacity or more at the sweeper's
/// last pass (a full table refuses new entries, counted by `lb-ctl counters`).
pub fn list_warnings(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = expiry_warning(dir).into_iter().collect();
    for (t, f) in status::gather::tables(dir).unwrap_or_default() {
        if f.capacity == 0 || f.entries * 100 < f.capacity * TABLE_FULL_WARN_PCT {
            continue;
        }
        use lb_common::tables::Table;
        let (then, remedy) = match t {
            Table::Persist => (
                "new persistence templates are refused (persist_insert_failed)",
                "shorter -p timeouts or a wider -M mask need fewer",
            ),
            Table::NatRev4 | Table::NatRev6 => (
                "new NAT connections' replies are not translated (nat_rev_insert_failed)",
                "a larger `lb-ctl load --max-flows` takes effect after `lb-ctl unload`",
            ),
            Table::Flows4 | Table::Flows6 => (
                "new connections are forwarded without a flow, each packet scheduled anew (flow_insert_failed)",
                "a larger `lb-ctl load --max-flows` takes effect after `lb-ctl unload`",
            ),
        };
        out.push(format!(
            "{} holds {} of its {} entries; when full, {then}; {remedy}",
            t.map(),
            f.entries,
            f.capacity
        ));
    }
    out
}
