//! `--redis URL`: the room crosses processes and machines through one Redis pub/sub channel.
//!
//! Every worker of every instance subscribes to the channel and publishes what its own clients
//! say. A published payload is `ORIGIN SP MESSAGE`, where ORIGIN is `<instance>-<pid>`: a worker
//! skips its own messages when Redis echoes them (it delivered them to its clients already), and
//! the reporter worker of an instance tells the hub (for stdout) only about messages from other
//! instances (the hub saw its own).
//!
//! When Redis goes away the worker says so once, keeps serving its own clients (their messages
//! still reach each other), drops what it cannot publish, and reconnects with backoff (100 ms
//! doubling to 10 s), saying so when it is back.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::link;
use super::room::Room;
use crate::runner::warn;

const PUBLISH_QUEUE: usize = 8192;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(10);
/// Messages sent in one pipelined round trip.
const PUBLISH_BATCH: usize = 256;

pub struct Bus {
    pub url: String,
    pub channel: String,
    pub origin: String,
    pub instance: String,
    pub slot: usize,
    pub room: Arc<Room>,
    /// Where to report messages from other instances (the reporter worker only).
    pub report: Option<mpsc::Sender<Bytes>>,
    /// Where reconnects are counted.
    pub metrics: super::metrics::Relay,
}

/// Start the bus; returns the queue of messages to publish.
pub fn spawn(bus: Bus) -> mpsc::Sender<Utf8Bytes> {
    let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
    tokio::spawn(bus.run(rx));
    tx
}

impl Bus {
    async fn run(self, mut outgoing: mpsc::Receiver<Utf8Bytes>) {
        let mut retry = FIRST_RETRY;
        let mut was_down = false;
        loop {
            let lost = match self.connect().await {
                Ok((pubsub, publisher)) => {
                    if was_down {
                        self.metrics.redis_reconnected();
                        warn(format_args!("worker {}: redis: connected again", self.slot));
                    }
                    was_down = false;
                    retry = FIRST_RETRY;
                    self.pump(pubsub, publisher, &mut outgoing).await
                }
                Err(e) => e,
            };
            if outgoing.is_closed() {
                return;
            }
            if !was_down {
                warn(format_args!(
                    "worker {}: redis: {lost}; serving local clients only, reconnecting",
                    self.slot
                ));
                was_down = true;
            }
            // While Redis is away, what cannot be published is dropped, never piled up.
            let pause = tokio::time::sleep(retry);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    said = outgoing.recv() => if said.is_none() { return },
                }
            }
            retry = (retry * 2).min(LAST_RETRY);
        }
    }

    async fn connect(
        &self,
    ) -> Result<(redis::aio::PubSub, redis::aio::MultiplexedConnection), String> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.url))?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| format!("cannot subscribe: {e}"))?;
        let publisher = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.url))?;
        Ok((pubsub, publisher))
    }

    /// Relay both ways until the connection breaks; returns why.
    async fn pump(
        &self,
        pubsub: redis::aio::PubSub,
        mut publisher: redis::aio::MultiplexedConnection,
        outgoing: &mut mpsc::Receiver<Utf8Bytes>,
    ) -> String {
        let mut incoming = pubsub.into_on_message();
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            tokio::select! {
                heard = incoming.next() => match heard {
                    Some(msg) => self.heard(msg.get_payload_bytes()),
                    None => return "lost the connection".to_string(),
                },
                n = outgoing.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if n == 0 {
                        return "stopping".to_string();
                    }
                    let mut pipe = redis::pipe();
                    for said in batch.drain(..) {
                        let mut payload = Vec::with_capacity(self.origin.len() + 1 + said.len());
                        payload.extend_from_slice(self.origin.as_bytes());
                        payload.push(b' ');
                        payload.extend_from_slice(said.as_bytes());
                        pipe.publish(&self.channel, payload).ignore();
                    }
                    if let Err(e) = pipe.query_async::<()>(&mut publisher).await {
                        return format!("publishing failed: {e}");
                    }
                }
            }
        }
    }

    fn heard(&self, payload: &[u8]) {
        let Some(space) = memchr::memchr(b' ', payload) else {
            return;
        };
        let (origin, said) = (&payload[..space], &payload[space + 1..]);
        if origin == self.origin.as_bytes() {
            return;
        }
        let Ok(text) = std::str::from_utf8(said) else {
            return;
        };
        self.room.deliver(Utf8Bytes::from(text));
        let from_this_instance = origin.starts_with(self.instance.as_bytes())
            && origin.get(self.instance.len()) == Some(&b'-');
        if let (Some(report), false) = (&self.report, from_this_instance) {
            let mut line = Vec::with_capacity(said.len() + 2);
            line.push(link::REMOTE);
            line.extend_from_slice(said);
            line.push(b'\n');
            let _ = report.try_send(Bytes::from(line));
        }
    }
}
