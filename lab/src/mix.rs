//! A known mix for the end-to-end test and the demo: one complete frame of
//! each protocol class plus VLAN, QinQ and a malformed frame, padded to the
//! Ethernet minimum as a wire delivers them. Taken from the corpus, so each
//! frame comes with its expected verdict ([`Case`]).

use crate::cases::{Case, padded, protocol_cases};

const MIX: [&str; 15] = [
    "ipv4-tcp-syn",
    "ipv4-tcp-synack",
    "ipv4-tcp-rst",
    "ipv4-udp",
    "vlan-ipv4-udp",
    "qinq-ipv6-3ext-tcp-syn",
    "ipv4-icmp-echo",
    "ipv6-icmpv6-echo",
    "ipv4-sctp",
    "ipv4-gre",
    "ipv4-esp",
    "ipv4-later-fragment",
    "arp",
    "lldp",
    "ipv4-ihl-past-end",
];

pub fn protocol_mix() -> Vec<Case> {
    padded(
        protocol_cases()
            .into_iter()
            .filter(|c| MIX.contains(&c.name.as_str()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_case_exists() {
        assert_eq!(protocol_mix().len(), MIX.len());
    }
}
