//! The WebSocket layer under the chat, one level below axum's per-message API, so that a
//! broadcast frame is encoded once per worker and the same bytes go to every client.
//!
//! - [`handshake`]: the upgrade. axum's `WebSocketUpgrade` checks the request (GET, `Connection:
//!   upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, a key) exactly as before and its
//!   rejections are the answers; the `101` answer is the one axum would give. What comes back is
//!   hyper's upgraded connection itself, not a message stream.
//! - [`Reader`]: the client's frames, parsed by tungstenite (the same parser and limits axum used:
//!   `--max-message` per frame and per message, masking, fragments, UTF-8), with every failure
//!   mapped to the close code it calls for ([`Incoming::Fail`]). The reader never writes: pings
//!   and closes are handed up and answered by the connection's writer, in order with the rest.
//!   The session polls its reader and writer in one task, so the reader is polled at every
//!   broadcast; until the socket has woken it, a poll returns at once instead of entering
//!   tungstenite (which zero-fills its read buffer before each read attempt: that and the split
//!   lock were a tenth of a worker's CPU at 2,000 clients).
//! - [`text_frame`], [`close_frame`], [`pong_frame`]: server frames (unmasked, so the bytes of a
//!   frame are the same for every client), encoded with tungstenite's own frame header code.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::server::ApiError;

/// An upgraded connection.
pub type Io = TokioIo<Upgraded>;
pub type ReadSide = tokio::io::ReadHalf<Io>;
pub type WriteSide = tokio::io::WriteHalf<Io>;

/// Close codes the relay sends (RFC 6455 section 7.4.1).
pub mod code {
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
}

/// Check a `GET /chat` as axum's `WebSocketUpgrade` does. `Ok`: the `101` answer and the
/// connection it will become; `Err`: the refusal (axum's status and text, as JSON).
pub async fn handshake(request: Request) -> Result<(Response, OnUpgrade), Response> {
    let (mut parts, _body) = request.into_parts();
    // axum's extractor takes the upgrade out of the request; keep a handle of our own.
    let on_upgrade = parts.extensions.get::<OnUpgrade>().cloned();
    if let Err(rejection) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        return Err(ApiError::new(rejection.status(), rejection.body_text()).into_response());
    }
    // The extractor refuses a request without either, so both are here.
    let (Some(on_upgrade), Some(key)) = (on_upgrade, parts.headers.get(header::SEC_WEBSOCKET_KEY))
    else {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "not a WebSocket upgrade").into_response(),
        );
    };
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .expect("base64 is a valid header value");
    let response = (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response();
    Ok((response, on_upgrade))
}

/// What the client sent next.
#[derive(Debug)]
pub enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// A ping, to be answered with a pong of the same payload.
    Ping(Bytes),
    Pong,
    /// The client's close frame (already checked: a code a peer may not send reads 1002); to be
    /// answered with the same code.
    Close(Option<CloseFrame>),
    /// The client broke the protocol: close with this code and reason.
    Fail(u16, &'static str),
    /// The connection ended or failed: nothing more to say.
    Gone,
}

/// The client's side of the conversation.
pub struct Reader {
    stream: WebSocketStream<ReadOnly>,
    gate: Arc<ReadGate>,
}

/// Whether the socket has anything new for the reader: set up when a read of the socket is
/// pending, opened by the socket's wake-up.
#[derive(Default)]
struct ReadGate {
    /// The last read of the socket was pending (and its wake-up has not come yet, unless `woken`).
    waiting: AtomicBool,
    woken: AtomicBool,
    /// Who to wake when the socket does.
    task: Mutex<Option<Waker>>,
}

impl ReadGate {
    /// Nothing can have arrived since the last read was pending.
    fn closed(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) && !self.woken.load(Ordering::SeqCst)
    }

    fn register(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl Wake for ReadGate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Reader {
    /// Read frames of at most `max_message` bytes (a frame or message over it fails with 1009),
    /// with a first read buffer of `read_buffer` bytes (it grows for a large frame).
    pub async fn new(read: ReadSide, max_message: usize, read_buffer: usize) -> Reader {
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
            .read_buffer_size(read_buffer);
        let gate = Arc::new(ReadGate::default());
        let socket = ReadOnly {
            read,
            gate: gate.clone(),
        };
        let stream = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
        Reader { stream, gate }
    }

    pub async fn next(&mut self) -> Incoming {
        let next = std::future::poll_fn(|cx| {
            if self.gate.closed() {
                self.gate.register(cx.waker());
                // The wake-up may have come while registering.
                if self.gate.closed() {
                    return Poll::Pending;
                }
            }
            self.stream.poll_next_unpin(cx)
        });
        match next.await {
            None => Incoming::Gone,
            Some(Ok(Message::Text(text))) => Incoming::Text(text),
            Some(Ok(Message::Binary(_))) => Incoming::Binary,
            Some(Ok(Message::Ping(data))) => Incoming::Ping(data),
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => Incoming::Pong,
            Some(Ok(Message::Close(frame))) => Incoming::Close(frame),
            Some(Err(e)) => failure(&e),
        }
    }
}

/// The close code for a read error, if the client is still there to be told.
fn failure(e: &WsError) -> Incoming {
    match e {
        WsError::Capacity(_) => Incoming::Fail(code::SIZE, "message too big"),
        WsError::Utf8(_) => Incoming::Fail(code::INVALID, "invalid UTF-8"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Incoming::Gone,
        WsError::Protocol(_) => Incoming::Fail(code::PROTOCOL, "protocol error"),
        _ => Incoming::Gone,
    }
}

/// The read half, seen by tungstenite as a whole socket whose writes go nowhere: tungstenite
/// queues its own pong and close replies, but the connection's writer sends them instead
/// (in order with the room's frames, which tungstenite never sees). Its reads go through the
/// [`ReadGate`], so that the reader knows when the socket has woken it.
struct ReadOnly {
    read: ReadSide,
    gate: Arc<ReadGate>,
}

impl AsyncRead for ReadOnly {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.gate.register(cx.waker());
        // Cleared before the read, so a wake-up during it is not lost.
        this.gate.woken.store(false, Ordering::SeqCst);
        this.gate.waiting.store(false, Ordering::SeqCst);
        let waker = Waker::from(this.gate.clone());
        let mut gated = Context::from_waker(&waker);
        let r = Pin::new(&mut this.read).poll_read(&mut gated, buf);
        if r.is_pending() {
            this.gate.waiting.store(true, Ordering::SeqCst);
        }
        r
    }
}

impl AsyncWrite for ReadOnly {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Append one server text frame holding `payload`.
pub fn text_frame(out: &mut BytesMut, payload: &[u8]) {
    frame(out, OpCode::Data(Data::Text), payload);
}

/// A pong answering a ping's `payload`.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 2);
    frame(&mut out, OpCode::Control(Control::Pong), payload);
    out.freeze()
}

/// A close frame with `code` and `reason` (at most 123 bytes, as all of ours are).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    let mut out = BytesMut::with_capacity(payload.len() + 2);
    frame(&mut out, OpCode::Control(Control::Close), &payload);
    out.freeze()
}

/// The answer to a client's close frame: the same code and reason, or an empty close frame.
pub fn close_reply(theirs: Option<&CloseFrame>) -> Bytes {
    match theirs {
        Some(frame) => close_frame(u16::from(frame.code), frame.reason.as_str()),
        None => {
            let mut out = BytesMut::with_capacity(2);
            frame(&mut out, OpCode::Control(Control::Close), &[]);
            out.freeze()
        }
    }
}

fn frame(out: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let length = payload.len() as u64;
    out.reserve(header.len(length) + payload.len());
    header
        .format(length, &mut out.writer())
        .expect("writing into memory does not fail");
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    fn parse(bytes: &[u8]) -> Vec<Frame> {
        let mut cursor = Cursor::new(bytes);
        let mut frames = Vec::new();
        while (cursor.position() as usize) < bytes.len() {
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            let at = cursor.position() as usize;
            let payload = Bytes::copy_from_slice(&bytes[at..at + length as usize]);
            cursor.set_position((at + length as usize) as u64);
            frames.push(Frame::from_payload(header, payload));
        }
        frames
    }

    #[test]
    fn text_frames_of_every_length_class_parse_back() {
        let mut out = BytesMut::new();
        let texts = [
            "",
            "hi",
            &"x".repeat(125),
            &"y".repeat(126),
            &"z".repeat(70_000),
        ];
        for text in texts {
            text_frame(&mut out, text.as_bytes());
        }
        let frames = parse(&out);
        assert_eq!(frames.len(), texts.len());
        for (frame, text) in frames.iter().zip(texts) {
            let header = frame.header();
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(frame.payload(), text.as_bytes());
        }
    }

    #[test]
    fn close_and_pong_frames() {
        let close = parse(&close_frame(code::INVALID, "invalid UTF-8"));
        assert_eq!(close[0].header().opcode, OpCode::Control(Control::Close));
        assert_eq!(&close[0].payload()[..2], &1007u16.to_be_bytes());
        assert_eq!(&close[0].payload()[2..], b"invalid UTF-8");
        let empty = parse(&close_reply(None));
        assert!(empty[0].payload().is_empty());
        let pong = parse(&pong_frame(b"abc"));
        assert_eq!(pong[0].header().opcode, OpCode::Control(Control::Pong));
        assert_eq!(pong[0].payload(), b"abc");
    }
}
