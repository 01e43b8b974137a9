//! TLS ClientHello bytes for tests, benchmarks and fuzz seeds: the
//! handshake message (as QUIC's CRYPTO frames carry it) or a TLS record
//! around it, with extension bodies built by the helpers below.

/// The bytes of a ClientHello: ciphers and extensions as given, in wire
/// order (GREASE included if given).
pub struct HelloBuilder {
    pub ciphers: Vec<u16>,
    /// (type, data) in wire order.
    pub extensions: Vec<(u16, Vec<u8>)>,
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn with_len16(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A server_name extension body with one host name.
pub fn sni(name: &str) -> Vec<u8> {
    let mut entry = vec![0u8];
    entry.extend(with_len16(name.as_bytes().to_vec()));
    with_len16(entry)
}

/// An ALPN extension body.
pub fn alpn(protocols: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in protocols {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    with_len16(list)
}

/// A list of u16 with its 2-byte length (signature algorithms, groups).
pub fn list16(values: &[u16]) -> Vec<u8> {
    with_len16(u16s(values))
}

/// A ClientHello supported_versions body (1-byte length).
pub fn versions(values: &[u16]) -> Vec<u8> {
    let mut out = vec![(values.len() * 2) as u8];
    out.extend(u16s(values));
    out
}

/// A key_share extension body with one share of `len` bytes: 1216 for
/// X25519MLKEM768, which makes a hello span two TCP segments.
pub fn key_share(group: u16, len: usize) -> Vec<u8> {
    let mut share = group.to_be_bytes().to_vec();
    share.extend(with_len16((0..len).map(|i| i as u8).collect()));
    with_len16(share)
}

impl HelloBuilder {
    /// The handshake message (type 1, length, body).
    pub fn handshake(&self) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([0x11; 32]);
        body.push(0);
        body.extend(with_len16(u16s(&self.ciphers)));
        body.extend([1, 0]);
        let mut ext = Vec::new();
        for (t, data) in &self.extensions {
            ext.extend(t.to_be_bytes());
            ext.extend(with_len16(data.clone()));
        }
        body.extend(with_len16(ext));
        let mut msg = vec![1];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    /// The handshake in a TLS record.
    pub fn record(&self) -> Vec<u8> {
        let msg = self.handshake();
        let mut rec = vec![22, 0x03, 0x01];
        rec.extend((msg.len() as u16).to_be_bytes());
        rec.extend(msg);
        rec
    }
}

/// A browser-like hello (GREASE, SNI, ALPN h2 and http/1.1, TLS 1.3 and
/// 1.2, a post-quantum group): the fuzz seed and a starting point.
pub fn browser_like(server_name: &str) -> HelloBuilder {
    HelloBuilder {
        ciphers: vec![0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f],
        extensions: vec![
            (0x3a3a, vec![]),
            (0x0000, sni(server_name)),
            (0x0010, alpn(&[b"h2", b"http/1.1"])),
            (0x002b, versions(&[0x4a4a, 0x0304, 0x0303])),
            (0x000d, list16(&[0x0403, 0x0804, 0x0401])),
            (0x000a, list16(&[0x5a5a, 0x11ec, 0x001d, 0x0017])),
            (0x0017, vec![]),
        ],
    }
}

/// [`browser_like`] with an X25519MLKEM768 key share, as current browsers
/// send it: about 1.5 KB, more than one TCP segment holds at MSS 1460.
pub fn post_quantum(server_name: &str) -> HelloBuilder {
    let mut hello = browser_like(server_name);
    hello.extensions.push((0x0033, key_share(0x11ec, 1216)));
    hello.extensions.push((0x0015, vec![0; 500]));
    hello
}
