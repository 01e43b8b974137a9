//! Where results go: flow exporters (JSON lines, CSV, IPFIX), alert sinks
//! (file, webhook, log), capture files and the flight recorder, and
//! opening them from the settings. An
//! output with options of its own is a component (see [`component`]).

pub mod alert;
pub mod capture;
pub mod component;
pub mod elastic;
pub mod export;
pub mod metadata;
pub mod open;

use std::sync::LazyLock;

/// This machine's host name, for `observer.hostname` in every document
/// (empty when the system cannot say).
pub fn hostname() -> &'static str {
    static NAME: LazyLock<String> = LazyLock::new(|| {
        nix::unistd::gethostname()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    &NAME
}
