//! Elasticsearch composable index templates for the documents nta writes
//! (`deploy/elasticsearch/`): ECS mappings (`ip`, `date`, `long`,
//! `keyword`) and nta's own fields, one template per document kind. The
//! test below writes every kind of document, with every optional field
//! filled, and checks that each field is mapped with a type its value
//! fits: a field nta adds without mapping it fails here.

/// (template name, index pattern, template JSON).
pub const TEMPLATES: [(&str, &str, &str); 4] = [
    (
        "nta-flows",
        "nta-flows*",
        include_str!("../../../deploy/elasticsearch/nta-flows.json"),
    ),
    (
        "nta-alerts",
        "nta-alerts*",
        include_str!("../../../deploy/elasticsearch/nta-alerts.json"),
    ),
    (
        "nta-tls",
        "nta-tls*",
        include_str!("../../../deploy/elasticsearch/nta-tls.json"),
    ),
    (
        "nta-dns",
        "nta-dns*",
        include_str!("../../../deploy/elasticsearch/nta-dns.json"),
    ),
];

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::IpAddr};

    use agent_common::sample::map_ipv4;
    use serde_json::Value;

    use super::*;
    use crate::{
        app::{
            dns::{DnsAnswer, DnsMessage, DnsQuestion, Edns},
            dns_transactions::DnsTransaction,
            flow_names::FlowNames,
            handshakes::Handshake,
            ja4::Transport,
            tls::{ClientHello, ServerHello},
        },
        output::{
            alert::document::to_json,
            export::{FlowRecord, WallClock, fields},
            metadata::{self, Origin},
        },
        pipeline::{
            detect::{
                DetectConfig, DetectorKind, Evidence, Finding, Incidents, Subject, Unit,
                profile::{features::Feature, learned::Deviation},
            },
            flow::{Direction, Directions, ExpireReason, ExpiredFlow, FlowKey, FlowStats},
        },
    };

    fn key(protocol: u8) -> FlowKey {
        FlowKey {
            src: map_ipv4([198, 18, 0, 2]),
            dst: map_ipv4([198, 18, 0, 1]),
            src_port: 40000,
            dst_port: 443,
            vlan_id: 7,
            ip_version: 4,
            protocol,
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
    }

    /// Flow documents: TCP with names from a file, ICMP live.
    fn flow_documents() -> Vec<Value> {
        let flow = |protocol, tcp_flags| ExpiredFlow {
            key: key(protocol),
            stats: FlowStats {
                first_ns: 1_000,
                last_ns: 2_000_000,
                sampled_packets: 3,
                sampled_bytes: 180,
                estimated_packets: 192,
                estimated_bytes: 11520,
                tcp_flags,
                min_ttl: 63,
                max_ttl: 64,
                sampling_rate: 64,
                ifindex: 2,
            },
            reason: ExpireReason::Idle,
            reverse_seen: true,
        };
        let named = FlowRecord::new(&flow(6, 0x12), WallClock::unix(), "/captures/a.pcap")
            .from_file()
            .with_direction(Direction::Inbound)
            .with_names(FlowNames {
                server_name: Some("shop.example".into()),
                dns_query: Some("shop.example".into()),
            });
        let icmp = FlowRecord::new(&flow(1, 0), WallClock::unix(), "eth0");
        [named, icmp]
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                fields::write_json(r, &mut out);
                parse(&out)
            })
            .collect()
    }

    fn finding(detector: DetectorKind, subject: Subject) -> Finding {
        let a = map_ipv4([198, 18, 0, 9]);
        Finding {
            detector,
            subject,
            ts_ns: 5_000_000_000,
            value: 4000.0,
            unit: Unit::PacketsPerSecond,
            limit: 1000.0,
            window_ns: 1_000_000_000,
            sample_rate: 64,
            distinct_sources: Some(500),
            top_sources: vec![(a, 4000)],
            evidence: vec![Evidence {
                ts_ns: 5_000_000_000,
                src: a,
                dst: map_ipv4([198, 18, 0, 1]),
                src_port: 53,
                dst_port: 40000,
                proto: 6,
                tcp_flags: 2,
                frame_len: 60,
                ttl: 64,
                sample_rate: 64,
            }],
            reason: "test",
            deviations: vec![Deviation {
                feature: Feature::Pps,
                value: 4000.0,
                usual: 200.0,
                low: 150.0,
                high: 330.0,
                score: 21.3,
                material: true,
            }],
            detail: Some("domain t.example: 120 distinct subdomains".into()),
        }
    }

    /// Alert documents: every subject kind, with a flight capture named.
    fn alert_documents() -> Vec<Value> {
        let a = map_ipv4([198, 18, 0, 1]);
        let s = map_ipv4([198, 18, 0, 9]);
        let subjects = [
            (
                DetectorKind::Amplification,
                Subject::Reflected {
                    dst: a,
                    source_port: 53,
                },
            ),
            (DetectorKind::PortScan, Subject::Pair { src: s, dst: a }),
            (
                DetectorKind::Sweep,
                Subject::SourcePort {
                    src: s,
                    port: 22,
                    proto: 6,
                },
            ),
            (DetectorKind::SynFlood, Subject::Destination(a)),
            (DetectorKind::Baseline, Subject::Group(0)),
            (DetectorKind::Baseline, Subject::Interface(2)),
        ];
        let mut docs = Vec::new();
        for (detector, subject) in subjects {
            let mut incidents = Incidents::new(DetectConfig::default().incidents);
            let mut out = Vec::new();
            incidents.on_finding(finding(detector, subject), &mut out);
            incidents.end_all(9_000_000_000, &mut out);
            for ev in &out {
                docs.push(parse(&to_json(
                    ev,
                    WallClock::unix(),
                    &["lab".to_string()],
                    Some(std::path::Path::new("/var/lib/nta/flight")),
                )));
            }
        }
        docs
    }

    fn tls_documents() -> Vec<Value> {
        let client = ClientHello {
            server_name: Some("shop.example".into()),
            alpn: vec![b"h2".to_vec()],
            cipher_suites: vec![0x1301, 0x1302],
            supported_versions: vec![0x0304, 0x0303],
            signature_algorithms: vec![0x0403],
            supported_groups: vec![29],
            extensions: vec![0, 16, 43],
            ..ClientHello::default()
        };
        let h = Handshake {
            unix_ns: 1_795_000_000_000_000_000,
            ifindex: 1,
            client: key(6),
            transport: Transport::Tcp,
            client_hello: Some(client),
            server_hello: Some(ServerHello {
                version: 0x0303,
                cipher_suite: 0xc02b,
                alpn: Some(b"h2".to_vec()),
            }),
        };
        let interfaces = HashMap::from([(1, "eth0".to_string())]);
        let files = ["/captures/a.pcap".to_string()];
        [Origin::Interfaces(&interfaces), Origin::Files(&files)]
            .iter()
            .map(|o| {
                let mut out = Vec::new();
                metadata::tls::write(&h, o, &Directions::default(), &mut out);
                parse(&out)
            })
            .collect()
    }

    fn dns_documents() -> Vec<Value> {
        let message = |response: bool| DnsMessage {
            id: 7,
            response,
            opcode: 0,
            flags: 0x0180,
            rcode: 0,
            counts: [1, 1, 0, 1],
            question: Some(DnsQuestion {
                name: "www.shop.example".into(),
                qtype: 1,
                qclass: 1,
            }),
            answers: if response {
                vec![DnsAnswer {
                    name: "shop.example".into(),
                    rtype: 1,
                    class: 1,
                    ttl: 60,
                    data: "198.18.0.5".into(),
                }]
            } else {
                Vec::new()
            },
            resolved_ips: if response {
                vec![IpAddr::from([198, 18, 0, 5])]
            } else {
                Vec::new()
            },
            edns: Some(Edns {
                udp_size: 1232,
                version: 0,
                dnssec_ok: true,
            }),
            len: 40,
            partial: response,
        };
        let t = DnsTransaction {
            unix_ns: 1_795_000_000_000_000_000,
            ifindex: 1,
            client: key(17),
            query: Some(message(false)),
            response: Some(message(true)),
            duration_ns: Some(250_000),
        };
        let interfaces = HashMap::from([(1, "eth0".to_string())]);
        let mut out = Vec::new();
        metadata::dns::write(
            &t,
            &Origin::Interfaces(&interfaces),
            &Directions::default(),
            &mut out,
        );
        vec![parse(&out)]
    }

    /// Every leaf of `v` as (dotted path, value); arrays give their
    /// elements under the array's path.
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&p, v, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    leaves(prefix, item, out);
                }
            }
            leaf => out.push((prefix.to_string(), leaf.clone())),
        }
    }

    /// The mapped type of a dotted path in a template, if any.
    fn mapped_type<'a>(template: &'a Value, path: &str) -> Option<&'a str> {
        let mut node = &template["template"]["mappings"];
        for part in path.split('.') {
            node = node.get("properties")?.get(part)?;
        }
        node.get("type").and_then(Value::as_str)
    }

    fn fits(kind: &str, v: &Value) -> bool {
        match (kind, v) {
            (
                "keyword" | "wildcard" | "text" | "match_only_text" | "constant_keyword",
                Value::String(_),
            ) => true,
            ("ip", Value::String(s)) => s.parse::<IpAddr>().is_ok(),
            ("date", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            ("long" | "integer" | "short" | "byte" | "unsigned_long", Value::Number(n)) => {
                n.is_u64() || n.is_i64()
            }
            ("double" | "float" | "scaled_float", Value::Number(_)) => true,
            ("boolean", Value::Bool(_)) => true,
            _ => false,
        }
    }

    #[test]
    fn every_field_nta_writes_is_mapped_with_a_type_its_value_fits() {
        let kinds: [(&str, Vec<Value>); 4] = [
            ("nta-flows", flow_documents()),
            ("nta-alerts", alert_documents()),
            ("nta-tls", tls_documents()),
            ("nta-dns", dns_documents()),
        ];
        // One line per field: (template, path) -> what is wrong.
        let mut problems = std::collections::BTreeMap::new();
        for (name, docs) in &kinds {
            let (_, pattern, text) = TEMPLATES
                .iter()
                .find(|t| t.0 == *name)
                .unwrap_or_else(|| panic!("no template {name}"));
            let template: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(template["index_patterns"], serde_json::json!([pattern]));
            assert!(!docs.is_empty());
            let mut all = Vec::new();
            for d in docs {
                leaves("", d, &mut all);
            }
            for (path, value) in all {
                let problem = match mapped_type(&template, &path) {
                    Some(kind) if fits(kind, &value) => continue,
                    Some(kind) => format!("is {kind}, not {value}"),
                    None => format!("({value}) is not mapped"),
                };
                problems.entry(format!("{name}: {path}")).or_insert(problem);
            }
        }
        let lines: Vec<String> = problems.iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert!(lines.is_empty(), "{}", lines.join("\n"));
    }
}
