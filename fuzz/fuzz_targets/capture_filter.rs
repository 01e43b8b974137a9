//! Any text as a capture filter: compiling never panics or overflows the
//! stack, and what compiles fits the kernel's filter table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nta::kernel::capture::CaptureFilter;

fuzz_target!(|text: &str| {
    let _ = CaptureFilter::compile(text);
});
