//! `-R` / `--restore`: ipvsadm commands read from a stream, applied all or nothing.
//!
//! ipvsadm's `restore_table` runs each line as it reads it, so a refused line leaves the
//! lines before it applied. lb parses every line first (a bad line names its number and
//! nothing is applied), then plans each change against the state the lines before it
//! leave, in memory ([`crate::ipvs::model::Snapshot::apply`]); [`crate::cli::ctl`] writes
//! the maps only when every line is accepted. Pure: no map, no clock.

use crate::cli::ipvsadm::IpvsCommand;
use crate::cli::names::Names;
use crate::ipvs::model::{ModelError, Op, Snapshot};
use crate::ipvs::{real, service};

/// A refused line of a `-R` stream; nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct RestoreError {
    /// 1-based line number in the stream.
    pub line: usize,
    /// Why.
    #[source]
    pub source: RestoreLineError,
}

/// Why one `-R` line is refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreLineError {
    /// Not an ipvsadm command line.
    #[error(transparent)]
    Parse(#[from] crate::cli::ipvsadm::ParseError),
    /// A command that changes nothing (a listing, `-S`, `-R`, `-h`).
    #[error("{0} is not a change; a restore stream holds -A -E -D -a -e -d -C -Z --set")]
    NotAChange(String),
    /// Refused by the planner against the state the lines before it leave (with the
    /// line's command, which picks ipvsadm's words for the refusal).
    #[error("{refusal}")]
    Model {
        /// The line's command.
        cmd: Box<IpvsCommand>,
        /// The refusal.
        refusal: ModelError,
    },
}

/// The commands of a `-R` stream with their line numbers: one command per line, as
/// ipvsadm's `config_stream_read` splits them (words between blanks, the word `ipvsadm`
/// dropped), blank lines and lines starting with `#` skipped. Every line is parsed before
/// anything is planned.
pub fn commands(text: &str, names: &dyn Names) -> Result<Vec<(usize, IpvsCommand)>, RestoreError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| *w != "ipvsadm")
            .collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let refused = |e: RestoreLineError| RestoreError {
            line: i + 1,
            source: e,
        };
        let cmd = crate::cli::ipvsadm::parse_with(&words, names).map_err(|e| refused(e.into()))?;
        match cmd {
            IpvsCommand::AddService(_)
            | IpvsCommand::EditService(_)
            | IpvsCommand::DelService(_)
            | IpvsCommand::AddReal(_)
            | IpvsCommand::EditReal(_)
            | IpvsCommand::DelReal(_)
            | IpvsCommand::Clear
            | IpvsCommand::Zero(_)
            | IpvsCommand::SetTimeout(_) => out.push((i + 1, cmd)),
            _ => return Err(refused(RestoreLineError::NotAChange(words.join(" ")))),
        }
    }
    Ok(out)
}

/// Plans the changes of `cmds` one after the other, each against the state the ones
/// before it leave (in memory, [`crate::ipvs::model::Snapshot::apply`]); returns every
/// map write in order and the timeouts of the last `--set`. A refused line refuses all.
pub fn plan(
    snap: &Snapshot,
    cmds: &[(usize, IpvsCommand)],
    resolve: &mut real::Resolver<'_>,
) -> Result<(Vec<Op>, Vec<[u32; 3]>), RestoreError> {
    let mut snap = snap.clone();
    let (mut all, mut sets) = (Vec::new(), Vec::new());
    for (line, cmd) in cmds {
        let ops = match cmd {
            IpvsCommand::AddService(s) => service::add(&snap, s),
            IpvsCommand::EditService(s) => service::edit(&snap, s),
            IpvsCommand::DelService(a) => service::delete(&snap, a),
            IpvsCommand::AddReal(r) => real::add(&snap, r, &mut *resolve),
            IpvsCommand::EditReal(r) => real::edit(&snap, r, &mut *resolve),
            IpvsCommand::DelReal(r) => real::delete(&snap, r),
            IpvsCommand::Clear => Ok(service::clear(&snap)),
            IpvsCommand::Zero(a) => service::zero(&snap, a.as_ref()),
            IpvsCommand::SetTimeout(t) => {
                sets.push(*t);
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
        .map_err(|e| RestoreError {
            line: *line,
            source: RestoreLineError::Model {
                cmd: Box::new(cmd.clone()),
                refusal: e,
            },
        })?;
        snap.apply(&ops);
        all.extend(ops);
    }
    Ok((all, sets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::names::Numeric;
    use crate::nexthop::{NextHop, NextHopError};
    use std::net::IpAddr;

    fn nh(addr: IpAddr) -> Result<NextHop, NextHopError> {
        Ok(NextHop {
            ifindex: 2,
            ifname: "d0".into(),
            local_addr: Some(if addr.is_ipv4() {
                "198.18.0.1".parse().unwrap()
            } else {
                "2001:db8::1".parse().unwrap()
            }),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: Some([2, 0, 0, 0, 0, 2]),
            gateway: None,
        })
    }

    fn planned(text: &str) -> Result<(Snapshot, Vec<Op>), String> {
        let cmds = commands(text, &Numeric).map_err(|e| e.to_string())?;
        let snap = Snapshot::default();
        let (ops, _) = plan(&snap, &cmds, &mut nh).map_err(|e| e.to_string())?;
        let mut after = snap.clone();
        after.apply(&ops);
        Ok((after, ops))
    }

    #[test]
    fn lines_as_ipvsadm_reads_them() {
        // config_stream_read: words between blanks, the word "ipvsadm" dropped; lb also
        // skips blank lines and lines starting with '#'.
        let text = "\
# saved by ipvsadm -S
ipvsadm -A -t 198.18.2.1:80 -s rr

   -a -t 198.18.2.1:80 -r 198.18.1.11:80 -g -w 1\t
--set 900 60 300
";
        let cmds = commands(text, &Numeric).unwrap();
        let lines: Vec<usize> = cmds.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 4, 5]);
        assert!(matches!(cmds[0].1, IpvsCommand::AddService(_)));
        assert!(matches!(cmds[2].1, IpvsCommand::SetTimeout([900, 60, 300])));
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_planned() {
        let e = planned("-A -t 198.18.2.1:80 -s rr\n-a -t 198.18.2.1:80 -r 198.18.1.11 -w x\n")
            .unwrap_err();
        assert_eq!(e, "line 2: illegal weight specified: x (0-65535)");
        let e = planned("-A -t 198.18.2.1:80\n-L -n\n").unwrap_err();
        assert!(e.starts_with("line 2: -L -n is not a change"), "{e}");
        let e = planned("-A -t 198.18.2.1:80\n-R\n").unwrap_err();
        assert!(e.starts_with("line 2: -R is not a change"), "{e}");
    }

    #[test]
    fn each_line_is_planned_against_the_lines_before_it() {
        // The reals join a service that exists only once line 1 is applied; line 4 then
        // deletes the first real again.
        let (snap, ops) = planned(
            "-A -t 198.18.2.1:80 -s wrr\n\
             -a -t 198.18.2.1:80 -r 198.18.1.11 -g -w 2\n\
             -a -t 198.18.2.1:80 -r 198.18.1.12 -g -w 3\n\
             -d -t 198.18.2.1:80 -r 198.18.1.11\n",
        )
        .unwrap();
        assert!(!ops.is_empty());
        assert_eq!(snap.services.len(), 1);
        let id = snap.services[0].1.id;
        let weights: Vec<u32> = snap
            .ordered_reals(id)
            .iter()
            .map(|(_, r)| r.weight)
            .collect();
        assert_eq!(weights, [3]);
        // A refusal later in the stream refuses the whole stream, whatever came before.
        let e = planned(
            "-A -t 198.18.2.1:80 -s wrr\n\
             -a -t 198.18.2.1:80 -r 198.18.1.11 -g\n\
             -a -t 198.18.2.1:80 -r 198.18.1.11 -g\n",
        )
        .unwrap_err();
        assert!(e.starts_with("line 3: Destination already exists"), "{e}");
        let e = planned("-A -t 198.18.2.1:80\n-A -t 198.18.2.1:80\n").unwrap_err();
        assert!(e.starts_with("line 2: Service already exists"), "{e}");
        let e = planned("-a -t 198.18.2.9:80 -r 198.18.1.11\n").unwrap_err();
        assert!(e.starts_with("line 1: No such service"), "{e}");
    }
}
