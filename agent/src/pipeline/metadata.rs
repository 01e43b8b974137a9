//! The application-metadata step of `nta run` and `nta analyze`: selected
//! frames through the parsers ([`crate::app::engine`]), handshakes to the
//! TLS log and DNS transactions to the DNS log, and a summary for the
//! report. A failing log write (disk full) is counted and logged; the
//! step goes on.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Instant,
};

use agent_common::app::AppKind;

use crate::{
    app::{
        dns,
        dns_transactions::DnsTransaction,
        engine::{self, AppEngine, AppFrame},
        flow_names::FlowNameTable,
        handshakes::Handshake,
        stats::AppStats,
        tls::{version_slot, version_slot_label},
    },
    kernel::capture::consumer::{Frame, FrameSink},
    output::{
        export::ExportError,
        metadata::{self, MetadataLogs, Origin},
    },
    pipeline::{
        detect::{DetectConfig, Finding, payload::PayloadDetectors},
        flow::Directions,
    },
};

/// Names the summary tells apart, per table; past it they count as
/// others (the names come from packets).
const MAX_SUMMARY_NAMES: usize = 10_000;
/// Housekeeping period, in the traffic's time.
const TICK_NS: u64 = 1_000_000_000;

/// Names listed by `--json` and the report.
pub const TOP_NAMES: usize = 20;

/// Counts by name, bounded: names past [`MAX_SUMMARY_NAMES`] are counted
/// as others. Serialized as the [`TOP_NAMES`] most counted.
#[derive(Clone, Debug, Default)]
pub struct NameCounts {
    pub names: HashMap<String, u64>,
    /// Counted under no name (the table was full).
    pub others: u64,
}

impl serde::Serialize for NameCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("NameCounts", 3)?;
        st.serialize_field("top", &self.top(TOP_NAMES))?;
        st.serialize_field("distinct", &self.names.len())?;
        st.serialize_field("others", &self.others)?;
        st.end()
    }
}

impl NameCounts {
    fn add(&mut self, name: &str) {
        if let Some(n) = self.names.get_mut(name) {
            *n += 1;
        } else if self.names.len() < MAX_SUMMARY_NAMES {
            self.names.insert(name.to_string(), 1);
        } else {
            self.others += 1;
        }
    }

    /// The `n` names counted most, most first.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.names.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// What the report shows about handshakes and DNS.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MetadataSummary {
    pub tls_handshakes: u64,
    /// Handshakes by version ("tls1.3"; the server's choice, else the
    /// client's best offer).
    pub tls_versions: BTreeMap<String, u64>,
    /// Handshakes by the server name the client asked for.
    pub server_names: NameCounts,
    pub dns_transactions: u64,
    /// Transactions by question name.
    pub dns_names: NameCounts,
    /// Responses by code ("NXDOMAIN").
    pub dns_response_codes: BTreeMap<String, u64>,
    pub log_write_errors: u64,
}

impl MetadataSummary {
    fn add_handshake(&mut self, h: &Handshake) {
        self.tls_handshakes += 1;
        *self
            .tls_versions
            .entry(version_slot_label(version_slot(engine::version(h))))
            .or_default() += 1;
        if let Some(name) = h.client_hello.as_ref().and_then(|c| c.server_name.as_ref()) {
            self.server_names.add(name);
        }
    }

    fn add_dns(&mut self, t: &DnsTransaction) {
        self.dns_transactions += 1;
        if let Some(q) = t.asked().and_then(|m| m.question.as_ref()) {
            self.dns_names.add(&q.name);
        }
        if let Some(r) = &t.response {
            *self
                .dns_response_codes
                .entry(dns::rcode_text(r.rcode))
                .or_default() += 1;
        }
    }

    /// A log write failed: counted, and logged once per power of two.
    fn write_failed(&mut self, log: &str, e: &ExportError) {
        self.log_write_errors += 1;
        if self.log_write_errors.is_power_of_two() {
            tracing::warn!(error = %format!("{e:#}"), failures = self.log_write_errors, "writing the {log} log failed; records are being lost");
        }
    }
}

pub struct MetadataStage {
    engine: AppEngine,
    logs: MetadataLogs,
    /// The DNS and TLS detectors (None without detection).
    detectors: Option<PayloadDetectors>,
    /// Their findings since the last [`Self::take_findings`] (times in
    /// Unix ns).
    findings: Vec<Finding>,
    /// Inside and outside, from the host groups at start.
    directions: Directions,
    summary: MetadataSummary,
    next_tick_ns: u64,
}

impl MetadataStage {
    pub fn new(
        stats: Arc<AppStats>,
        logs: MetadataLogs,
        flow_names: Option<Arc<FlowNameTable>>,
        directions: Directions,
    ) -> MetadataStage {
        MetadataStage {
            engine: AppEngine::new(stats).with_flow_names(flow_names),
            logs,
            detectors: None,
            findings: Vec::new(),
            directions,
            summary: MetadataSummary::default(),
            next_tick_ns: 0,
        }
    }

    /// The stage with the DNS and TLS detectors of `config` (when
    /// detection is on).
    pub fn with_detection(mut self, config: &DetectConfig) -> MetadataStage {
        self.detectors = config
            .enabled
            .then(|| PayloadDetectors::new(config.dns, config.tls, config.watch.clone()));
        self
    }

    /// Findings of the DNS and TLS detectors since the last call; their
    /// times are Unix ns.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
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
        self.flush();
    }

    /// At stop or the input's end: everything still waiting is written.
    pub fn finish(&mut self, origin: &Origin<'_>) -> MetadataSummary {
        self.engine.finish();
        self.write(origin);
        self.flush();
        self.summary.clone()
    }

    fn flush(&mut self) {
        for (name, log) in [("TLS", &mut self.logs.tls), ("DNS", &mut self.logs.dns)] {
            if let Some(log) = log
                && let Err(e) = log.flush()
            {
                self.summary.write_failed(name, &e);
            }
        }
    }

    fn write(&mut self, origin: &Origin<'_>) {
        for h in self.engine.take() {
            self.summary.add_handshake(&h);
            if let Some(d) = &mut self.detectors {
                d.handshake(&h, h.unix_ns, &mut self.findings);
            }
            if let Some(log) = &mut self.logs.tls
                && let Err(e) =
                    log.write(|out| metadata::tls::write(&h, origin, &self.directions, out))
            {
                self.summary.write_failed("TLS", &e);
            }
        }
        for t in self.engine.take_dns() {
            self.summary.add_dns(&t);
            if let Some(d) = &mut self.detectors {
                d.dns(&t, t.unix_ns, &mut self.findings);
            }
            if let Some(log) = &mut self.logs.dns
                && let Err(e) =
                    log.write(|out| metadata::dns::write(&t, origin, &self.directions, out))
            {
                self.summary.write_failed("DNS", &e);
            }
        }
    }
}

/// `nta run`'s side: the app rings' consumer thread hands frames here.
pub struct AppSink {
    stage: MetadataStage,
    /// Interface names by ifindex, for `observer.ingress.interface.name`.
    interfaces: HashMap<u32, String>,
    /// Where the DNS and TLS detectors' findings go (the pipeline task).
    findings: Option<tokio::sync::mpsc::Sender<Vec<Finding>>>,
    /// Findings dropped because the pipeline task's queue was full.
    findings_dropped: u64,
}

impl AppSink {
    pub fn new(stage: MetadataStage, interfaces: HashMap<u32, String>) -> AppSink {
        AppSink {
            stage,
            interfaces,
            findings: None,
            findings_dropped: 0,
        }
    }

    /// The sink handing the detectors' findings to `tx`.
    pub fn with_findings_to(mut self, tx: tokio::sync::mpsc::Sender<Vec<Finding>>) -> AppSink {
        self.findings = Some(tx);
        self
    }

    fn send_findings(&mut self) {
        let found = self.stage.take_findings();
        let Some(tx) = &self.findings else {
            return;
        };
        if found.is_empty() {
            return;
        }
        let n = found.len() as u64;
        if tx.try_send(found).is_err() {
            self.findings_dropped += n;
            if self.findings_dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.findings_dropped,
                    "DNS and TLS findings dropped: the pipeline's queue is full"
                );
            }
        }
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
        self.send_findings();
    }

    fn tick(&mut self, _now: Instant, unix_ns: u64) {
        self.stage
            .tick(unix_ns, &Origin::Interfaces(&self.interfaces));
        self.send_findings();
    }

    fn close(&mut self, _now: Instant, _unix_ns: u64) {
        let summary = self.stage.finish(&Origin::Interfaces(&self.interfaces));
        self.send_findings();
        tracing::info!(
            tls_handshakes = summary.tls_handshakes,
            dns_transactions = summary.dns_transactions,
            log_write_errors = summary.log_write_errors,
            "application metadata closed"
        );
    }
}
