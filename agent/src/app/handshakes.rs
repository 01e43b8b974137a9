//! A connection's ClientHello and ServerHello, paired into one record:
//! the client's hello waits (bounded, for a few seconds) for the
//! server's answer in the other direction. A hello whose partner never
//! comes is still reported, alone.

use super::{
    ja4::Transport,
    tls::{ClientHello, ServerHello},
    waiting::Pairing,
};
use crate::pipeline::flow::FlowKey;

/// ClientHellos waiting for their ServerHello at once; past it the oldest
/// is reported without one.
pub const MAX_WAITING: usize = 16_384;
/// How long a ClientHello waits for its ServerHello.
pub const WAIT_NS: u64 = 5_000_000_000;
/// How long a ServerHello read before its ClientHello waits for it.
pub const ANSWER_WAIT_NS: u64 = 1_000_000_000;

/// One TLS or QUIC handshake as seen: either hello may be missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// When its first hello was seen whole (a split hello: its last
    /// missing segment).
    pub unix_ns: u64,
    pub ifindex: u32,
    /// Client to server.
    pub client: FlowKey,
    pub transport: Transport,
    pub client_hello: Option<ClientHello>,
    pub server_hello: Option<ServerHello>,
}

/// Hellos waiting for their other half, by the client's flow.
pub struct Handshakes {
    pairs: Pairing<FlowKey, Handshake>,
}

impl Default for Handshakes {
    fn default() -> Handshakes {
        Handshakes {
            pairs: Pairing::new(MAX_WAITING, WAIT_NS, ANSWER_WAIT_NS),
        }
    }
}

/// One handshake of a ClientHello and the ServerHello that answered it.
fn join(mut client: Handshake, server: Handshake) -> Handshake {
    client.server_hello = server.server_hello;
    client
}

impl Handshakes {
    /// A ClientHello sent on `key` (its sender is the client). A second
    /// hello on the connection (after a HelloRetryRequest, or a port
    /// reused) ends the first as it stands.
    pub fn client(
        &mut self,
        key: FlowKey,
        hello: ClientHello,
        transport: Transport,
        unix_ns: u64,
        ifindex: u32,
    ) {
        let h = Handshake {
            unix_ns,
            ifindex,
            client: key,
            transport,
            client_hello: Some(hello),
            server_hello: None,
        };
        self.pairs.opening(key, h, unix_ns, join);
    }

    /// A ServerHello sent on `key` (its sender is the server); it may
    /// come before its ClientHello when each is read on another
    /// interface.
    pub fn server(
        &mut self,
        key: FlowKey,
        hello: ServerHello,
        transport: Transport,
        unix_ns: u64,
        ifindex: u32,
    ) {
        let client = key.reversed();
        let h = Handshake {
            unix_ns,
            ifindex,
            client,
            transport,
            client_hello: None,
            server_hello: Some(hello),
        };
        self.pairs.answering(client, h, unix_ns, join);
    }

    /// Ends hellos that waited their time alone.
    pub fn expire(&mut self, now_ns: u64) {
        self.pairs.expire(now_ns);
    }

    /// Ends everything still waiting (at stop, at a file's end).
    pub fn finish(&mut self) {
        self.pairs.finish();
    }

    /// Handshakes complete or given up since the last call.
    pub fn take(&mut self) -> Vec<Handshake> {
        self.pairs.take()
    }

    /// Hellos waiting: ClientHellos, ServerHellos.
    pub fn waiting(&self) -> (usize, usize) {
        self.pairs.waiting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey::between_test_hosts(port, 443, 6)
    }

    fn client(name: &str) -> ClientHello {
        ClientHello {
            server_name: Some(name.into()),
            ..ClientHello::default()
        }
    }

    fn server(cipher: u16) -> ServerHello {
        ServerHello {
            version: 0x0304,
            cipher_suite: cipher,
            alpn: None,
        }
    }

    #[test]
    fn the_answer_in_the_other_direction_completes_the_handshake() {
        let mut h = Handshakes::default();
        h.client(key(1), client("a.example"), Transport::Tcp, 10, 3);
        h.client(key(2), client("b.example"), Transport::Tcp, 11, 3);
        assert!(h.take().is_empty());
        h.server(key(1).reversed(), server(0x1301), Transport::Tcp, 12, 3);
        let done = h.take();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].client, key(1));
        assert_eq!(done[0].unix_ns, 10);
        assert_eq!(done[0].server_hello, Some(server(0x1301)));
        // A server hello of a client nobody saw is reported alone, after
        // waiting for it a little.
        h.server(key(9).reversed(), server(0x1302), Transport::Tcp, 13, 3);
        assert!(h.take().is_empty());
        h.expire(13 + ANSWER_WAIT_NS);
        let alone = h.take();
        assert_eq!(
            (alone[0].client, alone[0].client_hello.is_none()),
            (key(9), true)
        );
        // Unanswered: after the wait, and at the end.
        h.expire(11 + WAIT_NS - 1);
        assert!(h.take().is_empty());
        h.expire(11 + WAIT_NS);
        let late = h.take();
        assert_eq!((late.len(), late[0].server_hello.is_none()), (1, true));
        // Read in the other order, they still make one handshake.
        h.server(key(4).reversed(), server(0x1303), Transport::Tcp, 30, 3);
        h.client(key(4), client("d.example"), Transport::Tcp, 29, 3);
        assert_eq!(h.take()[0].server_hello, Some(server(0x1303)));
        h.client(key(3), client("c.example"), Transport::Quic, 20, 3);
        h.finish();
        assert_eq!(h.take().len(), 1);
    }

    #[test]
    fn a_crowd_of_unanswered_hellos_is_reported_not_lost() {
        let mut h = Handshakes::default();
        for port in 0..(MAX_WAITING as u32 + 5) {
            h.client(
                key(port as u16),
                client("x"),
                Transport::Tcp,
                u64::from(port),
                1,
            );
        }
        assert_eq!(h.waiting().0, MAX_WAITING);
        assert_eq!(h.take().len(), 5);
        h.finish();
        assert_eq!(h.take().len(), MAX_WAITING);
    }
}
