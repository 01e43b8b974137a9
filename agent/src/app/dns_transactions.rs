//! A DNS query and its response, paired into one transaction by the
//! client's flow and the message id: the query waits (bounded, for a few
//! seconds) for a response in the other direction, which gives the
//! response time. A query nobody answers, or a response whose query was
//! not seen, is still reported, alone.

use super::{dns::DnsMessage, waiting::Pairing};
use crate::pipeline::flow::FlowKey;

/// Queries waiting for their response at once; past it the oldest is
/// reported unanswered.
pub const MAX_WAITING: usize = 65_536;
/// How long a query waits for its response.
pub const WAIT_NS: u64 = 5_000_000_000;
/// How long a response read before its query waits for it.
pub const ANSWER_WAIT_NS: u64 = 1_000_000_000;

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

/// Queries and responses waiting for their other half, by the client's
/// flow and the message id.
pub struct DnsTransactions {
    pairs: Pairing<(FlowKey, u16), DnsTransaction>,
}

impl Default for DnsTransactions {
    fn default() -> DnsTransactions {
        DnsTransactions {
            pairs: Pairing::new(MAX_WAITING, WAIT_NS, ANSWER_WAIT_NS),
        }
    }
}

/// One transaction of a query and its response, timed.
fn join(mut query: DnsTransaction, response: DnsTransaction) -> DnsTransaction {
    query.duration_ns = Some(response.unix_ns.saturating_sub(query.unix_ns));
    query.response = response.response;
    query
}

impl DnsTransactions {
    /// A message sent on `key` (directional: its sender is the source).
    /// A query sent again with the same id ends the first unanswered; a
    /// response read before its query (each on its own interface) waits
    /// for it.
    pub fn message(&mut self, key: FlowKey, m: DnsMessage, unix_ns: u64, ifindex: u32) {
        let id = m.id;
        if m.response {
            let client = key.reversed();
            let t = DnsTransaction {
                unix_ns,
                ifindex,
                client,
                query: None,
                response: Some(m),
                duration_ns: None,
            };
            self.pairs.answering((client, id), t, unix_ns, join);
        } else {
            let t = DnsTransaction {
                unix_ns,
                ifindex,
                client: key,
                query: Some(m),
                response: None,
                duration_ns: None,
            };
            self.pairs.opening((key, id), t, unix_ns, join);
        }
    }

    /// Ends halves that waited their time alone.
    pub fn expire(&mut self, now_ns: u64) {
        self.pairs.expire(now_ns);
    }

    /// Ends everything still waiting (at stop, at a file's end).
    pub fn finish(&mut self) {
        self.pairs.finish();
    }

    /// Transactions complete or given up since the last call.
    pub fn take(&mut self) -> Vec<DnsTransaction> {
        self.pairs.take()
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
        // Same id, other client port: not this one's answer; it waits
        // for a query of its own, then is reported alone.
        t.message(key(1002).reversed(), message(7, true), 150, 2);
        assert!(t.take().is_empty());
        t.expire(150 + ANSWER_WAIT_NS);
        let alone = t.take();
        assert_eq!(alone.len(), 1);
        assert_eq!(
            (alone[0].client, alone[0].query.is_none()),
            (key(1002), true)
        );
        // Other id on the right flow: not paired either.
        t.message(key(1000).reversed(), message(8, true), 160, 2);
        t.message(key(1000).reversed(), message(7, true), 180, 2);
        let done = t.take();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].unix_ns, done[0].duration_ns), (100, Some(80)));
        assert!(done[0].query.is_some() && done[0].response.is_some());
        // A response read before its query (another interface's ring).
        t.message(key(1003).reversed(), message(9, true), 200, 2);
        t.message(key(1003), message(9, false), 190, 2);
        let early = t.take();
        assert_eq!(early.len(), 1);
        assert_eq!((early[0].unix_ns, early[0].duration_ns), (190, Some(10)));
        // The other query, unanswered: reported after the wait (the
        // response of id 8 too, alone).
        t.expire(101 + WAIT_NS - 1);
        assert_eq!(t.take().len(), 1, "id 8's response waited its second");
        t.expire(101 + WAIT_NS);
        let late = t.take();
        assert_eq!((late.len(), late[0].client), (1, key(1001)));
        assert!(late[0].response.is_none());
    }
}
