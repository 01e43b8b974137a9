//! Application metadata selection: which frames the XDP program copies
//! into the `APP_FRAMES` ring buffer for the agent to read above L4 (TLS
//! and QUIC handshakes, DNS). The rule is written once, here, for the XDP
//! program and for offline analysis; each keeps its own table of
//! handshakes that continue in later segments and applies [`follow`].

use crate::{
    class::ProtocolClass,
    parse::{Frame, Parsed},
};

/// What an app record holds (the `kind` of its [`crate::capture::CaptureHeader`];
/// 0 is a capture record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum AppKind {
    /// A TCP segment whose payload begins a TLS handshake record
    /// carrying a ClientHello or ServerHello.
    TlsHandshake = 1,
    /// A later segment of such a record that did not fit its first one.
    TlsContinuation = 2,
    /// DNS over UDP or TCP on a configured port.
    Dns = 3,
    /// A QUIC long-header Initial packet (v1 or v2).
    QuicInitial = 4,
}

/// Kinds counted per CPU ([`crate::counters::Counters::app_frames`] is
/// indexed by `kind - 1`).
pub const APP_KIND_COUNT: usize = 4;

impl AppKind {
    pub const ALL: [AppKind; APP_KIND_COUNT] = [
        AppKind::TlsHandshake,
        AppKind::TlsContinuation,
        AppKind::Dns,
        AppKind::QuicInitial,
    ];

    pub fn from_u32(kind: u32) -> Option<AppKind> {
        Self::ALL.into_iter().find(|k| *k as u32 == kind)
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            AppKind::TlsHandshake => "tls_handshake",
            AppKind::TlsContinuation => "tls_continuation",
            AppKind::Dns => "dns",
            AppKind::QuicInitial => "quic_initial",
        }
    }
}

/// Bits of [`crate::config::SamplerConfig::app`].
pub mod select {
    pub const TLS: u32 = 1;
    pub const DNS: u32 = 2;
    pub const QUIC: u32 = 4;
    pub const ALL: u32 = TLS | DNS | QUIC;
}

/// DNS ports the program compares with (0 = unused slot).
pub const MAX_DNS_PORTS: usize = 4;

/// A handshake is followed over at most this many bytes (a TLS record
/// holds at most 16 KiB)...
pub const MAX_HANDSHAKE_BYTES: u32 = 16 * 1024 + 5;
/// ...and this many later segments.
pub const MAX_FOLLOW_SEGMENTS: u32 = 16;
/// After a handshake that continues, this CPU looks its next TCP payload
/// segments up in the follow table, this many of them: the lookup is
/// paid only while a handshake is pending here, not by every segment.
/// A handshake whose rest arrives on another CPU after this many other
/// segments is missed (the agent counts it incomplete).
pub const FOLLOW_WINDOW: u32 = 64;
/// Entries of the XDP program's follow table (LRU: a flood of split
/// handshakes evicts the oldest).
pub const FOLLOW_TABLE_ENTRIES: u32 = 4096;
/// Bytes of a selected frame the program copies.
pub const APP_SNAPLEN: u32 = 4096;
/// Size of the `APP_FRAMES` ring buffer: 4 MiB holds about 2,700 full
/// 1,500-byte frames, a few milliseconds of handshakes at any rate the
/// agent parses.
pub const APP_RING_BYTES: u32 = 4 << 20;

const QUIC_V1: u32 = 0x0000_0001;
const QUIC_V2: u32 = 0x6b33_43cf;

/// What one frame is to the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// Not selected (most frames).
    None,
    Dns,
    QuicInitial,
    /// Begins a handshake record; `needed` payload bytes hold the whole
    /// hello (capped at [`MAX_HANDSHAKE_BYTES`]).
    Handshake {
        seq: u32,
        payload_len: u32,
        needed: u32,
    },
    /// Any other TCP segment with payload: a continuation if the follow
    /// table has its flow.
    Segment {
        seq: u32,
        payload_len: u32,
    },
}

#[inline(always)]
fn be32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// Where a TCP or UDP frame's transport header and payload start, and
/// the payload's length (to the datagram's end by its own length, or the
/// frame's end if that comes first). The parse does not keep these (a
/// larger parse result cost the verifier more than it allows), so they
/// are read again here, for selected protocols only. IPv6 frames with
/// extension headers are left out: their walk is the parser's, and
/// handshakes and DNS rarely carry them.
#[inline(always)]
pub fn transport<F: Frame + ?Sized>(frame: &F, p: &Parsed, frame_len: u64) -> Option<Transport> {
    // Two-byte reads where one byte is used: LLVM turns a one-byte
    // bound check into a form the verifier does not accept.
    let l3 = p.l3_offset as usize;
    let l4 = match p.ip_version {
        4 => l3 + ((frame.bytes::<2>(l3)?[0] & 0x0f) as usize) * 4,
        6 if frame.bytes::<2>(l3 + 6)?[0] == p.l4_proto => l3 + 40,
        _ => return None,
    };
    let payload = match p.class {
        ProtocolClass::Tcp => l4 + ((frame.bytes::<2>(l4 + 12)?[0] >> 4) as usize) * 4,
        ProtocolClass::Udp => l4 + 8,
        _ => return None,
    };
    let end = if p.ip_end != 0 && u64::from(p.ip_end) < frame_len {
        u64::from(p.ip_end)
    } else {
        frame_len
    };
    let payload_len = end.checked_sub(payload as u64)?;
    if payload_len == 0 {
        return None;
    }
    Some(Transport {
        l4,
        payload,
        payload_len: payload_len as u32,
    })
}

/// Offsets from [`transport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    pub l4: usize,
    pub payload: usize,
    pub payload_len: u32,
}

/// The shortest IP datagram that can carry an ack-eliciting QUIC
/// Initial: the shortest IP header (IPv4's 20 bytes), UDP and the
/// 1200-byte payload RFC 9000 §14.1 asks of every such datagram.
pub const MIN_QUIC_INITIAL_DATAGRAM: u64 = 20 + 8 + 1200;

/// Whether the IP datagram (to its own length, else the frame's end) is
/// long enough to hold a QUIC Initial; decided without reading the frame.
#[inline(always)]
fn may_hold_quic_initial(p: &Parsed, frame_len: u64) -> bool {
    let end = if p.ip_end != 0 && u64::from(p.ip_end) < frame_len {
        u64::from(p.ip_end)
    } else {
        frame_len
    };
    end >= u64::from(p.l3_offset) + MIN_QUIC_INITIAL_DATAGRAM
}

/// Sorts one parsed frame; `app` is the [`select`] mask, `dns_ports` the
/// configured ports. Reads at most 9 payload bytes.
#[inline(always)]
pub fn classify<F: Frame + ?Sized>(
    frame: &F,
    p: &Parsed,
    frame_len: u64,
    app: u32,
    dns_ports: &[u16; MAX_DNS_PORTS],
) -> Candidate {
    if app == 0 || !matches!(p.class, ProtocolClass::Tcp | ProtocolClass::Udp) {
        return Candidate::None;
    }
    let dns = app & select::DNS != 0
        && (is_dns_port(p.src_port, dns_ports) || is_dns_port(p.dst_port, dns_ports));
    // A datagram that carries an ack-eliciting Initial (one with CRYPTO
    // frames) has at least 1200 bytes of payload (RFC 9000 §14.1), so a
    // smaller UDP frame that is not DNS is passed over unread.
    if !dns && p.class == ProtocolClass::Udp && !may_hold_quic_initial(p, frame_len) {
        return Candidate::None;
    }
    let Some(t) = transport(frame, p, frame_len) else {
        return Candidate::None;
    };
    if dns {
        return Candidate::Dns;
    }
    if p.class == ProtocolClass::Udp {
        if app & select::QUIC != 0
            && let Some(h) = frame.bytes::<5>(t.payload)
            && is_quic_initial(h)
        {
            return Candidate::QuicInitial;
        }
        return Candidate::None;
    }
    if app & select::TLS == 0 {
        return Candidate::None;
    }
    let Some(seq) = frame.bytes::<4>(t.l4 + 4) else {
        return Candidate::None;
    };
    let seq = be32(seq);
    if let Some(h) = frame.bytes::<9>(t.payload)
        && let Some(needed) = handshake_bytes(h)
    {
        return Candidate::Handshake {
            seq,
            payload_len: t.payload_len,
            needed,
        };
    }
    Candidate::Segment {
        seq,
        payload_len: t.payload_len,
    }
}

#[inline(always)]
fn is_dns_port(port: u16, ports: &[u16; MAX_DNS_PORTS]) -> bool {
    port != 0 && (port == ports[0] || port == ports[1] || port == ports[2] || port == ports[3])
}

/// Payload bytes that hold the hello this record begins, or `None` when
/// it is not a TLS (SSL 3.0 to 1.3 record versions) handshake record
/// starting with a ClientHello (1) or ServerHello (2).
#[inline(always)]
pub fn handshake_bytes(h: [u8; 9]) -> Option<u32> {
    if h[0] != 0x16 || h[1] != 0x03 || h[2] > 0x04 || !(h[5] == 1 || h[5] == 2) {
        return None;
    }
    let record = u32::from(h[3]) << 8 | u32::from(h[4]);
    let message = 4 + (u32::from(h[6]) << 16 | u32::from(h[7]) << 8 | u32::from(h[8]));
    let body = if message < record { message } else { record };
    let needed = 5 + body;
    Some(if needed < MAX_HANDSHAKE_BYTES {
        needed
    } else {
        MAX_HANDSHAKE_BYTES
    })
}

/// A QUIC long header (form and fixed bits set) of an Initial packet:
/// type 0 in v1 (RFC 9000 §17.2.2), type 1 in v2 (RFC 9369 §3.2).
#[inline(always)]
pub fn is_quic_initial(h: [u8; 5]) -> bool {
    if h[0] & 0xc0 != 0xc0 {
        return false;
    }
    let kind = h[0] & 0x30;
    match be32([h[1], h[2], h[3], h[4]]) {
        QUIC_V1 => kind == 0x00,
        QUIC_V2 => kind == 0x10,
        _ => false,
    }
}

/// The follow table's key: the direction of the flow that sends the hello.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FollowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
}

const _: () = assert!(core::mem::size_of::<FollowKey>() == 36);

impl FollowKey {
    /// The key of a parsed frame's flow, in its direction.
    #[inline(always)]
    pub fn of<F: Frame + ?Sized>(frame: &F, p: &Parsed) -> FollowKey {
        let (src, dst) = p.addresses(frame);
        FollowKey {
            src,
            dst,
            src_port: p.src_port,
            dst_port: p.dst_port,
        }
    }
}

/// A handshake being followed: sequence numbers after its first segment
/// up to the end of the hello, and the segments still allowed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowState {
    pub from_seq: u32,
    pub end_seq: u32,
    pub segments_left: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<FollowState>() == 16);

impl FollowState {
    /// The state after a first segment, or `None` when the hello fits it.
    #[inline(always)]
    pub fn after_first(seq: u32, payload_len: u32, needed: u32) -> Option<FollowState> {
        if payload_len >= needed {
            return None;
        }
        Some(FollowState {
            from_seq: seq.wrapping_add(payload_len),
            end_seq: seq.wrapping_add(needed),
            segments_left: MAX_FOLLOW_SEGMENTS,
            _pad: 0,
        })
    }
}

/// What to do with a segment of a followed flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Not part of the hello (before it, after it, or out of window).
    Skip,
    /// Part of it; copy it and keep following.
    Take,
    /// Part of it, and the last one to take: forget the flow.
    TakeLast,
}

/// Applies one segment to a followed handshake (sequence arithmetic mod
/// 2^32, out of order and retransmitted segments taken while the window
/// lasts). The agent reassembles by sequence number and checks.
#[inline(always)]
pub fn follow(state: &mut FollowState, seq: u32, payload_len: u32) -> Follow {
    let span = state.end_seq.wrapping_sub(state.from_seq);
    let at = seq.wrapping_sub(state.from_seq);
    if at >= span || payload_len == 0 {
        return Follow::Skip;
    }
    state.segments_left = state.segments_left.saturating_sub(1);
    // In order up to the end: the hello is complete.
    if state.segments_left == 0 || (at == 0 && payload_len >= span) {
        return Follow::TakeLast;
    }
    if at == 0 {
        state.from_seq = seq.wrapping_add(payload_len);
    }
    Follow::Take
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_records_are_recognised_by_their_first_bytes() {
        // ClientHello in a TLS 1.0 record: record 512, message 4 + 508.
        let h = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        assert_eq!(handshake_bytes(h), Some(517));
        // ServerHello, record longer than the message (more messages follow).
        let s = [0x16, 0x03, 0x03, 0x10, 0x00, 0x02, 0x00, 0x00, 0x50];
        assert_eq!(handshake_bytes(s), Some(5 + 4 + 0x50));
        // Application data, a Finished, an odd version: not selected.
        assert_eq!(handshake_bytes([0x17, 3, 3, 0, 9, 1, 0, 0, 5]), None);
        assert_eq!(handshake_bytes([0x16, 3, 3, 0, 9, 20, 0, 0, 5]), None);
        assert_eq!(handshake_bytes([0x16, 3, 5, 0, 9, 1, 0, 0, 5]), None);
        assert_eq!(handshake_bytes([0x16, 2, 0, 0, 9, 1, 0, 0, 5]), None);
        // A claimed 16 MB message is followed over 16 KiB at most.
        assert_eq!(
            handshake_bytes([0x16, 3, 3, 0xff, 0xff, 1, 0xff, 0xff, 0xff]),
            Some(MAX_HANDSHAKE_BYTES)
        );
    }

    fn udp(dport: u16, payload: &[u8]) -> std::vec::Vec<u8> {
        // Ethernet, IPv4 (20), UDP (8), payload, 6 bytes of Ethernet padding.
        let mut f = std::vec![0u8; 12];
        f.extend([0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend([198, 18, 0, 1, 198, 18, 0, 2]);
        f.extend([0x9c, 0x40]);
        f.extend(dport.to_be_bytes());
        f.extend([0, 0, 0, 0]);
        f.extend(payload);
        let ip_len = (28 + payload.len()) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f.extend([0xee; 6]);
        f
    }

    #[test]
    fn quic_initials_are_looked_for_only_in_datagrams_long_enough_to_carry_one() {
        let ports = crate::config::DEFAULT_DNS_PORTS;
        let initial = |len: usize| {
            let mut payload = std::vec![0xc3, 0, 0, 0, 1];
            payload.resize(len, 0);
            udp(443, &payload)
        };
        let judge = |f: &std::vec::Vec<u8>| {
            let p = crate::parse::parse(&f[..]);
            classify(&f[..], &p, f.len() as u64, select::ALL, &ports)
        };
        // 1200 bytes of payload (RFC 9000 §14.1): an Initial may be in it.
        assert_eq!(judge(&initial(1200)), Candidate::QuicInitial);
        // One byte short (the frame's Ethernet padding does not count):
        // passed over unread.
        assert_eq!(judge(&initial(1199)), Candidate::None);
    }

    #[test]
    fn payload_ends_with_the_datagram_and_ports_pick_dns() {
        let f = udp(53, &[1, 2, 3]);
        let p = crate::parse::parse(&f[..]);
        let t = transport(&f[..], &p, f.len() as u64);
        assert_eq!(
            t.map(|t| (t.l4, t.payload, t.payload_len)),
            Some((34, 42, 3))
        );
        let ports = crate::config::DEFAULT_DNS_PORTS;
        assert_eq!(
            classify(&f[..], &p, f.len() as u64, select::ALL, &ports),
            Candidate::Dns
        );
        assert_eq!(
            classify(&f[..], &p, f.len() as u64, select::QUIC, &ports),
            Candidate::None
        );
        assert_eq!(
            classify(&f[..], &p, f.len() as u64, 0, &ports),
            Candidate::None
        );
        // No payload: nothing to read.
        let f = udp(53, &[]);
        let p = crate::parse::parse(&f[..]);
        assert_eq!(
            classify(&f[..], &p, f.len() as u64, select::ALL, &ports),
            Candidate::None
        );
    }

    #[test]
    fn quic_initials_of_v1_and_v2_only() {
        assert!(is_quic_initial([0xc3, 0, 0, 0, 1]));
        assert!(is_quic_initial([0xd0, 0x6b, 0x33, 0x43, 0xcf]));
        // v1 Handshake (type 2), v2's Initial type under v1, short header.
        assert!(!is_quic_initial([0xe0, 0, 0, 0, 1]));
        assert!(!is_quic_initial([0xd0, 0, 0, 0, 1]));
        assert!(!is_quic_initial([0x40, 0, 0, 0, 1]));
        // Version negotiation (version 0) and unknown versions.
        assert!(!is_quic_initial([0xc0, 0, 0, 0, 0]));
        assert!(!is_quic_initial([0xc0, 0xff, 0, 0, 0x1d]));
    }

    #[test]
    fn a_split_hello_is_followed_in_and_out_of_order() {
        // 1800-byte hello, first segment 1448 bytes at seq 1000.
        let mut s = FollowState::after_first(1000, 1448, 1800).unwrap_or_default();
        assert_eq!((s.from_seq, s.end_seq), (2448, 2800));
        assert_eq!(follow(&mut s, 1000, 1448), Follow::Skip, "the first again");
        assert_eq!(follow(&mut s, 2800, 100), Follow::Skip, "past the hello");
        assert_eq!(follow(&mut s, 2448, 352), Follow::TakeLast);
        // Two pieces out of order: taken, the flow kept until the window ends.
        let mut s = FollowState::after_first(u32::MAX - 10, 100, 400).unwrap_or_default();
        assert_eq!(
            follow(&mut s, (u32::MAX - 10).wrapping_add(250), 150),
            Follow::Take
        );
        assert_eq!(
            follow(&mut s, (u32::MAX - 10).wrapping_add(100), 150),
            Follow::Take
        );
        assert_eq!(s.segments_left, MAX_FOLLOW_SEGMENTS - 2);
        assert!(FollowState::after_first(5, 600, 517).is_none(), "fits");
        // A retransmitting peer cannot keep a flow followed forever.
        let mut s = FollowState::after_first(0, 10, 5000).unwrap_or_default();
        let mut taken = 0;
        while follow(&mut s, 20, 5) == Follow::Take {
            taken += 1;
        }
        assert_eq!(taken, MAX_FOLLOW_SEGMENTS - 1);
    }
}
