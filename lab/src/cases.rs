//! A corpus of crafted frames with what a correct parser must say about
//! each: every protocol class, every parse-error reason, VLAN/QinQ, IPv4
//! options, IPv6 extension chains with AH, fragments, and truncation at
//! every byte of two deep frames. Shared by the userspace parser tests and
//! the kernel tests, so both are held to the same expectations.

use crate::frames::{Ext, FrameSpec, L4, TPID_8021AD, TPID_8021Q, pad_to_min};

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub frame: Vec<u8>,
    /// Protocol class label (`nta_packets_total{protocol}`).
    pub class: &'static str,
    /// Parse error label when malformed.
    pub reason: Option<&'static str>,
    /// 4, 6 or 0.
    pub ip_version: u8,
    pub vlan_depth: u8,
    /// TCP flags byte when the class is tcp.
    pub tcp_flags: u8,
    /// Ports (ICMP: type and code) when the class carries them.
    pub ports: Option<(u16, u16)>,
}

impl Case {
    /// The `flag` labels of `nta_tcp_flags_total` this frame increments.
    pub fn tcp_flag_labels(&self) -> Vec<&'static str> {
        if self.class != "tcp" {
            return Vec::new();
        }
        let f = self.tcp_flags;
        let mut labels = Vec::new();
        if f & SYN != 0 {
            labels.push(if f & ACK != 0 { "synack" } else { "syn" });
        }
        if f & FIN != 0 {
            labels.push("fin");
        }
        if f & RST != 0 {
            labels.push("rst");
        }
        labels
    }
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

fn case(name: &str, spec: &FrameSpec, class: &'static str, ip_version: u8) -> Case {
    Case {
        name: name.to_string(),
        frame: spec.build(),
        class,
        reason: None,
        ip_version,
        vlan_depth: spec.vlans.len() as u8,
        tcp_flags: 0,
        ports: None,
    }
}

fn with_ports(mut c: Case, ports: (u16, u16)) -> Case {
    c.ports = Some(ports);
    c
}

fn malformed(
    name: &str,
    frame: Vec<u8>,
    reason: &'static str,
    ip_version: u8,
    vlan_depth: u8,
) -> Case {
    Case {
        name: name.to_string(),
        frame,
        class: "malformed",
        reason: Some(reason),
        ip_version,
        vlan_depth,
        tcp_flags: 0,
        ports: None,
    }
}

fn tcp(name: &str, spec: FrameSpec, flags: u8, ip_version: u8) -> Case {
    let mut c = case(name, &spec, "tcp", ip_version);
    c.tcp_flags = flags;
    if let L4::Tcp { sport, dport, .. } = spec.l4 {
        c.ports = Some((sport, dport));
    }
    c
}

/// Frames for each class and error reason, complete (not truncated).
pub fn protocol_cases() -> Vec<Case> {
    let t = |sport, dport, flags| L4::Tcp {
        sport,
        dport,
        flags,
    };
    let deep_v6 = FrameSpec::ipv6(t(33000, 443, SYN))
        .with_vlan(TPID_8021AD, 100)
        .with_vlan(TPID_8021Q, 200)
        .with_ipv6(|h| h.ext = vec![Ext::HopByHop, Ext::Routing, Ext::DestOpts]);
    let mut v = vec![
        tcp("ipv4-tcp-syn", FrameSpec::ipv4(t(40000, 80, SYN)), SYN, 4),
        tcp(
            "ipv4-tcp-synack",
            FrameSpec::ipv4(t(80, 40000, SYN | ACK)),
            SYN | ACK,
            4,
        ),
        tcp(
            "ipv4-tcp-fin",
            FrameSpec::ipv4(t(40000, 80, FIN | ACK)),
            FIN | ACK,
            4,
        ),
        tcp("ipv4-tcp-rst", FrameSpec::ipv4(t(40000, 80, RST)), RST, 4),
        tcp(
            "ipv4-tcp-ack-data",
            FrameSpec::ipv4(t(40000, 80, ACK)).with_payload(1000),
            ACK,
            4,
        ),
        tcp("ipv6-tcp-syn", FrameSpec::ipv6(t(40001, 22, SYN)), SYN, 6),
        tcp("qinq-ipv6-3ext-tcp-syn", deep_v6, SYN, 6),
        tcp(
            "ipv6-ah-tcp",
            FrameSpec::ipv6(t(1, 2, ACK))
                .with_ipv6(|h| h.ext = vec![Ext::HopByHop, Ext::Ah { icv_words: 3 }]),
            ACK,
            6,
        ),
        with_ports(
            case(
                "ipv4-udp",
                &FrameSpec::ipv4(L4::Udp {
                    sport: 5353,
                    dport: 53,
                })
                .with_payload(20),
                "udp",
                4,
            ),
            (5353, 53),
        ),
        with_ports(
            case(
                "ipv6-udp",
                &FrameSpec::ipv6(L4::Udp {
                    sport: 123,
                    dport: 123,
                })
                .with_payload(48),
                "udp",
                6,
            ),
            (123, 123),
        ),
        with_ports(
            case(
                "vlan-ipv4-udp",
                &FrameSpec::ipv4(L4::Udp { sport: 9, dport: 9 }).with_vlan(TPID_8021Q, 42),
                "udp",
                4,
            ),
            (9, 9),
        ),
        with_ports(
            case(
                "ipv4-options-udp",
                &FrameSpec::ipv4(L4::Udp { sport: 7, dport: 7 })
                    .with_ipv4(|h| h.options = vec![0x94, 0x04, 0, 0, 1, 1, 1, 1]),
                "udp",
                4,
            ),
            (7, 7),
        ),
        tcp(
            "ipv4-max-options-tcp",
            FrameSpec::ipv4(t(1, 2, ACK)).with_ipv4(|h| h.options = vec![1; 40]),
            ACK,
            4,
        ),
        with_ports(
            case(
                "ipv4-icmp-echo",
                &FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }),
                "icmp",
                4,
            ),
            (8, 0),
        ),
        with_ports(
            case(
                "ipv4-icmp-unreach",
                &FrameSpec::ipv4(L4::Icmp { kind: 3, code: 3 }),
                "icmp",
                4,
            ),
            (3, 3),
        ),
        with_ports(
            case(
                "ipv6-icmpv6-echo",
                &FrameSpec::ipv6(L4::Icmpv6 { kind: 128, code: 0 }),
                "icmpv6",
                6,
            ),
            (128, 0),
        ),
        with_ports(
            case(
                "ipv4-sctp",
                &FrameSpec::ipv4(L4::Sctp {
                    sport: 2905,
                    dport: 2906,
                }),
                "sctp",
                4,
            ),
            (2905, 2906),
        ),
        with_ports(
            case(
                "ipv6-sctp",
                &FrameSpec::ipv6(L4::Sctp {
                    sport: 36412,
                    dport: 36412,
                }),
                "sctp",
                6,
            ),
            (36412, 36412),
        ),
        case("ipv4-gre", &FrameSpec::ipv4(L4::Gre), "gre", 4),
        case("ipv6-gre", &FrameSpec::ipv6(L4::Gre), "gre", 6),
        case(
            "ipv4-esp",
            &FrameSpec::ipv4(L4::Raw {
                proto: 50,
                header: vec![0; 8],
            }),
            "other_ip",
            4,
        ),
        case(
            "ipv6-no-next-header",
            &FrameSpec::ipv6(L4::None),
            "other_ip",
            6,
        ),
        case(
            "ipv4-igmp",
            &FrameSpec::ipv4(L4::Raw {
                proto: 2,
                header: vec![0x11, 0, 0, 0, 0, 0, 0, 0],
            }),
            "other_ip",
            4,
        ),
        with_ports(
            case(
                "ipv4-first-fragment-udp",
                &FrameSpec::ipv4(L4::Udp {
                    sport: 53,
                    dport: 40000,
                })
                .with_payload(64)
                .with_ipv4(|h| h.more_fragments = true),
                "udp",
                4,
            ),
            (53, 40000),
        ),
        case(
            "ipv4-later-fragment",
            &FrameSpec::ipv4(L4::Raw {
                proto: 17,
                header: vec![0xaa; 32],
            })
            .with_ipv4(|h| h.frag_offset = 185),
            "fragment",
            4,
        ),
        case(
            "ipv4-last-fragment",
            &FrameSpec::ipv4(L4::Raw {
                proto: 6,
                header: vec![0xbb; 4],
            })
            .with_ipv4(|h| h.frag_offset = 3),
            "fragment",
            4,
        ),
        with_ports(
            case(
                "ipv6-first-fragment-udp",
                &FrameSpec::ipv6(L4::Udp {
                    sport: 500,
                    dport: 4500,
                })
                .with_ipv6(|h| {
                    h.ext = vec![Ext::Fragment {
                        offset: 0,
                        more: true,
                    }]
                }),
                "udp",
                6,
            ),
            (500, 4500),
        ),
        case(
            "ipv6-later-fragment",
            &FrameSpec::ipv6(L4::Raw {
                proto: 17,
                header: vec![0xcc; 8],
            })
            .with_ipv6(|h| {
                h.ext = vec![
                    Ext::HopByHop,
                    Ext::Fragment {
                        offset: 100,
                        more: false,
                    },
                ]
            }),
            "fragment",
            6,
        ),
        case("arp", &FrameSpec::arp(), "arp", 0),
        case(
            "vlan-arp",
            &FrameSpec::arp().with_vlan(TPID_8021Q, 7),
            "arp",
            0,
        ),
        case("lldp", &FrameSpec::raw(0x88cc, vec![0; 46]), "non_ip", 0),
        case("mpls", &FrameSpec::raw(0x8847, vec![0; 46]), "non_ip", 0),
        case(
            "triple-vlan-ipv4",
            &FrameSpec::ipv4(L4::Udp { sport: 1, dport: 1 })
                .with_vlan(TPID_8021AD, 1)
                .with_vlan(TPID_8021Q, 2)
                .with_vlan(TPID_8021Q, 3),
            "non_ip",
            0,
        ),
    ];
    // The third tag is not walked: two tags are counted.
    if let Some(c) = v.iter_mut().find(|c| c.name == "triple-vlan-ipv4") {
        c.vlan_depth = 2;
    }
    v.extend(error_cases());
    v
}

fn error_cases() -> Vec<Case> {
    let udp = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 });
    let mut bad_version = udp.build();
    bad_version[14] = 0x55;
    let mut short_ihl = udp.build();
    short_ihl[14] = 0x44;
    let mut bad_total = udp.build();
    bad_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    let mut ihl_past_end = udp.build();
    ihl_past_end.truncate(34 + 4);
    ihl_past_end[14] = 0x4f;
    ihl_past_end[16..18].copy_from_slice(&80u16.to_be_bytes());
    let mut bad_v6 = FrameSpec::ipv6(L4::Udp { sport: 1, dport: 2 }).build();
    bad_v6[14] = 0x40;
    let ext_limit = FrameSpec::ipv6(L4::Udp { sport: 1, dport: 2 })
        .with_ipv6(|h| h.ext = vec![Ext::DestOpts; 7])
        .build();
    vec![
        malformed("ipv4-version-5", bad_version, "bad_ipv4_header", 0, 0),
        malformed("ipv4-ihl-4", short_ihl, "bad_ipv4_header", 0, 0),
        malformed(
            "ipv4-total-length-short",
            bad_total,
            "bad_ipv4_header",
            0,
            0,
        ),
        malformed("ipv4-ihl-past-end", ihl_past_end, "ipv4_ihl_past_end", 0, 0),
        malformed("ipv6-version-4", bad_v6, "bad_ipv6_header", 0, 0),
        malformed("ipv6-7-ext-headers", ext_limit, "ipv6_ext_limit", 6, 0),
        malformed(
            "ipv4-tiny-first-fragment-padded-syn",
            tiny_tcp(true, 4),
            "tiny_fragment",
            4,
            0,
        ),
        malformed(
            "ipv4-tcp-header-past-datagram",
            tiny_tcp(false, 4),
            "truncated_l4",
            4,
            0,
        ),
        malformed(
            "ipv6-tiny-first-fragment-padded-syn",
            tiny_tcp(true, 6),
            "tiny_fragment",
            6,
            0,
        ),
        malformed(
            "ipv4-tcp-fragment-overwriting-header",
            overlapping_tcp(4),
            "overlapping_fragment",
            4,
            0,
        ),
        malformed(
            "ipv6-tcp-fragment-overwriting-header",
            overlapping_tcp(6),
            "overlapping_fragment",
            6,
            0,
        ),
    ]
}

/// RFC 1858's overlapping fragment attack: a later fragment at offset 8
/// (IPv4) or 16 (IPv6) bytes, inside the TCP header the first fragment
/// carried, rewriting its flags to SYN on reassembly.
fn overlapping_tcp(ip_version: u8) -> Vec<u8> {
    // From byte 8 (IPv4) or 16 (IPv6) of a TCP header on.
    let header = if ip_version == 4 {
        vec![0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0, 0, 0, 0]
    } else {
        vec![0, 0, 0, 0, 0, 0, 0, 0]
    };
    let l4 = L4::Raw { proto: 6, header };
    let frame = if ip_version == 4 {
        FrameSpec::ipv4(l4).with_ipv4(|h| h.frag_offset = 1).build()
    } else {
        FrameSpec::ipv6(l4)
            .with_ipv6(|h| {
                h.ext = vec![Ext::Fragment {
                    offset: 2,
                    more: false,
                }]
            })
            .build()
    };
    pad_to_min(frame)
}

/// The RFC 1858 trick: a datagram carrying only 8 bytes of TCP header
/// (ports, sequence number), with bytes after it that read as the rest of
/// a SYN's header (Ethernet padding is the sender's to choose). A first
/// fragment (`fragment`) or a whole datagram whose length says so.
fn tiny_tcp(fragment: bool, ip_version: u8) -> Vec<u8> {
    let l4 = L4::Raw {
        proto: 6,
        header: vec![0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1],
    };
    let mut frame = if ip_version == 4 {
        FrameSpec::ipv4(l4)
            .with_ipv4(|h| h.more_fragments = fragment)
            .build()
    } else if fragment {
        FrameSpec::ipv6(l4)
            .with_ipv6(|h| {
                h.ext = vec![Ext::Fragment {
                    offset: 0,
                    more: true,
                }]
            })
            .build()
    } else {
        FrameSpec::ipv6(l4).build()
    };
    // The "rest of the header": acknowledgment number, data offset 5,
    // flags SYN, window, checksum, urgent pointer.
    frame.extend_from_slice(&[0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0, 0, 0, 0]);
    pad_to_min(frame)
}

/// The expected verdict of a frame cut to `len` bytes, given the offsets
/// where each header of the full frame ends.
fn cut_case(name: &str, full: &Case, len: usize, boundaries: &[(usize, &'static str, u8)]) -> Case {
    let mut frame = full.frame.clone();
    frame.truncate(len);
    for &(end, reason, ip_version) in boundaries {
        if len < end {
            let vlan = if reason == "truncated_ethernet" {
                0
            } else {
                full.vlan_depth
            };
            return malformed(
                &format!("{name}-cut-{len}"),
                frame,
                reason,
                ip_version,
                vlan,
            );
        }
    }
    let mut c = full.clone();
    c.name = format!("{name}-cut-{len}");
    c.frame = frame;
    c
}

/// Two deep frames cut at every length from 0 to their full size.
pub fn truncation_cases() -> Vec<Case> {
    let mut out = Vec::new();
    // QinQ + IPv6 + hop-by-hop (8) + routing (24) + destination options (8) + TCP (20).
    let deep = protocol_cases()
        .into_iter()
        .find(|c| c.name == "qinq-ipv6-3ext-tcp-syn");
    if let Some(full) = deep {
        let b = [
            (14, "truncated_ethernet", 0),
            (18, "truncated_vlan", 0),
            (22, "truncated_vlan", 0),
            (62, "truncated_ipv6", 0),
            (70, "truncated_ipv6_ext", 6),
            (94, "truncated_ipv6_ext", 6),
            (102, "truncated_ipv6_ext", 6),
            (122, "truncated_l4", 6),
        ];
        for len in 0..=full.frame.len() {
            let mut c = cut_case("qinq-ipv6", &full, len, &b);
            // A cut inside the second tag still counts the first.
            if c.reason == Some("truncated_vlan") {
                c.vlan_depth = if len < 18 { 0 } else { 1 };
            }
            out.push(c);
        }
    }
    // IPv4 with 4 bytes of options + UDP.
    let v4 = FrameSpec::ipv4(L4::Udp {
        sport: 4000,
        dport: 4001,
    })
    .with_ipv4(|h| h.options = vec![1, 1, 1, 1]);
    let full = with_ports(case("ipv4-opt-udp", &v4, "udp", 4), (4000, 4001));
    let b = [
        (14, "truncated_ethernet", 0),
        (34, "truncated_ipv4", 0),
        (38, "ipv4_ihl_past_end", 0),
        (46, "truncated_l4", 4),
    ];
    for len in 0..=full.frame.len() {
        out.push(cut_case("ipv4-opt-udp", &full, len, &b));
    }
    out
}

/// Complete frames padded to the Ethernet minimum, as a wire delivers them.
pub fn padded(cases: Vec<Case>) -> Vec<Case> {
    cases
        .into_iter()
        .map(|mut c| {
            c.frame = pad_to_min(c.frame);
            c
        })
        .collect()
}
