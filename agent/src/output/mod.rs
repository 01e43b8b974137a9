//! Where results go: flow exporters (JSON lines, CSV, IPFIX) and alert
//! sinks (file, webhook, log), and opening them from the settings.

pub mod alert;
pub mod export;
pub mod open;
