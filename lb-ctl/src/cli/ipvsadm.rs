//! ipvsadm's command line, word for word where lb supports the feature: getopt-style short
//! options (clusters such as `-Ln`, attached arguments such as `-t198.18.0.1:80`), long
//! options (`--tcp-service X`, `--tcp-service=X`), one command per invocation, and the
//! same command/option compatibility checks. Features lb does not have yet are refused
//! with "... is not supported yet" rather than ignored, so a script never half-works.
//!
//! Deviations: a service without a port is an all-port service (ipvsadm wants `-p` for
//! that); lb adds `--persist-group VIP:PORT` (share another service's persistence, as an
//! IPVS firewall-mark service spanning ports does) and `--mh-size PRIME` (Maglev table size).

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
    },
    /// `-L -c`: the connection (and template) entries.
    ListConns {
        /// `--persistent-conn`: add the persistence-engine columns, as ipvsadm.
        persistent_conn: bool,
        /// lb's `--json`: the entries as JSON (docs/json.md).
        json: bool,
    },
    /// `-L --timeout`.
    ListTimeout,
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
}

/// Why an ipvsadm command line is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed command line.
    #[error("{0}")]
    Usage(String),
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
            Cmd::Clear => "clear",
            Cmd::Zero => "zero",
            Cmd::Help => "help",
            Cmd::Version => "version",
            Cmd::Timeout => "set",
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
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Service => "-t/-u",
            Opt::Sched => "-s",
            Opt::SchedFlags => "-b",
            Opt::Real => "-r",
            Opt::Fwd => "-g/-i/-m",
            Opt::Weight => "-w",
            Opt::Numeric => "-n",
            Opt::Stats => "--stats",
            Opt::Rate => "--rate",
            Opt::Exact => "--exact",
            Opt::Persistent => "-p",
            Opt::Netmask => "-M",
            Opt::OnePacket => "-o",
            Opt::UThreshold => "-x",
            Opt::LThreshold => "-y",
            Opt::Connection => "-c",
            Opt::ShowTimeout => "--timeout",
            Opt::Thresholds => "--thresholds",
            Opt::PersistentConn => "--persistent-conn",
            Opt::NoSort => "--nosort",
            Opt::PersistGroup => "--persist-group",
            Opt::MhSize => "--mh-size",
            Opt::Json => "--json",
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
        Cmd::AddReal | Cmd::EditReal => (&[Service, Real], &[Fwd, Weight, UThreshold, LThreshold]),
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
            ],
        ),
        Cmd::Timeout => (&[], &[]),
        Cmd::Zero => (&[], &[Service]),
        Cmd::Clear | Cmd::Help | Cmd::Version => (&[], &[Numeric]),
    }
}

#[derive(Default)]
struct Raw {
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
        short: None,
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
        match self.cmd {
            Some(old) if old != c => Err(usage(format!(
                "more than one command given (--{} and --{})",
                old.name(),
                c.name()
            ))),
            _ => {
                self.cmd = Some(c);
                Ok(())
            }
        }
    }

    fn option(&mut self, o: Opt) -> Result<(), ParseError> {
        if self.seen.contains(&o) && o != Opt::Numeric {
            return Err(usage(format!("option {} given more than once", o.name())));
        }
        self.seen.push(o);
        Ok(())
    }

    fn set(&mut self, long: &str, arg: Option<String>) -> Result<(), ParseError> {
        let arg_or =
            |a: Option<String>| a.ok_or_else(|| usage(format!("--{long} needs an argument")));
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
            "numeric" => self.option(Opt::Numeric)?,
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
            // Accepted by ipvsadm, meaningless here: listing is always sorted.
            "sort" => {}
            "restore" => return Err(ParseError::Unsupported("--restore (-R)".into())),
            "save" => return Err(ParseError::Unsupported("--save (-S)".into())),
            "fwmark-service" => {
                return Err(ParseError::Unsupported(
                    "firewall-mark services (-f)".into(),
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

/// Parses `ADDR[:PORT]` / `[V6ADDR][:PORT]` / bare IPv6 (no port). Host and service
/// names are not looked up.
pub fn parse_endpoint(s: &str) -> Result<(IpAddr, Option<u16>), ParseError> {
    let bad = || {
        usage(format!(
            "illegal address {s} (use IP[:PORT] or [IPv6][:PORT]; names are not resolved)"
        ))
    };
    let port = |p: &str| -> Result<u16, ParseError> {
        p.parse::<u16>()
            .map_err(|_| usage(format!("illegal port number in {s}")))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').ok_or_else(bad)?;
        let ip: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        return match tail {
            "" => Ok((IpAddr::V6(ip), None)),
            t => Ok((
                IpAddr::V6(ip),
                Some(port(t.strip_prefix(':').ok_or_else(bad)?)?),
            )),
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let (addr, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    Ok((IpAddr::V4(ip), Some(port(p)?)))
}

fn service_addr(raw: &Raw) -> Result<Option<ServiceAddr>, ParseError> {
    raw.service
        .as_ref()
        .map(|(proto, s)| {
            let (ip, port) = parse_endpoint(s)?;
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

fn service_spec(raw: &Raw, addr: ServiceAddr) -> Result<ServiceArgs, ParseError> {
    let sched = raw.sched.clone();
    let mut spec = ServiceSpec::with_sched(addr, sched.unwrap_or_else(|| "wlc".into()));
    if let Some(f) = &raw.flags {
        spec.sched_flags = sched_flags(&spec.sched, f)?;
    }
    spec.persistent = match &raw.persistent {
        None => None,
        Some(None) => Some(DEFAULT_PERSIST_TIMEOUT_S),
        Some(Some(t)) => Some(
            t.parse::<u32>()
                .ok()
                .filter(|&t| t >= 1)
                .ok_or_else(|| usage(format!("illegal timeout for persistent service: {t}")))?,
        ),
    };
    if let Some(m) = &raw.netmask {
        if spec.persistent.is_none() {
            return Err(usage("netmask (-M) needs a persistent service (-p)"));
        }
        spec.netmask = Some(match addr.vip.ip {
            IpAddr::V4(_) => m
                .parse::<std::net::Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| usage(format!("illegal virtual server netmask: {m}")))?,
            IpAddr::V6(_) => {
                let plen = m
                    .parse::<u32>()
                    .ok()
                    .filter(|&p| (1..=128).contains(&p))
                    .ok_or_else(|| usage(format!("illegal virtual server netmask: {m}")))?;
                IpAddr::V6(Ipv6Addr::from(u128::MAX << (128 - plen)))
            }
        });
    }
    spec.one_packet = raw.seen.contains(&Opt::OnePacket);
    if let Some(g) = &raw.persist_group {
        let (ip, port) = parse_endpoint(g)?;
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

fn weight(raw: &Raw) -> Result<i64, ParseError> {
    match &raw.weight {
        None => Ok(1),
        Some(w) => w
            .parse::<i64>()
            .map_err(|_| usage(format!("illegal weight specified: {w}"))),
    }
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

/// Parses an ipvsadm command line (without the program name).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<IpvsCommand, ParseError> {
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
            let spec = find_long(name).ok_or_else(|| usage(format!("unknown option --{name}")))?;
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
                    let v = args.get(i).map(|s| s.as_ref().to_string());
                    i += 1;
                    raw.set("set", v)?;
                }
            }
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (pos, c) in cluster.char_indices() {
                let spec = find_short(c).ok_or_else(|| usage(format!("unknown option -{c}")))?;
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

    let cmd = raw
        .cmd
        .ok_or_else(|| usage("no command given (one of -A -E -D -a -e -d -L -C -Z -h)"))?;
    let (required, optional) = allowed(cmd);
    for o in required {
        if !raw.seen.contains(o) {
            return Err(usage(format!(
                "option {} is required with the '{}' command",
                o.name(),
                cmd.name()
            )));
        }
    }
    for o in &raw.seen {
        if !required.contains(o) && !optional.contains(o) {
            return Err(usage(format!(
                "illegal '{}' option with the '{}' command",
                o.name(),
                cmd.name()
            )));
        }
    }

    let svc = service_addr(&raw)?;
    let real = raw.real.as_deref().map(parse_endpoint).transpose()?;
    Ok(match cmd {
        Cmd::AddService => IpvsCommand::AddService(service_spec(&raw, svc.expect("required"))?),
        Cmd::EditService => IpvsCommand::EditService(service_spec(&raw, svc.expect("required"))?),
        Cmd::DelService => IpvsCommand::DelService(svc.expect("required")),
        Cmd::AddReal | Cmd::EditReal => {
            let (addr, port) = real.expect("required");
            let spec = RealSpec {
                service: svc.expect("required"),
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
        Cmd::List if raw.seen.contains(&Opt::Json) && raw.seen.contains(&Opt::ShowTimeout) => {
            return Err(ParseError::Unsupported("--json with --timeout".into()));
        }
        Cmd::List if raw.seen.contains(&Opt::ShowTimeout) => IpvsCommand::ListTimeout,
        Cmd::List if raw.seen.contains(&Opt::Connection) => IpvsCommand::ListConns {
            persistent_conn: raw.seen.contains(&Opt::PersistentConn),
            json: raw.seen.contains(&Opt::Json),
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
            } else {
                ListFormat::Plain
            },
            nosort: raw.seen.contains(&Opt::NoSort),
            json: raw.seen.contains(&Opt::Json),
        },
        Cmd::Timeout => {
            let mut t = [0u32; 3];
            if raw.timeouts.len() != 3 {
                return Err(usage("--set needs three values: TCP TCPFIN UDP"));
            }
            for (slot, v) in t.iter_mut().zip(&raw.timeouts) {
                *slot = v
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n <= i32::MAX as u32)
                    .ok_or_else(|| usage(format!("illegal timeout value: {v}")))?;
            }
            IpvsCommand::SetTimeout(t)
        }
        Cmd::Clear => IpvsCommand::Clear,
        Cmd::Zero => IpvsCommand::Zero(svc),
        Cmd::Help => IpvsCommand::Help,
        Cmd::Version => IpvsCommand::Version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::VipFlags;

    fn p(s: &str) -> Result<IpvsCommand, ParseError> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
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
        let IpvsCommand::EditReal(r) = p("-e -t 198.18.2.1:80 -r 198.18.1.11 -w -1").unwrap()
        else {
            panic!()
        };
        assert_eq!(r.weight, -1, "range is checked by the model");
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
        };
        assert_eq!(p("-L -n").unwrap(), all);
        assert_eq!(p("-Ln").unwrap(), all);
        assert_eq!(p("-l").unwrap(), all);
        assert_eq!(p("--list --numeric").unwrap(), all);
        assert_eq!(
            p("-L -n --stats --exact -t 198.18.2.1:80").unwrap(),
            IpvsCommand::List {
                service: Some(sa(Proto::Tcp, "198.18.2.1", 80)),
                stats: true,
                exact: true,
                format: ListFormat::Plain,
                nosort: false,
                json: false,
            }
        );
        assert_eq!(p("-C").unwrap(), IpvsCommand::Clear);
        assert_eq!(p("-Z").unwrap(), IpvsCommand::Zero(None));
        assert_eq!(p("-h").unwrap(), IpvsCommand::Help);
    }

    #[test]
    fn refusals() {
        let e = |s: &str| p(s).unwrap_err().to_string();
        assert_eq!(
            e("-A -s mh"),
            "option -t/-u is required with the 'add-service' command"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -w 2"),
            "illegal '-w' option with the 'add-service' command"
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80"),
            "option -r is required with the 'add-server' command"
        );
        assert_eq!(
            e("-A -a -t 198.18.2.1:80"),
            "more than one command given (--add-service and --add-server)"
        );
        assert_eq!(
            e("-n"),
            "no command given (one of -A -E -D -a -e -d -L -C -Z -h)"
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
            e("-A -t 198.18.2.1:80 -M 255.255.255.0"),
            "netmask (-M) needs a persistent service (-p)"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 -p 0"),
            "illegal timeout for persistent service: 0"
        );
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.1 -x -3"),
            "illegal u_threshold specified: -3"
        );
        assert_eq!(e("--set 1 2"), "--set needs three values: TCP TCPFIN UDP");
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -w x"),
            "illegal weight specified: x"
        );
        assert_eq!(e("-Q"), "unknown option -Q");
        assert_eq!(
            e("-A -t 198.18.2.1:99999"),
            "illegal port number in 198.18.2.1:99999"
        );
        assert!(e("-A -t www.example.com:80").starts_with("illegal address"));
        assert!(e("-A -t [2001:db8::1:80").starts_with("illegal address"));
        assert_eq!(
            e("-a -t 198.18.2.1:80 -r 198.18.1.11 -g -m"),
            "option -g/-i/-m given more than once"
        );
        assert_eq!(e("-L extra"), "unexpected argument extra");
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
        assert_eq!(p("-L --timeout").unwrap(), IpvsCommand::ListTimeout);
        assert_eq!(
            p("-L -n -c --persistent-conn").unwrap(),
            IpvsCommand::ListConns {
                persistent_conn: true,
                json: false
            }
        );
        assert_eq!(
            p("-Lnc").unwrap(),
            IpvsCommand::ListConns {
                persistent_conn: false,
                json: false
            }
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
                json: true
            }
        );
        assert_eq!(
            p("-L --timeout --json").unwrap_err().to_string(),
            "--json with --timeout is not supported yet"
        );
        assert!(p("-A -t 198.18.2.1:80 --json").is_err(), "listing only");
    }

    #[test]
    fn endpoints() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse_endpoint("198.18.0.1:80").unwrap(),
            (ip("198.18.0.1"), Some(80))
        );
        assert_eq!(
            parse_endpoint("198.18.0.1").unwrap(),
            (ip("198.18.0.1"), None)
        );
        assert_eq!(
            parse_endpoint("[2001:db8::1]:443").unwrap(),
            (ip("2001:db8::1"), Some(443))
        );
        assert_eq!(
            parse_endpoint("[2001:db8::1]").unwrap(),
            (ip("2001:db8::1"), None)
        );
        assert_eq!(
            parse_endpoint("2001:db8::1").unwrap(),
            (ip("2001:db8::1"), None)
        );
        assert!(parse_endpoint("[198.18.0.1]:80").is_err());
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
        };
        assert_eq!(p("-L --rate").unwrap(), list(None, false, ListFormat::Rate));
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
        // -c lists connections whatever the columns.
        assert!(matches!(
            p("-L -c --rate").unwrap(),
            IpvsCommand::ListConns { .. }
        ));
        let e = |s: &str| p(s).unwrap_err().to_string();
        assert_eq!(
            e("-Z --rate"),
            "illegal '--rate' option with the 'zero' command"
        );
        assert_eq!(
            e("-A -t 198.18.2.1:80 --rate"),
            "illegal '--rate' option with the 'add-service' command"
        );
    }
}
