//! One worker process: a single-threaded tokio runtime serving the page and the WebSocket on the
//! shared listener, with a room of its own clients.
//!
//! Messages enter the worker's [`Room`] from a local client ([`Worker::say`]: to the room, and up
//! the link to the hub or out to Redis), from the hub (`d`/`p` lines), or from Redis.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener as StdListener;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::Utf8Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc, watch, Notify};

use super::balance::{BalancedListener, Loads};
use super::link;
use super::message::UserId;
use super::metrics::Relay;
use super::redis_bus;
use super::room::{Batch, Room};
use super::{connection, ws, Limits};
use crate::error::{Error, Result};
use crate::runner::warn;
use crate::server::{self, ApiError};
use crate::stop::{Stop, Stopped};

/// The chat page, embedded in the binary.
pub const PAGE: &str = include_str!("page.html");
/// Lines waiting to go up the link to the hub (or out to Redis) before new ones are dropped.
const UPLINK_QUEUE: usize = 8192;
/// How long clients get to receive their close frame when the worker stops.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Everything a freshly forked worker needs.
pub struct WorkerStart {
    pub slot: usize,
    pub listener: StdListener,
    pub link: StdUnixStream,
    pub limits: Limits,
    /// The connection timeouts and cap, as the hub resolved them.
    pub http: server::HttpArgs,
    pub redis: Option<String>,
    pub channel: String,
    pub instance: String,
    /// With Redis: this worker tells the hub about messages from other instances (for stdout).
    pub reporter: bool,
    /// The page served at `/`.
    pub page: Arc<str>,
    /// Connections per worker, shared by all of them (see [`super::balance`]).
    pub loads: Arc<Loads>,
    /// The relay's metrics, this worker's slot of them.
    pub metrics: Relay,
}

/// The worker's shared state, one per process.
pub struct Worker {
    pub slot: usize,
    pub limits: Limits,
    room: Arc<Room>,
    uplink: mpsc::Sender<Bytes>,
    publish: Option<mpsc::Sender<Utf8Bytes>>,
    connections: AtomicUsize,
    closed: Notify,
    shutdown: watch::Receiver<bool>,
    random: File,
    page: Arc<str>,
    pub metrics: Relay,
}

impl Worker {
    /// A local client said this (already stamped): to our clients, and to the rest of the room.
    pub fn say(&self, said: String) {
        self.metrics.received();
        let mut up = Vec::with_capacity(said.len() + 2);
        up.push(link::SAID);
        up.extend_from_slice(said.as_bytes());
        up.push(b'\n');
        let said = Utf8Bytes::from(said);
        if let Some(publish) = &self.publish {
            let _ = publish.try_send(said.clone());
        }
        self.room.deliver(said);
        // Dropped when the hub is not reading: the hub's own policy decides about us then.
        let _ = self.uplink.try_send(Bytes::from(up));
    }

    /// A message from elsewhere in the room: to our clients only.
    pub fn deliver(&self, said: Utf8Bytes) {
        self.room.deliver(said);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.room.subscribe()
    }

    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    fn new_user(&self) -> Result<UserId> {
        let mut bytes = [0u8; 16];
        (&self.random)
            .read_exact(&mut bytes)
            .map_err(|e| Error::io("reading /dev/urandom", e))?;
        Ok(UserId::from_bytes(bytes))
    }
}

/// A place in the worker's connection count, given back when the connection ends.
pub struct Seat(Arc<Worker>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.metrics.left();
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// Run a worker to the end (in the forked child).
pub fn run(start: WorkerStart) -> Result<()> {
    // The hub's signals stay blocked in the fork; the worker reads its own through a signalfd of
    // its own (a SIGTERM that came meanwhile is still pending: a graceful stop).
    let stop = Stop::listen()?;
    let runtime = server::runtime(1)?;
    runtime.block_on(serve(start, stop.wait()))
}

async fn serve(
    start: WorkerStart,
    stop_signal: impl std::future::Future<Output = Stopped> + Send + 'static,
) -> Result<()> {
    start
        .link
        .set_nonblocking(true)
        .map_err(|e| Error::io("setting the hub link non-blocking", e))?;
    let link = tokio::net::UnixStream::from_std(start.link)
        .map_err(|e| Error::io("registering the hub link", e))?;
    let (from_hub, to_hub) = link.into_split();
    let (uplink, uplink_rx) = mpsc::channel(UPLINK_QUEUE);
    tokio::spawn(write_uplink(to_hub, uplink_rx));
    let (shutdown_tx, shutdown) = watch::channel(false);
    let room = Room::start(start.limits.batch_window);
    let pid = std::process::id();
    let publish = start.redis.as_ref().map(|url| {
        redis_bus::spawn(redis_bus::Bus {
            url: url.clone(),
            channel: start.channel.clone(),
            origin: format!("{}-{pid}", start.instance),
            instance: start.instance.clone(),
            slot: start.slot,
            room: room.clone(),
            report: start.reporter.then(|| uplink.clone()),
            metrics: start.metrics.clone(),
        })
    });
    let http = start.http.limits()?;
    let random = File::open("/dev/urandom").map_err(|e| Error::io("opening /dev/urandom", e))?;
    let worker = Arc::new(Worker {
        slot: start.slot,
        limits: start.limits,
        room,
        uplink,
        publish,
        connections: AtomicUsize::new(0),
        closed: Notify::new(),
        shutdown,
        random,
        page: start.page,
        metrics: start.metrics.clone(),
    });
    let hub_gone = tokio::spawn(read_downlink(from_hub, worker.clone()));
    let app = Router::new()
        .route("/", get(page))
        .route("/chat", get(join))
        .route("/stats", get(stats))
        .fallback(server::not_found)
        .with_state(worker.clone());
    let stop = async move {
        let why = tokio::select! {
            why = stop_signal => why,
            _ = hub_gone => {
                warn(format_args!("worker {}: the hub is gone; stopping", start.slot));
                Stopped::Terminated
            }
        };
        let _ = shutdown_tx.send(true);
        why
    };
    warn(format_args!("worker {} (pid {pid}) serving", start.slot));
    let listener = BalancedListener::new(start.listener, start.loads, start.slot)?;
    let metrics = start.metrics.metrics();
    let why = server::serve_on(listener, app, stop, server::DEFAULT_GRACE, http, metrics).await?;
    // Every session got the shutdown word and sends its close frame; give them a moment.
    let all_closed = async {
        loop {
            let closed = worker.closed.notified();
            if worker.connections.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, all_closed).await;
    why.into_result()
}

async fn page(State(worker): State<Arc<Worker>>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Html(worker.page.to_string()),
    )
        .into_response()
}

/// `GET /stats`: the answering worker and its open WebSocket connections.
async fn stats(State(worker): State<Arc<Worker>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "worker": worker.slot,
        "pid": std::process::id(),
        "connections": worker.connections.load(Ordering::Acquire),
    }))
}

/// `GET /chat`: the WebSocket upgrade that joins the room.
async fn join(State(worker): State<Arc<Worker>>, request: Request) -> Response {
    let (mut response, on_upgrade) = match ws::handshake(request).await {
        Ok(accepted) => accepted,
        Err(refused) => return refused,
    };
    if *worker.shutdown.borrow() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    // The worker's connection cap (`--max-connections`) is the server's: every socket counts,
    // WebSockets included, and one over it was answered 503 before it came here.
    worker.connections.fetch_add(1, Ordering::AcqRel);
    worker.metrics.joined();
    let seat = Seat(worker.clone());
    let user = match worker.new_user() {
        Ok(user) => user,
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    };
    let slot = worker.slot;
    // In the room from before the 101 answer: the client misses nothing said after it connects.
    let room = worker.subscribe();
    tokio::spawn(async move {
        // The client left before the upgrade completed: its seat goes back as this ends.
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket = ws::Io::new(upgraded);
        connection::session(socket, worker, room, user, seat).await;
    });
    // Which worker took the connection (tests check that several do).
    response
        .headers_mut()
        .insert("x-chat-worker", HeaderValue::from(slot));
    response
}

/// Lines from the hub: `d` deliver, `p` deliver and publish. Ends when the hub closes the link.
async fn read_downlink(mut from_hub: OwnedReadHalf, worker: Arc<Worker>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match from_hub.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Some(nl) = memchr::memchr(b'\n', &buf) {
            let line = buf.split_to(nl + 1).freeze();
            let Some(&kind) = line.first() else { continue };
            // The message without the kind byte and the newline, still the same allocation.
            let Ok(said) = Utf8Bytes::try_from(line.slice(1..line.len() - 1)) else {
                continue;
            };
            match kind {
                link::DELIVER => worker.deliver(said),
                link::PUBLISH => {
                    if let Some(publish) = &worker.publish {
                        let _ = publish.try_send(said.clone());
                    }
                    worker.deliver(said);
                }
                _ => {}
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
}

/// Lines to the hub, as many per write as are waiting.
async fn write_uplink(mut to_hub: OwnedWriteHalf, mut lines: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(line) = lines.recv().await {
        batch.clear();
        batch.extend_from_slice(&line);
        while batch.len() < 256 * 1024 {
            match lines.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        if to_hub.write_all(&batch).await.is_err() {
            return;
        }
    }
}
