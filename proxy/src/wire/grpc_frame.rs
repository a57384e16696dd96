//! gRPC message framing: a 1-byte compression flag and a 4-byte big-endian length in
//! front of every message, carried in HTTP/2 data frames that split or join messages
//! arbitrarily.
//!
//! `MessageSplitter` buffers only the message being assembled, and refuses one longer
//! than its bound before buffering it, so a peer cannot make the proxy allocate more
//! than `max_message_bytes` per stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The 5-byte prefix in front of every gRPC message.
pub const PREFIX_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("gRPC message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("compressed gRPC messages cannot be inspected")]
    Compressed,
    /// A flag byte other than 0 (identity) and 1 (compressed).
    #[error("invalid gRPC compression flag {0}")]
    BadFlag(u8),
    #[error("stream ended inside a gRPC message ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

/// Reassembles whole gRPC messages from arbitrarily split chunks.
#[derive(Debug)]
pub struct MessageSplitter {
    buffer: BytesMut,
    max_message_bytes: usize,
}

impl MessageSplitter {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_message_bytes,
        }
    }

    /// Adds the next chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete message (prefix removed), `None` when more bytes are needed.
    /// Checks the declared length against the bound as soon as the prefix is in, so an
    /// oversized message is refused before its body is buffered.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < PREFIX_LEN {
            return Ok(None);
        }
        match self.buffer[0] {
            0 => {}
            1 => return Err(FrameError::Compressed),
            flag => return Err(FrameError::BadFlag(flag)),
        }
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if len > self.max_message_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_message_bytes,
            });
        }
        if self.buffer.len() < PREFIX_LEN + len {
            // Reserve once for the whole message rather than growing chunk by chunk.
            self.buffer.reserve(PREFIX_LEN + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(PREFIX_LEN);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// Bytes received that do not yet form a whole message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Call at the end of the stream: an incomplete message is an error.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffer.len() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}

/// Frames one uncompressed message.
pub fn encode(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_at_every_byte_come_out_whole() {
        let stream: Vec<u8> = [encode(b"first"), encode(b""), encode(&[7u8; 300])].concat();
        for cut in 0..stream.len() {
            let mut splitter = MessageSplitter::new(1024);
            let mut out = Vec::new();
            for chunk in [&stream[..cut], &stream[cut..]] {
                splitter.push(chunk);
                while let Some(message) = splitter.next_message().unwrap() {
                    out.push(message);
                }
            }
            splitter.finish().unwrap();
            assert_eq!(out.len(), 3, "cut at {cut}");
            assert_eq!(&out[0][..], b"first");
            assert!(out[1].is_empty());
            assert_eq!(&out[2][..], &[7u8; 300][..]);
        }
    }

    #[test]
    fn oversized_message_is_refused_from_its_prefix() {
        let mut splitter = MessageSplitter::new(10);
        splitter.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            splitter.next_message(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 10
            })
        );
    }

    #[test]
    fn compressed_and_truncated_messages_are_errors() {
        let mut splitter = MessageSplitter::new(10);
        splitter.push(&[1, 0, 0, 0, 1, 9]);
        assert_eq!(splitter.next_message(), Err(FrameError::Compressed));
        let mut splitter = MessageSplitter::new(10);
        splitter.push(&[2, 0, 0, 0, 1, 9]);
        assert_eq!(splitter.next_message(), Err(FrameError::BadFlag(2)));
        let mut splitter = MessageSplitter::new(10);
        splitter.push(&[0, 0, 0, 0, 4, 9]);
        assert_eq!(splitter.next_message(), Ok(None));
        assert_eq!(
            splitter.finish(),
            Err(FrameError::Truncated { buffered: 6 })
        );
    }
}
