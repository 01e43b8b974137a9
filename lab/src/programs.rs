//! The one table of external programs that nta's tests, lab, benchmarks,
//! demo and xtask run, and the one way to start them.
//!
//! `cargo xtask setup` installs every Debian package named here. Code that
//! starts a program gets its [`Command`] from [`command`] (or [`in_netns`]),
//! which refuses a program that is not in the table and names the package
//! to install when the program is missing. A unit test
//! (`tests/programs_table.rs`) reads the workspace's sources and fails when
//! a program is started that this table does not list.

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command},
};

/// Where a program comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Debian package that `cargo xtask setup` installs.
    Apt(&'static str),
    /// A package of priority `required`, which every Debian system has
    /// (debootstrap's smallest variant, minbase, installs exactly those):
    /// coreutils, util-linux, mount, dpkg, debconf, apt. Setup never needs
    /// to install these.
    Base(&'static str),
    /// The Rust toolchain: rustup's stable and nightly (which a machine
    /// brings) and bpf-linker (which setup builds from crates.io).
    Toolchain,
    /// A Python package from PyPI, installed by setup into the lab's own
    /// virtual environment ([`python_env`]); the program is that
    /// environment's `python3`, which runs the lab's scripts with it.
    Pip(&'static str),
}

impl Source {
    /// The Debian package, when there is one.
    pub fn package(self) -> Option<&'static str> {
        match self {
            Source::Apt(p) | Source::Base(p) => Some(p),
            Source::Toolchain | Source::Pip(_) => None,
        }
    }
}

/// One external program: its name on `PATH`, where it comes from, and why
/// nta runs it.
#[derive(Debug)]
pub struct Program {
    pub name: &'static str,
    pub source: Source,
    pub why: &'static str,
}

const fn apt(name: &'static str, package: &'static str, why: &'static str) -> Program {
    Program {
        name,
        source: Source::Apt(package),
        why,
    }
}

const fn base(name: &'static str, package: &'static str, why: &'static str) -> Program {
    Program {
        name,
        source: Source::Base(package),
        why,
    }
}

const fn pip(name: &'static str, package: &'static str, why: &'static str) -> Program {
    Program {
        name,
        source: Source::Pip(package),
        why,
    }
}

const fn toolchain(name: &'static str, why: &'static str) -> Program {
    Program {
        name,
        source: Source::Toolchain,
        why,
    }
}

/// Every external program the workspace starts.
pub const PROGRAMS: &[Program] = &[
    // Lab plumbing.
    apt(
        "ip",
        "iproute2",
        "network namespaces, veth pairs, addresses, routes",
    ),
    apt(
        "sysctl",
        "procps",
        "disable IPv6 autoconfiguration on lab links",
    ),
    apt(
        "nft",
        "nftables",
        "the guard that keeps hping3's random sources inside the lab range",
    ),
    base("timeout", "coreutils", "bounds every lab tool's run time"),
    base(
        "sleep",
        "coreutils",
        "a process to find in the leftover check's own test",
    ),
    base(
        "setsid",
        "util-linux",
        "the benchmark runs in its own session",
    ),
    base(
        "nice",
        "coreutils",
        "the benchmark runs at a higher priority",
    ),
    base("setpriv", "util-linux", "run nta with reduced capabilities"),
    base(
        "mount",
        "mount",
        "a small tmpfs for the disk-full capture test",
    ),
    base("umount", "mount", "removes that tmpfs"),
    base("uname", "coreutils", "the kernel release in BENCHMARKS.md"),
    base("date", "coreutils", "the date in BENCHMARKS.md"),
    // Setup itself.
    base(
        "dpkg-query",
        "dpkg",
        "setup asks which packages are installed",
    ),
    base(
        "apt-get",
        "apt",
        "setup installs the packages of this table",
    ),
    base(
        "debconf-set-selections",
        "debconf",
        "setup answers package questions beforehand",
    ),
    // Peers the tests compare with or feed.
    apt(
        "systemd-analyze",
        "systemd",
        "verify and score the shipped systemd unit",
    ),
    apt(
        "bpftool",
        "bpftool",
        "inspect loaded programs when a test fails",
    ),
    apt(
        "tcpdump",
        "tcpdump",
        "the benchmark compares nta's capture with it; the IPFIX test captures the export",
    ),
    apt(
        "tshark",
        "tshark",
        "decodes nta's IPFIX export and captures",
    ),
    apt(
        "capinfos",
        "tshark",
        "checks nta's capture files (wireshark-common, a dependency of tshark)",
    ),
    apt(
        "editcap",
        "tshark",
        "converts lab captures for the offline tests (wireshark-common)",
    ),
    apt(
        "nfcapd",
        "nfdump",
        "the IPFIX collector of the end-to-end test",
    ),
    apt("nfdump", "nfdump", "reads what nfcapd collected from nta"),
    apt(
        "prometheus",
        "prometheus",
        "scrapes nta and answers every dashboard query in the tests",
    ),
    apt(
        "promtool",
        "prometheus",
        "lints /metrics and unit-tests the alert rules",
    ),
    apt(
        "nmap",
        "nmap",
        "the detection tests scan and sweep lab hosts with it",
    ),
    apt(
        "hping3",
        "hping3",
        "the detection tests flood a lab host with it",
    ),
    apt("iperf3", "iperf3", "the detection tests' benign load"),
    apt(
        "fastnetmon",
        "fastnetmon",
        "the detect bench measures FastNetMon CE's flood alert latency beside nta's",
    ),
    apt(
        "openssl",
        "openssl",
        "the web-config test makes a TLS certificate with it",
    ),
    apt(
        "curl",
        "curl",
        "the web-config test fetches /metrics over TLS with it",
    ),
    apt(
        "dnsmasq",
        "dnsmasq-base",
        "the DNS metadata test's name server (the binary alone, no service)",
    ),
    apt(
        "dig",
        "bind9-dnsutils",
        "the DNS metadata test's client (many types, NXDOMAIN, TCP after truncation)",
    ),
    apt(
        "python3",
        "python3-venv",
        "setup makes the lab's Python environment for the PyPI peers with it",
    ),
    pip(
        "aioquic",
        "aioquic",
        "the QUIC metadata test's client and server (lab/python/quic_peer.py)",
    ),
    // Build.
    toolchain("cargo", "builds the workspace"),
    toolchain(
        "rustc",
        "reports the nightly toolchain's LLVM for bpf-linker",
    ),
    toolchain(
        "rustup",
        "adds rust-src to nightly and runs nightly clippy on the XDP program",
    ),
    toolchain("bpf-linker", "links the XDP program"),
    toolchain(
        "cargo-fuzz",
        "runs the fuzz targets (cargo xtask fuzz; 30 s each in cargo xtask test)",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(
        "`{0}` is not in the table of external programs (PROGRAMS in lab/src/programs.rs): \
         add a row with its Debian package, so that `cargo xtask setup` installs it on a fresh machine"
    )]
    NotInTable(String),
    #[error(
        "`{name}` is not installed: it comes with the Debian package `{package}`; \
         `cargo xtask setup` installs it (or: apt-get install {package})"
    )]
    MissingPackage {
        name: &'static str,
        package: &'static str,
    },
    #[error("`{0}` is not installed: `cargo xtask setup` installs the toolchain pieces")]
    MissingToolchain(&'static str),
    #[error(
        "`{name}` is not installed: it comes with the PyPI package `{package}` in the lab's \
         Python environment ({env}); `cargo xtask setup` installs it"
    )]
    MissingPip {
        name: &'static str,
        package: &'static str,
        env: String,
    },
}

/// The table row of `name`.
pub fn lookup(name: &str) -> Result<&'static Program, ProgramError> {
    PROGRAMS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ProgramError::NotInTable(name.to_string()))
}

/// The Debian packages that `cargo xtask setup` installs, each once.
pub fn apt_packages() -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = PROGRAMS
        .iter()
        .filter_map(|p| match p.source {
            Source::Apt(package) => Some(package),
            _ => None,
        })
        .collect();
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// Where `name` is on `PATH`, if anywhere.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The lab's Python virtual environment, where setup installs the PyPI
/// packages of the table (under the workspace's `target`).
pub fn python_env() -> PathBuf {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab.parent()
        .unwrap_or(lab)
        .join("target")
        .join("lab-python")
}

/// The file in [`python_env`] that lists the packages installed there,
/// one a line, written by setup once pip succeeded.
pub fn python_env_marker() -> PathBuf {
    python_env().join("nta-installed")
}

/// The PyPI packages that `cargo xtask setup` installs, each once.
pub fn pip_packages() -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = PROGRAMS
        .iter()
        .filter_map(|p| match p.source {
            Source::Pip(package) => Some(package),
            _ => None,
        })
        .collect();
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// Whether setup installed `package` into the lab's Python environment.
pub fn pip_installed(package: &str) -> bool {
    std::fs::read_to_string(python_env_marker())
        .is_ok_and(|list| list.lines().any(|l| l == package))
}

/// The row of `name`, after checking that it is installed.
pub fn installed(name: &str) -> Result<&'static Program, ProgramError> {
    let program = lookup(name)?;
    if let Source::Pip(package) = program.source {
        return if pip_installed(package) {
            Ok(program)
        } else {
            Err(ProgramError::MissingPip {
                name: program.name,
                package,
                env: python_env().display().to_string(),
            })
        };
    }
    if which(program.name).is_some() {
        return Ok(program);
    }
    Err(match program.source.package() {
        Some(package) => ProgramError::MissingPackage {
            name: program.name,
            package,
        },
        None => ProgramError::MissingToolchain(program.name),
    })
}

/// A command for `name`: the only way the workspace starts an external
/// program.
pub fn command(name: &str) -> Result<Command, ProgramError> {
    Ok(Command::new(executable(installed(name)?)))
}

/// What runs `program`: its name on `PATH`, or for a PyPI package the
/// Python of the lab's environment.
pub fn executable(program: &Program) -> PathBuf {
    match program.source {
        Source::Pip(_) => python_env().join("bin").join("python3"),
        _ => PathBuf::from(program.name),
    }
}

/// A lab Python script (`lab/python/NAME`).
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// `ip netns exec NS name`: `name` run inside a network namespace. iproute2
/// execs the program, so signals sent to the child reach it.
pub fn in_netns(ns: &str, name: &str) -> Result<Command, ProgramError> {
    built_in_netns(ns, &executable(installed(name)?))
}

/// `ip netns exec NS BINARY` for a binary this workspace built (nta,
/// nta-bench), which is not an external program.
pub fn built_in_netns(ns: &str, binary: &Path) -> Result<Command, ProgramError> {
    let mut cmd = command("ip")?;
    cmd.args(["netns", "exec", ns]).arg(binary);
    Ok(cmd)
}

/// For tests: a command for `name`, panicking with the install hint when
/// the program is not listed or not installed.
pub fn require(name: &str) -> Command {
    command(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Gate for tests that need `name`: true when it is installed. Without it
/// the test is skipped with the install hint, except under CI (`CI` set),
/// where a missing program is a failure.
pub fn available_for(test: &str, name: &str) -> bool {
    match installed(name) {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: {e}; CI requires this test to run")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

/// A started program that leads its own process group: dropping it kills
/// the whole group (a `timeout` wrapper and the tool under it alike;
/// SIGKILL to `timeout` alone cannot reach its child) and reaps the leader.
#[derive(Debug)]
pub struct GroupChild(Child);

impl GroupChild {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<GroupChild> {
        cmd.process_group(0).spawn().map(GroupChild)
    }

    /// Kills every process of the group and reaps the leader.
    pub fn kill_group(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) with a negative pid signals the group this
            // child leads; no memory is involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for GroupChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for GroupChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Set by `cargo xtask test` to a value unique to the run; every process
/// the tests start inherits it, so the run can find what was left behind.
pub const TEST_MARKER_VAR: &str = "NTA_TEST_RUN";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_listed_once_with_a_reason() {
        for (i, p) in PROGRAMS.iter().enumerate() {
            assert!(!p.why.is_empty(), "{} has no reason", p.name);
            assert!(
                PROGRAMS[i + 1..].iter().all(|q| q.name != p.name),
                "{} is listed twice",
                p.name
            );
        }
    }

    #[test]
    fn a_program_outside_the_table_is_refused_naming_the_table() {
        // Built, not a literal, so the source scan does not flag it.
        let name = ["some", "new", "tool"].join("-");
        let err = command(&name).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("lab/src/programs.rs"), "{err}");
        assert!(err.contains("some-new-tool"), "{err}");
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let err = ProgramError::MissingPackage {
            name: "promtool",
            package: "prometheus",
        }
        .to_string();
        assert!(err.contains("apt-get install prometheus"), "{err}");
    }

    #[test]
    fn apt_packages_are_deduplicated_and_exclude_the_base_system() {
        let packages = apt_packages();
        assert_eq!(packages.iter().filter(|p| **p == "tshark").count(), 1);
        assert!(packages.contains(&"prometheus"));
        assert!(!packages.contains(&"coreutils"));
    }

    #[test]
    fn dropping_a_group_child_kills_the_grandchild() {
        // `timeout` runs `sleep` as its child; SIGKILL to `timeout` alone
        // would orphan the sleep (the iperf3 left behind by a test once).
        let mut cmd = command("timeout").unwrap_or_else(|e| panic!("{e}"));
        cmd.args(["30", "sleep", "30"]);
        let child = GroupChild::spawn(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
        let pgid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(live_members(pgid).len(), 2, "timeout and sleep run");
        drop(child);
        // The orphaned sleep may linger a moment as a zombie: poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !live_members(pgid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(live_members(pgid), Vec::<u32>::new(), "survived the drop");
    }

    /// Processes of group `pgid` that are not zombies, from /proc.
    fn live_members(pgid: i32) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.map_while(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // After the `(comm)`: state, ppid, pgrp.
                let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            })
            .collect()
    }
}
