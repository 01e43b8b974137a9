//! Sends raw frames out of an interface inside a namespace with an
//! AF_PACKET socket, from a thread that joins the namespace (setns applies
//! to the calling thread only, so the test process stays where it is).

use std::{ffi::CString, thread, time::Duration};

use crate::netns::{LabError, run_in_netns};

/// Runs `work` with a packet socket on `iface` inside the namespace `ns`.
fn with_socket_in_netns(
    ns: &str,
    iface: &str,
    work: impl FnOnce(&PacketSocket) -> Result<u64, LabError> + Send,
) -> Result<u64, LabError> {
    run_in_netns(ns, || work(&PacketSocket::open(iface)?))?
}

/// Sends each frame `repeat` times, in order, from `iface` in the
/// namespace named `ns`. Returns the number of frames sent.
pub fn send_frames(
    ns: &str,
    iface: &str,
    frames: &[Vec<u8>],
    repeat: usize,
) -> Result<u64, LabError> {
    let frames = frames.to_vec();
    with_socket_in_netns(ns, iface, move |sock| {
        let mut sent = 0u64;
        for _ in 0..repeat {
            for f in &frames {
                sock.send(f)?;
                sent += 1;
            }
        }
        Ok(sent)
    })
}

/// Sends frames at roughly `pps` for at most `duration`, cycling through
/// them; bounded by both time and `max_frames`.
pub fn send_paced(
    ns: &str,
    iface: &str,
    frames: &[Vec<u8>],
    pps: u32,
    duration: Duration,
    max_frames: u64,
) -> Result<u64, LabError> {
    let frames = frames.to_vec();
    with_socket_in_netns(ns, iface, move |sock| {
        let start = std::time::Instant::now();
        let mut sent = 0u64;
        let interval = Duration::from_secs_f64(1.0 / f64::from(pps.max(1)));
        while start.elapsed() < duration && sent < max_frames && !frames.is_empty() {
            let f = &frames[(sent % frames.len() as u64) as usize];
            sock.send(f)?;
            sent += 1;
            let due = interval.mul_f64(sent as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
        Ok(sent)
    })
}

/// A raw AF_PACKET socket bound to one interface. Hand-written: std has no
/// AF_PACKET support and the two syscalls do not justify a crate.
struct PacketSocket {
    fd: i32,
    ifindex: i32,
}

impl PacketSocket {
    fn open(iface: &str) -> Result<PacketSocket, LabError> {
        let c =
            CString::new(iface).map_err(|_| LabError::Other("interface name has NUL".into()))?;
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(LabError::Other(format!(
                "no interface {iface} in this namespace"
            )));
        }
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(LabError::Io(std::io::Error::last_os_error()));
        }
        Ok(PacketSocket { fd, ifindex })
    }

    fn send(&self, frame: &[u8]) -> Result<(), LabError> {
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        loop {
            // SAFETY: frame and addr outlive the call; sizes are correct.
            let rc = unsafe {
                libc::sendto(
                    self.fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            // The device queue is momentarily full: wait and retry, so the
            // count of frames sent stays exact.
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EAGAIN) {
                thread::sleep(Duration::from_micros(50));
                continue;
            }
            return Err(LabError::Io(e));
        }
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}
