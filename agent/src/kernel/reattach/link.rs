//! Attaching a loaded XDP program, held only as a descriptor, through a
//! bpf_link. Written by hand because aya 0.14 builds a program object
//! from its own loader or from a bpffs pin only, and the re-attach helper
//! receives a bare descriptor (nta pins nothing). One system call: the
//! link lives as long as its descriptor, so a killed helper leaves
//! nothing attached.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use crate::kernel::sensor::{AttachMode, ModeChoice};

const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type`'s BPF_XDP.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

fn flags(mode: AttachMode) -> u32 {
    match mode {
        AttachMode::Native => XDP_FLAGS_DRV_MODE,
        AttachMode::Skb => XDP_FLAGS_SKB_MODE,
    }
}

/// Attaches `program` to `ifindex` in `mode`; the returned descriptor is
/// the link (closing it detaches).
fn attach(program: BorrowedFd<'_>, ifindex: u32, mode: AttachMode) -> io::Result<OwnedFd> {
    // `union bpf_attr`'s link_create: prog_fd, target_ifindex,
    // attach_type, flags; the rest must be zero.
    let mut attr = [0u32; 16];
    attr[0] = program.as_raw_fd() as u32;
    attr[1] = ifindex;
    attr[2] = BPF_XDP;
    attr[3] = flags(mode);
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of the array,
    // which lives for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_LINK_CREATE returns a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Tries each mode of `choice` in turn: the mode in force, or the last
/// error in words.
pub fn attach_first(
    program: BorrowedFd<'_>,
    ifindex: u32,
    choice: ModeChoice,
) -> Result<(OwnedFd, AttachMode), String> {
    let mut last = String::new();
    for &mode in choice.modes() {
        match attach(program, ifindex, mode) {
            Ok(link) => return Ok((link, mode)),
            Err(e) => last = format!("{mode} mode: {}", explain(&e)),
        }
    }
    Err(last)
}

fn explain(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!("{e} (the helper needs CAP_NET_ADMIN)"),
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            format!("{e} (another XDP program is attached)")
        }
        Some(libc::EOPNOTSUPP) => format!("{e} (the driver does not support this mode)"),
        _ => e.to_string(),
    }
}
