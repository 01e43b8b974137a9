//! The learned profiles of `nta run` across restarts
//! (`[detect.baseline] state_file`): read at start, written every
//! `save_interval` on a thread of its own (the profiles are copied on the
//! pipeline thread, the encoding, write and fsync happen off it), and
//! once more at stop. A bad file is a warning and a counted failure;
//! nta starts unlearned and overwrites it at the next save.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{IntCounterVec, Opts, Registry};

use crate::pipeline::detect::{
    Engine,
    profile::state::{self, StateError},
};

#[derive(Clone)]
pub struct StoreMetrics {
    ops: IntCounterVec,
}

/// Every result a load or save can have, for zero series.
const RESULTS: [&str; 7] = [
    "ok",
    "missing",
    "io",
    "foreign",
    "version",
    "corrupt",
    "too_large",
];

impl StoreMetrics {
    pub fn register(registry: &Registry) -> Result<StoreMetrics, prometheus::Error> {
        let ops = IntCounterVec::new(
            Opts::new(
                "nta_baseline_state_total",
                "Loads and saves of the learned-profile state file, by result (ok, missing, io, foreign, version, corrupt, too_large).",
            ),
            &["op", "result"],
        )?;
        registry.register(Box::new(ops.clone()))?;
        for op in ["load", "save"] {
            for r in RESULTS {
                ops.with_label_values(&[op, r]);
            }
        }
        Ok(StoreMetrics { ops })
    }

    fn count(&self, op: &str, result: &str) {
        self.ops.with_label_values(&[op, result]).inc();
    }
}

pub struct ProfileStore {
    path: PathBuf,
    interval: Duration,
    last_save: Instant,
    /// A periodic save is under way; the next waits for its turn.
    writing: Arc<AtomicBool>,
    metrics: StoreMetrics,
}

impl ProfileStore {
    pub fn new(path: PathBuf, interval: Duration, metrics: StoreMetrics) -> ProfileStore {
        ProfileStore {
            path,
            interval,
            last_save: Instant::now(),
            writing: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// Reads the state file into `engine`.
    pub fn load(&self, engine: &mut Engine) {
        let p = self.path.display();
        match engine.load_profiles(&self.path) {
            Ok(Some(n)) => {
                tracing::info!("{p}: {n} learned profiles restored");
                self.metrics.count("load", "ok");
            }
            Ok(None) => {
                tracing::info!("{p}: no learned profiles yet; learning from now");
                self.metrics.count("load", "missing");
            }
            Err(e) => {
                tracing::warn!("{e}; starting unlearned (the file is replaced at the next save)");
                self.metrics.count("load", e.reason());
            }
        }
    }

    /// Saves on a thread of its own when the interval has passed.
    pub fn maybe_save(&mut self, engine: &Engine) {
        if self.last_save.elapsed() < self.interval || self.writing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_save = Instant::now();
        let keys = engine.export_profiles();
        let (path, writing, metrics) = (
            self.path.clone(),
            self.writing.clone(),
            self.metrics.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("nta-profiles".into())
            .spawn(move || {
                report(&metrics, &path, state::write(&path, keys).map(|_| ()));
                writing.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!("saving learned profiles: no thread: {e}");
            self.writing.store(false, Ordering::Release);
        }
    }

    /// The last save, at stop: waits for a periodic one still running.
    pub fn save_now(&self, engine: &Engine) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.writing.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        report(
            &self.metrics,
            &self.path,
            engine.save_profiles(&self.path).map(|n| {
                tracing::info!("{}: {n} learned profiles saved", self.path.display());
            }),
        );
    }
}

fn report(metrics: &StoreMetrics, path: &std::path::Path, result: Result<(), StateError>) {
    match result {
        Ok(()) => metrics.count("save", "ok"),
        Err(e) => {
            tracing::warn!("saving learned profiles to {}: {e}", path.display());
            metrics.count("save", e.reason());
        }
    }
}
