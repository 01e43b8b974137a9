//! What nta reads above L4, from the first bytes of selected payloads:
//! TLS handshakes (server name, ALPN, versions, cipher, JA4). Every
//! parser here takes bytes an attacker wrote: it returns a reason for
//! what it cannot read, never panics, and keeps what it copies bounded.

pub mod ja4;
pub mod tls;
