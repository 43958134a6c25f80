//! The independent checker: decodes a frame into named fields (Ethernet, VLAN tags, IPv4 /
//! IPv6, TCP, UDP, ICMP, ICMPv6, a tunnel's inner packet, an ICMP error's quote), prints a
//! per-field diff of two frames, and verifies every checksum in a frame with etherparse's
//! own calculations (never lb-common's checksum code).

use etherparse::{Icmpv4Slice, Icmpv6Slice, Ipv4HeaderSlice, TcpHeader, UdpHeader};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Named fields of a frame, in wire order, and the checksum problems found while decoding.
#[derive(Debug, Default)]
pub struct Decoded {
    /// (field name, value) pairs; names are unique within a frame.
    pub fields: Vec<(String, String)>,
    /// One line per checksum that does not verify.
    pub bad_checksums: Vec<String>,
}

impl Decoded {
    fn put(&mut self, name: impl Into<String>, value: impl ToString) {
        self.fields.push((name.into(), value.to_string()));
    }
    fn bad(&mut self, what: &str, stored: u16, computed: u16) {
        self.bad_checksums.push(format!(
            "{what}: stored {stored:#06x}, computed {computed:#06x}"
        ));
    }
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "(none)".into();
    }
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join("")
}

fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Pseudo-header addresses of the enclosing IP header, for L4 checksums.
#[derive(Clone, Copy)]
enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// Decodes a whole Ethernet frame.
pub fn decode(frame: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    d.put("frame.len", frame.len());
    if frame.len() < 14 {
        d.put("frame.raw", hex(frame));
        return d;
    }
    d.put("eth.dst", mac(&frame[0..6]));
    d.put("eth.src", mac(&frame[6..12]));
    let mut ty = be16(frame, 12);
    d.put("eth.type", format!("{ty:#06x}"));
    let mut off = 14;
    let mut tag = 0;
    while ty == 0x8100 || ty == 0x88a8 {
        if frame.len() < off + 4 {
            d.put(format!("vlan[{tag}].raw"), hex(&frame[off..]));
            return d;
        }
        let tci = be16(frame, off);
        d.put(format!("vlan[{tag}].pcp"), tci >> 13);
        d.put(format!("vlan[{tag}].dei"), (tci >> 12) & 1);
        d.put(format!("vlan[{tag}].id"), tci & 0xfff);
        ty = be16(frame, off + 2);
        d.put(format!("vlan[{tag}].type"), format!("{ty:#06x}"));
        off += 4;
        tag += 1;
    }
    match ty {
        0x0800 => decode_ip4(&frame[off..], "ip", false, &mut d),
        0x86dd => decode_ip6(&frame[off..], "ip", false, &mut d),
        _ => d.put("l2.payload", hex(&frame[off..])),
    }
    d
}

fn decode_ip4(b: &[u8], p: &str, quote: bool, d: &mut Decoded) {
    if b.len() < 20 {
        d.put(format!("{p}.raw"), hex(b));
        return;
    }
    let ihl = (b[0] & 0xf) as usize;
    let tot = be16(b, 2) as usize;
    d.put(format!("{p}.version"), b[0] >> 4);
    d.put(format!("{p}.ihl"), ihl);
    d.put(format!("{p}.tos"), format!("{:#04x}", b[1]));
    d.put(format!("{p}.total_len"), tot);
    d.put(format!("{p}.id"), format!("{:#06x}", be16(b, 4)));
    let frag = be16(b, 6);
    d.put(format!("{p}.flags.df"), (frag >> 14) & 1);
    d.put(format!("{p}.flags.mf"), (frag >> 13) & 1);
    d.put(format!("{p}.frag_offset"), frag & 0x1fff);
    d.put(format!("{p}.ttl"), b[8]);
    d.put(format!("{p}.proto"), b[9]);
    d.put(format!("{p}.checksum"), format!("{:#06x}", be16(b, 10)));
    d.put(
        format!("{p}.src"),
        Ipv4Addr::new(b[12], b[13], b[14], b[15]),
    );
    d.put(
        format!("{p}.dst"),
        Ipv4Addr::new(b[16], b[17], b[18], b[19]),
    );
    let hl = ihl * 4;
    if ihl < 5 || b.len() < hl {
        d.put(format!("{p}.rest"), hex(&b[20..]));
        return;
    }
    if hl > 20 {
        d.put(format!("{p}.options"), hex(&b[20..hl]));
    }
    if let Ok(h) = Ipv4HeaderSlice::from_slice(&b[..hl]) {
        let computed = h.to_header().calc_header_checksum();
        if computed != h.header_checksum() {
            d.bad(&format!("{p}.checksum"), h.header_checksum(), computed);
        }
    } else {
        d.bad_checksums.push(format!("{p}: header does not parse"));
    }
    // A quote is cut short on purpose; otherwise the header's length bounds the payload and
    // anything after it is Ethernet padding.
    let end = if quote {
        b.len()
    } else {
        tot.clamp(hl, b.len())
    };
    let pseudo = Pseudo::V4(b[12..16].try_into().unwrap(), b[16..20].try_into().unwrap());
    let frag_off = frag & 0x1fff;
    if frag_off != 0 || (frag >> 13) & 1 == 1 {
        d.put(format!("{p}.fragment"), hex(&b[hl..end]));
    } else {
        decode_l4(b[9], &b[hl..end], p, pseudo, quote, d);
    }
    if end < b.len() {
        d.put(format!("{p}.trailer"), hex(&b[end..]));
    }
}

fn decode_ip6(b: &[u8], p: &str, quote: bool, d: &mut Decoded) {
    if b.len() < 40 {
        d.put(format!("{p}.raw"), hex(b));
        return;
    }
    let w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let plen = be16(b, 4) as usize;
    d.put(format!("{p}.version"), w >> 28);
    d.put(
        format!("{p}.traffic_class"),
        format!("{:#04x}", (w >> 20) & 0xff),
    );
    d.put(format!("{p}.flow_label"), format!("{:#07x}", w & 0xfffff));
    d.put(format!("{p}.payload_len"), plen);
    d.put(format!("{p}.next_header"), b[6]);
    d.put(format!("{p}.hop_limit"), b[7]);
    let src: [u8; 16] = b[8..24].try_into().unwrap();
    let dst: [u8; 16] = b[24..40].try_into().unwrap();
    d.put(format!("{p}.src"), Ipv6Addr::from(src));
    d.put(format!("{p}.dst"), Ipv6Addr::from(dst));
    let end = if quote {
        b.len()
    } else {
        (40 + plen).min(b.len())
    };
    decode_l4(b[6], &b[40..end], p, Pseudo::V6(src, dst), quote, d);
    if end < b.len() {
        d.put(format!("{p}.trailer"), hex(&b[end..]));
    }
}

fn decode_l4(proto: u8, b: &[u8], ip: &str, pseudo: Pseudo, quote: bool, d: &mut Decoded) {
    // Field prefix: "tcp" for the outer packet, "inner.tcp", "icmp.quote.udp", ...
    let name = |n: &str| {
        if ip == "ip" {
            n.to_string()
        } else {
            format!("{ip}.{n}")
        }
    };
    match proto {
        6 if quote => {
            let p = name("tcp");
            if b.len() < 8 {
                d.put(format!("{p}.raw"), hex(b));
                return;
            }
            d.put(format!("{p}.sport"), be16(b, 0));
            d.put(format!("{p}.dport"), be16(b, 2));
            d.put(
                format!("{p}.seq"),
                u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            );
            if b.len() > 8 {
                d.put(format!("{p}.rest"), hex(&b[8..]));
            }
        }
        6 => {
            let p = name("tcp");
            let Ok((t, payload)) = TcpHeader::from_slice(b) else {
                d.put(format!("{p}.raw"), hex(b));
                return;
            };
            d.put(format!("{p}.sport"), t.source_port);
            d.put(format!("{p}.dport"), t.destination_port);
            d.put(format!("{p}.seq"), t.sequence_number);
            d.put(format!("{p}.ack"), t.acknowledgment_number);
            let flags: String = [
                (t.syn, 'S'),
                (t.ack, 'A'),
                (t.fin, 'F'),
                (t.rst, 'R'),
                (t.psh, 'P'),
                (t.urg, 'U'),
                (t.ece, 'E'),
                (t.cwr, 'C'),
            ]
            .iter()
            .filter_map(|(on, c)| on.then_some(*c))
            .collect();
            d.put(format!("{p}.flags"), flags);
            d.put(format!("{p}.window"), t.window_size);
            d.put(format!("{p}.checksum"), format!("{:#06x}", t.checksum));
            d.put(format!("{p}.urgent"), t.urgent_pointer);
            d.put(format!("{p}.options"), hex(t.options.as_slice()));
            d.put(name("payload"), hex(payload));
            let computed = match pseudo {
                Pseudo::V4(s, dd) => t.calc_checksum_ipv4_raw(s, dd, payload),
                Pseudo::V6(s, dd) => t.calc_checksum_ipv6_raw(s, dd, payload),
            };
            match computed {
                Ok(c) if c == t.checksum => {}
                Ok(c) => d.bad(&format!("{p}.checksum"), t.checksum, c),
                Err(e) => d.bad_checksums.push(format!("{p}.checksum: {e}")),
            }
        }
        17 => {
            let p = name("udp");
            if b.len() < 8 {
                d.put(format!("{p}.raw"), hex(b));
                return;
            }
            let (u, payload) = UdpHeader::from_slice(b).unwrap();
            d.put(format!("{p}.sport"), u.source_port);
            d.put(format!("{p}.dport"), u.destination_port);
            d.put(format!("{p}.len"), u.length);
            d.put(format!("{p}.checksum"), format!("{:#06x}", u.checksum));
            if quote {
                if !payload.is_empty() {
                    d.put(format!("{p}.rest"), hex(payload));
                }
                return;
            }
            d.put(name("payload"), hex(payload));
            let computed = match pseudo {
                // RFC 768: an IPv4 UDP checksum of 0 means "none".
                Pseudo::V4(_, _) if u.checksum == 0 => return,
                Pseudo::V4(s, dd) => u.calc_checksum_ipv4_raw(s, dd, payload),
                Pseudo::V6(s, dd) => u.calc_checksum_ipv6_raw(s, dd, payload),
            };
            match computed {
                Ok(c) if c == u.checksum => {}
                Ok(c) => d.bad(&format!("{p}.checksum"), u.checksum, c),
                Err(e) => d.bad_checksums.push(format!("{p}.checksum: {e}")),
            }
        }
        1 if !quote => {
            let p = name("icmp");
            let Ok(s) = Icmpv4Slice::from_slice(b) else {
                d.put(format!("{p}.raw"), hex(b));
                return;
            };
            d.put(format!("{p}.type"), s.type_u8());
            d.put(format!("{p}.code"), s.code_u8());
            d.put(format!("{p}.checksum"), format!("{:#06x}", s.checksum()));
            d.put(format!("{p}.rest_of_header"), hex(&s.bytes5to8()));
            let computed = s.icmp_type().calc_checksum(s.payload());
            if computed != s.checksum() {
                d.bad(&format!("{p}.checksum"), s.checksum(), computed);
            }
            if matches!(s.type_u8(), 3 | 11 | 12) {
                decode_ip4(s.payload(), &format!("{p}.quote"), true, d);
            } else {
                d.put(format!("{p}.payload"), hex(s.payload()));
            }
        }
        58 if !quote => {
            let p = name("icmp6");
            let Ok(s) = Icmpv6Slice::from_slice(b) else {
                d.put(format!("{p}.raw"), hex(b));
                return;
            };
            d.put(format!("{p}.type"), s.type_u8());
            d.put(format!("{p}.code"), s.code_u8());
            d.put(format!("{p}.checksum"), format!("{:#06x}", s.checksum()));
            d.put(format!("{p}.rest_of_header"), hex(&s.bytes5to8()));
            match pseudo {
                Pseudo::V6(src, dst) => {
                    let computed = s.icmp_type().calc_checksum(src, dst, s.payload());
                    match computed {
                        Ok(c) if c == s.checksum() => {}
                        Ok(c) => d.bad(&format!("{p}.checksum"), s.checksum(), c),
                        Err(e) => d.bad_checksums.push(format!("{p}.checksum: {e}")),
                    }
                }
                Pseudo::V4(..) => d.bad_checksums.push(format!("{p}: ICMPv6 in IPv4")),
            }
            if (1..=4).contains(&s.type_u8()) {
                decode_ip6(s.payload(), &format!("{p}.quote"), true, d);
            } else {
                d.put(format!("{p}.payload"), hex(s.payload()));
            }
        }
        4 if !quote => decode_ip4(b, &name("inner"), false, d),
        41 if !quote => decode_ip6(b, &name("inner"), false, d),
        _ => {
            d.put(name("payload"), hex(b));
        }
    }
}

/// A per-field diff of two frames; empty when they are byte-identical.
pub fn diff(expected: &[u8], actual: &[u8]) -> String {
    if expected == actual {
        return String::new();
    }
    let e = decode(expected);
    let a = decode(actual);
    let mut out = String::new();
    let get = |d: &Decoded, k: &str| {
        d.fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let mut names: Vec<&String> = e.fields.iter().map(|(n, _)| n).collect();
    for (n, _) in &a.fields {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    for n in names {
        let (ev, av) = (get(&e, n), get(&a, n));
        if ev != av {
            let show = |v: Option<String>| v.unwrap_or_else(|| "(absent)".into());
            let _ = writeln!(out, "  {n}: expected {}, got {}", show(ev), show(av));
        }
    }
    if out.is_empty() {
        let offs: Vec<String> = (0..expected.len().max(actual.len()))
            .filter(|&i| expected.get(i) != actual.get(i))
            .take(16)
            .map(|i| i.to_string())
            .collect();
        let _ = writeln!(
            out,
            "  (every field equal) bytes differ at offsets {}",
            offs.join(",")
        );
    }
    let _ = writeln!(out, "  expected bytes: {}", hex(expected));
    let _ = write!(out, "  actual bytes:   {}", hex(actual));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Pkt, frag_needed, packet_too_big};

    #[test]
    fn built_packets_verify() {
        let inner = Pkt::udp("198.18.0.10", "198.18.1.1", 1, 2);
        for p in [
            Pkt::tcp("198.18.0.10", "198.18.1.1", 40000, 80)
                .vlan(3)
                .options(&[1, 1, 1, 0]),
            Pkt::udp("2001:db8::1", "2001:db8::2", 1, 2),
            frag_needed("198.18.9.9", "198.18.1.1", 1400, &inner.quote()),
            packet_too_big(
                "2001:db8::9",
                "2001:db8::2",
                1280,
                &Pkt::tcp("2001:db8::1", "2001:db8::2", 1, 2).quote(),
            ),
        ] {
            let d = decode(&p.bytes());
            assert!(d.bad_checksums.is_empty(), "{:?}", d.bad_checksums);
        }
    }

    #[test]
    fn diff_names_the_field() {
        let a = Pkt::tcp("198.18.0.10", "198.18.1.1", 40000, 80);
        let b = a.clone().ttl(63);
        let out = diff(&a.bytes(), &b.bytes());
        assert!(out.contains("ip.ttl: expected 64, got 63"), "{out}");
        assert!(out.contains("ip.checksum"), "{out}");
        let mut bad = a.bytes();
        bad[30] ^= 1;
        assert!(!decode(&bad).bad_checksums.is_empty());
    }
}
