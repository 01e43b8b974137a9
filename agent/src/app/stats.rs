//! What the application parsers did, as counters shared with /metrics:
//! frames read by kind, handshakes by version and transport, and every
//! reason a payload gave nothing. Label sets are closed (no label comes
//! from packet data).

use std::sync::atomic::{AtomicU64, Ordering};

use agent_common::app::{APP_KIND_COUNT, AppKind};

use super::{
    ja4::Transport,
    reassemble::Unfinished,
    tls::{TlsError, VERSION_SLOTS, version_slot_label},
};

/// Transports counted per handshake.
pub const TRANSPORTS: [Transport; 2] = [Transport::Tcp, Transport::Quic];

/// One counter: metric name, labels (name, value), value.
pub type Series = (&'static str, Vec<(&'static str, String)>, u64);

#[derive(Default)]
pub struct AppStats {
    frames: [AtomicU64; APP_KIND_COUNT],
    /// Frames whose TCP/UDP payload could not be found again.
    unreadable: AtomicU64,
    tls_errors: [AtomicU64; TlsError::ALL.len()],
    unfinished: [AtomicU64; 2],
    handshakes: [[AtomicU64; TRANSPORTS.len()]; VERSION_SLOTS],
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl AppStats {
    pub fn frame(&self, kind: AppKind) {
        bump(&self.frames[kind as usize - 1]);
    }

    pub fn unreadable(&self) {
        bump(&self.unreadable);
    }

    pub fn tls_error(&self, e: TlsError) {
        bump(&self.tls_errors[e as usize]);
    }

    pub fn unfinished(&self, u: Unfinished) {
        bump(&self.unfinished[u as usize]);
    }

    pub fn handshake(&self, version_slot: usize, transport: Transport) {
        let t = TRANSPORTS.iter().position(|t| *t == transport).unwrap_or(0);
        if let Some(row) = self.handshakes.get(version_slot) {
            bump(&row[t]);
        }
    }

    /// Every counter as (metric, labels, value), for /metrics and tests.
    pub fn series(&self) -> Vec<Series> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = Vec::new();
        for kind in AppKind::ALL {
            out.push((
                "nta_app_frames_read_total",
                vec![("kind", kind.label().to_string())],
                get(&self.frames[kind as usize - 1]),
            ));
        }
        out.push((
            "nta_app_frames_unreadable_total",
            vec![],
            get(&self.unreadable),
        ));
        for e in TlsError::ALL {
            out.push((
                "nta_tls_parse_errors_total",
                vec![("reason", e.label().to_string())],
                get(&self.tls_errors[e as usize]),
            ));
        }
        for u in [Unfinished::TimedOut, Unfinished::Evicted] {
            out.push((
                "nta_tls_reassembly_failed_total",
                vec![("reason", u.label().to_string())],
                get(&self.unfinished[u as usize]),
            ));
        }
        for (slot, row) in self.handshakes.iter().enumerate() {
            for (t, c) in TRANSPORTS.iter().zip(row) {
                out.push((
                    "nta_tls_handshakes_total",
                    vec![
                        ("version", version_slot_label(slot)),
                        ("transport", t.label().to_string()),
                    ],
                    get(c),
                ));
            }
        }
        out
    }

    /// One counter's value by metric and labels (tests, summaries).
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> u64 {
        self.series()
            .into_iter()
            .filter(|(m, l, _)| {
                *m == metric
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}
