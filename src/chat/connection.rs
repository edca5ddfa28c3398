//! One client's WebSocket session: a reader that stamps and broadcasts what the client says, and a
//! writer that sends it the room's messages.
//!
//! Abuse and fault policy, per connection:
//! - a text frame that is not a JSON object with a string `"message"` gets an error frame
//!   `{"error":"…"}` (only to its sender) and is not broadcast;
//! - a frame over `--max-message` bytes is refused by the WebSocket layer before it is buffered,
//!   and the connection is closed with 1009 (message too big); a binary frame closes it with 1003;
//!   a text frame that is not UTF-8 with 1007; any other breach of RFC 6455 (reserved bits set,
//!   an unmasked frame, a continuation out of place, a fragmented or oversized control frame) with
//!   1002 (protocol error);
//! - over the rate limit a message is dropped with an error frame; a client that keeps on sending
//!   far past it (see [`RateLimit`]) is closed with 1008 (policy violation);
//! - a client that does not read: its queue is the messages it has not been sent yet. While its
//!   socket takes nothing, the writer keeps collecting; when more than `--queue` messages wait, it
//!   is closed with 1008 and dropped (the waiting messages are the room's shared batches, not
//!   copies: the writer writes the batch's frame bytes, encoded once per worker, straight to the
//!   socket, one `writev` for every batch waiting). Nobody else waits for it: the room never
//!   blocks on a client.
//! - on shutdown every client gets a close frame 1001 (going away); a client's own close frame is
//!   answered with the same code; pings are answered with pongs. All of these go out after the
//!   frames already being written, never inside one.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc, watch};

use super::message::{self, RateLimit, UserId, Verdict};
use super::metrics::{Refused, Relay};
use super::room::Batch;
use super::worker::{Seat, Worker};
use super::ws::{self, code, Incoming};

/// How long a close frame may take to go out before the connection is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Initial read buffer of a WebSocket connection (tungstenite reserves 128 KiB by default; frames
/// here are small and the buffer grows for a large one, so thousands of clients cost megabytes).
const READ_BUFFER: usize = 8 * 1024;
/// Buffers handed to one `writev`, at most.
const MAX_SLICES: usize = 64;

/// A frame for this client only, from its own reader.
enum Private {
    /// An error frame (counted in the client's queue like a message).
    Error(Bytes),
    Pong(Bytes),
    /// Send this close frame after what is being written, then end.
    Close(Bytes),
}

/// Why the writer ended.
enum WriterEnd {
    /// Send this close frame, then end.
    Close(Bytes),
    /// More than `--queue` messages wait: close with 1008 and count the drop.
    TooSlow,
    /// The socket failed or the room is gone: nothing more to say.
    Gone,
}

pub async fn session(
    socket: ws::Io,
    worker: Arc<Worker>,
    room: broadcast::Receiver<Batch>,
    user: UserId,
    seat: Seat,
) {
    let _seat = seat;
    let (read, write) = tokio::io::split(socket);
    let reader = ws::Reader::new(read, worker.limits.max_message, READ_BUFFER).await;
    let (private_tx, private_rx) = mpsc::channel(16);
    let writer = write_loop(
        write,
        room,
        private_rx,
        worker.shutdown(),
        worker.limits.queue,
        &worker.metrics,
    );
    tokio::pin!(writer);
    tokio::select! {
        asked_to_close = read_loop(reader, &worker, user, private_tx) => {
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
    mut reader: ws::Reader,
    worker: &Worker,
    user: UserId,
    private: mpsc::Sender<Private>,
) -> bool {
    let limits = worker.limits;
    let mut rate = RateLimit::new(limits.rate, limits.burst, Instant::now());
    loop {
        let close = |code, reason| Private::Close(ws::close_frame(code, reason));
        let text = match reader.next().await {
            Incoming::Text(text) => text,
            Incoming::Binary => {
                worker.metrics.refused(Refused::Binary);
                let _ = private
                    .send(close(code::UNSUPPORTED, "binary frames are not accepted"))
                    .await;
                return true;
            }
            Incoming::Ping(data) => {
                // A ping flood while the client does not read loses pongs, not memory.
                let _ = private.try_send(Private::Pong(ws::pong_frame(&data)));
                continue;
            }
            Incoming::Pong => continue,
            Incoming::Close(frame) => {
                let _ = private
                    .send(Private::Close(ws::close_reply(frame.as_ref())))
                    .await;
                return true;
            }
            Incoming::Fail(code, reason) => {
                worker.metrics.refused(match code {
                    code::SIZE => Refused::TooBig,
                    code::INVALID => Refused::NotUtf8,
                    _ => Refused::Protocol,
                });
                let _ = private.send(close(code, reason)).await;
                return true;
            }
            Incoming::Gone => return false,
        };
        match rate.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                worker.metrics.refused(Refused::RateLimit);
                let why = format!(
                    "rate limit ({} messages/s): message dropped; wait {} ms",
                    limits.rate,
                    rate.wait().as_millis()
                );
                let _ = private.try_send(error(why));
                continue;
            }
            Verdict::Disconnect => {
                worker.metrics.refused(Refused::RateLimit);
                let _ = private
                    .send(close(code::POLICY, "rate limit exceeded"))
                    .await;
                return true;
            }
        }
        match message::stamp(&text, &user) {
            Ok(said) => worker.say(said),
            Err(refusal) => {
                worker.metrics.refused(Refused::Invalid);
                let _ = private.try_send(error(refusal));
            }
        }
    }
}

fn error(why: impl std::fmt::Display) -> Private {
    let text = message::error_frame(why);
    Private::Error(Batch::encode([text.as_str()]).frames().clone())
}

/// Send the room's messages (and this client's own frames) until the session ends.
async fn write_loop(
    mut sink: ws::WriteSide,
    mut room: broadcast::Receiver<Batch>,
    mut private: mpsc::Receiver<Private>,
    mut shutdown: watch::Receiver<bool>,
    queue: usize,
    metrics: &Relay,
) {
    // Bytes taken for the socket and not yet written, in order (the front may be a part).
    let mut unsent = VecDeque::new();
    let end = pump(
        &mut sink,
        &mut room,
        &mut private,
        &mut shutdown,
        queue,
        &mut unsent,
        metrics,
    )
    .await;
    let end = match end {
        WriterEnd::TooSlow => {
            metrics.slow_client_dropped();
            WriterEnd::Close(ws::close_frame(
                code::POLICY,
                "too slow: outbound queue full",
            ))
        }
        end => end,
    };
    if let WriterEnd::Close(frame) = end {
        // After the rest of a frame cut short, never inside it.
        unsent.push_back(frame);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, write_out(&mut sink, &mut unsent)).await;
    }
}

/// Messages waiting for this client, as the batches they came in.
#[derive(Default)]
struct Backlog {
    batches: Vec<Bytes>,
    messages: usize,
    /// Of `messages`, those from the room (not this client's error frames and pongs).
    said: usize,
}

impl Backlog {
    fn push(&mut self, batch: &Batch) {
        self.messages += batch.len();
        self.batches.push(batch.frames().clone());
    }

    fn push_said(&mut self, batch: &Batch) {
        self.said += batch.len();
        self.push(batch);
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
        _ = shutdown.changed() => Event::End(WriterEnd::Close(ws::close_frame(code::AWAY, "server shutting down"))),
        frame = private.recv() => match frame {
            Some(Private::Error(frame)) => {
                backlog.push(&Batch::from_frames(frame, 1));
                Event::Queued
            }
            Some(Private::Pong(frame)) => {
                // Counted like a message: a client that pings and never reads hits `--queue`.
                backlog.push(&Batch::from_frames(frame, 1));
                Event::Queued
            }
            Some(Private::Close(frame)) => Event::End(WriterEnd::Close(frame)),
            None => Event::End(WriterEnd::Gone),
        },
        batch = room.recv() => match batch {
            Ok(batch) => {
                backlog.push_said(&batch);
                Event::Queued
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Event::End(too_slow()),
            Err(broadcast::error::RecvError::Closed) => Event::End(WriterEnd::Gone),
        },
    }
}

async fn pump(
    sink: &mut ws::WriteSide,
    room: &mut broadcast::Receiver<Batch>,
    private: &mut mpsc::Receiver<Private>,
    shutdown: &mut watch::Receiver<bool>,
    queue: usize,
    unsent: &mut VecDeque<Bytes>,
    metrics: &Relay,
) -> WriterEnd {
    let mut waiting = Backlog::default();
    loop {
        if waiting.is_empty() {
            if let Event::End(end) = next_event(room, private, shutdown, &mut waiting).await {
                return end;
            }
        }
        // Take every batch that is already there, so one write carries them all.
        loop {
            match room.try_recv() {
                Ok(batch) => waiting.push_said(&batch),
                Err(broadcast::error::TryRecvError::Lagged(_)) => return too_slow(),
                Err(_) => break,
            }
        }
        if waiting.messages > queue {
            return too_slow();
        }
        unsent.extend(waiting.batches.drain(..).filter(|b| !b.is_empty()));
        waiting.messages = 0;
        // One add per write, however many messages it carries.
        metrics.delivered(std::mem::take(&mut waiting.said) as u64);
        let write = write_out(sink, unsent);
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

/// Write every buffer in `unsent`, as many per `writev` as there are (up to [`MAX_SLICES`]).
/// What is written leaves `unsent` as it goes, so when this is dropped half way `unsent` holds
/// exactly what the socket has not taken.
async fn write_out(sink: &mut ws::WriteSide, unsent: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !unsent.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut used = 0;
        for (slice, bytes) in slices.iter_mut().zip(unsent.iter()) {
            *slice = IoSlice::new(bytes);
            used += 1;
        }
        let mut written = sink.write_vectored(&slices[..used]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let front = unsent.front_mut().expect("written no more than was there");
            if front.len() <= written {
                written -= front.len();
                unsent.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    sink.flush().await
}

fn too_slow() -> WriterEnd {
    WriterEnd::TooSlow
}
