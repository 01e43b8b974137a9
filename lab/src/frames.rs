//! Builds Ethernet frames byte by byte.
//!
//! Hand-written rather than taken from a packet crate on purpose: the tests
//! need frames no builder makes (bad IHL, truncation at any byte, AH inside
//! an IPv6 extension chain, triple VLAN tags), and a builder independent of
//! the parser under test keeps the two from sharing a mistake.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Destination MAC of lab frames: locally administered and never a
/// receiver's own address, so the receiving stack discards the frame
/// before IP and nothing answers.
pub const LAB_DST_MAC: [u8; 6] = [0x02, 0x6e, 0x74, 0x61, 0x00, 0x02];
pub const LAB_SRC_MAC: [u8; 6] = [0x02, 0x6e, 0x74, 0x61, 0x00, 0x01];

pub const LAB_V4_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LAB_V4_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LAB_V6_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6e74, 0x61, 0, 0, 0, 0, 1);
pub const LAB_V6_DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6e74, 0x61, 0, 0, 0, 0, 2);

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

#[derive(Clone, Debug)]
pub enum L3 {
    Ipv4(Ipv4),
    Ipv6(Ipv6),
    /// An ARP request (who-has dst tell src).
    Arp,
    /// Any other ethertype with the given payload.
    Raw {
        ethertype: u16,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// Options, padded to a multiple of 4 bytes by the builder.
    pub options: Vec<u8>,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub more_fragments: bool,
}

impl Default for Ipv4 {
    fn default() -> Self {
        Ipv4 {
            src: LAB_V4_SRC,
            dst: LAB_V4_DST,
            ttl: 64,
            options: Vec::new(),
            frag_offset: 0,
            more_fragments: false,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    /// Fragment header: offset in 8-byte units.
    Fragment {
        offset: u16,
        more: bool,
    },
    /// Authentication header with `icv_words` 4-byte words of ICV.
    Ah {
        icv_words: u8,
    },
}

impl Ext {
    fn proto(&self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::Routing => 43,
            Ext::Fragment { .. } => 44,
            Ext::Ah { .. } => 51,
            Ext::DestOpts => 60,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub ext: Vec<Ext>,
}

impl Default for Ipv6 {
    fn default() -> Self {
        Ipv6 {
            src: LAB_V6_SRC,
            dst: LAB_V6_DST,
            hop_limit: 64,
            ext: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
    },
    Icmpv6 {
        kind: u8,
        code: u8,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    Gre,
    /// Another IP protocol with its header bytes.
    Raw {
        proto: u8,
        header: Vec<u8>,
    },
    None,
}

impl L4 {
    fn proto(&self) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } => 1,
            L4::Icmpv6 { .. } => 58,
            L4::Sctp { .. } => 132,
            L4::Gre => 47,
            L4::Raw { proto, .. } => *proto,
            L4::None => 59,
        }
    }

    fn header(&self) -> Vec<u8> {
        match self {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = *flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h
            }
            L4::Icmp { kind, code } | L4::Icmpv6 { kind, code } => {
                vec![*kind, *code, 0, 0, 0, 1, 0, 1]
            }
            L4::Sctp { sport, dport } => {
                let mut h = vec![0u8; 12];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h
            }
            L4::Gre => vec![0, 0, 0x08, 0x00],
            L4::Raw { header, .. } => header.clone(),
            L4::None => Vec::new(),
        }
    }
}

/// A frame to build: Ethernet, optional VLAN tags, L3, L4 and payload.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    /// (TPID, VLAN id), outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub l3: L3,
    pub l4: L4,
    pub payload_len: usize,
    /// These payload bytes instead of `payload_len` counting bytes.
    pub payload: Option<Vec<u8>>,
    /// The TCP sequence number (L4::Tcp only).
    pub tcp_seq: u32,
}

impl FrameSpec {
    pub fn ipv4(l4: L4) -> Self {
        FrameSpec {
            vlans: Vec::new(),
            l3: L3::Ipv4(Ipv4::default()),
            l4,
            payload_len: 0,
            payload: None,
            tcp_seq: 1,
        }
    }

    pub fn ipv6(l4: L4) -> Self {
        FrameSpec {
            vlans: Vec::new(),
            l3: L3::Ipv6(Ipv6::default()),
            l4,
            payload_len: 0,
            payload: None,
            tcp_seq: 1,
        }
    }

    pub fn arp() -> Self {
        FrameSpec {
            vlans: Vec::new(),
            l3: L3::Arp,
            l4: L4::None,
            payload_len: 0,
            payload: None,
            tcp_seq: 1,
        }
    }

    pub fn raw(ethertype: u16, payload: Vec<u8>) -> Self {
        FrameSpec {
            vlans: Vec::new(),
            l3: L3::Raw { ethertype, payload },
            l4: L4::None,
            payload_len: 0,
            payload: None,
            tcp_seq: 1,
        }
    }

    pub fn with_vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.vlans.push((tpid, vid));
        self
    }

    pub fn with_payload(mut self, len: usize) -> Self {
        self.payload_len = len;
        self
    }

    /// Carries exactly these payload bytes (a TLS record, a DNS message).
    pub fn with_payload_bytes(mut self, bytes: &[u8]) -> Self {
        self.payload = Some(bytes.to_vec());
        self
    }

    pub fn with_tcp_seq(mut self, seq: u32) -> Self {
        self.tcp_seq = seq;
        self
    }

    pub fn with_ipv4(mut self, f: impl FnOnce(&mut Ipv4)) -> Self {
        if let L3::Ipv4(ref mut h) = self.l3 {
            f(h);
        }
        self
    }

    pub fn with_ipv6(mut self, f: impl FnOnce(&mut Ipv6)) -> Self {
        if let L3::Ipv6(ref mut h) = self.l3 {
            f(h);
        }
        self
    }

    /// The frame's bytes (no FCS). Short frames are not padded to 60 bytes,
    /// so truncation tests see exactly what they built; `pad_to_min` pads.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(128 + self.payload_len);
        f.extend_from_slice(&LAB_DST_MAC);
        f.extend_from_slice(&LAB_SRC_MAC);
        for (tpid, vid) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        let mut l4 = self.l4.header();
        if let L4::Tcp { .. } = self.l4 {
            l4[4..8].copy_from_slice(&self.tcp_seq.to_be_bytes());
        }
        let payload = match &self.payload {
            Some(bytes) => bytes.clone(),
            None => payload_bytes(self.payload_len),
        };
        if let L4::Udp { .. } = self.l4 {
            // A real UDP length, so dissectors (tshark) accept the frame.
            let len = (l4.len() + payload.len()) as u16;
            l4[4..6].copy_from_slice(&len.to_be_bytes());
        }
        match &self.l3 {
            L3::Ipv4(h) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                f.extend_from_slice(&ipv4_header(h, self.l4.proto(), l4.len() + payload.len()));
                f.extend_from_slice(&l4);
            }
            L3::Ipv6(h) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let ext = ipv6_ext_chain(&h.ext, self.l4.proto());
                let next = h.ext.first().map_or(self.l4.proto(), Ext::proto);
                f.extend_from_slice(&ipv6_header(h, next, ext.len() + l4.len() + payload.len()));
                f.extend_from_slice(&ext);
                f.extend_from_slice(&l4);
            }
            L3::Arp => {
                f.extend_from_slice(&0x0806u16.to_be_bytes());
                f.extend_from_slice(&arp_request());
            }
            L3::Raw { ethertype, payload } => {
                f.extend_from_slice(&ethertype.to_be_bytes());
                f.extend_from_slice(payload);
            }
        }
        f.extend_from_slice(&payload);
        f
    }
}

/// Pads a frame to the 60-byte Ethernet minimum (without FCS), as a NIC
/// would put it on the wire.
pub fn pad_to_min(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

fn payload_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_header(h: &Ipv4, proto: u8, payload: usize) -> Vec<u8> {
    let mut options = h.options.clone();
    while !options.len().is_multiple_of(4) {
        options.push(0); // End of Options List padding
    }
    let hlen = 20 + options.len();
    let mut b = vec![0u8; 20];
    b[0] = 0x40 | (hlen / 4) as u8;
    let total = (hlen + payload).min(usize::from(u16::MAX)) as u16;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    let frag = (h.frag_offset & 0x1fff) | if h.more_fragments { 0x2000 } else { 0 };
    b[6..8].copy_from_slice(&frag.to_be_bytes());
    b[8] = h.ttl;
    b[9] = proto;
    b[12..16].copy_from_slice(&h.src.octets());
    b[16..20].copy_from_slice(&h.dst.octets());
    b.extend_from_slice(&options);
    let c = checksum(&b);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    b
}

fn ipv6_header(h: &Ipv6, next: u8, payload: usize) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    b[0] = 0x60;
    let len = payload.min(usize::from(u16::MAX)) as u16;
    b[4..6].copy_from_slice(&len.to_be_bytes());
    b[6] = next;
    b[7] = h.hop_limit;
    b[8..24].copy_from_slice(&h.src.octets());
    b[24..40].copy_from_slice(&h.dst.octets());
    b
}

fn ipv6_ext_chain(ext: &[Ext], last_next: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(last_next, Ext::proto);
        match e {
            Ext::HopByHop | Ext::DestOpts => {
                // 8 bytes: next, len 0, PadN option of 4 bytes.
                out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            Ext::Routing => {
                // 24 bytes: type 0 header with one address slot.
                let mut r = vec![0u8; 24];
                r[0] = next;
                r[1] = 2;
                out.extend_from_slice(&r);
            }
            Ext::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(*more);
                let f = field.to_be_bytes();
                out.extend_from_slice(&[next, 0, f[0], f[1], 0, 0, 0x42, 0x42]);
            }
            Ext::Ah { icv_words } => {
                // 12 fixed bytes + ICV; length field is (total / 4) - 2.
                let total = 12 + 4 * usize::from(*icv_words);
                let mut a = vec![0u8; total];
                a[0] = next;
                a[1] = (total / 4 - 2) as u8;
                a[4..8].copy_from_slice(&0x100u32.to_be_bytes());
                out.extend_from_slice(&a);
            }
        }
    }
    out
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&LAB_SRC_MAC);
    a.extend_from_slice(&LAB_V4_SRC.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&LAB_V4_DST.octets());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let f = FrameSpec::ipv4(L4::Udp { sport: 1, dport: 2 }).build();
        assert_eq!(checksum(&f[14..34]), 0);
        assert_eq!(f.len(), 14 + 20 + 8);
    }

    #[test]
    fn ipv4_options_are_padded_and_counted_in_ihl() {
        let f = FrameSpec::ipv4(L4::Tcp {
            sport: 1,
            dport: 2,
            flags: 2,
        })
        .with_ipv4(|h| h.options = vec![1, 1, 1])
        .build();
        assert_eq!(f[14], 0x46);
        assert_eq!(checksum(&f[14..38]), 0);
    }

    #[test]
    fn ipv6_chain_links_next_headers() {
        let f = FrameSpec::ipv6(L4::Tcp {
            sport: 1,
            dport: 2,
            flags: 2,
        })
        .with_ipv6(|h| h.ext = vec![Ext::HopByHop, Ext::Ah { icv_words: 3 }, Ext::DestOpts])
        .build();
        assert_eq!(f[14 + 6], 0); // first: hop-by-hop
        assert_eq!(f[54], 51); // hop-by-hop -> AH
        assert_eq!(f[62], 60); // AH -> destination options
        assert_eq!(f[63], 3 + 1); // AH length: 24 bytes / 4 - 2
        assert_eq!(f[86], 6); // destination options -> TCP
        assert_eq!(f.len(), 14 + 40 + 8 + 24 + 8 + 20);
    }

    #[test]
    fn vlan_tags_in_order() {
        let f = FrameSpec::arp()
            .with_vlan(TPID_8021AD, 100)
            .with_vlan(TPID_8021Q, 200)
            .build();
        assert_eq!(
            &f[12..22],
            &[0x88, 0xa8, 0, 100, 0x81, 0, 0, 200, 0x08, 0x06]
        );
    }
}
