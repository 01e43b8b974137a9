//! The traffic mixes the generator sends: template frames with weights and
//! the generator mode that rewrites them per packet.

use agent_common::generator::{MODE_FIXED, MODE_MANY_FLOWS, MODE_RANDOM_SOURCE};
use nta_lab::frames::{FrameSpec, L4, TPID_8021Q, pad_to_min};

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MixName {
    /// 64-byte IPv4 UDP (60 bytes plus FCS on a wire).
    Udp64,
    /// 64-byte TCP SYNs from random sources in 198.18.0.0/15.
    SynFlood,
    /// IPv6 UDP, 78 bytes.
    Ipv6,
    /// 802.1Q-tagged 64-byte IPv4 UDP.
    Vlan,
    /// Sizes and protocols of a typical link: IMIX sizes (64/594/1518 in
    /// 7:4:1), TCP, UDP, ICMP, IPv6.
    Realistic,
    /// 64-byte IPv4 UDP cycling through `--flows` distinct 5-tuples.
    ManyFlows,
    /// A TLS ClientHello (a browser-like one, 203-byte frames) from a new
    /// client address each frame: a new TLS connection per frame.
    TlsHellos,
}

/// One template and its share of the mix.
pub struct Template {
    pub frame: Vec<u8>,
    pub weight: u32,
    pub mode: u32,
    pub l3_offset: u32,
    pub l4_offset: u32,
}

fn sized(spec: FrameSpec, size: usize) -> Vec<u8> {
    let base = spec.build().len();
    pad_to_min(spec.with_payload(size.saturating_sub(base)).build())
}

fn t(frame: Vec<u8>, weight: u32, mode: u32, vlan: bool) -> Template {
    let l3 = if vlan { 18 } else { 14 };
    Template {
        frame,
        weight,
        mode,
        l3_offset: l3,
        l4_offset: l3 + 20,
    }
}

pub fn templates(mix: MixName) -> Vec<Template> {
    let udp = || {
        FrameSpec::ipv4(L4::Udp {
            sport: 1024,
            dport: 9,
        })
    };
    match mix {
        MixName::Udp64 => vec![t(sized(udp(), 60), 1, MODE_FIXED, false)],
        MixName::SynFlood => vec![t(
            sized(
                FrameSpec::ipv4(L4::Tcp {
                    sport: 1024,
                    dport: 80,
                    flags: SYN,
                }),
                60,
            ),
            1,
            MODE_RANDOM_SOURCE,
            false,
        )],
        MixName::Ipv6 => vec![t(
            sized(
                FrameSpec::ipv6(L4::Udp {
                    sport: 1024,
                    dport: 9,
                }),
                78,
            ),
            1,
            MODE_FIXED,
            false,
        )],
        MixName::Vlan => vec![t(
            sized(udp().with_vlan(TPID_8021Q, 100), 64),
            1,
            MODE_FIXED,
            true,
        )],
        MixName::Realistic => vec![
            t(
                sized(
                    FrameSpec::ipv4(L4::Tcp {
                        sport: 443,
                        dport: 50000,
                        flags: ACK,
                    }),
                    60,
                ),
                5,
                MODE_FIXED,
                false,
            ),
            t(sized(udp(), 60), 2, MODE_FIXED, false),
            t(
                sized(
                    FrameSpec::ipv4(L4::Tcp {
                        sport: 50000,
                        dport: 443,
                        flags: ACK,
                    }),
                    594,
                ),
                3,
                MODE_FIXED,
                false,
            ),
            t(
                sized(
                    FrameSpec::ipv6(L4::Tcp {
                        sport: 443,
                        dport: 50001,
                        flags: ACK,
                    }),
                    594,
                ),
                1,
                MODE_FIXED,
                false,
            ),
            t(
                sized(
                    FrameSpec::ipv4(L4::Tcp {
                        sport: 443,
                        dport: 50000,
                        flags: ACK,
                    }),
                    1514,
                ),
                1,
                MODE_FIXED,
                false,
            ),
            t(
                sized(FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }), 98),
                1,
                MODE_FIXED,
                false,
            ),
        ],
        MixName::ManyFlows => vec![t(sized(udp(), 60), 1, MODE_MANY_FLOWS, false)],
        MixName::TlsHellos => vec![t(
            FrameSpec::ipv4(L4::Tcp {
                sport: 1024,
                dport: 443,
                flags: 0x18,
            })
            .with_tcp_seq(1)
            .with_payload_bytes(&nta_lab::tls::browser_like("bench.example").record())
            .build(),
            1,
            MODE_MANY_FLOWS,
            false,
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{class::ProtocolClass, parse};
    use clap::ValueEnum as _;

    #[test]
    fn templates_have_the_stated_sizes_and_parse() {
        assert_eq!(templates(MixName::Udp64)[0].frame.len(), 60);
        assert_eq!(templates(MixName::Vlan)[0].frame.len(), 64);
        assert_eq!(templates(MixName::Ipv6)[0].frame.len(), 78);
        let sizes: Vec<usize> = templates(MixName::Realistic)
            .iter()
            .map(|t| t.frame.len())
            .collect();
        assert!(sizes.contains(&594) && sizes.contains(&1514));
        for &mix in MixName::value_variants() {
            for t in templates(mix) {
                let p = parse::parse(&t.frame[..]);
                assert!(p.error.is_none(), "{mix:?}: {p:?}");
                assert_ne!(p.class, ProtocolClass::NonIp);
                if p.ip_version == 4 {
                    assert_eq!(p.l3_offset as u32, t.l3_offset, "{mix:?}");
                }
            }
        }
    }
}
