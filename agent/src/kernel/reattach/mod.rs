//! Interfaces come and go (a VM's tap, a container's veth, a renamed
//! NIC): every second nta checks that each watched interface still exists
//! under its name with the ifindex it attached to. Gone: the attachment is
//! forgotten and `nta_xdp_attached` shows 0. Back (a new ifindex under the
//! same name): the re-attach helper (`helper`, a process of its own that
//! keeps CAP_NET_ADMIN while nta keeps nothing) attaches the same loaded
//! program, with the same maps and counters, and reports it here.

pub mod helper;
pub mod link;

use std::{
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout},
    sync::watch,
};

use crate::kernel::{
    identity::Identity,
    iface,
    least_privilege::LeastPrivilegeError,
    sensor::{AttachMode, ModeChoice, Sensor},
};

pub const INTERVAL: Duration = Duration::from_secs(1);

/// nta's own running binary (the same image even if the file on disk was
/// replaced by an upgrade): the helper is nta, not an external program.
const OWN_BINARY: &str = "/proc/self/exe";

#[derive(Debug, thiserror::Error)]
pub enum ReattachError {
    #[error("starting the re-attach helper: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the re-attach helper's socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("re-attach helper: {0}")]
    Protocol(String),
    #[error(transparent)]
    LeastPrivilege(#[from] LeastPrivilegeError),
}

/// What the helper tells nta, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Attached {
        index: usize,
        mode: AttachMode,
        ifindex: u32,
    },
    Failed {
        index: usize,
        error: String,
    },
}

impl Report {
    pub fn to_line(&self) -> String {
        match self {
            Report::Attached {
                index,
                mode,
                ifindex,
            } => format!("attached {index} {mode} {ifindex}"),
            Report::Failed { index, error } => format!("failed {index} {error}"),
        }
    }

    pub fn parse(line: &str) -> Option<Report> {
        let mut words = line.splitn(3, ' ');
        let kind = words.next()?;
        let index = words.next()?.parse().ok()?;
        let rest = words.next()?;
        match kind {
            "attached" => {
                let (mode, ifindex) = rest.split_once(' ')?;
                Some(Report::Attached {
                    index,
                    mode: AttachMode::from_label(mode)?,
                    ifindex: ifindex.parse().ok()?,
                })
            }
            "failed" => Some(Report::Failed {
                index,
                error: rest.to_string(),
            }),
            _ => None,
        }
    }
}

/// One watched interface, as nta sees it.
pub struct Watched {
    pub name: String,
    /// The ifindex nta's own link was made on.
    pub ifindex: u32,
    pub sensor: Arc<Mutex<Sensor>>,
    pub attached: Arc<AtomicBool>,
}

/// The running helper: its reports, and the socket whose closing tells
/// it to stop.
pub struct Helper {
    child: Child,
    reports: Lines<BufReader<ChildStdout>>,
    socket: OwnedFd,
}

impl Helper {
    /// Starts `nta reattach-helper` with each interface's program (sent
    /// over a socket on its stdin) before nta drops its capabilities, so
    /// the helper starts with them and keeps what it needs.
    pub fn spawn(
        interfaces: &[(String, u32, BorrowedFd<'_>)],
        mode: ModeChoice,
        identity: Option<&Identity>,
    ) -> Result<Helper, ReattachError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ReattachError::Socket(e.into()))?;
        let mode = clap::ValueEnum::to_possible_value(&mode)
            .ok_or_else(|| ReattachError::Protocol(format!("{mode:?} has no flag value")))?;
        let mut command = tokio::process::Command::new(OWN_BINARY);
        command
            .arg("reattach-helper")
            .arg("--xdp-mode")
            .arg(mode.get_name());
        for (name, ifindex, _) in interfaces {
            command.arg("--iface").arg(format!("{name}={ifindex}"));
        }
        if let Some(id) = identity {
            command
                .arg("--become-ids")
                .arg(format!("{}:{}", id.uid, id.gid));
        }
        let mut child = command
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(ReattachError::Spawn)?;
        for (_, _, program) in interfaces {
            sendmsg::<()>(
                ours.as_raw_fd(),
                &[std::io::IoSlice::new(b"p")],
                &[ControlMessage::ScmRights(&[program.as_raw_fd()])],
                MsgFlags::empty(),
                None,
            )
            .map_err(|e| ReattachError::Socket(e.into()))?;
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ReattachError::Protocol("no stdout".into()))?;
        Ok(Helper {
            child,
            reports: BufReader::new(stdout).lines(),
            socket: ours,
        })
    }

    /// Closes the socket and waits for the helper (its links go with it).
    async fn stop(mut self) {
        drop(self.socket);
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("the re-attach helper did not stop; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// nta's view of one interface while it runs.
struct State {
    watched: Watched,
    /// The ifindex the program is attached to now (None: gone).
    current: Option<u32>,
    /// Said once per replacement that nothing attaches again.
    told: bool,
}

impl State {
    /// One check: a gone or replaced interface is detached until the
    /// helper reports it attached again.
    fn check(&mut self, reattaching: bool) {
        let now = iface::ifindex(&self.watched.name).ok();
        let name = self.watched.name.clone();
        match (self.current, now) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), now) => {
                self.forget();
                self.told = false;
                match now {
                    None => {
                        tracing::warn!(interface = %name, "interface is gone; XDP detached until it comes back")
                    }
                    Some(_) => {
                        tracing::warn!(interface = %name, "interface was replaced; XDP detached")
                    }
                }
            }
            (None, Some(_)) if !reattaching && !self.told => {
                self.told = true;
                tracing::warn!(interface = %name, "interface is back; not attaching again (--reattach=false)");
            }
            (None, _) => {}
        }
    }

    fn forget(&mut self) {
        self.current = None;
        self.watched.attached.store(false, Ordering::Relaxed);
        // nta's own link died with its interface.
        if let Ok(mut sensor) = self.watched.sensor.lock() {
            sensor.forget_attachment();
        }
    }

    fn report(&mut self, report: Report) {
        let name = &self.watched.name;
        match report {
            Report::Attached { mode, ifindex, .. } => {
                if let Ok(mut sensor) = self.watched.sensor.lock() {
                    sensor.forget_attachment();
                }
                self.current = Some(ifindex);
                self.watched.attached.store(true, Ordering::Relaxed);
                tracing::info!(interface = %name, mode = %mode, "interface is back; XDP attached again");
            }
            Report::Failed { error, .. } => {
                tracing::warn!(interface = %name, error = %error, "re-attaching XDP failed; retrying");
            }
        }
    }
}

/// Watches the interfaces until shutdown, with the helper's reports when
/// re-attaching is on.
pub async fn run(
    watched: Vec<Watched>,
    mut helper: Option<Helper>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut states: Vec<State> = watched
        .into_iter()
        .map(|w| State {
            current: Some(w.ifindex),
            watched: w,
            told: false,
        })
        .collect();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reattaching = helper.is_some();
        let line = async {
            match helper.as_mut() {
                Some(h) => h.reports.next_line().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                for s in &mut states {
                    s.check(reattaching);
                }
            }
            line = line => match line {
                Ok(Some(line)) => match Report::parse(&line) {
                    Some(r) => {
                        let index = match &r {
                            Report::Attached { index, .. } | Report::Failed { index, .. } => *index,
                        };
                        if let Some(s) = states.get_mut(index) {
                            s.report(r);
                        }
                    }
                    None => tracing::warn!(line = %line, "unreadable report from the re-attach helper"),
                },
                _ => {
                    tracing::error!("the re-attach helper exited; interfaces that come back stay detached until nta restarts");
                    helper = None;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(h) = helper {
        h.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_back_as_written() {
        for r in [
            Report::Attached {
                index: 2,
                mode: AttachMode::Skb,
                ifindex: 17,
            },
            Report::Failed {
                index: 0,
                error: "native mode: Device or resource busy (os error 16)".into(),
            },
        ] {
            assert_eq!(Report::parse(&r.to_line()), Some(r));
        }
        assert_eq!(Report::parse("attached 1 warp 3"), None);
        assert_eq!(Report::parse("hello"), None);
    }
}
