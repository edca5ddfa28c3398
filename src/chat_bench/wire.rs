//! The client's side of the wire, one level below tungstenite's message API, so that a delivery
//! costs as little as the benchmark can make it: no `Message` and no allocation per frame, no UTF-8
//! validation (the stamp is ASCII and is found in the raw payload), many frames per read.
//!
//! - [`Inbox`]: the bytes read from one server connection, parsed in place into frames. Each frame
//!   header (2–10 bytes for the unmasked frames a server sends) is parsed by tungstenite's
//!   [`FrameHeader::parse`]; the payload is handed to the caller as a slice of the read buffer.
//!   Fragmented messages (rare from chat servers) are joined in a side buffer.
//! - [`client_frame`]: a masked client frame, encoded by tungstenite's [`Frame::format`].
//! - [`Protocol`]: what goes inside the text frames. The challenge's chat protocol
//!   (`{"message":…}` out, the same object with `"user"` back), or Socket.IO's, spoken over its
//!   plain WebSocket transport (`/socket.io/?EIO=4&transport=websocket`): Engine.IO packet `40`
//!   joins the default namespace, an event is `42["message",{"message":…}]`, and the server's
//!   keep-alive `2` is answered with `3`.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use super::stamp::Stamp;

/// A frame larger than this ends the connection: no chat message comes near it.
pub const MAX_FRAME: u64 = 16 << 20;

/// What the clients speak inside the WebSocket frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// The challenge's chat protocol, as chat-relay speaks it.
    #[default]
    Chat,
    /// Socket.IO (v4, Engine.IO 4) over its WebSocket transport; the event is named `message`.
    #[value(name = "socket.io")]
    SocketIo,
}

impl Protocol {
    /// The text a client sends for `stamp`.
    pub fn message(self, stamp: &Stamp) -> Vec<u8> {
        let object = serde_json::json!({ "message": stamp.to_string() });
        match self {
            Protocol::Chat => object.to_string().into_bytes(),
            Protocol::SocketIo => {
                format!("42{}", serde_json::json!(["message", object])).into_bytes()
            }
        }
    }

    /// The text a client sends right after the handshake, if any: Socket.IO's namespace connect.
    pub fn hello(self) -> Option<&'static [u8]> {
        match self {
            Protocol::Chat => None,
            Protocol::SocketIo => Some(b"40"),
        }
    }

    /// The answer to a server text that is a keep-alive probe, if it is one.
    pub fn keepalive_reply(self, text: &[u8]) -> Option<&'static [u8]> {
        match (self, text) {
            (Protocol::SocketIo, b"2") => Some(b"3"),
            _ => None,
        }
    }

    /// Whether a server text says the server has dropped this client (Socket.IO's namespace
    /// disconnect `41`, Engine.IO's close `1`).
    pub fn is_goodbye(self, text: &[u8]) -> bool {
        matches!((self, text), (Protocol::SocketIo, b"41" | b"1"))
    }
}

/// A client-to-server frame (masked, as RFC 6455 requires of clients).
pub fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut frame = Frame::message(payload.to_vec(), opcode, true);
    frame.header_mut().mask = Some(fastrand::u32(..).to_ne_bytes());
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing into memory does not fail");
    out
}

/// A text frame from the client.
pub fn client_text(payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Data(Data::Text), payload)
}

/// One frame's worth of news from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text or binary message.
    Message(&'a [u8]),
    /// A ping, to be answered with a pong of the same payload.
    Ping(&'a [u8]),
    /// The server's close frame: code and reason, as text.
    Close(String),
}

/// The read buffer of one connection and the frames in it.
pub struct Inbox {
    buf: Vec<u8>,
    /// A fragmented message being joined, with its first frame's opcode seen.
    fragments: Option<Vec<u8>>,
}

impl Inbox {
    /// An inbox that starts with `tail` (bytes read after the handshake's response) and reads
    /// `capacity` bytes at a time.
    pub fn new(mut tail: Vec<u8>, capacity: usize) -> Inbox {
        tail.reserve(capacity.saturating_sub(tail.len()));
        Inbox {
            buf: tail,
            fragments: None,
        }
    }

    /// The buffer to read into: what is there is kept, reads append to it. At least `spare` bytes
    /// of room are made, so a read is never a short one for want of space.
    pub fn buffer(&mut self, spare: usize) -> &mut Vec<u8> {
        if self.buf.capacity() - self.buf.len() < spare {
            self.buf.reserve(spare);
        }
        &mut self.buf
    }

    /// Hand every complete frame in the buffer to `on`, in order, and drop them from it; a partial
    /// frame stays for the next read. `Err` names a protocol violation; the connection is then
    /// useless. Stops after a close frame.
    pub fn drain(&mut self, mut on: impl FnMut(Event<'_>)) -> Result<(), String> {
        let mut at = 0;
        let result = loop {
            let mut cursor = Cursor::new(&self.buf[at..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("bad frame from the server: {e}")),
            };
            if length > MAX_FRAME {
                break Err(format!("the server sent a frame of {length} bytes"));
            }
            if header.mask.is_some() {
                break Err("the server sent a masked frame".into());
            }
            if header.rsv1 || header.rsv2 || header.rsv3 {
                break Err("the server set a reserved bit (no extension was negotiated)".into());
            }
            let start = at + cursor.position() as usize;
            let end = start + length as usize;
            if end > self.buf.len() {
                break Ok(());
            }
            at = end;
            let payload = &self.buf[start..end];
            match header.opcode {
                OpCode::Data(Data::Text | Data::Binary) if header.is_final => {
                    if self.fragments.is_some() {
                        break Err("a new message began inside a fragmented one".into());
                    }
                    on(Event::Message(payload));
                }
                OpCode::Data(Data::Text | Data::Binary) => {
                    if self.fragments.is_some() {
                        break Err("a new message began inside a fragmented one".into());
                    }
                    self.fragments = Some(payload.to_vec());
                }
                OpCode::Data(Data::Continue) => {
                    let Some(joined) = self.fragments.as_mut() else {
                        break Err("a continuation frame without a message".into());
                    };
                    if (joined.len() + payload.len()) as u64 > MAX_FRAME {
                        break Err("the server sent a message over 16 MiB".into());
                    }
                    joined.extend_from_slice(payload);
                    if header.is_final {
                        let joined = self.fragments.take().unwrap_or_default();
                        on(Event::Message(&joined));
                    }
                }
                OpCode::Control(Control::Ping) => on(Event::Ping(payload)),
                OpCode::Control(Control::Pong) => {}
                OpCode::Control(Control::Close) => {
                    on(Event::Close(close_reason(payload)));
                    break Ok(());
                }
                OpCode::Data(Data::Reserved(op)) | OpCode::Control(Control::Reserved(op)) => {
                    break Err(format!("the server sent a frame with reserved opcode {op}"));
                }
            }
        };
        if at == self.buf.len() {
            self.buf.clear();
        } else if at > 0 {
            self.buf.drain(..at);
        }
        result
    }
}

/// How a close frame's payload reads in a diagnostic.
fn close_reason(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "closed by the server: {} {}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "closed by the server".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ws::{close_frame, pong_frame, text_frame};
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn events(inbox: &mut Inbox) -> (Vec<String>, Result<(), String>) {
        let mut seen = Vec::new();
        let r = inbox.drain(|e| {
            seen.push(match e {
                Event::Message(m) => format!("message {}", String::from_utf8_lossy(m)),
                Event::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                Event::Close(why) => why,
            })
        });
        (seen, r)
    }

    #[test]
    fn reads_many_server_frames_out_of_one_buffer() {
        // The relay's own encoder writes what a server sends.
        let mut wire = BytesMut::new();
        text_frame(&mut wire, b"one");
        text_frame(&mut wire, &[b'x'; 200]);
        text_frame(&mut wire, b"three");
        let mut inbox = Inbox::new(wire.to_vec(), 64);
        let (seen, r) = events(&mut inbox);
        assert_eq!(r, Ok(()));
        assert_eq!(
            seen,
            [
                "message one".to_string(),
                format!("message {}", "x".repeat(200)),
                "message three".into()
            ]
        );
        assert!(inbox.buffer(0).is_empty());
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let mut wire = BytesMut::new();
        text_frame(&mut wire, b"first");
        text_frame(&mut wire, &[b'y'; 300]);
        let cut = wire.len() - 100;
        let mut inbox = Inbox::new(wire[..cut].to_vec(), 64);
        assert_eq!(events(&mut inbox).0, ["message first"]);
        inbox.buffer(16).extend_from_slice(&wire[cut..]);
        assert_eq!(
            events(&mut inbox).0,
            [format!("message {}", "y".repeat(300))]
        );
    }

    #[test]
    fn pings_closes_and_fragments() {
        let mut wire = pong_frame(b"p").to_vec();
        wire[0] = 0x89; // a ping: the same frame with the ping opcode
                        // "frag" + "ment" as a text frame and a final continuation.
        wire.extend_from_slice(&[0x01, 4]);
        wire.extend_from_slice(b"frag");
        wire.extend_from_slice(&[0x80, 4]);
        wire.extend_from_slice(b"ment");
        wire.extend_from_slice(&close_frame(1008, "too slow"));
        wire.extend_from_slice(&[0x81, 5]);
        wire.extend_from_slice(b"after");
        let mut inbox = Inbox::new(wire, 64);
        let (seen, r) = events(&mut inbox);
        assert_eq!(r, Ok(()));
        assert_eq!(
            seen,
            [
                "ping p",
                "message fragment",
                "closed by the server: 1008 too slow"
            ]
        );
    }

    #[test]
    fn protocol_violations_are_errors() {
        for bad in [
            &[0x83u8, 0][..],                     // reserved opcode
            &[0x80, 1, b'x'],                     // continuation without a message
            &[0x81, 0x81, 1, 2, 3, 4, b'x'],      // masked
            &[0x81, 127, 0, 0, 0, 0, 2, 0, 0, 0], // 32 MiB
            &[0xC1, 1, b'x'],                     // compressed, never negotiated
        ] {
            let mut inbox = Inbox::new(bad.to_vec(), 64);
            assert!(events(&mut inbox).1.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_frames_are_masked_and_parse_back() {
        let frame = client_text(b"hello");
        let mut cursor = Cursor::new(&frame[..]);
        let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        let mask = header.mask.expect("a client frame is masked");
        let at = cursor.position() as usize;
        let text: Vec<u8> = frame[at..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!((length, &text[..]), (5, &b"hello"[..]));
    }

    #[test]
    fn socket_io_messages_carry_the_stamp_as_an_event() {
        let stamp = Stamp {
            run: 7,
            sender: 3,
            round: 1,
            sent_us: 99,
        };
        let text = String::from_utf8(Protocol::SocketIo.message(&stamp)).unwrap();
        let (kind, json) = text.split_at(2);
        assert_eq!(kind, "42");
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            value,
            serde_json::json!(["message", {"message": stamp.to_string()}])
        );
        let chat: serde_json::Value =
            serde_json::from_slice(&Protocol::Chat.message(&stamp)).unwrap();
        assert_eq!(chat, serde_json::json!({"message": stamp.to_string()}));
        assert_eq!(Protocol::SocketIo.keepalive_reply(b"2"), Some(&b"3"[..]));
        assert_eq!(Protocol::Chat.keepalive_reply(b"2"), None);
        assert!(Protocol::SocketIo.is_goodbye(b"41") && !Protocol::Chat.is_goodbye(b"41"));
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_gives_the_same_messages(
            texts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20),
            cuts in prop::collection::vec(0usize..4000, 0..8),
        ) {
            let mut wire = BytesMut::new();
            for t in &texts {
                text_frame(&mut wire, t);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut inbox = Inbox::new(Vec::new(), 16);
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut from = 0;
            for cut in cuts {
                inbox.buffer(16).extend_from_slice(&wire[from..cut]);
                from = cut;
                inbox.drain(|e| if let Event::Message(m) = e { got.push(m.to_vec()) }).unwrap();
            }
            prop_assert_eq!(got, texts);
        }
    }
}
