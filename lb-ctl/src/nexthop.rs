//! Next-hop resolution for real servers: egress interface, the director's own address toward
//! the real (the outer source of tunnel packets), the egress MAC and the next hop's MAC.
//!
//! The data path does no FIB or neighbour lookup per packet (docs/design.md §3): lb-ctl resolves
//! them when a real is added or edited and stores them in its `Real`; the resident process's
//! neighbour follower ([`crate::neigh`]) keeps the MAC current afterwards. Routes and links are
//! asked of the kernel of the *current network namespace* through `ip -j` (route get, link),
//! neighbours through rtnetlink ([`crate::neigh::netlink`]), never /sys/class/net, because
//! lb-ctl runs under `nsenter --net=...`, where /sys still shows the host's namespace
//! (docs/design.md §2).
//!
//! A real whose next hop does not answer at once is not refused (ipvsadm accepts a real that
//! is down; the kernel resolves its neighbour when traffic comes): [`resolve`] waits at most
//! [`NEIGH_WAIT`] and returns the next hop without a MAC, and the real is stored
//! `NO_NEIGHBOUR`. A real with no route at all yet is accepted the same way, unrouted.

use serde::Deserialize;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long `-a` / `-e` wait for the neighbour table to learn the next hop's MAC: a live
/// host on the segment answers ARP / neighbour solicitation in well under a millisecond, so
/// this only bounds the wait for a next hop that is down (the follower takes over then).
pub const NEIGH_WAIT: Duration = Duration::from_millis(100);
/// Poll interval of the neighbour table while waiting.
const NEIGH_POLL: Duration = Duration::from_millis(5);
/// The discard port (RFC 863): the probe datagram only makes the kernel resolve the MAC.
const DISCARD_PORT: u16 = 9;

/// Where packets for one real server leave the director.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface index.
    pub ifindex: u32,
    /// Egress interface name.
    pub ifname: String,
    /// The director's preferred source address toward the real (`None` if the route has
    /// none; only tunnels need it).
    pub local_addr: Option<IpAddr>,
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
    /// The next hop's MAC: the real itself on a shared segment, else the gateway (`None`:
    /// not known yet).
    pub dst_mac: Option<[u8; 6]>,
    /// The gateway, when the real is not on-link.
    pub gateway: Option<IpAddr>,
}

impl NextHop {
    /// A real with no route yet: no interface, no MACs (ifindex 0 is no interface).
    pub fn unrouted() -> NextHop {
        NextHop {
            ifindex: 0,
            ifname: String::new(),
            local_addr: None,
            src_mac: [0; 6],
            dst_mac: None,
            gateway: None,
        }
    }

    /// Whether a route was found.
    pub fn routed(&self) -> bool {
        self.ifindex != 0
    }

    /// The neighbour whose MAC packets to `real` go to: the gateway, else the real.
    pub fn neighbour_of(&self, real: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(real)
    }
}

/// Why a real's next hop cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum NextHopError {
    /// `ip` could not be run.
    #[error("cannot run `ip` (iproute2)")]
    Spawn(#[source] io::Error),
    /// `ip route get` failed: usually no route.
    #[error("no route to real server {addr}: {msg}")]
    NoRoute {
        /// The real.
        addr: IpAddr,
        /// What `ip` said.
        msg: String,
    },
    /// Another `ip` command failed.
    #[error("`ip {args}` failed: {msg}")]
    Ip {
        /// Arguments.
        args: String,
        /// What `ip` said.
        msg: String,
    },
    /// `ip -j` printed something unexpected.
    #[error("cannot parse the output of `ip {args}`: {msg}")]
    Parse {
        /// Arguments.
        args: String,
        /// What was wrong.
        msg: String,
    },
    /// The real's address is one of the director's own.
    #[error(
        "real server {0} is a local address of this director (local forwarding is not supported)"
    )]
    Local(IpAddr),
    /// The route is not a plain unicast route (blackhole, unreachable, ...).
    #[error("the route to real server {addr} is of type {kind}")]
    RouteType {
        /// The real.
        addr: IpAddr,
        /// Route type.
        kind: String,
    },
    /// The egress interface has no Ethernet address.
    #[error("interface {0} has no Ethernet address (XDP forwarding needs an Ethernet device)")]
    NoLinkMac(String),
    /// The neighbour table could not be read over rtnetlink.
    #[error("cannot read the neighbour table")]
    Neighbours(#[source] io::Error),
}

/// Resolves the next hop toward `addr` in the current network namespace, triggering
/// neighbour resolution (a datagram to the next hop's discard port) when its MAC is not
/// known and waiting for it at most [`NEIGH_WAIT`]. No route yet: [`NextHop::unrouted`].
pub fn resolve(addr: IpAddr) -> Result<NextHop, NextHopError> {
    let Some(mut nh) = route(addr)? else {
        return Ok(NextHop::unrouted());
    };
    nh.dst_mac = neighbour(nh.neighbour_of(addr), nh.ifindex)?;
    Ok(nh)
}

/// The route toward `addr` as a next hop without its MAC (`None`: no route yet). A local
/// address, an odd route type or a non-Ethernet device is an error.
pub fn route(addr: IpAddr) -> Result<Option<NextHop>, NextHopError> {
    let route = match route_get(addr) {
        Ok(r) => r,
        Err(NextHopError::NoRoute { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (ifindex, src_mac) = link_show(&route.dev)?;
    Ok(Some(NextHop {
        ifindex,
        ifname: route.dev,
        local_addr: route.prefsrc,
        src_mac,
        dst_mac: None,
        gateway: route.gateway,
    }))
}

/// The route toward one address, as `ip -j route get` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Egress device.
    pub dev: String,
    /// Gateway, if not on-link.
    pub gateway: Option<IpAddr>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
}

#[derive(Deserialize)]
struct RouteJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    dev: Option<String>,
    gateway: Option<String>,
    via: Option<ViaJson>,
    prefsrc: Option<String>,
}

#[derive(Deserialize)]
struct ViaJson {
    host: Option<String>,
}

#[derive(Deserialize)]
struct LinkJson {
    ifindex: u32,
    address: Option<String>,
    link_type: Option<String>,
}

fn ip(args: &[&str]) -> Result<Result<String, String>, NextHopError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NextHopError::Spawn)?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

fn parse_err(args: &[&str], msg: impl ToString) -> NextHopError {
    NextHopError::Parse {
        args: args.join(" "),
        msg: msg.to_string(),
    }
}

fn route_get(addr: IpAddr) -> Result<Route, NextHopError> {
    let a = addr.to_string();
    let args = ["-j", "route", "get", a.as_str()];
    let text = ip(&args)?.map_err(|msg| NextHopError::NoRoute { addr, msg })?;
    parse_route(&text, addr).map_err(|e| match e {
        NextHopError::Parse { msg, .. } => parse_err(&args, msg),
        e => e,
    })
}

/// Parses `ip -j route get ADDR`.
pub(crate) fn parse_route(text: &str, addr: IpAddr) -> Result<Route, NextHopError> {
    let args = ["-j", "route", "get"];
    let v: Vec<RouteJson> = serde_json::from_str(text).map_err(|e| parse_err(&args, e))?;
    let r = v
        .into_iter()
        .next()
        .ok_or_else(|| parse_err(&args, "no route"))?;
    match r.kind.as_deref() {
        None | Some("unicast") => {}
        Some("local") => return Err(NextHopError::Local(addr)),
        Some(k) => {
            return Err(NextHopError::RouteType {
                addr,
                kind: k.to_string(),
            });
        }
    }
    let dev = r
        .dev
        .ok_or_else(|| parse_err(&args, "route has no device"))?;
    if dev == "lo" {
        return Err(NextHopError::Local(addr));
    }
    let ipaddr = |s: String| -> Result<IpAddr, NextHopError> {
        s.parse()
            .map_err(|_| parse_err(&args, format!("bad address {s}")))
    };
    let gateway = r
        .gateway
        .or(r.via.and_then(|v| v.host))
        .map(ipaddr)
        .transpose()?;
    let prefsrc = r.prefsrc.map(ipaddr).transpose()?;
    Ok(Route {
        dev,
        gateway,
        prefsrc,
    })
}

fn link_show(dev: &str) -> Result<(u32, [u8; 6]), NextHopError> {
    let args = ["-j", "link", "show", "dev", dev];
    let text = ip(&args)?.map_err(|msg| NextHopError::Ip {
        args: args.join(" "),
        msg,
    })?;
    parse_link(&text, dev)
}

/// Parses `ip -j link show dev DEV` into (ifindex, MAC).
pub(crate) fn parse_link(text: &str, dev: &str) -> Result<(u32, [u8; 6]), NextHopError> {
    let args = ["-j", "link", "show", "dev", dev];
    let v: Vec<LinkJson> = serde_json::from_str(text).map_err(|e| parse_err(&args, e))?;
    let l = v
        .into_iter()
        .next()
        .ok_or_else(|| parse_err(&args, "no such link"))?;
    if l.link_type.as_deref().is_some_and(|t| t != "ether") {
        return Err(NextHopError::NoLinkMac(dev.to_string()));
    }
    let mac = l
        .address
        .as_deref()
        .and_then(parse_mac)
        .ok_or_else(|| NextHopError::NoLinkMac(dev.to_string()))?;
    Ok((l.ifindex, mac))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Sends one empty datagram to the discard port of `nexthop`, which makes the kernel
/// resolve its MAC (ARP / neighbour discovery). Errors are ignored: the poll decides.
pub fn probe(nexthop: IpAddr, ifindex: u32) {
    let (bind, to): (SocketAddr, SocketAddr) = match nexthop {
        IpAddr::V4(a) => ((Ipv4Addr::UNSPECIFIED, 0).into(), (a, DISCARD_PORT).into()),
        IpAddr::V6(a) => {
            // A link-local next hop needs the interface as scope.
            let scope = if a.segments()[0] & 0xffc0 == 0xfe80 {
                ifindex
            } else {
                0
            };
            (
                (Ipv6Addr::UNSPECIFIED, 0).into(),
                SocketAddrV6::new(a, DISCARD_PORT, 0, scope).into(),
            )
        }
    };
    if let Ok(s) = UdpSocket::bind(bind) {
        let _ = s.send_to(&[], to);
    }
}

/// The MAC of `nexthop` on `ifindex`: from the neighbour table if usable, else after one
/// probe and a poll of at most [`NEIGH_WAIT`] (`None`: not known yet).
fn neighbour(nexthop: IpAddr, ifindex: u32) -> Result<Option<[u8; 6]>, NextHopError> {
    let lookup = || {
        crate::neigh::netlink::lookup(nexthop, ifindex)
            .map(|n| n.and_then(|n| n.usable_mac()))
            .map_err(NextHopError::Neighbours)
    };
    if let Some(mac) = lookup()? {
        return Ok(Some(mac));
    }
    probe(nexthop, ifindex);
    let start = Instant::now();
    while start.elapsed() < NEIGH_WAIT {
        std::thread::sleep(NEIGH_POLL);
        if let Some(mac) = lookup()? {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_link_route() {
        let t = r#"[{"dst":"198.18.0.2","dev":"d0","prefsrc":"198.18.0.1","flags":[],"uid":0,"cache":[]}]"#;
        let r = parse_route(t, "198.18.0.2".parse().unwrap()).unwrap();
        assert_eq!(r.dev, "d0");
        assert_eq!(r.gateway, None);
        assert_eq!(r.prefsrc, Some("198.18.0.1".parse().unwrap()));
    }

    #[test]
    fn gatewayed_and_v6_routes() {
        let t = r#"[{"dst":"198.18.9.5","gateway":"198.18.0.2","dev":"d0","prefsrc":"198.18.0.1","flags":[],"uid":0,"cache":[]}]"#;
        let r = parse_route(t, "198.18.9.5".parse().unwrap()).unwrap();
        assert_eq!(r.gateway, Some("198.18.0.2".parse().unwrap()));
        let t = r#"[{"dst":"2001:db8::2","from":"::","dev":"d0","protocol":"kernel","prefsrc":"2001:db8::1","metric":256,"flags":[],"pref":"medium"}]"#;
        let r = parse_route(t, "2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(r.prefsrc, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn local_and_odd_routes_are_refused() {
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let t = r#"[{"type":"local","dst":"198.18.0.1","dev":"lo","prefsrc":"198.18.0.1","flags":[],"uid":0,"cache":["local"]}]"#;
        assert!(matches!(parse_route(t, a), Err(NextHopError::Local(_))));
        let t = r#"[{"type":"blackhole","dst":"198.18.0.1","flags":[]}]"#;
        assert!(matches!(
            parse_route(t, a),
            Err(NextHopError::RouteType { .. })
        ));
        assert!(matches!(
            parse_route("[]", a),
            Err(NextHopError::Parse { .. })
        ));
    }

    #[test]
    fn link_and_mac() {
        let t = r#"[{"ifindex":2,"link_index":2,"ifname":"d0","flags":["UP"],"mtu":1500,"link_type":"ether","address":"e2:f9:b2:66:92:9f","broadcast":"ff:ff:ff:ff:ff:ff"}]"#;
        assert_eq!(
            parse_link(t, "d0").unwrap(),
            (2, [0xe2, 0xf9, 0xb2, 0x66, 0x92, 0x9f])
        );
        let t =
            r#"[{"ifindex":1,"ifname":"lo","link_type":"loopback","address":"00:00:00:00:00:00"}]"#;
        assert!(matches!(
            parse_link(t, "lo"),
            Err(NextHopError::NoLinkMac(_))
        ));
        assert_eq!(parse_mac("01:02:03:04:05"), None);
        assert_eq!(parse_mac("01:02:03:04:05:06:07"), None);
    }
}
