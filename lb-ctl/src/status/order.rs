//! ipvsadm's listing order, comparison for comparison.
//!
//! libipvs sorts services with `ipvs_cmp_services` and each service's reals with
//! `ipvs_cmp_dests`, through `qsort`. Both compare addresses as `int r = ntohl(a) -
//! ntohl(b)` (IPv6: word by word): the unsigned difference wraps, so two addresses 2^31 or
//! more apart compare the other way round (10.0.0.1 sorts after 192.168.1.1, 2001:db8:1::
//! after 2001:db8:8002::). Operators see that order, so lb keeps it. Such a comparison is not a total order, so it is not
//! given to `slice::sort_by` (which may panic on one); [`merge_sort_by`] is the top-down
//! merge sort glibc's `qsort` runs (msort: halves of `n / 2` and the rest, the left element
//! first while it compares `<= 0`), which gives ipvsadm's result whenever the comparison
//! is consistent over the entries, and otherwise depends, as ipvsadm's does, on the order
//! the entries came in.

use crate::ipvs::model::{Endpoint, ServiceAddr};
use std::net::IpAddr;

/// `ntohl(a) - ntohl(b)` as libipvs computes it: an unsigned difference read as `int`.
fn word_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The address part of `ipvs_cmp_services` / `ipvs_cmp_dests`, for addresses of one family.
fn addr_diff(a: IpAddr, b: IpAddr) -> i32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => word_diff(a.into(), b.into()),
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (a.octets(), b.octets());
            (0..4)
                .map(|i| {
                    let w = |o: &[u8; 16]| {
                        u32::from_be_bytes(o[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
                    };
                    word_diff(w(&a), w(&b))
                })
                .find(|&r| r != 0)
                .unwrap_or(0)
        }
        // Different families are told apart before the address (services), or never meet
        // (a service's reals share its family).
        (a, _) => {
            if a.is_ipv4() {
                -1
            } else {
                1
            }
        }
    }
}

/// `ipvs_cmp_services` without the firewall mark (lb has none): family (AF_INET before
/// AF_INET6), protocol number, address, port.
pub fn cmp_services(a: &ServiceAddr, b: &ServiceAddr) -> i32 {
    let fam = |s: &ServiceAddr| if s.vip.ip.is_ipv4() { 2 } else { 10 };
    let r = fam(a) - fam(b);
    if r != 0 {
        return r;
    }
    let r = i32::from(a.proto.number()) - i32::from(b.proto.number());
    if r != 0 {
        return r;
    }
    let r = addr_diff(a.vip.ip, b.vip.ip);
    if r != 0 {
        return r;
    }
    i32::from(a.vip.port) - i32::from(b.vip.port)
}

/// `ipvs_cmp_dests`: address, then port.
pub fn cmp_reals(a: &Endpoint, b: &Endpoint) -> i32 {
    let r = addr_diff(a.ip, b.ip);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// Sorts `v` as glibc's `qsort` (its merge sort) does with a C comparison `cmp`.
pub fn merge_sort_by<T>(v: &mut Vec<T>, cmp: impl Fn(&T, &T) -> i32) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    msort(&mut order, &|a, b| cmp(&v[a], &v[b]));
    let mut slots: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(
        order
            .into_iter()
            .map(|i| slots[i].take().expect("each index once")),
    );
}

fn msort(v: &mut [usize], cmp: &dyn Fn(usize, usize) -> i32) {
    if v.len() <= 1 {
        return;
    }
    let n1 = v.len() / 2;
    msort(&mut v[..n1], cmp);
    msort(&mut v[n1..], cmp);
    let mut merged = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < v.len() {
        if cmp(v[i], v[j]) <= 0 {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..]);
    v.copy_from_slice(&merged);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::model::Proto;

    fn ep(s: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: s.parse().unwrap(),
            port,
        }
    }

    fn svc(proto: Proto, ip: &str, port: u16) -> ServiceAddr {
        ServiceAddr {
            proto,
            vip: ep(ip, port),
        }
    }

    /// The wrap, by hand: 0x0A000001 - 0xC0A80101 = 0x4957FF00 as an int is positive, so
    /// (10.0.0.1, 192.168.1.1) compare the other way round; less than 2^31 apart, no wrap.
    #[test]
    fn addresses_compare_as_libipvs_subtracts() {
        assert_eq!(word_diff(0x0A00_0001, 0xC0A8_0101), 0x4957_FF00);
        assert_eq!(word_diff(0x0A00_0001, 0x7F00_0001), -0x7500_0000);
        assert!(cmp_reals(&ep("198.18.1.11", 80), &ep("198.18.1.12", 80)) < 0);
        assert!(cmp_reals(&ep("198.18.1.11", 80), &ep("198.18.1.11", 8080)) < 0);
        // IPv6 word by word: the first differing word decides, wrapped the same way
        // (word 3: 0x00010000 - 0x80020000 wraps positive).
        assert!(cmp_reals(&ep("2001:db8::1", 80), &ep("2001:db8::2", 80)) < 0);
        assert!(cmp_reals(&ep("2001:db8:1::", 80), &ep("2001:db8:8002::", 80)) > 0);
    }

    #[test]
    fn services_by_family_protocol_address_port() {
        let mut v = vec![
            svc(Proto::Udp, "198.18.2.1", 53),
            svc(Proto::Tcp, "2001:db8:1::1", 80),
            svc(Proto::Tcp, "2001:db8:8002::1", 80),
            svc(Proto::Tcp, "198.18.2.1", 443),
            svc(Proto::Tcp, "198.18.2.1", 80),
            svc(Proto::Tcp, "198.18.0.1", 80),
        ];
        merge_sort_by(&mut v, cmp_services);
        let got: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            got,
            [
                "TCP 198.18.0.1:80",
                "TCP 198.18.2.1:80",
                "TCP 198.18.2.1:443",
                "UDP 198.18.2.1:53",
                // The wrap: 2001:db8:8002:: before 2001:db8:1::.
                "TCP [2001:db8:8002::1]:80",
                "TCP [2001:db8:1::1]:80",
            ]
        );
    }

    /// The merge is glibc's: stable, left first on a tie, halves of n/2.
    #[test]
    fn merge_sort_is_stable_and_sorts() {
        let mut v: Vec<(u32, usize)> = [5, 3, 5, 1, 3, 9, 0, 5]
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        merge_sort_by(&mut v, |a, b| a.0 as i32 - b.0 as i32);
        assert_eq!(
            v,
            [
                (0, 6),
                (1, 3),
                (3, 1),
                (3, 4),
                (5, 0),
                (5, 2),
                (5, 7),
                (9, 5)
            ]
        );
        let mut e: Vec<u32> = vec![];
        merge_sort_by(&mut e, |a, b| *a as i32 - *b as i32);
        assert!(e.is_empty());
    }
}
