//! Outputs as components. A flow exporter or alert sink that has options
//! of its own is one module holding:
//!
//! - its section, declared with [`crate::config::merge::section!`]: the
//!   same struct is its `nta run` flags and its config-file table;
//! - its checks and how it opens from that section (the traits
//!   `export::FlowOutput` and `alert::AlertOutput`, beside the exporter
//!   and sink traits they open);
//! - its own error type, converted into `ExportError` / `AlertError`.
//!
//! Registering it is one field and one line in its group's section
//! (`FlowsSection::exporters`, `AlertsSection::sinks` in
//! `config/sections.rs`). The running settings keep the merged sections
//! as these trait objects; a reload compares them with [`SameConfig`], so
//! a component's new option can never be missed by the reload.

use std::{any::Any, sync::Arc};

/// Equality between two components behind `dyn`: equal when both are the
/// same type with equal values.
pub trait SameConfig: Any {
    fn same_config(&self, other: &dyn Any) -> bool;
    fn as_any(&self) -> &dyn Any;
}

impl<T: PartialEq + Any> SameConfig for T {
    fn same_config(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>().is_some_and(|o| o == self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Two lists of components hold the same configuration, in order.
pub fn same_components<T: ?Sized + SameConfig>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_config(y.as_any()))
}
