//! A known mix of frames: one of every protocol class, with the class each
//! must be counted in. Used by the end-to-end test and the demo.

use crate::frames::{Ext, FrameSpec, L4, TPID_8021AD, TPID_8021Q, pad_to_min};

/// One kind of frame in the mix.
pub struct MixEntry {
    pub name: &'static str,
    pub frame: Vec<u8>,
    /// The `protocol` label it is counted under.
    pub class: &'static str,
    /// IP version counted for it (0 for none).
    pub ip_version: u8,
    pub vlan: bool,
    /// The `flag` label of `nta_tcp_flags_total` it increments, if any.
    pub tcp_flag: Option<&'static str>,
    /// The `reason` label of `nta_parse_errors_total`, if malformed.
    pub parse_error: Option<&'static str>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// One frame of each class plus VLAN and error variants. Frames are padded to
/// the Ethernet minimum as they would be on a wire; the malformed one is a
/// truncated TCP header inside a padded frame's declared length.
pub fn protocol_mix() -> Vec<MixEntry> {
    let e = |name, spec: FrameSpec, class, ip_version| MixEntry {
        name,
        frame: pad_to_min(spec.build()),
        class,
        ip_version,
        vlan: false,
        tcp_flag: None,
        parse_error: None,
    };
    let mut syn = e(
        "tcp-syn",
        FrameSpec::ipv4(L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: SYN,
        }),
        "tcp",
        4,
    );
    syn.tcp_flag = Some("syn");
    let mut synack = e(
        "tcp6-synack",
        FrameSpec::ipv6(L4::Tcp {
            sport: 443,
            dport: 40000,
            flags: SYN | ACK,
        }),
        "tcp",
        6,
    );
    synack.tcp_flag = Some("synack");
    let mut vlan_udp = e(
        "udp-vlan",
        FrameSpec::ipv4(L4::Udp {
            sport: 5353,
            dport: 53,
        })
        .with_vlan(TPID_8021Q, 10)
        .with_payload(100),
        "udp",
        4,
    );
    vlan_udp.vlan = true;
    let mut qinq = e(
        "udp6-qinq-ext",
        FrameSpec::ipv6(L4::Udp {
            sport: 1000,
            dport: 2000,
        })
        .with_vlan(TPID_8021AD, 100)
        .with_vlan(TPID_8021Q, 200)
        .with_ipv6(|h| h.ext = vec![Ext::HopByHop, Ext::Routing, Ext::DestOpts]),
        "udp",
        6,
    );
    qinq.vlan = true;
    // An IPv4 header whose IHL claims 60 bytes in a 34-byte frame.
    let mut bad = FrameSpec::ipv4(L4::None).build();
    bad.truncate(34);
    bad[14] = 0x4f;
    bad[16..18].copy_from_slice(&80u16.to_be_bytes());
    let malformed = MixEntry {
        name: "ipv4-ihl-past-end",
        frame: bad,
        class: "malformed",
        ip_version: 0,
        vlan: false,
        tcp_flag: None,
        parse_error: Some("ipv4_ihl_past_end"),
    };
    vec![
        syn,
        synack,
        e(
            "udp",
            FrameSpec::ipv4(L4::Udp {
                sport: 1234,
                dport: 5678,
            })
            .with_payload(18),
            "udp",
            4,
        ),
        vlan_udp,
        qinq,
        e(
            "icmp-echo",
            FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }),
            "icmp",
            4,
        ),
        e(
            "icmpv6-echo",
            FrameSpec::ipv6(L4::Icmpv6 { kind: 128, code: 0 }),
            "icmpv6",
            6,
        ),
        e(
            "sctp",
            FrameSpec::ipv4(L4::Sctp {
                sport: 2905,
                dport: 2905,
            }),
            "sctp",
            4,
        ),
        e("gre", FrameSpec::ipv4(L4::Gre), "gre", 4),
        e(
            "esp",
            FrameSpec::ipv4(L4::Raw {
                proto: 50,
                header: vec![0; 8],
            }),
            "other_ip",
            4,
        ),
        e(
            "ipv4-later-fragment",
            FrameSpec::ipv4(L4::Raw {
                proto: 17,
                header: vec![0; 16],
            })
            .with_ipv4(|h| h.frag_offset = 185),
            "fragment",
            4,
        ),
        e("arp", FrameSpec::arp(), "arp", 0),
        e("lldp", FrameSpec::raw(0x88cc, vec![0; 46]), "non_ip", 0),
        malformed,
    ]
}
