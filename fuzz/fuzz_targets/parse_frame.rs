//! Any bytes as a frame: the shared parser (the XDP program's too), the
//! counting rule, the sample record and its decoder, and the capture
//! filter's matcher must never panic, and must agree with each other.
#![no_main]

use agent_common::{
    counters::Counters,
    parse,
    sample::{SampleMeta, SampleRecord},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let p = parse::parse(frame);
    // Malformed exactly when an error is named.
    assert_eq!(
        p.error.is_some(),
        p.class == agent_common::class::ProtocolClass::Malformed
    );
    let mut counters = Counters::default();
    counters.count(&p, frame.len() as u64);
    assert_eq!(
        counters.packets.iter().sum::<u64>(),
        1,
        "one class per frame"
    );
    let record = SampleRecord::from_parsed(
        &p,
        p.addresses(frame),
        SampleMeta {
            frame_len: frame.len() as u32,
            sample_rate: 1,
            ..SampleMeta::default()
        },
    );
    assert_eq!(SampleRecord::decode(record.as_bytes()), Ok(record));
    assert_eq!(record.parse_error(), p.error);
});
