//! Least privilege after attach. Loading the program, creating maps,
//! attaching and binding AF_XDP sockets need CAP_BPF, CAP_PERFMON,
//! CAP_NET_ADMIN (and CAP_NET_RAW); afterwards nta only reads maps and
//! rings through descriptors it holds, which needs no capability on
//! kernels from 6.5 on. So once everything is attached, nta drops every
//! capability but CAP_NET_ADMIN, which re-attaching to an interface that
//! comes back needs (none with `--reattach=false`), clears the ambient
//! set, and empties the bounding set where it may (as root).
//!
//! Capabilities belong to threads, and by then the runtime's threads
//! exist: each thread is sent a signal whose handler drops its own
//! capabilities (capset and prctl are plain system calls, safe in a
//! handler), and every thread's sets are read back from /proc until all
//! show the reduced sets. Threads started later inherit them. Written by
//! hand because the crates that wrap capset act on the calling thread
//! only.

use std::{
    fs,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use crate::kernel::privileges::{CAP_BPF, CAP_NET_ADMIN, Capability};

#[derive(Debug, thiserror::Error)]
pub enum LeastPrivilegeError {
    #[error("installing the capability-drop signal handler: {0}")]
    Handler(std::io::Error),
    #[error("dropping capabilities: thread {tid} still has {sets} after 1 s")]
    Stuck { tid: u32, sets: String },
}

/// The capability sets of one thread, from its /proc status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub bounding: u64,
}

impl CapSets {
    /// Parses `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`.
    pub fn parse(status: &str) -> Option<CapSets> {
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name))?;
            u64::from_str_radix(line[name.len()..].trim_start_matches(':').trim(), 16).ok()
        };
        Some(CapSets {
            effective: field("CapEff")?,
            permitted: field("CapPrm")?,
            inheritable: field("CapInh")?,
            ambient: field("CapAmb")?,
            bounding: field("CapBnd")?,
        })
    }

    /// Whether these sets hold nothing beyond `keep` (the bounding set
    /// only when it was to be emptied).
    fn within(&self, keep: u64, bounding: bool) -> bool {
        let beyond = |set: u64| set & !keep != 0;
        !(beyond(self.effective)
            || beyond(self.permitted)
            || self.inheritable != 0
            || self.ambient != 0
            || (bounding && beyond(self.bounding)))
    }
}

/// The capabilities nta keeps once attached: CAP_NET_ADMIN while it
/// re-attaches, and CAP_BPF on kernels older than 6.5, where every bpf(2)
/// call (reading a map at a scrape) asks for it.
fn kept(reattach: bool, kernel_release: &str) -> Vec<Capability> {
    let mut keep = Vec::new();
    if reattach {
        keep.push(CAP_NET_ADMIN);
    }
    if kernel_older_than(kernel_release, (6, 5)) {
        keep.push(CAP_BPF);
    }
    keep
}

fn kernel_older_than(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        // Unknown: keep what older kernels need, to be safe.
        _ => true,
    }
}

/// The running kernel's release (`uname -r`).
fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

static KEEP: AtomicU64 = AtomicU64::new(0);
static BOUNDING: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops the calling thread's capabilities to KEEP. Only system calls:
/// it runs inside the signal handler.
fn drop_this_thread() {
    let keep = KEEP.load(Ordering::SeqCst);
    if BOUNDING.load(Ordering::SeqCst) {
        for cap in 0..64u64 {
            if keep & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments; an unknown
                // capability number only returns EINVAL.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: keep as u32,
            permitted: keep as u32,
            inheritable: 0,
        },
        CapData {
            effective: (keep >> 32) as u32,
            permitted: (keep >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads the header and two data structs, laid out as
    // the kernel's version-3 ABI, which live for the call.
    unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
}

extern "C" fn on_signal(_: libc::c_int) {
    drop_this_thread();
}

/// This process's threads and their capability sets.
fn threads() -> Vec<(u32, CapSets)> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(t.path().join("status")).ok()?;
            Some((tid, CapSets::parse(&status)?))
        })
        .collect()
}

/// Drops every thread to what running on needs once attached (see the
/// module's text) and logs what was kept: the one call of `nta run` and
/// `nta capture`.
pub fn drop_after_attach(reattach: bool) -> Result<(), LeastPrivilegeError> {
    let keep = kept(reattach, &kernel_release());
    let sets = drop_to(&keep)?;
    let names: Vec<&str> = keep
        .iter()
        .filter(|c| sets.effective & (1 << c.bit) != 0)
        .map(|c| c.name)
        .collect();
    tracing::info!(
        kept = %if names.is_empty() { "none".to_string() } else { names.join(", ") },
        "capabilities dropped in every thread"
    );
    Ok(())
}

/// Drops every thread of this process to `keep` (what it has of it).
fn drop_to(keep: &[Capability]) -> Result<CapSets, LeastPrivilegeError> {
    let mine = threads()
        .into_iter()
        .map(|(_, s)| s.permitted)
        .fold(u64::MAX, |a, p| a & p);
    let keep_mask = keep.iter().fold(0u64, |m, c| m | (1 << c.bit)) & mine;
    // Emptying the bounding set takes CAP_SETPCAP (root has it).
    let bounding = mine & (1 << 8) != 0;
    KEEP.store(keep_mask, Ordering::SeqCst);
    BOUNDING.store(bounding, Ordering::SeqCst);
    let signal = libc::SIGRTMIN();
    // SAFETY: a handler that only makes system calls; sigaction reads
    // the struct we built.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(LeastPrivilegeError::Handler(std::io::Error::last_os_error()));
        }
    }
    drop_this_thread();
    // SAFETY: getpid has no arguments.
    let pid = unsafe { libc::getpid() };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left: Vec<(u32, CapSets)> = threads()
            .into_iter()
            .filter(|(_, s)| !s.within(keep_mask, bounding))
            .collect();
        let Some(&(tid, sets)) = left.first() else {
            break;
        };
        if Instant::now() > deadline {
            return Err(LeastPrivilegeError::Stuck {
                tid,
                sets: format!("{sets:x?}"),
            });
        }
        for (tid, _) in &left {
            // SAFETY: tgkill to a thread of our own process; a thread that
            // ended meanwhile only makes it fail with ESRCH.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, *tid as libc::pid_t, signal) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(threads().first().map(|t| t.1).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_set() {
        let s = "Name:\tnta\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                 CapEff:\t0000000000001000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let c = CapSets::parse(s).unwrap_or_default();
        assert_eq!(c.effective, 1 << 12);
        assert_eq!(c.permitted, 0x1ff_ffff_ffff);
        assert!(!c.within(1 << 12, false), "permitted still holds more");
        let dropped = CapSets {
            effective: 1 << 12,
            permitted: 1 << 12,
            bounding: 1 << 12,
            ..CapSets::default()
        };
        assert!(dropped.within(1 << 12, true));
    }

    #[test]
    fn what_is_kept_depends_on_reattach_and_the_kernel() {
        assert_eq!(kept(true, "6.18.44-fc"), [CAP_NET_ADMIN]);
        assert!(kept(false, "6.5.0").is_empty());
        assert_eq!(kept(false, "6.1.0-18-amd64"), [CAP_BPF]);
        assert_eq!(kept(true, "5.15.0"), [CAP_NET_ADMIN, CAP_BPF]);
        assert_eq!(kept(false, "garbage"), [CAP_BPF]);
    }
}
