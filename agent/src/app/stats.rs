//! What the application parsers did, as counters shared with /metrics:
//! frames read by kind, handshakes by version and transport, DNS queries
//! by type and responses by code, and every reason a payload gave
//! nothing. Label sets are closed (no label comes
//! from packet data).

use std::sync::atomic::{AtomicU64, Ordering};

use agent_common::app::{APP_KIND_COUNT, AppKind};

use super::{
    dns::{COUNTED_RCODES, COUNTED_TYPES, DnsError, DnsMessage},
    dns_transactions::DnsTransaction,
    ja4::Transport,
    quic::QuicError,
    reassemble::Unfinished,
    tls::{TlsError, VERSION_SLOTS, version_slot_label},
};

/// Transports counted per handshake.
pub const TRANSPORTS: [Transport; 2] = [Transport::Tcp, Transport::Quic];

/// Protocols whose messages are put back together from segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppProtocol {
    Tls = 0,
    Dns = 1,
    Quic = 2,
}

impl AppProtocol {
    pub const ALL: [AppProtocol; 3] = [AppProtocol::Tls, AppProtocol::Dns, AppProtocol::Quic];

    pub fn label(self) -> &'static str {
        match self {
            AppProtocol::Tls => "tls",
            AppProtocol::Dns => "dns",
            AppProtocol::Quic => "quic",
        }
    }
}

/// How a DNS transaction ended; the text is a label.
const DNS_OUTCOMES: [&str; 3] = ["answered", "unanswered", "response_only"];

/// One counter: metric name, labels (name, value), value.
pub type Series = (&'static str, Vec<(&'static str, String)>, u64);

#[derive(Default)]
pub struct AppStats {
    frames: [AtomicU64; APP_KIND_COUNT],
    /// Frames whose TCP/UDP payload could not be found again.
    unreadable: AtomicU64,
    tls_errors: [AtomicU64; TlsError::ALL.len()],
    unfinished: [[AtomicU64; 2]; AppProtocol::ALL.len()],
    handshakes: [[AtomicU64; TRANSPORTS.len()]; VERSION_SLOTS],
    dns_errors: [AtomicU64; DnsError::ALL.len()],
    quic_errors: [AtomicU64; QuicError::ALL.len()],
    /// By [`COUNTED_TYPES`], then other.
    dns_queries: [AtomicU64; COUNTED_TYPES.len() + 1],
    /// By [`COUNTED_RCODES`], then other.
    dns_responses: [AtomicU64; COUNTED_RCODES.len() + 1],
    dns_transactions: [AtomicU64; DNS_OUTCOMES.len()],
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

    pub fn unfinished(&self, protocol: AppProtocol, u: Unfinished) {
        bump(&self.unfinished[protocol as usize][u as usize]);
    }

    pub fn dns_error(&self, e: DnsError) {
        bump(&self.dns_errors[e as usize]);
    }

    pub fn quic_error(&self, e: QuicError) {
        bump(&self.quic_errors[e as usize]);
    }

    /// A DNS message read: a query by its question's type, a response by
    /// its code.
    pub fn dns_message(&self, m: &DnsMessage) {
        if m.response {
            let slot = COUNTED_RCODES
                .iter()
                .position(|(c, _)| *c == m.rcode)
                .unwrap_or(COUNTED_RCODES.len());
            bump(&self.dns_responses[slot]);
        } else {
            let qtype = m.question.as_ref().map_or(0, |q| q.qtype);
            let slot = COUNTED_TYPES
                .iter()
                .position(|(t, _)| *t == qtype)
                .unwrap_or(COUNTED_TYPES.len());
            bump(&self.dns_queries[slot]);
        }
    }

    pub fn dns_transaction(&self, t: &DnsTransaction) {
        let outcome = match (&t.query, &t.response) {
            (Some(_), Some(_)) => 0,
            (Some(_), None) => 1,
            _ => 2,
        };
        bump(&self.dns_transactions[outcome]);
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
        for protocol in AppProtocol::ALL {
            for u in [Unfinished::TimedOut, Unfinished::Evicted] {
                out.push((
                    "nta_app_reassembly_failed_total",
                    vec![
                        ("protocol", protocol.label().to_string()),
                        ("reason", u.label().to_string()),
                    ],
                    get(&self.unfinished[protocol as usize][u as usize]),
                ));
            }
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
        for e in DnsError::ALL {
            out.push((
                "nta_dns_parse_errors_total",
                vec![("reason", e.label().to_string())],
                get(&self.dns_errors[e as usize]),
            ));
        }
        for e in QuicError::ALL {
            out.push((
                "nta_quic_parse_errors_total",
                vec![("reason", e.label().to_string())],
                get(&self.quic_errors[e as usize]),
            ));
        }
        let types = COUNTED_TYPES.iter().map(|(_, n)| *n).chain(["other"]);
        for (name, c) in types.zip(&self.dns_queries) {
            out.push((
                "nta_dns_queries_total",
                vec![("type", name.to_string())],
                get(c),
            ));
        }
        let codes = COUNTED_RCODES.iter().map(|(_, n)| *n).chain(["other"]);
        for (name, c) in codes.zip(&self.dns_responses) {
            out.push((
                "nta_dns_responses_total",
                vec![("rcode", name.to_string())],
                get(c),
            ));
        }
        for (name, c) in DNS_OUTCOMES.iter().zip(&self.dns_transactions) {
            out.push((
                "nta_dns_transactions_total",
                vec![("outcome", name.to_string())],
                get(c),
            ));
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
