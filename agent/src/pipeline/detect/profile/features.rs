//! The per-second features a learned profile watches, and the counts one
//! key gathers in a second to compute them. Everything is scaled by each
//! sample's rate, so the features are estimates of the traffic, not of
//! the samples.

use agent_common::{
    class::ProtocolClass,
    sample::{SampleRecord, record_flags},
};

/// Bins of the hashed histograms behind the entropies and the distinct
/// count. Entropy over hashed bins tops out at log2(BINS) = 6 bits; that
/// is enough to see "one source" turn into "many".
pub const BINS: usize = 64;
/// Bits of the linear-counting bitmap for distinct sources: exact enough
/// (a few percent) up to a few thousand sources a second, and a fixed
/// 128 bytes a key.
const BITMAP_BITS: usize = 1024;

/// Samples a second below which the composition features (shares,
/// entropies, mean size) are not judged: from a handful of samples they
/// are noise.
pub const MIN_SAMPLES_FOR_MIX: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    Pps,
    Bps,
    NewFlows,
    SynShare,
    DistinctSources,
    SourceEntropy,
    PortEntropy,
    MeanSize,
    TcpShare,
    UdpShare,
    IcmpShare,
    OtherShare,
}

/// How a feature is learned and judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// A count or size: learned as ln(1 + x), so "ten times more" is the
    /// same distance at every volume, with a Poisson noise floor.
    Log,
    /// A share (0..1) or an entropy (bits): learned as is.
    Linear,
}

impl Feature {
    pub const ALL: [Feature; 12] = [
        Feature::Pps,
        Feature::Bps,
        Feature::NewFlows,
        Feature::SynShare,
        Feature::DistinctSources,
        Feature::SourceEntropy,
        Feature::PortEntropy,
        Feature::MeanSize,
        Feature::TcpShare,
        Feature::UdpShare,
        Feature::IcmpShare,
        Feature::OtherShare,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn label(self) -> &'static str {
        match self {
            Feature::Pps => "pps",
            Feature::Bps => "bps",
            Feature::NewFlows => "new_flows_per_second",
            Feature::SynShare => "syn_share",
            Feature::DistinctSources => "distinct_sources",
            Feature::SourceEntropy => "source_entropy_bits",
            Feature::PortEntropy => "destination_port_entropy_bits",
            Feature::MeanSize => "mean_packet_bytes",
            Feature::TcpShare => "tcp_share",
            Feature::UdpShare => "udp_share",
            Feature::IcmpShare => "icmp_share",
            Feature::OtherShare => "other_protocols_share",
        }
    }

    /// In words, for alert summaries.
    pub fn words(self) -> &'static str {
        match self {
            Feature::Pps => "packets per second",
            Feature::Bps => "bits per second",
            Feature::NewFlows => "new flows per second",
            Feature::SynShare => "share of TCP that is SYN",
            Feature::DistinctSources => "distinct sources per second",
            Feature::SourceEntropy => "spread of sources (entropy, bits)",
            Feature::PortEntropy => "spread of destination ports (entropy, bits)",
            Feature::MeanSize => "mean packet size (bytes)",
            Feature::TcpShare => "TCP share",
            Feature::UdpShare => "UDP share",
            Feature::IcmpShare => "ICMP share",
            Feature::OtherShare => "share of other IP protocols",
        }
    }

    pub fn scale(self) -> Scale {
        match self {
            Feature::Pps
            | Feature::Bps
            | Feature::NewFlows
            | Feature::DistinctSources
            | Feature::MeanSize => Scale::Log,
            _ => Scale::Linear,
        }
    }

    /// The smallest change (in the learned space) that counts, however
    /// many deviations it is: volume by 8x either way (a flash crowd or a
    /// daily burst stays under it; a flood of that size has its own
    /// thresholds), the mean size by 2x, a share by 0.25, an entropy by
    /// 1.5 bits. Relative, so small hosts are watched as closely as big.
    pub fn min_change(self) -> f64 {
        match self {
            Feature::MeanSize => std::f64::consts::LN_2,
            Feature::SourceEntropy | Feature::PortEntropy => 1.5,
            f if f.scale() == Scale::Log => 8f64.ln(),
            _ => 0.25,
        }
    }

    /// The traffic's volume, judged even in a second without samples
    /// (a collapse); the rest describe its mix.
    pub fn is_volume(self) -> bool {
        matches!(
            self,
            Feature::Pps | Feature::Bps | Feature::NewFlows | Feature::DistinctSources
        )
    }
}

/// What one key saw in one second.
#[derive(Clone, Debug)]
pub struct SecondCounts {
    pub samples: u32,
    packets: f64,
    bytes: f64,
    new_flows: f64,
    tcp: f64,
    syn: f64,
    udp: f64,
    icmp: f64,
    other: f64,
    source_bins: [f64; BINS],
    port_bins: [f64; BINS],
    sources_seen: [u64; BITMAP_BITS / 64],
}

impl Default for SecondCounts {
    fn default() -> Self {
        SecondCounts {
            samples: 0,
            packets: 0.0,
            bytes: 0.0,
            new_flows: 0.0,
            tcp: 0.0,
            syn: 0.0,
            udp: 0.0,
            icmp: 0.0,
            other: 0.0,
            source_bins: [0.0; BINS],
            port_bins: [0.0; BINS],
            sources_seen: [0; BITMAP_BITS / 64],
        }
    }
}

impl SecondCounts {
    /// Counts one sample. `source_hash` and `port_hash` are keyed hashes
    /// of its source address and destination port (computed once for
    /// every key the sample counts in).
    pub fn add(&mut self, r: &SampleRecord, new_flow: bool, source_hash: u64, port_hash: u64) {
        let w = f64::from(r.sample_rate.max(1));
        self.samples = self.samples.saturating_add(1);
        self.packets += w;
        self.bytes += w * f64::from(r.frame_len);
        let syn = r.is_tcp_syn();
        // A flow's real start: its SYN, or the first packet the kernel
        // flagged. A sampled data packet of a long flow whose samples are
        // further apart than the idle timeout also makes a table entry;
        // weighted by the data rate it would read as dozens of new flows.
        if new_flow && (syn || r.flags & record_flags::FIRST_PACKET != 0) {
            self.new_flows += w;
        }
        match r.class {
            c if c == ProtocolClass::Tcp as u8 => {
                self.tcp += w;
                if syn {
                    self.syn += w;
                }
            }
            c if c == ProtocolClass::Udp as u8 => self.udp += w,
            c if c == ProtocolClass::Icmp as u8 || c == ProtocolClass::Icmpv6 as u8 => {
                self.icmp += w
            }
            _ => self.other += w,
        }
        self.source_bins[(source_hash % BINS as u64) as usize] += w;
        self.port_bins[(port_hash % BINS as u64) as usize] += w;
        let bit = (source_hash >> 8) as usize % BITMAP_BITS;
        self.sources_seen[bit / 64] |= 1 << (bit % 64);
    }

    /// The features of this second; `None` for a mix feature that a
    /// second this thin cannot tell.
    pub fn features(&self) -> [Option<f64>; Feature::COUNT] {
        let mix = self.samples >= MIN_SAMPLES_FOR_MIX && self.packets > 0.0;
        let share = |x: f64| mix.then(|| x / self.packets);
        Feature::ALL.map(|f| match f {
            Feature::Pps => Some(self.packets),
            Feature::Bps => Some(self.bytes * 8.0),
            Feature::NewFlows => Some(self.new_flows),
            Feature::DistinctSources => Some(self.distinct_sources()),
            Feature::SynShare => (mix && self.tcp > 0.0).then(|| self.syn / self.tcp),
            Feature::SourceEntropy => mix.then(|| entropy(&self.source_bins)),
            Feature::PortEntropy => mix.then(|| entropy(&self.port_bins)),
            Feature::MeanSize => mix.then(|| self.bytes / self.packets),
            Feature::TcpShare => share(self.tcp),
            Feature::UdpShare => share(self.udp),
            Feature::IcmpShare => share(self.icmp),
            Feature::OtherShare => share(self.other),
        })
    }

    /// Linear counting over the bitmap (Whang et al.): -m ln(empty / m).
    fn distinct_sources(&self) -> f64 {
        let m = BITMAP_BITS as f64;
        let set: u32 = self.sources_seen.iter().map(|w| w.count_ones()).sum();
        let empty = (BITMAP_BITS as u32 - set).max(1);
        -m * (f64::from(empty) / m).ln()
    }
}

/// Shannon entropy (bits) of a weighted histogram.
fn entropy(bins: &[f64; BINS]) -> f64 {
    let total: f64 = bins.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    bins.iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| {
            let p = c / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use agent_common::class::tcp_flags;

    use super::*;

    fn rec(class: ProtocolClass, flags: u8, rate: u32, len: u32) -> SampleRecord {
        SampleRecord {
            class: class as u8,
            tcp_flags: flags,
            sample_rate: rate,
            frame_len: len,
            src_addr: map_ipv4([198, 18, 0, 1]),
            ..Default::default()
        }
    }

    fn value(c: &SecondCounts, f: Feature) -> Option<f64> {
        c.features()[f as usize]
    }

    #[test]
    fn rates_shares_and_sizes_are_weighted_by_the_sampling_rate() {
        let mut c = SecondCounts::default();
        for i in 0..30u64 {
            c.add(&rec(ProtocolClass::Tcp, tcp_flags::SYN, 1, 60), true, i, 80);
        }
        for i in 0..10u64 {
            // Data samples: the first one makes a table entry, not a flow
            // start worth 64.
            c.add(&rec(ProtocolClass::Udp, 0, 64, 1000), i == 0, i, 53);
        }
        assert_eq!(value(&c, Feature::Pps), Some(670.0));
        assert_eq!(value(&c, Feature::Bps), Some((1800.0 + 640_000.0) * 8.0));
        assert_eq!(value(&c, Feature::NewFlows), Some(30.0));
        assert_eq!(value(&c, Feature::SynShare), Some(1.0));
        assert_eq!(value(&c, Feature::UdpShare), Some(640.0 / 670.0));
        assert_eq!(value(&c, Feature::TcpShare), Some(30.0 / 670.0));
        assert_eq!(value(&c, Feature::IcmpShare), Some(0.0));
        let mean = value(&c, Feature::MeanSize).unwrap_or(0.0);
        assert!((mean - 641_800.0 / 670.0).abs() < 1e-9);
    }

    #[test]
    fn a_thin_second_judges_volume_only() {
        let mut c = SecondCounts::default();
        for i in 0..5u64 {
            c.add(&rec(ProtocolClass::Udp, 0, 64, 100), false, i, 1);
        }
        let f = c.features();
        assert_eq!(f[Feature::Pps as usize], Some(320.0));
        assert!(f[Feature::DistinctSources as usize].is_some());
        assert_eq!(f[Feature::UdpShare as usize], None);
        assert_eq!(f[Feature::SourceEntropy as usize], None);
        // An empty second is zero traffic, not unknown.
        let f = SecondCounts::default().features();
        assert_eq!(f[Feature::Pps as usize], Some(0.0));
        assert_eq!(f[Feature::DistinctSources as usize], Some(0.0));
    }

    #[test]
    fn entropy_and_distinct_sources_tell_one_source_from_many() {
        let mut one = SecondCounts::default();
        let mut many = SecondCounts::default();
        use std::hash::BuildHasher as _;
        let hash = |i: u64| crate::pipeline::keyed::KeyedState.hash_one(i);
        for i in 0..1000u64 {
            one.add(
                &rec(ProtocolClass::Udp, 0, 1, 100),
                false,
                hash(7),
                hash(53),
            );
            many.add(
                &rec(ProtocolClass::Udp, 0, 1, 100),
                false,
                hash(i),
                hash(i % 500),
            );
        }
        assert_eq!(value(&one, Feature::SourceEntropy), Some(0.0));
        let e = value(&many, Feature::SourceEntropy).unwrap_or(0.0);
        assert!(e > 5.8, "{e}");
        assert!(value(&many, Feature::PortEntropy).unwrap_or(0.0) > 5.8);
        let d = value(&one, Feature::DistinctSources).unwrap_or(0.0);
        assert!((d - 1.0).abs() < 0.01, "{d}");
        let d = value(&many, Feature::DistinctSources).unwrap_or(0.0);
        assert!((d - 1000.0).abs() < 100.0, "{d}");
    }
}
