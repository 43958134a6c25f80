//! Addresses and ports as they sit in packets: network byte order, never converted on the
//! fast path. IPv4 and IPv6 share one 16-byte form so everything after parsing is
//! family-agnostic (as Katran's `flow_key` union is).

use bytemuck::{Pod, Zeroable};

/// An IPv4 or IPv6 address as the four 32-bit words read straight from the packet (so each
/// word is in network byte order). IPv4 uses word 0; words 1..3 are zero.
pub type RawAddr = [u32; 4];

/// A 16-bit value in network byte order (a port), exactly as it sits in the packet.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Be16(pub u16);

impl Be16 {
    /// Wraps a host-order value.
    pub const fn from_host(v: u16) -> Self {
        Be16(v.to_be())
    }
    /// The host-order value.
    pub const fn to_host(self) -> u16 {
        u16::from_be(self.0)
    }
}

/// Address family tags used in keys (values of `family` fields).
pub mod family {
    /// IPv4.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// Conversions between [`RawAddr`] and `std::net` addresses.
#[cfg(feature = "std")]
pub mod convert {
    use super::{RawAddr, family};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The raw, network-order words of an address and its family tag.
    pub fn to_raw(ip: IpAddr) -> (RawAddr, u8) {
        match ip {
            IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], family::V4),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                ([w(0), w(4), w(8), w(12)], family::V6)
            }
        }
    }

    /// Back from raw words and a family tag.
    pub fn from_raw(raw: &RawAddr, fam: u8) -> IpAddr {
        if fam == family::V4 {
            IpAddr::V4(Ipv4Addr::from(raw[0].to_ne_bytes()))
        } else {
            let mut o = [0u8; 16];
            for (i, w) in raw.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        #[test]
        fn round_trip() {
            for s in ["198.18.0.1", "2001:db8::1", "2001:db8:1:2:3:4:5:6"] {
                let ip: IpAddr = s.parse().unwrap();
                let (raw, fam) = to_raw(ip);
                assert_eq!(from_raw(&raw, fam), ip);
            }
            let (raw, _) = to_raw("198.18.0.1".parse().unwrap());
            assert_eq!(
                raw[0].to_ne_bytes(),
                [198, 18, 0, 1],
                "word 0 holds wire order"
            );
        }
    }
}
