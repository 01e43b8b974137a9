//! `nta analyze` on the command line: options, progress bar, output.

use std::{io::IsTerminal, time::Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{
    cmd::cli::AnalyzeArgs,
    config::{ConfigError, FileConfig, Merge, flags::RunArgs, settings::AppSettings},
    offline::{AnalyzeError, AnalyzeOptions, analyze, analyze::Progress, summary},
    pipeline::flow::FlowConfig,
};

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    #[error("writing the report")]
    Report(#[from] crate::offline::report::ReportError),
    #[error("--dns-port: {0}")]
    App(String),
    #[error("printing the summary: {0}")]
    Json(#[from] serde_json::Error),
}

fn progress_bar() -> Option<ProgressBar> {
    // Quiet when stderr is not a terminal (logs, CI, pipes).
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg} ETA {eta}").ok()?;
    bar.set_style(style);
    Some(bar)
}

pub fn run(args: AnalyzeArgs) -> Result<(), OfflineError> {
    let config = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let bar = progress_bar();
    let started = Instant::now();
    let progress: Option<Progress> = bar.clone().map(|bar| {
        Box::new(move |read: u64, total: u64, packets: u64| {
            bar.set_length(total);
            bar.set_position(read);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{packets} packets, {:.0}/s", packets as f64 / secs));
        }) as Progress
    });
    let app = AppSettings::from_merged(
        args.app
            .clone()
            .or(config.app.clone())
            .or(RunArgs::defaults().app),
    );
    let (selection, dns_ports) = app.kernel().map_err(OfflineError::App)?;
    let analysis = analyze(AnalyzeOptions {
        files: args.files.clone(),
        flow_files: args.flow_files.clone(),
        alerts: args.alerts.clone(),
        detect: config.detect,
        flow: FlowConfig {
            idle_timeout_ns: args.flow_idle_timeout.as_nanos() as u64,
            active_timeout_ns: args.flow_active_timeout.as_nanos() as u64,
            capacity: 1_000_000,
        },
        progress,
        baseline_in: args.baseline_in.clone(),
        baseline_out: args.baseline_out.clone(),
        app: selection,
        dns_ports,
        tls_log: app.tls_log,
        dns_log: app.dns_log,
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let analysis = analysis?;
    if let Some(dir) = &args.report {
        let index = crate::offline::report::write(&analysis, dir)?;
        eprintln!("report: {}", index.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        print!("{}", summary::render(&analysis));
    }
    Ok(())
}
