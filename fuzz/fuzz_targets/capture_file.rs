//! Any bytes as a capture file (pcap, pcapng, gzip of either): reading
//! never panics or hangs, and stops at damage with the frames before it.
#![no_main]

use std::sync::{Arc, atomic::AtomicU64};

use libfuzzer_sys::fuzz_target;
use nta::offline::capture::{CaptureFile, Packet};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("nta-fuzz-{}.cap", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut file) = CaptureFile::open(&path, Arc::new(AtomicU64::new(0))) {
        let mut packet = Packet::default();
        let mut frames = 0u64;
        while file.next_packet(&mut packet) {
            frames += 1;
            // A frame is never longer than the bytes that held it.
            assert!(packet.data.len() <= data.len().saturating_mul(1024) + 65_536);
        }
        let _ = frames;
    }
    // Nothing left behind in /tmp.
    let _ = std::fs::remove_file(&path);
});
