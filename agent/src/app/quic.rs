//! QUIC Initial packets (RFC 9000 §17.2.2) opened as any on-path observer
//! can: their keys come from the Destination Connection ID the client
//! chose (RFC 9001 §5.2; v2: RFC 9369 §3.3), so the CRYPTO frames, which
//! carry the ClientHello and ServerHello, can be read. Written here
//! because no crate reads Initials as a third party: QUIC libraries do it
//! only as an endpoint, inside their connection state. The primitives are
//! ring's (HKDF-SHA256, AES-128-GCM, AES header protection).

use ring::{aead, hkdf};

/// QUIC versions whose Initials nta opens.
pub const QUIC_V1: u32 = 0x0000_0001;
pub const QUIC_V2: u32 = 0x6b33_43cf;
/// Connection IDs are at most 20 bytes (RFC 9000 §17.2).
pub const MAX_CID: usize = 20;
/// CRYPTO data past this offset is not kept (a ClientHello is far smaller).
pub const MAX_CRYPTO_OFFSET: u64 = agent_common::app::MAX_HANDSHAKE_BYTES as u64;

const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// Why a datagram gave no Initial; the text is a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicError {
    /// The bytes end inside a header or before the length it gives.
    Truncated,
    /// A long header of a version nta does not open.
    UnknownVersion,
    /// The packet does not open with the keys its connection ID gives
    /// (not an Initial of this connection, or altered).
    DecryptFailed,
    /// The opened payload holds a frame an Initial cannot carry, or one
    /// that runs past the payload.
    BadFrames,
}

impl QuicError {
    pub const ALL: [QuicError; 4] = [
        QuicError::Truncated,
        QuicError::UnknownVersion,
        QuicError::DecryptFailed,
        QuicError::BadFrames,
    ];

    pub fn label(self) -> &'static str {
        match self {
            QuicError::Truncated => "truncated",
            QuicError::UnknownVersion => "unknown_version",
            QuicError::DecryptFailed => "decrypt_failed",
            QuicError::BadFrames => "bad_frames",
        }
    }
}

impl std::fmt::Display for QuicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for QuicError {}

/// Which end sent the packet: each has its own Initial keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// An opened Initial packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initial {
    pub version: u32,
    pub dcid: Vec<u8>,
    pub scid: Vec<u8>,
    /// CRYPTO frames: (offset, data), in packet order.
    pub crypto: Vec<(u64, Vec<u8>)>,
}

/// Reads a variable-length integer (RFC 9000 §16) at `*at`.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*at..*at + len)?;
    let mut v = u64::from(first & 0x3f);
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
    }
    *at += len;
    Some(v)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [6 + label.len() as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// One side's Initial keys for a connection whose client chose `dcid`.
pub struct InitialKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

impl InitialKeys {
    pub fn new(version: u32, dcid: &[u8], side: Side) -> Option<InitialKeys> {
        let (salt, labels): (&[u8], [&[u8]; 3]) = match version {
            QUIC_V1 => (&SALT_V1, [b"quic key", b"quic iv", b"quic hp"]),
            QUIC_V2 => (&SALT_V2, [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"]),
            _ => return None,
        };
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
        let mut secret = [0u8; 32];
        let side_label: &[u8] = match side {
            Side::Client => b"client in",
            Side::Server => b"server in",
        };
        expand_label(&initial, side_label, &mut secret)?;
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        expand_label(&prk, labels[0], &mut key)?;
        expand_label(&prk, labels[1], &mut iv)?;
        expand_label(&prk, labels[2], &mut hp)?;
        Some(InitialKeys {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).ok()?,
        })
    }

    /// Protects a packet as a sender would: `header` ends with the packet
    /// number (`pn_len` bytes, `pn`); for tests, seeds and benchmarks.
    pub fn seal(&self, header: &[u8], pn: u64, pn_len: usize, payload: &[u8]) -> Option<Vec<u8>> {
        let mut body = payload.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(pn), aead::Aad::from(header), &mut body)
            .ok()?;
        body.extend_from_slice(tag.as_ref());
        let mut packet = header.to_vec();
        let pn_at = header.len() - pn_len;
        packet.extend(body);
        let mask = self.hp.new_mask(packet.get(pn_at + 4..pn_at + 20)?).ok()?;
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..pn_len {
            packet[pn_at + i] ^= mask[1 + i];
        }
        Some(packet)
    }

    fn nonce(&self, pn: u64) -> aead::Nonce {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }
}

/// An Initial packet as `side` sends it, for tests, seeds and
/// benchmarks: `key_dcid` gives the keys (the client's DCID), `dcid` and
/// `scid` go in the header, `payload` is its frames (PADDING is added to
/// reach 1200 bytes from a client, as RFC 9000 §14.1 asks), packet
/// number `pn` in two bytes.
pub fn seal_initial(
    version: u32,
    side: Side,
    key_dcid: &[u8],
    (dcid, scid): (&[u8], &[u8]),
    pn: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let keys = InitialKeys::new(version, key_dcid, side)?;
    let kind = if version == QUIC_V2 { 0x10 } else { 0x00 };
    let mut header = vec![0xc1 | kind];
    header.extend(version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend(dcid);
    header.push(scid.len() as u8);
    header.extend(scid);
    header.push(0); // no token
    let mut payload = payload.to_vec();
    if side == Side::Client {
        let before = header.len() + 2 + 2 + 16;
        payload.resize(payload.len().max(1200usize.saturating_sub(before)), 0);
    }
    let length = u16::try_from(2 + payload.len() + 16).ok()?;
    (length < 0x4000).then_some(())?;
    header.extend((length | 0x4000).to_be_bytes());
    header.extend(pn.to_be_bytes());
    keys.seal(&header, u64::from(pn), 2, &payload)
}

/// A CRYPTO frame carrying `data` at `offset` (both under 2^14).
pub fn crypto_frame(offset: u16, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend((offset | 0x4000).to_be_bytes());
    f.extend((data.len() as u16 | 0x4000).to_be_bytes());
    f.extend(data);
    f
}

/// Opens the Initial packets of a datagram (packets may be coalesced,
/// RFC 9000 §12.2; long-header packets of other types are stepped over).
/// `key_dcid` is the client's first Destination Connection ID (the
/// server's packets are protected with keys from it); a client's own
/// packets are opened with their own DCID when it is `None`.
pub fn read_datagram(
    datagram: &[u8],
    side: Side,
    key_dcid: Option<&[u8]>,
) -> (Vec<Initial>, Option<QuicError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < datagram.len() {
        // Short headers (and padding) end the long-header packets.
        if datagram[at] & 0x80 == 0 {
            break;
        }
        match read_packet(&datagram[at..], side, key_dcid) {
            Ok((initial, len)) => {
                out.extend(initial);
                at += len;
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// One long-header packet: the Initial it opens to (`None` for another
/// type) and its length.
fn read_packet(
    b: &[u8],
    side: Side,
    key_dcid: Option<&[u8]>,
) -> Result<(Option<Initial>, usize), QuicError> {
    let t = QuicError::Truncated;
    let version = u32::from_be_bytes(b.get(1..5).ok_or(t)?.try_into().map_err(|_| t)?);
    let initial_type = match version {
        QUIC_V1 => 0x00,
        QUIC_V2 => 0x10,
        _ => return Err(QuicError::UnknownVersion),
    };
    let mut at = 5;
    let dcid_len = usize::from(*b.get(at).ok_or(t)?);
    let dcid = b.get(at + 1..at + 1 + dcid_len).ok_or(t)?;
    at += 1 + dcid_len;
    let scid_len = usize::from(*b.get(at).ok_or(t)?);
    let scid = b.get(at + 1..at + 1 + scid_len).ok_or(t)?;
    at += 1 + scid_len;
    if dcid_len > MAX_CID || scid_len > MAX_CID {
        return Err(t);
    }
    let is_initial = b[0] & 0x30 == initial_type;
    // Retry has no length field: nothing after it in the datagram is read.
    let retry = b[0] & 0x30 == if version == QUIC_V1 { 0x30 } else { 0x00 };
    if retry {
        return Ok((None, b.len()));
    }
    if is_initial {
        let token_len = varint(b, &mut at).ok_or(t)? as usize;
        at = at.checked_add(token_len).ok_or(t)?;
    }
    let length = varint(b, &mut at).ok_or(t)? as usize;
    let end = at.checked_add(length).filter(|e| *e <= b.len()).ok_or(t)?;
    if !is_initial {
        return Ok((None, end));
    }
    let keys = InitialKeys::new(version, key_dcid.unwrap_or(dcid), side)
        .ok_or(QuicError::DecryptFailed)?;
    let pn_at = at;
    let sample = b.get(pn_at + 4..pn_at + 20).ok_or(t)?;
    let mask = keys
        .hp
        .new_mask(sample)
        .map_err(|_| QuicError::DecryptFailed)?;
    let mut header = b[..pn_at].to_vec();
    header[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(header[0] & 0x03) + 1;
    if pn_at + pn_len > end {
        return Err(t);
    }
    let mut pn = 0u64;
    for i in 0..pn_len {
        let byte = b[pn_at + i] ^ mask[1 + i];
        header.push(byte);
        pn = (pn << 8) | u64::from(byte);
    }
    let mut body = b[pn_at + pn_len..end].to_vec();
    let plain = keys
        .key
        .open_in_place(keys.nonce(pn), aead::Aad::from(&header), &mut body)
        .map_err(|_| QuicError::DecryptFailed)?;
    let crypto = frames(plain)?;
    Ok((
        Some(Initial {
            version,
            dcid: dcid.to_vec(),
            scid: scid.to_vec(),
            crypto,
        }),
        end,
    ))
}

/// The CRYPTO frames of an Initial's payload. PADDING, PING, ACK and
/// CONNECTION_CLOSE are stepped over; anything else cannot be in an
/// Initial (RFC 9000 §12.4, table 3).
fn frames(p: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, QuicError> {
    let bad = QuicError::BadFrames;
    let mut out = Vec::new();
    let mut at = 0;
    while at < p.len() {
        let kind = varint(p, &mut at).ok_or(bad)?;
        match kind {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                varint(p, &mut at).ok_or(bad)?; // largest acknowledged
                varint(p, &mut at).ok_or(bad)?; // delay
                let ranges = varint(p, &mut at).ok_or(bad)?;
                varint(p, &mut at).ok_or(bad)?; // first range
                // Each further range is two varints of at least a byte.
                if ranges > (p.len() - at) as u64 {
                    return Err(bad);
                }
                for _ in 0..ranges * 2 {
                    varint(p, &mut at).ok_or(bad)?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        varint(p, &mut at).ok_or(bad)?;
                    }
                }
            }
            0x06 => {
                let offset = varint(p, &mut at).ok_or(bad)?;
                let len = varint(p, &mut at).ok_or(bad)? as usize;
                let data = p.get(at..at.checked_add(len).ok_or(bad)?).ok_or(bad)?;
                at += len;
                if offset < MAX_CRYPTO_OFFSET {
                    out.push((offset, data.to_vec()));
                }
            }
            0x1c | 0x1d => {
                varint(p, &mut at).ok_or(bad)?; // error code
                if kind == 0x1c {
                    varint(p, &mut at).ok_or(bad)?; // frame type
                }
                let len = varint(p, &mut at).ok_or(bad)? as usize;
                at = at.checked_add(len).filter(|a| *a <= p.len()).ok_or(bad)?;
            }
            _ => return Err(bad),
        }
    }
    Ok(out)
}

/// CRYPTO frames of one packet merged into contiguous runs, by offset.
pub fn runs(crypto: &[(u64, Vec<u8>)]) -> Vec<(u64, Vec<u8>)> {
    let mut sorted: Vec<&(u64, Vec<u8>)> = crypto.iter().collect();
    sorted.sort_by_key(|(o, _)| *o);
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for (offset, data) in sorted {
        match out.last_mut() {
            Some((start, run)) if *offset <= *start + run.len() as u64 => {
                let skip = (*start + run.len() as u64 - offset) as usize;
                run.extend(data.iter().skip(skip));
            }
            _ => out.push((*offset, data.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    /// RFC 9001 A.1 and RFC 9369 A.1: the client's DCID of the examples.
    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 A.3: the server's Initial, a ServerHello choosing
    /// TLS_AES_128_GCM_SHA256.
    const SERVER_V1: &str = "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
        5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
        dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
        022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
        2158407dd074ee";
    /// RFC 9369 A.3: the same in QUIC v2.
    const SERVER_V2: &str = "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698
        baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17
        f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2
        c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8
        4bed8521e2e140";

    #[test]
    fn the_rfc_server_initials_open_to_their_server_hello() {
        for (version, packet) in [(QUIC_V1, SERVER_V1), (QUIC_V2, SERVER_V2)] {
            let dcid = hex(DCID);
            let (initials, err) = read_datagram(&hex(packet), Side::Server, Some(&dcid));
            assert_eq!(err, None);
            assert_eq!(initials.len(), 1);
            let i = &initials[0];
            assert_eq!(
                (i.version, i.scid.clone()),
                (version, hex("f067a5502a4262b5"))
            );
            assert_eq!(i.crypto.len(), 1);
            let (offset, data) = &i.crypto[0];
            assert_eq!(*offset, 0);
            match crate::app::tls::parse_handshake(data) {
                Ok(crate::app::tls::Hello::Server(s)) => assert_eq!(s.cipher_suite, 0x1301),
                other => panic!("{other:?}"),
            }
            // The client's keys do not open the server's packet.
            let (_, err) = read_datagram(&hex(packet), Side::Client, Some(&dcid));
            assert_eq!(err, Some(QuicError::DecryptFailed));
        }
    }

    #[test]
    fn a_sealed_client_initial_opens_and_a_flipped_byte_does_not() {
        let dcid = hex(DCID);
        let mut payload = crypto_frame(0, &[1, 0, 0, 1, 9]);
        payload.extend([0x02, 0x00, 0x00, 0x00, 0x00]); // ACK
        let packet = seal_initial(QUIC_V1, Side::Client, &dcid, (&dcid, &[]), 2, &payload)
            .unwrap_or_else(|| panic!("seal"));
        assert_eq!(packet.len(), 1200);
        let (initials, err) = read_datagram(&packet, Side::Client, None);
        assert_eq!(err, None);
        assert_eq!(initials[0].crypto, vec![(0, vec![1, 0, 0, 1, 9])]);
        let mut altered = packet.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            read_datagram(&altered, Side::Client, None).1,
            Some(QuicError::DecryptFailed)
        );
        assert_eq!(
            read_datagram(&packet[..30], Side::Client, None).1,
            Some(QuicError::Truncated)
        );
    }

    #[test]
    fn crypto_frames_merge_into_runs_in_any_order() {
        let frames = vec![
            (5, vec![5, 6, 7]),
            (0, vec![0, 1, 2]),
            (3, vec![3, 4, 5]),
            (20, vec![20]),
        ];
        assert_eq!(
            runs(&frames),
            vec![(0, vec![0, 1, 2, 3, 4, 5, 6, 7]), (20, vec![20])]
        );
    }
}
