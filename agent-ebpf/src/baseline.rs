//! Baseline programs for benchmarks: the cheapest possible XDP programs with
//! the verdicts nta's cost is measured against.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

    #[xdp(frags)]
    pub fn baseline_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[xdp(frags)]
    pub fn baseline_drop(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_DROP
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // SAFETY: nothing here can panic.
        unsafe { core::hint::unreachable_unchecked() }
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
