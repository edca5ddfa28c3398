//! The room inside one worker: every message its clients must hear, in batches.
//!
//! A message is serialized once (as [`Utf8Bytes`], shared, never copied per client) and queued.
//! The first message of a batch starts a short window (`--batch-window`, default 50 ms); when it
//! ends, the whole batch goes into a `tokio::sync::broadcast` ring as one item. So at a high
//! message rate a client's writer is woken once per batch, not once per message, and writes the
//! whole batch with one flush (one system call) — what lets one core serve thousands of clients.
//! At a low rate the window only adds its few milliseconds.
//!
//! The ring is shared and bounded ([`RING`] batches), so memory does not grow with the number of
//! clients; each client's own lag is bounded by its writer (see [`super::connection`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{broadcast, Notify};

/// Messages that went into the ring together.
pub type Batch = Arc<[Utf8Bytes]>;

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
            let _ = room.ring.send(Batch::from(batch));
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
        assert_eq!(&batch[..], &[Utf8Bytes::from("a"), Utf8Bytes::from("b")]);
        room.deliver("c".into());
        assert_eq!(&client.recv().await.unwrap()[..], &[Utf8Bytes::from("c")]);
    }
}
