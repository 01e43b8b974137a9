//! A selected frame as the application parsers see it: the flow it
//! belongs to (in its own direction), its TCP sequence number and the
//! payload bytes it carries.

use agent_common::{app::transport, parse};

use crate::pipeline::flow::FlowKey;

#[derive(Clone, Copy, Debug)]
pub struct AppPacket<'a> {
    /// Directional: source is this frame's sender.
    pub key: FlowKey,
    /// TCP only.
    pub tcp_seq: Option<u32>,
    /// The payload bytes present (fewer than the datagram says when the
    /// frame was cut at the copy length).
    pub payload: &'a [u8],
    /// The frame was cut at the copy length inside the payload.
    pub cut: bool,
}

impl<'a> AppPacket<'a> {
    /// The packet in `frame` (`frame_len`: its length on the wire), or
    /// `None` for a frame with no TCP/UDP payload the selection reads.
    pub fn parse(frame: &'a [u8], frame_len: u64) -> Option<AppPacket<'a>> {
        let p = parse::parse(frame);
        let t = transport(frame, &p, frame_len)?;
        let whole = t.payload.checked_add(t.payload_len as usize)?;
        let end = whole.min(frame.len());
        let payload = frame.get(t.payload..end)?;
        let tcp_seq = match p.l4_proto {
            6 => Some(u32::from_be_bytes(
                frame.get(t.l4 + 4..t.l4 + 8)?.try_into().ok()?,
            )),
            _ => None,
        };
        let (src, dst) = p.addresses(frame);
        Some(AppPacket {
            key: FlowKey {
                src,
                dst,
                src_port: p.src_port,
                dst_port: p.dst_port,
                vlan_id: p.vlan_id,
                ip_version: p.ip_version,
                protocol: p.l4_proto,
            },
            tcp_seq,
            payload,
            cut: end < whole,
        })
    }
}

#[cfg(test)]
mod tests {
    use nta_lab::frames::{FrameSpec, L4};

    use super::*;

    #[test]
    fn a_segment_gives_its_flow_sequence_and_payload() {
        let f = FrameSpec::ipv4(L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: 0x18,
        })
        .with_tcp_seq(77)
        .with_payload_bytes(b"hello")
        .build();
        let p = AppPacket::parse(&f, f.len() as u64).unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            (p.key.src_port, p.key.dst_port, p.key.protocol),
            (40000, 443, 6)
        );
        assert_eq!((p.tcp_seq, p.payload), (Some(77), &b"hello"[..]));
        // Cut inside the payload: what is there.
        let cut =
            AppPacket::parse(&f[..f.len() - 2], f.len() as u64).unwrap_or_else(|| panic!("parses"));
        assert_eq!((cut.payload, cut.cut), (&b"hel"[..], true));
        assert!(!p.cut);
        let syn = FrameSpec::ipv4(L4::Tcp {
            sport: 1,
            dport: 2,
            flags: 2,
        })
        .build();
        assert!(AppPacket::parse(&syn, syn.len() as u64).is_none());
    }
}
