//! The lab traffic generator: an XDP program run through
//! BPF_PROG_TEST_RUN with live frames (`XDP_TX` on the sending veth end),
//! the fastest way to make packets measured on these machines. A kernel
//! that refuses live frames (EPERM) gets the same frames through an
//! AF_PACKET socket instead ([`crate::packet_socket`]), said once on
//! stderr: slower, but the tests' traffic still flows.
//!
//! Everything here must run on a thread inside the sending namespace
//! (`nta_lab::netns::run_in_netns`): the test run transmits on the device
//! whose index is in the context, looked up in the caller's namespace.

use std::time::{Duration, Instant};

use agent_common::generator::{GenConfig, GenTemplate, TEMPLATE_HEAD};
use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use nta::kernel::{iface, objects};

use crate::{
    mixes::{MixName, templates},
    packet_socket::PacketSocket,
};

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("loading the generator program")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the bench object lacks {0}")]
    Missing(&'static str),
    #[error("generator program")]
    Program(#[source] aya::programs::ProgramError),
    #[error("generator config map")]
    Map(#[source] aya::maps::MapError),
    #[error(transparent)]
    Iface(#[from] iface::IfaceError),
    #[error("pinning the generator to CPU {cpu}")]
    Pin { cpu: usize, source: std::io::Error },
    #[error("sending through a packet socket")]
    PacketSocket(#[source] std::io::Error),
}

/// Bounds of one generator run: whichever is reached first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub count: u64,
    pub duration: Duration,
    /// Frames per second to pace to; `None` sends as fast as possible.
    pub rate: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct GenReport {
    /// Frames the generator program transmitted (program runs).
    pub sent: u64,
    pub elapsed: Duration,
}

impl GenReport {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Generator {
    ebpf: Ebpf,
    ifindex: u32,
    /// The rewrite in force (for the fallback sender).
    config: GenConfig,
    /// Set once the kernel refused live frames.
    fallback: Option<PacketSocket>,
}

const PROGRAM: &str = "generator";
/// Frames per kernel batch (the kernel's maximum is 256; 64 measured best).
const BATCH: u32 = 64;

/// Pins the calling thread to `cpu`, so the receiving veth's NAPI runs on
/// the same CPU (the method in BENCH-METHOD.md).
pub fn pin_to_cpu(cpu: usize) -> Result<(), GenError> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(GenError::Pin {
                cpu,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

impl Generator {
    /// Loads the generator and attaches it to `iface` (native mode), which
    /// keeps the XDP dispatcher warm between test runs.
    pub fn attach(iface_name: &str) -> Result<Generator, GenError> {
        let ifindex = iface::ifindex(iface_name)?;
        let mut ebpf = EbpfLoader::new()
            .load(objects::BASELINE_XDP)
            .map_err(|e| GenError::Load(Box::new(e)))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(GenError::Missing(PROGRAM))?
            .try_into()
            .map_err(GenError::Program)?;
        prog.load().map_err(GenError::Program)?;
        prog.attach(iface_name, XdpMode::Driver)
            .map_err(GenError::Program)?;
        Ok(Generator {
            ebpf,
            ifindex,
            config: GenConfig::default(),
            fallback: None,
        })
    }

    /// Sets the mode and the template header the program restores.
    fn configure(&mut self, config: GenConfig, frame: &[u8]) -> Result<(), GenError> {
        self.config = config;
        let map = self
            .ebpf
            .map_mut("GEN_CONFIG")
            .ok_or(GenError::Missing("GEN_CONFIG"))?;
        let mut array: Array<_, GenConfig> = Array::try_from(map).map_err(GenError::Map)?;
        array.set(0, config, 0).map_err(GenError::Map)?;
        let mut template = GenTemplate {
            bytes: [0; TEMPLATE_HEAD],
        };
        let n = frame.len().min(TEMPLATE_HEAD);
        template.bytes[..n].copy_from_slice(&frame[..n]);
        let map = self
            .ebpf
            .map_mut("GEN_TEMPLATE")
            .ok_or(GenError::Missing("GEN_TEMPLATE"))?;
        let mut array: Array<_, GenTemplate> = Array::try_from(map).map_err(GenError::Map)?;
        array.set(0, template, 0).map_err(GenError::Map)
    }

    fn program(&self) -> Result<&Xdp, GenError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(GenError::Missing(PROGRAM))?
            .try_into()
            .map_err(GenError::Program)
    }

    /// Transmits `repeat` copies of `frame` (rewritten per the config).
    fn burst(&mut self, frame: &[u8], repeat: u32) -> Result<(), GenError> {
        if let Some(s) = &mut self.fallback {
            return s
                .send(frame, &self.config, u64::from(repeat))
                .map_err(GenError::PacketSocket);
        }
        match self.live_burst(frame, repeat) {
            Err(GenError::Program(aya::programs::ProgramError::SyscallError(e)))
                if e.io_error.raw_os_error() == Some(libc::EPERM) =>
            {
                eprintln!(
                    "generator: the kernel refuses BPF_PROG_TEST_RUN live frames (EPERM); sending through an AF_PACKET socket instead (slower)"
                );
                let s = PacketSocket::open(self.ifindex).map_err(GenError::PacketSocket)?;
                self.fallback = Some(s);
                self.burst(frame, repeat)
            }
            other => other,
        }
    }

    fn live_burst(&self, frame: &[u8], repeat: u32) -> Result<(), GenError> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex. Live mode wants data_end = size.
        let ctx: [u32; 6] = [0, frame.len() as u32, 0, self.ifindex, 0, 0];
        let ctx_bytes: Vec<u8> = ctx.iter().flat_map(|v| v.to_ne_bytes()).collect();
        self.program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx_bytes),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..TestRunOptions::default()
            })
            .map_err(GenError::Program)?;
        Ok(())
    }

    /// Sends `mix` within `limits`. Templates are sent in slices of their
    /// weight, so the mix holds over any stretch of the run.
    pub fn run(&mut self, mix: MixName, flows: u32, limits: Limits) -> Result<GenReport, GenError> {
        let templates = templates(mix);
        let total_weight: u64 = templates
            .iter()
            .map(|t| u64::from(t.weight))
            .sum::<u64>()
            .max(1);
        // Slices of ~10 ms keep pacing smooth and time bounds tight.
        let slice = |rate: f64| ((rate * 0.01) as u64).clamp(total_weight, 4_000_000);
        let mut chunk = limits.rate.map_or(200_000, slice);
        let start = Instant::now();
        let mut sent = 0u64;
        'outer: while sent < limits.count && start.elapsed() < limits.duration {
            let round_start = Instant::now();
            let mut round_sent = 0;
            // Split what is left of this round over the templates, so even a
            // short run carries the whole mix.
            let budget = chunk.min(limits.count - sent);
            for t in &templates {
                let share = (budget * u64::from(t.weight) / total_weight).max(1);
                let n = share.min(limits.count - sent);
                if n == 0 {
                    break 'outer;
                }
                self.configure(
                    GenConfig {
                        mode: t.mode,
                        flows,
                        l3_offset: t.l3_offset,
                        l4_offset: t.l4_offset,
                    },
                    &t.frame,
                )?;
                self.burst(&t.frame, n as u32)?;
                sent += n;
                round_sent += n;
            }
            match limits.rate {
                Some(rate) => {
                    let due = Duration::from_secs_f64(sent as f64 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                None => {
                    // Aim each round at ~10 ms of frames at the rate seen.
                    let took = round_start.elapsed().as_secs_f64().max(1e-6);
                    chunk = slice(round_sent as f64 / took);
                }
            }
        }
        Ok(GenReport {
            sent,
            elapsed: start.elapsed(),
        })
    }
}
