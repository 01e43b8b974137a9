//! Types shared by the XDP program and the userspace agent.
//!
//! Everything that crosses the kernel/userspace boundary is `#[repr(C)]`,
//! integer-only, explicitly padded and size-checked at compile time. The
//! packet parser lives here too so the kernel and offline analysis agree by
//! construction.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod app;
pub mod capture;
pub mod class;
pub mod config;
pub mod counters;
pub mod filter;
pub mod generator;
pub mod parse;
pub mod sample;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: these types are `#[repr(C)]`, hold only integers and have no
    // implicit padding (each has a compile-time size assertion).
    unsafe impl aya::Pod for crate::counters::CpuState {}
    unsafe impl aya::Pod for crate::config::SamplerConfig {}
    unsafe impl aya::Pod for crate::generator::GenConfig {}
    unsafe impl aya::Pod for crate::generator::GenTemplate {}
    unsafe impl aya::Pod for crate::capture::CaptureConfig {}
    unsafe impl aya::Pod for crate::filter::FilterTable {}
    unsafe impl aya::Pod for crate::app::FollowKey {}
    unsafe impl aya::Pod for crate::app::FollowState {}
}
