//! DNS messages (RFC 1035 and its extensions: EDNS, SVCB/HTTPS) as the
//! logs and detectors use them: the header, the first question, the
//! answers in presentation form, the addresses resolved. Names and
//! records are decoded by hickory-proto (compression pointers must point
//! backwards, names are bounded at 255 bytes, unknown types are kept as
//! their number). What is written here: the header read straight from
//! its 12 bytes (flags and the raw response code, which the crate folds
//! into types), a check that the section counts fit the message before
//! anything is allocated for them, and reading record by record so a
//! message whose tail is cut or malformed still gives its question.

use std::net::IpAddr;

use hickory_proto::{
    op::Query,
    rr::{
        Name, RData, Record, RecordType,
        rdata::svcb::{SVCB, SvcParamKey, SvcParamValue},
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable},
};

/// Answers kept per message (the counts stay exact).
pub const MAX_ANSWERS: usize = 32;
/// Characters kept of one answer's data (long TXT records).
pub const MAX_DATA_CHARS: usize = 512;
const HEADER_BYTES: usize = 12;
/// Least bytes a question (root name, type, class) and a record (root
/// name, type, class, TTL, data length) take.
const MIN_QUESTION_BYTES: usize = 5;
const MIN_RECORD_BYTES: usize = 11;

/// Why a payload gave no message; the text is a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// Shorter than a DNS header.
    TooShort,
    /// The header announces more questions and records than the bytes
    /// can hold (not DNS, or built to make readers allocate).
    CountsExceedLength,
    /// The question does not decode.
    Malformed,
    /// A message over TCP began in a segment cut by the copy length, so
    /// the segments after it cannot complete it.
    CutShort,
}

impl DnsError {
    pub const ALL: [DnsError; 4] = [
        DnsError::TooShort,
        DnsError::CountsExceedLength,
        DnsError::Malformed,
        DnsError::CutShort,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DnsError::TooShort => "too_short",
            DnsError::CountsExceedLength => "counts_exceed_length",
            DnsError::Malformed => "malformed",
            DnsError::CutShort => "cut_short",
        }
    }
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for DnsError {}

/// Header flag bits, in the order ECS lists `dns.header_flags`.
pub const HEADER_FLAGS: [(u16, &str); 6] = [
    (0x0400, "AA"),
    (0x0200, "TC"),
    (0x0100, "RD"),
    (0x0080, "RA"),
    (0x0020, "AD"),
    (0x0010, "CD"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuestion {
    /// Presentation form without the final dot ("." for the root);
    /// bytes outside printable ASCII as `\DDD`.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// The record's data in presentation form (as `dig` prints it, names
    /// without their final dot).
    pub data: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    /// Header flag bits (see [`HEADER_FLAGS`]).
    pub flags: u16,
    /// With EDNS's upper bits.
    pub rcode: u16,
    /// Questions, answers, authorities, additionals, as the header says.
    pub counts: [u16; 4],
    pub question: Option<DnsQuestion>,
    /// At most [`MAX_ANSWERS`], in message order.
    pub answers: Vec<DnsAnswer>,
    /// Addresses of the A and AAAA answers.
    pub resolved_ips: Vec<IpAddr>,
    pub edns: Option<Edns>,
    /// Bytes of the message.
    pub len: usize,
    /// Its records stop early (cut by the copy length, or malformed):
    /// what is here was read, the rest was not.
    pub partial: bool,
}

impl DnsMessage {
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        HEADER_FLAGS
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, name)| *name)
            .chain(self.edns.is_some_and(|e| e.dnssec_ok).then_some("DO"))
    }
}

/// Reads one DNS message (a UDP payload, or a TCP message without its
/// length prefix).
pub fn parse(bytes: &[u8]) -> Result<DnsMessage, DnsError> {
    let header: &[u8; HEADER_BYTES] = bytes
        .get(..HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or(DnsError::TooShort)?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let counts = [word(4), word(6), word(8), word(10)];
    let needed = usize::from(counts[0]) * MIN_QUESTION_BYTES
        + (usize::from(counts[1]) + usize::from(counts[2]) + usize::from(counts[3]))
            * MIN_RECORD_BYTES;
    if needed > bytes.len() - HEADER_BYTES {
        return Err(DnsError::CountsExceedLength);
    }
    let mut m = DnsMessage {
        id: word(0),
        response: header[2] & 0x80 != 0,
        opcode: (header[2] >> 3) & 0x0f,
        flags: word(2) & 0x07b0,
        rcode: u16::from(header[3] & 0x0f),
        counts,
        question: None,
        answers: Vec::new(),
        resolved_ips: Vec::new(),
        edns: None,
        len: bytes.len(),
        partial: false,
    };
    let mut d = BinDecoder::new(bytes);
    d.read_slice(HEADER_BYTES).map_err(|_| DnsError::TooShort)?;
    for i in 0..counts[0] {
        let q = Query::read(&mut d).map_err(|_| DnsError::Malformed)?;
        if i == 0 {
            m.question = Some(DnsQuestion {
                name: name_text(q.name()),
                qtype: u16::from(q.query_type()),
                qclass: u16::from(q.query_class()),
            });
        }
    }
    let records = u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]);
    for i in 0..records {
        let Ok(r) = Record::read(&mut d) else {
            m.partial = true;
            break;
        };
        if i < u32::from(counts[1]) {
            m.answer(&r);
        } else if r.record_type() == RecordType::OPT && m.edns.is_none() {
            m.edns = Some(Edns {
                udp_size: u16::from(r.dns_class),
                version: (r.ttl >> 16) as u8,
                dnssec_ok: r.ttl & 0x8000 != 0,
            });
            m.rcode |= ((r.ttl >> 24) as u16) << 4;
        }
    }
    Ok(m)
}

impl DnsMessage {
    fn answer(&mut self, r: &Record) {
        match &r.data {
            RData::A(a) => self.resolved_ips.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => self.resolved_ips.push(IpAddr::V6(a.0)),
            _ => {}
        }
        if self.answers.len() >= MAX_ANSWERS {
            return;
        }
        let mut data = data_text(&r.data);
        if data.len() > MAX_DATA_CHARS {
            let mut end = MAX_DATA_CHARS;
            while !data.is_char_boundary(end) {
                end -= 1;
            }
            data.truncate(end);
        }
        self.answers.push(DnsAnswer {
            name: name_text(&r.name),
            rtype: u16::from(r.record_type()),
            class: u16::from(r.dns_class),
            ttl: r.ttl,
            data,
        });
    }
}

/// A name as `dig` shows it, without the final dot; the root is ".".
fn name_text(n: &Name) -> String {
    let mut s = n.to_ascii();
    if s.len() > 1 && s.ends_with('.') && !s.ends_with("\\.") {
        s.pop();
    }
    s
}

/// Record data in presentation form. TXT is written here: the crate
/// runs its strings together, `dig` quotes each.
fn data_text(d: &RData) -> String {
    match d {
        RData::TXT(t) => {
            let mut s = String::new();
            for (i, part) in t.txt_data.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                s.push('"');
                for &b in part.iter() {
                    match b {
                        b'"' | b'\\' => {
                            s.push('\\');
                            s.push(b as char);
                        }
                        0x20..=0x7e => s.push(b as char),
                        _ => s.push_str(&format!("\\{b:03}")),
                    }
                }
                s.push('"');
            }
            s
        }
        RData::SVCB(v) => svcb_text(v),
        RData::HTTPS(v) => svcb_text(&v.0),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        other => {
            use std::fmt::Write as _;
            let mut s = String::new();
            // The crate's formatting fails on some data (an OPT record
            // among the answers): RFC 3597's generic form instead.
            if write!(s, "{other}").is_err() {
                return generic_text(other);
            }
            if s.len() > 1 && s.ends_with('.') && !s.ends_with("\\.") {
                s.pop();
            }
            s
        }
    }
}

/// RFC 3597's form for data of no known presentation: `\# length hex`.
fn generic_text(d: &RData) -> String {
    use std::fmt::Write as _;
    let bytes = d.to_bytes().unwrap_or_default();
    let mut s = format!("\\# {}", bytes.len());
    if !bytes.is_empty() {
        s.push(' ');
    }
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SVCB and HTTPS in RFC 9460's presentation form, as `dig` prints them
/// (`1 . alpn="h2,h3" port=443`). Written here: the crate leaves a comma
/// after each list and writes unknown keys in a form of its own.
fn svcb_text(v: &SVCB) -> String {
    use std::fmt::Write as _;
    let list = |items: Vec<String>| items.join(",");
    let mut s = format!("{} {}", v.svc_priority, name_text(&v.target_name));
    for (key, value) in &v.svc_params {
        let value = match value {
            SvcParamValue::Mandatory(keys) => list(keys.0.iter().map(|k| key_text(*k)).collect()),
            SvcParamValue::Alpn(ids) => format!("\"{}\"", ids.0.join(",")),
            SvcParamValue::NoDefaultAlpn => String::new(),
            SvcParamValue::Port(port) => port.to_string(),
            SvcParamValue::Ipv4Hint(ips) => list(ips.0.iter().map(|ip| ip.to_string()).collect()),
            SvcParamValue::Ipv6Hint(ips) => list(ips.0.iter().map(|ip| ip.to_string()).collect()),
            SvcParamValue::EchConfigList(ech) => {
                use base64::Engine as _;
                format!(
                    "\"{}\"",
                    base64::engine::general_purpose::STANDARD.encode(&ech.0)
                )
            }
            SvcParamValue::Unknown(bytes) => {
                let mut hex = String::with_capacity(bytes.0.len() * 2);
                for b in &bytes.0 {
                    let _ = write!(hex, "{b:02x}");
                }
                hex
            }
        };
        let _ = write!(s, " {}", key_text(*key));
        if !value.is_empty() {
            let _ = write!(s, "={value}");
        }
    }
    s
}

fn key_text(k: SvcParamKey) -> String {
    match k {
        SvcParamKey::Key(_) | SvcParamKey::Key65535 | SvcParamKey::Unknown(_) => {
            format!("key{}", u16::from(k))
        }
        known => known.to_string(),
    }
}

/// A name's parts by the public suffix list (ECS's
/// `registered_domain`, `subdomain`, `top_level_domain`):
/// "www.shop.example.co.uk" is "www.shop", "example.co.uk", "co.uk".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameParts<'a> {
    pub subdomain: &'a str,
    pub registered: &'a str,
    pub suffix: &'a str,
}

/// The parts of `name`, if it has a registered domain.
pub fn name_parts(name: &str) -> Option<NameParts<'_>> {
    let name = name.trim_end_matches('.');
    let registered = psl::domain_str(name)?;
    let suffix = psl::suffix_str(name)?;
    let subdomain = name
        .get(..name.len() - registered.len())?
        .trim_end_matches('.');
    Some(NameParts {
        subdomain,
        registered,
        suffix,
    })
}

/// The mnemonic of a record type ("A", "HTTPS"), `TYPEn` for others
/// (RFC 3597).
pub fn type_text(t: u16) -> String {
    match RecordType::from(t) {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        known => known.to_string(),
    }
}

/// The mnemonic of a class ("IN"), `CLASSn` for others.
pub fn class_text(c: u16) -> String {
    match c {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        n => format!("CLASS{n}"),
    }
}

/// Response code names as `dig` prints them.
pub fn rcode_text(r: u16) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    match r {
        16 => "BADVERS".into(),
        n => NAMES
            .get(usize::from(n))
            .map_or_else(|| format!("RCODE{n}"), |s| (*s).to_string()),
    }
}

/// Operation codes as `dig` prints them.
pub fn opcode_text(o: u8) -> String {
    match o {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        n => format!("OPCODE{n}"),
    }
}

/// Question types counted apart in metrics; the rest are `other`.
pub const COUNTED_TYPES: [(u16, &str); 12] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (2, "NS"),
    (12, "PTR"),
    (6, "SOA"),
    (33, "SRV"),
    (16, "TXT"),
    (65, "HTTPS"),
    (64, "SVCB"),
    (255, "ANY"),
];

/// Response codes counted apart in metrics; the rest are `other`.
pub const COUNTED_RCODES: [(u16, &str); 6] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
];

/// A DNS-over-TCP segment's messages: each is prefixed by its length.
/// Returns the messages the payload holds whole and, when the last one
/// goes on in later segments, its offset and the bytes it needs (prefix
/// included).
pub fn tcp_messages(payload: &[u8]) -> (Vec<&[u8]>, Option<(usize, usize)>) {
    let mut whole = Vec::new();
    let mut at = 0;
    while let Some(prefix) = payload.get(at..at + 2) {
        let needed = 2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        match payload.get(at + 2..at + needed) {
            Some(m) => whole.push(m),
            None => return (whole, Some((at, needed))),
        }
        at += needed;
    }
    (whole, None)
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Message, OpCode},
        rr::rdata::{A, AAAA, CNAME, MX, SRV, TXT},
    };

    use super::*;

    fn name(s: &str) -> Name {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn response() -> Vec<u8> {
        let mut m = Message::response(0x1234, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.add_query(Query::query(name("WWW.example.com."), RecordType::A));
        let n = name("WWW.example.com.");
        m.add_answer(Record::from_rdata(
            n.clone(),
            60,
            RData::CNAME(CNAME(name("edge.example.net."))),
        ));
        m.add_answer(Record::from_rdata(
            name("edge.example.net."),
            30,
            RData::A(A::new(198, 18, 0, 1)),
        ));
        m.add_answer(Record::from_rdata(
            n.clone(),
            30,
            RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        ));
        m.add_answer(Record::from_rdata(
            n.clone(),
            30,
            RData::MX(MX::new(10, name("mx.example.com."))),
        ));
        m.add_answer(Record::from_rdata(
            n.clone(),
            30,
            RData::TXT(TXT::new(vec!["v=spf1 -all".into(), "a\"b".into()])),
        ));
        m.add_answer(Record::from_rdata(
            n,
            30,
            RData::SRV(SRV::new(1, 2, 443, name("t.example."))),
        ));
        m.to_vec().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_response_gives_header_question_answers_and_addresses() {
        let m = parse(&response()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.id, m.response, m.opcode, m.rcode), (0x1234, true, 0, 0));
        assert_eq!(m.flag_names().collect::<Vec<_>>(), vec!["RD", "RA"]);
        assert_eq!(m.counts, [1, 6, 0, 0]);
        let q = m.question.clone().unwrap_or_else(|| panic!("question"));
        assert_eq!(
            (q.name.as_str(), q.qtype, q.qclass),
            ("www.example.com", 1, 1)
        );
        let data: Vec<(String, &str)> = m
            .answers
            .iter()
            .map(|a| (type_text(a.rtype), a.data.as_str()))
            .collect();
        assert_eq!(
            data,
            vec![
                ("CNAME".into(), "edge.example.net"),
                ("A".into(), "198.18.0.1"),
                ("AAAA".into(), "fd00::1"),
                ("MX".into(), "10 mx.example.com"),
                ("TXT".into(), "\"v=spf1 -all\" \"a\\\"b\""),
                ("SRV".into(), "1 2 443 t.example"),
            ]
        );
        assert_eq!(
            m.resolved_ips,
            vec![
                "198.18.0.1"
                    .parse::<IpAddr>()
                    .unwrap_or_else(|e| panic!("{e}")),
                "fd00::1".parse().unwrap_or_else(|e| panic!("{e}")),
            ]
        );
        assert!(!m.partial);
    }

    #[test]
    fn a_cut_response_keeps_its_question_and_the_records_before_the_cut() {
        let full = response();
        let m = parse(&full[..full.len() - 10]).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.partial);
        assert_eq!(m.answers.len(), 5);
        assert_eq!(m.counts[1], 6, "the header's count stays");
    }

    #[test]
    fn hostile_headers_and_names_are_refused_with_a_reason() {
        assert_eq!(parse(&[0; 11]), Err(DnsError::TooShort));
        // 65535 questions announced in 20 bytes.
        let mut h = vec![0u8; 20];
        h[4] = 0xff;
        h[5] = 0xff;
        assert_eq!(parse(&h), Err(DnsError::CountsExceedLength));
        // A name whose compression pointer points at itself.
        let mut looped = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend([0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&looped), Err(DnsError::Malformed));
        // A pointer forward, past the message.
        let mut forward = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        forward.extend([0xc0, 200, 0, 1, 0, 1]);
        assert_eq!(parse(&forward), Err(DnsError::Malformed));
    }

    #[test]
    fn odd_names_types_and_the_edns_rcode_are_kept() {
        // Capitals and binary label bytes, an unknown type, EDNS with DO and rcode 16.
        let mut q = vec![0xab, 0xcd, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend([3, b'A', 0x01, b'.', 3, b'c', b'o', b'm', 0]);
        q.extend([0xfa, 0x00, 0, 1]);
        q.extend([0, 0, 41, 0x04, 0xd0, 0x01, 0x00, 0x80, 0x00, 0, 0]);
        let m = parse(&q).unwrap_or_else(|e| panic!("{e}"));
        let question = m.question.clone().unwrap_or_else(|| panic!("question"));
        // Case is kept as sent.
        assert_eq!(question.name, "A\\001\\..com");
        assert_eq!(type_text(question.qtype), "TYPE64000");
        assert_eq!(
            m.edns,
            Some(Edns {
                udp_size: 1232,
                version: 0,
                dnssec_ok: true
            })
        );
        assert_eq!(rcode_text(m.rcode), "BADVERS");
        assert_eq!(m.flag_names().collect::<Vec<_>>(), vec!["RD", "DO"]);
    }

    #[test]
    fn service_bindings_are_written_as_dig_writes_them() {
        // HTTPS 1 . alpn="h2,h3" port=8443 ipv4hint=198.18.0.1 key9999=0102
        let mut r = vec![0, 1, 0];
        r.extend([0, 1, 0, 6, 2, b'h', b'2', 2, b'h', b'3']);
        r.extend([0, 3, 0, 2, 0x20, 0xfb]);
        r.extend([0, 4, 0, 4, 198, 18, 0, 1]);
        r.extend([0x27, 0x0f, 0, 2, 1, 2]);
        let mut m = vec![0, 9, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0];
        m.extend([3, b's', b'v', b'c', 0, 0, 65, 0, 1, 0, 0, 0, 60]);
        m.extend((r.len() as u16).to_be_bytes());
        m.extend(r);
        let parsed = parse(&m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed.answers[0].data,
            "1 . alpn=\"h2,h3\" port=8443 ipv4hint=198.18.0.1 key9999=0102"
        );
    }

    #[test]
    fn data_the_crate_cannot_print_is_written_in_the_generic_form() {
        // Found by the fuzzer: an OPT record among the answers.
        let mut m = vec![0, 1, 0x81, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        m.extend([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 2, 0xab, 0xcd]);
        let parsed = parse(&m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.answers.len(), 1);
        assert!(
            parsed.answers[0].data.starts_with("\\# "),
            "{:?}",
            parsed.answers
        );
    }

    #[test]
    fn names_split_by_the_public_suffix_list() {
        let p = name_parts("www.shop.example.co.uk.").unwrap_or_else(|| panic!("parts"));
        assert_eq!(
            (p.subdomain, p.registered, p.suffix),
            ("www.shop", "example.co.uk", "co.uk")
        );
        let bare = name_parts("example.com").unwrap_or_else(|| panic!("parts"));
        assert_eq!(bare.subdomain, "");
        assert_eq!(name_parts("localhost"), None);
    }

    #[test]
    fn tcp_segments_split_into_length_prefixed_messages() {
        let mut seg = vec![0, 3, 1, 2, 3, 0, 1, 9, 0, 5, 1];
        let (whole, rest) = tcp_messages(&seg);
        assert_eq!(whole, vec![&[1, 2, 3][..], &[9][..]]);
        assert_eq!(rest, Some((8, 7)));
        seg.truncate(8);
        assert_eq!(tcp_messages(&seg).1, None);
        seg.push(0);
        assert_eq!(
            tcp_messages(&seg).1,
            None,
            "a lone prefix byte waits for nothing"
        );
    }
}
