//! The capture thread: drains every interface's `CAPTURES` ring buffer
//! straight into the capture files. Its own thread (not the async
//! runtime): at full rate it is a tight loop of decode and copy, and file
//! writes block.

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};

use super::record::decode_capture;
use agent_common::counters::Counters;

use crate::{kernel::sensor::CountersReader, output::export::WallClock};

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ifindex: u32,
    pub unix_ns: u64,
    pub orig_len: u32,
    /// 0 for captured frames; an `agent_common::app::AppKind` for frames
    /// from the app ring.
    pub kind: u32,
    pub data: &'a [u8],
}

/// Longest wait for records before the writer's housekeeping runs.
/// The kernel wakes the thread only every few thousand records per CPU
/// (wakeups are dear), so this timer is what usually drains the rings.
const POLL: Duration = Duration::from_millis(10);
/// Housekeeping period: flush to disk, rotate by age, read drop counters.
const TICK: Duration = Duration::from_millis(200);
/// How often sources without a descriptor (AF_XDP) are checked. In copy
/// mode an AF_XDP socket signals readiness for every frame; a 1 ms timer
/// costs ~1000 wakeups a second whatever the rate, and 1 ms is under a
/// tenth of the 16384-frame ring at 1.5 Mpps.
const TIMER_POLL: Duration = Duration::from_millis(1);
/// Records taken from one ring before looking at the others.
const DRAIN_BATCH: usize = 65_536;

/// One interface's capture ring (or app ring) and its kernel counters.
pub struct CaptureRing {
    pub ifindex: u32,
    pub ring: RingBuf<MapData>,
    pub counters: Arc<CountersReader>,
    /// The kernel counter of this ring's drops.
    pub dropped: fn(&Counters) -> u64,
}

impl CaptureRing {
    /// The capture ring of an interface.
    pub fn capture(ifindex: u32, ring: RingBuf<MapData>, counters: Arc<CountersReader>) -> Self {
        CaptureRing {
            ifindex,
            ring,
            counters,
            dropped: |c| c.capture_dropped,
        }
    }

    /// The app ring of an interface.
    pub fn app(ifindex: u32, ring: RingBuf<MapData>, counters: Arc<CountersReader>) -> Self {
        CaptureRing {
            ifindex,
            ring,
            counters,
            dropped: |c| c.app_dropped,
        }
    }
}

/// What a capture thread did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    /// Frames handed to the writer.
    pub frames: u64,
    /// Records that failed the length check.
    pub bad_records: u64,
    /// Frames the kernel could not put in the ring (ring full).
    pub kernel_dropped: u64,
    /// The write error that ended a one-shot capture, if any.
    pub error: Option<String>,
}

/// Where captured frames go: rotating files, one file, the flight
/// recorder's memory.
pub trait FrameSink: Send {
    fn write(&mut self, f: &Frame<'_>, now: Instant, unix_ns: u64);
    /// Frames lost before the writer (kernel ring full).
    fn note_dropped(&mut self, _ifindex: u32, _n: u64) {}
    /// Housekeeping a few times a second.
    fn tick(&mut self, now: Instant, unix_ns: u64);
    /// Finish: every file complete.
    fn close(&mut self, now: Instant, unix_ns: u64);
    /// False once the sink cannot take frames any more.
    fn usable(&self) -> bool {
        true
    }
    fn last_error(&self) -> Option<String> {
        None
    }
}

/// Where captured frames come from: the kernel's capture ring, or AF_XDP
/// sockets.
pub trait FrameSource: Send {
    fn ifindex(&self) -> u32;
    /// The descriptor to wait on for frames; None: check it on a short
    /// timer instead.
    fn fd(&self) -> Option<std::os::fd::RawFd>;
    /// Hands up to a batch of frames to the sinks; true when the batch
    /// was full (more are waiting).
    fn drain(
        &mut self,
        sinks: &mut [Box<dyn FrameSink>],
        clock: WallClock,
        now: Instant,
        limits: Limits,
        summary: &mut CaptureSummary,
    ) -> bool;
    /// Frames lost before userspace so far (ring full), as a running total.
    fn dropped(&self) -> u64;
    /// Housekeeping a few times a second (heartbeats, statistics).
    fn tick(&mut self) {}
    /// A line for the log when capture ends (source statistics).
    fn report(&self) -> Option<String> {
        None
    }
}

impl FrameSource for CaptureRing {
    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.ring.as_fd().as_raw_fd())
    }

    fn drain(
        &mut self,
        sinks: &mut [Box<dyn FrameSink>],
        clock: WallClock,
        now: Instant,
        limits: Limits,
        summary: &mut CaptureSummary,
    ) -> bool {
        drain(self, sinks, clock, now, limits, summary)
    }

    fn dropped(&self) -> u64 {
        kernel_dropped(self)
    }
}

/// When the thread stops on its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Stop after this many frames (`nta capture -c`).
    pub frames: Option<u64>,
}

/// Runs until `stop` is set (or the limits are reached), then drains the
/// rings once more and closes the files complete.
pub fn spawn(
    mut rings: Vec<Box<dyn FrameSource>>,
    mut sinks: Vec<Box<dyn FrameSink>>,
    clock: WallClock,
    limits: Limits,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<CaptureSummary> {
    thread::spawn(move || {
        let mut summary = CaptureSummary::default();
        let mut last_dropped: Vec<u64> = rings.iter().map(|r| r.dropped()).collect();
        let mut last_tick = Instant::now();
        let done = |s: &CaptureSummary| limits.frames.is_some_and(|n| s.frames >= n);
        let mut busy = false;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            // A full batch last time: more is waiting, no need to sleep.
            if !stopping && !busy {
                wait_readable(&rings, POLL);
            }
            let now = Instant::now();
            busy = false;
            for r in &mut rings {
                busy |= r.drain(&mut sinks, clock, now, limits, &mut summary);
            }
            if now.duration_since(last_tick) >= TICK || stopping || done(&summary) {
                last_tick = now;
                for (r, last) in rings.iter_mut().zip(last_dropped.iter_mut()) {
                    r.tick();
                    let d = r.dropped();
                    if d > *last {
                        for s in &mut sinks {
                            s.note_dropped(r.ifindex(), d - *last);
                        }
                        summary.kernel_dropped += d - *last;
                    }
                    *last = d;
                }
                let unix_ns = clock.to_unix_ns(crate::output::export::monotonic_now_ns());
                for s in &mut sinks {
                    s.tick(now, unix_ns);
                }
            }
            if stopping || done(&summary) || sinks.iter().any(|s| !s.usable()) {
                break;
            }
        }
        for r in &mut rings {
            r.tick();
            if let Some(line) = r.report() {
                tracing::info!("{line}");
            }
        }
        let unix_ns = clock.to_unix_ns(crate::output::export::monotonic_now_ns());
        for s in &mut sinks {
            s.close(Instant::now(), unix_ns);
            if summary.error.is_none() {
                summary.error = s.last_error();
            }
        }
        summary
    })
}

/// Hands one frame to every sink and counts it.
pub(super) fn deliver(
    sinks: &mut [Box<dyn FrameSink>],
    frame: &Frame<'_>,
    now: Instant,
    summary: &mut CaptureSummary,
) {
    for s in sinks.iter_mut() {
        s.write(frame, now, frame.unix_ns);
    }
    summary.frames += 1;
}

fn kernel_dropped(r: &CaptureRing) -> u64 {
    r.counters.read().map_or(0, |c| (r.dropped)(&c))
}

fn drain(
    r: &mut CaptureRing,
    sinks: &mut [Box<dyn FrameSink>],
    clock: WallClock,
    now: Instant,
    limits: Limits,
    summary: &mut CaptureSummary,
) -> bool {
    // Bounded, so one busy ring cannot starve the others or the
    // housekeeping. Returns whether the batch was full.
    for _ in 0..DRAIN_BATCH {
        if limits.frames.is_some_and(|n| summary.frames >= n) {
            return false;
        }
        let Some(item) = r.ring.next() else {
            return false;
        };
        match decode_capture(&item) {
            Some((h, data)) => {
                let unix_ns = clock.to_unix_ns(h.timestamp_ns);
                let frame = Frame {
                    ifindex: h.ifindex,
                    unix_ns,
                    orig_len: h.frame_len,
                    kind: h.kind,
                    data,
                };
                deliver(sinks, &frame, now, summary);
            }
            None => summary.bad_records += 1,
        }
    }
    true
}

/// Waits until a source has frames or `timeout` passes (sources without a
/// descriptor: at most [`TIMER_POLL`]).
fn wait_readable(rings: &[Box<dyn FrameSource>], timeout: Duration) {
    let timeout = if rings.iter().any(|r| r.fd().is_none()) {
        TIMER_POLL
    } else {
        timeout
    };
    let mut fds: Vec<libc::pollfd> = rings
        .iter()
        .filter_map(|r| r.fd())
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on a valid array of pollfd of the given length.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        );
    }
}
