//! A DNS transaction (a query and its response, or either alone) as a
//! JSON document: Elastic Common Schema's `dns.*`, `source`,
//! `destination`, `network` and `event.duration` (the response time),
//! like Packetbeat's DNS events and Zeek's dns.log; what ECS has no field
//! for sits under `nta.dns`.

use serde::Serialize;

use super::{Document, Endpoint, Event, Network, Origin};
use crate::app::{
    dns::{self, DnsMessage},
    dns_transactions::DnsTransaction,
};
use crate::pipeline::flow::Directions;

#[derive(Serialize)]
struct Body<'a> {
    dns: Dns<'a>,
    nta: Nta,
}

#[derive(Serialize)]
struct Dns<'a> {
    /// ECS types the id as a keyword.
    id: String,
    op_code: String,
    /// "answer" when the document carries a response, else "query".
    #[serde(rename = "type")]
    kind: &'static str,
    header_flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    question: Option<Question<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    answers: Vec<Answer<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resolved_ip: Vec<String>,
}

#[derive(Serialize)]
struct Question<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: String,
    class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subdomain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_level_domain: Option<&'a str>,
}

#[derive(Serialize)]
struct Answer<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: String,
    class: String,
    ttl: u32,
    data: &'a str,
}

#[derive(Serialize)]
struct Nta {
    dns: NtaDns,
}

#[derive(Serialize)]
struct NtaDns {
    /// Which messages were seen.
    query: bool,
    response: bool,
    /// The response's section counts, as its header gives them (the
    /// document keeps at most 32 answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    answers_count: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorities_count: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additionals_count: Option<u16>,
    /// The query's EDNS (the size a client accepts, DNSSEC wanted).
    #[serde(skip_serializing_if = "Option::is_none")]
    edns: Option<Edns>,
    /// Records stopped early (cut at the copy length, or malformed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

#[derive(Serialize)]
struct Edns {
    udp_size: u16,
    version: u8,
    dnssec_ok: bool,
}

/// Appends the document for `t` (no newline).
pub fn write(t: &DnsTransaction, origin: &Origin<'_>, directions: &Directions, out: &mut Vec<u8>) {
    let asked = t.asked();
    let last = t.response.as_ref().or(t.query.as_ref());
    let (mut source, mut destination) = Endpoint::pair(&t.client);
    source.bytes = t.query.as_ref().map(|q| q.len as u64);
    destination.bytes = t.response.as_ref().map(|r| r.len as u64);
    let response = t.response.as_ref();
    let resolved: Vec<String> = response.map_or_else(Vec::new, |r| {
        r.resolved_ips.iter().map(|ip| ip.to_string()).collect()
    });
    let body = Body {
        dns: Dns {
            id: asked.map_or(0, |m| m.id).to_string(),
            op_code: dns::opcode_text(asked.map_or(0, |m| m.opcode)),
            kind: if response.is_some() {
                "answer"
            } else {
                "query"
            },
            header_flags: last.map_or_else(Vec::new, |m| m.flag_names().collect()),
            response_code: response.map(|r| dns::rcode_text(r.rcode)),
            question: asked.and_then(|m| m.question.as_ref()).map(|q| {
                let parts = dns::name_parts(&q.name);
                Question {
                    name: &q.name,
                    kind: dns::type_text(q.qtype),
                    class: dns::class_text(q.qclass),
                    registered_domain: parts.map(|p| p.registered),
                    subdomain: parts.map(|p| p.subdomain).filter(|s| !s.is_empty()),
                    top_level_domain: parts.map(|p| p.suffix),
                }
            }),
            answers: response.map_or_else(Vec::new, |r| {
                r.answers
                    .iter()
                    .map(|a| Answer {
                        name: &a.name,
                        kind: dns::type_text(a.rtype),
                        class: dns::class_text(a.class),
                        ttl: a.ttl,
                        data: &a.data,
                    })
                    .collect()
            }),
            resolved_ip: resolved.clone(),
        },
        nta: Nta {
            dns: NtaDns {
                query: t.query.is_some(),
                response: response.is_some(),
                answers_count: response.map(|r| r.counts[1]),
                authorities_count: response.map(|r| r.counts[2]),
                additionals_count: response.map(|r| r.counts[3]),
                edns: t
                    .query
                    .as_ref()
                    .and_then(edns)
                    .or_else(|| response.and_then(edns)),
                partial: t.query.as_ref().is_some_and(|m| m.partial)
                    || response.is_some_and(|m| m.partial),
            },
        },
    };
    Document::new(
        t.unix_ns,
        t.ifindex,
        origin,
        Event::protocol("dns_transaction", "nta.dns", t.duration_ns),
        Network::of(&t.client, "dns", directions),
        (source, destination),
        &resolved,
        body,
    )
    .write(out);
}

fn edns(m: &DnsMessage) -> Option<Edns> {
    m.edns.map(|e| Edns {
        udp_size: e.udp_size,
        version: e.version,
        dnssec_ok: e.dnssec_ok,
    })
}
