//! `nta run`: attach to interfaces, consume samples, serve metrics, and
//! detach cleanly on SIGINT/SIGTERM.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use agent_common::config::SamplerConfig;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
    task::JoinSet,
};

use crate::{
    capture::{
        Interface, afxdp,
        afxdp::{AfXdpError, AfXdpMetrics},
        consumer::{CaptureRing, FrameSource},
        live,
        live::LiveCaptureError,
    },
    config::{
        ConfigError, FileConfig, flags::RunArgs, reload, reload::ReloadMetrics,
        settings::RunSettings,
    },
    kernel::{
        adaptive,
        adaptive::{Controlled, RateController, SamplingMetrics},
        events,
        events::PipelineStats,
        iface, privileges, reattach,
        sensor::{KernelCapture, Sensor, SensorError},
    },
    output::{
        alert::{AlertError, AlertMetrics, Alerts},
        export,
        export::{ExportError, WallClock},
        open::{open_alert_sinks, open_flow_exporters},
    },
    pipeline::{
        Pipeline,
        alerting::{DetectMetrics, DetectionStage},
        live::{FlowMetrics, FlowStage},
    },
    serve::{
        metrics::{InterfaceSource, Metrics, MetricsError, SensorCollector},
        server,
        server::{ServerError, SharedWebConfig},
        webconfig::{WebConfig, WebConfigError},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Privileges(String),
    #[error(transparent)]
    Iface(#[from] iface::IfaceError),
    #[error("interface {iface}")]
    Sensor {
        iface: String,
        source: Box<SensorError>,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("flow output")]
    FlowOutput(#[from] ExportError),
    #[error("registering flow metrics")]
    FlowMetrics(#[source] prometheus::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("alert output")]
    AlertOutput(#[from] AlertError),
    #[error("web config")]
    WebConfig(#[from] WebConfigError),
    #[error(transparent)]
    Capture(#[from] LiveCaptureError),
    #[error(transparent)]
    AfXdp(#[from] AfXdpError),
}

fn current_tls(web: &SharedWebConfig) -> bool {
    web.read().map(|w| w.tls.is_some()).unwrap_or(false)
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    raise_fd_limit();
    let (file_config, config_hash) = match &args.config {
        Some(path) => FileConfig::load_with_hash(path)?,
        None => (FileConfig::default(), String::new()),
    };
    let settings = RunSettings::resolve(&args, &file_config);
    let ifaces = iface::resolve_interfaces(&settings.interfaces)?;
    privileges::check().map_err(RunError::Privileges)?;
    let sampling = settings.sampling;
    let ifindexes = ifaces
        .iter()
        .map(|i| iface::ifindex(i))
        .collect::<Result<Vec<_>, _>>()?;
    // Open outputs before touching the kernel, so a bad path fails fast.
    let web: SharedWebConfig = Arc::new(std::sync::RwLock::new(Arc::new(
        WebConfig::load_optional(settings.web_config_file.as_deref())?,
    )));
    let exporters = open_flow_exporters(&settings, &ifindexes)?;
    let alert_metrics = AlertMetrics::new().map_err(MetricsError::from)?;
    let alert_sinks = if settings.detect_on {
        open_alert_sinks(&settings, &alert_metrics)?
    } else {
        Vec::new()
    };
    let kernel_capture = match &settings.capture {
        Some(c) => live::kernel_capture(c)?,
        None => KernelCapture::default(),
    };
    let listener = server::bind(settings.listen).await?;
    let config = SamplerConfig {
        data_rate: sampling.data_rate,
        control_rate: sampling.control_rate,
        mirror: u32::from(settings.mirror),
        ..SamplerConfig::default()
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (tx, rx) = events::queue();
    let mut tasks = JoinSet::new();
    let mut sensors = Vec::new();
    let mut sources = Vec::new();
    let mut names = HashMap::new();
    let mut controlled = Vec::new();
    let mut watched = Vec::new();
    let mut capture_sources: Vec<Box<dyn FrameSource>> = Vec::new();
    let mut afxdp_metrics: Option<AfXdpMetrics> = None;
    // Kept open while nta runs.
    let mut xsk_maps = Vec::new();
    for (name, &ifindex) in ifaces.iter().zip(&ifindexes) {
        names.insert(ifindex, name.clone());
        let err = |source| RunError::Sensor {
            iface: name.clone(),
            source: Box::new(source),
        };
        let (mut sensor, maps) = Sensor::load_with_capture(config, kernel_capture).map_err(err)?;
        let counters = Arc::new(maps.counters);
        if kernel_capture.af_xdp {
            // Sockets before the attach: no frame goes to a queue without
            // a reader.
            let metrics = afxdp_metrics.get_or_insert_with(AfXdpMetrics::new_unregistered);
            let mut xsks = maps.xsks;
            let heartbeat = Arc::new(Mutex::new(maps.heartbeat));
            for queue in 0..afxdp::rx_queues(name) {
                let q = afxdp::AfXdpQueue::bind(
                    name,
                    ifindex,
                    queue,
                    kernel_capture.snaplen,
                    &mut xsks,
                    heartbeat.clone(),
                )?
                .with_metrics(metrics.clone(), name);
                tracing::info!(interface = %name, queue, zero_copy = q.zero_copy, "AF_XDP socket bound");
                capture_sources.push(Box::new(q));
            }
            xsk_maps.push(xsks);
        } else {
            capture_sources.push(Box::new(CaptureRing {
                ifindex,
                ring: maps.captures,
                counters: counters.clone(),
            }));
        }
        let mode = sensor.attach(name, settings.xdp_mode).map_err(err)?;
        tracing::info!(interface = %name, mode = %mode, sample_rate = config.data_rate, control_sample_rate = config.control_rate, mirror = settings.mirror, "XDP sensor attached");
        let stats = Arc::new(PipelineStats::default());
        tasks.spawn(events::consume_ring(
            maps.samples,
            Arc::from(name.as_str()),
            tx.clone(),
            stats.clone(),
            shutdown_rx.clone(),
        ));
        let attached = Arc::new(std::sync::atomic::AtomicBool::new(true));
        sources.push(InterfaceSource {
            name: name.clone(),
            mode,
            attached: attached.clone(),
            counters: counters.clone(),
            pipeline: stats.clone(),
        });
        let sensor = Arc::new(Mutex::new(sensor));
        watched.push(reattach::Watched {
            name: name.clone(),
            sensor: sensor.clone(),
            attached,
            mode: settings.xdp_mode,
        });
        controlled.push(Controlled {
            name: name.clone(),
            sensor: sensor.clone(),
            counters,
            pipeline: stats,
            controller: RateController::new(config, sampling.budget),
        });
        sensors.push(sensor);
    }
    drop(tx);

    let metrics = Arc::new(Metrics::new(SensorCollector::new(sources)?)?);
    // The capture files open now, before samples flow; a bad directory
    // stops the start here (the links detach when the sensors drop).
    let mut flight = None;
    let capture = match &settings.capture {
        Some(c) => {
            let interfaces = ifaces
                .iter()
                .zip(&ifindexes)
                .map(|(name, &ifindex)| Interface {
                    ifindex,
                    name: name.clone(),
                })
                .collect();
            let mut prepared = live::prepare(c, interfaces, metrics.registry())?;
            tracing::info!(dir = ?c.dir, flight_recorder = ?c.flight.as_ref().map(|f| &f.dir), filter = %c.filter, snaplen = c.snaplen, "capturing");
            flight = prepared.flight.take();
            if let Some(m) = &afxdp_metrics {
                m.register_in(metrics.registry())
                    .map_err(MetricsError::from)?;
            }
            Some(prepared.start(std::mem::take(&mut capture_sources)))
        }
        None => None,
    };
    let sampling_metrics =
        SamplingMetrics::register(metrics.registry()).map_err(MetricsError::from)?;
    let (sampling_tx, sampling_rx) = tokio::sync::mpsc::channel(4);
    let controller = tokio::spawn(adaptive::run(
        controlled,
        sampling_metrics,
        sampling_rx,
        shutdown_rx.clone(),
    ));
    let reattacher = tokio::spawn(reattach::run(watched, shutdown_rx.clone()));
    let stage = FlowStage {
        pipeline: Pipeline::new(
            settings.flow_table,
            settings.detect_on.then(|| settings.detect.clone()),
        ),
        exporters,
        clock: WallClock::monotonic(),
        interfaces: names,
        metrics: FlowMetrics::register(metrics.registry()).map_err(RunError::FlowMetrics)?,
    };
    let detection = if settings.detect_on {
        alert_metrics
            .register_in(metrics.registry())
            .map_err(MetricsError::from)?;
        let alerts = Alerts::spawn(
            alert_sinks,
            WallClock::monotonic(),
            settings.detect.group_names(),
            alert_metrics.clone(),
        );
        let stage = DetectionStage::new(
            alerts,
            DetectMetrics::register(metrics.registry()).map_err(MetricsError::from)?,
        );
        Some(match flight {
            Some((requests, dir)) => {
                stage.with_flight_recorder(requests, dir, WallClock::monotonic())
            }
            None => stage,
        })
    } else {
        None
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let reload_metrics =
        ReloadMetrics::register(metrics.registry(), &config_hash).map_err(MetricsError::from)?;
    let listen = settings.listen;
    tokio::spawn(reload::watch_sighup(
        reload::Reload {
            path: args.config.clone(),
            hash: config_hash,
            args,
            in_force: settings,
            ifindexes,
            sensors: sensors.clone(),
            alert_metrics,
            to_stage: reload_tx,
            to_sampling: sampling_tx,
            web: web.clone(),
            metrics: reload_metrics,
        },
        shutdown_rx.clone(),
    ));
    let sink = tokio::spawn(crate::pipeline::live::run(
        rx,
        stage,
        detection,
        reload_rx,
        export::monotonic_now_ns,
    ));
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })?;
    let scheme = if current_tls(&web) { "https" } else { "http" };
    tracing::info!("metrics at {scheme}://{addr}/metrics, health at {scheme}://{addr}/healthz");
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(server::serve(listener, metrics, web, async move {
        let _ = server_shutdown.changed().await;
    }));

    wait_for_signal().await?;
    tracing::info!("stopping: detaching XDP and draining samples");
    let _ = shutdown_tx.send(true);
    let _ = controller.await;
    let _ = reattacher.await;
    for s in sensors {
        let detached = s.lock().map(|mut s| s.detach());
        if let Ok(Err(e)) = detached {
            tracing::warn!(error = %e, "detach failed; the link goes away when nta exits");
        }
    }
    // Detached first, so the final drain takes every captured frame.
    if let Some(c) = capture {
        let summary = tokio::task::spawn_blocking(move || c.stop()).await;
        if let Ok(s) = summary {
            tracing::info!(
                frames = s.frames,
                kernel_dropped = s.kernel_dropped,
                "capture closed"
            );
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "sample consumer stopped with an error");
        }
    }
    let _ = sink.await;
    match server.await {
        Ok(r) => r?,
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
    }
    drop(xsk_maps);
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft open-files limit to the hard one (as Go programs do):
/// a burst of scrapers must not run nta out of file descriptors at the
/// 1024 that many systems set by default.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("could not raise the open-files limit");
            }
        }
    }
}

async fn wait_for_signal() -> Result<(), RunError> {
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
