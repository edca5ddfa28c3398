//! The stamp each benchmark message carries, so any client can tell who sent it, which of the
//! sender's messages it is, and when it left.
//!
//! The stamp lives inside the `message` text (`chat-bench:1f2e3d4c:17:2:5123456`: run, sender,
//! round, send time in µs on the benchmark's own monotonic clock), because the text is the one part
//! every chat server is sure to pass through unchanged. It uses only characters that JSON never
//! escapes, so it is found in the raw frame with a substring search, whatever the server does with
//! key order or extra keys, without parsing the JSON of every delivery.

use std::fmt;

use memchr::memmem;

/// The marker that starts every stamp.
pub const MARKER: &str = "chat-bench:";

/// The round number of a roll-call message (sent before the measurement to learn that every client
/// has joined the room); it is never a real round.
pub const ROLL_CALL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which measurement (one per search step) the message belongs to.
    pub run: u32,
    /// The sending client's index, `0..clients`.
    pub sender: u32,
    /// The sender's round, `0..rounds`, or [`ROLL_CALL`].
    pub round: u32,
    /// Send time, µs since the benchmark's clock started.
    pub sent_us: u64,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{MARKER}{:08x}:{}:{}:{}",
            self.run, self.sender, self.round, self.sent_us
        )
    }
}

/// Finds stamps in frame text; build it once and reuse it (the searcher is precomputed).
pub struct StampFinder {
    finder: memmem::Finder<'static>,
}

impl Default for StampFinder {
    fn default() -> Self {
        StampFinder {
            finder: memmem::Finder::new(MARKER.as_bytes()),
        }
    }
}

impl StampFinder {
    /// The first well-formed stamp in `text`, if any (other messages in the room have none).
    pub fn find(&self, text: &[u8]) -> Option<Stamp> {
        // Most relays put the message first: `{"message":"chat-bench:…`. Look there before
        // searching the whole frame.
        const USUAL: usize = br#"{"message":""#.len();
        let at = match text.get(USUAL..USUAL + MARKER.len()) {
            Some(m) if m == MARKER.as_bytes() => USUAL,
            _ => self.finder.find(text)?,
        };
        parse_fields(&text[at + MARKER.len()..])
    }
}

/// `run(hex8):sender:round:sent_us`, the last field ended by any non-digit or the end of text.
///
/// This runs once per delivery, so it is written for the branch predictor: one pass per field,
/// digits accumulated as they are checked, a table for the hex digits. Up to 19 digits cannot
/// overflow a u64; only a 20-digit field is checked.
fn parse_fields(b: &[u8]) -> Option<Stamp> {
    let hex = b.get(..8)?;
    let mut run = 0u32;
    for &c in hex {
        let digit = HEX[usize::from(c)];
        if digit > 15 {
            return None;
        }
        run = run << 4 | u32::from(digit);
    }
    let mut at = 8;
    let mut field = || -> Option<u64> {
        if *b.get(at)? != b':' {
            return None;
        }
        at += 1;
        let start = at;
        let mut v = 0u64;
        while let Some(&c) = b.get(at) {
            let digit = c.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            v = v.wrapping_mul(10).wrapping_add(u64::from(digit));
            at += 1;
        }
        match at - start {
            1..=19 => Some(v),
            20 => b[start..at].iter().try_fold(0u64, |v, &c| {
                v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
            }),
            _ => None,
        }
    };
    let sender = u32::try_from(field()?).ok()?;
    let round = u32::try_from(field()?).ok()?;
    let sent_us = field()?;
    Some(Stamp {
        run,
        sender,
        round,
        sent_us,
    })
}

/// The value of each byte as a hex digit (either case), or 0xff.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = match c as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => 0xff,
        };
        c += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_stamp_inside_a_relayed_frame() {
        let frame = br#"{"user":"0123456789abcdef0123456789abcdef","message":"chat-bench:0000002a:17:2:5123456"}"#;
        let stamp = StampFinder::default().find(frame).unwrap();
        assert_eq!(
            stamp,
            Stamp {
                run: 42,
                sender: 17,
                round: 2,
                sent_us: 5_123_456
            }
        );
    }

    #[test]
    fn ignores_messages_without_a_stamp_or_with_a_broken_one() {
        let f = StampFinder::default();
        assert_eq!(f.find(br#"{"message":"hello","user":"x"}"#), None);
        assert_eq!(f.find(b"chat-bench:0000002a:17:2"), None);
        assert_eq!(f.find(b"chat-bench:0000002g:17:2:5"), None);
        assert_eq!(f.find(b"chat-bench:0000002a:x:2:5"), None);
        assert_eq!(f.find(b"chat-bench:0000002a:99999999999:2:5"), None);
        // The largest sent time reads back; one more overflows.
        let max = f
            .find(b"chat-bench:0000002a:1:2:18446744073709551615")
            .unwrap();
        assert_eq!(max.sent_us, u64::MAX);
        assert_eq!(
            f.find(b"chat-bench:0000002a:1:2:18446744073709551616"),
            None
        );
        assert_eq!(
            f.find(b"chat-bench:0000002a:1:2:123456789012345678901"),
            None
        );
    }

    proptest! {
        #[test]
        fn a_stamp_reads_back_whatever_surrounds_it(
            run: u32, sender: u32, round: u32, sent_us: u64,
            before in "[a-z\" {}:,]{0,20}", after in "[a-z\" {}]{0,20}",
        ) {
            let stamp = Stamp { run, sender, round, sent_us };
            let text = format!("{before}{stamp}{after}");
            prop_assert_eq!(StampFinder::default().find(text.as_bytes()), Some(stamp));
        }

        #[test]
        fn a_stamp_survives_json_encoding(run: u32, sender: u32, round: u32, sent_us: u64) {
            let stamp = Stamp { run, sender, round, sent_us };
            let json = serde_json::json!({"message": stamp.to_string(), "user": "u"}).to_string();
            prop_assert_eq!(StampFinder::default().find(json.as_bytes()), Some(stamp));
        }
    }
}
