//! `cargo xtask fuzz`: every fuzz target in `fuzz/` (cargo-fuzz,
//! libFuzzer) for a bounded time, seeded from the lab's frames, the
//! example config and sample filters. Corpora, seeds and crash artifacts
//! live under `target/fuzz/`, never in the repository: a fuzzer writes
//! thousands of files.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::util::{program, workspace_root};

#[derive(Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value = "60")]
    pub seconds: u64,
    /// Only this target (default: all).
    #[arg(long)]
    pub target: Option<String>,
}

/// Every target, each with the seeds it starts from.
const TARGETS: [&str; 9] = [
    "parse_frame",
    "capture_file",
    "capture_filter",
    "config",
    "web_config",
    "tls_hello",
    "app_frames",
    "dns_message",
    "quic_initial",
];

fn work_dir() -> PathBuf {
    workspace_root().join("target").join("fuzz")
}

/// The classic pcap of `frames` (nanosecond variant): written by hand,
/// since xtask does not build nta's dependencies.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000 + i as u32).to_le_bytes());
        out.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A post-quantum ClientHello split over two TCP segments and a reply
/// that begins a ServerHello, as the `app_frames` target reads them:
/// kind byte (an index into `AppKind::ALL`), 2-byte length, frame.
fn app_frames_seed() -> Vec<u8> {
    use nta_lab::frames::{FrameSpec, L4};
    let hello = nta_lab::tls::post_quantum("seed.example").record();
    let segment = |sport, dport, seq, payload: &[u8]| {
        let spec = FrameSpec::ipv4(L4::Tcp {
            sport,
            dport,
            flags: 0x18,
        })
        .with_tcp_seq(seq)
        .with_payload_bytes(payload);
        // The server's answer comes from the other address.
        if sport == 443 || sport == 53 {
            spec.with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
                .build()
        } else {
            spec.build()
        }
    };
    let mut server = vec![
        0x16, 0x03, 0x03, 0x00, 0x2c, 0x02, 0x00, 0x00, 0x28, 0x03, 0x03,
    ];
    server.extend([7; 32]);
    server.extend([0, 0x13, 0x01, 0, 0, 0]);
    // A DNS query over UDP and its answer split over two TCP segments.
    let query = nta_lab::dns::query(7, "seed.example", nta_lab::dns::A);
    let answer = nta_lab::dns::over_tcp(&nta_lab::dns::response(
        7,
        "seed.example",
        nta_lab::dns::A,
        0,
        &[(nta_lab::dns::A, vec![198, 18, 0, 1])],
    ));
    let udp = FrameSpec::ipv4(L4::Udp {
        sport: 40001,
        dport: 53,
    })
    .with_payload_bytes(&query)
    .build();
    let mut out = Vec::new();
    for (kind, frame) in [
        (0u8, segment(40000, 443, 1, &hello[..1400])),
        (1, segment(40000, 443, 1401, &hello[1400..])),
        (0, segment(443, 40000, 9, &server)),
        (2, udp),
        (2, segment(53, 40001, 5, &answer[..20])),
        (2, segment(53, 40001, 25, &answer[20..])),
    ] {
        out.push(kind);
        out.extend((frame.len() as u16).to_be_bytes());
        out.extend(frame);
    }
    out
}

/// For `quic_initial`: an odd first byte (the target seals the rest as an
/// Initial's payload), then a CRYPTO frame holding a ClientHello, an ACK
/// frame and PADDING.
fn quic_initial_seed() -> Vec<u8> {
    let hello = nta_lab::tls::browser_like("quic.example").handshake();
    let mut seed = vec![1, 0x06, 0x40, 0x00];
    seed.extend((hello.len() as u16 | 0x4000).to_be_bytes());
    seed.extend(hello);
    seed.extend([0x02, 0x00, 0x00, 0x00, 0x00]);
    seed.resize(seed.len() + 40, 0);
    seed
}

/// Writes each target's seeds into `target/fuzz/seeds/<target>/`.
fn write_seeds(seeds: &Path) -> anyhow::Result<()> {
    let frames: Vec<Vec<u8>> = nta_lab::cases::protocol_cases()
        .into_iter()
        .chain(nta_lab::cases::truncation_cases())
        .map(|c| c.frame)
        .collect();
    let example = fs::read_to_string(workspace_root().join("deploy/nta.example.toml"))
        .context("reading deploy/nta.example.toml")?;
    let mut sets: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("parse_frame", frames.clone()),
        ("capture_file", vec![pcap(&frames), pcap(&frames[..3])]),
        (
            "capture_filter",
            [
                "tcp port 443",
                "not (udp or icmp) and src net 198.18.0.0/15",
                "ip6 and dst host fd00::1 or vlan 7",
                "portrange 1-1024 and proto 6",
                "icmp6 or gre or sctp",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        ),
        ("config", vec![example.into_bytes()]),
        (
            "tls_hello",
            vec![
                nta_lab::tls::browser_like("www.example.org").record(),
                nta_lab::tls::browser_like("example.net").handshake(),
            ],
        ),
        ("app_frames", vec![app_frames_seed()]),
        (
            "quic_initial",
            vec![quic_initial_seed()],
        ),
        (
            "dns_message",
            vec![
                nta_lab::dns::query(1, "www.example.org", nta_lab::dns::AAAA),
                nta_lab::dns::response(
                    1,
                    "www.example.org",
                    nta_lab::dns::TXT,
                    0,
                    &[
                        (nta_lab::dns::TXT, nta_lab::dns::txt(&[b"v=spf1 -all", b"x"])),
                        (nta_lab::dns::CNAME, nta_lab::dns::wire_name("edge.example.net")),
                    ],
                ),
                nta_lab::dns::over_tcp(&nta_lab::dns::query(2, "a.example", nta_lab::dns::A)),
            ],
        ),
        (
            "web_config",
            vec![
                b"tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS12\n"
                    .to_vec(),
                b"basic_auth_users:\n  prometheus: $2y$04$GnbZK1E0bjhQzgPqfjCbXukI3MW0sqInOgXC7mS6k4W7dTgFN0jCa\n"
                    .to_vec(),
            ],
        ),
    ];
    for (target, inputs) in sets.drain(..) {
        let dir = seeds.join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, input) in inputs.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i}")), input)?;
        }
    }
    Ok(())
}

/// Runs each target (or the one asked for) for `seconds`; fails on the
/// first finding, naming the artifact to reproduce it with.
pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let work = work_dir();
    let seeds = work.join("seeds");
    write_seeds(&seeds)?;
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target {t}; the targets: {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    for target in targets {
        let corpus = work.join("corpus").join(target);
        let artifacts = work.join("artifacts").join(target);
        fs::create_dir_all(&corpus)?;
        fs::create_dir_all(&artifacts)?;
        eprintln!("==> fuzzing {target} for {} s", args.seconds);
        let started = Instant::now();
        let out = program("cargo")?
            .current_dir(&root)
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", target])
            .arg(&corpus)
            .arg(seeds.join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .output()
            .context("running cargo fuzz (is cargo-fuzz installed? `cargo xtask setup`)")?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(str::trim)
            .unwrap_or("?");
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} found a problem after {:.0} s; artifacts in {}\n{}",
                started.elapsed().as_secs_f64(),
                artifacts.display(),
                tail.join("\n")
            );
        }
        eprintln!(
            "==> {target}: {runs} inputs in {:.0} s, no finding",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
