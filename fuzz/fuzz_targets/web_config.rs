//! Any text as the web config file (YAML): loading never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nta::serve::webconfig::WebConfig;

fuzz_target!(|text: &str| {
    let _ = WebConfig::parse(text, std::path::Path::new("/nonexistent/web.yml"));
});
