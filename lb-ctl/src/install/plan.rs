//! What `lb-ctl install` puts under a prefix, and what it does with whatever already holds
//! each name: pure decisions over a description of the prefix, so the rules about foreign
//! files (above all a real `ipvsadm`) are decided, and tested, without touching a disk.

use std::path::{Path, PathBuf};

/// Where the executable goes, under the prefix.
pub const BINARY: &str = "sbin/lb-ctl";

/// The `ipvsadm` name: a link to [`BINARY`] in the same directory, so `ipvsadm` on the
/// PATH runs lb-ctl, which takes ipvsadm's syntax when called by that name.
pub const IPVSADM_LINK: &str = "sbin/ipvsadm";

/// The directory of the section-8 manual pages, under the prefix.
pub const MAN8: &str = "share/man/man8";

/// What one installed name holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The running lb-ctl's own executable (mode 0755).
    Binary,
    /// A generated text file (mode 0644): a manual page or a completion script.
    Text(Vec<u8>),
    /// A symbolic link with this target, relative to the link's directory so the tree
    /// stays valid wherever the prefix is mounted.
    Link(PathBuf),
}

/// One name install writes and uninstall removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path, relative to the prefix.
    pub path: PathBuf,
    /// What it holds.
    pub source: Source,
    /// When the name is held by something not ours: skip this entry (and say so) instead of
    /// refusing the whole install. Only for names that are a courtesy, like `ipvsadm.8`.
    pub optional: bool,
    /// A sibling whose existence means the name belongs to someone else, so this entry is
    /// skipped: Debian ships `ipvsadm.8.gz`, and a plain `ipvsadm.8` beside it would
    /// shadow it in the same directory.
    pub guard: Option<PathBuf>,
}

impl Entry {
    /// An entry that is refused on conflict and has no guard.
    pub fn required(path: impl Into<PathBuf>, source: Source) -> Entry {
        Entry {
            path: path.into(),
            source,
            optional: false,
            guard: None,
        }
    }
}

/// What is at an entry's path before install or uninstall acts, as the I/O layer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing.
    Missing,
    /// A regular file; `same`: its bytes and permission bits are exactly what install
    /// would write.
    File {
        /// Whether install would leave it as it is.
        same: bool,
    },
    /// A symbolic link, with its target as stored (not resolved).
    Link(PathBuf),
    /// A directory, a device, a socket or a pipe.
    Other,
}

/// What install does with one entry it may write (a name taken by something not lb-ctl's
/// is an `Err` of [`install_step`] instead, and refuses the whole install).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write it (new, or a refresh of our own file or link).
    Write,
    /// Ours and already as it would be written.
    Unchanged,
    /// Left out (an optional entry whose name is taken), with the reason worded to follow
    /// `it `: `is a regular file, not lb-ctl's`.
    Skip(String),
}

/// What uninstall does with one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Ours: remove it.
    Remove,
    /// Nothing there.
    Absent,
    /// Not ours: left alone, with the reason worded to follow `it is `.
    Leave(String),
}

/// Why a name taken by `found` is not lb-ctl's, worded to follow `PATH is `.
fn foreign(found: &Found) -> String {
    let what = match found {
        Found::Missing => "missing".into(),
        Found::File { .. } => "a regular file".into(),
        Found::Link(t) => format!("a link to {}", t.display()),
        Found::Other => "a directory or special file".into(),
    };
    format!("{what}, not lb-ctl's")
}

/// Whether `found` is what install writes (or wrote) for `source`: for a file, any regular
/// file (the name is lb-ctl's own); for a link, only a link with exactly our target, since
/// any other `ipvsadm` link (to /usr/sbin/ipvsadm, to a wrapper) is someone's choice.
fn is_ours(source: &Source, found: &Found) -> bool {
    match (source, found) {
        (Source::Binary | Source::Text(_), Found::File { .. }) => true,
        (Source::Link(want), Found::Link(have)) => want == have,
        _ => false,
    }
}

/// What install does with `entry`, given what is at its path and whether its guard exists;
/// `Err` with the reason when the name is taken by something not lb-ctl's, worded to
/// follow `PATH is `: `a regular file, not lb-ctl's`.
pub fn install_step(entry: &Entry, found: &Found, guarded: bool) -> Result<Step, String> {
    if guarded && let Some(g) = &entry.guard {
        return Ok(Step::Skip(format!(
            "would sit beside {}, which is not lb-ctl's",
            g.file_name().unwrap_or(g.as_os_str()).display()
        )));
    }
    Ok(match found {
        Found::Missing => Step::Write,
        Found::File { same: true } if is_ours(&entry.source, found) => Step::Unchanged,
        Found::Link(_) if is_ours(&entry.source, found) => Step::Unchanged,
        _ if is_ours(&entry.source, found) => Step::Write,
        other => {
            if entry.optional {
                Step::Skip(format!("is {}", foreign(other)))
            } else {
                return Err(foreign(other));
            }
        }
    })
}

/// What uninstall does with `entry`, given what is at its path.
pub fn uninstall_step(entry: &Entry, found: &Found) -> Removal {
    match found {
        Found::Missing => Removal::Absent,
        f if is_ours(&entry.source, f) => Removal::Remove,
        other => Removal::Leave(foreign(other)),
    }
}

/// The path of `entry` under `prefix`.
pub fn under(prefix: &Path, entry: &Entry) -> PathBuf {
    prefix.join(&entry.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(to: &str) -> Entry {
        Entry::required(IPVSADM_LINK, Source::Link(to.into()))
    }

    #[test]
    fn the_ipvsadm_name_is_refused_unless_it_is_our_link() {
        let e = link("lb-ctl");
        assert_eq!(install_step(&e, &Found::Missing, false), Ok(Step::Write));
        let ours = Found::Link("lb-ctl".into());
        assert_eq!(install_step(&e, &ours, false), Ok(Step::Unchanged));
        // A real ipvsadm binary, a link to it, a directory: never replaced.
        for found in [
            Found::File { same: false },
            Found::File { same: true },
            Found::Link("/usr/sbin/ipvsadm".into()),
            Found::Link("/usr/local/sbin/lb-ctl".into()),
            Found::Other,
        ] {
            assert!(install_step(&e, &found, false).is_err(), "{found:?}");
            assert!(
                matches!(uninstall_step(&e, &found), Removal::Leave(_)),
                "{found:?}"
            );
        }
        assert_eq!(uninstall_step(&e, &ours), Removal::Remove);
        assert_eq!(uninstall_step(&e, &Found::Missing), Removal::Absent);
    }

    #[test]
    fn our_files_are_refreshed_and_kept() {
        let e = Entry::required(BINARY, Source::Binary);
        let step = |found: Found| install_step(&e, &found, false);
        assert_eq!(step(Found::Missing), Ok(Step::Write));
        assert_eq!(step(Found::File { same: true }), Ok(Step::Unchanged));
        assert_eq!(step(Found::File { same: false }), Ok(Step::Write));
        // A link named lb-ctl (to a build tree, say) is someone's arrangement.
        assert!(step(Found::Link("/src/lb/target/release/lb-ctl".into())).is_err());
        assert_eq!(
            uninstall_step(&e, &Found::File { same: false }),
            Removal::Remove
        );
        assert!(matches!(
            uninstall_step(&e, &Found::Other),
            Removal::Leave(_)
        ));
    }

    #[test]
    fn an_optional_entry_is_skipped_when_taken_or_guarded() {
        let e = Entry {
            path: PathBuf::from(MAN8).join("ipvsadm.8"),
            source: Source::Link("lb-ctl.8".into()),
            optional: true,
            guard: Some(PathBuf::from(MAN8).join("ipvsadm.8.gz")),
        };
        assert_eq!(install_step(&e, &Found::Missing, false), Ok(Step::Write));
        assert!(matches!(
            install_step(&e, &Found::Missing, true),
            Ok(Step::Skip(_))
        ));
        assert!(matches!(
            install_step(&e, &Found::File { same: false }, false),
            Ok(Step::Skip(_))
        ));
    }
}
