//! What nta reads above L4, from the frames the XDP program selects (or,
//! offline, the same rule picks): TLS handshakes (server name, ALPN,
//! versions, cipher, JA4) and DNS transactions. Every parser here takes bytes an attacker
//! wrote: it returns a reason for what it cannot read, never panics, and
//! keeps what it holds bounded.

pub mod dns;
pub mod dns_transactions;
pub mod engine;
pub mod flow_names;
pub mod handshakes;
pub mod ja4;
pub mod packet;
pub mod quic;
pub mod reassemble;
pub mod select;
pub mod stats;
pub mod tls;
pub mod waiting;
