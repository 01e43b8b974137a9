//! An attack lab: a victim namespace (where the sensor runs) and an
//! attacker namespace joined by a veth pair, for tests and benchmarks
//! that run real attack tools (nmap, hping3).
//!
//! Safety: the victim has no default route, so nothing it answers can
//! leave the lab; the attacker reaches only 198.18.0.0/24 and, through the
//! victim (which does not forward), 198.19.0.0/24. Before any tool that
//! spoofs sources runs, [`AttackLab::install_spoof_guard`] puts an
//! nftables guard in the attacker namespace and
//! [`AttackLab::assert_spoof_guard`] refuses to go on without it.

use std::process::Stdio;

use crate::{
    netns::{LabError, NetNs, VethPair},
    programs::GroupChild,
};

pub const VICTIM: &str = "198.18.0.1";
pub const ATTACKER: &str = "198.18.0.2";
/// Reached through the victim: sweeps and scans of many hosts.
pub const SWEEP_RANGE: &str = "198.19.0.0/24";

/// hping3's random-source SYN flood at the victim (only behind the spoof
/// guard, [`AttackLab::install_spoof_guard`]).
pub const SYN_FLOOD: &[&str] = &[
    "hping3",
    "-S",
    "--flood",
    "--rand-source",
    "-p",
    "80",
    VICTIM,
];
/// Large UDP "answers" from port 53 at the victim: the amplification
/// pattern.
pub const DNS_AMPLIFICATION: &[&str] = &[
    "hping3", "--udp", "-s", "53", "-k", "-p", "33000", "-d", "1200", "--flood", VICTIM,
];
pub const ICMP_FLOOD: &[&str] = &["hping3", "--icmp", "--flood", VICTIM];

pub struct AttackLab {
    pub victim: NetNs,
    pub attacker: NetNs,
    /// `outer` is the victim's end, `inner` the attacker's.
    pub veth: VethPair,
}

impl AttackLab {
    pub fn new(prefix: &str) -> Result<AttackLab, LabError> {
        let victim = NetNs::new(&format!("{prefix}v"))?;
        let attacker = NetNs::new(&format!("{prefix}a"))?;
        let veth = VethPair::between(&victim, &attacker, prefix)?;
        victim.exec("ip", &["addr", "add", "198.18.0.1/24", "dev", &veth.outer])?;
        attacker.exec("ip", &["addr", "add", "198.18.0.2/24", "dev", &veth.inner])?;
        attacker.exec("ip", &["route", "add", SWEEP_RANGE, "via", VICTIM])?;
        let default = victim.exec("ip", &["route", "show", "default"])?;
        if !default.trim().is_empty() {
            return Err(LabError::Other(
                "the victim namespace has a default route".into(),
            ));
        }
        Ok(AttackLab {
            victim,
            attacker,
            veth,
        })
    }

    /// Starts a tool (`tool[0]`, a program of the table) in the attacker
    /// namespace under `timeout SECONDS`, in a process group of its own
    /// that dropping the handle kills.
    pub fn attack(&self, seconds: u32, tool: &[&str]) -> Result<GroupChild, LabError> {
        let (program, args) = tool
            .split_first()
            .ok_or_else(|| LabError::Other("attack: no tool given".into()))?;
        let mut cmd = self.attacker.bounded(seconds, program)?;
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        Ok(GroupChild::spawn(&mut cmd)?)
    }

    /// The guard: every IPv4 source leaving the attacker namespace other
    /// than its own address is rewritten into 198.19.0.0/16 (stateless,
    /// so a flood fills no conntrack table), packets to anything outside
    /// 198.18.0.0/15 are dropped, and IPv6 is dropped.
    pub fn install_spoof_guard(&self) -> Result<(), LabError> {
        let rules = "table ip ntaguard {
  chain out {
    type filter hook output priority raw; policy accept;
    ip daddr != 198.18.0.0/15 drop
    ip saddr != 198.18.0.2 ip saddr set ip saddr & 0.0.255.255 | 198.19.0.0 notrack
  }
  chain post {
    type filter hook postrouting priority 100; policy drop;
    ip saddr 198.18.0.0/15 ip daddr 198.18.0.0/15 accept
  }
}
table ip6 ntaguard {
  chain post {
    type filter hook postrouting priority 100; policy drop;
  }
}
";
        let path = std::env::temp_dir().join(format!("ntaguard-{}.nft", self.attacker.name()));
        std::fs::write(&path, rules)?;
        let r = self.attacker.exec("nft", &["-f", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
        r.map(|_| ())
    }

    /// Errors unless the guard is in force (call before flooding).
    pub fn assert_spoof_guard(&self) -> Result<(), LabError> {
        let rules = self.attacker.exec("nft", &["list", "ruleset"])?;
        for needed in [
            "ip daddr != 198.18.0.0/15 drop",
            "ip saddr set ip saddr &",
            "| 198.19.0.0 notrack",
            "policy drop",
            "table ip6 ntaguard",
        ] {
            if !rules.contains(needed) {
                return Err(LabError::Other(format!(
                    "refusing to flood: the spoofing guard lacks `{needed}`:\n{rules}"
                )));
            }
        }
        let default = self.attacker.exec("ip", &["route", "show", "default"])?;
        if !default.trim().is_empty() {
            return Err(LabError::Other(
                "refusing to flood: the attacker namespace has a default route".into(),
            ));
        }
        Ok(())
    }
}

/// Whether a source address is one the guard produces or the attacker's.
pub fn in_lab_sources(ip: &str) -> bool {
    ip.starts_with("198.19.") || ip == ATTACKER
}
