//! Configuration of the lab traffic generator's XDP program (`GEN_CONFIG`
//! map of the bench object). The generator rewrites a template frame per
//! packet and returns `XDP_TX`; see `bench/src/generator.rs`.

/// Send the template unchanged.
pub const MODE_FIXED: u32 = 0;
/// Random IPv4 source in 198.18.0.0/15 (SYN floods from spoofed sources).
pub const MODE_RANDOM_SOURCE: u32 = 1;
/// Cycle through `flows` distinct IPv4 5-tuples (source address and port).
pub const MODE_MANY_FLOWS: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    pub mode: u32,
    /// Distinct flows in `MODE_MANY_FLOWS` (at least 1).
    pub flows: u32,
    /// Offset of the IPv4 header in the template.
    pub l3_offset: u32,
    /// Offset of the L4 header in the template.
    pub l4_offset: u32,
}

const _: () = assert!(core::mem::size_of::<GenConfig>() == 16);

/// Header bytes the generator restores in every frame before rewriting it.
/// Receivers that pass frames to the kernel stack may edit headers in
/// place (VLAN untagging moves the MAC header), and live-frame pages are
/// recycled without being re-initialised, so the template is re-applied.
pub const TEMPLATE_HEAD: usize = 96;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenTemplate {
    pub bytes: [u8; TEMPLATE_HEAD],
}

const _: () = assert!(core::mem::size_of::<GenTemplate>() == TEMPLATE_HEAD);

/// 198.18.0.0/15 as a host-order number; generated sources stay inside it.
pub const LAB_NET_V4: u32 = 0xC612_0000;
pub const LAB_NET_V4_HOST_BITS: u32 = 17;

/// The IPv4 source (host order) and TCP/UDP source port of flow `n` in
/// `MODE_MANY_FLOWS`: 2^17 addresses, then the port moves.
#[inline(always)]
pub fn many_flows_tuple(n: u32) -> (u32, u16) {
    let host_mask = (1u32 << LAB_NET_V4_HOST_BITS) - 1;
    let addr = LAB_NET_V4 | (n & host_mask);
    let port = 1024u32 + (n >> LAB_NET_V4_HOST_BITS);
    (addr, port as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_stay_in_the_lab_range_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..300_000u32 {
            let (addr, port) = many_flows_tuple(n);
            assert_eq!(
                addr >> LAB_NET_V4_HOST_BITS,
                LAB_NET_V4 >> LAB_NET_V4_HOST_BITS
            );
            assert!(seen.insert((addr, port)));
        }
    }
}
