//! The capture filter as the XDP program evaluates it: an OR of up to
//! [`MAX_TERMS`] terms, each an AND of up to [`MAX_PREDICATES`] predicates
//! (each possibly negated). The agent compiles the user's expression into
//! this table (disjunctive normal form) and writes it into a map; changing
//! the filter is a map write, never a reattach.
//!
//! The matcher is shared with userspace (`nta analyze`, tests), so the
//! kernel and the offline path select the same frames by construction.
//! Written for the verifier: fixed-size arrays, bounded loops, no
//! allocation.

use crate::parse::Parsed;

pub const MAX_TERMS: usize = 8;
pub const MAX_PREDICATES: usize = 8;

/// What a predicate tests ([`Predicate::kind`]).
pub mod kind {
    /// IPv4 packet.
    pub const IPV4: u8 = 1;
    /// IPv6 packet.
    pub const IPV6: u8 = 2;
    pub const ARP: u8 = 3;
    /// IP protocol (after IPv6 extension headers) equals `proto`.
    pub const IP_PROTO: u8 = 4;
    /// Source address within `addr`/`mask` (IPv4 as IPv4-mapped IPv6).
    pub const SRC_NET: u8 = 5;
    pub const DST_NET: u8 = 6;
    /// TCP/UDP/SCTP source port within `lo..=hi`.
    pub const SRC_PORT: u8 = 7;
    pub const DST_PORT: u8 = 8;
    /// VLAN-tagged with the outer id within `lo..=hi`.
    pub const VLAN: u8 = 9;
}

/// One test on a frame. 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Predicate {
    pub kind: u8,
    /// Non-zero: the predicate holds when the test fails.
    pub negate: u8,
    pub proto: u8,
    pub _pad: u8,
    pub lo: u16,
    pub hi: u16,
    /// Address and mask as two native-endian words each; `addr` is
    /// already masked.
    pub addr: [u64; 2],
    pub mask: [u64; 2],
}

const _: () = assert!(core::mem::size_of::<Predicate>() == 40);

/// The whole filter, one map value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterTable {
    /// Terms in use; 0 matches every frame (no filter).
    pub terms: u32,
    pub _pad: u32,
    /// Predicates in use per term.
    pub lens: [u8; MAX_TERMS],
    pub predicates: [[Predicate; MAX_PREDICATES]; MAX_TERMS],
}

const _: () = assert!(core::mem::size_of::<FilterTable>() == 16 + 40 * MAX_PREDICATES * MAX_TERMS);

impl Default for FilterTable {
    fn default() -> Self {
        FilterTable {
            terms: 0,
            _pad: 0,
            lens: [0; MAX_TERMS],
            predicates: [[Predicate::default(); MAX_PREDICATES]; MAX_TERMS],
        }
    }
}

/// The frame facts a filter looks at. `#[repr(C)]`: the XDP program
/// passes it through a per-CPU map so the verifier sees unknown values
/// (and prunes the filter loops' states across the parser's paths).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterInput {
    /// Addresses as IPv6 (IPv4 mapped), as native-endian words.
    pub src: [u64; 2],
    pub dst: [u64; 2],
    pub src_port: u16,
    pub dst_port: u16,
    pub vlan_id: u16,
    pub ip_version: u8,
    pub l4_proto: u8,
    /// Non-zero for ARP.
    pub arp: u8,
    /// Non-zero when the frame carries TCP, UDP or SCTP ports (not a
    /// later fragment).
    pub has_ports: u8,
    /// Non-zero when VLAN-tagged.
    pub vlan: u8,
    pub _pad: [u8; 5],
}

const _: () = assert!(core::mem::size_of::<FilterInput>() == 48);

/// Two native-endian words of a 16-byte address.
#[inline(always)]
pub fn words(a: [u8; 16]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

impl FilterInput {
    /// From the parser's result and the addresses it read.
    #[inline(always)]
    pub fn new(p: &Parsed, addresses: ([u8; 16], [u8; 16])) -> FilterInput {
        use crate::class::{ProtocolClass, ipproto};
        let ported = matches!(p.l4_proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP);
        FilterInput {
            src: words(addresses.0),
            dst: words(addresses.1),
            src_port: p.src_port,
            dst_port: p.dst_port,
            vlan_id: p.vlan_id,
            ip_version: p.ip_version,
            l4_proto: p.l4_proto,
            arp: u8::from(p.class == ProtocolClass::Arp),
            has_ports: u8::from(ported && p.class != ProtocolClass::Fragment && p.error.is_none()),
            vlan: u8::from(p.vlan_depth > 0),
            _pad: [0; 5],
        }
    }
}

#[inline(always)]
fn within(a: [u64; 2], p: &Predicate) -> bool {
    (a[0] & p.mask[0]) == p.addr[0] && (a[1] & p.mask[1]) == p.addr[1]
}

#[inline(always)]
fn test(p: &Predicate, x: &FilterInput) -> bool {
    let hit = match p.kind {
        kind::IPV4 => x.ip_version == 4,
        kind::IPV6 => x.ip_version == 6,
        kind::ARP => x.arp != 0,
        kind::IP_PROTO => x.ip_version != 0 && x.l4_proto == p.proto,
        kind::SRC_NET => x.ip_version != 0 && within(x.src, p),
        kind::DST_NET => x.ip_version != 0 && within(x.dst, p),
        kind::SRC_PORT => x.has_ports != 0 && x.src_port >= p.lo && x.src_port <= p.hi,
        kind::DST_PORT => x.has_ports != 0 && x.dst_port >= p.lo && x.dst_port <= p.hi,
        kind::VLAN => x.vlan != 0 && x.vlan_id >= p.lo && x.vlan_id <= p.hi,
        _ => false,
    };
    hit != (p.negate != 0)
}

/// Whether the frame passes the filter.
#[inline(always)]
pub fn matches(t: &FilterTable, x: &FilterInput) -> bool {
    let terms = t.terms as usize;
    if terms == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_TERMS && i < terms {
        let (Some(preds), Some(&len)) = (t.predicates.get(i), t.lens.get(i)) else {
            return false;
        };
        let mut all = true;
        let mut j = 0;
        while j < MAX_PREDICATES && j < len as usize {
            if let Some(p) = preds.get(j)
                && !test(p, x)
            {
                all = false;
                break;
            }
            j += 1;
        }
        if all {
            return true;
        }
        i += 1;
    }
    false
}
