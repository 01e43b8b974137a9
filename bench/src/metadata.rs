//! Application-metadata parsing on one core: ClientHellos parsed with
//! their JA4 (a browser's and a post-quantum one), DNS messages decoded
//! (a query and a six-answer response), QUIC client Initials opened, and
//! the whole application step (frames in, DNS transactions and TLS
//! handshakes out, as `nta run` feeds it from the app ring).

use std::{hint::black_box, sync::Arc, time::Instant};

use agent_common::app::AppKind;
use nta::app::{
    dns,
    engine::{AppEngine, AppFrame},
    ja4::{Transport, ja4, ja4_raw},
    quic::{self, QUIC_V1, Side},
    stats::AppStats,
    tls,
};
use nta_lab::frames::{FrameSpec, L4};

use crate::report::mmm;

#[derive(clap::Args)]
pub struct MetadataArgs {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Calls per second of `f` over `n` calls.
fn rate(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn hello_rate(record: &[u8]) -> f64 {
    rate(200_000, |_| {
        if let Ok(tls::Hello::Client(c)) = tls::parse_record(black_box(record)) {
            black_box(ja4(&c, Transport::Tcp));
            black_box(ja4_raw(&c, Transport::Tcp));
        }
    })
}

fn dns_rate(message: &[u8]) -> f64 {
    rate(500_000, |_| {
        black_box(dns::parse(black_box(message)).ok());
    })
}

/// A response with six answers of the common kinds.
fn dns_response() -> Vec<u8> {
    use nta_lab::dns::{A, AAAA, CNAME, TXT, response, txt, wire_name};
    response(
        7,
        "www.example.com",
        A,
        0,
        &[
            (CNAME, wire_name("edge.example.net")),
            (A, vec![198, 18, 0, 1]),
            (A, vec![198, 18, 0, 2]),
            (
                AAAA,
                vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (TXT, txt(&[b"v=spf1 include:_spf.example.com -all"])),
            (15, [&[0, 10][..], &wire_name("mx.example.com")].concat()),
        ],
    )
}

fn quic_rate(datagram: &[u8]) -> f64 {
    rate(100_000, |_| {
        black_box(quic::read_datagram(black_box(datagram), Side::Client, None));
    })
}

/// DNS frames over UDP: a query from a distinct client port, then its
/// response; `pairs` of them.
fn dns_frames(pairs: u16) -> Vec<Vec<u8>> {
    let response = dns_response();
    let mut frames = Vec::with_capacity(2 * usize::from(pairs));
    for i in 0..pairs {
        let port = 20_000 + i;
        let mut q = nta_lab::dns::query(7, "www.example.com", nta_lab::dns::A);
        q[..2].copy_from_slice(&i.to_be_bytes());
        let mut r = response.clone();
        r[..2].copy_from_slice(&i.to_be_bytes());
        frames.push(
            FrameSpec::ipv4(L4::Udp {
                sport: port,
                dport: 53,
            })
            .with_payload_bytes(&q)
            .build(),
        );
        frames.push(
            FrameSpec::ipv4(L4::Udp {
                sport: 53,
                dport: port,
            })
            .with_payload_bytes(&r)
            .with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
            .build(),
        );
    }
    frames
}

/// Frames through the application step per second, and transactions out.
fn engine_rate(frames: &[Vec<u8>]) -> (f64, usize) {
    let mut engine = AppEngine::new(Arc::new(AppStats::default()));
    let mut done = 0;
    let start = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        engine.push(&AppFrame {
            kind: AppKind::Dns,
            unix_ns: i as u64 * 1000,
            ifindex: 1,
            frame_len: f.len() as u64,
            data: f,
        });
        if i % 1024 == 1023 {
            done += engine.take_dns().len();
        }
    }
    done += engine.take_dns().len();
    (frames.len() as f64 / start.elapsed().as_secs_f64(), done)
}

pub fn run(args: &MetadataArgs) -> anyhow::Result<String> {
    let browser = nta_lab::tls::browser_like("www.example.com").record();
    let pq = nta_lab::tls::post_quantum("www.example.com").record();
    let query = nta_lab::dns::query(7, "www.example.com", nta_lab::dns::A);
    let response = dns_response();
    let dcid = [0x5a; 8];
    let hello = nta_lab::tls::browser_like("www.example.com").handshake();
    let initial = quic::seal_initial(
        QUIC_V1,
        Side::Client,
        &dcid,
        (&dcid, &[]),
        0,
        &quic::crypto_frame(0, &hello),
    )
    .ok_or_else(|| anyhow::anyhow!("sealing a QUIC Initial"))?;
    let frames = dns_frames(50_000);
    let mut rows: Vec<(String, Vec<f64>)> = vec![
        (
            format!(
                "ClientHellos parsed with JA4 and JA4_r, browser-like ({} B), k/s",
                browser.len()
            ),
            vec![],
        ),
        (
            format!(
                "ClientHellos parsed with JA4 and JA4_r, post-quantum ({} B), k/s",
                pq.len()
            ),
            vec![],
        ),
        (
            format!("DNS queries decoded ({} B), k/s", query.len()),
            vec![],
        ),
        (
            format!(
                "DNS responses decoded (6 answers, {} B), k/s",
                response.len()
            ),
            vec![],
        ),
        (
            format!(
                "QUIC client Initials opened ({} B: keys, header protection, AES-GCM, frames), k/s",
                initial.len()
            ),
            vec![],
        ),
        (
            "application step, DNS frames over UDP (query and response paired), k frames/s".into(),
            vec![],
        ),
    ];
    let mut transactions = 0;
    for round in 0..args.rounds {
        eprintln!("metadata: round {}/{}", round + 1, args.rounds);
        let (engine, done) = engine_rate(&frames);
        transactions = done;
        for (row, value) in rows.iter_mut().zip([
            hello_rate(&browser),
            hello_rate(&pq),
            dns_rate(&query),
            dns_rate(&response),
            quic_rate(&initial),
            engine,
        ]) {
            row.1.push(value / 1e3);
        }
    }
    if transactions != frames.len() / 2 {
        anyhow::bail!(
            "the application step gave {transactions} transactions for {} pairs",
            frames.len() / 2
        );
    }
    let mut md = String::from("| figure | value |\n|---|---|\n");
    for (name, values) in rows {
        md.push_str(&format!("| {name} | {} |\n", mmm(values, 0)));
    }
    print!("{md}");
    Ok(md)
}
