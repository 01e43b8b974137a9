//! Detection accuracy: labelled scenarios replayed through the pipeline
//! core (the flow table and every detector, as `nta analyze` runs them)
//! at accelerated time. A synthetic site: 20 servers in 198.18.1.0/24
//! (a host group), each with its own clients, sampled as the kernel
//! would (data 1-in-64 with the rate carried, SYNs 1-in-1). The benign
//! run is a week compressed into 35 minutes of record time: a daily
//! rhythm (a "day" is 5 minutes, traffic swinging 4x between night and
//! day), short bursts and a flash crowd. Each anomaly is the same benign
//! traffic with one attack injected at minute 25 for 60 s; it counts as
//! found when an incident of the expected kind starts inside its window.
//! The site's clients also resolve names (an ordinary mix: a few sites,
//! a CDN with hundreds of short subdomains, a telemetry service with
//! random ones, typos answered NXDOMAIN), read by the DNS detectors as
//! the application step hands them DNS transactions.

use std::time::Instant;

use agent_common::{
    class::{ProtocolClass, tcp_flags},
    sample::{RECORD_VERSION, SampleRecord, map_ipv4, record_flags},
};
use nta::{
    app::{
        dns::{DnsMessage, DnsQuestion},
        dns_transactions::DnsTransaction,
    },
    pipeline::{
        Pipeline, Produced, TICK_NS,
        detect::{
            AlertEvent, DetectConfig, DetectorKind, NS, Subject, Transition,
            payload::PayloadDetectors,
        },
        flow::{FlowConfig, FlowKey},
    },
};

use crate::report::XorShift;

const SERVERS: u8 = 20;
const DAY_S: f64 = 300.0;
const WARMUP_S: u64 = 60;
const RUN_S: u64 = WARMUP_S + 35 * 60;
const ATTACK_AT_S: u64 = WARMUP_S + 25 * 60;
const ATTACK_S: u64 = 60;
/// Data packets per sample, as the kernel's default data rate.
const DATA_RATE: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anomaly {
    None,
    DistributedFlood,
    CarpetBombing,
    MixShift,
    NightSurge,
    SlowScan,
    Collapse,
    DnsTunnel,
    DgaBurst,
}

impl Anomaly {
    const ALL: [Anomaly; 8] = [
        Anomaly::DistributedFlood,
        Anomaly::CarpetBombing,
        Anomaly::MixShift,
        Anomaly::NightSurge,
        Anomaly::SlowScan,
        Anomaly::Collapse,
        Anomaly::DnsTunnel,
        Anomaly::DgaBurst,
    ];

    fn describe(self) -> &'static str {
        match self {
            Anomaly::None => "benign week (35 min of record time)",
            Anomaly::DistributedFlood => {
                "low-rate distributed flood: every server of the group +3000 pps UDP from 2000 sources (each far below udp_flood)"
            }
            Anomaly::CarpetBombing => {
                "carpet bombing: all 256 addresses of the /24, 400 pps UDP each"
            }
            Anomaly::MixShift => {
                "protocol-mix shift: server 3's traffic turns from TCP to UDP at the same volume"
            }
            Anomaly::NightSurge => {
                "outbound surge at night: server 5 sends 20x the site's night traffic to one outside host"
            }
            Anomaly::SlowScan => "slow scan: one source, 4 ports a second of server 7",
            Anomaly::Collapse => "traffic collapse: server 9 gets nothing",
            Anomaly::DnsTunnel => {
                "DNS tunnel: one client asks 5 names a second of 48 random characters under one domain"
            }
            Anomaly::DgaBurst => {
                "DGA burst: one client asks 2 random names a second, answered NXDOMAIN"
            }
        }
    }

    /// Whether an incident found it.
    fn found_by(self, e: &AlertEvent) -> bool {
        let i = &e.incident;
        let server = |n: u8| Subject::Destination(map_ipv4([198, 18, 1, n]));
        match self {
            Anomaly::None => false,
            Anomaly::DistributedFlood | Anomaly::CarpetBombing => {
                matches!(i.subject, Subject::Group(_) | Subject::Interface(_))
                    || i.detector == DetectorKind::UdpFlood
            }
            Anomaly::MixShift => i.subject == server(3),
            Anomaly::NightSurge => {
                matches!(i.subject, Subject::Interface(_))
                    || i.subject == Subject::Destination(map_ipv4([198, 19, 200, 1]))
            }
            Anomaly::SlowScan => i.detector == DetectorKind::PortScan,
            Anomaly::Collapse => i.subject == server(9),
            Anomaly::DnsTunnel => {
                i.detector == DetectorKind::DnsTunnel
                    && i.subject == Subject::Source(map_ipv4(DNS_CLIENT_BAD))
            }
            Anomaly::DgaBurst => {
                i.detector == DetectorKind::Nxdomain
                    && i.subject == Subject::Source(map_ipv4(DNS_CLIENT_BAD))
            }
        }
    }
}

/// The site's rhythm at second `t`: 0.4 at night to 1.6 by day.
fn rhythm(t: u64) -> f64 {
    1.0 + 0.6 * (2.0 * std::f64::consts::PI * t as f64 / DAY_S).sin()
}

fn base(ts: u64, src: [u8; 4], dst: [u8; 4]) -> SampleRecord {
    SampleRecord {
        timestamp_ns: ts,
        version: RECORD_VERSION,
        ip_version: 4,
        ifindex: 1,
        sample_rate: 1,
        frame_len: 60,
        ttl: 64,
        src_addr: map_ipv4(src),
        dst_addr: map_ipv4(dst),
        ..Default::default()
    }
}

fn tcp(
    ts: u64,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    flags: u8,
    rate: u32,
    len: u32,
) -> SampleRecord {
    SampleRecord {
        class: ProtocolClass::Tcp as u8,
        l4_proto: 6,
        tcp_flags: flags,
        src_port: sport,
        dst_port: 443,
        sample_rate: rate,
        frame_len: len,
        ..base(ts, src, dst)
    }
}

fn udp(
    ts: u64,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    rate: u32,
    len: u32,
) -> SampleRecord {
    SampleRecord {
        class: ProtocolClass::Udp as u8,
        l4_proto: 17,
        src_port: sport,
        dst_port: dport,
        sample_rate: rate,
        frame_len: len,
        ..base(ts, src, dst)
    }
}

/// Pushes `n` evenly spread records made by `make(ts, k)` into `out`.
fn spread(
    out: &mut Vec<SampleRecord>,
    second: u64,
    n: u64,
    mut make: impl FnMut(u64, u64) -> SampleRecord,
) {
    for k in 0..n {
        out.push(make(second * NS + k * (NS / n.max(1)), k));
    }
}

/// One second of the site's traffic (and the anomaly, if it is on).
fn second_of_traffic(t: u64, anomaly: Anomaly, rng: &mut XorShift, out: &mut Vec<SampleRecord>) {
    let r = rhythm(t);
    let attack = anomaly != Anomaly::None && (ATTACK_AT_S..ATTACK_AT_S + ATTACK_S).contains(&t);
    for s in 1..=SERVERS {
        if attack && anomaly == Anomaly::Collapse && s == 9 {
            continue;
        }
        let dst = [198, 18, 1, s];
        // Servers differ in size: 500 to 10,000 pps by day.
        let mut pps = 500.0 * f64::from(s) * r;
        // Benign bursts: server 2 triples for 10 s every "day"; server 4
        // gets a flash crowd (5x, new clients) on day 3.
        if s == 2 && t % 300 < 10 {
            pps *= 3.0;
        }
        let flash = s == 4 && (WARMUP_S + 900..WARMUP_S + 960).contains(&t);
        if flash {
            pps *= 5.0;
        }
        let noise = 0.9 + 0.2 * (rng.next() % 1000) as f64 / 1000.0;
        let samples = (pps * noise / f64::from(DATA_RATE)).round() as u64;
        let udp_mix = attack && anomaly == Anomaly::MixShift && s == 3;
        spread(out, t, samples, |ts, k| {
            let client = [198, 19, s, (k % 50) as u8 + 1];
            let sport = 40_000 + (k % 50) as u16;
            if udp_mix {
                udp(ts, client, dst, sport, 443, DATA_RATE, 900)
            } else {
                tcp(ts, client, dst, sport, tcp_flags::ACK, DATA_RATE, 900)
            }
        });
        // New connections: a SYN (and the client's ACK) per connection,
        // 2 % of the packets.
        let conns = (pps * noise * 0.02).round() as u64;
        let clients = if flash { 250 } else { 50 };
        spread(out, t, conns, |ts, k| {
            let client = [198, 19, s, (rng.next() % clients) as u8 + 1];
            let sport = 1024 + (rng.next() % 60_000) as u16;
            if udp_mix {
                // The kernel samples a new UDP flow's first packet.
                let mut r = udp(ts, client, dst, sport, 443, 1, 120);
                r.flags |= record_flags::FIRST_PACKET;
                r
            } else {
                let _ = k;
                tcp(ts, client, dst, sport, tcp_flags::SYN, 1, 60)
            }
        });
    }
    if !attack {
        return;
    }
    match anomaly {
        Anomaly::DistributedFlood => {
            for s in 1..=SERVERS {
                spread(out, t, 3000 / u64::from(DATA_RATE), |ts, _| {
                    let src = [
                        198,
                        19,
                        100 + (rng.next() % 8) as u8,
                        (rng.next() % 250) as u8,
                    ];
                    udp(
                        ts,
                        src,
                        [198, 18, 1, s],
                        1024 + (rng.next() % 60_000) as u16,
                        80,
                        DATA_RATE,
                        200,
                    )
                });
            }
        }
        Anomaly::CarpetBombing => {
            for host in 0..=255u8 {
                spread(out, t, 400 / u64::from(DATA_RATE) + 1, |ts, _| {
                    let src = [198, 19, 150, (rng.next() % 250) as u8];
                    udp(
                        ts,
                        src,
                        [198, 18, 1, host],
                        53,
                        1024 + (rng.next() % 60_000) as u16,
                        DATA_RATE,
                        600,
                    )
                });
            }
        }
        Anomaly::NightSurge => {
            // 20x the site's night-time total (about 42,000 pps at r=0.4).
            let pps = 20.0 * 0.4 * 500.0 * 210.0;
            spread(out, t, (pps / f64::from(DATA_RATE)) as u64, |ts, _| {
                tcp(
                    ts,
                    [198, 18, 1, 5],
                    [198, 19, 200, 1],
                    50_000,
                    tcp_flags::ACK,
                    DATA_RATE,
                    1400,
                )
            });
        }
        Anomaly::SlowScan => {
            let first = ((t - ATTACK_AT_S) * 4) as u16;
            spread(out, t, 4, |ts, k| {
                let mut r = tcp(
                    ts,
                    [198, 19, 66, 6],
                    [198, 18, 1, 7],
                    33_333,
                    tcp_flags::SYN,
                    1,
                    60,
                );
                r.dst_port = 1 + first + k as u16;
                r
            });
        }
        Anomaly::None
        | Anomaly::MixShift
        | Anomaly::Collapse
        | Anomaly::DnsTunnel
        | Anomaly::DgaBurst => {}
    }
}

/// The site's resolver and clients, and the one that goes bad.
const RESOLVER: [u8; 4] = [198, 18, 1, 53];
const DNS_CLIENTS: u8 = 40;
const DNS_CLIENT_BAD: [u8; 4] = [198, 18, 2, 77];

/// A transaction of `client` asking `name`, answered `rcode`.
fn dns_transaction(
    ts: u64,
    client: [u8; 4],
    port: u16,
    name: String,
    rcode: u16,
) -> DnsTransaction {
    let message = |response: bool| DnsMessage {
        id: port,
        response,
        opcode: 0,
        flags: 0x0100,
        rcode,
        counts: [1, u16::from(response && rcode == 0), 0, 0],
        question: Some(DnsQuestion {
            name: name.clone(),
            qtype: 1,
            qclass: 1,
        }),
        answers: Vec::new(),
        resolved_ips: Vec::new(),
        edns: None,
        len: 30 + name.len(),
        partial: false,
    };
    DnsTransaction {
        unix_ns: ts,
        ifindex: 1,
        client: FlowKey {
            src: map_ipv4(client),
            dst: map_ipv4(RESOLVER),
            src_port: port,
            dst_port: 53,
            vlan_id: 0,
            ip_version: 4,
            protocol: 17,
        },
        query: Some(message(false)),
        response: Some(message(true)),
        duration_ns: Some(1_000_000),
    }
}

fn random_label(rng: &mut XorShift, len: usize) -> String {
    (0..len)
        .map(|_| b"abcdefghijklmnopqrstuvwxyz234567"[(rng.next() % 32) as usize] as char)
        .collect()
}

/// One second of the site's DNS (and the DNS anomaly, if it is on).
fn second_of_dns(t: u64, anomaly: Anomaly, rng: &mut XorShift, out: &mut Vec<DnsTransaction>) {
    let attack = (ATTACK_AT_S..ATTACK_AT_S + ATTACK_S).contains(&t);
    // About 2 questions a second per client by day, fewer at night.
    let n = (f64::from(DNS_CLIENTS) * 2.0 * rhythm(t)) as u64;
    for k in 0..n {
        let ts = t * NS + k * (NS / n.max(1));
        let client = [198, 18, 2, (rng.next() % u64::from(DNS_CLIENTS)) as u8 + 1];
        let port = (rng.next() % 50_000) as u16 + 10_000;
        let pick = rng.next() % 100;
        let (name, rcode) = match pick {
            0..=39 => (format!("www.site{}.example", rng.next() % 30), 0),
            // A CDN: hundreds of distinct short subdomains a minute.
            40..=79 => (format!("img{}.cdn.example.net", rng.next() % 2000), 0),
            // Telemetry with random 8-character subdomains, a few a minute.
            80..=81 => (format!("{}.t.metrics.example", random_label(rng, 8)), 0),
            // A typo now and then.
            82 => (format!("{}.example", random_label(rng, 6)), 3),
            _ => (format!("api.service{}.example.org", rng.next() % 50), 0),
        };
        out.push(dns_transaction(ts, client, port, name, rcode));
    }
    if !attack {
        return;
    }
    let bad = |k: u64, n: u64| t * NS + k * (NS / n) + 1;
    match anomaly {
        Anomaly::DnsTunnel => {
            for k in 0..5 {
                let name = format!("{}.t.exfil.example", random_label(rng, 48));
                out.push(dns_transaction(
                    bad(k, 5),
                    DNS_CLIENT_BAD,
                    40_000 + k as u16,
                    name,
                    0,
                ));
            }
        }
        Anomaly::DgaBurst => {
            for k in 0..2 {
                let name = format!("{}.com", random_label(rng, 12));
                out.push(dns_transaction(
                    bad(k, 2),
                    DNS_CLIENT_BAD,
                    41_000 + k as u16,
                    name,
                    3,
                ));
            }
        }
        _ => {}
    }
}

struct Outcome {
    /// Incident starts, with their record time.
    starts: Vec<AlertEvent>,
    records: u64,
    seconds: f64,
}

/// Every default, and the servers as a host group.
const CONFIG: &str = "[[host_groups]]\nname = \"servers\"\ncidrs = [\"198.18.1.0/24\"]\n";

fn replay(anomaly: Anomaly, config: &DetectConfig) -> Outcome {
    let config = config.clone();
    let mut dns = PayloadDetectors::new(config.dns, config.tls, config.watch.clone());
    let mut pipeline = Pipeline::new(FlowConfig::default(), Some(config));
    let mut transactions = Vec::new();
    let mut findings = Vec::new();
    let mut out = Produced::default();
    let mut rng = XorShift(0x5eed_0fba_5e11_0001);
    let mut starts = Vec::new();
    let mut records = Vec::new();
    let mut total = 0u64;
    let started = Instant::now();
    for t in 1..=RUN_S {
        records.clear();
        second_of_traffic(t, anomaly, &mut rng, &mut records);
        records.sort_by_key(|r| r.timestamp_ns);
        total += records.len() as u64;
        // In tenths of a second, ticking between them, as live.
        for chunk in records.chunks((records.len() / 10).max(1)) {
            pipeline.push(chunk, &mut out);
            if let Some(last) = chunk.last() {
                pipeline.tick_if_due(last.timestamp_ns, &mut out);
            }
        }
        // The application step's DNS, read as it ends.
        transactions.clear();
        second_of_dns(t, anomaly, &mut rng, &mut transactions);
        for tr in &transactions {
            dns.dns(tr, tr.unix_ns, &mut findings);
        }
        total += transactions.len() as u64;
        if let Some(engine) = pipeline.engine_mut() {
            engine.accept(std::mem::take(&mut findings), &mut out.events);
        }
        pipeline.tick((t + 1) * NS - TICK_NS, &mut out);
        out.expired.clear();
        starts.extend(
            out.events
                .drain(..)
                .filter(|e| e.transition == Transition::Start),
        );
    }
    Outcome {
        starts,
        records: total,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn describe_start(e: &AlertEvent) -> String {
    let d = e.incident.latest.deviations.first();
    format!(
        "{} {:?} at {} s ({}{})",
        e.incident.detector.label(),
        e.incident.subject,
        e.ts_ns / NS,
        e.incident.latest.reason,
        d.map_or(String::new(), |d| format!(
            ": {} {:.0}, usual {:.0}, {:.1} sigma",
            d.feature.label(),
            d.value,
            d.usual,
            d.score
        ))
    )
}

/// Runs every scenario; returns the markdown section.
pub fn run() -> anyhow::Result<String> {
    let config: DetectConfig = toml::from_str(CONFIG)?;
    let mut md = String::from(
        "| scenario | found | by | latency from the attack's start, s | incidents outside the attack |\n|---|---|---|---|---|\n",
    );
    let benign = replay(Anomaly::None, &config);
    let after_warmup: Vec<&AlertEvent> = benign
        .starts
        .iter()
        .filter(|e| e.ts_ns >= WARMUP_S * NS)
        .collect();
    for e in &after_warmup {
        eprintln!("eval: benign incident: {}", describe_start(e));
    }
    md.push_str(&format!(
        "| {} | - | - | - | {} false alarms ({} records in {:.1} s) |\n",
        Anomaly::None.describe(),
        after_warmup.len(),
        benign.records,
        benign.seconds
    ));
    for anomaly in Anomaly::ALL {
        let o = replay(anomaly, &config);
        let window = ATTACK_AT_S * NS..(ATTACK_AT_S + ATTACK_S + 5) * NS;
        let hit = o
            .starts
            .iter()
            .find(|e| window.contains(&e.ts_ns) && anomaly.found_by(e));
        let outside = o
            .starts
            .iter()
            .filter(|e| e.ts_ns >= WARMUP_S * NS && !window.contains(&e.ts_ns))
            .count();
        eprintln!(
            "eval: {anomaly:?}: {}",
            hit.map_or("not found".to_string(), describe_start)
        );
        md.push_str(&format!(
            "| {} | {} | {} | {} | {outside} |\n",
            anomaly.describe(),
            if hit.is_some() { "yes" } else { "**no**" },
            hit.map_or("-".to_string(), |e| format!(
                "{} ({})",
                e.incident.detector.label(),
                e.incident.latest.reason
            )),
            hit.map_or("-".to_string(), |e| format!(
                "{:.1}",
                (e.ts_ns - ATTACK_AT_S * NS) as f64 / 1e9
            )),
        ));
    }
    md.push_str(&format!(
        "\nEach run: {RUN_S} s of record time ({WARMUP_S} s of warm-up, then a week of 5-minute days), 20 servers of 500-10,000 pps by day in one host group, every default threshold; the attack starts at {ATTACK_AT_S} s and lasts {ATTACK_S} s. Incidents in the warm-up are not counted. The live floods and scans with real tools are in the latency table above.\n"
    ));
    Ok(md)
}
