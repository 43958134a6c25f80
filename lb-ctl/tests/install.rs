//! `lb-ctl install` / `uninstall` run as the built binary into a temporary prefix (no
//! root, no maps): the files it writes from lb-ctl's real clap definition, and the
//! installed `ipvsadm` link taking ipvsadm's syntax because of the name it is run by
//! (`is_ipvsadm` in src/main.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LB_CTL: &str = env!("CARGO_BIN_EXE_lb-ctl");

fn run(exe: &Path, args: &[&str]) -> Output {
    let out = Command::new(exe).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        exe.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn installed(prefix: &Path) -> PathBuf {
    let out = run(
        Path::new(LB_CTL),
        &["install", "--prefix", prefix.to_str().unwrap()],
    );
    let text = stdout(&out);
    assert!(
        text.lines().last().unwrap().starts_with("lb-ctl install: "),
        "{text}"
    );
    prefix.join("sbin/ipvsadm")
}

#[test]
fn the_installed_ipvsadm_speaks_ipvsadm() {
    let dir = tempfile::tempdir().unwrap();
    let ipvsadm = installed(dir.path());
    let lb_ctl = dir.path().join("sbin/lb-ctl");
    assert_eq!(fs::read(&lb_ctl).unwrap(), fs::read(LB_CTL).unwrap());
    assert_eq!(
        fs::canonicalize(&ipvsadm).unwrap(),
        fs::canonicalize(&lb_ctl).unwrap()
    );
    // By the name ipvsadm, -v/--version is ipvsadm's version line and -h its help
    // (cli::ctl::VERSION and ipvsadm_help); as lb-ctl, both are clap's.
    let version = format!(
        "lb-ctl v{} (ipvsadm command syntax, IPVS v1.2.1 listing format)\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(stdout(&run(&ipvsadm, &["--version"])), version);
    assert_eq!(stdout(&run(&ipvsadm, &["-v"])), version);
    assert_eq!(
        stdout(&run(&lb_ctl, &["--version"])),
        format!("lb-ctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = stdout(&run(&ipvsadm, &["-h"]));
    assert!(
        help.starts_with("ipvsadm-compatible commands") && !help.contains("Usage:"),
        "{help}"
    );
    let help = stdout(&run(&lb_ctl, &["-h"]));
    assert!(help.contains("Usage: lb-ctl"), "{help}");
}

#[test]
fn pages_and_completions_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    installed(dir.path());
    let read = |rel: &str| fs::read_to_string(dir.path().join(rel)).unwrap();
    let main = read("share/man/man8/lb-ctl.8");
    for sub in ["load", "sweep", "upgrade", "install", "uninstall"] {
        assert!(main.contains(&format!(r"lb\-ctl\-{sub}(8)")), "{sub}");
        let page = read(&format!("share/man/man8/lb-ctl-{sub}.8"));
        assert!(page.contains(&format!(".TH lb-ctl-{sub} 8")), "{sub}");
    }
    assert!(read("share/man/man8/lb-ctl-load.8").contains(r"\-\-iface"));
    assert!(main.contains(".SH \"IPVSADM SYNTAX\"") && main.contains(r"\-\-add\-service"));
    assert_eq!(
        fs::read_link(dir.path().join("share/man/man8/ipvsadm.8")).unwrap(),
        Path::new("lb-ctl.8")
    );
    for rel in [
        "share/bash-completion/completions/lb-ctl",
        "share/zsh/site-functions/_lb-ctl",
        "share/fish/vendor_completions.d/lb-ctl.fish",
    ] {
        let text = read(rel);
        for word in ["load", "sweep", "sysctl", "max-flows"] {
            assert!(text.contains(word), "{rel}: {word}");
        }
    }
}

#[test]
fn install_twice_then_uninstall_leaves_the_prefix_empty() {
    let dir = tempfile::tempdir().unwrap();
    let ipvsadm = installed(dir.path());
    let again = stdout(&run(
        Path::new(LB_CTL),
        &["install", "--prefix", dir.path().to_str().unwrap()],
    ));
    assert!(again.contains(": 0 installed, 0 updated, "), "{again}");
    // The installed copy installs itself: its own bytes, so nothing changes either.
    let lb_ctl = dir.path().join("sbin/lb-ctl");
    let itself = stdout(&run(
        &lb_ctl,
        &["install", "--prefix", dir.path().to_str().unwrap()],
    ));
    assert!(itself.contains(": 0 installed, 0 updated, "), "{itself}");
    let gone = stdout(&run(
        &lb_ctl,
        &["uninstall", "--prefix", dir.path().to_str().unwrap()],
    ));
    assert!(gone.contains(", 0 left alone"), "{gone}");
    assert!(!ipvsadm.exists() && !lb_ctl.exists());
    let mut files = Vec::new();
    let mut todo = vec![dir.path().to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_real_ipvsadm_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sbin")).unwrap();
    fs::write(dir.path().join("sbin/ipvsadm"), b"\x7fELF the real one").unwrap();
    let out = Command::new(LB_CTL)
        .args(["install", "--prefix", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "lb-ctl: refusing to install: {}/sbin/ipvsadm is a regular file, not lb-ctl's; \
             nothing was changed\n",
            dir.path().display()
        )
    );
    let names: Vec<_> = fs::read_dir(dir.path().join("sbin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ipvsadm"]);
    assert!(!dir.path().join("share").exists());
}

/// What bash completes for `words` (the last one being completed) with the installed
/// script, as bash-completion would call it.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\n\
         f=$(complete -p lb-ctl | sed -E 's/.*-F ([^ ]+).*/\\1/')\n\
         COMP_WORDS=({})\nCOMP_CWORD={cword}\n\
         \"$f\" lb-ctl '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words[cword],
        words[cword - 1],
    );
    let out = Command::new("bash").args(["-c", &prog]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).lines().map(String::from).collect()
}

#[test]
fn bash_completes_subcommands_and_their_options() {
    let dir = tempfile::tempdir().unwrap();
    installed(dir.path());
    let script = dir.path().join("share/bash-completion/completions/lb-ctl");
    assert_eq!(bash_completes(&script, &["lb-ctl", "lo"]), ["load"]);
    assert!(bash_completes(&script, &["lb-ctl", "install", "--"]).contains(&"--prefix".into()));
    let load = bash_completes(&script, &["lb-ctl", "load", "--"]);
    for want in ["--iface", "--skb", "--max-flows", "--no-sweep"] {
        assert!(load.contains(&want.to_string()), "{want}: {load:?}");
    }
}
