//! `cargo xtask demo`: builds nta, makes a lab namespace joined to this one
//! by a veth pair, runs `nta run` on the outer end, sends a protocol mix
//! from inside the namespace, and prints a live per-protocol table.
//!
//! Bounded: `--seconds` of traffic at `--pps`, then everything is removed.
//! Frames carry 198.18.0.0/15 / fd00::/8 addresses and a destination MAC
//! that is nobody's, so the receiving stack drops them before IP.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use agent_common::class::ProtocolClass;
use anyhow::{Context as _, bail};
use nta_lab::{
    NetNs, VethPair,
    mix::protocol_mix,
    scrape::{Samples, http_get, scrape},
    send::send_paced,
};

use crate::util::{cargo, is_root, workspace_root};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long to send traffic.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Frames per second to send.
    #[arg(long, default_value_t = 2000)]
    pps: u32,
    /// Where nta serves /metrics during the demo.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
}

/// The running agent; stopped with SIGTERM (so it detaches and flushes)
/// when dropped, killed if it lingers.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo creates a network namespace and attaches XDP: run it as root");
    }
    cargo(&["build", "--release", "-p", "nta"])?;
    let nta = workspace_root().join("target/release/nta");

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    let ns = NetNs::new("ntad")?;
    let veth = VethPair::new(&ns, "ntad")?;
    println!(
        "lab: namespace {} sends from {} into {} (this namespace), where nta is attached",
        ns.name(),
        veth.inner,
        veth.outer
    );
    let child = Command::new(&nta)
        .args([
            "run",
            "--iface",
            &veth.outer,
            "--listen",
            &args.listen.to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", nta.display()))?;
    let agent = AgentProcess(child);
    wait_healthy(args.listen, &stop)?;
    println!("metrics: curl http://{}/metrics", args.listen);

    let frames: Vec<Vec<u8>> = protocol_mix().into_iter().map(|m| m.frame).collect();
    let duration = Duration::from_secs(args.seconds);
    let max = u64::from(args.pps) * args.seconds;
    let sender = {
        let inner = veth.inner.clone();
        let ns_name = ns.name().to_string();
        let stop = stop.clone();
        let pps = args.pps;
        thread::spawn(move || -> anyhow::Result<u64> {
            // Send in one-second slices so Ctrl-C stops within a second.
            let mut sent = 0;
            let start = Instant::now();
            while start.elapsed() < duration && !stop.load(Ordering::SeqCst) && sent < max {
                sent += send_paced(
                    &ns_name,
                    &inner,
                    &frames,
                    pps,
                    Duration::from_secs(1),
                    max - sent,
                )?;
            }
            Ok(sent)
        })
    };

    let mut previous: Option<(Instant, Samples)> = None;
    let end = Instant::now() + duration + Duration::from_secs(1);
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        let current = scrape(args.listen)?;
        print_table(
            &veth.outer,
            &current,
            previous.as_ref().map(|(t, s)| (now - *t, s)),
        );
        previous = Some((now, current));
    }
    stop.store(true, Ordering::SeqCst);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    // Best effort: after Ctrl-C nta may already have stopped.
    match scrape(args.listen) {
        Ok(last) => {
            let counted = last.sum("nta_packets_total", &[("interface", &veth.outer)]);
            println!("sent {sent} frames; nta counted {counted}");
        }
        Err(_) => println!("sent {sent} frames"),
    }
    drop(agent);
    println!("stopped nta and removed {} and {}", ns.name(), veth.outer);
    Ok(())
}

fn wait_healthy(addr: SocketAddr, stop: &AtomicBool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        if http_get(addr, "/healthz").is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("nta did not answer on http://{addr}/healthz within 15 s (see its log above)")
}

fn print_table(iface: &str, s: &Samples, prev: Option<(Duration, &Samples)>) {
    println!(
        "\n{:<10} {:>12} {:>14} {:>10}",
        "protocol", "packets", "bytes", "pps"
    );
    for class in ProtocolClass::ALL.map(ProtocolClass::label) {
        let l = [("interface", iface), ("protocol", class)];
        let p = s.get("nta_packets_total", &l).unwrap_or(0.0);
        let b = s.get("nta_bytes_total", &l).unwrap_or(0.0);
        let pps = prev
            .map(|(dt, old)| {
                (p - old.get("nta_packets_total", &l).unwrap_or(0.0)) / dt.as_secs_f64()
            })
            .unwrap_or(0.0);
        println!("{class:<10} {p:>12} {b:>14} {pps:>10.0}");
    }
    let i = [("interface", iface)];
    println!(
        "{:<10} {:>12}   samples {}  dropped {}",
        "total",
        s.sum("nta_packets_total", &i),
        s.sum("nta_samples_total", &i),
        s.sum("nta_samples_dropped_total", &i)
    );
}
