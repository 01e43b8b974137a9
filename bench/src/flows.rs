//! Flow table and exporter throughput on one core: updates per second with
//! 100k and 1M active flows on a stream that hits existing flows at random,
//! bytes per flow, a 2M-flow random-source flood into a 1M-flow table, and
//! flow records per second written by each file exporter.

use std::{hint::black_box, time::Instant};

use agent_common::sample::{RECORD_VERSION, SampleRecord, map_ipv4};
use nta::{
    output::export::{
        CsvExporter, FlowExporter, FlowRecord, IpfixConfig, IpfixExporter, JsonlExporter,
        RotationConfig, WallClock,
    },
    pipeline::flow::{ExpireReason, FlowConfig, FlowTable},
};

use crate::report::{XorShift, mmm};

#[derive(clap::Args)]
pub struct FlowArgs {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Flow `n`'s record: distinct source address and port per flow.
fn record(n: u64, t: u64) -> SampleRecord {
    let addr = 0xC612_0000u32 | (n as u32 & 0x1ffff);
    SampleRecord {
        timestamp_ns: t,
        ifindex: 2,
        frame_len: [64, 576, 1514][(n % 3) as usize],
        sample_rate: 64,
        src_port: 1024 + (n >> 17) as u16,
        dst_port: 443,
        version: RECORD_VERSION,
        ip_version: 4,
        l4_proto: 6,
        tcp_flags: 0x10,
        ttl: 64,
        src_addr: map_ipv4(addr.to_be_bytes()),
        dst_addr: map_ipv4([198, 19, 0, 1]),
        ..SampleRecord::default()
    }
}

fn config(capacity: usize) -> FlowConfig {
    FlowConfig {
        // Long timeouts: the stream's clock must not expire anything.
        idle_timeout_ns: u64::MAX / 4,
        active_timeout_ns: u64::MAX / 4,
        capacity,
    }
}

/// (updates per second, bytes per flow) with `active` flows.
fn updates(active: u64, stream: &[SampleRecord]) -> (f64, f64) {
    let mut t = FlowTable::new(config(active as usize));
    let mut out = Vec::new();
    for n in 0..active {
        t.update(&record(n, n * 200), &mut out);
    }
    let start = Instant::now();
    for r in stream {
        t.update(r, &mut out);
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(&out);
    assert!(out.is_empty(), "the stream only hits existing flows");
    (
        stream.len() as f64 / secs,
        t.memory_bytes() as f64 / t.len() as f64,
    )
}

fn flood() -> (f64, usize, u64) {
    let cap = 1_000_000;
    let mut t = FlowTable::new(config(cap));
    let mut out = Vec::new();
    let start = Instant::now();
    for n in 0..2_000_000u64 {
        t.update(&record(n, n), &mut out);
        out.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    (
        2e6 / secs,
        t.len(),
        t.counters().expired[ExpireReason::Evicted as usize],
    )
}

/// 200k expired flows, as the exporters receive them.
fn export_records() -> Vec<FlowRecord> {
    let mut table = FlowTable::new(config(200_000));
    let mut expired = Vec::new();
    for n in 0..200_000u64 {
        table.update(&record(n, n), &mut expired);
    }
    table.drain(&mut expired);
    expired
        .iter()
        .map(|f| FlowRecord::new(f, WallClock::unix(), "eth0"))
        .collect()
}

/// Flow records per second through `exporter`, in batches as the flow
/// stage hands them over.
fn export_rate(exporter: &mut dyn FlowExporter, records: &[FlowRecord]) -> f64 {
    let start = Instant::now();
    for chunk in records.chunks(1024) {
        if let Err(e) = exporter.export(chunk) {
            panic!("export failed: {e}");
        }
    }
    if let Err(e) = exporter.flush() {
        panic!("flush failed: {e}");
    }
    records.len() as f64 / start.elapsed().as_secs_f64()
}

/// A file exporter writing to tmpfs; the file is removed afterwards.
fn file_rate(
    ext: &str,
    open: impl FnOnce(&std::path::Path) -> Box<dyn FlowExporter>,
    records: &[FlowRecord],
) -> f64 {
    let path = std::path::PathBuf::from(format!(
        "/dev/shm/nta-bench-flows-{}.{ext}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let rate = export_rate(open(&path).as_mut(), records);
    let _ = std::fs::remove_file(&path);
    rate
}

/// IPFIX to a loopback socket that a thread drains.
fn ipfix_rate(records: &[FlowRecord]) -> f64 {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = sink.local_addr().unwrap_or_else(|e| panic!("{e}"));
    sink.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap_or_else(|e| panic!("{e}"));
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
    });
    let mut exporter = IpfixExporter::connect(IpfixConfig {
        collector: addr,
        observation_domain: 1,
        template_refresh: std::time::Duration::from_secs(60),
        sampling: vec![(2, 64)],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let rate = export_rate(&mut exporter, records);
    let _ = drain.join();
    rate
}

pub fn run(args: &FlowArgs) -> anyhow::Result<String> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut md = String::from("| figure | value |\n|---|---|\n");
    for active in [100_000u64, 1_000_000] {
        // Timestamps advance 200 ns a record (5 M/s), so flows age and get
        // relinked as they would live.
        let stream: Vec<SampleRecord> = (0..4_000_000u64)
            .map(|i| record(rng.next() % active, (active + i) * 200))
            .collect();
        let (mut rates, mut bytes) = (vec![], vec![]);
        for round in 0..args.rounds {
            eprintln!(
                "flows: {active} active, round {}/{}",
                round + 1,
                args.rounds
            );
            let (r, b) = updates(active, &stream);
            rates.push(r / 1e6);
            bytes.push(b);
        }
        md.push_str(&format!(
            "| updates/s with {active} active flows, M | {} |\n",
            mmm(rates, 2)
        ));
        md.push_str(&format!(
            "| bytes per flow with {active} flows (index + entries, allocated) | {} |\n",
            mmm(bytes, 0)
        ));
    }
    let (mut rates, mut lens, mut evicted) = (vec![], 0, 0);
    for _ in 0..args.rounds {
        let (r, l, e) = flood();
        rates.push(r / 1e6);
        lens = l;
        evicted = e;
    }
    md.push_str(&format!(
        "| 2M-flow random-source flood into a 1M-flow table: updates/s, M | {} (table ends at {lens} flows, {evicted} evicted) |\n",
        mmm(rates, 2)
    ));
    let rotation = RotationConfig {
        max_bytes: u64::MAX,
        keep: 0,
    };
    let records = export_records();
    let (mut ipfix, mut jsonl, mut csv) = (vec![], vec![], vec![]);
    for _ in 0..args.rounds {
        ipfix.push(ipfix_rate(&records) / 1e3);
        jsonl.push(
            file_rate(
                "jsonl",
                |p| Box::new(JsonlExporter::open(p, rotation).unwrap_or_else(|e| panic!("{e}"))),
                &records,
            ) / 1e3,
        );
        csv.push(
            file_rate(
                "csv",
                |p| Box::new(CsvExporter::open(p, rotation).unwrap_or_else(|e| panic!("{e}"))),
                &records,
            ) / 1e3,
        );
    }
    for (name, rates) in [
        (
            "IPFIX export over loopback UDP, k flows/s (receiver drains)",
            ipfix,
        ),
        ("JSON lines export to tmpfs, k flows/s", jsonl),
        ("CSV export to tmpfs, k flows/s", csv),
    ] {
        md.push_str(&format!("| {name} | {} |\n", mmm(rates, 0)));
    }
    print!("{md}");
    Ok(md)
}
