//! Loads the XDP program, configures it and attaches it to an interface.
//!
//! One [`Sensor`] per interface: each has its own maps, so counters are per
//! interface with no per-packet lookup of the ingress device.

use std::fmt;

use agent_common::{
    capture::CaptureConfig,
    config::SamplerConfig,
    counters::{Counters, CpuState},
    filter::FilterTable,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapError, PerCpuArray, RingBuf, XskMap},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};

use crate::kernel::{iface, objects};

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "this nta was built with AYA_BUILD_SKIP=1 and holds no XDP program; rebuild without it (`cargo xtask setup` installs the eBPF toolchain)"
    )]
    Placeholder,
    #[error("loading the XDP object")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the XDP program {0:?} is missing from the object")]
    MissingProgram(&'static str),
    #[error("the map {0} is missing from the XDP object")]
    MissingMap(&'static str),
    #[error("map {name}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("verifying/loading the XDP program")]
    Program(#[source] ProgramError),
    #[error(transparent)]
    Iface(#[from] iface::IfaceError),
    #[error("{mode} XDP is not supported by the driver of {iface}; try --xdp-mode skb (or auto)")]
    ModeUnsupported { iface: String, mode: AttachMode },
    #[error(
        "the MTU of {iface} ({mtu}) is too large for XDP on its driver; lower it (`ip link set {iface} mtu 1500`) or use --xdp-mode skb"
    )]
    MtuTooLarge { iface: String, mtu: u32 },
    #[error(
        "permission denied attaching XDP to {iface}: nta needs CAP_NET_ADMIN and CAP_BPF (run as root)"
    )]
    Permission { iface: String },
    #[error(
        "another XDP program is already attached to {iface} in {mode} mode; detach it first (`ip link set {iface} xdp off`)"
    )]
    Busy { iface: String, mode: AttachMode },
    #[error("attaching XDP to {iface} in {mode} mode")]
    Attach {
        iface: String,
        mode: AttachMode,
        source: ProgramError,
    },
    #[error("detaching XDP")]
    Detach(#[source] ProgramError),
}

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeChoice {
    /// Native (driver) mode, falling back to generic (skb) mode.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic mode: works on every interface, about 3x slower.
    Skb,
}

impl ModeChoice {
    /// The modes this choice tries, in order.
    pub fn modes(self) -> &'static [AttachMode] {
        match self {
            ModeChoice::Auto => &[AttachMode::Native, AttachMode::Skb],
            ModeChoice::Native => &[AttachMode::Native],
            ModeChoice::Skb => &[AttachMode::Skb],
        }
    }
}

/// The mode an attachment actually has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Skb,
}

impl AttachMode {
    pub fn label(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }

    /// The mode a [`label`](Self::label) names.
    pub fn from_label(label: &str) -> Option<AttachMode> {
        [AttachMode::Native, AttachMode::Skb]
            .into_iter()
            .find(|m| m.label() == label)
    }

    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Reads the per-CPU counters and sums them.
pub struct CountersReader {
    map: PerCpuArray<MapData, CpuState>,
}

impl CountersReader {
    pub fn read(&self) -> Result<Counters, MapError> {
        let mut total = Counters::default();
        for cpu in self.map.get(&0, 0)?.iter() {
            total.accumulate(&cpu.counters);
        }
        Ok(total)
    }
}

/// Salt of [`Sensor`]'s flow key, so it is not any other use's random.
const FLOW_KEY_SALT: u64 = 0x6e74_615f_666c_6f77;

/// A loaded (and possibly attached) sensor program with its maps.
pub struct Sensor {
    ebpf: Ebpf,
    config: Array<MapData, SamplerConfig>,
    capture_config: Array<MapData, CaptureConfig>,
    filters: Array<MapData, FilterTable>,
    attachment: Option<(String, AttachMode, XdpLinkId)>,
    /// Key of the program's flow hash, random per sensor, stamped into
    /// every sampling config written (callers never see it).
    flow_key: u64,
}

/// The maps a sensor hands to the rest of the agent.
pub struct SensorMaps {
    pub counters: CountersReader,
    pub samples: RingBuf<MapData>,
    pub captures: RingBuf<MapData>,
    /// Frames selected for application metadata (capture record layout,
    /// `kind` set).
    pub app_frames: RingBuf<MapData>,
    /// AF_XDP sockets by receive queue.
    pub xsks: XskMap<MapData>,
    /// The AF_XDP reader's heartbeat (monotonic ns).
    pub heartbeat: Array<MapData, u64>,
}

/// Capture in the kernel: snaplen (0: off), the compiled filter and the
/// capture ring buffer's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelCapture {
    pub snaplen: u32,
    pub filter: FilterTable,
    pub ring_bytes: u32,
    /// Matching frames go to AF_XDP sockets (see [`SensorMaps::xsks`])
    /// instead of the capture ring.
    pub af_xdp: bool,
}

impl Default for KernelCapture {
    fn default() -> Self {
        KernelCapture {
            snaplen: 0,
            filter: FilterTable::default(),
            // One page: capture off costs no memory.
            ring_bytes: 4096,
            af_xdp: false,
        }
    }
}

impl Sensor {
    /// Loads and verifies the program with `config`; not yet attached.
    pub fn load(config: SamplerConfig) -> Result<(Sensor, SensorMaps), SensorError> {
        Self::load_with_capture(config, KernelCapture::default())
    }

    pub fn load_with_capture(
        config: SamplerConfig,
        capture: KernelCapture,
    ) -> Result<(Sensor, SensorMaps), SensorError> {
        if objects::is_placeholder() {
            return Err(SensorError::Placeholder);
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("CAPTURES", capture.ring_bytes)
            .load(objects::NTA_XDP)
            .map_err(|e| SensorError::Load(Box::new(e)))?;
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(SensorError::MissingMap(name))
        };
        let map_err = |name| move |source| SensorError::Map { name, source };
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?).map_err(map_err("COUNTERS"))?;
        let samples = RingBuf::try_from(take(&mut ebpf, "SAMPLES")?).map_err(map_err("SAMPLES"))?;
        let config_map: Array<MapData, SamplerConfig> =
            Array::try_from(take(&mut ebpf, "CONFIG")?).map_err(map_err("CONFIG"))?;
        let captures =
            RingBuf::try_from(take(&mut ebpf, "CAPTURES")?).map_err(map_err("CAPTURES"))?;
        let capture_config = Array::try_from(take(&mut ebpf, "CAPTURE_CONFIG")?)
            .map_err(map_err("CAPTURE_CONFIG"))?;
        let filters = Array::try_from(take(&mut ebpf, "FILTERS")?).map_err(map_err("FILTERS"))?;
        let app_frames =
            RingBuf::try_from(take(&mut ebpf, "APP_FRAMES")?).map_err(map_err("APP_FRAMES"))?;
        let xsks = XskMap::try_from(take(&mut ebpf, "XSKS")?).map_err(map_err("XSKS"))?;
        let heartbeat =
            Array::try_from(take(&mut ebpf, "XSK_HEARTBEAT")?).map_err(map_err("XSK_HEARTBEAT"))?;
        let mut sensor = Sensor {
            ebpf,
            config: config_map,
            capture_config,
            filters,
            attachment: None,
            flow_key: crate::pipeline::keyed::process_random(FLOW_KEY_SALT),
        };
        sensor.set_sampling(config)?;
        sensor
            .capture_config
            .set(
                0,
                CaptureConfig {
                    af_xdp: u32::from(capture.af_xdp),
                    ..CaptureConfig::default()
                },
                0,
            )
            .map_err(map_err("CAPTURE_CONFIG"))?;
        sensor.set_capture(capture.snaplen, &capture.filter)?;
        sensor.program_mut()?.load().map_err(SensorError::Program)?;
        Ok((
            sensor,
            SensorMaps {
                counters: CountersReader { map: counters },
                samples,
                captures,
                app_frames,
                xsks,
                heartbeat,
            },
        ))
    }

    /// The XDP program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program(&self) -> Result<&Xdp, SensorError> {
        let p = self
            .ebpf
            .program(objects::NTA_PROGRAM)
            .ok_or(SensorError::MissingProgram(objects::NTA_PROGRAM))?;
        p.try_into().map_err(SensorError::Program)
    }

    /// The loaded program's descriptor, for the re-attach helper.
    pub fn program_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, SensorError> {
        use std::os::fd::AsFd;
        Ok(self.program()?.fd().map_err(SensorError::Program)?.as_fd())
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, SensorError> {
        let p = self
            .ebpf
            .program_mut(objects::NTA_PROGRAM)
            .ok_or(SensorError::MissingProgram(objects::NTA_PROGRAM))?;
        p.try_into().map_err(SensorError::Program)
    }

    /// Changes sampling at run time; takes effect on the next packet.
    pub fn set_sampling(&mut self, config: SamplerConfig) -> Result<(), SensorError> {
        let config = SamplerConfig {
            flow_key: self.flow_key,
            ..config
        };
        self.config
            .set(0, config, 0)
            .map_err(|source| SensorError::Map {
                name: "CONFIG",
                source,
            })
    }

    /// Attaches through a bpf_link (so a killed agent leaves nothing behind)
    /// and returns the mode in force.
    /// Puts a capture filter and snaplen in force without reattaching:
    /// the filter goes into the slot not in use, then the config flips to
    /// it, so the program never reads a half-written table.
    pub fn set_capture(&mut self, snaplen: u32, filter: &FilterTable) -> Result<(), SensorError> {
        let err = |name| move |source| SensorError::Map { name, source };
        let current = self
            .capture_config
            .get(&0, 0)
            .map_err(err("CAPTURE_CONFIG"))?;
        let slot = (current.filter_slot & 1) ^ 1;
        self.filters.set(slot, *filter, 0).map_err(err("FILTERS"))?;
        self.capture_config
            .set(
                0,
                CaptureConfig {
                    snaplen,
                    filter_slot: slot,
                    af_xdp: current.af_xdp,
                    _pad: 0,
                },
                0,
            )
            .map_err(err("CAPTURE_CONFIG"))
    }

    pub fn attach(
        &mut self,
        iface_name: &str,
        choice: ModeChoice,
    ) -> Result<AttachMode, SensorError> {
        // A clear error for a missing interface.
        iface::ifindex(iface_name)?;
        let modes = choice.modes();
        let mut last = None;
        for &mode in modes {
            match self.program_mut()?.attach(iface_name, mode.xdp_mode()) {
                Ok(link) => {
                    self.attachment = Some((iface_name.to_string(), mode, link));
                    return Ok(mode);
                }
                Err(e) => {
                    let err = classify_attach_error(iface_name, mode, e);
                    if modes.len() > 1 {
                        tracing::warn!(interface = iface_name, mode = %mode, error = %err, "XDP attach failed, trying the next mode");
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(SensorError::ModeUnsupported {
            iface: iface_name.to_string(),
            mode: AttachMode::Native,
        }))
    }

    /// Forgets a link whose interface is gone (its link died with it).
    pub fn forget_attachment(&mut self) {
        if let Some((_, _, link)) = self.attachment.take()
            && let Ok(p) = self.program_mut()
        {
            // The interface is gone: detaching its dead link may fail.
            let _ = p.detach(link);
        }
    }

    /// Detaches now (dropping the sensor also detaches).
    pub fn detach(&mut self) -> Result<(), SensorError> {
        if let Some((_, _, link)) = self.attachment.take() {
            self.program_mut()?
                .detach(link)
                .map_err(SensorError::Detach)?;
        }
        Ok(())
    }
}

fn os_error(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::XdpError(aya::programs::xdp::XdpError::NetlinkError(n)) => n.raw_os_error(),
        _ => None,
    }
}

/// Largest MTU a non-multi-buffer XDP driver accepts (a page minus headroom).
const XDP_SINGLE_BUFFER_MTU: u32 = 3498;

fn classify_attach_error(iface: &str, mode: AttachMode, e: ProgramError) -> SensorError {
    let iface_s = iface.to_string();
    match os_error(&e) {
        Some(libc::EPERM) | Some(libc::EACCES) => SensorError::Permission { iface: iface_s },
        Some(libc::EBUSY) | Some(libc::EEXIST) => SensorError::Busy {
            iface: iface_s,
            mode,
        },
        Some(libc::EOPNOTSUPP) if mode == AttachMode::Native => SensorError::ModeUnsupported {
            iface: iface_s,
            mode,
        },
        Some(libc::EINVAL) | Some(libc::ERANGE) => match iface::mtu(iface) {
            Some(mtu) if mtu > XDP_SINGLE_BUFFER_MTU && mode == AttachMode::Native => {
                SensorError::MtuTooLarge {
                    iface: iface_s,
                    mtu,
                }
            }
            _ if mode == AttachMode::Native => SensorError::ModeUnsupported {
                iface: iface_s,
                mode,
            },
            _ => SensorError::Attach {
                iface: iface_s,
                mode,
                source: e,
            },
        },
        _ => SensorError::Attach {
            iface: iface_s,
            mode,
            source: e,
        },
    }
}
