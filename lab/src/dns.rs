//! DNS messages built byte by byte for tests, seeds and benchmarks: a
//! query, and its response whose answers name the question through a
//! compression pointer, as name servers write them.

/// Record types the builders take.
pub const A: u16 = 1;
pub const CNAME: u16 = 5;
pub const TXT: u16 = 16;
pub const AAAA: u16 = 28;

/// `name` in wire form (labels; no compression).
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out
}

fn header(id: u16, flags: u16, answers: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend(id.to_be_bytes());
    h.extend(flags.to_be_bytes());
    h.extend([0, 1]);
    h.extend(answers.to_be_bytes());
    h.extend([0, 0, 0, 0]);
    h
}

/// A recursive query for `name` of type `qtype`.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = header(id, 0x0100, 0);
    m.extend(wire_name(name));
    m.extend(qtype.to_be_bytes());
    m.extend([0, 1]);
    m
}

/// The response to [`query`] with `answers` (type, rdata), each owned by
/// the question's name (a pointer to offset 12), TTL 60.
pub fn response(id: u16, name: &str, qtype: u16, rcode: u8, answers: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = header(id, 0x8180 | u16::from(rcode & 0x0f), answers.len() as u16);
    m.extend(wire_name(name));
    m.extend(qtype.to_be_bytes());
    m.extend([0, 1]);
    for (rtype, rdata) in answers {
        m.extend([0xc0, 12]);
        m.extend(rtype.to_be_bytes());
        m.extend([0, 1, 0, 0, 0, 60]);
        m.extend((rdata.len() as u16).to_be_bytes());
        m.extend(rdata);
    }
    m
}

/// A TXT record's data: each string with its length byte.
pub fn txt(strings: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        let s = &s[..s.len().min(255)];
        out.push(s.len() as u8);
        out.extend(s);
    }
    out
}

/// A message as DNS over TCP sends it: prefixed by its length.
pub fn over_tcp(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend(message);
    out
}

/// Labels of random lowercase letters and digits (base32's alphabet), as
/// tunnels and domain-generation algorithms make them: a repeatable
/// xorshift stream from `seed`.
pub struct RandomLabels(u64);

impl RandomLabels {
    pub fn new(seed: u64) -> RandomLabels {
        RandomLabels(seed | 1)
    }

    /// The next label of `len` characters.
    pub fn label(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                b"abcdefghijklmnopqrstuvwxyz234567"[(self.0 % 32) as usize] as char
            })
            .collect()
    }
}
