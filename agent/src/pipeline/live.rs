//! The sample stage of `nta run`: batches from the queue go through the
//! pipeline core (flow table, then detection), and a 100 ms tick ends idle
//! flows and closes detection windows; expired flows go to the exporters on their own thread through a
//! bounded channel, so a slow or failing destination never stalls the
//! table (overflow is counted as dropped).

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64, mpsc as std_mpsc},
    thread,
};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::mpsc;

use crate::{
    app::flow_names::FlowNameTable,
    kernel::events::SampleBatch,
    output::{
        alert::AlertSink,
        export::{FlowExporter, FlowRecord, WallClock},
    },
    pipeline::{
        Pipeline, Produced,
        alerting::DetectionStage,
        detect::{DetectConfig, Finding},
        flow::{Directions, ExpireReason, ExpiredFlow, FlowTable},
    },
};
/// How often the stage ends idle flows and advances detection time.
pub const TICK: std::time::Duration = std::time::Duration::from_nanos(crate::pipeline::TICK_NS);
/// Both run this far behind the clock, so samples still in the ring
/// buffer or queue (10 ms poll) count in the window they belong to.
pub const SLACK_NS: u64 = 50_000_000;
const _: () = assert!(SLACK_NS < crate::pipeline::detect::NS);

/// Batches of flow records waiting for the exporters.
const EXPORT_QUEUE: usize = 1024;

/// Flow metrics, updated per batch and per sweep (never per packet).
#[derive(Clone)]
pub struct FlowMetrics {
    active: IntGauge,
    capacity: IntGauge,
    created: IntCounter,
    expired: IntCounterVec,
    exported: IntCounterVec,
    export_errors: IntCounterVec,
    export_dropped: IntCounter,
}

impl FlowMetrics {
    pub fn register(registry: &Registry) -> Result<FlowMetrics, prometheus::Error> {
        let m = FlowMetrics {
            active: IntGauge::new("nta_flows_active", "Flows in the flow table.")?,
            capacity: IntGauge::new(
                "nta_flow_table_capacity",
                "Most flows the table holds (--flow-capacity); beyond it the least recently seen is evicted.",
            )?,
            created: IntCounter::new(
                "nta_flows_created_total",
                "Flows created in the flow table.",
            )?,
            expired: IntCounterVec::new(
                Opts::new(
                    "nta_flows_expired_total",
                    "Flow records ended, by reason: idle, active (periodic export of a long flow), end (TCP FIN/RST), evicted (table full), shutdown.",
                ),
                &["reason"],
            )?,
            exported: IntCounterVec::new(
                Opts::new(
                    "nta_flows_exported_total",
                    "Flow records written, by exporter.",
                ),
                &["exporter"],
            )?,
            export_errors: IntCounterVec::new(
                Opts::new(
                    "nta_flow_export_errors_total",
                    "Flow records an exporter failed to write.",
                ),
                &["exporter"],
            )?,
            export_dropped: IntCounter::new(
                "nta_flow_export_dropped_total",
                "Flow records dropped because the exporters fell behind.",
            )?,
        };
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.capacity.clone()))?;
        registry.register(Box::new(m.created.clone()))?;
        registry.register(Box::new(m.expired.clone()))?;
        registry.register(Box::new(m.exported.clone()))?;
        registry.register(Box::new(m.export_errors.clone()))?;
        registry.register(Box::new(m.export_dropped.clone()))?;
        for r in ExpireReason::ALL {
            m.expired.with_label_values(&[r.label()]);
        }
        Ok(m)
    }

    fn observe_table(&self, table: &FlowTable, last: &mut crate::pipeline::flow::TableCounters) {
        let c = table.counters();
        self.active.set(table.len() as i64);
        self.created.inc_by(c.created - last.created);
        for r in ExpireReason::ALL {
            let i = r as usize;
            self.expired
                .with_label_values(&[r.label()])
                .inc_by(c.expired[i] - last.expired[i]);
        }
        *last = c;
    }
}

/// The flow stage's inputs.
pub struct FlowStage {
    /// Flow table and detection engine.
    pub pipeline: Pipeline,
    pub exporters: Vec<Box<dyn FlowExporter>>,
    pub clock: WallClock,
    /// Interface names by ifindex, for the records.
    pub interfaces: HashMap<u32, String>,
    /// Server names and DNS questions the application step saw, by flow.
    pub names: Arc<FlowNameTable>,
    /// Inside and outside, from the host groups (updated on reload).
    pub directions: Directions,
    /// Findings of the DNS and TLS detectors (metadata thread), in Unix
    /// time.
    pub payload_findings: mpsc::Receiver<Vec<Finding>>,
    pub metrics: FlowMetrics,
    /// Set to the monotonic time (ns) of every tick: readiness and the
    /// systemd watchdog tell a stalled pipeline from it.
    pub heartbeat: Arc<AtomicU64>,
}

/// A config reload, as the flow stage applies it between batches.
pub struct StageReload {
    pub detect: DetectConfig,
    pub idle_timeout_ns: u64,
    pub active_timeout_ns: u64,
    /// New flow exporters (None: keep the ones running).
    pub exporters: Option<Vec<Box<dyn FlowExporter>>>,
    /// New alert sinks (None: keep the ones running).
    pub alert_sinks: Option<Vec<Box<dyn AlertSink>>>,
}

/// What the exporter thread receives.
enum ExportMessage {
    Records(Vec<FlowRecord>),
    /// Replace the exporters: the old ones are flushed first.
    Exporters(Vec<Box<dyn FlowExporter>>),
}

/// How long flow records wait before they are written, so the names their
/// payloads gave (read on the application thread, which may lag the
/// sample path by a poll or two) are there: a short TLS connection's FIN
/// can reach the flow table before its handshake is read.
const NAME_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the exporters on a thread until the channel closes, then flushes.
/// Records are held [`NAME_GRACE`] and given their flow's names just
/// before they are written.
fn spawn_exporters(
    mut exporters: Vec<Box<dyn FlowExporter>>,
    metrics: FlowMetrics,
    names: Arc<FlowNameTable>,
) -> (std_mpsc::SyncSender<ExportMessage>, thread::JoinHandle<()>) {
    let (tx, rx) = std_mpsc::sync_channel::<ExportMessage>(EXPORT_QUEUE);
    let handle = thread::spawn(move || {
        // Whether each exporter is in a run of failures (logged once).
        let mut failing = vec![false; exporters.len()];
        let write = |exporters: &mut Vec<Box<dyn FlowExporter>>,
                     failing: &mut Vec<bool>,
                     batch: Option<&[FlowRecord]>| {
            failing.resize(exporters.len(), false);
            for (e, failing) in exporters.iter_mut().zip(failing.iter_mut()) {
                let kind = e.kind();
                let result = match batch {
                    Some(b) => e.export(b),
                    None => e.flush(),
                };
                let n = batch.map_or(0, |b| b.len() as u64);
                match result {
                    Ok(()) => {
                        metrics.exported.with_label_values(&[kind]).inc_by(n);
                        if *failing {
                            tracing::info!(exporter = kind, "flow export works again");
                            *failing = false;
                        }
                    }
                    Err(err) => {
                        metrics
                            .export_errors
                            .with_label_values(&[kind])
                            .inc_by(n.max(1));
                        // Log the first failure of a run of failures only.
                        if !*failing {
                            tracing::error!(exporter = kind, error = %format!("{err:#}"), "flow export failed; counting errors until it recovers");
                            *failing = true;
                        }
                    }
                }
            }
        };
        let mut held: std::collections::VecDeque<(std::time::Instant, Vec<FlowRecord>)> =
            std::collections::VecDeque::new();
        // Writes the held batches due by `until` (all of them with None).
        let release =
            |exporters: &mut Vec<Box<dyn FlowExporter>>,
             failing: &mut Vec<bool>,
             held: &mut std::collections::VecDeque<(std::time::Instant, Vec<FlowRecord>)>,
             until: Option<std::time::Instant>| {
                while let Some((due, _)) = held.front() {
                    if until.is_some_and(|t| *due > t) {
                        break;
                    }
                    let Some((_, mut batch)) = held.pop_front() else {
                        break;
                    };
                    for r in &mut batch {
                        r.names = names.get(&r.key);
                    }
                    write(exporters, failing, Some(&batch));
                }
            };
        loop {
            let wait = held
                .front()
                .map_or(std::time::Duration::from_secs(3600), |(due, _)| {
                    due.saturating_duration_since(std::time::Instant::now())
                });
            match rx.recv_timeout(wait) {
                Ok(ExportMessage::Records(batch)) => {
                    held.push_back((std::time::Instant::now() + NAME_GRACE, batch));
                }
                Ok(ExportMessage::Exporters(new)) => {
                    release(&mut exporters, &mut failing, &mut held, None);
                    write(&mut exporters, &mut failing, None);
                    zero_series(&metrics, &new);
                    exporters = new;
                    failing.clear();
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            release(
                &mut exporters,
                &mut failing,
                &mut held,
                Some(std::time::Instant::now()),
            );
        }
        release(&mut exporters, &mut failing, &mut held, None);
        write(&mut exporters, &mut failing, None);
    });
    (tx, handle)
}

/// Zero series for each exporter, so dashboards and alert rules see them
/// before the first flow is written.
fn zero_series(metrics: &FlowMetrics, exporters: &[Box<dyn FlowExporter>]) {
    for e in exporters {
        metrics.exported.with_label_values(&[e.kind()]);
        metrics.export_errors.with_label_values(&[e.kind()]);
    }
}

fn to_records(
    flows: &[ExpiredFlow],
    clock: WallClock,
    interfaces: &HashMap<u32, String>,
    directions: &std::sync::Mutex<Directions>,
) -> Vec<FlowRecord> {
    let directions = directions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    flows
        .iter()
        .map(|f| {
            let name = interfaces.get(&f.stats.ifindex).map_or("", String::as_str);
            FlowRecord::new(f, clock, name).with_direction(directions.of(&f.key))
        })
        .collect()
}

/// Consumes sample batches until the queue closes, putting them through
/// the pipeline core (flows, then detection), then ends every flow and
/// incident and waits for the exporters and alert sinks to finish.
pub async fn run(
    mut rx: mpsc::Receiver<SampleBatch>,
    stage: FlowStage,
    mut detection: Option<DetectionStage>,
    mut reload: mpsc::Receiver<StageReload>,
    now_ns: impl Fn() -> u64,
) {
    let FlowStage {
        mut pipeline,
        exporters,
        clock,
        interfaces,
        names,
        directions,
        mut payload_findings,
        metrics,
        heartbeat,
    } = stage;
    // Read per batch by `deliver`, replaced on reload (never held across
    // an await).
    let directions = std::sync::Mutex::new(directions);
    zero_series(&metrics, &exporters);
    if let (Some(d), Some(engine)) = (&detection, pipeline.engine_mut()) {
        engine.set_unix_offset_ns(clock.offset_ns());
        d.load_profiles(engine);
    }
    let interfaces = Arc::new(interfaces);
    metrics
        .capacity
        .set(pipeline.table().config().capacity as i64);
    let (tx, exporter_thread) = spawn_exporters(exporters, metrics.clone(), names);
    let mut out = Produced::default();
    let mut last = crate::pipeline::flow::TableCounters::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Expired flows to the exporter thread, incident changes to the sinks.
    let deliver = |out: &mut Produced, detection: &mut Option<DetectionStage>| {
        if let Some(d) = detection {
            d.deliver(&mut out.events);
        }
        if out.expired.is_empty() {
            return;
        }
        let records = to_records(&out.expired, clock, &interfaces, &directions);
        out.expired.clear();
        if let Err(
            std_mpsc::TrySendError::Full(ExportMessage::Records(r))
            | std_mpsc::TrySendError::Disconnected(ExportMessage::Records(r)),
        ) = tx.try_send(ExportMessage::Records(records))
        {
            metrics.export_dropped.inc_by(r.len() as u64);
        }
    };
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => {
                    pipeline.push(&batch.records, &mut out);
                    deliver(&mut out, &mut detection);
                    metrics.observe_table(pipeline.table(), &mut last);
                }
                None => break,
            },
            _ = tick.tick() => {
                let now = now_ns();
                heartbeat.store(now, std::sync::atomic::Ordering::Relaxed);
                // Windows close a little after their time, so samples
                // still in the ring buffer or queue count where they belong.
                pipeline.tick(now.saturating_sub(SLACK_NS), &mut out);
                deliver(&mut out, &mut detection);
                metrics.observe_table(pipeline.table(), &mut last);
                if let (Some(d), Some(engine)) = (&mut detection, pipeline.engine()) {
                    d.observe(engine);
                }
            }
            Some(mut found) = payload_findings.recv() => {
                // Unix time to record time (the kernel's monotonic clock).
                for f in &mut found {
                    f.ts_ns = clock.to_record_ns(f.ts_ns);
                }
                if let Some(engine) = pipeline.engine_mut() {
                    engine.accept(found, &mut out.events);
                }
                deliver(&mut out, &mut detection);
            }
            Some(r) = reload.recv() => {
                pipeline.set_flow_timeouts(r.idle_timeout_ns, r.active_timeout_ns);
                *directions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Directions::from_groups(&r.detect.host_groups);
                if let Some(new) = r.exporters {
                    // Waits for room: a reload is never dropped.
                    if tx.send(ExportMessage::Exporters(new)).is_err() {
                        tracing::warn!("exporter thread gone; new flow outputs not applied");
                    }
                }
                if let Some(d) = &mut detection {
                    d.set_groups(r.detect.group_names());
                    if let Some(sinks) = r.alert_sinks {
                        d.replace_sinks(sinks);
                    }
                }
                pipeline.reconfigure_detection(r.detect);
            }
        }
    }
    // The end: every incident and every flow ends now.
    pipeline.finish(now_ns(), &mut out);
    if let Some(mut d) = detection {
        d.deliver(&mut out.events);
        if let Some(engine) = pipeline.engine() {
            d.observe(engine);
            d.save_profiles(engine);
        }
        let _ = tokio::task::spawn_blocking(move || d.close()).await;
    }
    // At shutdown wait for room rather than drop: these are the last flows.
    let records = to_records(&out.expired, clock, &interfaces, &directions);
    if !records.is_empty() && tx.send(ExportMessage::Records(records)).is_err() {
        tracing::warn!("exporter thread gone; final flows not written");
    }
    metrics.observe_table(pipeline.table(), &mut last);
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || exporter_thread.join()).await;
}
