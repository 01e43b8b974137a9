//! The nta XDP program: counts every frame exactly, samples headers into a
//! ring buffer, and passes everything on. It never drops traffic, except on
//! interfaces the operator declared mirror ports (`nta run --mirror`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod app;
#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod frame;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod sensor;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{macros::xdp, programs::XdpContext};

    /// Entry point. `frags` lets it attach to interfaces with jumbo MTUs
    /// (multi-buffer frames); byte counts cover the whole frame.
    #[xdp(frags)]
    pub fn nta(ctx: XdpContext) -> u32 {
        crate::sensor::observe(&ctx)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // SAFETY: the verifier rejects programs with reachable panics.
        unsafe { core::hint::unreachable_unchecked() }
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
