//! The application parsers' counters ([`AppStats`]) on /metrics, read at
//! scrape time.

use std::sync::Arc;

use prometheus::{
    IntCounterVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::app::stats::AppStats;

/// Every metric [`AppStats::series`] gives: name, help, label names.
const FAMILIES: [(&str, &str, &[&str]); 10] = [
    (
        "nta_app_frames_read_total",
        "Frames from the app ring read by nta's application parsers, by kind.",
        &["kind"],
    ),
    (
        "nta_app_frames_unreadable_total",
        "Frames from the app ring whose TCP or UDP payload could not be found.",
        &[],
    ),
    (
        "nta_tls_parse_errors_total",
        "Handshake payloads that gave no hello, by reason: incomplete, not_handshake, not_hello, malformed.",
        &["reason"],
    ),
    (
        "nta_app_reassembly_failed_total",
        "TLS hellos and DNS messages split over TCP segments, and hellos split over QUIC Initials, that were never completed, by protocol and reason: timed_out (pieces missing after 10 s) or evicted (the bounded table was full).",
        &["protocol", "reason"],
    ),
    (
        "nta_tls_handshakes_total",
        "TLS and QUIC handshakes logged, by version (the server's choice, else the client's best offer) and transport.",
        &["version", "transport"],
    ),
    (
        "nta_dns_parse_errors_total",
        "DNS payloads that gave no message, by reason: too_short, counts_exceed_length (the header announces more than the bytes hold), malformed (the question does not decode), cut_short (a TCP message began in a frame cut at the copy length).",
        &["reason"],
    ),
    (
        "nta_quic_parse_errors_total",
        "QUIC datagrams whose Initials gave nothing, by reason: truncated, unknown_version, decrypt_failed (the keys its connection ID gives do not open it), bad_frames.",
        &["reason"],
    ),
    (
        "nta_dns_queries_total",
        "DNS queries read, by question type (common types, the rest as other).",
        &["type"],
    ),
    (
        "nta_dns_responses_total",
        "DNS responses read, by response code (NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, the rest as other).",
        &["rcode"],
    ),
    (
        "nta_dns_transactions_total",
        "DNS transactions logged, by outcome: answered, unanswered (no response within 5 s), response_only (its query was not seen).",
        &["outcome"],
    ),
];

pub struct AppCollector {
    stats: Arc<AppStats>,
    families: Vec<IntCounterVec>,
}

impl AppCollector {
    pub fn new(stats: Arc<AppStats>) -> Result<AppCollector, prometheus::Error> {
        let families = FAMILIES
            .iter()
            .map(|(name, help, labels)| IntCounterVec::new(Opts::new(*name, *help), labels))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AppCollector { stats, families })
    }
}

impl Collector for AppCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families.iter().flat_map(|f| f.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for f in &self.families {
            f.reset();
        }
        for (name, labels, value) in self.stats.series() {
            let Some(i) = FAMILIES.iter().position(|f| f.0 == name) else {
                continue;
            };
            let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
            if let Ok(c) = self.families[i].get_metric_with_label_values(&values) {
                c.inc_by(value);
            }
        }
        self.families.iter().flat_map(|f| f.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_has_its_family_and_labels() {
        let stats = AppStats::default();
        for (name, labels, _) in stats.series() {
            let f = FAMILIES
                .iter()
                .find(|f| f.0 == name)
                .unwrap_or_else(|| panic!("{name} has no family"));
            let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
            assert_eq!(names, f.2, "{name}");
        }
        let c = AppCollector::new(Arc::new(stats)).unwrap_or_else(|e| panic!("{e}"));
        let families = c.collect();
        assert_eq!(families.len(), FAMILIES.len());
    }
}
