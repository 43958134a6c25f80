//! rtnetlink (`NETLINK_ROUTE`) requests of the current network namespace: the route toward
//! an address (RTM_GETROUTE, what `ip route get` asks), one link (RTM_GETLINK), the whole
//! neighbour table (RTM_GETNEIGH dump), and the subscription to neighbour events (group
//! RTNLGRP_NEIGH). Only I/O and decoding into plain values: what they mean for a real is
//! [`crate::nexthop`]'s and [`crate::neigh::plan`]'s. Netlink answers for the namespace of
//! the socket, so this stays right under `nsenter --net=...`, where /sys does not.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The rtnetlink multicast group of neighbour events (`RTNLGRP_NEIGH`,
/// include/uapi/linux/rtnetlink.h).
const RTNLGRP_NEIGH: u32 = 3;
/// Receive buffer of the event socket: a burst of neighbour changes (a whole segment
/// coming up) fits; one that does not is an ENOBUFS, repaired by a dump.
const EVENT_RCVBUF: usize = 1 << 20;
/// Room for one datagram from the kernel (a dump part is at most a page or two).
const RECV_BUF: usize = 1 << 16;
/// `ARPHRD_LOOPBACK` (include/uapi/linux/if_arp.h).
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;

/// The kernel's answer to "route get ADDR".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteReply {
    /// The route's type (`RTN_*`: unicast, local, blackhole, unreachable, ...).
    pub kind: RouteType,
    /// Output interface.
    pub oif: Option<u32>,
    /// Gateway, when the destination is not on-link.
    pub gateway: Option<IpAddr>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
}

/// One link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkReply {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// `ARPHRD_*` type.
    pub link_type: u16,
    /// Its hardware address, when 6 bytes long.
    pub mac: Option<[u8; 6]>,
    /// Ids of the XDP programs attached to it (IFLA_XDP: one per attach mode).
    pub xdp_progs: Vec<u32>,
}

/// The kernel's neighbour states (`NUD_*`, include/uapi/linux/neighbour.h) whose link-layer
/// address may be used: confirmed, or not yet re-confirmed but still the best known
/// (REACHABLE, STALE, DELAY, PROBE), set by hand (PERMANENT) or needing no resolution
/// (NOARP). INCOMPLETE has no address yet; FAILED's is given up on.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// One neighbour table entry, as an rtnetlink RTM_NEWNEIGH message carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// The interface it is on.
    pub ifindex: u32,
    /// Its IP address.
    pub addr: IpAddr,
    /// Its link-layer address, when the message has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state bits.
    pub state: u16,
}

impl Neighbour {
    /// The MAC to send to, if the entry has one in a usable state.
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        if self.state & NUD_USABLE != 0 {
            self.mac
        } else {
            None
        }
    }
}

/// What one receive on the event socket gave.
#[derive(Debug)]
pub enum Events {
    /// Entries added or changed (RTM_NEWNEIGH), in order.
    Changed(Vec<Neighbour>),
    /// The socket's buffer overflowed (ENOBUFS): events were lost, the table must be
    /// read again in full.
    Lost,
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The parts of a route message lb uses.
pub fn decode_route(m: &RouteMessage) -> RouteReply {
    let mut r = RouteReply {
        kind: m.header.kind,
        oif: None,
        gateway: None,
        prefsrc: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
            RouteAttribute::PrefSource(s) => r.prefsrc = ip_of(s),
            _ => {}
        }
    }
    r
}

/// The parts of a link message lb uses.
pub fn decode_link(m: &LinkMessage) -> LinkReply {
    let mut l = LinkReply {
        ifindex: m.header.index,
        name: String::new(),
        link_type: m.header.link_layer_type.into(),
        mac: None,
        xdp_progs: Vec::new(),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(b) => l.mac = <[u8; 6]>::try_from(&b[..]).ok(),
            LinkAttribute::Xdp(xdp) => {
                for x in xdp {
                    if let LinkXdp::ProgId(id)
                    | LinkXdp::DrvProgId(id)
                    | LinkXdp::SkbProgId(id)
                    | LinkXdp::HwProgId(id) = x
                        && *id != 0
                        && !l.xdp_progs.contains(id)
                    {
                        l.xdp_progs.push(*id);
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// The entry a neighbour message describes, if it is an IPv4 or IPv6 neighbour.
pub fn decode_neighbour(m: &NeighbourMessage) -> Option<Neighbour> {
    let mut addr = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(&l[..]).ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: m.header.ifindex,
        addr: addr?,
        mac,
        state: m.header.state.into(),
    })
}

/// The messages of one datagram, appended to `out`; whether NLMSG_DONE was among them. An
/// NLMSG_ERROR with a code is returned as that OS error (an acknowledgement, code 0, is
/// skipped).
pub fn parse(buf: &[u8], out: &mut Vec<RouteNetlinkMessage>) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        let msg: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&buf[off..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => {
                if let Some(c) = e.code {
                    return Err(io::Error::from_raw_os_error(-c.get()));
                }
            }
            NetlinkPayload::InnerMessage(m) => out.push(m),
            _ => {}
        }
        if len == 0 {
            break;
        }
        off += len;
    }
    Ok(false)
}

/// Sends one request and collects its answer: every message of a dump up to NLMSG_DONE,
/// else the first message.
fn request(msg: RouteNetlinkMessage, dump: bool) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    hdr.sequence_number = 1;
    let mut req = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf);
    s.send(&buf, 0)?;
    let mut out = Vec::new();
    let mut rx = vec![0u8; RECV_BUF];
    loop {
        let n = s.recv(&mut &mut rx[..], 0)?;
        let done = parse(&rx[..n], &mut out)?;
        if n == 0 || done || (!dump && !out.is_empty()) {
            return Ok(out);
        }
    }
}

/// The route toward `addr` (`None`: the kernel has none, ENETUNREACH / EHOSTUNREACH).
pub fn route_get(addr: IpAddr) -> io::Result<Option<RouteReply>> {
    let mut m = RouteMessage::default();
    let (family, plen) = match addr {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    m.header.address_family = family;
    m.header.destination_prefix_length = plen;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    match request(RouteNetlinkMessage::GetRoute(m), false) {
        Ok(msgs) => Ok(msgs.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(decode_route(r)),
            _ => None,
        })),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The link with index `ifindex`.
pub fn link_get(ifindex: u32) -> io::Result<LinkReply> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    request(RouteNetlinkMessage::GetLink(m), false)?
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(decode_link(l)),
            _ => None,
        })
        .ok_or_else(|| io::Error::other(format!("no link with index {ifindex}")))
}

/// Every IPv4 and IPv6 entry of the neighbour table.
pub fn neighbours() -> io::Result<Vec<Neighbour>> {
    Ok(request(
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        true,
    )?
    .iter()
    .filter_map(|m| match m {
        RouteNetlinkMessage::NewNeighbour(n) => decode_neighbour(n),
        _ => None,
    })
    .collect())
}

/// The neighbour entry of `addr` on `ifindex`, if the table has one.
pub fn neighbour(addr: IpAddr, ifindex: u32) -> io::Result<Option<Neighbour>> {
    Ok(neighbours()?
        .into_iter()
        .find(|n| n.addr == addr && n.ifindex == ifindex))
}

/// A socket subscribed to the kernel's neighbour events.
pub struct Subscription {
    sock: Socket,
    rx: Vec<u8>,
}

impl Subscription {
    /// Joins RTNLGRP_NEIGH.
    pub fn open() -> io::Result<Subscription> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.set_rx_buf_sz(EVENT_RCVBUF)?;
        sock.add_membership(RTNLGRP_NEIGH)?;
        Ok(Subscription {
            sock,
            rx: vec![0; RECV_BUF],
        })
    }

    /// Waits at most `timeout` for one datagram of events (`Changed` empty: none came).
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Events> {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd we own, for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Events::Changed(Vec::new()));
            }
            return Err(e);
        }
        if rc == 0 {
            return Ok(Events::Changed(Vec::new()));
        }
        let n = match self.sock.recv(&mut &mut self.rx[..], 0) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Events::Lost),
            Err(e) => return Err(e),
        };
        let mut msgs = Vec::new();
        parse(&self.rx[..n], &mut msgs)?;
        Ok(Events::Changed(
            msgs.iter()
                .filter_map(|m| match m {
                    RouteNetlinkMessage::NewNeighbour(n) => decode_neighbour(n),
                    _ => None,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage};
    use netlink_packet_route::neighbour::NeighbourState;
    use std::num::NonZeroI32;

    /// The bytes of `payloads` as the kernel sends them in one datagram.
    fn datagram(payloads: Vec<NetlinkPayload<RouteNetlinkMessage>>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let mut m = NetlinkMessage::new(NetlinkHeader::default(), p);
            m.finalize();
            let mut b = vec![0; m.header.length as usize];
            m.serialize(&mut b);
            out.extend(b);
        }
        out
    }

    fn neigh_msg(ip: &str, mac: Option<[u8; 6]>, state: NeighbourState) -> NeighbourMessage {
        let addr: IpAddr = ip.parse().unwrap();
        let mut m = NeighbourMessage::default();
        m.header.family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.ifindex = 2;
        m.header.state = state;
        m.attributes
            .push(NeighbourAttribute::Destination(match addr {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        if let Some(mac) = mac {
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        m
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];

    fn nb(mac: Option<[u8; 6]>, state: u16) -> Neighbour {
        Neighbour {
            ifindex: 2,
            addr: "198.18.0.2".parse().unwrap(),
            mac,
            state,
        }
    }

    #[test]
    fn usable_states_follow_the_kernel_nud_bits() {
        // REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT: usable with an address.
        for state in [0x02, 0x04, 0x08, 0x10, 0x40, 0x80] {
            assert_eq!(
                nb(Some(MAC), state).usable_mac(),
                Some(MAC),
                "state {state:#x}"
            );
        }
        // INCOMPLETE, FAILED, NONE: not, even with an address left in the message.
        for state in [0x01, 0x20, 0x00] {
            assert_eq!(nb(Some(MAC), state).usable_mac(), None, "state {state:#x}");
        }
        assert_eq!(nb(None, 0x02).usable_mac(), None);
    }

    #[test]
    fn a_neighbour_dump_datagram_decodes_to_its_entries() {
        let bytes = datagram(vec![
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(neigh_msg(
                "198.18.1.11",
                Some([2, 0, 0, 0, 0, 0x11]),
                NeighbourState::Reachable,
            ))),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(neigh_msg(
                "2001:db8:1::11",
                None,
                NeighbourState::Incomplete,
            ))),
            NetlinkPayload::Done(DoneMessage::default()),
        ]);
        let mut msgs = Vec::new();
        assert!(parse(&bytes, &mut msgs).unwrap(), "NLMSG_DONE seen");
        let got: Vec<Neighbour> = msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => decode_neighbour(n),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                Neighbour {
                    ifindex: 2,
                    addr: "198.18.1.11".parse().unwrap(),
                    mac: Some([2, 0, 0, 0, 0, 0x11]),
                    state: 0x02,
                },
                Neighbour {
                    ifindex: 2,
                    addr: "2001:db8:1::11".parse().unwrap(),
                    mac: None,
                    state: 0x01,
                },
            ]
        );
    }

    #[test]
    fn an_error_reply_is_its_os_error() {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(-libc::ENETUNREACH);
        let bytes = datagram(vec![NetlinkPayload::Error(e)]);
        let err = parse(&bytes, &mut Vec::new()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH));
    }

    #[test]
    fn route_and_link_replies_decode() {
        let mut r = RouteMessage::default();
        r.header.kind = RouteType::Unicast;
        r.attributes.push(RouteAttribute::Oif(3));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                "198.18.0.254".parse().unwrap(),
            )));
        r.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet(
                "198.18.0.1".parse().unwrap(),
            )));
        assert_eq!(
            decode_route(&r),
            RouteReply {
                kind: RouteType::Unicast,
                oif: Some(3),
                gateway: Some("198.18.0.254".parse().unwrap()),
                prefsrc: Some("198.18.0.1".parse().unwrap()),
            }
        );
        let mut l = LinkMessage::default();
        l.header.index = 3;
        l.header.link_layer_type = ARPHRD_ETHER.into();
        l.attributes.push(LinkAttribute::IfName("eth1".into()));
        l.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        // An skb-mode and a native program (each mode's id, and the id of the only one
        // again as IFLA_XDP_PROG_ID when there is one).
        l.attributes.push(LinkAttribute::Xdp(vec![
            LinkXdp::SkbProgId(41),
            LinkXdp::DrvProgId(42),
            LinkXdp::ProgId(42),
        ]));
        assert_eq!(
            decode_link(&l),
            LinkReply {
                ifindex: 3,
                name: "eth1".into(),
                link_type: ARPHRD_ETHER,
                mac: Some([2, 0, 0, 0, 0, 1]),
                xdp_progs: vec![41, 42],
            }
        );
    }
}
