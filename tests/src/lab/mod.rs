//! Network-namespace lab: a client, a director running lb, and real servers on one L2
//! segment, with real HTTP servers, built by a guard that removes everything on drop (also
//! on panic). Used by `tests/tests/lab.rs` and by `cargo xtask demo`.
//!
//! ```text
//!  client ns               director ns                      switch ns        real ns ×3
//!  eth0 198.18.0.1/24 ---- out0 198.18.0.2/24                 br0 --p1------ eth0 198.18.1.11/24
//!       2001:db8::1/64          2001:db8::2/64                    --p2------ eth0 198.18.1.12/24
//!  default via director    in0  198.18.1.1/24   ---- p0 ---  br0 --p3------ eth0 198.18.1.13/24
//!                               2001:db8:1::1/64                             (2001:db8:1::11-13/64)
//! ```
//!
//! The director forwards (so DR/TUN replies, which go straight from the real to the client,
//! are routed by its kernel) and has rp_filter off (those replies come from a VIP it has no
//! route for). Reals default-route via the director, so NAT replies pass through it as
//! LVS-NAT requires. Reals carry the DR and TUN VIPs on `lo` (arp_ignore=1, arp_announce=2,
//! IPv6 nodad) and the decap program on eth0; lb runs on the director with generic XDP on
//! both interfaces (native XDP_TX/redirect on veth drops frames unless the peer has an XDP
//! program, DESIGN.md §2).
//!
//! Addresses: only 198.18.0.0/15 and 2001:db8::/32, only inside these namespaces.

pub mod http;
pub mod netns;

pub use http::HttpServer;
pub use netns::{Cleaner, Names};

use lb_common::{Counter, ForwardMode};
use netns::{COMMAND_TIMEOUT, ip, run};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Real servers in a lab.
pub const REALS: usize = 3;
/// Port of every service and HTTP server.
pub const HTTP_PORT: u16 = 80;
/// Failed requests in a row, with no answer yet, after which a batch stops.
pub const GIVE_UP_AFTER: usize = 3;
/// Director interface toward the client.
pub const OUTSIDE_IF: &str = "out0";
/// Director interface toward the reals.
pub const INSIDE_IF: &str = "in0";
/// Interface name of the client and of each real.
pub const HOST_IF: &str = "eth0";

/// Why a lab step failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces, XDP and bpffs need root.
    #[error("needs root (network namespaces, XDP, bpffs)")]
    NotRoot,
    /// A command exited non-zero.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// First lines of its stderr (or stdout).
        stderr: String,
    },
    /// A command ran past its time bound and was killed.
    #[error("`{cmd}` did not finish within {secs} s")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The bound.
        secs: u64,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The lb-ctl binary is missing.
    #[error("lb-ctl not found at {0} (run `cargo xtask build`)")]
    NoCtl(PathBuf),
    /// An HTTP server could not start.
    #[error("HTTP: {0}")]
    Http(String),
    /// A thread working inside a namespace panicked.
    #[error("a thread working in namespace {0} panicked")]
    Thread(String),
}

impl LabError {
    fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Address family of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
    /// "v4" / "v6".
    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
    fn pick(self, v4: [u8; 4], v6: [u16; 8]) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(v4)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(v6)),
        }
    }
}

/// The three forward modes, in demo order.
pub const MODES: [ForwardMode; 3] = [ForwardMode::Dr, ForwardMode::Tun, ForwardMode::Nat];

/// Short name of a mode ("dr", "tun", "nat").
pub const fn mode_name(mode: ForwardMode) -> &'static str {
    match mode {
        ForwardMode::Dr => "dr",
        ForwardMode::Tun => "tun",
        ForwardMode::Nat => "nat",
    }
}

/// The director counter that counts packets forwarded in `mode`.
pub fn forward_counter(mode: ForwardMode) -> &'static str {
    let c = match mode {
        ForwardMode::Dr => Counter::FWD_DR,
        ForwardMode::Tun => Counter::FWD_TUN,
        ForwardMode::Nat => Counter::FWD_NAT,
    };
    counter_name(c)
}

/// The name `lb-ctl counters` prints for an event counter.
pub fn counter_name(c: Counter) -> &'static str {
    Counter::EVENTS
        .iter()
        .find(|(e, _)| *e == c)
        .map(|(_, n)| *n)
        .unwrap_or("?")
}

/// ipvsadm's flag for a mode.
const fn mode_flag(mode: ForwardMode) -> &'static str {
    match mode {
        ForwardMode::Dr => "-g",
        ForwardMode::Tun => "-i",
        ForwardMode::Nat => "-m",
    }
}

/// The client's address.
pub fn client_addr(f: Family) -> IpAddr {
    f.pick([198, 18, 0, 1], [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
}
/// The director's outside address (the client's gateway).
pub fn director_outside(f: Family) -> IpAddr {
    f.pick([198, 18, 0, 2], [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2])
}
/// The director's inside address (the reals' gateway).
pub fn director_inside(f: Family) -> IpAddr {
    f.pick([198, 18, 1, 1], [0x2001, 0xdb8, 1, 0, 0, 0, 0, 1])
}
/// Address of real `i` (1-based).
pub fn real_addr(i: usize, f: Family) -> IpAddr {
    f.pick(
        [198, 18, 1, 10 + i as u8],
        [0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10 + i as u16],
    )
}
/// The VIP of the lab service in `mode`: DR .1, TUN .2, NAT .3 of 198.18.2.0/24 and
/// 2001:db8:2::/64.
pub fn vip(mode: ForwardMode, f: Family) -> IpAddr {
    let n = match mode {
        ForwardMode::Dr => 1,
        ForwardMode::Tun => 2,
        ForwardMode::Nat => 3,
    };
    f.pick([198, 18, 2, n], [0x2001, 0xdb8, 2, 0, 0, 0, 0, n as u16])
}
/// MAC of real `i` (1-based); fixed so the director's neighbour entries can be static.
pub fn real_mac(i: usize) -> String {
    format!("02:00:c6:12:01:{:02x}", 10 + i)
}
/// Name a real's HTTP server answers with.
pub fn real_name(i: usize) -> String {
    format!("real{i}")
}

/// A batch of answers summed up: "12 answered (real1 4, real2 5, real3 3)" or with the
/// distinct errors and how often each occurred.
pub fn summarize(answers: &[Result<String, String>]) -> String {
    let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errs: BTreeMap<&str, usize> = BTreeMap::new();
    for a in answers {
        match a {
            Ok(name) => *ok.entry(name).or_default() += 1,
            Err(e) => *errs.entry(e).or_default() += 1,
        }
    }
    let list = |m: &BTreeMap<&str, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "{} answered ({})",
        answers.len() - errs.values().sum::<usize>(),
        list(&ok)
    );
    if !errs.is_empty() {
        s += &format!(
            "; {} failed ({})",
            errs.values().sum::<usize>(),
            list(&errs)
        );
    }
    s
}

/// `addr:port` as ipvsadm writes it (`[v6]:port`).
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

/// The default lb-ctl: `$LB_CTL`, else the workspace's `target/release/lb-ctl`.
pub fn default_lb_ctl() -> PathBuf {
    if let Some(p) = std::env::var_os("LB_CTL") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/lb-ctl")
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A built lab. Dropping it stops the servers and removes the namespaces and pins.
pub struct Lab {
    cleaner: Cleaner,
    servers: Vec<HttpServer>,
    lb_ctl: PathBuf,
    /// Serializes lb-ctl runs: they write the same maps.
    ctl_lock: Mutex<()>,
}

impl Lab {
    /// Builds a lab with fresh names.
    pub fn new() -> Result<Lab, LabError> {
        Lab::with_cleaner(Cleaner::fresh(REALS))
    }

    /// Builds the lab whose names `cleaner` holds (install a signal handler that runs the
    /// cleaner first, then call this). On error everything built so far is removed.
    pub fn with_cleaner(cleaner: Cleaner) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        netns::sweep_stale();
        let mut lab = Lab {
            cleaner,
            servers: Vec::new(),
            lb_ctl: default_lb_ctl(),
            ctl_lock: Mutex::new(()),
        };
        lab.build()?; // on error, dropping `lab` cleans up
        Ok(lab)
    }

    /// Names of the namespaces and pin directories.
    pub fn names(&self) -> &Names {
        self.cleaner.names()
    }

    /// A handle that removes this lab (for signal handlers).
    pub fn cleaner(&self) -> Cleaner {
        self.cleaner.clone()
    }

    /// Uses this lb-ctl instead of the default.
    pub fn set_lb_ctl(&mut self, path: PathBuf) {
        self.lb_ctl = path;
    }

    /// Requests each real's HTTP server has answered.
    pub fn served(&self) -> Vec<u64> {
        self.servers.iter().map(HttpServer::served).collect()
    }

    fn build(&mut self) -> Result<(), LabError> {
        let n = self.cleaner.names();
        let (cli, dir, sw) = (&n.client, &n.director, &n.switch);
        for ns in n.namespaces() {
            ip(&format!("netns add {ns}"))?;
            // No DAD anywhere: link-local and global v6 addresses are usable at once
            // (a tentative link-local address silences neighbour solicitations).
            sysctl(
                ns,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            )?;
            ip(&format!("-n {ns} link set lo up"))?;
        }
        sysctl(
            dir,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        for r in &n.reals {
            sysctl(
                r,
                &[
                    "net.ipv4.conf.all.arp_ignore=1",
                    "net.ipv4.conf.all.arp_announce=2",
                    "net.ipv4.conf.default.arp_ignore=1",
                    "net.ipv4.conf.default.arp_announce=2",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ],
            )?;
        }
        // client <-> director outside
        ip(&format!(
            "-n {cli} link add {HOST_IF} address 02:00:c6:12:00:01 type veth peer name {OUTSIDE_IF} address 02:00:c6:12:00:02 netns {dir}"
        ))?;
        // the inside segment: a bridge in its own namespace
        ip(&format!(
            "-n {sw} link add br0 type bridge mcast_snooping 0"
        ))?;
        ip(&format!("-n {sw} link set br0 up"))?;
        ip(&format!(
            "-n {dir} link add {INSIDE_IF} address 02:00:c6:12:01:01 type veth peer name p0 netns {sw}"
        ))?;
        ip(&format!("-n {sw} link set p0 master br0 up"))?;
        for (i, r) in n.reals.iter().enumerate() {
            let i = i + 1;
            ip(&format!(
                "-n {r} link add {HOST_IF} address {} type veth peer name p{i} netns {sw}",
                real_mac(i)
            ))?;
            ip(&format!("-n {sw} link set p{i} master br0 up"))?;
        }
        // addresses and routes
        for f in Family::ALL {
            let (plen, in_plen) = if f == Family::V4 { (24, 24) } else { (64, 64) };
            addr(cli, client_addr(f), plen, HOST_IF)?;
            addr(dir, director_outside(f), plen, OUTSIDE_IF)?;
            addr(dir, director_inside(f), in_plen, INSIDE_IF)?;
            for (i, r) in n.reals.iter().enumerate() {
                addr(r, real_addr(i + 1, f), in_plen, HOST_IF)?;
                for mode in [ForwardMode::Dr, ForwardMode::Tun] {
                    addr(
                        r,
                        vip(mode, f),
                        if f == Family::V4 { 32 } else { 128 },
                        "lo",
                    )?;
                }
            }
        }
        ip(&format!("-n {cli} link set {HOST_IF} up"))?;
        ip(&format!("-n {dir} link set {OUTSIDE_IF} up"))?;
        ip(&format!("-n {dir} link set {INSIDE_IF} up"))?;
        for f in Family::ALL {
            route_default(cli, director_outside(f))?;
        }
        for (i, r) in n.reals.iter().enumerate() {
            ip(&format!("-n {r} link set {HOST_IF} up"))?;
            for f in Family::ALL {
                route_default(r, director_inside(f))?;
                // Static neighbours: the balancer's next-hop MACs never wait on resolution.
                ip(&format!(
                    "-n {dir} neigh replace {} lladdr {} dev {INSIDE_IF} nud permanent",
                    real_addr(i + 1, f),
                    real_mac(i + 1)
                ))?;
            }
        }
        for (i, r) in n.reals.iter().enumerate() {
            self.servers
                .push(HttpServer::start(r, &real_name(i + 1), HTTP_PORT)?);
        }
        Ok(())
    }

    /// Runs `lb-ctl ARGS` in the director's namespace (nsenter --net, so /sys/fs/bpf stays
    /// visible) with the lab's LB_PIN_DIR; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String, LabError> {
        let n = self.names();
        self.ctl_in(&n.director, &n.pin_dir, args)
    }

    fn ctl_in(&self, ns: &str, pin_dir: &Path, args: &[&str]) -> Result<String, LabError> {
        if !self.lb_ctl.exists() {
            return Err(LabError::NoCtl(self.lb_ctl.clone()));
        }
        let _g = self.ctl_lock.lock().unwrap_or_else(|e| e.into_inner());
        run(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .arg(&self.lb_ctl)
                .args(args)
                .env("LB_PIN_DIR", pin_dir),
            COMMAND_TIMEOUT,
        )
    }

    /// Loads lb on the director (both interfaces, generic XDP) and attaches the decap
    /// program to every real's interface.
    pub fn start_lb(&self) -> Result<(), LabError> {
        self.ctl(&["load", "--iface", OUTSIDE_IF, "--iface", INSIDE_IF, "--skb"])?;
        let n = self.names();
        for (r, pin) in n.reals.iter().zip(&n.real_pin_dirs) {
            self.ctl_in(r, pin, &["decap", "attach", "--iface", HOST_IF, "--skb"])?;
        }
        Ok(())
    }

    /// Detaches lb and decap the way an operator would (the guard removes the pins anyway).
    pub fn stop_lb(&self) -> Result<(), LabError> {
        let n = self.names();
        for (r, pin) in n.reals.iter().zip(&n.real_pin_dirs) {
            self.ctl_in(r, pin, &["decap", "detach", "--iface", HOST_IF])?;
        }
        self.ctl(&["unload"])?;
        Ok(())
    }

    /// Adds the lab service of `mode` and family `f` (mh, hashing ports too so one client's
    /// connections spread) with all reals at weight 1; returns the VIP:port.
    pub fn add_service(&self, mode: ForwardMode, f: Family) -> Result<SocketAddr, LabError> {
        let vip = SocketAddr::new(vip(mode, f), HTTP_PORT);
        let v = vip.to_string();
        self.ctl(&["-A", "-t", &v, "-s", "mh", "-b", "mh-port"])?;
        for i in 1..=REALS {
            let rip = endpoint(real_addr(i, f), HTTP_PORT);
            self.ctl(&["-a", "-t", &v, "-r", &rip, mode_flag(mode), "-w", "1"])?;
        }
        Ok(vip)
    }

    /// Sends `count` HTTP requests, one connection each, from the client to `to`; returns
    /// each answer's body (the real's name) or why it failed. Gives up after
    /// [`GIVE_UP_AFTER`] failures in a row before any answer, so a dead path costs seconds,
    /// not `count` timeouts.
    pub fn http_get_many(
        &self,
        to: SocketAddr,
        count: usize,
    ) -> Result<Vec<Result<String, String>>, LabError> {
        netns::in_netns(&self.names().client, move || {
            let mut out: Vec<Result<String, String>> = Vec::with_capacity(count);
            for _ in 0..count {
                out.push(http::get(to));
                if out.len() >= GIVE_UP_AFTER && out.iter().all(Result::is_err) {
                    break;
                }
            }
            out
        })
    }

    /// The director's data-path counters (`lb-ctl counters`), by name.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>, LabError> {
        let text = self.ctl(&["counters"])?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.parse().ok()?))
            })
            .collect())
    }

    /// Namespaces and pin directories of this lab that still exist.
    pub fn leftovers(&self) -> Vec<String> {
        self.cleaner.leftovers()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Servers first: their threads hold the real namespaces alive.
        for s in &mut self.servers {
            s.stop();
        }
        self.cleaner.run();
    }
}

fn sysctl(ns: &str, settings: &[&str]) -> Result<String, LabError> {
    // `ip netns exec` is fine here: sysctl needs the namespace's /proc/sys/net, not bpffs.
    run(
        Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-qw"])
            .args(settings),
        COMMAND_TIMEOUT,
    )
}

fn addr(ns: &str, a: IpAddr, plen: u8, dev: &str) -> Result<String, LabError> {
    let nodad = if a.is_ipv6() { " nodad" } else { "" };
    ip(&format!("-n {ns} addr add {a}/{plen} dev {dev}{nodad}"))
}

fn route_default(ns: &str, via: IpAddr) -> Result<String, LabError> {
    let fam = if via.is_ipv6() { "-6" } else { "-4" };
    ip(&format!("-n {ns} {fam} route replace default via {via}"))
}
