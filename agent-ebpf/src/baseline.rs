//! Benchmark programs: the cheapest XDP programs with the verdicts nta's
//! cost is measured against, and the lab traffic generator.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use agent_common::generator::{
        GenConfig, GenTemplate, MODE_MANY_FLOWS, MODE_RANDOM_SOURCE, TEMPLATE_HEAD,
        many_flows_tuple,
    };
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::bpf_get_prandom_u32,
        macros::{map, xdp},
        maps::{Array, PerCpuArray},
        programs::XdpContext,
    };

    #[xdp(frags)]
    pub fn baseline_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[xdp(frags)]
    pub fn baseline_drop(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_DROP
    }

    /// Generator settings written by the bench before each run.
    #[map]
    static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);

    /// The template's first bytes, restored in every frame.
    #[map]
    static GEN_TEMPLATE: Array<GenTemplate> = Array::with_max_entries(1, 0);

    /// Per-CPU position in the flow cycle.
    #[map]
    static GEN_STATE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

    /// Run through BPF_PROG_TEST_RUN with live frames on the sending veth
    /// end: rewrites the template per packet and transmits it. The IPv4
    /// checksum is left stale when the source changes: the receivers are
    /// XDP programs that do not verify it, and the frames' destination MAC
    /// makes the receiving stack discard them before IP.
    #[xdp]
    pub fn generator(ctx: XdpContext) -> u32 {
        let Some(config) = GEN_CONFIG.get(0) else {
            return xdp_action::XDP_TX;
        };
        let start = ctx.data();
        let end = ctx.data_end();
        // Offsets are capped so the verifier can bound them.
        let l3 = (config.l3_offset & 0xff) as usize;
        let l4 = (config.l4_offset & 0x1ff) as usize;
        if start + l3 + 20 > end || start + l4 + 4 > end {
            return xdp_action::XDP_TX;
        }
        if let Some(t) = GEN_TEMPLATE.get(0) {
            // Word by word, bounded: frames are at least 60 bytes, and
            // every template's headers lie within TEMPLATE_HEAD.
            for i in 0..TEMPLATE_HEAD / 4 {
                let at = start + i * 4;
                if at + 4 > end {
                    break;
                }
                let word = [
                    t.bytes[i * 4],
                    t.bytes[i * 4 + 1],
                    t.bytes[i * 4 + 2],
                    t.bytes[i * 4 + 3],
                ];
                // SAFETY: [at, at + 4) is inside the frame (checked above).
                unsafe { core::ptr::write_unaligned(at as *mut [u8; 4], word) };
            }
        }
        let src = (start + l3 + 12) as *mut [u8; 4];
        match config.mode {
            MODE_RANDOM_SOURCE => {
                // SAFETY: helper without arguments.
                let r = unsafe { bpf_get_prandom_u32() };
                let addr = agent_common::generator::LAB_NET_V4
                    | (r >> (32 - agent_common::generator::LAB_NET_V4_HOST_BITS));
                // SAFETY: bounds checked above.
                unsafe { core::ptr::write_unaligned(src, addr.to_be_bytes()) };
            }
            MODE_MANY_FLOWS => {
                let Some(state) = GEN_STATE.get_ptr_mut(0) else {
                    return xdp_action::XDP_TX;
                };
                // SAFETY: per-CPU value, no concurrent writer.
                let n = unsafe { &mut *state };
                let flows = if config.flows == 0 { 1 } else { config.flows };
                let (addr, port) = many_flows_tuple(*n % flows);
                *n = n.wrapping_add(1);
                // SAFETY: bounds checked above.
                unsafe {
                    core::ptr::write_unaligned(src, addr.to_be_bytes());
                    core::ptr::write_unaligned((start + l4) as *mut [u8; 2], port.to_be_bytes());
                }
            }
            _ => {}
        }
        xdp_action::XDP_TX
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // SAFETY: the verifier rejects programs with reachable panics.
        unsafe { core::hint::unreachable_unchecked() }
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
