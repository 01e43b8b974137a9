//! nta against tcpdump, the tool users run today: the highest rate each
//! takes without loss (tcpdump: every frame written to a pcap on tmpfs;
//! nta: every frame counted), and the CPU each costs per million packets
//! at the same offered rate.
//!
//! Loss is judged against what the generator sent, not against tcpdump's
//! own "dropped by kernel", which misses frames lost in the veth ring.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    generator::Limits,
    live::{Lab, NtaProcess, nta_totals},
    mixes::MixName,
    report::{mmm, mpps},
};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The nta binary to measure.
    #[arg(long, default_value = "target/release/nta")]
    nta: PathBuf,
    /// Seconds per trial.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Rounds of the CPU measurement.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Offered rate for the CPU measurement, in Mpps.
    #[arg(long, default_value_t = 0.5)]
    cpu_rate_mpps: f64,
    /// Measure only tcpdump and nta capture (the capture comparison).
    #[arg(long)]
    capture_only: bool,
}

/// tcpdump writing to tmpfs in the receiver namespace.
struct Tcpdump {
    child: Child,
    file: PathBuf,
    /// tcpdump's remaining stderr lines (its final statistics).
    stderr: std::sync::mpsc::Receiver<Vec<String>>,
}

impl Tcpdump {
    fn start(lab: &Lab) -> anyhow::Result<Tcpdump> {
        let file = PathBuf::from(format!("/dev/shm/nta-bench-{}.pcap", std::process::id()));
        let mut child = lab
            .recv_ns
            .command("tcpdump")?
            .args([
                "-i",
                &lab.veth.inner,
                "-n",
                "-s",
                "128",
                "-B",
                "262144",
                "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (apt package tcpdump)")?;
        // tcpdump says "listening on ..." once its socket is ready.
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        match lines.next() {
            Some(Ok(l)) if l.contains("listening on") => {}
            other => bail!("tcpdump did not start: {other:?}"),
        }
        child.stderr = None;
        // Keep reading stderr in the background so tcpdump never blocks on it
        // and its final statistics are collected.
        let rx = collect_rest(lines);
        Ok(Tcpdump {
            child,
            file,
            stderr: rx,
        })
    }

    /// Stops tcpdump and returns (captured, dropped by kernel).
    fn stop(mut self) -> anyhow::Result<(u64, u64)> {
        let lines = interrupt(&mut self.child, &self.stderr, &self.file)?;
        let num = |suffix: &str| {
            lines
                .iter()
                .find(|l| l.ends_with(suffix))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let captured = num("packets captured").context("tcpdump printed no capture count")?;
        let dropped = num("packets dropped by kernel").unwrap_or(0);
        Ok((captured, dropped))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// libpcap hands over a ring block when it fills or after its 1 s timeout;
/// stopping earlier would leave the last partial block unread.
const TCPDUMP_SETTLE: Duration = Duration::from_millis(1500);

impl Tool {
    /// Extra `nta run` arguments for the nta variants.
    fn nta_args(self) -> &'static [&'static str] {
        if self == Tool::NtaMirror {
            &["--mirror"]
        } else {
            &[]
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// `nta run`: count, sample, pass every frame on (servers).
    Nta,
    /// `nta run --mirror`: count, sample, then drop (SPAN/TAP ports).
    NtaMirror,
    Tcpdump,
    /// `nta capture -s 128 -w` to tmpfs: XDP copies the frames (the
    /// non-intrusive path), a writer thread writes pcapng.
    NtaCapture,
    /// `nta capture --af-xdp -s 128 -w`: frames redirected to AF_XDP
    /// sockets (dedicated capture ports; they skip the stack).
    NtaCaptureAfXdp,
    /// `nta capture --mirror -s 128 -w`: the XDP copy, then the frame is
    /// dropped (dedicated capture ports).
    NtaCaptureMirror,
}

/// SIGINT to a capturing child (`ip netns exec` execs it), then its
/// remaining stderr lines; its output file is removed.
fn interrupt(
    child: &mut Child,
    stderr: &std::sync::mpsc::Receiver<Vec<String>>,
    file: &Path,
) -> anyhow::Result<Vec<String>> {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait()?;
    let lines = stderr
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    let _ = fs::remove_file(file);
    Ok(lines)
}

/// Reads the rest of a child's stderr on a thread (so it never blocks on a
/// full pipe); the lines arrive when it exits.
fn collect_rest(
    lines: std::io::Lines<BufReader<std::process::ChildStderr>>,
) -> std::sync::mpsc::Receiver<Vec<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = tx.send(rest);
    });
    rx
}

/// `nta capture` writing to tmpfs in the receiver namespace.
struct NtaCapture {
    child: Child,
    file: PathBuf,
    /// Its stderr lines after start (its summary).
    stderr: std::sync::mpsc::Receiver<Vec<String>>,
}

impl NtaCapture {
    fn start(lab: &Lab, nta: &Path, tool: Tool) -> anyhow::Result<NtaCapture> {
        let file = PathBuf::from(format!("/dev/shm/nta-bench-{}.pcapng", std::process::id()));
        let mut child = lab
            .recv_ns
            .command_built(nta)?
            .args(["capture", "-i", &lab.veth.inner, "--xdp-mode", "native"])
            .args(["-s", "128", "--buffer-mib", "256"])
            .args(match tool {
                Tool::NtaCaptureAfXdp => &["--af-xdp"][..],
                Tool::NtaCaptureMirror => &["--mirror"][..],
                _ => &[][..],
            })
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} capture", nta.display()))?;
        // It prints "capturing on ..." once attached.
        let stderr = child.stderr.take().context("nta capture stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("capturing on") => break,
                Some(Ok(_)) => {}
                other => bail!("nta capture did not start: {other:?}"),
            }
        }
        let rx = collect_rest(lines);
        child.stderr = None;
        Ok(NtaCapture {
            child,
            file,
            stderr: rx,
        })
    }

    /// Stops it and returns (frames written, dropped by the kernel).
    fn stop(mut self) -> anyhow::Result<(u64, u64)> {
        let lines = interrupt(&mut self.child, &self.stderr, &self.file)?;
        // "nta: N frames written to F; M dropped by the kernel (...)"
        let line = lines
            .iter()
            .find(|l| l.contains("frames written"))
            .context("nta capture printed no summary")?;
        let num_before = |word: &str| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .iter()
                .position(|w| *w == word)
                .and_then(|i| words.get(i.checked_sub(1)?))
                .and_then(|n| n.parse::<u64>().ok())
        };
        Ok((
            num_before("frames").context("frame count")?,
            num_before("dropped").unwrap_or(0),
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// One trial at a target rate.
struct Trial {
    /// The tool got every frame the generator sent.
    lossless: bool,
    /// The rate the generator achieved. The generator and the receiving
    /// path share a CPU, so a saturated receiver slows the generator
    /// rather than losing frames in the veth ring.
    achieved: f64,
}

/// Sends at `rate` pps with `tool` receiving.
fn trial(lab: &Lab, tool: Tool, nta: &Path, rate: f64, seconds: f64) -> anyhow::Result<Trial> {
    let limits = Limits {
        count: u64::MAX,
        duration: Duration::from_secs_f64(seconds),
        rate: Some(rate),
    };
    let (report, got) = match tool {
        Tool::Tcpdump => {
            // The veth end only accepts the generator's frames with an XDP
            // program attached; a bare XDP_PASS hands them to the stack.
            let _pass = lab.attach_bare("baseline_pass")?;
            let tcpdump = Tcpdump::start(lab)?;
            let report = lab.generate(MixName::Udp64, limits)?;
            thread::sleep(TCPDUMP_SETTLE);
            let (captured, dropped) = tcpdump.stop()?;
            (report, if dropped == 0 { captured } else { 0 })
        }
        Tool::NtaCapture | Tool::NtaCaptureAfXdp | Tool::NtaCaptureMirror => {
            let capture = NtaCapture::start(lab, nta, tool)?;
            let report = lab.generate(MixName::Udp64, limits)?;
            thread::sleep(Duration::from_millis(300));
            let (written, dropped) = capture.stop()?;
            if written != report.sent || dropped != 0 {
                eprintln!(
                    "    sent {}, written {written}, dropped before the writer {dropped}",
                    report.sent
                );
            }
            (report, if dropped == 0 { written } else { 0 })
        }
        Tool::Nta | Tool::NtaMirror => {
            let agent = NtaProcess::start(lab, nta, tool.nta_args())?;
            let before = nta_totals(&lab.scrape(agent.addr)?).0;
            let report = lab.generate(MixName::Udp64, limits)?;
            thread::sleep(Duration::from_millis(300));
            let after = nta_totals(&lab.scrape(agent.addr)?).0;
            (report, after - before)
        }
    };
    Ok(Trial {
        lossless: got == report.sent,
        achieved: report.pps(),
    })
}

/// Highest rate at which `tool` loses nothing: bisection on the target
/// rate between 50 kpps and `hi`; a trial passes when it was lossless and
/// the generator reached 95% of the target. Returns the best achieved rate
/// among lossless trials.
fn lossless_rate(lab: &Lab, tool: Tool, nta: &Path, seconds: f64, hi: f64) -> anyhow::Result<f64> {
    let mut best = 0.0f64;
    let mut attempt = |rate: f64| -> anyhow::Result<bool> {
        let t = trial(lab, tool, nta, rate, seconds)?;
        eprintln!(
            "  {tool:?} at {:.2} Mpps: achieved {:.2} Mpps, {}",
            mpps(rate),
            mpps(t.achieved),
            if t.lossless {
                "lossless"
            } else {
                "lost frames"
            }
        );
        if t.lossless {
            best = best.max(t.achieved);
        }
        Ok(t.lossless && t.achieved >= 0.95 * rate)
    };
    let (mut lo, mut hi) = (50_000.0, hi);
    if attempt(hi)? || !attempt(lo)? {
        return Ok(best);
    }
    while hi / lo > 1.05 {
        let mid = (lo * hi).sqrt();
        if attempt(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(best)
}

/// CPU time in seconds of a process (utime + stime) from /proc.
fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(ticks / clock_ticks())
}

/// Busy CPU seconds of the whole machine (all CPUs, every state but idle
/// and iowait), from /proc/stat. Softirq time alone is not reliable here:
/// XDP work triggered by the generator's test runs is often accounted as
/// the generator's system time.
fn machine_busy_cpu() -> anyhow::Result<f64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest fields are
    // already inside user and nice).
    let busy: f64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (process CPU s, machine busy CPU s) per million packets at `rate`.
fn cpu_cost(
    lab: &Lab,
    tool: Tool,
    nta: &Path,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    let limits = Limits {
        count: u64::MAX,
        duration: Duration::from_secs_f64(seconds),
        rate: Some(rate),
    };
    let measure = |pid: u32| -> anyhow::Result<(f64, f64, u64)> {
        let (p0, s0) = (process_cpu(pid)?, machine_busy_cpu()?);
        let report = lab.generate(MixName::Udp64, limits)?;
        thread::sleep(Duration::from_millis(300));
        Ok((
            process_cpu(pid)? - p0,
            machine_busy_cpu()? - s0,
            report.sent,
        ))
    };
    let (p, s, sent) = match tool {
        Tool::Tcpdump => {
            let _pass = lab.attach_bare("baseline_pass")?;
            let tcpdump = Tcpdump::start(lab)?;
            let r = measure(tcpdump.pid())?;
            tcpdump.stop()?;
            r
        }
        Tool::Nta | Tool::NtaMirror => {
            let agent = NtaProcess::start(lab, nta, tool.nta_args())?;
            measure(agent.pid())?
        }
        Tool::NtaCapture | Tool::NtaCaptureAfXdp | Tool::NtaCaptureMirror => {
            let capture = NtaCapture::start(lab, nta, tool)?;
            let r = measure(capture.pid())?;
            capture.stop()?;
            r
        }
    };
    let m = sent as f64 / 1e6;
    Ok((p / m, s / m))
}

/// The rate the generator reaches into a bare program (line rate here).
fn ceiling(lab: &Lab, program: &'static str, seconds: f64) -> anyhow::Result<f64> {
    let _bare = lab.attach_bare(program)?;
    let limits = Limits {
        count: u64::MAX,
        duration: Duration::from_secs_f64(seconds),
        rate: None,
    };
    Ok(lab.generate(MixName::Udp64, limits)?.pps())
}

pub fn run(args: &CompareArgs) -> anyhow::Result<String> {
    if !args.nta.exists() {
        bail!(
            "{} not found: build it first (`cargo xtask build`)",
            args.nta.display()
        );
    }
    let lab = Lab::new()?;
    // Upper ends of the searches: the kernel path into a bare XDP_PASS
    // receiver (frames go on to the stack, as with tcpdump and plain nta),
    // and into a bare XDP_DROP receiver (nta --mirror drops after counting).
    let pass_ceiling = ceiling(&lab, "baseline_pass", args.seconds)?;
    let drop_ceiling = ceiling(&lab, "baseline_drop", args.seconds)?;
    eprintln!(
        "compare: kernel path {:.2} Mpps (pass), {:.2} Mpps (drop)",
        mpps(pass_ceiling),
        mpps(drop_ceiling)
    );
    let tcpdump = lossless_rate(&lab, Tool::Tcpdump, &args.nta, args.seconds, pass_ceiling)?;
    let capture = lossless_rate(
        &lab,
        Tool::NtaCapture,
        &args.nta,
        args.seconds,
        pass_ceiling,
    )?;
    let afxdp = lossless_rate(
        &lab,
        Tool::NtaCaptureAfXdp,
        &args.nta,
        args.seconds,
        drop_ceiling,
    )?;
    let capture_mirror = lossless_rate(
        &lab,
        Tool::NtaCaptureMirror,
        &args.nta,
        args.seconds,
        drop_ceiling,
    )?;
    let (nta, mirror) = if args.capture_only {
        (0.0, 0.0)
    } else {
        (
            lossless_rate(&lab, Tool::Nta, &args.nta, args.seconds, pass_ceiling)?,
            lossless_rate(&lab, Tool::NtaMirror, &args.nta, args.seconds, drop_ceiling)?,
        )
    };

    let rate = args.cpu_rate_mpps * 1e6;
    let tools: &[Tool] = if args.capture_only {
        &[
            Tool::Tcpdump,
            Tool::NtaCapture,
            Tool::NtaCaptureMirror,
            Tool::NtaCaptureAfXdp,
        ]
    } else {
        &[
            Tool::Tcpdump,
            Tool::Nta,
            Tool::NtaMirror,
            Tool::NtaCapture,
            Tool::NtaCaptureMirror,
            Tool::NtaCaptureAfXdp,
        ]
    };
    let mut cpu: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); tools.len()];
    for round in 0..args.rounds {
        eprintln!("compare: CPU round {}/{}", round + 1, args.rounds);
        for (i, tool) in tools.iter().enumerate() {
            let (p, s) = cpu_cost(&lab, *tool, &args.nta, rate, args.seconds * 2.0)?;
            cpu[i].0.push(p);
            cpu[i].1.push(s);
        }
    }
    let ratio = |x: f64| {
        if tcpdump > 0.0 {
            format!("{:.2}", x / tcpdump)
        } else {
            "- (tcpdump lost frames at every rate)".into()
        }
    };
    let mut md = format!(
        "Highest lossless rate, 64-byte UDP, {secs} s trials, bisection to 5%. The generator shares a CPU with the receiving \
         path, so a saturated receiver slows it down; the rate is what was achieved with nothing lost. Kernel path limits \
         measured in the same run: {pc:.2} Mpps into a bare XDP_PASS program, {dc:.2} Mpps into a bare XDP_DROP program.\n\n\
         | tool | lossless Mpps | ratio to tcpdump |\n|---|---|---|\n\
         | tcpdump -s 128 -B 262144 -w /dev/shm/… (capture every frame) | {t:.2} | 1 |\n\
         | nta capture -s 128 -w /dev/shm/… (capture every frame: XDP copy, pcapng writer) | {c:.2} | {cr} |\n\
         | nta capture --mirror -s 128 -w /dev/shm/… (dedicated port: XDP copy, then drop) | {cm:.2} | {cmr} |\n\
         | nta capture --af-xdp -s 128 -w /dev/shm/… (dedicated port: AF_XDP, copy mode on veth) | {a:.2} | {ar} |\n\
         | nta run (count every frame, pass it on) | {n:.2} | {nr} |\n\
         | nta run --mirror (count every frame, then drop: SPAN/TAP ports) | {m:.2} | {mr} |\n\
         | bare XDP_DROP, no counting (upper bound for any XDP sensor here) | {dc:.2} | {dr} |\n\n\
         CPU seconds per million packets at {rate:.2} Mpps offered, {rounds} rounds. Process: the tool's own process \
         (user + system). Machine: every CPU's busy time, kernel receive path and generator included; the generator's \
         share is the same for every tool, so the differences are the tools' cost.\n\n\
         | tool | process CPU s / Mpkt | machine CPU s / Mpkt |\n|---|---|---|\n",
        secs = args.seconds,
        pc = mpps(pass_ceiling),
        dc = mpps(drop_ceiling),
        t = mpps(tcpdump),
        n = mpps(nta),
        nr = ratio(nta),
        m = mpps(mirror),
        mr = ratio(mirror),
        c = mpps(capture),
        cr = ratio(capture),
        a = mpps(afxdp),
        ar = ratio(afxdp),
        cm = mpps(capture_mirror),
        cmr = ratio(capture_mirror),
        dr = ratio(drop_ceiling),
        rate = args.cpu_rate_mpps,
        rounds = args.rounds,
    );
    for (tool, (p, s)) in tools.iter().zip(cpu) {
        let name = match tool {
            Tool::Tcpdump => "tcpdump",
            Tool::Nta => "nta run",
            Tool::NtaMirror => "nta run --mirror",
            Tool::NtaCapture => "nta capture -s 128",
            Tool::NtaCaptureAfXdp => "nta capture --af-xdp -s 128",
            Tool::NtaCaptureMirror => "nta capture --mirror -s 128",
        };
        md.push_str(&format!("| {name} | {} | {} |\n", mmm(p, 3), mmm(s, 3)));
    }
    print!("{md}");
    Ok(md)
}
