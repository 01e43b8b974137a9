//! Smoke test of the lab traffic generator, so it cannot rot: a few
//! thousand frames of each mix into nta's XDP program on a lab veth pair,
//! every frame received and counted exactly, and the rewritten fields
//! (random sources, distinct flows) as promised.

use std::collections::HashSet;

use agent_common::{class::ProtocolClass, config::SamplerConfig, sample::SampleRecord};
use clap::ValueEnum as _;
use nta::kernel::sensor::{ModeChoice, Sensor, SensorMaps};
use nta_bench::{
    generator::Limits,
    live::Lab,
    mixes::{MixName, templates},
};
use nta_lab::{netns::run_in_netns, privileged};

const FRAMES: u64 = 4096;

fn attach_nta(lab: &Lab) -> (Sensor, SensorMaps) {
    let iface = lab.veth.inner.clone();
    run_in_netns(lab.recv_ns.name(), move || {
        let config = SamplerConfig {
            data_rate: 1,
            control_rate: 1,
            // One record per frame: no budget thinning them.
            control_budget: 0,
            ..SamplerConfig::default()
        };
        let (mut sensor, maps) = Sensor::load(config).unwrap_or_else(|e| panic!("{e}"));
        sensor
            .attach(&iface, ModeChoice::Native)
            .unwrap_or_else(|e| panic!("{e}"));
        (sensor, maps)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn send(lab: &Lab, mix: MixName) -> u64 {
    let limits = Limits {
        count: FRAMES,
        duration: std::time::Duration::from_secs(10),
        rate: None,
    };
    lab.generate(mix, limits)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .sent
}

fn drain(maps: &mut SensorMaps) -> Vec<SampleRecord> {
    let mut out = Vec::new();
    while let Some(item) = maps.samples.next() {
        out.push(SampleRecord::decode(&item).unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

#[test]
fn every_mix_arrives_and_is_counted_exactly() {
    if !privileged("every_mix_arrives_and_is_counted_exactly") {
        return;
    }
    let lab = Lab::new().unwrap_or_else(|e| panic!("{e:#}"));
    let (_sensor, mut maps) = attach_nta(&lab);
    for &mix in MixName::value_variants() {
        let rx0 = lab.rx().unwrap_or_else(|e| panic!("{e:#}"));
        let c0 = maps.counters.read().unwrap_or_else(|e| panic!("{e}"));
        let sent = send(&lab, mix);
        assert_eq!(sent, FRAMES, "{mix:?}: generator stops at the count");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let rx1 = lab.rx().unwrap_or_else(|e| panic!("{e:#}"));
        let c1 = maps.counters.read().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rx1.rx_packets - rx0.rx_packets, FRAMES, "{mix:?}: received");
        assert_eq!(
            c1.total_packets() - c0.total_packets(),
            FRAMES,
            "{mix:?}: counted"
        );
        assert_eq!(
            c1.packets[ProtocolClass::Malformed as usize],
            0,
            "{mix:?}: well-formed"
        );
        let records = drain(&mut maps);
        assert_eq!(
            records.len() as u64,
            FRAMES,
            "{mix:?}: one sample per frame at 1-in-1"
        );
        match mix {
            MixName::SynFlood => {
                let sources: HashSet<[u8; 16]> = records.iter().map(|r| r.src_addr).collect();
                assert!(
                    sources.len() > 3000,
                    "random sources: {} distinct of {FRAMES}",
                    sources.len()
                );
                assert!(
                    records
                        .iter()
                        .all(|r| r.src_addr[12] == 198 && r.src_addr[13] & 0xfe == 18),
                    "sources stay in 198.18.0.0/15"
                );
                assert_eq!(c1.tcp_flags[0] - c0.tcp_flags[0], FRAMES, "all SYNs");
            }
            // A new client for every hello too.
            MixName::ManyFlows | MixName::TlsHellos => {
                let flows: HashSet<([u8; 16], u16)> =
                    records.iter().map(|r| (r.src_addr, r.src_port)).collect();
                assert_eq!(
                    flows.len() as u64,
                    FRAMES,
                    "65536 flows: every one of the first {FRAMES} frames distinct"
                );
            }
            MixName::Realistic => {
                let sizes: HashSet<u32> = records.iter().map(|r| r.frame_len).collect();
                let want: HashSet<u32> = templates(mix)
                    .iter()
                    .map(|t| t.frame.len() as u32)
                    .collect();
                assert_eq!(sizes, want, "every template size appears");
            }
            MixName::Vlan => assert!(
                records.iter().all(|r| r.vlan_id == 100),
                "{} untagged, e.g. {:?}",
                records.iter().filter(|r| r.vlan_depth == 0).count(),
                records.iter().find(|r| r.vlan_depth == 0)
            ),
            MixName::Ipv6 => assert!(records.iter().all(|r| r.ip_version == 6)),
            MixName::Udp64 => assert!(records.iter().all(|r| r.frame_len == 60)),
        }
    }
}
