//! Link layers other than Ethernet, turned into Ethernet frames so the one
//! shared parser (the XDP program's) reads every capture the same way.

use super::capture::link;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
/// Linux cooked capture headers.
const SLL_LEN: usize = 16;
const SLL2_LEN: usize = 20;

/// What a link type becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Already Ethernet.
    Ethernet,
    /// Drop `header` bytes and put an Ethernet header with the given
    /// ethertype in front of the rest.
    Replace { header: usize, ethertype: [u8; 2] },
}

/// How to frame a packet of `linktype` whose bytes are `data`; None for
/// link types nta does not read (counted and reported, never guessed) and
/// for packets too short for their link header.
pub fn framing(linktype: i32, data: &[u8]) -> Option<Framing> {
    match linktype {
        link::ETHERNET => Some(Framing::Ethernet),
        link::LINUX_SLL => {
            let et = data.get(14..16)?;
            Some(Framing::Replace {
                header: SLL_LEN.min(data.len()),
                ethertype: [et[0], et[1]],
            })
        }
        link::LINUX_SLL2 => {
            let et = data.get(0..2)?;
            Some(Framing::Replace {
                header: SLL2_LEN.min(data.len()),
                ethertype: [et[0], et[1]],
            })
        }
        link::RAW => {
            let version = data.first()? >> 4;
            let ethertype = match version {
                4 => ETHERTYPE_IPV4,
                6 => ETHERTYPE_IPV6,
                // Neither: an ethertype the parser calls non-IP.
                _ => [0xff, 0xff],
            };
            Some(Framing::Replace {
                header: 0,
                ethertype,
            })
        }
        link::IPV4 => Some(Framing::Replace {
            header: 0,
            ethertype: ETHERTYPE_IPV4,
        }),
        link::IPV6 => Some(Framing::Replace {
            header: 0,
            ethertype: ETHERTYPE_IPV6,
        }),
        _ => None,
    }
}

/// The Ethernet frame for `data`, in `buf` when it must be rebuilt.
pub fn ethernet<'a>(f: Framing, data: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    match f {
        Framing::Ethernet => data,
        Framing::Replace { header, ethertype } => {
            buf.clear();
            // Zero MACs: nta never looks at them.
            buf.extend_from_slice(&[0u8; 12]);
            buf.extend_from_slice(&ethertype);
            buf.extend_from_slice(data.get(header..).unwrap_or_default());
            buf
        }
    }
}

/// How many bytes a frame's link header adds or removes relative to
/// Ethernet, to turn original lengths into Ethernet frame lengths.
pub fn length_delta(f: Framing) -> i64 {
    match f {
        Framing::Ethernet => 0,
        Framing::Replace { header, .. } => 14 - header as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooked_and_raw_captures_become_ethernet() {
        let ip = [0x45u8, 0, 0, 20];
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4);
        sll.extend_from_slice(&ip);
        let f = framing(link::LINUX_SLL, &sll).unwrap_or_else(|| panic!("SLL"));
        let mut buf = Vec::new();
        let eth = ethernet(f, &sll, &mut buf);
        assert_eq!(&eth[12..14], &ETHERTYPE_IPV4);
        assert_eq!(&eth[14..], &ip);
        assert_eq!(length_delta(f), -2);

        let mut sll2 = ETHERTYPE_IPV6.to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&[0x60, 0, 0, 0]);
        let f = framing(link::LINUX_SLL2, &sll2).unwrap_or_else(|| panic!("SLL2"));
        let eth = ethernet(f, &sll2, &mut buf).to_vec();
        assert_eq!(&eth[12..14], &ETHERTYPE_IPV6);
        assert_eq!(&eth[14..], &[0x60, 0, 0, 0]);

        let f = framing(link::RAW, &[0x60, 1, 2]).unwrap_or_else(|| panic!("raw"));
        assert_eq!(
            f,
            Framing::Replace {
                header: 0,
                ethertype: ETHERTYPE_IPV6
            }
        );
        assert_eq!(length_delta(f), 14);
    }

    #[test]
    fn unknown_link_types_and_short_headers_are_refused() {
        assert_eq!(framing(105, &[0; 64]), None, "802.11 is not guessed");
        assert_eq!(framing(link::LINUX_SLL, &[0; 10]), None);
        assert_eq!(framing(link::RAW, &[]), None);
    }
}
