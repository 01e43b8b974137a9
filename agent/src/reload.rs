//! Config reload on SIGHUP: the file is read and validated again; a good
//! one goes to the sampling controller (rates, budget; flags given on the
//! command line keep winning) and the detection stage (thresholds,
//! windows, host groups, allowlist, incident timing) without detaching XDP
//! or resetting any counter; a bad one is refused with its precise error and the config in
//! force stays. Outcomes and the hash of the config in force are metrics.

use std::path::PathBuf;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    config::{FileConfig, Sampling, SamplingSection},
    detect::DetectConfig,
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
    pub detect_running: bool,
    /// Sampling flags given on the command line: they keep winning.
    pub explicit_sampling: SamplingSection,
    pub to_detection: mpsc::Sender<DetectConfig>,
    pub to_sampling: mpsc::Sender<Sampling>,
    pub metrics: ReloadMetrics,
}

/// Waits for SIGHUP until `shutdown`; each one reloads the file.
pub async fn watch_sighup(r: Reload, mut shutdown: watch::Receiver<bool>) {
    let Reload {
        path,
        mut hash,
        detect_running,
        explicit_sampling,
        to_detection,
        to_sampling,
        metrics,
    } = r;
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload is off");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = shutdown.changed() => return,
        }
        let Some(path) = &path else {
            tracing::warn!("SIGHUP: no --config file to reload");
            metrics.reloads.with_label_values(&["failure"]).inc();
            continue;
        };
        match FileConfig::load_with_hash(path) {
            Ok((config, new_hash)) => {
                if config.detect.enabled != detect_running {
                    tracing::warn!(
                        "detect.enabled changed: turning detection on or off takes a restart; the rest of the new config is in force"
                    );
                }
                let sampling = Sampling::resolve(config.sampling, explicit_sampling);
                let sampling_ok = to_sampling.send(sampling).await.is_ok();
                if !sampling_ok || to_detection.send(config.detect).await.is_err() {
                    tracing::warn!("detection stage gone; reload not applied");
                    metrics.reloads.with_label_values(&["failure"]).inc();
                    continue;
                }
                metrics.in_force(&hash, &new_hash);
                tracing::info!(config = %path.display(), sha1 = %new_hash, "config reloaded");
                hash = new_hash;
                metrics.reloads.with_label_values(&["success"]).inc();
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "config reload refused; the previous config stays in force");
                metrics.reloads.with_label_values(&["failure"]).inc();
            }
        }
    }
}
