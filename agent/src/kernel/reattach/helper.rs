//! The re-attach helper: the one long-lived part of nta that keeps a
//! capability. `nta run` starts it (`nta reattach-helper`, hidden) after
//! attaching, hands it the loaded programs' descriptors over its stdin (a
//! unix socket) and drops every capability itself. The helper keeps only
//! CAP_NET_ADMIN, becomes the same user, reads no packet, config or
//! network input, and does one thing: every second it looks each watched
//! interface up by name, and attaches the program again to one that came
//! back under a new ifindex, reporting each attachment on stdout. It
//! exits when nta closes the socket (nta stopped or died), and its links
//! go with it.

use std::{
    io::{self, Write},
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    time::Duration,
};

use nix::{
    cmsg_space,
    sys::socket::{ControlMessageOwned, MsgFlags, recvmsg},
};

use super::{ReattachError, Report, link};
use crate::kernel::{
    identity::Identity,
    iface,
    least_privilege::{self, Role},
    sensor::ModeChoice,
};

/// `nta reattach-helper`: started by `nta run`, not by hand.
#[derive(Debug, clap::Args)]
pub struct HelperArgs {
    /// NAME=IFINDEX of each watched interface, in the order of the
    /// program descriptors sent on stdin.
    #[arg(long = "iface", value_name = "NAME=IFINDEX", required = true)]
    pub interfaces: Vec<String>,
    #[arg(long, value_enum)]
    pub xdp_mode: ModeChoice,
    /// UID:GID to become (as nta does).
    #[arg(long, value_name = "UID:GID")]
    pub become_ids: Option<String>,
}

/// One watched interface in the helper.
struct Interface {
    name: String,
    program: OwnedFd,
    /// The ifindex the program is attached to (nta's own link at first).
    attached: u32,
    /// The link made here, if any (closing it detaches).
    link: Option<OwnedFd>,
    last_error: Option<String>,
}

pub fn run(args: HelperArgs) -> Result<(), ReattachError> {
    let parent = io::stdin();
    let socket = parent.as_fd();
    let mut interfaces = Vec::with_capacity(args.interfaces.len());
    for spec in &args.interfaces {
        let (name, ifindex) = spec
            .split_once('=')
            .and_then(|(n, i)| Some((n.to_string(), i.parse::<u32>().ok()?)))
            .ok_or_else(|| ReattachError::Protocol(format!("bad --iface {spec:?}")))?;
        interfaces.push(Interface {
            name,
            program: receive_fd(socket)?,
            attached: ifindex,
            link: None,
            last_error: None,
        });
    }
    let identity = match &args.become_ids {
        Some(ids) => Some(parse_ids(ids)?),
        None => None,
    };
    least_privilege::drop_after_attach(Role::Reattacher, identity.as_ref())?;
    let mut out = io::stdout().lock();
    loop {
        if parent_closed(socket, super::INTERVAL)? {
            return Ok(());
        }
        for (index, i) in interfaces.iter_mut().enumerate() {
            if let Some(report) = check(index, i, args.xdp_mode) {
                // nta gone: nothing left to report to.
                if writeln!(out, "{}", report.to_line())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Attaches again when the interface is back under a new ifindex.
fn check(index: usize, i: &mut Interface, mode: ModeChoice) -> Option<Report> {
    let now = iface::ifindex(&i.name).ok()?;
    if now == i.attached {
        return None;
    }
    match link::attach_first(i.program.as_fd(), now, mode) {
        Ok((link, mode)) => {
            i.link = Some(link);
            i.attached = now;
            i.last_error = None;
            Some(Report::Attached {
                index,
                mode,
                ifindex: now,
            })
        }
        // Retried every second; reported when it changes.
        Err(error) if i.last_error.as_ref() != Some(&error) => {
            i.last_error = Some(error.clone());
            Some(Report::Failed { index, error })
        }
        Err(_) => None,
    }
}

/// Waits up to `wait` for nta to close the socket.
fn parent_closed(socket: BorrowedFd<'_>, wait: Duration) -> Result<bool, ReattachError> {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we pass.
    let n = unsafe { libc::poll(&mut poll, 1, wait.as_millis() as libc::c_int) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(ReattachError::Socket(e))
        };
    }
    // nta sends nothing after the descriptors: readable is end of file.
    Ok(n > 0)
}

fn receive_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, ReattachError> {
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ReattachError::Socket(e.into()))?;
    for cmsg in msg.cmsgs().map_err(|e| ReattachError::Socket(e.into()))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS installed this descriptor for us alone.
            return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
    }
    Err(ReattachError::Protocol(
        "no program descriptor from nta".into(),
    ))
}

fn parse_ids(ids: &str) -> Result<Identity, ReattachError> {
    let (uid, gid) = ids
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or_else(|| ReattachError::Protocol(format!("bad --become-ids {ids:?}")))?;
    Ok(Identity {
        name: ids.to_string(),
        uid,
        gid,
    })
}
