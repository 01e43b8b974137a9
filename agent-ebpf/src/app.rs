//! Application metadata: frames that begin a TLS handshake, continue one,
//! carry DNS or a QUIC Initial are copied whole (up to `APP_SNAPLEN`)
//! into `APP_FRAMES` for the agent to read. The rule is
//! `agent_common::app`; this module keeps the follow table and copies.

use agent_common::{
    app::{
        APP_SNAPLEN, AppKind, Candidate, FOLLOW_WINDOW, Follow, FollowKey, FollowState, classify,
        follow,
    },
    capture::copy_len,
    config::SamplerConfig,
    counters::CpuState,
    parse::Parsed,
};
use aya_ebpf::programs::XdpContext;

use crate::{
    frame::XdpFrame,
    maps::{APP_FRAMES, FOLLOW, bump},
};

/// Selects and copies this frame if it is one the agent reads above L4.
#[inline(always)]
pub fn observe(
    ctx: &XdpContext,
    state: &mut CpuState,
    frame: &XdpFrame,
    p: &Parsed,
    frame_len: u64,
    config: &SamplerConfig,
) {
    let kind = match classify(frame, p, frame_len, config.app, &config.dns_ports) {
        Candidate::None => return,
        Candidate::Dns => AppKind::Dns,
        Candidate::QuicInitial => AppKind::QuicInitial,
        Candidate::Handshake {
            seq,
            payload_len,
            needed,
        } => {
            if let Some(follow) = FollowState::after_first(seq, payload_len, needed) {
                // A full table evicts its oldest entry (LRU).
                let _ = FOLLOW.insert(FollowKey::of(frame, p), follow, 0);
                state.sampler.follow_left = FOLLOW_WINDOW;
            }
            AppKind::TlsHandshake
        }
        Candidate::Segment { seq, payload_len } => {
            // Most segments stop here: no handshake pending on this CPU.
            if state.sampler.follow_left == 0 {
                return;
            }
            state.sampler.follow_left -= 1;
            if !continues_handshake(frame, p, seq, payload_len) {
                return;
            }
            AppKind::TlsContinuation
        }
    };
    let copied = crate::capture::copy_into(
        &APP_FRAMES,
        ctx,
        frame_len,
        copy_len(frame_len as u32, APP_SNAPLEN),
        kind as u32,
        &mut state.sampler.app_since_wakeup,
    );
    if copied {
        if let Some(n) = state.counters.app_frames.get_mut(kind as usize - 1) {
            bump(n, 1);
        }
    } else {
        bump(&mut state.counters.app_dropped, 1);
    }
}

/// Whether a TCP payload segment belongs to a handshake being followed.
#[inline(always)]
fn continues_handshake(frame: &XdpFrame, p: &Parsed, seq: u32, payload_len: u32) -> bool {
    let key = FollowKey::of(frame, p);
    let Some(entry) = FOLLOW.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: a map value pointer; a racing CPU on the same flow can at
    // worst take a segment twice or once too few (the agent checks).
    let entry = unsafe { &mut *entry };
    match follow(entry, seq, payload_len) {
        Follow::Skip => false,
        Follow::Take => true,
        Follow::TakeLast => {
            let _ = FOLLOW.remove(key);
            true
        }
    }
}
