//! The room inside one worker: every message its clients must hear, in batches.
//!
//! A message is serialized once (as [`Utf8Bytes`], shared, never copied per client) and queued.
//! The first message of a batch starts a short window (`--batch-window`, default 50 ms); when it
//! ends, every message of the batch is encoded as a WebSocket frame, once for the whole worker,
//! into one buffer, and that buffer goes into a `tokio::sync::broadcast` ring as one item. Server
//! frames are unmasked, so these bytes are what every client must receive: a client's writer is
//! woken once per batch, not once per message, and writes the shared bytes as they are with one
//! system call — no per-client encoding or copy, what lets one core serve thousands of clients.
//! At a low rate the window only adds its few milliseconds.
//!
//! The ring is shared and bounded ([`RING`] batches), so memory does not grow with the number of
//! clients; each client's own lag is bounded by its writer (see [`super::connection`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, Notify};

use super::ws;

/// Messages that went into the ring together, as the WebSocket frames every client is sent.
#[derive(Debug, Clone)]
pub struct Batch {
    frames: Bytes,
    messages: usize,
}

impl Batch {
    /// The frames for `messages` (each one a text frame, in order), encoded once.
    pub fn encode<'a>(messages: impl IntoIterator<Item = &'a str>) -> Batch {
        let mut frames = BytesMut::new();
        let mut count = 0;
        for text in messages {
            ws::text_frame(&mut frames, text.as_bytes());
            count += 1;
        }
        Batch {
            frames: frames.freeze(),
            messages: count,
        }
    }

    /// Already encoded frames, counted as `messages` messages.
    pub fn from_frames(frames: Bytes, messages: usize) -> Batch {
        Batch { frames, messages }
    }

    /// The bytes to write, shared by every client.
    pub fn frames(&self) -> &Bytes {
        &self.frames
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// Batches the ring holds; a client further behind than this is disconnected at once.
pub const RING: usize = 1024;

pub struct Room {
    pending: Mutex<Vec<Utf8Bytes>>,
    started: Notify,
    ring: broadcast::Sender<Batch>,
}

impl Room {
    /// A room whose batches close `window` after their first message (zero: at the next turn of
    /// the event loop). Spawns the task that closes them.
    pub fn start(window: Duration) -> Arc<Room> {
        let (ring, _) = broadcast::channel(RING);
        let room = Arc::new(Room {
            pending: Mutex::new(Vec::new()),
            started: Notify::new(),
            ring,
        });
        tokio::spawn(close_batches(room.clone(), window));
        room
    }

    /// Queue a message for every client of this worker.
    pub fn deliver(&self, said: Utf8Bytes) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push(said);
        if pending.len() == 1 {
            // A stored permit if the batch task is busy: no batch is ever left behind.
            self.started.notify_one();
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.ring.subscribe()
    }
}

async fn close_batches(room: Arc<Room>, window: Duration) {
    loop {
        room.started.notified().await;
        if window.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(window).await;
        }
        let batch = std::mem::take(&mut *room.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            // No receivers (no clients yet) is fine: nobody to tell.
            let _ = room
                .ring
                .send(Batch::encode(batch.iter().map(Utf8Bytes::as_str)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_within_a_window_arrive_as_one_batch() {
        let room = Room::start(Duration::from_millis(1));
        let mut client = room.subscribe();
        room.deliver("a".into());
        room.deliver("b".into());
        let batch = client.recv().await.unwrap();
        assert_eq!(batch.len(), 2);
        let mut expected = BytesMut::new();
        ws::text_frame(&mut expected, b"a");
        ws::text_frame(&mut expected, b"b");
        assert_eq!(batch.frames()[..], expected[..]);
        room.deliver("c".into());
        let batch = client.recv().await.unwrap();
        assert_eq!((batch.len(), &batch.frames()[..]), (1, &b"\x81\x01c"[..]));
    }
}
