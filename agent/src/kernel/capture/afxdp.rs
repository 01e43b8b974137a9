//! AF_XDP capture for dedicated sensor ports (mirror/SPAN interfaces):
//! the XDP program redirects matching frames to one AF_XDP socket per
//! receive queue (xdpilone, pure Rust), and the capture thread reads them
//! from shared memory without a copy into a ring buffer. Zero-copy where
//! the driver supports it, copy mode otherwise (veth). Frames that go here
//! skip the kernel stack; the program passes them on instead when no
//! socket is bound or the reader's heartbeat is stale (a stopped or killed
//! reader never swallows traffic).

use std::{
    num::NonZeroU32,
    ptr::NonNull,
    sync::{Arc, Mutex},
    time::Instant,
};

use aya::maps::{Array, MapData, XskMap};
use xdpilone::{
    DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, xdp::XdpStatisticsV2,
};

use super::consumer::{self, CaptureSummary, Frame, FrameSink, FrameSource, Limits};
use crate::output::export::{WallClock, monotonic_now_ns};

/// Chunk size in the shared memory: one frame each.
const FRAME_SIZE: u32 = 4096;
/// Chunks per queue (64 MiB): also the RX ring's size, so a reader that is
/// scheduled out for ~15 ms at 1 Mpps loses nothing (4096 lost frames in
/// the lab whenever the reader shared a CPU with the generator).
const FRAMES: u32 = 16384;
/// Descriptors read per batch.
const BATCH: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("mapping AF_XDP memory")]
    Mmap(#[source] std::io::Error),
    #[error("AF_XDP on {iface} queue {queue}: {step} failed: {errno}")]
    Socket {
        iface: String,
        queue: u32,
        step: &'static str,
        errno: String,
    },
    #[error("registering the AF_XDP socket of queue {queue} in XSKS")]
    Map {
        queue: u32,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Anonymous memory shared with the kernel, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is
// coordinated through the AF_XDP rings.
unsafe impl Send for Area {}

impl Area {
    fn new(len: usize) -> Result<Area, AfXdpError> {
        // SAFETY: anonymous private mapping, no file; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(AfXdpError::Mmap(std::io::Error::last_os_error()));
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Area { ptr, len })
            .ok_or_else(|| AfXdpError::Mmap(std::io::Error::other("null mapping")))
    }

    fn bytes(&self, offset: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds of the mapping; the kernel wrote this chunk and
        // handed it over through the RX ring, and does not touch it again
        // until it is back in the fill ring.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), len as usize) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Receive queues of an interface, from sysfs (1 when unknown).
pub fn rx_queues(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .clamp(1, agent_common::capture::MAX_QUEUES)
}

/// AF_XDP ring statistics as metrics, by interface and queue.
#[derive(Clone)]
pub struct AfXdpMetrics {
    rx_dropped: prometheus::IntCounterVec,
    rx_ring_full: prometheus::IntCounterVec,
    fill_ring_empty: prometheus::IntCounterVec,
}

impl AfXdpMetrics {
    /// The counters, registered later with [`AfXdpMetrics::register_in`]
    /// (the sockets exist before the registry does).
    pub fn new_unregistered() -> AfXdpMetrics {
        let c = |name: &str, help: &str| {
            prometheus::IntCounterVec::new(
                prometheus::Opts::new(name, help),
                &["interface", "queue"],
            )
            // Static names and labels: valid by construction.
            .unwrap_or_else(|e| unreachable!("{e}"))
        };
        AfXdpMetrics {
            rx_dropped: c(
                "nta_afxdp_rx_dropped_total",
                "Frames an AF_XDP socket dropped (kernel statistic rx_dropped).",
            ),
            rx_ring_full: c(
                "nta_afxdp_rx_ring_full_total",
                "Frames dropped because the AF_XDP RX ring was full (the reader fell behind).",
            ),
            fill_ring_empty: c(
                "nta_afxdp_fill_ring_empty_total",
                "Times the AF_XDP fill ring was empty when a frame arrived.",
            ),
        }
    }

    pub fn register_in(&self, r: &prometheus::Registry) -> Result<(), prometheus::Error> {
        for v in [&self.rx_dropped, &self.rx_ring_full, &self.fill_ring_empty] {
            r.register(Box::new(v.clone()))?;
        }
        Ok(())
    }
}

/// One bound socket on one receive queue.
pub struct AfXdpQueue {
    ifindex: u32,
    queue: u32,
    snaplen: u32,
    pub zero_copy: bool,
    // Field order is drop order: rings and sockets before the memory.
    rx: RingRx,
    device: DeviceQueue,
    _umem: Umem,
    area: Area,
    heartbeat: Arc<Mutex<Array<MapData, u64>>>,
    stats: XdpStatisticsV2,
    returned: Vec<u64>,
    metrics: Option<(AfXdpMetrics, String)>,
}

// SAFETY: the only non-Send part is the Umem's pointer to `area`, which
// this value owns and moves along; the queue is used by one thread at a
// time (the capture thread), never shared.
unsafe impl Send for AfXdpQueue {}

impl AfXdpQueue {
    /// Binds a socket to `queue` of the interface (zero-copy if the driver
    /// can, else copy mode), fills its fill ring, and registers it in the
    /// program's `XSKS` map.
    pub fn bind(
        iface: &str,
        ifindex: u32,
        queue: u32,
        snaplen: u32,
        xsks: &mut XskMap<MapData>,
        heartbeat: Arc<Mutex<Array<MapData, u64>>>,
    ) -> Result<AfXdpQueue, AfXdpError> {
        match Self::bind_with(
            iface,
            ifindex,
            queue,
            snaplen,
            xsks,
            heartbeat.clone(),
            true,
        ) {
            Ok(q) => Ok(q),
            Err(AfXdpError::Socket { .. }) => {
                Self::bind_with(iface, ifindex, queue, snaplen, xsks, heartbeat, false)
            }
            Err(e) => Err(e),
        }
    }

    fn bind_with(
        iface: &str,
        ifindex: u32,
        queue: u32,
        snaplen: u32,
        xsks: &mut XskMap<MapData>,
        heartbeat: Arc<Mutex<Array<MapData, u64>>>,
        zero_copy: bool,
    ) -> Result<AfXdpQueue, AfXdpError> {
        let fail = |step: &'static str| {
            move |e: xdpilone::Errno| AfXdpError::Socket {
                iface: iface.to_string(),
                queue,
                step,
                errno: e.to_string(),
            }
        };
        let area = Area::new((FRAMES * FRAME_SIZE) as usize)?;
        let config = UmemConfig {
            fill_size: FRAMES,
            complete_size: 64,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: page-aligned anonymous mapping of exactly this length,
        // kept alive in `area` for as long as the Umem (dropped first).
        let umem = unsafe { Umem::new(config, NonNull::slice_from_raw_parts(area.ptr, area.len)) }
            .map_err(fail("registering the memory"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(fail("finding the interface"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(fail("creating the socket"))?;
        let device = umem.fq_cq(&sock).map_err(fail("mapping the fill ring"))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES),
                    tx_size: None,
                    bind_flags: if zero_copy {
                        SocketConfig::XDP_BIND_ZEROCOPY
                    } else {
                        SocketConfig::XDP_BIND_COPY
                    },
                },
            )
            .map_err(fail("configuring the RX ring"))?;
        let rx = user.map_rx().map_err(fail("mapping the RX ring"))?;
        umem.bind(&user).map_err(fail("binding"))?;
        xsks.set(queue, rx.as_raw_fd(), 0)
            .map_err(|source| AfXdpError::Map { queue, source })?;
        let mut q = AfXdpQueue {
            ifindex,
            queue,
            snaplen,
            zero_copy,
            rx,
            device,
            _umem: umem,
            area,
            heartbeat,
            stats: XdpStatisticsV2::default(),
            // Every chunk starts in the fill ring.
            returned: (0..u64::from(FRAMES))
                .map(|i| i * u64::from(FRAME_SIZE))
                .collect(),
            metrics: None,
        };
        q.refill();
        q.beat();
        Ok(q)
    }

    /// Gives the read chunks back to the kernel. A reservation sees only
    /// the free slots it last knew of, so this loops until all went in (or
    /// the ring is really full: the rest wait for the next call). Chunks
    /// left out would leak, and the kernel would run out of buffers (it
    /// did: `fill_ring_empty` drops at 0.5 Mpps).
    fn refill(&mut self) {
        while !self.returned.is_empty() {
            let mut fill = self.device.fill(self.returned.len() as u32);
            let n = fill.insert(self.returned.iter().copied()) as usize;
            fill.commit();
            drop(fill);
            if n == 0 {
                break;
            }
            self.returned.drain(..n);
        }
    }

    /// Tells the program the reader is alive.
    fn beat(&self) {
        if let Ok(mut h) = self.heartbeat.lock() {
            let _ = h.set(0, monotonic_now_ns(), 0);
        }
    }

    /// Exposes this socket's ring statistics, labelled with `iface`.
    pub fn with_metrics(mut self, metrics: AfXdpMetrics, iface: &str) -> AfXdpQueue {
        let q = self.queue.to_string();
        for v in [
            &metrics.rx_dropped,
            &metrics.rx_ring_full,
            &metrics.fill_ring_empty,
        ] {
            v.with_label_values(&[iface, q.as_str()]);
        }
        self.metrics = Some((metrics, iface.to_string()));
        self
    }
}

impl FrameSource for AfXdpQueue {
    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn fd(&self) -> Option<std::os::fd::RawFd> {
        // Checked on a timer (see consumer::TIMER_POLL).
        None
    }

    fn drain(
        &mut self,
        sinks: &mut [Box<dyn FrameSink>],
        clock: WallClock,
        now: Instant,
        limits: Limits,
        summary: &mut CaptureSummary,
    ) -> bool {
        // AF_XDP carries no timestamp: frames get the time they are read.
        let unix_ns = clock.to_unix_ns(monotonic_now_ns());
        let mut reader = self.rx.receive(BATCH);
        let full = reader.capacity() == BATCH;
        while let Some(desc) = reader.read() {
            // The chunk goes back to the fill ring whatever happens.
            self.returned
                .push(desc.addr - desc.addr % u64::from(FRAME_SIZE));
            if limits.frames.is_some_and(|n| summary.frames >= n) {
                continue;
            }
            let Some(data) = self.area.bytes(desc.addr, desc.len) else {
                summary.bad_records += 1;
                continue;
            };
            let frame = Frame {
                ifindex: self.ifindex,
                unix_ns,
                orig_len: desc.len,
                kind: 0,
                data: &data[..data.len().min(self.snaplen as usize)],
            };
            consumer::deliver(sinks, &frame, now, summary);
        }
        reader.release();
        drop(reader);
        self.refill();
        full
    }

    fn dropped(&self) -> u64 {
        // rx_dropped already holds the fill-ring-empty drops (measured:
        // equal when only those happened); adding the other two counters
        // counted them twice. Whether it also holds ring-full drops was
        // not observed apart: rx_ring_full is a metric of its own.
        self.stats.rx_dropped
    }

    fn report(&self) -> Option<String> {
        let s = self.stats;
        Some(format!(
            "AF_XDP queue {}: rx_dropped {}, rx_ring_full {}, fill_ring_empty {}, rx_invalid {}",
            self.queue,
            s.rx_dropped,
            s.rx_ring_full,
            s.rx_fill_ring_empty_descs,
            s.rx_invalid_descs
        ))
    }

    fn tick(&mut self) {
        self.beat();
        let Ok(s) = self.device.statistics_v2() else {
            return;
        };
        if let Some((m, iface)) = &self.metrics {
            let q = self.queue.to_string();
            let l = [iface.as_str(), q.as_str()];
            let old = self.stats;
            m.rx_dropped
                .with_label_values(&l)
                .inc_by(s.rx_dropped.saturating_sub(old.rx_dropped));
            m.rx_ring_full
                .with_label_values(&l)
                .inc_by(s.rx_ring_full.saturating_sub(old.rx_ring_full));
            m.fill_ring_empty.with_label_values(&l).inc_by(
                s.rx_fill_ring_empty_descs
                    .saturating_sub(old.rx_fill_ring_empty_descs),
            );
        }
        self.stats = s;
    }
}
