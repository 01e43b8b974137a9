//! Packet capture records: the XDP program copies the first `snaplen`
//! bytes of frames that pass the capture filter into the `CAPTURES` ring
//! buffer, behind a [`CaptureHeader`].

/// Capture settings, entry 0 of the `CAPTURE_CONFIG` map (its own map, so
/// the sampling controller and the capture filter never overwrite each
/// other's fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Bytes copied per frame; 0 turns capture off.
    pub snaplen: u32,
    /// Which entry of the `FILTERS` map is in force (0 or 1): the agent
    /// writes the other one, then flips this, so the program never reads a
    /// half-written filter.
    pub filter_slot: u32,
    /// Non-zero: matching frames are redirected to the AF_XDP socket of
    /// their receive queue (`XSKS`) instead of copied into `CAPTURES`; they
    /// then skip the kernel stack. Falls back to passing them on when no
    /// socket is bound or the reader's heartbeat is older than
    /// [`AF_XDP_HEARTBEAT_NS`].
    pub af_xdp: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<CaptureConfig>() == 16);

/// The AF_XDP reader writes the monotonic time into `XSK_HEARTBEAT` a few
/// times a second; older than this, the program stops redirecting, so a
/// stopped reader never swallows traffic.
pub const AF_XDP_HEARTBEAT_NS: u64 = 1_000_000_000;

/// Receive queues the `XSKS` map has room for.
pub const MAX_QUEUES: u32 = 64;

/// Precedes the frame bytes in each capture record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// `bpf_ktime_get_ns` (monotonic) when the frame was seen.
    pub timestamp_ns: u64,
    pub ifindex: u32,
    /// The whole frame's length (all buffers of a multi-buffer frame).
    pub frame_len: u32,
    /// Bytes that follow this header.
    pub cap_len: u32,
    /// 0 in the capture ring; an [`crate::app::AppKind`] in the app ring.
    pub kind: u32,
}

pub const CAPTURE_HEADER_LEN: usize = core::mem::size_of::<CaptureHeader>();
const _: () = assert!(CAPTURE_HEADER_LEN == 24);

/// A capture record with room for `N` frame bytes. The ring buffer needs a
/// constant size per reservation, so the program picks the smallest of
/// [`CAPTURE_SIZES`] that holds the bytes it copies.
#[repr(C)]
pub struct CaptureRecord<const N: usize> {
    pub header: CaptureHeader,
    pub data: [u8; N],
}

/// Reservation sizes for the frame bytes.
pub const CAPTURE_SIZES: [usize; 6] = [128, 256, 512, 1024, 2048, 4096];
/// The largest snaplen the XDP path copies.
pub const MAX_SNAPLEN: u32 = 4096;

/// Capture ring buffer bytes unless the agent sets another size: at
/// 128-byte snaplen about 200k frames.
pub const DEFAULT_CAPTURE_RING_BYTES: u32 = 32 << 20;

/// Bytes copied for a frame of `frame_len` under `snaplen`.
#[inline(always)]
pub fn copy_len(frame_len: u32, snaplen: u32) -> u32 {
    let cap = if snaplen > MAX_SNAPLEN {
        MAX_SNAPLEN
    } else {
        snaplen
    };
    if frame_len < cap { frame_len } else { cap }
}
