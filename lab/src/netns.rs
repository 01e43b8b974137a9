//! Network namespaces and veth pairs that remove themselves on drop.
//!
//! Names carry the process id and a counter so parallel tests never
//! collide. Everything is done with iproute2 (`ip`), as an operator would.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("entering network namespace {name}: {source}")]
    Setns {
        name: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`, at most 15
/// characters so it also fits interface names.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    let prefix: String = prefix.chars().take(4).collect();
    format!("{prefix}{pid}x{n}")
}

/// Runs a command, turning a non-zero exit into an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where iproute2 keeps the handle of a named namespace.
pub fn netns_path(name: &str) -> String {
    format!("/var/run/netns/{name}")
}

/// A network namespace, deleted (with its interfaces) on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> Result<NetNs, LabError> {
        let name = unique_name(prefix);
        run("ip", &["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Path of the namespace handle, for `setns`.
    pub fn path(&self) -> String {
        netns_path(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair with one end (`inner`) moved into a namespace and the other
/// (`outer`) left in the caller's namespace. IPv6 is disabled on both ends
/// so the kernel sends nothing of its own (DAD, router solicitations) and
/// tests see only the frames they send. Deleted on drop.
#[derive(Debug)]
pub struct VethPair {
    pub outer: String,
    pub inner: String,
}

impl VethPair {
    pub fn new(ns: &NetNs, prefix: &str) -> Result<VethPair, LabError> {
        let outer = unique_name(prefix);
        let inner = format!("{outer}p");
        run(
            "ip",
            &[
                "link",
                "add",
                &outer,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
                "netns",
                ns.name(),
            ],
        )?;
        let pair = VethPair { outer, inner };
        run(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", pair.outer),
            ],
        )?;
        ns.exec(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", pair.inner),
            ],
        )?;
        run("ip", &["link", "set", &pair.outer, "up"])?;
        ns.exec("ip", &["link", "set", &pair.inner, "up"])?;
        Ok(pair)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end removes both; the namespace may already be gone.
        let _ = run("ip", &["link", "del", &self.outer]);
    }
}

/// True when this process can create namespaces and load BPF (root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Gate for tests that need root (BPF, namespaces). Returns true when they
/// can run. Without root they are skipped with a message, except under CI
/// (`CI` set), where a privileged test that cannot run is a failure.
pub fn privileged(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (BPF, network namespaces) and CI requires it to run");
    }
    eprintln!("SKIPPED {test}: needs root (BPF, network namespaces)");
    false
}
