//! Under a line-rate random-source SYN flood from the lab generator (its
//! sources drawn from 198.18.0.0/15, its receiver in a namespace without a
//! default route), `nta run` keeps counting every frame exactly in the
//! kernel, keeps its memory bounded, keeps answering /metrics, raises the
//! SYN-flood incident, and raises its own sampling rates, lowering them
//! again once the flood is over.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nta_bench::{
    generator::Limits,
    live::{Lab, NtaProcess, debug_nta_binary},
    mixes::MixName,
};
use nta_lab::{netns::rss_bytes, privileged, scrape::Samples};

#[test]
fn line_rate_random_source_syn_flood() {
    if !privileged("line_rate_random_source_syn_flood") {
        return;
    }
    let lab = Lab::new().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = std::env::temp_dir().join(format!("nta-synload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let alerts = dir.join("alerts.jsonl");
    let nta = NtaProcess::start(
        &lab,
        &debug_nta_binary(),
        &["--alerts", &alerts.to_string_lossy()],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let scrape =
        |lab: &Lab| -> Samples { lab.scrape(nta.addr).unwrap_or_else(|e| panic!("{e:#}")) };
    let idle_rss = rss_bytes(nta.pid());
    let rx0 = lab.rx().unwrap_or_else(|e| panic!("{e:#}"));
    let base = scrape(&lab).sum("nta_packets_total", &[]);

    // Watch from the side while the generator floods.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let addr = nta.addr;
        let ns = lab.recv_ns.name().to_string();
        let pid = nta.pid();
        thread::spawn(move || {
            let (mut slowest, mut max_rss, mut max_rate, mut scrapes) =
                (Duration::ZERO, 0u64, 0f64, 0u32);
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let s = nta_lab::netns::run_in_netns(&ns, || nta_lab::scrape::scrape(addr))
                    .and_then(|r| r)
                    .unwrap_or_else(|e| panic!("/metrics failed under the flood: {e}"));
                slowest = slowest.max(t.elapsed());
                scrapes += 1;
                max_rss = max_rss.max(rss_bytes(pid));
                max_rate = max_rate.max(s.sum("nta_sampling_rate", &[("kind", "control")]));
                thread::sleep(Duration::from_millis(200));
            }
            (slowest, max_rss, max_rate, scrapes)
        })
    };
    let report = lab
        .generate(
            MixName::SynFlood,
            Limits {
                count: 100_000_000,
                duration: Duration::from_secs(5),
                rate: None,
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (slowest, max_rss, max_rate, scrapes) = watcher
        .join()
        .unwrap_or_else(|_| panic!("watcher panicked"));

    let rx1 = lab.rx().unwrap_or_else(|e| panic!("{e:#}"));
    let received = (rx1.rx_packets - rx0.rx_packets) as f64;
    let s = scrape(&lab);
    let counted = s.sum("nta_packets_total", &[]) - base;
    let pps = report.pps();
    eprintln!(
        "flood: sent {} at {:.2} Mpps, received {received}, counted {counted}; {scrapes} scrapes, slowest {slowest:?}; RSS {} -> {} MiB; control rate up to 1/{max_rate}; ring drops {}",
        report.sent,
        pps / 1e6,
        idle_rss >> 20,
        max_rss >> 20,
        s.sum("nta_samples_dropped_total", &[("stage", "ringbuf")]),
    );
    // A flood: four times what the kernel's control budget keeps on two
    // CPUs (64 a millisecond each) and 60 times the SYN-flood threshold.
    // (Live frames reach 1-2 Mpps here; the packet-socket fallback, on
    // kernels that refuse them, about 0.5.)
    assert!(pps > 300_000.0, "the generator did not flood: {pps:.0} pps");
    assert_eq!(counted, received, "every received frame counted, exactly");
    assert!(
        slowest < Duration::from_secs(2),
        "a scrape took {slowest:?}"
    );
    assert!(
        max_rss < idle_rss + (256 << 20),
        "RSS grew from {} to {} MiB",
        idle_rss >> 20,
        max_rss >> 20
    );
    // The kernel's control budget thins the flood from its first packet;
    // what it keeps no longer needs the agent to raise its rates.
    let thinned = s.sum("nta_samples_thinned_total", &[]);
    assert!(
        thinned > received / 2.0,
        "the budget thinned {thinned} of {received} SYNs (control rate up to 1/{max_rate})"
    );
    let lines = std::fs::read_to_string(&alerts).unwrap_or_default();
    assert!(
        lines
            .lines()
            .any(|l| l.contains("\"rule\":{\"name\":\"syn_flood\"")
                && l.contains("\"state\":\"start\"")),
        "no SYN-flood incident:\n{lines}"
    );
    // After the flood the rates come back down.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rate = max_rate;
    while Instant::now() < deadline {
        rate = scrape(&lab).sum("nta_sampling_rate", &[("kind", "control")]);
        if rate == 1.0 {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(rate, 1.0, "control sampling did not come back to 1-in-1");
    let _ = std::fs::remove_dir_all(&dir);
}
