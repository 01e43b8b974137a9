//! The one table of flow fields, from which every exporter writes: CSV
//! takes the `csv` column of each row that has one, JSON lines the `json`
//! paths (dotted Elastic Common Schema names, nested into objects), IPFIX
//! the information element. A new flow field is one row here.
//!
//! Rows are in CSV column order; JSON nests by path (the first row naming
//! a top-level key places it); IPFIX templates list the elements in row
//! order.

use std::{net::IpAddr, sync::LazyLock};

use chrono::{DateTime, TimeZone, Utc};
use netgauze_flow_pkt::ie::{Field, IE, flowEndReason, protocolIdentifier};

use super::record::{FlowRecord, rfc3339};
use crate::pipeline::flow::ExpireReason;

/// One value of a flow field as CSV and JSON write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Not there: JSON leaves the key out, CSV writes an empty cell.
    Absent,
    Text(String),
    Static(&'static str),
    Int(u64),
    Bool(bool),
    /// A JSON array of strings (ECS categories).
    List(&'static [&'static str]),
    /// A JSON array of strings made per record (`related.ip`).
    Texts(Vec<String>),
}

impl Value {
    /// The CSV cell.
    pub fn into_csv_text(self) -> String {
        match self {
            Value::Absent => String::new(),
            Value::Text(s) => s,
            Value::Static(s) => s.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::List(l) => l.join(","),
            Value::Texts(l) => l.join(","),
        }
    }

    /// Appends the JSON value (nothing for `Absent`). Writing into a Vec
    /// cannot fail.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Absent => {}
            Value::Text(s) => {
                let _ = serde_json::to_writer(&mut *out, s);
            }
            Value::Static(s) => {
                let _ = serde_json::to_writer(&mut *out, s);
            }
            Value::Int(n) => {
                let _ = std::io::Write::write_fmt(out, format_args!("{n}"));
            }
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::List(l) => {
                let _ = serde_json::to_writer(&mut *out, l);
            }
            Value::Texts(l) => {
                let _ = serde_json::to_writer(&mut *out, l);
            }
        }
    }
}

type Getter = fn(&FlowRecord) -> Value;

type IpfixGetter = fn(&FlowRecord) -> Field;

/// How a field travels in IPFIX.
pub struct Ipfix {
    /// The information element and its length, for IPv4 (false) or IPv6
    /// (true) flows.
    pub element: fn(bool) -> (IE, u16),
    pub value: IpfixGetter,
}

/// One flow field: its CSV column, its JSON paths, its IPFIX element.
pub struct FlowField {
    pub csv: Option<(&'static str, Getter)>,
    pub json: &'static [(&'static str, Getter)],
    pub ipfix: Option<Ipfix>,
}

/// Whether the flow's ports are known: TCP, UDP and SCTP, unless both
/// are 0, which is how a flow of non-first fragments (which carry no
/// transport header) is keyed.
fn ports_apply(f: &FlowRecord) -> bool {
    f.key.has_ports() && !f.is_icmp() && (f.key.src_port, f.key.dst_port) != (0, 0)
}

fn port_value(f: &FlowRecord, port: u16) -> Value {
    if ports_apply(f) {
        Value::Int(u64::from(port))
    } else {
        Value::Absent
    }
}

fn ipfix_port(f: &FlowRecord, port: u16) -> u16 {
    if ports_apply(f) { port } else { 0 }
}

fn millis(unix_ns: u64) -> DateTime<Utc> {
    Utc.timestamp_nanos((unix_ns / 1_000_000 * 1_000_000) as i64)
}

fn addr_len(v6: bool) -> u16 {
    if v6 { 16 } else { 4 }
}

fn address_field(ip: IpAddr, source: bool) -> Field {
    match (ip, source) {
        (IpAddr::V4(a), true) => Field::sourceIPv4Address(a),
        (IpAddr::V4(a), false) => Field::destinationIPv4Address(a),
        (IpAddr::V6(a), true) => Field::sourceIPv6Address(a),
        (IpAddr::V6(a), false) => Field::destinationIPv6Address(a),
    }
}

/// The Private Enterprise Number of nta's own IPFIX elements: RFC 5612's
/// number for documentation and examples, since nta has none registered
/// (collectors need a definition of it either way; README lists them).
pub const NTA_PEN: u32 = 32473;
/// nta's element: the TLS or QUIC server name of the flow (string).
pub const IE_SERVER_NAME: u16 = 1;
/// nta's element: the flow's first DNS question name (string).
pub const IE_DNS_QUERY: u16 = 2;

fn name_value(name: &Option<String>) -> Value {
    name.clone().map_or(Value::Absent, Value::Text)
}

/// A name as a variable-length IPFIX string (empty when there is none).
fn name_field(id: u16, name: &Option<String>) -> Field {
    Field::Unknown {
        pen: NTA_PEN,
        id,
        value: name
            .as_deref()
            .unwrap_or_default()
            .as_bytes()
            .to_vec()
            .into_boxed_slice(),
    }
}

/// Every flow field, in CSV column order.
pub static FIELDS: &[FlowField] = &[
    // The JSON document's own fields first, so `@timestamp` leads it.
    FlowField {
        csv: None,
        json: &[
            ("@timestamp", |f| Value::Text(rfc3339(f.end_unix_ns))),
            ("ecs.version", |_| Value::Static("8.11.0")),
            ("event.kind", |_| Value::Static("event")),
            ("event.category", |_| Value::List(&["network"])),
            ("event.type", |f| {
                // An active-timeout report is a flow that goes on.
                Value::List(if f.reason == ExpireReason::Active {
                    &["connection"]
                } else {
                    &["connection", "end"]
                })
            }),
            ("event.action", |_| Value::Static("flow_expired")),
            ("event.dataset", |_| Value::Static("nta.flow")),
        ],
        ipfix: None,
    },
    FlowField {
        csv: Some(("start", |f| Value::Text(rfc3339(f.start_unix_ns)))),
        json: &[("event.start", |f| Value::Text(rfc3339(f.start_unix_ns)))],
        ipfix: Some(Ipfix {
            element: |_| (IE::flowStartMilliseconds, 8),
            value: |f| Field::flowStartMilliseconds(millis(f.start_unix_ns)),
        }),
    },
    FlowField {
        csv: Some(("end", |f| Value::Text(rfc3339(f.end_unix_ns)))),
        json: &[("event.end", |f| Value::Text(rfc3339(f.end_unix_ns)))],
        ipfix: Some(Ipfix {
            element: |_| (IE::flowEndMilliseconds, 8),
            value: |f| Field::flowEndMilliseconds(millis(f.end_unix_ns)),
        }),
    },
    FlowField {
        // ECS durations are nanoseconds; the CSV column says milliseconds.
        csv: Some(("duration_ms", |f| {
            Value::Int(f.end_unix_ns.saturating_sub(f.start_unix_ns) / 1_000_000)
        })),
        json: &[("event.duration", |f| {
            Value::Int(f.end_unix_ns.saturating_sub(f.start_unix_ns))
        })],
        ipfix: None,
    },
    FlowField {
        csv: Some(("interface", |f| Value::Text(f.interface.clone()))),
        json: &[
            ("observer.ingress.interface.name", |f| {
                if f.from_file {
                    Value::Absent
                } else {
                    Value::Text(f.interface.clone())
                }
            }),
            // `nta analyze`: the capture file the flow was read from.
            ("log.file.path", |f| {
                if f.from_file {
                    Value::Text(f.interface.clone())
                } else {
                    Value::Absent
                }
            }),
        ],
        ipfix: Some(Ipfix {
            element: |_| (IE::ingressInterface, 4),
            value: |f| Field::ingressInterface(f.stats.ifindex),
        }),
    },
    FlowField {
        csv: Some(("vlan", |f| Value::Int(u64::from(f.key.vlan_id)))),
        json: &[("network.vlan.id", |f| {
            if f.key.vlan_id == 0 {
                Value::Absent
            } else {
                Value::Text(f.key.vlan_id.to_string())
            }
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::vlanId, 2),
            value: |f| Field::vlanId(f.key.vlan_id),
        }),
    },
    FlowField {
        csv: Some(("ip_version", |f| Value::Int(u64::from(f.key.ip_version)))),
        json: &[("network.type", |f| {
            Value::Static(if f.key.ip_version == 4 {
                "ipv4"
            } else {
                "ipv6"
            })
        })],
        ipfix: None,
    },
    FlowField {
        csv: Some(("protocol", |f| Value::Text(f.transport()))),
        json: &[
            // The IANA keyword, or nothing for a number without one.
            ("network.transport", |f| {
                agent_common::class::ipproto::name(f.key.protocol)
                    .map_or(Value::Absent, Value::Static)
            }),
            ("network.direction", |f| Value::Static(f.direction.label())),
            ("network.iana_number", |f| {
                Value::Text(f.key.protocol.to_string())
            }),
        ],
        ipfix: Some(Ipfix {
            element: |_| (IE::protocolIdentifier, 1),
            value: |f| Field::protocolIdentifier(protocolIdentifier::from(f.key.protocol)),
        }),
    },
    FlowField {
        csv: Some(("src_ip", |f| Value::Text(f.key.src_ip().to_string()))),
        json: &[("source.ip", |f| Value::Text(f.key.src_ip().to_string()))],
        ipfix: Some(Ipfix {
            element: |v6| {
                let ie = if v6 {
                    IE::sourceIPv6Address
                } else {
                    IE::sourceIPv4Address
                };
                (ie, addr_len(v6))
            },
            value: |f| address_field(f.key.src_ip(), true),
        }),
    },
    FlowField {
        csv: Some(("src_port", |f| port_value(f, f.key.src_port))),
        json: &[("source.port", |f| port_value(f, f.key.src_port))],
        ipfix: Some(Ipfix {
            element: |_| (IE::sourceTransportPort, 2),
            value: |f| Field::sourceTransportPort(ipfix_port(f, f.key.src_port)),
        }),
    },
    FlowField {
        csv: Some(("dst_ip", |f| Value::Text(f.key.dst_ip().to_string()))),
        json: &[("destination.ip", |f| {
            Value::Text(f.key.dst_ip().to_string())
        })],
        ipfix: Some(Ipfix {
            element: |v6| {
                let ie = if v6 {
                    IE::destinationIPv6Address
                } else {
                    IE::destinationIPv4Address
                };
                (ie, addr_len(v6))
            },
            value: |f| address_field(f.key.dst_ip(), false),
        }),
    },
    FlowField {
        csv: Some(("dst_port", |f| port_value(f, f.key.dst_port))),
        json: &[("destination.port", |f| port_value(f, f.key.dst_port))],
        ipfix: Some(Ipfix {
            element: |_| (IE::destinationTransportPort, 2),
            value: |f| Field::destinationTransportPort(ipfix_port(f, f.key.dst_port)),
        }),
    },
    // Estimates scaled by the sampling rate; IPFIX carries the sampled
    // counts below for the collector to scale.
    FlowField {
        csv: Some(("packets", |f| Value::Int(f.stats.estimated_packets))),
        json: &[
            ("source.packets", |f| Value::Int(f.stats.estimated_packets)),
            ("network.packets", |f| Value::Int(f.stats.estimated_packets)),
        ],
        ipfix: None,
    },
    FlowField {
        csv: Some(("bytes", |f| Value::Int(f.stats.estimated_bytes))),
        json: &[
            ("source.bytes", |f| Value::Int(f.stats.estimated_bytes)),
            ("network.bytes", |f| Value::Int(f.stats.estimated_bytes)),
        ],
        ipfix: None,
    },
    FlowField {
        csv: Some(("sampled_packets", |f| Value::Int(f.stats.sampled_packets))),
        json: &[("nta.flow.sampled_packets", |f| {
            Value::Int(f.stats.sampled_packets)
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::packetDeltaCount, 8),
            value: |f| Field::packetDeltaCount(f.stats.sampled_packets),
        }),
    },
    FlowField {
        csv: Some(("sampled_bytes", |f| Value::Int(f.stats.sampled_bytes))),
        json: &[("nta.flow.sampled_bytes", |f| {
            Value::Int(f.stats.sampled_bytes)
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::octetDeltaCount, 8),
            value: |f| Field::octetDeltaCount(f.stats.sampled_bytes),
        }),
    },
    FlowField {
        csv: Some(("sampling_rate", |f| {
            Value::Int(u64::from(f.stats.sampling_rate))
        })),
        json: &[("nta.flow.sampling_rate", |f| {
            Value::Int(u64::from(f.stats.sampling_rate))
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::samplingPacketInterval, 4),
            value: |f| Field::samplingPacketInterval(f.stats.sampling_rate.max(1)),
        }),
    },
    FlowField {
        csv: Some(("tcp_flags", |f| Value::Text(f.tcp_flags_text()))),
        json: &[("nta.flow.tcp_flags", |f| {
            if f.key.protocol == 6 {
                Value::Text(f.tcp_flags_text())
            } else {
                Value::Absent
            }
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::tcpControlBits, 2),
            value: |f| {
                Field::tcpControlBits(netgauze_iana::tcp::TCPHeaderFlags::from(f.stats.tcp_flags))
            },
        }),
    },
    FlowField {
        csv: Some(("min_ttl", |f| Value::Int(u64::from(f.stats.min_ttl)))),
        json: &[("nta.flow.ttl.min", |f| {
            Value::Int(u64::from(f.stats.min_ttl))
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::minimumTTL, 1),
            value: |f| Field::minimumTTL(f.stats.min_ttl),
        }),
    },
    FlowField {
        csv: Some(("max_ttl", |f| Value::Int(u64::from(f.stats.max_ttl)))),
        json: &[("nta.flow.ttl.max", |f| {
            Value::Int(u64::from(f.stats.max_ttl))
        })],
        ipfix: Some(Ipfix {
            element: |_| (IE::maximumTTL, 1),
            value: |f| Field::maximumTTL(f.stats.max_ttl),
        }),
    },
    FlowField {
        csv: Some(("end_reason", |f| Value::Static(f.reason.label()))),
        json: &[("event.reason", |f| Value::Static(f.reason.label()))],
        ipfix: Some(Ipfix {
            element: |_| (IE::flowEndReason, 1),
            value: |f| Field::flowEndReason(flowEndReason::from(f.reason.ipfix_code())),
        }),
    },
    FlowField {
        csv: Some(("biflow", |f| Value::Bool(f.reverse_seen))),
        json: &[("nta.flow.biflow", |f| Value::Bool(f.reverse_seen))],
        ipfix: None,
    },
    FlowField {
        csv: Some(("community_id", |f| {
            f.community_id.clone().map_or(Value::Absent, Value::Text)
        })),
        json: &[("network.community_id", |f| {
            f.community_id.clone().map_or(Value::Absent, Value::Text)
        })],
        ipfix: None,
    },
    // What the payloads named: nta's own IPFIX elements (variable-length
    // strings under NTA_PEN).
    FlowField {
        csv: Some(("server_name", |f| name_value(&f.names.server_name))),
        json: &[("tls.client.server_name", |f| {
            name_value(&f.names.server_name)
        })],
        ipfix: Some(Ipfix {
            element: |_| {
                (
                    IE::Unknown {
                        pen: NTA_PEN,
                        id: IE_SERVER_NAME,
                    },
                    u16::MAX,
                )
            },
            value: |f| name_field(IE_SERVER_NAME, &f.names.server_name),
        }),
    },
    FlowField {
        csv: Some(("dns_query", |f| name_value(&f.names.dns_query))),
        json: &[("dns.question.name", |f| name_value(&f.names.dns_query))],
        ipfix: Some(Ipfix {
            element: |_| {
                (
                    IE::Unknown {
                        pen: NTA_PEN,
                        id: IE_DNS_QUERY,
                    },
                    u16::MAX,
                )
            },
            value: |f| name_field(IE_DNS_QUERY, &f.names.dns_query),
        }),
    },
    // ICMP type and code travel in the port fields of the key.
    FlowField {
        csv: None,
        json: &[
            ("nta.icmp.type", |f| {
                if f.is_icmp() {
                    Value::Int(u64::from(f.key.src_port))
                } else {
                    Value::Absent
                }
            }),
            ("nta.icmp.code", |f| {
                if f.is_icmp() {
                    Value::Int(u64::from(f.key.dst_port))
                } else {
                    Value::Absent
                }
            }),
        ],
        ipfix: Some(Ipfix {
            element: |v6| {
                let ie = if v6 {
                    IE::icmpTypeCodeIPv6
                } else {
                    IE::icmpTypeCodeIPv4
                };
                (ie, 2)
            },
            value: |f| {
                let type_code = if f.is_icmp() {
                    (f.key.src_port << 8) | (f.key.dst_port & 0xff)
                } else {
                    0
                };
                if f.key.ip_version == 6 {
                    Field::icmpTypeCodeIPv6(type_code)
                } else {
                    Field::icmpTypeCodeIPv4(type_code)
                }
            },
        }),
    },
    FlowField {
        csv: None,
        json: &[
            ("observer.type", |_| Value::Static("sensor")),
            ("observer.product", |_| Value::Static("nta")),
            ("observer.hostname", |_| {
                Value::Static(crate::output::hostname())
            }),
            ("related.ip", |f| {
                Value::Texts(vec![f.key.src_ip().to_string(), f.key.dst_ip().to_string()])
            }),
        ],
        ipfix: None,
    },
];

/// The CSV header: every row's column, in order.
pub fn csv_header() -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter_map(|f| f.csv.map(|(name, _)| name))
        .collect()
}

/// The CSV cells of one flow.
pub fn csv_row(f: &FlowRecord) -> impl Iterator<Item = String> + '_ {
    FIELDS
        .iter()
        .filter_map(|field| field.csv)
        .map(move |(_, get)| get(f).into_csv_text())
}

/// The IPFIX elements of a flow template (IPv4 or IPv6 flows).
pub fn ipfix_elements(v6: bool) -> Vec<(IE, u16)> {
    FIELDS
        .iter()
        .filter_map(|f| f.ipfix.as_ref())
        .map(|i| (i.element)(v6))
        .collect()
}

/// The IPFIX getters in template order, gathered once: collecting from an
/// exact-size iterator allocates each record once.
static IPFIX_VALUES: LazyLock<Vec<IpfixGetter>> = LazyLock::new(|| {
    FIELDS
        .iter()
        .filter_map(|f| f.ipfix.as_ref().map(|i| i.value))
        .collect()
});

/// The IPFIX values of one flow, in template order.
pub fn ipfix_values(f: &FlowRecord) -> Box<[Field]> {
    IPFIX_VALUES.iter().map(|get| get(f)).collect()
}

/// The JSON document's shape: objects by path segment, leaves pointing at
/// a getter. Built once from [`FIELDS`].
enum Node {
    Leaf(Getter),
    /// Members by name, each with its `"name":` bytes made once.
    Object(Vec<(&'static str, Vec<u8>, Node)>),
}

static JSON_SHAPE: LazyLock<Node> = LazyLock::new(|| {
    let mut root = Node::Object(Vec::new());
    for (path, get) in FIELDS.iter().flat_map(|f| f.json.iter()) {
        insert(&mut root, path, *get);
    }
    root
});

fn insert(node: &mut Node, path: &'static str, get: Getter) {
    let Node::Object(children) = node else {
        return;
    };
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let key = || {
        let mut k = serde_json::to_vec(head).unwrap_or_default();
        k.push(b':');
        k
    };
    match rest {
        None => children.push((head, key(), Node::Leaf(get))),
        Some(rest) => {
            let at = match children.iter().position(|(k, _, _)| *k == head) {
                Some(at) => at,
                None => {
                    children.push((head, key(), Node::Object(Vec::new())));
                    children.len() - 1
                }
            };
            insert(&mut children[at].2, rest, get);
        }
    }
}

/// Appends the JSON document of one flow (no newline). Absent values and
/// objects left empty are not written.
pub fn write_json(f: &FlowRecord, out: &mut Vec<u8>) {
    write_node(&JSON_SHAPE, f, out);
}

/// Writes `node`; false when it had nothing to write (absent value, or an
/// object whose members are all absent).
fn write_node(node: &Node, f: &FlowRecord, out: &mut Vec<u8>) -> bool {
    match node {
        Node::Leaf(get) => {
            let v = get(f);
            if matches!(v, Value::Absent) {
                return false;
            }
            v.write_json(out);
            true
        }
        Node::Object(children) => {
            let start = out.len();
            out.push(b'{');
            let mut any = false;
            for (_, key, child) in children {
                let before = out.len();
                if any {
                    out.push(b',');
                }
                out.extend_from_slice(key);
                if write_node(child, f, out) {
                    any = true;
                } else {
                    out.truncate(before);
                }
            }
            if !any {
                out.truncate(start);
                return false;
            }
            out.push(b'}');
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;
    use serde_json::json;

    use super::*;
    use crate::{
        app::flow_names::FlowNames,
        pipeline::flow::{Direction, ExpireReason, FlowKey, FlowStats},
    };

    fn flow(protocol: u8, src_port: u16, dst_port: u16, vlan_id: u16) -> FlowRecord {
        let key = FlowKey {
            src: map_ipv4([198, 18, 0, 2]),
            dst: map_ipv4([198, 18, 0, 1]),
            src_port,
            dst_port,
            vlan_id,
            ip_version: 4,
            protocol,
        };
        FlowRecord {
            key,
            stats: FlowStats {
                first_ns: 0,
                last_ns: 0,
                sampled_packets: 3,
                sampled_bytes: 180,
                estimated_packets: 192,
                estimated_bytes: 11520,
                tcp_flags: 0x12,
                min_ttl: 63,
                max_ttl: 64,
                sampling_rate: 64,
                ifindex: 7,
            },
            reason: ExpireReason::Idle,
            reverse_seen: true,
            start_unix_ns: 1_795_000_000_000_000_000,
            end_unix_ns: 1_795_000_001_500_000_000,
            interface: "eth0".into(),
            community_id: key.community_id(),
            names: FlowNames::default(),
            direction: Direction::Unknown,
            from_file: false,
        }
    }

    fn json_of(f: &FlowRecord) -> serde_json::Value {
        let mut out = Vec::new();
        write_json(f, &mut out);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    /// The document the typed ECS structs wrote before the table existed.
    #[test]
    fn tcp_flow_json_document() {
        let f = flow(6, 40000, 443, 0);
        let cid = f.community_id.clone().unwrap_or_default();
        assert_eq!(
            json_of(&f),
            json!({
                "@timestamp": "2026-11-18T11:06:41.500000000Z",
                "ecs": {"version": "8.11.0"},
                "event": {
                    "kind": "event", "category": ["network"], "type": ["connection", "end"],
                    "action": "flow_expired", "reason": "idle", "dataset": "nta.flow",
                    "start": "2026-11-18T11:06:40.000000000Z",
                    "end": "2026-11-18T11:06:41.500000000Z",
                    "duration": 1_500_000_000u64
                },
                "source": {"ip": "198.18.0.2", "port": 40000, "packets": 192, "bytes": 11520},
                "destination": {"ip": "198.18.0.1", "port": 443},
                "network": {
                    "transport": "tcp", "iana_number": "6", "type": "ipv4",
                    "packets": 192, "bytes": 11520, "community_id": cid,
                    "direction": "unknown"
                },
                "observer": {
                    "ingress": {"interface": {"name": "eth0"}},
                    "type": "sensor", "product": "nta",
                    "hostname": crate::output::hostname()
                },
                "related": {"ip": ["198.18.0.2", "198.18.0.1"]},
                "nta": {"flow": {
                    "sampled_packets": 3, "sampled_bytes": 180, "sampling_rate": 64,
                    "ttl": {"min": 63, "max": 64}, "biflow": true, "tcp_flags": "SA"
                }}
            })
        );
    }

    #[test]
    fn ecs_fields_say_only_what_is_known() {
        // An active-timeout report: the connection goes on.
        let mut f = flow(6, 40000, 443, 0);
        f.reason = ExpireReason::Active;
        assert_eq!(json_of(&f)["event"]["type"], json!(["connection"]));
        // A protocol with no IANA keyword: no transport, the number stays.
        let doc = json_of(&flow(253, 0, 0, 0));
        assert!(doc["network"].get("transport").is_none(), "{doc}");
        assert_eq!(doc["network"]["iana_number"], "253");
        // Non-first fragments carry no ports: none are written.
        let frag = flow(17, 0, 0, 0);
        let doc = json_of(&frag);
        assert!(doc["source"].get("port").is_none() && doc["destination"].get("port").is_none());
        let row: Vec<String> = csv_row(&frag).collect();
        let header = csv_header();
        let at = |c: &str| header.iter().position(|h| *h == c).unwrap_or(usize::MAX);
        assert_eq!(
            (row[at("src_port")].as_str(), row[at("dst_port")].as_str()),
            ("", "")
        );
        // Read from a file: its path, not an interface name.
        let mut read = flow(6, 40000, 443, 0).from_file();
        read.interface = "/captures/a.pcap".into();
        let doc = json_of(&read);
        assert_eq!(doc["log"]["file"]["path"], "/captures/a.pcap");
        assert!(doc["observer"].get("ingress").is_none(), "{doc}");
        // Direction from the host groups.
        let inbound = flow(6, 40000, 443, 0).with_direction(Direction::Inbound);
        assert_eq!(json_of(&inbound)["network"]["direction"], "inbound");
    }

    #[test]
    fn icmp_flow_has_type_and_code_but_no_ports_and_a_vlan() {
        let f = flow(1, 8, 0, 7);
        let doc = json_of(&f);
        assert_eq!(doc["nta"]["icmp"], json!({"type": 8, "code": 0}));
        assert_eq!(doc["network"]["vlan"], json!({"id": "7"}));
        assert!(doc["source"].get("port").is_none());
        assert!(doc["nta"]["flow"].get("tcp_flags").is_none());
        let doc = json_of(&flow(17, 5353, 53, 0));
        assert!(
            doc["nta"].get("icmp").is_none(),
            "an empty object is left out"
        );
        assert!(doc["network"].get("vlan").is_none());
    }

    #[test]
    fn csv_row_matches_the_header() {
        let f = flow(1, 8, 0, 7);
        let row: Vec<String> = csv_row(&f).collect();
        let header = csv_header();
        assert_eq!(row.len(), header.len());
        let cell =
            |name: &str| row[header.iter().position(|h| *h == name).unwrap_or(usize::MAX)].clone();
        assert_eq!(cell("duration_ms"), "1500");
        assert_eq!(cell("vlan"), "7");
        assert_eq!(cell("protocol"), "icmp");
        assert_eq!(cell("src_port"), "", "ICMP has no ports");
        assert_eq!(cell("packets"), "192");
        assert_eq!(cell("biflow"), "true");
        assert_eq!(cell("end_reason"), "idle");
    }

    #[test]
    fn ipfix_values_follow_the_template() {
        for v6 in [false, true] {
            assert_eq!(ipfix_elements(v6).len(), 19);
        }
        let f = flow(1, 3, 1, 0);
        let values = ipfix_values(&f);
        assert_eq!(values.len(), 19);
        assert!(values.contains(&Field::icmpTypeCodeIPv4(0x0301)));
        assert!(values.contains(&Field::sourceTransportPort(0)));
        assert!(values.contains(&Field::packetDeltaCount(3)));
        assert!(values.contains(&Field::ingressInterface(7)));
    }

    #[test]
    fn the_names_a_flow_got_go_to_every_format() {
        let plain = flow(17, 40000, 53, 0);
        assert!(json_of(&plain).get("dns").is_none(), "absent without names");
        let named = flow(6, 40000, 443, 0).with_names(FlowNames {
            server_name: Some("shop.example".into()),
            dns_query: Some("shop.example".into()),
        });
        let doc = json_of(&named);
        assert_eq!(doc["tls"]["client"]["server_name"], "shop.example");
        assert_eq!(doc["dns"]["question"]["name"], "shop.example");
        let row: Vec<String> = csv_row(&named).collect();
        let header = csv_header();
        let at = |c: &str| header.iter().position(|h| *h == c).unwrap_or(usize::MAX);
        assert_eq!(row[at("server_name")], "shop.example");
        assert_eq!(row[at("dns_query")], "shop.example");
        // IPFIX: nta's enterprise elements, variable length.
        assert!(ipfix_elements(false).contains(&(
            IE::Unknown {
                pen: NTA_PEN,
                id: IE_SERVER_NAME
            },
            u16::MAX
        )));
        assert!(ipfix_values(&named).contains(&Field::Unknown {
            pen: NTA_PEN,
            id: IE_SERVER_NAME,
            value: b"shop.example".to_vec().into_boxed_slice(),
        }));
    }

    #[test]
    fn json_paths_are_unique_and_never_both_leaf_and_object() {
        let paths: Vec<&str> = FIELDS
            .iter()
            .flat_map(|f| f.json.iter().map(|(p, _)| *p))
            .collect();
        for (i, p) in paths.iter().enumerate() {
            assert!(!paths[i + 1..].contains(p), "{p} twice");
            let prefix = format!("{p}.");
            assert!(
                !paths.iter().any(|q| q.starts_with(&prefix)),
                "{p} is a value and an object"
            );
        }
    }

    #[test]
    fn csv_columns_are_unique() {
        let header = csv_header();
        for (i, c) in header.iter().enumerate() {
            assert!(!header[i + 1..].contains(c), "{c} twice");
        }
        assert_eq!(header.len(), 24);
    }
}
