//! Kernel tests: the real XDP object, loaded and driven with crafted frames
//! through BPF_PROG_TEST_RUN. Asserts verdict, counters and ring buffer
//! records exactly, and that the kernel parser agrees with the userspace
//! build of the same parser on every frame of the corpus.

use agent_common::{
    app::{self, AppKind, Candidate},
    capture::CaptureHeader,
    class::{ParseError, ProtocolClass, TcpFlagCounter},
    config::SamplerConfig,
    counters::Counters,
    parse,
    sample::{RECORD_VERSION, SampleRecord, record_flags},
};
use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use nta::{
    kernel::capture::{CaptureFilter, decode_capture},
    kernel::sensor::{CountersReader, KernelCapture, Sensor},
};
use nta_lab::{
    cases::{Case, padded, protocol_cases, truncation_cases},
    frames::{FrameSpec, L4},
    privileged,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

struct Harness {
    sensor: Sensor,
    counters: CountersReader,
    samples: RingBuf<MapData>,
    captures: RingBuf<MapData>,
    app_frames: RingBuf<MapData>,
}

/// Plain 1-in-N samplers: no first-packet sampling, no control budget
/// (the tests of those set them).
fn config(data_rate: u32, control_rate: u32) -> SamplerConfig {
    SamplerConfig {
        data_rate,
        control_rate,
        first_packet: 0,
        control_budget: 0,
        ..SamplerConfig::default()
    }
}

/// An IPv4 TCP SYN to port 80.
fn syn() -> Vec<u8> {
    FrameSpec::ipv4(L4::Tcp {
        sport: 1,
        dport: 80,
        flags: 0x02,
    })
    .build()
}

/// A UDP scan's probe: from port 45678 to `port`.
fn udp_probe(port: u16) -> Vec<u8> {
    FrameSpec::ipv4(L4::Udp {
        sport: 45678,
        dport: port,
    })
    .build()
}

impl Harness {
    fn new(config: SamplerConfig) -> Harness {
        Self::with_capture(config, KernelCapture::default())
    }

    fn with_capture(config: SamplerConfig, capture: KernelCapture) -> Harness {
        let (sensor, maps) = Sensor::load_with_capture(config, capture)
            .unwrap_or_else(|e| panic!("loading the XDP program: {e:?}"));
        Harness {
            sensor,
            counters: maps.counters,
            samples: maps.samples,
            captures: maps.captures,
            app_frames: maps.app_frames,
        }
    }

    /// Capture records: header and the bytes after it.
    fn captured(&mut self) -> Vec<(CaptureHeader, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(item) = self.captures.next() {
            let (h, data) = decode_capture(&item)
                .unwrap_or_else(|| panic!("kernel wrote a bad capture record"));
            out.push((h, data.to_vec()));
        }
        out
    }

    /// App ring records: kind and the frame bytes copied.
    fn app_records(&mut self) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(item) = self.app_frames.next() {
            let (h, data) =
                decode_capture(&item).unwrap_or_else(|| panic!("kernel wrote a bad app record"));
            assert_eq!(h.frame_len as usize, data.len(), "copied whole");
            out.push((h.kind, data.to_vec()));
        }
        out
    }

    /// Runs the program `repeat` times on `frame` (one syscall, one CPU).
    fn run(&self, frame: &[u8], repeat: u32) -> u32 {
        let prog = self.sensor.program().unwrap_or_else(|e| panic!("{e}"));
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        };
        prog.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e}", frame.len()))
            .return_value
    }

    fn counters(&self) -> Counters {
        self.counters
            .read()
            .unwrap_or_else(|e| panic!("reading counters: {e}"))
    }

    fn records(&mut self) -> Vec<SampleRecord> {
        let mut out = Vec::new();
        while let Some(item) = self.samples.next() {
            out.push(
                SampleRecord::decode(&item)
                    .unwrap_or_else(|e| panic!("kernel wrote a bad record: {e}")),
            );
        }
        out
    }
}

fn class_index(label: &str) -> usize {
    ProtocolClass::ALL
        .iter()
        .position(|c| c.label() == label)
        .unwrap_or_else(|| panic!("unknown class {label}"))
}

fn reason_index(label: &str) -> usize {
    ParseError::ALL
        .iter()
        .position(|c| c.label() == label)
        .unwrap_or_else(|| panic!("unknown reason {label}"))
}

/// The counters one frame of `case` must produce, `n` times over.
fn expected_counters(case: &Case, n: u64) -> Counters {
    let mut c = Counters::default();
    let k = class_index(case.class);
    c.packets[k] = n;
    c.bytes[k] = n * case.frame.len() as u64;
    match case.ip_version {
        4 => c.ip_version[0] = n,
        6 => c.ip_version[1] = n,
        _ => {}
    }
    if case.vlan_depth > 0 {
        c.vlan_packets = n;
    }
    if case.class == "tcp" {
        let f = case.tcp_flags;
        if f & 0x02 != 0 {
            let which = if f & 0x10 != 0 {
                TcpFlagCounter::SynAck
            } else {
                TcpFlagCounter::Syn
            };
            c.tcp_flags[which as usize] = n;
        }
        if f & 0x01 != 0 {
            c.tcp_flags[TcpFlagCounter::Fin as usize] = n;
        }
        if f & 0x04 != 0 {
            c.tcp_flags[TcpFlagCounter::Rst as usize] = n;
        }
    }
    if let Some(r) = case.reason {
        c.parse_errors[reason_index(r)] = n;
    }
    c.samples = n;
    // The corpus holds single frames: the app selection's first test
    // alone decides (no handshake is being followed).
    let p = parse::parse(&case.frame[..]);
    let app = SamplerConfig::default();
    let kind = match app::classify(
        &case.frame[..],
        &p,
        case.frame.len() as u64,
        app.app,
        &app.dns_ports,
    ) {
        Candidate::Dns => Some(AppKind::Dns),
        Candidate::QuicInitial => Some(AppKind::QuicInitial),
        Candidate::Handshake { .. } => Some(AppKind::TlsHandshake),
        Candidate::Segment { .. } | Candidate::None => None,
    };
    if let Some(kind) = kind {
        c.app_frames[kind as usize - 1] = n;
    }
    c
}

/// `after - before`, field by field.
fn difference(after: &Counters, before: &Counters) -> Counters {
    fn sub<const N: usize>(a: &[u64; N], b: &[u64; N]) -> [u64; N] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    Counters {
        packets: sub(&after.packets, &before.packets),
        bytes: sub(&after.bytes, &before.bytes),
        ip_version: sub(&after.ip_version, &before.ip_version),
        vlan_packets: after.vlan_packets - before.vlan_packets,
        tcp_flags: sub(&after.tcp_flags, &before.tcp_flags),
        parse_errors: sub(&after.parse_errors, &before.parse_errors),
        samples: after.samples - before.samples,
        ringbuf_dropped: after.ringbuf_dropped - before.ringbuf_dropped,
        captured: after.captured - before.captured,
        capture_dropped: after.capture_dropped - before.capture_dropped,
        first_packets: after.first_packets - before.first_packets,
        control_thinned: after.control_thinned - before.control_thinned,
        app_frames: sub(&after.app_frames, &before.app_frames),
        app_dropped: after.app_dropped - before.app_dropped,
    }
}

/// Checks one record against the userspace parse of the same frame.
fn assert_record_matches_userspace(case: &Case, r: &SampleRecord, rate: u32) {
    let frame = &case.frame[..];
    let p = parse::parse(frame);
    let (src, dst) = p.addresses(frame);
    let n = &case.name;
    assert_eq!(r.version, RECORD_VERSION, "{n}");
    assert_eq!(r.class, p.class as u8, "{n}: class");
    assert_eq!(r.ip_version, p.ip_version, "{n}: ip version");
    assert_eq!(r.l4_proto, p.l4_proto, "{n}: l4 proto");
    assert_eq!(
        (r.src_port, r.dst_port),
        (p.src_port, p.dst_port),
        "{n}: ports"
    );
    assert_eq!(r.tcp_flags, p.tcp_flags, "{n}: tcp flags");
    assert_eq!(r.ttl, p.ttl, "{n}: ttl");
    assert_eq!(
        (r.vlan_depth, r.vlan_id),
        (p.vlan_depth, p.vlan_id),
        "{n}: vlan"
    );
    assert_eq!((r.src_addr, r.dst_addr), (src, dst), "{n}: addresses");
    assert_eq!(r.frame_len as usize, frame.len(), "{n}: frame length");
    assert_eq!(r.sample_rate, rate, "{n}: sample rate");
    assert_eq!(
        r.flags & record_flags::CONTROL != 0,
        p.is_control(),
        "{n}: control flag"
    );
    assert_eq!(
        r.flags & record_flags::FRAGMENT != 0,
        p.fragment,
        "{n}: fragment flag"
    );
    assert_eq!(
        r.flags & record_flags::LATER_FRAGMENT != 0,
        p.class == ProtocolClass::Fragment,
        "{n}: later-fragment flag"
    );
    assert!(r.timestamp_ns > 0, "{n}: timestamp");
}

/// Checks one record against the corpus's own expectations, an oracle
/// independent of the parser.
fn assert_record_matches_expectations(case: &Case, r: &SampleRecord) {
    let n = &case.name;
    assert_eq!(
        ProtocolClass::from_u8(r.class).map(ProtocolClass::label),
        Some(case.class),
        "{n}: class"
    );
    assert_eq!(r.ip_version, case.ip_version, "{n}: ip version");
    assert_eq!(r.vlan_depth, case.vlan_depth, "{n}: vlan depth");
    if case.class == "tcp" {
        assert_eq!(r.tcp_flags, case.tcp_flags, "{n}: tcp flags");
    }
    if let Some(ports) = case.ports {
        assert_eq!((r.src_port, r.dst_port), ports, "{n}: ports");
    }
}

/// Every frame of `cases` through a fresh program sampling every packet:
/// verdict, exact counters, one record agreeing with userspace.
fn run_corpus(cases: &[Case]) {
    // One program for the whole corpus (loading one per frame takes
    // seconds in all); each frame is checked by the counters' change.
    let mut h = Harness::new(config(1, 1));
    for case in cases {
        let before = h.counters();
        let verdict = h.run(&case.frame, 3);
        assert_eq!(verdict, XDP_PASS, "{}: verdict", case.name);
        assert_eq!(
            difference(&h.counters(), &before),
            expected_counters(case, 3),
            "{}: counters",
            case.name
        );
        let records = h.records();
        assert_eq!(records.len(), 3, "{}: records", case.name);
        for (_, data) in h.app_records() {
            assert_eq!(data, case.frame, "{}: app record", case.name);
        }
        for r in &records {
            assert_record_matches_userspace(case, r, 1);
            assert_record_matches_expectations(case, r);
        }
    }
}

/// BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header,
/// so those cut lengths are covered by the userspace parser tests only.
const MIN_TEST_RUN_FRAME: usize = 14;

#[test]
fn every_protocol_class_and_error_reason() {
    if !privileged("every_protocol_class_and_error_reason") {
        return;
    }
    let cases = protocol_cases();
    for label in ProtocolClass::ALL.map(ProtocolClass::label) {
        assert!(
            cases.iter().any(|c| c.class == label),
            "corpus lacks class {label}"
        );
    }
    run_corpus(&cases);
    run_corpus(&padded(cases));
}

#[test]
fn truncation_at_every_header_boundary() {
    if !privileged("truncation_at_every_header_boundary") {
        return;
    }
    let cases: Vec<Case> = truncation_cases()
        .into_iter()
        .filter(|c| c.frame.len() >= MIN_TEST_RUN_FRAME)
        .collect();
    for label in ParseError::ALL.map(ParseError::label) {
        let in_corpus = cases
            .iter()
            .chain(protocol_cases().iter())
            .any(|c| c.reason == Some(label));
        assert!(
            in_corpus || label == "truncated_ethernet",
            "no case for reason {label}"
        );
    }
    run_corpus(&cases);
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_test_run() {
    if !privileged("frames_shorter_than_ethernet_are_refused_by_test_run") {
        return;
    }
    // Documents why truncated_ethernet is asserted in userspace only: the
    // kernel will not run XDP on such a frame, and no driver delivers one.
    let h = Harness::new(config(1, 1));
    let prog = h.sensor.program().unwrap_or_else(|e| panic!("{e}"));
    let frame = [0u8; 13];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(&frame),
        ..TestRunOptions::default()
    });
    assert!(result.is_err(), "kernel ran XDP on a 13-byte frame");
}

#[test]
fn jumbo_multi_buffer_frame_counts_every_byte() {
    if !privileged("jumbo_multi_buffer_frame_counts_every_byte") {
        return;
    }
    let frame = FrameSpec::ipv4(L4::Udp {
        sport: 2049,
        dport: 2049,
    })
    .with_payload(9000 - 42)
    .build();
    assert_eq!(frame.len(), 9000);
    let mut h = Harness::new(config(1, 1));
    assert_eq!(h.run(&frame, 1), XDP_PASS);
    let c = h.counters();
    assert_eq!(c.packets[ProtocolClass::Udp as usize], 1);
    assert_eq!(c.bytes[ProtocolClass::Udp as usize], 9000);
    let r = h.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].frame_len, 9000);
    assert_eq!((r[0].src_port, r[0].dst_port), (2049, 2049));
    assert_ne!(
        r[0].flags & record_flags::MULTI_BUFFER,
        0,
        "9000 bytes do not fit one XDP buffer"
    );
}

#[test]
fn a_jumbo_frame_whose_ip_header_claims_40_bytes_counts_every_byte() {
    if !privileged("a_jumbo_frame_whose_ip_header_claims_40_bytes_counts_every_byte") {
        return;
    }
    // The header lies: the datagram "ends" inside the first buffer, the
    // frame goes on for 9000 bytes. Bytes come from the frame.
    let mut frame = FrameSpec::ipv4(L4::Tcp {
        sport: 40000,
        dport: 80,
        flags: 0x10,
    })
    .with_payload(9000 - 54)
    .build();
    frame[16..18].copy_from_slice(&40u16.to_be_bytes());
    let mut h = Harness::new(config(1, 1));
    assert_eq!(h.run(&frame, 1), XDP_PASS);
    let c = h.counters();
    assert_eq!(c.packets[ProtocolClass::Tcp as usize], 1);
    assert_eq!(c.bytes[ProtocolClass::Tcp as usize], 9000);
    let r = h.records();
    assert_eq!(r[0].frame_len, 9000);
    assert_ne!(r[0].flags & record_flags::MULTI_BUFFER, 0);
}

#[test]
fn jumbo_non_ip_frame_counts_every_byte() {
    if !privileged("jumbo_non_ip_frame_counts_every_byte") {
        return;
    }
    // No IP length to go by: the program must ask for the full length.
    let frame = FrameSpec::raw(0x88b5, vec![0x5a; 9000 - 14]).build();
    let mut h = Harness::new(config(1, 1));
    assert_eq!(h.run(&frame, 1), XDP_PASS);
    let c = h.counters();
    assert_eq!(c.packets[ProtocolClass::NonIp as usize], 1);
    assert_eq!(c.bytes[ProtocolClass::NonIp as usize], 9000);
    let r = h.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].frame_len, 9000);
    assert_ne!(r[0].flags & record_flags::MULTI_BUFFER, 0);
}

#[test]
fn ipv4_datagram_longer_than_the_frame_is_counted_by_frame_length() {
    if !privileged("ipv4_datagram_longer_than_the_frame_is_counted_by_frame_length") {
        return;
    }
    // A total length that claims more than arrived (a truncating tap): the
    // frame's real length is what is counted.
    let mut frame = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 })
        .with_payload(100)
        .build();
    frame[16..18].copy_from_slice(&1400u16.to_be_bytes());
    let mut h = Harness::new(config(1, 1));
    h.run(&frame, 1);
    assert_eq!(
        h.counters().bytes[ProtocolClass::Udp as usize],
        frame.len() as u64
    );
    let r = h.records();
    assert_eq!(r[0].frame_len as usize, frame.len());
    assert_eq!(r[0].flags & record_flags::MULTI_BUFFER, 0);
}

#[test]
fn data_packets_are_sampled_one_in_n() {
    if !privileged("data_packets_are_sampled_one_in_n") {
        return;
    }
    let udp = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
    let mut h = Harness::new(config(4, 1));
    h.run(&udp, 10);
    let r = h.records();
    assert_eq!(r.len(), 2, "1-in-4 of 10 packets is the 4th and 8th");
    assert!(
        r.iter()
            .all(|r| r.sample_rate == 4 && r.flags & record_flags::CONTROL == 0)
    );
    let c = h.counters();
    assert_eq!(
        c.packets[ProtocolClass::Udp as usize],
        10,
        "counting is exact whatever the sampling"
    );
    assert_eq!(c.samples, 2);
}

#[test]
fn frames_built_to_evade_parsing_are_sampled_as_control_with_their_reason() {
    if !privileged("frames_built_to_evade_parsing_are_sampled_as_control_with_their_reason") {
        return;
    }
    let cases = protocol_cases();
    let by_name = |n: &str| {
        cases
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.frame.clone())
            .unwrap_or_else(|| panic!("no case {n}"))
    };
    // Data packets 1-in-1000: only the control sampler can take these.
    let mut h = Harness::new(config(1000, 1));
    h.run(&by_name("ipv6-7-ext-headers"), 5);
    h.run(&by_name("ipv4-tiny-first-fragment-padded-syn"), 3);
    h.run(&by_name("ipv4-tcp-fragment-overwriting-header"), 2);
    h.run(&by_name("ipv6-tcp-fragment-overwriting-header"), 2);
    let r = h.records();
    assert_eq!(r.len(), 12, "every evasive frame is sampled");
    assert!(r.iter().all(|r| r.flags & record_flags::CONTROL != 0));
    let reasons: Vec<_> = r.iter().map(|r| r.parse_error()).collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|e| **e == Some(ParseError::Ipv6ExtLimit))
            .count(),
        5
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|e| **e == Some(ParseError::TinyFragment))
            .count(),
        3
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|e| **e == Some(ParseError::OverlappingFragment))
            .count(),
        4
    );
}

#[test]
fn control_packets_use_their_own_rate() {
    if !privileged("control_packets_use_their_own_rate") {
        return;
    }
    let syn = syn();
    let ack = FrameSpec::ipv4(L4::Tcp {
        sport: 1,
        dport: 80,
        flags: 0x10,
    })
    .build();
    let mut h = Harness::new(config(1000, 1));
    h.run(&syn, 5);
    h.run(&ack, 5);
    let r = h.records();
    assert_eq!(r.len(), 5, "every SYN, no data packet at 1-in-1000");
    assert!(
        r.iter()
            .all(|r| r.sample_rate == 1 && r.flags & record_flags::CONTROL != 0)
    );
}

#[test]
fn the_first_packet_of_every_flow_is_sampled_whatever_the_data_rate() {
    if !privileged("the_first_packet_of_every_flow_is_sampled_whatever_the_data_rate") {
        return;
    }
    let mut h = Harness::new(SamplerConfig {
        first_packet: 1,
        ..config(1000, 1)
    });
    // A UDP scan of 100 ports, each probe sent 5 times.
    for port in 0..100u16 {
        h.run(&udp_probe(port), 5);
    }
    let r = h.records();
    let ports: std::collections::BTreeSet<u16> = r.iter().map(|r| r.dst_port).collect();
    assert_eq!(r.len(), 100, "one record per flow");
    assert_eq!(ports.len(), 100, "every port once");
    assert!(r.iter().all(|r| r.sample_rate == 1
        && r.flags & (record_flags::FIRST_PACKET | record_flags::CONTROL)
            == record_flags::FIRST_PACKET | record_flags::CONTROL));
    let c = h.counters();
    assert_eq!(c.first_packets, 100);
    assert_eq!(c.packets[ProtocolClass::Udp as usize], 500);

    // The reply of a seen flow is not new; another protocol's flow is,
    // except TCP's, whose SYN is sampled anyway.
    let reply = FrameSpec::ipv4(L4::Udp {
        sport: 7,
        dport: 45678,
    })
    .with_ipv4(|ip| std::mem::swap(&mut ip.src, &mut ip.dst))
    .build();
    h.run(&reply, 3);
    assert!(h.records().is_empty(), "a reply is part of its flow");
    let ack = FrameSpec::ipv4(L4::Tcp {
        sport: 45678,
        dport: 7,
        flags: 0x10,
    })
    .build();
    h.run(&ack, 3);
    assert!(h.records().is_empty(), "TCP flows are seen by their SYN");
    let gre = FrameSpec::ipv4(L4::Gre).build();
    h.run(&gre, 3);
    let r = h.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].class, ProtocolClass::Gre as u8);
    // Later fragments carry no ports: not flows of their own.
    let later = FrameSpec::ipv4(L4::None)
        .with_ipv4(|ip| ip.frag_offset = 100)
        .build();
    h.run(&later, 3);
    assert!(h.records().is_empty());
    assert_eq!(h.counters().first_packets, 101);

    // Off, the same probes leave only the 1-in-1000 data samples.
    let mut off = Harness::new(config(1000, 1));
    for port in 0..100u16 {
        off.run(&udp_probe(port), 5);
    }
    assert_eq!(off.records().len(), 0);
    assert_eq!(off.counters().first_packets, 0);
}

#[test]
fn control_packets_past_the_budget_are_thinned_and_carry_their_rate() {
    if !privileged("control_packets_past_the_budget_are_thinned_and_carry_their_rate") {
        return;
    }
    let syn = syn();
    let budget = 64;
    let mut h = Harness::new(SamplerConfig {
        control_budget: budget,
        ..config(1000, 1)
    });
    // A few under the budget: every one, at rate 1.
    h.run(&syn, 10);
    let r = h.records();
    assert_eq!(r.len(), 10);
    assert!(r.iter().all(|r| r.sample_rate == 1));
    // A million SYNs in one burst (tens of thousands a millisecond).
    let sent = 1_000_000u64;
    h.run(&syn, sent as u32);
    let c = h.counters();
    let r = h.records();
    assert_eq!(
        c.tcp_flags[TcpFlagCounter::Syn as usize],
        sent + 10,
        "counting is exact whatever the thinning"
    );
    assert_eq!(c.ringbuf_dropped, 0);
    assert_eq!(
        c.samples + c.control_thinned,
        sent + 10,
        "each SYN is either a record or counted as thinned"
    );
    assert!(
        r.len() < 50_000,
        "{} records for {sent} SYNs: the budget did not hold",
        r.len()
    );
    assert!(r.iter().all(|r| r.sample_rate.is_power_of_two()));
    assert!(r.iter().any(|r| r.sample_rate >= 64), "thinning grew");
    // Kept at random with probability 2^-n and weighted 2^n: the sum
    // estimates the count. Its relative standard error is about
    // sqrt(2^n / sent), under 3 % here: 15 % is five of them.
    let estimate: u64 = r.iter().map(|r| u64::from(r.sample_rate)).sum();
    let error = (estimate as f64 - sent as f64).abs() / sent as f64;
    assert!(error < 0.15, "estimate {estimate} of {sent}");
}

#[test]
fn zero_rate_disables_sampling_and_rates_change_at_run_time() {
    if !privileged("zero_rate_disables_sampling_and_rates_change_at_run_time") {
        return;
    }
    let udp = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
    let mut h = Harness::new(config(0, 0));
    h.run(&udp, 20);
    assert!(h.records().is_empty());
    assert_eq!(h.counters().samples, 0);
    h.sensor
        .set_sampling(config(2, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    h.run(&udp, 20);
    let r = h.records();
    assert_eq!(r.len(), 10);
    assert!(r.iter().all(|r| r.sample_rate == 2));
    assert_eq!(h.counters().packets[ProtocolClass::Udp as usize], 40);
}

#[test]
fn mirror_ports_drop_after_counting() {
    if !privileged("mirror_ports_drop_after_counting") {
        return;
    }
    let udp = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
    let mut h = Harness::new(SamplerConfig {
        mirror: 1,
        ..config(1, 1)
    });
    assert_eq!(h.run(&udp, 4), XDP_DROP);
    assert_eq!(h.counters().packets[ProtocolClass::Udp as usize], 4);
    assert_eq!(h.records().len(), 4);
    h.sensor
        .set_sampling(config(1, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.run(&udp, 1), XDP_PASS, "mirror off again: pass");
}

#[test]
fn full_ring_buffer_drops_are_counted() {
    if !privileged("full_ring_buffer_drops_are_counted") {
        return;
    }
    let udp = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
    let mut h = Harness::new(config(1, 1));
    let sent = 80_000u64;
    h.run(&udp, sent as u32);
    let c = h.counters();
    let read = h.records().len() as u64;
    assert_eq!(c.packets[ProtocolClass::Udp as usize], sent);
    assert!(c.ringbuf_dropped > 0, "4 MiB cannot hold {sent} records");
    assert_eq!(c.samples, read, "every submitted record is readable");
    assert_eq!(
        c.samples + c.ringbuf_dropped,
        sent,
        "every sample is either delivered or counted as dropped"
    );
}

/// A program capturing with `filter` at `snaplen` (sampling off).
fn capturing(filter: &str, snaplen: u32) -> Harness {
    let f = CaptureFilter::compile(filter).unwrap_or_else(|e| panic!("{e}"));
    Harness::with_capture(
        config(0, 0),
        KernelCapture {
            snaplen,
            filter: f.table,
            ring_bytes: 1 << 20,
            af_xdp: false,
        },
    )
}

/// The frames of the corpus a filter selects, by the userspace matcher.
fn expected_by_userspace(filter: &str, cases: &[Case]) -> Vec<String> {
    use agent_common::filter::{FilterInput, matches};
    let f = CaptureFilter::compile(filter).unwrap_or_else(|e| panic!("{e}"));
    cases
        .iter()
        .filter(|c| {
            let p = parse::parse(&c.frame[..]);
            matches(&f.table, &FilterInput::new(&p, p.addresses(&c.frame[..])))
        })
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn capture_filters_select_exactly_the_expected_frames() {
    if !privileged("capture_filters_select_exactly_the_expected_frames") {
        return;
    }
    let cases: Vec<Case> = protocol_cases()
        .into_iter()
        .filter(|c| c.frame.len() >= MIN_TEST_RUN_FRAME)
        .collect();
    // Each filter with the class names it must select (checked against
    // the corpus labels, so the userspace matcher is tested too).
    let filters: [(&str, &[&str]); 8] = [
        ("", &[]),
        ("tcp", &["tcp"]),
        ("udp or icmp", &["udp", "icmp"]),
        ("ip6 and (tcp or udp)", &[]),
        ("not ip and not ip6", &["arp", "non_ip"]),
        ("arp", &["arp"]),
        ("dst port 443 or portrange 50-60", &[]),
        ("vlan and tcp", &[]),
    ];
    let mut h = capturing("", 4096);
    for (filter, classes) in filters {
        let want = expected_by_userspace(filter, &cases);
        for class in classes {
            for c in cases
                .iter()
                .filter(|c| c.class == *class && c.reason.is_none())
            {
                assert!(want.contains(&c.name), "{filter:?} must select {}", c.name);
            }
        }
        // The filter changes at run time: a map write, no reload.
        let f = CaptureFilter::compile(filter).unwrap_or_else(|e| panic!("{e}"));
        h.sensor
            .set_capture(4096, &f.table)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        for c in &cases {
            let before = h.counters().captured;
            assert_eq!(h.run(&c.frame, 1), XDP_PASS);
            let records = h.captured();
            assert_eq!(
                records.len() as u64,
                h.counters().captured - before,
                "{}",
                c.name
            );
            for (hdr, data) in records {
                assert_eq!(hdr.frame_len as usize, c.frame.len(), "{}", c.name);
                assert_eq!(data, c.frame, "{}: the whole frame", c.name);
                got.push(c.name.clone());
            }
        }
        assert_eq!(got, want, "filter {filter:?}");
        assert!(
            filter.is_empty() || got.len() < cases.len(),
            "{filter:?} selects something less than all"
        );
        assert!(!got.is_empty(), "{filter:?} selects something");
    }
    assert_eq!(h.counters().capture_dropped, 0);
}

#[test]
fn snaplen_truncates_and_records_the_original_length() {
    if !privileged("snaplen_truncates_and_records_the_original_length") {
        return;
    }
    let mut h = capturing("udp", 128);
    let small = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
    let big = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 })
        .with_payload(1400)
        .build();
    let jumbo = FrameSpec::ipv4(L4::Udp {
        sport: 2049,
        dport: 2049,
    })
    .with_payload(9000 - 42)
    .build();
    for f in [&small, &big, &jumbo] {
        h.run(f, 1);
    }
    let got = h.captured();
    assert_eq!(got.len(), 3);
    assert_eq!(
        (got[0].0.frame_len as usize, got[0].1.len()),
        (small.len(), small.len())
    );
    assert_eq!(got[0].1, small);
    assert_eq!(
        (got[1].0.frame_len, got[1].0.cap_len),
        (big.len() as u32, 128)
    );
    assert_eq!(got[1].1, big[..128]);
    assert_eq!(
        (got[2].0.frame_len, got[2].0.cap_len),
        (9000, 128),
        "multi-buffer frame"
    );
    assert_eq!(got[2].1, jumbo[..128]);
    // Every size class, and the cap at 4096 bytes.
    for snaplen in [200, 300, 600, 1500, 3000, 65535] {
        h.sensor
            .set_capture(
                snaplen,
                &CaptureFilter::compile("udp")
                    .unwrap_or_else(|e| panic!("{e}"))
                    .table,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        h.run(&jumbo, 1);
        let got = h.captured();
        let want = snaplen.min(4096) as usize;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, jumbo[..want], "snaplen {snaplen}");
        assert_eq!(got[0].0.frame_len, 9000);
    }
    assert!(got_timestamps_rise(&mut h, &small));
}

/// Records of back-to-back runs carry rising timestamps.
fn got_timestamps_rise(h: &mut Harness, frame: &[u8]) -> bool {
    h.run(frame, 5);
    let ts: Vec<u64> = h
        .captured()
        .iter()
        .map(|(hdr, _)| hdr.timestamp_ns)
        .collect();
    ts.len() == 5 && ts.windows(2).all(|w| w[0] <= w[1])
}

#[test]
fn a_full_capture_ring_counts_its_drops() {
    if !privileged("a_full_capture_ring_counts_its_drops") {
        return;
    }
    // 4 KiB of ring: a handful of 128-byte records fit, the rest drop.
    let mut h = Harness::with_capture(
        config(0, 0),
        KernelCapture {
            snaplen: 128,
            filter: Default::default(),
            ring_bytes: 4096,
            af_xdp: false,
        },
    );
    let f = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
    h.run(&f, 100);
    let c = h.counters();
    let got = h.captured().len() as u64;
    assert_eq!(c.captured, got);
    assert_eq!(c.captured + c.capture_dropped, 100);
    assert!(c.capture_dropped > 50, "{c:?}");
    assert_eq!(
        c.packets[ProtocolClass::Udp as usize],
        100,
        "counting is unaffected"
    );
}
/// The verifier walks at most a million instructions per program; the
/// program must leave room under it for what the next feature adds (the
/// figure is printed for the record).
#[test]
fn the_program_verifies_with_room_to_spare() {
    if !privileged("the_program_verifies_with_room_to_spare") {
        return;
    }
    let h = Harness::new(SamplerConfig::default());
    let prog = h.sensor.program().unwrap_or_else(|e| panic!("{e}"));
    let info = prog.info().unwrap_or_else(|e| panic!("{e}"));
    let walked = info
        .verified_instruction_count()
        .unwrap_or_else(|| panic!("this kernel does not report verified instructions"));
    println!("the verifier walked {walked} instructions");
    assert!(walked < 850_000, "{walked} of the verifier's 1,000,000");
}

/// An IPv4 TCP segment (PSH|ACK) from `sport` to `dport` carrying `payload`.
fn tcp_segment(sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    FrameSpec::ipv4(L4::Tcp {
        sport,
        dport,
        flags: 0x18,
    })
    .with_tcp_seq(seq)
    .with_payload_bytes(payload)
    .build()
}

fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    FrameSpec::ipv6(L4::Udp { sport, dport })
        .with_payload_bytes(payload)
        .build()
}

/// The start of a QUIC long-header packet: first byte, version, then
/// bytes that only need to be there.
fn quic_long_header(first: u8, version: u32) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(version.to_be_bytes());
    p.extend([8; 1200]);
    p
}

const TLS_HANDSHAKE: u32 = AppKind::TlsHandshake as u32;
const TLS_CONTINUATION: u32 = AppKind::TlsContinuation as u32;
const DNS: u32 = AppKind::Dns as u32;
const QUIC_INITIAL: u32 = AppKind::QuicInitial as u32;

/// Which frames reach the app ring, whole: hellos, DNS on its ports,
/// QUIC Initials; and what does not (data, other UDP, handshake records
/// of other kinds, QUIC Handshake packets, bare ACKs).
#[test]
fn hellos_dns_and_quic_initials_are_copied_whole_and_nothing_else() {
    if !privileged("hellos_dns_and_quic_initials_are_copied_whole_and_nothing_else") {
        return;
    }
    let mut h = Harness::new(config(64, 1));
    let hello = nta_lab::tls::browser_like("example.test").record();
    let mut server_hello = vec![0x16, 0x03, 0x03, 0x00, 0x36, 0x02, 0x00, 0x00, 0x32];
    server_hello.extend([0; 50]);
    let dns_query = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    let selected = [
        (tcp_segment(40000, 443, 7, &hello), TLS_HANDSHAKE),
        (tcp_segment(443, 40000, 9, &server_hello), TLS_HANDSHAKE),
        (tcp_segment(40001, 8443, 1, &hello), TLS_HANDSHAKE),
        (udp_datagram(50000, 53, &dns_query), DNS),
        (udp_datagram(53, 50000, &dns_query), DNS),
        (udp_datagram(5353, 5353, &dns_query), DNS),
        (tcp_segment(50001, 53, 1, &dns_query), DNS),
        (
            udp_datagram(50002, 443, &quic_long_header(0xc3, 1)),
            QUIC_INITIAL,
        ),
        (
            udp_datagram(50003, 8443, &quic_long_header(0xd1, 0x6b33_43cf)),
            QUIC_INITIAL,
        ),
    ];
    let mut finished = hello.clone();
    finished[5] = 20;
    let ignored = [
        tcp_segment(40000, 443, 1, b"GET / HTTP/1.1\r\n\r\n"),
        tcp_segment(40000, 443, 1, &finished),
        tcp_segment(40000, 443, 1, &[0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4]),
        syn(),
        udp_datagram(50000, 54, &dns_query),
        udp_datagram(50002, 443, &quic_long_header(0xe3, 1)),
        udp_datagram(50002, 443, &quic_long_header(0x43, 1)),
    ];
    for (frame, _) in &selected {
        assert_eq!(h.run(frame, 1), XDP_PASS);
    }
    for frame in &ignored {
        assert_eq!(h.run(frame, 1), XDP_PASS);
    }
    let got = h.app_records();
    let want: Vec<(u32, Vec<u8>)> = selected.iter().map(|(f, k)| (*k, f.clone())).collect();
    assert_eq!(got, want);
    let c = h.counters();
    assert_eq!(c.app_frames, [3, 0, 4, 2]);
    assert_eq!(c.app_dropped, 0);
}

/// A post-quantum ClientHello spans two segments: the second is copied
/// as a continuation, in order or before the first's retransmission,
/// while data of other flows and the flow's own later data are not.
#[test]
fn a_hello_split_over_segments_is_followed_to_its_end() {
    if !privileged("a_hello_split_over_segments_is_followed_to_its_end") {
        return;
    }
    let mut h = Harness::new(config(64, 1));
    let hello = nta_lab::tls::post_quantum("example.test").record();
    assert!(hello.len() > 1460 && hello.len() < 2900, "{}", hello.len());
    let (first, rest) = hello.split_at(1460);
    let seq = 0xffff_ff00; // wraps inside the hello
    let frames = [
        (tcp_segment(40000, 443, seq, first), Some(TLS_HANDSHAKE)),
        (tcp_segment(40001, 443, seq.wrapping_add(1460), rest), None),
        (tcp_segment(443, 40000, 1, b"not yet"), None),
        (
            tcp_segment(40000, 443, seq.wrapping_add(1460), rest),
            Some(TLS_CONTINUATION),
        ),
        // The hello is complete: the flow's next data is not followed.
        (
            tcp_segment(40000, 443, seq.wrapping_add(hello.len() as u32), rest),
            None,
        ),
    ];
    for (frame, _) in &frames {
        h.run(frame, 1);
    }
    let want: Vec<(u32, Vec<u8>)> = frames
        .iter()
        .filter_map(|(f, k)| k.map(|k| (k, f.clone())))
        .collect();
    assert_eq!(h.app_records(), want);

    // Out of order: the rest in two pieces, the later one first.
    let (middle, last) = rest.split_at(100);
    let seq = 5000;
    let frames = [
        tcp_segment(40002, 443, seq, first),
        tcp_segment(40002, 443, seq + 1560, last),
        tcp_segment(40002, 443, seq + 1460, middle),
    ];
    for frame in &frames {
        h.run(frame, 1);
    }
    let kinds: Vec<u32> = h.app_records().into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [TLS_HANDSHAKE, TLS_CONTINUATION, TLS_CONTINUATION]);
    assert_eq!(h.counters().app_frames, [2, 3, 0, 0]);
}

/// `--app-metadata=false` (app 0) copies nothing; DNS ports come from
/// the config.
#[test]
fn app_selection_follows_its_config() {
    if !privileged("app_selection_follows_its_config") {
        return;
    }
    let hello = nta_lab::tls::browser_like("example.test").record();
    let query = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    let frames = [
        tcp_segment(40000, 443, 7, &hello),
        udp_datagram(50000, 53, &query),
        udp_datagram(50000, 5300, &query),
        udp_datagram(50002, 443, &quic_long_header(0xc3, 1)),
    ];
    let run = |app: u32, dns_ports: [u16; 4]| {
        let mut h = Harness::new(SamplerConfig {
            app,
            dns_ports,
            ..config(64, 1)
        });
        for f in &frames {
            h.run(f, 1);
        }
        (h.counters().app_frames, h.app_records().len())
    };
    assert_eq!(run(0, [53, 5353, 0, 0]), ([0; 4], 0));
    assert_eq!(run(app::select::DNS, [5300, 0, 0, 0]), ([0, 0, 1, 0], 1));
    assert_eq!(
        run(app::select::TLS | app::select::QUIC, [53, 0, 0, 0]),
        ([1, 0, 0, 1], 2)
    );
}
