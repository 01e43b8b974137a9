//! Prometheus metrics. Kernel counters are read from the per-CPU map when
//! Prometheus scrapes, so packets cost no userspace work.
//!
//! Metric names and labels are a public contract (dashboards, alert rules);
//! label values come only from closed sets and configured interface names.

use std::sync::{Arc, Mutex, atomic::Ordering};

use agent_common::{
    app::AppKind,
    class::{ParseError, ProtocolClass, TcpFlagCounter},
};
use prometheus::{
    Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::kernel::{
    events::PipelineStats,
    sensor::{AttachMode, CountersReader},
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("defining metrics")]
    Define(#[from] prometheus::Error),
    #[error("encoding metrics: {0}")]
    Encode(String),
}

/// What the collector reads for one interface.
pub struct InterfaceSource {
    pub name: String,
    pub mode: AttachMode,
    /// False while the interface is gone (deleted, not yet recreated).
    pub attached: Arc<std::sync::atomic::AtomicBool>,
    pub counters: Arc<CountersReader>,
    pub pipeline: Arc<PipelineStats>,
}

struct Families {
    packets: IntCounterVec,
    bytes: IntCounterVec,
    ip_packets: IntCounterVec,
    vlan_packets: IntCounterVec,
    tcp_flags: IntCounterVec,
    parse_errors: IntCounterVec,
    samples: IntCounterVec,
    samples_dropped: IntCounterVec,
    first_packets: IntCounterVec,
    samples_thinned: IntCounterVec,
    map_read_errors: IntCounterVec,
    captured: IntCounterVec,
    capture_dropped: IntCounterVec,
    app_frames: IntCounterVec,
    app_dropped: IntCounterVec,
    xdp_attached: IntGaugeVec,
}

impl Families {
    fn new() -> Result<Families, prometheus::Error> {
        let c = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(Families {
            packets: c(
                "nta_packets_total",
                "Frames seen by XDP, each in exactly one protocol class.",
                &["interface", "protocol"],
            )?,
            bytes: c(
                "nta_bytes_total",
                "Bytes of frames seen by XDP, by protocol class.",
                &["interface", "protocol"],
            )?,
            ip_packets: c(
                "nta_ip_packets_total",
                "Frames whose IPv4 or IPv6 header parsed.",
                &["interface", "version"],
            )?,
            vlan_packets: c(
                "nta_vlan_packets_total",
                "Frames carrying at least one VLAN tag.",
                &["interface"],
            )?,
            tcp_flags: c(
                "nta_tcp_flags_total",
                "TCP segments by flag: syn (without ack), synack, fin, rst.",
                &["interface", "flag"],
            )?,
            parse_errors: c(
                "nta_parse_errors_total",
                "Malformed frames by the first problem found.",
                &["interface", "reason"],
            )?,
            samples: c(
                "nta_samples_total",
                "Sample records written to the ring buffer by XDP.",
                &["interface"],
            )?,
            samples_dropped: c(
                "nta_samples_dropped_total",
                "Sample records lost: ringbuf (ring buffer full), queue (agent queue full), decode (bad record).",
                &["interface", "stage"],
            )?,
            first_packets: c(
                "nta_first_packets_total",
                "Frames XDP took as the first packet of a flow it had not seen lately (sampled like control packets, within the control budget).",
                &["interface"],
            )?,
            samples_thinned: c(
                "nta_samples_thinned_total",
                "Control and first packets XDP left out past its per-CPU budget of records per millisecond (the records kept carry the thinning in their rate).",
                &["interface"],
            )?,
            map_read_errors: c(
                "nta_map_read_errors_total",
                "Failed reads of the kernel counter map at scrape time.",
                &["interface"],
            )?,
            captured: c(
                "nta_capture_frames_total",
                "Frames that passed the capture filter and were copied into the capture ring by XDP.",
                &["interface"],
            )?,
            capture_dropped: c(
                "nta_capture_dropped_total",
                "Frames that passed the capture filter but found the capture ring full.",
                &["interface"],
            )?,
            app_frames: c(
                "nta_app_frames_total",
                "Frames XDP copied for application metadata, by kind: tls_handshake (begins a ClientHello or ServerHello record), tls_continuation (the rest of one), dns, quic_initial.",
                &["interface", "kind"],
            )?,
            app_dropped: c(
                "nta_app_frames_dropped_total",
                "Frames selected for application metadata that found the app ring full.",
                &["interface"],
            )?,
            xdp_attached: IntGaugeVec::new(
                Opts::new(
                    "nta_xdp_attached",
                    "1 while nta's XDP program is attached, by mode (native or skb).",
                ),
                &["interface", "mode"],
            )?,
        })
    }

    fn counters(&self) -> [&IntCounterVec; 15] {
        [
            &self.packets,
            &self.bytes,
            &self.ip_packets,
            &self.vlan_packets,
            &self.tcp_flags,
            &self.parse_errors,
            &self.samples,
            &self.samples_dropped,
            &self.first_packets,
            &self.samples_thinned,
            &self.map_read_errors,
            &self.captured,
            &self.capture_dropped,
            &self.app_frames,
            &self.app_dropped,
        ]
    }

    /// Clears every series; `fill` sets them again from the current values.
    fn reset(&self) {
        self.counters().into_iter().for_each(IntCounterVec::reset);
        self.xdp_attached.reset();
    }

    fn all(&self) -> impl Iterator<Item = &dyn Collector> {
        self.counters()
            .into_iter()
            .map(|c| c as &dyn Collector)
            .chain(std::iter::once(&self.xdp_attached as &dyn Collector))
    }
}

/// Collects the sensor metrics of every interface at scrape time.
pub struct SensorCollector {
    families: Families,
    sources: Vec<InterfaceSource>,
    /// Read failures so far, per source; scrapes are serialised by the lock.
    state: Mutex<Vec<u64>>,
}

impl SensorCollector {
    pub fn new(sources: Vec<InterfaceSource>) -> Result<SensorCollector, MetricsError> {
        let n = sources.len();
        Ok(SensorCollector {
            families: Families::new()?,
            sources,
            state: Mutex::new(vec![0; n]),
        })
    }

    fn fill(&self, read_errors: &mut [u64]) {
        let f = &self.families;
        f.reset();
        for (src, errors) in self.sources.iter().zip(read_errors.iter_mut()) {
            let i = src.name.as_str();
            f.xdp_attached
                .with_label_values(&[i, src.mode.label()])
                .set(i64::from(src.attached.load(Ordering::Relaxed)));
            let p = &src.pipeline;
            let dropped =
                |stage: &str, n: u64| f.samples_dropped.with_label_values(&[i, stage]).inc_by(n);
            dropped("queue", p.queue_dropped.load(Ordering::Relaxed));
            dropped("decode", p.decode_errors.load(Ordering::Relaxed));
            let c = match src.counters.read() {
                Ok(c) => c,
                Err(e) => {
                    *errors += 1;
                    tracing::warn!(interface = i, error = %e, "reading kernel counters failed");
                    f.map_read_errors.with_label_values(&[i]).inc_by(*errors);
                    continue;
                }
            };
            f.map_read_errors.with_label_values(&[i]).inc_by(*errors);
            dropped("ringbuf", c.ringbuf_dropped);
            for class in ProtocolClass::ALL {
                let k = class as usize;
                f.packets
                    .with_label_values(&[i, class.label()])
                    .inc_by(c.packets[k]);
                f.bytes
                    .with_label_values(&[i, class.label()])
                    .inc_by(c.bytes[k]);
            }
            f.ip_packets
                .with_label_values(&[i, "4"])
                .inc_by(c.ip_version[0]);
            f.ip_packets
                .with_label_values(&[i, "6"])
                .inc_by(c.ip_version[1]);
            f.vlan_packets
                .with_label_values(&[i])
                .inc_by(c.vlan_packets);
            for flag in TcpFlagCounter::ALL {
                f.tcp_flags
                    .with_label_values(&[i, flag.label()])
                    .inc_by(c.tcp_flags[flag as usize]);
            }
            for reason in ParseError::ALL {
                f.parse_errors
                    .with_label_values(&[i, reason.label()])
                    .inc_by(c.parse_errors[reason as usize]);
            }
            f.samples.with_label_values(&[i]).inc_by(c.samples);
            f.first_packets
                .with_label_values(&[i])
                .inc_by(c.first_packets);
            f.samples_thinned
                .with_label_values(&[i])
                .inc_by(c.control_thinned);
            f.captured.with_label_values(&[i]).inc_by(c.captured);
            f.capture_dropped
                .with_label_values(&[i])
                .inc_by(c.capture_dropped);
            for kind in AppKind::ALL {
                f.app_frames
                    .with_label_values(&[i, kind.label()])
                    .inc_by(c.app_frames[kind as usize - 1]);
            }
            f.app_dropped.with_label_values(&[i]).inc_by(c.app_dropped);
        }
    }
}

impl Collector for SensorCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families.all().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut errors = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.fill(&mut errors);
        self.families.all().flat_map(|c| c.collect()).collect()
    }
}

/// The registry nta serves on /metrics.
pub struct Metrics {
    registry: Registry,
}

/// `nta_file_rotation_failures_total`, read from the process-wide
/// counter at scrape time (a fresh counter each scrape, so concurrent
/// scrapes cannot add twice).
struct RotationFailures(prometheus::IntCounter);

const ROTATION_FAILURES: (&str, &str) = (
    "nta_file_rotation_failures_total",
    "Rotations of flow, alert, TLS and DNS log files that failed (nothing was moved; the live file is written on and rotation is tried again 30 s later).",
);

impl RotationFailures {
    fn new() -> Result<RotationFailures, prometheus::Error> {
        let (name, help) = ROTATION_FAILURES;
        Ok(RotationFailures(prometheus::IntCounter::new(name, help)?))
    }
}

impl Collector for RotationFailures {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (name, help) = ROTATION_FAILURES;
        let Ok(c) = prometheus::IntCounter::new(name, help) else {
            return Vec::new();
        };
        c.inc_by(crate::output::export::rotate::ROTATION_FAILURES.load(Ordering::Relaxed));
        c.collect()
    }
}

impl Metrics {
    pub fn new(collector: SensorCollector) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        registry.register(Box::new(collector))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "nta_build_info",
                "Always 1; the version label says which nta runs.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(RotationFailures::new()?))?;
        Ok(Metrics { registry })
    }

    /// The registry, for other stages to register their metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(|e| MetricsError::Encode(e.to_string()))?;
        String::from_utf8(buf).map_err(|e| MetricsError::Encode(e.to_string()))
    }
}
