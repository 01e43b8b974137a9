//! Detection benchmarks.
//!
//! Cost: records per second on one core through the flow table alone, the
//! detection engine alone, and both (what `nta run` does per sample), on
//! a mixed stream: established flows sampled 1-in-64, SYNs, ICMP and
//! fragments sampled 1-in-1, and a random-source SYN flood share.
//!
//! Latency: `nta run --alerts FILE` in the victim namespace of an attack
//! lab; each detector's attack tool is started 10 times, and the latency
//! is from just before the tool starts (its own start-up included) to the
//! moment the incident's start line is in the alert file.

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    process::Child,
    thread,
    time::{Duration, Instant, SystemTime},
};

use agent_common::{
    class::{ProtocolClass, tcp_flags},
    sample::{RECORD_VERSION, SampleRecord, map_ipv4, record_flags},
};
use anyhow::bail;
use nta::pipeline::{
    Pipeline, Produced, TICK_NS,
    detect::{DetectConfig, Engine, NS},
    flow::{FlowConfig, FlowTable},
};
use nta_lab::attack::{AttackLab, VICTIM};
use serde_json::Value;

use crate::{
    live::NtaProcess,
    report::{XorShift, mmm},
};

#[derive(clap::Args)]
pub struct DetectArgs {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Attacks per detector for the latency table.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Measure the cost only (no lab, no attack tools).
    #[arg(long)]
    cost_only: bool,
    /// Latency of these detectors only (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The nta binary.
    #[arg(long, default_value = "target/release/nta")]
    nta: PathBuf,
}

/// The mixed stream, timestamps 1 µs apart (1 M samples/s); with
/// `flood`, an eighth of it is a random-source SYN flood to one host.
fn stream(n: usize, flood: bool) -> Vec<SampleRecord> {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    (0..n as u64)
        .map(|i| {
            let x = rng.next();
            let flow = x % 100_000;
            let mut r = SampleRecord {
                timestamp_ns: 10 * NS + i * 1000,
                ifindex: 2,
                frame_len: [64, 576, 1514][(x >> 20) as usize % 3],
                sample_rate: 64,
                version: RECORD_VERSION,
                class: ProtocolClass::Tcp as u8,
                ip_version: 4,
                l4_proto: 6,
                tcp_flags: tcp_flags::ACK,
                ttl: 64,
                src_port: 1024 + (flow >> 7) as u16,
                dst_port: 443,
                src_addr: map_ipv4([198, 18, 2 + (flow >> 15) as u8, flow as u8]),
                dst_addr: map_ipv4([198, 18, 1, (flow % 200) as u8]),
                ..SampleRecord::default()
            };
            // A flow keeps its protocol: 60 % TCP, 30 % UDP, 5 % ICMP
            // echo (sampled 1-in-1), 5 % fragmented UDP.
            match flow % 100 {
                0..=59 => {}
                60..=89 => {
                    r.class = ProtocolClass::Udp as u8;
                    r.l4_proto = 17;
                    r.tcp_flags = 0;
                    r.dst_port = 53;
                }
                90..=94 => {
                    r.class = ProtocolClass::Icmp as u8;
                    r.l4_proto = 1;
                    r.tcp_flags = 0;
                    r.src_port = 8;
                    r.dst_port = 0;
                    r.sample_rate = 1;
                }
                _ => {
                    r.class = ProtocolClass::Fragment as u8;
                    r.l4_proto = 17;
                    r.tcp_flags = 0;
                    r.flags = record_flags::FRAGMENT | record_flags::LATER_FRAGMENT;
                    r.src_port = 0;
                    r.dst_port = 0;
                }
            }
            // An eighth: random-source SYNs at the control rate.
            if flood && x >> 61 == 0 {
                r.class = ProtocolClass::Tcp as u8;
                r.l4_proto = 6;
                r.flags = 0;
                r.tcp_flags = tcp_flags::SYN;
                r.sample_rate = 1;
                r.src_port = (x >> 24) as u16;
                r.dst_port = 80;
                r.src_addr = map_ipv4([198, 19, (x >> 8) as u8, (x >> 16) as u8]);
                r.dst_addr = map_ipv4([198, 18, 1, 1]);
            }
            r
        })
        .collect()
}

const FLOW_CONFIG: FlowConfig = FlowConfig {
    idle_timeout_ns: 15 * NS,
    active_timeout_ns: 60 * NS,
    capacity: 1_000_000,
};

fn table() -> FlowTable {
    FlowTable::new(FLOW_CONFIG)
}

/// Which samples start a flow, as the flow table sees the stream.
fn new_flow_flags(s: &[SampleRecord]) -> Vec<bool> {
    let mut t = table();
    let mut out = Vec::new();
    s.iter()
        .map(|r| {
            let n = t.update(r, &mut out);
            out.clear();
            n
        })
        .collect()
}

fn flows_only(s: &[SampleRecord]) -> f64 {
    let mut t = table();
    let mut out = Vec::new();
    let start = Instant::now();
    for chunk in s.chunks(1024) {
        for r in chunk {
            t.update(r, &mut out);
        }
        out.clear();
    }
    black_box(&t);
    s.len() as f64 / start.elapsed().as_secs_f64()
}

/// Detection alone, told which samples start flows (as the flow table
/// would), so the cost of the flow table is not in this figure.
fn detect_only(s: &[SampleRecord], new_flows: &[bool]) -> (f64, usize) {
    let mut e = Engine::new(DetectConfig::default());
    let mut out = Vec::new();
    let mut events = 0;
    let mut next_tick = s.first().map_or(0, |r| r.timestamp_ns);
    let start = Instant::now();
    for (chunk, new) in s.chunks(1024).zip(new_flows.chunks(1024)) {
        for (r, n) in chunk.iter().zip(new) {
            e.observe(r, *n, &mut out);
        }
        if let Some(last) = chunk.last()
            && last.timestamp_ns >= next_tick
        {
            e.advance(last.timestamp_ns, &mut out);
            next_tick = last.timestamp_ns + TICK_NS;
        }
        events += out.len();
        out.clear();
    }
    (s.len() as f64 / start.elapsed().as_secs_f64(), events)
}

/// The pipeline core that `nta run` drives, batch by batch.
fn both(s: &[SampleRecord]) -> f64 {
    let mut p = Pipeline::new(FLOW_CONFIG, Some(DetectConfig::default()));
    let mut out = Produced::default();
    let start = Instant::now();
    for chunk in s.chunks(1024) {
        p.push(chunk, &mut out);
        if let Some(last) = chunk.last() {
            p.tick_if_due(last.timestamp_ns, &mut out);
        }
        out.expired.clear();
        out.events.clear();
    }
    black_box(p.table());
    s.len() as f64 / start.elapsed().as_secs_f64()
}

fn cost(rounds: usize) -> String {
    let mut md = String::from(
        "| stream | flow table only, M records/s | detection only (7 detectors, incidents) | flows + detection (what `nta run` does per sample) | alert events |\n|---|---|---|---|---|\n",
    );
    for (name, flood) in [
        (
            "100k flows: TCP, UDP, fragments 1-in-64, ICMP 1-in-1",
            false,
        ),
        ("the same, an eighth of it a random-source SYN flood", true),
    ] {
        let s = stream(4_000_000, flood);
        let new_flows = new_flow_flags(&s);
        let (mut f, mut d, mut b) = (vec![], vec![], vec![]);
        let mut events = 0;
        for round in 0..rounds {
            eprintln!("detect cost ({name}): round {}/{rounds}", round + 1);
            f.push(flows_only(&s) / 1e6);
            let (rate, ev) = detect_only(&s, &new_flows);
            d.push(rate / 1e6);
            events = ev;
            b.push(both(&s) / 1e6);
        }
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {events} |\n",
            mmm(f, 2),
            mmm(d, 2),
            mmm(b, 2),
        ));
    }
    md.push_str("\nEach stream is 4 M records over 4 s of record time (windows close and incidents start as live), flows drawn uniformly at random (no cache locality: a worst case). 2 M records/s keeps up with 128 Mpps at the default 1-in-64.\n");
    md
}

/// One detector's attack.
struct Attack {
    detector: &'static str,
    tool: &'static [&'static str],
    spoofs: bool,
}

const ATTACKS: &[Attack] = &[
    Attack {
        detector: "port_scan",
        tool: &["nmap", "-sS", "-n", "-Pn", "-T4", "-p", "1-1000", VICTIM],
        spoofs: false,
    },
    Attack {
        detector: "sweep",
        tool: &[
            "nmap",
            "-sn",
            "-n",
            "-PE",
            "--max-retries",
            "0",
            "-T4",
            "198.19.0.0/24",
        ],
        spoofs: false,
    },
    Attack {
        detector: "syn_flood",
        tool: &[
            "hping3",
            "-S",
            "--flood",
            "--rand-source",
            "-p",
            "80",
            VICTIM,
        ],
        spoofs: true,
    },
    Attack {
        detector: "amplification",
        tool: &[
            "hping3", "--udp", "-s", "53", "-k", "-p", "33000", "-d", "1200", "--flood", VICTIM,
        ],
        spoofs: false,
    },
    Attack {
        detector: "icmp_flood",
        tool: &["hping3", "--icmp", "--flood", VICTIM],
        spoofs: false,
    },
    Attack {
        detector: "fragment_flood",
        tool: &[
            "hping3", "--udp", "-f", "-p", "33000", "-d", "200", "--flood", VICTIM,
        ],
        spoofs: false,
    },
    Attack {
        detector: "volume",
        tool: &[
            "hping3", "--udp", "-p", "33001", "-d", "100", "--flood", VICTIM,
        ],
        spoofs: false,
    },
];

/// Incidents end 1 s after their last finding and scan windows last 2 s,
/// so runs follow quickly and each starts from nothing; volume uses a
/// static threshold (a baseline needs a long warm-up).
const LATENCY_CONFIG: &str = "[detect]\n\
    port_scan = { window = \"2s\", distinct = 50 }\n\
    sweep = { window = \"2s\", distinct = 32 }\n\
    [detect.incidents]\nquiet = \"1s\"\nmax_starts_per_minute = 1000\n\
    [detect.volume]\nbaseline = false\npps = 30000\n";
/// Longest scan window above.
const SCAN_WINDOW: Duration = Duration::from_secs(2);

fn alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn stop(child: &mut Child) {
    // The child is `timeout`, which passes SIGTERM on to the tool.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// Waits until every incident that started has ended.
fn wait_quiet(path: &Path, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let a = alerts(path);
        let state = |s: &str| a.iter().filter(|a| a["nta"]["alert"]["state"] == s).count();
        if state("start") == state("end") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("incidents still open after {within:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn latency(args: &DetectArgs) -> anyhow::Result<String> {
    let lab = AttackLab::new("ntbd")?;
    lab.install_spoof_guard()?;
    lab.assert_spoof_guard()?;
    let dir = std::env::temp_dir().join(format!("nta-bench-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nta.toml");
    std::fs::write(&config, LATENCY_CONFIG)?;
    let file = dir.join("alerts.jsonl");
    let _ = std::fs::remove_file(&file);
    let (config_arg, file_arg) = (config.to_string_lossy(), file.to_string_lossy());
    let _nta = NtaProcess::start_in(
        &lab.victim,
        &lab.veth.outer,
        &args.nta,
        &["--config", &config_arg, "--alerts", &file_arg],
    )?;
    let mut md = String::from(
        "| detector | attack (in the attacker namespace) | alerts | latency: tool start to alert written, ms | of which: crossing sample or window end to alert written, ms |\n|---|---|---|---|---|\n",
    );
    let chosen = ATTACKS
        .iter()
        .filter(|a| args.only.is_empty() || args.only.iter().any(|o| o == a.detector));
    for attack in chosen {
        if attack.spoofs {
            lab.assert_spoof_guard()?;
        }
        let (mut ms, mut nta_ms) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            eprintln!(
                "detect latency: {} run {}/{}",
                attack.detector,
                run + 1,
                args.runs
            );
            let seen = alerts(&file).len();
            let start = Instant::now();
            let mut child = lab.attack(10, attack.tool)?;
            let found = loop {
                let new = alerts(&file);
                let hit = new.iter().skip(seen).find(|a| {
                    a["rule"]["name"] == attack.detector && a["nta"]["alert"]["state"] == "start"
                });
                if let Some(a) = hit {
                    // The alert's own time is the sample that crossed the
                    // threshold (scans) or the end of the window (rates).
                    let own = a["@timestamp"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339(t).ok())
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    break Some((start.elapsed(), own));
                }
                if start.elapsed() > Duration::from_secs(8) {
                    break None;
                }
                thread::sleep(Duration::from_millis(2));
            };
            stop(&mut child);
            if let Some((d, own)) = found {
                ms.push(d.as_secs_f64() * 1e3);
                if let Some(own) = own {
                    nta_ms.push(own.as_secs_f64() * 1e3);
                }
            }
            wait_quiet(&file, Duration::from_secs(15))?;
            thread::sleep(SCAN_WINDOW);
        }
        let found = ms.len();
        if found == 0 {
            bail!("{}: no alert in {} runs", attack.detector, args.runs);
        }
        let own = if nta_ms.is_empty() {
            "-".to_string()
        } else {
            mmm(nta_ms, 0)
        };
        md.push_str(&format!(
            "| {} | `{}` | {found}/{} | {} | {own} |\n",
            attack.detector,
            attack.tool.join(" "),
            args.runs,
            mmm(ms, 0)
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(md)
}

pub fn run(args: &DetectArgs) -> anyhow::Result<String> {
    let mut md = if args.only.is_empty() {
        cost(args.rounds)
    } else {
        String::new()
    };
    if !args.cost_only {
        md.push('\n');
        md.push_str(&latency(args)?);
    }
    print!("{md}");
    Ok(md)
}
