//! install / uninstall against a temporary prefix, with a stand-in executable and a small
//! clap definition (the real one is lb-ctl's binary; `tests/install.rs` runs that).

use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

/// A clap definition shaped like lb-ctl's: subcommands with options, one nested.
fn cmd() -> clap::Command {
    use clap::{Arg, Command};
    Command::new("lb-ctl")
        .version("0.1.0")
        .about("lb's controller")
        .subcommand(
            Command::new("load")
                .about("Load lb_xdp")
                .arg(Arg::new("iface").long("iface").required(true)),
        )
        .subcommand(Command::new("sweep").about("Expire idle connections"))
        .subcommand(
            Command::new("decap")
                .about("The decap program")
                .subcommand(Command::new("attach").about("Attach lb_decap")),
        )
}

/// A temporary prefix and a stand-in for the running executable outside it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("exe"), b"\x7fELF stand-in for lb-ctl").unwrap();
        fs::create_dir(dir.path().join("prefix")).unwrap();
        Fixture { dir }
    }
    fn prefix(&self) -> PathBuf {
        self.dir.path().join("prefix")
    }
    fn exe(&self) -> PathBuf {
        self.dir.path().join("exe")
    }
    fn at(&self, rel: &str) -> PathBuf {
        self.prefix().join(rel)
    }
    /// The lines install reported, or its error.
    fn install(&self) -> Result<Vec<String>, InstallError> {
        let mut out = Vec::new();
        install(&self.prefix(), &self.exe(), &cmd(), &mut |l| out.push(l))?;
        Ok(out)
    }
    fn uninstall(&self) -> Vec<String> {
        let mut out = Vec::new();
        uninstall(&self.prefix(), &cmd(), &mut |l| out.push(l)).unwrap();
        out
    }
}

/// Every name under `root` with its kind, and for files and links their inode, modification
/// time, mode and content (or target): equal snapshots mean nothing was created, removed,
/// replaced or rewritten.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                // A directory's own time changes with a file made and removed in it (an
                // install taken back); its entries are what count.
                todo.push(p.clone());
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), "dir".into());
                continue;
            } else {
                format!("file {:?}", fs::read(&p).unwrap())
            };
            let stamp = format!(
                "ino {} mtime {}.{} mode {:o}",
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
                m.mode()
            );
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                format!("{what} {stamp}"),
            );
        }
    }
    out
}

fn man8(name: &str) -> String {
    format!("{}/{name}", plan::MAN8)
}

#[test]
fn install_writes_every_file_and_the_ipvsadm_link() {
    let f = Fixture::new();
    let out = f.install().unwrap();
    let bin = f.at(plan::BINARY);
    assert_eq!(fs::read(&bin).unwrap(), fs::read(f.exe()).unwrap());
    assert_eq!(fs::metadata(&bin).unwrap().mode() & 0o7777, 0o755);
    let link = f.at(plan::IPVSADM_LINK);
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("lb-ctl"));
    assert_eq!(
        fs::canonicalize(&link).unwrap(),
        fs::canonicalize(&bin).unwrap(),
        "ipvsadm resolves to the installed lb-ctl"
    );
    for rel in [
        man8("lb-ctl.8"),
        man8("lb-ctl-load.8"),
        man8("lb-ctl-sweep.8"),
        man8("lb-ctl-decap-attach.8"),
        "share/bash-completion/completions/lb-ctl".into(),
        "share/zsh/site-functions/_lb-ctl".into(),
        "share/fish/vendor_completions.d/lb-ctl.fish".into(),
    ] {
        let m = fs::symlink_metadata(f.at(&rel)).unwrap();
        assert!(m.is_file() && m.len() > 0, "{rel}");
        assert_eq!(m.mode() & 0o7777, 0o644, "{rel}");
    }
    assert_eq!(
        fs::read_link(f.at(&man8("ipvsadm.8"))).unwrap(),
        Path::new("lb-ctl.8")
    );
    // One line per file (the 8 pages: lb-ctl, load, sweep, decap, decap-attach, and
    // the ipvsadm.8 link, plus 2 sbin names and 3 completions), then the summary.
    assert_eq!(out.len(), 2 + 5 + 1 + 3 + 1, "{out:#?}");
    assert!(
        out[..out.len() - 1]
            .iter()
            .all(|l| l.starts_with("installed "))
    );
    assert!(
        out.last()
            .unwrap()
            .starts_with("lb-ctl install: 11 installed, 0 updated, 0 unchanged, 0 skipped"),
        "{out:#?}"
    );
}

#[test]
fn a_second_install_changes_nothing() {
    let f = Fixture::new();
    f.install().unwrap();
    let before = snapshot(&f.prefix());
    let out = f.install().unwrap();
    assert_eq!(snapshot(&f.prefix()), before);
    assert!(
        out[..out.len() - 1]
            .iter()
            .all(|l| l.starts_with("unchanged "))
    );
    assert!(
        out.last()
            .unwrap()
            .contains("0 installed, 0 updated, 11 unchanged")
    );
}

#[test]
fn a_changed_binary_is_refreshed_by_rename() {
    let f = Fixture::new();
    f.install().unwrap();
    let bin = f.at(plan::BINARY);
    // A process running the old copy keeps this inode open; it must not be written into.
    let old = fs::File::open(&bin).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    fs::write(f.exe(), b"\x7fELF a newer build").unwrap();
    let out = f.install().unwrap();
    assert!(
        out.contains(&format!("updated {}", bin.display())),
        "{out:#?}"
    );
    assert_eq!(fs::read(&bin).unwrap(), b"\x7fELF a newer build");
    assert_ne!(fs::metadata(&bin).unwrap().ino(), old_ino);
    assert_eq!(
        std::io::read_to_string(old).unwrap(),
        "\x7fELF stand-in for lb-ctl",
        "the old inode is untouched"
    );
}

#[test]
fn a_running_installed_binary_is_replaced_without_text_file_busy() {
    let f = Fixture::new();
    // A real executable stands in for the resident `lb-ctl sweep`: writing into a file
    // that a process runs fails with ETXTBSY; renaming over it does not.
    fs::copy("/bin/sleep", f.exe()).unwrap();
    f.install().unwrap();
    let mut running = std::process::Command::new(f.at(plan::BINARY))
        .arg("30")
        .spawn()
        .unwrap();
    fs::write(f.exe(), b"\x7fELF a newer build").unwrap();
    let out = f.install();
    let still_running = running.try_wait().unwrap().is_none();
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(out.is_ok(), "{out:?}");
    assert!(still_running);
    assert_eq!(
        fs::read(f.at(plan::BINARY)).unwrap(),
        b"\x7fELF a newer build"
    );
}

#[test]
fn a_foreign_ipvsadm_is_refused_with_nothing_written() {
    for foreign in ["file", "link", "dir"] {
        let f = Fixture::new();
        fs::create_dir_all(f.at("sbin")).unwrap();
        let ipvsadm = f.at(plan::IPVSADM_LINK);
        match foreign {
            "file" => fs::write(&ipvsadm, b"\x7fELF the real ipvsadm").unwrap(),
            "link" => symlink("/usr/sbin/ipvsadm", &ipvsadm).unwrap(),
            _ => fs::create_dir(&ipvsadm).unwrap(),
        }
        let before = snapshot(&f.prefix());
        let err = f.install().unwrap_err();
        assert_eq!(snapshot(&f.prefix()), before, "{foreign}: nothing written");
        let msg = err.to_string();
        assert!(
            matches!(err, InstallError::Refused(_))
                && msg.contains("sbin/ipvsadm")
                && !msg.contains('\n'),
            "{foreign}: {msg}"
        );
    }
}

#[test]
fn a_write_failure_takes_back_the_files_it_created() {
    let f = Fixture::new();
    // The temporary name of lb-ctl.8 is taken by a directory, so writing the manual
    // pages fails, after both sbin/ names were written.
    fs::create_dir_all(f.at(plan::MAN8)).unwrap();
    fs::create_dir(f.at(&man8(&format!(
        ".lb-ctl.8.lb-ctl-install.{}",
        std::process::id()
    ))))
    .unwrap();
    fs::create_dir(f.at("sbin")).unwrap();
    let before = snapshot(&f.prefix());
    let err = f.install().unwrap_err();
    assert!(matches!(err, InstallError::Write(..)), "{err}");
    assert_eq!(snapshot(&f.prefix()), before);
}

#[test]
fn a_path_through_a_file_is_an_error_before_any_write() {
    let f = Fixture::new();
    fs::write(f.at("share"), b"not a directory").unwrap();
    let before = snapshot(&f.prefix());
    let err = f.install().unwrap_err();
    assert!(matches!(err, InstallError::Inspect(..)), "{err}");
    assert_eq!(snapshot(&f.prefix()), before);
}

#[test]
fn ipvsadm_8_is_not_put_beside_debians_page() {
    let f = Fixture::new();
    fs::create_dir_all(f.at(plan::MAN8)).unwrap();
    fs::write(f.at(&man8("ipvsadm.8.gz")), b"Debian's page").unwrap();
    let out = f.install().unwrap();
    assert!(!f.at(&man8("ipvsadm.8")).exists());
    let skipped = format!(
        "skipped {} (it would sit beside ipvsadm.8.gz, which is not lb-ctl's)",
        f.at(&man8("ipvsadm.8")).display()
    );
    assert!(out.contains(&skipped), "{out:#?}");
    assert_eq!(
        fs::read(f.at(&man8("ipvsadm.8.gz"))).unwrap(),
        b"Debian's page"
    );
    // A page of that name that is not ours is skipped the same way, not refused.
    let f = Fixture::new();
    fs::create_dir_all(f.at(plan::MAN8)).unwrap();
    fs::write(f.at(&man8("ipvsadm.8")), b"another page").unwrap();
    let out = f.install().unwrap();
    let skipped = format!(
        "skipped {} (it is a regular file, not lb-ctl's)",
        f.at(&man8("ipvsadm.8")).display()
    );
    assert!(out.contains(&skipped), "{out:#?}");
    assert_eq!(fs::read(f.at(&man8("ipvsadm.8"))).unwrap(), b"another page");
    f.uninstall();
    assert_eq!(fs::read(f.at(&man8("ipvsadm.8"))).unwrap(), b"another page");
}

#[test]
fn uninstall_removes_only_what_is_ours() {
    let f = Fixture::new();
    f.install().unwrap();
    // After install: the operator swaps in the real ipvsadm and adds a file of their own.
    let ipvsadm = f.at(plan::IPVSADM_LINK);
    fs::remove_file(&ipvsadm).unwrap();
    fs::write(&ipvsadm, b"\x7fELF the real ipvsadm").unwrap();
    fs::write(f.at("sbin/other"), b"theirs").unwrap();
    fs::write(f.at(&man8("other.8")), b"theirs").unwrap();
    let out = f.uninstall();
    assert!(
        out.contains(&format!(
            "left {} (it is a regular file, not lb-ctl's)",
            ipvsadm.display()
        )),
        "{out:#?}"
    );
    let mut left: Vec<String> = snapshot(&f.prefix())
        .into_iter()
        .filter(|(_, what)| !what.starts_with("dir"))
        .map(|(p, _)| p.display().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["sbin/ipvsadm".into(), "sbin/other".into(), man8("other.8")]
    );
    assert_eq!(fs::read(&ipvsadm).unwrap(), b"\x7fELF the real ipvsadm");
    assert!(
        out.last().unwrap().contains("10 removed, 1 left alone"),
        "{out:#?}"
    );
    // Nothing of ours left: a second uninstall removes nothing.
    let again = f.uninstall();
    assert!(again.last().unwrap().contains("0 removed, 1 left alone"));
}

#[test]
fn pages_and_completions_cover_the_subcommands() {
    let pages = render::man_pages(cmd()).unwrap();
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "lb-ctl.8",
            "lb-ctl-load.8",
            "lb-ctl-sweep.8",
            "lb-ctl-decap.8",
            "lb-ctl-decap-attach.8"
        ]
    );
    let main = String::from_utf8(pages[0].1.clone()).unwrap();
    // Subcommand names appear as roff text, where '-' is written `\-`.
    for want in [
        r"lb\-ctl\-load(8)",
        r"lb\-ctl\-sweep(8)",
        ".SH \"IPVSADM SYNTAX\"",
    ] {
        assert!(main.contains(want), "{want} in:\n{main}");
    }
    // The ipvsadm text, line by line, inside a no-fill block.
    let help = crate::cli::ctl::ipvsadm_help();
    let first = help.lines().next().unwrap().replace('-', r"\-");
    assert!(main.contains(&format!(".nf\n{first}\n")), "{main}");
    for (shell, _) in render::COMPLETIONS {
        let text = String::from_utf8(render::completion(shell, &cmd())).unwrap();
        for want in ["load", "sweep", "iface"] {
            assert!(text.contains(want), "{shell}: {want}");
        }
    }
}
