//! Flows from samples: a bounded flow table with NetFlow/IPFIX-style expiry.
//!
//! Pure Rust with an injected clock (the records' own timestamps), so the
//! live agent and offline analysis share it and tests control time.

mod direction;
mod key;
mod table;

pub use direction::{Direction, Directions};
pub use key::FlowKey;
pub use table::{
    ExpireReason, ExpiredFlow, FlowConfig, FlowNote, FlowStats, FlowTable, TableCounters,
};
