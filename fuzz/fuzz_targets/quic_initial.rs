//! Any bytes as a datagram of QUIC long-header packets, opened as a
//! client's and as a server's: header parsing, key derivation, header
//! protection and frame reading never panic. The first input byte, when
//! odd, seals the rest as the payload of a real Initial first, so the
//! frame reader behind the decryption is reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nta::app::quic::{MAX_CRYPTO_OFFSET, QUIC_V1, Side, read_datagram, runs, seal_initial};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dcid = [0x42u8; 8];
    let sealed;
    let datagram = if mode & 1 == 1 {
        match seal_initial(QUIC_V1, Side::Client, &dcid, (&dcid, &[]), 0, rest) {
            Some(p) => {
                sealed = p;
                &sealed[..]
            }
            None => return,
        }
    } else {
        rest
    };
    for (side, key) in [(Side::Client, None), (Side::Server, Some(&dcid[..]))] {
        let (initials, _) = read_datagram(datagram, side, key);
        for i in &initials {
            assert!(i.dcid.len() <= 20 && i.scid.len() <= 20);
            for (offset, run) in runs(&i.crypto) {
                assert!(offset < MAX_CRYPTO_OFFSET);
                assert!(run.len() <= datagram.len());
            }
        }
    }
});
