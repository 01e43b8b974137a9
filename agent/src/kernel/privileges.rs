//! Checks the capabilities nta needs before touching the kernel, so a
//! missing one is named instead of surfacing as a bare EPERM.

use std::fs;

/// A Linux capability nta uses, with why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub bit: u32,
    pub why: &'static str,
}

pub const CAP_NET_ADMIN: Capability = Capability {
    name: "CAP_NET_ADMIN",
    bit: 12,
    why: "attach XDP programs to interfaces",
};
pub const CAP_SYS_ADMIN: Capability = Capability {
    name: "CAP_SYS_ADMIN",
    bit: 21,
    why: "stands in for CAP_BPF and CAP_PERFMON on older kernels",
};
pub const CAP_PERFMON: Capability = Capability {
    name: "CAP_PERFMON",
    bit: 38,
    why: "lets the verifier accept the parser's packet pointer arithmetic",
};
pub const CAP_BPF: Capability = Capability {
    name: "CAP_BPF",
    bit: 39,
    why: "load BPF programs and create maps",
};

/// Capabilities `nta run` needs.
pub const REQUIRED: [Capability; 3] = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON];

/// The effective capability set of this process (`CapEff` in
/// /proc/self/status), or `None` if it cannot be read.
pub fn effective() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// The required capabilities missing from `eff`. CAP_SYS_ADMIN covers
/// CAP_BPF and CAP_PERFMON.
pub fn missing(eff: u64) -> Vec<Capability> {
    let has = |c: Capability| eff & (1u64 << c.bit) != 0;
    REQUIRED
        .into_iter()
        .filter(|&c| !(has(c) || (c != CAP_NET_ADMIN && has(CAP_SYS_ADMIN))))
        .collect()
}

/// A sentence naming what is missing, for error messages.
pub fn describe_missing(missing: &[Capability]) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|c| format!("{} (to {})", c.name, c.why))
        .collect();
    format!(
        "missing capabilities: {}. Run as root, or grant them, e.g. `setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which nta)`",
        list.join(", ")
    )
}

/// Err with the message naming what is missing, when capabilities are
/// known to be short.
pub fn check() -> Result<(), String> {
    match effective() {
        Some(eff) => {
            let missing = missing(eff);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(describe_missing(&missing))
            }
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let s = "Name:\tnta\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(s), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn root_has_everything() {
        assert!(missing(0x1ff_ffff_ffff).is_empty());
    }

    #[test]
    fn names_what_is_missing() {
        let only_net_admin = 1u64 << 12;
        let m = missing(only_net_admin);
        assert_eq!(m, vec![CAP_BPF, CAP_PERFMON]);
        let msg = describe_missing(&m);
        assert!(
            msg.contains("CAP_BPF") && msg.contains("CAP_PERFMON"),
            "{msg}"
        );
        assert!(!msg.contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon_but_not_net_admin() {
        assert_eq!(missing(1u64 << 21), vec![CAP_NET_ADMIN]);
    }
}
