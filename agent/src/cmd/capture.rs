//! `nta capture`: a tcpdump-style one-shot capture to a file, filtered and
//! copied in the kernel by the same XDP program `nta run` uses.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use agent_common::{capture::MAX_SNAPLEN, config::SamplerConfig};

use crate::{
    kernel::{
        capture::{
            CaptureFilter, FilterError, afxdp,
            consumer::{self, CaptureRing, CaptureSummary, Limits},
        },
        identity::{Identity, IdentityError},
        iface,
        least_privilege::{self, Role},
        privileges,
        sensor::{KernelCapture, ModeChoice, Sensor, SensorError},
    },
    output::{
        capture::{
            CaptureDir, CaptureFilesError, Destination, DirConfig, FileMetrics, Format, Interface,
        },
        export::WallClock,
    },
};

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Interface to capture on (repeat for several). Default: the
    /// interface of the default route.
    #[arg(short, long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,

    /// Write the frames to FILE (replaced if it exists).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub file: PathBuf,

    /// Stop after COUNT frames.
    #[arg(short = 'c', long, value_name = "COUNT")]
    pub count: Option<u64>,

    /// Stop after this long (e.g. 30s, 5m).
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Bytes kept of each frame (the XDP path copies at most 4096; the
    /// file records every frame's original length).
    #[arg(short = 's', long, default_value_t = MAX_SNAPLEN, value_name = "BYTES")]
    pub snaplen: u32,

    /// File format.
    #[arg(short = 'F', long, value_enum, default_value = "pcapng")]
    pub format: Format,

    /// XDP attach mode, as for `nta run`.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: ModeChoice,

    /// Read the frames through AF_XDP sockets (one per receive queue)
    /// instead of the capture ring: for dedicated mirror/SPAN ports, since
    /// captured frames then skip the kernel stack (they are passed on
    /// again if nta stops reading). Zero-copy where the driver can.
    #[arg(long)]
    pub af_xdp: bool,

    /// The interfaces are dedicated mirror/SPAN ports: drop every frame
    /// after counting and copying it (as `nta run --mirror`), so the
    /// kernel stack spends nothing on them. Never on an interface that
    /// carries the server's own traffic.
    #[arg(long)]
    pub mirror: bool,

    /// Once attached, become this user (as tcpdump -Z): NAME,
    /// NAME:GROUP, UID or UID:GID; `root` stays root with no
    /// capabilities. Default: the user `nta` when it exists. The file is
    /// opened before, so its directory need not be the user's.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Kernel ring buffer for captured frames, in MiB (a power of two).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub buffer_mib: u32,

    /// Capture filter, as in tcpdump: e.g. `tcp port 443 and not host
    /// 198.18.0.1`. Words are joined; quote it or not. Supported:
    /// ip ip6 arp tcp udp sctp icmp icmp6 gre, proto N, vlan [ID],
    /// [src|dst] host ADDR | net CIDR | port N | portrange A-B,
    /// and/or/not (&& || !), parentheses.
    #[arg(value_name = "FILTER", trailing_var_arg = true)]
    pub filter: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureCliError {
    #[error("{0}")]
    Privileges(String),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Iface(#[from] iface::IfaceError),
    #[error("interface {iface}")]
    Sensor {
        iface: String,
        source: Box<SensorError>,
    },
    #[error(transparent)]
    Files(#[from] CaptureFilesError),
    #[error("--snaplen must be at least 1")]
    Snaplen,
    #[error("--buffer-mib must be a power of two between 1 and 1024, not {0}")]
    Buffer(u32),
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("capture metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("writing {0}")]
    Write(String),
    #[error(transparent)]
    AfXdp(#[from] afxdp::AfXdpError),
    #[error(transparent)]
    LeastPrivilege(#[from] least_privilege::LeastPrivilegeError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

pub fn run(args: CaptureArgs) -> Result<CaptureSummary, CaptureCliError> {
    let filter = CaptureFilter::compile(&args.filter.join(" "))?;
    if args.snaplen == 0 {
        return Err(CaptureCliError::Snaplen);
    }
    if !args.buffer_mib.is_power_of_two() || args.buffer_mib > 1024 {
        return Err(CaptureCliError::Buffer(args.buffer_mib));
    }
    if args.snaplen > MAX_SNAPLEN {
        tracing::info!(
            "the XDP path copies at most {MAX_SNAPLEN} bytes of each frame; longer frames are cut there (their original length is recorded)"
        );
    }
    let snaplen = args.snaplen.min(MAX_SNAPLEN);
    privileges::check().map_err(CaptureCliError::Privileges)?;
    let identity = Identity::resolve(args.user.as_deref())?;
    let names = iface::resolve_interfaces(&args.ifaces)?;
    let files = CaptureDir::open(
        DirConfig {
            destination: Destination::File(args.file.clone()),
            format: args.format,
            snaplen,
            file_bytes: u64::MAX,
            file_age: None,
            max_total_bytes: 0,
        },
        names
            .iter()
            .map(|n| {
                iface::ifindex(n).map(|ifindex| Interface {
                    ifindex,
                    name: n.clone(),
                })
            })
            .collect::<Result<_, _>>()?,
        FileMetrics::new().map_err(CaptureCliError::Metrics)?,
    )?;

    let mut sensors = Vec::new();
    let mut rings: Vec<Box<dyn consumer::FrameSource>> = Vec::new();
    // Kept open while capturing.
    let mut xsk_maps = Vec::new();
    for name in &names {
        let err = |source| CaptureCliError::Sensor {
            iface: name.clone(),
            source: Box::new(source),
        };
        // Sampling off: this run only captures.
        let sampling = SamplerConfig {
            data_rate: 0,
            control_rate: 0,
            // Capture only: no application metadata (nobody reads it).
            app: 0,
            mirror: u32::from(args.mirror),
            ..SamplerConfig::default()
        };
        let (mut sensor, maps) = Sensor::load_with_capture(
            sampling,
            KernelCapture {
                snaplen,
                filter: filter.table,
                ring_bytes: if args.af_xdp {
                    4096
                } else {
                    args.buffer_mib << 20
                },
                af_xdp: args.af_xdp,
            },
        )
        .map_err(err)?;
        let ifindex = iface::ifindex(name)?;
        if args.af_xdp {
            // Sockets first, then attach: no frame is redirected to a queue
            // without a reader.
            let mut xsks = maps.xsks;
            let heartbeat = Arc::new(std::sync::Mutex::new(maps.heartbeat));
            for queue in 0..afxdp::rx_queues(name) {
                let q = afxdp::AfXdpQueue::bind(
                    name,
                    ifindex,
                    queue,
                    snaplen,
                    &mut xsks,
                    heartbeat.clone(),
                )?;
                tracing::info!(interface = %name, queue, zero_copy = q.zero_copy, "AF_XDP socket bound");
                rings.push(Box::new(q));
            }
            xsk_maps.push(xsks);
        } else {
            rings.push(Box::new(CaptureRing::capture(
                ifindex,
                maps.captures,
                Arc::new(maps.counters),
            )));
        }
        sensor.attach(name, args.xdp_mode).map_err(err)?;
        sensors.push(sensor);
    }
    // Attached and bound: capture needs no capability from here on.
    least_privilege::drop_after_attach(Role::Agent, identity.as_ref())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(CaptureCliError::Signals)?;
    }
    eprintln!(
        "nta: capturing on {} to {}{}",
        names.join(", "),
        args.file.display(),
        if filter.text.trim().is_empty() {
            String::new()
        } else {
            format!(" (filter: {})", filter.text)
        }
    );
    let started = Instant::now();
    let worker = consumer::spawn(
        rings,
        vec![Box::new(files)],
        WallClock::monotonic(),
        Limits { frames: args.count },
        stop.clone(),
    );
    let progress = std::io::stderr().is_terminal();
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if progress {
            eprint!("\r{:.0} s", started.elapsed().as_secs_f64());
            let _ = std::io::stderr().flush();
        }
    }
    let summary = worker.join().unwrap_or_default();
    drop(xsk_maps);
    for mut s in sensors {
        if let Err(e) = s.detach() {
            tracing::warn!(error = %e, "detach failed; the link goes away when nta exits");
        }
    }
    if progress {
        eprintln!();
    }
    eprintln!(
        "nta: {} frames written to {}; {} dropped in the kernel (capture ring or AF_XDP socket full){}",
        summary.frames,
        args.file.display(),
        summary.kernel_dropped,
        if summary.bad_records > 0 {
            format!("; {} malformed records", summary.bad_records)
        } else {
            String::new()
        }
    );
    if let Some(e) = &summary.error {
        return Err(CaptureCliError::Write(e.clone()));
    }
    Ok(summary)
}
