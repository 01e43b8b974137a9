//! Decoding capture records from the ring buffer, length-checked.

use agent_common::capture::{CAPTURE_HEADER_LEN, CaptureHeader};

/// The header and the captured bytes of one record, or `None` when the
/// record is shorter than its header says (never trusted blindly).
pub fn decode_capture(bytes: &[u8]) -> Option<(CaptureHeader, &[u8])> {
    if bytes.len() < CAPTURE_HEADER_LEN {
        return None;
    }
    // SAFETY: at least CAPTURE_HEADER_LEN bytes; CaptureHeader is
    // integer-only `repr(C)`, read unaligned.
    let header: CaptureHeader =
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<CaptureHeader>()) };
    let data = bytes.get(CAPTURE_HEADER_LEN..CAPTURE_HEADER_LEN + header.cap_len as usize)?;
    if header.cap_len > header.frame_len {
        return None;
    }
    Some((header, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cap_len: u32, frame_len: u32, data: usize) -> Vec<u8> {
        let h = CaptureHeader {
            timestamp_ns: 7,
            ifindex: 3,
            frame_len,
            cap_len,
            kind: 0,
        };
        // SAFETY: viewing a plain integer struct as bytes.
        let mut v = unsafe {
            std::slice::from_raw_parts(
                (&h as *const CaptureHeader).cast::<u8>(),
                CAPTURE_HEADER_LEN,
            )
        }
        .to_vec();
        v.extend((0..data).map(|i| i as u8));
        v
    }

    #[test]
    fn lengths_are_checked() {
        let r = record(4, 60, 128);
        let (h, d) = decode_capture(&r).unwrap_or_else(|| panic!("valid"));
        assert_eq!((h.ifindex, h.frame_len, d), (3, 60, &[0u8, 1, 2, 3][..]));
        assert!(
            decode_capture(&record(200, 300, 128)).is_none(),
            "runs past the record"
        );
        assert!(
            decode_capture(&record(64, 60, 128)).is_none(),
            "more captured than seen"
        );
        assert!(decode_capture(&r[..10]).is_none());
    }
}
