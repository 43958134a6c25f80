//! ipvsadm's command line, word for word where lb supports the feature: getopt-style short
//! options (clusters such as `-Ln`, attached arguments such as `-t198.18.0.1:80`), long
//! options (`--tcp-service X`, `--tcp-service=X`), one command per invocation, and the
//! same command/option compatibility checks, refused with ipvsadm's own message texts
//! (ipvsadm.c `parse_options`, `generic_opt_check`, `set_command`, `set_option`).
//! Features lb cannot have (firewall marks, the sync daemon, persistence engines, GUE/GRE
//! tunnels) are refused in one line saying what to use instead, never ignored, so a script
//! never half-works. Host and service names are looked up as ipvsadm does ([`names`]).
//!
//! Deviations: a service without a port is an all-port service (ipvsadm wants `-p` for
//! that); lb adds `--persist-group VIP:PORT` (share another service's persistence, as an
//! IPVS firewall-mark service spanning ports does) and `--mh-size PRIME` (Maglev table size).
//!
//! [`names`]: crate::cli::names

use crate::cli::names::{Names, System};
use crate::ipvs::model::{
    Endpoint, Proto, RealRef, RealSpec, SCHED_FLAGS, ServiceAddr, ServiceSpec,
};
use lb_common::consts::DEFAULT_PERSIST_TIMEOUT_S;
use lb_common::{ForwardMode, SchedKind};
use std::net::{IpAddr, Ipv6Addr};

/// A service as an ipvsadm command line gives it: typed but for the scheduler, still the
/// name typed after `-s`, which the planner checks ([`crate::ipvs::model::SchedChoice`]).
pub type ServiceArgs = ServiceSpec<String>;

/// A parsed ipvsadm invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpvsCommand {
    /// `-A`.
    AddService(ServiceArgs),
    /// `-E`.
    EditService(ServiceArgs),
    /// `-D`.
    DelService(ServiceAddr),
    /// `-a`.
    AddReal(RealSpec),
    /// `-e`.
    EditReal(RealSpec),
    /// `-d`.
    DelReal(RealRef),
    /// `-L` / `-l`.
    List {
        /// Only this service (`-L -t VIP:PORT`).
        service: Option<ServiceAddr>,
        /// `--stats`.
        stats: bool,
        /// `--exact`.
        exact: bool,
        /// `--rate`, `--thresholds`, `--persistent-conn` or the plain listing.
        format: ListFormat,
        /// `--nosort`: reals in IPVS list order (newest first) instead of sorted.
        nosort: bool,
        /// lb's `--json`: every field as JSON (docs/json.md) instead of ipvsadm's text.
        json: bool,
        /// `-n`: addresses and ports as numbers, not names.
        numeric: bool,
    },
    /// `-L -c`: the connection (and template) entries.
    ListConns {
        /// `--persistent-conn`: add the persistence-engine columns, as ipvsadm.
        persistent_conn: bool,
        /// lb's `--json`: the entries as JSON (docs/json.md).
        json: bool,
        /// `-n`: addresses and ports as numbers, not names.
        numeric: bool,
    },
    /// `-L --timeout`.
    ListTimeout {
        /// lb's `--json`: the three timeouts as JSON (docs/json.md).
        json: bool,
    },
    /// `-L --daemon`: the connection-sync daemons running (lb has none).
    ListDaemon,
    /// `-S [-n]`: the table as ipvsadm commands.
    Save {
        /// `-n`: addresses and ports as numbers, not names.
        numeric: bool,
    },
    /// `-R`: ipvsadm commands from stdin, applied all or nothing.
    Restore,
    /// `--set TCP TCPFIN UDP` (0 keeps a value).
    SetTimeout([u32; 3]),
    /// `-C`.
    Clear,
    /// `-Z` (all services, or one).
    Zero(Option<ServiceAddr>),
    /// `-h`.
    Help,
    /// `-v` / `--version`.
    Version,
}

/// Columns of a service listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListFormat {
    /// Forward, Weight, ActiveConn, InActConn.
    #[default]
    Plain,
    /// `--thresholds`: Uthreshold, Lthreshold, ActiveConn, InActConn.
    Thresholds,
    /// `--persistent-conn`: Weight, PersistConn, ActiveConn, InActConn.
    PersistentConn,
    /// `--rate`: CPS, InPPS, OutPPS, InBPS, OutBPS (the estimator's rates).
    Rate,
    /// `--tun-info` (ipvsadm 1.31): Forward, TunnelInfo, Weight, ActiveConn, InActConn.
    TunInfo,
}

/// Why an ipvsadm command line is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed command line: ipvsadm's `fail(2, ...)` text (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// What ipvsadm's option parser (popt) rejects before any check: an unknown option,
    /// a missing argument, or no command first (ipvsadm prints it and exits 255).
    #[error("{0}")]
    BadOption(String),
    /// A valid ipvsadm feature lb does not have yet.
    #[error("{0} is not supported yet")]
    Unsupported(String),
}

fn usage(s: impl Into<String>) -> ParseError {
    ParseError::Usage(s.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    AddService,
    EditService,
    DelService,
    AddReal,
    EditReal,
    DelReal,
    List,
    Clear,
    Zero,
    Help,
    Version,
    Timeout,
    Save,
    Restore,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::AddService => "add-service",
            Cmd::EditService => "edit-service",
            Cmd::DelService => "delete-service",
            Cmd::AddReal => "add-server",
            Cmd::EditReal => "edit-server",
            Cmd::DelReal => "delete-server",
            Cmd::List => "list",
            Cmd::Clear => "flush",
            Cmd::Zero => "zero",
            Cmd::Help => "help",
            Cmd::Version => "version",
            Cmd::Timeout => "set",
            Cmd::Save => "save",
            Cmd::Restore => "restore",
        }
    }
}

/// Options (bit per option, for the compatibility check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Service,
    Sched,
    SchedFlags,
    Real,
    Fwd,
    Weight,
    Numeric,
    Stats,
    Rate,
    Exact,
    Persistent,
    Netmask,
    OnePacket,
    UThreshold,
    LThreshold,
    Connection,
    ShowTimeout,
    Thresholds,
    PersistentConn,
    NoSort,
    PersistGroup,
    MhSize,
    Json,
    Daemon,
    TunType,
    TunInfo,
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            // ipvsadm.c `optnames`, which its messages quote.
            Opt::Service => "service-address",
            Opt::Sched => "scheduler",
            Opt::SchedFlags => "sched-flags",
            Opt::Real => "real-server",
            Opt::Fwd => "forwarding-method",
            Opt::Weight => "weight",
            Opt::Numeric => "numeric",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Exact => "exact",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::OnePacket => "ops",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Connection => "connection",
            Opt::ShowTimeout => "timeout",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::PersistGroup => "persist-group",
            Opt::MhSize => "mh-size",
            Opt::Json => "json",
            Opt::Daemon => "daemon",
            Opt::TunType => "tun-type",
            Opt::TunInfo => "tun-info",
        }
    }
}

/// Which options a command requires and which it accepts (ipvsadm's `commands_v_options`).
fn allowed(cmd: Cmd) -> (&'static [Opt], &'static [Opt]) {
    use Opt::*;
    match cmd {
        Cmd::AddService | Cmd::EditService => (
            &[Service],
            &[
                Sched,
                SchedFlags,
                Persistent,
                Netmask,
                OnePacket,
                PersistGroup,
                MhSize,
            ],
        ),
        Cmd::DelService => (&[Service], &[]),
        Cmd::AddReal | Cmd::EditReal => (
            &[Service, Real],
            &[Fwd, Weight, UThreshold, LThreshold, TunType],
        ),
        Cmd::DelReal => (&[Service, Real], &[]),
        Cmd::List => (
            &[],
            &[
                Service,
                Numeric,
                Stats,
                Rate,
                Exact,
                Connection,
                ShowTimeout,
                Thresholds,
                PersistentConn,
                NoSort,
                Json,
                Daemon,
                TunInfo,
            ],
        ),
        Cmd::Timeout | Cmd::Restore => (&[], &[]),
        Cmd::Save => (&[], &[Numeric]),
        Cmd::Zero => (&[], &[Service]),
        // ipvsadm.c: -C takes no option; -h and -v print and exit before any check.
        Cmd::Clear => (&[], &[]),
        Cmd::Help | Cmd::Version => (&[], &[Numeric]),
    }
}

#[derive(Default)]
struct Raw {
    /// The option word being read, as typed (`-Z`, `--zero`), for popt's messages.
    typed: String,
    cmd: Option<Cmd>,
    seen: Vec<Opt>,
    service: Option<(Proto, String)>,
    sched: Option<String>,
    flags: Option<String>,
    real: Option<String>,
    fwd: Option<ForwardMode>,
    weight: Option<String>,
    stats: bool,
    exact: bool,
    persistent: Option<Option<String>>,
    netmask: Option<String>,
    u_threshold: Option<String>,
    l_threshold: Option<String>,
    timeouts: Vec<String>,
    persist_group: Option<String>,
    mh_size: Option<String>,
    numeric: bool,
}

/// One option of the table: long name, short letter, whether it takes an argument.
struct Spec {
    long: &'static str,
    short: Option<char>,
    arg: bool,
}

const SPECS: &[Spec] = &[
    Spec {
        long: "add-service",
        short: Some('A'),
        arg: false,
    },
    Spec {
        long: "edit-service",
        short: Some('E'),
        arg: false,
    },
    Spec {
        long: "delete-service",
        short: Some('D'),
        arg: false,
    },
    Spec {
        long: "clear",
        short: Some('C'),
        arg: false,
    },
    Spec {
        long: "restore",
        short: Some('R'),
        arg: false,
    },
    Spec {
        long: "save",
        short: Some('S'),
        arg: false,
    },
    Spec {
        long: "add-server",
        short: Some('a'),
        arg: false,
    },
    Spec {
        long: "edit-server",
        short: Some('e'),
        arg: false,
    },
    Spec {
        long: "delete-server",
        short: Some('d'),
        arg: false,
    },
    Spec {
        long: "list",
        short: Some('L'),
        arg: false,
    },
    Spec {
        long: "list",
        short: Some('l'),
        arg: false,
    },
    Spec {
        long: "zero",
        short: Some('Z'),
        arg: false,
    },
    Spec {
        long: "set",
        short: None,
        arg: true,
    },
    Spec {
        long: "start-daemon",
        short: None,
        arg: true,
    },
    Spec {
        long: "stop-daemon",
        short: None,
        arg: true,
    },
    Spec {
        long: "help",
        short: Some('h'),
        arg: false,
    },
    Spec {
        long: "version",
        short: Some('v'),
        arg: false,
    },
    Spec {
        long: "tcp-service",
        short: Some('t'),
        arg: true,
    },
    Spec {
        long: "udp-service",
        short: Some('u'),
        arg: true,
    },
    Spec {
        long: "sctp-service",
        short: None,
        arg: true,
    },
    Spec {
        long: "fwmark-service",
        short: Some('f'),
        arg: true,
    },
    Spec {
        long: "scheduler",
        short: Some('s'),
        arg: true,
    },
    Spec {
        long: "sched-flags",
        short: Some('b'),
        arg: true,
    },
    Spec {
        long: "persistent",
        short: Some('p'),
        arg: false,
    },
    Spec {
        long: "netmask",
        short: Some('M'),
        arg: true,
    },
    Spec {
        long: "pe",
        short: None,
        arg: true,
    },
    Spec {
        long: "real-server",
        short: Some('r'),
        arg: true,
    },
    Spec {
        long: "gatewaying",
        short: Some('g'),
        arg: false,
    },
    Spec {
        long: "ipip",
        short: Some('i'),
        arg: false,
    },
    Spec {
        long: "masquerading",
        short: Some('m'),
        arg: false,
    },
    Spec {
        long: "weight",
        short: Some('w'),
        arg: true,
    },
    Spec {
        long: "u-threshold",
        short: Some('x'),
        arg: true,
    },
    Spec {
        long: "l-threshold",
        short: Some('y'),
        arg: true,
    },
    Spec {
        long: "numeric",
        short: Some('n'),
        arg: false,
    },
    Spec {
        long: "connection",
        short: Some('c'),
        arg: false,
    },
    Spec {
        long: "stats",
        short: None,
        arg: false,
    },
    Spec {
        long: "rate",
        short: None,
        arg: false,
    },
    Spec {
        long: "thresholds",
        short: None,
        arg: false,
    },
    Spec {
        long: "persistent-conn",
        short: None,
        arg: false,
    },
    Spec {
        long: "nosort",
        short: None,
        arg: false,
    },
    Spec {
        long: "sort",
        short: None,
        arg: false,
    },
    Spec {
        long: "exact",
        short: Some('X'),
        arg: false,
    },
    Spec {
        long: "json",
        short: None,
        arg: false,
    },
    Spec {
        long: "ops",
        short: Some('o'),
        arg: false,
    },
    Spec {
        long: "tun-type",
        short: None,
        arg: true,
    },
    Spec {
        long: "mcast-interface",
        short: None,
        arg: true,
    },
    Spec {
        long: "syncid",
        short: None,
        arg: true,
    },
    Spec {
        long: "timeout",
        short: None,
        arg: false,
    },
    Spec {
        long: "daemon",
        short: None,
        arg: false,
    },
    Spec {
        long: "ipv6",
        short: Some('6'),
        arg: false,
    },
    Spec {
        long: "tun-port",
        short: None,
        arg: true,
    },
    Spec {
        long: "tun-nocsum",
        short: None,
        arg: false,
    },
    Spec {
        long: "tun-csum",
        short: None,
        arg: false,
    },
    Spec {
        long: "tun-remcsum",
        short: None,
        arg: false,
    },
    Spec {
        long: "tun-info",
        short: None,
        arg: false,
    },
    Spec {
        long: "mcast-group",
        short: None,
        arg: true,
    },
    Spec {
        long: "mcast-port",
        short: None,
        arg: true,
    },
    Spec {
        long: "mcast-ttl",
        short: None,
        arg: true,
    },
    Spec {
        long: "sync-maxlen",
        short: None,
        arg: true,
    },
    // lb's own: `--persist-group -t VIP:PORT` (or `-u`), `--mh-size PRIME`.
    Spec {
        long: "persist-group",
        short: None,
        arg: true,
    },
    Spec {
        long: "mh-size",
        short: None,
        arg: true,
    },
];

impl Raw {
    fn command(&mut self, c: Cmd) -> Result<(), ParseError> {
        // ipvsadm's parse_options reads the command from the first option only; a command
        // option after it falls to the option switch's `default:`, "invalid option".
        if self.cmd.is_some() {
            return Err(usage(format!("invalid option `{}'", self.typed)));
        }
        self.cmd = Some(c);
        Ok(())
    }

    fn option(&mut self, o: Opt) -> Result<(), ParseError> {
        if self.seen.contains(&o) {
            return Err(usage(format!("multiple '{}' options specified", o.name())));
        }
        self.seen.push(o);
        Ok(())
    }

    fn set(&mut self, long: &str, arg: Option<String>) -> Result<(), ParseError> {
        let typed = self.typed.clone();
        let arg_or = |a: Option<String>| {
            a.ok_or_else(|| ParseError::BadOption(format!("{typed}: missing argument")))
        };
        match long {
            "add-service" => self.command(Cmd::AddService)?,
            "edit-service" => self.command(Cmd::EditService)?,
            "delete-service" => self.command(Cmd::DelService)?,
            "clear" => self.command(Cmd::Clear)?,
            "add-server" => self.command(Cmd::AddReal)?,
            "edit-server" => self.command(Cmd::EditReal)?,
            "delete-server" => self.command(Cmd::DelReal)?,
            "list" => self.command(Cmd::List)?,
            "zero" => self.command(Cmd::Zero)?,
            "help" => self.command(Cmd::Help)?,
            "version" => self.command(Cmd::Version)?,
            "tcp-service" | "udp-service" => {
                self.option(Opt::Service)?;
                let p = if long == "tcp-service" {
                    Proto::Tcp
                } else {
                    Proto::Udp
                };
                self.service = Some((p, arg_or(arg)?));
            }
            "scheduler" => {
                self.option(Opt::Sched)?;
                self.sched = Some(arg_or(arg)?);
            }
            "sched-flags" => {
                self.option(Opt::SchedFlags)?;
                self.flags = Some(arg_or(arg)?);
            }
            "real-server" => {
                self.option(Opt::Real)?;
                self.real = Some(arg_or(arg)?);
            }
            "gatewaying" | "ipip" | "masquerading" => {
                self.option(Opt::Fwd)?;
                self.fwd = Some(match long {
                    "gatewaying" => ForwardMode::Dr,
                    "ipip" => ForwardMode::Tun,
                    _ => ForwardMode::Nat,
                });
            }
            "weight" => {
                self.option(Opt::Weight)?;
                self.weight = Some(arg_or(arg)?);
            }
            "numeric" => {
                self.option(Opt::Numeric)?;
                self.numeric = true;
            }
            "stats" => {
                self.option(Opt::Stats)?;
                self.stats = true;
            }
            "rate" => self.option(Opt::Rate)?,
            "exact" => {
                self.option(Opt::Exact)?;
                self.exact = true;
            }
            "persistent" => {
                self.option(Opt::Persistent)?;
                self.persistent = Some(arg);
            }
            "netmask" => {
                self.option(Opt::Netmask)?;
                self.netmask = Some(arg_or(arg)?);
            }
            "ops" => self.option(Opt::OnePacket)?,
            "u-threshold" => {
                self.option(Opt::UThreshold)?;
                self.u_threshold = Some(arg_or(arg)?);
            }
            "l-threshold" => {
                self.option(Opt::LThreshold)?;
                self.l_threshold = Some(arg_or(arg)?);
            }
            "connection" => self.option(Opt::Connection)?,
            "timeout" => self.option(Opt::ShowTimeout)?,
            "thresholds" => self.option(Opt::Thresholds)?,
            "persistent-conn" => self.option(Opt::PersistentConn)?,
            "nosort" => self.option(Opt::NoSort)?,
            "json" => self.option(Opt::Json)?,
            "set" => {
                self.command(Cmd::Timeout)?;
                self.timeouts.extend(arg);
            }
            "persist-group" => {
                self.option(Opt::PersistGroup)?;
                self.persist_group = Some(arg_or(arg)?);
            }
            "mh-size" => {
                self.option(Opt::MhSize)?;
                self.mh_size = Some(arg_or(arg)?);
            }
            // ipvsadm: "does nothing, for backwards compatibility" (sorting is the default).
            "sort" => {}
            "save" => self.command(Cmd::Save)?,
            "restore" => self.command(Cmd::Restore)?,
            "daemon" => self.option(Opt::Daemon)?,
            "tun-info" => self.option(Opt::TunInfo)?,
            "tun-type" => {
                self.option(Opt::TunType)?;
                match arg_or(arg)?.as_str() {
                    // lb's -i is IPIP (IP6IP6 for IPv6): the default tunnel type.
                    "ipip" => {}
                    t @ ("gue" | "gre") => {
                        return Err(usage(format!(
                            "tunnel type {t} is not available in lb: its -i real servers are reached by IPIP (--tun-type ipip)"
                        )));
                    }
                    _ => return Err(usage("illegal tunnel type specified")),
                }
            }
            // ipvsadm.c `tunnel_types_v_options`: none of these goes with ipip, the only
            // type lb has.
            "tun-port" | "tun-nocsum" | "tun-csum" | "tun-remcsum" => {
                return Err(usage(format!(
                    "Illegal '{long}' option with the 'ipip' tunnel type (lb's tunnels are IPIP only)"
                )));
            }
            "ipv6" => {
                // ipvsadm: -6 only qualifies a -f firewall-mark service.
                return Err(usage(
                    "-6 used before -f (and lb has no firewall-mark services)",
                ));
            }
            "fwmark-service" => {
                return Err(usage(
                    "firewall-mark services (-f) are not available in lb: XDP runs before netfilter, so there is no mark to match; for one persistence across ports use --persist-group VIP:PORT (or the daemon's virtual_server_group)",
                ));
            }
            "start-daemon" | "stop-daemon" | "syncid" | "mcast-interface" | "mcast-group"
            | "mcast-port" | "mcast-ttl" | "sync-maxlen" => {
                return Err(usage(format!(
                    "--{long}: lb has no IPVS sync daemon; connection sync comes with the director daemon (the connection-sync daemon), not ipvsadm"
                )));
            }
            "pe" => {
                return Err(usage(
                    "--pe: lb has no persistence engines (sip); persistence is by client address (-p, -M)",
                ));
            }
            other => return Err(ParseError::Unsupported(format!("--{other}"))),
        }
        Ok(())
    }
}

fn find_long(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.long == name)
}

fn find_short(c: char) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.short == Some(c))
}

/// Parses `HOST[:PORT]` / `[V6ADDR][:PORT]` / bare IPv6 (no port) as ipvsadm's
/// `parse_service` does: the host an IPv4 or IPv6 literal or an IPv4 host name, the port
/// a number or a service name of `proto`. `what` is "virtual server" or "real server",
/// for ipvsadm's message.
pub fn parse_endpoint(
    s: &str,
    proto: Proto,
    names: &dyn Names,
    what: &str,
) -> Result<(IpAddr, Option<u16>), ParseError> {
    let bad = |why: &str| {
        usage(format!(
            "illegal {what} address[:port] specified ({s}: {why})"
        ))
    };
    let port = |p: &str| -> Result<u16, ParseError> {
        match p.parse::<u16>() {
            Ok(n) => Ok(n),
            Err(_) => names
                .port_of(p, proto)
                .ok_or_else(|| bad("port is neither a number 0-65535 nor a service name")),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').ok_or_else(|| bad("no closing ]"))?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| bad("not an IPv6 address in [ ]"))?;
        return match tail {
            "" => Ok((IpAddr::V6(ip), None)),
            t => Ok((
                IpAddr::V6(ip),
                Some(port(
                    t.strip_prefix(':')
                        .ok_or_else(|| bad("':' expected after ]"))?,
                )?),
            )),
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    // ipvsadm refuses an all-digit word (`str_is_digit`): it is not a host.
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("a number is not an address"));
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (s, None),
    };
    let ip = match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip,
        Err(_) => names
            .addr_of(host)
            .ok_or_else(|| bad("unknown host (IPv6 goes in brackets)"))?,
    };
    Ok((IpAddr::V4(ip), p))
}

fn service_addr(raw: &Raw, names: &dyn Names) -> Result<Option<ServiceAddr>, ParseError> {
    raw.service
        .as_ref()
        .map(|(proto, s)| {
            let (ip, port) = parse_endpoint(s, *proto, names, "virtual server")?;
            Ok(ServiceAddr {
                proto: *proto,
                vip: Endpoint {
                    ip,
                    port: port.unwrap_or(0),
                },
            })
        })
        .transpose()
}

/// Resolves `-b` flags for a scheduler as ipvsadm does: `flag-1`/`flag-2` mean
/// sh-fallback/sh-port for sh and mh-fallback/mh-port for mh; a named flag of another
/// scheduler is refused; `flag-N` on a scheduler without flags has no effect (IPVS stores
/// it unused).
fn sched_flags(sched: &str, flags: &str) -> Result<u32, ParseError> {
    let kind = SchedKind::from_name(sched);
    let mut bits = 0;
    for f in flags.split(',') {
        if let Some(e) = SCHED_FLAGS
            .iter()
            .find(|e| Some(e.sched) == kind && (e.name == f || e.alias == f))
        {
            bits |= e.bit;
        } else if matches!(f, "flag-1" | "flag-2" | "flag-3") {
        } else if SCHED_FLAGS.iter().any(|e| e.name == f) {
            return Err(usage(format!("incompatible scheduler flag `{f}'")));
        } else {
            return Err(usage(format!("invalid scheduler flag `{f}'")));
        }
    }
    Ok(bits)
}

fn service_spec(
    raw: &Raw,
    addr: ServiceAddr,
    names: &dyn Names,
) -> Result<ServiceArgs, ParseError> {
    let sched = raw.sched.clone();
    let mut spec = ServiceSpec::with_sched(addr, sched.unwrap_or_else(|| "wlc".into()));
    if let Some(f) = &raw.flags {
        spec.sched_flags = sched_flags(&spec.sched, f)?;
    }
    spec.persistent = match &raw.persistent {
        None => None,
        Some(None) => Some(DEFAULT_PERSIST_TIMEOUT_S),
        Some(Some(t)) => Some(timeout(t, 1)?),
    };
    if let Some(m) = &raw.netmask {
        let mask = match addr.vip.ip {
            IpAddr::V4(_) => m
                .parse::<std::net::Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| {
                    usage(format!(
                        "illegal virtual server persistent mask specified: {m}"
                    ))
                })?,
            IpAddr::V6(_) => {
                let plen = m
                    .parse::<u32>()
                    .ok()
                    .filter(|&p| (1..=128).contains(&p))
                    .ok_or_else(|| usage(format!("illegal ipv6 netmask specified: {m}")))?;
                IpAddr::V6(Ipv6Addr::from(u128::MAX << (128 - plen)))
            }
        };
        // ipvsadm takes -M without -p; IPVS uses the mask for persistence only, so
        // without -p it has no effect and is not kept.
        if spec.persistent.is_some() {
            spec.netmask = Some(mask);
        }
    }
    spec.one_packet = raw.seen.contains(&Opt::OnePacket);
    if spec.one_packet && addr.proto != Proto::Udp {
        // ipvsadm.c process_options.
        return Err(usage(
            "One-Packet Scheduling is only for UDP virtual services",
        ));
    }
    if let Some(g) = &raw.persist_group {
        let (ip, port) = parse_endpoint(g, addr.proto, names, "virtual server")?;
        spec.persist_with = Some(ServiceAddr {
            proto: addr.proto,
            vip: Endpoint {
                ip,
                port: port.unwrap_or(0),
            },
        });
    }
    if let Some(n) = &raw.mh_size {
        spec.mh_size = Some(
            n.parse::<u32>()
                .map_err(|_| usage(format!("illegal Maglev table size: {n}")))?,
        );
    }
    Ok(spec)
}

/// ipvsadm's `-w`: `string_to_number(optarg, 0, 65535)`.
fn weight(raw: &Raw) -> Result<i64, ParseError> {
    match &raw.weight {
        None => Ok(1),
        Some(w) => w
            .parse::<u16>()
            .map(i64::from)
            .map_err(|_| usage(format!("illegal weight specified: {w} (0-65535)"))),
    }
}

/// Longest timeout ipvsadm takes (`MAX_TIMEOUT`, 31 days).
const MAX_TIMEOUT_S: u32 = 86400 * 31;

/// ipvsadm's `parse_timeout(buf, min, MAX_TIMEOUT)`.
fn timeout(t: &str, min: u32) -> Result<u32, ParseError> {
    t.parse::<u32>()
        .ok()
        .filter(|v| (min..=MAX_TIMEOUT_S).contains(v))
        .ok_or_else(|| usage(format!("invalid timeout value `{t}' specified")))
}

/// The next word as an optional option argument (popt's `POPT_ARGFLAG_OPTIONAL`): taken
/// unless it is missing or starts with `-`.
fn optional_arg<S: AsRef<str>>(args: &[S], i: &mut usize) -> Option<String> {
    let v = args.get(*i).map(|s| s.as_ref())?;
    if v.starts_with('-') {
        return None;
    }
    *i += 1;
    Some(v.to_string())
}

fn number(v: &Option<String>, what: &str) -> Result<u32, ParseError> {
    match v {
        None => Ok(0),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|&n| n <= i32::MAX as u32)
            .ok_or_else(|| usage(format!("illegal {what} specified: {s}"))),
    }
}

/// Parses an ipvsadm command line (without the program name), names looked up by the
/// system's resolver.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<IpvsCommand, ParseError> {
    parse_with(args, &System)
}

/// [`parse`] with host and service names looked up in `names`.
pub fn parse_with<S: AsRef<str>>(args: &[S], names: &dyn Names) -> Result<IpvsCommand, ParseError> {
    let mut raw = Raw::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_ref();
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let spec = find_long(name)
                .ok_or_else(|| ParseError::BadOption(format!("--{name}: unknown option")))?;
            raw.typed = format!("--{name}");
            let arg = if spec.arg && inline.is_none() {
                let v = args.get(i).map(|s| s.as_ref().to_string());
                i += 1;
                v
            } else if spec.long == "persistent" && inline.is_none() {
                optional_arg(args, &mut i)
            } else {
                inline
            };
            raw.set(spec.long, arg)?;
            if spec.long == "set" {
                // `--set TCP TCPFIN UDP`: three values.
                for _ in 0..2 {
                    raw.timeouts
                        .extend(args.get(i).map(|s| s.as_ref().to_string()));
                    i += 1;
                }
            }
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (pos, c) in cluster.char_indices() {
                let spec = find_short(c)
                    .ok_or_else(|| ParseError::BadOption(format!("-{c}: unknown option")))?;
                raw.typed = format!("-{c}");
                if spec.arg {
                    let rest = &cluster[pos + c.len_utf8()..];
                    let arg = if rest.is_empty() {
                        let v = args.get(i).map(|s| s.as_ref().to_string());
                        i += 1;
                        v
                    } else {
                        Some(rest.to_string())
                    };
                    raw.set(spec.long, arg)?;
                    break;
                }
                if c == 'p' {
                    // ipvsadm's -p takes an optional timeout: attached, or the next word
                    // unless it is an option.
                    let rest = &cluster[pos + 1..];
                    let arg = if rest.is_empty() {
                        optional_arg(args, &mut i)
                    } else {
                        Some(rest.to_string())
                    };
                    raw.set(spec.long, arg)?;
                    break;
                }
                raw.set(spec.long, None)?;
            }
        } else {
            return Err(usage(format!("unexpected argument {a}")));
        }
    }

    // ipvsadm.c `tryhelp_exit`: no command at all.
    let cmd = raw.cmd.ok_or_else(|| {
        ParseError::BadOption(
            "no command given (one of -A -E -D -a -e -d -L -C -Z -S -R --set -h -v)".into(),
        )
    })?;
    let (required, optional) = allowed(cmd);
    for o in required {
        if !raw.seen.contains(o) {
            return Err(usage(format!(
                "You need to supply the '{}' option for the '{}' command",
                o.name(),
                cmd.name()
            )));
        }
    }
    for o in &raw.seen {
        if !required.contains(o) && !optional.contains(o) {
            return Err(usage(format!(
                "Illegal '{}' option with the '{}' command",
                o.name(),
                cmd.name()
            )));
        }
    }
    // ipvsadm.c `commands_v_options`: -c, a service, --timeout and --daemon are
    // exclusive in a listing ('1').
    if cmd == Cmd::List {
        let ones = [Opt::Connection, Opt::Service, Opt::ShowTimeout, Opt::Daemon];
        let given: Vec<Opt> = ones.into_iter().filter(|o| raw.seen.contains(o)).collect();
        if let [first, second, ..] = given[..] {
            return Err(usage(format!(
                "The option '{}' conflicts with the '{}' option in the 'list' command",
                second.name(),
                first.name()
            )));
        }
        // process_options: listings without service columns take no column option (but
        // -c takes --persistent-conn, for its persistence-engine columns).
        let has = |o: &Opt| raw.seen.contains(o);
        let (conns, single) = (
            has(&Opt::Connection),
            has(&Opt::ShowTimeout) || has(&Opt::Daemon),
        );
        let columns = has(&Opt::Stats) || has(&Opt::Rate) || has(&Opt::Thresholds);
        if ((conns || single) && columns) || (single && has(&Opt::PersistentConn)) {
            return Err(usage("options conflicts in the list command"));
        }
    }
    if raw.seen.contains(&Opt::TunType) && raw.fwd != Some(ForwardMode::Tun) {
        // ipvsadm.c process_options: tunnel options need -i.
        return Err(usage("Tunnel options conflict with forward method"));
    }

    let svc = service_addr(&raw, names)?;
    let real = match (&raw.real, &raw.service) {
        (Some(r), Some((proto, _))) => Some(parse_endpoint(r, *proto, names, "real server")?),
        _ => None,
    };
    Ok(match cmd {
        Cmd::AddService => {
            IpvsCommand::AddService(service_spec(&raw, svc.expect("required"), names)?)
        }
        Cmd::EditService => {
            IpvsCommand::EditService(service_spec(&raw, svc.expect("required"), names)?)
        }
        Cmd::DelService => IpvsCommand::DelService(svc.expect("required")),
        Cmd::AddReal | Cmd::EditReal => {
            let (addr, port) = real.expect("required");
            let service = svc.expect("required");
            // ipvsadm.c process_options: only a tunnel may cross families (which lb's
            // model then refuses, with its own reason).
            if addr.is_ipv4() != service.vip.ip.is_ipv4() && raw.fwd != Some(ForwardMode::Tun) {
                return Err(usage(
                    "Different address family is allowed only for tunneling servers",
                ));
            }
            let spec = RealSpec {
                service,
                addr,
                port,
                mode: raw.fwd.unwrap_or(ForwardMode::Dr),
                weight: weight(&raw)?,
                u_threshold: number(&raw.u_threshold, "u_threshold")?,
                l_threshold: number(&raw.l_threshold, "l_threshold")?,
            };
            if cmd == Cmd::AddReal {
                IpvsCommand::AddReal(spec)
            } else {
                IpvsCommand::EditReal(spec)
            }
        }
        Cmd::DelReal => {
            let (addr, port) = real.expect("required");
            IpvsCommand::DelReal(RealRef {
                service: svc.expect("required"),
                addr,
                port,
            })
        }
        Cmd::List if raw.seen.contains(&Opt::Json) && raw.seen.contains(&Opt::Daemon) => {
            return Err(usage(
                "--json with --daemon: lb runs no sync daemon, there is nothing to list",
            ));
        }
        Cmd::List if raw.seen.contains(&Opt::ShowTimeout) => IpvsCommand::ListTimeout {
            json: raw.seen.contains(&Opt::Json),
        },
        Cmd::List if raw.seen.contains(&Opt::Daemon) => IpvsCommand::ListDaemon,
        Cmd::List if raw.seen.contains(&Opt::Connection) => IpvsCommand::ListConns {
            persistent_conn: raw.seen.contains(&Opt::PersistentConn),
            json: raw.seen.contains(&Opt::Json),
            numeric: raw.numeric,
        },
        Cmd::List => IpvsCommand::List {
            service: svc,
            stats: raw.stats,
            exact: raw.exact,
            // ipvsadm's order when several are given (`print_title`): --stats (its own
            // flag), --rate, --thresholds, --persistent-conn.
            format: if raw.seen.contains(&Opt::Rate) {
                ListFormat::Rate
            } else if raw.seen.contains(&Opt::Thresholds) {
                ListFormat::Thresholds
            } else if raw.seen.contains(&Opt::PersistentConn) {
                ListFormat::PersistentConn
            } else if raw.seen.contains(&Opt::TunInfo) {
                ListFormat::TunInfo
            } else {
                ListFormat::Plain
            },
            nosort: raw.seen.contains(&Opt::NoSort),
            json: raw.seen.contains(&Opt::Json),
            numeric: raw.numeric,
        },
        Cmd::Timeout => {
            let mut t = [0u32; 3];
            if raw.timeouts.len() != 3 {
                return Err(usage(
                    "--set option requires 3 timeout values (TCP TCPFIN UDP)",
                ));
            }
            for (slot, v) in t.iter_mut().zip(&raw.timeouts) {
                *slot = timeout(v, 0)?;
            }
            IpvsCommand::SetTimeout(t)
        }
        Cmd::Save => IpvsCommand::Save {
            numeric: raw.numeric,
        },
        Cmd::Restore => IpvsCommand::Restore,
        Cmd::Clear => IpvsCommand::Clear,
        Cmd::Zero => IpvsCommand::Zero(svc),
        Cmd::Help => IpvsCommand::Help,
        Cmd::Version => IpvsCommand::Version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::names::Numeric;
    use lb_common::VipFlags;

    fn p(s: &str) -> Result<IpvsCommand, ParseError> {
        parse_with(&s.split_whitespace().collect::<Vec<_>>(), &Numeric)
    }

    fn sa(proto: Proto, ip: &str, port: u16) -> ServiceAddr {
        ServiceAddr {
            proto,
            vip: Endpoint {
                ip: ip.parse().unwrap(),
                port,
            },
        }
    }

    #[test]
    fn add_service_forms() {
        let want = IpvsCommand::AddService(ServiceArgs {
            sched: "mh".into(),
            sched_flags: VipFlags::HASH_PORTS,
            ..ServiceSpec::with_sched(sa(Proto::Tcp, "198.18.2.1", 80), String::new())
        });
        assert_eq!(p("-A -t 198.18.2.1:80 -s mh -b mh-port").unwrap(), want);
        assert_eq!(p("-A -t198.18.2.1:80 -smh -bflag-2").unwrap(), want);
        assert_eq!(
            p("--add-service --tcp-service=198.18.2.1:80 --scheduler mh --sched-flags mh-port")
                .unwrap(),
            want
        );
        let IpvsCommand::AddService(s) = p("-A -u [2001:db8::1]:53").unwrap() else {
            panic!()
        };
        assert_eq!(s.addr, sa(Proto::Udp, "2001:db8::1", 53));
        assert_eq!(s.sched, "wlc", "ipvsadm's default");
        assert_eq!(s.sched_flags, 0);
        let IpvsCommand::AddService(s) = p("-A -t 198.18.2.1 -s wlc").unwrap() else {
            panic!()
        };
        assert_eq!(s.addr.vip.port, 0, "no port = all-port service");
        assert_eq!(s.sched, "wlc", "the model refuses it, with its own message");
    }

    #[test]
    fn real_forms() {
        let IpvsCommand::AddReal(r) = p("-a -t 198.18.2.1:80 -r 198.18.1.11:8080 -m -w 3").unwrap()
        else {
            panic!()
        };
        assert_eq!(r.addr, "198.18.1.11".parse::<IpAddr>().unwrap());
        assert_eq!(r.port, Some(8080));
        assert_eq!(r.mode, ForwardMode::Nat);
        assert_eq!(r.weight, 3);
        let IpvsCommand::AddReal(r) = p("-a -t 198.18.2.1:80 -r 198.18.1.11").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.port, r.mode, r.weight),
            (None, ForwardMode::Dr, 1),
            "ipvsadm defaults"
        );
        let IpvsCommand::EditReal(r) =
            p("-e -t [2001:db8::1]:80 -r [2001:db8::11] -i -w 0").unwrap()
        else {
            panic!()
        };
        assert_eq!((r.mode, r.weight), (ForwardMode::Tun, 0));
        assert_eq!(
            p("-d -t 198.18.2.1:80 -r 198.18.1.11:80").unwrap(),
            IpvsCommand::DelReal(RealRef {
                service: sa(Proto::Tcp, "198.18.2.1", 80),
                addr: "198.18.1.11".parse().unwrap(),
                port: Some(80),
            })
        );
    }

    #[test]
    fn list_forms() {
        let all = IpvsCommand::List {
            service: None,
            stats: false,
            exact: false,
            format: ListFormat::Plain,
            nosort: false,
            json: false,
            numeric: true,
        };
        assert_eq!(p("-L -n").unwrap(), all);
        assert_eq!(p("-Ln").unwrap(), all);
        assert_eq!(p("--list --numeric").unwrap(), all);
        let IpvsCommand::List { numeric, .. } = p("-l --sort").unwrap() else {
            panic!()
        };
        assert!(!numeric, "names without -n");
        assert_eq!(
            p("-L -n --stats --exact -t 198.18.2.1:80").unwrap(),
            IpvsCommand::List {
                service: Some(sa(Proto::Tcp, "198.18.2.1", 80)),
                stats: true,
                exact: true,
                format: ListFormat::Plain,
                nosort: false,
                json: false,
                numeric: true,
            }
        );
        assert_eq!(p("-C").unwrap(), IpvsCommand::Clear);
        assert_eq!(p("-Z").unwrap(), IpvsCommand::Zero(None));
        assert_eq!(p("-h").unwrap(), IpvsCommand::Help);
    }

    #[test]
    fn refusals() {
        // Texts from ipvsadm.c: generic_opt_check ("You need to supply ...", "Illegal ..."),
        // set_option ("multiple '%s' options specified"), parse_options' fail(2, ...)
        // calls (a second command is its "invalid option"); lb's detail follows in ( ).
        let e = |s: &str| p(s).unwrap_err().to_string();
        assert_eq!(
            e("-A -s mh"),
            "You need to supply the 'service-address' option for the 'add-service' command"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -w 2"),
            "Illegal 'weight' option with the 'add-service' command"
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80"),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            e("-C -n"),
            "Illegal 'numeric' option with the 'flush' command"
        );
        assert_eq!(e("-A -a -t 198.18.2.1:80"), "invalid option `-a'");
        assert_eq!(e("-L --zero"), "invalid option `--zero'");
        assert_eq!(e("-L -L"), "invalid option `-L'");
        assert_eq!(e("-L -n -n"), "multiple 'numeric' options specified");
        // process_options: families cross only on a tunnel (lb's model refuses that
        // later, in its own words).
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r [2001:db8::11]:80 -g"),
            "Different address family is allowed only for tunneling servers"
        );
        assert_eq!(
            e("-e -t [2001:db8::1]:80 -r 198.18.1.11 -m"),
            "Different address family is allowed only for tunneling servers"
        );
        assert!(p("-a -t 198.18.2.1:80 -r [2001:db8::11] -i").is_ok());
        // popt names the option as typed.
        assert_eq!(e("-a -t 198.18.2.1:80 -r"), "-r: missing argument");
        assert_eq!(
            e("-a -t 198.18.2.1:80 --real-server"),
            "--real-server: missing argument"
        );
        // -X is --exact's short form.
        assert!(matches!(
            p("-L -n --stats -X").unwrap(),
            IpvsCommand::List { exact: true, .. }
        ));
        assert_eq!(
            e("-n"),
            "no command given (one of -A -E -D -a -e -d -L -C -Z -S -R --set -h -v)"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -b mh-fallback"),
            "incompatible scheduler flag `mh-fallback'"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -s mh -b bogus"),
            "invalid scheduler flag `bogus'"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -p 0"),
            "invalid timeout value `0' specified"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -p 2678401"),
            "invalid timeout value `2678401' specified"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -p -M 255.255.0.x"),
            "illegal virtual server persistent mask specified: 255.255.0.x"
        );
        assert_eq!(
            e("-A -t [2001:db8::1]:80 -p -M 129"),
            "illegal ipv6 netmask specified: 129"
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.1 -x -3"),
            "illegal u_threshold specified: -3"
        );
        assert_eq!(
            e("--set 1 2"),
            "--set option requires 3 timeout values (TCP TCPFIN UDP)"
        );
        assert_eq!(e("--set 1 2 x"), "invalid timeout value `x' specified");
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -w x"),
            "illegal weight specified: x (0-65535)"
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -w 65536"),
            "illegal weight specified: 65536 (0-65535)"
        );
        assert_eq!(
            e("-e -t 198.18.2.1:80 -r 198.18.1.11 -w -1"),
            "illegal weight specified: -1 (0-65535)"
        );
        // popt's own refusals: "%s: %s" of the option and poptStrerror.
        assert_eq!(e("-Q"), "-Q: unknown option");
        assert_eq!(e("--bogus"), "--bogus: unknown option");
        assert_eq!(
            p("-Q").unwrap_err(),
            ParseError::BadOption("-Q: unknown option".into())
        );
        assert!(
            e("-A -t 198.18.2.1:99999")
                .starts_with("illegal virtual server address[:port] specified (198.18.2.1:99999: ")
        );
        assert!(
            e("-A -t www.example.com:80")
                .starts_with("illegal virtual server address[:port] specified")
        );
        assert!(
            e("-A -t [2001:db8::1:80")
                .starts_with("illegal virtual server address[:port] specified")
        );
        assert!(
            e("-a -t 198.18.2.1:80 -r 1234")
                .starts_with("illegal real server address[:port] specified")
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -g -m"),
            "multiple 'forwarding-method' options specified"
        );
        assert_eq!(e("-L extra"), "unexpected argument extra");
        assert_eq!(
            e("-A -t 198.18.2.1:80 -o"),
            "One-Packet Scheduling is only for UDP virtual services"
        );
        // commands_v_options' '1' column of the list command, and process_options'
        // "options conflicts in the list command".
        assert_eq!(
            e("-L -c --timeout"),
            "The option 'timeout' conflicts with the 'connection' option in the 'list' command"
        );
        assert_eq!(e("-L -c --stats"), "options conflicts in the list command");
        assert_eq!(
            e("-L --timeout --persistent-conn"),
            "options conflicts in the list command"
        );
        // ipvsadm 1.31's tunnel checks (process_options, tunnel_opt_check).
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -g --tun-type ipip"),
            "Tunnel options conflict with forward method"
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -i --tun-type vxlan"),
            "illegal tunnel type specified"
        );
    }

    #[test]
    fn what_lb_cannot_do_is_refused_in_one_line() {
        let e = |s: &str| p(s).unwrap_err();
        for (cmd, starts) in [
            (
                "-A -f 1 -s rr",
                "firewall-mark services (-f) are not available in lb",
            ),
            ("-A -t 198.18.2.1:80 -6", "-6 used before -f"),
            (
                "--start-daemon master",
                "--start-daemon: lb has no IPVS sync daemon",
            ),
            (
                "--stop-daemon backup",
                "--stop-daemon: lb has no IPVS sync daemon",
            ),
            (
                "--start-daemon master --syncid 3",
                "--start-daemon: lb has no IPVS sync daemon",
            ),
            (
                "-A -t 198.18.2.1:80 -p --pe sip",
                "--pe: lb has no persistence engines",
            ),
            (
                "-a -t 198.18.2.1:80 -r 198.18.1.11 -i --tun-type gue --tun-port 6080",
                "tunnel type gue is not available in lb",
            ),
            (
                "-a -t 198.18.2.1:80 -r 198.18.1.11 -i --tun-type gre",
                "tunnel type gre is not available in lb",
            ),
            (
                "-a -t 198.18.2.1:80 -r 198.18.1.11 -i --tun-csum",
                "Illegal 'tun-csum' option with the 'ipip' tunnel type",
            ),
        ] {
            let err = e(cmd);
            let text = err.to_string();
            assert!(text.starts_with(starts), "{cmd}: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
            assert!(
                matches!(err, ParseError::Usage(_)),
                "{cmd}: exit 2 as ipvsadm's fail(2, ...)"
            );
        }
        assert!(
            e("-A -f 1").to_string().contains("--persist-group"),
            "says what to use"
        );
        assert!(
            e("--start-daemon master")
                .to_string()
                .contains("connection-sync daemon")
        );
    }

    #[test]
    fn remaining_verbs_and_options() {
        assert_eq!(p("-S").unwrap(), IpvsCommand::Save { numeric: false });
        assert_eq!(p("--save -n").unwrap(), IpvsCommand::Save { numeric: true });
        assert_eq!(p("-R").unwrap(), IpvsCommand::Restore);
        assert_eq!(p("--restore").unwrap(), IpvsCommand::Restore);
        assert_eq!(p("-L --daemon").unwrap(), IpvsCommand::ListDaemon);
        assert_eq!(p("-v").unwrap(), IpvsCommand::Version);
        assert_eq!(p("--version").unwrap(), IpvsCommand::Version);
        assert_eq!(
            p("-Z -t 198.18.2.1:80").unwrap(),
            IpvsCommand::Zero(Some(sa(Proto::Tcp, "198.18.2.1", 80)))
        );
        assert_eq!(
            p("-S -t 198.18.2.1:80").unwrap_err().to_string(),
            "Illegal 'service-address' option with the 'save' command"
        );
        assert_eq!(
            p("-R -n").unwrap_err().to_string(),
            "Illegal 'numeric' option with the 'restore' command"
        );
        let IpvsCommand::AddReal(r) =
            p("-a -t 198.18.2.1:80 -r 198.18.1.11 -i --tun-type ipip -w 2").unwrap()
        else {
            panic!()
        };
        assert_eq!((r.mode, r.weight), (ForwardMode::Tun, 2), "ipip is -i");
        // -M without -p: ipvsadm takes it; IPVS uses the mask for persistence only.
        let IpvsCommand::AddService(s) = p("-A -t 198.18.2.1:80 -M 255.255.255.0").unwrap() else {
            panic!()
        };
        assert_eq!((s.persistent, s.netmask), (None, None));
        let IpvsCommand::AddService(s) = p("-A -t 198.18.2.1:80 -p 2678400").unwrap() else {
            panic!()
        };
        assert_eq!(s.persistent, Some(2_678_400), "MAX_TIMEOUT, 31 days");
    }

    /// Names as a test table: nothing system-wide, no network.
    struct Table;

    impl Names for Table {
        fn host(&self, ip: IpAddr) -> Option<String> {
            (ip == "198.18.2.1".parse::<IpAddr>().unwrap()).then(|| "www.example.test".into())
        }
        fn service(&self, port: u16, proto: Proto) -> Option<String> {
            match (port, proto) {
                (80, Proto::Tcp) => Some("http".into()),
                (53, Proto::Udp) => Some("domain".into()),
                _ => None,
            }
        }
        fn addr_of(&self, name: &str) -> Option<std::net::Ipv4Addr> {
            (name == "www.example.test").then(|| "198.18.2.1".parse().unwrap())
        }
        fn port_of(&self, name: &str, proto: Proto) -> Option<u16> {
            match (name, proto) {
                ("http", Proto::Tcp) => Some(80),
                ("domain", Proto::Udp) => Some(53),
                _ => None,
            }
        }
    }

    #[test]
    fn host_and_service_names_on_input() {
        let q = |s: &str| parse_with(&s.split_whitespace().collect::<Vec<_>>(), &Table);
        let IpvsCommand::AddReal(r) =
            q("-a -t www.example.test:http -r 198.18.1.11:http -m").unwrap()
        else {
            panic!()
        };
        assert_eq!(r.service, sa(Proto::Tcp, "198.18.2.1", 80));
        assert_eq!(r.port, Some(80));
        let IpvsCommand::AddService(s) = q("-A -u 198.18.2.1:domain").unwrap() else {
            panic!()
        };
        assert_eq!(s.addr, sa(Proto::Udp, "198.18.2.1", 53));
        // A service name is looked up for the service's protocol (domain is udp here).
        assert!(q("-A -t 198.18.2.1:domain").is_err());
        assert!(q("-A -t unknown.example.test:80").is_err());
    }

    #[test]
    fn issue4_options() {
        let IpvsCommand::AddService(s) =
            p("-A -t 198.18.2.1:0 -s sh -b sh-fallback,flag-2 -p -M 255.255.255.0").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.sched, "sh");
        assert_eq!(s.sched_flags, VipFlags::SH_FALLBACK | VipFlags::SH_PORT);
        assert_eq!(s.persistent, Some(DEFAULT_PERSIST_TIMEOUT_S));
        assert_eq!(s.netmask, Some("255.255.255.0".parse().unwrap()));
        let IpvsCommand::AddService(s) = p("-A -u 198.18.2.1:53 -p 60 -o").unwrap() else {
            panic!()
        };
        assert_eq!((s.persistent, s.one_packet), (Some(60), true));
        let IpvsCommand::AddService(s) = p("-A -t 198.18.2.1:443 -p600").unwrap() else {
            panic!()
        };
        assert_eq!(s.persistent, Some(600));
        let IpvsCommand::AddService(s) =
            p("-A -t [2001:db8::1]:443 -s mh -b flag-1 -p -M 64 --persist-group [2001:db8::1]:80 --mh-size 251").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.sched_flags, VipFlags::MH_FALLBACK);
        assert_eq!(s.netmask, Some("ffff:ffff:ffff:ffff::".parse().unwrap()));
        assert_eq!(s.persist_with, Some(sa(Proto::Tcp, "2001:db8::1", 80)));
        assert_eq!(s.mh_size, Some(251));
        let IpvsCommand::AddService(s) = p("-A -t 198.18.2.1:80 -s wrr -b flag-1").unwrap() else {
            panic!()
        };
        assert_eq!(s.sched_flags, 0, "flag-N means nothing to wrr");
        let IpvsCommand::AddReal(r) = p("-a -t 198.18.2.1:80 -r 198.18.1.1 -x 100 -y 50").unwrap()
        else {
            panic!()
        };
        assert_eq!((r.u_threshold, r.l_threshold), (100, 50));
        assert_eq!(
            p("--set 900 60 300").unwrap(),
            IpvsCommand::SetTimeout([900, 60, 300])
        );
        assert_eq!(
            p("-L --timeout").unwrap(),
            IpvsCommand::ListTimeout { json: false }
        );
        assert_eq!(
            p("-L -n -c --persistent-conn").unwrap(),
            IpvsCommand::ListConns {
                persistent_conn: true,
                json: false,
                numeric: true,
            }
        );
        assert_eq!(
            p("-Lnc").unwrap(),
            IpvsCommand::ListConns {
                persistent_conn: false,
                json: false,
                numeric: true,
            }
        );
        let IpvsCommand::List { format, .. } = p("-L -n --tun-info").unwrap() else {
            panic!()
        };
        assert_eq!(format, ListFormat::TunInfo);
        assert_eq!(
            p("-a -t 198.18.2.1:80 -r 198.18.1.11 -i --tun-info")
                .unwrap_err()
                .to_string(),
            "Illegal 'tun-info' option with the 'add-server' command"
        );
        let IpvsCommand::List { format, nosort, .. } = p("-L -n --thresholds --nosort").unwrap()
        else {
            panic!()
        };
        assert_eq!((format, nosort), (ListFormat::Thresholds, true));
        let IpvsCommand::List { json, service, .. } = p("-L -n --json -t 198.18.2.1:80").unwrap()
        else {
            panic!()
        };
        assert!(json && service.is_some());
        assert_eq!(
            p("-L -c --json").unwrap(),
            IpvsCommand::ListConns {
                persistent_conn: false,
                json: true,
                numeric: false,
            }
        );
        assert_eq!(
            p("-L --timeout --json").unwrap(),
            IpvsCommand::ListTimeout { json: true }
        );
        assert_eq!(
            p("-L --daemon --json").unwrap_err().to_string(),
            "--json with --daemon: lb runs no sync daemon, there is nothing to list"
        );
        assert_eq!(
            p("-S --json").unwrap_err().to_string(),
            "Illegal 'json' option with the 'save' command"
        );
        assert!(p("-A -t 198.18.2.1:80 --json").is_err(), "listing only");
    }

    #[test]
    fn endpoints() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse_endpoint("198.18.0.1:80", Proto::Tcp, &Numeric, "real server").unwrap(),
            (ip("198.18.0.1"), Some(80))
        );
        assert_eq!(
            parse_endpoint("198.18.0.1", Proto::Tcp, &Numeric, "real server").unwrap(),
            (ip("198.18.0.1"), None)
        );
        assert_eq!(
            parse_endpoint("[2001:db8::1]:443", Proto::Tcp, &Numeric, "real server").unwrap(),
            (ip("2001:db8::1"), Some(443))
        );
        assert_eq!(
            parse_endpoint("[2001:db8::1]", Proto::Tcp, &Numeric, "real server").unwrap(),
            (ip("2001:db8::1"), None)
        );
        assert_eq!(
            parse_endpoint("2001:db8::1", Proto::Tcp, &Numeric, "real server").unwrap(),
            (ip("2001:db8::1"), None)
        );
        assert!(parse_endpoint("[198.18.0.1]:80", Proto::Tcp, &Numeric, "real server").is_err());
    }

    /// `--rate` as ipvsadm's option table has it (ipvsadm.c `commands_v_options`, the
    /// LIST row's `-rt` column: optional; 'x' for every other command).
    #[test]
    fn rate_option() {
        let list = |service, exact, format| IpvsCommand::List {
            service,
            stats: false,
            exact,
            format,
            nosort: false,
            json: false,
            numeric: exact,
        };
        assert_eq!(p("-L --rate").unwrap(), list(None, false, ListFormat::Rate));
        // (`-n` given exactly where `--exact` is.)
        assert_eq!(
            p("-L -n --rate --exact -t 198.18.2.1:80").unwrap(),
            list(
                Some(sa(Proto::Tcp, "198.18.2.1", 80)),
                true,
                ListFormat::Rate
            )
        );
        // ipvsadm's precedence (`print_title`): --rate over --thresholds and
        // --persistent-conn; --stats over --rate (kept as its own flag).
        assert_eq!(
            p("-L --thresholds --rate --persistent-conn").unwrap(),
            list(None, false, ListFormat::Rate)
        );
        assert!(matches!(
            p("-L --stats --rate").unwrap(),
            IpvsCommand::List {
                stats: true,
                format: ListFormat::Rate,
                ..
            }
        ));
        let e = |s: &str| p(s).unwrap_err().to_string();
        // process_options: --rate has no place in a listing of connections, timeouts or
        // the sync daemon.
        for conflict in ["-L -c --rate", "-L --timeout --rate", "-L --daemon --rate"] {
            assert_eq!(e(conflict), "options conflicts in the list command");
        }
        assert_eq!(
            e("-Z --rate"),
            "Illegal 'rate' option with the 'zero' command"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 --rate"),
            "Illegal 'rate' option with the 'add-service' command"
        );
    }
}
