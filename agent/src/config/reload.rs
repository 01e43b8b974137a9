//! Config reload on SIGHUP: the file is read and validated again; a good
//! one goes to the sampling controller (rates, budget), the flow stage
//! (timeouts, flow outputs) and the detection stage (thresholds, windows,
//! host groups, allowlist, incident timing, alert outputs) without
//! detaching XDP or resetting any counter. Flags given on the command line
//! keep winning. A bad file, or an output that cannot be opened, is
//! refused with its precise error and the config in force stays. Outcomes
//! and the hash of the config in force are metrics.

use std::path::PathBuf;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    config::{ConfigError, FileConfig, Sampling, flags::RunArgs, settings::RunSettings},
    output::{
        alert::{AlertError, AlertMetrics},
        export::ExportError,
        open::{open_alert_sinks, open_flow_exporters},
    },
    pipeline::live::StageReload,
    serve::{server::SharedWebConfig, webconfig::WebConfigError},
};

#[derive(Clone)]
pub struct ReloadMetrics {
    reloads: IntCounterVec,
    info: IntGaugeVec,
}

impl ReloadMetrics {
    pub fn register(registry: &Registry, hash: &str) -> Result<ReloadMetrics, prometheus::Error> {
        let m = ReloadMetrics {
            reloads: IntCounterVec::new(
                Opts::new(
                    "nta_config_reloads_total",
                    "Config reloads (SIGHUP) by result: success or failure (the old config stays).",
                ),
                &["result"],
            )?,
            info: IntGaugeVec::new(
                Opts::new(
                    "nta_config_info",
                    "1 for the config in force, labelled with the SHA-1 of its file (empty: no file).",
                ),
                &["sha1"],
            )?,
        };
        registry.register(Box::new(m.reloads.clone()))?;
        registry.register(Box::new(m.info.clone()))?;
        for r in ["success", "failure"] {
            m.reloads.with_label_values(&[r]);
        }
        m.info.with_label_values(&[hash]).set(1);
        Ok(m)
    }

    fn in_force(&self, old: &str, new: &str) {
        if old != new {
            let _ = self.info.remove_label_values(&[old]);
        }
        self.info.with_label_values(&[new]).set(1);
    }
}

/// What a reload needs to know and where it sends the new settings.
pub struct Reload {
    pub path: Option<PathBuf>,
    pub hash: String,
    /// The command line: its flags keep winning over the file.
    pub args: RunArgs,
    pub in_force: RunSettings,
    /// Watched interfaces, for the IPFIX sampling announcement.
    pub ifindexes: Vec<u32>,
    /// The loaded programs: a new capture filter goes into their maps.
    pub sensors: Vec<std::sync::Arc<std::sync::Mutex<crate::kernel::sensor::Sensor>>>,
    pub alert_metrics: AlertMetrics,
    pub to_stage: mpsc::Sender<StageReload>,
    pub to_sampling: mpsc::Sender<Sampling>,
    pub web: SharedWebConfig,
    pub metrics: ReloadMetrics,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening the new flow outputs")]
    FlowOutputs(#[from] ExportError),
    #[error("opening the new alert outputs")]
    AlertOutputs(#[from] AlertError),
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error(transparent)]
    Capture(#[from] crate::output::capture::live::LiveCaptureError),
    #[error("applying the capture filter")]
    CaptureApply(#[source] crate::kernel::sensor::SensorError),
    #[error("the flow stage has stopped")]
    StageGone,
}

/// Waits for SIGHUP until `shutdown`; each one reloads the file.
pub async fn watch_sighup(mut r: Reload, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload is off");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = shutdown.changed() => return,
        }
        let path = r.path.clone();
        match r.apply(path.as_deref()).await {
            Ok(new_hash) => {
                r.metrics.in_force(&r.hash, &new_hash);
                let shown = path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                tracing::info!(config = %shown, sha1 = %new_hash, "config reloaded");
                r.hash = new_hash;
                r.metrics.reloads.with_label_values(&["success"]).inc();
            }
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "config reload refused; the previous config stays in force");
                r.metrics.reloads.with_label_values(&["failure"]).inc();
            }
        }
    }
}

impl Reload {
    /// Reads, validates and opens everything first; only when all of it
    /// worked is anything sent, so a refused reload changes nothing.
    /// Without a config file the flags are the whole config; the web
    /// config file is re-read all the same.
    async fn apply(&mut self, path: Option<&std::path::Path>) -> Result<String, ReloadError> {
        let (file, new_hash) = match path {
            Some(path) => FileConfig::load_with_hash(path)?,
            None => (FileConfig::default(), String::new()),
        };
        let new = RunSettings::resolve(&self.args, &file);
        let restart = self.in_force.restart_needed(&new);
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "these settings take a restart; they keep their running values, the rest of the new config is in force"
            );
        }
        let new = new.keeping_restart_fields_of(&self.in_force);
        let exporters = if self.in_force.flow_outputs_changed(&new) {
            Some(open_flow_exporters(&new, &self.ifindexes)?)
        } else {
            None
        };
        let capture = match &new.capture {
            Some(c) if self.in_force.capture_filter_changed(&new) => {
                Some(crate::output::capture::live::kernel_capture(c)?)
            }
            _ => None,
        };
        // Re-read even when the path is the same: certificates rotate.
        let web =
            crate::serve::webconfig::WebConfig::load_optional(new.web_config_file.as_deref())?;
        let alert_sinks = if new.detect_on && self.in_force.alert_outputs_changed(&new) {
            Some(open_alert_sinks(&new, &self.alert_metrics)?)
        } else {
            None
        };
        self.to_sampling
            .send(new.sampling)
            .await
            .map_err(|_| ReloadError::StageGone)?;
        self.to_stage
            .send(StageReload {
                detect: new.detect.clone(),
                idle_timeout_ns: new.flow_table.idle_timeout_ns,
                active_timeout_ns: new.flow_table.active_timeout_ns,
                exporters,
                alert_sinks,
            })
            .await
            .map_err(|_| ReloadError::StageGone)?;
        if let Some(k) = capture {
            for s in &self.sensors {
                if let Ok(mut s) = s.lock() {
                    s.set_capture(k.snaplen, &k.filter)
                        .map_err(ReloadError::CaptureApply)?;
                }
            }
        }
        if let Ok(mut w) = self.web.write() {
            *w = std::sync::Arc::new(web);
        }
        self.in_force = new;
        Ok(new_hash)
    }
}

/// The error and its causes, for one log line.
fn error_chain(e: &ReloadError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
