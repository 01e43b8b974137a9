//! TLS ClientHello and ServerHello, read from the first bytes of a
//! handshake: what nta reports about encrypted traffic (server name,
//! ALPN, versions, cipher) and what JA4 is computed from. Parsing is
//! tls-parser's (rusticata); this module picks the fields and turns every
//! failure into a reason that can be counted.

use tls_parser::{
    TlsExtension, TlsExtensionType, TlsMessage, TlsMessageHandshake,
    parse_tls_client_hello_extensions, parse_tls_message_handshake, parse_tls_plaintext,
    parse_tls_server_hello_extensions,
};

/// The longest server name kept (a DNS name is at most 253 characters).
pub const MAX_SERVER_NAME: usize = 255;
/// The most ALPN protocols kept, and the longest kept of each.
pub const MAX_ALPN: usize = 16;
pub const MAX_ALPN_LEN: usize = 64;

/// Why a payload gave no hello; its text is the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsError {
    /// The bytes end before the record or message does (more segments
    /// may complete it).
    Incomplete,
    /// Not a TLS handshake record.
    NotHandshake,
    /// A handshake, but neither ClientHello nor ServerHello.
    NotHello,
    /// The hello or its extensions do not parse.
    Malformed,
}

impl TlsError {
    pub const ALL: [TlsError; 4] = [
        TlsError::Incomplete,
        TlsError::NotHandshake,
        TlsError::NotHello,
        TlsError::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsError::Incomplete => "incomplete",
            TlsError::NotHandshake => "not_handshake",
            TlsError::NotHello => "not_hello",
            TlsError::Malformed => "malformed",
        }
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for TlsError {}

/// What a ClientHello offers, lists in wire order with GREASE kept (JA4
/// and the outputs drop it where they must).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The version field of the hello itself (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// supported_versions (0x002b), if sent.
    pub supported_versions: Vec<u16>,
    /// The host name of server_name (0x0000), if sent and a host name.
    pub server_name: Option<String>,
    /// Whether the server_name extension was sent at all.
    pub has_sni: bool,
    /// application_layer_protocol_negotiation (0x0010) protocol ids.
    pub alpn: Vec<Vec<u8>>,
    pub cipher_suites: Vec<u16>,
    /// Extension types in wire order.
    pub extensions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
    pub supported_groups: Vec<u16>,
}

/// What a ServerHello chose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// supported_versions' choice (TLS 1.3), else the hello's version.
    pub version: u16,
    pub cipher_suite: u16,
    pub alpn: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    Client(ClientHello),
    Server(ServerHello),
}

/// GREASE values (RFC 8701): 0x?a?a with both bytes equal.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// A hello at the start of a TLS record stream (TCP payload).
pub fn parse_record(bytes: &[u8]) -> Result<Hello, TlsError> {
    // Content type 22 (handshake); anything else is not ours.
    if bytes.first() != Some(&22) {
        return Err(TlsError::NotHandshake);
    }
    let (_, record) = parse_tls_plaintext(bytes).map_err(nom_error)?;
    record
        .msg
        .iter()
        .find_map(|m| match m {
            TlsMessage::Handshake(h) => Some(from_handshake(h)),
            _ => None,
        })
        .unwrap_or(Err(TlsError::NotHello))
}

/// A hello as a bare handshake message (QUIC's CRYPTO frames carry them
/// without the record layer).
pub fn parse_handshake(bytes: &[u8]) -> Result<Hello, TlsError> {
    let (_, message) = parse_tls_message_handshake(bytes).map_err(nom_error)?;
    match &message {
        TlsMessage::Handshake(h) => from_handshake(h),
        _ => Err(TlsError::NotHandshake),
    }
}

fn nom_error<E>(e: tls_parser::nom::Err<E>) -> TlsError {
    match e {
        tls_parser::nom::Err::Incomplete(_) => TlsError::Incomplete,
        _ => TlsError::Malformed,
    }
}

fn from_handshake(h: &TlsMessageHandshake<'_>) -> Result<Hello, TlsError> {
    match h {
        TlsMessageHandshake::ClientHello(c) => {
            let mut hello = ClientHello {
                legacy_version: c.version.0,
                cipher_suites: c.ciphers.iter().map(|c| c.0).collect(),
                ..ClientHello::default()
            };
            if let Some(ext) = c.ext {
                let (_, extensions) =
                    parse_tls_client_hello_extensions(ext).map_err(|_| TlsError::Malformed)?;
                for e in &extensions {
                    hello.extensions.push(extension_type(e));
                    client_extension(e, &mut hello);
                }
            }
            Ok(Hello::Client(hello))
        }
        TlsMessageHandshake::ServerHello(s) => {
            let mut hello = ServerHello {
                version: s.version.0,
                cipher_suite: s.cipher.0,
                alpn: None,
            };
            if let Some(ext) = s.ext {
                let (_, extensions) =
                    parse_tls_server_hello_extensions(ext).map_err(|_| TlsError::Malformed)?;
                for e in &extensions {
                    match e {
                        TlsExtension::SupportedVersions(v) => {
                            if let Some(chosen) = v.first() {
                                hello.version = chosen.0;
                            }
                        }
                        TlsExtension::ALPN(p) => {
                            hello.alpn = p.first().map(|p| bounded(p, MAX_ALPN_LEN));
                        }
                        _ => {}
                    }
                }
            }
            Ok(Hello::Server(hello))
        }
        _ => Err(TlsError::NotHello),
    }
}

fn extension_type(e: &TlsExtension<'_>) -> u16 {
    match e {
        // The GREASE value itself, not tls-parser's one label for all.
        TlsExtension::Grease(v, _) => *v,
        _ => TlsExtensionType::from(e).0,
    }
}

fn client_extension(e: &TlsExtension<'_>, hello: &mut ClientHello) {
    match e {
        TlsExtension::SNI(names) => {
            hello.has_sni = true;
            // Type 0 is host_name, the only one defined.
            hello.server_name = names.iter().find(|(t, _)| t.0 == 0).map(|(_, n)| {
                String::from_utf8_lossy(&n[..n.len().min(MAX_SERVER_NAME)]).into_owned()
            });
        }
        TlsExtension::ALPN(protocols) => {
            hello.alpn = protocols
                .iter()
                .take(MAX_ALPN)
                .map(|p| bounded(p, MAX_ALPN_LEN))
                .collect();
        }
        TlsExtension::SupportedVersions(v) => {
            hello.supported_versions = v.iter().map(|v| v.0).collect();
        }
        TlsExtension::SignatureAlgorithms(s) => hello.signature_algorithms = s.clone(),
        TlsExtension::EllipticCurves(g) => {
            hello.supported_groups = g.iter().map(|g| g.0).collect();
        }
        _ => {}
    }
}

fn bounded(bytes: &[u8], max: usize) -> Vec<u8> {
    bytes[..bytes.len().min(max)].to_vec()
}

/// Every version nta names: number, JA4's two characters, ECS
/// `tls.version_protocol` and `tls.version`.
const VERSIONS: [(u16, &str, &str, &str); 10] = [
    (0x0304, "13", "tls", "1.3"),
    (0x0303, "12", "tls", "1.2"),
    (0x0302, "11", "tls", "1.1"),
    (0x0301, "10", "tls", "1.0"),
    (0x0300, "s3", "ssl", "3.0"),
    (0x0200, "s2", "ssl", "2.0"),
    (0x0100, "s1", "ssl", "1.0"),
    (0xfeff, "d1", "dtls", "1.0"),
    (0xfefd, "d2", "dtls", "1.2"),
    (0xfefc, "d3", "dtls", "1.3"),
];

/// ECS `tls.version_protocol` and `tls.version` for a version number
/// (`None`: not a version nta knows).
pub fn version_words(v: u16) -> Option<(&'static str, &'static str)> {
    VERSIONS
        .iter()
        .find(|row| row.0 == v)
        .map(|row| (row.2, row.3))
}

/// Slots of [`version_slot`]: one per version nta names, one for the rest.
pub const VERSION_SLOTS: usize = VERSIONS.len() + 1;

/// A version's slot in per-version counters (the last: unknown).
pub fn version_slot(v: u16) -> usize {
    VERSIONS
        .iter()
        .position(|row| row.0 == v)
        .unwrap_or(VERSIONS.len())
}

/// The metric label of a slot: the ECS words joined ("tls1.3"), or
/// "unknown".
pub fn version_slot_label(slot: usize) -> String {
    VERSIONS.get(slot).map_or_else(
        || "unknown".to_string(),
        |row| format!("{}{}", row.2, row.3),
    )
}

/// JA4's two characters for a version ("00": unknown).
pub fn version_code(v: u16) -> &'static str {
    VERSIONS
        .iter()
        .find(|row| row.0 == v)
        .map_or("00", |row| row.1)
}

/// The version a ClientHello offers at best: supported_versions' highest
/// (GREASE ignored), else the hello's own.
pub fn offered_version(hello: &ClientHello) -> u16 {
    hello
        .supported_versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        // DTLS counts down (0xfeff is 1.0, 0xfefc 1.3).
        .max_by_key(|v| {
            if v >> 8 == 0xfe {
                0x0300 + (0xff - (v & 0xff))
            } else {
                *v
            }
        })
        .unwrap_or(hello.legacy_version)
}

#[cfg(test)]
mod tests {
    use nta_lab::tls::{HelloBuilder, alpn, list16, sni, versions};

    use super::*;

    fn chrome_like() -> HelloBuilder {
        HelloBuilder {
            ciphers: vec![0x2a2a, 0x1301, 0x1302, 0xc02b],
            extensions: vec![
                (0x3a3a, vec![]),
                (0x0000, sni("www.example.org")),
                (0x0010, alpn(&[b"h2", b"http/1.1"])),
                (0x002b, versions(&[0x4a4a, 0x0304, 0x0303])),
                (0x000d, list16(&[0x0403, 0x0804])),
                (0x000a, list16(&[0x5a5a, 0x11ec, 0x001d])),
            ],
        }
    }

    #[test]
    fn a_client_hello_gives_its_fields_in_wire_order() {
        let hello = match parse_record(&chrome_like().record()) {
            Ok(Hello::Client(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(hello.server_name.as_deref(), Some("www.example.org"));
        assert!(hello.has_sni);
        assert_eq!(hello.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(hello.cipher_suites, [0x2a2a, 0x1301, 0x1302, 0xc02b]);
        assert_eq!(
            hello.extensions,
            [0x3a3a, 0x0000, 0x0010, 0x002b, 0x000d, 0x000a]
        );
        assert_eq!(hello.signature_algorithms, [0x0403, 0x0804]);
        assert_eq!(hello.supported_groups, [0x5a5a, 0x11ec, 0x001d]);
        assert_eq!(offered_version(&hello), 0x0304);
        // The same message without the record layer (QUIC).
        assert_eq!(
            parse_handshake(&chrome_like().handshake()),
            Ok(Hello::Client(hello))
        );
    }

    #[test]
    fn cut_or_foreign_bytes_are_reasons_not_panics() {
        let record = chrome_like().record();
        for cut in [6, 40, record.len() - 1] {
            assert_eq!(
                parse_record(&record[..cut]),
                Err(TlsError::Incomplete),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_record(b"GET / HTTP/1.1\r\n"),
            Err(TlsError::NotHandshake)
        );
        // A handshake record holding a Finished-like message type 20.
        let mut other = record.clone();
        other[5] = 20;
        assert!(matches!(
            parse_record(&other),
            Err(TlsError::NotHello | TlsError::Malformed)
        ));
    }

    #[test]
    fn grease_is_recognised() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x4a4a));
        assert!(!is_grease(0x0a1a) && !is_grease(0x1301) && !is_grease(0x0000));
    }

    #[test]
    fn versions_in_words_and_the_best_offered() {
        assert_eq!(version_words(0x0304), Some(("tls", "1.3")));
        assert_eq!(version_words(0x0300), Some(("ssl", "3.0")));
        assert_eq!(version_words(0x1234), None);
        assert_eq!((version_code(0xfefc), version_code(0x1234)), ("d3", "00"));
        let dtls = ClientHello {
            supported_versions: vec![0xfeff, 0xfefc, 0xfefd],
            ..ClientHello::default()
        };
        assert_eq!(offered_version(&dtls), 0xfefc);
        let old = ClientHello {
            legacy_version: 0x0301,
            ..ClientHello::default()
        };
        assert_eq!(offered_version(&old), 0x0301);
    }
}
