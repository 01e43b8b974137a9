//! Any text as the config file: parsing never panics, and a config that
//! parses resolves into settings (as a reload would) without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nta::config::{FileConfig, flags::RunArgs, settings::RunSettings};

fuzz_target!(|text: &str| {
    if let Ok(c) = FileConfig::parse(text, Path::new("fuzz.toml")) {
        let s = RunSettings::resolve(&RunArgs::defaults(), &c);
        // The file's interfaces are what the settings watch.
        if let Some(i) = &c.sensor.interfaces {
            assert_eq!(&s.interfaces, i);
        }
    }
});
