//! Network namespaces and veth pairs that remove themselves on drop.
//!
//! Names carry the process id and a counter so parallel tests never
//! collide. Everything is done with iproute2 (`ip`), as an operator would.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::programs::{self, ProgramError};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Program(#[from] ProgramError),
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

/// Runs a program of the table ([`programs::PROGRAMS`]), turning a non-zero
/// exit into an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    output_of(programs::command(program)?.args(args))
}

/// Runs a prepared command and returns its stdout; a non-zero exit is an
/// error with its stderr.
pub fn output_of(cmd: &mut Command) -> Result<String, LabError> {
    let out = cmd.output()?;
    if !out.status.success() {
        let mut shown = vec![cmd.get_program().to_string_lossy().into_owned()];
        shown.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        return Err(LabError::Command {
            command: shown.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where iproute2 keeps the handle of a named namespace.
pub fn netns_path(name: &str) -> String {
    format!("/var/run/netns/{name}")
}

/// Runs `f` on a thread that has joined the namespace named `ns` and
/// returns its result. Namespaces are per thread, so the caller stays where
/// it is; sockets, devices looked up by name or index, and BPF test runs
/// inside `f` all see the namespace.
pub fn run_in_netns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> Result<R, LabError> {
    let path = netns_path(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(&path, ns)?;
                Ok(f())
            })
            .join()
            .map_err(|_| LabError::Other(format!("thread in namespace {ns} panicked")))?
    })
}

fn enter_netns(path: &str, name: &str) -> Result<(), LabError> {
    let err = |source| LabError::Setns {
        name: name.to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    // SAFETY: valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
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
        output_of(self.command(program)?.args(args))
    }

    /// A command for `program` inside the namespace, to spawn.
    pub fn command(&self, program: &str) -> Result<Command, LabError> {
        Ok(programs::in_netns(&self.name, program)?)
    }

    /// `timeout SECONDS program` inside the namespace: a tool that ends by
    /// itself even when nobody stops it. Spawn it as a
    /// [`programs::GroupChild`] so an early stop reaches the tool too.
    pub fn bounded(&self, seconds: u32, program: &str) -> Result<Command, LabError> {
        let row = programs::installed(program)?;
        let mut cmd = self.command("timeout")?;
        cmd.arg(seconds.to_string()).arg(programs::executable(row));
        Ok(cmd)
    }

    /// A binary this workspace built (nta), run inside the namespace.
    pub fn command_built(&self, binary: &std::path::Path) -> Result<Command, LabError> {
        Ok(programs::built_in_netns(&self.name, binary)?)
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

/// A veth pair with one end (`inner`) in a namespace and the other
/// (`outer`) in the caller's namespace, or in a second namespace
/// ([`VethPair::between`]). IPv6 is disabled on both ends so the kernel
/// sends nothing of its own (DAD, router solicitations) and tests see only
/// the frames they send. Deleted on drop.
#[derive(Debug)]
pub struct VethPair {
    pub outer: String,
    pub inner: String,
    /// The namespace holding `outer`, when it is not the caller's.
    outer_ns: Option<String>,
}

impl VethPair {
    pub fn new(ns: &NetNs, prefix: &str) -> Result<VethPair, LabError> {
        Self::create(None, ns, prefix)
    }

    /// A pair with `outer` in `a` and `inner` in `b`; neither end stays in
    /// the caller's namespace.
    pub fn between(a: &NetNs, b: &NetNs, prefix: &str) -> Result<VethPair, LabError> {
        Self::create(Some(a), b, prefix)
    }

    fn create(
        outer_ns: Option<&NetNs>,
        inner_ns: &NetNs,
        prefix: &str,
    ) -> Result<VethPair, LabError> {
        let outer = unique_name(prefix);
        let inner = format!("{outer}p");
        let mut args = vec!["link", "add", outer.as_str()];
        if let Some(a) = outer_ns {
            args.extend(["netns", a.name()]);
        }
        args.extend([
            "type",
            "veth",
            "peer",
            "name",
            inner.as_str(),
            "netns",
            inner_ns.name(),
        ]);
        run("ip", &args)?;
        let pair = VethPair {
            outer,
            inner,
            outer_ns: outer_ns.map(|a| a.name().to_string()),
        };
        // Runs a command where the outer end lives.
        let at_outer = |program: &str, args: &[&str]| match outer_ns {
            Some(a) => a.exec(program, args),
            None => run(program, args),
        };
        at_outer(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", pair.outer),
            ],
        )?;
        at_outer("ip", &["link", "set", &pair.outer, "up"])?;
        pair.inner_up(inner_ns)?;
        Ok(pair)
    }

    fn inner_up(&self, ns: &NetNs) -> Result<(), LabError> {
        ns.exec(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", self.inner),
            ],
        )?;
        ns.exec("ip", &["link", "set", &self.inner, "up"])?;
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end removes both; a namespace may already be gone.
        let _ = match &self.outer_ns {
            None => run("ip", &["link", "del", &self.outer]),
            Some(ns) => run("ip", &["-n", ns, "link", "del", &self.outer]),
        };
    }
}

/// Packet counters of an interface in a namespace, from `ip -s link`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl LinkStats {
    /// Reads `ip -s -o link show dev IFACE` (one-line output) in `ns`.
    pub fn read(ns: &NetNs, iface: &str) -> Result<LinkStats, LabError> {
        let out = ns.exec("ip", &["-s", "-o", "link", "show", "dev", iface])?;
        parse_link_stats(&out)
            .ok_or_else(|| LabError::Other(format!("cannot read counters of {iface}: {out}")))
    }
}

/// Parses the one-line `ip -s -o link` format: after `RX:` and `TX:`
/// headers come `bytes packets errors dropped ...` rows.
fn parse_link_stats(out: &str) -> Option<LinkStats> {
    let fields: Vec<&str> = out.split_whitespace().collect();
    let row_after = |tag: &str| -> Option<(u64, u64)> {
        let at = fields.iter().position(|f| f.starts_with(tag))?;
        // Header words follow the tag up to the line break marker `\`.
        let nums: Vec<u64> = fields[at..]
            .iter()
            .skip_while(|f| **f != "\\")
            .skip(1)
            .take(4)
            .filter_map(|f| f.parse().ok())
            .collect();
        Some((*nums.get(1)?, *nums.get(3)?))
    };
    let (rx_packets, rx_dropped) = row_after("RX:")?;
    let (tx_packets, tx_dropped) = row_after("TX:")?;
    Some(LinkStats {
        rx_packets,
        rx_dropped,
        tx_packets,
        tx_dropped,
    })
}

/// Resident memory of process `pid` (`VmRSS` in /proc), 0 if unreadable.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_line_link_stats() {
        let out = "7: v1@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 8e:1e:5d:4e:3a:01 brd ff:ff:ff:ff:ff:ff link-netns n1\\    RX:  bytes packets errors dropped  missed   mcast           \\        6000     100      0       3       0       0 \\    TX:  bytes packets errors dropped carrier collsns           \\         120       2      0       1       0       0 \n";
        assert_eq!(
            parse_link_stats(out),
            Some(LinkStats {
                rx_packets: 100,
                rx_dropped: 3,
                tx_packets: 2,
                tx_dropped: 1
            })
        );
    }
}
