//! The application step: selected frames in, handshake records out. The
//! same for `nta run` (frames from the kernel's app ring) and `nta
//! analyze` (frames picked by [`super::select::Selector`]).

use std::sync::Arc;

use agent_common::app::AppKind;

use super::{
    handshakes::{Handshake, Handshakes},
    ja4::Transport,
    packet::AppPacket,
    reassemble::HelloAssembler,
    stats::AppStats,
    tls::{self, Hello, offered_version, version_slot},
};

/// One selected frame.
#[derive(Clone, Copy, Debug)]
pub struct AppFrame<'a> {
    pub kind: AppKind,
    pub unix_ns: u64,
    pub ifindex: u32,
    /// Its length on the wire (`data` may be cut shorter).
    pub frame_len: u64,
    pub data: &'a [u8],
}

pub struct AppEngine {
    assembler: HelloAssembler,
    handshakes: Handshakes,
    stats: Arc<AppStats>,
}

impl AppEngine {
    pub fn new(stats: Arc<AppStats>) -> AppEngine {
        AppEngine {
            assembler: HelloAssembler::default(),
            handshakes: Handshakes::default(),
            stats,
        }
    }

    pub fn stats(&self) -> &Arc<AppStats> {
        &self.stats
    }

    pub fn push(&mut self, f: &AppFrame<'_>) {
        self.stats.frame(f.kind);
        let Some(p) = AppPacket::parse(f.data, f.frame_len) else {
            self.stats.unreadable();
            return;
        };
        let hello = match (f.kind, p.tcp_seq) {
            (AppKind::TlsHandshake, Some(seq)) => {
                self.assembler.first(p.key, seq, p.payload, f.unix_ns)
            }
            (AppKind::TlsContinuation, Some(seq)) => self.assembler.next(&p.key, seq, p.payload),
            // DNS and QUIC are read by the next steps of this work.
            _ => None,
        };
        if let Some(bytes) = hello {
            self.hello(&bytes, &p, Transport::Tcp, f);
        }
    }

    fn hello(&mut self, bytes: &[u8], p: &AppPacket<'_>, transport: Transport, f: &AppFrame<'_>) {
        match tls::parse_record(bytes) {
            Ok(Hello::Client(c)) => self
                .handshakes
                .client(p.key, c, transport, f.unix_ns, f.ifindex),
            Ok(Hello::Server(s)) => self
                .handshakes
                .server(p.key, s, transport, f.unix_ns, f.ifindex),
            Err(e) => self.stats.tls_error(e),
        }
    }

    /// Housekeeping with the time of the traffic: gives up on hellos
    /// that will not complete and reports unanswered ones.
    pub fn tick(&mut self, unix_ns: u64) {
        self.assembler.expire(unix_ns);
        self.handshakes.expire(unix_ns);
    }

    /// At stop or a file's end: everything still waiting is reported.
    pub fn finish(&mut self) {
        self.handshakes.finish();
    }

    /// Handshakes ended since the last call, counted.
    pub fn take(&mut self) -> Vec<Handshake> {
        for u in self.assembler.take_unfinished() {
            self.stats.unfinished(u);
        }
        let done = self.handshakes.take();
        for h in &done {
            self.stats.handshake(version_slot(version(h)), h.transport);
        }
        done
    }
}

/// The handshake's version: the server's choice, else the best the
/// client offered.
pub fn version(h: &Handshake) -> u16 {
    match (&h.server_hello, &h.client_hello) {
        (Some(s), _) => s.version,
        (None, Some(c)) => offered_version(c),
        (None, None) => 0,
    }
}
