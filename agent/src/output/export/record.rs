//! A flow as exporters see it: key, counts, wall-clock times, interface
//! name and Community ID, derived once per flow from the table's output.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    app::flow_names::FlowNames,
    pipeline::flow::{Direction, ExpireReason, ExpiredFlow, FlowKey, FlowStats},
};

/// Converts the kernel's CLOCK_MONOTONIC timestamps to Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Unix ns minus monotonic ns.
    offset_ns: i128,
}

impl WallClock {
    /// The offset now, for live samples (`bpf_ktime_get_ns` is
    /// CLOCK_MONOTONIC).
    pub fn monotonic() -> WallClock {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        WallClock {
            offset_ns: unix - mono,
        }
    }

    /// For timestamps that already are Unix ns (capture files).
    pub fn unix() -> WallClock {
        WallClock { offset_ns: 0 }
    }

    pub fn to_unix_ns(self, ns: u64) -> u64 {
        (i128::from(ns) + self.offset_ns).max(0) as u64
    }

    /// The record time of a Unix time.
    pub fn to_record_ns(self, unix_ns: u64) -> u64 {
        (i128::from(unix_ns) - self.offset_ns).max(0) as u64
    }

    /// Unix ns minus record ns.
    pub fn offset_ns(self) -> i128 {
        self.offset_ns
    }
}

/// The monotonic clock now, in ns (the clock of live records).
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub stats: FlowStats,
    pub reason: ExpireReason,
    pub reverse_seen: bool,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub interface: String,
    pub community_id: Option<String>,
    /// What the flow's payloads named (server name, DNS question).
    pub names: FlowNames,
    /// Which way it goes relative to the host groups.
    pub direction: Direction,
    /// Read from a capture file (`nta analyze`): `interface` is its path.
    pub from_file: bool,
}

impl FlowRecord {
    pub fn new(f: &ExpiredFlow, clock: WallClock, interface: &str) -> FlowRecord {
        FlowRecord {
            key: f.key,
            stats: f.stats,
            reason: f.reason,
            reverse_seen: f.reverse_seen,
            start_unix_ns: clock.to_unix_ns(f.stats.first_ns),
            end_unix_ns: clock.to_unix_ns(f.stats.last_ns),
            interface: interface.to_string(),
            community_id: f.key.community_id(),
            names: FlowNames::default(),
            direction: Direction::Unknown,
            from_file: false,
        }
    }

    /// The record with its direction.
    pub fn with_direction(mut self, direction: Direction) -> FlowRecord {
        self.direction = direction;
        self
    }

    /// The record of a flow read from the capture file named as its
    /// interface.
    pub fn from_file(mut self) -> FlowRecord {
        self.from_file = true;
        self
    }

    /// The record with the names its flow's payloads gave.
    pub fn with_names(mut self, names: FlowNames) -> FlowRecord {
        self.names = names;
        self
    }

    pub fn transport(&self) -> String {
        let p = self.key.protocol;
        agent_common::class::ipproto::name(p).map_or_else(|| p.to_string(), String::from)
    }

    pub fn is_icmp(&self) -> bool {
        matches!(self.key.protocol, 1 | 58)
    }

    /// TCP flags as letters in tcpdump's order (e.g. "SA" for SYN-ACK).
    pub fn tcp_flags_text(&self) -> String {
        const NAMES: [(u8, char); 8] = [
            (0x02, 'S'),
            (0x01, 'F'),
            (0x04, 'R'),
            (0x08, 'P'),
            (0x10, 'A'),
            (0x20, 'U'),
            (0x40, 'E'),
            (0x80, 'C'),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| self.stats.tcp_flags & bit != 0)
            .map(|(_, c)| c)
            .collect()
    }
}

/// RFC 3339 UTC with nanoseconds, as Elasticsearch's date_nanos accepts.
pub fn rfc3339(unix_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + std::time::Duration::from_nanos(unix_ns))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_795_000_000_123_456_789),
            "2026-11-18T11:06:40.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn monotonic_clock_maps_to_now() {
        let c = WallClock::monotonic();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mapped = c.to_unix_ns(monotonic_now_ns());
        assert!(mapped.abs_diff(now) < 1_000_000_000, "{mapped} vs {now}");
    }
}
