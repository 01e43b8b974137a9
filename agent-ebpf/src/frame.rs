//! [`Frame`] over the XDP packet: direct packet access, bounds-checked
//! against `data_end` the way the verifier requires.

use agent_common::parse::{Frame, MAX_PARSE_OFFSET};
use aya_ebpf::programs::XdpContext;

pub struct XdpFrame {
    start: usize,
    end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        XdpFrame {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// Length of the first (linear) buffer.
    #[inline(always)]
    pub fn linear_len(&self) -> usize {
        self.end - self.start
    }
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // The cap gives the verifier a bound on the offset.
        if offset > MAX_PARSE_OFFSET {
            return None;
        }
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        // SAFETY: [at, at + N) lies inside the packet (checked above).
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }
}
