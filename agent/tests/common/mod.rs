//! Helpers shared by the end-to-end tests: a running `nta run` (in this
//! namespace or in a lab namespace), scratch directories, scraping.
#![allow(dead_code)]

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nta_lab::{
    NetNs, VethPair,
    netns::{run, run_in_netns},
    scrape::{Samples, http_get, scrape},
};

pub const NTA: &str = env!("CARGO_BIN_EXE_nta");

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("binding a free port: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

/// A running `nta run`, killed on drop if the test did not stop it.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    /// The namespace nta runs in, when not this one.
    pub netns: Option<String>,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        Self::spawn(None, free_port(), args)
    }

    /// Runs nta inside `ns` (`ip netns exec`, which execs nta itself, so
    /// signals reach it), listening on 127.0.0.1:9464 there.
    pub fn start_in(ns: &NetNs, args: &[&str]) -> Agent {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9464));
        Self::spawn(Some(ns.name().to_string()), addr, args)
    }

    fn spawn(netns: Option<String>, addr: SocketAddr, args: &[&str]) -> Agent {
        let listen = addr.to_string();
        let mut all = vec!["run", "--listen", &listen];
        all.extend_from_slice(args);
        let mut cmd = match &netns {
            Some(ns) => nta_lab::programs::built_in_netns(ns, std::path::Path::new(NTA))
                .unwrap_or_else(|e| panic!("{e}")),
            None => Command::new(NTA),
        };
        let child = cmd
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting nta: {e}"));
        let mut agent = Agent { child, addr, netns };
        agent.wait_healthy();
        agent
    }

    /// GET from where nta listens.
    pub fn get(&self, path: &str) -> Result<String, nta_lab::netns::LabError> {
        match &self.netns {
            Some(ns) => run_in_netns(ns, || http_get(self.addr, path))?,
            None => http_get(self.addr, path),
        }
    }

    pub fn scrape(&self) -> Samples {
        let r = match &self.netns {
            Some(ns) => run_in_netns(ns, || scrape(self.addr)).and_then(|r| r),
            None => scrape(self.addr),
        };
        r.unwrap_or_else(|e| panic!("scraping: {e}"))
    }

    /// Scrapes until `done` holds or 10 s pass; returns the last scrape.
    pub fn scrape_until(&self, done: impl Fn(&Samples) -> bool) -> Samples {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.scrape();
            if done(&s) || Instant::now() > deadline {
                return s;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident memory of the agent.
    pub fn rss_bytes(&self) -> u64 {
        nta_lab::netns::rss_bytes(self.child.id())
    }

    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.get("/healthz").is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nta exited early with {status}: {}",
                    stderr_of(&mut self.child)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("nta did not become healthy within 15 s");
    }

    pub fn signal(&mut self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "nta did not exit within 10 s");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(e) = child.stderr.as_mut() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// A scratch directory removed on drop, also when the test fails.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("nta-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A namespace and a veth pair into it, the outer end here.
pub fn lab(prefix: &str) -> (NetNs, VethPair) {
    let ns = NetNs::new(prefix).unwrap_or_else(|e| panic!("{e}"));
    let veth = VethPair::new(&ns, prefix).unwrap_or_else(|e| panic!("{e}"));
    (ns, veth)
}

pub fn xdp_attached(iface: &str) -> bool {
    let out = run("ip", &["-d", "link", "show", "dev", iface]).unwrap_or_else(|e| panic!("{e}"));
    out.contains("xdp")
}

/// Scrapes until `done` holds or 10 s pass; returns the last scrape.
pub fn scrape_until(addr: SocketAddr, done: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(addr).unwrap_or_else(|e| panic!("scraping: {e}"));
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// TCP SYNs from `src` to ports 1..=`ports` of `dst` (a port scan).
#[allow(dead_code)]
pub fn syn_scan(src: [u8; 4], dst: [u8; 4], ports: u16) -> Vec<Vec<u8>> {
    use nta_lab::frames::{FrameSpec, L4};
    (1..=ports)
        .map(|p| {
            FrameSpec::ipv4(L4::Tcp {
                sport: 40000,
                dport: p,
                flags: 0x02,
            })
            .with_ipv4(|h| {
                h.src = src.into();
                h.dst = dst.into();
            })
            .build()
        })
        .collect()
}

/// `nta run` on `iface` with every output a dashboard reads: flows, alerts,
/// capture and the flight recorder under `dir`, and a 1 s baseline
/// warm-up so the band's series exist within seconds.
#[allow(dead_code)]
pub fn agent_with_every_output(iface: &str, dir: &TempDir) -> Agent {
    let config = dir.join("nta.toml");
    std::fs::write(&config, "[detect.baseline]\nwarmup = \"1s\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let path = |name: &str| dir.join(name).to_str().unwrap_or_default().to_string();
    let (flows, alerts, pcaps, incidents) = (
        path("flows.jsonl"),
        path("alerts.jsonl"),
        path("pcaps"),
        path("incidents"),
    );
    Agent::start(&[
        "--iface",
        iface,
        "--config",
        config.to_str().unwrap_or_default(),
        "--flows",
        &flows,
        "--alerts",
        &alerts,
        "--capture",
        &pcaps,
        "--flight-recorder",
        &incidents,
    ])
}

/// Every thread's capability sets, from /proc.
pub fn thread_caps(pid: u32) -> Vec<(u64, u64, u64, u64)> {
    let field = |status: &str, name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim_start_matches(':').trim(), 16).ok())
            .unwrap_or(u64::MAX)
    };
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
                .map(|s| {
                    (
                        field(&s, "CapEff"),
                        field(&s, "CapPrm"),
                        field(&s, "CapAmb"),
                        field(&s, "CapBnd"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every thread's uid and gid, when real, effective, saved and
/// file-system ids agree (`None` for a thread where they differ).
pub fn thread_ids(pid: u32) -> Vec<Option<(u32, u32)>> {
    let same = |status: &str, name: &str| {
        let ids: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (ids.len() == 4 && ids.iter().all(|&i| i == ids[0])).then(|| ids[0])
    };
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
                .map(|s| Some((same(&s, "Uid:")?, same(&s, "Gid:")?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|child| {
                    std::fs::read_to_string(format!("/proc/{child}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("PPid:"))
                                .and_then(|p| p.trim().parse::<u32>().ok())
                        })
                        == Some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}
