//! The sample record the XDP program writes into the `SAMPLES` ring buffer.
//!
//! Layout (little-endian host order, 72 bytes, no implicit padding):
//!
//! | off | field |
//! | --- | --- |
//! | 0 | timestamp_ns: u64 (CLOCK_MONOTONIC, `bpf_ktime_get_ns`) |
//! | 8 | ifindex: u32 |
//! | 12 | frame_len: u32 (whole frame, before any truncation) |
//! | 16 | sample_rate: u32 (the 1-in-N that applied to this record) |
//! | 20 | vlan_id: u16 (outer tag's 12-bit id, 0 when untagged) |
//! | 22 | src_port: u16 (ICMP: type) |
//! | 24 | dst_port: u16 (ICMP: code) |
//! | 26 | version: u8 (= [`RECORD_VERSION`]) |
//! | 27 | class: u8 ([`crate::class::ProtocolClass`]) |
//! | 28 | ip_version: u8 (0, 4 or 6) |
//! | 29 | l4_proto: u8 (IP protocol number after extension headers) |
//! | 30 | tcp_flags: u8 |
//! | 31 | ttl: u8 (IPv4 TTL or IPv6 hop limit) |
//! | 32 | vlan_depth: u8 |
//! | 33 | flags: u8 ([`record_flags`]) |
//! | 34 | parse_error: u8 (0, or [`crate::class::ParseError`] + 1 when malformed) |
//! | 35 | _pad: [u8; 5] |
//! | 40 | src_addr: [u8; 16] (IPv4 as ::ffff:a.b.c.d) |
//! | 56 | dst_addr: [u8; 16] |

/// Where the sample record's addresses come from; re-exported for the
/// many users that build records.
pub use crate::parse::map_ipv4;

pub const RECORD_VERSION: u8 = 1;
pub const RECORD_SIZE: usize = 72;

pub mod record_flags {
    /// Sampled by the control-packet sampler (SYN/FIN/RST, ICMP).
    pub const CONTROL: u8 = 0x01;
    /// The packet is an IP fragment (first or later).
    pub const FRAGMENT: u8 = 0x02;
    /// A non-first fragment: ports are absent.
    pub const LATER_FRAGMENT: u8 = 0x04;
    /// The frame is larger than its first buffer (XDP multi-buffer).
    pub const MULTI_BUFFER: u8 = 0x08;
    /// Sampled as the first packet of a flow the program had not seen
    /// lately (the control sampler took it).
    pub const FIRST_PACKET: u8 = 0x10;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleRecord {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub frame_len: u32,
    pub sample_rate: u32,
    pub vlan_id: u16,
    pub src_port: u16,
    pub dst_port: u16,
    pub version: u8,
    pub class: u8,
    pub ip_version: u8,
    pub l4_proto: u8,
    pub tcp_flags: u8,
    pub ttl: u8,
    pub vlan_depth: u8,
    pub flags: u8,
    /// 0, or the [`crate::class::ParseError`] + 1 of a malformed frame.
    pub parse_error: u8,
    pub _pad: [u8; 5],
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<SampleRecord>() == RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<SampleRecord>() == 8);

/// Why a ring buffer record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is not [`RECORD_SIZE`] bytes long.
    Length(usize),
    /// The record carries a version this build does not understand.
    Version(u8),
    /// The class byte is outside [`crate::class::ProtocolClass`].
    Class(u8),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Length(n) => write!(f, "sample record is {n} bytes, expected {RECORD_SIZE}"),
            Self::Version(v) => write!(f, "sample record version {v}, expected {RECORD_VERSION}"),
            Self::Class(c) => write!(f, "sample record has unknown protocol class {c}"),
        }
    }
}

impl SampleRecord {
    /// Decodes a record from ring buffer bytes, checking length, version and
    /// class. Reads unaligned so any byte slice is safe.
    pub fn decode(bytes: &[u8]) -> Result<SampleRecord, DecodeError> {
        if bytes.len() != RECORD_SIZE {
            return Err(DecodeError::Length(bytes.len()));
        }
        // SAFETY: length checked above; SampleRecord is integer-only repr(C),
        // so every bit pattern is a valid value.
        let record: SampleRecord =
            unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<SampleRecord>()) };
        if record.version != RECORD_VERSION {
            return Err(DecodeError::Version(record.version));
        }
        if crate::class::ProtocolClass::from_u8(record.class).is_none() {
            return Err(DecodeError::Class(record.class));
        }
        Ok(record)
    }

    /// Why the frame was malformed, when it was.
    pub fn parse_error(&self) -> Option<crate::class::ParseError> {
        crate::class::ParseError::ALL
            .get(usize::from(self.parse_error).checked_sub(1)?)
            .copied()
    }

    /// The record's bytes as the kernel writes them.
    pub fn as_bytes(&self) -> &[u8; RECORD_SIZE] {
        // SAFETY: size asserted equal at compile time; no padding bytes.
        unsafe { &*(self as *const SampleRecord).cast::<[u8; RECORD_SIZE]>() }
    }
}

/// Where and when a sampled frame was seen, besides what its parse says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleMeta {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub frame_len: u32,
    pub sample_rate: u32,
    /// The frame is larger than its first buffer (XDP multi-buffer).
    pub multi_buffer: bool,
    /// Taken as the first packet of a flow (by the control sampler).
    pub first_packet: bool,
}

impl SampleRecord {
    /// A TCP SYN without ACK: a connection attempt.
    pub fn is_tcp_syn(&self) -> bool {
        self.class == crate::class::ProtocolClass::Tcp as u8
            && self.tcp_flags & (crate::class::tcp_flags::SYN | crate::class::tcp_flags::ACK)
                == crate::class::tcp_flags::SYN
    }

    /// The record for a parsed frame: the one way the XDP program and
    /// offline analysis turn a parse into a sample.
    #[inline(always)]
    pub fn from_parsed(
        p: &crate::parse::Parsed,
        (src_addr, dst_addr): ([u8; 16], [u8; 16]),
        meta: SampleMeta,
    ) -> SampleRecord {
        let mut flags = 0u8;
        if p.is_control() || meta.first_packet {
            flags |= record_flags::CONTROL;
        }
        if meta.first_packet {
            flags |= record_flags::FIRST_PACKET;
        }
        if p.fragment {
            flags |= record_flags::FRAGMENT;
        }
        if p.class == crate::class::ProtocolClass::Fragment {
            flags |= record_flags::LATER_FRAGMENT;
        }
        if meta.multi_buffer {
            flags |= record_flags::MULTI_BUFFER;
        }
        SampleRecord {
            timestamp_ns: meta.timestamp_ns,
            ifindex: meta.ifindex,
            frame_len: meta.frame_len,
            sample_rate: meta.sample_rate,
            vlan_id: p.vlan_id,
            src_port: p.src_port,
            dst_port: p.dst_port,
            version: RECORD_VERSION,
            class: p.class as u8,
            ip_version: p.ip_version,
            l4_proto: p.l4_proto,
            tcp_flags: p.tcp_flags,
            ttl: p.ttl,
            vlan_depth: p.vlan_depth,
            flags,
            parse_error: p.error.map_or(0, |e| e as u8 + 1),
            _pad: [0; 5],
            src_addr,
            dst_addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SampleRecord {
        SampleRecord {
            timestamp_ns: 0x0102_0304_0506_0708,
            ifindex: 7,
            frame_len: 1514,
            sample_rate: 64,
            vlan_id: 100,
            src_port: 443,
            dst_port: 51234,
            version: RECORD_VERSION,
            class: 0,
            ip_version: 4,
            l4_proto: 6,
            tcp_flags: 0x12,
            ttl: 63,
            vlan_depth: 1,
            flags: record_flags::CONTROL,
            parse_error: 0,
            _pad: [0; 5],
            src_addr: map_ipv4([198, 18, 0, 1]),
            dst_addr: map_ipv4([198, 18, 0, 2]),
        }
    }

    #[test]
    fn layout_matches_documented_offsets() {
        let r = sample();
        let b = r.as_bytes();
        assert_eq!(&b[0..8], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[8..12], &7u32.to_le_bytes());
        assert_eq!(&b[12..16], &1514u32.to_le_bytes());
        assert_eq!(&b[16..20], &64u32.to_le_bytes());
        assert_eq!(&b[20..22], &100u16.to_le_bytes());
        assert_eq!(&b[22..24], &443u16.to_le_bytes());
        assert_eq!(&b[24..26], &51234u16.to_le_bytes());
        assert_eq!(
            b[26..34],
            [RECORD_VERSION, 0, 4, 6, 0x12, 63, 1, record_flags::CONTROL]
        );
        assert_eq!(b[34..40], [0; 6]);
        let tiny = SampleRecord {
            parse_error: crate::class::ParseError::TinyFragment as u8 + 1,
            ..r
        };
        assert_eq!(tiny.as_bytes()[34], 11);
        assert_eq!(
            tiny.parse_error(),
            Some(crate::class::ParseError::TinyFragment)
        );
        assert_eq!(r.parse_error(), None);
        assert_eq!(b[40..56], map_ipv4([198, 18, 0, 1]));
        assert_eq!(b[56..72], map_ipv4([198, 18, 0, 2]));
    }

    #[test]
    fn decode_round_trips() {
        let r = sample();
        assert_eq!(SampleRecord::decode(r.as_bytes()), Ok(r));
    }

    #[test]
    fn decode_rejects_wrong_lengths() {
        let r = sample();
        let b = r.as_bytes();
        assert_eq!(SampleRecord::decode(&b[..71]), Err(DecodeError::Length(71)));
        assert_eq!(SampleRecord::decode(&[]), Err(DecodeError::Length(0)));
        let mut long = [0u8; 80];
        long[..72].copy_from_slice(b);
        assert_eq!(SampleRecord::decode(&long), Err(DecodeError::Length(80)));
    }

    #[test]
    fn decode_rejects_garbage() {
        let mut b = *sample().as_bytes();
        b[26] = 9;
        assert_eq!(SampleRecord::decode(&b), Err(DecodeError::Version(9)));
        let mut b = *sample().as_bytes();
        b[27] = 200;
        assert_eq!(SampleRecord::decode(&b), Err(DecodeError::Class(200)));
        assert_eq!(
            SampleRecord::decode(&[0xff; 72]),
            Err(DecodeError::Version(0xff))
        );
    }

    #[test]
    fn decode_is_safe_on_unaligned_input() {
        let mut buf = [0u8; 73];
        buf[1..].copy_from_slice(sample().as_bytes());
        assert_eq!(SampleRecord::decode(&buf[1..]), Ok(sample()));
    }
}
