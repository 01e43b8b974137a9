//! Run-time configuration the agent writes into the `CONFIG` array map.

/// Sampling configuration, entry 0 of `CONFIG`. A rate of 0 disables that
/// kind of sampling; 1 samples every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// 1-in-N for data packets (everything that is not a control packet).
    pub data_rate: u32,
    /// 1-in-M for control packets: TCP SYN/FIN/RST, ICMP, ICMPv6.
    pub control_rate: u32,
    /// Wake the userspace consumer after this many records per CPU; records
    /// in between are submitted without a wakeup (a wakeup costs ~10-20 µs).
    pub wakeup_batch: u32,
    /// Non-zero on mirror (SPAN/TAP) ports: frames are copies nobody
    /// needs, so the program drops them after counting instead of handing
    /// them to the kernel stack. Zero (the default) passes every frame.
    pub mirror: u32,
}

const _: () = assert!(core::mem::size_of::<SamplerConfig>() == 16);

pub const DEFAULT_DATA_RATE: u32 = 64;
pub const DEFAULT_CONTROL_RATE: u32 = 1;
pub const DEFAULT_WAKEUP_BATCH: u32 = 1024;

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            data_rate: DEFAULT_DATA_RATE,
            control_rate: DEFAULT_CONTROL_RATE,
            wakeup_batch: DEFAULT_WAKEUP_BATCH,
            mirror: 0,
        }
    }
}

/// Ring buffer size in bytes: 4 MiB holds ~58k records, ~180 ms of
/// 1-in-64 samples at 20 Mpps.
pub const SAMPLES_RING_BYTES: u32 = 4 << 20;
