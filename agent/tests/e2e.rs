//! End to end: a namespace and veth pair made by the test, `nta run`
//! attached to the outer end, a known mix of frames sent from the inner end,
//! and /metrics scraped. Every counter must equal what was sent, exactly.

use std::{
    net::TcpListener,
    os::unix::fs::DirBuilderExt,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use agent_common::class::ProtocolClass;
use nta_lab::{
    mix::protocol_mix,
    privileged,
    scrape::{http_get, scrape},
    send::send_frames,
};

use nta_lab::programs::require;
mod common;

use common::{
    Agent, NTA, TempDir, agent_with_every_output, lab, scrape_until, stderr_of, syn_scan,
    xdp_attached,
};

#[test]
fn counts_a_known_mix_exactly() {
    if !privileged("counts_a_known_mix_exactly") {
        return;
    }
    let (ns, veth) = lab("ntae");
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--sample-rate",
        "1",
        "--control-sample-rate",
        "1",
        // Every frame, so no budget thins them.
        "--control-budget",
        "0",
    ]);
    let i = veth.outer.as_str();

    let mix = protocol_mix();
    let repeat = 50usize;
    let frames: Vec<Vec<u8>> = mix.iter().map(|m| m.frame.clone()).collect();
    let sent =
        send_frames(ns.name(), &veth.inner, &frames, repeat).unwrap_or_else(|e| panic!("{e}"));
    let total = (mix.len() * repeat) as f64;
    assert_eq!(sent as f64, total);

    let s = scrape_until(agent.addr, |s| {
        s.sum("nta_packets_total", &[("interface", i)]) >= total
            && s.sum("nta_samples_total", &[("interface", i)]) >= total
    });
    let r = repeat as f64;
    for class in ProtocolClass::ALL.map(ProtocolClass::label) {
        assert!(
            mix.iter().any(|m| m.class == class),
            "the mix lacks {class}"
        );
    }
    let per =
        |f: &dyn Fn(&nta_lab::cases::Case) -> bool| mix.iter().filter(|m| f(m)).count() as f64 * r;
    for class in ProtocolClass::ALL.map(ProtocolClass::label) {
        let want = per(&|m| m.class == class);
        let bytes: f64 = mix
            .iter()
            .filter(|m| m.class == class)
            .map(|m| m.frame.len() as f64 * r)
            .sum();
        assert_eq!(
            s.get(
                "nta_packets_total",
                &[("interface", i), ("protocol", class)]
            ),
            Some(want),
            "packets {class}"
        );
        assert_eq!(
            s.get("nta_bytes_total", &[("interface", i), ("protocol", class)]),
            Some(bytes),
            "bytes {class}"
        );
    }
    for v in [4u8, 6] {
        let want = per(&|m| m.ip_version == v);
        assert_eq!(
            s.get(
                "nta_ip_packets_total",
                &[("interface", i), ("version", &v.to_string())]
            ),
            Some(want),
            "ip v{v}"
        );
    }
    assert_eq!(
        s.get("nta_vlan_packets_total", &[("interface", i)]),
        Some(per(&|m| m.vlan_depth > 0))
    );
    for flag in ["syn", "synack", "fin", "rst"] {
        let want = per(&|m| m.tcp_flag_labels().contains(&flag));
        assert_eq!(
            s.get("nta_tcp_flags_total", &[("interface", i), ("flag", flag)]),
            Some(want),
            "flag {flag}"
        );
    }
    assert_eq!(
        s.sum("nta_parse_errors_total", &[("interface", i)]),
        per(&|m| m.reason.is_some())
    );
    for m in mix.iter().filter_map(|m| m.reason) {
        assert_eq!(
            s.get("nta_parse_errors_total", &[("interface", i), ("reason", m)]),
            Some(r),
            "reason {m}"
        );
    }
    assert_eq!(
        s.get("nta_samples_total", &[("interface", i)]),
        Some(total),
        "every frame sampled at 1-in-1"
    );
    for stage in ["ringbuf", "queue", "decode"] {
        assert_eq!(
            s.get(
                "nta_samples_dropped_total",
                &[("interface", i), ("stage", stage)]
            ),
            Some(0.0),
            "drops at {stage}"
        );
    }
    assert_eq!(
        s.get("nta_xdp_attached", &[("interface", i), ("mode", "native")]),
        Some(1.0)
    );
    assert_eq!(s.sum("nta_build_info", &[]), 1.0);

    assert!(xdp_attached(i), "XDP should be attached while nta runs");
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit();
    assert!(
        status.success(),
        "nta exited with {status}: {}",
        stderr_of(&mut agent.child)
    );
    assert!(!xdp_attached(i), "SIGTERM must detach XDP");
}

#[test]
fn killed_agent_leaves_nothing_attached() {
    if !privileged("killed_agent_leaves_nothing_attached") {
        return;
    }
    let (_ns, veth) = lab("ntak");
    let mut agent = Agent::start(&["--iface", &veth.outer, "--xdp-mode", "skb"]);
    let s = scrape(agent.addr).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.get(
            "nta_xdp_attached",
            &[("interface", &veth.outer), ("mode", "skb")]
        ),
        Some(1.0)
    );
    assert!(xdp_attached(&veth.outer));
    agent.signal(libc::SIGKILL);
    agent.wait_exit();
    // The bpf_link dies with the process's file descriptors.
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&veth.outer) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !xdp_attached(&veth.outer),
        "a SIGKILLed nta must leave no XDP program attached"
    );
}

fn run_nta_expecting_error(args: &[&str]) -> String {
    let out = Command::new(NTA)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success(), "nta {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn clear_errors_for_missing_interface_and_busy_port() {
    if !privileged("clear_errors_for_missing_interface_and_busy_port") {
        return;
    }
    let err = run_nta_expecting_error(&["run", "--iface", "nta-nope0", "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains("interface \"nta-nope0\" does not exist"),
        "{err}"
    );

    let busy = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = busy
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let err = run_nta_expecting_error(&["run", "--iface", "lo", "--listen", &addr]);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn native_mode_on_loopback_is_refused_clearly() {
    if !privileged("native_mode_on_loopback_is_refused_clearly") {
        return;
    }
    let err = run_nta_expecting_error(&[
        "run",
        "--iface",
        "lo",
        "--xdp-mode",
        "native",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        err.contains("native XDP is not supported by the driver of lo"),
        "{err}"
    );
}

#[test]
fn missing_capabilities_are_named() {
    if !privileged("missing_capabilities_are_named") {
        return;
    }
    // Drop every capability but CAP_NET_ADMIN with setpriv (util-linux).
    let out = require("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all,+net_admin",
            "--",
            NTA,
            "run",
            "--iface",
            "lo",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap_or_else(|e| panic!("setpriv: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && !err.contains("CAP_NET_ADMIN ("),
        "{err}"
    );
}

#[test]
fn flows_are_written_as_ecs_json_lines_and_csv() {
    if !privileged("flows_are_written_as_ecs_json_lines_and_csv") {
        return;
    }
    use nta_lab::frames::{FrameSpec, L4, pad_to_min};
    let dir = TempDir::new("flows");
    let jsonl = dir.join("flows.jsonl");
    let csv = dir.join("flows.csv");

    let (ns, veth) = lab("ntaf");
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--sample-rate",
        "1",
        "--flows",
        jsonl.to_str().unwrap_or_default(),
        "--flows",
        csv.to_str().unwrap_or_default(),
    ]);

    // Three TCP connections of 10 segments ending with FIN, one UDP flow of
    // 5 datagrams, 4 ICMP echo requests, and ARP (no flow).
    let mut frames = Vec::new();
    for sport in [40001u16, 40002, 40003] {
        for i in 0..10 {
            let flags = if i == 9 { 0x11 } else { 0x10 };
            frames.push(pad_to_min(
                FrameSpec::ipv4(L4::Tcp {
                    sport,
                    dport: 443,
                    flags,
                })
                .build(),
            ));
        }
    }
    for _ in 0..5 {
        frames.push(
            FrameSpec::ipv4(L4::Udp {
                sport: 5353,
                dport: 53,
            })
            .with_payload(100)
            .build(),
        );
    }
    for _ in 0..4 {
        frames.push(pad_to_min(
            FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }).build(),
        ));
    }
    frames.push(pad_to_min(FrameSpec::arp().build()));
    send_frames(ns.name(), &veth.inner, &frames, 1).unwrap_or_else(|e| panic!("{e}"));
    let s = scrape_until(agent.addr, |s| {
        s.sum("nta_flows_expired_total", &[("reason", "end")]) >= 3.0
    });
    assert_eq!(
        s.get("nta_flows_expired_total", &[("reason", "end")]),
        Some(3.0)
    );
    assert_eq!(
        s.get("nta_flows_active", &[]),
        Some(2.0),
        "UDP and ICMP still active"
    );
    assert_eq!(s.get("nta_flows_created_total", &[]), Some(5.0));

    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());

    let text = std::fs::read_to_string(&jsonl).unwrap_or_else(|e| panic!("{e}"));
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    assert_eq!(docs.len(), 5, "{text}");
    let tcp: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["network"]["transport"] == "tcp")
        .collect();
    assert_eq!(tcp.len(), 3);
    for d in &tcp {
        assert_eq!(d["event"]["reason"], "end");
        assert_eq!(d["network"]["packets"], 10);
        assert_eq!(d["network"]["bytes"], 600);
        assert_eq!(d["source"]["ip"], "198.18.0.1");
        assert_eq!(d["destination"]["ip"], "198.18.0.2");
        assert_eq!(d["destination"]["port"], 443);
        assert_eq!(d["network"]["type"], "ipv4");
        assert_eq!(d["network"]["iana_number"], "6");
        assert_eq!(d["nta"]["flow"]["tcp_flags"], "FA");
        assert_eq!(d["nta"]["flow"]["sampling_rate"], 1);
        assert_eq!(
            d["observer"]["ingress"]["interface"]["name"],
            veth.outer.as_str()
        );
        assert!(
            d["network"]["community_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("1:"))
        );
        assert!(
            d["event"]["start"]
                .as_str()
                .is_some_and(|t| t.starts_with("20") && t.ends_with('Z'))
        );
    }
    let ports: std::collections::BTreeSet<i64> = tcp
        .iter()
        .filter_map(|d| d["source"]["port"].as_i64())
        .collect();
    assert_eq!(ports, [40001, 40002, 40003].into_iter().collect());
    let udp = docs
        .iter()
        .find(|d| d["network"]["transport"] == "udp")
        .unwrap_or_else(|| panic!("no UDP flow"));
    assert_eq!(udp["network"]["packets"], 5);
    assert_eq!(udp["network"]["bytes"], 5 * 142);
    assert_eq!(udp["event"]["reason"], "shutdown");
    assert_eq!(udp["source"]["port"], 5353);
    let icmp = docs
        .iter()
        .find(|d| d["network"]["transport"] == "icmp")
        .unwrap_or_else(|| panic!("no ICMP flow"));
    assert_eq!(icmp["network"]["packets"], 4);
    assert_eq!(icmp["nta"]["icmp"]["type"], 8);
    assert!(icmp["source"].get("port").is_none(), "ICMP has no ports");

    let csv_text = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = csv_text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "start,end,duration_ms,interface,vlan,ip_version,protocol,src_ip,src_port,dst_ip,dst_port,packets,bytes,sampled_packets,sampled_bytes,sampling_rate,tcp_flags,min_ttl,max_ttl,end_reason,biflow,community_id,server_name,dns_query"
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows.iter()
            .filter(|r| r.contains(",tcp,198.18.0.1,4000")
                && r.contains(",443,10,600,10,600,1,FA,64,64,end,"))
            .count(),
        3
    );
}

#[test]
fn bad_flow_file_is_refused_before_attaching() {
    if !privileged("bad_flow_file_is_refused_before_attaching") {
        return;
    }
    let err = run_nta_expecting_error(&[
        "run",
        "--iface",
        "lo",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        "/tmp/flows.txt",
    ]);
    assert!(err.contains("unknown flow file type"), "{err}");
    let err = run_nta_expecting_error(&[
        "run",
        "--iface",
        "lo",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        "/nonexistent-dir/f.jsonl",
    ]);
    assert!(
        err.contains("/nonexistent-dir/f.jsonl") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn an_output_directory_the_user_cannot_write_is_refused_at_start() {
    if !privileged("an_output_directory_the_user_cannot_write_is_refused_at_start") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nta-e2e-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let flows = dir.join("flows.jsonl");
    let base = ["run", "--iface", "lo", "--listen", "127.0.0.1:0"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        run_nta_expecting_error(&args)
    };
    // Root could open it, but nta writes there as nobody once attached
    // (rotation creates files): refused now, not at the first rotation.
    let err = with(&[
        "--user",
        "nobody",
        "--flows",
        flows.to_str().unwrap_or_default(),
    ]);
    assert!(
        err.contains("--flows")
            && err.contains(dir.to_str().unwrap_or_default())
            && err.contains("nta runs as nobody once attached"),
        "{err}"
    );
    // A capture directory must be nobody's own.
    let err = with(&[
        "--user",
        "nobody",
        "--capture",
        dir.to_str().unwrap_or_default(),
    ]);
    assert!(err.contains("owner uid 0"), "{err}");
    let err = with(&["--user", "no-such-user-nta"]);
    assert!(
        err.contains("--user no-such-user-nta: no such user"),
        "{err}"
    );
    assert!(!flows.exists(), "nothing opened");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed (SIGTERM, then SIGKILL) on drop.
#[test]
fn bad_detection_config_and_webhook_are_refused_before_attaching() {
    if !privileged("bad_detection_config_and_webhook_are_refused_before_attaching") {
        return;
    }
    let dir = TempDir::new("badcfg");
    let cfg = dir.join("nta.toml");
    std::fs::write(
        &cfg,
        "[detect]\ntracked_keys = 10\n[detect.syn_flood]\npsp = 5\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = cfg.to_string_lossy().into_owned();
    let base = ["run", "--iface", "lo", "--listen", "127.0.0.1:0"];
    let with = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        run_nta_expecting_error(&v)
    };
    let err = with(&["--config", &cfg]);
    assert!(
        err.contains(&cfg) && err.contains("line 4") && err.contains("unknown field `psp`"),
        "{err}"
    );
    std::fs::write(&cfg, "[detect.incidents]\nquiet = \"0s\"\n").unwrap_or_else(|e| panic!("{e}"));
    let err = with(&["--config", &cfg]);
    assert!(
        err.contains("detect.incidents.quiet: must be at least 1s"),
        "{err}"
    );
    let err = with(&["--config", "/nonexistent/nta.toml"]);
    assert!(err.contains("reading /nonexistent/nta.toml"), "{err}");
    let err = with(&["--webhook", "ftp://example.invalid/x"]);
    assert!(err.contains("needs an http:// or https:// URL"), "{err}");
    // Nothing was attached to lo on the way.
    assert!(!xdp_attached("lo"));
}

struct Daemon(Child);

impl Daemon {
    fn stop(&mut self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
    }
}

#[test]
fn ipfix_export_is_read_by_nfcapd_and_tshark() {
    if !privileged("ipfix_export_is_read_by_nfcapd_and_tshark") {
        return;
    }
    use nta_lab::frames::{FrameSpec, L4, pad_to_min};
    let dir = TempDir::new("ipfix");
    let store = dir.join("nfcapd");
    std::fs::create_dir_all(&store).unwrap_or_else(|e| panic!("{e}"));
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        s.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    let mut nfcapd = Daemon(
        require("nfcapd")
            .args([
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "3600",
                "-w",
            ])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nfcapd (apt package nfdump): {e}")),
    );
    let pcap = dir.join("ipfix.pcap");
    let mut tcpdump = Daemon(
        require("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-Z", "root", "-n", "-w"])
            .arg(&pcap)
            .args(["udp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("tcpdump: {e}")),
    );
    thread::sleep(Duration::from_millis(700));

    let (ns, veth) = lab("ntai");
    let collector = format!("127.0.0.1:{port}");
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--sample-rate",
        "1",
        "--ipfix",
        &collector,
    ]);
    let mut frames = Vec::new();
    for i in 0..10 {
        let flags = if i == 9 { 0x11 } else { 0x10 };
        frames.push(pad_to_min(
            FrameSpec::ipv4(L4::Tcp {
                sport: 40001,
                dport: 443,
                flags,
            })
            .build(),
        ));
    }
    for _ in 0..7 {
        frames.push(pad_to_min(
            FrameSpec::ipv4(L4::Udp {
                sport: 5000,
                dport: 53,
            })
            .build(),
        ));
    }
    for _ in 0..3 {
        frames.push(pad_to_min(
            FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }).build(),
        ));
    }
    for _ in 0..4 {
        frames.push(
            FrameSpec::ipv6(L4::Udp {
                sport: 6000,
                dport: 123,
            })
            .with_payload(20)
            .build(),
        );
    }
    send_frames(ns.name(), &veth.inner, &frames, 1).unwrap_or_else(|e| panic!("{e}"));
    scrape_until(agent.addr, |s| s.sum("nta_flows_created_total", &[]) >= 4.0);
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    thread::sleep(Duration::from_millis(500));
    nfcapd.stop(libc::SIGTERM);
    tcpdump.stop(libc::SIGINT);

    let out = require("nfdump")
        .arg("-R")
        .arg(&store)
        .args(["-q", "-N", "-o", "fmt:%sa,%da,%sp,%dp,%pr,%pkt,%byt"])
        .output()
        .unwrap_or_else(|e| panic!("nfdump: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows: Vec<String> = text
        .lines()
        .map(|l| l.split(',').map(str::trim).collect::<Vec<_>>().join(","))
        .filter(|l| !l.is_empty())
        .collect();
    rows.sort();
    let mut want = vec![
        "198.18.0.1,198.18.0.2,40001,443,6,10,600".to_string(),
        "198.18.0.1,198.18.0.2,5000,53,17,7,420".to_string(),
        "198.18.0.1,198.18.0.2,0,8.0,1,3,180".to_string(),
        "fd00:6e74:61::1,fd00:6e74:61::2,6000,123,17,4,328".to_string(),
    ];
    want.sort();
    assert_eq!(
        rows,
        want,
        "nfdump said:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let tshark = require("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("udp.port=={port},cflow"), "-V"])
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e}"));
    let decoded = String::from_utf8_lossy(&tshark.stdout);
    assert!(tshark.status.success());
    assert!(
        decoded.contains("Version: 10"),
        "tshark saw no IPFIX:\n{decoded}"
    );
    assert!(decoded.contains("198.18.0.1") && decoded.contains("fd00:6e74:61::1"));
    for bad in [
        "Malformed",
        "Expert Info (Warning",
        "Expert Info (Error",
        "not found",
    ] {
        assert!(!decoded.contains(bad), "tshark reports {bad}:\n{decoded}");
    }
}

#[test]
fn unreachable_ipfix_collector_is_counted_and_other_exporters_go_on() {
    if !privileged("unreachable_ipfix_collector_is_counted_and_other_exporters_go_on") {
        return;
    }
    use nta_lab::frames::{FrameSpec, L4, pad_to_min};
    let dir = TempDir::new("noipfix");
    let jsonl = dir.join("flows.jsonl");
    // A port nobody listens on: sends fail with "connection refused".
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        s.local_addr().unwrap_or_else(|e| panic!("{e}")).to_string()
    };
    let (ns, veth) = lab("ntau");
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--sample-rate",
        "1",
        "--ipfix",
        &closed,
        "--flows",
        jsonl.to_str().unwrap_or_default(),
    ]);
    // Each FIN ends a flow, so records go out at once, one batch per send.
    for port in 41000u16..41006 {
        let f = pad_to_min(
            FrameSpec::ipv4(L4::Tcp {
                sport: port,
                dport: 80,
                flags: 0x11,
            })
            .build(),
        );
        send_frames(ns.name(), &veth.inner, &[f], 1).unwrap_or_else(|e| panic!("{e}"));
        thread::sleep(Duration::from_millis(50));
    }
    let s = scrape_until(agent.addr, |s| {
        s.sum("nta_flow_export_errors_total", &[("exporter", "ipfix")]) >= 1.0
            && s.sum("nta_flows_exported_total", &[("exporter", "jsonl")]) >= 6.0
    });
    assert!(
        s.sum("nta_flow_export_errors_total", &[("exporter", "ipfix")]) >= 1.0,
        "refused sends are counted"
    );
    assert_eq!(
        s.get("nta_flows_exported_total", &[("exporter", "jsonl")]),
        Some(6.0)
    );
    assert!(
        http_get(agent.addr, "/healthz").is_ok(),
        "the agent keeps running"
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    let lines = std::fs::read_to_string(&jsonl)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .count();
    assert_eq!(lines, 6);
}

#[test]
fn every_metric_the_dashboards_use_is_exposed() {
    if !privileged("every_metric_the_dashboards_use_is_exposed") {
        return;
    }
    let (ns, veth) = lab("ntad");
    let dir = TempDir::new("dashboards");
    let agent = agent_with_every_output(&veth.outer, &dir);
    // Traffic, so the per-destination series exist (they hold only the
    // destinations of the last second).
    let frames: Vec<Vec<u8>> = protocol_mix().iter().map(|m| m.frame.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        send_frames(ns.name(), &veth.inner, &frames, 20).unwrap_or_else(|e| panic!("{e}"));
        let text = http_get(agent.addr, "/metrics").unwrap_or_else(|e| panic!("{e}"));
        if text.contains("nta_destination_pps_upper{") || Instant::now() > deadline {
            break text;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let exposed: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for panel in json["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                // Metric names: identifiers starting nta_ or process_.
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("nta_") || word.starts_with("process_") {
                        assert!(
                            exposed.contains(word),
                            "{} panel {:?} uses {word}, which nta does not expose",
                            path.display(),
                            panel["title"]
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10, "found only {checked} metric references");
}

/// SYNs from `src` to `ports` distinct ports of 198.18.1.1.
#[test]
fn sighup_reloads_the_config_and_refuses_a_bad_one() {
    if !privileged("sighup_reloads_the_config_and_refuses_a_bad_one") {
        return;
    }
    let (ns, veth) = lab("ntrl");
    let dir = TempDir::new("reload");
    let cfg = dir.join("nta.toml");
    let alerts = dir.join("alerts.jsonl");
    std::fs::write(
        &cfg,
        "[detect]\nport_scan = { window = \"10s\", distinct = 1000 }\n\
         slow_port_scan = { window = \"5m\", distinct = 1000 }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let check = Command::new(NTA)
        .args(["check-config", cfg.to_str().unwrap_or_default()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(check.status.success());
    let first_hash = String::from_utf8_lossy(&check.stdout)
        .split("sha1 ")
        .nth(1)
        .map(|s| s.trim_end_matches([')', '\n']).to_string())
        .unwrap_or_default();
    assert_eq!(first_hash.len(), 40);
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--config",
        cfg.to_str().unwrap_or_default(),
        "--alerts",
        alerts.to_str().unwrap_or_default(),
    ]);
    let info = |s: &nta_lab::scrape::Samples, h: &str| s.get("nta_config_info", &[("sha1", h)]);
    assert_eq!(info(&agent.scrape(), &first_hash), Some(1.0));
    let scan_starts = || {
        std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"name\":\"port_scan\"") && l.contains("\"state\":\"start\""))
            .count()
    };
    // 100 ports: under the first config's 1000 (both tiers).
    send_frames(
        ns.name(),
        &veth.inner,
        &syn_scan([198, 18, 0, 7], [198, 18, 1, 1], 100),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(scan_starts(), 0);

    // A stricter config, then SIGHUP: the next scan alerts.
    std::fs::write(
        &cfg,
        "[detect]\nport_scan = { window = \"10s\", distinct = 50 }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    agent.signal(libc::SIGHUP);
    let s = agent
        .scrape_until(|s| s.get("nta_config_reloads_total", &[("result", "success")]) == Some(1.0));
    assert_eq!(
        s.get("nta_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(info(&s, &first_hash), None, "the old hash is gone");
    let before = s.sum("nta_packets_total", &[]);
    send_frames(
        ns.name(),
        &veth.inner,
        &syn_scan([198, 18, 0, 8], [198, 18, 1, 1], 100),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while scan_starts() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(scan_starts(), 1, "the reloaded threshold is in force");

    // A broken config is refused; the previous one stays in force.
    std::fs::write(
        &cfg,
        "[detect]\nport_scan = { window = \"10s\", distinct = 50 }\n[detect.bogus]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    agent.signal(libc::SIGHUP);
    let s = agent
        .scrape_until(|s| s.get("nta_config_reloads_total", &[("result", "failure")]) == Some(1.0));
    assert_eq!(
        s.get("nta_config_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
    send_frames(
        ns.name(),
        &veth.inner,
        &syn_scan([198, 18, 0, 9], [198, 18, 1, 1], 100),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while scan_starts() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        scan_starts(),
        2,
        "still the reloaded config after a bad one"
    );
    // Nothing was reset or detached on the way.
    let s = agent.scrape();
    assert!(s.sum("nta_packets_total", &[]) >= before + 200.0);
    assert!(xdp_attached(&veth.outer));
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit();
    assert!(status.success(), "{status}");
    let err = stderr_of(&mut agent.child);
    assert!(
        err.contains("config reload refused") && err.contains("unknown field `bogus`"),
        "{err}"
    );
}

#[test]
fn sampling_from_the_config_file_reloads_and_flags_win() {
    if !privileged("sampling_from_the_config_file_reloads_and_flags_win") {
        return;
    }
    let (_ns, veth) = lab("ntsm");
    let dir = TempDir::new("sampling");
    let cfg = dir.join("nta.toml");
    let write = |t: &str| std::fs::write(&cfg, t).unwrap_or_else(|e| panic!("{e}"));
    let rate = |a: &Agent, kind: &str| {
        a.scrape().get(
            "nta_sampling_rate",
            &[("interface", &veth.outer), ("kind", kind)],
        )
    };
    write("[sampling]\ndata_rate = 32\ncontrol_rate = 2\n");
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--config",
        cfg.to_str().unwrap_or_default(),
    ]);
    assert_eq!(rate(&agent, "data"), Some(32.0));
    assert_eq!(rate(&agent, "control"), Some(2.0));
    write("[sampling]\ndata_rate = 128\ncontrol_rate = 4\n");
    agent.signal(libc::SIGHUP);
    let s = agent.scrape_until(|s| {
        s.get(
            "nta_sampling_rate",
            &[("interface", &veth.outer), ("kind", "data")],
        ) == Some(128.0)
    });
    assert_eq!(
        s.get(
            "nta_sampling_rate",
            &[("interface", &veth.outer), ("kind", "data")]
        ),
        Some(128.0)
    );
    assert_eq!(rate(&agent, "control"), Some(4.0));
    agent.signal(libc::SIGTERM);
    agent.wait_exit();

    // A flag on the command line wins over the file, also after a reload.
    write("[sampling]\ndata_rate = 32\n");
    let agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--config",
        cfg.to_str().unwrap_or_default(),
        "--sample-rate",
        "16",
    ]);
    assert_eq!(rate(&agent, "data"), Some(16.0));
    assert_eq!(
        rate(&agent, "control"),
        Some(1.0),
        "default where neither sets it"
    );
    write("[sampling]\ndata_rate = 256\ncontrol_rate = 8\n");
    let mut agent = agent;
    agent.signal(libc::SIGHUP);
    let s = agent.scrape_until(|s| {
        s.get(
            "nta_sampling_rate",
            &[("interface", &veth.outer), ("kind", "control")],
        ) == Some(8.0)
    });
    assert_eq!(
        s.get(
            "nta_sampling_rate",
            &[("interface", &veth.outer), ("kind", "control")]
        ),
        Some(8.0)
    );
    assert_eq!(rate(&agent, "data"), Some(16.0), "the flag still wins");
}

/// TCP connections ending with FIN, one per source port, 3 segments each.
fn finished_connections(sports: std::ops::Range<u16>) -> Vec<Vec<u8>> {
    use nta_lab::frames::{FrameSpec, L4, pad_to_min};
    let mut frames = Vec::new();
    for sport in sports {
        for flags in [0x02, 0x10, 0x11] {
            frames.push(pad_to_min(
                FrameSpec::ipv4(L4::Tcp {
                    sport,
                    dport: 443,
                    flags,
                })
                .build(),
            ));
        }
    }
    frames
}

#[test]
fn config_file_sets_every_output_and_reload_swaps_them() {
    if !privileged("config_file_sets_every_output_and_reload_swaps_them") {
        return;
    }
    let (ns, veth) = lab("ntco");
    let dir = TempDir::new("outputs");
    let cfg = dir.join("nta.toml");
    let (first, second, alerts) = (
        dir.join("first.jsonl"),
        dir.join("second.csv"),
        dir.join("alerts.jsonl"),
    );
    let write = |flows: &std::path::Path, extra: &str| {
        let text = format!(
            "[sensor]\ninterfaces = [\"{}\"]\n[sampling]\ndata_rate = 1\n[flows]\nfiles = [\"{}\"]\n{extra}",
            veth.outer,
            flows.display()
        );
        std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    };
    // No --iface and no --flows: both come from the file.
    write(&first, "");
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap_or_default()]);
    assert!(
        xdp_attached(&veth.outer),
        "attached to the file's interface"
    );
    let exported = |s: &nta_lab::scrape::Samples, kind: &str| {
        s.get("nta_flows_exported_total", &[("exporter", kind)])
            .unwrap_or(0.0)
    };
    let reloads = |s: &nta_lab::scrape::Samples, r: &str| {
        s.get("nta_config_reloads_total", &[("result", r)])
            .unwrap_or(0.0)
    };
    send_frames(
        ns.name(),
        &veth.inner,
        &finished_connections(41000..41003),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    agent.scrape_until(|s| exported(s, "jsonl") >= 3.0);

    // An output that cannot be opened: the reload is refused and the
    // running outputs go on.
    write(std::path::Path::new("/nonexistent-nta-dir/flows.jsonl"), "");
    agent.signal(libc::SIGHUP);
    agent.scrape_until(|s| reloads(s, "failure") >= 1.0);
    send_frames(
        ns.name(),
        &veth.inner,
        &finished_connections(42000..42002),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = agent.scrape_until(|s| exported(s, "jsonl") >= 5.0);
    assert_eq!(exported(&s, "jsonl"), 5.0);
    assert_eq!(reloads(&s, "success"), 0.0);

    // New flow file (CSV), alert file and flow timeout: all applied
    // without detaching or resetting counters.
    let before = s.sum("nta_packets_total", &[]);
    write(
        &second,
        &format!(
            "idle_timeout = \"2s\"\n[alerts]\nfile = \"{}\"\n",
            alerts.display()
        ),
    );
    agent.signal(libc::SIGHUP);
    agent.scrape_until(|s| reloads(s, "success") >= 1.0);
    send_frames(
        ns.name(),
        &veth.inner,
        &finished_connections(43000..43004),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = agent.scrape_until(|s| exported(s, "csv") >= 4.0);
    assert_eq!(exported(&s, "csv"), 4.0);
    assert_eq!(exported(&s, "jsonl"), 5.0, "the old exporter is gone");
    assert_eq!(s.sum("nta_packets_total", &[]), before + 12.0);
    assert!(xdp_attached(&veth.outer));
    assert!(alerts.exists(), "the new alert file is open");

    // The retired JSON lines file is complete: five whole documents.
    let text = std::fs::read_to_string(&first).unwrap_or_else(|e| panic!("{e}"));
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect();
    assert_eq!(docs.len(), 5);
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    let csv = std::fs::read_to_string(&second).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(csv.lines().count(), 1 + 4, "header and four flows:\n{csv}");
    assert!(csv.lines().skip(1).all(|l| l.contains(",443,")), "{csv}");
}

#[test]
fn a_plain_health_listener_answers_probes_while_metrics_want_a_password() {
    if !privileged("a_plain_health_listener_answers_probes_while_metrics_want_a_password") {
        return;
    }
    let (_ns, veth) = lab("ntpl");
    let dir = TempDir::new("health-listen");
    let web = dir.join("web.yml");
    let hash = bcrypt::hash("probe-secret", 4).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (main, plain) = (common::free_port(), common::free_port());
    let child = Command::new(NTA)
        .args(["run", "--iface", &veth.outer])
        .args(["--listen", &main.to_string()])
        .args(["--health-listen", &plain.to_string()])
        .arg("--web-config-file")
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut agent = Agent {
        child,
        addr: main,
        netns: None,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(plain, "/readyz").is_err() {
        assert!(
            Instant::now() < deadline,
            "never ready: {}",
            stderr_of(&mut agent.child)
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(plain, "/readyz").ok().as_deref(), Some("ready\n"));
    assert_eq!(http_get(plain, "/healthz").ok().as_deref(), Some("ok\n"));
    let status = |addr, path| nta_lab::scrape::http_status(addr, path).map(|a| a.0).ok();
    assert_eq!(status(plain, "/metrics"), Some(404), "only health there");
    assert_eq!(status(main, "/metrics"), Some(401));
    assert_eq!(
        status(main, "/readyz"),
        Some(401),
        "behind the password on the main one"
    );
}

#[test]
fn learned_profiles_are_kept_across_a_restart() {
    if !privileged("learned_profiles_are_kept_across_a_restart") {
        return;
    }
    let (ns, veth) = lab("ntbs");
    let dir = TempDir::new("baseline-state");
    let state = dir.join("baseline.state");
    let config = dir.join("nta.toml");
    std::fs::write(
        &config,
        format!(
            "[detect.baseline]\nwarmup = \"2s\"\nsave_interval = \"1s\"\nstate_file = {:?}\n",
            state.to_str().unwrap_or_default()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let args = [
        "--iface",
        &veth.outer,
        "--config",
        config.to_str().unwrap_or_default(),
    ];
    let count = |s: &nta_lab::scrape::Samples, op: &str, result: &str| {
        s.get(
            "nta_baseline_state_total",
            &[("op", op), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    // First start: nothing learned yet.
    let mut agent = Agent::start(&args);
    let s = agent.scrape_until(|s| count(s, "load", "missing") == 1.0);
    assert_eq!(count(&s, "load", "missing"), 1.0);
    // Traffic for a few seconds: profiles warm up and are saved.
    let frames: Vec<Vec<u8>> = protocol_mix().iter().map(|m| m.frame.clone()).collect();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        send_frames(ns.name(), &veth.inner, &frames, 5).unwrap_or_else(|e| panic!("{e}"));
        thread::sleep(Duration::from_millis(100));
    }
    let s = agent.scrape_until(|s| count(s, "save", "ok") >= 1.0);
    assert!(count(&s, "save", "ok") >= 1.0, "no periodic save");
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    let saved = nta::pipeline::detect::profile::state::read(&state)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    assert!(
        saved
            .iter()
            .any(|(k, _)| matches!(k, nta::pipeline::detect::profile::KeyName::Interface(_))),
        "{saved:?}"
    );
    // Restarted, it reads them back.
    let mut agent = Agent::start(&args);
    let s = agent.scrape_until(|s| count(s, "load", "ok") == 1.0);
    assert_eq!(count(&s, "load", "ok"), 1.0);
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    // A file that is not a state file: a warning, a count, and nta runs.
    std::fs::write(&state, b"garbage").unwrap_or_else(|e| panic!("{e}"));
    let agent = Agent::start(&args);
    let s = agent.scrape_until(|s| count(s, "load", "foreign") == 1.0);
    assert_eq!(count(&s, "load", "foreign"), 1.0);
    assert!(agent.get("/healthz").is_ok());
}
