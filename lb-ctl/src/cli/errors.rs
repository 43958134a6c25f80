//! ipvsadm's messages and exit statuses, for scripts that grep or test them.
//!
//! ipvsadm.c: a refused command line is `fail(2, ...)`: the message, exit status 2; what
//! popt rejects (an unknown option, a missing argument, no command first) prints the
//! message, or `tryhelp_exit`'s "Try `ipvsadm -h' or 'ipvsadm --help' for more
//! information.", and `process_options` returns -1: exit status 255. A command the kernel
//! refuses prints libipvs's `ipvs_strerror` text and also ends with 255. lb prints the
//! same text, then its own detail after `: ` on the same line.

use crate::cli::ctl::CtlError;
use crate::cli::ipvsadm::{IpvsCommand, ParseError};
use crate::cli::restore::RestoreLineError;
use crate::ipvs::model::ModelError;

/// Exit status of a command line ipvsadm's checks refuse (`fail(2, ...)`).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of what popt refuses and of a change the kernel refuses (-1 from
/// `process_options`, returned by `main`).
pub const EXIT_REFUSED: u8 = 255;

/// ipvsadm's `tryhelp_exit` line, which names the program as it was invoked (`argv[0]`:
/// `ipvsadm` from the PATH, the whole path when run by one).
pub fn try_help(argv0: &str) -> String {
    format!("Try `{argv0} -h' or '{argv0} --help' for more information.")
}

/// The exit status ipvsadm gives a command line refused with `e`.
pub fn parse_status(e: &ParseError) -> u8 {
    match e {
        ParseError::BadOption(_) => EXIT_REFUSED,
        ParseError::Usage(_) | ParseError::Unsupported(_) => EXIT_USAGE,
    }
}

/// libipvs `ipvs_strerror`'s text for a refusal, by the command that met it; `None` when
/// IPVS has no such refusal (lb's own limits), which keeps lb's text.
fn strerror(cmd: &IpvsCommand, e: &ModelError) -> Option<&'static str> {
    let on_real = matches!(
        cmd,
        IpvsCommand::AddReal(_) | IpvsCommand::EditReal(_) | IpvsCommand::DelReal(_)
    );
    Some(match e {
        ModelError::ServiceExists(_) => "Service already exists",
        // ESRCH: "Service not defined" for the destination calls, else "No such service".
        ModelError::NoSuchService(_) if on_real => "Service not defined",
        ModelError::NoSuchService(_) => "No such service",
        ModelError::RealExists { .. } => "Destination already exists",
        ModelError::NoSuchReal { .. } => "No such destination",
        ModelError::UnsupportedScheduler(_) => "Scheduler or persistence engine not found",
        _ => return None,
    })
}

/// The message and exit status ipvsadm would give when running `cmd` failed with `e`
/// (lb's detail after ipvsadm's text).
pub fn failure(cmd: &IpvsCommand, e: &CtlError) -> (String, u8) {
    let detail = e.to_string();
    // A listing that fails exits 1 (ipvsadm.c `list_service`: `exit(1)`).
    let refused = if matches!(cmd, IpvsCommand::List { .. }) {
        1
    } else {
        EXIT_REFUSED
    };
    match e {
        CtlError::Model(m) => match strerror(cmd, m) {
            Some(text) => (with_detail(text, &detail), refused),
            None => (detail, refused),
        },
        CtlError::Restore(r) => match &r.source {
            RestoreLineError::Parse(p) => (detail, parse_status(p)),
            // As ipvsadm words the refusal of that line run on its own.
            RestoreLineError::Model { cmd, refusal } => match strerror(cmd, refusal) {
                Some(text) => (
                    format!(
                        "line {}: {}",
                        r.line,
                        with_detail(text, &refusal.to_string())
                    ),
                    EXIT_REFUSED,
                ),
                None => (detail, EXIT_REFUSED),
            },
            _ => (detail, EXIT_REFUSED),
        },
        _ => (detail, 1),
    }
}

/// `text`, then what lb's message says after its own first `: ` (the service or real
/// it names).
fn with_detail(text: &str, detail: &str) -> String {
    match detail.split_once(": ") {
        Some((_, rest)) => format!("{text}: {rest}"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::model::{Endpoint, Proto, RealRef, ServiceAddr};

    fn sa() -> ServiceAddr {
        ServiceAddr {
            proto: Proto::Tcp,
            vip: Endpoint {
                ip: "198.18.2.1".parse().unwrap(),
                port: 80,
            },
        }
    }

    #[test]
    fn kernel_refusals_keep_libipvs_text_first() {
        // libipvs.c ipvs_strerror's table: ipvs_add_dest/ESRCH "Service not defined",
        // ipvs_del_service/ESRCH "No such service", ipvs_add_dest/EEXIST "Destination
        // already exists", ipvs_add_service/ENOENT "Scheduler or persistence engine not found".
        let del_real = IpvsCommand::DelReal(RealRef {
            service: sa(),
            addr: "198.18.1.11".parse().unwrap(),
            port: None,
        });
        let no_svc = CtlError::Model(ModelError::NoSuchService(sa()));
        let (m, code) = failure(&del_real, &no_svc);
        assert!(m.starts_with("Service not defined: "), "{m}");
        assert_eq!(code, 255);
        let (m, _) = failure(&IpvsCommand::DelService(sa()), &no_svc);
        assert_eq!(m, format!("No such service: {}", sa()));
        let (m, _) = failure(
            &IpvsCommand::DelService(sa()),
            &CtlError::Model(ModelError::UnsupportedScheduler("xyz".into())),
        );
        assert!(
            m.starts_with("Scheduler or persistence engine not found: "),
            "{m}"
        );
        assert_eq!(
            parse_status(&ParseError::BadOption("-Q: unknown option".into())),
            255
        );
        assert_eq!(parse_status(&ParseError::Usage("x".into())), 2);
    }

    /// A refused `-R` line is worded as ipvsadm words that command run on its own, after
    /// the line number.
    #[test]
    fn restore_lines_use_the_same_texts() {
        let cmds = crate::cli::restore::commands(
            "-A -t 198.18.2.1:80 -s rr\n-a -t 198.18.2.2:80 -r 198.18.1.11 -g\n",
            &crate::cli::names::Numeric,
        )
        .unwrap();
        let mut resolve = |_| unreachable!("the service check comes first");
        let err = crate::cli::restore::plan(&Default::default(), &cmds, &mut resolve).unwrap_err();
        let (m, code) = failure(&IpvsCommand::Restore, &CtlError::Restore(Box::new(err)));
        assert_eq!(code, 255);
        assert!(m.starts_with("line 2: Service not defined: "), "{m}");
    }
}
