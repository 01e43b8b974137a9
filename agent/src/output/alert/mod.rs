//! Alert delivery: every incident change goes to a JSON lines file, a
//! webhook and the log, off the packet path on its own thread. A failing
//! sink counts its errors and never holds the others or the detectors up.

pub mod document;
mod file;
mod webhook;

use std::{
    sync::mpsc::{self, SyncSender, TrySendError},
    thread,
};

pub use document::{summary, to_json};
pub use file::{AlertFile, FileSink};
use prometheus::{IntCounterVec, Opts, Registry};
pub use webhook::{WebhookConfig, WebhookError, WebhookSink, WebhookUrl, redacted};

use crate::{
    output::{
        component::SameConfig,
        export::{ExportError, RotationConfig, WallClock},
    },
    pipeline::detect::{AlertEvent, Transition},
};

/// Alert events waiting for the sink thread.
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert file")]
    File(#[from] ExportError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Delivery counters per sink (`file`, `webhook`, `log`).
#[derive(Clone)]
pub struct AlertMetrics {
    pub delivered: IntCounterVec,
    pub errors: IntCounterVec,
    pub dropped: IntCounterVec,
}

impl AlertMetrics {
    pub fn register(registry: &Registry) -> Result<AlertMetrics, prometheus::Error> {
        let m = AlertMetrics::new()?;
        m.register_in(registry)?;
        Ok(m)
    }

    /// The counters, not yet registered: sinks can start counting before
    /// the registry exists.
    pub fn new() -> Result<AlertMetrics, prometheus::Error> {
        let c = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["sink"]);
        Ok(AlertMetrics {
            delivered: c(
                "nta_alert_deliveries_total",
                "Alert events (incident start, update, end) delivered, by sink.",
            )?,
            errors: c(
                "nta_alert_delivery_errors_total",
                "Alert events a sink failed to deliver (after retries).",
            )?,
            dropped: c(
                "nta_alert_dropped_total",
                "Alert events dropped because a sink's queue was full.",
            )?,
        })
    }

    pub fn register_in(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.delivered.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.dropped.clone()))?;
        Ok(())
    }

    fn zero(&self, sink: &str) {
        self.delivered.with_label_values(&[sink]);
        self.errors.with_label_values(&[sink]);
        self.dropped.with_label_values(&[sink]);
    }
}

/// A place alerts go. `deliver` gets the event and its JSON document.
pub trait AlertSink: Send {
    fn kind(&self) -> &'static str;
    fn deliver(&mut self, event: &AlertEvent, json: &[u8]) -> Result<(), AlertError>;
    /// Sinks that deliver later (webhook) count their own outcomes.
    fn counts_itself(&self) -> bool {
        false
    }
    fn flush(&mut self) -> Result<(), AlertError> {
        Ok(())
    }
    /// The host group names changed (a config reload).
    fn set_groups(&mut self, _groups: &[String]) {}
}

/// What opening an alert sink may need besides its own option.
#[derive(Clone)]
pub struct AlertContext {
    /// File sinks rotate like the flow files.
    pub rotation: RotationConfig,
    /// Sinks that deliver later count their own outcomes here.
    pub metrics: AlertMetrics,
}

/// An alert sink's option, once given.
pub trait AlertOutput: SameConfig + std::fmt::Debug + Send + Sync {
    /// Its config key, for errors (`alerts.webhook`).
    fn key(&self) -> &'static str;
    fn open(&self, cx: &AlertContext) -> Result<Box<dyn AlertSink>, AlertError>;
    /// The file it writes, if any (its directory must stay writable).
    fn written_file(&self) -> Option<&std::path::Path> {
        None
    }
}

/// The structured log line (always on).
pub struct LogSink {
    pub groups: Vec<String>,
}

impl AlertSink for LogSink {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn set_groups(&mut self, groups: &[String]) {
        self.groups = groups.to_vec();
    }

    fn deliver(&mut self, ev: &AlertEvent, _json: &[u8]) -> Result<(), AlertError> {
        let i = &ev.incident;
        let text = summary(ev, &self.groups);
        match ev.transition {
            Transition::Start | Transition::Update => tracing::warn!(
                incident = %i.id,
                detector = i.detector.label(),
                severity = i.severity.label(),
                state = ev.transition.label(),
                value = i.latest.value,
                "{text}"
            ),
            Transition::End => tracing::info!(
                incident = %i.id,
                detector = i.detector.label(),
                state = ev.transition.label(),
                peak = i.peak,
                "{text}"
            ),
        }
        Ok(())
    }
}

/// The sinks a run asks for, then the log sink, which is always on.
/// Each is opened before the next, so a failure leaves nothing running
/// (the webhook checks its URL before its thread starts).
pub fn open_sinks(
    asked: &[std::sync::Arc<dyn AlertOutput>],
    cx: &AlertContext,
    groups: &[String],
) -> Result<Vec<Box<dyn AlertSink>>, AlertError> {
    let mut sinks = asked
        .iter()
        .map(|a| a.open(cx))
        .collect::<Result<Vec<_>, _>>()?;
    sinks.push(Box::new(LogSink {
        groups: groups.to_vec(),
    }));
    Ok(sinks)
}

/// What the alert thread receives. Events are nearly all of it, so they
/// stay unboxed.
#[allow(clippy::large_enum_variant)]
enum Message {
    Event(AlertEvent),
    Groups(Vec<String>),
    Sinks(Vec<Box<dyn AlertSink>>),
    FlightDir(std::path::PathBuf),
}

/// The sender side of the alert thread.
pub struct Alerts {
    tx: SyncSender<Message>,
    handle: thread::JoinHandle<()>,
    metrics: AlertMetrics,
}

impl Alerts {
    /// Starts the delivery thread over `sinks`.
    pub fn spawn(
        mut sinks: Vec<Box<dyn AlertSink>>,
        clock: WallClock,
        mut groups: Vec<String>,
        metrics: AlertMetrics,
    ) -> Alerts {
        for s in &sinks {
            metrics.zero(s.kind());
        }
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
        let m = metrics.clone();
        let handle = thread::spawn(move || {
            let mut failing = vec![false; sinks.len()];
            let mut flight_dir: Option<std::path::PathBuf> = None;
            while let Ok(msg) = rx.recv() {
                let ev = match msg {
                    Message::Event(ev) => ev,
                    Message::FlightDir(d) => {
                        flight_dir = Some(d);
                        continue;
                    }
                    Message::Groups(g) => {
                        for s in &mut sinks {
                            s.set_groups(&g);
                        }
                        groups = g;
                        continue;
                    }
                    Message::Sinks(new) => {
                        for s in &new {
                            m.zero(s.kind());
                        }
                        let old = std::mem::replace(&mut sinks, new);
                        failing = vec![false; sinks.len()];
                        // Off this thread: a webhook drains its queue
                        // (with retries) without holding the new sinks up.
                        thread::spawn(move || flush_all(old));
                        continue;
                    }
                };
                let json = to_json(&ev, clock, &groups, flight_dir.as_deref());
                for (s, failing) in sinks.iter_mut().zip(failing.iter_mut()) {
                    let kind = s.kind();
                    match s.deliver(&ev, &json) {
                        Ok(()) if s.counts_itself() => {}
                        Ok(()) => {
                            m.delivered.with_label_values(&[kind]).inc();
                            *failing = false;
                        }
                        Err(e) => {
                            m.errors.with_label_values(&[kind]).inc();
                            if !*failing {
                                tracing::error!(sink = kind, error = %format!("{e:#}"), "alert delivery failed; counting errors until it recovers");
                                *failing = true;
                            }
                        }
                    }
                }
            }
            flush_all(sinks);
        });
        Alerts {
            tx,
            handle,
            metrics,
        }
    }

    /// Queues an event; a full queue drops it and counts the drop.
    pub fn send(&self, ev: AlertEvent) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Message::Event(ev))
        {
            self.metrics.dropped.with_label_values(&["queue"]).inc();
        }
    }

    /// New host group names, for events queued after this call.
    pub fn set_groups(&self, groups: Vec<String>) {
        // Waits for room: a reload must not be lost to a busy queue.
        let _ = self.tx.send(Message::Groups(groups));
    }

    /// Alerts name the flight recorder's file of their incident in DIR.
    pub fn set_flight_dir(&self, dir: std::path::PathBuf) {
        let _ = self.tx.send(Message::FlightDir(dir));
    }

    /// Replaces the sinks (a reload); the old ones are flushed and closed.
    pub fn replace_sinks(&self, sinks: Vec<Box<dyn AlertSink>>) {
        let _ = self.tx.send(Message::Sinks(sinks));
    }

    /// Waits until every queued event went out and sinks are flushed.
    pub fn close(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}

fn flush_all(mut sinks: Vec<Box<dyn AlertSink>>) {
    for s in &mut sinks {
        if let Err(e) = s.flush() {
            tracing::warn!(sink = s.kind(), error = %e, "flushing alerts");
        }
    }
}
