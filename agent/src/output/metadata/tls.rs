//! A TLS or QUIC handshake as a JSON document: Elastic Common Schema's
//! `tls.*`, `source`, `destination` and `network` fields (like Zeek's
//! ssl.log and Suricata's eve `tls` events in ECS form), with what ECS
//! has no field for under `nta.tls` (JA4 sits at `tls.client.ja4`).

use serde::Serialize;
use tls_parser::TlsCipherSuite;

use super::{Document, Endpoint, Event, Network, Origin};
use crate::app::{
    handshakes::Handshake,
    ja4::{self, Transport},
    tls::{is_grease, version_words},
};
use crate::pipeline::flow::Directions;

#[derive(Serialize)]
struct Body {
    tls: Tls,
    nta: Nta,
}

#[derive(Serialize)]
struct Tls {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<TlsClient>,
}

#[derive(Serialize)]
struct TlsClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<String>,
    supported_ciphers: Vec<String>,
    ja4: String,
}

#[derive(Serialize)]
struct Nta {
    tls: NtaTls,
}

#[derive(Serialize)]
struct NtaTls {
    /// Which hellos were seen.
    client_hello: bool,
    server_hello: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<NtaClient>,
}

#[derive(Serialize)]
struct NtaClient {
    ja4_r: String,
    alpn: Vec<String>,
    /// supported_versions in words ("tls1.3"), GREASE left out.
    versions: Vec<String>,
    signature_algorithms: Vec<u16>,
    supported_groups: Vec<u16>,
    extensions: Vec<u16>,
}

/// IANA's name of a cipher suite, or its number in hex.
fn cipher_name(id: u16) -> String {
    TlsCipherSuite::from_id(id).map_or_else(|| format!("0x{id:04x}"), |c| c.name.to_string())
}

fn version_text(v: u16) -> String {
    version_words(v).map_or_else(|| format!("0x{v:04x}"), |(p, n)| format!("{p}{n}"))
}

fn alpn_text(id: &[u8]) -> String {
    String::from_utf8_lossy(id).into_owned()
}

fn without_grease(list: &[u16]) -> Vec<u16> {
    list.iter().copied().filter(|v| !is_grease(*v)).collect()
}

/// Appends the document for `h` (no newline).
pub fn write(h: &Handshake, origin: &Origin<'_>, directions: &Directions, out: &mut Vec<u8>) {
    let (version_protocol, version) = h
        .server_hello
        .as_ref()
        .and_then(|s| version_words(s.version))
        .map_or((None, None), |(p, n)| (Some(p), Some(n)));
    let client = h.client_hello.as_ref();
    let protocol = if h.transport == Transport::Quic {
        "quic"
    } else {
        "tls"
    };
    let body = Body {
        tls: Tls {
            version,
            version_protocol,
            cipher: h.server_hello.as_ref().map(|s| cipher_name(s.cipher_suite)),
            next_protocol: h
                .server_hello
                .as_ref()
                .and_then(|s| s.alpn.as_deref())
                .map(alpn_text),
            client: client.map(|c| TlsClient {
                server_name: c.server_name.clone(),
                supported_ciphers: without_grease(&c.cipher_suites)
                    .into_iter()
                    .map(cipher_name)
                    .collect(),
                ja4: ja4::ja4(c, h.transport),
            }),
        },
        nta: Nta {
            tls: NtaTls {
                client_hello: client.is_some(),
                server_hello: h.server_hello.is_some(),
                client: client.map(|c| NtaClient {
                    ja4_r: ja4::ja4_raw(c, h.transport),
                    alpn: c.alpn.iter().map(|a| alpn_text(a)).collect(),
                    versions: without_grease(&c.supported_versions)
                        .into_iter()
                        .map(version_text)
                        .collect(),
                    signature_algorithms: c.signature_algorithms.clone(),
                    supported_groups: without_grease(&c.supported_groups),
                    extensions: without_grease(&c.extensions),
                }),
            },
        },
    };
    Document::new(
        h.unix_ns,
        h.ifindex,
        origin,
        Event::protocol("tls_handshake", "nta.tls", None),
        Network::of(&h.client, protocol, directions),
        Endpoint::pair(&h.client),
        &[],
        body,
    )
    .write(out);
}
