//! Where results go: flow exporters (JSON lines, CSV, IPFIX) and alert
//! sinks (file, webhook, log), and opening them from the settings. An
//! output with options of its own is a component (see [`component`]).

pub mod alert;
pub mod component;
pub mod export;
pub mod open;
