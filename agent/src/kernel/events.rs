//! Drains the `SAMPLES` ring buffer: decode each record with a length and
//! version check, and hand batches to a bounded queue. Decode failures and
//! queue overflow are counted, never fatal.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use agent_common::sample::SampleRecord;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

/// Records per queue message. Batching keeps the queue cost per record low.
pub const BATCH: usize = 1024;
/// Queue depth in batches.
pub const QUEUE_BATCHES: usize = 256;
/// The kernel wakes us only every N records per CPU; this timer drains the
/// rest so a quiet link still delivers its samples promptly.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("registering the ring buffer with the event loop")]
    Register(#[source] std::io::Error),
    #[error("waiting on the ring buffer")]
    Poll(#[source] std::io::Error),
}

/// Userspace drop and throughput counters for one interface.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Records decoded and queued.
    pub queued: AtomicU64,
    /// Records that failed to decode.
    pub decode_errors: AtomicU64,
    /// Records dropped because the queue was full.
    pub queue_dropped: AtomicU64,
}

/// A batch of decoded samples from one interface.
#[derive(Debug)]
pub struct SampleBatch {
    pub interface: Arc<str>,
    pub records: Vec<SampleRecord>,
}

pub fn queue() -> (mpsc::Sender<SampleBatch>, mpsc::Receiver<SampleBatch>) {
    mpsc::channel(QUEUE_BATCHES)
}

/// Decodes raw records into `batch`, counting failures in `stats`.
pub fn decode_into<'a>(
    raw: impl IntoIterator<Item = &'a [u8]>,
    batch: &mut Vec<SampleRecord>,
    stats: &PipelineStats,
) {
    for bytes in raw {
        match SampleRecord::decode(bytes) {
            Ok(r) => batch.push(r),
            Err(e) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "undecodable sample record");
            }
        }
    }
}

/// Offers a batch to the queue; a full queue drops it and counts the drop.
pub fn enqueue(tx: &mpsc::Sender<SampleBatch>, batch: SampleBatch, stats: &PipelineStats) {
    let n = batch.records.len() as u64;
    match tx.try_send(batch) {
        Ok(()) => {
            stats.queued.fetch_add(n, Ordering::Relaxed);
        }
        Err(_) => {
            stats.queue_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    interface: &Arc<str>,
    tx: &mpsc::Sender<SampleBatch>,
    stats: &PipelineStats,
) {
    loop {
        // Most timer ticks find the ring empty: allocate only for records.
        let mut records = Vec::new();
        while records.len() < BATCH {
            let Some(item) = ring.next() else { break };
            if records.is_empty() {
                records.reserve_exact(BATCH);
            }
            decode_into([&*item], &mut records, stats);
        }
        let full = records.len() == BATCH;
        if !records.is_empty() {
            enqueue(
                tx,
                SampleBatch {
                    interface: interface.clone(),
                    records,
                },
                stats,
            );
        }
        if !full {
            return;
        }
    }
}

/// Consumes the ring buffer until `shutdown` turns true, then drains what is
/// left once more.
pub async fn consume_ring(
    ring: RingBuf<MapData>,
    interface: Arc<str>,
    tx: mpsc::Sender<SampleBatch>,
    stats: Arc<PipelineStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), EventsError> {
    // SAFETY: the RingBuf owns its map fd for its whole life and always
    // reports the same fd; the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| EventsError::Register(std::io::Error::other(e.to_string())))?;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(EventsError::Poll)?;
                drain(guard.get_inner_mut(), &interface, &tx, &stats);
                guard.clear_ready();
            }
            _ = tick.tick() => drain(fd.get_mut(), &interface, &tx, &stats),
            _ = shutdown.changed() => {
                drain(fd.get_mut(), &interface, &tx, &stats);
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::RECORD_VERSION;

    use super::*;

    fn record() -> SampleRecord {
        SampleRecord {
            version: RECORD_VERSION,
            ..Default::default()
        }
    }

    #[test]
    fn decode_counts_bad_records_and_keeps_good_ones() {
        let stats = PipelineStats::default();
        let good = *record().as_bytes();
        let short = &good[..40];
        let mut bad_version = good;
        bad_version[26] = 77;
        let mut batch = Vec::new();
        decode_into(
            [&good[..], short, &bad_version[..], &good[..]],
            &mut batch,
            &stats,
        );
        assert_eq!(batch.len(), 2);
        assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let (tx, mut rx) = mpsc::channel(1);
        let stats = PipelineStats::default();
        let iface: Arc<str> = Arc::from("lab0");
        let mk = |n| SampleBatch {
            interface: iface.clone(),
            records: vec![record(); n],
        };
        enqueue(&tx, mk(3), &stats);
        enqueue(&tx, mk(5), &stats);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 3);
        assert_eq!(stats.queue_dropped.load(Ordering::Relaxed), 5);
        assert_eq!(rx.recv().await.map(|b| b.records.len()), Some(3));
    }
}
