//! Which way a flow goes relative to the networks the host groups of
//! `[detect]` name (ECS `network.direction`): both ends inside is
//! `internal`, neither `external`, from outside in `inbound`, from inside
//! out `outbound`; with no host group configured nta cannot tell
//! (`unknown`).

use ipnet::IpNet;

use super::FlowKey;
use crate::pipeline::detect::HostGroup;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    Internal,
    External,
    Inbound,
    Outbound,
    #[default]
    Unknown,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::Internal => "internal",
            Direction::External => "external",
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Unknown => "unknown",
        }
    }
}

/// The networks that count as inside.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directions {
    inside: Vec<IpNet>,
}

impl Directions {
    pub fn from_groups(groups: &[HostGroup]) -> Directions {
        Directions {
            inside: groups
                .iter()
                .flat_map(|g| g.cidrs.iter().copied())
                .collect(),
        }
    }

    pub fn of(&self, key: &FlowKey) -> Direction {
        if self.inside.is_empty() {
            return Direction::Unknown;
        }
        let inside = |ip| self.inside.iter().any(|n| n.contains(&ip));
        match (inside(key.src_ip()), inside(key.dst_ip())) {
            (true, true) => Direction::Internal,
            (false, false) => Direction::External,
            (false, true) => Direction::Inbound,
            (true, false) => Direction::Outbound,
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;

    fn key(src: [u8; 4], dst: [u8; 4]) -> FlowKey {
        FlowKey {
            src: map_ipv4(src),
            dst: map_ipv4(dst),
            src_port: 40000,
            dst_port: 443,
            vlan_id: 0,
            ip_version: 4,
            protocol: 6,
        }
    }

    #[test]
    fn host_groups_say_which_way_a_flow_goes() {
        let none = Directions::default();
        assert_eq!(
            none.of(&key([198, 18, 0, 1], [8, 8, 8, 8])),
            Direction::Unknown
        );
        let groups: Vec<HostGroup> = toml::from_str::<toml::Value>(
            r#"g = [{ name = "lab", cidrs = ["198.18.0.0/24"] }, { name = "dmz", cidrs = ["198.19.0.0/24"] }]"#,
        )
        .ok()
        .and_then(|v| v.get("g").cloned())
        .and_then(|g| g.try_into().ok())
        .unwrap_or_else(|| panic!("groups"));
        let d = Directions::from_groups(&groups);
        let (lab, dmz, out) = ([198, 18, 0, 1], [198, 19, 0, 1], [203, 0, 113, 1]);
        assert_eq!(d.of(&key(lab, dmz)), Direction::Internal);
        assert_eq!(d.of(&key(out, lab)), Direction::Inbound);
        assert_eq!(d.of(&key(dmz, out)), Direction::Outbound);
        assert_eq!(d.of(&key(out, out)), Direction::External);
    }
}
