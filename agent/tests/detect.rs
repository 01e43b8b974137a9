//! Detectors on synthetic sample streams through the whole engine:
//! thresholds exactly at, below and above; sampled input; spoofing and
//! completion evidence; baseline warm-up; host groups and the allowlist;
//! incident start, update and end.

use agent_common::{
    class::{ProtocolClass, tcp_flags},
    sample::{RECORD_VERSION, SampleRecord, map_ipv4, record_flags},
};
use nta::pipeline::{
    Pipeline, Produced,
    detect::{
        AlertEvent, DetectConfig, DetectorKind, Engine, FlowNote, Incidents, NS, Subject,
        Transition,
    },
    flow::FlowConfig,
};

const VICTIM: [u8; 4] = [198, 18, 1, 1];

fn base(ts: u64, src: [u8; 4]) -> SampleRecord {
    SampleRecord {
        timestamp_ns: ts,
        version: RECORD_VERSION,
        ip_version: 4,
        sample_rate: 1,
        frame_len: 60,
        ttl: 64,
        src_port: 40000,
        dst_port: 80,
        src_addr: map_ipv4(src),
        dst_addr: map_ipv4(VICTIM),
        ..Default::default()
    }
}

fn syn(ts: u64, src: [u8; 4]) -> SampleRecord {
    SampleRecord {
        class: ProtocolClass::Tcp as u8,
        l4_proto: 6,
        tcp_flags: tcp_flags::SYN,
        ..base(ts, src)
    }
}

fn ack(ts: u64, src: [u8; 4]) -> SampleRecord {
    SampleRecord {
        tcp_flags: tcp_flags::ACK,
        ..syn(ts, src)
    }
}

fn udp(ts: u64, src: [u8; 4], sport: u16, len: u32) -> SampleRecord {
    SampleRecord {
        class: ProtocolClass::Udp as u8,
        l4_proto: 17,
        src_port: sport,
        dst_port: 33000,
        frame_len: len,
        ..base(ts, src)
    }
}

fn icmp(ts: u64, src: [u8; 4]) -> SampleRecord {
    SampleRecord {
        class: ProtocolClass::Icmp as u8,
        l4_proto: 1,
        src_port: 8,
        dst_port: 0,
        ..base(ts, src)
    }
}

fn spoofed(i: u64) -> [u8; 4] {
    [198, 19, (i >> 8) as u8, i as u8]
}

fn engine(c: DetectConfig) -> Engine {
    let mut n = 0;
    let incidents = Incidents::with_ids(
        c.incidents,
        Box::new(move || {
            n += 1;
            format!("inc-{n}")
        }),
    );
    Engine::with_incidents(c, incidents)
}

/// Feeds `per_second` records made by `make(ts, i)` spread over each of
/// `seconds` seconds starting at `start_s`, advancing time as a live
/// agent would; returns the alert events.
fn feed(
    e: &mut Engine,
    start_s: u64,
    seconds: u64,
    per_second: u64,
    make: impl Fn(u64, u64) -> SampleRecord,
) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for s in start_s..start_s + seconds {
        for i in 0..per_second {
            let ts = s * NS + i * (NS / per_second.max(1));
            let r = make(ts, i);
            e.observe(&r, as_the_flow_table_says(&r), &mut out);
        }
        e.advance((s + 1) * NS, &mut out);
    }
    out
}

/// Asserts that the highest rate any finding of detector `d` reported
/// (the incidents' peaks, read from their ends) is `rate`, to within one
/// packet: the running count reads evenly spaced packets a packet high or
/// low depending on where the second's edges fall.
fn assert_peak(e: &mut Engine, ev: &[AlertEvent], d: DetectorKind, rate: f64) {
    let last = ev.iter().map(|e| e.ts_ns).max().unwrap_or(0);
    let mut out = Vec::new();
    e.finish(last + NS, &mut out);
    let peak = ev
        .iter()
        .chain(&out)
        .filter(|e| e.incident.detector == d)
        .map(|e| e.incident.peak)
        .fold(0.0, f64::max);
    assert!(
        (peak - rate).abs() <= 1.0,
        "{d:?} peaked at {peak}, not {rate}"
    );
}

/// What the flow table says of test records: every one starts its flow,
/// except ACKs, which continue a handshake begun with a SYN. (The
/// pipeline test below lets the real flow table decide.)
fn as_the_flow_table_says(r: &SampleRecord) -> FlowNote {
    if r.tcp_flags == tcp_flags::ACK {
        FlowNote {
            new_flow: false,
            began_with_syn: true,
        }
    } else {
        FlowNote::first(r)
    }
}

/// A rate just below `limit`: 1 % under. One packet under is no fair test
/// of a sliding second: evenly spaced packets put one more into some
/// seconds, as they would on the wire.
fn just_below(limit: u64) -> u64 {
    limit * 99 / 100
}

fn starts(ev: &[AlertEvent], d: DetectorKind) -> Vec<&AlertEvent> {
    ev.iter()
        .filter(|e| e.transition == Transition::Start && e.incident.detector == d)
        .collect()
}

fn config() -> DetectConfig {
    let mut c = DetectConfig::default();
    c.syn_flood.pps = 1000.0;
    c.icmp_flood.pps = 1000.0;
    c.fragment_flood.pps = 1000.0;
    c
}

#[test]
fn spoofed_syn_flood_at_below_and_above_the_threshold() {
    for (rate, alerts) in [(just_below(1000), false), (1000, true), (5000, true)] {
        let mut e = engine(config());
        let ev = feed(&mut e, 100, 3, rate, |ts, i| syn(ts, spoofed(i)));
        let s = starts(&ev, DetectorKind::SynFlood);
        assert_eq!(s.len(), usize::from(alerts), "{rate} SYN/s: {ev:?}");
        if let Some(s) = s.first() {
            let f = &s.incident.latest;
            // Reported the moment the running rate reached the limit: at
            // the 1000th SYN of the flood, not when a second closed.
            assert_eq!(s.ts_ns, 100 * NS + 999 * (NS / rate));
            assert_eq!(f.value, 1000.0);
            assert_eq!(f.limit, 1000.0);
            assert_eq!(f.reason, "many distinct sources (spoofed)");
            let sources = f.distinct_sources.unwrap_or(0) as f64;
            assert!((sources - 1000.0).abs() / 1000.0 < 0.1, "{sources}");
            assert_eq!(s.incident.subject, Subject::Destination(map_ipv4(VICTIM)));
            assert!(!s.incident.evidence.is_empty());
            // Later findings carry the full rate.
            assert_peak(&mut e, &ev, DetectorKind::SynFlood, rate as f64);
        }
    }
}

#[test]
fn sampled_syns_are_scaled_by_their_rate() {
    let mut e = engine(config());
    // 16 samples a second at 1-in-64 = 1024 SYN/s.
    let ev = feed(&mut e, 100, 2, 16, |ts, _| SampleRecord {
        sample_rate: 64,
        ..syn(ts, [198, 18, 0, 9])
    });
    let s = starts(&ev, DetectorKind::SynFlood);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].incident.latest.value, 1024.0);
    assert_eq!(s[0].incident.latest.sample_rate, 64);
    assert_eq!(s[0].incident.latest.reason, "handshakes not completed");
}

#[test]
fn busy_server_with_completed_handshakes_is_no_syn_flood() {
    let mut e = engine(config());
    // 2000 connections/s from 20 clients, each followed by ACKs.
    let ev = feed(&mut e, 100, 5, 4000, |ts, i| {
        let client = [198, 18, 2, (i % 20) as u8];
        if i % 2 == 0 {
            syn(ts, client)
        } else {
            ack(ts, client)
        }
    });
    assert!(starts(&ev, DetectorKind::SynFlood).is_empty(), "{ev:?}");
}

/// SYNs from 20 clients at 2000/s, and as many ACKs: through the whole
/// pipeline, so the flow table says which flows began with a SYN.
fn syns_and_acks(acks_complete_handshakes: bool) -> Vec<AlertEvent> {
    let mut p = Pipeline::new(FlowConfig::default(), Some(config()));
    let mut out = Produced::default();
    let mut events = Vec::new();
    for i in 0..6000u64 {
        let ts = 100 * NS + i * (NS / 2000);
        let client = [198, 18, 2, (i % 20) as u8];
        let mut s = syn(ts, client);
        s.src_port = 1024 + i as u16;
        let mut a = ack(ts + 1000, client);
        // The client's ACK on the flow its SYN opened, or a bare ACK on a
        // flow nobody opened.
        a.src_port = if acks_complete_handshakes {
            s.src_port
        } else {
            20_000 + i as u16
        };
        p.push(&[s, a], &mut out);
        p.tick_if_due(ts, &mut out);
        events.append(&mut out.events);
    }
    events
}

#[test]
fn only_acks_of_flows_begun_with_a_syn_clear_a_syn_flood() {
    let ev = syns_and_acks(true);
    assert!(starts(&ev, DetectorKind::SynFlood).is_empty(), "{ev:?}");
    // Bare ACKs sent alongside do not pass for completed handshakes.
    let ev = syns_and_acks(false);
    let s = starts(&ev, DetectorKind::SynFlood);
    assert_eq!(s.len(), 1, "{ev:?}");
    assert_eq!(s[0].incident.latest.reason, "handshakes not completed");
}

#[test]
fn amplification_per_reflector_port_and_size() {
    let mut c = config();
    c.amplification.min_size = 512;
    let dns = c
        .amplification
        .reflectors
        .iter()
        .find(|r| r.port == 53)
        .map(|r| r.pps)
        .unwrap_or(0.0) as u64;
    assert_eq!(dns, 2000);
    let mut e = engine(c.clone());
    // Small DNS answers do not count, nor large packets from other ports.
    let ev = feed(&mut e, 10, 2, 5000, |ts, i| {
        if i % 2 == 0 {
            udp(ts, [198, 18, 3, 1], 53, 200)
        } else {
            udp(ts, [198, 18, 3, 1], 5000, 1400)
        }
    });
    assert!(starts(&ev, DetectorKind::Amplification).is_empty());
    let mut e = engine(c);
    let ev = feed(&mut e, 10, 2, just_below(dns), |ts, i| {
        udp(ts, [198, 18, 3, (i % 50) as u8], 53, 1400)
    });
    assert!(starts(&ev, DetectorKind::Amplification).is_empty());
    let ev = feed(&mut e, 20, 2, dns, |ts, i| {
        udp(ts, [198, 18, 3, (i % 50) as u8], 53, 1400)
    });
    let s = starts(&ev, DetectorKind::Amplification);
    assert_eq!(s.len(), 1, "{ev:?}");
    assert_eq!(
        s[0].incident.subject,
        Subject::Reflected {
            dst: map_ipv4(VICTIM),
            source_port: 53
        }
    );
    assert_eq!(s[0].incident.latest.top_sources.len(), 4);
}

#[test]
fn icmp_and_fragment_floods() {
    let mut e = engine(config());
    let ev = feed(&mut e, 50, 2, 1500, |ts, i| {
        if i % 2 == 0 {
            icmp(ts, [198, 18, 4, 1])
        } else {
            SampleRecord {
                flags: record_flags::FRAGMENT,
                ..udp(ts, [198, 18, 4, 2], 4000, 1500)
            }
        }
    });
    // 750/s of each: below both thresholds.
    assert!(ev.is_empty(), "{ev:?}");
    let ev = feed(&mut e, 60, 2, 3000, |ts, i| {
        if i % 2 == 0 {
            icmp(ts, [198, 18, 4, 1])
        } else {
            SampleRecord {
                flags: record_flags::FRAGMENT,
                class: ProtocolClass::Fragment as u8,
                ..udp(ts, [198, 18, 4, 2], 0, 1500)
            }
        }
    });
    assert_eq!(starts(&ev, DetectorKind::IcmpFlood).len(), 1);
    assert_eq!(starts(&ev, DetectorKind::FragmentFlood).len(), 1);
}

/// Baseline incidents about destination `dst` (the interface has a
/// profile of its own and deviates alike).
fn baseline_starts(ev: &[AlertEvent], dst: [u8; 4]) -> Vec<&AlertEvent> {
    starts(ev, DetectorKind::Baseline)
        .into_iter()
        .filter(|e| e.incident.subject == Subject::Destination(map_ipv4(dst)))
        .collect()
}

/// An engine that has learned two minutes of `normal` traffic.
fn learned(normal: impl Fn(u64, u64) -> SampleRecord, per_second: u64) -> Engine {
    let mut c = DetectConfig::default();
    c.incidents.quiet = std::time::Duration::from_secs(3);
    let mut e = engine(c);
    let ev = feed(&mut e, 100, 120, per_second, normal);
    assert!(starts(&ev, DetectorKind::Baseline).is_empty(), "{ev:?}");
    e
}

#[test]
fn a_small_host_twenty_times_busier_is_off_its_profile_and_told_why() {
    let udp_to = |ts: u64, i: u64| udp(ts, [198, 18, 9, (i % 7) as u8], 4000, 100);
    let mut e = learned(udp_to, 200);
    // 4000 pps: far below any flood threshold, twenty times its usual.
    let ev = feed(&mut e, 220, 3, 4000, udp_to);
    let s = baseline_starts(&ev, VICTIM);
    assert_eq!(s.len(), 1, "{ev:?}");
    let f = &s[0].incident.latest;
    assert_eq!(f.reason, "traffic above its learned profile");
    let d = &f.deviations[0];
    assert!(d.feature.is_volume(), "{d:?}");
    let pps = f
        .deviations
        .iter()
        .find(|d| d.feature == nta::pipeline::detect::profile::features::Feature::Pps)
        .unwrap_or_else(|| panic!("pps did not deviate: {f:?}"));
    assert!((pps.usual - 200.0).abs() < 10.0, "{pps:?}");
    assert!(pps.high < 4000.0 && pps.score > f.limit, "{pps:?}");
    assert_eq!(pps.value, 4000.0);
    // No flood detector saw anything: this is the profile's finding.
    assert!(ev.iter().all(|e| matches!(
        e.incident.detector,
        DetectorKind::Baseline | DetectorKind::Suppression
    )));
    // In words, for the log and the alert's message.
    let text = nta::output::alert::document::explain(&f.deviations);
    assert!(text.contains("packets per second 4000 (usual 20"), "{text}");
}

#[test]
fn a_change_of_kind_at_the_same_volume_and_a_collapse_are_anomalies() {
    let mut e = learned(|ts, _| udp(ts, [198, 18, 9, 1], 4000, 100), 3000);
    // The same 3000 pps of the same size, now ICMP: no rate moved, the
    // mix did.
    let ev = feed(&mut e, 220, 3, 3000, |ts, _| SampleRecord {
        frame_len: 100,
        ..icmp(ts, [198, 18, 9, 1])
    });
    let s = baseline_starts(&ev, VICTIM);
    assert_eq!(s.len(), 1, "{ev:?}");
    let f = &s[0].incident.latest;
    assert_eq!(
        f.reason,
        "traffic changed in kind against its learned profile"
    );
    let features: Vec<&str> = f.deviations.iter().map(|d| d.feature.label()).collect();
    assert!(
        features.contains(&"udp_share") && features.contains(&"icmp_share"),
        "{features:?}"
    );
    assert!(
        !f.deviations.iter().any(|d| d.feature.is_volume()),
        "{features:?}"
    );

    // Upstream outage: nothing arrives any more.
    let mut e = learned(|ts, _| udp(ts, [198, 18, 9, 1], 4000, 100), 3000);
    let mut ev = Vec::new();
    for s in 221..226 {
        e.advance(s * NS, &mut ev);
    }
    let s = baseline_starts(&ev, VICTIM);
    assert_eq!(s.len(), 1, "{ev:?}");
    assert_eq!(
        s[0].incident.latest.reason,
        "traffic collapsed below its learned profile"
    );
    assert!(s[0].incident.latest.deviations[0].score < 0.0);
}

#[test]
fn learned_profiles_survive_a_restart() {
    let normal = |ts: u64, _| udp(ts, [198, 18, 9, 1], 4000, 100);
    let e = learned(normal, 200);
    let saved = e.export_profiles();
    assert!(saved.len() >= 2, "destination and interface: {saved:?}");
    // A new engine with the saved state judges at once, no warm-up.
    let mut fresh = engine(DetectConfig::default());
    assert_eq!(fresh.restore_profiles(saved), 2);
    let ev = feed(&mut fresh, 500, 3, 4000, normal);
    assert_eq!(baseline_starts(&ev, VICTIM).len(), 1, "{ev:?}");
    // Without it, the same surge is only warm-up.
    let mut cold = engine(DetectConfig::default());
    let ev = feed(&mut cold, 500, 3, 4000, normal);
    assert!(starts(&ev, DetectorKind::Baseline).is_empty());
}

#[test]
fn host_groups_set_thresholds_and_alert_as_a_whole() {
    let mut c: DetectConfig = toml::from_str(
        r#"
        [baseline]
        enabled = false
        [[host_groups]]
        name = "web"
        cidrs = ["198.18.1.0/24"]
        syn_flood_pps = 100
        pps = 3000
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.syn_flood.pps = 100_000.0;
    let mut e = engine(c);
    let ev = feed(&mut e, 10, 2, 2000, |ts, i| {
        let mut r = udp(ts, spoofed(i), 4000, 100);
        r.dst_addr = map_ipv4([198, 18, 1, (i % 4) as u8 + 1]);
        if i % 25 == 0 {
            r = syn(ts, spoofed(i));
        }
        r
    });
    // Each host gets 500 pps (below the group's per-host 3000 pps); the
    // group as a whole gets 2000 pps: no volume alert yet.
    assert!(starts(&ev, DetectorKind::Volume).is_empty(), "{ev:?}");
    // 80 SYN/s to 198.18.1.1 is under the group's 100.
    assert!(starts(&ev, DetectorKind::SynFlood).is_empty());
    let ev = feed(&mut e, 20, 2, 4000, |ts, i| {
        let mut r = udp(ts, spoofed(i), 4000, 100);
        r.dst_addr = map_ipv4([198, 18, 1, (i % 4) as u8 + 1]);
        if i % 25 == 0 {
            r = syn(ts, spoofed(i));
        }
        r
    });
    let v = starts(&ev, DetectorKind::Volume);
    assert_eq!(v.len(), 1, "{ev:?}");
    assert_eq!(v[0].incident.subject, Subject::Group(0));
    assert_eq!(v[0].incident.latest.reason, "static threshold");
    let s = starts(&ev, DetectorKind::SynFlood);
    assert_eq!(s.len(), 1, "160 SYN/s to 198.18.1.1 passes the group's 100");
    assert_eq!(s[0].incident.latest.limit, 100.0);
}

#[test]
fn allowlisted_sources_and_destinations_never_alert() {
    let mut c = config();
    c.allowlist.destinations = vec!["198.18.1.1/32".parse().unwrap_or_else(|e| panic!("{e}"))];
    c.allowlist.sources = vec!["198.18.0.66/32".parse().unwrap_or_else(|e| panic!("{e}"))];
    let mut e = engine(c);
    let ev = feed(&mut e, 10, 2, 5000, |ts, i| syn(ts, spoofed(i)));
    assert!(ev.is_empty());
    // A scan from an allowed source.
    let ev = feed(&mut e, 20, 1, 200, |ts, i| {
        let mut r = syn(ts, [198, 18, 0, 66]);
        r.dst_addr = map_ipv4([198, 18, 7, 7]);
        r.dst_port = i as u16 + 1;
        r
    });
    assert!(ev.is_empty());
    let c = e.counters();
    assert!(c.allowlisted[DetectorKind::SynFlood as usize] >= 2);
    // 200 ports in a second cross both tiers, fast (50) and slow (100).
    assert_eq!(c.allowlisted[DetectorKind::PortScan as usize], 2);
}

#[test]
fn one_incident_per_attack_then_an_end() {
    let mut c = config();
    c.incidents.quiet = std::time::Duration::from_secs(5);
    c.incidents.update = std::time::Duration::from_secs(10);
    let mut e = engine(c);
    let mut ev = feed(&mut e, 100, 25, 2000, |ts, i| syn(ts, spoofed(i)));
    ev.extend(feed(&mut e, 125, 6, 10, |ts, _| icmp(ts, [198, 18, 9, 9])));
    let t: Vec<_> = ev
        .iter()
        .filter(|e| e.incident.detector == DetectorKind::SynFlood)
        .map(|e| (e.transition, e.incident.id.as_str(), e.ts_ns / NS))
        .collect();
    assert_eq!(
        t,
        vec![
            (Transition::Start, "inc-1", 100),
            (Transition::Update, "inc-1", 110),
            (Transition::Update, "inc-1", 120),
            (Transition::End, "inc-1", 130),
        ]
    );
}

#[test]
fn random_destination_flood_keeps_memory_fixed_and_finds_the_target() {
    let mut c = config();
    c.tracked_keys = 4096;
    c.baseline.enabled = false;
    c.volume.pps = Some(20_000.0);
    let mut e = engine(c);
    // 200k random destinations a second plus 25k/s to the real target.
    let ev = feed(&mut e, 10, 3, 225_000, |ts, i| {
        let mut r = udp(ts, [198, 18, 0, 1], 4000, 100);
        if i % 9 != 0 {
            let d = i.wrapping_mul(2654435761);
            r.dst_addr = map_ipv4([198, 19, (d >> 8) as u8, d as u8]);
            r.dst_addr[10] = (d >> 16) as u8;
        }
        r
    });
    for (_, n, _) in e.tracked() {
        assert!(n <= 4096, "{:?}", e.tracked());
    }

    let v = starts(&ev, DetectorKind::Volume);
    assert_eq!(v.len(), 1, "{ev:?}");
    assert_eq!(
        v[0].incident.subject,
        Subject::Destination(map_ipv4(VICTIM))
    );
    assert!(v[0].incident.latest.value >= 20_000.0);
}

fn v6(last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = 0x00;
    a[14] = (last >> 8) as u8;
    a[15] = last as u8;
    a
}

#[test]
fn ipv6_floods_scans_and_sweeps_alike() {
    let mut e = engine(config());
    let victim = v6(1);
    // Spoofed SYN flood to an IPv6 host.
    let ev = feed(&mut e, 10, 2, 2000, |ts, i| SampleRecord {
        ip_version: 6,
        src_addr: v6(1000 + i as u16),
        dst_addr: victim,
        ..syn(ts, [0; 4])
    });
    let s = starts(&ev, DetectorKind::SynFlood);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].incident.subject, Subject::Destination(victim));
    // A port scan and an ICMPv6 echo sweep from one IPv6 source.
    let scanner = v6(7);
    let ev = feed(&mut e, 20, 1, 100, |ts, i| SampleRecord {
        ip_version: 6,
        src_addr: scanner,
        dst_addr: victim,
        dst_port: 1 + i as u16,
        ..syn(ts, [0; 4])
    });
    let s = starts(&ev, DetectorKind::PortScan);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].incident.subject,
        Subject::Pair {
            src: scanner,
            dst: victim
        }
    );
    let ev = feed(&mut e, 30, 1, 40, |ts, i| SampleRecord {
        ip_version: 6,
        class: ProtocolClass::Icmpv6 as u8,
        l4_proto: 58,
        src_port: 128,
        dst_port: 0,
        tcp_flags: 0,
        src_addr: scanner,
        dst_addr: v6(2000 + i as u16),
        ..base(ts, [0; 4])
    });
    let s = starts(&ev, DetectorKind::Sweep);
    assert_eq!(s.len(), 1, "{ev:?}");
    assert_eq!(
        s[0].incident.subject,
        Subject::SourcePort {
            src: scanner,
            proto: 58,
            port: 0
        }
    );
}

#[test]
fn static_volume_threshold_exactly_at_below_and_above() {
    for (rate, alerts) in [(2999u64, false), (3000, true), (3001, true)] {
        let mut c = config();
        c.baseline.enabled = false;
        c.volume.pps = Some(3000.0);
        let mut e = engine(c);
        let ev = feed(&mut e, 10, 2, rate, |ts, _| {
            udp(ts, [198, 18, 5, 1], 4000, 100)
        });
        let s = starts(&ev, DetectorKind::Volume);
        assert_eq!(s.len(), usize::from(alerts), "{rate} pps");
        if let Some(s) = s.first() {
            assert_eq!(s.incident.latest.value, rate as f64);
            assert_eq!(
                s.incident.latest.unit,
                nta::pipeline::detect::Unit::PacketsPerSecond
            );
        }
    }
}

#[test]
fn rate_detectors_give_idle_keys_back() {
    let mut e = engine(config());
    // SYNs and ICMP to 1000 destinations for a second, then quiet.
    feed(&mut e, 10, 1, 2000, |ts, i| {
        let mut r = if i % 2 == 0 {
            syn(ts, [198, 18, 0, 1])
        } else {
            icmp(ts, [198, 18, 0, 1])
        };
        r.dst_addr = map_ipv4([198, 19, (i >> 8) as u8, i as u8]);
        r
    });
    let held =
        |e: &Engine, d: DetectorKind| e.tracked().iter().find(|t| t.0 == d).map_or(0, |t| t.1);
    assert!(held(&e, DetectorKind::SynFlood) >= 1000);
    assert!(held(&e, DetectorKind::IcmpFlood) >= 1000);
    let mut out = Vec::new();
    for s in 12..15 {
        e.advance(s * NS, &mut out);
    }
    assert_eq!(held(&e, DetectorKind::SynFlood), 0);
    assert_eq!(held(&e, DetectorKind::IcmpFlood), 0);
}

/// A SYN to `port` of fd00::1 behind seven Destination Options headers
/// (Linux accepts it; nta walks six), as the XDP program would record it.
fn evasive_syn(ts: u64, port: u16) -> SampleRecord {
    use nta_lab::frames::{Ext, FrameSpec, L4};
    let frame = FrameSpec::ipv6(L4::Tcp {
        sport: 40000,
        dport: port,
        flags: tcp_flags::SYN,
    })
    .with_ipv6(|h| h.ext = vec![Ext::DestOpts; 7])
    .build();
    evasive_record(ts, &frame)
}

/// The later half of RFC 1858's overlapping fragment attack: a TCP
/// fragment at offset 8 whose bytes rewrite the flags to SYN.
fn overlapping_fragment(ts: u64, id: u16) -> SampleRecord {
    use nta_lab::frames::{FrameSpec, L4};
    let frame = FrameSpec::ipv4(L4::Raw {
        proto: 6,
        header: vec![0, 0, 0, 0, 0x50, tcp_flags::SYN, 0xff, 0xff, 0, 0, 0, 0],
    })
    .with_ipv4(|h| {
        h.frag_offset = 1;
        // A different source per datagram, all to one destination.
        h.src = std::net::Ipv4Addr::new(198, 18, 9, (id % 250) as u8 + 1);
    })
    .build();
    evasive_record(ts, &frame)
}

/// A frame built to evade parsing, as the XDP program records it.
fn evasive_record(ts: u64, frame: &[u8]) -> SampleRecord {
    let p = agent_common::parse::parse(frame);
    assert!(p.is_control(), "evasive frames are sampled as control");
    SampleRecord::from_parsed(
        &p,
        p.addresses(frame),
        agent_common::sample::SampleMeta {
            timestamp_ns: ts,
            frame_len: frame.len() as u32,
            sample_rate: 1,
            ..Default::default()
        },
    )
}

#[test]
fn frames_built_to_evade_parsing_are_an_incident() {
    // A port scan through seven extension headers: 20 probes a second to
    // 40 ports. Its ports are out of sight, so port_scan cannot see it;
    // the evasion detector does, at its default threshold (10/s).
    let mut e = engine(DetectConfig::default());
    let quiet = feed(&mut e, 100, 2, 5, |ts, i| evasive_syn(ts, i as u16));
    assert!(quiet.is_empty(), "5/s is below the threshold: {quiet:?}");
    let ev = feed(&mut e, 110, 2, 20, |ts, i| evasive_syn(ts, 1000 + i as u16));
    let s = starts(&ev, DetectorKind::Evasion);
    assert_eq!(s.len(), 1, "{ev:?}");
    let f = &s[0].incident.latest;
    assert_eq!((f.value, f.limit), (10.0, 10.0));
    assert!(f.reason.contains("evade parsing"), "{}", f.reason);
    assert!(matches!(s[0].incident.subject, Subject::Destination(_)));
    assert!(starts(&ev, DetectorKind::PortScan).is_empty());
    assert_peak(&mut e, &ev, DetectorKind::Evasion, 20.0);

    // Fragments overwriting the TCP header their first fragments carried:
    // the same detector, the same threshold.
    let mut e = engine(DetectConfig::default());
    let quiet = feed(&mut e, 100, 2, 5, |ts, i| {
        overlapping_fragment(ts, i as u16)
    });
    assert!(quiet.is_empty(), "{quiet:?}");
    let ev = feed(&mut e, 110, 2, 20, |ts, i| {
        overlapping_fragment(ts, i as u16)
    });
    let s = starts(&ev, DetectorKind::Evasion);
    assert_eq!(s.len(), 1, "{ev:?}");
    assert!(
        s[0].incident
            .latest
            .reason
            .contains("overwriting the TCP header")
    );
}

#[test]
fn plain_udp_and_ip_floods_are_caught_at_the_defaults() {
    // One source, incrementing source ports (hping3 --udp --flood): not
    // an amplification pattern, just a UDP flood.
    let udp_from = |ts: u64, i: u64| udp(ts, [198, 18, 7, 1], 1024 + (i % 60_000) as u16, 1242);
    let mut e = engine(DetectConfig::default());
    let ev = feed(&mut e, 100, 2, 40_000, udp_from);
    assert!(
        starts(&ev, DetectorKind::UdpFlood).is_empty(),
        "40 kpps: {ev:?}"
    );
    let ev = feed(&mut e, 110, 2, 60_000, udp_from);
    let s = starts(&ev, DetectorKind::UdpFlood);
    assert_eq!(s.len(), 1, "60 kpps");
    assert_eq!(
        (s[0].incident.latest.value, s[0].incident.latest.limit),
        (50_000.0, 50_000.0)
    );
    assert_peak(&mut e, &ev, DetectorKind::UdpFlood, 60_000.0);
    // Sampled 1-in-64, as a live sensor sees it: the same verdict.
    let mut e = engine(DetectConfig::default());
    let ev = feed(&mut e, 100, 2, 60_000 / 64, |ts, i| SampleRecord {
        sample_rate: 64,
        ..udp_from(ts, i)
    });
    assert_eq!(starts(&ev, DetectorKind::UdpFlood).len(), 1);
    // GRE at 25 kpps: the other-protocols flood.
    let mut e = engine(DetectConfig::default());
    let ev = feed(&mut e, 100, 2, 25_000, |ts, _| SampleRecord {
        class: ProtocolClass::Gre as u8,
        l4_proto: 47,
        src_port: 0,
        dst_port: 0,
        ..base(ts, [198, 18, 7, 2])
    });
    assert_eq!(starts(&ev, DetectorKind::IpFlood).len(), 1, "{ev:?}");
}

#[test]
fn a_tcp_flood_without_syn_needs_spoofed_sources() {
    let ack_from = |src: [u8; 4]| move |ts: u64, _i: u64| ack(ts, src);
    // One client's fast transfer: 60 kpps of ACKs from one source.
    let mut e = engine(DetectConfig::default());
    let ev = feed(&mut e, 100, 2, 60_000, ack_from([198, 18, 8, 1]));
    assert!(starts(&ev, DetectorKind::TcpFlood).is_empty(), "{ev:?}");
    // The same rate from a thousand spoofed sources.
    let mut e = engine(DetectConfig::default());
    let ev = feed(&mut e, 100, 2, 60_000, |ts, i| ack(ts, spoofed(i % 1000)));
    let s = starts(&ev, DetectorKind::TcpFlood);
    assert_eq!(s.len(), 1, "{ev:?}");
    let sources = s[0].incident.latest.distinct_sources.unwrap_or(0);
    assert!((900..=1100).contains(&sources), "{sources}");
}

#[test]
fn slow_scans_spread_over_minutes_are_found() {
    let mut e = engine(DetectConfig::default());
    // nmap -sS --scan-delay 250ms: 4 ports a second for 30 s. Never 50
    // in a 10 s window; 100 within the slow tier's 5 minutes.
    let mut out = Vec::new();
    let mut found_at = None;
    for i in 0..120u64 {
        let ts = 100 * NS + i * NS / 4;
        let mut r = syn(ts, [198, 18, 0, 9]);
        r.dst_port = 1 + i as u16;
        e.observe(&r, FlowNote::first(&r), &mut out);
        e.advance(ts, &mut out);
        if found_at.is_none() && !starts(&out, DetectorKind::PortScan).is_empty() {
            found_at = Some(i + 1);
        }
    }
    assert_eq!(found_at, Some(100), "the 100th port: {out:?}");
    let s = starts(&out, DetectorKind::PortScan);
    assert!(
        s[0].incident.latest.reason.starts_with("slow scan"),
        "{:?}",
        s[0].incident.latest.reason
    );
    // 25 hosts in 5 minutes on one port: a slow sweep.
    let mut e = engine(DetectConfig::default());
    let mut out = Vec::new();
    for i in 0..25u64 {
        let ts = 100 * NS + i * 12 * NS;
        let mut r = syn(ts, [198, 18, 0, 10]);
        r.dst_addr = map_ipv4([198, 18, 20, i as u8]);
        e.observe(&r, FlowNote::first(&r), &mut out);
        e.advance(ts, &mut out);
        assert_eq!(
            starts(&out, DetectorKind::Sweep).len(),
            usize::from(i == 24),
            "host {}",
            i + 1
        );
    }
}
