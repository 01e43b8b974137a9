//! `nta analyze` on capture files made here: per-class counts against
//! tshark's dissection of the same file, class by class; pcapng and gzip;
//! several files merged by time; truncated and corrupt files; unknown link
//! types; flows, alerts and the HTML report.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use nta_lab::{
    cases::{Case, protocol_cases, truncation_cases},
    programs::{available_for, require},
};
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
};
use serde_json::Value;
mod common;

use common::{NTA, TempDir};

/// The corpus, each case a few times, 1 ms apart from 2026-01-01.
fn corpus() -> Vec<Case> {
    let mut all = protocol_cases();
    all.extend(truncation_cases());
    all
}

const T0: u64 = 1_767_225_600;

fn write_pcap(path: &Path, frames: &[Frame], link: DataLink) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let header = PcapHeader {
        datalink: link,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap_or_else(|e| panic!("{e}"));
    for (ts_ns, data, orig) in frames {
        let p = PcapPacket::new(Duration::from_nanos(*ts_ns), *orig, data);
        w.write_packet(&p).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// (timestamp, frame, original length) for the corpus, case i repeated
/// 1 + i % 3 times.
/// (timestamp ns, frame bytes, original length).
type Frame = (u64, Vec<u8>, u32);

fn frames() -> (Vec<Frame>, Vec<&'static str>) {
    let mut out = Vec::new();
    let mut classes = Vec::new();
    let mut t = T0 * 1_000_000_000;
    for (i, c) in corpus().into_iter().enumerate() {
        for _ in 0..=(i % 3) {
            t += 1_000_000;
            out.push((t, c.frame.clone(), c.frame.len() as u32));
            classes.push(c.class);
        }
    }
    (out, classes)
}

fn analyze(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(NTA)
        .arg("analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let json = if args.contains(&"--json") && out.status.success() {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
    } else {
        Value::Null
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), json, text)
}

fn classes_of(json: &Value) -> BTreeMap<String, u64> {
    json["classes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v["packets"].as_u64().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn tshark_available() -> bool {
    available_for("the tshark comparison", "tshark")
}

/// IPv6 extension header layers in tshark's protocol list.
const IPV6_EXT: [&str; 5] = [
    "ipv6.hopopts",
    "ipv6.routing",
    "ipv6.fraghdr",
    "ipv6.dstopts",
    "ah",
];
/// The layers nta parses; a dissector error above them (DNS, LLDP...) is
/// not nta's business.
const NTA_LAYERS: [&str; 15] = [
    "eth",
    "ethertype",
    "vlan",
    "ieee8021ad",
    "data",
    "ip",
    "ipv6",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "sctp",
    "gre",
    "ah",
    "ipv6.hopopts",
];

fn nta_layer(l: &str) -> bool {
    NTA_LAYERS.contains(&l) || l.starts_with("ipv6.")
}

/// nta's class for a frame, from tshark's dissection. Where nta's rules
/// differ from what tshark shows, the rule is nta's own and documented in
/// the README:
/// - nta reads nothing above L4 and no payload of non-IP protocols: a
///   broken DNS, LLDP or MPLS payload does not make a frame malformed;
/// - more than two VLAN tags (802.1Q or 802.1ad) is non_ip;
/// - more than six IPv6 extension headers is malformed (ipv6_ext_limit:
///   the XDP program's walk is bounded);
/// - checksums are not verified (tshark checks a few, e.g. IGMP's);
/// - a non-first fragment is fragment, a first fragment is its L4;
/// - a first fragment too short for its TCP header (tshark dissects what
///   is there, without a header length) is malformed: tiny_fragment;
/// - a later TCP fragment at offset 8 or 16 bytes (inside the TCP header
///   the first fragment carried) is malformed: overlapping_fragment.
fn tshark_class(
    protocols: &str,
    malformed: bool,
    frag_v4: u32,
    frag_v6: u32,
    evasive_fragment: bool,
) -> &'static str {
    let layers: Vec<&str> = protocols.split(':').collect();
    let tags = layers
        .iter()
        .filter(|l| **l == "vlan" || **l == "ieee8021ad")
        .count();
    let last = layers.last().copied().unwrap_or_default();
    let broken = malformed && nta_layer(last);
    let ip = layers.iter().position(|l| *l == "ip" || *l == "ipv6");
    if tags > 2 {
        return "non_ip";
    }
    if broken && ip.is_none() && !layers.contains(&"arp") {
        return "malformed";
    }
    if layers.contains(&"arp") {
        return "arp";
    }
    let Some(ip) = ip else {
        return "non_ip";
    };
    if broken || evasive_fragment || layers.iter().filter(|l| IPV6_EXT.contains(l)).count() > 6 {
        return "malformed";
    }
    if frag_v4 > 0 || frag_v6 > 0 {
        return "fragment";
    }
    for l in &layers[ip + 1..] {
        match *l {
            "tcp" => return "tcp",
            "udp" => return "udp",
            "icmp" => return "icmp",
            "icmpv6" => return "icmpv6",
            "sctp" => return "sctp",
            "gre" => return "gre",
            _ => {}
        }
    }
    "other_ip"
}

fn tshark_classes(path: &Path) -> Vec<&'static str> {
    let out = require("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
            "-e",
            "frame.protocols",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
            "-e",
            "_ws.expert.message",
            "-e",
            "ip.frag_offset",
            "-e",
            "ipv6.fraghdr.offset",
            "-e",
            "vlan.id",
            "-e",
            "ip.flags.mf",
            "-e",
            "ipv6.fraghdr.more",
            "-e",
            "tcp.hdr_len",
            "-e",
            "ip.proto",
            "-e",
            "ipv6.fraghdr.nxt",
        ])
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e}"));
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let protocols = f.first().copied().unwrap_or_default();
            // tshark's "error" severity means the frame did not dissect,
            // except for checksum complaints (nta checks no checksums).
            let severities = f.get(2).copied().unwrap_or_default().split(';');
            let messages = f.get(3).copied().unwrap_or_default().split(';');
            let error = severities.zip(messages).any(|(s, m)| {
                s.parse::<u64>().unwrap_or(0) >= 8_388_608 && !m.contains("checksum")
            });
            let malformed = !f.get(1).copied().unwrap_or_default().is_empty() || error;
            let first = |s: Option<&&str>| {
                s.and_then(|s| s.split(';').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            };
            let more_fragments = first(f.get(7)) == 1 || first(f.get(8)) == 1;
            let tcp_header_read = !f.get(9).copied().unwrap_or_default().is_empty();
            let tiny = more_fragments
                && first(f.get(4)) == 0
                && first(f.get(5)) == 0
                && protocols.ends_with(":tcp")
                && !tcp_header_read;
            // Offsets in 8-byte units, as the headers hold them.
            let tcp_offset = if first(f.get(10)) == 6 {
                first(f.get(4))
            } else if first(f.get(11)) == 6 {
                first(f.get(5))
            } else {
                0
            };
            let overlapping = (1..=2).contains(&tcp_offset);
            tshark_class(
                protocols,
                malformed,
                first(f.get(4)),
                first(f.get(5)),
                tiny || overlapping,
            )
        })
        .collect()
}

#[test]
fn per_class_counts_match_tshark_class_by_class() {
    if !tshark_available() {
        return;
    }
    let dir = TempDir::new("analyze-tshark");
    let path = dir.join("corpus.pcap");
    let (frames, expected) = frames();
    write_pcap(&path, &frames, DataLink::ETHERNET);
    let (ok, json, text) = analyze(&["--json", path.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    let nta = classes_of(&json);
    // The corpus's own expectations (the kernel tests hold the XDP
    // program to the same ones).
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for c in &expected {
        *want.entry(c.to_string()).or_default() += 1;
    }
    assert_eq!(nta, want, "nta analyze against the corpus's expectations");

    let ts = tshark_classes(&path);
    assert_eq!(ts.len(), frames.len(), "tshark read every frame");
    let mut by_tshark: BTreeMap<String, u64> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for (i, (t, e)) in ts.iter().zip(&expected).enumerate() {
        *by_tshark.entry(t.to_string()).or_default() += 1;
        if t != e {
            disagreements.push(format!("frame {}: tshark {t}, nta {e}", i + 1));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} frames classed differently:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert_eq!(nta, by_tshark);
}

#[test]
fn pcapng_gzip_and_several_files_merge_in_time_order() {
    let dir = TempDir::new("analyze-formats");
    let (frames, _) = frames();
    let (a, b): (Vec<_>, Vec<_>) = frames
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let a: Vec<_> = a.into_iter().map(|x| x.1).collect();
    let b: Vec<_> = b.into_iter().map(|x| x.1).collect();
    let pa = dir.join("a.pcap");
    let pb = dir.join("b.pcap");
    write_pcap(&pa, &a, DataLink::ETHERNET);
    write_pcap(&pb, &b, DataLink::ETHERNET);
    // b as gzip, a as pcapng (converted by editcap, as users would have).
    let gz = dir.join("b.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap_or_else(|e| panic!("{e}")),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&pb).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    enc.finish().unwrap_or_else(|e| panic!("{e}"));
    let whole = dir.join("whole.pcap");
    write_pcap(&whole, &frames, DataLink::ETHERNET);
    let (ok, one, text) = analyze(&["--json", whole.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    let mut inputs: Vec<PathBuf> = vec![pa.clone(), gz.clone()];
    if available_for("reading pcapng", "editcap") {
        let ng = dir.join("a.pcapng");
        let st = require("editcap")
            .args(["-F", "pcapng"])
            .arg(&pa)
            .arg(&ng)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(st.success());
        inputs[0] = ng;
    }
    let args: Vec<&str> = std::iter::once("--json")
        .chain(inputs.iter().map(|p| p.to_str().unwrap_or_default()))
        .collect();
    let (ok, two, text) = analyze(&args);
    assert!(ok, "{text}");
    assert_eq!(classes_of(&two), classes_of(&one));
    assert_eq!(two["frames"], one["frames"]);
    assert_eq!(two["bytes"], one["bytes"]);
    assert_eq!(two["first_ns"], one["first_ns"]);
    assert_eq!(two["last_ns"], one["last_ns"]);
    assert_eq!(
        two["flows"], one["flows"],
        "merged in time order, flows are the same"
    );
    assert_eq!(
        two["first_ns"].as_u64(),
        Some(T0 * 1_000_000_000 + 1_000_000)
    );
}

#[test]
fn truncated_and_corrupt_files_count_what_precedes_the_damage() {
    let dir = TempDir::new("analyze-damage");
    let (frames, _) = frames();
    let good = dir.join("good.pcap");
    write_pcap(&good, &frames[..100], DataLink::ETHERNET);
    let bytes = std::fs::read(&good).unwrap_or_else(|e| panic!("{e}"));
    // Cut in the middle of the 51st packet's data.
    let mut offset = 24;
    for (_, data, _) in &frames[..50] {
        offset += 16 + data.len();
    }
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..offset + 20]).unwrap_or_else(|e| panic!("{e}"));
    let (ok, json, text) = analyze(&["--json", cut.to_str().unwrap_or_default()]);
    assert!(ok, "some packets were read, so this is no failure: {text}");
    assert_eq!(json["frames"], 50);
    let d = &json["damage"][0];
    assert_eq!(d["offset"].as_u64(), Some(offset as u64));
    assert!(
        d["why"].as_str().unwrap_or_default().contains("truncated"),
        "{d}"
    );
    // The text summary says so too.
    let (_, _, text) = analyze(&[cut.to_str().unwrap_or_default()]);
    assert!(
        text.contains(&format!("stopped at byte {offset}")),
        "{text}"
    );

    // A record header claiming a huge packet: reading stops there.
    let mut bad = bytes[..offset].to_vec();
    bad.extend_from_slice(&[0xff; 16]);
    bad.extend_from_slice(&[0u8; 64]);
    let corrupt = dir.join("corrupt.pcap");
    std::fs::write(&corrupt, &bad).unwrap_or_else(|e| panic!("{e}"));
    let (ok, json, text) = analyze(&["--json", corrupt.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    assert_eq!(json["frames"], 50);
    assert_eq!(json["damage"][0]["offset"].as_u64(), Some(offset as u64));

    // Nothing readable at all: exit non-zero with the reason.
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all").unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, text) = analyze(&[junk.to_str().unwrap_or_default()]);
    assert!(!ok);
    assert!(text.contains("not a pcap or pcapng file"), "{text}");
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, text) = analyze(&[empty.to_str().unwrap_or_default()]);
    assert!(!ok);
    assert!(text.contains("empty file"), "{text}");
    // A bad file next to a good one: the good one is analysed.
    let (ok, json, text) = analyze(&[
        "--json",
        junk.to_str().unwrap_or_default(),
        good.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "{text}");
    assert_eq!(json["frames"], 100);
}

#[test]
fn cooked_captures_count_like_ethernet_and_unknown_links_are_reported() {
    let dir = TempDir::new("analyze-links");
    let (frames, _) = frames();
    // Linux cooked (SLL): 16-byte header with the ethertype at 14.
    let sll: Vec<_> = frames
        .iter()
        .filter(|(_, f, _)| f.len() >= 14)
        .map(|(t, f, _)| {
            let mut d = vec![0u8, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0, 0, 0];
            d.extend_from_slice(&f[12..]);
            let len = d.len() as u32;
            (*t, d, len)
        })
        .collect();
    let eth: Vec<_> = frames
        .iter()
        .filter(|(_, f, _)| f.len() >= 14)
        .cloned()
        .collect();
    let p_sll = dir.join("sll.pcap");
    let p_eth = dir.join("eth.pcap");
    write_pcap(&p_sll, &sll, DataLink::LINUX_SLL);
    write_pcap(&p_eth, &eth, DataLink::ETHERNET);
    let (ok, a, text) = analyze(&["--json", p_sll.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    let (ok, b, text) = analyze(&["--json", p_eth.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    assert_eq!(classes_of(&a), classes_of(&b));

    let p_wifi = dir.join("wifi.pcap");
    write_pcap(&p_wifi, &eth[..10], DataLink::IEEE802_11);
    let (ok, j, text) = analyze(&["--json", p_wifi.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    assert_eq!(j["frames"], 0);
    let unknown = j["unknown_link_types"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        unknown.values().filter_map(Value::as_u64).sum::<u64>(),
        10,
        "{j}"
    );
}

#[test]
fn flows_alerts_and_report_from_a_capture_with_a_scan() {
    let dir = TempDir::new("analyze-outputs");
    // A SYN scan of 200 ports, then quiet traffic, from the lab corpus's
    // SYN frame with the destination port rewritten.
    let syn = protocol_cases()
        .into_iter()
        .find(|c| c.name == "ipv4-tcp-syn")
        .unwrap_or_else(|| panic!("no SYN case"))
        .frame;
    let mut frames = Vec::new();
    let mut t = T0 * 1_000_000_000;
    for port in 1..=200u16 {
        let mut f = syn.clone();
        // Ethernet 14 + IPv4 20: TCP destination port at 36.
        f[36..38].copy_from_slice(&port.to_be_bytes());
        t += 2_000_000;
        let len = f.len() as u32;
        frames.push((t, f, len));
    }
    let path = dir.join("scan.pcap");
    write_pcap(&path, &frames, DataLink::ETHERNET);
    let flows = dir.join("flows.jsonl");
    let alerts = dir.join("alerts.jsonl");
    let report = dir.join("report");
    let (ok, json, text) = analyze(&[
        "--json",
        "--flows",
        flows.to_str().unwrap_or_default(),
        "--alerts",
        alerts.to_str().unwrap_or_default(),
        "--report",
        report.to_str().unwrap_or_default(),
        path.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "{text}");
    assert_eq!(json["flows"], 200);
    let flow_lines = std::fs::read_to_string(&flows).unwrap_or_default();
    assert_eq!(flow_lines.lines().count(), 200);
    let incidents = json["incidents"].as_array().cloned().unwrap_or_default();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["detector"], "port_scan");
    // The 50th probe crossed the threshold: 50 × 2 ms after the start.
    assert_eq!(
        incidents[0]["start_ns"].as_u64(),
        Some(T0 * 1_000_000_000 + 50 * 2_000_000)
    );
    let alert_lines: Vec<Value> = std::fs::read_to_string(&alerts)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(
        alert_lines
            .first()
            .map(|a| a["nta"]["alert"]["state"].clone()),
        Some("start".into())
    );
    assert_eq!(
        alert_lines
            .last()
            .map(|a| a["nta"]["alert"]["state"].clone()),
        Some("end".into())
    );
    // Alert times are the packets' own times.
    assert_eq!(
        alert_lines[0]["@timestamp"],
        "2026-01-01T00:00:00.100000000Z"
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap_or_default();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.matches("<svg").count() >= 8, "charts in the page");
    assert!(
        html.contains("port_scan start from"),
        "the incident is listed"
    );
    assert!(!html.contains("src=\"http"), "self-contained");
}

/// pcapng by hand: a section, `interfaces` Ethernet interface
/// descriptions, then one packet on the last of them. (A writer crate
/// refuses what this test needs: thousands of interfaces.)
fn pcapng_with_interfaces(interfaces: u32, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    for _ in 0..interfaces {
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&65535u32.to_le_bytes());
        block(&mut out, 1, &idb);
    }
    let mut epb = Vec::new();
    epb.extend_from_slice(&(interfaces - 1).to_le_bytes());
    epb.extend_from_slice(&0u32.to_le_bytes());
    epb.extend_from_slice(&1_000_000u32.to_le_bytes());
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(frame);
    epb.resize(epb.len().div_ceil(4) * 4, 0);
    block(&mut out, 6, &epb);
    out
}

#[test]
fn a_pcapng_with_too_many_interfaces_is_damage_not_memory() {
    let dir = TempDir::new("analyze-interfaces");
    let syn = protocol_cases()
        .into_iter()
        .find(|c| c.name == "ipv4-tcp-syn")
        .unwrap_or_else(|| panic!("no SYN case"))
        .frame;
    let fine = dir.join("fine.pcapng");
    std::fs::write(&fine, pcapng_with_interfaces(4096, &syn)).unwrap_or_else(|e| panic!("{e}"));
    let (ok, json, text) = analyze(&["--json", fine.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    assert_eq!(json["frames"], 1, "{json}");
    let many = dir.join("many.pcapng");
    std::fs::write(&many, pcapng_with_interfaces(5000, &syn)).unwrap_or_else(|e| panic!("{e}"));
    // Nothing before the damage to count: a clear error, non-zero exit.
    let (ok, _, text) = analyze(&["--json", many.to_str().unwrap_or_default()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("more than 4096 interfaces in one section"),
        "{text}"
    );
}

#[test]
fn a_scan_behind_seven_extension_headers_is_an_evasion_incident() {
    let dir = TempDir::new("analyze-evasion");
    // 30 SYNs a second for 2 s, each to another port, each behind seven
    // Destination Options headers: ports hidden, so no port_scan; the
    // frames themselves are the finding.
    let mut frames = Vec::new();
    let mut t = T0 * 1_000_000_000;
    for port in 0..60u16 {
        let f = nta_lab::frames::FrameSpec::ipv6(nta_lab::frames::L4::Tcp {
            sport: 40000,
            dport: 1000 + port,
            flags: 0x02,
        })
        .with_ipv6(|h| h.ext = vec![nta_lab::frames::Ext::DestOpts; 7])
        .build();
        t += 1_000_000_000 / 30;
        let len = f.len() as u32;
        frames.push((t, f, len));
    }
    let path = dir.join("evasion.pcap");
    write_pcap(&path, &frames, DataLink::ETHERNET);
    let (ok, json, text) = analyze(&["--json", path.to_str().unwrap_or_default()]);
    assert!(ok, "{text}");
    assert_eq!(json["parse_errors"]["ipv6_ext_limit"], 60, "{json}");
    let detectors: Vec<String> = json["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["detector"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(detectors, ["evasion"], "{json}");
}

mod robustness {
    use nta::offline::{AnalyzeOptions, analyze as run_analysis};
    use proptest::prelude::*;

    use super::*;

    fn options(path: &Path) -> AnalyzeOptions {
        AnalyzeOptions {
            files: vec![path.to_path_buf()],
            flow_files: vec![],
            alerts: None,
            detect: Default::default(),
            flow: nta::pipeline::flow::FlowConfig {
                idle_timeout_ns: 15_000_000_000,
                active_timeout_ns: 60_000_000_000,
                capacity: 10_000,
            },
            progress: None,
            baseline_in: None,
            baseline_out: None,
            app: agent_common::app::select::ALL,
            dns_ports: agent_common::config::DEFAULT_DNS_PORTS,
            tls_log: None,
            dns_log: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any corruption of a valid capture: never a panic, never more
        /// frames than were written, and damage reported when reading
        /// stopped early.
        #[test]
        fn corrupted_captures_never_panic(
            flips in proptest::collection::vec((0usize..4000, any::<u8>()), 1..8),
            cut in 0usize..5000,
        ) {
            let dir = TempDir::new("analyze-fuzz");
            let (frames, _) = frames();
            let good = dir.join("g.pcap");
            write_pcap(&good, &frames[..40], DataLink::ETHERNET);
            let mut bytes = std::fs::read(&good).unwrap_or_default();
            for (at, v) in &flips {
                if let Some(b) = bytes.get_mut(*at) {
                    *b = *v;
                }
            }
            bytes.truncate(cut.max(1));
            let bad = dir.join("b.pcap");
            std::fs::write(&bad, &bytes).unwrap_or_else(|e| panic!("{e}"));
            if let Ok(a) = run_analysis(options(&bad)) {
                // Every record needs its 16-byte header after the 24-byte
                // file header.
                let most = (bytes.len().saturating_sub(24) / 16) as u64;
                prop_assert!(a.frames <= most, "{} frames from {} bytes", a.frames, bytes.len());
                let read: u64 = a.files.iter().map(|f| f.packets).sum();
                let skipped: u64 = a.unknown_link_types.values().sum();
                prop_assert_eq!(read, a.frames + skipped);
                let classes: u64 = a.classes.values().map(|c| c.packets).sum();
                prop_assert_eq!(classes, a.frames, "every frame in exactly one class");
            }
        }
    }
}

/// UDP from the lab corpus to one host, `per_second` evenly for `seconds`
/// from `start_s` after T0.
fn udp_frames(start_s: u64, seconds: u64, per_second: u64) -> Vec<Frame> {
    let udp = protocol_cases()
        .into_iter()
        .find(|c| c.name == "ipv4-udp")
        .unwrap_or_else(|| panic!("no UDP case"))
        .frame;
    let len = udp.len() as u32;
    (0..seconds * per_second)
        .map(|i| {
            let t = (T0 + start_s) * 1_000_000_000 + i * (1_000_000_000 / per_second);
            (t, udp.clone(), len)
        })
        .collect()
}

#[test]
fn captures_teach_learned_profiles_that_a_later_analysis_starts_from() {
    let dir = TempDir::new("analyze-baseline");
    let teach = dir.join("teach.pcap");
    let surge = dir.join("surge.pcap");
    let state = dir.join("baseline.state");
    // Two minutes of a quiet host (50 pps), then a capture of the same
    // host at 2000 pps: forty times its usual, far below any flood.
    write_pcap(&teach, &udp_frames(0, 120, 50), DataLink::ETHERNET);
    write_pcap(&surge, &udp_frames(1000, 4, 2000), DataLink::ETHERNET);
    let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
    let (ok, json, text) = analyze(&["--json", "--baseline-out", &path(&state), &path(&teach)]);
    assert!(ok, "{text}");
    assert_eq!(
        json["incidents"].as_array().map(Vec::len),
        Some(0),
        "{json}"
    );
    assert!(
        std::fs::metadata(&state).is_ok_and(|m| m.len() > 0),
        "{text}"
    );

    let baseline = |json: &Value| -> Vec<Value> {
        json["incidents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i["detector"] == "baseline")
            .collect()
    };
    // Taught: the surge is off the host's profile, and the summary says
    // which feature and by how much.
    let (ok, json, text) = analyze(&["--json", "--baseline-in", &path(&state), &path(&surge)]);
    assert!(ok, "{text}");
    let found = baseline(&json);
    assert!(!found.is_empty(), "{json}");
    let summary = found[0]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("packets per second 2000 (usual 50"),
        "{summary}"
    );
    // Untaught: the same capture is only warm-up.
    let (ok, json, text) = analyze(&["--json", &path(&surge)]);
    assert!(ok, "{text}");
    assert!(baseline(&json).is_empty(), "{json}");
    // A state file that is not one is warned about, and the analysis
    // runs unlearned.
    std::fs::write(&state, b"not a state file").unwrap_or_else(|e| panic!("{e}"));
    let (ok, json, text) = analyze(&["--json", "--baseline-in", &path(&state), &path(&surge)]);
    assert!(ok, "{text}");
    assert!(text.contains("not an nta baseline state file"), "{text}");
    assert!(baseline(&json).is_empty(), "{json}");
}

/// A TLS handshake and DNS transactions in a capture: the report, the
/// terminal summary and `--json` name the server names, versions, DNS
/// names and response codes.
#[test]
fn the_report_names_servers_versions_and_dns_answers() {
    use nta_lab::frames::{FrameSpec, L4};
    let dir = TempDir::new("analyze-names");
    let mut t = T0 * 1_000_000_000;
    let mut frames = Vec::new();
    let mut push = |f: Vec<u8>, frames: &mut Vec<Frame>| {
        t += 1_000_000;
        let len = f.len() as u32;
        frames.push((t, f, len));
    };
    let hello = nta_lab::tls::browser_like("shop.example").record();
    push(
        FrameSpec::ipv4(L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: 0x18,
        })
        .with_tcp_seq(1)
        .with_payload_bytes(&hello)
        .build(),
        &mut frames,
    );
    let dns = |sport: u16, dport: u16, payload: Vec<u8>| {
        let spec = FrameSpec::ipv4(L4::Udp { sport, dport }).with_payload_bytes(&payload);
        if sport == 53 {
            spec.with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
                .build()
        } else {
            spec.build()
        }
    };
    for (i, name) in ["a.example", "a.example", "gone.example"]
        .iter()
        .enumerate()
    {
        let id = i as u16 + 1;
        let port = 41000 + id;
        let rcode = if name.starts_with("gone") { 3 } else { 0 };
        let answers = if rcode == 0 {
            vec![(nta_lab::dns::A, vec![198, 18, 0, 5])]
        } else {
            Vec::new()
        };
        push(
            dns(port, 53, nta_lab::dns::query(id, name, nta_lab::dns::A)),
            &mut frames,
        );
        push(
            dns(
                53,
                port,
                nta_lab::dns::response(id, name, nta_lab::dns::A, rcode, &answers),
            ),
            &mut frames,
        );
    }
    let path = dir.join("names.pcap");
    write_pcap(&path, &frames, DataLink::ETHERNET);
    let report = dir.join("report");
    let (ok, json, text) = analyze(&[
        "--json",
        "--report",
        report.to_str().unwrap_or_default(),
        path.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "{text}");
    let m = &json["metadata"];
    assert_eq!(m["tls_handshakes"], 1);
    assert_eq!(
        m["server_names"]["top"],
        serde_json::json!([["shop.example", 1]])
    );
    assert_eq!(m["dns_transactions"], 3);
    assert_eq!(
        m["dns_names"]["top"],
        serde_json::json!([["a.example", 2], ["gone.example", 1]])
    );
    assert_eq!(m["dns_response_codes"]["NXDOMAIN"], 1);
    assert_eq!(m["dns_response_codes"]["NOERROR"], 2);
    let html = std::fs::read_to_string(report.join("index.html")).unwrap_or_default();
    for cell in [
        "<td>shop.example</td><td>1</td>",
        "<td>a.example</td><td>2</td>",
        "<td>NXDOMAIN</td><td>1</td>",
        "<td>tls1.3</td><td>1</td>",
    ] {
        assert!(html.contains(cell), "{cell} not in the report");
    }
    let (_, _, summary) = analyze(&[path.to_str().unwrap_or_default()]);
    assert!(
        summary.contains("DNS transactions: 3; names: a.example (2), gone.example (1)"),
        "{summary}"
    );
}

/// DNS and TLS detectors through the incident machinery, offline: a
/// tunnel's random subdomains, a burst of NXDOMAIN answers, a TLS 1.0
/// server and a watched server name in one capture are four incidents
/// with their details in the alert file; the benign DNS beside them is
/// none.
#[test]
fn dns_and_tls_findings_are_incidents_with_details() {
    use nta_lab::frames::{FrameSpec, L4};
    let dir = TempDir::new("analyze-payload");
    let mut t = T0 * 1_000_000_000;
    let mut frames: Vec<Frame> = Vec::new();
    let mut push = |f: Vec<u8>, frames: &mut Vec<Frame>| {
        t += 2_000_000;
        let len = f.len() as u32;
        frames.push((t, f, len));
    };
    let from = |client: u8| {
        move |h: &mut nta_lab::frames::Ipv4| h.src = std::net::Ipv4Addr::new(198, 18, 0, client)
    };
    let dns = |client: u8, sport: u16, response: bool, payload: Vec<u8>| {
        let (s, d) = if response { (53, sport) } else { (sport, 53) };
        let spec = FrameSpec::ipv4(L4::Udp { sport: s, dport: d })
            .with_payload_bytes(&payload)
            .with_ipv4(from(client));
        if response {
            spec.with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
                .build()
        } else {
            spec.build()
        }
    };
    let mut exchange = |client: u8, n: u16, name: &str, rcode: u8, frames: &mut Vec<Frame>| {
        let port = 20_000 + n;
        push(
            dns(
                client,
                port,
                false,
                nta_lab::dns::query(n, name, nta_lab::dns::TXT),
            ),
            frames,
        );
        push(
            dns(
                client,
                port,
                true,
                nta_lab::dns::response(n, name, nta_lab::dns::TXT, rcode, &[]),
            ),
            frames,
        );
    };
    // A tunnel: 120 random 40-character labels under one domain.
    let mut labels = nta_lab::dns::RandomLabels::new(0x9e37_79b9_7f4a_7c15);
    for i in 0..120u16 {
        let label = labels.label(40);
        exchange(5, i, &format!("{label}.tunnel.example"), 0, &mut frames);
    }
    // DGA: 60 names answered NXDOMAIN for one client.
    for i in 0..60u16 {
        exchange(
            6,
            1000 + i,
            &format!("q{}x{}z.example", u32::from(i) * 7919, i),
            3,
            &mut frames,
        );
    }
    // Benign: 30 ordinary names answered.
    for i in 0..30u16 {
        exchange(8, 2000 + i, &format!("www{i}.shop.example"), 0, &mut frames);
    }
    // A TLS 1.0 server, and a watched server name.
    let hello = |name: &str| nta_lab::tls::browser_like(name).record();
    let mut server10 = vec![
        0x16, 0x03, 0x01, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x01,
    ];
    server10.extend([7; 32]);
    server10.extend([0, 0x00, 0x2f, 0]);
    for (port, name, answer) in [
        (40001, "legacy.example", Some(server10)),
        (40002, "c2.watched.example", None),
    ] {
        push(
            FrameSpec::ipv4(L4::Tcp {
                sport: port,
                dport: 443,
                flags: 0x18,
            })
            .with_tcp_seq(1)
            .with_payload_bytes(&hello(name))
            .build(),
            &mut frames,
        );
        if let Some(a) = answer {
            push(
                FrameSpec::ipv4(L4::Tcp {
                    sport: 443,
                    dport: port,
                    flags: 0x18,
                })
                .with_tcp_seq(9)
                .with_payload_bytes(&a)
                .with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
                .build(),
                &mut frames,
            );
        }
    }
    let path = dir.join("payload.pcap");
    write_pcap(&path, &frames, DataLink::ETHERNET);
    let config = dir.join("nta.toml");
    std::fs::write(
        &config,
        "[detect.watch]\nserver_names = [\"watched.example\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let alerts = dir.join("alerts.jsonl");
    let (ok, json, text) = analyze(&[
        "--json",
        "--config",
        config.to_str().unwrap_or_default(),
        "--alerts",
        alerts.to_str().unwrap_or_default(),
        path.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "{text}");
    let mut detectors: Vec<String> = json["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["detector"].as_str().unwrap_or_default().to_string())
        .collect();
    detectors.sort();
    assert_eq!(
        detectors,
        vec!["deprecated_tls", "dns_tunnel", "nxdomain", "watch_list"],
        "{json}"
    );
    let starts: Vec<Value> = std::fs::read_to_string(&alerts)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["nta"]["alert"]["state"] == "start")
        .collect();
    let detail = |d: &str| {
        starts
            .iter()
            .find(|a| a["rule"]["name"] == d)
            .and_then(|a| a["nta"]["alert"]["detail"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no {d} alert"))
    };
    assert!(detail("dns_tunnel").starts_with("domain tunnel.example: 100 distinct subdomains"));
    assert!(detail("nxdomain").starts_with("50 distinct names answered NXDOMAIN"));
    assert_eq!(
        detail("deprecated_tls"),
        "server legacy.example (198.18.0.2:443) negotiated TLS 1.0"
    );
    assert!(
        detail("watch_list")
            .contains("c2.watched.example matches watch-list entry watched.example")
    );
    let tunnel = starts.iter().find(|a| a["rule"]["name"] == "dns_tunnel");
    assert_eq!(
        tunnel.map(|a| a["source"]["ip"].clone()),
        Some("198.18.0.5".into())
    );
    let legacy = starts
        .iter()
        .find(|a| a["rule"]["name"] == "deprecated_tls");
    assert_eq!(
        legacy.map(|a| a["nta"]["alert"]["severity"].clone()),
        Some("low".into())
    );
}
