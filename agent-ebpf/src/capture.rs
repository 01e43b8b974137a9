//! Capture: frames that pass the filter table have their first `snaplen`
//! bytes copied into the `CAPTURES` ring buffer. The frame itself still
//! goes on (the verdict is the sensor's).

use agent_common::{
    capture::{AF_XDP_HEARTBEAT_NS, CaptureConfig, CaptureHeader, CaptureRecord, copy_len},
    counters::CpuState,
    filter::{self, FilterInput},
    parse::Parsed,
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_action},
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    maps::RingBuf,
    programs::XdpContext,
};

use crate::{
    frame::XdpFrame,
    maps::{CAPTURES, FILTER_INPUT, FILTERS, XSK_HEARTBEAT, XSKS, bump},
};

/// Wake the capture consumer after this many records per CPU; it drains on
/// a 10 ms timer anyway. A wakeup costs 10-20 µs of this CPU
/// (BENCH-METHOD), so every 64 records is 150-300 ns a frame; with 64,
/// `nta capture` was lossless to 0.85 Mpps in the compare bench, with 8192
/// to 1.30 (two runs, not side by side).
const WAKEUP_BATCH: u32 = 8192;

/// Whether the frame passes the capture filter in force. Called once per
/// frame, before the two capture paths branch: one copy of the filter
/// loops for the verifier to walk.
#[inline(always)]
pub fn selected(frame: &XdpFrame, p: &Parsed, config: &CaptureConfig) -> bool {
    let Some(table) = FILTERS.get(config.filter_slot & 1) else {
        return false;
    };
    if table.terms != 0 {
        let Some(input) = FILTER_INPUT.get_ptr_mut(0) else {
            return false;
        };
        // Through map memory: the verifier then knows none of the input's
        // values, so the filter loops are verified once, not once per
        // parser path (a million instructions otherwise). The volatile
        // write keeps LLVM from forwarding the values past the map.
        // SAFETY: per-CPU map value, no concurrent user on this CPU.
        let input = unsafe {
            core::ptr::write_volatile(input, FilterInput::new(p, p.addresses(frame)));
            &*input
        };
        return filter::matches(table, input);
    }
    true
}

/// AF_XDP capture: a selected frame goes to its queue's socket while the
/// reader is alive. Returns the verdict when the frame was taken.
#[inline(always)]
pub fn redirect(ctx: &XdpContext, state: &mut CpuState) -> Option<u32> {
    let alive = XSK_HEARTBEAT.get(0).copied().unwrap_or(0);
    // SAFETY: plain helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.saturating_sub(alive) > AF_XDP_HEARTBEAT_NS {
        return None;
    }
    // Lower bits of the flags: the verdict when no socket is bound there.
    match XSKS.redirect(ctx.rx_queue_index(), u64::from(xdp_action::XDP_PASS)) {
        Ok(verdict) => {
            bump(&mut state.counters.captured, 1);
            Some(verdict)
        }
        Err(_) => {
            bump(&mut state.counters.capture_dropped, 1);
            None
        }
    }
}

/// Copies the first snaplen bytes of a selected frame into `CAPTURES`.
#[inline(always)]
pub fn copy_frame(ctx: &XdpContext, state: &mut CpuState, frame_len: u64, config: CaptureConfig) {
    let copied = copy_into(
        &CAPTURES,
        ctx,
        frame_len,
        copy_len(frame_len as u32, config.snaplen),
        0,
        &mut state.sampler.capture_since_wakeup,
    );
    if copied {
        bump(&mut state.counters.captured, 1);
    } else {
        bump(&mut state.counters.capture_dropped, 1);
    }
}

/// Copies the first `len` bytes of the frame into `ring` behind a header
/// of `kind` (the capture ring and the app ring share the record
/// layout); `since_wakeup` is this CPU's count of that ring's records
/// since the last wakeup. False when the ring is full.
#[inline(always)]
pub fn copy_into(
    ring: &RingBuf,
    ctx: &XdpContext,
    frame_len: u64,
    len: u32,
    kind: u32,
    since_wakeup: &mut u32,
) -> bool {
    // One constant-size reservation per size class (the ring buffer
    // needs a constant size).
    if len <= 128 {
        copy::<128>(ring, ctx, frame_len, len, kind, since_wakeup)
    } else if len <= 256 {
        copy::<256>(ring, ctx, frame_len, len, kind, since_wakeup)
    } else if len <= 512 {
        copy::<512>(ring, ctx, frame_len, len, kind, since_wakeup)
    } else if len <= 1024 {
        copy::<1024>(ring, ctx, frame_len, len, kind, since_wakeup)
    } else if len <= 2048 {
        copy::<2048>(ring, ctx, frame_len, len, kind, since_wakeup)
    } else {
        copy::<4096>(ring, ctx, frame_len, len, kind, since_wakeup)
    }
}

#[inline(always)]
fn copy<const N: usize>(
    ring: &RingBuf,
    ctx: &XdpContext,
    frame_len: u64,
    len: u32,
    kind: u32,
    since_wakeup: &mut u32,
) -> bool {
    let Some(mut entry) = ring.reserve::<CaptureRecord<N>>(0) else {
        return false;
    };
    let record = entry.as_mut_ptr();
    // Bounds the verifier can see: 1..=N bytes into the N-byte buffer.
    // The volatile read keeps LLVM from dropping this check as implied by
    // the caller's size-class test (the verifier loses that bound).
    // SAFETY: reading a local.
    let n = unsafe { core::ptr::read_volatile(&len) } as usize;
    if n == 0 || n > N {
        entry.discard(0);
        return false;
    }
    // SAFETY: `record` points at the reserved, writable entry; the load
    // helper writes at most `n <= N` bytes into its `data` array.
    let loaded = unsafe {
        (*record).header = CaptureHeader {
            timestamp_ns: bpf_ktime_get_ns(),
            ifindex: ctx.ingress_ifindex() as u32,
            frame_len: frame_len as u32,
            cap_len: len,
            kind,
        };
        bpf_xdp_load_bytes(
            ctx.ctx,
            0,
            (*record).data.as_mut_ptr() as *mut core::ffi::c_void,
            n as u32,
        )
    };
    if loaded != 0 {
        entry.discard(0);
        return false;
    }
    let since = *since_wakeup + 1;
    let wake = since >= WAKEUP_BATCH;
    *since_wakeup = if wake { 0 } else { since };
    entry.submit(if wake {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    });
    true
}
