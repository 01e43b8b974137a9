//! `nta run`: attach to interfaces, consume samples, serve metrics, and
//! detach cleanly on SIGINT/SIGTERM.
//!
//! [`run`] reads as its phases: prepare (settings, outputs, listener: all
//! that can fail on bad input, before the kernel is touched), attach,
//! capture, sampling control, the pipeline, reload, serve, and an ordered
//! shutdown.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64},
    },
};

use agent_common::config::SamplerConfig;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::{JoinHandle, JoinSet},
};

use crate::{
    app::flow_names::FlowNameTable,
    app::stats::AppStats,
    config::{
        ConfigError, FileConfig, flags::RunArgs, reload, reload::ReloadMetrics,
        settings::RunSettings,
    },
    kernel::capture::{
        afxdp,
        afxdp::{AfXdpError, AfXdpMetrics},
        consumer,
        consumer::{CaptureRing, FrameSource},
    },
    kernel::{
        adaptive,
        adaptive::{Controlled, RateController, SamplingMetrics},
        events,
        events::{PipelineStats, SampleBatch},
        identity::{Identity, IdentityError},
        iface, least_privilege,
        least_privilege::Role,
        privileges, reattach,
        sensor::{AttachMode, CountersReader, KernelCapture, Sensor, SensorError},
    },
    output::capture::{
        Interface, live,
        live::{FlightLink, LiveCaptureError},
    },
    output::{
        alert::{AlertError, AlertMetrics, AlertSink, Alerts},
        export,
        export::{ExportError, FlowExporter, WallClock},
        metadata::{MetadataLogError, MetadataLogs},
        open::{open_alert_sinks, open_flow_exporters},
    },
    pipeline::detect::Finding,
    pipeline::flow::Directions,
    pipeline::{
        Pipeline,
        alerting::{DetectMetrics, DetectionStage},
        live::{FlowMetrics, FlowStage, StageReload},
        metadata::{AppSink, MetadataStage},
    },
    serve::{
        app_metrics::AppCollector,
        health::Health,
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
    #[error(transparent)]
    LeastPrivilege(#[from] least_privilege::LeastPrivilegeError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Reattach(#[from] reattach::ReattachError),
    #[error("--dns-port / [app] dns_ports: {0}")]
    AppPorts(String),
    #[error(transparent)]
    MetadataLog(#[from] MetadataLogError),
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    raise_fd_limit();
    let mut start = Prepared::prepare(args).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (samples_tx, samples_rx) = events::queue();
    let mut kernel = attach(&start, samples_tx, &shutdown_rx)?;
    let metrics = Arc::new(Metrics::new(SensorCollector::new(
        kernel
            .interfaces
            .iter()
            .map(Attached::metrics_source)
            .collect(),
    )?)?);
    let (capture, flight) = start_capture(&start, &mut kernel, &metrics)?;
    let metadata = start_metadata(&mut start, &mut kernel, &metrics)?;
    // Loaded, attached, sockets bound: from here on nta needs no
    // capability in any thread; the helper that re-attaches keeps
    // CAP_NET_ADMIN (started first, so it has it to keep).
    let helper = start_reattach_helper(&start, &kernel)?;
    least_privilege::drop_after_attach(Role::Agent, start.identity.as_ref())?;
    let (sampling_tx, sampling_rx) = mpsc::channel(4);
    let controller = tokio::spawn(adaptive::run(
        kernel
            .interfaces
            .iter()
            .map(|i| i.controlled(start.sampler, start.settings.sampling.budget))
            .collect(),
        SamplingMetrics::register(metrics.registry()).map_err(MetricsError::from)?,
        sampling_rx,
        shutdown_rx.clone(),
    ));
    let reattacher = tokio::spawn(reattach::run(
        kernel.interfaces.iter().map(Attached::watched).collect(),
        helper,
        shutdown_rx.clone(),
    ));
    let (stage_tx, stage_rx) = mpsc::channel(4);
    let listen = start.settings.listen;
    let Prepared {
        args,
        settings,
        config_hash,
        web,
        outputs,
        listener,
        ..
    } = start;
    let alert_metrics = outputs.alert_metrics.clone();
    let (pipeline, heartbeat) = start_pipeline(
        &settings, &kernel, outputs, flight, &metrics, samples_rx, stage_rx,
    )?;
    let health = Health::new(
        kernel
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.attached.clone()))
            .collect(),
        heartbeat,
    );
    tokio::spawn(reload::watch_sighup(
        reload::Reload {
            path: args.config.clone(),
            hash: config_hash.clone(),
            ifindexes: kernel.interfaces.iter().map(|i| i.ifindex).collect(),
            sensors: kernel.interfaces.iter().map(|i| i.sensor.clone()).collect(),
            args,
            in_force: settings,
            alert_metrics,
            to_stage: stage_tx,
            to_sampling: sampling_tx,
            web: web.clone(),
            metrics: ReloadMetrics::register(metrics.registry(), &config_hash)
                .map_err(MetricsError::from)?,
        },
        shutdown_rx.clone(),
    ));
    let server = serve(
        listen,
        listener,
        metrics,
        web,
        health.clone(),
        shutdown_rx.clone(),
    )?;
    // Attached, pipeline running, listener serving: tell systemd.
    let systemd = tokio::spawn(crate::serve::health::notify_systemd(
        health,
        export::monotonic_now_ns,
        shutdown_rx.clone(),
    ));

    wait_for_signal().await?;
    tracing::info!("stopping: detaching XDP and draining samples");
    let _ = shutdown_tx.send(true);
    let _ = systemd.await;
    let _ = controller.await;
    let _ = reattacher.await;
    kernel.detach();
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
    if let Some(m) = metadata {
        let _ = tokio::task::spawn_blocking(move || m.stop()).await;
    }
    while let Some(r) = kernel.consumers.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "sample consumer stopped with an error");
        }
    }
    let _ = pipeline.await;
    match tokio::task::spawn_blocking(move || server.join()).await {
        Ok(Ok(r)) => r?,
        _ => tracing::warn!("HTTP server thread failed"),
    }
    drop(kernel);
    tracing::info!("stopped");
    Ok(())
}

/// What `nta run` has before it touches the kernel: everything that can
/// fail on bad input (settings, outputs, the listener), checked first.
struct Prepared {
    args: RunArgs,
    settings: RunSettings,
    config_hash: String,
    ifaces: Vec<(String, u32)>,
    sampler: SamplerConfig,
    kernel_capture: KernelCapture,
    web: SharedWebConfig,
    outputs: Outputs,
    listener: server::Listeners,
    /// Who nta becomes once attached (None: it stays who it is).
    identity: Option<Identity>,
    /// `--tls-log`, `--dns-log`, opened before the kernel is touched.
    metadata_logs: MetadataLogs,
}

/// The flow exporters and alert sinks, opened before the kernel is touched.
struct Outputs {
    exporters: Vec<Box<dyn FlowExporter>>,
    alert_sinks: Vec<Box<dyn AlertSink>>,
    alert_metrics: AlertMetrics,
    /// Names the application step gives flow records (filled by the
    /// metadata thread, read by the flow export).
    flow_names: Arc<FlowNameTable>,
    /// Findings of the DNS and TLS detectors, from the metadata thread to
    /// the incident machinery of the pipeline task.
    payload_findings: mpsc::Sender<Vec<Finding>>,
    payload_findings_rx: mpsc::Receiver<Vec<Finding>>,
}

impl Prepared {
    async fn prepare(args: RunArgs) -> Result<Prepared, RunError> {
        let (file_config, config_hash) = match &args.config {
            Some(path) => FileConfig::load_with_hash(path)?,
            None => (FileConfig::default(), String::new()),
        };
        let settings = RunSettings::resolve(&args, &file_config);
        let names = iface::resolve_interfaces(&settings.interfaces)?;
        privileges::check().map_err(RunError::Privileges)?;
        let identity = Identity::resolve(settings.user.as_deref())?;
        if let Some(id) = &identity {
            id.own_what_is_written();
            for (what, dir) in written_dirs(&settings) {
                id.check_writable(what, &dir)?;
            }
        }
        let ifaces = names
            .into_iter()
            .map(|name| iface::ifindex(&name).map(|i| (name, i)))
            .collect::<Result<Vec<_>, _>>()?;
        let ifindexes: Vec<u32> = ifaces.iter().map(|(_, i)| *i).collect();
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
        let listener = server::Listeners {
            main: server::bind(settings.listen).await?,
            health: match settings.health_listen {
                Some(addr) => Some(server::bind(addr).await?),
                None => None,
            },
        };
        let (app, dns_ports) = settings.app.kernel().map_err(RunError::AppPorts)?;
        let (payload_findings, payload_findings_rx) = mpsc::channel(PAYLOAD_FINDINGS_QUEUE);
        let metadata_logs = MetadataLogs::open(
            settings.app.tls_log.as_deref(),
            settings.app.dns_log.as_deref(),
            settings.outputs.flows.rotation,
        )?;
        let sampler = settings.sampling.applied_to(SamplerConfig {
            mirror: u32::from(settings.mirror),
            app,
            dns_ports,
            ..SamplerConfig::default()
        });
        Ok(Prepared {
            args,
            settings,
            config_hash,
            ifaces,
            sampler,
            kernel_capture,
            web,
            outputs: Outputs {
                exporters,
                alert_sinks,
                alert_metrics,
                flow_names: Arc::default(),
                payload_findings,
                payload_findings_rx,
            },
            listener,
            identity,
            metadata_logs,
        })
    }
}

/// The directories nta creates files in while it runs (rotation, atomic
/// saves), with the option that names each. Capture directories are
/// checked where they are opened (they must belong to nta's user).
fn written_dirs(settings: &RunSettings) -> Vec<(&'static str, std::path::PathBuf)> {
    let dir = |file: &std::path::Path| match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut dirs: Vec<(&'static str, std::path::PathBuf)> = settings
        .outputs
        .flows
        .files
        .iter()
        .map(|f| ("--flows", dir(f)))
        .collect();
    dirs.extend(settings.app.tls_log.iter().map(|f| ("--tls-log", dir(f))));
    dirs.extend(settings.app.dns_log.iter().map(|f| ("--dns-log", dir(f))));
    // Alert files and learned profiles are written only with detection.
    if !settings.detect_on {
        return dirs;
    }
    dirs.extend(
        settings
            .outputs
            .alerts
            .sinks
            .iter()
            .filter_map(|s| s.written_file())
            .map(|f| ("--alerts", dir(f))),
    );
    let baseline = &settings.detect.baseline;
    if let (true, Some(state)) = (baseline.enabled, &baseline.state_file) {
        dirs.push(("[detect.baseline] state_file", dir(state)));
    }
    dirs
}

/// Starts the re-attach helper (`--reattach`) with every interface's
/// program, before nta drops its capabilities.
fn start_reattach_helper(
    start: &Prepared,
    kernel: &Kernel,
) -> Result<Option<reattach::Helper>, RunError> {
    if !start.settings.reattach {
        return Ok(None);
    }
    let sensors: Vec<_> = kernel
        .interfaces
        .iter()
        .map(|i| i.sensor.lock().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let mut programs = Vec::with_capacity(sensors.len());
    for (sensor, i) in sensors.iter().zip(&kernel.interfaces) {
        let fd = sensor.program_fd().map_err(|e| RunError::Sensor {
            iface: i.name.clone(),
            source: Box::new(e),
        })?;
        programs.push((i.name.clone(), i.ifindex, fd));
    }
    let helper =
        reattach::Helper::spawn(&programs, start.settings.xdp_mode, start.identity.as_ref())?;
    Ok(Some(helper))
}

/// One watched interface with its program attached: the one handle the
/// metrics, sampling control, re-attach and reload take their views from.
struct Attached {
    name: String,
    ifindex: u32,
    mode: AttachMode,
    sensor: Arc<Mutex<Sensor>>,
    counters: Arc<CountersReader>,
    stats: Arc<PipelineStats>,
    /// False while the interface is gone (deleted, not yet recreated).
    attached: Arc<AtomicBool>,
}

impl Attached {
    fn metrics_source(&self) -> InterfaceSource {
        InterfaceSource {
            name: self.name.clone(),
            mode: self.mode,
            attached: self.attached.clone(),
            counters: self.counters.clone(),
            pipeline: self.stats.clone(),
        }
    }

    fn controlled(&self, sampler: SamplerConfig, budget: u64) -> Controlled {
        Controlled {
            name: self.name.clone(),
            sensor: self.sensor.clone(),
            counters: self.counters.clone(),
            pipeline: self.stats.clone(),
            controller: RateController::new(sampler, budget),
        }
    }

    fn watched(&self) -> reattach::Watched {
        reattach::Watched {
            name: self.name.clone(),
            ifindex: self.ifindex,
            sensor: self.sensor.clone(),
            attached: self.attached.clone(),
        }
    }
}

/// The kernel side while nta runs: the attached interfaces, their ring
/// consumers, and the capture sources until capture starts.
struct Kernel {
    interfaces: Vec<Attached>,
    consumers: JoinSet<Result<(), events::EventsError>>,
    capture_sources: Vec<Box<dyn FrameSource>>,
    /// Each interface's app ring (application metadata on).
    app_sources: Vec<Box<dyn FrameSource>>,
    afxdp_metrics: Option<AfXdpMetrics>,
    /// Kept open while nta runs.
    xsk_maps: Vec<aya::maps::XskMap<aya::maps::MapData>>,
}

impl Kernel {
    /// Detaches every program (a killed nta detaches through its links).
    fn detach(&self) {
        for i in &self.interfaces {
            let detached = i.sensor.lock().map(|mut s| s.detach());
            if let Ok(Err(e)) = detached {
                tracing::warn!(interface = %i.name, error = %e, "detach failed; the link goes away when nta exits");
            }
        }
    }
}

/// Loads and attaches the program on every interface, binding AF_XDP
/// sockets first when capture asks for them, and starts one ring consumer
/// per interface feeding `samples`.
fn attach(
    start: &Prepared,
    samples: mpsc::Sender<SampleBatch>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Kernel, RunError> {
    let mut kernel = Kernel {
        interfaces: Vec::new(),
        consumers: JoinSet::new(),
        capture_sources: Vec::new(),
        app_sources: Vec::new(),
        afxdp_metrics: None,
        xsk_maps: Vec::new(),
    };
    let (config, capture, mode_choice) =
        (start.sampler, start.kernel_capture, start.settings.xdp_mode);
    for (name, ifindex) in &start.ifaces {
        let ifindex = *ifindex;
        let err = |source| RunError::Sensor {
            iface: name.clone(),
            source: Box::new(source),
        };
        let (mut sensor, maps) = Sensor::load_with_capture(config, capture).map_err(err)?;
        let counters = Arc::new(maps.counters);
        if capture.af_xdp {
            // Sockets before the attach: no frame goes to a queue without
            // a reader.
            let metrics = kernel
                .afxdp_metrics
                .get_or_insert_with(AfXdpMetrics::new_unregistered);
            let mut xsks = maps.xsks;
            let heartbeat = Arc::new(Mutex::new(maps.heartbeat));
            for queue in 0..afxdp::rx_queues(name) {
                let q = afxdp::AfXdpQueue::bind(
                    name,
                    ifindex,
                    queue,
                    capture.snaplen,
                    &mut xsks,
                    heartbeat.clone(),
                )?
                .with_metrics(metrics.clone(), name);
                tracing::info!(interface = %name, queue, zero_copy = q.zero_copy, "AF_XDP socket bound");
                kernel.capture_sources.push(Box::new(q));
            }
            kernel.xsk_maps.push(xsks);
        } else {
            kernel.capture_sources.push(Box::new(CaptureRing::capture(
                ifindex,
                maps.captures,
                counters.clone(),
            )));
        }
        if config.app != 0 {
            kernel.app_sources.push(Box::new(CaptureRing::app(
                ifindex,
                maps.app_frames,
                counters.clone(),
            )));
        }
        let mode = sensor.attach(name, mode_choice).map_err(err)?;
        tracing::info!(interface = %name, mode = %mode, sample_rate = config.data_rate, control_sample_rate = config.control_rate, mirror = start.settings.mirror, "XDP sensor attached");
        let stats = Arc::new(PipelineStats::default());
        kernel.consumers.spawn(events::consume_ring(
            maps.samples,
            Arc::from(name.as_str()),
            samples.clone(),
            stats.clone(),
            shutdown.clone(),
        ));
        kernel.interfaces.push(Attached {
            name: name.clone(),
            ifindex,
            mode,
            sensor: Arc::new(Mutex::new(sensor)),
            counters,
            stats,
            attached: Arc::new(AtomicBool::new(true)),
        });
    }
    Ok(kernel)
}

/// The capture files and flight recorder, opened before samples flow: a
/// bad directory stops the start here (the links detach when the sensors
/// drop). Returns the running capture and the flight recorder's request
/// channel with its directory.
fn start_capture(
    start: &Prepared,
    kernel: &mut Kernel,
    metrics: &Metrics,
) -> Result<(Option<live::Running>, Option<FlightLink>), RunError> {
    let Some(c) = &start.settings.capture else {
        return Ok((None, None));
    };
    let interfaces = kernel
        .interfaces
        .iter()
        .map(|i| Interface {
            ifindex: i.ifindex,
            name: i.name.clone(),
        })
        .collect();
    let mut prepared = live::prepare(c, interfaces, metrics.registry())?;
    tracing::info!(dir = ?c.dir, flight_recorder = ?c.flight.as_ref().map(|f| &f.dir), filter = %c.filter, snaplen = c.snaplen, "capturing");
    let flight = prepared.flight.take();
    if let Some(m) = &kernel.afxdp_metrics {
        m.register_in(metrics.registry())
            .map_err(MetricsError::from)?;
    }
    let running = prepared.start(std::mem::take(&mut kernel.capture_sources));
    Ok((Some(running), flight))
}

/// Batches of DNS and TLS findings waiting for the pipeline task; past it
/// they are dropped and counted (they are few: one per incident start or
/// update at most).
const PAYLOAD_FINDINGS_QUEUE: usize = 256;

/// The application-metadata thread: the app rings into the parsers and
/// the TLS log. None with `--app-metadata=false`.
fn start_metadata(
    start: &mut Prepared,
    kernel: &mut Kernel,
    metrics: &Metrics,
) -> Result<Option<MetadataThread>, RunError> {
    if kernel.app_sources.is_empty() {
        return Ok(None);
    }
    let stats = Arc::new(AppStats::default());
    metrics
        .registry()
        .register(Box::new(
            AppCollector::new(stats.clone()).map_err(MetricsError::from)?,
        ))
        .map_err(MetricsError::from)?;
    let names = kernel
        .interfaces
        .iter()
        .map(|i| (i.ifindex, i.name.clone()))
        .collect();
    let mut stage = MetadataStage::new(
        stats,
        std::mem::take(&mut start.metadata_logs),
        Some(start.outputs.flow_names.clone()),
        Directions::from_groups(&start.settings.detect.host_groups),
    );
    if start.settings.detect_on {
        stage = stage.with_detection(&start.settings.detect);
    }
    let sink = AppSink::new(stage, names).with_findings_to(start.outputs.payload_findings.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let handle = consumer::spawn(
        std::mem::take(&mut kernel.app_sources),
        vec![Box::new(sink)],
        WallClock::monotonic(),
        consumer::Limits::default(),
        stop.clone(),
    );
    Ok(Some(MetadataThread { stop, handle }))
}

/// The running metadata thread.
struct MetadataThread {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<consumer::CaptureSummary>,
}

impl MetadataThread {
    /// Drains the app rings, writes what is pending; blocks.
    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(s) = self.handle.join()
            && s.bad_records + s.kernel_dropped > 0
        {
            tracing::warn!(
                bad_records = s.bad_records,
                ring_dropped = s.kernel_dropped,
                "application metadata lost frames"
            );
        }
    }
}

/// The sample stage: the pipeline core over the sample queue, the flow
/// exporters, and, with detection on, alert delivery (and the flight
/// recorder's incident requests).
fn start_pipeline(
    settings: &RunSettings,
    kernel: &Kernel,
    outputs: Outputs,
    flight: Option<FlightLink>,
    metrics: &Metrics,
    samples: mpsc::Receiver<SampleBatch>,
    reloads: mpsc::Receiver<StageReload>,
) -> Result<(JoinHandle<()>, Arc<AtomicU64>), RunError> {
    let heartbeat = Arc::new(AtomicU64::new(0));
    let stage = FlowStage {
        pipeline: Pipeline::new(
            settings.flow_table,
            settings.detect_on.then(|| settings.detect.clone()),
        ),
        exporters: outputs.exporters,
        clock: WallClock::monotonic(),
        interfaces: kernel
            .interfaces
            .iter()
            .map(|i| (i.ifindex, i.name.clone()))
            .collect::<HashMap<_, _>>(),
        names: outputs.flow_names.clone(),
        directions: Directions::from_groups(&settings.detect.host_groups),
        payload_findings: outputs.payload_findings_rx,
        metrics: FlowMetrics::register(metrics.registry()).map_err(RunError::FlowMetrics)?,
        heartbeat: heartbeat.clone(),
    };
    let detection = if settings.detect_on {
        outputs
            .alert_metrics
            .register_in(metrics.registry())
            .map_err(MetricsError::from)?;
        let alerts = Alerts::spawn(
            outputs.alert_sinks,
            WallClock::monotonic(),
            settings.detect.group_names(),
            outputs.alert_metrics,
        );
        let mut stage = DetectionStage::new(
            alerts,
            DetectMetrics::register(metrics.registry()).map_err(MetricsError::from)?,
        );
        let b = &settings.detect.baseline;
        if let (true, Some(path)) = (b.enabled, &b.state_file) {
            let store_metrics =
                crate::pipeline::profile_store::StoreMetrics::register(metrics.registry())
                    .map_err(MetricsError::from)?;
            stage = stage.with_profile_store(crate::pipeline::profile_store::ProfileStore::new(
                path.clone(),
                b.save_interval,
                store_metrics,
            ));
        }
        Some(match flight {
            Some((requests, dir)) => {
                stage.with_flight_recorder(requests, dir, WallClock::monotonic())
            }
            None => stage,
        })
    } else {
        None
    };
    let task = tokio::spawn(crate::pipeline::live::run(
        samples,
        stage,
        detection,
        reloads,
        export::monotonic_now_ns,
    ));
    Ok((task, heartbeat))
}

/// Serves /metrics and /healthz until `shutdown` turns true, on a thread
/// and runtime of its own: TLS handshakes, bcrypt and renders never take
/// the pipeline's workers, however many clients come.
fn serve(
    listen: std::net::SocketAddr,
    listeners: server::Listeners,
    metrics: Arc<Metrics>,
    web: SharedWebConfig,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<Result<(), ServerError>>, RunError> {
    let bind_error = move |source| ServerError::Bind {
        addr: listen,
        source,
    };
    let addr = listeners.main.local_addr().map_err(bind_error)?;
    let tls = web.read().map(|w| w.tls.is_some()).unwrap_or(false);
    let scheme = if tls { "https" } else { "http" };
    tracing::info!("metrics at {scheme}://{addr}/metrics, health at {scheme}://{addr}/healthz");
    if let Some(Ok(h)) = listeners.health.as_ref().map(TcpListener::local_addr) {
        tracing::info!("plain health for probes at http://{h}/healthz and /readyz");
    }
    // The listeners move to the server's own runtime.
    let main = listeners.main.into_std().map_err(bind_error)?;
    let health_listener = listeners
        .health
        .map(TcpListener::into_std)
        .transpose()
        .map_err(bind_error)?;
    std::thread::Builder::new()
        .name("nta-http".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(server::MAX_RENDERS + crate::serve::throttle::BCRYPT_AT_ONCE)
                .build()
                .map_err(bind_error)?;
            runtime.block_on(async move {
                let listeners = server::Listeners {
                    main: TcpListener::from_std(main).map_err(bind_error)?,
                    health: health_listener
                        .map(TcpListener::from_std)
                        .transpose()
                        .map_err(bind_error)?,
                };
                server::serve(listeners, metrics, web, health, async move {
                    let _ = shutdown.changed().await;
                })
                .await
            })
        })
        .map_err(|source| RunError::from(bind_error(source)))
}

/// Raises the soft open-files limit to what nta can use, no further: the
/// HTTP server holds at most `MAX_CONNECTIONS` sockets (it accepts only
/// with a free slot), and the rest (maps, rings, AF_XDP sockets, output
/// files, the webhook) is set by the config, far below the headroom
/// here. Raising it to the hard limit (as Go programs do) would only let
/// a leak or a flood take more of the system before it shows.
fn raise_fd_limit() {
    const WANTED: libc::rlim_t = (server::MAX_CONNECTIONS as libc::rlim_t) * 2 + 1024;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < WANTED {
            lim.rlim_cur = lim.rlim_max.min(WANTED);
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
