//! The neighbour-following lab: a real that is not up yet when the director is configured.
//! Its own small topology (the shared lab's director has static neighbour entries, which
//! would hide what this checks):
//!
//! ```text
//!  client ns                director ns                     real ns
//!  eth0 198.19.20.1/24 ---- out0 198.19.20.2/24
//!  default via director     in0  198.19.21.1/24 ----------- eth0 (198.19.21.10/24 added
//!                                                           later), VIP 198.19.22.1/32 on lo
//! ```
//!
//! A seed-style director script (`ipvsadm -C`, `-A`, `-a ... -g`) runs through a symlink
//! named `ipvsadm` to lb-ctl while the real has no address: nothing answers ARP for it.
//! Then the real comes up and traffic through the VIP must reach it with no further
//! command (the resident process's neighbour follower learns the MAC); then the real's MAC
//! changes, the director's kernel learns the new one (`ip neigh replace`, as a gratuitous
//! ARP would make it), and traffic must keep reaching it. Every wait is bounded in time
//! and attempts. Namespaces, pin directory and the temporary PATH directory are guards,
//! removed on drop (also on panic).

use super::http::{self, HttpServer};
use super::{LabError, default_lb_ctl};
use crate::netns::{COMMAND_TIMEOUT, Netns, PinDir, run};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Namespace and pin directory name prefix of this lab.
pub const PREFIX: &str = "lbnb";
const CLIENT: &str = "198.19.20.1";
const DIR_OUT: &str = "198.19.20.2";
const DIR_IN: &str = "198.19.21.1";
/// The real's address (configured only when it "comes up").
pub const REAL: &str = "198.19.21.10";
/// The DR service's VIP (on the real's lo).
pub const VIP: &str = "198.19.22.1";
const REAL_MAC: &str = "02:00:c6:13:15:0a";
/// The real's MAC after it changes.
pub const REAL_MAC_2: &str = "02:00:c6:13:15:99";
/// Bound on each wait for traffic or for the listing to show a state.
pub const WAIT: Duration = Duration::from_secs(10);
/// Pause between two attempts of a wait.
const RETRY: Duration = Duration::from_millis(250);

/// The director script, as an operator writes it for ipvsadm.
pub const SCRIPT: &str = "#!/bin/sh
# Director setup: one DR web service, its real server.
set -e
ipvsadm -C
ipvsadm -A -t 198.19.22.1:80 -s rr
ipvsadm -a -t 198.19.22.1:80 -r 198.19.21.10 -g
";

/// A temporary directory, removed with its contents on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The built lab: client, director (lb loaded, its resident process running), real.
pub struct NeighLab {
    server: Option<HttpServer>,
    lb_ctl: PathBuf,
    bin: TempDir,
    pin: PinDir,
    client: Netns,
    director: Netns,
    real: Netns,
}

/// What one bounded wait took.
#[derive(Debug)]
pub struct Waited {
    /// Attempts made.
    pub attempts: u32,
    /// Time until it succeeded.
    pub took: Duration,
}

impl NeighLab {
    /// Builds the topology with the real's interface up but no address on it, and loads lb
    /// on the director.
    pub fn new() -> Result<NeighLab, LabError> {
        if !crate::netns::is_root() {
            return Err(LabError::NotRoot);
        }
        crate::netns::sweep_stale(PREFIX);
        let client = Netns::new(PREFIX, "cli")?;
        let director = Netns::new(PREFIX, "dir")?;
        let real = Netns::new(PREFIX, "r1")?;
        let pin = PinDir::new(PREFIX, "pin");
        let bin =
            TempDir(std::env::temp_dir().join(format!("{PREFIX}-{}-bin", std::process::id())));
        let mut lab = NeighLab {
            server: None,
            lb_ctl: default_lb_ctl(),
            bin,
            pin,
            client,
            director,
            real,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let (cli, dir, real) = (&self.client, &self.director, &self.real);
        dir.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])?;
        real.sysctl(&[
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.default.arp_ignore=1",
            "net.ipv4.conf.default.arp_announce=2",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])?;
        cli.veth("eth0", "", Some(dir), "out0", "")?;
        dir.veth(
            "in0",
            "",
            Some(real),
            "eth0",
            &format!("address {REAL_MAC}"),
        )?;
        cli.addr("eth0", ip(CLIENT), 24)?;
        dir.addr("out0", ip(DIR_OUT), 24)?;
        dir.addr("in0", ip(DIR_IN), 24)?;
        real.addr("lo", ip(VIP), 32)?;
        cli.up("eth0")?;
        dir.up("out0")?;
        dir.up("in0")?;
        real.up("eth0")?;
        cli.ip(&format!("route replace default via {DIR_OUT}"))?;
        self.server = Some(HttpServer::start(real.name(), "real1", 80)?);
        if !self.lb_ctl.exists() {
            return Err(LabError::NoCtl(self.lb_ctl.clone()));
        }
        // `ipvsadm` on PATH is lb-ctl, as `lb-ctl install` makes it.
        std::fs::create_dir_all(&self.bin.0)
            .map_err(|e| LabError::io(format!("creating {}", self.bin.0.display()), e))?;
        let lb_ctl = self
            .lb_ctl
            .canonicalize()
            .map_err(|e| LabError::io("resolving lb-ctl's path", e))?;
        std::os::unix::fs::symlink(&lb_ctl, self.bin.0.join("ipvsadm"))
            .map_err(|e| LabError::io("linking ipvsadm to lb-ctl", e))?;
        // lb with its resident process (expiry and neighbour following).
        self.ctl(&["load", "--iface", "out0", "--iface", "in0", "--skb"])?;
        Ok(())
    }

    /// `lb-ctl ARGS` in the director; stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String, LabError> {
        Ok(run(
            self.director
                .cmd(&self.lb_ctl)
                .args(args)
                .env("LB_PIN_DIR", self.pin.path()),
            COMMAND_TIMEOUT,
        )?)
    }

    /// Runs [`SCRIPT`] with `sh` in the director, `ipvsadm` first on PATH; its stdout.
    pub fn run_script(&self) -> Result<String, LabError> {
        let script = self.bin.0.join("director.sh");
        std::fs::write(&script, SCRIPT)
            .map_err(|e| LabError::io(format!("writing {}", script.display()), e))?;
        let path = format!(
            "{}:{}",
            self.bin.0.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Ok(run(
            self.director
                .cmd("sh")
                .arg(&script)
                .env("PATH", path)
                .env("LB_PIN_DIR", self.pin.path()),
            COMMAND_TIMEOUT,
        )?)
    }

    /// The real comes up: its address, and its route back through the director.
    pub fn real_up(&self) -> Result<(), LabError> {
        self.real.addr("eth0", ip(REAL), 24)?;
        self.real
            .ip(&format!("route replace default via {DIR_IN}"))?;
        Ok(())
    }

    /// The real's interface gets another MAC, and the director's kernel learns it.
    pub fn real_mac_changes(&self) -> Result<(), LabError> {
        self.real
            .ip(&format!("link set eth0 address {REAL_MAC_2}"))?;
        self.director.ip(&format!(
            "neigh replace {REAL} lladdr {REAL_MAC_2} dev in0 nud reachable"
        ))?;
        Ok(())
    }

    /// The `neighbour` object of the real in `-L -n --json`.
    pub fn neighbour(&self) -> Result<serde_json::Value, String> {
        let text = self
            .ctl(&["-L", "-n", "--json"])
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("-L -n --json: {e}: {text}"))?;
        Ok(v["services"][0]["reals"][0]["neighbour"].clone())
    }

    /// Waits (bounded by [`WAIT`]) until `ok` holds; `what` names it in the error.
    pub fn wait_for(
        &self,
        what: &str,
        mut ok: impl FnMut(&NeighLab) -> Result<(), String>,
    ) -> Result<Waited, String> {
        let start = Instant::now();
        let mut attempts = 0;
        let mut last = String::new();
        while start.elapsed() < WAIT {
            attempts += 1;
            match ok(self) {
                Ok(()) => {
                    return Ok(Waited {
                        attempts,
                        took: start.elapsed(),
                    });
                }
                Err(e) => last = e,
            }
            std::thread::sleep(RETRY);
        }
        Err(format!(
            "{what}: not within {} s ({attempts} attempts; last: {last})",
            WAIT.as_secs()
        ))
    }

    /// One HTTP GET from the client to the VIP; the answering real's name.
    pub fn get_vip(&self) -> Result<String, String> {
        let to = SocketAddr::new(ip(VIP), 80);
        self.client
            .run_in(move || http::get(to))
            .map_err(|e| e.to_string())?
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        self.pin.path()
    }
}

impl Drop for NeighLab {
    fn drop(&mut self) {
        // The server's thread holds the real's namespace: stop it before the guards run.
        if let Some(s) = &mut self.server {
            s.stop();
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}
