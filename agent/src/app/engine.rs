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

#[cfg(test)]
mod tests {
    use nta_lab::frames::{FrameSpec, L4};

    use super::*;

    /// From the client (port 40000 and up) or, to it, from the server.
    fn segment(sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let spec = FrameSpec::ipv4(L4::Tcp {
            sport,
            dport,
            flags: 0x18,
        })
        .with_tcp_seq(seq)
        .with_payload_bytes(payload);
        let spec = if sport == 443 {
            spec.with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
        } else {
            spec
        };
        spec.build()
    }

    fn push(e: &mut AppEngine, kind: AppKind, frame: &[u8], unix_ns: u64) {
        e.push(&AppFrame {
            kind,
            unix_ns,
            ifindex: 2,
            frame_len: frame.len() as u64,
            data: frame,
        });
    }

    #[test]
    fn a_split_hello_and_its_answer_are_one_handshake() {
        let stats = Arc::new(AppStats::default());
        let mut e = AppEngine::new(stats.clone());
        let hello = nta_lab::tls::post_quantum("split.example").record();
        let mut server = vec![
            0x16, 0x03, 0x03, 0x00, 0x2c, 0x02, 0x00, 0x00, 0x28, 0x03, 0x03,
        ];
        server.extend([7; 32]);
        server.extend([0, 0x13, 0x01, 0, 0, 0]);
        push(
            &mut e,
            AppKind::TlsHandshake,
            &segment(40000, 443, 1, &hello[..1400]),
            10,
        );
        push(
            &mut e,
            AppKind::TlsContinuation,
            &segment(40000, 443, 1401, &hello[1400..]),
            11,
        );
        assert!(e.take().is_empty(), "waits for the answer");
        push(
            &mut e,
            AppKind::TlsHandshake,
            &segment(443, 40000, 9, &server),
            12,
        );
        let done = e.take();
        assert_eq!(done.len(), 1);
        // Timed when the client's hello was whole (its second segment).
        let h = &done[0];
        assert_eq!(
            (h.client.src_port, h.client.dst_port, h.unix_ns),
            (40000, 443, 11)
        );
        assert_eq!(
            h.client_hello
                .as_ref()
                .and_then(|c| c.server_name.as_deref()),
            Some("split.example")
        );
        assert_eq!(
            h.server_hello.as_ref().map(|s| s.cipher_suite),
            Some(0x1301)
        );
        assert_eq!(
            stats.value(
                "nta_tls_handshakes_total",
                &[("version", "tls1.2"), ("transport", "tcp")]
            ),
            1
        );
        // A record that only looks like a hello is a counted reason.
        let mut bad = server.clone();
        bad[9] = 0xff;
        bad.truncate(20);
        bad[4] = 15;
        push(
            &mut e,
            AppKind::TlsHandshake,
            &segment(443, 40001, 9, &bad),
            13,
        );
        assert!(e.take().is_empty());
        assert_eq!(stats.value("nta_tls_parse_errors_total", &[]), 1);
    }
}
