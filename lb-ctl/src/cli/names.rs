//! Host and service names, as ipvsadm reads and prints them: without `-n` an address is
//! printed as its host name (reverse lookup, the address when there is none) and a port as
//! its /etc/services name for the protocol (the number when there is none); on input a
//! host name stands for its IPv4 address and a service name for its port.
//!
//! ipvsadm.c: `addrport_to_anyname` (output: `[` `]` around IPv6, then `:` and the port
//! or its name), `addr_to_anyname`, `port_to_anyname` (`getservbyport`),
//! `parse_service` with `host_to_addr` (`gethostbyname`, IPv4 only) and `service_to_port`
//! (`getservbyname`).

use crate::ipvs::model::{Endpoint, Proto};
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Where names come from: the system's resolver ([`System`]), none ([`Numeric`]), or a
/// table in tests.
pub trait Names {
    /// The host name of `ip`, if a reverse lookup finds one.
    fn host(&self, ip: IpAddr) -> Option<String>;
    /// The service name of `port` for `proto` (/etc/services), if any.
    fn service(&self, port: u16, proto: Proto) -> Option<String>;
    /// The IPv4 address of host `name`, if it resolves (ipvsadm's `host_to_addr`).
    fn addr_of(&self, name: &str) -> Option<Ipv4Addr>;
    /// The port of service `name` for `proto`, if /etc/services has it.
    fn port_of(&self, name: &str, proto: Proto) -> Option<u16>;
}

/// No lookups: what `-n` prints, and input that must be numeric.
pub struct Numeric;

impl Names for Numeric {
    fn host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _: u16, _: Proto) -> Option<String> {
        None
    }
    fn addr_of(&self, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn port_of(&self, _: &str, _: Proto) -> Option<u16> {
        None
    }
}

/// The C library's resolver (NSS: /etc/hosts, DNS, /etc/services), as ipvsadm uses it.
pub struct System;

fn proto_cstr(proto: Proto) -> &'static CStr {
    match proto {
        Proto::Tcp => c"tcp",
        Proto::Udp => c"udp",
    }
}

impl Names for System {
    fn host(&self, ip: IpAddr) -> Option<String> {
        let sa = socket2_addr(SocketAddr::new(ip, 0));
        let mut host = [0 as libc::c_char; 1025];
        // SAFETY: `sa` is a valid sockaddr of the given length; `host` is writable for
        // its length; no service buffer is asked for.
        let rc = unsafe {
            libc::getnameinfo(
                sa.0.as_ptr().cast(),
                sa.1,
                host.as_mut_ptr(),
                host.len() as libc::socklen_t,
                std::ptr::null_mut(),
                0,
                libc::NI_NAMEREQD,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: getnameinfo wrote a NUL-terminated string into `host`.
        let s = unsafe { CStr::from_ptr(host.as_ptr()) };
        Some(s.to_string_lossy().into_owned())
    }

    fn service(&self, port: u16, proto: Proto) -> Option<String> {
        // SAFETY: getservbyport reads the protocol string and returns a pointer into
        // static storage (or NULL), read at once; lb-ctl makes these calls from one thread.
        unsafe {
            let s =
                libc::getservbyport(libc::c_int::from(port.to_be()), proto_cstr(proto).as_ptr());
            if s.is_null() {
                return None;
            }
            Some(CStr::from_ptr((*s).s_name).to_string_lossy().into_owned())
        }
    }

    fn addr_of(&self, name: &str) -> Option<Ipv4Addr> {
        // getaddrinfo through std; ipvsadm takes the first IPv4 address.
        (name, 0)
            .to_socket_addrs()
            .ok()?
            .find_map(|a| match a.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
    }

    fn port_of(&self, name: &str, proto: Proto) -> Option<u16> {
        let c = CString::new(name).ok()?;
        // SAFETY: as in `service`.
        unsafe {
            let s = libc::getservbyname(c.as_ptr(), proto_cstr(proto).as_ptr());
            if s.is_null() {
                return None;
            }
            Some(u16::from_be((*s).s_port as u16))
        }
    }
}

/// A socket address as the bytes of a `sockaddr_in` / `sockaddr_in6` and its length.
fn socket2_addr(a: SocketAddr) -> (Vec<u8>, libc::socklen_t) {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            let len = std::mem::size_of::<libc::sockaddr_in>();
            // SAFETY: `s` is plain old data of `len` bytes.
            let b = unsafe { std::slice::from_raw_parts((&raw const s).cast::<u8>(), len) };
            (b.to_vec(), len as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_addr.s6_addr = v6.ip().octets();
            let len = std::mem::size_of::<libc::sockaddr_in6>();
            // SAFETY: `s` is plain old data of `len` bytes.
            let b = unsafe { std::slice::from_raw_parts((&raw const s).cast::<u8>(), len) };
            (b.to_vec(), len as libc::socklen_t)
        }
    }
}

/// ipvsadm's `addrport_to_anyname`: `host:port`, IPv6 in brackets, each part named when
/// `names` knows it.
pub fn addrport(ep: &Endpoint, proto: Proto, names: &dyn Names) -> String {
    let host = names.host(ep.ip).unwrap_or_else(|| ep.ip.to_string());
    let port = names
        .service(ep.port, proto)
        .unwrap_or_else(|| ep.port.to_string());
    match ep.ip {
        IpAddr::V4(_) => format!("{host}:{port}"),
        IpAddr::V6(_) => format!("[{host}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_is_ipvsadms_numeric_format() {
        // addrport_to_anyname with FMT_NUMERIC: "%s%s%s:%u", brackets only for IPv6.
        let v4 = Endpoint {
            ip: "198.18.2.1".parse().unwrap(),
            port: 80,
        };
        let v6 = Endpoint {
            ip: "2001:db8::1".parse().unwrap(),
            port: 53,
        };
        assert_eq!(addrport(&v4, Proto::Tcp, &Numeric), "198.18.2.1:80");
        assert_eq!(addrport(&v6, Proto::Udp, &Numeric), "[2001:db8::1]:53");
    }

    #[test]
    fn system_services_from_etc_services() {
        // /etc/services (netbase) has http = 80/tcp and domain = 53/udp; no network.
        if !std::path::Path::new("/etc/services").exists() {
            panic!("/etc/services is missing: install netbase (cargo xtask setup)");
        }
        assert_eq!(System.service(80, Proto::Tcp).as_deref(), Some("http"));
        assert_eq!(System.service(53, Proto::Udp).as_deref(), Some("domain"));
        assert_eq!(System.port_of("http", Proto::Tcp), Some(80));
        assert_eq!(System.port_of("domain", Proto::Udp), Some(53));
        assert_eq!(System.port_of("no-such-service-name", Proto::Tcp), None);
    }
}
