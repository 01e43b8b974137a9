//! Detectors over what the payloads said, fed by the application step
//! (DNS transactions and TLS/QUIC handshakes) rather than by samples:
//! DNS tunnelling per registered domain, NXDOMAIN storms per client,
//! DNS amplification, deprecated TLS versions and configured watch lists.
//! Their findings go through the same incident machinery as the others.
//!
//! Everything keyed by packet data is bounded (domains and clients per
//! window, distinct names per key) and hashed with the process's key.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::{DetectorKind, Finding, NS, Subject, Unit};
use crate::{
    app::{
        dns_transactions::DnsTransaction, engine as app_engine, handshakes::Handshake, ja4,
        tls::version_words,
    },
    pipeline::{flow::FlowKey, keyed::KeyedState},
};

/// `[detect.dns]`: the DNS detectors.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsDetectConfig {
    pub enabled: bool,
    /// Distinct subdomains of one registered domain in a minute that make
    /// a tunnel...
    pub tunnel_subdomains: u64,
    /// ...when their longest labels are this long on average...
    pub tunnel_min_label: f64,
    /// ...or their characters carry this many bits of entropy on average.
    pub tunnel_min_entropy: f64,
    /// Distinct names one client gets NXDOMAIN for in a minute.
    pub nxdomain_names: u64,
    /// Large DNS responses (at least `amplification_min_size` bytes) per
    /// second to one destination that asked none of them.
    pub amplification_rps: f64,
    pub amplification_min_size: u32,
}

impl Default for DnsDetectConfig {
    fn default() -> Self {
        DnsDetectConfig {
            enabled: true,
            // iodine and dnscat2 ask hundreds a minute; a busy CDN domain
            // has many subdomains too, but short and readable ones.
            tunnel_subdomains: 100,
            tunnel_min_label: 24.0,
            tunnel_min_entropy: 3.8,
            nxdomain_names: 50,
            amplification_rps: 50.0,
            amplification_min_size: 1024,
        }
    }
}

/// `[detect.tls]`: findings about handshakes.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsDetectConfig {
    /// Report servers negotiating SSL 3.0, TLS 1.0 or 1.1 (low severity).
    pub deprecated_versions: bool,
}

impl Default for TlsDetectConfig {
    fn default() -> Self {
        TlsDetectConfig {
            deprecated_versions: true,
        }
    }
}

/// `[detect.watch]`: names and fingerprints that raise an alert whenever
/// they are seen.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Server names (TLS/QUIC) and DNS questions: an entry matches the
    /// name itself and every name under it (`bad.example` matches
    /// `c2.bad.example`).
    pub server_names: Vec<String>,
    /// JA4 client fingerprints.
    pub ja4: Vec<String>,
}

impl WatchConfig {
    /// The watch-list entry `name` falls under, if any.
    pub fn name_entry(&self, name: &str) -> Option<&str> {
        let name = name.trim_end_matches('.');
        self.server_names
            .iter()
            .map(|e| e.trim_start_matches('.').trim_end_matches('.'))
            .find(|e| {
                !e.is_empty()
                    && name.len() >= e.len()
                    && name[name.len() - e.len()..].eq_ignore_ascii_case(e)
                    && (name.len() == e.len() || name.as_bytes()[name.len() - e.len() - 1] == b'.')
            })
    }
}

/// Registered domains (or clients) tracked per window; past it new ones
/// wait for the next window (counted).
pub const MAX_KEYS: usize = 8192;
const MINUTE_NS: u64 = 60 * NS;

/// A fixed one-minute window of names per key, bounded.
struct Names {
    distinct: HashSet<u64, KeyedState>,
    /// Sums over the distinct names, for the means.
    label_len: f64,
    entropy: f64,
    bytes: u64,
    /// The client that asked most (by count of distinct names).
    clients: HashMap<[u8; 16], u64, KeyedState>,
    reported: bool,
}

impl Names {
    fn new() -> Names {
        Names {
            distinct: HashSet::default(),
            label_len: 0.0,
            entropy: 0.0,
            bytes: 0,
            clients: HashMap::default(),
            reported: false,
        }
    }

    fn top_client(&self) -> Option<[u8; 16]> {
        self.clients
            .iter()
            .max_by_key(|(a, n)| (**n, **a))
            .map(|(a, _)| *a)
    }
}

/// Large answers one destination got this second without asking.
#[derive(Default)]
struct Unasked {
    responses: u64,
    bytes: u64,
    by_type: HashMap<u16, u64>,
}

/// Shannon entropy of a string's bytes, in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

pub struct PayloadDetectors {
    dns: DnsDetectConfig,
    tls: TlsDetectConfig,
    watch: WatchConfig,
    minute: u64,
    /// The latest time seen: transactions end out of order (an unanswered
    /// query is reported 5 s late), windows only move forward.
    latest_ns: u64,
    /// Tunnel: by registered domain, this minute.
    domains: HashMap<String, Names, KeyedState>,
    /// NXDOMAIN: by client, this minute.
    nx: HashMap<[u8; 16], Names, KeyedState>,
    /// Amplification: large unasked responses by destination, this
    /// second: (count, bytes, by question type).
    second: u64,
    unasked: HashMap<[u8; 16], Unasked, KeyedState>,
    /// Keys not tracked because a table was full.
    pub untracked: u64,
}

impl PayloadDetectors {
    pub fn new(dns: DnsDetectConfig, tls: TlsDetectConfig, watch: WatchConfig) -> Self {
        PayloadDetectors {
            dns,
            tls,
            watch,
            minute: 0,
            latest_ns: 0,
            domains: HashMap::default(),
            nx: HashMap::default(),
            second: 0,
            unasked: HashMap::default(),
            untracked: 0,
        }
    }

    fn roll(&mut self, ts_ns: u64) {
        self.latest_ns = self.latest_ns.max(ts_ns);
        let ts_ns = self.latest_ns;
        let minute = ts_ns / MINUTE_NS;
        if minute != self.minute {
            self.minute = minute;
            self.domains.clear();
            self.nx.clear();
        }
        let second = ts_ns / NS;
        if second != self.second {
            self.second = second;
            self.unasked.clear();
        }
    }

    /// A DNS transaction ended; `ts_ns` is its time (record time).
    pub fn dns(&mut self, t: &DnsTransaction, ts_ns: u64, out: &mut Vec<Finding>) {
        if !self.dns.enabled {
            return;
        }
        self.roll(ts_ns);
        let Some(question) = t.asked().and_then(|m| m.question.as_ref()) else {
            return;
        };
        let name = question.name.as_str();
        self.watch_name(t.client, name, "DNS question", ts_ns, out);
        let client = t.client.src;
        if let Some(parts) = crate::app::dns::name_parts(name)
            && !parts.subdomain.is_empty()
        {
            self.tunnel(parts.registered, parts.subdomain, client, t, ts_ns, out);
        }
        if let Some(r) = &t.response {
            if r.rcode == 3 {
                self.nxdomain(name, client, ts_ns, out);
            }
            if t.query.is_none() && r.len >= self.dns.amplification_min_size as usize {
                self.amplification(t, question.qtype, r.len as u64, ts_ns, out);
            }
        }
    }

    fn tunnel(
        &mut self,
        registered: &str,
        sub: &str,
        client: [u8; 16],
        t: &DnsTransaction,
        ts_ns: u64,
        out: &mut Vec<Finding>,
    ) {
        let cfg = self.dns;
        if !self.domains.contains_key(registered) && self.domains.len() >= MAX_KEYS {
            self.untracked += 1;
            return;
        }
        let n = self
            .domains
            .entry(registered.to_string())
            .or_insert_with(Names::new);
        n.bytes += t.query.as_ref().map_or(0, |q| q.len as u64);
        if n.reported || !n.distinct.insert(name_hash(sub)) {
            return;
        }
        let longest = sub.split('.').map(str::len).max().unwrap_or(0);
        n.label_len += longest as f64;
        n.entropy += entropy(sub);
        *n.clients.entry(client).or_default() += 1;
        let count = n.distinct.len() as u64;
        if count < cfg.tunnel_subdomains {
            return;
        }
        let (label, bits) = (n.label_len / count as f64, n.entropy / count as f64);
        if label < cfg.tunnel_min_label && bits < cfg.tunnel_min_entropy {
            // Many names, but short and readable: a CDN, not a tunnel.
            // Judged once a window.
            n.reported = true;
            return;
        }
        n.reported = true;
        let detail = format!(
            "domain {registered}: {count} distinct subdomains within a minute, longest labels {label:.0} characters on average, {bits:.1} bits of entropy a character, {} bytes of queries",
            n.bytes
        );
        out.push(finding(
            DetectorKind::DnsTunnel,
            Subject::Source(n.top_client().unwrap_or(client)),
            ts_ns,
            count as f64,
            Unit::DistinctNames,
            cfg.tunnel_subdomains as f64,
            MINUTE_NS,
            "many long or random subdomains of one domain",
            detail,
        ));
    }

    fn nxdomain(&mut self, name: &str, client: [u8; 16], ts_ns: u64, out: &mut Vec<Finding>) {
        let limit = self.dns.nxdomain_names;
        if !self.nx.contains_key(&client) && self.nx.len() >= MAX_KEYS {
            self.untracked += 1;
            return;
        }
        let n = self.nx.entry(client).or_insert_with(Names::new);
        if n.reported || !n.distinct.insert(name_hash(name)) {
            return;
        }
        let count = n.distinct.len() as u64;
        if count < limit {
            return;
        }
        n.reported = true;
        out.push(finding(
            DetectorKind::Nxdomain,
            Subject::Source(client),
            ts_ns,
            count as f64,
            Unit::DistinctNames,
            limit as f64,
            MINUTE_NS,
            "many names answered NXDOMAIN (domain-generation algorithm)",
            format!("{count} distinct names answered NXDOMAIN within a minute, the last {name}"),
        ));
    }

    fn amplification(
        &mut self,
        t: &DnsTransaction,
        qtype: u16,
        len: u64,
        ts_ns: u64,
        out: &mut Vec<Finding>,
    ) {
        let victim = t.client.src;
        if !self.unasked.contains_key(&victim) && self.unasked.len() >= MAX_KEYS {
            self.untracked += 1;
            return;
        }
        let limit = self.dns.amplification_rps;
        let e = self.unasked.entry(victim).or_default();
        e.responses += 1;
        e.bytes += len;
        *e.by_type.entry(qtype).or_default() += 1;
        // Reported as the count crosses the limit (once a second).
        if e.responses as f64 != limit.ceil().max(1.0) {
            return;
        }
        let (top_type, top_n) = e
            .by_type
            .iter()
            .max_by_key(|(t, n)| (**n, **t))
            .map_or((0, 0), |(t, n)| (*t, *n));
        let detail = format!(
            "{} DNS responses of {} bytes on average within a second, asked from elsewhere; {}% for type {}",
            e.responses,
            e.bytes / e.responses,
            top_n * 100 / e.responses,
            crate::app::dns::type_text(top_type)
        );
        out.push(finding(
            DetectorKind::DnsAmplification,
            Subject::Reflected {
                dst: victim,
                source_port: t.client.dst_port,
            },
            ts_ns,
            e.responses as f64,
            Unit::ResponsesPerSecond,
            limit,
            NS,
            "large DNS answers to questions not asked from here",
            detail,
        ));
    }

    /// A handshake ended; `ts_ns` is its time (record time).
    pub fn handshake(&mut self, h: &Handshake, ts_ns: u64, out: &mut Vec<Finding>) {
        let server = Subject::Destination(h.client.dst);
        let client = h.client_hello.as_ref();
        let name = client.and_then(|c| c.server_name.as_deref());
        let at = format!("{}:{}", h.client.dst_ip(), h.client.dst_port);
        let server_text = name.map_or_else(|| at.clone(), |n| format!("{n} ({at})"));
        if self.tls.deprecated_versions {
            let version = app_engine::version(h);
            if matches!(version, 0x0300..=0x0302) {
                let words = version_words(version).map_or_else(
                    || format!("0x{version:04x}"),
                    |(p, n)| format!("{} {n}", p.to_uppercase()),
                );
                let how = if h.server_hello.is_some() {
                    "negotiated"
                } else {
                    "was offered no more than"
                };
                out.push(finding(
                    DetectorKind::DeprecatedTls,
                    server,
                    ts_ns,
                    1.0,
                    Unit::Occurrences,
                    1.0,
                    0,
                    "a deprecated TLS version",
                    format!("server {server_text} {how} {words}"),
                ));
            }
        }
        if let Some(n) = name {
            self.watch_name(h.client, n, "server name", ts_ns, out);
        }
        if let Some(c) = client
            && !self.watch.ja4.is_empty()
        {
            let fp = ja4::ja4(c, h.transport);
            if self.watch.ja4.iter().any(|w| w == &fp) {
                out.push(watch_finding(
                    &h.client,
                    ts_ns,
                    format!("client JA4 {fp} to {server_text} is on the watch list"),
                ));
            }
        }
    }

    fn watch_name(
        &self,
        flow: FlowKey,
        name: &str,
        what: &str,
        ts_ns: u64,
        out: &mut Vec<Finding>,
    ) {
        if let Some(entry) = self.watch.name_entry(name) {
            out.push(watch_finding(
                &flow,
                ts_ns,
                format!("{what} {name} matches watch-list entry {entry}"),
            ));
        }
    }
}

/// A name's hash with the process's key, for the distinct sets.
fn name_hash(s: &str) -> u64 {
    use std::hash::BuildHasher as _;
    KeyedState.hash_one(s)
}

fn watch_finding(flow: &FlowKey, ts_ns: u64, detail: String) -> Finding {
    finding(
        DetectorKind::WatchList,
        Subject::Pair {
            src: flow.src,
            dst: flow.dst,
        },
        ts_ns,
        1.0,
        Unit::Occurrences,
        1.0,
        0,
        "on the watch list",
        detail,
    )
}

#[allow(clippy::too_many_arguments)]
fn finding(
    detector: DetectorKind,
    subject: Subject,
    ts_ns: u64,
    value: f64,
    unit: Unit,
    limit: f64,
    window_ns: u64,
    reason: &'static str,
    detail: String,
) -> Finding {
    Finding {
        detector,
        subject,
        ts_ns,
        value,
        unit,
        limit,
        window_ns,
        sample_rate: 1,
        distinct_sources: None,
        top_sources: Vec::new(),
        evidence: Vec::new(),
        reason,
        deviations: Vec::new(),
        detail: Some(detail),
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;
    use crate::app::{
        dns::{DnsMessage, DnsQuestion},
        ja4::Transport,
        tls::{ClientHello, ServerHello},
    };

    fn flow(client: u8, protocol: u8, dst_port: u16) -> FlowKey {
        FlowKey {
            src: map_ipv4([198, 18, 0, client]),
            dst: map_ipv4([198, 18, 1, 1]),
            src_port: 40000,
            dst_port,
            vlan_id: 0,
            ip_version: 4,
            protocol,
        }
    }

    fn message(name: &str, response: bool, rcode: u16, len: usize) -> DnsMessage {
        DnsMessage {
            id: 1,
            response,
            opcode: 0,
            flags: 0,
            rcode,
            counts: [1, 0, 0, 0],
            question: Some(DnsQuestion {
                name: name.into(),
                qtype: 16,
                qclass: 1,
            }),
            answers: Vec::new(),
            resolved_ips: Vec::new(),
            edns: None,
            len,
            partial: false,
        }
    }

    fn transaction(client: u8, name: &str, rcode: u16, asked: bool, len: usize) -> DnsTransaction {
        DnsTransaction {
            unix_ns: 0,
            ifindex: 1,
            client: flow(client, 17, 53),
            query: asked.then(|| message(name, false, 0, 40)),
            response: Some(message(name, true, rcode, len)),
            duration_ns: None,
        }
    }

    fn detectors(watch: WatchConfig) -> PayloadDetectors {
        PayloadDetectors::new(
            DnsDetectConfig::default(),
            TlsDetectConfig::default(),
            watch,
        )
    }

    /// A pseudo-random label of `len` lowercase letters and digits.
    fn random_label(seed: u64, len: usize) -> String {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize] as char
            })
            .collect()
    }

    #[test]
    fn a_tunnel_is_found_at_its_hundredth_random_subdomain_and_a_cdn_is_not() {
        let mut d = detectors(WatchConfig::default());
        let mut out = Vec::new();
        for i in 0..99u64 {
            let name = format!("{}.t.example.com", random_label(i, 40));
            d.dns(&transaction(7, &name, 0, true, 120), NS + i, &mut out);
        }
        assert!(out.is_empty());
        d.dns(
            &transaction(
                7,
                &format!("{}.t.example.com", random_label(99, 40)),
                0,
                true,
                120,
            ),
            NS + 99,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let f = &out[0];
        assert_eq!(f.detector, DetectorKind::DnsTunnel);
        assert_eq!(f.subject, Subject::Source(map_ipv4([198, 18, 0, 7])));
        assert_eq!(f.value, 100.0);
        let detail = f.detail.clone().unwrap_or_default();
        assert!(
            detail.starts_with("domain example.com: 100 distinct subdomains"),
            "{detail}"
        );
        // Once a window: the 101st says nothing more.
        d.dns(
            &transaction(7, "again.t.example.com", 0, true, 120),
            NS + 100,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // 150 short readable names of one CDN domain: no tunnel.
        let mut d = detectors(WatchConfig::default());
        let mut cdn = Vec::new();
        for i in 0..150u64 {
            let name = format!("img{i}.static.cdn.example.net");
            d.dns(&transaction(8, &name, 0, true, 90), NS + i, &mut cdn);
        }
        assert!(cdn.is_empty(), "{cdn:?}");
    }

    #[test]
    fn an_nxdomain_storm_from_one_client_is_dga_like() {
        let mut d = detectors(WatchConfig::default());
        let mut out = Vec::new();
        for i in 0..49u64 {
            let name = format!("{}.com", random_label(i, 12));
            d.dns(&transaction(9, &name, 3, true, 100), NS + i, &mut out);
            // Another client's few NXDOMAINs and answered names count
            // for nothing.
            d.dns(&transaction(10, &name, 0, true, 100), NS + i, &mut out);
        }
        assert!(out.is_empty());
        d.dns(
            &transaction(9, "last.example", 3, true, 100),
            NS + 60,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].detector, DetectorKind::Nxdomain);
        assert_eq!(out[0].subject, Subject::Source(map_ipv4([198, 18, 0, 9])));
        // The next minute starts over.
        d.dns(
            &transaction(9, "x.example", 3, true, 100),
            61 * NS,
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn large_answers_nobody_asked_for_flood_their_destination() {
        let mut d = detectors(WatchConfig::default());
        let mut out = Vec::new();
        for i in 0..60u64 {
            // Asked: not amplification. Small: neither.
            d.dns(
                &transaction(11, "big.example", 0, true, 3000),
                NS + i,
                &mut out,
            );
            d.dns(
                &transaction(11, "big.example", 0, false, 300),
                NS + i,
                &mut out,
            );
        }
        assert!(out.is_empty());
        for i in 0..50u64 {
            d.dns(
                &transaction(11, "big.example", 0, false, 3000),
                NS + i,
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!(f.detector, DetectorKind::DnsAmplification);
        assert_eq!(
            f.subject,
            Subject::Reflected {
                dst: map_ipv4([198, 18, 0, 11]),
                source_port: 53
            }
        );
        assert!(
            f.detail
                .as_deref()
                .unwrap_or_default()
                .contains("100% for type TXT"),
            "{f:?}"
        );
    }

    fn handshake(name: &str, version: u16) -> Handshake {
        Handshake {
            unix_ns: 0,
            ifindex: 1,
            client: flow(12, 6, 443),
            transport: Transport::Tcp,
            client_hello: Some(ClientHello {
                server_name: Some(name.into()),
                cipher_suites: vec![0x002f],
                ..ClientHello::default()
            }),
            server_hello: Some(ServerHello {
                version,
                cipher_suite: 0x002f,
                alpn: None,
            }),
        }
    }

    #[test]
    fn deprecated_versions_are_low_findings_naming_the_server() {
        let mut d = detectors(WatchConfig::default());
        let mut out = Vec::new();
        d.handshake(&handshake("legacy.example", 0x0303), NS, &mut out);
        assert!(out.is_empty(), "TLS 1.2 is fine");
        d.handshake(&handshake("legacy.example", 0x0301), NS, &mut out);
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!(f.detector, DetectorKind::DeprecatedTls);
        assert_eq!(f.subject, Subject::Destination(map_ipv4([198, 18, 1, 1])));
        assert_eq!(f.severity(), crate::pipeline::detect::Severity::Low);
        assert_eq!(
            f.detail.as_deref(),
            Some("server legacy.example (198.18.1.1:443) negotiated TLS 1.0")
        );
    }

    #[test]
    fn watch_lists_match_names_under_an_entry_and_exact_ja4s() {
        let h = handshake("c2.bad.example", 0x0303);
        let fp = ja4::ja4(
            h.client_hello.as_ref().unwrap_or_else(|| panic!("hello")),
            Transport::Tcp,
        );
        let watch = WatchConfig {
            server_names: vec![".bad.example".into()],
            ja4: vec![fp.clone()],
        };
        assert_eq!(watch.name_entry("C2.Bad.Example."), Some("bad.example"));
        assert_eq!(watch.name_entry("bad.example"), Some("bad.example"));
        assert_eq!(watch.name_entry("notbad.example"), None);
        let mut d = detectors(watch);
        let mut out = Vec::new();
        d.handshake(&h, NS, &mut out);
        let details: Vec<String> = out.iter().filter_map(|f| f.detail.clone()).collect();
        assert_eq!(out.len(), 2, "{details:?}");
        assert!(out.iter().all(|f| f.detector == DetectorKind::WatchList
            && f.severity() == crate::pipeline::detect::Severity::High));
        assert!(
            details[0].contains("server name c2.bad.example matches watch-list entry bad.example")
        );
        assert!(details[1].contains(&fp));
        // A DNS question for a watched name alerts too.
        d.dns(
            &transaction(13, "www.bad.example", 0, true, 80),
            NS,
            &mut out,
        );
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn entropy_is_bits_per_character() {
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
    }
}
