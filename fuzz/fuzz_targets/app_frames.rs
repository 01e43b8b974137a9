//! Any sequence of selected frames through the application step (as the
//! app ring hands them over): frame parsing, hello reassembly and
//! pairing never panic, stay within their bounds, every handshake
//! reported carries at least one hello and every DNS transaction at least
//! one message. Input: records of a kind byte,
//! a 2-byte length and that many frame bytes.
#![no_main]

use std::sync::Arc;

use agent_common::app::AppKind;
use libfuzzer_sys::fuzz_target;
use nta::app::{
    engine::{AppEngine, AppFrame},
    stats::AppStats,
};

fuzz_target!(|data: &[u8]| {
    let mut engine = AppEngine::new(Arc::new(AppStats::default()));
    let mut rest = data;
    let mut t = 0u64;
    let mut reported = Vec::new();
    let mut transactions = Vec::new();
    while rest.len() >= 3 {
        let kind = AppKind::ALL[usize::from(rest[0]) % AppKind::ALL.len()];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let frame = &rest[3..3 + len];
        rest = &rest[3 + len..];
        t += 1_000_000_000;
        engine.push(&AppFrame {
            kind,
            unix_ns: t,
            ifindex: 1,
            frame_len: frame.len() as u64,
            data: frame,
        });
        engine.tick(t);
        reported.extend(engine.take());
        transactions.extend(engine.take_dns());
    }
    engine.finish();
    reported.extend(engine.take());
    transactions.extend(engine.take_dns());
    for h in &reported {
        assert!(h.client_hello.is_some() || h.server_hello.is_some());
    }
    for t in &transactions {
        assert!(t.query.is_some() || t.response.is_some());
    }
});
