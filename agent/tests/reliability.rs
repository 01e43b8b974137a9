//! What a sensor must survive, in lab namespaces: its consumer stalled
//! under load, SIGKILL under traffic and a restart, the interface going
//! down and up, and a storm of concurrent scrapes.

use std::{
    os::unix::fs::MetadataExt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nta_lab::{NetNs, mix::protocol_mix, privileged, scrape::http_get, send::send_paced};

mod common;

use common::{Agent, children, lab, thread_caps, thread_ids, xdp_attached};

/// These tests time the agent under load on 2 CPUs: one at a time, so a
/// stalled agent in one does not starve the scrapes of another.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn frames() -> Vec<Vec<u8>> {
    protocol_mix().iter().map(|m| m.frame.clone()).collect()
}

/// Frames the interface (in this namespace) received.
fn rx_packets(iface: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/rx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rx counter for {iface}"))
}

/// Paced traffic from the namespace until the returned flag is set.
fn traffic(ns: &str, iface: &str, pps: u32) -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ns, iface, s) = (ns.to_string(), iface.to_string(), stop.clone());
    let h = thread::spawn(move || {
        let mut sent = 0;
        while !s.load(Ordering::Relaxed) {
            sent += send_paced(
                &ns,
                &iface,
                &frames(),
                pps,
                Duration::from_millis(200),
                u64::MAX,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        sent
    });
    (stop, h)
}

fn counted(agent: &Agent, iface: &str) -> f64 {
    agent
        .scrape()
        .sum("nta_packets_total", &[("interface", iface)])
}

/// Waits until nta has counted `want` frames on `iface` (or 10 s).
fn counted_reaches(agent: &Agent, iface: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = counted(agent, iface);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends up to `max` frames from `inner` (at 10 kpps, at most 1 s) and
/// checks that `outer` received them all and nta counted exactly those.
fn sent_and_counted_exactly(agent: &Agent, ns: &NetNs, inner: &str, outer: &str, max: u64) {
    let before = counted(agent, outer);
    let rx0 = rx_packets(outer);
    let sent = send_paced(
        ns.name(),
        inner,
        &frames(),
        10_000,
        Duration::from_secs(1),
        max,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rx_packets(outer) - rx0, sent, "received");
    let want = before + sent as f64;
    assert_eq!(counted_reaches(agent, outer, want), want, "counted");
}

/// The agent grew by less than 64 MiB.
fn assert_memory_flat(before: u64, after: u64) {
    assert!(
        after < before + (64 << 20),
        "memory grew from {} to {} MiB",
        before >> 20,
        after >> 20
    );
}

#[test]
fn a_stalled_consumer_loses_samples_visibly_and_recovers() {
    if !privileged("a_stalled_consumer_loses_samples_visibly_and_recovers") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntst");
    let i = veth.outer.as_str();
    let mut agent = Agent::start(&["--iface", i, "--sample-rate", "1", "--sample-budget", "0"]);
    let rx0 = rx_packets(i);
    let (stop, sender) = traffic(ns.name(), &veth.inner, 20_000);
    thread::sleep(Duration::from_secs(1));
    let rss_before = agent.rss_bytes();
    // Stall the whole agent for 10 s: the ring buffer fills, XDP goes on.
    agent.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_secs(10));
    agent.signal(libc::SIGCONT);
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap_or_else(|_| panic!("sender panicked"));
    let received = (rx_packets(i) - rx0) as f64;
    assert!(sent > 150_000, "too little traffic: {sent}");
    let n = counted_reaches(&agent, i, received);
    assert_eq!(n, received, "kernel counters stay exact through the stall");
    let s = agent.scrape();
    let lost = s.sum(
        "nta_samples_dropped_total",
        &[("interface", i), ("stage", "ringbuf")],
    );
    assert!(
        lost > 10_000.0,
        "a 10 s stall at 20 kpps must overflow the ring: {lost}"
    );
    // The agent is consuming again: new samples arrive after the stall.
    let samples = s.sum("nta_samples_total", &[("interface", i)]);
    let more = send_paced(
        ns.name(),
        &veth.inner,
        &frames(),
        10_000,
        Duration::from_millis(500),
        5_000,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.scrape().sum("nta_samples_total", &[("interface", i)]) < samples + more as f64
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(agent.scrape().sum("nta_samples_total", &[("interface", i)]) >= samples + more as f64);
    assert_memory_flat(rss_before, agent.rss_bytes());
}

#[test]
fn sigkill_under_traffic_then_restart_resumes_counting() {
    if !privileged("sigkill_under_traffic_then_restart_resumes_counting") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntkr");
    let i = veth.outer.as_str();
    let mut agent = Agent::start(&["--iface", i]);
    let (stop, sender) = traffic(ns.name(), &veth.inner, 10_000);
    thread::sleep(Duration::from_millis(500));
    agent.signal(libc::SIGKILL);
    agent.wait_exit();
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(i) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!xdp_attached(i), "a killed nta leaves nothing attached");
    // Restart under traffic: counting starts over from zero and is exact
    // for what arrives after the attach.
    let agent = Agent::start(&["--iface", i]);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    assert!(counted(&agent, i) > 0.0, "the restarted agent counts");
    sent_and_counted_exactly(&agent, &ns, &veth.inner, i, 5_000);
}

#[test]
fn interface_down_and_up_stays_attached_and_counting() {
    if !privileged("interface_down_and_up_stays_attached_and_counting") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntdu");
    let i = veth.outer.as_str();
    let agent = Agent::start(&["--iface", i]);
    nta_lab::netns::run("ip", &["link", "set", i, "down"]).unwrap_or_else(|e| panic!("{e}"));
    thread::sleep(Duration::from_millis(300));
    nta_lab::netns::run("ip", &["link", "set", i, "up"]).unwrap_or_else(|e| panic!("{e}"));
    // veth needs its peer up too; wait for the carrier.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/sys/class/net/{i}/operstate"))
        .map(|s| s.trim() != "up")
        .unwrap_or(true)
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(xdp_attached(i));
    let s = agent.scrape();
    assert_eq!(s.sum("nta_xdp_attached", &[("interface", i)]), 1.0);
    sent_and_counted_exactly(&agent, &ns, &veth.inner, i, 3_000);
}

#[test]
fn a_thousand_concurrent_scrapes_do_not_disturb_the_sensor() {
    if !privileged("a_thousand_concurrent_scrapes_do_not_disturb_the_sensor") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntsc");
    let i = veth.outer.as_str();
    let agent = Agent::start(&["--iface", i]);
    let rss_before = agent.rss_bytes();
    let base = counted(&agent, i);
    let rx0 = rx_packets(i);
    let (stop, sender) = traffic(ns.name(), &veth.inner, 10_000);
    let addr = agent.addr;
    let storm: Vec<_> = (0..1000)
        // The server lets a connection over its cap wait 5 s for a slot and
        // a scrape wait 10 s for a render: the clients wait longer than
        // that, so an unanswered request is the server's failure.
        .map(|_| {
            thread::spawn(move || {
                nta_lab::scrape::http_get_within(addr, "/metrics", Duration::from_secs(20)).is_ok()
            })
        })
        .collect();
    // Meanwhile a normal scrape still gets through promptly.
    let t = Instant::now();
    let s = agent.scrape();
    let took = t.elapsed();
    assert!(s.sum("nta_packets_total", &[]) > 0.0);
    let ok = storm
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    assert!(
        took < Duration::from_secs(5),
        "a scrape during the storm took {took:?}"
    );
    assert_eq!(ok, 1000, "every one of 1000 concurrent scrapes answered");
    // The packet path was not disturbed: every frame counted.
    let received = (rx_packets(i) - rx0) as f64;
    assert_eq!(counted_reaches(&agent, i, base + received), base + received);
    assert_memory_flat(rss_before, agent.rss_bytes());
}

#[test]
fn a_deleted_and_recreated_interface_is_attached_again() {
    if !privileged("a_deleted_and_recreated_interface_is_attached_again") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntre");
    let (o, p) = (veth.outer.clone(), veth.inner.clone());
    // As the least privileged nta runs: another user, no capability; the
    // helper attaches again.
    let agent = Agent::start(&["--iface", &o, "--user", "nobody"]);
    let attached = |a: &Agent| a.scrape().sum("nta_xdp_attached", &[("interface", &o)]);
    assert_eq!(attached(&agent), 1.0);
    let sent = send_paced(
        ns.name(),
        &p,
        &frames(),
        10_000,
        Duration::from_millis(300),
        1_000,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let before = counted_reaches(&agent, &o, sent as f64);
    assert_eq!(before, sent as f64);

    let run = |args: &[&str]| nta_lab::netns::run("ip", args).unwrap_or_else(|e| panic!("{e}"));
    run(&["link", "del", &o]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while attached(&agent) != 0.0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(attached(&agent), 0.0, "the gap shows in nta_xdp_attached");
    let (status, why) =
        nta_lab::scrape::http_status(agent.addr, "/readyz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (status, why.trim()),
        (
            503,
            format!("not ready: {o}: XDP program not attached").as_str()
        )
    );
    // The same names again, as a restarted VM or container would bring.
    run(&[
        "link",
        "add",
        &o,
        "type",
        "veth",
        "peer",
        "name",
        &p,
        "netns",
        ns.name(),
    ]);
    nta_lab::netns::run(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{o}.disable_ipv6=1")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    ns.exec(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{p}.disable_ipv6=1")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    run(&["link", "set", &o, "up"]);
    ns.exec("ip", &["link", "set", &p, "up"])
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while attached(&agent) != 1.0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(attached(&agent), 1.0, "attached again within a few seconds");
    assert_eq!(
        nta_lab::scrape::http_status(agent.addr, "/readyz").ok(),
        Some((200, "ready\n".to_string()))
    );
    assert!(xdp_attached(&o));
    // Counting goes on, on top of the old counts.
    thread::sleep(Duration::from_millis(300));
    assert!(counted(&agent, &o) >= before, "counters were not reset");
    sent_and_counted_exactly(&agent, &ns, &p, &o, 1_000);
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_scrapes_go_on() {
    if !privileged("slow_and_idle_clients_are_cut_off_and_scrapes_go_on") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::io::{Read, Write};
    let (_ns, veth) = lab("ntsl");
    let agent = Agent::start(&["--iface", &veth.outer]);
    // 300 connections that never send a request, one that trickles half a
    // header, and connections beyond the cap.
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(agent.addr).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut slow = std::net::TcpStream::connect(agent.addr).unwrap_or_else(|e| panic!("{e}"));
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let body = http_get(agent.addr, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    assert!(body.contains("nta_packets_total"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "scrape took {:?}",
        t.elapsed()
    );
    // The header timeout (5 s) closes them all.
    thread::sleep(Duration::from_secs(6));
    idle.push(slow);
    let mut closed = 0;
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 512];
        // Closed: EOF (possibly after a 408 response) or a reset; a read
        // timeout means the server still holds the connection open.
        let is_closed = |r: std::io::Result<usize>| match r {
            Ok(0) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(_) => false,
        };
        let first = c.read(&mut buf);
        if matches!(first, Ok(n) if n > 0) {
            if is_closed(c.read(&mut buf)) {
                closed += 1;
            }
        } else if is_closed(first) {
            closed += 1;
        }
    }
    assert_eq!(closed, 301, "idle and slow connections must be cut off");
    assert!(http_get(agent.addr, "/healthz").is_ok());
}

#[test]
fn systemd_ready_means_counting_and_the_watchdog_is_fed() {
    if !privileged("systemd_ready_means_counting_and_the_watchdog_is_fed") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntsd");
    let dir = common::TempDir::new("notify");
    let path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| panic!("{e}"));
    // As systemd starts a Type=notify unit with WatchdogSec=1s.
    let addr = common::free_port();
    let child = std::process::Command::new(common::NTA)
        .args(["run", "--listen", &addr.to_string(), "--iface", &veth.outer])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut agent = Agent {
        child,
        addr,
        netns: None,
    };
    let mut messages: Vec<String> = Vec::new();
    let read_until = |want: &str, within: Duration, messages: &mut Vec<String>| {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if messages
                    .last()
                    .is_some_and(|m| m.lines().any(|l| l == want))
                {
                    return true;
                }
            }
        }
        false
    };
    assert!(
        read_until("READY=1", Duration::from_secs(15), &mut messages),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("STATUS=counting on {}", veth.outer))),
        "{messages:?}"
    );
    // READY=1 means counting: frames sent at once are all counted.
    sent_and_counted_exactly(&agent, &ns, &veth.inner, &veth.outer, 500);
    assert_eq!(
        nta_lab::scrape::http_status(addr, "/readyz").ok(),
        Some((200, "ready\n".to_string()))
    );
    // Fed twice a second while the pipeline ticks.
    let before = messages.len();
    std::thread::sleep(Duration::from_millis(1600));
    read_until("never", Duration::from_millis(300), &mut messages);
    let fed = messages[before..]
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    assert!(fed >= 2, "{:?}", &messages[before..]);
    agent.signal(libc::SIGTERM);
    assert!(
        read_until("STOPPING=1", Duration::from_secs(10), &mut messages),
        "{messages:?}"
    );
    assert!(agent.wait_exit().success());
}

/// Sets this process's soft open-files limit; returns the old one.
fn set_soft_open_files(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        old
    }
}

/// The soft and hard "Max open files" of a process.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    let mut values = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    (
        values.next().unwrap_or_default(),
        values.next().unwrap_or_default(),
    )
}

#[test]
fn capabilities_are_dropped_in_every_thread_after_attach() {
    if !privileged("capabilities_are_dropped_in_every_thread_after_attach") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, veth) = lab("ntcp");
    const NET_ADMIN: u64 = 1 << 12;
    const NOBODY: (u32, u32) = (65534, 65534);
    // (extra flags, the agent's ids, whether a re-attach helper runs)
    let runs: [(&[&str], (u32, u32), bool); 3] = [
        (&[], (0, 0), true),
        (&["--reattach=false"], (0, 0), false),
        (&["--user", "nobody:nogroup"], NOBODY, true),
    ];
    // A capture directory nta creates, parent included: the user it
    // becomes owns both, so it can reach and write them after the switch.
    let top = std::env::temp_dir().join(format!("nta-caps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&top);
    let pcaps = top.join("pcaps");
    let pcaps_arg = pcaps.to_str().unwrap_or_default().to_string();
    for (extra, ids, helper) in runs {
        let mut args = vec!["--iface", veth.outer.as_str(), "--capture", &pcaps_arg];
        args.extend(extra);
        // Started with the common default of 1024 open files.
        let ours = set_soft_open_files(1024);
        let mut agent = Agent::start(&args);
        set_soft_open_files(ours);
        // Ready means attached, and the drop happened before serving:
        // the agent keeps nothing, in every thread.
        let pid = agent.child.id();
        let caps = thread_caps(pid);
        assert!(caps.len() > 2, "{caps:?}");
        assert!(
            caps.iter().all(|&c| c == (0, 0, 0, 0)),
            "{extra:?}: {caps:x?}"
        );
        let threads = thread_ids(pid);
        for d in [&top, &pcaps] {
            let owner = std::fs::metadata(d).map(|m| (m.uid(), m.gid())).ok();
            assert_eq!(owner, Some(ids), "{extra:?}: {}", d.display());
        }
        assert!(
            threads.iter().all(|&t| t == Some(ids)),
            "{extra:?}: {threads:?}"
        );
        // Open files: raised to what nta can use (2048), not to the hard
        // limit.
        let (soft, hard) = open_files_limit(pid);
        assert_eq!(soft, hard.min(2048), "{extra:?}");
        // The helper keeps CAP_NET_ADMIN alone, as the same user.
        let helpers = children(pid);
        if helper {
            assert_eq!(helpers.len(), 1, "{extra:?}: {helpers:?}");
            assert_eq!(
                thread_caps(helpers[0]),
                [(NET_ADMIN, NET_ADMIN, 0, NET_ADMIN)],
                "{extra:?}"
            );
            assert_eq!(thread_ids(helpers[0]), [Some(ids)], "{extra:?}");
        } else {
            assert!(helpers.is_empty(), "{extra:?}: {helpers:?}");
        }
        // It still counts exactly, and reads its maps at scrapes.
        sent_and_counted_exactly(&agent, &ns, &veth.inner, &veth.outer, 500);
        agent.signal(libc::SIGTERM);
        assert!(agent.wait_exit().success());
        assert!(
            !xdp_attached(&veth.outer),
            "{extra:?}: a clean stop detaches"
        );
        for h in helpers {
            assert!(
                !std::path::Path::new(&format!("/proc/{h}")).exists(),
                "{extra:?}: the helper stopped with nta"
            );
        }
        // Created afresh for the next run's user.
        let _ = std::fs::remove_dir_all(&top);
    }
}
