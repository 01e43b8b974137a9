//! The shipped systemd unit: it verifies, its hardening scores well, and
//! nta runs as an unprivileged user with exactly the capabilities it
//! grants, and fails clearly with any one of them missing.

use std::{
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use nta_lab::{mix::protocol_mix, privileged, scrape::scrape, send::send_frames};

use nta_lab::programs::{available_for, require};
mod common;

use common::{NTA, TempDir, free_port, lab, stderr_of};

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nta.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The capabilities the unit grants, as setpriv names them (`bpf`...).
fn unit_capabilities() -> Vec<String> {
    let text = unit_text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap_or_else(|| panic!("no AmbientCapabilities in the unit"));
    let bounding = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap_or_default();
    assert_eq!(line, bounding, "ambient and bounding sets differ");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

fn systemd_analyze_available() -> bool {
    available_for("the systemd unit test", "systemd-analyze")
}

#[test]
fn systemd_unit_verifies_and_is_well_hardened() {
    if !systemd_analyze_available() {
        return;
    }
    let dir = TempDir::new("unit");
    let unit = dir.join("nta.service");
    std::fs::write(&unit, unit_text().replace("/usr/local/bin/nta", NTA))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = require("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = require("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for nta.service:").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(
        score <= 3.0,
        "exposure {score} (want <= 3.0, \"OK\"):\n{text}"
    );
}

/// Runs nta as `nobody` with exactly `caps` (setpriv, util-linux).
fn run_as_nobody(caps: &[String], iface: &str, listen: &str) -> std::process::Child {
    let set = if caps.is_empty() {
        "-all".to_string()
    } else {
        format!(
            "-all,{}",
            caps.iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    require("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            &format!("--inh-caps={set}"),
            &format!("--ambient-caps={set}"),
            &format!("--bounding-set={set}"),
            "--",
            NTA,
            "run",
            "--iface",
            iface,
            "--listen",
            listen,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("setpriv: {e}"))
}

#[test]
fn runs_unprivileged_with_exactly_the_units_capabilities() {
    if !privileged("runs_unprivileged_with_exactly_the_units_capabilities") {
        return;
    }
    let caps = unit_capabilities();
    assert_eq!(caps, ["bpf", "perfmon", "net_admin"]);
    let (ns, veth) = lab("ntcp");
    let addr = free_port();
    let mut child = run_as_nobody(&caps, &veth.outer, &addr.to_string());
    let deadline = Instant::now() + Duration::from_secs(15);
    while scrape(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nta exited with {status}: {}", stderr_of(&mut child));
        }
        assert!(Instant::now() < deadline, "nta did not come up");
        thread::sleep(Duration::from_millis(50));
    }
    let frames: Vec<Vec<u8>> = protocol_mix().iter().map(|m| m.frame.clone()).collect();
    let sent = send_frames(ns.name(), &veth.inner, &frames, 10).unwrap_or_else(|e| panic!("{e}"));
    let i = veth.outer.as_str();
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = loop {
        let s = scrape(addr).unwrap_or_else(|e| panic!("{e}"));
        let n = s.sum("nta_packets_total", &[("interface", i)]);
        if n >= sent as f64 || Instant::now() > deadline {
            break n;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(counted, sent as f64, "counted as an unprivileged user");
    let _ = child.kill();
    let _ = child.wait();

    // Without any one of them: a clear error naming it, nothing attached.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let mut child = run_as_nobody(&fewer, &veth.outer, &free_port().to_string());
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        let err = stderr_of(&mut child);
        assert!(!status.success(), "nta ran without {missing}");
        let name = format!("CAP_{}", missing.to_ascii_uppercase());
        assert!(err.contains(&name), "without {missing}: {err}");
        assert!(!common::xdp_attached(&veth.outer));
    }
}

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_daemonset_is_locked_down_and_its_probes_and_flags_are_real() {
    let docs: Vec<serde_yaml_ng::Value> =
        serde_yaml_ng::Deserializer::from_str(&deploy_file("kubernetes/daemonset.yaml"))
            .map(|d| {
                <serde_yaml_ng::Value as serde::Deserialize>::deserialize(d)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap_or_else(|| panic!("no DaemonSet"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(
            (get["host"].as_str(), get["port"].as_u64()),
            (Some("127.0.0.1"), Some(9465))
        );
        assert_eq!(get["path"], path);
    }
    let args: Vec<String> = c["args"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .map(|a| a.replace("$(NODE_IP)", "127.0.0.1"))
        .collect();
    assert!(
        args.iter().any(|a| a == "--health-listen=127.0.0.1:9465"),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a.starts_with("--web-config-file=")),
        "{args:?}"
    );
    // nta takes every one of these flags: it gets as far as reading the
    // config file the DaemonSet mounts (absent here).
    let out = std::process::Command::new(NTA)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("reading /etc/nta/nta.toml"), "{err}");
    // The Secret holds the web config it names.
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .unwrap_or_else(|| panic!("no Secret"));
    assert!(
        secret["stringData"]["web.yml"]
            .as_str()
            .is_some_and(|w| w.contains("tls_server_config") && w.contains("basic_auth_users"))
    );
}

#[test]
fn the_compose_stack_mounts_no_bpf_fs_and_ships_no_default_password() {
    let compose = deploy_file("compose.yml");
    assert!(!compose.contains("/sys/fs/bpf:"), "nta pins nothing");
    assert!(!compose.contains("GF_SECURITY_ADMIN_PASSWORD: admin"));
    assert!(compose.contains("${GRAFANA_ADMIN_PASSWORD:?"));
}
