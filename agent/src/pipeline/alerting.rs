//! The alert side of `nta run`: the incident changes the pipeline core
//! raises go to the alert sinks (and incident starts to the flight
//! recorder), and the detection engine's state becomes metrics (bounded
//! series only: detectors and severities, plus the top destinations with
//! their learned band).

use std::sync::{Arc, Mutex};

use prometheus::{
    IntCounterVec, IntGaugeVec, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::{
    output::alert::Alerts,
    pipeline::detect::{
        AlertEvent, DetectorKind, Engine, EngineCounters, Severity, Transition, display_addr,
        volume::TopDestination,
    },
};

#[derive(Clone)]
pub struct DetectMetrics {
    alerts: IntCounterVec,
    active: IntGaugeVec,
    findings: IntCounterVec,
    allowlisted: IntCounterVec,
    suppressed: IntCounterVec,
    displaced: IntCounterVec,
    tracked: IntGaugeVec,
    evictions: IntCounterVec,
    top: Arc<Mutex<Vec<TopDestination>>>,
}

impl DetectMetrics {
    pub fn register(registry: &Registry) -> Result<DetectMetrics, prometheus::Error> {
        let by_detector =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["detector"]);
        let m = DetectMetrics {
            alerts: IntCounterVec::new(
                Opts::new(
                    "nta_alerts_total",
                    "Incidents started (alerts raised), by detector and severity.",
                ),
                &["detector", "severity"],
            )?,
            active: IntGaugeVec::new(
                Opts::new("nta_incidents_active", "Incidents open now, by detector."),
                &["detector"],
            )?,
            findings: by_detector(
                "nta_detect_findings_total",
                "Threshold crossings reported by detectors (an incident groups many).",
            )?,
            allowlisted: by_detector(
                "nta_detect_allowlisted_total",
                "Findings dropped because the source or destination is allowlisted.",
            )?,
            suppressed: by_detector(
                "nta_incidents_suppressed_total",
                "New incidents held back: over their target's start budget per minute, or no room under the cap on open incidents.",
            )?,
            displaced: by_detector(
                "nta_incidents_displaced_total",
                "Incidents ended early at the cap on open incidents to make room for one at least as severe.",
            )?,
            tracked: IntGaugeVec::new(
                Opts::new(
                    "nta_detect_tracked_keys",
                    "Keys (destinations, source/destination pairs...) a detector tracks now.",
                ),
                &["detector"],
            )?,
            evictions: by_detector(
                "nta_detect_evictions_total",
                "Light keys evicted to keep a detector's memory bounded.",
            )?,
            top: Arc::new(Mutex::new(Vec::new())),
        };
        registry.register(Box::new(m.alerts.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.findings.clone()))?;
        registry.register(Box::new(m.allowlisted.clone()))?;
        registry.register(Box::new(m.suppressed.clone()))?;
        registry.register(Box::new(m.displaced.clone()))?;
        registry.register(Box::new(m.tracked.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(TopCollector::new(m.top.clone())?))?;
        for d in DetectorKind::ALL {
            let l = d.label();
            for s in Severity::ALL {
                m.alerts.with_label_values(&[l, s.label()]);
            }
            m.active.with_label_values(&[l]);
            m.findings.with_label_values(&[l]);
            m.allowlisted.with_label_values(&[l]);
            m.suppressed.with_label_values(&[l]);
            m.displaced.with_label_values(&[l]);
            m.tracked.with_label_values(&[l]);
            m.evictions.with_label_values(&[l]);
        }
        Ok(m)
    }

    fn observe(&self, engine: &Engine, last: &mut Snapshot) {
        let c = engine.counters();
        let inc = engine.incidents();
        for d in DetectorKind::ALL {
            let i = d as usize;
            let l = [d.label()];
            self.findings
                .with_label_values(&l)
                .inc_by(c.findings[i] - last.counters.findings[i]);
            self.allowlisted
                .with_label_values(&l)
                .inc_by(c.allowlisted[i] - last.counters.allowlisted[i]);
            let s = inc.suppressed(d);
            self.suppressed
                .with_label_values(&l)
                .inc_by(s - last.suppressed[i]);
            last.suppressed[i] = s;
            let n = inc.displaced(d);
            self.displaced
                .with_label_values(&l)
                .inc_by(n - last.displaced[i]);
            last.displaced[i] = n;
            self.active
                .with_label_values(&l)
                .set(inc.active_count(d) as i64);
        }
        last.counters = c.clone();
        for (d, n, e) in engine.tracked() {
            let i = d as usize;
            let l = [d.label()];
            self.tracked.with_label_values(&l).set(n as i64);
            self.evictions
                .with_label_values(&l)
                .inc_by(e.saturating_sub(last.evictions[i]));
            last.evictions[i] = e;
        }
        if let Ok(mut top) = self.top.lock() {
            top.clear();
            top.extend(engine.top_destinations());
        }
    }
}

#[derive(Default)]
struct Snapshot {
    counters: EngineCounters,
    suppressed: [u64; DetectorKind::ALL.len()],
    displaced: [u64; DetectorKind::ALL.len()],
    evictions: [u64; DetectorKind::ALL.len()],
}

/// `nta_destination_pps{rank,destination}` and its band: the heaviest
/// destinations of the last second, at most `volume.top_metrics` series
/// each, rebuilt at every scrape so no stale destination lingers.
struct TopCollector {
    top: Arc<Mutex<Vec<TopDestination>>>,
    descs: Vec<Desc>,
}

const TOP_FAMILIES: [(&str, &str); 4] = [
    (
        "nta_destination_pps",
        "Packets per second to the heaviest destinations in the last second (estimated from samples).",
    ),
    (
        "nta_destination_bps",
        "Bits per second to the heaviest destinations in the last second.",
    ),
    (
        "nta_destination_pps_baseline",
        "Usual packets per second of those destinations, from their learned profile (once warm).",
    ),
    (
        "nta_destination_pps_upper",
        "Upper edge of their learned band: past it (two seconds running) the baseline detector reports.",
    ),
];

impl TopCollector {
    fn new(top: Arc<Mutex<Vec<TopDestination>>>) -> Result<TopCollector, prometheus::Error> {
        let descs = TOP_FAMILIES
            .iter()
            .map(|(n, h)| {
                Desc::new(
                    n.to_string(),
                    h.to_string(),
                    vec!["rank".into(), "destination".into()],
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(TopCollector { top, descs })
    }
}

impl Collector for TopCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(top) = self.top.lock() else {
            return Vec::new();
        };
        let gauges: Vec<IntGaugeVec> = TOP_FAMILIES
            .iter()
            .filter_map(|(n, h)| IntGaugeVec::new(Opts::new(*n, *h), &["rank", "destination"]).ok())
            .collect();
        for (rank, t) in top.iter().enumerate() {
            let rank = (rank + 1).to_string();
            let dst = display_addr(&t.addr).to_string();
            let l = [rank.as_str(), dst.as_str()];
            let values = [
                Some(t.pps),
                Some(t.bps),
                t.pps_band.map(|b| b.usual),
                t.pps_band.map(|b| b.upper),
            ];
            for (g, v) in gauges.iter().zip(values) {
                if let Some(v) = v {
                    g.with_label_values(&l).set(v.round() as i64);
                }
            }
        }
        gauges.iter().flat_map(|g| g.collect()).collect()
    }
}

/// Alert delivery and detection metrics, driven by the flow stage's loop.
pub struct DetectionStage {
    alerts: Alerts,
    /// The flight recorder, told of each incident start.
    flight: Option<(
        crate::output::capture::flight::FlightRequests,
        crate::output::export::WallClock,
    )>,
    metrics: DetectMetrics,
    last: Snapshot,
    /// Where learned profiles are kept across restarts.
    profiles: Option<crate::pipeline::profile_store::ProfileStore>,
}

impl DetectionStage {
    pub fn new(alerts: Alerts, metrics: DetectMetrics) -> DetectionStage {
        DetectionStage {
            alerts,
            flight: None,
            metrics,
            last: Snapshot::default(),
            profiles: None,
        }
    }

    /// Learned profiles are read from and saved to a state file.
    pub fn with_profile_store(
        mut self,
        store: crate::pipeline::profile_store::ProfileStore,
    ) -> DetectionStage {
        self.profiles = Some(store);
        self
    }

    /// Reads the state file, if one is configured.
    pub fn load_profiles(&self, engine: &mut Engine) {
        if let Some(s) = &self.profiles {
            s.load(engine);
        }
    }

    /// The last save of the learned profiles, at stop.
    pub fn save_profiles(&self, engine: &Engine) {
        if let Some(s) = &self.profiles {
            s.save_now(engine);
        }
    }

    /// Incident starts go to the flight recorder writing into `dir`; the
    /// alerts name its files.
    pub fn with_flight_recorder(
        mut self,
        requests: crate::output::capture::flight::FlightRequests,
        dir: std::path::PathBuf,
        clock: crate::output::export::WallClock,
    ) -> DetectionStage {
        self.alerts.set_flight_dir(dir);
        self.flight = Some((requests, clock));
        self
    }

    /// The host group names of a reloaded `[detect]` section.
    pub fn set_groups(&mut self, groups: Vec<String>) {
        self.alerts.set_groups(groups);
    }

    /// Reloaded alert outputs.
    pub fn replace_sinks(&mut self, sinks: Vec<Box<dyn crate::output::alert::AlertSink>>) {
        self.alerts.replace_sinks(sinks);
    }

    /// The engine's state as metrics (and, when due, its learned
    /// profiles to the state file).
    pub fn observe(&mut self, engine: &Engine) {
        self.metrics.observe(engine, &mut self.last);
        if let Some(s) = &mut self.profiles {
            s.maybe_save(engine);
        }
    }

    /// Waits for the sinks to deliver what they hold.
    pub fn close(self) {
        self.alerts.close();
    }

    /// Hands incident changes to the alert sinks.
    pub fn deliver(&mut self, events: &mut Vec<AlertEvent>) {
        for ev in events.drain(..) {
            if ev.transition == Transition::Start {
                let i = &ev.incident;
                if let Some((requests, clock)) = &self.flight {
                    requests.send(crate::output::capture::flight::IncidentWindow {
                        id: i.id.clone(),
                        started_unix_ns: clock.to_unix_ns(i.started_ns),
                        subject: i.subject,
                    });
                }
                self.metrics
                    .alerts
                    .with_label_values(&[i.detector.label(), i.severity.label()])
                    .inc();
            }
            self.alerts.send(ev);
        }
    }
}
