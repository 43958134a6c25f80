//! The neighbour table over rtnetlink (`NETLINK_ROUTE`): a full dump (RTM_GETNEIGH with
//! NLM_F_DUMP), a lookup of one entry (from the dump), and the subscription to the kernel's
//! neighbour events (multicast group RTNLGRP_NEIGH). Only I/O and decoding: what an entry
//! means for the reals is [`super::plan`]'s.

use super::plan::Neighbour;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
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

/// What one receive on the event socket gave.
#[derive(Debug)]
pub enum Events {
    /// Entries added or changed (RTM_NEWNEIGH), in order.
    Changed(Vec<Neighbour>),
    /// The socket's buffer overflowed (ENOBUFS): events were lost, the table must be
    /// read again in full.
    Lost,
}

/// The entry a message describes, if it is an IPv4 or IPv6 neighbour.
fn decode(m: &NeighbourMessage) -> Option<Neighbour> {
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

/// The messages of one datagram: neighbour entries of RTM_NEWNEIGH, whether NLMSG_DONE
/// was among them, and an NLMSG_ERROR as an error.
fn parse(buf: &[u8], out: &mut Vec<Neighbour>) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        let msg: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&buf[off..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => {
                return Err(e.code.map_or_else(
                    || io::Error::other("netlink error"),
                    |c| io::Error::from_raw_os_error(-c.get()),
                ));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => {
                out.extend(decode(&m));
            }
            _ => {}
        }
        if len == 0 {
            break;
        }
        off += len;
    }
    Ok(false)
}

fn socket() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    Ok(s)
}

/// Every IPv4 and IPv6 entry of the neighbour table of the current network namespace.
pub fn dump() -> io::Result<Vec<Neighbour>> {
    let s = socket()?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_DUMP | NLM_F_REQUEST;
    hdr.sequence_number = 1;
    let mut req = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        )),
    );
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf);
    s.send(&buf, 0)?;
    let mut out = Vec::new();
    let mut rx = vec![0u8; RECV_BUF];
    loop {
        let n = s.recv(&mut &mut rx[..], 0)?;
        if n == 0 || parse(&rx[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// The entry of `addr` on `ifindex`, if the table has one.
pub fn lookup(addr: IpAddr, ifindex: u32) -> io::Result<Option<Neighbour>> {
    Ok(dump()?
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
        let mut out = Vec::new();
        parse(&self.rx[..n], &mut out)?;
        Ok(Events::Changed(out))
    }
}
