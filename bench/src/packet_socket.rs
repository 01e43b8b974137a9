//! The generator's fallback sender: an AF_PACKET socket on the sending
//! interface, batches of `sendmmsg`, each frame rewritten here as the XDP
//! generator would rewrite it. Some kernels refuse BPF_PROG_TEST_RUN's
//! live-frames mode (EPERM, e.g. inside a user namespace, where the
//! `capable()` checks of init's namespace fail); traffic then still flows,
//! slower. Written by hand: no maintained crate sends raw frames in
//! batches with `sendmmsg`.

use std::io;

use agent_common::generator::{
    GenConfig, LAB_NET_V4, LAB_NET_V4_HOST_BITS, MODE_MANY_FLOWS, MODE_RANDOM_SOURCE,
    many_flows_tuple,
};

/// Frames per `sendmmsg`.
const BATCH: usize = 64;

pub struct PacketSocket {
    fd: i32,
    /// xorshift state for random sources (the lab range only).
    rng: u64,
    /// The next flow of `MODE_MANY_FLOWS`.
    flow: u32,
}

impl PacketSocket {
    /// A raw packet socket bound to `ifindex` (in the caller's namespace).
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let s = PacketSocket {
            fd,
            rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()),
            flow: 0,
        };
        // SAFETY: a zeroed sockaddr_ll is valid; the fields set are plain
        // integers; bind(2) reads `size_of` bytes of it.
        let rc = unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = ifindex as i32;
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // Straight to the driver, past the qdisc: the generator's frames
        // need no queueing discipline.
        let one: i32 = 1;
        // SAFETY: setsockopt(2) reading an i32 we own.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(s)
    }

    fn rewrite(&mut self, frame: &mut [u8], c: &GenConfig) {
        let (l3, l4) = (c.l3_offset as usize, c.l4_offset as usize);
        if frame.len() < l3 + 20 || frame.len() < l4 + 4 {
            return;
        }
        match c.mode {
            MODE_RANDOM_SOURCE => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let r = (self.rng >> 32) as u32;
                let addr = LAB_NET_V4 | (r >> (32 - LAB_NET_V4_HOST_BITS));
                frame[l3 + 12..l3 + 16].copy_from_slice(&addr.to_be_bytes());
            }
            MODE_MANY_FLOWS => {
                let flows = c.flows.max(1);
                let (addr, port) = many_flows_tuple(self.flow % flows);
                self.flow = self.flow.wrapping_add(1);
                frame[l3 + 12..l3 + 16].copy_from_slice(&addr.to_be_bytes());
                frame[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
            }
            _ => {}
        }
    }

    /// Sends `count` copies of `template`, each rewritten per `config`;
    /// returns once all went out (the socket blocks while the device
    /// queue is full).
    pub fn send(&mut self, template: &[u8], config: &GenConfig, count: u64) -> io::Result<()> {
        let mut frames = vec![template.to_vec(); BATCH];
        let mut iov: Vec<libc::iovec> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: a zeroed mmsghdr is valid (no name, no control).
        let mut msgs: Vec<libc::mmsghdr> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let rewrites = config.mode == MODE_RANDOM_SOURCE || config.mode == MODE_MANY_FLOWS;
        let mut left = count;
        while left > 0 {
            let n = (left as usize).min(BATCH);
            if rewrites {
                for f in frames.iter_mut().take(n) {
                    self.rewrite(f, config);
                }
            }
            let mut done = 0;
            while done < n {
                // SAFETY: `msgs[done..n]` point at `iov` and `frames`,
                // which live (unmoved) until the end of this function.
                let sent = unsafe {
                    libc::sendmmsg(self.fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0)
                };
                if sent < 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == io::ErrorKind::Interrupted
                    {
                        std::thread::yield_now();
                        continue;
                    }
                    return Err(e);
                }
                done += sent as usize;
            }
            left -= n as u64;
        }
        Ok(())
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}
