//! Live TLS logging: new TLS connections per second (a ClientHello from a
//! new client each, sent by the generator from a lab namespace) through
//! `nta run --tls-log` on the receiving veth, the XDP selection, the app
//! ring, the parsers and the log; every hello must come out as a
//! document.

use std::{path::PathBuf, thread, time::Duration};

use anyhow::bail;

use crate::{
    generator::Limits,
    live::{Lab, NtaProcess},
    mixes::MixName,
    report::mmm,
};

#[derive(clap::Args)]
pub struct TlsLiveArgs {
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// New connections (ClientHellos) per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The nta binary to measure.
    #[arg(long, default_value = "target/release/nta")]
    nta: PathBuf,
}

/// Documents in the log `name` and its rotated files in `dir`.
fn logged_lines(dir: &std::path::Path, name: &str) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(name) {
            n += std::fs::read_to_string(e.path())?.lines().count() as u64;
        }
    }
    Ok(n)
}

pub fn run(args: &TlsLiveArgs) -> anyhow::Result<String> {
    if !args.nta.exists() {
        bail!(
            "{} not found: build it first (`cargo xtask build`)",
            args.nta.display()
        );
    }
    let lab = Lab::new()?;
    let dir = std::env::temp_dir().join(format!("nta-tls-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut rates, mut lost, mut sent_all) = (Vec::new(), 0u64, 0u64);
    let (mut received_all, mut selected_all, mut dropped_all) = (0u64, 0u64, 0u64);
    for round in 0..args.rounds {
        eprintln!("tls live: round {}/{}", round + 1, args.rounds);
        let log = dir.join(format!("tls-{round}.jsonl"));
        let agent = NtaProcess::start(
            &lab,
            &args.nta,
            &[
                "--tls-log",
                log.to_str().unwrap_or_default(),
                "--user",
                "root",
            ],
        )?;
        let rx0 = lab.rx()?;
        let report = lab.generate(
            MixName::TlsHellos,
            Limits {
                count: (args.rate * args.seconds) as u64,
                duration: Duration::from_secs_f64(args.seconds + 5.0),
                rate: Some(args.rate),
            },
        )?;
        // Stop: every hello still waiting for an answer is written.
        thread::sleep(Duration::from_millis(500));
        let received = lab.rx()?.rx_packets - rx0.rx_packets;
        let m = lab.scrape(agent.addr)?;
        let selected = m.sum("nta_app_frames_total", &[("kind", "tls_handshake")]) as u64;
        let dropped = m.sum("nta_app_frames_dropped_total", &[]) as u64;
        drop(agent);
        received_all += received;
        selected_all += selected;
        dropped_all += dropped;
        let logged = logged_lines(&dir, &format!("tls-{round}.jsonl"))?;
        let secs = report.elapsed.as_secs_f64();
        rates.push(report.sent as f64 / secs);
        sent_all += report.sent;
        lost += report.sent.saturating_sub(logged);
        eprintln!(
            "tls live: sent {} in {secs:.2} s, received {received}, selected {selected}, app ring full {dropped}, logged {logged}",
            report.sent
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let md = format!(
        "| figure | value |\n|---|---|\n| new TLS connections sent, per second | {} |\n| ClientHellos sent over all rounds | {sent_all} |\n| received by the interface | {received_all} |\n| selected by the XDP program | {selected_all} |\n| found the app ring full | {dropped_all} |\n| not logged | {lost} |\n",
        mmm(rates, 0)
    );
    print!("{md}");
    if lost > 0 {
        bail!("{lost} of {sent_all} handshakes were not logged");
    }
    Ok(md)
}
