//! nta with the real Prometheus: the alert rules pass promtool's unit
//! tests; nta's exposition passes `promtool check metrics`; and a real
//! Prometheus server scraping nta in a lab run answers every PromQL query
//! of every dashboard panel with data and loads every alert rule healthy,
//! with every metric the rules use present.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nta_lab::{mix::protocol_mix, privileged, scrape::http_get, send::send_frames};
use serde_json::Value;

use nta_lab::programs::{available_for, require};
mod common;

use common::{Agent, TempDir, agent_with_every_output, free_port, lab};

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn promtool_available() -> bool {
    available_for("prometheus tests", "promtool") && available_for("prometheus tests", "prometheus")
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    if !promtool_available() {
        return;
    }
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = require("promtool")
            .args(&args)
            .current_dir(dashboards())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn deploy_prometheus_config_is_valid_with_the_alert_rules() {
    if !promtool_available() {
        return;
    }
    let dir = TempDir::new("promcfg");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        root.join("deploy/prometheus.yml"),
        dir.join("prometheus.yml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(dashboards().join("alerts.yml"), dir.join("nta-alerts.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = require("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir.0)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Percent-encodes a query parameter (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(prom: SocketAddr, q: &str) -> Value {
    let body = http_get(prom, &format!("/api/v1/query?query={}", encode(q)))
        .unwrap_or_else(|e| panic!("query {q}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The Prometheus server, killed on drop.
struct Prometheus(Child);

impl Prometheus {
    /// `prometheus` with `config`, its data under `dir`, listening on `addr`.
    fn start(config: &Path, dir: &Path, addr: SocketAddr) -> Prometheus {
        Prometheus(
            require("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting prometheus: {e}")),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The dashboard variables as Grafana would fill them for "All".
fn grafana_substitute(expr: &str) -> String {
    expr.replace("$interface", ".*")
        .replace("$instance", ".*")
        .replace("$__rate_interval", "15s")
        .replace("$__range", "1m")
}

#[test]
fn a_real_prometheus_answers_every_dashboard_query_and_loads_every_rule() {
    if !privileged("a_real_prometheus_answers_every_dashboard_query") || !promtool_available() {
        return;
    }
    let (ns, veth) = lab("ntpr");
    let dir = TempDir::new("prometheus");
    let agent = agent_with_every_output(&veth.outer, &dir);
    // nta's own exposition is lint-clean.
    let text = http_get(agent.addr, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    let mut lint = require("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = lint.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = lint.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Traffic all along, so rates and per-destination series have data.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let ns = ns.name().to_string();
        let inner = veth.inner.clone();
        thread::spawn(move || {
            let frames: Vec<Vec<u8>> = protocol_mix().iter().map(|m| m.frame.clone()).collect();
            while !stop.load(Ordering::Relaxed) {
                let _ = send_frames(&ns, &inner, &frames, 5);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let prom_addr = free_port();
    std::fs::copy(dashboards().join("alerts.yml"), dir.join("alerts.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let prom_config = dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: nta\n    static_configs:\n      - targets: ['{}']\n",
            agent.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _prometheus = Prometheus::start(&prom_config, &dir.0, prom_addr);
    // Wait for 20 s of scrapes: enough for 15 s rate windows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first_up = None;
    loop {
        let up = http_get(
            prom_addr,
            &format!("/api/v1/query?query={}", encode("up{job=\"nta\"} == 1")),
        )
        .ok()
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .is_some_and(|v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        });
        if up && first_up.is_none() {
            first_up = Some(Instant::now());
        }
        if first_up.is_some_and(|t| t.elapsed() > Duration::from_secs(20)) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped nta");
        thread::sleep(Duration::from_millis(500));
    }

    let mut checked = 0;
    for entry in std::fs::read_dir(dashboards()).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for panel in json["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let q = grafana_substitute(expr);
                let v = query(prom_addr, &q);
                assert_eq!(
                    v["status"],
                    "success",
                    "{} {:?}: {q}: {v}",
                    path.display(),
                    panel["title"]
                );
                let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
                assert!(
                    !result.is_empty(),
                    "{} panel {:?} returns no data: {q}",
                    path.display(),
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} queries found");

    // Every rule loaded and evaluates without error; every metric it
    // reads is there.
    let rules: Value = serde_json::from_str(
        &http_get(prom_addr, "/api/v1/rules").unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rule_count = 0;
    for group in rules["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            rule_count += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
            let q = rule["query"].as_str().unwrap_or_default();
            for word in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("nta_") {
                    let v = query(prom_addr, &format!("count({word})"));
                    let n = v["data"]["result"].as_array().map_or(0, Vec::len);
                    assert!(
                        n > 0,
                        "rule {} reads {word}, which has no series",
                        rule["name"]
                    );
                }
            }
        }
    }
    let in_file = std::fs::read_to_string(dashboards().join("alerts.yml"))
        .unwrap_or_default()
        .matches("- alert:")
        .count();
    assert!(in_file >= 7, "{in_file} rules in alerts.yml");
    assert_eq!(
        rule_count, in_file,
        "every rule of the file loaded: {rules}"
    );
    // A healthy sensor fires nothing but what its traffic warrants.
    let firing = query(
        prom_addr,
        "ALERTS{alertname=~\"NtaDown|NtaXdpDetached|NtaSampleLoss\"}",
    );
    assert_eq!(
        firing["data"]["result"].as_array().map_or(0, Vec::len),
        0,
        "{firing}"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
}

/// `curl` against nta; the HTTP status ("000" when no HTTP answer came).
fn curl(url: &str, extra: &[&str]) -> (String, String) {
    let out = require("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("running curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
    (code.to_string(), body.to_string())
}

#[test]
fn tls_and_basic_auth_from_a_web_config_file_reload_and_prometheus_scrapes_them() {
    if !privileged("tls_and_basic_auth") || !promtool_available() {
        return;
    }
    let (_ns, veth) = lab("ntwc");
    let dir = TempDir::new("webconfig");
    let (cert, key) = (dir.join("nta.crt"), dir.join("nta.key"));
    let made = require("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=nta", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let web = dir.join("web.yml");
    std::fs::write(&web, "").unwrap_or_else(|e| panic!("{e}"));
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--web-config-file",
        web.to_str().unwrap_or_default(),
    ]);
    assert!(
        http_get(agent.addr, "/metrics").is_ok(),
        "no TLS, no auth yet"
    );

    // TLS and a user, in the exporter-toolkit format: promtool accepts
    // the file, and a SIGHUP puts it in force.
    let hash = bcrypt::hash("scrape-secret", 6).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: nta.crt\n  key_file: nta.key\n  min_version: TLS12\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let check = require("promtool")
        .args(["check", "web-config"])
        .arg(&web)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        check.status.success(),
        "promtool check web-config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    agent.signal(libc::SIGHUP);
    let https = format!("https://{}/metrics", agent.addr);
    let ca = cert.to_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&https, &["--cacert", &ca]).0 != "401" {
        assert!(
            Instant::now() < deadline,
            "TLS with auth never came into force"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        curl(&https, &["--cacert", &ca, "-u", "prometheus:wrong"]).0,
        "401"
    );
    assert_eq!(
        curl(&https, &["--cacert", &ca, "-u", "nobody:scrape-secret"]).0,
        "401"
    );
    let (code, body) = curl(&https, &["--cacert", &ca, "-u", "prometheus:scrape-secret"]);
    assert_eq!(code, "200");
    assert!(body.contains("nta_packets_total"), "{body}");
    assert_eq!(
        curl(
            &format!("https://{}/healthz", agent.addr),
            &["--cacert", &ca]
        )
        .0,
        "401",
        "every path needs the password"
    );
    assert!(
        http_get(agent.addr, "/healthz").is_err(),
        "plain HTTP is refused once TLS is on"
    );

    // A real Prometheus scrapes it over TLS with the password.
    let prom_addr = free_port();
    let prom_config = dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nta\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prometheus\n\
             \x20     password: scrape-secret\n    static_configs:\n      - targets: ['{}']\n",
            agent.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _prometheus = Prometheus::start(&prom_config, &dir.0, prom_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = http_get(
            prom_addr,
            &format!("/api/v1/query?query={}", encode("up{job=\"nta\"}")),
        )
        .ok()
        .and_then(|b| serde_json::from_str::<Value>(&b).ok());
        let up = v.as_ref().and_then(|v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        });
        if up.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped nta over TLS: {v:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }

    // A broken web config is refused and TLS with auth stays.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: nta.crt\n  key_file: gone.key\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    agent.signal(libc::SIGHUP);
    let auth = ["--cacert", ca.as_str(), "-u", "prometheus:scrape-secret"];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = curl(&https, &auth);
        assert_eq!(code, "200");
        if body.contains("nta_config_reloads_total{result=\"failure\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bad web config was not refused"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // A password guesser: after 10 failures within 10 s its address gets
    // 429 without a bcrypt check; credentials verified before still pass
    // (from the cache, no bcrypt), so Prometheus is not locked out.
    let codes: Vec<String> = (0..12)
        .map(|i| {
            curl(
                &https,
                &["--cacert", &ca, "-u", &format!("prometheus:guess{i}")],
            )
            .0
        })
        .collect();
    assert!(
        codes.iter().all(|c| c == "401" || c == "429") && codes[10..] == ["429", "429"],
        "{codes:?}"
    );
    assert_eq!(curl(&https, &auth).0, "200");
}
