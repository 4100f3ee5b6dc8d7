//! Framing of stdio JSON-RPC: one message per line, each at most a configured size.
//!
//! [`Framer`] is the pure part (bytes in, frames out), so it can be fuzzed and tested without IO;
//! [`FrameReader`] drives it from an async reader. A line longer than the limit is never held in
//! memory: the framer drops its bytes as they come and, at its newline, yields
//! [`Frame::Oversized`] with its length, so the caller can answer with a named error and the
//! connection goes on. Nothing is read ahead of what the consumer asks for, so a slow consumer
//! holds the writer back through the pipe (backpressure).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The default limit on one message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One line's worth of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A message (without its line ending).
    Message(Bytes),
    /// A line longer than the limit, dropped; its length in bytes (line ending excluded).
    Oversized {
        /// How long the line was.
        len: usize,
    },
}

/// Splits a byte stream into lines of at most `max` bytes.
///
/// ```
/// use lastmile::wire::{Frame, Framer};
///
/// let mut f = Framer::new(16);
/// f.push(b"{\"a\":1}\n{\"b\"");
/// assert_eq!(f.next_frame(), Some(Frame::Message(b"{\"a\":1}".to_vec().into())));
/// assert_eq!(f.next_frame(), None);
/// f.push(b":2}\r\n");
/// assert_eq!(f.next_frame(), Some(Frame::Message(b"{\"b\":2}".to_vec().into())));
/// ```
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max: usize,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    /// Dropping an oversized line: how many bytes of it so far.
    dropping: Option<usize>,
}

impl Framer {
    /// A framer whose messages are at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Framer {
            buf: BytesMut::new(),
            max: max.max(1),
            scanned: 0,
            dropping: None,
        }
    }

    /// Add input.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly (avoids a copy): reserve, read, then `commit(n)`.
    pub fn spare(&mut self, at_least: usize) -> &mut BytesMut {
        self.buf.reserve(at_least);
        &mut self.buf
    }

    /// The next complete frame, if the input holds one. Empty lines are skipped.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let found = memchr::memchr(b'\n', &self.buf[self.scanned..]).map(|i| self.scanned + i);
            match found {
                Some(newline) => {
                    let line = self.buf.split_to(newline + 1);
                    self.scanned = 0;
                    if let Some(dropped) = self.dropping.take() {
                        let len = dropped + trimmed_len(&line);
                        return Some(Frame::Oversized { len });
                    }
                    let len = trimmed_len(&line);
                    if len > self.max {
                        return Some(Frame::Oversized { len });
                    }
                    if len == 0 {
                        continue;
                    }
                    let mut line = line.freeze();
                    line.truncate(len);
                    return Some(Frame::Message(line));
                }
                None => {
                    if self.dropping.is_some() || self.buf.len() > self.max {
                        // Too long already: keep nothing of it but its length (and a trailing
                        // `\r`, which may be the start of the line ending).
                        let keep = usize::from(self.buf.last() == Some(&b'\r'));
                        let dropped = self.buf.len() - keep;
                        *self.dropping.get_or_insert(0) += dropped;
                        let _ = self.buf.split_to(dropped);
                        self.scanned = 0;
                    } else {
                        self.scanned = self.buf.len();
                    }
                    return None;
                }
            }
        }
    }

    /// At end of input: what is left (a last line without a newline), if anything.
    pub fn finish(&mut self) -> Option<Frame> {
        if let Some(dropped) = self.dropping.take() {
            let len = dropped + self.buf.len();
            self.buf.clear();
            return Some(Frame::Oversized { len });
        }
        let len = trimmed_len(&self.buf);
        if len == 0 {
            self.buf.clear();
            return None;
        }
        let mut rest = self.buf.split().freeze();
        self.scanned = 0;
        if len > self.max {
            return Some(Frame::Oversized { len });
        }
        rest.truncate(len);
        Some(Frame::Message(rest))
    }
}

/// Length of a line without its `\n` or `\r\n`.
fn trimmed_len(line: &[u8]) -> usize {
    let mut len = line.len();
    if len > 0 && line[len - 1] == b'\n' {
        len -= 1;
    }
    if len > 0 && line[len - 1] == b'\r' {
        len -= 1;
    }
    len
}

/// Frames from an async reader.
pub struct FrameReader<R> {
    inner: R,
    framer: Framer,
    done: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Read frames of at most `max` bytes from `inner`.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            framer: Framer::new(max),
            done: false,
        }
    }

    /// The next frame, or `None` at end of input.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.framer.next_frame() {
                return Ok(Some(frame));
            }
            if self.done {
                return Ok(self.framer.finish());
            }
            let n = self.inner.read_buf(self.framer.spare(64 * 1024)).await?;
            if n == 0 {
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(frame) = f.next_frame() {
                out.push(frame);
            }
        }
        out.extend(f.finish());
        out
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn lines_across_chunks_crlf_and_blank_lines() {
        let got = frames(100, &[b"a\r\n\nb", b"c\n", b"\r\n", b"last"]);
        assert_eq!(got, [msg("a"), msg("bc"), msg("last")]);
    }

    #[test]
    fn an_oversized_line_is_dropped_and_the_stream_goes_on() {
        let long = [b'x'; 50];
        let got = frames(10, &[b"ok\n", &long[..20], &long[20..], b"\nafter\n"]);
        assert_eq!(got, [msg("ok"), Frame::Oversized { len: 50 }, msg("after")]);
        // Exactly at the limit passes.
        assert_eq!(frames(5, &[b"12345\n"]), [msg("12345")]);
        assert_eq!(frames(5, &[b"123456\n"]), [Frame::Oversized { len: 6 }]);
        // Unterminated and oversized at EOF.
        assert_eq!(frames(5, &[b"1234567"]), [Frame::Oversized { len: 7 }]);
    }

    #[test]
    fn an_oversized_line_is_not_kept_in_memory() {
        let mut f = Framer::new(1024);
        for _ in 0..1000 {
            f.push(&[b'y'; 4096]);
            assert_eq!(f.next_frame(), None);
            assert!(f.buf.len() <= 4096, "{}", f.buf.len());
        }
        f.push(b"\n");
        assert_eq!(f.next_frame(), Some(Frame::Oversized { len: 4096 * 1000 }));
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_frames() {
        let input = b"{\"a\":1}\n\n{\"b\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\r\n{\"c\":3}\nend";
        let whole = frames(20, &[input]);
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(frames(20, &[a, b]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(frames(20, &bytewise), whole);
    }

    #[tokio::test]
    async fn the_reader_yields_frames_until_eof() {
        let data: &[u8] = b"one\ntwo\nthree";
        let mut r = FrameReader::new(data, 64);
        let mut got = Vec::new();
        while let Some(f) = r.next_frame().await.unwrap() {
            got.push(f);
        }
        assert_eq!(got, [msg("one"), msg("two"), msg("three")]);
    }
}
