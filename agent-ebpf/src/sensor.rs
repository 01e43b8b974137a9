//! Per-packet work: parse, count, sample.

use agent_common::{
    config::SamplerConfig,
    counters::CpuState,
    parse::{self, Parsed},
    sample::{SampleMeta, SampleRecord},
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_action},
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len},
    programs::XdpContext,
};

use crate::{
    frame::XdpFrame,
    maps::{CAPTURE_CONFIG, CONFIG, COUNTERS, SAMPLES, bump},
};

/// Counts and samples one frame; returns the verdict (XDP_PASS unless the
/// interface is a mirror port, see [`SamplerConfig::mirror`]).
#[inline(always)]
pub fn observe(ctx: &XdpContext) -> u32 {
    let Some(state) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU map value; XDP runs with preemption disabled, so no
    // other program touches this CPU's entry concurrently.
    let state: &mut CpuState = unsafe { &mut *state };

    let frame = XdpFrame::new(ctx);
    let parsed = parse::parse(&frame);
    let linear = frame.linear_len() as u64;
    let frame_len = if may_have_fragments(&parsed, linear) {
        // SAFETY: the helper only reads the xdp_md the kernel handed us.
        unsafe { bpf_xdp_get_buff_len(ctx.ctx) }
    } else {
        linear
    };
    state.counters.count(&parsed, frame_len);

    let config = CONFIG.get(0).copied().unwrap_or_default();
    if let Some(rate) = sampling_decision(state, &parsed, &config) {
        let multi_buffer = frame_len > linear;
        submit_sample(
            ctx,
            &frame,
            state,
            &parsed,
            rate,
            frame_len,
            multi_buffer,
            &config,
        );
    }
    // Last: after it the parsed frame is dead, which lets the verifier
    // prune the filter loops' states across the parser's paths.
    let capture = CAPTURE_CONFIG.get(0).copied().unwrap_or_default();
    if capture.snaplen != 0 && crate::capture::selected(&frame, &parsed, &capture) {
        if capture.af_xdp == 0 {
            crate::capture::copy_frame(ctx, state, frame_len, capture);
        } else if let Some(verdict) = crate::capture::redirect(ctx, state) {
            return verdict;
        }
    }
    if config.mirror != 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Whether the frame may continue past its first buffer (XDP multi-buffer),
/// so its length must come from `bpf_xdp_get_buff_len`. The helper costs
/// about as much as parsing, so it is skipped for short frames: drivers
/// fill the first buffer (at least 1 KiB) before adding fragments. A short
/// first buffer still needs it when the IP datagram says it goes on. The
/// IP length alone never decides: a sender can make it claim 40 bytes on
/// a 9000-byte frame.
#[inline(always)]
fn may_have_fragments(p: &Parsed, linear: u64) -> bool {
    linear >= 1024 || u64::from(p.ip_end) > linear
}

/// Deterministic 1-in-N: every N-th packet of each kind on this CPU.
/// Returns the rate that applied when this packet is sampled.
#[inline(always)]
fn sampling_decision(state: &mut CpuState, p: &Parsed, config: &SamplerConfig) -> Option<u32> {
    let (rate, seen) = if p.is_control() {
        (config.control_rate, &mut state.sampler.control_seen)
    } else {
        (config.data_rate, &mut state.sampler.data_seen)
    };
    if rate == 0 {
        return None;
    }
    let next = *seen + 1;
    if next >= rate {
        *seen = 0;
        Some(rate)
    } else {
        *seen = next;
        None
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn submit_sample(
    ctx: &XdpContext,
    frame: &XdpFrame,
    state: &mut CpuState,
    p: &Parsed,
    rate: u32,
    frame_len: u64,
    multi_buffer: bool,
    config: &SamplerConfig,
) {
    let Some(mut entry) = SAMPLES.reserve::<SampleRecord>(0) else {
        bump(&mut state.counters.ringbuf_dropped, 1);
        return;
    };
    entry.write(SampleRecord::from_parsed(
        p,
        p.addresses(frame),
        SampleMeta {
            // SAFETY: plain helper without arguments.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
            ifindex: ctx.ingress_ifindex() as u32,
            frame_len: frame_len as u32,
            sample_rate: rate,
            multi_buffer,
        },
    ));
    // Wake the consumer only every `wakeup_batch` records per CPU; it also
    // drains on a timer, so records in between are never stranded.
    let since = state.sampler.since_wakeup + 1;
    let wake = since >= config.wakeup_batch;
    state.sampler.since_wakeup = if wake { 0 } else { since };
    entry.submit(if wake {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    });
    bump(&mut state.counters.samples, 1);
}
