//! The XDP program's selection, for `nta analyze`: the same rule
//! (`agent_common::app`) and a follow table like the program's, so a
//! capture file gives the same frames to the application step as the
//! live sensor would.

use std::collections::{HashMap, VecDeque};

use agent_common::{
    app::{
        AppKind, Candidate, FOLLOW_TABLE_ENTRIES, FOLLOW_WINDOW, Follow, FollowKey, FollowState,
        MAX_DNS_PORTS, classify, follow,
    },
    parse,
};

use crate::pipeline::keyed::KeyedState;

pub struct Selector {
    app: u32,
    dns_ports: [u16; MAX_DNS_PORTS],
    table: HashMap<FollowKey, FollowState, KeyedState>,
    /// Insertion order, for evicting the oldest when full (the program's
    /// table is an LRU).
    order: VecDeque<FollowKey>,
    /// The program's per-CPU window; offline is one CPU.
    follow_left: u32,
}

impl Selector {
    pub fn new(app: u32, dns_ports: [u16; MAX_DNS_PORTS]) -> Selector {
        Selector {
            app,
            dns_ports,
            table: HashMap::default(),
            order: VecDeque::new(),
            follow_left: 0,
        }
    }

    /// Whether the program would copy this frame, and as what.
    pub fn select(&mut self, frame: &[u8], frame_len: u64) -> Option<AppKind> {
        if self.app == 0 {
            return None;
        }
        let p = parse::parse(frame);
        match classify(frame, &p, frame_len, self.app, &self.dns_ports) {
            Candidate::None => None,
            Candidate::Dns => Some(AppKind::Dns),
            Candidate::QuicInitial => Some(AppKind::QuicInitial),
            Candidate::Handshake {
                seq,
                payload_len,
                needed,
            } => {
                if let Some(state) = FollowState::after_first(seq, payload_len, needed) {
                    self.insert(FollowKey::of(frame, &p), state);
                    self.follow_left = FOLLOW_WINDOW;
                }
                Some(AppKind::TlsHandshake)
            }
            Candidate::Segment { seq, payload_len } => {
                if self.follow_left == 0 {
                    return None;
                }
                self.follow_left -= 1;
                let k = FollowKey::of(frame, &p);
                let state = self.table.get_mut(&k)?;
                match follow(state, seq, payload_len) {
                    Follow::Skip => None,
                    Follow::Take => Some(AppKind::TlsContinuation),
                    Follow::TakeLast => {
                        self.table.remove(&k);
                        Some(AppKind::TlsContinuation)
                    }
                }
            }
        }
    }

    fn insert(&mut self, k: FollowKey, state: FollowState) {
        while self.table.len() >= FOLLOW_TABLE_ENTRIES as usize && !self.table.contains_key(&k) {
            match self.order.pop_front() {
                Some(old) => {
                    self.table.remove(&old);
                }
                None => break,
            }
        }
        if self.table.insert(k, state).is_none() {
            self.order.push_back(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{app::select, config::DEFAULT_DNS_PORTS};
    use nta_lab::frames::{FrameSpec, L4};

    use super::*;

    fn segment(sport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        FrameSpec::ipv4(L4::Tcp {
            sport,
            dport: 443,
            flags: 0x18,
        })
        .with_tcp_seq(seq)
        .with_payload_bytes(payload)
        .build()
    }

    #[test]
    fn a_split_hello_is_selected_like_the_program_selects_it() {
        let hello = nta_lab::tls::post_quantum("a.example").record();
        let mut s = Selector::new(select::ALL, DEFAULT_DNS_PORTS);
        let frames = [
            segment(1, 100, &hello[..1400]),
            segment(2, 1500, &hello[1400..]),
            segment(1, 1500, &hello[1400..]),
            segment(1, 100 + hello.len() as u32, b"GET /"),
        ];
        let got: Vec<Option<AppKind>> =
            frames.iter().map(|f| s.select(f, f.len() as u64)).collect();
        assert_eq!(
            got,
            [
                Some(AppKind::TlsHandshake),
                None,
                Some(AppKind::TlsContinuation),
                None
            ]
        );
        let mut off = Selector::new(0, DEFAULT_DNS_PORTS);
        assert_eq!(off.select(&frames[0], frames[0].len() as u64), None);
    }
}
