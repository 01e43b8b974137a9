//! Outputs as components. A flow exporter or alert sink that has options
//! of its own is one module holding:
//!
//! - its section, declared with [`crate::config::merge::section!`]: the
//!   same struct is its `nta run` flags and its config-file table;
//! - its checks ([`FlowOutput::validate`]) and how it opens from that
//!   section ([`FlowOutput::open`] / [`AlertOutput::open`]);
//! - its own error type, converted into [`ExportError`] / [`AlertError`].
//!
//! Registering it is one field and one line in its group's section
//! (`FlowsSection::exporters`, `AlertsSection::sinks` in
//! `config/sections.rs`). The running settings keep the merged sections
//! as these trait objects; a reload compares them with [`SameConfig`], so
//! a component's new option can never be missed by the reload.

use std::{any::Any, fmt::Debug};

use crate::output::{
    alert::{AlertError, AlertMetrics, AlertSink},
    export::{ExportError, FlowExporter, RotationConfig},
};

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

/// What opening a flow exporter may need besides its own section.
#[derive(Clone, Debug, Default)]
pub struct FlowContext {
    /// (ifindex, data sampling interval) of every watched interface.
    pub data_sampling: Vec<(u32, u32)>,
}

/// A flow exporter's merged section.
pub trait FlowOutput: SameConfig + Debug + Send + Sync {
    /// Its config key, for errors (`flows.ipfix`).
    fn key(&self) -> &'static str;
    /// Checks what the option types cannot (the same for flags and file).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// The exporter, or `None` when the section leaves it off.
    fn open(&self, cx: &FlowContext) -> Result<Option<Box<dyn FlowExporter>>, ExportError>;
    /// Whether the exporter tells its collector the data sampling rate, so
    /// a new rate must reopen it.
    fn announces_sampling_rate(&self) -> bool {
        false
    }
}

/// What opening an alert sink may need besides its own option.
#[derive(Clone)]
pub struct AlertContext {
    /// File sinks rotate like the flow files.
    pub rotation: RotationConfig,
    /// Sinks that deliver later count their own outcomes here.
    pub metrics: AlertMetrics,
}

/// An alert sink's option, once given.
pub trait AlertOutput: SameConfig + Debug + Send + Sync {
    /// Its config key, for errors (`alerts.webhook`).
    fn key(&self) -> &'static str;
    fn open(&self, cx: &AlertContext) -> Result<Box<dyn AlertSink>, AlertError>;
}

/// Two lists of components hold the same configuration, in order.
pub fn same_components<T: ?Sized + SameConfig>(
    a: &[std::sync::Arc<T>],
    b: &[std::sync::Arc<T>],
) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_config(y.as_any()))
}
