//! A DNS query and its response, paired into one transaction by the
//! client's flow and the message id: the query waits (bounded, for a few
//! seconds) for a response in the other direction, which gives the
//! response time. A query nobody answers, or a response whose query was
//! not seen, is still reported, alone.

use super::{dns::DnsMessage, waiting::Waiting};
use crate::pipeline::flow::FlowKey;

/// Queries waiting for their response at once; past it the oldest is
/// reported unanswered.
pub const MAX_WAITING: usize = 65_536;
/// How long a query waits for its response.
pub const WAIT_NS: u64 = 5_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTransaction {
    /// When the query was seen (a response alone: when it was).
    pub unix_ns: u64,
    pub ifindex: u32,
    /// Client to server.
    pub client: FlowKey,
    pub query: Option<DnsMessage>,
    pub response: Option<DnsMessage>,
    /// Response time, when both were seen.
    pub duration_ns: Option<u64>,
}

impl DnsTransaction {
    /// The message that tells what was asked: the query, else the response.
    pub fn asked(&self) -> Option<&DnsMessage> {
        self.query.as_ref().or(self.response.as_ref())
    }
}

/// Queries waiting for their response, by the client's flow and the id.
pub type DnsTransactions = Waiting<(FlowKey, u16), DnsTransaction>;

impl Default for DnsTransactions {
    fn default() -> DnsTransactions {
        Waiting::new(MAX_WAITING, WAIT_NS)
    }
}

impl DnsTransactions {
    /// A message sent on `key` (directional: its sender is the source).
    /// A query sent again with the same id ends the first unanswered.
    pub fn message(&mut self, key: FlowKey, m: DnsMessage, unix_ns: u64, ifindex: u32) {
        let id = m.id;
        if !m.response {
            let t = DnsTransaction {
                unix_ns,
                ifindex,
                client: key,
                query: Some(m),
                response: None,
                duration_ns: None,
            };
            self.insert((key, id), t, unix_ns);
            return;
        }
        let client = key.reversed();
        match self.remove(&(client, id)) {
            Some(mut t) => {
                t.duration_ns = Some(unix_ns.saturating_sub(t.unix_ns));
                t.response = Some(m);
                self.end(t);
            }
            None => self.end(DnsTransaction {
                unix_ns,
                ifindex,
                client,
                query: None,
                response: Some(m),
                duration_ns: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey::between_test_hosts(port, 53, 17)
    }

    fn message(id: u16, response: bool) -> DnsMessage {
        DnsMessage {
            id,
            response,
            opcode: 0,
            flags: 0,
            rcode: 0,
            counts: [1, 0, 0, 0],
            question: None,
            answers: Vec::new(),
            resolved_ips: Vec::new(),
            edns: None,
            len: 30,
            partial: false,
        }
    }

    #[test]
    fn a_response_is_paired_by_flow_and_id_and_timed() {
        let mut t = DnsTransactions::default();
        t.message(key(1000), message(7, false), 100, 2);
        t.message(key(1001), message(7, false), 101, 2);
        // Same id, other client port: not this one's answer.
        t.message(key(1002).reversed(), message(7, true), 150, 2);
        let alone = t.take();
        assert_eq!(alone.len(), 1);
        assert_eq!(
            (alone[0].client, alone[0].query.is_none()),
            (key(1002), true)
        );
        // Other id on the right flow: not paired either.
        t.message(key(1000).reversed(), message(8, true), 160, 2);
        assert_eq!(t.take()[0].duration_ns, None);
        t.message(key(1000).reversed(), message(7, true), 180, 2);
        let done = t.take();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].unix_ns, done[0].duration_ns), (100, Some(80)));
        assert!(done[0].query.is_some() && done[0].response.is_some());
        // The other query, unanswered: reported after the wait.
        t.expire(101 + WAIT_NS - 1);
        assert!(t.take().is_empty());
        t.expire(101 + WAIT_NS);
        let late = t.take();
        assert_eq!((late.len(), late[0].client), (1, key(1001)));
        assert!(late[0].response.is_none());
    }
}
