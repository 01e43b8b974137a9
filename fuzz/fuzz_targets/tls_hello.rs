//! Any bytes as the start of a TLS record stream or a bare handshake
//! message: parsing never panics, and a ClientHello always gives a
//! well-formed JA4 (10 + 1 + 12 + 1 + 12 characters) for every transport.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nta::app::{
    ja4::{Transport, ja4},
    tls::{Hello, parse_handshake, parse_record},
};

fuzz_target!(|data: &[u8]| {
    for parsed in [parse_record(data), parse_handshake(data)] {
        if let Ok(Hello::Client(hello)) = parsed {
            assert!(hello.alpn.len() <= nta::app::tls::MAX_ALPN);
            for t in [Transport::Tcp, Transport::Quic, Transport::Dtls] {
                let fp = ja4(&hello, t);
                assert_eq!(fp.len(), 36, "{fp}");
                assert!(fp.is_ascii(), "{fp}");
            }
        }
    }
});
