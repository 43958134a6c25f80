//! The generated files `lb-ctl install` writes: manual pages (clap_mangen) and shell
//! completions (clap_complete), both from lb-ctl's clap definition, which the binary
//! passes in. ipvsadm's syntax is parsed by hand (`cli::ipvsadm`), not by clap, so its
//! text ([`crate::cli::ctl::ipvsadm_help`]) becomes a section of its own in `lb-ctl.8`.

use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};
use std::io;

/// The manual section: lb-ctl administers the system, as ipvsadm does (ipvsadm.8).
pub const MAN_SECTION: &str = "8";

/// The heading of the section holding ipvsadm's syntax in `lb-ctl.8`.
pub const IPVSADM_HEADING: &str = "IPVSADM SYNTAX";

/// The manual pages: `lb-ctl.8` first, then one per subcommand (`lb-ctl-load.8`,
/// `lb-ctl-decap-attach.8`, ...), the pages that `lb-ctl.8`'s list of subcommands refers
/// to (clap_mangen names each `NAME-SUB(8)`). As (file name, roff text).
pub fn man_pages(cmd: clap::Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    // As clap_mangen's own generate_to: no `help` pseudo-subcommand, and built so that
    // every subcommand carries its full display name.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![(
        format!("{}.{MAN_SECTION}", cmd.get_name()),
        main_page(&cmd)?,
    )];
    add_subcommand_pages(&cmd, &mut pages)?;
    Ok(pages)
}

fn add_subcommand_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone()).section(MAN_SECTION);
        let mut text = Vec::new();
        man.render(&mut text)?;
        pages.push((man.get_filename(), text));
        add_subcommand_pages(sub, pages)?;
    }
    Ok(())
}

/// `lb-ctl.8`: clap_mangen's page with the ipvsadm section placed before the free text
/// that follows the options (clap's `after_help`), or at the end.
fn main_page(cmd: &clap::Command) -> io::Result<Vec<u8>> {
    let mut text = Vec::new();
    Man::new(cmd.clone())
        .section(MAN_SECTION)
        .render(&mut text)?;
    let page = String::from_utf8_lossy(&text).into_owned();
    let section = ipvsadm_section(&crate::cli::ctl::ipvsadm_help());
    let at = [".SH EXTRA\n", ".SH VERSION\n"]
        .iter()
        .filter_map(|h| page.find(h))
        .min()
        .unwrap_or(page.len());
    let mut out = page[..at].to_string();
    out.push_str(&section);
    out.push_str(&page[at..]);
    Ok(out.into_bytes())
}

/// The ipvsadm help text as a roff section, kept verbatim (no filling) since its columns
/// line up; roff escapes every line so a leading `.` or `-` stays text.
fn ipvsadm_section(help: &str) -> String {
    let mut roff = Roff::new();
    roff.control("SH", [IPVSADM_HEADING]);
    roff.text([roman(
        "Invoked as ipvsadm (the link lb-ctl install makes), or with an ipvsadm option \
         first, lb-ctl takes ipvsadm's command line:",
    )]);
    roff.control("PP", []);
    roff.control("nf", []);
    for line in help.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff.to_roff()
}

/// The shells lb-ctl installs completions for, with the file name each shell's loader
/// looks for, relative to the prefix (bash-completion's, zsh's and fish's vendor
/// directories).
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "share/bash-completion/completions/lb-ctl"),
    (Shell::Zsh, "share/zsh/site-functions/_lb-ctl"),
    (Shell::Fish, "share/fish/vendor_completions.d/lb-ctl.fish"),
];

/// The completion script of `shell` for `cmd`'s subcommands and options.
pub fn completion(shell: Shell, cmd: &clap::Command) -> Vec<u8> {
    let mut cmd = cmd.clone();
    let name = cmd.get_name().to_string();
    if shell != Shell::Bash || !name.contains('-') {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name, &mut out);
        return out;
    }
    // clap_complete's bash script (4.6.12) completes no subcommand's options for a name
    // with a hyphen: its dispatch loop and its `case` labels escape the hyphen differently
    // (clap-rs/clap#6421, open). Made for the name with `_`, the script agrees with
    // itself; then only its `complete` lines are pointed back at the real command.
    let alias = name.replace('-', "_");
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, alias.clone(), &mut script);
    let script = String::from_utf8_lossy(&script);
    let registered = format!(" {alias}");
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        match line.strip_suffix(&registered) {
            Some(head) if line.trim_start().starts_with("complete ") => {
                out.push_str(head);
                out.push(' ');
                out.push_str(&name);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.into_bytes()
}
