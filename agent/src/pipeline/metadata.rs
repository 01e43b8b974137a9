//! The application-metadata step of `nta run` and `nta analyze`: selected
//! frames through the parsers ([`crate::app::engine`]), handshakes to the
//! TLS log, and a summary for the report. A failing log write (disk
//! full) is counted and logged; the step goes on.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Instant,
};

use agent_common::app::AppKind;

use crate::{
    app::{
        engine::{self, AppEngine, AppFrame},
        handshakes::Handshake,
        stats::AppStats,
        tls::{version_slot, version_slot_label},
    },
    kernel::capture::consumer::{Frame, FrameSink},
    output::metadata::{Origin, TlsLog},
};

/// Server names the summary tells apart; past it they count as others
/// (the names come from packets).
const MAX_SUMMARY_NAMES: usize = 10_000;
/// Housekeeping period, in the traffic's time.
const TICK_NS: u64 = 1_000_000_000;

/// What the report shows about handshakes.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MetadataSummary {
    pub tls_handshakes: u64,
    /// Handshakes by version ("tls1.3"; the server's choice, else the
    /// client's best offer).
    pub tls_versions: BTreeMap<String, u64>,
    /// Handshakes by the server name the client asked for.
    pub server_names: HashMap<String, u64>,
    /// Handshakes whose server name was not told apart (the table was full).
    pub other_server_names: u64,
    pub log_write_errors: u64,
}

impl MetadataSummary {
    fn add(&mut self, h: &Handshake) {
        self.tls_handshakes += 1;
        *self
            .tls_versions
            .entry(version_slot_label(version_slot(engine::version(h))))
            .or_default() += 1;
        if let Some(name) = h.client_hello.as_ref().and_then(|c| c.server_name.as_ref()) {
            if let Some(n) = self.server_names.get_mut(name) {
                *n += 1;
            } else if self.server_names.len() < MAX_SUMMARY_NAMES {
                self.server_names.insert(name.clone(), 1);
            } else {
                self.other_server_names += 1;
            }
        }
    }

    /// The `n` server names asked for most, most first.
    pub fn top_server_names(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .server_names
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

pub struct MetadataStage {
    engine: AppEngine,
    tls_log: Option<TlsLog>,
    summary: MetadataSummary,
    next_tick_ns: u64,
}

impl MetadataStage {
    pub fn new(stats: Arc<AppStats>, tls_log: Option<TlsLog>) -> MetadataStage {
        MetadataStage {
            engine: AppEngine::new(stats),
            tls_log,
            summary: MetadataSummary::default(),
            next_tick_ns: 0,
        }
    }

    pub fn push(&mut self, f: &AppFrame<'_>, origin: &Origin<'_>) {
        self.engine.push(f);
        if f.unix_ns >= self.next_tick_ns {
            self.tick(f.unix_ns, origin);
        }
        self.write(origin);
    }

    /// Housekeeping at `unix_ns` (the traffic's time offline, the clock
    /// live): expiry, then the log is flushed.
    pub fn tick(&mut self, unix_ns: u64, origin: &Origin<'_>) {
        self.next_tick_ns = unix_ns.saturating_add(TICK_NS);
        self.engine.tick(unix_ns);
        self.write(origin);
        if let Some(log) = &mut self.tls_log
            && let Err(e) = log.flush()
        {
            self.summary.log_write_errors += 1;
            tracing::warn!(error = %format!("{e:#}"), "flushing the TLS log failed");
        }
    }

    /// At stop or the input's end: every handshake still waiting is
    /// written.
    pub fn finish(&mut self, origin: &Origin<'_>) -> MetadataSummary {
        self.engine.finish();
        self.write(origin);
        if let Some(log) = &mut self.tls_log
            && let Err(e) = log.flush()
        {
            self.summary.log_write_errors += 1;
            tracing::warn!(error = %format!("{e:#}"), "flushing the TLS log failed");
        }
        self.summary.clone()
    }

    fn write(&mut self, origin: &Origin<'_>) {
        for h in self.engine.take() {
            self.summary.add(&h);
            if let Some(log) = &mut self.tls_log
                && let Err(e) = log.write(&h, origin)
            {
                self.summary.log_write_errors += 1;
                // One line per power of two, not one per handshake.
                if self.summary.log_write_errors.is_power_of_two() {
                    tracing::warn!(error = %format!("{e:#}"), failures = self.summary.log_write_errors, "writing the TLS log failed; handshakes are being lost");
                }
            }
        }
    }
}

/// `nta run`'s side: the app rings' consumer thread hands frames here.
pub struct AppSink {
    stage: MetadataStage,
    /// Interface names by ifindex, for `observer.ingress.interface.name`.
    interfaces: HashMap<u32, String>,
}

impl AppSink {
    pub fn new(stage: MetadataStage, interfaces: HashMap<u32, String>) -> AppSink {
        AppSink { stage, interfaces }
    }
}

impl FrameSink for AppSink {
    fn write(&mut self, f: &Frame<'_>, _now: Instant, _unix_ns: u64) {
        let origin = Origin::Interfaces(&self.interfaces);
        let Some(kind) = AppKind::from_u32(f.kind) else {
            // Not from the app ring: nothing to read.
            self.stage.engine.stats().unreadable();
            return;
        };
        self.stage.push(
            &AppFrame {
                kind,
                unix_ns: f.unix_ns,
                ifindex: f.ifindex,
                frame_len: u64::from(f.orig_len),
                data: f.data,
            },
            &origin,
        );
    }

    fn tick(&mut self, _now: Instant, unix_ns: u64) {
        self.stage
            .tick(unix_ns, &Origin::Interfaces(&self.interfaces));
    }

    fn close(&mut self, _now: Instant, _unix_ns: u64) {
        let summary = self.stage.finish(&Origin::Interfaces(&self.interfaces));
        tracing::info!(
            tls_handshakes = summary.tls_handshakes,
            log_write_errors = summary.log_write_errors,
            "application metadata closed"
        );
    }
}
