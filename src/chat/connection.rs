//! One client's WebSocket session: a reader that stamps and broadcasts what the client says, and a
//! writer that sends it the room's messages.
//!
//! Abuse and fault policy, per connection:
//! - a text frame that is not a JSON object with a string `"message"` gets an error frame
//!   `{"error":"…"}` (only to its sender) and is not broadcast;
//! - a frame over `--max-message` bytes is refused by the WebSocket layer before it is buffered,
//!   and the connection is closed with 1009 (message too big); a binary frame closes it with 1003;
//! - over the rate limit a message is dropped with an error frame; a client that keeps on sending
//!   far past it (see [`RateLimit`]) is closed with 1008 (policy violation);
//! - a client that does not read: its queue is the messages it has not been sent yet. While its
//!   socket takes nothing, the writer keeps collecting; when more than `--queue` messages wait, it
//!   is closed with 1008 and dropped (the waiting messages are the room's shared batches, not
//!   copies; the frames already copied into its write buffer are capped at 4 MiB, past which it is
//!   dropped too). Nobody else waits for it: the room never blocks on a client.
//! - on shutdown every client gets a close frame 1001 (going away).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, watch};

use super::message::{self, RateLimit, UserId, Verdict};
use super::room::Batch;
use super::worker::{Seat, Worker};

/// How long a close frame may take to go out before the connection is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A frame for this client only, from its own reader.
enum Private {
    Error(Utf8Bytes),
    Close(u16, &'static str),
}

/// Why the writer ended.
enum WriterEnd {
    Close(u16, &'static str),
    /// The socket failed or the room is gone: nothing more to say.
    Gone,
}

pub async fn session(
    socket: WebSocket,
    worker: Arc<Worker>,
    room: broadcast::Receiver<Batch>,
    user: UserId,
    seat: Seat,
) {
    let _seat = seat;
    let (sink, stream) = socket.split();
    let (private_tx, private_rx) = mpsc::channel(16);
    let writer = write_loop(
        sink,
        room,
        private_rx,
        worker.shutdown(),
        worker.limits.queue,
    );
    tokio::pin!(writer);
    tokio::select! {
        asked_to_close = read_loop(stream, &worker, user, private_tx) => {
            // When the reader asked for a close, let the writer send it; otherwise the client is
            // gone and so is the session.
            if asked_to_close {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut writer).await;
            }
        }
        () = &mut writer => {}
    }
}

/// Read the client's frames until it leaves. Returns true when it asked the writer to close.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    worker: &Worker,
    user: UserId,
    private: mpsc::Sender<Private>,
) -> bool {
    let limits = worker.limits;
    let mut rate = RateLimit::new(limits.rate, limits.burst, Instant::now());
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(_)) => {
                let _ = private
                    .send(Private::Close(
                        close_code::UNSUPPORTED,
                        "binary frames are not accepted",
                    ))
                    .await;
                return true;
            }
            Ok(Message::Close(_)) => return false,
            Ok(_) => continue, // ping/pong: answered by the WebSocket layer
            Err(e) => {
                // axum hides tungstenite's error type; its capacity error reads like this.
                if e.to_string().contains("Space limit exceeded") {
                    let _ = private
                        .send(Private::Close(close_code::SIZE, "message too big"))
                        .await;
                    return true;
                }
                return false;
            }
        };
        match rate.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                let why = format!(
                    "rate limit ({} messages/s): message dropped; wait {} ms",
                    limits.rate,
                    rate.wait().as_millis()
                );
                let _ = private.try_send(Private::Error(message::error_frame(why).into()));
                continue;
            }
            Verdict::Disconnect => {
                let _ = private
                    .send(Private::Close(close_code::POLICY, "rate limit exceeded"))
                    .await;
                return true;
            }
        }
        match message::stamp(&text, &user) {
            Ok(said) => worker.say(said),
            Err(refusal) => {
                let _ = private.try_send(Private::Error(message::error_frame(refusal).into()));
            }
        }
    }
    false
}

/// Send the room's messages (and this client's own error frames) until the session ends.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut room: broadcast::Receiver<Batch>,
    mut private: mpsc::Receiver<Private>,
    mut shutdown: watch::Receiver<bool>,
    queue: usize,
) {
    let end = pump(&mut sink, &mut room, &mut private, &mut shutdown, queue).await;
    if let WriterEnd::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

/// Messages waiting for this client, as the batches they came in.
#[derive(Default)]
struct Backlog {
    batches: Vec<Batch>,
    messages: usize,
}

impl Backlog {
    fn push(&mut self, batch: Batch) {
        self.messages += batch.len();
        self.batches.push(batch);
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// What happened while waiting for the room or the reader.
enum Event {
    Queued,
    End(WriterEnd),
}

async fn next_event(
    room: &mut broadcast::Receiver<Batch>,
    private: &mut mpsc::Receiver<Private>,
    shutdown: &mut watch::Receiver<bool>,
    backlog: &mut Backlog,
) -> Event {
    tokio::select! {
        biased;
        _ = shutdown.changed() => Event::End(WriterEnd::Close(close_code::AWAY, "server shutting down")),
        frame = private.recv() => match frame {
            Some(Private::Error(text)) => {
                backlog.push(Batch::from(vec![text]));
                Event::Queued
            }
            Some(Private::Close(code, reason)) => Event::End(WriterEnd::Close(code, reason)),
            None => Event::End(WriterEnd::Gone),
        },
        batch = room.recv() => match batch {
            Ok(batch) => {
                backlog.push(batch);
                Event::Queued
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Event::End(too_slow()),
            Err(broadcast::error::RecvError::Closed) => Event::End(WriterEnd::Gone),
        },
    }
}

async fn pump(
    sink: &mut SplitSink<WebSocket, Message>,
    room: &mut broadcast::Receiver<Batch>,
    private: &mut mpsc::Receiver<Private>,
    shutdown: &mut watch::Receiver<bool>,
    queue: usize,
) -> WriterEnd {
    let mut waiting = Backlog::default();
    let mut sending = Backlog::default();
    loop {
        if waiting.is_empty() {
            if let Event::End(end) = next_event(room, private, shutdown, &mut waiting).await {
                return end;
            }
        }
        // Take every batch that is already there, so one write carries them all.
        loop {
            match room.try_recv() {
                Ok(batch) => waiting.push(batch),
                Err(broadcast::error::TryRecvError::Lagged(_)) => return too_slow(),
                Err(_) => break,
            }
        }
        if waiting.messages > queue {
            return too_slow();
        }
        std::mem::swap(&mut waiting, &mut sending);
        waiting.messages = 0;
        let write = async {
            for batch in sending.batches.drain(..) {
                for said in batch.iter() {
                    sink.feed(Message::Text(said.clone())).await?;
                }
            }
            sink.flush().await
        };
        tokio::pin!(write);
        // While the socket takes its time, keep collecting; past the bound the client is too slow.
        let collect = async {
            loop {
                if let Event::End(end) = next_event(room, private, shutdown, &mut waiting).await {
                    return end;
                }
                if waiting.messages > queue {
                    return too_slow();
                }
            }
        };
        tokio::select! {
            biased;
            written = &mut write => {
                if written.is_err() {
                    return WriterEnd::Gone;
                }
            }
            end = collect => return end,
        }
    }
}

fn too_slow() -> WriterEnd {
    WriterEnd::Close(close_code::POLICY, "too slow: outbound queue full")
}
