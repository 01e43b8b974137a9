//! The userspace build of the shared parser against the crafted corpus.

use agent_common::{
    class::ProtocolClass,
    parse::{self, Parsed},
};
use nta_lab::cases::{Case, padded, protocol_cases, truncation_cases};

fn check(c: &Case) -> Parsed {
    let p = parse::parse(&c.frame[..]);
    assert_eq!(p.class.label(), c.class, "{}: class", c.name);
    assert_eq!(p.error.map(|e| e.label()), c.reason, "{}: reason", c.name);
    assert_eq!(p.ip_version, c.ip_version, "{}: ip version", c.name);
    assert_eq!(p.vlan_depth, c.vlan_depth, "{}: vlan depth", c.name);
    if p.class == ProtocolClass::Tcp {
        assert_eq!(p.tcp_flags, c.tcp_flags, "{}: tcp flags", c.name);
    }
    if let Some(ports) = c.ports {
        assert_eq!((p.src_port, p.dst_port), ports, "{}: ports", c.name);
    }
    p
}

#[test]
fn every_protocol_case() {
    for c in protocol_cases() {
        check(&c);
    }
}

#[test]
fn padding_changes_nothing() {
    for c in padded(protocol_cases()) {
        check(&c);
    }
}

#[test]
fn truncation_at_every_byte() {
    let cases = truncation_cases();
    assert!(cases.len() > 150, "corpus too small: {}", cases.len());
    for c in &cases {
        check(c);
    }
}

#[test]
fn vlan_id_is_the_outer_tag() {
    let c = protocol_cases()
        .into_iter()
        .find(|c| c.name == "qinq-ipv6-3ext-tcp-syn")
        .expect("case exists");
    assert_eq!(parse::parse(&c.frame[..]).vlan_id, 100);
}

#[test]
fn ipv4_addresses_are_mapped() {
    let c = protocol_cases()
        .into_iter()
        .find(|c| c.name == "ipv4-udp")
        .expect("case exists");
    let p = parse::parse(&c.frame[..]);
    let (src, dst) = p.addresses(&c.frame[..]);
    assert_eq!(
        src,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]
    );
    assert_eq!(dst[12..], [198, 18, 0, 2]);
}

#[test]
fn control_packets() {
    let by = |n: &str| {
        let c = protocol_cases()
            .into_iter()
            .find(|c| c.name == n)
            .expect("case exists");
        parse::parse(&c.frame[..]).is_control()
    };
    assert!(
        by("ipv4-tcp-syn")
            && by("ipv4-tcp-rst")
            && by("ipv4-tcp-fin")
            && by("ipv4-icmp-echo")
            && by("ipv6-icmpv6-echo")
    );
    assert!(!by("ipv4-tcp-ack-data") && !by("ipv4-udp") && !by("arp"));
}

#[test]
fn fragments_are_flagged() {
    let p = |n: &str| {
        let c = protocol_cases()
            .into_iter()
            .find(|c| c.name == n)
            .expect("case exists");
        parse::parse(&c.frame[..])
    };
    assert!(p("ipv4-first-fragment-udp").fragment);
    assert!(p("ipv6-first-fragment-udp").fragment);
    assert!(p("ipv6-later-fragment").fragment);
    assert_eq!(p("ipv6-later-fragment").l4_proto, 17);
    assert!(!p("ipv4-udp").fragment);
}
