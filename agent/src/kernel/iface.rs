//! Interface facts from the kernel: index, MTU, the default route's device.

use std::{ffi::CString, fs, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("interface {0:?} does not exist (see `ip link`)")]
    Missing(String),
    #[error("interface name {0:?} is not valid")]
    BadName(String),
    #[error("the same interface is given twice: {0}")]
    Duplicate(String),
    #[error("no default route found in /proc/net/route or /proc/net/ipv6_route; pass --iface")]
    NoDefaultRoute,
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The interfaces named (each once), or the default route's.
pub fn resolve_interfaces(given: &[String]) -> Result<Vec<String>, IfaceError> {
    if given.is_empty() {
        let name = default_route_interface()?;
        tracing::info!(interface = %name, "no --iface given: using the default route's interface");
        ifindex(&name)?;
        return Ok(vec![name]);
    }
    let mut seen = Vec::new();
    for name in given {
        ifindex(name)?;
        if seen.contains(name) {
            return Err(IfaceError::Duplicate(name.clone()));
        }
        seen.push(name.clone());
    }
    Ok(seen)
}

/// The kernel's index for `name`.
pub fn ifindex(name: &str) -> Result<u32, IfaceError> {
    let c = CString::new(name).map_err(|_| IfaceError::BadName(name.to_string()))?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(IfaceError::Missing(name.to_string()));
    }
    Ok(idx)
}

/// The interface's MTU, if sysfs tells.
pub fn mtu(name: &str) -> Option<u32> {
    fs::read_to_string(Path::new("/sys/class/net").join(name).join("mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The device of the IPv4 default route with the lowest metric, else the
/// IPv6 one.
pub fn default_route_interface() -> Result<String, IfaceError> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|source| IfaceError::Read {
            path: path.to_string(),
            source,
        })
    };
    if let Ok(v4) = read("/proc/net/route")
        && let Some(i) = default_from_route_table(&v4)
    {
        return Ok(i);
    }
    if let Ok(v6) = read("/proc/net/ipv6_route")
        && let Some(i) = default_from_ipv6_route_table(&v6)
    {
        return Ok(i);
    }
    Err(IfaceError::NoDefaultRoute)
}

/// Parses /proc/net/route: `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`.
fn default_from_route_table(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, metric, mask) = (f.first()?, f.get(1)?, f.get(6)?, f.get(7)?);
            (*dest == "00000000" && *mask == "00000000")
                .then(|| (metric.parse::<u32>().unwrap_or(u32::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Parses /proc/net/ipv6_route: `dest plen src plen next-hop metric refcnt use flags iface`.
fn default_from_ipv6_route_table(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, plen, metric, iface) = (f.first()?, f.get(1)?, f.get(5)?, f.get(9)?);
            (dest.chars().all(|c| c == '0') && *plen == "00" && *iface != "lo").then(|| {
                (
                    u32::from_str_radix(metric, 16).unwrap_or(u32::MAX),
                    iface.to_string(),
                )
            })
        })
        .min()
        .map(|(_, iface)| iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lowest_metric_ipv4_default() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                 eth0\t00000000\t010012C6\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 eth0\t000012C6\t00000000\t0001\t0\t0\t100\t0000FEFF\t0\t0\t0\n";
        assert_eq!(default_from_route_table(t).as_deref(), Some("eth0"));
    }

    #[test]
    fn no_default_when_only_subnet_routes() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                 eth0\t000012C6\t00000000\t0001\t0\t0\t100\t0000FEFF\n";
        assert_eq!(default_from_route_table(t), None);
    }

    #[test]
    fn ipv6_default_skips_loopback() {
        let t = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
                 00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth2\n";
        assert_eq!(default_from_ipv6_route_table(t).as_deref(), Some("eth2"));
    }

    #[test]
    fn loopback_exists_and_missing_is_reported() {
        assert_eq!(ifindex("lo").ok(), Some(1));
        assert!(matches!(ifindex("nta-nope0"), Err(IfaceError::Missing(_))));
    }
}
