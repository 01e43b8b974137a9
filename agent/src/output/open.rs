//! Opens the flow exporters and alert sinks that settings ask for: at
//! start, and again when a reload changes them.

use crate::{
    config::settings::RunSettings,
    output::{
        alert,
        alert::{AlertError, AlertMetrics, AlertSink},
        export,
        export::{ExportError, FlowExporter},
    },
};

/// The flow exporters: files by extension, then IPFIX. `ifindexes` are
/// the watched interfaces, announced with the data sampling rate in the
/// IPFIX options record.
pub fn open_flow_exporters(
    s: &RunSettings,
    ifindexes: &[u32],
) -> Result<Vec<Box<dyn FlowExporter>>, ExportError> {
    let o = &s.outputs.flows;
    let mut exporters = o
        .files
        .iter()
        .map(|p| export::open_flow_file(p, o.rotation))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(ipfix) = &o.ipfix {
        exporters.push(Box::new(export::IpfixExporter::connect(
            export::IpfixConfig {
                collector: export::resolve_collector(&ipfix.collector)?,
                observation_domain: ipfix.domain,
                template_refresh: ipfix.template_refresh,
                sampling: ifindexes
                    .iter()
                    .map(|&i| (i, s.sampling.data_rate))
                    .collect(),
            },
        )?));
    }
    Ok(exporters)
}

/// The alert sinks: file, webhook, log.
pub fn open_alert_sinks(
    s: &RunSettings,
    metrics: &AlertMetrics,
) -> Result<Vec<Box<dyn AlertSink>>, AlertError> {
    let o = &s.outputs.alerts;
    alert::open_sinks(
        o.file
            .as_ref()
            .map(|(path, rotation)| (path.as_path(), *rotation)),
        o.webhook.as_deref(),
        &s.detect.group_names(),
        metrics,
    )
}
