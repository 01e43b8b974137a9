//! Capture inside `nta run`: the kernel settings each interface's program
//! loads with, the files opened before anything attaches (so a bad
//! directory fails fast), and the writer thread started once the rings
//! exist.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use agent_common::capture::MAX_SNAPLEN;
use prometheus::Registry;

use super::{
    encode::Interface,
    files::{CaptureDir, CaptureFilesError, Destination, DirConfig, FileMetrics},
    flight::{FlightConfig, FlightMetrics, FlightRecorder, FlightRequests},
    settings::CaptureSettings,
};
use crate::{
    kernel::{
        capture::{
            CaptureFilter, FilterError,
            consumer::{self, CaptureSummary, FrameSink, FrameSource, Limits},
        },
        sensor::KernelCapture,
    },
    output::export::WallClock,
};

#[derive(Debug, thiserror::Error)]
pub enum LiveCaptureError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Files(#[from] CaptureFilesError),
    #[error("capture: --capture-snaplen must be at least 1")]
    Snaplen,
    #[error("capture: --capture-ring-mib must be a power of two from 1 to 1024, not {0}")]
    Ring(u32),
    #[error("registering capture metrics")]
    Metrics(#[source] prometheus::Error),
}

/// What the XDP program of each interface captures with.
pub fn kernel_capture(s: &CaptureSettings) -> Result<KernelCapture, LiveCaptureError> {
    if s.snaplen == 0 {
        return Err(LiveCaptureError::Snaplen);
    }
    if !s.ring_mib.is_power_of_two() || s.ring_mib > 1024 {
        return Err(LiveCaptureError::Ring(s.ring_mib));
    }
    Ok(KernelCapture {
        snaplen: s.snaplen.min(MAX_SNAPLEN),
        filter: CaptureFilter::compile(&s.filter)?.table,
        // AF_XDP needs no capture ring: one page.
        ring_bytes: if s.af_xdp { 4096 } else { s.ring_mib << 20 },
        af_xdp: s.af_xdp,
    })
}

/// What the detection stage needs of the flight recorder: where to send
/// incident starts, and the directory its files go to (named in alerts).
pub type FlightLink = (FlightRequests, std::path::PathBuf);

/// Capture files opened, waiting for the rings.
pub struct Prepared {
    sinks: Vec<Box<dyn FrameSink>>,
    /// For the detection stage, when the flight recorder is on.
    pub flight: Option<FlightLink>,
}

/// Opens the capture directory (created 0700) and registers the writer's
/// metrics.
pub fn prepare(
    s: &CaptureSettings,
    interfaces: Vec<Interface>,
    registry: &Registry,
) -> Result<Prepared, LiveCaptureError> {
    let metrics = FileMetrics::new().map_err(LiveCaptureError::Metrics)?;
    metrics
        .register_in(registry)
        .map_err(LiveCaptureError::Metrics)?;
    let mut sinks: Vec<Box<dyn FrameSink>> = Vec::new();
    if let Some(dir) = &s.dir {
        sinks.push(Box::new(CaptureDir::open(
            DirConfig {
                destination: Destination::Dir(dir.clone()),
                format: s.format,
                snaplen: s.snaplen.min(MAX_SNAPLEN),
                file_bytes: s.file_bytes,
                file_age: s.file_age,
                max_total_bytes: s.max_bytes,
            },
            interfaces.clone(),
            metrics,
        )?));
    }
    let mut flight = None;
    if let Some(f) = &s.flight {
        let (recorder, requests) = FlightRecorder::new(
            FlightConfig {
                dir: f.dir.clone(),
                before: f.before,
                after: f.after,
                max_bytes: (f.memory_mib as usize) << 20,
                max_disk_bytes: f.max_bytes,
                snaplen: s.snaplen.min(MAX_SNAPLEN),
            },
            interfaces,
            FlightMetrics::register(registry).map_err(LiveCaptureError::Metrics)?,
        )?;
        sinks.push(Box::new(recorder));
        flight = Some((requests, f.dir.clone()));
    }
    Ok(Prepared { sinks, flight })
}

/// The running writer thread.
pub struct Running {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<CaptureSummary>,
}

impl Prepared {
    pub fn start(self, sources: Vec<Box<dyn FrameSource>>) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = consumer::spawn(
            sources,
            self.sinks,
            WallClock::monotonic(),
            Limits::default(),
            stop.clone(),
        );
        Running { stop, handle }
    }
}

impl Running {
    /// Drains the rings, closes the files complete; blocks.
    pub fn stop(self) -> CaptureSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
