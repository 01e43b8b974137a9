//! The flight recorder: the last seconds of captured frames kept in
//! memory; when an incident starts, its window before and after, filtered
//! to the incident's addresses, goes into `incident-<id>.pcapng` (the
//! alert names that file). Bounded by time and by bytes; what it evicts
//! early for lack of memory is counted.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::Arc,
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
/// Incident files waiting for the writer thread; more are dropped
/// (counted): decoy incidents must not hold the capture thread up.
const DUMPS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlightConfig {
    pub dir: PathBuf,
    /// Frames kept before an incident's start.
    pub before: Duration,
    /// Frames kept after it; the file is written then.
    pub after: Duration,
    /// Memory for frames.
    pub max_bytes: usize,
    /// Disk for incident files; the oldest go past it.
    pub max_disk_bytes: u64,
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
        Subject::Destination(a) | Subject::Reflected { dst: a, .. } => dst == a || src == a,
        Subject::Pair { src: s, dst: d } => (src == s && dst == d) || (src == d && dst == s),
        Subject::SourcePort { src: s, .. } | Subject::Source(s) => src == s || dst == s,
        // A host group's or interface's window is everything the
        // recorder holds.
        Subject::Group(_) | Subject::Interface(_) => true,
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

/// A frame in memory; its bytes are shared with the incident files that
/// take it, so handing them to the writer copies nothing.
#[derive(Clone)]
struct Held {
    unix_ns: u64,
    ifindex: u32,
    orig_len: u32,
    data: Arc<[u8]>,
}

/// One incident file for the writer thread.
struct Dump {
    window: IncidentWindow,
    frames: Vec<Held>,
    /// The window's end, for the file's statistics block.
    to_unix_ns: u64,
}

/// Counters of the flight recorder.
#[derive(Clone)]
pub struct FlightMetrics {
    pub files: IntCounter,
    pub frames: IntCounter,
    pub evicted_for_memory: IntCounter,
    pub requests_dropped: IntCounter,
    pub dumps_dropped: IntCounter,
    pub files_deleted: IntCounter,
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
            dumps_dropped: IntCounter::new(
                "nta_flight_recorder_dumps_dropped_total",
                "Incident files not written because the writer was behind (queue full).",
            )?,
            files_deleted: IntCounter::new(
                "nta_flight_recorder_files_deleted_total",
                "Old incident files deleted to stay within --flight-recorder-max-bytes.",
            )?,
        };
        for c in [
            &m.files,
            &m.frames,
            &m.evicted_for_memory,
            &m.requests_dropped,
            &m.dumps_dropped,
            &m.files_deleted,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        Ok(m)
    }
}

pub struct FlightRecorder {
    config: FlightConfig,
    held: VecDeque<Held>,
    bytes: usize,
    rx: Receiver<IncidentWindow>,
    /// Incidents waiting for their after-window to pass.
    waiting: Vec<IncidentWindow>,
    metrics: FlightMetrics,
    /// The writer thread: files are written and old ones deleted there,
    /// off the capture thread.
    writer: Option<(SyncSender<Dump>, std::thread::JoinHandle<()>)>,
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
        let (dumps, queued) = std::sync::mpsc::sync_channel::<Dump>(DUMPS);
        let writer = Writer {
            config: config.clone(),
            interfaces,
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("nta-flight".into())
            .spawn(move || {
                while let Ok(d) = queued.recv() {
                    writer.write(&d);
                }
            })
            .map_err(|e| super::CaptureFilesError::Dir {
                path: config.dir.clone(),
                why: format!("starting the flight recorder's writer: {e}"),
            })?;
        Ok((
            FlightRecorder {
                config,
                held: VecDeque::new(),
                bytes: 0,
                rx,
                waiting: Vec::new(),
                metrics,
                writer: Some((dumps, thread)),
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

    /// The frames of `w`'s window that involve its subject.
    fn select(&self, w: &IncidentWindow) -> Dump {
        let from = w
            .started_unix_ns
            .saturating_sub(self.config.before.as_nanos() as u64);
        let to = w.started_unix_ns + self.config.after.as_nanos() as u64;
        let frames = self
            .held
            .iter()
            .filter(|h| h.unix_ns >= from && h.unix_ns <= to)
            .filter(|h| {
                let p = parse::parse(&h.data[..]);
                let (src, dst) = p.addresses(&h.data[..]);
                p.ip_version != 0 && involves(&w.subject, &src, &dst)
            })
            .cloned()
            .collect();
        Dump {
            window: w.clone(),
            frames,
            to_unix_ns: to,
        }
    }
}

/// The writer thread's side: incident files and the disk cap.
struct Writer {
    config: FlightConfig,
    interfaces: Vec<Interface>,
    metrics: FlightMetrics,
}

impl Writer {
    fn write(&self, d: &Dump) {
        let w = &d.window;
        let file = incident_file(&self.config.dir, &w.id);
        match self.dump(d, &file) {
            Ok(n) => {
                self.metrics.files.inc();
                self.metrics.frames.inc_by(n);
                tracing::info!(incident = %w.id, frames = n, file = %file.display(), "flight recorder wrote the incident's frames");
            }
            Err(e) => {
                tracing::error!(incident = %w.id, error = %e, "flight recorder could not write the incident's frames")
            }
        }
        let deleted = enforce_disk_cap(&self.config.dir, self.config.max_disk_bytes, &file);
        self.metrics.files_deleted.inc_by(deleted);
    }

    /// Writes one incident's frames; returns how many.
    fn dump(&self, d: &Dump, path: &Path) -> Result<u64, super::CaptureFilesError> {
        let mut file = CaptureDir::open(
            DirConfig {
                destination: Destination::File(path.to_path_buf()),
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
        for h in &d.frames {
            file.write(
                &Frame {
                    ifindex: h.ifindex,
                    unix_ns: h.unix_ns,
                    orig_len: h.orig_len,
                    kind: 0,
                    data: &h.data,
                },
                now,
                h.unix_ns,
            );
        }
        file.close(now, d.to_unix_ns);
        match file.last_error() {
            Some(e) => Err(super::CaptureFilesError::Dir {
                path: self.config.dir.clone(),
                why: e.to_string(),
            }),
            None => Ok(d.frames.len() as u64),
        }
    }
}

/// Deletes the oldest incident files in `dir` until they take at most
/// `max_bytes` (`keep`, the newest, stays even alone past it); returns
/// how many went.
fn enforce_disk_cap(dir: &Path, max_bytes: u64, keep: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("incident-") && n.ends_with(".pcapng"))
        })
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| {
                (
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    e.path(),
                    m.len(),
                )
            })
        })
        .collect();
    files.sort();
    super::files::delete_oldest_past(
        files.into_iter().map(|(_, path, size)| (path, size)),
        max_bytes,
        Some(keep),
    )
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
            let dump = self.select(&w);
            let Some((tx, _)) = &self.writer else { return };
            // At the end every file is waited for; while running, a full
            // queue drops the file rather than stall capture.
            let sent = if all {
                tx.send(dump).map_err(|_| ())
            } else {
                tx.try_send(dump).map_err(|_| ())
            };
            if sent.is_err() {
                self.metrics.dumps_dropped.inc();
                tracing::warn!(incident = %w.id, "flight recorder's writer is behind; this incident's frames are not written");
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
            data: Arc::from(f.data),
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
        if let Some((tx, thread)) = self.writer.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::DirBuilderExt;

    use agent_common::sample::map_ipv4;
    use nta_lab::frames::{FrameSpec, L4};

    use super::*;

    #[test]
    fn incident_files_stay_under_the_disk_cap_oldest_deleted() {
        let dir = std::env::temp_dir().join(format!("nta-flight-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::new();
        let metrics = FlightMetrics::register(&registry).unwrap_or_else(|e| panic!("{e}"));
        let (mut recorder, requests) = FlightRecorder::new(
            FlightConfig {
                dir: dir.clone(),
                before: Duration::from_secs(1),
                after: Duration::ZERO,
                max_bytes: 1 << 20,
                // Room for about two incident files of 20 frames.
                max_disk_bytes: 6_000,
                snaplen: 4096,
            },
            vec![Interface {
                ifindex: 1,
                name: "lab0".into(),
            }],
            metrics.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Five decoy incidents, one a second, each with 20 frames of its
        // own destination.
        let now = Instant::now();
        for i in 0..5u64 {
            let t = (100 + i) * 1_000_000_000;
            let frame = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 })
                .with_ipv4(|h| h.dst = [198, 18, 9, i as u8].into())
                .with_payload(100)
                .build();
            for k in 0..20 {
                let f = Frame {
                    ifindex: 1,
                    unix_ns: t + k,
                    orig_len: frame.len() as u32,
                    kind: 0,
                    data: &frame,
                };
                recorder.write(&f, now, t + k);
            }
            requests.send(IncidentWindow {
                id: format!("decoy-{i}"),
                started_unix_ns: t + 20,
                subject: Subject::Destination(map_ipv4([198, 18, 9, i as u8])),
            });
            recorder.tick(now, t + 100);
            // Files get distinct modification times, oldest first.
            std::thread::sleep(Duration::from_millis(20));
        }
        recorder.close(now, 200 * 1_000_000_000);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        left.sort();
        let total: u64 = left
            .iter()
            .map(|n| std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= 6_000, "{total} bytes in {left:?}");
        assert!(
            left.last().is_some_and(|n| n == "incident-decoy-4.pcapng"),
            "the newest stays: {left:?}"
        );
        assert!(!left.contains(&"incident-decoy-0.pcapng".to_string()));
        assert_eq!(metrics.files.get(), 5);
        assert_eq!(metrics.files_deleted.get() as usize, 5 - left.len());
        assert_eq!(metrics.frames.get(), 100);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
