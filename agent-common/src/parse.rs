//! The packet parser shared by the XDP program and userspace (offline
//! analysis, tests). It is written for the BPF verifier: no allocation, every
//! loop bounded, every read bounds-checked through [`Frame::read`], and every
//! offset capped so the verifier can track its range.

use crate::class::{ParseError, ProtocolClass, ethertype, ipproto, tcp_flags};

/// VLAN tags walked before giving up on finding the payload type.
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked before counting `ipv6_ext_limit`.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// No header the parser reads starts beyond this offset. The cap keeps the
/// offsets bounded for the verifier; a frame needing more is malformed
/// (reported as the truncation of the header that would start there).
pub const MAX_PARSE_OFFSET: usize = 4096;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

/// Bounds-checked access to frame bytes.
pub trait Frame {
    /// The `N` bytes at `offset`, or `None` if any of them lies outside the
    /// frame (or `offset` exceeds [`MAX_PARSE_OFFSET`]).
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

impl Frame for [u8] {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        if offset > MAX_PARSE_OFFSET {
            return None;
        }
        let end = offset.checked_add(N)?;
        let s = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// What the parser learned about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub class: ProtocolClass,
    /// Set exactly when `class` is `Malformed`.
    pub error: Option<ParseError>,
    /// 4 or 6 once the IP header parsed, else 0.
    pub ip_version: u8,
    pub vlan_depth: u8,
    /// Outer VLAN id (12 bits), 0 when untagged.
    pub vlan_id: u16,
    /// Offset of the IP header (valid when `ip_version != 0`).
    pub l3_offset: u16,
    /// Where the IP datagram ends by its own length field (IPv4 total
    /// length, IPv6 40 + payload length); 0 when unknown. Lets the XDP
    /// program skip asking for the full frame length when the datagram
    /// visibly fits in the first buffer.
    pub ip_end: u32,
    /// IP protocol after extension headers, 0 when not IP.
    pub l4_proto: u8,
    pub ttl: u8,
    pub tcp_flags: u8,
    /// Ports; for ICMP/ICMPv6 the type and code.
    pub src_port: u16,
    pub dst_port: u16,
    /// The packet is an IP fragment (first or later).
    pub fragment: bool,
}

impl Parsed {
    const fn new() -> Self {
        Parsed {
            class: ProtocolClass::NonIp,
            error: None,
            ip_version: 0,
            vlan_depth: 0,
            vlan_id: 0,
            l3_offset: 0,
            ip_end: 0,
            l4_proto: 0,
            ttl: 0,
            tcp_flags: 0,
            src_port: 0,
            dst_port: 0,
            fragment: false,
        }
    }

    #[inline(always)]
    fn malformed(mut self, error: ParseError) -> Self {
        self.class = ProtocolClass::Malformed;
        self.error = Some(error);
        self
    }

    /// A frame built to evade parsing ([`ParseError::is_evasive`]).
    pub fn is_evasive(&self) -> bool {
        self.error.is_some_and(ParseError::is_evasive)
    }

    /// Control packets are sampled at their own (higher) rate: TCP SYN, FIN
    /// or RST, ICMP/ICMPv6, and frames built to evade parsing.
    pub fn is_control(&self) -> bool {
        match self.class {
            ProtocolClass::Tcp => {
                self.tcp_flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0
            }
            ProtocolClass::Icmp | ProtocolClass::Icmpv6 => true,
            ProtocolClass::Malformed => self.is_evasive(),
            _ => false,
        }
    }

    /// Source and destination addresses, IPv4 mapped into IPv6. Zero when
    /// the frame has no parsed IP header.
    #[inline(always)]
    pub fn addresses<F: Frame + ?Sized>(&self, frame: &F) -> ([u8; 16], [u8; 16]) {
        let l3 = self.l3_offset as usize;
        match self.ip_version {
            4 => {
                let src = frame.bytes::<4>(l3 + 12).unwrap_or([0; 4]);
                let dst = frame.bytes::<4>(l3 + 16).unwrap_or([0; 4]);
                (map_ipv4(src), map_ipv4(dst))
            }
            6 => (
                frame.bytes::<16>(l3 + 8).unwrap_or([0; 16]),
                frame.bytes::<16>(l3 + 24).unwrap_or([0; 16]),
            ),
            _ => ([0; 16], [0; 16]),
        }
    }
}

/// Parses one frame starting at its Ethernet header.
#[inline(always)]
pub fn parse<F: Frame + ?Sized>(frame: &F) -> Parsed {
    let mut p = Parsed::new();
    let Some(et) = frame.bytes::<2>(12) else {
        return p.malformed(ParseError::TruncatedEthernet);
    };
    let mut ether_type = be16(et);
    let mut off = ETH_HLEN;

    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(
            ether_type,
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
        ) {
            break;
        }
        let Some(tag) = frame.bytes::<4>(off) else {
            return p.malformed(ParseError::TruncatedVlan);
        };
        if p.vlan_depth == 0 {
            p.vlan_id = be16([tag[0], tag[1]]) & 0x0fff;
        }
        p.vlan_depth += 1;
        ether_type = be16([tag[2], tag[3]]);
        off += VLAN_HLEN;
    }

    match ether_type {
        ethertype::IPV4 => parse_ipv4(frame, off, p),
        ethertype::IPV6 => parse_ipv6(frame, off, p),
        ethertype::ARP => {
            p.class = ProtocolClass::Arp;
            p
        }
        // Includes frames with more VLAN tags than MAX_VLAN_TAGS.
        _ => p,
    }
}

#[inline(always)]
fn parse_ipv4<F: Frame + ?Sized>(frame: &F, off: usize, mut p: Parsed) -> Parsed {
    let Some(h) = frame.bytes::<IPV4_MIN_HLEN>(off) else {
        return p.malformed(ParseError::TruncatedIpv4);
    };
    let version = h[0] >> 4;
    let hlen = ((h[0] & 0x0f) as usize) * 4;
    let total_len = be16([h[2], h[3]]) as usize;
    if version != 4 || hlen < IPV4_MIN_HLEN || total_len < hlen {
        return p.malformed(ParseError::BadIpv4Header);
    }
    // The options must be inside the frame: check the header's last byte.
    if frame.bytes::<1>(off + hlen - 1).is_none() {
        return p.malformed(ParseError::Ipv4IhlPastEnd);
    }
    p.ip_version = 4;
    p.l3_offset = off as u16;
    p.ip_end = (off + total_len) as u32;
    p.ttl = h[8];
    p.l4_proto = h[9];
    let frag = be16([h[6], h[7]]);
    let more_fragments = frag & 0x2000 != 0;
    let frag_offset = frag & 0x1fff;
    p.fragment = more_fragments || frag_offset != 0;
    if frag_offset != 0 {
        return later_fragment(p, frag_offset);
    }
    parse_l4(frame, off + hlen, p)
}

#[inline(always)]
fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        ipproto::HOPOPTS | ipproto::ROUTING | ipproto::FRAGMENT | ipproto::DSTOPTS | ipproto::AH
    )
}

#[inline(always)]
fn parse_ipv6<F: Frame + ?Sized>(frame: &F, off: usize, mut p: Parsed) -> Parsed {
    let Some(h) = frame.bytes::<8>(off) else {
        return p.malformed(ParseError::TruncatedIpv6);
    };
    // Addresses are read when sampling; check they are present now.
    if frame.bytes::<1>(off + IPV6_HLEN - 1).is_none() {
        return p.malformed(ParseError::TruncatedIpv6);
    }
    if h[0] >> 4 != 6 {
        return p.malformed(ParseError::BadIpv6Header);
    }
    p.ip_version = 6;
    p.l3_offset = off as u16;
    let payload_len = be16([h[4], h[5]]) as usize;
    // Payload length 0 means a jumbogram (or a sender's bug): unknown end.
    p.ip_end = if payload_len == 0 {
        0
    } else {
        (off + IPV6_HLEN + payload_len) as u32
    };
    p.ttl = h[7];
    let mut next = h[6];
    let mut off = off + IPV6_HLEN;

    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_ext(next) {
            break;
        }
        if next == ipproto::FRAGMENT {
            let Some(f) = frame.bytes::<4>(off) else {
                return p.malformed(ParseError::TruncatedIpv6Ext);
            };
            let frag = be16([f[2], f[3]]);
            p.fragment = true;
            next = f[0];
            off += 8;
            if frag >> 3 != 0 {
                p.l4_proto = next;
                return later_fragment(p, frag >> 3);
            }
            continue;
        }
        let Some(e) = frame.bytes::<2>(off) else {
            return p.malformed(ParseError::TruncatedIpv6Ext);
        };
        // AH counts its length in 4-octet units minus 2; the others in
        // 8-octet units not counting the first 8 octets.
        let len = if next == ipproto::AH {
            (e[1] as usize + 2) * 4
        } else {
            (e[1] as usize + 1) * 8
        };
        if frame.bytes::<1>(off + len - 1).is_none() {
            return p.malformed(ParseError::TruncatedIpv6Ext);
        }
        next = e[0];
        off += len;
    }
    if is_ipv6_ext(next) {
        return p.malformed(ParseError::Ipv6ExtLimit);
    }
    p.l4_proto = next;
    parse_l4(frame, off, p)
}

/// A non-first fragment (offset in 8-byte units): `fragment`, no ports,
/// unless it starts inside the minimal TCP header, which the first
/// fragment (not tiny) already carried: only an attacker overlaps it.
#[inline(always)]
fn later_fragment(mut p: Parsed, offset_units: u16) -> Parsed {
    if p.l4_proto == ipproto::TCP && (offset_units as usize) * 8 < 20 {
        return p.malformed(ParseError::OverlappingFragment);
    }
    p.class = ProtocolClass::Fragment;
    p
}

/// The transport header of `N` bytes at `off`: it must lie inside the
/// frame and inside the IP datagram by its own length, or bytes after the
/// datagram (Ethernet padding, chosen by the sender) would be read as
/// ports and flags. A first fragment too short for it is a tiny fragment.
#[inline(always)]
fn l4_header<F: Frame + ?Sized, const N: usize>(
    frame: &F,
    off: usize,
    p: &Parsed,
) -> Result<[u8; N], ParseError> {
    let Some(h) = frame.bytes::<N>(off) else {
        return Err(ParseError::TruncatedL4);
    };
    if p.ip_end != 0 && off + N > p.ip_end as usize {
        return Err(if p.fragment {
            ParseError::TinyFragment
        } else {
            ParseError::TruncatedL4
        });
    }
    Ok(h)
}

#[inline(always)]
fn parse_l4<F: Frame + ?Sized>(frame: &F, off: usize, mut p: Parsed) -> Parsed {
    match p.l4_proto {
        ipproto::TCP => {
            let t = match l4_header::<F, 20>(frame, off, &p) {
                Ok(t) => t,
                Err(e) => return p.malformed(e),
            };
            p.src_port = be16([t[0], t[1]]);
            p.dst_port = be16([t[2], t[3]]);
            p.tcp_flags = t[13];
            p.class = ProtocolClass::Tcp;
        }
        ipproto::UDP => {
            let u = match l4_header::<F, 8>(frame, off, &p) {
                Ok(u) => u,
                Err(e) => return p.malformed(e),
            };
            p.src_port = be16([u[0], u[1]]);
            p.dst_port = be16([u[2], u[3]]);
            p.class = ProtocolClass::Udp;
        }
        ipproto::ICMP | ipproto::ICMPV6 => {
            let i = match l4_header::<F, 8>(frame, off, &p) {
                Ok(i) => i,
                Err(e) => return p.malformed(e),
            };
            p.src_port = i[0] as u16;
            p.dst_port = i[1] as u16;
            p.class = if p.l4_proto == ipproto::ICMP {
                ProtocolClass::Icmp
            } else {
                ProtocolClass::Icmpv6
            };
        }
        ipproto::SCTP => {
            let s = match l4_header::<F, 12>(frame, off, &p) {
                Ok(s) => s,
                Err(e) => return p.malformed(e),
            };
            p.src_port = be16([s[0], s[1]]);
            p.dst_port = be16([s[2], s[3]]);
            p.class = ProtocolClass::Sctp;
        }
        ipproto::GRE => {
            if let Err(e) = l4_header::<F, 4>(frame, off, &p) {
                return p.malformed(e);
            }
            p.class = ProtocolClass::Gre;
        }
        _ => p.class = ProtocolClass::OtherIp,
    }
    p
}

/// Writes an IPv4 address as an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
#[inline(always)]
pub fn map_ipv4(addr: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
    ]
}
