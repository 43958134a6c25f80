//! Next-hop resolution for real servers: egress interface, the director's own address toward
//! the real (the outer source of tunnel packets), the egress MAC and the next hop's MAC.
//!
//! The data path does no FIB or neighbour lookup per packet (docs/design.md §3): lb-ctl resolves
//! them when a real is added or edited and stores them in its `Real`; the resident process's
//! neighbour follower ([`crate::neigh`]) keeps the MAC current afterwards. Route, link and
//! neighbour are asked of the kernel of the *current network namespace* over rtnetlink
//! ([`crate::rtnl`]), never /sys/class/net, because lb-ctl runs under `nsenter --net=...`,
//! where /sys still shows the host's namespace (docs/design.md §2).
//!
//! A real whose next hop does not answer at once is not refused (ipvsadm accepts a real that
//! is down; the kernel resolves its neighbour when traffic comes): [`resolve`] waits at most
//! [`NEIGH_WAIT`] and returns the next hop without a MAC, and the real is stored
//! `NO_NEIGHBOUR`. A real with no route at all yet is accepted the same way, unrouted.

use crate::rtnl::{self, ARPHRD_ETHER, ARPHRD_LOOPBACK, LinkReply, RouteReply};
use netlink_packet_route::route::RouteType;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
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
    /// An rtnetlink request failed.
    #[error("cannot read the {what} from the kernel (rtnetlink)")]
    Netlink {
        /// What was asked: route, link, neighbour table.
        what: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
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
    /// The route names no output interface.
    #[error("the route to real server {0} has no output interface")]
    NoDevice(IpAddr),
    /// The egress interface has no Ethernet address.
    #[error("interface {0} has no Ethernet address (XDP forwarding needs an Ethernet device)")]
    NoLinkMac(String),
}

fn netlink(what: &'static str) -> impl FnOnce(io::Error) -> NextHopError {
    move |source| NextHopError::Netlink { what, source }
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
    let Some(r) = rtnl::route_get(addr).map_err(netlink("route"))? else {
        return Ok(None);
    };
    let oif = check_route(&r, addr)?;
    let link = rtnl::link_get(oif).map_err(netlink("link"))?;
    let src_mac = check_link(&link, addr)?;
    Ok(Some(NextHop {
        ifindex: oif,
        ifname: link.name,
        local_addr: r.prefsrc,
        src_mac,
        dst_mac: None,
        gateway: r.gateway,
    }))
}

/// The output interface of a route lb can send by: a unicast route (a local one means the
/// real is the director itself).
fn check_route(r: &RouteReply, addr: IpAddr) -> Result<u32, NextHopError> {
    match r.kind {
        RouteType::Unicast | RouteType::Unspec => {}
        RouteType::Local => return Err(NextHopError::Local(addr)),
        k => {
            return Err(NextHopError::RouteType {
                addr,
                kind: format!("{k:?}").to_lowercase(),
            });
        }
    }
    r.oif.ok_or(NextHopError::NoDevice(addr))
}

/// The egress MAC of a link lb can send by: an Ethernet device with an address (a loopback
/// device means the real is local).
fn check_link(l: &LinkReply, addr: IpAddr) -> Result<[u8; 6], NextHopError> {
    if l.link_type == ARPHRD_LOOPBACK {
        return Err(NextHopError::Local(addr));
    }
    if l.link_type != ARPHRD_ETHER {
        return Err(NextHopError::NoLinkMac(l.name.clone()));
    }
    l.mac.ok_or_else(|| NextHopError::NoLinkMac(l.name.clone()))
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
        rtnl::neighbour(nexthop, ifindex)
            .map(|n| n.and_then(|n| n.usable_mac()))
            .map_err(netlink("neighbour table"))
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

    fn route(kind: RouteType, oif: Option<u32>) -> RouteReply {
        RouteReply {
            kind,
            oif,
            gateway: None,
            prefsrc: None,
        }
    }

    #[test]
    fn unicast_routes_give_their_interface_and_others_are_refused() {
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(
            check_route(&route(RouteType::Unicast, Some(2)), a).unwrap(),
            2
        );
        assert!(matches!(
            check_route(&route(RouteType::Local, Some(1)), a),
            Err(NextHopError::Local(_))
        ));
        let e = check_route(&route(RouteType::BlackHole, None), a).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the route to real server 198.18.0.2 is of type blackhole"
        );
        assert!(matches!(
            check_route(&route(RouteType::Unicast, None), a),
            Err(NextHopError::NoDevice(_))
        ));
    }

    #[test]
    fn only_ethernet_links_with_an_address() {
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        let link = |link_type, mac| LinkReply {
            ifindex: 2,
            name: "d0".into(),
            link_type,
            mac,
            xdp_progs: vec![],
        };
        let mac = [0xe2, 0xf9, 0xb2, 0x66, 0x92, 0x9f];
        assert_eq!(check_link(&link(ARPHRD_ETHER, Some(mac)), a).unwrap(), mac);
        assert!(matches!(
            check_link(&link(ARPHRD_LOOPBACK, Some([0; 6])), a),
            Err(NextHopError::Local(_))
        ));
        // A tunnel device (ARPHRD_IPGRE), or Ethernet without an address.
        assert!(matches!(
            check_link(&link(778, None), a),
            Err(NextHopError::NoLinkMac(_))
        ));
        assert!(matches!(
            check_link(&link(ARPHRD_ETHER, None), a),
            Err(NextHopError::NoLinkMac(_))
        ));
    }

    #[test]
    fn macs_parse_only_in_full() {
        assert_eq!(
            parse_mac("e2:f9:b2:66:92:9f"),
            Some([0xe2, 0xf9, 0xb2, 0x66, 0x92, 0x9f])
        );
        assert_eq!(parse_mac("01:02:03:04:05"), None);
        assert_eq!(parse_mac("01:02:03:04:05:06:07"), None);
    }
}
