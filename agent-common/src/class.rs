//! Closed sets that appear as metric labels: protocol classes and parse
//! error reasons. Their numeric values index the kernel counters, so they are
//! stable: append, never reorder.

/// The one class each frame is counted in.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolClass {
    Tcp = 0,
    Udp = 1,
    Icmp = 2,
    Icmpv6 = 3,
    Sctp = 4,
    Gre = 5,
    OtherIp = 6,
    /// Non-first IP fragments: they carry no L4 header.
    Fragment = 7,
    Arp = 8,
    NonIp = 9,
    Malformed = 10,
}

pub const CLASS_COUNT: usize = 11;

impl ProtocolClass {
    pub const ALL: [ProtocolClass; CLASS_COUNT] = [
        Self::Tcp,
        Self::Udp,
        Self::Icmp,
        Self::Icmpv6,
        Self::Sctp,
        Self::Gre,
        Self::OtherIp,
        Self::Fragment,
        Self::Arp,
        Self::NonIp,
        Self::Malformed,
    ];

    /// The metric label value.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
            Self::Sctp => "sctp",
            Self::Gre => "gre",
            Self::OtherIp => "other_ip",
            Self::Fragment => "fragment",
            Self::Arp => "arp",
            Self::NonIp => "non_ip",
            Self::Malformed => "malformed",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

/// Why a frame was counted as malformed.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParseError {
    TruncatedEthernet = 0,
    TruncatedVlan = 1,
    TruncatedIpv4 = 2,
    /// IPv4 version field is not 4, IHL < 5, or total length < header length.
    BadIpv4Header = 3,
    /// IPv4 header length (IHL, options included) runs past the frame.
    Ipv4IhlPastEnd = 4,
    TruncatedIpv6 = 5,
    /// IPv6 version field is not 6.
    BadIpv6Header = 6,
    /// An IPv6 extension header runs past the frame.
    TruncatedIpv6Ext = 7,
    /// More IPv6 extension headers than the parser walks.
    Ipv6ExtLimit = 8,
    /// The transport header runs past the frame or past the IP datagram's
    /// own length (what follows the datagram is padding, not header).
    TruncatedL4 = 9,
    /// A first fragment too short to hold its transport header (RFC 1858:
    /// the header's ports and flags would come in a later fragment, out of
    /// sight of filters and detectors).
    TinyFragment = 10,
    /// A later TCP fragment that starts inside the 20-byte TCP header,
    /// which the first fragment (not tiny) already carried: reassembly
    /// would overwrite ports or flags that filters and detectors judged
    /// (the overlapping fragment attack of RFC 1858).
    OverlappingFragment = 11,
}

pub const PARSE_ERROR_COUNT: usize = 12;

impl ParseError {
    /// Errors of frames built to get past parsers (more IPv6 extension
    /// headers than walked, tiny first fragments, fragments overwriting
    /// the TCP header): their ports and flags are out of sight or not
    /// what they seem, so a scan or flood sent that way would be
    /// invisible unless these are seen like control packets.
    pub fn is_evasive(self) -> bool {
        matches!(
            self,
            Self::Ipv6ExtLimit | Self::TinyFragment | Self::OverlappingFragment
        )
    }

    pub const ALL: [ParseError; PARSE_ERROR_COUNT] = [
        Self::TruncatedEthernet,
        Self::TruncatedVlan,
        Self::TruncatedIpv4,
        Self::BadIpv4Header,
        Self::Ipv4IhlPastEnd,
        Self::TruncatedIpv6,
        Self::BadIpv6Header,
        Self::TruncatedIpv6Ext,
        Self::Ipv6ExtLimit,
        Self::TruncatedL4,
        Self::TinyFragment,
        Self::OverlappingFragment,
    ];

    /// The metric label value.
    pub const fn label(self) -> &'static str {
        match self {
            Self::TruncatedEthernet => "truncated_ethernet",
            Self::TruncatedVlan => "truncated_vlan",
            Self::TruncatedIpv4 => "truncated_ipv4",
            Self::BadIpv4Header => "bad_ipv4_header",
            Self::Ipv4IhlPastEnd => "ipv4_ihl_past_end",
            Self::TruncatedIpv6 => "truncated_ipv6",
            Self::BadIpv6Header => "bad_ipv6_header",
            Self::TruncatedIpv6Ext => "truncated_ipv6_ext",
            Self::Ipv6ExtLimit => "ipv6_ext_limit",
            Self::TruncatedL4 => "truncated_l4",
            Self::TinyFragment => "tiny_fragment",
            Self::OverlappingFragment => "overlapping_fragment",
        }
    }
}

/// TCP flag combinations counted in the kernel.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpFlagCounter {
    /// SYN without ACK: connection attempts.
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Rst = 3,
}

pub const TCP_FLAG_COUNTER_COUNT: usize = 4;

impl TcpFlagCounter {
    pub const ALL: [TcpFlagCounter; TCP_FLAG_COUNTER_COUNT] =
        [Self::Syn, Self::SynAck, Self::Fin, Self::Rst];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Syn => "syn",
            Self::SynAck => "synack",
            Self::Fin => "fin",
            Self::Rst => "rst",
        }
    }
}

/// TCP header flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// IP protocol numbers the parser knows.
pub mod ipproto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NONE: u8 = 59;
    pub const DSTOPTS: u8 = 60;
    pub const SCTP: u8 = 132;

    /// The IANA keyword of a transport protocol (ECS `network.transport`).
    pub const fn name(p: u8) -> Option<&'static str> {
        match p {
            ICMP => Some("icmp"),
            TCP => Some("tcp"),
            UDP => Some("udp"),
            GRE => Some("gre"),
            ESP => Some("esp"),
            AH => Some("ah"),
            ICMPV6 => Some("ipv6-icmp"),
            SCTP => Some("sctp"),
            _ => None,
        }
    }
}

/// Ethertypes the parser knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86DD;
    pub const QINQ: u16 = 0x88A8;
    /// Pre-standard QinQ outer tag, still seen on older switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
}
