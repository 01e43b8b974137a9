//! Alert delivery without the kernel: a synthetic SYN flood through the
//! engine, its incident written to a JSON lines file and POSTed to a
//! webhook served by the test; a dead webhook is retried, counted, and
//! never holds the file back.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::mpsc,
    thread,
    time::Duration,
};

use agent_common::{
    class::{ProtocolClass, tcp_flags},
    sample::{RECORD_VERSION, SampleRecord, map_ipv4},
};
use nta::{
    output::{
        alert::{AlertMetrics, AlertSink, Alerts, FileSink, LogSink, WebhookConfig, WebhookSink},
        export::{RotationConfig, WallClock},
    },
    pipeline::detect::{DetectConfig, Engine, FlowNote, NS},
};
use prometheus::Registry;
use serde_json::Value;

mod common;

use common::TempDir;

fn syn(ts: u64, i: u64) -> SampleRecord {
    SampleRecord {
        timestamp_ns: ts,
        version: RECORD_VERSION,
        class: ProtocolClass::Tcp as u8,
        ip_version: 4,
        l4_proto: 6,
        tcp_flags: tcp_flags::SYN,
        sample_rate: 1,
        frame_len: 60,
        ttl: 61,
        src_port: 1024 + i as u16,
        dst_port: 443,
        src_addr: map_ipv4([198, 19, (i >> 8) as u8, i as u8]),
        dst_addr: map_ipv4([198, 18, 0, 1]),
        ..Default::default()
    }
}

/// 3 s of a 10 k SYN/s spoofed flood, then 40 s of quiet: one incident,
/// start, an update, end.
fn attack(alerts: &Alerts) {
    let mut config = DetectConfig::default();
    config.incidents.update = Duration::from_secs(1);
    let mut engine = Engine::new(config);
    let mut out = Vec::new();
    for s in 100..103u64 {
        for i in 0..10_000u64 {
            let r = syn(s * NS + i * 100_000, i);
            engine.observe(&r, FlowNote::first(&r), &mut out);
        }
        engine.advance((s + 1) * NS, &mut out);
    }
    for s in 103..143u64 {
        engine.advance(s * NS, &mut out);
    }
    for ev in out {
        alerts.send(ev);
    }
}

/// The first alert event of a SYN flood.
fn one_event() -> nta::pipeline::detect::AlertEvent {
    let mut engine = Engine::new(DetectConfig::default());
    let mut out = Vec::new();
    for i in 0..10_000u64 {
        let r = syn(100 * NS + i * 100_000, i);
        engine.observe(&r, FlowNote::first(&r), &mut out);
    }
    engine.advance(101 * NS, &mut out);
    out.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no alert event"))
}

/// Reads one HTTP request: the connection back, the request line
/// ("POST /hook") and the body.
fn read_request(conn: std::net::TcpStream) -> (std::net::TcpStream, String, Vec<u8>) {
    let mut reader = BufReader::new(conn);
    let mut request = String::new();
    let _ = reader.read_line(&mut request);
    let mut len = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let words: Vec<&str> = request.split_whitespace().take(2).collect();
    (reader.into_inner(), words.join(" "), body)
}

/// Accepts HTTP requests, answers 200 (or 500 the first `fail` times) and
/// hands each body to the test.
fn webhook_server(fail: usize) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut failed = 0;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (mut conn, _, body) = read_request(conn);
            let status = if failed < fail {
                failed += 1;
                "500 Internal Server Error"
            } else {
                let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (addr, rx)
}

fn fast_webhook(url: &str) -> WebhookConfig {
    let mut w = WebhookConfig::new(url).unwrap_or_else(|e| panic!("{e}"));
    w.backoff = Duration::from_millis(20);
    w.timeout = Duration::from_secs(2);
    w
}

fn value(registry: &Registry, name: &str, sink: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.value() == sink))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[test]
fn incident_goes_to_the_file_and_the_webhook_alike() {
    let dir = TempDir::new("alerts");
    let path = dir.join("alerts.jsonl");
    let registry = Registry::new();
    let metrics = AlertMetrics::register(&registry).unwrap_or_else(|e| panic!("{e}"));
    // The webhook fails twice first: retries must carry the event through.
    let (addr, bodies) = webhook_server(2);
    let sinks: Vec<Box<dyn AlertSink>> = vec![
        Box::new(
            FileSink::open(&path, RotationConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        ),
        Box::new(WebhookSink::start(
            fast_webhook(&format!("http://{addr}/hook")),
            metrics.clone(),
        )),
        Box::new(LogSink { groups: vec![] }),
    ];
    let alerts = Alerts::spawn(sinks, WallClock::unix(), vec![], metrics);
    attack(&alerts);
    alerts.close();

    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let states: Vec<&str> = lines
        .iter()
        .map(|a| a["nta"]["alert"]["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states.first(), Some(&"start"), "{states:?}");
    assert_eq!(states.last(), Some(&"end"), "{states:?}");
    assert!(states.contains(&"update"), "{states:?}");
    let id = &lines[0]["nta"]["alert"]["incident_id"];
    assert!(
        lines
            .iter()
            .all(|a| &a["nta"]["alert"]["incident_id"] == id),
        "one incident, one id"
    );
    // ECS's event.id names each document.
    let mut event_ids: Vec<&str> = lines
        .iter()
        .map(|a| a["event"]["id"].as_str().unwrap_or_default())
        .collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    assert_eq!(event_ids.len(), lines.len(), "event.id unique per document");
    let start = &lines[0];
    assert_eq!(start["rule"]["name"], "syn_flood");
    assert_eq!(start["event"]["kind"], "alert");
    assert_eq!(start["event"]["category"][1], "intrusion_detection");
    assert_eq!(start["destination"]["ip"], "198.18.0.1");
    // Reported as the running rate crossed 5,000 SYN/s: at the 5,000th
    // SYN, half a second into a flood of 10,000 a second.
    assert_eq!(start["@timestamp"], "1970-01-01T00:01:40.499900000Z");
    let a = &start["nta"]["alert"];
    assert_eq!(a["value"], 5_000.0);
    assert_eq!(a["threshold"], 5_000.0);
    assert_eq!(a["severity"], "medium");
    assert_eq!(a["window_seconds"], 1.0);
    assert_eq!(a["sample_rate"], 1);
    assert_eq!(start["event"]["reason"], "many distinct sources (spoofed)");
    let sources = a["distinct_sources"].as_u64().unwrap_or(0);
    assert!((4_500..=5_500).contains(&sources), "{sources}");
    let ev = &a["evidence"][0];
    assert_eq!(ev["destination"]["port"], 443);
    assert_eq!(ev["tcp_flags"], 2);
    assert_eq!(ev["ttl"], 61);
    let end = lines.last().unwrap_or_else(|| panic!("no lines"));
    assert!(end["event"]["end"].is_string());
    assert!(end["event"]["duration"].as_u64().unwrap_or(0) >= 2 * NS);

    // The webhook got exactly the same documents, in order.
    let posted: Vec<Value> = bodies
        .try_iter()
        .map(|b| serde_json::from_str(&b).unwrap_or_else(|e| panic!("{b}: {e}")))
        .collect();
    assert_eq!(posted, lines);
    assert_eq!(
        value(&registry, "nta_alert_deliveries_total", "webhook"),
        lines.len() as u64
    );
    assert_eq!(
        value(&registry, "nta_alert_deliveries_total", "file"),
        lines.len() as u64
    );
    assert_eq!(
        value(&registry, "nta_alert_delivery_errors_total", "webhook"),
        0
    );
}

#[test]
fn a_dead_webhook_is_counted_and_the_file_still_gets_everything() {
    let dir = TempDir::new("alerts-dead");
    let path = dir.join("alerts.jsonl");
    let registry = Registry::new();
    let metrics = AlertMetrics::register(&registry).unwrap_or_else(|e| panic!("{e}"));
    // A port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut hook = fast_webhook(&format!("http://{dead}/hook"));
    hook.attempts = 3;
    let sinks: Vec<Box<dyn AlertSink>> = vec![
        Box::new(WebhookSink::start(hook, metrics.clone())),
        Box::new(
            FileSink::open(&path, RotationConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        ),
    ];
    let alerts = Alerts::spawn(sinks, WallClock::unix(), vec![], metrics);
    attack(&alerts);
    alerts.close();
    let written = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .count() as u64;
    assert!(written >= 3);
    assert_eq!(
        value(&registry, "nta_alert_deliveries_total", "file"),
        written
    );
    assert_eq!(
        value(&registry, "nta_alert_delivery_errors_total", "webhook"),
        written
    );
    assert_eq!(value(&registry, "nta_alert_deliveries_total", "webhook"), 0);
}

#[test]
fn webhook_urls_are_checked() {
    for bad in ["ftp://x/y", "not a url", "http://"] {
        let e = WebhookConfig::new(bad).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.starts_with("webhook ")),
            "{bad}: {e:?}"
        );
    }
    assert!(WebhookConfig::new("https://hooks.example.invalid/nta").is_ok());
}

/// A server that answers every request with `status` (extra header lines
/// in `headers`) and reports each request line ("POST /hook").
fn answering(status: &'static str, headers: &'static str) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (mut conn, request, _) = read_request(conn);
            let _ = tx.send(request);
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (addr, rx)
}

#[test]
fn a_redirect_is_a_failed_delivery_not_a_get() {
    let (addr, requests) = answering("302 Found", "location: /elsewhere\r\n");
    let registry = Registry::new();
    let metrics = AlertMetrics::register(&registry).unwrap_or_else(|e| panic!("{e}"));
    let mut sink = WebhookSink::start(fast_webhook(&format!("http://{addr}/hook")), metrics);
    let ev = one_event();
    sink.deliver(&ev, b"{}").unwrap_or_else(|e| panic!("{e}"));
    sink.flush().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        value(&registry, "nta_alert_delivery_errors_total", "webhook"),
        1
    );
    assert_eq!(value(&registry, "nta_alert_deliveries_total", "webhook"), 0);
    let seen: Vec<String> = requests.try_iter().collect();
    assert_eq!(
        seen,
        ["POST /hook"],
        "one POST, no retry, no GET to the new place"
    );
}

#[test]
fn stopping_waits_for_a_hung_webhook_at_most_its_limit() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let registry = Registry::new();
    let metrics = AlertMetrics::register(&registry).unwrap_or_else(|e| panic!("{e}"));
    let mut hook = fast_webhook(&format!("http://{addr}/hook"));
    hook.timeout = Duration::from_millis(500);
    hook.flush_limit = Duration::from_secs(1);
    let mut sink = WebhookSink::start(hook, metrics);
    let ev = one_event();
    for _ in 0..20 {
        sink.deliver(&ev, b"{}").unwrap_or_else(|e| panic!("{e}"));
    }
    let started = std::time::Instant::now();
    sink.flush().unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed();
    // 20 events × 4 attempts × 0.5 s would be 40 s; the limit holds it
    // to about a second plus one request in flight.
    assert!(took < Duration::from_secs(3), "flush took {took:?}");
    let failed = value(&registry, "nta_alert_delivery_errors_total", "webhook");
    let dropped = value(&registry, "nta_alert_dropped_total", "webhook");
    assert_eq!(failed + dropped, 20, "every event accounted for");
    assert!(dropped > 0);
}

#[test]
fn webhook_secrets_stay_out_of_errors_and_logs() {
    use nta::output::alert::redacted;
    let url = "https://user:pw@hooks.example.invalid:8443/services/T000/SECRET-TOKEN?key=k";
    assert_eq!(redacted(url), "https://hooks.example.invalid:8443/…");
    let e = WebhookConfig::new("https://hooks.example.invalid/SECRET-TOKEN with space")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("webhook ") && !e.contains("SECRET"), "{e}");
    let ok: nta::output::alert::WebhookUrl = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{ok:?}");
    assert!(
        !shown.contains("SECRET") && !shown.contains("pw"),
        "{shown}"
    );
}
