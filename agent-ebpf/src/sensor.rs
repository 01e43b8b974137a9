//! Per-packet work: parse, count, sample.

use agent_common::{
    class::ProtocolClass,
    config::{
        BUDGET_CLOCK_EVERY, BUDGET_WINDOW_NS, MAX_THINNING_SHIFT, SEEN_FLOW_SLOTS, SamplerConfig,
        flow_hash, thinning_shift,
    },
    counters::{CpuState, SamplerState},
    parse::{self, Parsed},
    sample::{SampleMeta, SampleRecord},
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_action},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_xdp_get_buff_len},
    programs::XdpContext,
};

use crate::{
    frame::XdpFrame,
    maps::{CAPTURE_CONFIG, CONFIG, COUNTERS, PARSED, SAMPLES, SEEN_FLOWS, bump},
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

    // From here on the parse and the lengths are read back from map memory
    // (as the capture filter's input is) and the frame's pointers are
    // taken afresh: the verifier then knows neither the parse's values
    // nor how far the parser checked the packet, so it walks sampling and capture about
    // once instead of once per parser path (it ran out of its million
    // instructions otherwise). The volatile write keeps LLVM from
    // forwarding the values past the map.
    let Some(slot) = PARSED.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU map value, no concurrent user on this CPU; the
    // value read back is the one just written.
    let (parsed, frame_len, linear) = unsafe {
        core::ptr::write_volatile(slot, (parsed, frame_len, linear));
        let (parsed, frame_len, linear): &(Parsed, u64, u64) = &*slot;
        (parsed, *frame_len, *linear)
    };
    let frame = XdpFrame::new(ctx);

    // Capture first: its filter loops are most of what the verifier
    // walks, so they see the few states left after the copy above, not
    // those times every branch of sampling.
    let mut verdict = None;
    let capture = CAPTURE_CONFIG.get(0).copied().unwrap_or_default();
    if capture.snaplen != 0 && crate::capture::selected(&frame, parsed, &capture) {
        if capture.af_xdp == 0 {
            crate::capture::copy_frame(ctx, state, frame_len, capture);
        } else {
            verdict = crate::capture::redirect(ctx, state);
        }
    }

    // Read in place: a copy would cost stack.
    // Entry 0 of a one-entry array always exists.
    let Some(config) = CONFIG.get(0) else {
        return verdict.unwrap_or(xdp_action::XDP_PASS);
    };
    let control = parsed.is_control();
    let first =
        !control && config.first_packet != 0 && first_of_flow(&frame, parsed, config.flow_key);
    if first {
        bump(&mut state.counters.first_packets, 1);
    }
    if let Some(rate) = sampling_decision(state, control || first, config) {
        let meta = SampleMeta {
            // SAFETY: plain helper without arguments.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
            ifindex: ctx.ingress_ifindex() as u32,
            frame_len: frame_len as u32,
            sample_rate: rate,
            multi_buffer: frame_len > linear,
            first_packet: first,
        };
        submit_sample(state, &frame, parsed, meta, config);
    }
    observe_app(ctx, state, config);
    match verdict {
        Some(v) => v,
        None if config.mirror != 0 => xdp_action::XDP_DROP,
        None => xdp_action::XDP_PASS,
    }
}

/// App selection, last, from the parse and length read back from map
/// memory once more and the frame's pointers taken afresh: then every
/// path through sampling and capture reaches it in the same state and
/// the verifier walks it once (it ran out of instructions walking it
/// after each of those paths).
#[inline(always)]
fn observe_app(ctx: &XdpContext, state: &mut CpuState, config: &SamplerConfig) {
    if config.app == 0 {
        return;
    }
    let Some(slot) = PARSED.get_ptr(0) else {
        return;
    };
    // SAFETY: per-CPU map value written above on this CPU; volatile so
    // LLVM does not forward what it knows of the values.
    let (parsed, frame_len) = unsafe { (&(*slot).0, core::ptr::read_volatile(&(*slot).1)) };
    let frame = XdpFrame::new(ctx);
    crate::app::observe(ctx, state, &frame, parsed, frame_len, config);
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

/// Whether the frame is the first packet of a flow not seen lately (its
/// keyed hash's slot held another tag); marks it seen.
/// Non-IP frames, later fragments (no ports) and malformed frames are not
/// flows; TCP is left to its SYN.
#[inline(always)]
fn first_of_flow(frame: &XdpFrame, p: &Parsed, key: u64) -> bool {
    // TCP flows show themselves by their SYN (a control packet), so TCP
    // data segments, most of the traffic, skip the table's cost.
    if p.ip_version == 0
        || matches!(
            p.class,
            ProtocolClass::Tcp | ProtocolClass::Fragment | ProtocolClass::Malformed
        )
    {
        return false;
    }
    let (src, dst) = p.addresses(frame);
    let h = flow_hash(key, (&src, p.src_port), (&dst, p.dst_port), p.l4_proto);
    let tag = (h >> 32) as u32 | 1;
    let Some(slot) = SEEN_FLOWS.get_ptr_mut(h as u32 & (SEEN_FLOW_SLOTS - 1)) else {
        return false;
    };
    // SAFETY: array map value; a racing CPU can only make one frame look
    // new twice or seen once too often (u32 stores do not tear).
    let slot = unsafe { &mut *slot };
    if *slot == tag {
        return false;
    }
    *slot = tag;
    true
}

/// Deterministic 1-in-N: every N-th packet of each kind on this CPU; then,
/// for control packets, this CPU's budget of records per millisecond.
/// Returns the rate that applied when this packet is sampled.
#[inline(always)]
fn sampling_decision(state: &mut CpuState, control: bool, config: &SamplerConfig) -> Option<u32> {
    let (rate, seen) = if control {
        (config.control_rate, &mut state.sampler.control_seen)
    } else {
        (config.data_rate, &mut state.sampler.data_seen)
    };
    if rate == 0 {
        return None;
    }
    let next = *seen + 1;
    if next < rate {
        *seen = next;
        return None;
    }
    *seen = 0;
    if !control || config.control_budget == 0 {
        return Some(rate);
    }
    let shift = budget_shift(&mut state.sampler, config.control_budget);
    if shift != 0 && coin(&mut state.sampler) & ((1 << shift) - 1) != 0 {
        bump(&mut state.counters.control_thinned, 1);
        return None;
    }
    // Kept with probability 2^-shift, so it stands for 2^shift packets.
    Some(rate.saturating_mul(1 << shift))
}

/// The thinning in force for this control packet. The clock is read on
/// every [`BUDGET_CLOCK_EVERY`]-th candidate, and before the thinning
/// grows (so it only grows within a window that is still current): when
/// a window has ended, the last one's count sets the thinning (none
/// after an idle millisecond); within a window it grows as soon as the
/// count passes `budget << shift`, so a flood's first millisecond is cut
/// down too.
#[inline(always)]
fn budget_shift(s: &mut SamplerState, budget: u32) -> u32 {
    s.window_seen = s.window_seen.saturating_add(1);
    let over = s.shift < MAX_THINNING_SHIFT && (s.window_seen >> s.shift) > budget;
    if !over && s.window_seen % BUDGET_CLOCK_EVERY != 1 {
        return s.shift;
    }
    // SAFETY: plain helpers without arguments.
    let (now, seed) = unsafe { (bpf_ktime_get_ns(), bpf_get_prandom_u32()) };
    s.coin ^= seed | 1;
    let elapsed = now.wrapping_sub(s.window_start_ns);
    if elapsed >= BUDGET_WINDOW_NS {
        s.shift = if elapsed < 2 * BUDGET_WINDOW_NS {
            thinning_shift(s.window_seen - 1, budget)
        } else {
            0
        };
        s.window_start_ns = now;
        s.window_seen = 1;
    } else if over {
        s.shift += 1;
    }
    s.shift
}

/// A coin for the thinning: xorshift32 over per-CPU state the kernel's
/// random source reseeds every few candidates, so nobody outside can
/// predict which control packets are kept; cheaper than the helper on
/// every candidate.
#[inline(always)]
fn coin(s: &mut SamplerState) -> u32 {
    let mut x = s.coin | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s.coin = x;
    x
}

#[inline(always)]
fn submit_sample(
    state: &mut CpuState,
    frame: &XdpFrame,
    p: &Parsed,
    meta: SampleMeta,
    config: &SamplerConfig,
) {
    let Some(mut entry) = SAMPLES.reserve::<SampleRecord>(0) else {
        bump(&mut state.counters.ringbuf_dropped, 1);
        return;
    };
    entry.write(SampleRecord::from_parsed(p, p.addresses(frame), meta));
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
