//! Liveness and readiness. `/healthz` says the process serves; `/readyz`
//! says nta counts: every interface has its program attached and the
//! pipeline ticks. systemd hears the same: READY=1 once everything is
//! attached, WATCHDOG=1 only while the pipeline ticks, STOPPING=1 at the
//! end.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// A pipeline without a tick for this long is stalled (it ticks every
/// 100 ms).
pub const STALL: Duration = Duration::from_secs(5);

/// What readiness goes by.
#[derive(Clone, Default)]
pub struct Health {
    /// Each watched interface and whether its program is attached.
    interfaces: Arc<Vec<(String, Arc<AtomicBool>)>>,
    /// Monotonic ns of the pipeline's last tick (0: not started).
    pipeline: Arc<AtomicU64>,
}

impl Health {
    pub fn new(interfaces: Vec<(String, Arc<AtomicBool>)>, pipeline: Arc<AtomicU64>) -> Health {
        Health {
            interfaces: Arc::new(interfaces),
            pipeline,
        }
    }

    /// Why nta is not ready at monotonic time `now_ns`; empty when it is.
    pub fn problems(&self, now_ns: u64) -> Vec<String> {
        let mut why: Vec<String> = self
            .interfaces
            .iter()
            .filter(|(_, attached)| !attached.load(Ordering::Relaxed))
            .map(|(name, _)| format!("{name}: XDP program not attached"))
            .collect();
        if let Some(stall) = self.pipeline_stall(now_ns) {
            why.push(stall);
        }
        why
    }

    /// Why the pipeline looks stalled, if it does.
    pub fn pipeline_stall(&self, now_ns: u64) -> Option<String> {
        let beat = self.pipeline.load(Ordering::Relaxed);
        if beat == 0 {
            return Some("pipeline: not started".into());
        }
        let quiet = Duration::from_nanos(now_ns.saturating_sub(beat));
        (quiet > STALL).then(|| format!("pipeline: no tick for {} s", quiet.as_secs()))
    }

    /// "counting on lab0, lab1" for systemd's STATUS=.
    pub fn status(&self, now_ns: u64) -> String {
        let problems = self.problems(now_ns);
        if problems.is_empty() {
            let names: Vec<&str> = self.interfaces.iter().map(|(n, _)| n.as_str()).collect();
            format!("counting on {}", names.join(", "))
        } else {
            format!("not ready: {}", problems.join("; "))
        }
    }
}

/// Tells systemd (when it started nta with a notify socket) that nta is
/// ready, then feeds its watchdog while the pipeline ticks and keeps the
/// status line current. Returns when `stopping` turns true, after
/// STOPPING=1.
pub async fn notify_systemd(
    health: Health,
    now_ns: impl Fn() -> u64,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    use sd_notify::NotifyState;
    // READY=1 only once nta counts: attached and the pipeline ticking
    // (its first tick comes within 100 ms of its start).
    let mut wait = tokio::time::interval(Duration::from_millis(20));
    while !health.problems(now_ns()).is_empty() {
        tokio::select! {
            _ = wait.tick() => {}
            _ = stopping.changed() => {
                let _ = sd_notify::notify(&[NotifyState::Stopping]);
                return;
            }
        }
    }
    let status = health.status(now_ns());
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!(status = %status, "ready");
    // Twice per watchdog period, as systemd asks; a status refresh every
    // 5 s without one.
    let period = sd_notify::watchdog_enabled()
        .map_or(Duration::from_secs(5), |w| w / 2)
        .max(Duration::from_millis(100));
    let mut every = tokio::time::interval(period);
    let mut last_status = status;
    loop {
        tokio::select! {
            _ = every.tick() => {
                let now = now_ns();
                if health.pipeline_stall(now).is_none() {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                }
                let status = health.status(now);
                if status != last_status {
                    let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                    last_status = status;
                }
            }
            _ = stopping.changed() => break,
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_interface_is_attached_and_the_pipeline_ticks() {
        let a = Arc::new(AtomicBool::new(true));
        let b = Arc::new(AtomicBool::new(true));
        let beat = Arc::new(AtomicU64::new(0));
        let h = Health::new(
            vec![("lab0".into(), a.clone()), ("lab1".into(), b.clone())],
            beat.clone(),
        );
        let s = 1_000_000_000u64;
        assert_eq!(h.problems(100 * s), ["pipeline: not started"]);
        beat.store(100 * s, Ordering::Relaxed);
        assert!(h.problems(101 * s).is_empty());
        assert_eq!(h.status(101 * s), "counting on lab0, lab1");
        b.store(false, Ordering::Relaxed);
        assert_eq!(h.problems(101 * s), ["lab1: XDP program not attached"]);
        b.store(true, Ordering::Relaxed);
        assert_eq!(h.problems(107 * s), ["pipeline: no tick for 7 s"]);
    }
}
