//! The `lb-ctl` binary (also installed as `ipvsadm`): native subcommands (load, unload,
//! decap, counters) parsed by clap, and ipvsadm's own syntax. This is the only place that
//! uses anyhow and prints.

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use lb_ctl::cli::{ctl, errors, ipvsadm};
use lb_ctl::loader;
use lb_ctl::maps::sweep;
use std::path::PathBuf;
use std::process::ExitCode;

/// lb's controller: load the XDP balancer and manage its services, ipvsadm-style.
#[derive(Debug, Parser)]
#[command(
    name = "lb-ctl",
    version,
    after_help = "Environment: LB_PIN_DIR (pin directory, default /sys/fs/bpf/lb), \
LB_BPF_OBJECT / LB_DECAP_OBJECT (object files).\n\
Run lb-ctl inside a namespace with `nsenter --net=/run/netns/NAME lb-ctl ...` \
(not `ip netns exec`, which hides /sys/fs/bpf).\n\n\
Examples:\n  lb-ctl load --iface eth0 --skb\n  lb-ctl -A -t 198.18.2.1:80 -s mh\n  \
lb-ctl -a -t 198.18.2.1:80 -r 198.18.1.11:80 -g\n  lb-ctl -L -n\n  lb-ctl counters\n  \
lb-ctl decap attach --iface eth0\n  lb-ctl sweep --once\n  \
lb-ctl sysctl expire_nodest_conn 1\n  lb-ctl upgrade\n  lb-ctl unload"
)]
struct Cli {
    /// BPF object file to load (default: next to lb-ctl, then target/release).
    #[arg(long, global = true, value_name = "PATH")]
    object: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Load lb_xdp (or adopt the pinned one), pin it and its maps, attach to interfaces.
    Load {
        /// Interface to attach to (repeatable).
        #[arg(long = "iface", value_name = "IF", required = true)]
        ifaces: Vec<String>,
        /// Generic (skb) XDP instead of the driver's native mode.
        #[arg(long)]
        skb: bool,
        /// Flow table capacity per family (entries of each of FLOWS4, FLOWS6, NAT_REV4 and
        /// NAT_REV6; all are preallocated). Also sizes the per-CPU flow cache: twice each
        /// CPU's share of N slots, 4,096 to 65,536 per CPU (64 B each).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_flows: Option<u32>,
        /// Do not start the resident sweeper (connection expiry); something else runs
        /// `lb-ctl sweep` (a unit file, the daemon).
        #[arg(long)]
        no_sweep: bool,
    },
    /// Replace the running lb_xdp by this build's on every interface, keeping every map
    /// (services, reals, connections, counters); refused if a map's layout changed.
    Upgrade,
    /// Detach from interfaces; with none, detach everywhere and remove the pin directory.
    Unload {
        /// Interface to detach from (repeatable).
        #[arg(long = "iface", value_name = "IF")]
        ifaces: Vec<String>,
    },
    /// The decap program for tunnel (-i) real servers.
    Decap {
        #[command(subcommand)]
        cmd: DecapCmd,
    },
    /// Print every data-path counter, per-CPU summed: one `name value` line each.
    Counters {
        /// JSON instead: `{"counters": {"rx": N, ...}}` (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Expire idle connections and persistence templates (IPVS's timers) and follow the
    /// neighbour table (each real's next-hop MAC). `lb-ctl load` starts one in the
    /// background; it runs until lb is unloaded. With --once, one expiry pass only.
    Sweep {
        /// One pass, then exit (prints what it expired).
        #[arg(long)]
        once: bool,
        /// Seconds between passes.
        #[arg(long, value_name = "S", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Wait for the running sweeper to end and take over (what `lb-ctl upgrade`
        /// starts), instead of exiting because one runs.
        #[arg(long)]
        takeover: bool,
    },
    /// Show or set the IPVS sysctl-like settings kept in the SETTINGS map:
    /// expire_nodest_conn, expire_quiescent_template (0 or 1, default 0 as IPVS).
    Sysctl {
        /// Setting name; none lists all.
        name: Option<String>,
        /// New value (0 or 1); none shows the current one.
        value: Option<u32>,
    },
    /// Install lb-ctl under a prefix: sbin/lb-ctl, an `ipvsadm` link to it, manual pages
    /// and shell completions; refused, with nothing written, if a name is not lb-ctl's.
    Install {
        /// Directory to install under.
        #[arg(long, value_name = "DIR", default_value = lb_ctl::install::DEFAULT_PREFIX)]
        prefix: PathBuf,
    },
    /// Remove what `lb-ctl install` put under the prefix (a foreign `ipvsadm` stays).
    Uninstall {
        /// Directory lb-ctl was installed under.
        #[arg(long, value_name = "DIR", default_value = lb_ctl::install::DEFAULT_PREFIX)]
        prefix: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DecapCmd {
    /// Load (or adopt) lb_decap and attach it.
    Attach {
        /// Interface (repeatable).
        #[arg(long = "iface", value_name = "IF", required = true)]
        ifaces: Vec<String>,
        /// Generic (skb) XDP.
        #[arg(long)]
        skb: bool,
    },
    /// Detach lb_decap.
    Detach {
        /// Interface (repeatable).
        #[arg(long = "iface", value_name = "IF", required = true)]
        ifaces: Vec<String>,
    },
}

/// Whether the command line is ipvsadm's syntax rather than a subcommand.
fn is_ipvsadm(prog: &str, rest: &[String]) -> bool {
    if prog == "ipvsadm" {
        return true;
    }
    match rest.first() {
        None => false,
        Some(a) => {
            let native = ["-h", "--help", "-V", "--version", "--object"];
            a.starts_with('-') && !native.contains(&a.as_str()) && !a.starts_with("--object=")
        }
    }
}

/// Seconds between the passes of the sweeper `lb-ctl load` starts (IPVS's timers are
/// exact to the jiffy; a pass a second keeps expiry within a second of it).
const SWEEP_INTERVAL_S: u64 = 1;

fn lines(v: Vec<String>) -> String {
    v.into_iter().map(|l| l + "\n").collect()
}

fn run_native(cli: Cli) -> Result<String> {
    let dir = loader::pin_dir();
    let obj = cli.object.as_deref();
    Ok(match cli.cmd {
        Sub::Load {
            ifaces,
            skb,
            max_flows,
            no_sweep,
        } => {
            let req = loader::LoadRequest {
                ifaces,
                skb,
                max_flows,
                object: obj.map(PathBuf::from),
            };
            let mut out = loader::load(&dir, &req)?;
            if !no_sweep {
                out.push(
                    lb_ctl::sweeper::ensure(&dir, SWEEP_INTERVAL_S)
                        .context("cannot start the sweeper (`lb-ctl sweep`)")?,
                );
            }
            lines(out)
        }
        Sub::Upgrade => {
            let was = lb_ctl::sweeper::running(&dir).unwrap_or(false);
            let mut out = loader::upgrade(&dir, obj)?;
            if let Some(line) = lb_ctl::sweeper::restart_after_upgrade(&dir, was, SWEEP_INTERVAL_S)
                .context("cannot restart the sweeper (`lb-ctl sweep`)")?
            {
                out.push(line);
            }
            lines(out)
        }
        Sub::Unload { ifaces } => lines(loader::unload(&dir, &ifaces)?),
        Sub::Decap {
            cmd: DecapCmd::Attach { ifaces, skb },
        } => lines(loader::decap_attach(&dir, &ifaces, skb, obj)?),
        Sub::Decap {
            cmd: DecapCmd::Detach { ifaces },
        } => lines(loader::decap_detach(&dir, &ifaces)?),
        Sub::Counters { json } => ctl::counters(&dir, json)?,
        Sub::Sweep {
            once,
            interval,
            takeover,
        } => {
            if once {
                let r = sweep::sweep_once(&dir)?;
                format!(
                    "clock {} flows {} expired active {} inactive {} templates {} locality {} replies {}\n",
                    r.now, r.flows, r.active, r.inactive, r.templates, r.locality, r.replies
                )
            } else {
                let every = std::time::Duration::from_secs(interval);
                match lb_ctl::sweeper::run(&dir, every, takeover, |e| {
                    eprintln!(
                        "lb-ctl sweep: pass failed: {}",
                        one_line(&anyhow::anyhow!("{e}"))
                    )
                }) {
                    Ok(lb_ctl::sweeper::Ended::Unloaded) => format!(
                        "lb-ctl sweep: lb unloaded from {}; stopped\n",
                        dir.display()
                    ),
                    Ok(lb_ctl::sweeper::Ended::Upgraded) => format!(
                        "lb-ctl sweep: lb upgraded under {}; stopped (the upgrade starts the new sweeper)\n",
                        dir.display()
                    ),
                    Err(lb_ctl::sweeper::SweeperError::AlreadyRunning(d)) => format!(
                        "lb-ctl sweep: a sweeper already runs for {} (`lb-ctl load` starts one); nothing to do\n",
                        d.display()
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Sub::Sysctl { name, value } => ctl::sysctl(&dir, name.as_deref(), value)?,
        // /proc/self/exe, not current_exe(): still readable if the file was replaced.
        Sub::Install { prefix } => {
            let exe = std::path::Path::new("/proc/self/exe");
            lb_ctl::install::install(&prefix, exe, &Cli::command(), &mut |l| println!("{l}"))?;
            String::new()
        }
        Sub::Uninstall { prefix } => {
            lb_ctl::install::uninstall(&prefix, &Cli::command(), &mut |l| println!("{l}"))?;
            String::new()
        }
    })
}

/// Outcome of one invocation: what to print and the exit code.
enum Outcome {
    Ok(String),
    Usage(String),
    Failed(anyhow::Error),
    /// Invoked as `ipvsadm`: ipvsadm's message (lb's detail after it) and exit status.
    Ipvsadm(String, u8),
}

fn run(args: Vec<String>) -> Outcome {
    let prog = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = &args[1.min(args.len())..];
    if is_ipvsadm(&prog, rest) {
        let as_ipvsadm = prog == "ipvsadm";
        // ipvsadm with no arguments lists, as ipvsadm does.
        let cmd = if rest.is_empty() {
            Ok(ipvsadm::IpvsCommand::List {
                service: None,
                stats: false,
                exact: false,
                format: Default::default(),
                nosort: false,
                json: false,
                numeric: false,
            })
        } else {
            ipvsadm::parse(rest)
        };
        return match cmd {
            Err(e) if as_ipvsadm => {
                let mut msg = e.to_string();
                if msg.starts_with("no command given") {
                    // ipvsadm's `tryhelp_exit`: its line, lb's reason after it.
                    let argv0 = args.first().map(String::as_str).unwrap_or("ipvsadm");
                    msg = format!("{} ({msg})", errors::try_help(argv0));
                }
                Outcome::Ipvsadm(msg, errors::parse_status(&e))
            }
            Err(e) => Outcome::Usage(e.to_string()),
            Ok(cmd) => match ctl::run_ipvsadm(&loader::pin_dir(), &cmd) {
                Ok(out) => {
                    if matches!(cmd, ipvsadm::IpvsCommand::List { .. }) {
                        for w in ctl::list_warnings(&loader::pin_dir()) {
                            eprintln!("lb-ctl: warning: {w}");
                        }
                    }
                    Outcome::Ok(out)
                }
                Err(e) if as_ipvsadm => {
                    let (msg, code) = errors::failure(&cmd, &e);
                    Outcome::Ipvsadm(msg, code)
                }
                Err(e) => Outcome::Failed(e.into()),
            },
        };
    }
    if rest.is_empty() || rest[0] == "-h" || rest[0] == "--help" {
        let help = Cli::command().render_long_help().to_string();
        return Outcome::Ok(format!("{help}\n{}", ctl::ipvsadm_help()));
    }
    match Cli::try_parse_from(&args) {
        Ok(cli) => match run_native(cli).context("lb-ctl") {
            Ok(out) => Outcome::Ok(out),
            Err(e) => Outcome::Failed(e),
        },
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Outcome::Ok(e.render().to_string())
            }
            _ => {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("invalid command line");
                Outcome::Usage(first.trim_start_matches("error: ").to_string())
            }
        },
    }
}

/// The error and its causes on one line, skipping a cause already part of the text (some
/// errors repeat their source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s == "lb-ctl" || out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match run(args) {
        Outcome::Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Outcome::Usage(msg) => {
            eprintln!("lb-ctl: {msg} (lb-ctl --help)");
            ExitCode::from(2)
        }
        Outcome::Failed(e) => {
            eprintln!("lb-ctl: {}", one_line(&e));
            ExitCode::from(1)
        }
        Outcome::Ipvsadm(msg, code) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn dispatch_between_syntaxes() {
        assert!(is_ipvsadm("ipvsadm", &[]));
        assert!(is_ipvsadm("lb-ctl", &args("-L -n")));
        assert!(is_ipvsadm("lb-ctl", &args("--list")));
        assert!(!is_ipvsadm("lb-ctl", &args("load --iface eth0")));
        assert!(!is_ipvsadm(
            "lb-ctl",
            &args("--object x.o load --iface eth0")
        ));
        assert!(!is_ipvsadm("lb-ctl", &args("--help")));
        assert!(!is_ipvsadm("lb-ctl", &[]));
    }

    #[test]
    fn native_commands_parse() {
        let cli = Cli::try_parse_from(args(
            "lb-ctl load --iface d0 --iface d1 --skb --max-flows 1000 --no-sweep",
        ))
        .unwrap();
        let Sub::Load {
            ifaces,
            skb,
            max_flows,
            no_sweep,
        } = cli.cmd
        else {
            panic!()
        };
        assert_eq!(ifaces, ["d0", "d1"]);
        assert!(skb);
        assert_eq!(max_flows, Some(1000));
        assert!(no_sweep);
        let cli = Cli::try_parse_from(args("lb-ctl --object /x/lb.bpf.o load --iface d0")).unwrap();
        assert_eq!(cli.object, Some(PathBuf::from("/x/lb.bpf.o")));
        let cli = Cli::try_parse_from(args("lb-ctl decap attach --iface r0 --skb --object /y.o"))
            .unwrap();
        assert_eq!(cli.object, Some(PathBuf::from("/y.o")));
        assert!(matches!(
            cli.cmd,
            Sub::Decap {
                cmd: DecapCmd::Attach { skb: true, .. }
            }
        ));
        let cli = Cli::try_parse_from(args("lb-ctl unload")).unwrap();
        assert!(matches!(cli.cmd, Sub::Unload { ifaces } if ifaces.is_empty()));
        assert!(
            Cli::try_parse_from(args("lb-ctl load")).is_err(),
            "--iface is required"
        );
        assert!(Cli::try_parse_from(args("lb-ctl load --iface d0 --max-flows 0")).is_err());
        assert!(Cli::try_parse_from(args("lb-ctl counters")).is_ok());
    }

    #[test]
    fn usage_errors_are_one_line() {
        let Outcome::Usage(m) = run(args("lb-ctl load")) else {
            panic!()
        };
        assert!(!m.contains('\n'), "{m}");
        let Outcome::Usage(m) = run(args("lb-ctl -A -t 198.18.2.1:80 -w 3")) else {
            panic!()
        };
        assert_eq!(m, "Illegal 'weight' option with the 'add-service' command");
        // Invoked as ipvsadm: its text alone, its exit statuses (ipvsadm.c fail(2, ...);
        // popt's refusals and tryhelp_exit end with -1 from process_options: 255).
        let Outcome::Ipvsadm(m, 2) = run(args("/usr/sbin/ipvsadm -A -t 198.18.2.1:80 -w 3")) else {
            panic!()
        };
        assert_eq!(m, "Illegal 'weight' option with the 'add-service' command");
        let Outcome::Ipvsadm(m, 255) = run(args("ipvsadm -Q")) else {
            panic!()
        };
        assert_eq!(m, "-Q: unknown option");
        let Outcome::Ipvsadm(m, 255) = run(args("ipvsadm -n")) else {
            panic!()
        };
        assert!(
            m.starts_with("Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
            "{m}"
        );
        let Outcome::Ipvsadm(m, 255) = run(args("/usr/local/sbin/ipvsadm -n")) else {
            panic!()
        };
        assert!(
            m.starts_with("Try `/usr/local/sbin/ipvsadm -h' or '/usr/local/sbin/ipvsadm --help'"),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
        let Outcome::Ok(help) = run(args("lb-ctl --help")) else {
            panic!()
        };
        assert!(help.contains("load") && help.contains("--add-service"));
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
