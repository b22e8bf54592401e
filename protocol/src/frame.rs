//! The binary frame layer (docs/protocol.md, "Frame layer").
//!
//! ```text
//! offset  size  field
//! 0       4     length   bytes after this field (6 + payload), big-endian
//! 4       1     kind     FrameKind
//! 5       1     flags    bit 0 = MORE (DATA only), other bits 0
//! 6       4     session  SessionId, big-endian; 0 = the channel itself
//! 10      n     payload
//! ```

use crate::SessionId;

/// `MORE` flag (bit 0): on `DATA`, another fragment of the same message follows.
pub const FLAG_MORE: u8 = 0x01;
/// `max_frame` (bytes, whole frame incl. the 4-byte length) in force until the handshake ends.
pub const DEFAULT_MAX_FRAME: usize = 4096;
/// Smallest `max_frame` a side may announce (bytes).
pub const MIN_MAX_FRAME: usize = 256;
/// Largest `max_frame` a side may announce (bytes).
pub const MAX_MAX_FRAME: usize = 65536;
/// `max_message`: largest reassembled message (bytes, 1 MiB).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Size of the frame header: length (4) + kind (1) + flags (1) + session (4), in bytes.
pub const HEADER_LEN: usize = 10;
/// Smallest valid value of the `length` field (kind + flags + session, empty payload).
pub const MIN_LENGTH: u32 = 6;

/// Frame kinds (docs/protocol.md, kind table). The discriminant is the wire byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// vda → endpoint, session 0, JSON [`crate::handshake::Hello`].
    Hello = 0x01,
    /// endpoint → vda, session 0, JSON [`crate::handshake::Welcome`].
    Welcome = 0x02,
    /// endpoint → vda, session 0, JSON [`crate::handshake::Reject`]; the endpoint then closes.
    Reject = 0x03,
    /// vda → endpoint, session N ≠ 0, JSON [`crate::handshake::Open`].
    Open = 0x10,
    /// endpoint → vda, session N, empty payload.
    Opened = 0x11,
    /// Either way, session N (or 0 = the whole channel), JSON [`crate::handshake::Close`].
    Close = 0x12,
    /// Either way, session N, one fragment of a JSON [`crate::message::Message`].
    Data = 0x20,
    /// Either way, session 0, 8-byte nonce.
    Ping = 0x30,
    /// Either way, session 0, the 8-byte nonce of the `PING` answered.
    Pong = 0x31,
    /// Either way, session N or 0, JSON [`crate::message::ErrorBody`].
    Error = 0x40,
}

impl FrameKind {
    /// The kind for a wire byte, `None` for an unknown kind.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            0x01 => FrameKind::Hello,
            0x02 => FrameKind::Welcome,
            0x03 => FrameKind::Reject,
            0x10 => FrameKind::Open,
            0x11 => FrameKind::Opened,
            0x12 => FrameKind::Close,
            0x20 => FrameKind::Data,
            0x30 => FrameKind::Ping,
            0x31 => FrameKind::Pong,
            0x40 => FrameKind::Error,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Upper-case spec name (`"HELLO"`, `"DATA"`, …), for log lines.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Hello => "HELLO",
            FrameKind::Welcome => "WELCOME",
            FrameKind::Reject => "REJECT",
            FrameKind::Open => "OPEN",
            FrameKind::Opened => "OPENED",
            FrameKind::Close => "CLOSE",
            FrameKind::Data => "DATA",
            FrameKind::Ping => "PING",
            FrameKind::Pong => "PONG",
            FrameKind::Error => "ERROR",
        }
    }
}

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One frame. `payload` is at most `max_frame - HEADER_LEN` bytes when sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    /// Flag bits; only [`FLAG_MORE`] (on `DATA`) is defined.
    pub flags: u8,
    pub session: SessionId,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame with no flags.
    pub fn new(kind: FrameKind, session: SessionId, payload: Vec<u8>) -> Frame {
        Frame { kind, flags: 0, session, payload }
    }

    /// Encoded size in bytes (`HEADER_LEN + payload.len()`), the number compared to `max_frame`.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the wire bytes of this frame to `out`.
    ///
    /// The caller keeps `encoded_len()` within the negotiated `max_frame` (the channel does);
    /// a payload over `u32::MAX - 6` bytes cannot be represented and is a caller bug.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let length = MIN_LENGTH as usize + self.payload.len();
        debug_assert!(length <= u32::MAX as usize, "frame payload too large to encode");
        out.reserve(4 + length);
        out.extend_from_slice(&(length as u32).to_be_bytes());
        out.push(self.kind.as_u8());
        out.push(self.flags);
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The wire bytes of this frame as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// A fault found while decoding frames (docs/protocol.md, "Errors in the frame layer").
///
/// [`FrameError::is_fatal`] faults (bad `length`, oversize frame) leave the byte stream
/// unsynchronised: the decoder refuses further input and the channel must be closed with
/// `bad_frame`. The others concern one whole frame that the decoder has already skipped; the
/// receiver answers `ERROR bad_frame` on [`FrameError::session`] and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `length` field below 6 (fatal).
    #[error("frame length field {length} is below the minimum of 6")]
    BadLength { length: u32 },
    /// `4 + length` exceeds the `max_frame` in force (fatal).
    #[error("frame of {size} bytes exceeds max_frame {max_frame}")]
    TooLarge { size: u64, max_frame: usize },
    /// Unknown `kind` byte; the frame was skipped.
    #[error("unknown frame kind 0x{kind:02x} on session {session}")]
    UnknownKind { kind: u8, session: SessionId },
    /// Reserved flag bits set (or `MORE` on a kind other than `DATA`); the frame was skipped.
    #[error("reserved flags 0x{flags:02x} on {kind} frame, session {session}")]
    ReservedFlags { kind: FrameKind, flags: u8, session: SessionId },
}

impl FrameError {
    /// True when the stream cannot be resynchronised and the channel must be closed.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FrameError::BadLength { .. } | FrameError::TooLarge { .. })
    }

    /// The session the skipped frame was addressed to (0 for fatal faults).
    pub fn session(&self) -> SessionId {
        match self {
            FrameError::BadLength { .. } | FrameError::TooLarge { .. } => 0,
            FrameError::UnknownKind { session, .. } | FrameError::ReservedFlags { session, .. } => *session,
        }
    }
}

/// Incremental frame decoder: push bytes as they arrive (any split), pull whole frames.
///
/// Memory: [`FrameDecoder::push_bounded`] never lets the buffer exceed `max_frame` bytes;
/// [`FrameDecoder::push`] accepts everything (the caller already holds those bytes).
/// After a fatal fault the decoder is poisoned: it drops input and repeats the fault.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_frame: usize,
    poisoned: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting frames of up to `max_frame` bytes (clamped to
    /// `MIN_MAX_FRAME..=MAX_MAX_FRAME`).
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { buf: Vec::new(), max_frame: clamp_max_frame(max_frame), poisoned: None }
    }

    /// Changes the limit for frames whose header has not been read yet (clamped to
    /// `MIN_MAX_FRAME..=MAX_MAX_FRAME`). Used when the handshake ends.
    pub fn set_max_frame(&mut self, n: usize) {
        self.max_frame = clamp_max_frame(n);
    }

    /// The limit in force, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True after a fatal fault.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Appends all of `bytes` to the buffer (dropped once poisoned).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.poisoned.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Appends as much of `bytes` as keeps the buffer within `max_frame` bytes; returns how
    /// many were taken. Once poisoned it takes (and drops) everything. Call
    /// [`FrameDecoder::next_frame`] until `Ok(None)` before pushing the rest: a buffer of
    /// `max_frame` bytes always holds a whole frame or a fatal header.
    pub fn push_bounded(&mut self, bytes: &[u8]) -> usize {
        if self.poisoned.is_some() {
            return bytes.len();
        }
        let room = self.max_frame.saturating_sub(self.buf.len());
        let n = room.min(bytes.len());
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed, or a fault (see
    /// [`FrameError`]). Skippable faults consume their frame, so calling again continues with
    /// the next one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        // Checked as soon as the length is known, so an oversize frame is refused before its
        // bytes are buffered.
        if length < MIN_LENGTH {
            return Err(self.poison(FrameError::BadLength { length }));
        }
        let size = 4 + u64::from(length);
        if size > self.max_frame as u64 {
            return Err(self.poison(FrameError::TooLarge { size, max_frame: self.max_frame }));
        }
        let size = size as usize;
        if self.buf.len() < size {
            return Ok(None);
        }
        let kind_byte = self.buf[4];
        let flags = self.buf[5];
        let session = u32::from_be_bytes([self.buf[6], self.buf[7], self.buf[8], self.buf[9]]);
        let payload = self.buf[HEADER_LEN..size].to_vec();
        self.buf.drain(..size);
        let Some(kind) = FrameKind::from_u8(kind_byte) else {
            return Err(FrameError::UnknownKind { kind: kind_byte, session });
        };
        let allowed = if kind == FrameKind::Data { FLAG_MORE } else { 0 };
        if flags & !allowed != 0 {
            return Err(FrameError::ReservedFlags { kind, flags, session });
        }
        Ok(Some(Frame { kind, flags, session, payload }))
    }

    fn poison(&mut self, e: FrameError) -> FrameError {
        self.buf = Vec::new();
        self.poisoned = Some(e.clone());
        e
    }
}

/// Clamps a `max_frame` value into `MIN_MAX_FRAME..=MAX_MAX_FRAME`.
pub fn clamp_max_frame(n: usize) -> usize {
    n.clamp(MIN_MAX_FRAME, MAX_MAX_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn decode_one(bytes: &[u8]) -> Frame {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        d.push(bytes);
        let f = d.next_frame().unwrap().expect("one whole frame");
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 0);
        f
    }

    /// Golden vectors: one per kind, hex written out by hand from the spec's layout.
    #[test]
    fn golden_vectors_encode_and_decode() {
        let cases: Vec<(Frame, &str)> = vec![
            (
                Frame::new(FrameKind::Hello, 0, br#"{"a":1}"#.to_vec()),
                "0000000d 01 00 00000000 7b2261223a317d",
            ),
            (Frame::new(FrameKind::Welcome, 0, b"{}".to_vec()), "00000008 02 00 00000000 7b7d"),
            (Frame::new(FrameKind::Reject, 0, b"{}".to_vec()), "00000008 03 00 00000000 7b7d"),
            (Frame::new(FrameKind::Open, 7, b"{}".to_vec()), "00000008 10 00 00000007 7b7d"),
            (Frame::new(FrameKind::Opened, 0x01020304, vec![]), "00000006 11 00 01020304"),
            (Frame::new(FrameKind::Close, 2, b"{}".to_vec()), "00000008 12 00 00000002 7b7d"),
            (
                Frame { kind: FrameKind::Data, flags: FLAG_MORE, session: 1, payload: b"[1".to_vec() },
                "00000008 20 01 00000001 5b31",
            ),
            (Frame::new(FrameKind::Data, 1, b"]".to_vec()), "00000007 20 00 00000001 5d"),
            (
                Frame::new(FrameKind::Ping, 0, 42u64.to_be_bytes().to_vec()),
                "0000000e 30 00 00000000 000000000000002a",
            ),
            (
                Frame::new(FrameKind::Pong, 0, 42u64.to_be_bytes().to_vec()),
                "0000000e 31 00 00000000 000000000000002a",
            ),
            (Frame::new(FrameKind::Error, 0xffffffff, b"{}".to_vec()), "00000008 40 00 ffffffff 7b7d"),
        ];
        for (frame, golden) in cases {
            let bytes = hex(golden);
            assert_eq!(frame.to_bytes(), bytes, "encode {}", frame.kind);
            assert_eq!(decode_one(&bytes), frame, "decode {}", frame.kind);
        }
    }

    #[test]
    fn byte_at_a_time() {
        let mut stream = Vec::new();
        let frames: Vec<Frame> =
            (0..20u32).map(|i| Frame::new(FrameKind::Data, i + 1, vec![b'x'; i as usize * 13])).collect();
        for f in &frames {
            f.encode(&mut stream);
        }
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for b in &stream {
            assert_eq!(d.push_bounded(std::slice::from_ref(b)), 1);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn short_length_is_fatal_and_poisons() {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        d.push(&hex("00000005 20 00 00000001"));
        let e = d.next_frame().unwrap_err();
        assert_eq!(e, FrameError::BadLength { length: 5 });
        assert!(e.is_fatal());
        d.push(&Frame::new(FrameKind::Ping, 0, vec![0; 8]).to_bytes());
        assert!(d.next_frame().unwrap_err().is_fatal());
        assert!(d.is_poisoned());
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let mut d = FrameDecoder::new(256);
        // length 253 → 257-byte frame, one over the limit; only the 4 length bytes are needed.
        d.push(&hex("000000fd"));
        let e = d.next_frame().unwrap_err();
        assert_eq!(e, FrameError::TooLarge { size: 257, max_frame: 256 });
        assert!(e.is_fatal());
        // Exactly max_frame is fine.
        let mut d = FrameDecoder::new(256);
        let f = Frame::new(FrameKind::Data, 1, vec![b'a'; 246]);
        assert_eq!(f.encoded_len(), 256);
        d.push(&f.to_bytes());
        assert_eq!(d.next_frame().unwrap(), Some(f));
        // u32::MAX length does not overflow.
        let mut d = FrameDecoder::new(MAX_MAX_FRAME);
        d.push(&hex("ffffffff"));
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn unknown_kind_and_reserved_flags_are_skipped() {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        d.push(&hex("00000007 7f 00 00000003 aa"));
        d.push(&hex("00000006 20 82 00000004"));
        d.push(&hex("00000006 11 01 00000005")); // MORE is DATA-only
        d.push(&hex("00000006 11 00 00000006"));
        let e = d.next_frame().unwrap_err();
        assert_eq!(e, FrameError::UnknownKind { kind: 0x7f, session: 3 });
        assert!(!e.is_fatal());
        assert_eq!(e.session(), 3);
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::ReservedFlags { kind: FrameKind::Data, flags: 0x82, session: 4 }
        );
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::ReservedFlags { kind: FrameKind::Opened, flags: 0x01, session: 5 }
        );
        assert_eq!(d.next_frame().unwrap(), Some(Frame::new(FrameKind::Opened, 6, vec![])));
    }

    #[test]
    fn push_bounded_never_exceeds_max_frame() {
        let mut d = FrameDecoder::new(256);
        let mut stream = Vec::new();
        for i in 0..50u32 {
            Frame::new(FrameKind::Data, i + 1, vec![7; 200]).encode(&mut stream);
        }
        let mut rest = &stream[..];
        let mut n = 0;
        while !rest.is_empty() {
            let took = d.push_bounded(rest);
            rest = &rest[took..];
            assert!(d.buffered() <= 256);
            while let Some(_f) = d.next_frame().unwrap() {
                n += 1;
            }
        }
        assert_eq!(n, 50);
    }
}
