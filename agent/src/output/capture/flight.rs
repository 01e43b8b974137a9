//! The flight recorder: the last seconds of captured frames kept in
//! memory; when an incident starts, its window before and after, filtered
//! to the incident's addresses, goes into `incident-<id>.pcapng` (the
//! alert names that file). Bounded by time and by bytes; what it evicts
//! early for lack of memory is counted.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::mpsc::{Receiver, SyncSender, TrySendError},
    time::{Duration, Instant},
};

use agent_common::parse;
use prometheus::{IntCounter, Registry};

use super::{
    encode::{Format, Interface},
    files::{CaptureDir, Destination, DirConfig, FileMetrics, prepare_dir},
};
use crate::{
    kernel::capture::consumer::{Frame, FrameSink},
    pipeline::detect::{Addr, Subject},
};

/// Incident starts waiting for the recorder.
const REQUESTS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlightConfig {
    pub dir: PathBuf,
    /// Frames kept before an incident's start.
    pub before: Duration,
    /// Frames kept after it; the file is written then.
    pub after: Duration,
    /// Memory for frames.
    pub max_bytes: usize,
    pub snaplen: u32,
}

/// The file an incident's frames go to.
pub fn incident_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("incident-{id}.pcapng"))
}

/// An incident start, as the recorder needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentWindow {
    pub id: String,
    pub started_unix_ns: u64,
    pub subject: Subject,
}

/// Which frames of the window belong to an incident.
fn involves(subject: &Subject, src: &Addr, dst: &Addr) -> bool {
    match subject {
        Subject::Destination(a) | Subject::DestinationPort { dst: a, .. } => dst == a || src == a,
        Subject::Pair { src: s, dst: d } => (src == s && dst == d) || (src == d && dst == s),
        Subject::SourcePort { src: s, .. } => src == s || dst == s,
        // A host group's window is everything the recorder holds.
        Subject::Group(_) => true,
    }
}

/// The sending side, for the detection stage.
#[derive(Clone)]
pub struct FlightRequests {
    tx: SyncSender<IncidentWindow>,
    dropped: IntCounter,
}

impl FlightRequests {
    pub fn send(&self, w: IncidentWindow) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(w) {
            self.dropped.inc();
        }
    }
}

struct Held {
    unix_ns: u64,
    ifindex: u32,
    orig_len: u32,
    data: Box<[u8]>,
}

/// Counters of the flight recorder.
#[derive(Clone)]
pub struct FlightMetrics {
    pub files: IntCounter,
    pub frames: IntCounter,
    pub evicted_for_memory: IntCounter,
    pub requests_dropped: IntCounter,
}

impl FlightMetrics {
    pub fn register(r: &Registry) -> Result<FlightMetrics, prometheus::Error> {
        let m = FlightMetrics {
            files: IntCounter::new(
                "nta_flight_recorder_files_total",
                "Incident capture files written by the flight recorder.",
            )?,
            frames: IntCounter::new(
                "nta_flight_recorder_frames_total",
                "Frames written into incident capture files.",
            )?,
            evicted_for_memory: IntCounter::new(
                "nta_flight_recorder_evicted_total",
                "Frames dropped from the flight recorder's memory before their time was up (memory cap).",
            )?,
            requests_dropped: IntCounter::new(
                "nta_flight_recorder_requests_dropped_total",
                "Incident starts the flight recorder could not take (queue full).",
            )?,
        };
        for c in [
            &m.files,
            &m.frames,
            &m.evicted_for_memory,
            &m.requests_dropped,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        Ok(m)
    }
}

pub struct FlightRecorder {
    config: FlightConfig,
    interfaces: Vec<Interface>,
    held: VecDeque<Held>,
    bytes: usize,
    rx: Receiver<IncidentWindow>,
    /// Incidents waiting for their after-window to pass.
    waiting: Vec<IncidentWindow>,
    metrics: FlightMetrics,
}

impl FlightRecorder {
    /// The recorder (for the capture thread) and its request sender (for
    /// the detection stage). Creates the directory 0700.
    pub fn new(
        config: FlightConfig,
        interfaces: Vec<Interface>,
        metrics: FlightMetrics,
    ) -> Result<(FlightRecorder, FlightRequests), super::CaptureFilesError> {
        prepare_dir(&config.dir)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(REQUESTS);
        let requests = FlightRequests {
            tx,
            dropped: metrics.requests_dropped.clone(),
        };
        Ok((
            FlightRecorder {
                config,
                interfaces,
                held: VecDeque::new(),
                bytes: 0,
                rx,
                waiting: Vec::new(),
                metrics,
            },
            requests,
        ))
    }

    fn evict(&mut self, now_unix_ns: u64) {
        let keep_ns = (self.config.before + self.config.after).as_nanos() as u64;
        let oldest_wanted = self
            .waiting
            .iter()
            .map(|w| {
                w.started_unix_ns
                    .saturating_sub(self.config.before.as_nanos() as u64)
            })
            .min()
            .unwrap_or(u64::MAX)
            .min(now_unix_ns.saturating_sub(keep_ns));
        while let Some(h) = self.held.front() {
            let too_old = h.unix_ns < oldest_wanted;
            let too_big = self.bytes > self.config.max_bytes;
            if !too_old && !too_big {
                break;
            }
            if !too_old {
                self.metrics.evicted_for_memory.inc();
            }
            self.bytes -= h.data.len() + std::mem::size_of::<Held>();
            self.held.pop_front();
        }
    }

    /// Writes one incident's frames; returns how many.
    fn dump(&self, w: &IncidentWindow) -> Result<u64, super::CaptureFilesError> {
        let from = w
            .started_unix_ns
            .saturating_sub(self.config.before.as_nanos() as u64);
        let to = w.started_unix_ns + self.config.after.as_nanos() as u64;
        let mut file = CaptureDir::open(
            DirConfig {
                destination: Destination::File(incident_file(&self.config.dir, &w.id)),
                format: Format::Pcapng,
                snaplen: self.config.snaplen,
                file_bytes: u64::MAX,
                file_age: None,
                max_total_bytes: 0,
            },
            self.interfaces.clone(),
            FileMetrics::new().map_err(|e| super::CaptureFilesError::Dir {
                path: self.config.dir.clone(),
                why: e.to_string(),
            })?,
        )?;
        let now = Instant::now();
        let mut n = 0;
        for h in self
            .held
            .iter()
            .filter(|h| h.unix_ns >= from && h.unix_ns <= to)
        {
            let p = parse::parse(&h.data[..]);
            let (src, dst) = p.addresses(&h.data[..]);
            if p.ip_version == 0 || !involves(&w.subject, &src, &dst) {
                continue;
            }
            file.write(
                &Frame {
                    ifindex: h.ifindex,
                    unix_ns: h.unix_ns,
                    orig_len: h.orig_len,
                    data: &h.data,
                },
                now,
                h.unix_ns,
            );
            n += 1;
        }
        file.close(now, to);
        match file.last_error() {
            Some(e) => Err(super::CaptureFilesError::Dir {
                path: self.config.dir.clone(),
                why: e.to_string(),
            }),
            None => Ok(n),
        }
    }
}

impl FlightRecorder {
    /// Writes the incidents whose after-window has passed (all of them
    /// when `all`).
    fn dump_due(&mut self, unix_ns: u64, all: bool) {
        while let Ok(w) = self.rx.try_recv() {
            self.waiting.push(w);
        }
        let after = self.config.after.as_nanos() as u64;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| all || unix_ns >= w.started_unix_ns + after);
        self.waiting = waiting;
        for w in due {
            match self.dump(&w) {
                Ok(n) => {
                    self.metrics.files.inc();
                    self.metrics.frames.inc_by(n);
                    tracing::info!(incident = %w.id, frames = n, file = %incident_file(&self.config.dir, &w.id).display(), "flight recorder wrote the incident's frames");
                }
                Err(e) => {
                    tracing::error!(incident = %w.id, error = %e, "flight recorder could not write the incident's frames")
                }
            }
        }
    }
}

impl FrameSink for FlightRecorder {
    fn write(&mut self, f: &Frame<'_>, _now: Instant, unix_ns: u64) {
        self.bytes += f.data.len() + std::mem::size_of::<Held>();
        self.held.push_back(Held {
            unix_ns: f.unix_ns,
            ifindex: f.ifindex,
            orig_len: f.orig_len,
            data: f.data.into(),
        });
        if self.bytes > self.config.max_bytes {
            self.evict(unix_ns);
        }
    }

    fn tick(&mut self, _now: Instant, unix_ns: u64) {
        self.dump_due(unix_ns, false);
        self.evict(unix_ns);
    }

    fn close(&mut self, _now: Instant, unix_ns: u64) {
        // Incidents still in their after-window get what there is.
        self.dump_due(unix_ns, true);
    }
}
