//! JA4, the TLS client fingerprint (FoxIO, BSD-3-Clause; the rest of
//! JA4+ is under another licence and not here). Written from the
//! specification, since the one needed input, the parsed ClientHello, is
//! ours already: `a_b_c` where `a` is transport, version, SNI or not, the
//! counts of ciphers and extensions and the ALPN's ends; `b` the
//! truncated SHA-256 of the sorted ciphers; `c` that of the sorted
//! extensions (without SNI and ALPN) and the signature algorithms in wire
//! order. GREASE values are ignored everywhere.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use super::tls::{ClientHello, is_grease, offered_version, version_code};

/// What carried the hello: the fingerprint's first character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
    Dtls,
}

impl Transport {
    /// Metric label and the ECS `network.transport` keyword it runs over.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Dtls => "dtls",
        }
    }

    fn letter(self) -> char {
        match self {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        }
    }
}

/// The JA4 fingerprint of `hello`.
pub fn ja4(hello: &ClientHello, transport: Transport) -> String {
    let parts = Parts::of(hello);
    format!(
        "{}_{}_{}",
        prefix(hello, transport, &parts),
        truncated_hash(&parts.ciphers),
        truncated_hash(&parts.extension_string())
    )
}

/// JA4_r, the same with the lists instead of their hashes (for reading
/// and testing a fingerprint).
pub fn ja4_raw(hello: &ClientHello, transport: Transport) -> String {
    let parts = Parts::of(hello);
    format!(
        "{}_{}_{}",
        prefix(hello, transport, &parts),
        parts.ciphers,
        parts.extension_string()
    )
}

/// The lists as the hashes take them: four lower-case hex digits, comma
/// separated, GREASE removed.
struct Parts {
    cipher_count: usize,
    extension_count: usize,
    ciphers: String,
    extensions: String,
    signature_algorithms: String,
}

impl Parts {
    fn of(hello: &ClientHello) -> Parts {
        let real = |v: &[u16]| {
            v.iter()
                .copied()
                .filter(|v| !is_grease(*v))
                .collect::<Vec<_>>()
        };
        let mut ciphers = real(&hello.cipher_suites);
        let all_extensions = real(&hello.extensions);
        // SNI and ALPN are in the prefix already.
        let mut extensions: Vec<u16> = all_extensions
            .iter()
            .copied()
            .filter(|e| *e != 0x0000 && *e != 0x0010)
            .collect();
        ciphers.sort_unstable();
        extensions.sort_unstable();
        Parts {
            cipher_count: ciphers.len(),
            extension_count: all_extensions.len(),
            ciphers: hex_list(&ciphers),
            extensions: hex_list(&extensions),
            signature_algorithms: hex_list(&real(&hello.signature_algorithms)),
        }
    }

    /// Sorted extensions, then `_` and the signature algorithms when
    /// there are any.
    fn extension_string(&self) -> String {
        if self.signature_algorithms.is_empty() {
            self.extensions.clone()
        } else {
            format!("{}_{}", self.extensions, self.signature_algorithms)
        }
    }
}

fn hex_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v:04x}");
    }
    out
}

/// The first 12 hex digits of the SHA-256 of `list`; twelve zeros for an
/// empty list.
fn truncated_hash(list: &str) -> String {
    if list.is_empty() {
        return "000000000000".to_string();
    }
    let digest = Sha256::digest(list.as_bytes());
    let mut out = String::with_capacity(12);
    for b in &digest[..6] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn prefix(hello: &ClientHello, transport: Transport, parts: &Parts) -> String {
    format!(
        "{}{}{}{:02}{:02}{}",
        transport.letter(),
        version_code(offered_version(hello)),
        if hello.has_sni { 'd' } else { 'i' },
        parts.cipher_count.min(99),
        parts.extension_count.min(99),
        alpn_code(hello.alpn.first().map(Vec::as_slice))
    )
}

/// The first and last characters of the first ALPN value; "00" without
/// one; the first and last hex digits of the value when either end is
/// not an ASCII letter or digit.
fn alpn_code(first: Option<&[u8]>) -> String {
    let Some(value) = first.filter(|v| !v.is_empty()) else {
        return "00".to_string();
    };
    let (a, z) = (value[0], value[value.len() - 1]);
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        format!("{}{}", a as char, z as char)
    } else {
        let hex = format!("{a:02x}{z:02x}");
        format!("{}{}", &hex[..1], &hex[3..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nta_lab::tls::{HelloBuilder, alpn, list16, sni, versions};

    use crate::app::tls::{Hello, parse_record};

    /// The specification's example ClientHello: its ciphers, extensions
    /// and signature algorithms in the order given there, with GREASE
    /// added in front of each list (it must change nothing).
    fn spec_example(signature_algorithms: bool) -> ClientHello {
        let mut extensions = vec![(0x0a0a, vec![])];
        for t in [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ] {
            let data = match t {
                0x0000 => sni("example.com"),
                0x0010 => alpn(&[b"h2", b"http/1.1"]),
                0x002b => versions(&[0x1a1a, 0x0304, 0x0303]),
                0x000d => list16(&[
                    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                ]),
                0x000a => list16(&[0x2a2a, 0x001d, 0x0017, 0x0018]),
                0x000b => vec![1, 0],
                0x002d => vec![1, 1],
                0x0033 => {
                    let mut ks = vec![0x00, 0x1d, 0x00, 0x20];
                    ks.extend([7u8; 32]);
                    let mut out = (ks.len() as u16).to_be_bytes().to_vec();
                    out.extend(ks);
                    out
                }
                0x0005 => vec![1, 0, 0, 0, 0],
                0xff01 => vec![0],
                0x001b => vec![2, 0, 2],
                0x4469 => list16(&[]),
                0x0015 => vec![0; 10],
                // extended master secret, session ticket, SCT: empty
                _ => vec![],
            };
            if t == 0x000d && !signature_algorithms {
                continue;
            }
            extensions.push((t, data));
        }
        let builder = HelloBuilder {
            ciphers: vec![
                0xdada, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
                0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions,
        };
        match parse_record(&builder.record()) {
            Ok(Hello::Client(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_specifications_example_gives_its_fingerprint() {
        let hello = spec_example(true);
        // JA4.md: "JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1".
        assert_eq!(
            ja4(&hello, Transport::Tcp),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(
            ja4_raw(&hello, Transport::Tcp),
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
             0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
             0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert!(ja4(&hello, Transport::Quic).starts_with("q13d1516h2_"));
    }

    #[test]
    fn without_signature_algorithms_the_list_ends_without_an_underscore() {
        // JA4.md: "0005,000a,000b,0012,...,ff01 = 6d807ffa2a79" lists the
        // extensions with 000d; this hello leaves the extension out, so
        // check the rule on the string itself.
        assert_eq!(
            truncated_hash("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"),
            "6d807ffa2a79"
        );
        let hello = spec_example(false);
        let raw = ja4_raw(&hello, Transport::Tcp);
        assert!(raw.ends_with("0033,4469,ff01"), "{raw}");
        assert!(raw.starts_with("t13d1515h2_"), "{raw}");
    }

    #[test]
    fn alpn_no_sni_old_versions_and_empty_lists() {
        assert_eq!(alpn_code(None), "00");
        assert_eq!(alpn_code(Some(b"")), "00");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(Some(b"h")), "hh");
        // Not alphanumeric at an end: hex digits instead.
        assert_eq!(alpn_code(Some(&[0xab, b'x', 0xcd])), "ad");
        let bare = ClientHello {
            legacy_version: 0x0301,
            ..ClientHello::default()
        };
        assert_eq!(
            ja4(&bare, Transport::Tcp),
            "t10i000000_000000000000_000000000000"
        );
        let many = ClientHello {
            legacy_version: 0x0300,
            cipher_suites: (1..=120).collect(),
            ..ClientHello::default()
        };
        assert!(ja4(&many, Transport::Tcp).starts_with("ts3i9900"));
    }
}
