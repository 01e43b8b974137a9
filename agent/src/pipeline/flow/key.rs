//! The flow key: what makes two packets the same flow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::sample::SampleRecord;

/// VLAN, IP version, protocol, addresses and ports (ICMP: type and code).
/// Directional: A→B and B→A are two flows; [`FlowKey::reversed`] pairs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub vlan_id: u16,
    pub ip_version: u8,
    pub protocol: u8,
}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    /// A client's flow between two fixed IPv6 addresses, for unit tests.
    #[cfg(test)]
    pub fn between_test_hosts(src_port: u16, dst_port: u16, protocol: u8) -> FlowKey {
        FlowKey {
            src: [1; 16],
            dst: [2; 16],
            src_port,
            dst_port,
            vlan_id: 0,
            ip_version: 6,
            protocol,
        }
    }

    /// The key of a sampled packet. Frames without an IP header have no
    /// flow (`None`).
    pub fn from_record(r: &SampleRecord) -> Option<FlowKey> {
        if r.ip_version != 4 && r.ip_version != 6 {
            return None;
        }
        Some(FlowKey {
            src: r.src_addr,
            dst: r.dst_addr,
            src_port: r.src_port,
            dst_port: r.dst_port,
            vlan_id: r.vlan_id,
            ip_version: r.ip_version,
            protocol: r.l4_proto,
        })
    }

    /// The other direction of the same conversation. For ICMP the "ports"
    /// are type and code: the reverse of an echo request is an echo reply
    /// (and so on for the request/reply pairs), with the same code.
    pub fn reversed(&self) -> FlowKey {
        let (src_port, dst_port) = match self.protocol {
            1 | 58 => (
                icmp_counterpart(self.protocol, self.src_port),
                self.dst_port,
            ),
            _ => (self.dst_port, self.src_port),
        };
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port,
            dst_port,
            ..*self
        }
    }

    fn addr(&self, a: [u8; 16]) -> IpAddr {
        if self.ip_version == 4 {
            IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }

    pub fn src_ip(&self) -> IpAddr {
        self.addr(self.src)
    }

    pub fn dst_ip(&self) -> IpAddr {
        self.addr(self.dst)
    }

    /// Whether the protocol has ports (or ICMP type/code in their place).
    pub fn has_ports(&self) -> bool {
        matches!(self.protocol, 1 | 6 | 17 | 58 | 132)
    }

    /// The Community ID flow hash (v1, seed 0), the same for both
    /// directions, so flows join across tools (Zeek, Suricata).
    pub fn community_id(&self) -> Option<String> {
        let (sp, dp) = if self.has_ports() {
            (Some(self.src_port), Some(self.dst_port))
        } else {
            (None, None)
        };
        community_id::calculate_community_id(
            0,
            self.src_ip(),
            self.dst_ip(),
            sp,
            dp,
            self.protocol,
            false,
        )
        .ok()
    }
}

/// ICMP request/reply type pairs (RFC 792, RFC 4443).
fn icmp_counterpart(protocol: u8, kind: u16) -> u16 {
    let pairs: &[(u16, u16)] = if protocol == 1 {
        &[(8, 0), (13, 14), (15, 16), (17, 18)]
    } else {
        &[(128, 129), (130, 131)]
    };
    pairs
        .iter()
        .find_map(|&(a, b)| {
            if kind == a {
                Some(b)
            } else if kind == b {
                Some(a)
            } else {
                None
            }
        })
        .unwrap_or(kind)
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;

    fn key(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, proto: u8) -> FlowKey {
        FlowKey {
            src: map_ipv4(src),
            dst: map_ipv4(dst),
            src_port: sp,
            dst_port: dp,
            vlan_id: 0,
            ip_version: 4,
            protocol: proto,
        }
    }

    // Test vectors published with the Community ID specification
    // (corelight/community-id-spec, baseline/*.pcap expectations).
    #[test]
    fn community_id_matches_published_vectors() {
        let tcp = key([128, 232, 110, 120], [66, 35, 250, 204], 34855, 80, 6);
        assert_eq!(
            tcp.community_id().as_deref(),
            Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
        );
        let udp = key([192, 168, 1, 52], [8, 8, 8, 8], 54585, 53, 17);
        assert_eq!(
            udp.community_id().as_deref(),
            Some("1:d/FP5EW3wiY1vCndhwleRRKHowQ=")
        );
        let icmp = key([192, 168, 0, 89], [192, 168, 0, 1], 8, 0, 1);
        assert_eq!(
            icmp.community_id().as_deref(),
            Some("1:X0snYXpgwiv9TZtqg64sgzUn6Dk=")
        );
    }

    #[test]
    fn both_directions_share_a_community_id() {
        let k = key([198, 18, 0, 1], [198, 18, 0, 2], 40000, 443, 6);
        assert_eq!(k.community_id(), k.reversed().community_id());
        assert_eq!(k.reversed().reversed(), k);
    }

    #[test]
    fn echo_reply_is_the_reverse_of_echo_request() {
        let req = key([198, 18, 0, 1], [198, 18, 0, 2], 8, 0, 1);
        let reply = key([198, 18, 0, 2], [198, 18, 0, 1], 0, 0, 1);
        assert_eq!(req.reversed(), reply);
        assert_eq!(req.community_id(), reply.community_id());
    }

    #[test]
    fn non_ip_records_have_no_flow() {
        let r = SampleRecord::default();
        assert_eq!(FlowKey::from_record(&r), None);
    }
}
