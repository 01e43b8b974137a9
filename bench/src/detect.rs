//! Detection benchmarks.
//!
//! Cost: records per second on one core through the flow table alone, the
//! detection engine alone, and both (what `nta run` does per sample), on
//! a mixed stream: established flows sampled 1-in-64, SYNs, ICMP and
//! fragments sampled 1-in-1, and a random-source SYN flood share.
//!
//! Latency: see [`crate::detect_latency`].

use std::{hint::black_box, path::PathBuf, time::Instant};

use agent_common::{
    class::{ProtocolClass, tcp_flags},
    sample::{RECORD_VERSION, SampleRecord, map_ipv4, record_flags},
};
use nta::pipeline::{
    Pipeline, Produced, TICK_NS,
    detect::{DetectConfig, Engine, NS},
    flow::{FlowConfig, FlowNote, FlowTable},
};

use crate::report::{XorShift, mmm};

#[derive(clap::Args)]
pub struct DetectArgs {
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Attacks per detector for the latency table.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Measure the cost only (no lab, no attack tools).
    #[arg(long)]
    pub cost_only: bool,
    /// Latency of these detectors only (default: all).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The nta binary.
    #[arg(long, default_value = "target/release/nta")]
    pub nta: PathBuf,
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

/// What the flow table says of each sample of the stream.
fn flow_notes(s: &[SampleRecord]) -> Vec<FlowNote> {
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
fn detect_only(s: &[SampleRecord], notes: &[FlowNote]) -> (f64, usize) {
    let mut e = Engine::new(DetectConfig::default());
    let mut out = Vec::new();
    let mut events = 0;
    let mut next_tick = s.first().map_or(0, |r| r.timestamp_ns);
    let start = Instant::now();
    for (chunk, notes) in s.chunks(1024).zip(notes.chunks(1024)) {
        for (r, n) in chunk.iter().zip(notes) {
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
        "| stream | flow table only, M records/s | detection only (every detector, incidents) | flows + detection (what `nta run` does per sample) | alert events |\n|---|---|---|---|---|\n",
    );
    for (name, flood) in [
        (
            "100k flows: TCP, UDP, fragments 1-in-64, ICMP 1-in-1",
            false,
        ),
        ("the same, an eighth of it a random-source SYN flood", true),
    ] {
        let s = stream(4_000_000, flood);
        let notes = flow_notes(&s);
        let (mut f, mut d, mut b) = (vec![], vec![], vec![]);
        let mut events = 0;
        for round in 0..rounds {
            eprintln!("detect cost ({name}): round {}/{rounds}", round + 1);
            f.push(flows_only(&s) / 1e6);
            let (rate, ev) = detect_only(&s, &notes);
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

pub fn run(args: &DetectArgs) -> anyhow::Result<String> {
    let mut md = if args.only.is_empty() {
        cost(args.rounds)
    } else {
        String::new()
    };
    if !args.cost_only {
        md.push('\n');
        md.push_str(&crate::detect_latency::run(args)?);
    }
    print!("{md}");
    Ok(md)
}
