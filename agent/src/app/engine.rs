//! The application step: selected frames in, handshake and DNS
//! transaction records out. The
//! same for `nta run` (frames from the kernel's app ring) and `nta
//! analyze` (frames picked by [`super::select::Selector`]).

use std::sync::Arc;

use agent_common::app::{AppKind, MAX_HANDSHAKE_BYTES, handshake_bytes};

use crate::pipeline::flow::FlowKey;

use super::{
    dns,
    dns_transactions::{DnsTransaction, DnsTransactions},
    flow_names::FlowNameTable,
    handshakes::{Handshake, Handshakes},
    ja4::Transport,
    packet::AppPacket,
    quic::{self, Side},
    reassemble::{SegmentAssembler, Unfinished},
    stats::{AppProtocol, AppStats},
    tls::{self, Hello, offered_version, version_slot},
    waiting::Waiting,
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

/// QUIC clients whose DCID is kept at once, and for how long.
const QUIC_CLIENTS: usize = 4096;
const QUIC_CLIENT_NS: u64 = 30_000_000_000;

pub struct AppEngine {
    /// Hellos that span segments.
    hellos: SegmentAssembler,
    /// DNS messages over TCP that span segments.
    dns_streams: SegmentAssembler,
    /// Hellos in CRYPTO frames that span QUIC Initial packets.
    quic_streams: SegmentAssembler,
    /// The DCID of each QUIC client's latest Initial, by its flow: the
    /// server's Initials are protected with keys from it.
    quic_clients: Waiting<FlowKey, Vec<u8>>,
    handshakes: Handshakes,
    dns: DnsTransactions,
    stats: Arc<AppStats>,
    /// Where flow records find the names, noted as soon as a ClientHello
    /// or a DNS question is read (a flow may end before its handshake is
    /// answered).
    flow_names: Option<Arc<FlowNameTable>>,
}

impl AppEngine {
    pub fn new(stats: Arc<AppStats>) -> AppEngine {
        AppEngine {
            hellos: SegmentAssembler::default(),
            dns_streams: SegmentAssembler::default(),
            quic_streams: SegmentAssembler::default(),
            quic_clients: Waiting::new(QUIC_CLIENTS, QUIC_CLIENT_NS),
            handshakes: Handshakes::default(),
            dns: DnsTransactions::default(),
            stats,
            flow_names: None,
        }
    }

    /// The engine noting server names and DNS questions in `table`.
    pub fn with_flow_names(mut self, table: Option<Arc<FlowNameTable>>) -> AppEngine {
        self.flow_names = table;
        self
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
            (AppKind::TlsHandshake, Some(seq)) => p
                .payload
                .get(..9)
                .and_then(|h| handshake_bytes(h.try_into().ok()?))
                .and_then(|needed| {
                    let needed = needed.min(MAX_HANDSHAKE_BYTES) as usize;
                    self.hellos.first(p.key, seq, p.payload, needed, f.unix_ns)
                }),
            (AppKind::TlsContinuation, Some(seq)) => self.hellos.next(&p.key, seq, p.payload),
            (AppKind::Dns, None) => {
                self.dns_message(p.payload, &p, f);
                None
            }
            (AppKind::Dns, Some(seq)) => {
                self.dns_segment(seq, &p, f);
                None
            }
            (AppKind::QuicInitial, None) => {
                self.quic(&p, f);
                None
            }
            _ => None,
        };
        if let Some(bytes) = hello {
            self.hello(&bytes, &p, Transport::Tcp, f);
        }
    }

    /// A DNS-over-TCP segment: the rest of a message that waits for it,
    /// or the start of length-prefixed messages.
    fn dns_segment(&mut self, seq: u32, p: &AppPacket<'_>, f: &AppFrame<'_>) {
        if self.dns_streams.is_pending(&p.key) {
            if let Some(m) = self.dns_streams.next(&p.key, seq, p.payload) {
                self.dns_message(m.get(2..).unwrap_or_default(), p, f);
            }
            return;
        }
        let (whole, rest) = dns::tcp_messages(p.payload);
        for m in whole {
            self.dns_message(m, p, f);
        }
        if let Some((at, needed)) = rest {
            let start = seq.wrapping_add(at as u32);
            let tail = p.payload.get(at..).unwrap_or_default();
            // A segment cut by the copy length cannot begin a message the
            // next segment completes: its missing bytes are lost.
            if p.cut {
                self.stats.dns_error(dns::DnsError::CutShort);
            } else {
                self.dns_streams
                    .first(p.key, start, tail, needed, f.unix_ns);
            }
        }
    }

    /// A datagram that begins with a QUIC Initial: opened with the
    /// client's keys, or with the server's when it answers a client seen.
    fn quic(&mut self, p: &AppPacket<'_>, f: &AppFrame<'_>) {
        let (side, key_dcid) = match self.quic_clients.get(&p.key.reversed()) {
            Some(dcid) => (Side::Server, Some(dcid.clone())),
            None => (Side::Client, None),
        };
        let (initials, error) = quic::read_datagram(p.payload, side, key_dcid.as_deref());
        if let Some(e) = error {
            self.stats.quic_error(e);
        }
        if side == Side::Client
            && let Some(first) = initials.first()
        {
            self.quic_clients
                .insert(p.key, first.dcid.clone(), f.unix_ns);
            // What it replaced is of no more use.
            self.quic_clients.take();
        }
        for initial in initials {
            for (offset, run) in quic::runs(&initial.crypto) {
                let hello = match (offset, run.get(1..4)) {
                    (0, Some(len)) => {
                        let len = u32::from_be_bytes([0, len[0], len[1], len[2]]);
                        let needed = (4 + len).min(MAX_HANDSHAKE_BYTES) as usize;
                        self.quic_streams.first(p.key, 0, &run, needed, f.unix_ns)
                    }
                    _ => self.quic_streams.next(&p.key, offset as u32, &run),
                };
                if let Some(bytes) = hello {
                    self.hello(&bytes, p, Transport::Quic, f);
                }
            }
        }
    }

    fn dns_message(&mut self, bytes: &[u8], p: &AppPacket<'_>, f: &AppFrame<'_>) {
        match dns::parse(bytes) {
            Ok(m) => {
                self.stats.dns_message(&m);
                if let (Some(table), Some(q)) = (&self.flow_names, &m.question) {
                    let client = if m.response { p.key.reversed() } else { p.key };
                    table.dns_query(client, &q.name, f.unix_ns);
                }
                self.dns.message(p.key, m, f.unix_ns, f.ifindex);
            }
            Err(e) => self.stats.dns_error(e),
        }
    }

    fn hello(&mut self, bytes: &[u8], p: &AppPacket<'_>, transport: Transport, f: &AppFrame<'_>) {
        // QUIC carries bare handshake messages, TLS over TCP records.
        let parsed = match transport {
            Transport::Quic => tls::parse_handshake(bytes),
            _ => tls::parse_record(bytes),
        };
        match parsed {
            Ok(Hello::Client(c)) => {
                if let (Some(table), Some(name)) = (&self.flow_names, &c.server_name) {
                    table.server_name(p.key, name, f.unix_ns);
                }
                self.handshakes
                    .client(p.key, c, transport, f.unix_ns, f.ifindex);
            }
            Ok(Hello::Server(s)) => self
                .handshakes
                .server(p.key, s, transport, f.unix_ns, f.ifindex),
            Err(e) => self.stats.tls_error(e),
        }
    }

    /// Housekeeping with the time of the traffic: gives up on hellos
    /// that will not complete and reports unanswered ones.
    pub fn tick(&mut self, unix_ns: u64) {
        self.hellos.expire(unix_ns);
        self.dns_streams.expire(unix_ns);
        self.quic_streams.expire(unix_ns);
        self.quic_clients.expire(unix_ns);
        self.quic_clients.take();
        self.handshakes.expire(unix_ns);
        self.dns.expire(unix_ns);
    }

    /// At stop or a file's end: everything still waiting is reported.
    pub fn finish(&mut self) {
        self.handshakes.finish();
        self.dns.finish();
    }

    /// Handshakes ended since the last call, counted.
    pub fn take(&mut self) -> Vec<Handshake> {
        self.count_unfinished();
        let done = self.handshakes.take();
        for h in &done {
            self.stats.handshake(version_slot(version(h)), h.transport);
        }
        done
    }

    /// DNS transactions ended since the last call, counted.
    pub fn take_dns(&mut self) -> Vec<DnsTransaction> {
        self.count_unfinished();
        let done = self.dns.take();
        for t in &done {
            self.stats.dns_transaction(t);
        }
        done
    }

    fn count_unfinished(&mut self) {
        let lists: [(AppProtocol, Vec<Unfinished>); 3] = [
            (AppProtocol::Tls, self.hellos.take_unfinished()),
            (AppProtocol::Dns, self.dns_streams.take_unfinished()),
            (AppProtocol::Quic, self.quic_streams.take_unfinished()),
        ];
        for (protocol, list) in lists {
            for u in list {
                self.stats.unfinished(protocol, u);
            }
        }
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

    /// A DNS message: a query for `name` A, or its response with one
    /// address.
    fn dns_message(id: u16, response: bool) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend(if response {
            [0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]
        } else {
            [0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        });
        m.extend([3, b'w', b'w', b'w', 3, b'l', b'a', b'b', 0, 0, 1, 0, 1]);
        if response {
            m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 9]);
        }
        m
    }

    /// From the client, or from the server (port 53) to it.
    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let spec = FrameSpec::ipv4(L4::Udp { sport, dport }).with_payload_bytes(payload);
        let spec = if sport == 53 || sport == 443 {
            spec.with_ipv4(|h| std::mem::swap(&mut h.src, &mut h.dst))
        } else {
            spec
        };
        spec.build()
    }

    /// From the client (port 40000 and up) or, to it, from the server.
    fn segment(sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let spec = FrameSpec::ipv4(L4::Tcp {
            sport,
            dport,
            flags: 0x18,
        })
        .with_tcp_seq(seq)
        .with_payload_bytes(payload);
        let spec = if sport == 443 || sport == 53 {
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
    fn dns_over_udp_and_split_over_tcp_gives_transactions() {
        let stats = Arc::new(AppStats::default());
        let mut e = AppEngine::new(stats.clone());
        push(
            &mut e,
            AppKind::Dns,
            &udp(40000, 53, &dns_message(7, false)),
            100,
        );
        let response = udp(53, 40000, &dns_message(7, true));
        push(&mut e, AppKind::Dns, &response, 350);
        let done = e.take_dns();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].duration_ns, Some(250));
        assert_eq!(
            done[0].response.as_ref().map(|r| r.resolved_ips.clone()),
            Some(vec![std::net::IpAddr::from([198, 18, 0, 9])])
        );
        // Over TCP: the query whole, the response's length prefix and
        // first bytes in one segment, the rest in the next.
        let mut query = (dns_message(8, false).len() as u16).to_be_bytes().to_vec();
        query.extend(dns_message(8, false));
        let mut answer = (dns_message(8, true).len() as u16).to_be_bytes().to_vec();
        answer.extend(dns_message(8, true));
        push(&mut e, AppKind::Dns, &segment(40001, 53, 1, &query), 400);
        let (head, tail) = answer.split_at(10);
        push(&mut e, AppKind::Dns, &segment(53, 40001, 500, head), 410);
        assert!(e.take_dns().is_empty());
        push(&mut e, AppKind::Dns, &segment(53, 40001, 510, tail), 420);
        let done = e.take_dns();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].client.protocol, done[0].duration_ns),
            (6, Some(20))
        );
        assert_eq!(stats.value("nta_dns_queries_total", &[("type", "A")]), 2);
        assert_eq!(
            stats.value("nta_dns_responses_total", &[("rcode", "NOERROR")]),
            2
        );
        assert_eq!(
            stats.value("nta_dns_transactions_total", &[("outcome", "answered")]),
            2
        );
        // Not DNS on the DNS port: a counted reason.
        push(&mut e, AppKind::Dns, &udp(40002, 53, b"hello"), 430);
        assert_eq!(
            stats.value("nta_dns_parse_errors_total", &[("reason", "too_short")]),
            1
        );
    }

    #[test]
    fn a_quic_hello_over_two_initials_and_its_answer_are_one_handshake() {
        use crate::app::quic::{QUIC_V1, QUIC_V2, crypto_frame, seal_initial};
        for version in [QUIC_V1, QUIC_V2] {
            let stats = Arc::new(AppStats::default());
            let mut e = AppEngine::new(stats.clone());
            let hello = nta_lab::tls::post_quantum("quic.example").handshake();
            let dcid = [0x51; 8];
            let scid = [0x52; 4];
            // The hello's second part first in the packet, as Chrome sends.
            let mut first = crypto_frame(700, &hello[700..1000]);
            first.extend(crypto_frame(0, &hello[..700]));
            let second = crypto_frame(1000, &hello[1000..]);
            let initial = |pn, payload: &[u8]| {
                seal_initial(version, Side::Client, &dcid, (&dcid, &scid), pn, payload)
                    .unwrap_or_else(|| panic!("seal"))
            };
            let udp_from_client = |payload: &[u8]| udp(40000, 443, payload);
            push(
                &mut e,
                AppKind::QuicInitial,
                &udp_from_client(&initial(0, &first)),
                10,
            );
            push(
                &mut e,
                AppKind::QuicInitial,
                &udp_from_client(&initial(1, &second)),
                11,
            );
            // The server's Initial: keys from the client's DCID, its own
            // connection IDs in the header.
            // A bare ServerHello (no record header in QUIC), 40 bytes.
            let mut server = vec![0x02, 0x00, 0x00, 0x28, 0x03, 0x03];
            server.extend([7; 32]);
            server.extend([0, 0x13, 0x02, 0, 0, 0]);
            let answer = seal_initial(
                version,
                Side::Server,
                &dcid,
                (&scid, &[0x53; 8]),
                0,
                &crypto_frame(0, &server),
            )
            .unwrap_or_else(|| panic!("seal"));
            push(&mut e, AppKind::QuicInitial, &udp(443, 40000, &answer), 12);
            let done = e.take();
            assert_eq!(done.len(), 1, "{version:x}");
            let h = &done[0];
            assert_eq!(h.transport, Transport::Quic);
            assert_eq!((h.client.src_port, h.unix_ns), (40000, 11));
            assert_eq!(
                h.client_hello
                    .as_ref()
                    .and_then(|c| c.server_name.as_deref()),
                Some("quic.example")
            );
            assert_eq!(
                h.server_hello.as_ref().map(|s| s.cipher_suite),
                Some(0x1302)
            );
            assert_eq!(
                stats.value(
                    "nta_tls_handshakes_total",
                    &[("version", "tls1.2"), ("transport", "quic")]
                ),
                1
            );
            // A datagram that only looks like an Initial: a counted reason.
            let mut forged = udp_from_client(&initial(2, &second));
            let last = forged.len() - 1;
            forged[last] ^= 0xff;
            push(&mut e, AppKind::QuicInitial, &forged, 13);
            assert_eq!(
                stats.value(
                    "nta_quic_parse_errors_total",
                    &[("reason", "decrypt_failed")]
                ),
                1
            );
        }
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
