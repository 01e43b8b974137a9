//! Live counting capacity: the generator sends 64-byte UDP at line rate
//! over a lab veth pair into (a) a bare `XDP_PASS` program and (b) `nta run`
//! at sample rates 64 (default), 1 and 1024, alternating, for several
//! rounds. Reports received pps as a ratio to the bare program, whether nta
//! counted every received frame, and sample loss per stage.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode},
};
use nta::kernel::objects;
use nta_lab::{
    NetNs, VethPair,
    netns::{LinkStats, run_in_netns},
    scrape::{Samples, http_get, scrape},
};

use crate::{
    generator::{GenReport, Generator, Limits, pin_to_cpu},
    mixes::MixName,
    report::{mmm, mpps},
};

#[derive(clap::Args)]
pub struct LiveArgs {
    /// Rounds; each runs every receiver once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of traffic per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// The nta binary to measure.
    #[arg(long, default_value = "target/release/nta")]
    nta: PathBuf,
}

/// The lab: generator namespace and receiver namespace (no default route)
/// joined by a veth pair.
pub struct Lab {
    pub gen_ns: NetNs,
    pub recv_ns: NetNs,
    pub veth: VethPair,
}

impl Lab {
    pub fn new() -> anyhow::Result<Lab> {
        let gen_ns = NetNs::new("ntbg")?;
        let recv_ns = NetNs::new("ntbr")?;
        let veth = VethPair::between(&gen_ns, &recv_ns, "ntb")?;
        Ok(Lab {
            gen_ns,
            recv_ns,
            veth,
        })
    }

    pub fn rx(&self) -> anyhow::Result<LinkStats> {
        Ok(LinkStats::read(&self.recv_ns, &self.veth.inner)?)
    }

    /// Runs the generator on CPU 0 in the generator namespace.
    pub fn generate(&self, mix: MixName, limits: Limits) -> anyhow::Result<GenReport> {
        let iface = self.veth.outer.clone();
        run_in_netns(self.gen_ns.name(), move || -> anyhow::Result<GenReport> {
            pin_to_cpu(0)?;
            let mut g = Generator::attach(&iface)?;
            Ok(g.run(mix, 65536, limits)?)
        })?
    }

    /// Attaches a bare benchmark program to the receiving end.
    pub fn attach_bare(&self, program: &'static str) -> anyhow::Result<Ebpf> {
        let iface = self.veth.inner.clone();
        run_in_netns(self.recv_ns.name(), move || -> anyhow::Result<Ebpf> {
            let mut ebpf = EbpfLoader::new().load(objects::BASELINE_XDP)?;
            let prog: &mut Xdp = ebpf
                .program_mut(program)
                .with_context(|| format!("{program} missing"))?
                .try_into()?;
            prog.load()?;
            prog.attach(&iface, XdpMode::Driver)?;
            Ok(ebpf)
        })?
    }

    pub fn scrape(&self, addr: SocketAddr) -> anyhow::Result<Samples> {
        Ok(run_in_netns(self.recv_ns.name(), move || scrape(addr))??)
    }
}

/// The `nta` that `cargo test --workspace` builds, for tests that run it
/// against the generator (bench tests cannot name another package's
/// binary through `CARGO_BIN_EXE_*`).
pub fn debug_nta_binary() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/nta");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p nta`; `cargo xtask test` does)",
        p.display()
    );
    p
}

/// `nta run` inside the receiver namespace; SIGTERM on drop.
pub struct NtaProcess {
    child: Child,
    pub addr: SocketAddr,
}

/// The last lines nta wrote to stderr, for an error that says why it
/// stopped; a thread drains the pipe so nta never blocks on it.
fn keep_stderr_tail(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead as _;
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(stderr) = child.stderr.take() {
        let keep = tail.clone();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut t) = keep.lock() {
                    t.push(line);
                    let n = t.len();
                    if n > 20 {
                        t.drain(..n - 20);
                    }
                }
            }
        });
    }
    tail
}

impl NtaProcess {
    pub fn start(lab: &Lab, nta: &Path, extra: &[&str]) -> anyhow::Result<NtaProcess> {
        Self::start_in(&lab.recv_ns, &lab.veth.inner, nta, extra)
    }

    /// `nta run --iface IFACE` inside `ns`, listening on 127.0.0.1:9464
    /// there; returns once /healthz answers.
    pub fn start_in(
        ns: &NetNs,
        iface: &str,
        nta: &Path,
        extra: &[&str],
    ) -> anyhow::Result<NtaProcess> {
        let addr: SocketAddr = "127.0.0.1:9464".parse()?;
        let listen = addr.to_string();
        let mut child = ns
            .command_built(nta)?
            .args(["run", "--iface", iface, "--xdp-mode", "native"])
            .args(["--listen", &listen])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", nta.display()))?;
        let tail = keep_stderr_tail(&mut child);
        let said = || tail.lock().map(|t| t.join("\n")).unwrap_or_default();
        let mut p = NtaProcess { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if run_in_netns(ns.name(), || http_get(addr, "/healthz"))?.is_ok() {
                return Ok(p);
            }
            if let Some(status) = p.child.try_wait()? {
                // The drain thread reads the last lines after the exit.
                thread::sleep(Duration::from_millis(50));
                bail!(
                    "nta exited with {status} before becoming healthy:\n{}",
                    said()
                );
            }
            if Instant::now() > deadline {
                bail!("nta did not become healthy within 15 s:\n{}", said());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NtaProcess {
    fn drop(&mut self) {
        // `ip netns exec` execs nta, so the child pid is nta's.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one receiver did during one measurement.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    sent: u64,
    received: u64,
    counted: u64,
    samples: u64,
    dropped_ringbuf: u64,
    dropped_queue: u64,
    dropped_decode: u64,
    secs: f64,
}

impl Outcome {
    fn rx_pps(&self) -> f64 {
        self.received as f64 / self.secs
    }
}

pub fn nta_totals(s: &Samples) -> (u64, u64, u64, u64, u64) {
    let g = |name: &str, l: &[(&str, &str)]| s.sum(name, l) as u64;
    (
        g("nta_packets_total", &[]),
        g("nta_samples_total", &[]),
        g("nta_samples_dropped_total", &[("stage", "ringbuf")]),
        g("nta_samples_dropped_total", &[("stage", "queue")]),
        g("nta_samples_dropped_total", &[("stage", "decode")]),
    )
}

fn measure(lab: &Lab, limits: Limits, nta: Option<&NtaProcess>) -> anyhow::Result<Outcome> {
    let rx0 = lab.rx()?;
    let before = nta.map(|n| lab.scrape(n.addr)).transpose()?;
    let report = lab.generate(MixName::Udp64, limits)?;
    // Let the receiver and the agent drain (ring poll interval is 10 ms).
    thread::sleep(Duration::from_millis(300));
    let rx1 = lab.rx()?;
    let mut o = Outcome {
        sent: report.sent,
        received: rx1.rx_packets - rx0.rx_packets,
        secs: report.elapsed.as_secs_f64(),
        ..Outcome::default()
    };
    if let (Some(n), Some(before)) = (nta, before) {
        let after = lab.scrape(n.addr)?;
        let (p0, s0, r0, q0, d0) = nta_totals(&before);
        let (p1, s1, r1, q1, d1) = nta_totals(&after);
        o.counted = p1 - p0;
        o.samples = s1 - s0;
        o.dropped_ringbuf = r1 - r0;
        o.dropped_queue = q1 - q0;
        o.dropped_decode = d1 - d0;
    }
    Ok(o)
}

pub fn run(args: &LiveArgs) -> anyhow::Result<String> {
    if !args.nta.exists() {
        bail!(
            "{} not found: build it first (`cargo xtask build`)",
            args.nta.display()
        );
    }
    let lab = Lab::new()?;
    let limits = Limits {
        count: u64::MAX,
        duration: Duration::from_secs_f64(args.seconds),
        rate: None,
    };
    let rates = [64u32, 1, 1024];
    let mut bare: Vec<Outcome> = Vec::new();
    let mut with_nta: Vec<Vec<Outcome>> = vec![Vec::new(); rates.len()];
    for round in 0..args.rounds {
        eprintln!("live capacity: round {}/{}", round + 1, args.rounds);
        {
            let _bare = lab.attach_bare("baseline_pass")?;
            bare.push(measure(&lab, limits, None)?);
        }
        for (i, rate) in rates.iter().enumerate() {
            let r = rate.to_string();
            // Fixed rates: adaptive sampling would change them under load.
            let agent = NtaProcess::start(
                &lab,
                &args.nta,
                &["--sample-rate", &r, "--sample-budget", "0"],
            )?;
            with_nta[i].push(measure(&lab, limits, Some(&agent))?);
        }
    }

    let mut md = String::from(
        "| receiver | sent Mpps | received Mpps | ratio to bare XDP_PASS | counted / received | samples/s | dropped ringbuf | dropped queue | dropped decode |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let row = |name: &str, v: &[Outcome], base: Option<&[Outcome]>| -> String {
        let sent = mmm(v.iter().map(|o| mpps(o.sent as f64 / o.secs)).collect(), 2);
        let rx = mmm(v.iter().map(|o| mpps(o.rx_pps())).collect(), 2);
        let ratio = base.map_or("1 (baseline)".to_string(), |b| {
            mmm(
                v.iter()
                    .zip(b)
                    .map(|(o, b)| o.rx_pps() / b.rx_pps().max(1.0))
                    .collect(),
                3,
            )
        });
        let exact = base.map_or("-".to_string(), |_| {
            let ok = v.iter().filter(|o| o.counted == o.received).count();
            format!("{ok}/{} rounds exact", v.len())
        });
        let sum = |f: fn(&Outcome) -> u64| v.iter().map(f).sum::<u64>();
        let samples = base.map_or("-".to_string(), |_| {
            mmm(v.iter().map(|o| o.samples as f64 / o.secs).collect(), 0)
        });
        let drops = |f: fn(&Outcome) -> u64| base.map_or("-".to_string(), |_| sum(f).to_string());
        format!(
            "| {name} | {sent} | {rx} | {ratio} | {exact} | {samples} | {} | {} | {} |\n",
            drops(|o| o.dropped_ringbuf),
            drops(|o| o.dropped_queue),
            drops(|o| o.dropped_decode)
        )
    };
    md.push_str(&row("bare XDP_PASS", &bare, None));
    for (i, rate) in rates.iter().enumerate() {
        md.push_str(&row(
            &format!("nta, 1-in-{rate}"),
            &with_nta[i],
            Some(&bare),
        ));
    }
    print!("{md}");
    Ok(md)
}
