//! PostgreSQL v3 framing: split tagged messages and untagged startup packets out of a byte buffer.

use bytes::{Buf, Bytes, BytesMut};

/// One complete tagged message. `raw` holds the whole frame (tag, length, body) for forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub raw: Bytes,
}

impl Frame {
    /// The message body (after tag and length).
    pub fn body(&self) -> &[u8] {
        self.raw.get(5..).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Split one tagged frame from `buf`. `Ok(None)` when more bytes are needed.
/// The length is checked (>= 4 and <= `max`) before anything is allocated.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(i64::from(len)));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(FrameError::TooLarge { len: total, max });
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let raw = buf.split_to(total).freeze();
    Ok(Some(Frame { tag, raw }))
}

/// Split an untagged startup-phase packet (StartupMessage, SSLRequest, CancelRequest...).
/// Returns the body after the 4-byte length.
pub fn split_startup(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(FrameError::BadLength(i64::from(len)));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    Ok(Some(packet.freeze()))
}

/// Read a NUL-terminated string from the front of `b`, advancing past the NUL.
pub fn read_cstr<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let pos = memchr::memchr(0, b)?;
    let s = &b[..pos];
    *b = &b[pos + 1..];
    Some(s)
}

/// Read a big-endian i32 from the front of `b`.
pub fn read_i32(b: &mut &[u8]) -> Option<i32> {
    if b.len() < 4 {
        return None;
    }
    let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    *b = &b[4..];
    Some(v)
}

/// Read a big-endian i16 from the front of `b`.
pub fn read_i16(b: &mut &[u8]) -> Option<i16> {
    if b.len() < 2 {
        return None;
    }
    let v = i16::from_be_bytes([b[0], b[1]]);
    *b = &b[2..];
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_complete_frames_and_waits_for_partial() {
        let mut all = frame(b'Q', b"SELECT 1\0");
        all.extend(frame(b'S', b""));
        let mut buf = BytesMut::from(&all[..7]);
        assert_eq!(split_frame(&mut buf, 1024).unwrap(), None);
        buf.extend_from_slice(&all[7..]);
        let f = split_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(), b"SELECT 1\0");
        let s = split_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(s.tag, b'S');
        assert!(s.body().is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_and_huge_lengths() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 2][..]);
        assert_eq!(split_frame(&mut buf, 1024), Err(FrameError::BadLength(2)));
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[b'Q', 0x80, 0, 0, 0][..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(FrameError::BadLength(_))
        ));
    }

    #[test]
    fn startup_packet_split() {
        let mut v = 8i32.to_be_bytes().to_vec();
        v.extend_from_slice(&80877103i32.to_be_bytes());
        let mut buf = BytesMut::from(&v[..]);
        let body = split_startup(&mut buf, 10000).unwrap().unwrap();
        assert_eq!(&body[..], &80877103i32.to_be_bytes());
        let mut buf = BytesMut::from(&[0x7f, 0, 0, 0][..]);
        assert!(split_startup(&mut buf, 10000).is_err());
        let mut buf = BytesMut::from(&[0, 0, 0, 3][..]);
        assert!(split_startup(&mut buf, 10000).is_err());
    }

    #[test]
    fn cstr_and_ints() {
        let data = b"abc\0\0\0\0\x07\0\x02".to_vec();
        let mut s: &[u8] = &data;
        assert_eq!(read_cstr(&mut s), Some(&b"abc"[..]));
        assert_eq!(read_i32(&mut s), Some(7));
        assert_eq!(read_i16(&mut s), Some(2));
        assert_eq!(read_i16(&mut s), None);
        let mut s: &[u8] = b"noterm";
        assert_eq!(read_cstr(&mut s), None);
    }
}
