//! Network-namespace lab: a client, a director running lb, and real servers on one L2
//! segment, with real HTTP servers; every namespace and pin directory is a guard of
//! [`crate::netns`], so everything is removed on drop (also on panic, and on Ctrl-C with
//! [`crate::netns::remove_on_ctrlc`]). Used by `tests/tests/lab.rs` and by `cargo xtask demo`.
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
//! program, docs/design.md §2).
//!
//! Addresses: only 198.18.0.0/15 and 2001:db8::/32, only inside these namespaces.

pub mod http;
pub mod neigh;

pub use http::HttpServer;

use crate::netns::{self, COMMAND_TIMEOUT, Netns, PinDir, run};
use lb_common::{Counter, ForwardMode};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
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

/// Prefix of every namespace and pin directory a lab creates: `lblab-<pid>-<n>-<role>`.
pub const PREFIX: &str = "lblab";

/// Why a lab step failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces, XDP and bpffs need root.
    #[error("needs root (network namespaces, XDP, bpffs)")]
    NotRoot,
    /// A command, or entering a namespace, failed.
    #[error(transparent)]
    Sys(#[from] netns::Error),
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

pub use netns::is_root;

/// The names of everything one lab creates.
#[derive(Clone, Debug)]
pub struct Names {
    /// Client namespace.
    pub client: String,
    /// Director namespace (runs the balancer).
    pub director: String,
    /// Namespace holding the inside bridge (the L2 segment of director and reals).
    pub switch: String,
    /// Real-server namespaces, real1..realN.
    pub reals: Vec<String>,
    /// The director's LB_PIN_DIR.
    pub pin_dir: PathBuf,
    /// Each real's LB_PIN_DIR (its decap program).
    pub real_pin_dirs: Vec<PathBuf>,
}

impl Names {
    /// Every namespace, in the order they are created.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut v = vec![
            self.client.as_str(),
            self.director.as_str(),
            self.switch.as_str(),
        ];
        v.extend(self.reals.iter().map(String::as_str));
        v
    }

    /// Namespaces and pin directories of these names that still exist (after the lab is
    /// dropped: what its guards failed to remove).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .namespaces()
            .into_iter()
            .filter(|ns| Path::new(netns::NETNS_DIR).join(ns).exists())
            .map(|ns| format!("netns {ns}"))
            .collect();
        left.extend(
            std::iter::once(&self.pin_dir)
                .chain(&self.real_pin_dirs)
                .filter(|d| d.exists())
                .map(|d| format!("pin dir {}", d.display())),
        );
        left
    }
}

/// A built lab. Dropping it stops the servers, then its guards remove the namespaces and
/// pin directories.
pub struct Lab {
    servers: Vec<HttpServer>,
    names: Names,
    lb_ctl: PathBuf,
    /// Serializes lb-ctl runs: they write the same maps.
    ctl_lock: Mutex<()>,
    /// Pin directories of the director and each real; removed on drop.
    _pins: Vec<PinDir>,
    /// client, director, switch, reals; deleted on drop.
    ns: Vec<Netns>,
}

impl Lab {
    /// Builds a lab with fresh names (call [`netns::remove_on_ctrlc`] first to remove it
    /// on Ctrl-C too). On error everything built so far is removed.
    pub fn new() -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        netns::sweep_stale(PREFIX);
        let mut ns = Vec::new();
        for role in ["cli", "dir", "sw"]
            .map(String::from)
            .into_iter()
            .chain((1..=REALS).map(|i| format!("r{i}")))
        {
            ns.push(Netns::new(PREFIX, &role)?); // on error, `ns` drops what was made
        }
        let pins: Vec<PinDir> = std::iter::once(PinDir::new(PREFIX, "pin"))
            .chain((1..=REALS).map(|i| PinDir::new(PREFIX, &format!("pin-r{i}"))))
            .collect();
        let names = Names {
            client: ns[0].name().to_string(),
            director: ns[1].name().to_string(),
            switch: ns[2].name().to_string(),
            reals: ns[3..].iter().map(|n| n.name().to_string()).collect(),
            pin_dir: pins[0].path().to_path_buf(),
            real_pin_dirs: pins[1..].iter().map(|p| p.path().to_path_buf()).collect(),
        };
        let mut lab = Lab {
            servers: Vec::new(),
            names,
            lb_ctl: default_lb_ctl(),
            ctl_lock: Mutex::new(()),
            _pins: pins,
            ns,
        };
        lab.build()?; // on error, dropping `lab` cleans up
        Ok(lab)
    }

    /// Names of the namespaces and pin directories.
    pub fn names(&self) -> &Names {
        &self.names
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
        for ns in &self.ns {
            // No DAD anywhere: link-local and global v6 addresses are usable at once
            // (a tentative link-local address silences neighbour solicitations).
            ns.sysctl(&[
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ])?;
        }
        let (cli, dir, sw) = (&self.ns[0], &self.ns[1], &self.ns[2]);
        let reals = &self.ns[3..];
        dir.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])?;
        for r in reals {
            r.sysctl(&[
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.default.arp_ignore=1",
                "net.ipv4.conf.default.arp_announce=2",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ])?;
        }
        // client <-> director outside
        cli.veth(
            HOST_IF,
            "address 02:00:c6:12:00:01",
            Some(dir),
            OUTSIDE_IF,
            "address 02:00:c6:12:00:02",
        )?;
        // the inside segment: a bridge in its own namespace
        sw.ip("link add br0 type bridge mcast_snooping 0")?;
        sw.up("br0")?;
        dir.veth(INSIDE_IF, "address 02:00:c6:12:01:01", Some(sw), "p0", "")?;
        sw.ip("link set p0 master br0 up")?;
        for (i, r) in reals.iter().enumerate() {
            let i = i + 1;
            r.veth(
                HOST_IF,
                &format!("address {}", real_mac(i)),
                Some(sw),
                &format!("p{i}"),
                "",
            )?;
            sw.ip(&format!("link set p{i} master br0 up"))?;
        }
        // addresses and routes
        for f in Family::ALL {
            let (plen, in_plen) = if f == Family::V4 { (24, 24) } else { (64, 64) };
            cli.addr(HOST_IF, client_addr(f), plen)?;
            dir.addr(OUTSIDE_IF, director_outside(f), plen)?;
            dir.addr(INSIDE_IF, director_inside(f), in_plen)?;
            for (i, r) in reals.iter().enumerate() {
                r.addr(HOST_IF, real_addr(i + 1, f), in_plen)?;
                for mode in [ForwardMode::Dr, ForwardMode::Tun] {
                    r.addr("lo", vip(mode, f), if f == Family::V4 { 32 } else { 128 })?;
                }
            }
        }
        cli.up(HOST_IF)?;
        dir.up(OUTSIDE_IF)?;
        dir.up(INSIDE_IF)?;
        for f in Family::ALL {
            route_default(cli, director_outside(f))?;
        }
        for (i, r) in reals.iter().enumerate() {
            r.up(HOST_IF)?;
            for f in Family::ALL {
                route_default(r, director_inside(f))?;
                // Static neighbours: the balancer's next-hop MACs never wait on resolution.
                dir.ip(&format!(
                    "neigh replace {} lladdr {} dev {INSIDE_IF} nud permanent",
                    real_addr(i + 1, f),
                    real_mac(i + 1)
                ))?;
            }
        }
        for i in 1..=reals.len() {
            let server = HttpServer::start(self.ns[2 + i].name(), &real_name(i), HTTP_PORT)?;
            self.servers.push(server);
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
        let ns = self
            .ns
            .iter()
            .find(|n| n.name() == ns)
            .expect("a namespace of this lab");
        Ok(run(
            ns.cmd(&self.lb_ctl).args(args).env("LB_PIN_DIR", pin_dir),
            COMMAND_TIMEOUT,
        )?)
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
        Ok(self.ns[0].run_in(move || {
            let mut out: Vec<Result<String, String>> = Vec::with_capacity(count);
            for _ in 0..count {
                out.push(http::get(to));
                if out.len() >= GIVE_UP_AFTER && out.iter().all(Result::is_err) {
                    break;
                }
            }
            out
        })?)
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Servers first: their threads hold the real namespaces alive. The guards in
        // `ns` and `_pins` then remove the namespaces and pin directories.
        for s in &mut self.servers {
            s.stop();
        }
    }
}

fn route_default(ns: &Netns, via: IpAddr) -> Result<String, LabError> {
    let fam = if via.is_ipv6() { "-6" } else { "-4" };
    Ok(ns.ip(&format!("{fam} route replace default via {via}"))?)
}
