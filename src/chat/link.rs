//! The wire between the parent (the hub) and each worker: one Unix stream socket per worker, made
//! with `socketpair(2)` before the fork, carrying lines.
//!
//! Every line is one kind byte, the message exactly as the room hears it (compact JSON, which never
//! holds a raw newline), and `\n`:
//!
//! | kind | direction | meaning |
//! |------|-----------|---------|
//! | `s`  | worker → hub | a client of this worker said it: print it, relay it to the other workers |
//! | `r`  | worker → hub | (Redis) heard from another chat-relay instance: print it |
//! | `d`  | hub → worker | deliver to your clients |
//! | `p`  | hub → worker | (Redis) deliver to your clients and publish it (a stdin line) |
//!
//! [`Outbox`] is the bounded byte queue the hub keeps for each worker and for stdout: a message
//! that does not fit is dropped and counted, never queued without bound, so one stalled reader
//! cannot make the hub grow or block.

use std::io::{self, Write};
use std::time::Instant;

pub const SAID: u8 = b's';
pub const REMOTE: u8 = b'r';
pub const DELIVER: u8 = b'd';
pub const PUBLISH: u8 = b'p';

/// Split a complete line (with or without its `\n`) into its kind and its message.
pub fn parse(line: &[u8]) -> Option<(u8, &[u8])> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (&kind, message) = line.split_first()?;
    Some((kind, message))
}

/// A bounded queue of bytes waiting for a non-blocking (or poll-guarded) writer.
#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    sent: usize,
    limit: usize,
    /// Messages dropped since the queue last had room (reported once per episode).
    pub dropped: u64,
    /// When the queue last refused a message and has not drained since.
    pub full_since: Option<Instant>,
}

impl Outbox {
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            buf: Vec::new(),
            sent: 0,
            limit,
            dropped: 0,
            full_since: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Queue `kind` + `message` + `\n` (no kind byte when `kind` is `None`, for stdout). Returns
    /// false, counting the drop, when it does not fit.
    pub fn push(&mut self, kind: Option<u8>, message: &[u8], now: Instant) -> bool {
        let size = message.len() + 1 + usize::from(kind.is_some());
        if self.pending() + size > self.limit {
            self.dropped += 1;
            self.full_since.get_or_insert(now);
            return false;
        }
        if self.sent > 0 && self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
        if let Some(kind) = kind {
            self.buf.push(kind);
        }
        self.buf.extend_from_slice(message);
        self.buf.push(b'\n');
        true
    }

    /// Write what the writer takes, at most `chunk` bytes per call of `write`, stopping at
    /// `WouldBlock`. Returns the number of messages dropped in the episode that just ended, if
    /// the queue drained after having been full.
    pub fn write_to(
        &mut self,
        mut writer: impl Write,
        chunk: usize,
        once: bool,
    ) -> io::Result<Option<u64>> {
        while !self.is_empty() {
            let end = self.buf.len().min(self.sent.saturating_add(chunk));
            match writer.write(&self.buf[self.sent..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if once {
                break;
            }
        }
        // Compact so the buffer does not grow by what was already sent.
        if self.sent > self.limit {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        if self.full_since.is_some() && self.pending() * 2 <= self.limit {
            self.full_since = None;
            return Ok(Some(std::mem::take(&mut self.dropped)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_kind_and_message() {
        assert_eq!(parse(b"s{\"a\":1}\n"), Some((SAID, &b"{\"a\":1}"[..])));
        assert_eq!(parse(b"d{}"), Some((DELIVER, &b"{}"[..])));
        assert_eq!(parse(b"\n"), None);
    }

    #[test]
    fn outbox_drops_what_does_not_fit_and_reports_when_drained() {
        let now = Instant::now();
        let mut out = Outbox::new(10);
        assert!(out.push(Some(DELIVER), b"1234", now)); // 6 bytes
        assert!(!out.push(Some(DELIVER), b"1234", now)); // would be 12
        assert_eq!(out.dropped, 1);
        assert!(out.full_since.is_some());
        let mut sink = Vec::new();
        assert_eq!(out.write_to(&mut sink, 4, false).unwrap(), Some(1));
        assert_eq!(sink, b"d1234\n");
        assert!(out.is_empty());
        assert!(out.push(None, b"12345678", now));
        out.write_to(&mut sink, 3, true).unwrap();
        assert_eq!(out.pending(), 6);
        // Resuming a partial write with no chunk limit (the links' case).
        out.write_to(&mut sink, usize::MAX, false).unwrap();
        assert!(out.is_empty());
        assert_eq!(sink, b"d1234\n12345678\n");
    }
}
