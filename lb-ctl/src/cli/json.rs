//! The JSON renderings of the status values (`lb-ctl -L -n --json`, `lb-ctl -L -c
//! --json`, `lb-ctl -L --timeout --json`, `lb-ctl counters --json`): an interface scripts parse, documented in docs/json.md. The field names are
//! the status types' serde names ([`crate::status`]); this file only wraps them in their
//! top-level object and prints them, pretty, with a final newline.

use crate::status::{Counters, ListedConn, ListedService, TableFill};
use lb_common::tables::Table;
use serde::Serialize;

fn render(v: &impl Serialize) -> String {
    // The values are plain structs, strings and numbers: serializing cannot fail.
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// `{"services": [...], "tables": [...]}`: services in the order given, then each state
/// table's fill (`{"table", "entries", "capacity"}`).
pub fn services(list: &[ListedService], tables: &[(Table, TableFill)]) -> String {
    #[derive(Serialize)]
    struct Fill {
        table: &'static str,
        #[serde(flatten)]
        fill: TableFill,
    }
    #[derive(Serialize)]
    struct Listing<'a> {
        services: &'a [ListedService],
        tables: Vec<Fill>,
    }
    let tables = tables
        .iter()
        .map(|(t, fill)| Fill {
            table: t.name(),
            fill: *fill,
        })
        .collect();
    render(&Listing {
        services: list,
        tables,
    })
}

/// `{"connections": [...]}`, flows then templates, as `-L -c` lists them.
pub fn conns(list: &[ListedConn]) -> String {
    #[derive(Serialize)]
    struct Top<'a> {
        connections: &'a [ListedConn],
    }
    render(&Top { connections: list })
}

/// `{"timeouts": {"tcp_s": 900, "tcpfin_s": 120, "udp_s": 300}}`: `-L --timeout`'s three
/// values, in seconds.
pub fn timeouts(tcp_s: u32, tcpfin_s: u32, udp_s: u32) -> String {
    #[derive(Serialize)]
    struct Timeouts {
        tcp_s: u32,
        tcpfin_s: u32,
        udp_s: u32,
    }
    #[derive(Serialize)]
    struct Top {
        timeouts: Timeouts,
    }
    render(&Top {
        timeouts: Timeouts {
            tcp_s,
            tcpfin_s,
            udp_s,
        },
    })
}

/// `{"counters": {"rx": 5, ...}}`, counters in listing order.
pub fn counters(c: &Counters) -> String {
    #[derive(Serialize)]
    struct Top<'a> {
        counters: &'a Counters,
    }
    render(&Top { counters: c })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::model::{Endpoint, Proto, ServiceAddr};
    use crate::status::{ListedNeighbour, ListedReal, Persistence, Rates, Stats};
    use lb_common::{Counter, Drop, ForwardMode};
    use serde_json::{Value, json};

    fn sample() -> Vec<ListedService> {
        vec![ListedService {
            addr: ServiceAddr {
                proto: Proto::Tcp,
                vip: Endpoint {
                    ip: "198.18.2.1".parse().unwrap(),
                    port: 80,
                },
            },
            sched: "mh",
            sched_flags: vec!["mh-port"],
            persistent: Some(Persistence {
                timeout_s: 300,
                netmask: "255.255.255.0".parse().unwrap(),
            }),
            one_packet: false,
            stats: Stats {
                conns: 3,
                in_packets: 30,
                out_packets: 0,
                in_bytes: 3000,
                out_bytes: 0,
            },
            rates: Rates {
                cps: 2,
                in_pps: 20,
                out_pps: 0,
                in_bps: 2000,
                out_bps: 0,
            },
            reals: vec![ListedReal {
                ep: Endpoint {
                    ip: "2001:db8::11".parse().unwrap(),
                    port: 8080,
                },
                mode: ForwardMode::Nat,
                weight: 2,
                active: 1,
                inactive: 4,
                persistent: 1,
                u_threshold: 10,
                l_threshold: 5,
                stats: Stats::default(),
                rates: Rates {
                    cps: 1,
                    in_pps: 10,
                    out_pps: 0,
                    in_bps: 1000,
                    out_bps: 0,
                },
                neighbour: ListedNeighbour {
                    resolved: true,
                    next_hop: Some("2001:db8::1".parse().unwrap()),
                    mac: Some("02:00:00:00:00:02".into()),
                    interface: Some("eth1".into()),
                    ifindex: 3,
                },
            }],
            persist_group: 0,
            mh_size: None,
        }]
    }

    /// The shape docs/json.md documents, field for field.
    #[test]
    fn listing_shape_is_the_documented_one() {
        let fill = [(
            Table::Flows4,
            TableFill {
                entries: 812,
                capacity: 1_048_576,
            },
        )];
        let out = services(&sample(), &fill);
        assert!(out.ends_with("}\n"));
        let v: Value = serde_json::from_str(&out).unwrap();
        let want = json!({
            "services": [{
                "protocol": "TCP",
                "address": "198.18.2.1",
                "port": 80,
                "scheduler": "mh",
                "scheduler_flags": ["mh-port"],
                "persistent": {"timeout_s": 300, "netmask": "255.255.255.0"},
                "one_packet": false,
                "stats": {"conns": 3, "in_packets": 30, "out_packets": 0,
                          "in_bytes": 3000, "out_bytes": 0},
                "rates": {"cps": 2, "in_pps": 20, "out_pps": 0, "in_bps": 2000, "out_bps": 0},
                "reals": [{
                    "address": "2001:db8::11",
                    "port": 8080,
                    "forward": "masq",
                    "weight": 2,
                    "active_conns": 1,
                    "inactive_conns": 4,
                    "persistent_conns": 1,
                    "u_threshold": 10,
                    "l_threshold": 5,
                    "stats": {"conns": 0, "in_packets": 0, "out_packets": 0,
                              "in_bytes": 0, "out_bytes": 0},
                    "rates": {"cps": 1, "in_pps": 10, "out_pps": 0, "in_bps": 1000, "out_bps": 0},
                    "neighbour": {"resolved": true, "next_hop": "2001:db8::1",
                                  "mac": "02:00:00:00:00:02", "interface": "eth1",
                                  "ifindex": 3}
                }]
            }],
            "tables": [{"table": "flows4", "entries": 812, "capacity": 1_048_576}]
        });
        assert_eq!(v, want);
        let mut none = sample();
        none[0].persistent = None;
        let v: Value = serde_json::from_str(&services(&none, &[])).unwrap();
        assert_eq!(v["services"][0]["persistent"], Value::Null);
        // A real whose next hop has not answered yet: no MAC, and no route either.
        let mut down = sample();
        down[0].reals[0].neighbour = ListedNeighbour::default();
        let v: Value = serde_json::from_str(&services(&down, &[])).unwrap();
        assert_eq!(
            v["services"][0]["reals"][0]["neighbour"],
            json!({"resolved": false, "next_hop": null, "mac": null, "interface": null,
                   "ifindex": 0})
        );
        let v: Value = serde_json::from_str(&services(&[], &[])).unwrap();
        assert_eq!(v, json!({"services": [], "tables": []}));
    }

    #[test]
    fn connection_shape_is_the_documented_one() {
        let ep = |ip: &str, port| Endpoint {
            ip: ip.parse().unwrap(),
            port,
        };
        let c = ListedConn {
            proto: "TCP",
            expire_s: 899,
            state: "ESTABLISHED",
            source: ep("198.18.0.10", 40000),
            virt: ep("198.18.2.1", 80),
            dest: ep("198.18.1.11", 80),
            mode: lb_common::ForwardMode::Nat,
        };
        let v: Value = serde_json::from_str(&conns(&[c])).unwrap();
        assert_eq!(
            v,
            json!({"connections": [{
                "protocol": "TCP",
                "expire_s": 899,
                "state": "ESTABLISHED",
                "source": {"address": "198.18.0.10", "port": 40000},
                "virtual": {"address": "198.18.2.1", "port": 80},
                "destination": {"address": "198.18.1.11", "port": 80},
                "forward": "masq"
            }]})
        );
    }

    #[test]
    fn timeouts_shape_is_the_documented_one() {
        let v: Value = serde_json::from_str(&timeouts(900, 120, 300)).unwrap();
        assert_eq!(
            v,
            json!({"timeouts": {"tcp_s": 900, "tcpfin_s": 120, "udp_s": 300}})
        );
    }

    #[test]
    fn counters_keep_their_order_and_names() {
        let mut slots = vec![0u64; Counter::SLOTS as usize];
        slots[Counter::RX.0 as usize] = 5;
        slots[Drop::NoReal.counter().0 as usize] = 2;
        let c = Counters::from_slots(&slots);
        let out = counters(&c);
        let v: Value = serde_json::from_str(&out).unwrap();
        let m = v["counters"].as_object().unwrap();
        assert_eq!(m.len(), c.0.len());
        assert_eq!(m["rx"], 5);
        assert_eq!(m["drop_no_real"], 2);
        assert_eq!(m["pass_not_vip"], 0);
        // Text order kept: rx first, then tx, as `lb-ctl counters` prints them.
        let rx = out.find("\"rx\"").unwrap();
        let tx = out.find("\"tx\"").unwrap();
        assert!(rx < tx);
    }
}
