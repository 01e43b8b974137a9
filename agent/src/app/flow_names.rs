//! The names a flow's payloads gave: the server name of its TLS or QUIC
//! handshake and the first question of its DNS transactions, kept for the
//! flow records written when the flow ends (both directions get them).
//! The application step writes, the flow export reads, from different
//! threads; bounded in entries and age, since the keys come from packets.

use std::sync::{Mutex, MutexGuard};

use super::waiting::Waiting;
use crate::pipeline::flow::FlowKey;

/// Flows whose names are kept at once; past it the oldest are forgotten.
pub const MAX_FLOWS: usize = 65_536;
/// How long names are kept after they were seen (a flow record written
/// later, by a long flow's active timeout, goes without them).
pub const KEEP_NS: u64 = 600_000_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowNames {
    pub server_name: Option<String>,
    pub dns_query: Option<String>,
}

pub struct FlowNameTable {
    /// By the client's direction of the flow.
    names: Mutex<Waiting<FlowKey, FlowNames>>,
}

impl Default for FlowNameTable {
    fn default() -> FlowNameTable {
        FlowNameTable {
            names: Mutex::new(Waiting::new(MAX_FLOWS, KEEP_NS)),
        }
    }
}

impl FlowNameTable {
    fn lock(&self) -> MutexGuard<'_, Waiting<FlowKey, FlowNames>> {
        // A panic elsewhere leaves plain data behind: keep using it.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The flow `client` (client to server) asked for server `name`.
    pub fn server_name(&self, client: FlowKey, name: &str, now_ns: u64) {
        self.note(client, now_ns, |n| {
            n.server_name.get_or_insert_with(|| name.to_string());
        });
    }

    /// The flow `client` asked DNS for `name` (its first question stays).
    pub fn dns_query(&self, client: FlowKey, name: &str, now_ns: u64) {
        self.note(client, now_ns, |n| {
            n.dns_query.get_or_insert_with(|| name.to_string());
        });
    }

    fn note(&self, client: FlowKey, now_ns: u64, add: impl FnOnce(&mut FlowNames)) {
        let mut names = self.lock();
        names.expire(now_ns);
        let mut n = names.remove(&client).unwrap_or_default();
        add(&mut n);
        names.insert(client, n, now_ns);
        // What aged out or gave way is of no more use.
        names.take();
    }

    /// The names of the flow `key`, in either direction.
    pub fn get(&self, key: &FlowKey) -> FlowNames {
        let names = self.lock();
        names
            .get(key)
            .or_else(|| names.get(&key.reversed()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_get_the_names_and_the_first_question_stays() {
        let t = FlowNameTable::default();
        let client = FlowKey::between_test_hosts(40000, 443, 6);
        assert_eq!(t.get(&client), FlowNames::default());
        t.server_name(client, "shop.example", 1);
        t.dns_query(client, "first.example", 2);
        t.dns_query(client, "second.example", 3);
        let want = FlowNames {
            server_name: Some("shop.example".into()),
            dns_query: Some("first.example".into()),
        };
        assert_eq!(t.get(&client), want);
        assert_eq!(t.get(&client.reversed()), want);
        // Aged out once a later note comes after KEEP_NS.
        t.server_name(FlowKey::between_test_hosts(40001, 443, 6), "x", 3 + KEEP_NS);
        assert_eq!(t.get(&client), FlowNames::default());
    }
}
