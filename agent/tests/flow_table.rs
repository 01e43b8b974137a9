//! Flow table behaviour with an injected clock: every expiry reason, LRU
//! eviction order, rate-scaled estimates, the memory bound, and invariants
//! over random record streams.

use agent_common::sample::{RECORD_VERSION, SampleRecord, map_ipv4};
use nta::pipeline::flow::{ExpireReason, ExpiredFlow, FlowConfig, FlowKey, FlowTable};
use proptest::prelude::*;

const S: u64 = 1_000_000_000;

fn rec(t_ns: u64, src: u32, sport: u16, flags: u8, rate: u32, len: u32) -> SampleRecord {
    SampleRecord {
        timestamp_ns: t_ns,
        ifindex: 3,
        frame_len: len,
        sample_rate: rate,
        src_port: sport,
        dst_port: 443,
        version: RECORD_VERSION,
        ip_version: 4,
        l4_proto: 6,
        tcp_flags: flags,
        ttl: 64,
        src_addr: map_ipv4(src.to_be_bytes()),
        dst_addr: map_ipv4([198, 19, 0, 1]),
        ..SampleRecord::default()
    }
}

const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const SRC: u32 = 0xC612_0001;

fn table(capacity: usize) -> FlowTable {
    FlowTable::new(FlowConfig {
        idle_timeout_ns: 15 * S,
        active_timeout_ns: 60 * S,
        capacity,
    })
}

#[test]
fn idle_timeout_expires_exactly_at_the_timeout() {
    let mut t = table(10);
    let mut out = Vec::new();
    t.update(&rec(S, SRC, 1000, ACK, 1, 100), &mut out);
    t.expire_idle(16 * S - 1, &mut out);
    assert!(out.is_empty(), "not yet idle");
    t.expire_idle(16 * S, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].reason, ExpireReason::Idle);
    assert_eq!(out[0].stats.sampled_packets, 1);
    assert!(t.is_empty());
    assert_eq!(t.counters().expired[ExpireReason::Idle as usize], 1);
}

#[test]
fn active_timeout_exports_periodically_and_keeps_the_flow() {
    let mut t = table(10);
    let mut out = Vec::new();
    for sec in 0..=130u64 {
        t.update(&rec(sec * S, SRC, 1000, ACK, 1, 100), &mut out);
    }
    let active: Vec<&ExpiredFlow> = out
        .iter()
        .filter(|f| f.reason == ExpireReason::Active)
        .collect();
    assert_eq!(active.len(), 2, "exported at 60 s and 120 s");
    assert_eq!(active[0].stats.sampled_packets, 60, "packets 0..60 s");
    assert_eq!(active[0].stats.first_ns, 0);
    assert_eq!(active[0].stats.last_ns, 59 * S);
    assert_eq!(active[1].stats.sampled_packets, 60);
    assert_eq!(t.len(), 1, "the flow continues");
    let mut rest = Vec::new();
    t.drain(&mut rest);
    assert_eq!(rest[0].stats.sampled_packets, 11, "120..130 s");
    assert_eq!(rest[0].reason, ExpireReason::Shutdown);
}

#[test]
fn fin_and_rst_end_tcp_flows() {
    for flag in [FIN, RST] {
        let mut t = table(10);
        let mut out = Vec::new();
        t.update(&rec(S, SRC, 1000, ACK, 1, 100), &mut out);
        t.update(&rec(2 * S, SRC, 1000, flag | ACK, 1, 60), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, ExpireReason::End);
        assert_eq!(out[0].stats.sampled_packets, 2);
        assert_eq!(out[0].stats.tcp_flags, flag | ACK);
        assert!(t.is_empty());
    }
}

#[test]
fn eviction_takes_the_least_recently_seen() {
    let mut t = table(3);
    let mut out = Vec::new();
    for (i, port) in [1u16, 2, 3].iter().enumerate() {
        t.update(&rec(i as u64, SRC, *port, ACK, 1, 60), &mut out);
    }
    // Touch flow 1 so flow 2 is now the coldest.
    t.update(&rec(10, SRC, 1, ACK, 1, 60), &mut out);
    t.update(&rec(11, SRC, 4, ACK, 1, 60), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].reason, ExpireReason::Evicted);
    assert_eq!(out[0].key.src_port, 2);
    t.update(&rec(12, SRC, 5, ACK, 1, 60), &mut out);
    assert_eq!(out[1].key.src_port, 3);
    assert_eq!(t.len(), 3);
    assert_eq!(t.counters().expired[ExpireReason::Evicted as usize], 2);
}

#[test]
fn eviction_order_holds_on_a_real_time_scale() {
    // Seconds apart, so updates relink flows instead of leaving them to
    // their second chance.
    let mut t = table(3);
    let mut out = Vec::new();
    for (i, port) in [1u16, 2, 3].iter().enumerate() {
        t.update(&rec(i as u64 * S, SRC, *port, ACK, 1, 60), &mut out);
    }
    t.update(&rec(10 * S, SRC, 1, ACK, 1, 60), &mut out);
    t.update(&rec(10 * S + 1, SRC, 2, ACK, 1, 60), &mut out);
    t.update(&rec(11 * S, SRC, 4, ACK, 1, 60), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].key.src_port, 3,
        "3 is the only flow not seen since t=2 s"
    );
    t.expire_idle(10 * S + 15 * S, &mut out);
    assert_eq!(
        out.len(),
        2,
        "flow 1 (last seen 10 s) is idle at 25 s; 2 and 4 are not"
    );
    assert_eq!(out[1].key.src_port, 1);
}

#[test]
fn estimates_scale_each_sample_by_its_own_rate() {
    let mut t = table(10);
    let mut out = Vec::new();
    t.update(&rec(1, SRC, 1, ACK, 1, 100), &mut out);
    t.update(&rec(2, SRC, 1, ACK, 64, 1000), &mut out);
    t.update(&rec(3, SRC, 1, ACK, 1024, 60), &mut out);
    t.drain(&mut out);
    let s = out[0].stats;
    assert_eq!(s.sampled_packets, 3);
    assert_eq!(s.sampled_bytes, 1160);
    assert_eq!(s.estimated_packets, 1 + 64 + 1024);
    assert_eq!(s.estimated_bytes, 100 + 64 * 1000 + 1024 * 60);
    assert_eq!(s.sampling_rate, 1024);
}

#[test]
fn both_directions_are_reported_as_a_biflow() {
    let mut t = table(10);
    let mut out = Vec::new();
    let a = rec(1, SRC, 40000, ACK, 1, 100);
    let key = FlowKey::from_record(&a).expect("IP record");
    let mut b = a;
    b.src_addr = a.dst_addr;
    b.dst_addr = a.src_addr;
    b.src_port = a.dst_port;
    b.dst_port = a.src_port;
    t.update(&a, &mut out);
    t.update(&b, &mut out);
    t.update(&rec(2, SRC + 1, 40000, ACK, 1, 100), &mut out);
    t.drain(&mut out);
    let first = out.iter().find(|f| f.key == key).expect("flow a");
    assert!(first.reverse_seen, "b was still in the table");
    let lone = out.iter().find(|f| f.key.src[15] == 2).expect("lone flow");
    assert!(!lone.reverse_seen);
}

#[test]
fn non_ip_samples_are_counted_not_tabled() {
    let mut t = table(10);
    let mut out = Vec::new();
    t.update(&SampleRecord::default(), &mut out);
    assert!(t.is_empty());
    assert_eq!(t.counters().non_ip_samples, 1);
}

#[test]
fn random_source_flood_stays_at_capacity_within_the_memory_bound() {
    // 2x the capacity in distinct flows, as a spoofed SYN flood makes.
    let capacity = 200_000;
    let mut t = table(capacity);
    let mut out = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for i in 0..(2 * capacity as u64) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        t.update(
            &rec(
                i,
                0xC612_0000 | (x & 0x1ffff),
                (x >> 17) as u16,
                0x02,
                1,
                60,
            ),
            &mut out,
        );
        assert!(t.len() <= capacity);
    }
    assert_eq!(t.len(), capacity);
    let c = t.counters();
    assert_eq!(
        c.created - c.expired[ExpireReason::Evicted as usize],
        capacity as u64
    );
    assert!(c.expired[ExpireReason::Evicted as usize] > 0);
    let per_flow = t.memory_bytes() / t.len();
    assert!(per_flow <= 256, "{per_flow} bytes per flow");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the stream: the table stays within capacity, nothing is
    /// lost or double counted, and flows come out as they went in.
    #[test]
    fn conservation_and_bounds(
        events in prop::collection::vec((0u64..200, 0u32..40, 0u16..4, prop::sample::select(vec![ACK, ACK, ACK, FIN, RST, 0x02]), 1u32..100), 1..400),
        capacity in 1usize..20,
        sweep_every in 1usize..50,
    ) {
        let mut t = FlowTable::new(FlowConfig { idle_timeout_ns: 15 * S, active_timeout_ns: 60 * S, capacity });
        let mut out = Vec::new();
        let mut now = 0u64;
        for (n, (dt, src, port, flags, rate)) in events.iter().enumerate() {
            now += dt * S / 10;
            t.update(&rec(now, *src, *port, *flags, *rate, 100), &mut out);
            prop_assert!(t.len() <= capacity);
            if n % sweep_every == 0 {
                t.expire_idle(now, &mut out);
            }
        }
        t.drain(&mut out);
        prop_assert!(t.is_empty());
        let packets: u64 = out.iter().map(|f| f.stats.sampled_packets).sum();
        prop_assert_eq!(packets, events.len() as u64);
        let estimated: u64 = out.iter().map(|f| f.stats.estimated_packets).sum();
        prop_assert_eq!(estimated, events.iter().map(|e| u64::from(e.4)).sum::<u64>());
        let c = t.counters();
        let left: u64 = c.expired.iter().sum::<u64>() - c.expired[ExpireReason::Active as usize];
        prop_assert_eq!(c.created, left);
        for f in &out {
            prop_assert!(f.stats.first_ns <= f.stats.last_ns);
            prop_assert!(f.stats.sampled_packets > 0);
        }
    }
}

/// Whether the table says `r` started a flow.
fn new(t: &mut FlowTable, r: &SampleRecord, out: &mut Vec<ExpiredFlow>) -> bool {
    t.update(r, out).new_flow
}

#[test]
fn update_says_which_sample_started_a_flow() {
    let mut t = table(2);
    let mut out = Vec::new();
    assert!(new(&mut t, &rec(1, SRC, 1000, ACK, 1, 100), &mut out));
    assert!(!new(&mut t, &rec(2, SRC, 1000, ACK, 1, 100), &mut out));
    assert!(new(&mut t, &rec(3, SRC, 1001, ACK, 1, 100), &mut out));
    // A flow that ended (RST) starts anew; one evicted does too.
    assert!(!new(&mut t, &rec(4, SRC, 1001, RST, 1, 60), &mut out));
    assert!(new(&mut t, &rec(5, SRC, 1001, ACK, 1, 100), &mut out));
    assert!(new(&mut t, &rec(6, SRC, 1002, ACK, 1, 100), &mut out));
    let evicted = out
        .iter()
        .find(|f| f.reason == ExpireReason::Evicted)
        .map(|f| f.key.src_port)
        .unwrap_or_else(|| panic!("nothing evicted"));
    assert!(
        new(&mut t, &rec(7, SRC, evicted, ACK, 1, 100), &mut out),
        "evicted, so new again"
    );
    // Non-IP samples start nothing.
    assert!(!new(&mut t, &SampleRecord::default(), &mut out));
}

#[test]
fn update_says_which_flows_began_with_a_syn() {
    let mut t = table(16);
    let mut out = Vec::new();
    let syn = t.update(&rec(1, SRC, 1000, 0x02, 1, 60), &mut out);
    assert_eq!((syn.new_flow, syn.began_with_syn), (true, true));
    // The client's ACKs on that flow say so; a bare ACK's flow does not.
    let ack = t.update(&rec(2, SRC, 1000, ACK, 64, 60), &mut out);
    assert_eq!((ack.new_flow, ack.began_with_syn), (false, true));
    let bare = t.update(&rec(3, SRC, 1001, ACK, 1, 60), &mut out);
    assert_eq!((bare.new_flow, bare.began_with_syn), (true, false));
    let again = t.update(&rec(4, SRC, 1001, ACK, 1, 60), &mut out);
    assert!(!again.began_with_syn);
    // A SYN-ACK begins no client handshake.
    let synack = t.update(&rec(5, SRC, 1002, 0x12, 1, 60), &mut out);
    assert!(!synack.began_with_syn);
}
