//! Any bytes as a DNS message (a UDP payload) and as a stream of
//! length-prefixed messages (DNS over TCP): parsing never panics and
//! what it keeps stays within its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nta::app::dns::{self, MAX_ANSWERS, MAX_DATA_CHARS};

fuzz_target!(|data: &[u8]| {
    let (whole, _) = dns::tcp_messages(data);
    for bytes in std::iter::once(data).chain(whole) {
        if let Ok(m) = dns::parse(bytes) {
            assert!(m.answers.len() <= MAX_ANSWERS);
            assert!(m.answers.len() <= usize::from(m.counts[1]));
            for a in &m.answers {
                assert!(a.data.len() <= MAX_DATA_CHARS);
                // At most 255 bytes of name, each written as at most 4.
                assert!(a.name.len() <= 4 * 255, "{}", a.name);
            }
            if let Some(q) = &m.question {
                assert!(q.name.len() <= 4 * 255, "{}", q.name);
            }
            let _ = (dns::rcode_text(m.rcode), dns::opcode_text(m.opcode));
        }
    }
});
