//! Least privilege after attach. Loading the program, creating maps,
//! attaching and binding AF_XDP sockets need CAP_BPF, CAP_PERFMON,
//! CAP_NET_ADMIN (and CAP_NET_RAW); afterwards nta only reads maps and
//! rings through descriptors it holds, which needs no capability on
//! kernels from 6.5 on. So once everything is attached, nta drops every
//! capability (re-attaching to an interface that comes back is the job
//! of a separate helper process that keeps only CAP_NET_ADMIN, see
//! `reattach`), clears the ambient set, empties the bounding set where it
//! may (as root), and, started as root, becomes its own user
//! (`identity`).
//!
//! Capabilities and user ids belong to threads, and by then the
//! runtime's threads exist: each thread is sent a signal whose handler
//! switches and drops its own (setresuid, capset and prctl are plain
//! system calls, safe in a handler), and every thread's sets and ids are
//! read back from /proc until all show the reduced ones. Threads started
//! later inherit them. Written by hand because the crates that wrap
//! capset act on the calling thread only.

use std::{
    fs,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use crate::kernel::{
    identity::Identity,
    privileges::{CAP_BPF, CAP_NET_ADMIN, Capability},
};

#[derive(Debug, thiserror::Error)]
pub enum LeastPrivilegeError {
    #[error("installing the capability-drop signal handler: {0}")]
    Handler(std::io::Error),
    #[error(
        "dropping privileges: thread {tid} still has {sets} after 1 s (switching to {user} needs CAP_SETUID and CAP_SETGID)"
    )]
    Stuck {
        tid: u32,
        sets: String,
        user: String,
    },
}

/// The capability sets of one thread, from its /proc status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub bounding: u64,
    /// Real, effective, saved and file-system uid (`Uid:`).
    pub uids: [u32; 4],
    /// The same for the group (`Gid:`).
    pub gids: [u32; 4],
    /// Supplementary groups (`Groups:`).
    pub groups: usize,
}

impl CapSets {
    /// Parses `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`, `Uid`,
    /// `Gid` and `Groups`.
    pub fn parse(status: &str) -> Option<CapSets> {
        let value = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name))?;
            Some(line[name.len()..].trim_start_matches(':').trim())
        };
        let field = |name: &str| u64::from_str_radix(value(name)?, 16).ok();
        let ids = |name: &str| {
            let mut ids = [0u32; 4];
            let mut words = value(name)?.split_whitespace();
            for id in &mut ids {
                *id = words.next()?.parse().ok()?;
            }
            Some(ids)
        };
        Some(CapSets {
            effective: field("CapEff")?,
            permitted: field("CapPrm")?,
            inheritable: field("CapInh")?,
            ambient: field("CapAmb")?,
            bounding: field("CapBnd")?,
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            groups: value("Groups").map_or(0, |g| g.split_whitespace().count()),
        })
    }

    /// Whether these sets hold nothing beyond `keep` (the bounding set
    /// only when it was to be emptied) and the ids are `became`'s.
    fn within(&self, keep: u64, bounding: bool, became: Option<(u32, u32)>) -> bool {
        let beyond = |set: u64| set & !keep != 0;
        let switched = became.is_none_or(|(uid, gid)| {
            self.uids == [uid; 4] && self.gids == [gid; 4] && self.groups == 0
        });
        switched
            && !(beyond(self.effective)
                || beyond(self.permitted)
                || self.inheritable != 0
                || self.ambient != 0
                || (bounding && beyond(self.bounding)))
    }
}

/// Which process drops: the agent, or the helper that re-attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Agent,
    Reattacher,
}

/// The capabilities a process keeps once attached: CAP_NET_ADMIN in the
/// helper that re-attaches, and CAP_BPF on kernels older than 6.5, where
/// every bpf(2) call (reading a map at a scrape, creating a link) asks
/// for it.
fn kept(role: Role, kernel_release: &str) -> Vec<Capability> {
    let mut keep = Vec::new();
    if role == Role::Reattacher {
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
/// Switch user ids (to UID and GID) as well.
static SWITCH: AtomicBool = AtomicBool::new(false);
static UID: AtomicU32 = AtomicU32::new(0);
static GID: AtomicU32 = AtomicU32::new(0);

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

/// Drops the calling thread's capabilities to KEEP, switching to UID
/// and GID first when asked. Only system calls: it runs inside the
/// signal handler. The raw calls act on this thread alone, which is the
/// point (glibc's wrappers would signal every thread themselves).
fn drop_this_thread() {
    let keep = KEEP.load(Ordering::SeqCst);
    let switch = SWITCH.load(Ordering::SeqCst);
    let (uid, gid) = (UID.load(Ordering::SeqCst), GID.load(Ordering::SeqCst));
    if switch {
        // SAFETY: setgroups with no groups and a null list; setresgid
        // with integer ids. A failure shows in the /proc check.
        unsafe {
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
            libc::syscall(libc::SYS_setresgid, gid, gid, gid);
        }
    }
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
    if switch {
        // Keep the permitted set across the uid change (it would be
        // cleared), so capset below can keep what KEEP names.
        // SAFETY: prctl and setresuid with integer arguments.
        unsafe {
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
            libc::syscall(libc::SYS_setresuid, uid, uid, uid);
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        }
    }
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

/// Drops every thread to what `role` needs once attached (see the
/// module's text), becomes `identity` when given, and logs what was kept:
/// the one call of `nta run`, `nta capture` and the re-attach helper.
pub fn drop_after_attach(
    role: Role,
    identity: Option<&Identity>,
) -> Result<(), LeastPrivilegeError> {
    let keep = kept(role, &kernel_release());
    let sets = drop_to(&keep, identity)?;
    let names: Vec<&str> = keep
        .iter()
        .filter(|c| sets.effective & (1 << c.bit) != 0)
        .map(|c| c.name)
        .collect();
    let kept = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    match identity {
        Some(id) => tracing::info!(
            kept = %kept,
            user = %id.name,
            uid = id.uid,
            "capabilities dropped and user switched in every thread"
        ),
        None => tracing::info!(kept = %kept, "capabilities dropped in every thread"),
    }
    Ok(())
}

/// Drops every thread of this process to `keep` (what it has of it),
/// becoming `identity` on the way.
fn drop_to(
    keep: &[Capability],
    identity: Option<&Identity>,
) -> Result<CapSets, LeastPrivilegeError> {
    let mine = threads()
        .into_iter()
        .map(|(_, s)| s.permitted)
        .fold(u64::MAX, |a, p| a & p);
    let keep_mask = keep.iter().fold(0u64, |m, c| m | (1 << c.bit)) & mine;
    // Emptying the bounding set takes CAP_SETPCAP (root has it).
    let bounding = mine & (1 << 8) != 0;
    let became = identity.map(|id| (id.uid, id.gid));
    KEEP.store(keep_mask, Ordering::SeqCst);
    BOUNDING.store(bounding, Ordering::SeqCst);
    SWITCH.store(became.is_some(), Ordering::SeqCst);
    UID.store(became.map_or(0, |b| b.0), Ordering::SeqCst);
    GID.store(became.map_or(0, |b| b.1), Ordering::SeqCst);
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
            .filter(|(_, s)| !s.within(keep_mask, bounding, became))
            .collect();
        let Some(&(tid, sets)) = left.first() else {
            break;
        };
        if Instant::now() > deadline {
            return Err(LeastPrivilegeError::Stuck {
                tid,
                sets: format!("{sets:x?}"),
                user: identity.map_or_else(|| "the same user".into(), |id| id.name.clone()),
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
        let s = "Name:\tnta\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t0 4 \n\
                 CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                 CapEff:\t0000000000001000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let c = CapSets::parse(s).unwrap_or_default();
        assert_eq!(c.effective, 1 << 12);
        assert_eq!(c.permitted, 0x1ff_ffff_ffff);
        assert_eq!((c.uids, c.groups), ([0; 4], 2));
        assert!(
            !c.within(1 << 12, false, None),
            "permitted still holds more"
        );
        let dropped = CapSets {
            effective: 1 << 12,
            permitted: 1 << 12,
            bounding: 1 << 12,
            ..CapSets::default()
        };
        assert!(dropped.within(1 << 12, true, None));
        assert!(
            !dropped.within(1 << 12, true, Some((65534, 65534))),
            "still root"
        );
        let became = CapSets {
            uids: [65534; 4],
            gids: [65534; 4],
            ..dropped
        };
        assert!(became.within(1 << 12, true, Some((65534, 65534))));
    }

    #[test]
    fn what_is_kept_depends_on_the_role_and_the_kernel() {
        assert_eq!(kept(Role::Reattacher, "6.18.44-fc"), [CAP_NET_ADMIN]);
        assert!(kept(Role::Agent, "6.5.0").is_empty());
        assert_eq!(kept(Role::Agent, "6.1.0-18-amd64"), [CAP_BPF]);
        assert_eq!(kept(Role::Reattacher, "5.15.0"), [CAP_NET_ADMIN, CAP_BPF]);
        assert_eq!(kept(Role::Agent, "garbage"), [CAP_BPF]);
    }
}
