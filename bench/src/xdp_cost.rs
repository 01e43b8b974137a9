//! XDP program cost: ns per packet of the nta program against an empty
//! `XDP_PASS` program, measured in the same run through BPF_PROG_TEST_RUN.
//!
//! Two figures per frame: the ratio of the kernel's `duration` (ns per run,
//! 1 ns steps) and the difference of BPF_ENABLE_STATS run time / run count
//! (sub-ns; the stats bookkeeping itself inflates both programs alike, so
//! only the difference is meaningful). Rounds alternate the programs; the
//! table reports median and min-max over the rounds. Three samplings: the
//! defaults (a repeated SYN is far above the control budget, so this is
//! the cost of a SYN flood once thinned; a repeated UDP frame is one seen
//! flow), the same without budget and first-packet sampling (every SYN
//! written to the ring, as before them), and control packets at the data
//! rate, which separates the cost of parsing and counting from the cost
//! of writing records.
//!
//! Run by `cargo xtask bench` (root needed).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use agent_common::config::SamplerConfig;
use aya::{
    EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use nta::kernel::{objects, sensor::Sensor};
use nta_lab::{
    cases::{SYN, protocol_cases},
    frames::{FrameSpec, L4, pad_to_min},
};

use crate::report::stats;

const REPEAT: u32 = 1_000_000;

struct Measure {
    duration_ns: f64,
    stats_ns: f64,
}

fn measure(prog: &Xdp, frame: &[u8]) -> Measure {
    let info = |p: &Xdp| p.info().unwrap_or_else(|e| panic!("program info: {e}"));
    let before = info(prog);
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: REPEAT,
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("test run: {e}"));
    let after = info(prog);
    let runs = after.run_count().saturating_sub(before.run_count()).max(1);
    let time = after.run_time().saturating_sub(before.run_time());
    Measure {
        duration_ns: r.duration.as_nanos() as f64,
        stats_ns: time.as_nanos() as f64 / runs as f64,
    }
}

/// Returns the markdown table.
pub fn run(n: usize) -> String {
    let mut baseline = EbpfLoader::new()
        .load(objects::BASELINE_XDP)
        .unwrap_or_else(|e| panic!("{e}"));
    let empty: &mut Xdp = baseline
        .program_mut("baseline_pass")
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("baseline_pass missing"));
    empty.load().unwrap_or_else(|e| panic!("{e}"));
    let empty: &Xdp = baseline
        .program("baseline_pass")
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("baseline_pass missing"));

    let deep = protocol_cases()
        .into_iter()
        .find(|c| c.name == "qinq-ipv6-3ext-tcp-syn")
        .map(|c| c.frame)
        .unwrap_or_else(|| panic!("corpus lacks the QinQ frame"));
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "IPv4 TCP SYN, 64 B",
            pad_to_min(
                FrameSpec::ipv4(L4::Tcp {
                    sport: 40000,
                    dport: 80,
                    flags: SYN,
                })
                .build(),
            ),
        ),
        (
            "IPv4 UDP, 128 B",
            FrameSpec::ipv4(L4::Udp {
                sport: 5000,
                dport: 5001,
            })
            .with_payload(86)
            .build(),
        ),
        (
            "IPv6 TCP SYN, 78 B",
            FrameSpec::ipv6(L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: SYN,
            })
            .build(),
        ),
        ("QinQ IPv6 3 ext hdrs TCP SYN, 122 B", deep),
    ];

    let header = "| frame | {what} | empty XDP_PASS ns | nta ns | ratio | Δ ns (run stats) |\n|---|---|---|---|---|---|\n";
    println!("XDP program cost, {n} rounds x {REPEAT} runs per program and frame");
    let default = SamplerConfig::default();
    // As before the control budget and first-packet sampling: every SYN
    // written to the ring.
    let unbudgeted = SamplerConfig {
        control_budget: 0,
        first_packet: 0,
        ..default
    };
    let sparse = SamplerConfig {
        control_rate: default.data_rate,
        ..unbudgeted
    };
    let sampling = |c: &SamplerConfig| {
        format!(
            "1-in-{}, 1-in-{}{}",
            c.data_rate,
            c.control_rate,
            if c.control_budget == 0 {
                String::from(", no budget, no first packets")
            } else {
                format!(", budget {}/ms, first packets", c.control_budget)
            }
        )
    };
    let mut md = header.replace("{what}", "sampling (data, control)");
    md.push_str(&rows(
        empty,
        &[default, unbudgeted, sparse].map(|c| (sampling(&c), c)),
        &frames,
        n,
    ));

    // Application metadata: the same defaults with the selection on and
    // off, for frames it passes over and frames it copies.
    let hello = nta_lab::tls::browser_like("www.example.test").record();
    let mut quic = vec![0xc3, 0, 0, 0, 1];
    quic.resize(1200, 0);
    let app_frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "IPv4 TCP data segment, 1514 B",
            FrameSpec::ipv4(L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: 0x10,
            })
            .with_payload(1460)
            .build(),
        ),
        frames[1].clone(),
        frames[0].clone(),
        (
            "IPv4 TCP ClientHello (copied)",
            FrameSpec::ipv4(L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: 0x18,
            })
            .with_payload_bytes(&hello)
            .build(),
        ),
        (
            "IPv4 UDP DNS query (copied)",
            FrameSpec::ipv4(L4::Udp {
                sport: 40000,
                dport: 53,
            })
            .with_payload_bytes(&[
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
            ])
            .build(),
        ),
        (
            "IPv6 UDP QUIC Initial, 1262 B (copied)",
            FrameSpec::ipv6(L4::Udp {
                sport: 40000,
                dport: 443,
            })
            .with_payload_bytes(&quic)
            .build(),
        ),
    ];
    md.push_str(
        "\nApplication metadata selection (`[app]`): the defaults with it on and off (`--app-metadata=false`). Frames it passes over pay the on/off difference; copied frames are written whole to the app ring (a thread drains it).\n\n",
    );
    md.push_str(&header.replace("{what}", "app metadata"));
    let off = SamplerConfig { app: 0, ..default };
    md.push_str(&rows(
        empty,
        &[("on".to_string(), default), ("off".to_string(), off)],
        &app_frames,
        n,
    ));
    md.push_str(
        "\nThe same for the frames it passes over, paired: both programs loaded at once and run one after the other within each round, so what the machine does between rounds cancels out of the difference.\n\n",
    );
    md.push_str(&paired(default, off, &app_frames[..3], 3 * n));
    md
}

/// Per frame: `on` and `off` run back to back in every round; the median
/// and range of the per-round difference.
fn paired(on: SamplerConfig, off: SamplerConfig, frames: &[(&str, Vec<u8>)], n: usize) -> String {
    let (on_sensor, on_maps) = Sensor::load(on).unwrap_or_else(|e| panic!("{e}"));
    let (off_sensor, off_maps) = Sensor::load(off).unwrap_or_else(|e| panic!("{e}"));
    let on_prog = on_sensor.program().unwrap_or_else(|e| panic!("{e}"));
    let off_prog = off_sensor.program().unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let drainers = [
        spawn_drainer(on_maps.samples, stop.clone()),
        spawn_drainer(on_maps.app_frames, stop.clone()),
        spawn_drainer(off_maps.samples, stop.clone()),
        spawn_drainer(off_maps.app_frames, stop.clone()),
    ];
    let mut md = String::from(
        "| frame | selection on, ns | off, ns | on - off, ns (min-max over rounds) |\n|---|---|---|---|\n",
    );
    for (name, frame) in frames {
        let (mut a, mut b, mut d) = (vec![], vec![], vec![]);
        for round in 0..n {
            // Alternate which goes first, so neither always runs warm.
            let (x, y) = if round % 2 == 0 {
                let x = measure(on_prog, frame).duration_ns;
                (x, measure(off_prog, frame).duration_ns)
            } else {
                let y = measure(off_prog, frame).duration_ns;
                (measure(on_prog, frame).duration_ns, y)
            };
            a.push(x);
            b.push(y);
            d.push(x - y);
        }
        let (am, ..) = stats(a);
        let (bm, ..) = stats(b);
        let (dm, dmin, dmax) = stats(d);
        let row = format!("| {name} | {am:.1} | {bm:.1} | {dm:.1} ({dmin:.1}-{dmax:.1}) |\n");
        print!("{row}");
        md.push_str(&row);
    }
    stop.store(true, Ordering::Relaxed);
    for d in drainers {
        let _ = d.join();
    }
    md
}

/// Table rows: every frame under every labelled config, nta against the
/// empty program.
fn rows(
    empty: &Xdp,
    configs: &[(String, SamplerConfig)],
    frames: &[(&str, Vec<u8>)],
    n: usize,
) -> String {
    let mut md = String::new();
    for (label, config) in configs {
        let (sensor, maps) = Sensor::load(*config).unwrap_or_else(|e| panic!("{e}"));
        let nta = sensor.program().unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let drainers = [
            spawn_drainer(maps.samples, stop.clone()),
            spawn_drainer(maps.app_frames, stop.clone()),
        ];
        for (name, frame) in frames {
            let (mut e_d, mut n_d, mut ratio, mut delta) = (vec![], vec![], vec![], vec![]);
            for _ in 0..n {
                // Run-time stats slow every run down, so durations are
                // taken with them off and the stats delta in a second pass.
                let e = measure(empty, frame);
                let t = measure(nta, frame);
                e_d.push(e.duration_ns);
                n_d.push(t.duration_ns);
                ratio.push(t.duration_ns / e.duration_ns.max(1.0));
                let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .unwrap_or_else(|e| panic!("BPF_ENABLE_STATS: {e}"));
                let e = measure(empty, frame);
                let t = measure(nta, frame);
                delta.push(t.stats_ns - e.stats_ns);
            }
            let (em, ..) = stats(e_d);
            let (nm, ..) = stats(n_d);
            let (rm, rmin, rmax) = stats(ratio);
            let (dm, dmin, dmax) = stats(delta);
            let row = format!(
                "| {name} | {label} | {em:.0} | {nm:.0} | {rm:.2} ({rmin:.2}-{rmax:.2}) | {dm:.1} ({dmin:.1}-{dmax:.1}) |\n"
            );
            print!("{row}");
            md.push_str(&row);
        }
        stop.store(true, Ordering::Relaxed);
        for d in drainers {
            let _ = d.join();
        }
    }
    md
}

/// Drains the ring buffer like the agent does, so sampled frames pay the
/// real submit cost rather than a cheap full-ring failure.
fn spawn_drainer(mut ring: RingBuf<MapData>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut n = 0;
            while ring.next().is_some() {
                n += 1;
            }
            if n == 0 {
                thread::sleep(Duration::from_micros(200));
            }
        }
    })
}
