//! `lb-ctl install` and `lb-ctl uninstall`: lb-ctl's executable, an `ipvsadm` link to it,
//! its manual pages and shell completions under a prefix (/usr/local by default).
//!
//! Install looks at every name first ([`plan`]) and writes nothing if one is taken by
//! something not its own, above all a real `ipvsadm`. Each file is written to a temporary
//! name in its directory and renamed over the old one, so a process reading or running the
//! old copy (the resident `lb-ctl sweep`) keeps the old inode and never sees a half-written
//! file. Uninstall removes the same names where they are still ours, and nothing else.

pub mod plan;
pub mod render;

use plan::{Entry, Found, Removal, Source, Step};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// The prefix install uses when none is given (Debian's root PATH, ENV_SUPATH in
/// /etc/login.defs, puts /usr/local/sbin before /usr/sbin).
pub const DEFAULT_PREFIX: &str = "/usr/local";

/// Mode of the installed executable.
const MODE_BINARY: u32 = 0o755;
/// Mode of the manual pages and completion scripts.
const MODE_TEXT: u32 = 0o644;

/// Why install or uninstall stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A name is taken by something that is not lb-ctl's; nothing was written.
    #[error("refusing to install: {0}; nothing was changed")]
    Refused(String),
    /// The running executable could not be read.
    #[error("cannot read lb-ctl's executable {0}")]
    ReadBinary(PathBuf, #[source] io::Error),
    /// What is at a path could not be determined.
    #[error("cannot inspect {0}")]
    Inspect(PathBuf, #[source] io::Error),
    /// The manual pages could not be rendered.
    #[error("cannot render the manual pages")]
    Render(#[source] io::Error),
    /// Writing failed; the files this run created before it (reported `installed`) were
    /// removed again, the ones it refreshed stay refreshed.
    #[error("cannot write {0} (the files this install created were removed again)")]
    Write(PathBuf, #[source] io::Error),
    /// Removing failed (the files reported `removed` before it are gone).
    #[error("cannot remove {0}")]
    Remove(PathBuf, #[source] io::Error),
}

/// Everything install writes, in the order it writes it: the executable before the link
/// to it (so the link never dangles), then the manual pages and completions.
pub fn layout(cmd: &clap::Command) -> Result<Vec<Entry>, InstallError> {
    let mut v = vec![
        Entry::required(plan::BINARY, Source::Binary),
        Entry::required(plan::IPVSADM_LINK, Source::Link("lb-ctl".into())),
    ];
    let man8 = Path::new(plan::MAN8);
    let pages = render::man_pages(cmd.clone()).map_err(InstallError::Render)?;
    let main = pages.first().map(|(name, _)| name.clone());
    for (name, text) in pages {
        v.push(Entry::required(man8.join(name), Source::Text(text)));
    }
    // `man ipvsadm` shows lb-ctl's page, as `ipvsadm` runs lb-ctl; never over a page of
    // the same name, and not beside Debian's compressed one in the same directory.
    if let Some(main) = main {
        v.push(Entry {
            path: man8.join(format!("ipvsadm.{}", render::MAN_SECTION)),
            source: Source::Link(main.into()),
            optional: true,
            guard: Some(man8.join(format!("ipvsadm.{}.gz", render::MAN_SECTION))),
        });
    }
    for (shell, path) in render::COMPLETIONS {
        v.push(Entry::required(
            path,
            Source::Text(render::completion(shell, cmd)),
        ));
    }
    Ok(v)
}

/// The bytes and mode a file entry is written with (`None` for a link).
fn file_content<'a>(source: &'a Source, binary: &'a [u8]) -> Option<(&'a [u8], u32)> {
    match source {
        Source::Binary => Some((binary, MODE_BINARY)),
        Source::Text(t) => Some((t, MODE_TEXT)),
        Source::Link(_) => None,
    }
}

/// What is at `path`, compared with what `source` would put there.
fn observe(path: &Path, source: &Source, binary: &[u8]) -> Result<Found, InstallError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(InstallError::Inspect(path.into(), e)),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(path).map_err(|e| InstallError::Inspect(path.into(), e))?;
        return Ok(Found::Link(target));
    }
    if !kind.is_file() {
        return Ok(Found::Other);
    }
    let same = match file_content(source, binary) {
        Some((bytes, mode)) => {
            meta.permissions().mode() & 0o7777 == mode
                && meta.len() == bytes.len() as u64
                && fs::read(path).map_err(|e| InstallError::Inspect(path.into(), e))? == bytes
        }
        None => false,
    };
    Ok(Found::File { same })
}

/// Whether `path` exists in any form (a dangling link counts).
fn exists(path: &Path) -> Result<bool, InstallError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(InstallError::Inspect(path.into(), e)),
    }
}

/// Puts `source` at `path` by way of a temporary name in the same directory and a rename,
/// which replaces the name in one step and leaves the old inode to whoever has it open.
fn put(path: &Path, source: &Source, binary: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.lb-ctl-install.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = match (source, file_content(source, binary)) {
        (Source::Link(target), _) => symlink(target, &tmp),
        (_, Some((bytes, mode))) => write_file(&tmp, bytes, mode),
        (_, None) => Ok(()),
    };
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    // The umask may have cleared bits of `mode` at creation.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()
}

/// `lb-ctl install`: installs under `prefix` the executable read from `exe`, the `ipvsadm`
/// link, and the manual pages and completions of `cmd` (lb-ctl's clap definition).
/// `report` gets one line per file as it is done, then a summary.
pub fn install(
    prefix: &Path,
    exe: &Path,
    cmd: &clap::Command,
    report: &mut dyn FnMut(String),
) -> Result<(), InstallError> {
    let binary = fs::read(exe).map_err(|e| InstallError::ReadBinary(exe.into(), e))?;
    let entries = layout(cmd)?;
    let mut steps = Vec::with_capacity(entries.len());
    let mut refused = Vec::new();
    for e in &entries {
        let path = plan::under(prefix, e);
        let found = observe(&path, &e.source, &binary)?;
        let guarded = match &e.guard {
            Some(g) => exists(&prefix.join(g))?,
            None => false,
        };
        match plan::install_step(e, &found, guarded) {
            Ok(step) => steps.push((e, path, step, found)),
            Err(why) => refused.push(format!("{} is {why}", path.display())),
        }
    }
    if let Some(first) = refused.first() {
        let more = match refused.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        return Err(InstallError::Refused(format!("{first}{more}")));
    }
    let mut created: Vec<PathBuf> = Vec::new();
    let (mut new, mut updated, mut unchanged, mut skipped) = (0, 0, 0, 0);
    for (e, path, step, found) in steps {
        let shown = match &e.source {
            Source::Link(t) => format!("{} -> {}", path.display(), t.display()),
            _ => path.display().to_string(),
        };
        match step {
            Step::Write => {
                if let Err(err) = put(&path, &e.source, &binary) {
                    for p in created.iter().rev() {
                        let _ = fs::remove_file(p);
                    }
                    return Err(InstallError::Write(path, err));
                }
                if found == Found::Missing {
                    created.push(path);
                    new += 1;
                    report(format!("installed {shown}"));
                } else {
                    updated += 1;
                    report(format!("updated {shown}"));
                }
            }
            Step::Unchanged => {
                unchanged += 1;
                report(format!("unchanged {shown}"));
            }
            Step::Skip(why) => {
                skipped += 1;
                report(format!("skipped {} (it {why})", path.display()));
            }
        }
    }
    report(format!(
        "lb-ctl install: {new} installed, {updated} updated, {unchanged} unchanged, {skipped} skipped under {}; \
         `ipvsadm` runs lb-ctl where {} comes first in PATH (undo: lb-ctl uninstall{})",
        prefix.display(),
        prefix.join("sbin").display(),
        prefix_arg(prefix),
    ));
    Ok(())
}

/// `--prefix DIR` as the user would retype it, empty for the default.
fn prefix_arg(prefix: &Path) -> String {
    if prefix == Path::new(DEFAULT_PREFIX) {
        String::new()
    } else {
        format!(" --prefix {}", prefix.display())
    }
}

/// `lb-ctl uninstall`: removes under `prefix` each name install writes for `cmd` that is
/// still lb-ctl's, links before the executable they point at. `report` gets a line per
/// file removed or left alone as it goes, then a summary.
pub fn uninstall(
    prefix: &Path,
    cmd: &clap::Command,
    report: &mut dyn FnMut(String),
) -> Result<(), InstallError> {
    let entries = layout(cmd)?;
    let (mut removed, mut left) = (0, 0);
    for e in entries.iter().rev() {
        let path = plan::under(prefix, e);
        match plan::uninstall_step(e, &observe(&path, &e.source, &[])?) {
            Removal::Remove => {
                fs::remove_file(&path).map_err(|err| InstallError::Remove(path.clone(), err))?;
                removed += 1;
                report(format!("removed {}", path.display()));
            }
            Removal::Absent => {}
            Removal::Leave(why) => {
                left += 1;
                report(format!("left {} (it is {why})", path.display()));
            }
        }
    }
    report(format!(
        "lb-ctl uninstall: {removed} removed, {left} left alone under {}",
        prefix.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests;
