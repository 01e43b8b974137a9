//! The HTML report of an analysis: one self-contained page with SVG charts
//! drawn by plotters (traffic over time per protocol, stacked, with the
//! incidents marked; protocol mix; top talkers and ports; TCP flags;
//! frame sizes; new flows over time) and the incidents with their
//! evidence.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use agent_common::class::{CLASS_COUNT, ProtocolClass, TcpFlagCounter};
use plotters::{prelude::*, style::full_palette};

use super::{
    analyze::{Analysis, Top},
    timeline::{SIZE_BUCKETS, Second},
};
use crate::{
    output::export::rfc3339,
    pipeline::{
        detect::NS,
        metadata::{MetadataSummary, TOP_NAMES},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("drawing a chart: {0}")]
    Draw(String),
}

fn draw_err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Draw(e.to_string())
}

const W: u32 = 960;
const H: u32 = 320;
/// Points on the time axis at most.
const POINTS: usize = 600;

const COLORS: [RGBColor; CLASS_COUNT] = [
    full_palette::BLUE_600,
    full_palette::ORANGE_600,
    full_palette::GREEN_600,
    full_palette::TEAL_600,
    full_palette::PURPLE_400,
    full_palette::BROWN_400,
    full_palette::GREY_500,
    full_palette::PINK_400,
    full_palette::LIME_700,
    full_palette::BLUEGREY_400,
    full_palette::RED_700,
];

use plotters::coord::types::RangedCoordf64;

type TimeChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axes of a chart over time: seconds across, a rate up.
fn time_axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    x_desc: &str,
    x_max: f64,
    y_max: f64,
) -> Result<TimeChart<'a, 'b>, ReportError> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(unit)
        .y_label_formatter(&|v| human(*v))
        .draw()
        .map_err(draw_err)?;
    Ok(chart)
}

/// A stacked area chart of per-class rates over time, with incident spans.
fn stacked(
    title: &str,
    unit: &str,
    bins: &[(u64, Second)],
    width: u64,
    value: impl Fn(&Second, usize) -> f64,
    incidents: &[(f64, f64)],
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let t0 = bins.first().map_or(0, |b| b.0);
        let x_max = (bins.len() as f64 * width as f64).max(1.0);
        let totals: Vec<f64> = bins
            .iter()
            .map(|(_, s)| (0..CLASS_COUNT).map(|c| value(s, c)).sum::<f64>() / width as f64)
            .collect();
        let y_max = totals.iter().copied().fold(1.0, f64::max) * 1.1;
        let x_desc = format!("seconds since {}", rfc3339(t0 * NS));
        let mut chart = time_axes(&root, title, unit, &x_desc, x_max, y_max)?;
        for (a, b) in incidents {
            let (a, b) = (
                (a - t0 as f64).max(0.0),
                (b - t0 as f64).max(0.0) + width as f64,
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a, 0.0), (b.min(x_max), y_max)],
                    full_palette::RED_100.mix(0.5).filled(),
                )))
                .map_err(draw_err)?;
        }
        // Stack from the top: each layer is the sum of its class and all
        // below it, drawn over the previous.
        let mut cumulative: Vec<Vec<f64>> = Vec::new();
        let mut running = vec![0.0; bins.len()];
        for c in 0..CLASS_COUNT {
            for (i, (_, s)) in bins.iter().enumerate() {
                running[i] += value(s, c) / width as f64;
            }
            cumulative.push(running.clone());
        }
        for c in (0..CLASS_COUNT).rev() {
            if bins.iter().all(|(_, s)| value(s, c) == 0.0) {
                continue;
            }
            let color = COLORS[c];
            let points = cumulative[c]
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 * width as f64, *v));
            chart
                .draw_series(AreaSeries::new(points, 0.0, color.mix(0.8)).border_style(color))
                .map_err(draw_err)?
                .label(ProtocolClass::ALL[c].label())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// A horizontal bar chart of labelled values.
fn bars(title: &str, unit: &str, rows: &[(String, f64)]) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let height = (60 + 24 * rows.len().max(1)) as u32;
        let root =
            SVGBackend::with_string(&mut svg, (W / 2 - 10, height.max(H / 2))).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let max = rows.iter().map(|r| r.1).fold(1.0, f64::max) * 1.15;
        let n = rows.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..max, (0..n).into_segmented())
            .map_err(draw_err)?;
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(unit)
            .x_labels(5)
            .x_label_formatter(&|v| human(*v))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (*v, SegmentValue::Exact(i + 1)),
                    ],
                    full_palette::BLUE_400.filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn line(
    title: &str,
    unit: &str,
    bins: &[(u64, Second)],
    width: u64,
    value: impl Fn(&Second) -> f64,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let x_max = (bins.len() as f64 * width as f64).max(1.0);
        let values: Vec<f64> = bins.iter().map(|(_, s)| value(s) / width as f64).collect();
        let y_max = values.iter().copied().fold(1.0, f64::max) * 1.1;
        let mut chart = time_axes(&root, title, unit, "seconds", x_max, y_max)?;
        chart
            .draw_series(LineSeries::new(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64 * width as f64, *v)),
                full_palette::PURPLE_600.stroke_width(2),
            ))
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn human(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn top_rows(t: &[Top]) -> Vec<(String, f64)> {
    t.iter().map(|t| (t.name.clone(), t.bytes as f64)).collect()
}

/// A two-column table of counts, most first.
fn counts_table(html: &mut String, what: &str, rows: &[(String, u64)]) {
    let _ = writeln!(html, "<table><tr><th>{what}</th><th>count</th></tr>");
    for (name, n) in rows {
        let _ = writeln!(html, "<tr><td>{}</td><td>{n}</td></tr>", escape(name));
    }
    html.push_str("</table>\n");
}

/// What the payloads said: server names and TLS versions of the
/// handshakes, DNS names and response codes.
fn names_section(html: &mut String, m: &MetadataSummary) {
    html.push_str("<h2>Server names and DNS</h2>\n");
    if m.tls_handshakes == 0 && m.dns_transactions == 0 {
        html.push_str("<p>No TLS or QUIC handshake and no DNS transaction was seen.</p>\n");
        return;
    }
    let _ = writeln!(
        html,
        "<p>{} TLS and QUIC handshakes ({} server names), {} DNS transactions ({} names).</p>",
        m.tls_handshakes,
        m.server_names.names.len(),
        m.dns_transactions,
        m.dns_names.names.len()
    );
    let owned = |map: &std::collections::BTreeMap<String, u64>| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    if m.tls_handshakes > 0 {
        counts_table(html, "server name", &m.server_names.top(TOP_NAMES));
        counts_table(html, "TLS version", &owned(&m.tls_versions));
    }
    if m.dns_transactions > 0 {
        counts_table(html, "DNS name asked", &m.dns_names.top(TOP_NAMES));
        counts_table(html, "DNS response code", &owned(&m.dns_response_codes));
    }
}

/// Writes `DIR/index.html` and returns its path.
pub fn write(a: &Analysis, dir: &Path) -> Result<PathBuf, ReportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (bins, width) = a.timeline.binned(POINTS);
    // From the start of the window that first crossed the limit.
    let spans: Vec<(f64, f64)> = a
        .incidents
        .iter()
        .map(|i| {
            let from = i.start_ns.saturating_sub(i.window_ns) / NS;
            (from as f64, (i.end_ns / NS) as f64)
        })
        .collect();
    let mut charts = vec![
        stacked(
            "Packets per second by protocol (incidents shaded)",
            "packets/s",
            &bins,
            width,
            |s, c| s.packets[c] as f64,
            &spans,
        )?,
        stacked(
            "Bits per second by protocol",
            "bit/s",
            &bins,
            width,
            |s, c| s.bytes[c] as f64 * 8.0,
            &spans,
        )?,
        line("New flows per second", "flows/s", &bins, width, |s| {
            s.new_flows as f64
        })?,
    ];
    let mut small = vec![
        bars(
            "Protocol mix (packets)",
            "packets",
            &a.classes
                .iter()
                .filter(|(_, c)| c.packets > 0)
                .map(|(k, c)| (k.to_string(), c.packets as f64))
                .collect::<Vec<_>>(),
        )?,
        bars(
            "TCP flags",
            "segments",
            &TcpFlagCounter::ALL
                .iter()
                .map(|f| {
                    let n = a.tcp_flags.get(f.label()).copied().unwrap_or(0);
                    (f.label().to_string(), n as f64)
                })
                .collect::<Vec<_>>(),
        )?,
        bars(
            "Top talkers (bytes sent)",
            "bytes",
            &top_rows(&a.top_talkers),
        )?,
        bars(
            "Top destination ports (bytes)",
            "bytes",
            &top_rows(&a.top_ports),
        )?,
    ];
    let mut lower = 0u64;
    let sizes: Vec<(String, f64)> = SIZE_BUCKETS
        .iter()
        .zip(a.timeline.sizes)
        .map(|(&upper, n)| {
            let label = if upper == u64::MAX {
                format!("> {lower} B")
            } else {
                format!("{}-{upper} B", lower + 1)
            };
            lower = upper;
            (label, n as f64)
        })
        .collect();
    small.push(bars("Frame sizes", "frames", &sizes)?);
    charts.append(&mut small);

    let mut html = String::new();
    let secs = a.last_ns.saturating_sub(a.first_ns) as f64 / 1e9;
    let _ = write!(
        html,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>nta report</title>\n\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .charts svg{{margin:4px;vertical-align:top}}.warn{{color:#a00}}code{{font-size:90%}}</style></head><body>\n\
         <h1>nta report</h1>\n<p>{} frames, {} bytes, {} from <code>{}</code> to <code>{}</code> ({secs:.3} s); {} flows; {} incidents.</p>\n",
        a.frames,
        human(a.bytes as f64),
        a.files
            .iter()
            .map(|f| escape(&f.path.display().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        rfc3339(a.first_ns),
        rfc3339(a.last_ns),
        a.flows,
        a.incidents.len(),
    );
    for d in &a.damage {
        let _ = writeln!(
            html,
            "<p class=\"warn\">{} stopped at byte {}: {}; everything before it is counted.</p>",
            escape(&d.path.display().to_string()),
            d.offset,
            escape(&d.why)
        );
    }
    for (l, n) in &a.unknown_link_types {
        let _ = writeln!(
            html,
            "<p class=\"warn\">{n} frames with link type {} skipped.</p>",
            escape(l)
        );
    }
    html.push_str("<div class=\"charts\">\n");
    for c in &charts {
        html.push_str(c);
        html.push('\n');
    }
    html.push_str("</div>\n<h2>Incidents</h2>\n");
    if a.incidents.is_empty() {
        html.push_str("<p>None.</p>\n");
    } else {
        html.push_str("<table><tr><th>what</th><th>severity</th><th>start</th><th>end</th><th>peak</th><th>evidence (sample packets)</th></tr>\n");
        for i in &a.incidents {
            let _ = writeln!(
                html,
                "<tr><td>{}<br><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td><code>{}</code></td></tr>",
                escape(&i.summary),
                escape(&i.id),
                i.severity,
                rfc3339(i.start_ns),
                rfc3339(i.end_ns),
                human(i.peak),
                i.unit,
                i.evidence
                    .iter()
                    .map(|e| escape(e))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        html.push_str("</table>\n<p>The alerts file (<code>--alerts</code>) holds more of each incident: top sources, thresholds and learned bands, sampling.</p>\n");
    }
    names_section(&mut html, &a.metadata);
    html.push_str(
        "<h2>Protocols</h2>\n<table><tr><th>class</th><th>packets</th><th>bytes</th></tr>\n",
    );
    for (k, c) in &a.classes {
        let _ = writeln!(
            html,
            "<tr><td>{k}</td><td>{}</td><td>{}</td></tr>",
            c.packets, c.bytes
        );
    }
    html.push_str("</table>\n</body></html>\n");
    let index = dir.join("index.html");
    std::fs::write(&index, html).map_err(io(&index))?;
    Ok(index)
}
