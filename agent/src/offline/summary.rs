//! The terminal summary of an analysis.

use std::fmt::Write as _;

use super::analyze::{Analysis, Top};
use crate::output::export::rfc3339;

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn tops(out: &mut String, title: &str, rows: &[Top], total_bytes: u64) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let _ = writeln!(
        out,
        "  {:<40} {:>12} {:>12} {:>7}",
        "", "packets", "bytes", "share"
    );
    for t in rows {
        let _ = writeln!(
            out,
            "  {:<40} {:>12} {:>12} {:>7}",
            t.name,
            t.packets,
            human_bytes(t.bytes),
            share(t.bytes, total_bytes)
        );
    }
}

/// Handshakes and DNS in a few lines: the names asked for most.
fn names(out: &mut String, a: &Analysis) {
    let m = &a.metadata;
    if m.tls_handshakes == 0 && m.dns_transactions == 0 {
        return;
    }
    let list = |rows: Vec<(String, u64)>| {
        rows.iter()
            .map(|(n, c)| format!("{n} ({c})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "\nTLS and QUIC handshakes: {}; server names: {}",
        m.tls_handshakes,
        list(m.server_names.top(5))
    );
    let codes: Vec<(String, u64)> = m
        .dns_response_codes
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let _ = writeln!(
        out,
        "DNS transactions: {}; names: {}; responses: {}",
        m.dns_transactions,
        list(m.dns_names.top(5)),
        list(codes)
    );
}

/// The summary as text for a terminal.
pub fn render(a: &Analysis) -> String {
    let mut out = String::new();
    let secs = a.last_ns.saturating_sub(a.first_ns) as f64 / 1e9;
    let _ = writeln!(
        out,
        "{} frames, {} in {} file(s)",
        a.frames,
        human_bytes(a.bytes),
        a.files.len()
    );
    if a.frames > 0 {
        let _ = writeln!(
            out,
            "from {} to {} ({secs:.3} s); {:.0} packets/s, {:.0} bit/s on average",
            rfc3339(a.first_ns),
            rfc3339(a.last_ns),
            if secs > 0.0 {
                a.frames as f64 / secs
            } else {
                0.0
            },
            if secs > 0.0 {
                a.bytes as f64 * 8.0 / secs
            } else {
                0.0
            },
        );
    }
    for f in &a.files {
        let _ = writeln!(out, "  {}: {} frames", f.path.display(), f.packets);
    }
    for d in &a.damage {
        let _ = writeln!(
            out,
            "  WARNING {}: stopped at byte {}: {}; everything before it is counted",
            d.path.display(),
            d.offset,
            d.why
        );
    }
    for (l, n) in &a.unknown_link_types {
        let _ = writeln!(
            out,
            "  WARNING {n} frames with link type {l} skipped (not read by nta)"
        );
    }
    if a.truncated_by_snaplen > 0 {
        let _ = writeln!(
            out,
            "  note: {} frames were captured shorter than on the wire (snaplen); they are parsed as far as they go",
            a.truncated_by_snaplen
        );
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>12} {:>7} {:>12}",
        "protocol", "packets", "share", "bytes"
    );
    for (name, c) in &a.classes {
        if c.packets == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<12} {:>12} {:>7} {:>12}",
            name,
            c.packets,
            share(c.packets, a.frames),
            human_bytes(c.bytes)
        );
    }
    let _ = writeln!(
        out,
        "\nIPv4 {} / IPv6 {} / VLAN-tagged {}; TCP flags: {}; flows: {}",
        a.ip_versions.get("4").copied().unwrap_or(0),
        a.ip_versions.get("6").copied().unwrap_or(0),
        a.vlan_frames,
        a.tcp_flags
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        a.flows
    );
    if !a.parse_errors.is_empty() {
        let _ = writeln!(
            out,
            "malformed: {}",
            a.parse_errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    tops(
        &mut out,
        "Top talkers (sources by bytes)",
        &a.top_talkers,
        a.bytes,
    );
    tops(&mut out, "Top destination ports", &a.top_ports, a.bytes);
    names(&mut out, a);
    let _ = writeln!(out, "\nIncidents: {}", a.incidents.len());
    for i in &a.incidents {
        let _ = writeln!(
            out,
            "  {} .. {} {} (peak {:.0} {})",
            rfc3339(i.start_ns),
            rfc3339(i.end_ns),
            i.summary,
            i.peak,
            i.unit
        );
    }
    out
}
