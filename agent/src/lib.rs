//! nta: a high-rate XDP network sensor. This library holds everything the
//! `nta` binary does; `main.rs` only parses the command line.

pub mod adaptive;
pub mod alert;
pub mod capture;
pub mod cli;
pub mod config;
pub mod detect;
pub mod detection;
pub mod events;
pub mod export;
pub mod flags;
pub mod flow;
pub mod flows;
pub mod iface;
pub mod metrics;
pub mod objects;
pub mod offline;
pub mod outputs;
pub mod pipeline;
pub mod privileges;
pub mod reattach;
pub mod reload;
pub mod run;
pub mod sensor;
pub mod server;
pub mod settings;
pub mod webconfig;
