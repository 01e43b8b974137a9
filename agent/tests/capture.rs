//! Capture end to end: known frames through a lab veth, captured by the
//! XDP program under a filter, written as pcapng/pcap, read back by tshark
//! and capinfos. Counts, bytes, original and captured lengths and
//! timestamps must be exactly what was sent and selected.

use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use agent_common::{
    filter::{FilterInput, matches},
    parse,
};
use nta::kernel::capture::CaptureFilter;
use nta_lab::{
    frames::{FrameSpec, L4},
    mix::protocol_mix,
    privileged,
    send::send_frames,
};

use nta_lab::programs::require;
mod common;

use common::{Agent, NTA, TempDir, lab, stderr_of, syn_scan, xdp_attached};

/// tshark's view of a capture file: (frame.len, frame.cap_len, epoch ns).
fn tshark_frames(file: &Path) -> Vec<(usize, usize, u128)> {
    let out = require("tshark")
        .args(["-r"])
        .arg(file)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.time_epoch",
        ])
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("Running as user \"root\""))
        .collect();
    assert!(
        out.status.success() && warnings.is_empty(),
        "tshark: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            let (s, ns) = f
                .get(2)
                .and_then(|t| t.split_once('.'))
                .unwrap_or(("0", "0"));
            let epoch = s.parse::<u128>().unwrap_or(0) * 1_000_000_000
                + format!("{ns:0<9}")[..9].parse::<u128>().unwrap_or(0);
            (n(0), n(1), epoch)
        })
        .collect()
}

fn capinfos_clean(file: &Path) -> String {
    let out = require("capinfos")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("capinfos: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && stderr.lines().all(|l| l.contains("Running as user")),
        "capinfos {}: {stderr}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The frames the lab sends: the protocol mix plus a long UDP datagram.
fn lab_frames() -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = protocol_mix().into_iter().map(|c| c.frame).collect();
    frames.push(
        FrameSpec::ipv4(L4::Udp {
            sport: 4000,
            dport: 4001,
        })
        .with_payload(1400)
        .build(),
    );
    frames
}

fn selected(filter: &str, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let f = CaptureFilter::compile(filter).unwrap_or_else(|e| panic!("{e}"));
    frames
        .iter()
        .filter(|fr| {
            let p = parse::parse(&fr[..]);
            matches(&f.table, &FilterInput::new(&p, p.addresses(&fr[..])))
        })
        .cloned()
        .collect()
}

/// `nta capture -i OUTER ARGS`, returned once its program is attached.
fn start_capture(outer: &str, args: &[&str]) -> std::process::Child {
    let mut child = Command::new(NTA)
        .args(["capture", "-i", outer])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting nta capture: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !xdp_attached(outer) {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("nta capture exited with {s}: {}", stderr_of(&mut child));
        }
        assert!(Instant::now() < deadline, "nta capture never attached");
        thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Runs `nta capture` on the lab's outer end while `frames` go through
/// it `repeat` times, stopped with SIGINT; returns its stderr.
fn capture(
    args: &[&str],
    ns: &str,
    inner: &str,
    outer: &str,
    frames: &[Vec<u8>],
    repeat: usize,
) -> String {
    let mut child = start_capture(outer, args);
    send_frames(ns, inner, frames, repeat).unwrap_or_else(|e| panic!("{e}"));
    thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let err = stderr_of(&mut child);
    assert!(status.success(), "nta capture failed: {err}");
    assert!(!xdp_attached(outer), "detached at exit");
    err
}

#[test]
fn capture_writes_exactly_the_filtered_frames_for_tshark() {
    if !privileged("capture_writes_exactly_the_filtered_frames_for_tshark") {
        return;
    }
    let (ns, veth) = lab("ntcp");
    let dir = TempDir::new("capture");
    let file = dir.join("lab.pcapng");
    let frames = lab_frames();
    let filter = "udp or icmp or (tcp and dst port 443)";
    let want = selected(filter, &frames);
    assert!(
        want.len() >= 4 && want.len() < frames.len(),
        "{} of {}",
        want.len(),
        frames.len()
    );
    let err = capture(
        &[
            "-w",
            file.to_str().unwrap_or_default(),
            "-s",
            "128",
            "udp",
            "or",
            "icmp",
            "or",
            "(tcp",
            "and",
            "dst",
            "port",
            "443)",
        ],
        ns.name(),
        &veth.inner,
        &veth.outer,
        &frames,
        3,
    );
    assert!(
        err.contains(&format!("{} frames written", want.len() * 3)),
        "{err}"
    );
    let info = capinfos_clean(&file);
    assert!(info.contains("nanoseconds"), "{info}");
    let got = tshark_frames(&file);
    assert_eq!(got.len(), want.len() * 3, "frames");
    let mut expected: Vec<(usize, usize)> = Vec::new();
    for _ in 0..3 {
        expected.extend(want.iter().map(|f| (f.len(), f.len().min(128))));
    }
    assert_eq!(
        got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(),
        expected,
        "original and captured lengths, in order"
    );
    let bytes: usize = got.iter().map(|g| g.0).sum();
    assert_eq!(bytes, want.iter().map(Vec::len).sum::<usize>() * 3);
    assert!(
        got.windows(2).all(|w| w[0].2 <= w[1].2),
        "monotonic timestamps"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    assert!(
        got.iter().all(|g| now - g.2 < 60_000_000_000),
        "wall-clock timestamps"
    );
}

#[test]
fn capture_as_pcap_and_unfiltered_with_a_count() {
    if !privileged("capture_as_pcap_and_unfiltered_with_a_count") {
        return;
    }
    let (ns, veth) = lab("ntcq");
    let dir = TempDir::new("capture-pcap");
    let file = dir.join("lab.pcap");
    let frames = lab_frames();
    let file_arg = file.to_str().unwrap_or_default().to_string();
    let mut child = start_capture(
        &veth.outer,
        &["--mirror", "-F", "pcap", "-c", "10", "-w", &file_arg],
    );
    send_frames(ns.name(), &veth.inner, &frames, 2).unwrap_or_else(|e| panic!("{e}"));
    // -c 10 ends it on its own.
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{}", stderr_of(&mut child));
    let info = capinfos_clean(&file);
    assert!(
        info.contains("nanosecond pcap") && !info.contains("pcapng"),
        "{info}"
    );
    let got = tshark_frames(&file);
    assert_eq!(got.len(), 10);
    let lens: Vec<usize> = frames.iter().map(Vec::len).take(10).collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), lens);
    assert!(
        got.iter().all(|g| g.0 == g.1),
        "whole frames at the default snaplen"
    );
}

#[test]
fn bad_filters_and_paths_fail_clearly_before_attaching() {
    if !privileged("bad_filters_and_paths_fail_clearly_before_attaching") {
        return;
    }
    let (_ns, veth) = lab("ntcr");
    let run = |args: &[&str]| {
        let out = Command::new(NTA)
            .args(["capture", "-i", &veth.outer])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.status.success());
        assert!(!xdp_attached(&veth.outer));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&["-w", "/tmp/x.pcapng", "tcp", "port", "http"]);
    assert!(e.contains("column 10: `http` is not a port number"), "{e}");
    let e = run(&["-w", "/nonexistent-nta/x.pcapng"]);
    assert!(e.contains("/nonexistent-nta/x.pcapng"), "{e}");
    let dir = TempDir::new("capture-link");
    let link = dir.join("link.pcapng");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap_or_else(|e| panic!("{e}"));
    let e = run(&["-w", link.to_str().unwrap_or_default()]);
    assert!(e.contains("link.pcapng"), "{e}");
    assert!(
        std::fs::read_to_string("/etc/hostname").is_ok_and(|s| !s.is_empty()),
        "not followed"
    );
}

/// Capture files nta wrote into `dir`, oldest first.
fn capture_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "pcapng"));
    v.sort();
    v
}

fn udp_frames(n: u16, payload: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            FrameSpec::ipv4(L4::Udp {
                sport: 10_000 + i,
                dport: 53,
            })
            .with_payload(payload)
            .build()
        })
        .collect()
}

#[test]
fn run_captures_into_rotating_files_and_reloads_the_filter() {
    if !privileged("run_captures_into_rotating_files_and_reloads_the_filter") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let (ns, veth) = lab("ntcs");
    let tmp = TempDir::new("run-capture");
    let dir = tmp.join("pcaps");
    let cfg = tmp.join("nta.toml");
    let write_cfg = |filter: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[capture]\ndir = \"{}\"\nfilter = \"{filter}\"\nsnaplen = 128\nfile_bytes = 20000\nmax_bytes = 60000\n",
                dir.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    write_cfg("udp");
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--config",
        cfg.to_str().unwrap_or_default(),
    ]);
    let frames = udp_frames(500, 200);
    let icmp = FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }).build();
    let mut mixed = frames.clone();
    mixed.push(icmp.clone());
    send_frames(ns.name(), &veth.inner, &mixed, 1).unwrap_or_else(|e| panic!("{e}"));
    let captured = |s: &nta_lab::scrape::Samples| {
        s.get("nta_capture_frames_total", &[("interface", &veth.outer)])
            .unwrap_or(0.0)
    };
    let s = agent.scrape_until(|s| s.get("nta_capture_written_frames_total", &[]) >= Some(500.0));
    assert_eq!(captured(&s), 500.0, "udp only");
    assert_eq!(
        s.get("nta_capture_dropped_total", &[("interface", &veth.outer)]),
        Some(0.0)
    );
    assert!(
        s.get("nta_capture_files_deleted_total", &[]) >= Some(1.0),
        "the cap deleted old files"
    );
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode(&dir), 0o700);
    let files = capture_files(&dir);
    assert!(files.len() >= 2, "{files:?}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    assert!(total <= 60_000 + 20_000, "{total}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // A new filter by SIGHUP: no reattach, counters go on.
    write_cfg("icmp");
    agent.signal(libc::SIGHUP);
    agent
        .scrape_until(|s| s.get("nta_config_reloads_total", &[("result", "success")]) == Some(1.0));
    send_frames(ns.name(), &veth.inner, &mixed, 1).unwrap_or_else(|e| panic!("{e}"));
    let s = agent.scrape_until(|s| captured(s) >= 501.0);
    thread::sleep(Duration::from_millis(300));
    let s2 = agent.scrape();
    assert_eq!(captured(&s2), 501.0, "only the ICMP frame this time: {s:?}");
    assert!(xdp_attached(&veth.outer));

    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    // Every file, including the last one closed at exit, reads cleanly;
    // the newest holds the ICMP frame last.
    let files = capture_files(&dir);
    for f in &files {
        capinfos_clean(f);
    }
    let last = tshark_frames(files.last().unwrap_or_else(|| panic!("no files")));
    assert_eq!(
        last.last().map(|l| (l.0, l.1)),
        Some((icmp.len(), icmp.len()))
    );
}

#[test]
fn a_full_disk_pauses_capture_keeps_files_valid_and_the_agent_running() {
    if !privileged("a_full_disk_pauses_capture_keeps_files_valid_and_the_agent_running") {
        return;
    }
    let (ns, veth) = lab("ntcd");
    let tmp = TempDir::new("disk-full");
    let dir = tmp.join("small");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mounted = require("mount")
        // mode=0700: nta uses an existing directory only when it is its
        // own alone (a tmpfs root is 1777 otherwise).
        .args(["-t", "tmpfs", "-o", "size=96k,mode=0700", "nta-test-tmpfs"])
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("mount: {e}"));
    assert!(mounted.success(), "mounting a small tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = require("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let mut agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--capture",
        dir.to_str().unwrap_or_default(),
        "--capture-file-bytes",
        "1000000",
        "--capture-max-bytes",
        "0",
    ]);
    // ~600 frames of 700 bytes: far more than 96 KiB.
    let frames = udp_frames(600, 650);
    send_frames(ns.name(), &veth.inner, &frames, 1).unwrap_or_else(|e| panic!("{e}"));
    let s = agent.scrape_until(|s| s.get("nta_capture_write_errors_total", &[]) >= Some(1.0));
    assert!(s.get("nta_capture_write_lost_total", &[]) > Some(0.0));
    // Still serving, still counting every frame.
    send_frames(ns.name(), &veth.inner, &frames[..10], 1).unwrap_or_else(|e| panic!("{e}"));
    let s = agent.scrape_until(|s| {
        s.get(
            "nta_packets_total",
            &[("interface", veth.outer.as_str()), ("protocol", "udp")],
        ) >= Some(610.0)
    });
    assert_eq!(
        s.get(
            "nta_packets_total",
            &[("interface", veth.outer.as_str()), ("protocol", "udp")]
        ),
        Some(610.0)
    );
    assert!(agent.get("/healthz").is_ok());
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    // What was written stays readable: whole blocks only.
    let files = capture_files(&dir);
    assert!(!files.is_empty());
    let mut frames_on_disk = 0;
    for f in &files {
        capinfos_clean(f);
        frames_on_disk += tshark_frames(f).len();
    }
    assert!(
        frames_on_disk > 50 && frames_on_disk < 600,
        "{frames_on_disk}"
    );
}

#[test]
fn the_flight_recorder_writes_an_incidents_frames_and_the_alert_names_the_file() {
    if !privileged("the_flight_recorder_writes_an_incidents_frames") {
        return;
    }
    let (ns, veth) = lab("ntcf");
    let tmp = TempDir::new("flight");
    let flight = tmp.join("incidents");
    let alerts = tmp.join("alerts.jsonl");
    let agent = Agent::start(&[
        "--iface",
        &veth.outer,
        "--sample-rate",
        "1",
        "--flight-recorder",
        flight.to_str().unwrap_or_default(),
        "--flight-recorder-before",
        "5s",
        "--flight-recorder-after",
        "1s",
        "--alerts",
        alerts.to_str().unwrap_or_default(),
    ]);
    // Unrelated traffic before and during the scan: not in the file.
    let noise: Vec<Vec<u8>> = (0..20u16)
        .map(|i| {
            FrameSpec::ipv4(L4::Udp {
                sport: 5000 + i,
                dport: 53,
            })
            .with_ipv4(|h| {
                h.src = [198, 18, 0, 77].into();
                h.dst = [198, 18, 0, 99].into();
            })
            .build()
        })
        .collect();
    send_frames(ns.name(), &veth.inner, &noise, 1).unwrap_or_else(|e| panic!("{e}"));
    let scan = syn_scan([198, 18, 0, 66], [198, 18, 1, 1], 120);
    send_frames(ns.name(), &veth.inner, &scan, 1).unwrap_or_else(|e| panic!("{e}"));
    send_frames(ns.name(), &veth.inner, &noise, 1).unwrap_or_else(|e| panic!("{e}"));

    // The alert names the file; the file appears after the 1 s window.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (id, named) = loop {
        let text = std::fs::read_to_string(&alerts).unwrap_or_default();
        let start = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|d| d["nta"]["alert"]["detector"] == "port_scan");
        if let Some(d) = start {
            break (
                d["nta"]["alert"]["incident_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d["nta"]["alert"]["capture_file"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        assert!(Instant::now() < deadline, "no port scan alert: {text}");
        thread::sleep(Duration::from_millis(100));
    };
    let file = flight.join(format!("incident-{id}.pcapng"));
    assert_eq!(named, file.display().to_string());
    let s = agent.scrape_until(|s| s.get("nta_flight_recorder_files_total", &[]) >= Some(1.0));
    assert_eq!(s.get("nta_flight_recorder_frames_total", &[]), Some(120.0));
    capinfos_clean(&file);
    let out = require("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(rows.len(), 120, "every probe, no noise");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("198.18.0.66\t198.18.1.1\t")),
        "{rows:?}"
    );
    assert_eq!(
        rows.first().map(String::as_str),
        Some("198.18.0.66\t198.18.1.1\t1")
    );
}

/// Echo replies hping3 got for `count` ICMP echo requests from the
/// attacker to the victim.
fn pings_answered(lab: &nta_lab::attack::AttackLab, count: u32) -> u32 {
    let out = lab
        .attacker
        .bounded(10, "hping3")
        .unwrap_or_else(|e| panic!("{e}"))
        .arg("--icmp")
        .args([
            "-c",
            &count.to_string(),
            "-i",
            "u200000",
            nta_lab::attack::VICTIM,
        ])
        .output()
        .unwrap_or_else(|e| panic!("hping3: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find(|l| l.contains("packets received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hping3 statistics: {text}"))
}

#[test]
fn af_xdp_capture_takes_frames_and_a_stopped_or_killed_reader_never_blackholes() {
    if !privileged("af_xdp_capture") {
        return;
    }
    use std::io::BufRead as _;
    let lab = nta_lab::attack::AttackLab::new("ntcx").unwrap_or_else(|e| panic!("{e}"));
    let tmp = TempDir::new("afxdp");
    let file = tmp.join("afxdp.pcapng");
    let mut child = lab
        .victim
        .command_built(Path::new(NTA))
        .unwrap_or_else(|e| panic!("{e}"))
        .args(["capture", "--af-xdp"])
        .args(["-i", &lab.veth.outer, "-w"])
        .arg(&file)
        .arg("icmp")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("capturing on") => break,
            Some(Ok(l)) => seen.push(l),
            other => panic!("nta capture --af-xdp did not start: {other:?} {seen:?}"),
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("AF_XDP socket bound")),
        "{seen:?}"
    );
    let rest = thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
    let pid = child.id() as i32;

    // Reader alive: the echo requests go to the socket, not the stack.
    assert_eq!(pings_answered(&lab, 3), 0, "captured, not answered");
    // Reader stopped: after its heartbeat goes stale (1 s) the program
    // passes frames on again.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        pings_answered(&lab, 3),
        3,
        "a stopped reader must not swallow traffic"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    thread::sleep(Duration::from_millis(600));
    assert_eq!(pings_answered(&lab, 3), 0, "captured again");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    assert!(child.wait().is_ok_and(|s| s.success()));
    let summary = rest.join().unwrap_or_default();
    assert!(
        summary.iter().any(|l| l.contains("6 frames written")),
        "{summary:?}"
    );
    let got = tshark_frames(&file);
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|g| g.0 == g.1 && g.0 >= 42), "{got:?}");
    assert!(got.windows(2).all(|w| w[0].2 <= w[1].2));

    // Killed: the link goes with the process, traffic flows.
    let mut child = lab
        .victim
        .command_built(Path::new(NTA))
        .unwrap_or_else(|e| panic!("{e}"))
        .args(["capture", "--af-xdp"])
        .args(["-i", &lab.veth.outer, "-w"])
        .arg(tmp.join("killed.pcapng"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let started = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("capturing on"));
    assert!(started);
    assert_eq!(pings_answered(&lab, 2), 0);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        pings_answered(&lab, 3),
        3,
        "nothing left attached after SIGKILL"
    );
}

#[test]
fn run_captures_through_af_xdp_with_ring_statistics_as_metrics() {
    if !privileged("run_captures_through_af_xdp") {
        return;
    }
    let lab = nta_lab::attack::AttackLab::new("ntcy").unwrap_or_else(|e| panic!("{e}"));
    let tmp = TempDir::new("run-afxdp");
    let dir = tmp.join("pcaps");
    let agent = Agent::start_in(
        &lab.victim,
        &[
            "--iface",
            &lab.veth.outer,
            "--capture",
            dir.to_str().unwrap_or_default(),
            "--capture-af-xdp",
            "--capture-filter",
            "icmp",
        ],
    );
    // Sockets bound and attached: no thread keeps a capability (the
    // re-attach helper keeps CAP_NET_ADMIN); AF_XDP needed CAP_NET_RAW
    // only to bind.
    let caps = common::thread_caps(agent.child.id());
    assert!(
        !caps.is_empty() && caps.iter().all(|&c| c == (0, 0, 0, 0)),
        "{caps:x?}"
    );
    let s = agent.scrape();
    let label = [("interface", lab.veth.outer.as_str()), ("queue", "0")];
    assert_eq!(s.get("nta_afxdp_rx_dropped_total", &label), Some(0.0));
    assert_eq!(s.get("nta_afxdp_rx_ring_full_total", &label), Some(0.0));
    assert_eq!(
        pings_answered(&lab, 4),
        0,
        "captured through AF_XDP, not answered"
    );
    let s = agent.scrape_until(|s| s.get("nta_capture_written_frames_total", &[]) >= Some(4.0));
    assert_eq!(s.get("nta_capture_written_frames_total", &[]), Some(4.0));
    assert_eq!(
        s.get(
            "nta_capture_frames_total",
            &[("interface", lab.veth.outer.as_str())]
        ),
        Some(4.0),
        "the kernel counts what it redirected"
    );
    // ARP (not selected) still reaches the stack: hping3 resolved the
    // victim, or it would have sent nothing.
    assert!(s.sum("nta_packets_total", &[("protocol", "arp")]) >= 1.0);
}
