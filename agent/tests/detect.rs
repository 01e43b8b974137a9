//! Detectors on synthetic sample streams through the whole engine:
//! thresholds exactly at, below and above; sampled input; spoofing and
//! completion evidence; baseline warm-up; host groups and the allowlist;
//! incident start, update and end.

use agent_common::{
    class::{ProtocolClass, tcp_flags},
    sample::{RECORD_VERSION, SampleRecord, map_ipv4, record_flags},
};
use nta::pipeline::detect::{
    AlertEvent, DetectConfig, DetectorKind, Engine, Incidents, NS, Subject, Transition,
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
            e.observe(&make(ts, i), true, &mut out);
        }
        e.advance((s + 1) * NS, &mut out);
    }
    out
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
    for (rate, alerts) in [(999, false), (1000, true), (5000, true)] {
        let mut e = engine(config());
        let ev = feed(&mut e, 100, 3, rate, |ts, i| syn(ts, spoofed(i)));
        let s = starts(&ev, DetectorKind::SynFlood);
        assert_eq!(s.len(), usize::from(alerts), "{rate} SYN/s: {ev:?}");
        if let Some(s) = s.first() {
            let f = &s.incident.latest;
            assert_eq!(f.value, rate as f64);
            assert_eq!(f.limit, 1000.0);
            assert_eq!(f.reason, "many distinct sources (spoofed)");
            let sources = f.distinct_sources.unwrap_or(0) as f64;
            assert!(
                (sources - rate as f64).abs() / (rate as f64) < 0.1,
                "{sources}"
            );
            assert_eq!(s.incident.subject, Subject::Destination(map_ipv4(VICTIM)));
            // Reported when the first second closed.
            assert_eq!(s.ts_ns, 101 * NS);
            assert!(!s.incident.evidence.is_empty());
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
    let ev = feed(&mut e, 10, 2, dns - 1, |ts, i| {
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
        Subject::DestinationPort {
            dst: map_ipv4(VICTIM),
            port: 53
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

#[test]
fn volume_baseline_warms_up_then_catches_a_surge() {
    let mut c = config();
    c.volume.warmup_seconds = 30;
    c.volume.floor_pps = 500.0;
    c.volume.floor_bps = 1e12;
    c.incidents.quiet = std::time::Duration::from_secs(3);
    let mut e = engine(c);
    // A surge during warm-up is not judged.
    let ev = feed(&mut e, 100, 5, 5000, |ts, _| {
        udp(ts, [198, 18, 5, 1], 4000, 100)
    });
    assert!(starts(&ev, DetectorKind::Volume).is_empty(), "{ev:?}");
    // Normal traffic: 400-600 pps, below the floor and inside the band.
    let ev = feed(&mut e, 105, 60, 500, |ts, i| {
        let _ = i;
        udp(ts, [198, 18, 5, 1], 4000, 100)
    });
    assert!(starts(&ev, DetectorKind::Volume).is_empty(), "{ev:?}");
    let ev = feed(&mut e, 165, 3, 20_000, |ts, _| {
        udp(ts, [198, 18, 5, 1], 4000, 100)
    });
    let s = starts(&ev, DetectorKind::Volume);
    assert_eq!(s.len(), 1, "{ev:?}");
    let f = &s[0].incident.latest;
    assert_eq!(f.reason, "above the learned baseline");
    let band = f.baseline.unwrap_or_else(|| panic!("no band"));
    assert!(
        band.mean < 5000.0,
        "the warm-up surge was learned too: {band:?}"
    );
    assert_eq!(f.value, 20_000.0);
    // The attack is not learned: the band stays where it was.
    let top = e.top_destinations();
    assert_eq!(top[0].addr, map_ipv4(VICTIM));
    assert!(top[0].pps_band.is_some_and(|b| b.mean < 5000.0));
    // Quiet again: the incident ends.
    let ev = feed(&mut e, 168, 5, 500, |ts, _| {
        udp(ts, [198, 18, 5, 1], 4000, 100)
    });
    assert_eq!(
        ev.iter()
            .filter(|e| e.transition == Transition::End)
            .count(),
        1,
        "{ev:?}"
    );
}

#[test]
fn host_groups_set_thresholds_and_alert_as_a_whole() {
    let mut c: DetectConfig = toml::from_str(
        r#"
        [volume]
        baseline = false
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
            (Transition::Start, "inc-1", 101),
            (Transition::Update, "inc-1", 111),
            (Transition::Update, "inc-1", 121),
            (Transition::End, "inc-1", 130),
        ]
    );
}

#[test]
fn random_destination_flood_keeps_memory_fixed_and_finds_the_target() {
    let mut c = config();
    c.tracked_keys = 4096;
    c.volume.baseline = false;
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
        c.volume.baseline = false;
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
    let p = agent_common::parse::parse(frame.as_slice());
    assert!(p.is_control(), "evasive frames are sampled as control");
    SampleRecord::from_parsed(
        &p,
        p.addresses(frame.as_slice()),
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
    assert_eq!((f.value, f.limit), (20.0, 10.0));
    assert!(f.reason.contains("evade parsing"), "{}", f.reason);
    assert!(matches!(s[0].incident.subject, Subject::Destination(_)));
    assert!(starts(&ev, DetectorKind::PortScan).is_empty());
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
        (60_000.0, 50_000.0)
    );
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
        e.observe(&r, true, &mut out);
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
        e.observe(&r, true, &mut out);
        e.advance(ts, &mut out);
        assert_eq!(
            starts(&out, DetectorKind::Sweep).len(),
            usize::from(i == 24),
            "host {}",
            i + 1
        );
    }
}
