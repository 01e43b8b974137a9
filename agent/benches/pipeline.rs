//! Userspace pipeline: decode-and-enqueue throughput of sample records on
//! one core, on a realistic record stream (the kernel's own byte layout,
//! mixed protocols and addresses), through the same functions `nta run`
//! uses: `events::decode_into` and `events::enqueue`.
//!
//! Target (issue 3): at least 5 M records/s. Criterion reports time per
//! batch of `events::BATCH` records; records/s = BATCH / time.

use std::{hint::black_box, sync::Arc};

use agent_common::sample::{RECORD_VERSION, SampleRecord, map_ipv4};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nta::kernel::events::{self, PipelineStats, SampleBatch};

/// Records as the ring buffer holds them: a repeating mix of TCP, UDP,
/// ICMP and IPv6 with varying addresses and ports.
fn record_stream(n: usize) -> Vec<[u8; 72]> {
    (0..n)
        .map(|i| {
            let v6 = i % 5 == 0;
            let (class, proto) = match i % 4 {
                0 | 1 => (0u8, 6u8),
                2 => (1, 17),
                _ => (2, 1),
            };
            let host = (i % 65_536) as u16;
            let src = if v6 {
                let mut a = [0u8; 16];
                a[0] = 0xfd;
                a[14..].copy_from_slice(&host.to_be_bytes());
                a
            } else {
                map_ipv4([198, 18, (host >> 8) as u8, host as u8])
            };
            *SampleRecord {
                timestamp_ns: 1_000_000 + i as u64,
                ifindex: 2,
                frame_len: [64, 576, 1514][i % 3],
                sample_rate: 64,
                src_port: 1024 + (i % 50_000) as u16,
                dst_port: [443, 53, 80][i % 3],
                version: RECORD_VERSION,
                class,
                ip_version: if v6 { 6 } else { 4 },
                l4_proto: proto,
                tcp_flags: 0x10,
                ttl: 64,
                src_addr: src,
                dst_addr: map_ipv4([198, 19, 0, 1]),
                ..SampleRecord::default()
            }
            .as_bytes()
        })
        .collect()
}

fn decode_and_enqueue(c: &mut Criterion) {
    let stream = record_stream(events::BATCH);
    let stats = PipelineStats::default();
    let iface: Arc<str> = Arc::from("bench0");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = events::queue();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(events::BATCH as u64));
    group.bench_function("decode_and_enqueue_batch", |b| {
        b.iter(|| {
            let mut records = Vec::with_capacity(events::BATCH);
            events::decode_into(stream.iter().map(|r| &r[..]), &mut records, &stats);
            events::enqueue(
                &tx,
                SampleBatch {
                    interface: iface.clone(),
                    records,
                },
                &stats,
            );
            // The consumer side, so the queue never fills.
            black_box(runtime.block_on(rx.recv()));
        })
    });
    group.finish();
    assert_eq!(
        stats
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

criterion_group!(benches, decode_and_enqueue);
criterion_main!(benches);
