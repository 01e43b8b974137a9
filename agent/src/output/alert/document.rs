//! The alert as a JSON document: Elastic Common Schema field names (like
//! Suricata's eve.json in ECS form), with the detector's details under
//! `nta.alert`. Files and webhooks carry the same bytes.

use serde::Serialize;

use crate::{
    output::export::{WallClock, rfc3339},
    pipeline::detect::{AlertEvent, Deviation, Evidence, Subject, Transition, display_addr},
};

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    ecs: Ecs,
    message: String,
    event: Event,
    rule: Rule,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<Endpoint>,
    observer: Observer,
    #[serde(skip_serializing_if = "Related::is_empty")]
    related: Related,
    nta: Nta<'a>,
}

#[derive(Serialize)]
struct Related {
    ip: Vec<String>,
}

impl Related {
    fn is_empty(&self) -> bool {
        self.ip.is_empty()
    }
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Event {
    kind: &'static str,
    category: [&'static str; 2],
    #[serde(rename = "type")]
    kinds: [&'static str; 1],
    action: String,
    /// Unique per document; the incident's id is `nta.alert.incident_id`.
    id: String,
    severity: u8,
    dataset: &'static str,
    reason: &'static str,
    start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    duration: u64,
}

#[derive(Serialize)]
struct Rule {
    name: &'static str,
    description: &'static str,
}

#[derive(Serialize)]
struct Endpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

#[derive(Serialize)]
struct Observer {
    #[serde(rename = "type")]
    kind: &'static str,
    product: &'static str,
    hostname: &'static str,
}

#[derive(Serialize)]
struct Nta<'a> {
    alert: NtaAlert<'a>,
}

#[derive(Serialize)]
struct NtaAlert<'a> {
    incident_id: &'a str,
    detector: &'static str,
    severity: &'static str,
    state: &'static str,
    value: f64,
    unit: &'static str,
    threshold: f64,
    /// What a learned profile saw deviate, worst first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deviations: Vec<DeviationDoc>,
    /// What the payloads said (TLS and DNS detectors), in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    peak: f64,
    window_seconds: f64,
    sample_rate: u32,
    findings: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    distinct_sources: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_group: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    top_sources: Vec<TopSource>,
    evidence: Vec<Packet>,
    /// The flight recorder's pcapng of this incident (written once its
    /// after-window has passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    capture_file: Option<String>,
}

#[derive(Serialize)]
struct DeviationDoc {
    feature: &'static str,
    value: f64,
    usual: f64,
    low: f64,
    high: f64,
    /// Standard deviations off the usual value (negative: below).
    score: f64,
}

#[derive(Serialize)]
struct TopSource {
    ip: String,
    packets: u64,
}

#[derive(Serialize)]
struct Packet {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    source: Endpoint,
    destination: Endpoint,
    iana_number: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<u8>,
    length: u32,
    ttl: u8,
    sample_rate: u32,
}

fn ip(a: &[u8; 16]) -> String {
    display_addr(a).to_string()
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

fn packet(e: &Evidence, clock: WallClock) -> Packet {
    let ports = has_ports(e.proto);
    Packet {
        timestamp: rfc3339(clock.to_unix_ns(e.ts_ns)),
        source: Endpoint {
            ip: Some(ip(&e.src)),
            port: ports.then_some(e.src_port),
        },
        destination: Endpoint {
            ip: Some(ip(&e.dst)),
            port: ports.then_some(e.dst_port),
        },
        iana_number: e.proto,
        tcp_flags: (e.proto == 6).then_some(e.tcp_flags),
        length: e.frame_len,
        ttl: e.ttl,
        sample_rate: e.sample_rate,
    }
}

/// A one-line human summary, also used for the log sink.
pub fn summary(ev: &AlertEvent, groups: &[String]) -> String {
    let i = &ev.incident;
    let f = &i.latest;
    let what = if let Some(detail) = &f.detail {
        detail.clone()
    } else if f.deviations.is_empty() {
        format!(
            "{:.0} {} (threshold {:.0})",
            f.value,
            f.unit.label(),
            f.limit
        )
    } else {
        explain(&f.deviations)
    };
    format!(
        "{} {} {} [{}]: {} {}; {}",
        i.detector.label(),
        ev.transition.label(),
        subject_text(&i.subject, groups),
        i.severity.label(),
        f.reason,
        what,
        i.id
    )
}

/// The deviations in words: "packets per second 4000 (usual 200, band
/// 150-330, 21.3 σ above)".
pub fn explain(deviations: &[Deviation]) -> String {
    let n = |x: f64| {
        if x.abs() >= 100.0 || x == x.round() {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    };
    deviations
        .iter()
        .map(|d| {
            format!(
                "{} {} (usual {}, band {}-{}, {:.1} σ {})",
                d.feature.words(),
                n(d.value),
                n(d.usual),
                n(d.low),
                n(d.high),
                d.score.abs(),
                if d.score > 0.0 { "above" } else { "below" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn subject_text(s: &Subject, groups: &[String]) -> String {
    match s {
        Subject::Destination(d) => format!("to {}", ip(d)),
        Subject::Reflected { dst, source_port } => {
            format!("to {} from port {source_port}", ip(dst))
        }
        Subject::Pair { src, dst } => format!("from {} to {}", ip(src), ip(dst)),
        Subject::SourcePort { src, port, proto } => match proto {
            1 | 58 => format!("from {} (ICMP echo)", ip(src)),
            _ => format!("from {} on port {port}/{}", ip(src), transport(*proto)),
        },
        Subject::Source(s) => format!("from {}", ip(s)),
        Subject::Interface(i) => format!("on interface {i}"),
        Subject::Group(g) => format!(
            "to host group {}",
            groups.get(*g as usize).map_or("?", String::as_str)
        ),
    }
}

fn transport(proto: u8) -> &'static str {
    agent_common::class::ipproto::name(proto).unwrap_or("ip")
}

/// Serialises `ev` as one JSON document (no trailing newline).
/// `flight_dir`: where the flight recorder writes incident captures; the
/// alert then names its incident's file.
pub fn to_json(
    ev: &AlertEvent,
    clock: WallClock,
    groups: &[String],
    flight_dir: Option<&std::path::Path>,
) -> Vec<u8> {
    let i = &ev.incident;
    let f = &i.latest;
    let at = |a: &[u8; 16], port: Option<u16>| {
        Some(Endpoint {
            ip: Some(ip(a)),
            port,
        })
    };
    let (source, destination) = match i.subject {
        Subject::Destination(d) => (None, at(&d, None)),
        // The reflectors' service port is where the traffic comes from.
        Subject::Reflected { dst, source_port } => (
            Some(Endpoint {
                ip: None,
                port: Some(source_port),
            }),
            at(&dst, None),
        ),
        Subject::Pair { src, dst } => (at(&src, None), at(&dst, None)),
        Subject::SourcePort { src, port, proto } => (
            at(&src, None),
            has_ports(proto).then_some(Endpoint {
                ip: None,
                port: Some(port),
            }),
        ),
        Subject::Source(s) => (at(&s, None), None),
        Subject::Group(_) | Subject::Interface(_) => (None, None),
    };
    let group = match i.subject {
        Subject::Group(g) => groups.get(g as usize).map(String::as_str),
        _ => None,
    };
    // Every address the alert names: its subject and top sources.
    let mut related: Vec<String> = Vec::new();
    for a in [&source, &destination]
        .into_iter()
        .flatten()
        .filter_map(|e| e.ip.clone())
        .chain(f.top_sources.iter().map(|(a, _)| ip(a)))
    {
        if !related.contains(&a) {
            related.push(a);
        }
    }
    let start = clock.to_unix_ns(i.started_ns);
    let now = clock.to_unix_ns(ev.ts_ns);
    let doc = Document {
        timestamp: rfc3339(now),
        ecs: Ecs { version: "8.11.0" },
        message: summary(ev, groups),
        event: Event {
            kind: "alert",
            category: ["network", "intrusion_detection"],
            kinds: [match ev.transition {
                Transition::Start => "start",
                Transition::Update => "info",
                Transition::End => "end",
            }],
            action: format!("incident-{}", ev.transition.label()),
            id: format!("{}-{}-{}", i.id, ev.transition.label(), ev.ts_ns),
            severity: i.severity.number(),
            dataset: "nta.alert",
            reason: f.reason,
            start: rfc3339(start),
            end: (ev.transition == Transition::End).then(|| rfc3339(now)),
            duration: now.saturating_sub(start),
        },
        rule: Rule {
            name: i.detector.label(),
            description: i.detector.description(),
        },
        source,
        destination,
        observer: Observer {
            kind: "sensor",
            product: "nta",
            hostname: crate::output::hostname(),
        },
        related: Related { ip: related },
        nta: Nta {
            alert: NtaAlert {
                incident_id: &i.id,
                detector: i.detector.label(),
                severity: i.severity.label(),
                state: ev.transition.label(),
                value: f.value,
                unit: f.unit.label(),
                threshold: f.limit,
                deviations: f
                    .deviations
                    .iter()
                    .map(|d| DeviationDoc {
                        feature: d.feature.label(),
                        value: d.value,
                        usual: d.usual,
                        low: d.low,
                        high: d.high,
                        score: d.score,
                    })
                    .collect(),
                detail: f.detail.as_deref(),
                peak: i.peak,
                window_seconds: f.window_ns as f64 / 1e9,
                sample_rate: f.sample_rate,
                findings: i.findings,
                distinct_sources: f.distinct_sources,
                host_group: group,
                top_sources: f
                    .top_sources
                    .iter()
                    .map(|(a, n)| TopSource {
                        ip: ip(a),
                        packets: *n,
                    })
                    .collect(),
                evidence: i.evidence.iter().map(|e| packet(e, clock)).collect(),
                capture_file: flight_dir.map(|d| {
                    crate::output::capture::flight::incident_file(d, &i.id)
                        .display()
                        .to_string()
                }),
            },
        },
    };
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&doc).unwrap_or_default()
}
