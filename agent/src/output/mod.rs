//! Where results go: flow exporters (JSON lines, CSV, IPFIX), alert sinks
//! (file, webhook, log), capture files and the flight recorder, and
//! opening them from the settings. An
//! output with options of its own is a component (see [`component`]).

pub mod alert;
pub mod capture;
pub mod component;
pub mod export;
pub mod metadata;
pub mod open;
