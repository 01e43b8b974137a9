//! Start budgets: how many new incidents one detector may open for one
//! target in a minute. A budget per target, not one per detector, so a
//! stream of cheap decoys (spoofed scans of other hosts) cannot use up
//! the starts the real attack on a victim needs.

use super::{DetectorKind, NS, Subject, tracked::Tracked};

/// Targets whose budgets are remembered; past it the least used go (and
/// start afresh if they come back: a forgotten budget errs on alerting).
const TARGETS: usize = 16_384;

/// What a budget is spent on: the destination a finding is about, else
/// the host group, else the source (a sweep has no one destination).
pub fn target(subject: &Subject) -> Subject {
    match *subject {
        Subject::Destination(d) | Subject::Reflected { dst: d, .. } => Subject::Destination(d),
        Subject::Pair { dst, .. } => Subject::Destination(dst),
        Subject::SourcePort { src, .. } | Subject::Source(src) => Subject::Source(src),
        Subject::Group(g) => Subject::Group(g),
        Subject::Interface(i) => Subject::Interface(i),
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Budget {
    minute: u64,
    started: u32,
    held_back: u32,
}

/// Whether a new incident may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    Start,
    /// Over budget; the count held back for this target this minute.
    HeldBack(u32),
}

pub struct StartBudgets {
    per_minute: u32,
    used: Tracked<(DetectorKind, Subject), Budget>,
}

impl StartBudgets {
    pub fn new(per_minute: u32) -> StartBudgets {
        StartBudgets {
            per_minute,
            used: Tracked::new(TARGETS),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    pub fn set_per_minute(&mut self, per_minute: u32) {
        self.per_minute = per_minute;
    }

    /// Spends one start of `detector` on `target` at `ts_ns`, if any is left.
    pub fn spend(&mut self, detector: DetectorKind, target: Subject, ts_ns: u64) -> Spend {
        let minute = ts_ns / (60 * NS);
        let b = self.used.entry((detector, target), Budget::default);
        if b.minute != minute {
            *b = Budget {
                minute,
                ..Budget::default()
            };
        }
        if b.started < self.per_minute {
            b.started += 1;
            Spend::Start
        } else {
            b.held_back = b.held_back.saturating_add(1);
            Spend::HeldBack(b.held_back)
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;

    #[test]
    fn each_target_has_its_own_budget_per_minute() {
        let mut b = StartBudgets::new(2);
        let victim = Subject::Destination(map_ipv4([198, 18, 0, 1]));
        let other = Subject::Destination(map_ipv4([198, 18, 0, 2]));
        let d = DetectorKind::PortScan;
        assert_eq!(b.spend(d, victim, 60 * NS), Spend::Start);
        assert_eq!(b.spend(d, victim, 61 * NS), Spend::Start);
        assert_eq!(b.spend(d, victim, 62 * NS), Spend::HeldBack(1));
        assert_eq!(b.spend(d, victim, 63 * NS), Spend::HeldBack(2));
        // Another target, or another detector on the same one, is untouched.
        assert_eq!(b.spend(d, other, 63 * NS), Spend::Start);
        assert_eq!(
            b.spend(DetectorKind::SynFlood, victim, 63 * NS),
            Spend::Start
        );
        // The next minute starts afresh.
        assert_eq!(b.spend(d, victim, 120 * NS), Spend::Start);
    }

    #[test]
    fn targets_are_destinations_then_groups_then_sources() {
        let a = map_ipv4([198, 18, 0, 1]);
        let s = map_ipv4([198, 19, 0, 1]);
        let dst = Subject::Destination(a);
        assert_eq!(target(&Subject::Pair { src: s, dst: a }), dst);
        assert_eq!(
            target(&Subject::Reflected {
                dst: a,
                source_port: 53
            }),
            dst
        );
        assert_eq!(target(&Subject::Group(3)), Subject::Group(3));
        let sweep = Subject::SourcePort {
            src: s,
            port: 22,
            proto: 6,
        };
        assert_eq!(target(&sweep), Subject::Source(s));
    }
}
