//! nta: a high-rate XDP network sensor. This library holds everything the
//! `nta` binary does; `main.rs` only parses the command line.
//!
//! The folders follow a sample from the kernel to an alert:
//! `kernel` (load and attach the XDP program, drain its ring buffers and
//! capture sources, sampling control) → `pipeline` (flow table, then
//! detection) → `output` (flow exporters, alert sinks, capture files and
//! the flight recorder); `serve` answers Prometheus, `config` merges flags and the config file,
//! `offline` reads capture files into the same pipeline, and `cmd` holds
//! the `nta` subcommands, which nothing else imports.

pub mod app;
pub mod cmd;
pub mod config;
pub mod kernel;
pub mod offline;
pub mod output;
pub mod pipeline;
pub mod serve;
