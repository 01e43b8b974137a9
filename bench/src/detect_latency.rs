//! Detection latency with real tools: `nta run --alerts FILE` in the
//! victim namespace of an attack lab and, for the floods, FastNetMon CE on
//! the same interface in the same run, with its threshold set to nta's.
//! Each attack tool is started `runs` times. For each run:
//!
//! - tool start to alert: from just before the tool starts (its own
//!   start-up included) to the moment nta's start line is in the alert
//!   file (polled every 2 ms), or FastNetMon's notify script ran;
//! - first attack packet to alert: from the kernel's timestamp of the
//!   first attack packet on the victim's interface (tcpdump, started and
//!   listening before the tool) to the same moments;
//! - the flood's rate as a multiple of the threshold (the incident's peak).

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{ChildStdout, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use nta::pipeline::detect::DetectConfig;
use nta_lab::{
    attack::{AttackLab, DNS_AMPLIFICATION, ICMP_FLOOD, SYN_FLOOD, VICTIM},
    netns::NetNs,
    programs::GroupChild,
};
use serde_json::Value;

use crate::{detect::DetectArgs, fastnetmon::FastNetMon, live::NtaProcess, report::mmm};

/// One detector's attack.
struct Attack {
    detector: &'static str,
    tool: &'static [&'static str],
    spoofs: bool,
    /// nta's threshold for a flood (FastNetMon gets the same); none for scans.
    threshold: Option<fn(&DetectConfig) -> f64>,
}

/// The static volume threshold of the latency config (a learned baseline
/// needs a long warm-up).
const VOLUME_PPS: f64 = 30_000.0;

const ATTACKS: &[Attack] = &[
    Attack {
        detector: "port_scan",
        tool: &["nmap", "-sS", "-n", "-Pn", "-T4", "-p", "1-1000", VICTIM],
        spoofs: false,
        threshold: None,
    },
    Attack {
        detector: "sweep",
        tool: &[
            "nmap",
            "-sn",
            "-n",
            "-PE",
            "--max-retries",
            "0",
            "-T4",
            "198.19.0.0/24",
        ],
        spoofs: false,
        threshold: None,
    },
    Attack {
        detector: "syn_flood",
        tool: SYN_FLOOD,
        spoofs: true,
        threshold: Some(|c| c.syn_flood.pps),
    },
    Attack {
        detector: "amplification",
        tool: DNS_AMPLIFICATION,
        spoofs: false,
        threshold: Some(|c| {
            c.amplification
                .reflectors
                .iter()
                .find(|r| r.port == 53)
                .map_or(f64::NAN, |r| r.pps)
        }),
    },
    Attack {
        detector: "udp_flood",
        tool: &[
            "hping3", "--udp", "-s", "1024", "-p", "33002", "-d", "1200", "--flood", VICTIM,
        ],
        spoofs: false,
        threshold: Some(|c| c.udp_flood.pps),
    },
    Attack {
        detector: "icmp_flood",
        tool: ICMP_FLOOD,
        spoofs: false,
        threshold: Some(|c| c.icmp_flood.pps),
    },
    Attack {
        detector: "fragment_flood",
        tool: &[
            "hping3", "--udp", "-f", "-p", "33000", "-d", "200", "--flood", VICTIM,
        ],
        spoofs: false,
        threshold: Some(|c| c.fragment_flood.pps),
    },
    Attack {
        detector: "volume",
        tool: &[
            "hping3", "--udp", "-p", "33001", "-d", "100", "--flood", VICTIM,
        ],
        spoofs: false,
        threshold: Some(|_| VOLUME_PPS),
    },
];

/// Incidents end 1 s after their last finding and scan windows last 2 s,
/// so runs follow quickly and each starts from nothing; volume uses a
/// static threshold and learned profiles are off (they would learn the
/// runs). Flood thresholds are nta's defaults.
fn latency_config() -> String {
    format!(
        "[detect]\n\
         port_scan = {{ window = \"2s\", distinct = 50 }}\n\
         sweep = {{ window = \"2s\", distinct = 32 }}\n\
         [detect.incidents]\nquiet = \"1s\"\nmax_starts_per_minute = 1000\n\
         [detect.volume]\npps = {VOLUME_PPS}\n\
         [detect.baseline]\nenabled = false\n"
    )
}
/// Longest scan window above.
const SCAN_WINDOW: Duration = Duration::from_secs(2);
/// How long a run waits for the alerts.
const WAIT: Duration = Duration::from_secs(8);

fn alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until every incident that started has ended.
fn wait_quiet(path: &Path, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let a = alerts(path);
        let state = |s: &str| a.iter().filter(|a| a["nta"]["alert"]["state"] == s).count();
        if state("start") == state("end") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("incidents still open after {within:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// tcpdump in the victim namespace, listening before the attack starts:
/// the kernel's timestamp of the first frame coming in.
struct FirstPacket {
    _child: GroupChild,
    stdout: BufReader<ChildStdout>,
}

impl FirstPacket {
    fn start(ns: &NetNs, iface: &str) -> anyhow::Result<FirstPacket> {
        let mut cmd = ns.bounded(30, "tcpdump")?;
        cmd.args(["-i", iface, "-Q", "in", "-n", "-l", "-c", "1"])
            .args(["-tt", "--time-stamp-precision=nano", "ip"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = GroupChild::spawn(&mut cmd).context("starting tcpdump")?;
        let stderr = child.stderr.take().context("tcpdump's stderr")?;
        let stdout = child.stdout.take().context("tcpdump's stdout")?;
        // Its readiness signal: "listening on IFACE ..." once the socket
        // is bound.
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening on") => break,
                Some(Ok(_)) => continue,
                _ => bail!("tcpdump ended before listening on {iface}"),
            }
        }
        Ok(FirstPacket {
            _child: child,
            stdout: BufReader::new(stdout),
        })
    }

    /// The first frame's time (tcpdump ends after it, or at its timeout).
    fn time(mut self) -> Option<SystemTime> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        let (secs, nanos) = line.split_whitespace().next()?.split_once('.')?;
        Some(UNIX_EPOCH + Duration::new(secs.parse().ok()?, nanos.parse().ok()?))
    }
}

/// Milliseconds from `from` to `to` (negative if `to` came first).
fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// What one tool's runs measured, in ms.
#[derive(Default)]
struct Tally {
    nta_from_start: Vec<f64>,
    nta_from_first: Vec<f64>,
    /// nta's own share: from the sample that crossed (the alert's time)
    /// to the alert written.
    nta_own: Vec<f64>,
    fnm_from_start: Vec<f64>,
    fnm_from_first: Vec<f64>,
    /// The incident's peak over its threshold.
    multiple: Vec<f64>,
}

fn cell(v: &[f64], runs: usize) -> String {
    if v.is_empty() {
        format!("none in {runs}")
    } else {
        format!("{} ({}/{runs})", mmm(v.to_vec(), 0), v.len())
    }
}

pub fn run(args: &DetectArgs) -> anyhow::Result<String> {
    let lab = AttackLab::new("ntbd")?;
    lab.install_spoof_guard()?;
    lab.assert_spoof_guard()?;
    let dir = std::env::temp_dir().join(format!("nta-bench-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nta.toml");
    std::fs::write(&config, latency_config())?;
    let file = dir.join("alerts.jsonl");
    let _ = std::fs::remove_file(&file);
    let (config_arg, file_arg) = (config.to_string_lossy(), file.to_string_lossy());
    let _nta = NtaProcess::start_in(
        &lab.victim,
        &lab.veth.outer,
        &args.nta,
        &["--config", &config_arg, "--alerts", &file_arg],
    )?;
    let defaults = DetectConfig::default();
    let mut md = String::from(
        "| detector | attack (in the attacker namespace) | flood / threshold | nta: tool start to alert, ms | nta: first attack packet to alert, ms | of which nta's own: crossing sample to alert written, ms | FastNetMon: tool start to ban, ms | FastNetMon: first attack packet to ban, ms |\n|---|---|---|---|---|---|---|---|\n",
    );
    let chosen = ATTACKS
        .iter()
        .filter(|a| args.only.is_empty() || args.only.iter().any(|o| o == a.detector));
    for attack in chosen {
        let threshold = attack.threshold.map(|t| t(&defaults));
        let fastnetmon = match threshold {
            Some(pps) => Some(FastNetMon::start(
                &lab.victim,
                &lab.veth.outer,
                VICTIM,
                pps as u64,
                &dir.join("fastnetmon"),
            )?),
            None => None,
        };
        let mut t = Tally::default();
        for run in 0..args.runs {
            eprintln!(
                "detect latency: {} run {}/{}",
                attack.detector,
                run + 1,
                args.runs
            );
            if attack.spoofs {
                lab.assert_spoof_guard()?;
            }
            one_run(&lab, attack, &file, fastnetmon.as_ref(), threshold, &mut t)?;
            wait_quiet(&file, Duration::from_secs(15))?;
            thread::sleep(SCAN_WINDOW);
        }
        if t.nta_from_start.is_empty() {
            bail!("{}: no alert in {} runs", attack.detector, args.runs);
        }
        let (fnm_start, fnm_first) = if fastnetmon.is_some() {
            (
                cell(&t.fnm_from_start, args.runs),
                cell(&t.fnm_from_first, args.runs),
            )
        } else {
            ("no scan detector".into(), "-".into())
        };
        let multiple = if t.multiple.is_empty() {
            "-".into()
        } else {
            format!("{}x", mmm(t.multiple, 0))
        };
        md.push_str(&format!(
            "| {} | `{}` | {multiple} | {} | {} | {} | {fnm_start} | {fnm_first} |\n",
            attack.detector,
            attack.tool.join(" "),
            cell(&t.nta_from_start, args.runs),
            cell(&t.nta_from_first, args.runs),
            cell(&t.nta_own, args.runs),
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    md.push_str(
        "\nnta's flood thresholds are its defaults (volume: a static 30 kpps), FastNetMon CE's `threshold_pps` is set to the same per attack (AF_PACKET, every packet, `average_calculation_time = 1`). Both watch the victim's interface at once; medians with (min-max) over the runs.\n",
    );
    Ok(md)
}

/// One attack: the tool runs until both have alerted (or [`WAIT`]).
fn one_run(
    lab: &AttackLab,
    attack: &Attack,
    file: &Path,
    fastnetmon: Option<&FastNetMon>,
    threshold: Option<f64>,
    t: &mut Tally,
) -> anyhow::Result<()> {
    let probe = FirstPacket::start(&lab.victim, &lab.veth.outer)?;
    let seen = alerts(file).len();
    let started = SystemTime::now();
    let mut child = lab.attack(10, attack.tool)?;
    let (mut nta, mut fnm) = (None, None);
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && (nta.is_none() || (fastnetmon.is_some() && fnm.is_none())) {
        if nta.is_none() {
            let new = alerts(file);
            let hit = new.iter().skip(seen).find(|a| {
                a["rule"]["name"] == attack.detector && a["nta"]["alert"]["state"] == "start"
            });
            if let Some(a) = hit {
                let now = SystemTime::now();
                let crossed = a["@timestamp"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339(t).ok());
                if let Some(crossed) = crossed {
                    t.nta_own.push(ms_between(crossed, now));
                }
                nta = Some((now, a["nta"]["alert"]["incident_id"].clone()));
            }
        }
        if fnm.is_none()
            && let Some(f) = fastnetmon
        {
            fnm = f.bans().into_iter().find(|b| *b >= started);
        }
        thread::sleep(Duration::from_millis(2));
    }
    child.kill_group();
    let first = probe.time();
    if let Some((at, _)) = &nta {
        t.nta_from_start.push(ms_between(started, *at));
        if let Some(first) = first {
            t.nta_from_first.push(ms_between(first, *at));
        }
    }
    if let Some(at) = fnm {
        t.fnm_from_start.push(ms_between(started, at));
        if let Some(first) = first {
            t.fnm_from_first.push(ms_between(first, at));
        }
    }
    // The flood's size, from the incident's end line (its peak).
    if let (Some((_, id)), Some(limit)) = (nta, threshold) {
        wait_quiet(file, Duration::from_secs(15))?;
        let end = alerts(file).into_iter().find(|a| {
            a["nta"]["alert"]["incident_id"] == id && a["nta"]["alert"]["state"] == "end"
        });
        if let Some(peak) = end.and_then(|a| a["nta"]["alert"]["peak"].as_f64()) {
            t.multiple.push(peak / limit);
        }
    }
    Ok(())
}
