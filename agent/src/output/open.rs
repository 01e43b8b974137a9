//! Opens the flow exporters and alert sinks that settings ask for: at
//! start, and again when a reload changes them.

use crate::{
    config::settings::RunSettings,
    output::{
        alert,
        alert::{AlertContext, AlertError, AlertMetrics, AlertSink},
        export,
        export::{ExportError, FlowContext, FlowExporter},
    },
};

/// The flow exporters: files by extension, then each component that is
/// on. `ifindexes` are the watched interfaces, whose data sampling rate
/// an exporter may announce.
pub fn open_flow_exporters(
    s: &RunSettings,
    ifindexes: &[u32],
) -> Result<Vec<Box<dyn FlowExporter>>, ExportError> {
    let o = &s.outputs.flows;
    let cx = FlowContext {
        data_sampling: ifindexes
            .iter()
            .map(|&i| (i, s.sampling.data_rate))
            .collect(),
    };
    let mut exporters = o
        .files
        .iter()
        .map(|p| export::open_flow_file(p, o.rotation))
        .collect::<Result<Vec<_>, _>>()?;
    for component in &o.exporters {
        exporters.extend(component.open(&cx)?);
    }
    Ok(exporters)
}

/// The alert sinks asked for, then the log.
pub fn open_alert_sinks(
    s: &RunSettings,
    metrics: &AlertMetrics,
) -> Result<Vec<Box<dyn AlertSink>>, AlertError> {
    let o = &s.outputs.alerts;
    let cx = AlertContext {
        rotation: o.rotation,
        metrics: metrics.clone(),
    };
    alert::open_sinks(&o.sinks, &cx, &s.detect.group_names())
}
