//! `nta analyze`: capture files through the live agent's pipeline. Each
//! frame is parsed by the XDP program's parser and counted by its counting
//! rule, becomes a sample record at rate 1, and goes through the same flow
//! table, detectors, incidents and exporters as `nta run`, with the
//! packets' own timestamps as the clock.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use agent_common::{
    app::{APP_SNAPLEN, MAX_DNS_PORTS},
    counters::Counters,
    parse,
    sample::{SampleMeta, SampleRecord},
};
use serde::Serialize;

use super::{
    capture::{CaptureError, CaptureFile, Damage, Merged, linktype_name},
    link,
    timeline::Timeline,
};
use crate::{
    app::flow_names::FlowNameTable,
    app::{engine::AppFrame, select::Selector, stats::AppStats},
    output::{
        alert,
        alert::{AlertMetrics, AlertSink, Alerts, FileSink},
        export,
        export::{ExportError, FlowExporter, FlowRecord, RotationConfig, WallClock},
        metadata::{MetadataLogs, Origin},
    },
    pipeline::flow::Directions,
    pipeline::{
        Pipeline, Produced,
        detect::{AlertEvent, DetectConfig, Transition, Unit, display_addr},
        flow::{ExpiredFlow, FlowConfig},
        metadata::{MetadataStage, MetadataSummary},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("flow output")]
    Flows(#[from] ExportError),
    #[error(transparent)]
    MetadataLog(#[from] crate::output::metadata::MetadataLogError),
    #[error("alert output")]
    Alerts(#[from] alert::AlertError),
    #[error("nothing could be read: {0}")]
    NothingRead(String),
    #[error("alert metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("writing the learned profiles")]
    Baseline(#[source] crate::pipeline::detect::profile::state::StateError),
}

/// Called now and then with (bytes read, bytes in all, packets).
pub type Progress = Box<dyn FnMut(u64, u64, u64)>;

pub struct AnalyzeOptions {
    pub files: Vec<PathBuf>,
    pub flow_files: Vec<PathBuf>,
    pub alerts: Option<PathBuf>,
    pub detect: DetectConfig,
    pub flow: FlowConfig,
    pub progress: Option<Progress>,
    /// Learned profiles to start from (a sensor's state file, or an
    /// earlier analysis's); a bad file is warned about and skipped.
    pub baseline_in: Option<PathBuf>,
    /// Where to write the profiles learned by the end.
    pub baseline_out: Option<PathBuf>,
    /// Which frames are read above L4 (`agent_common::app::select` bits)
    /// and the DNS ports, as for the sensor.
    pub app: u32,
    pub dns_ports: [u16; MAX_DNS_PORTS],
    /// `--tls-log FILE`.
    pub tls_log: Option<PathBuf>,
    pub dns_log: Option<PathBuf>,
}

/// A talker or port with its packets and bytes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Top {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct IncidentSummary {
    pub id: String,
    pub detector: &'static str,
    pub severity: &'static str,
    pub summary: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub peak: f64,
    pub unit: &'static str,
    /// The detector's window: the attack began up to this long before
    /// `start_ns`.
    pub window_ns: u64,
    /// Sample packets, one line each.
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    pub packets: u64,
}

/// Everything the summary, `--json` and the report show.
#[derive(Debug, Serialize)]
pub struct Analysis {
    pub files: Vec<FileSummary>,
    /// Where files stopped early, and why.
    pub damage: Vec<DamageSummary>,
    /// Frames skipped because of their link type, by link type.
    pub unknown_link_types: BTreeMap<String, u64>,
    pub frames: u64,
    pub bytes: u64,
    /// Frames stored shorter than they were on the wire.
    pub truncated_by_snaplen: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Exactly what the XDP program's counters would say.
    #[serde(skip)]
    pub counters: Counters,
    pub classes: BTreeMap<&'static str, ClassCount>,
    pub tcp_flags: BTreeMap<&'static str, u64>,
    pub parse_errors: BTreeMap<&'static str, u64>,
    pub ip_versions: BTreeMap<&'static str, u64>,
    pub vlan_frames: u64,
    pub flows: u64,
    pub top_talkers: Vec<Top>,
    pub top_ports: Vec<Top>,
    pub incidents: Vec<IncidentSummary>,
    /// TLS and QUIC handshakes and DNS transactions read from the payloads.
    pub metadata: MetadataSummary,
    #[serde(skip)]
    pub timeline: Timeline,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ClassCount {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DamageSummary {
    pub path: PathBuf,
    pub offset: u64,
    pub why: String,
}

impl From<Damage> for DamageSummary {
    fn from(d: Damage) -> Self {
        DamageSummary {
            path: d.path,
            offset: d.offset,
            why: d.why,
        }
    }
}

/// Talkers and ports tracked exactly up to this many; beyond, new ones are
/// not listed (their traffic still counts everywhere else).
const TOP_TRACKED: usize = 1 << 20;
const TOP_SHOWN: usize = 10;

struct Tops {
    talkers: HashMap<[u8; 16], (u64, u64)>,
    ports: HashMap<(u8, u16), (u64, u64)>,
}

impl Tops {
    fn add(&mut self, r: &SampleRecord) {
        if r.ip_version == 0 {
            return;
        }
        let len = u64::from(r.frame_len);
        let full = self.talkers.len() >= TOP_TRACKED;
        if let Some(t) = self.talkers.get_mut(&r.src_addr) {
            t.0 += 1;
            t.1 += len;
        } else if !full {
            self.talkers.insert(r.src_addr, (1, len));
        }
        if matches!(r.l4_proto, 6 | 17 | 132)
            && r.flags & agent_common::sample::record_flags::LATER_FRAGMENT == 0
        {
            let key = (r.l4_proto, r.dst_port);
            let full = self.ports.len() >= TOP_TRACKED;
            if let Some(t) = self.ports.get_mut(&key) {
                t.0 += 1;
                t.1 += len;
            } else if !full {
                self.ports.insert(key, (1, len));
            }
        }
    }
}

fn top<K>(m: HashMap<K, (u64, u64)>, name: impl Fn(&K) -> String) -> Vec<Top> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(b.1.0.cmp(&a.1.0)));
    v.truncate(TOP_SHOWN);
    v.iter()
        .map(|(k, (p, b))| Top {
            name: name(k),
            packets: *p,
            bytes: *b,
        })
        .collect()
}

fn transport(proto: u8) -> &'static str {
    agent_common::class::ipproto::name(proto).unwrap_or("ip")
}

/// Flow records of expired flows, written by every exporter.
/// The DNS and TLS detectors' findings into the incident machinery
/// (their Unix times are record times offline).
fn accept_findings(pipeline: &mut Pipeline, metadata: &mut MetadataStage, out: &mut Produced) {
    let findings = metadata.take_findings();
    if let (false, Some(engine)) = (findings.is_empty(), pipeline.engine_mut()) {
        engine.accept(findings, &mut out.events);
    }
}

/// What a flow record takes from the analysis besides its flow.
struct RecordContext<'a> {
    /// The capture files' paths, by ifindex - 1.
    files: &'a [String],
    flow_names: &'a FlowNameTable,
    directions: &'a Directions,
}

fn export(
    exporters: &mut [Box<dyn FlowExporter>],
    expired: &mut Vec<ExpiredFlow>,
    cx: &RecordContext<'_>,
) -> Result<(), ExportError> {
    if expired.is_empty() {
        return Ok(());
    }
    let records: Vec<FlowRecord> = expired
        .iter()
        .map(|f| {
            let file = cx
                .files
                .get((f.stats.ifindex as usize).saturating_sub(1))
                .map_or("", String::as_str);
            FlowRecord::new(f, WallClock::unix(), file)
                .from_file()
                .with_names(cx.flow_names.get(&f.key))
                .with_direction(cx.directions.of(&f.key))
        })
        .collect();
    expired.clear();
    for e in exporters.iter_mut() {
        e.export(&records)?;
    }
    Ok(())
}

/// One sample packet as a line: time, endpoints, protocol, flags, size.
fn evidence_line(e: &crate::pipeline::detect::Evidence) -> String {
    let ports = matches!(e.proto, 6 | 17 | 132);
    let end = |a: &[u8; 16], p: u16| {
        let ip = display_addr(a);
        match (ports, ip) {
            (true, std::net::IpAddr::V6(v6)) => format!("[{v6}]:{p}"),
            (true, ip) => format!("{ip}:{p}"),
            (false, ip) => ip.to_string(),
        }
    };
    let flags = if e.proto == 6 {
        format!(" flags 0x{:02x}", e.tcp_flags)
    } else {
        String::new()
    };
    format!(
        "{} {} > {} {}{flags} len {} ttl {}",
        crate::output::export::rfc3339(e.ts_ns),
        end(&e.src, e.src_port),
        end(&e.dst, e.dst_port),
        transport(e.proto),
        e.frame_len,
        e.ttl
    )
}

fn note_incidents(
    events: &mut Vec<AlertEvent>,
    incidents: &mut Vec<IncidentSummary>,
    alerts: Option<&Alerts>,
    groups: &[String],
) {
    for ev in events.drain(..) {
        let i = &ev.incident;
        match ev.transition {
            Transition::Start => incidents.push(IncidentSummary {
                id: i.id.clone(),
                detector: i.detector.label(),
                severity: i.severity.label(),
                summary: alert::summary(&ev, groups),
                start_ns: i.started_ns,
                end_ns: i.last_seen_ns,
                peak: i.peak,
                unit: i.latest.unit.label(),
                // Scans (and held-back starts) alert at the finding that
                // crossed; a rate looks back over its window.
                window_ns: match i.latest.unit {
                    Unit::DistinctPorts
                    | Unit::DistinctHosts
                    | Unit::HeldBackPerMinute
                    | Unit::DistinctNames
                    | Unit::Occurrences => 0,
                    Unit::Sigma => i.latest.window_ns,
                    Unit::PacketsPerSecond | Unit::BitsPerSecond | Unit::ResponsesPerSecond => {
                        i.latest.window_ns
                    }
                },
                evidence: i.evidence.iter().map(evidence_line).collect(),
            }),
            Transition::Update | Transition::End => {
                if let Some(s) = incidents.iter_mut().rev().find(|s| s.id == i.id) {
                    s.end_ns = i.last_seen_ns;
                    s.peak = i.peak;
                    s.severity = i.severity.label();
                    s.evidence = i.evidence.iter().map(evidence_line).collect();
                }
            }
        }
        if let Some(a) = alerts {
            a.send(ev);
        }
    }
}

pub fn analyze(mut o: AnalyzeOptions) -> Result<Analysis, AnalyzeError> {
    let read = Arc::new(AtomicU64::new(0));
    let total: u64 = o
        .files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut files = Vec::new();
    let mut open_errors = Vec::new();
    for p in &o.files {
        match CaptureFile::open(p, read.clone()) {
            Ok(f) => files.push(f),
            // One unreadable file does not stop the others.
            Err(e) => {
                tracing::error!("{e}");
                open_errors.push(e.to_string());
            }
        }
    }
    if files.is_empty() {
        return Err(AnalyzeError::NothingRead(open_errors.join("; ")));
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let rotation = RotationConfig::default();
    let mut exporters = o
        .flow_files
        .iter()
        .map(|p| export::open_flow_file(p, rotation))
        .collect::<Result<Vec<_>, _>>()?;
    let groups: Vec<String> = o
        .detect
        .host_groups
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let alerts = match &o.alerts {
        Some(path) => {
            let registry = prometheus::Registry::new();
            let metrics = AlertMetrics::register(&registry).map_err(AnalyzeError::Metrics)?;
            let sinks: Vec<Box<dyn AlertSink>> = vec![Box::new(FileSink::open(path, rotation)?)];
            Some(Alerts::spawn(
                sinks,
                WallClock::unix(),
                groups.clone(),
                metrics,
            ))
        }
        None => None,
    };
    let mut pipeline = Pipeline::new(o.flow, o.detect.enabled.then(|| o.detect.clone()));
    if let (Some(path), Some(engine)) = (&o.baseline_in, pipeline.engine_mut()) {
        match engine.load_profiles(path) {
            Ok(Some(n)) => tracing::info!("{}: {n} learned profiles", path.display()),
            Ok(None) => tracing::warn!("{}: no such file; starting unlearned", path.display()),
            Err(e) => tracing::warn!("{e}; starting unlearned"),
        }
    }
    let paths: Vec<String> = files
        .iter()
        .map(|f| f.path().display().to_string())
        .collect();
    let logs = MetadataLogs::open(o.tls_log.as_deref(), o.dns_log.as_deref(), rotation)?;
    let mut selector = Selector::new(o.app, o.dns_ports);
    let flow_names = Arc::new(FlowNameTable::default());
    let directions = Directions::from_groups(&o.detect.host_groups);
    let mut metadata = MetadataStage::new(
        Arc::new(AppStats::default()),
        logs,
        Some(flow_names.clone()),
        directions.clone(),
    )
    .with_detection(&o.detect);
    let origin = Origin::Files(&paths);
    let mut merged = Merged::new(files);

    let mut counters = Counters::default();
    let mut unknown: BTreeMap<i32, u64> = BTreeMap::new();
    let mut tops = Tops {
        talkers: HashMap::new(),
        ports: HashMap::new(),
    };
    let mut timeline = Timeline::default();
    let (mut out, mut incidents) = (Produced::default(), Vec::new());
    let (mut frames, mut bytes, mut truncated) = (0u64, 0u64, 0u64);
    let (mut first_ns, mut last_ns) = (u64::MAX, 0u64);
    let mut buf = Vec::with_capacity(65536);
    let mut last_progress = Instant::now();

    let records = RecordContext {
        files: &names,
        flow_names: &flow_names,
        directions: &directions,
    };
    while let Some(pkt) = merged.next_packet() {
        // Each file is an "interface" of its own in flow records.
        let ifindex = 1 + pkt.file;
        let Some(framing) = link::framing(pkt.linktype, &pkt.data) else {
            *unknown.entry(pkt.linktype).or_default() += 1;
            continue;
        };
        let eth = link::ethernet(framing, &pkt.data, &mut buf);
        let wire_len =
            (i64::from(pkt.orig_len) + link::length_delta(framing)).max(eth.len() as i64) as u64;
        if (pkt.data.len() as u32) < pkt.orig_len {
            truncated += 1;
        }
        let p = parse::parse(eth);
        counters.count(&p, wire_len);
        let ts = pkt.ts_ns;
        let r = SampleRecord::from_parsed(
            &p,
            p.addresses(eth),
            SampleMeta {
                timestamp_ns: ts,
                ifindex,
                frame_len: wire_len.min(u64::from(u32::MAX)) as u32,
                sample_rate: 1,
                ..SampleMeta::default()
            },
        );
        frames += 1;
        bytes += wire_len;
        first_ns = first_ns.min(ts);
        last_ns = last_ns.max(ts);
        tops.add(&r);
        timeline.add(&r, &p);
        if let Some(kind) = selector.select(eth, wire_len) {
            // What the XDP program would copy of it.
            let copied = &eth[..eth.len().min(APP_SNAPLEN as usize)];
            metadata.push(
                &AppFrame {
                    kind,
                    unix_ns: ts,
                    ifindex,
                    frame_len: wire_len,
                    data: copied,
                },
                &origin,
            );
            accept_findings(&mut pipeline, &mut metadata, &mut out);
        }
        // One record at a time: the packets' own time decides every tick.
        pipeline.push(std::slice::from_ref(&r), &mut out);
        if pipeline.notes().first().is_some_and(|n| n.new_flow) {
            timeline.flow_started(ts);
        }
        if pipeline.tick_if_due(ts, &mut out)
            && let Some(cb) = &mut o.progress
            && last_progress.elapsed().as_millis() >= 100
        {
            cb(read.load(Ordering::Relaxed), total, frames);
            last_progress = Instant::now();
        }
        export(&mut exporters, &mut out.expired, &records)?;
        note_incidents(&mut out.events, &mut incidents, alerts.as_ref(), &groups);
    }
    if let Some(cb) = &mut o.progress {
        cb(read.load(Ordering::Relaxed), total, frames);
    }
    // The end of the input ends every handshake, then every flow and
    // incident (the last handshakes' findings included).
    metadata.tick(last_ns, &origin);
    let summary = metadata.finish(&origin);
    accept_findings(&mut pipeline, &mut metadata, &mut out);
    let metadata = summary;
    pipeline.finish(last_ns, &mut out);
    export(&mut exporters, &mut out.expired, &records)?;
    for e in &mut exporters {
        e.flush()?;
    }
    note_incidents(&mut out.events, &mut incidents, alerts.as_ref(), &groups);
    if let Some(a) = alerts {
        a.close();
    }
    if let (Some(path), Some(engine)) = (&o.baseline_out, pipeline.engine()) {
        let n = engine.save_profiles(path).map_err(AnalyzeError::Baseline)?;
        tracing::info!("{}: {n} learned profiles written", path.display());
    }

    let file_summaries: Vec<FileSummary> = merged
        .files()
        .map(|f| FileSummary {
            path: f.path().to_path_buf(),
            packets: f.packets,
        })
        .collect();
    let damage: Vec<DamageSummary> = merged
        .files()
        .filter_map(|f| f.damage.clone())
        .map(Into::into)
        .collect();
    if frames == 0 && unknown.is_empty() && !damage.is_empty() {
        let why: Vec<String> = damage
            .iter()
            .map(|d| format!("{}: at byte {}: {}", d.path.display(), d.offset, d.why))
            .collect();
        return Err(AnalyzeError::NothingRead(why.join("; ")));
    }
    let c = &counters;
    use agent_common::class::{ParseError, ProtocolClass, TcpFlagCounter};
    Ok(Analysis {
        files: file_summaries,
        damage,
        unknown_link_types: unknown
            .into_iter()
            .map(|(l, n)| (linktype_name(l), n))
            .collect(),
        frames,
        bytes,
        truncated_by_snaplen: truncated,
        first_ns: if frames == 0 { 0 } else { first_ns },
        last_ns,
        classes: ProtocolClass::ALL
            .iter()
            .map(|k| {
                (
                    k.label(),
                    ClassCount {
                        packets: c.packets[*k as usize],
                        bytes: c.bytes[*k as usize],
                    },
                )
            })
            .collect(),
        tcp_flags: TcpFlagCounter::ALL
            .iter()
            .map(|f| (f.label(), c.tcp_flags[*f as usize]))
            .collect(),
        parse_errors: ParseError::ALL
            .iter()
            .map(|e| (e.label(), c.parse_errors[*e as usize]))
            .filter(|(_, n)| *n > 0)
            .collect(),
        ip_versions: [("4", c.ip_version[0]), ("6", c.ip_version[1])]
            .into_iter()
            .collect(),
        vlan_frames: c.vlan_packets,
        flows: pipeline.table().counters().created,
        top_talkers: top(tops.talkers, |a| display_addr(a).to_string()),
        top_ports: top(tops.ports, |(proto, port)| {
            format!("{port}/{}", transport(*proto))
        }),
        incidents,
        metadata,
        counters,
        timeline,
    })
}
