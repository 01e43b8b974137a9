//! Adaptive sampling: when an interface offers more samples per second
//! than the agent's budget, or samples are lost in the ring buffer or the
//! queue, the sampling rates go up (1-in-N with a larger N) until the
//! load fits; when it falls well below the budget for a while they come
//! back down to what was configured. Every record carries the rate that
//! applied to it, so flow and detector estimates stay unbiased; the rates
//! in force are metrics.

use std::sync::{Arc, Mutex, atomic::Ordering};

use agent_common::config::SamplerConfig;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::{
    config::Sampling,
    kernel::{
        events::PipelineStats,
        sensor::{CountersReader, Sensor},
    },
};

/// How often the controller looks at the load.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);
/// Quiet ticks (load under a quarter of the budget) before a step down.
pub const CALM_TICKS: u32 = 8;
/// Largest rates the controller sets.
pub const MAX_DATA_RATE: u32 = 1 << 16;
pub const MAX_CONTROL_RATE: u32 = 1 << 12;

/// The decision, separate from the kernel so it is tested alone.
#[derive(Clone, Debug, PartialEq)]
pub struct RateController {
    configured: SamplerConfig,
    current: SamplerConfig,
    /// Samples per second the agent takes from this interface.
    budget: f64,
    calm: u32,
}

impl RateController {
    pub fn new(configured: SamplerConfig, budget_per_s: u64) -> RateController {
        RateController {
            configured,
            current: configured,
            budget: budget_per_s as f64,
            calm: 0,
        }
    }

    /// New configured rates and budget (config reload): in force at once.
    pub fn reconfigure(&mut self, configured: SamplerConfig, budget_per_s: u64) {
        *self = RateController::new(configured, budget_per_s);
    }

    pub fn current(&self) -> SamplerConfig {
        self.current
    }

    /// `offered`: samples per second the kernel selected (written plus
    /// lost in the ring); `lost`: samples lost anywhere since the last
    /// call. Returns the new config when it changes.
    pub fn decide(&mut self, offered: f64, lost: u64) -> Option<SamplerConfig> {
        if self.budget <= 0.0 {
            return None;
        }
        if lost > 0 || offered > self.budget {
            self.calm = 0;
            let need = (offered / self.budget).ceil().clamp(2.0, 65_536.0) as u32;
            let factor = need.next_power_of_two();
            let next = SamplerConfig {
                data_rate: scale_up(self.current.data_rate, factor, MAX_DATA_RATE),
                control_rate: scale_up(self.current.control_rate, factor, MAX_CONTROL_RATE),
                ..self.current
            };
            return self.change(next);
        }
        if offered < self.budget / 4.0 && self.current != self.configured {
            self.calm += 1;
            if self.calm >= CALM_TICKS {
                self.calm = 0;
                let next = SamplerConfig {
                    data_rate: scale_down(self.current.data_rate, self.configured.data_rate),
                    control_rate: scale_down(
                        self.current.control_rate,
                        self.configured.control_rate,
                    ),
                    ..self.current
                };
                return self.change(next);
            }
            return None;
        }
        self.calm = 0;
        None
    }

    fn change(&mut self, next: SamplerConfig) -> Option<SamplerConfig> {
        (next != self.current).then(|| {
            self.current = next;
            next
        })
    }
}

/// 0 (off) stays off.
fn scale_up(rate: u32, factor: u32, max: u32) -> u32 {
    if rate == 0 {
        0
    } else {
        rate.saturating_mul(factor).min(max).max(rate)
    }
}

fn scale_down(rate: u32, configured: u32) -> u32 {
    (rate / 2).max(configured)
}

#[derive(Clone)]
pub struct SamplingMetrics {
    rate: IntGaugeVec,
    adjustments: IntCounterVec,
}

impl SamplingMetrics {
    pub fn register(registry: &Registry) -> Result<SamplingMetrics, prometheus::Error> {
        let m = SamplingMetrics {
            rate: IntGaugeVec::new(
                Opts::new(
                    "nta_sampling_rate",
                    "Sampling rate in force (1 in N), by kind: data or control. Raised automatically under load.",
                ),
                &["interface", "kind"],
            )?,
            adjustments: IntCounterVec::new(
                Opts::new(
                    "nta_sampling_adjustments_total",
                    "Automatic sampling rate changes, by direction (up under load, down after).",
                ),
                &["interface", "direction"],
            )?,
        };
        registry.register(Box::new(m.rate.clone()))?;
        registry.register(Box::new(m.adjustments.clone()))?;
        Ok(m)
    }

    fn show(&self, iface: &str, c: SamplerConfig) {
        self.rate
            .with_label_values(&[iface, "data"])
            .set(i64::from(c.data_rate));
        self.rate
            .with_label_values(&[iface, "control"])
            .set(i64::from(c.control_rate));
    }
}

/// One interface under control.
pub struct Controlled {
    pub name: String,
    pub sensor: Arc<Mutex<Sensor>>,
    pub counters: Arc<CountersReader>,
    pub pipeline: Arc<PipelineStats>,
    pub controller: RateController,
}

/// Watches each interface every [`TICK`] until `shutdown` turns true;
/// takes reloaded sampling settings from `reload`.
pub async fn run(
    mut interfaces: Vec<Controlled>,
    metrics: SamplingMetrics,
    mut reload: tokio::sync::mpsc::Receiver<Sampling>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    for i in &interfaces {
        metrics.show(&i.name, i.controller.current());
        for d in ["up", "down"] {
            metrics.adjustments.with_label_values(&[&i.name, d]);
        }
    }
    // Per interface: (kernel selected, kernel lost, queue lost) last tick.
    let mut last: Vec<Option<(u64, u64, u64)>> = vec![None; interfaces.len()];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(sampling) = reload.recv() => {
                for i in &mut interfaces {
                    let configured = sampling.applied_to(i.controller.current());
                    i.controller.reconfigure(configured, sampling.budget);
                    let next = i.controller.current();
                    match i.sensor.lock().map(|mut s| s.set_sampling(next)) {
                        Ok(Ok(())) => metrics.show(&i.name, next),
                        _ => tracing::warn!(interface = %i.name, "applying reloaded sampling failed"),
                    }
                }
                continue;
            }
            _ = shutdown.changed() => return,
        }
        for (i, prev) in interfaces.iter_mut().zip(last.iter_mut()) {
            let Ok(c) = i.counters.read() else { continue };
            let queue_lost = i.pipeline.queue_dropped.load(Ordering::Relaxed);
            let now = (
                c.samples.wrapping_add(c.ringbuf_dropped),
                c.ringbuf_dropped,
                queue_lost,
            );
            let Some(before) = prev.replace(now) else {
                continue;
            };
            let offered = now.0.wrapping_sub(before.0) as f64 / TICK.as_secs_f64();
            let lost = now.1.wrapping_sub(before.1) + now.2.wrapping_sub(before.2);
            let old = i.controller.current();
            let Some(next) = i.controller.decide(offered, lost) else {
                continue;
            };
            let applied = i.sensor.lock().map(|mut s| s.set_sampling(next));
            match applied {
                Ok(Ok(())) => {
                    let up = next.control_rate > old.control_rate || next.data_rate > old.data_rate;
                    let dir = if up { "up" } else { "down" };
                    metrics.adjustments.with_label_values(&[&i.name, dir]).inc();
                    metrics.show(&i.name, next);
                    tracing::info!(
                        interface = %i.name,
                        offered_per_s = offered.round(),
                        lost,
                        data_rate = next.data_rate,
                        control_rate = next.control_rate,
                        "sampling {}", if up { "raised under load" } else { "lowered again" }
                    );
                }
                Ok(Err(e)) => {
                    tracing::warn!(interface = %i.name, error = %e, "changing the sampling rate failed")
                }
                Err(_) => tracing::warn!(interface = %i.name, "sensor lock poisoned"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(data: u32, control: u32) -> SamplerConfig {
        SamplerConfig {
            data_rate: data,
            control_rate: control,
            ..SamplerConfig::default()
        }
    }

    #[test]
    fn raises_to_fit_the_budget_and_comes_back_down() {
        let mut c = RateController::new(cfg(64, 1), 100_000);
        assert_eq!(c.decide(90_000.0, 0), None);
        // 1 M samples/s offered against 100 k: ×16 (next power of two of 10).
        assert_eq!(c.decide(1_000_000.0, 0), Some(cfg(1024, 16)));
        // At the new rate the load fits: nothing changes.
        assert_eq!(c.decide(62_500.0, 0), None);
        // Losses alone raise it too.
        assert_eq!(c.decide(50_000.0, 10), Some(cfg(2048, 32)));
        // Quiet: a step down only after CALM_TICKS calm ticks in a row.
        for _ in 0..CALM_TICKS - 1 {
            assert_eq!(c.decide(1_000.0, 0), None);
        }
        assert_eq!(
            c.decide(30_000.0, 0),
            None,
            "a busier tick resets the calm count"
        );
        let mut steps = Vec::new();
        for _ in 0..100 {
            if let Some(n) = c.decide(1_000.0, 0) {
                steps.push(n);
            }
        }
        assert_eq!(steps.first(), Some(&cfg(1024, 16)));
        assert_eq!(
            steps.last(),
            Some(&cfg(64, 1)),
            "never below the configured rates"
        );
        assert_eq!(c.current(), cfg(64, 1));
    }

    #[test]
    fn disabled_sampling_and_caps_hold() {
        let mut c = RateController::new(cfg(0, 1), 10);
        let n = c.decide(1e12, 0).unwrap_or_else(|| panic!("no change"));
        assert_eq!(n.data_rate, 0, "off stays off");
        assert_eq!(n.control_rate, MAX_CONTROL_RATE);
        assert_eq!(c.decide(1e12, 5), None, "already at the cap");
        // A budget of 0 turns adaptation off.
        let mut off = RateController::new(cfg(64, 1), 0);
        assert_eq!(off.decide(1e12, 100), None);
    }
}
