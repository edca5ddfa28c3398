//! Serving HTTP/1.1 connections under the limits every pipeworks server shares.
//!
//! axum's own `serve` has no header-read timeout, no idle timeout and no connection cap: a client
//! could hold sockets open for ever (idle, or sending a header a byte a minute) until the process
//! ran out of file descriptors and refused everybody. Here each accepted connection is one task
//! running hyper's HTTP/1.1 connection under a watchdog that knows which phase the connection is
//! in (the phases are told by the connection's reads and by the requests and answers that go
//! through it):
//!
//! | phase | limit | past the limit |
//! |---|---|---|
//! | new: accepted, no request yet | `--header-timeout` from the accept to the end of the first request's headers | closed (`408 {"error":…}` first when part of a request came) |
//! | a request's headers are arriving | `--header-timeout` from their first byte | `408 {"error":…}`, closed |
//! | a request's body is arriving | `--body-timeout` from the end of the headers | `408 {"error":…}`, closed |
//! | the server works on the answer | none: that is the server's own work | — |
//! | the answer goes out | `--body-timeout` for the client to take it | closed |
//! | idle: kept alive after an answer | `--idle-timeout` until the next request's first byte | closed |
//!
//! A WebSocket upgrade ends the HTTP phases (chat-relay's own policies apply to the WebSocket).
//!
//! At most `--max-connections` connections are open at once (upgraded ones included, since each
//! holds a file descriptor); the default keeps a reserve below the open-file limit for the
//! listener, files and the answers to refused clients. A connection over the cap is answered
//! `503 {"error":…}` with `Retry-After: 1` and closed; refusals are counted and reported on
//! stderr at most every 10 s. Refusals in progress at once are bounded by the room the open-file
//! limit leaves above the cap (at most [`MAX_REFUSING`]; each takes up to a second to let the
//! client read its answer); when all are busy the next excess connections wait in the kernel's
//! accept queue, and one that still finds no free permit within a second is closed unanswered.
//!
//! Every error answer that is not JSON already (axum's rejections: 405 with an empty body, 413 in
//! plain text, a WebSocket upgrade refused) is rewritten to `{"error":"…"}` here, so every route
//! of every server answers errors the same way. A request hyper cannot parse at all (not
//! HTTP/1.1, headers over 64 KiB) is answered by hyper itself before any handler sees it, with a
//! bodiless 400, 414 or 431; the socket wrapper puts a JSON answer with the same status in its
//! place (hyper writes nothing else while no request is being answered).
//!
//! On the stop signal new connections are no longer accepted, idle and new ones are closed at
//! once, and requests in progress get the server's grace period to finish.

use std::convert::Infallible;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};
use crate::runner::warn;
use crate::stop::Stopped;
use crate::time;

/// Refusals over the cap in progress at once, at most (each holds a descriptor for up to a
/// second); fewer when the open-file limit leaves less room above the cap.
pub const MAX_REFUSING: usize = 1024;
/// Descriptors kept free below the open-file limit by the default cap: at least this many, or a
/// tenth of the limit when that is more.
const FD_RESERVE: u64 = 64;
/// The default cap when the open-file limit is unlimited.
const UNLIMITED_CAP: usize = 1 << 20;
/// How long one refusal over the cap may take (and how long the next waits for a free permit
/// before it is closed without an answer).
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// How often refusals over the cap are reported on stderr, at most.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The most a request's headers may take (nginx's default allows 32 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// Error answers longer than this are not rewritten to JSON (ours are a few dozen bytes).
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// How every server treats HTTP connections: its timeouts and its connection cap. Each server's
/// `Args` flattens this, so the flags and their help are the same everywhere.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "HTTP connections")]
pub struct HttpArgs {
    /// Close a connection whose request headers are not complete this long after their first
    /// byte (on a new connection: after it was accepted); 408 when part of a request came.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub header_timeout: time::Duration,

    /// Answer 408 and close when a request's body is not complete this long after its headers
    /// (and close a connection whose client does not take its answer within it).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub body_timeout: time::Duration,

    /// Close a kept-alive connection after this long without a request.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub idle_timeout: time::Duration,

    /// Open connections at most, WebSockets included (per process: per worker for
    /// chat-relay); more are answered 503 and closed. Default: the open-file limit less a tenth
    /// (at least 64 descriptors kept for files, the listener and refusals).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

impl Default for HttpArgs {
    fn default() -> Self {
        HttpArgs {
            header_timeout: time::Duration(Duration::from_secs(10)),
            body_timeout: time::Duration(Duration::from_secs(30)),
            idle_timeout: time::Duration(Duration::from_secs(60)),
            max_connections: None,
        }
    }
}

/// The limits in force, resolved against this process's open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections over the cap answered 503 at once, at most (the others are just closed).
    pub max_refusing: usize,
}

impl HttpArgs {
    /// Check the flags and resolve the cap: raises the open-file limit to its hard maximum, and
    /// brings a `--max-connections` that the limit cannot hold down to one it can (with a warning).
    pub fn limits(&self) -> Result<Limits> {
        for (flag, d) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d.std().is_zero() {
                return Err(Error::usage(format!("{flag} must be longer than 0")));
            }
        }
        if self.max_connections == Some(0) {
            return Err(Error::usage("--max-connections must be at least 1"));
        }
        let fds = super::raise_fd_limit();
        let most = cap_for(fds);
        let max_connections = match self.max_connections {
            None => most,
            Some(n) if n > most => {
                warn(format_args!(
                    "--max-connections {n} is more than the open-file limit leaves room for; \
                     using {most}"
                ));
                most
            }
            Some(n) => n,
        };
        Ok(Limits {
            header_timeout: self.header_timeout.std(),
            body_timeout: self.body_timeout.std(),
            idle_timeout: self.idle_timeout.std(),
            max_connections,
            max_refusing: refusals_for(fds, max_connections),
        })
    }
}

/// How many refusals may be in progress at once: half the descriptors left above the cap, so
/// the rest stay free for files, the listener and the process itself.
pub fn refusals_for(fds: u64, max_connections: usize) -> usize {
    let room = usize::try_from(fds)
        .unwrap_or(usize::MAX)
        .saturating_sub(max_connections);
    (room / 2).clamp(1, MAX_REFUSING)
}

/// The most connections an open-file limit of `fds` holds with the reserve kept free.
pub fn cap_for(fds: u64) -> usize {
    if fds == 0 || fds > UNLIMITED_CAP as u64 * 2 {
        return UNLIMITED_CAP;
    }
    let reserve = FD_RESERVE.max(fds / 10);
    (fds.saturating_sub(reserve) as usize).max(1)
}

/// What happened to the connections of one server.
#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_idle: AtomicU64,
    closed_slow_header: AtomicU64,
    closed_slow_body: AtomicU64,
}

/// State shared by the accept loop and every connection of one server.
struct Shared {
    open: AtomicUsize,
    /// The exposition's view of the same connections (`http_open_connections`, refusals).
    metrics: Arc<super::metrics::Http>,
    counts: Counts,
    /// When refusals were last reported, and how many had been by then.
    reported: Mutex<Option<(Instant, u64)>>,
}

impl Shared {
    /// Report refusals on stderr: the first at once, then at most every [`REPORT_EVERY`].
    fn refused(&self, max: usize) {
        let total = self.counts.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let since = match *reported {
            Some((at, _)) if now.duration_since(at) < REPORT_EVERY => return,
            Some((_, then)) => total - then,
            None => 1,
        };
        *reported = Some((now, total));
        warn(format_args!(
            "at the connection limit (--max-connections {max}): refused {since} connection{} \
             with 503 ({total} in all)",
            if since == 1 { "" } else { "s" }
        ));
    }
}

/// A place among the open connections, given back when the connection's socket closes.
struct Seat(Arc<Shared>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.closed();
    }
}

/// Serve `app` on `listener` under `limits` until `stop` resolves; then close idle connections,
/// give requests in progress up to `grace`, and return why it stopped.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = Stopped>,
    grace: Duration,
    metrics: Arc<super::metrics::Http>,
) -> Result<Stopped>
where
    L: axum::serve::Listener,
    L::Io: AsFd,
    L::Addr: Clone + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        open: AtomicUsize::new(0),
        metrics,
        counts: Counts::default(),
        reported: Mutex::new(None),
    });
    let refusals = Arc::new(tokio::sync::Semaphore::new(limits.max_refusing));
    let (shutdown, connections) = watch::channel(false);
    tokio::pin!(stop);
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            (io, peer) = listener.accept() => {
                if shared.open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
                    shared.open.fetch_sub(1, Ordering::AcqRel);
                    shared.metrics.refused();
                    shared.refused(limits.max_connections);
                    // At the cap, the next connections wait in the kernel's queue while this
                    // one waits for a refusal to end (they end within a second).
                    let permit = tokio::time::timeout(
                        REFUSAL_TIME,
                        refusals.clone().acquire_owned(),
                    )
                    .await;
                    if let Ok(Ok(permit)) = permit {
                        refuse(io, permit, limits.max_connections);
                    }
                    continue;
                }
                shared.counts.accepted.fetch_add(1, Ordering::Relaxed);
                shared.metrics.opened();
                let seat = Seat(shared.clone());
                tokio::spawn(connection(
                    io,
                    peer,
                    app.clone(),
                    limits,
                    connections.clone(),
                    seat,
                ));
            }
        }
    };
    drop(listener);
    let _ = shutdown.send(true);
    drop(connections);
    // Every connection task holds a receiver: when the last is gone, every one has finished.
    if tokio::time::timeout(grace, shutdown.closed())
        .await
        .is_err()
    {
        warn(format_args!(
            "requests still open {grace:?} after the stop signal; closing their connections"
        ));
    }
    let c = &shared.counts;
    let refused = c.refused.load(Ordering::Relaxed);
    if refused > 0 {
        warn(format_args!(
            "connections: {} served, {refused} refused over --max-connections {}",
            c.accepted.load(Ordering::Relaxed),
            limits.max_connections
        ));
    }
    Ok(why)
}

/// Answer a connection over the cap with a JSON 503 and close it, in the background and within
/// [`REFUSAL_TIME`], holding one of the refusal permits meanwhile.
fn refuse<Io>(mut io: Io, permit: tokio::sync::OwnedSemaphorePermit, max: usize)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let body = serde_json::json!({
            "error": format!("the server is at its connection limit ({max}); try again later")
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            io.write_all(answer.as_bytes()).await?;
            io.shutdown().await?;
            // Read what the client sent until it closes: closing with unread data would send a
            // reset, which can destroy the answer before the client reads it.
            let mut sink = [0u8; 4096];
            while io.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        })
        .await;
        // The socket closes before the permit returns, so the next refusal never overlaps this
        // one's fd: the cap counts file descriptors, not tasks (a permit released first let the
        // server hold one fd over its bound for a moment).
        drop(io);
        drop(permit);
    });
}

// The phases of a connection (see the module doc), packed with the millisecond they began.
const NEW: u64 = 0;
const HEAD: u64 = 1;
/// The handler has the request.
const BUSY: u64 = 2;
/// The answer is complete and on its way out to the client.
const SENDING: u64 = 3;
const IDLE: u64 = 4;
const UPGRADED: u64 = 5;
const PHASE_BITS: u32 = 3;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;

/// Which phase a connection is in and since when, told by its reads, requests and answers.
struct Activity {
    /// `phase | (milliseconds since base << PHASE_BITS)`: one word, read and written whole.
    state: AtomicU64,
    base: Instant,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: AtomicU64::new(NEW),
            base: Instant::now(),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn set(&self, phase: u64) {
        self.state
            .store(phase | (self.now() << PHASE_BITS), Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes came in: a new connection's first request has begun (its deadline still counts
    /// from the accept), or an idle one's next request has (its own deadline starts now).
    fn received(&self) {
        let state = self.state.load(Ordering::Acquire);
        match state & PHASE_MASK {
            NEW => {
                let _ = self.state.compare_exchange(
                    state,
                    (state & !PHASE_MASK) | HEAD,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            IDLE => {
                let next = HEAD | (self.now() << PHASE_BITS);
                if self
                    .state
                    .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.changed.notify_one();
                }
            }
            _ => {}
        }
    }

    /// Move from phase `from` to `to` (if the connection is still in `from`), starting `to`'s clock.
    fn advance(&self, from: u64, to: u64) {
        let state = self.state.load(Ordering::Acquire);
        if state & PHASE_MASK == from {
            let next = to | (self.now() << PHASE_BITS);
            if self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.changed.notify_one();
            }
        }
    }

    /// No request is being answered: hyper writes nothing now but its own error answers.
    fn between_requests(&self) -> bool {
        matches!(
            self.state.load(Ordering::Acquire) & PHASE_MASK,
            NEW | HEAD | IDLE
        )
    }

    /// When the current phase runs out, if it has a limit.
    fn deadline(&self, state: u64, limits: &Limits) -> Option<Instant> {
        let limit = match state & PHASE_MASK {
            NEW | HEAD => limits.header_timeout,
            // A client that does not take its answer holds the connection like a slow body.
            SENDING => limits.body_timeout,
            IDLE => limits.idle_timeout,
            _ => return None,
        };
        Some(self.base + Duration::from_millis(state >> PHASE_BITS) + limit)
    }

    /// Resolves with the phase that ran out of time.
    async fn watchdog(&self, limits: &Limits) -> u64 {
        loop {
            let changed = self.changed.notified();
            let state = self.state.load(Ordering::Acquire);
            match self.deadline(state, limits) {
                None => changed.await,
                Some(deadline) if deadline <= Instant::now() => return state & PHASE_MASK,
                Some(deadline) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// One connection, from accept to close.
async fn connection<Io, A>(
    io: Io,
    peer: A,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    seat: Seat,
) where
    Io: AsyncRead + AsyncWrite + AsFd + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let shared = seat.0.clone();
    let activity = Arc::new(Activity::new());
    let fd = io.as_fd().as_raw_fd();
    let io = Tracked {
        io,
        activity: activity.clone(),
        replacement: None,
        _seat: seat,
    };
    let service = Service {
        app,
        activity: activity.clone(),
        peer,
        body_timeout: limits.body_timeout,
        shared: shared.clone(),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        // Headers over this are answered 431: a client cannot make a connection hold more.
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let watchdog = activity.watchdog(&limits);
    tokio::pin!(watchdog);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            phase = &mut watchdog => {
                let counts = &shared.counts;
                match phase {
                    IDLE => counts.closed_idle.fetch_add(1, Ordering::Relaxed),
                    SENDING => counts.closed_slow_body.fetch_add(1, Ordering::Relaxed),
                    _ => counts.closed_slow_header.fetch_add(1, Ordering::Relaxed),
                };
                if phase == HEAD {
                    // Part of a request came: say why before closing. hyper is waiting for the
                    // rest and writes nothing meanwhile, so a small answer goes out whole.
                    let answer = error_head(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "the request's headers took longer than {}",
                            time::Duration(limits.header_timeout)
                        ),
                    );
                    let _ = nix::sys::socket::send(
                        fd,
                        answer.as_bytes(),
                        nix::sys::socket::MsgFlags::MSG_DONTWAIT
                            | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                    );
                }
                return;
            }
            _ = shutdown.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                match activity.state.load(Ordering::Acquire) & PHASE_MASK {
                    // Nothing in progress: close now.
                    NEW | IDLE => return,
                    _ => conn.as_mut().graceful_shutdown(),
                }
            }
        }
    }
}

/// A whole error answer with a JSON body, for writing straight to a socket.
fn error_head(status: StatusCode, message: &str) -> String {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
}

/// The connection's socket: tells [`Activity`] when bytes come in and when an answer has gone
/// out, turns hyper's own bodiless error answers into JSON ones, and holds the connection's
/// [`Seat`] for as long as the socket lives (through a WebSocket upgrade too).
struct Tracked<Io> {
    io: Io,
    activity: Arc<Activity>,
    /// Our JSON answer in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    _seat: Seat,
}

/// What the client is told when hyper cannot parse its request (hyper answers these itself,
/// with no body, before any handler sees the request).
fn parse_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    let status = StatusCode::from_bytes(status).ok()?;
    let message = match status {
        StatusCode::BAD_REQUEST => "the request is not valid HTTP/1.1",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request's headers are too large",
        StatusCode::URI_TOO_LONG => "the request's URI is too long",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    Some(error_head(status, message).into_bytes())
}

impl<Io: AsyncWrite + Unpin> Tracked<Io> {
    /// Write out the replacement answer; ready when all of it is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some((answer, written)) = &mut self.replacement {
            while *written < answer.len() {
                match Pin::new(&mut self.io).poll_write(cx, &answer[*written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Tracked<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.received();
        }
        read
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Tracked<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none() && this.activity.between_requests() {
            this.replacement = parse_error_answer(buf).map(|answer| (answer, 0));
        }
        if this.replacement.is_some() {
            // hyper's bytes are dropped: ours say the same, with a body.
            return this.poll_replacement(cx).map_ok(|()| buf.len());
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_some() || this.activity.between_requests() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            // hyper flushes once the whole answer is in its buffer and written out.
            this.activity.advance(SENDING, IDLE);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The router as hyper's service for one connection: marks the phases, hands the handler the
/// client's address (`ConnectInfo`), times the body and makes every error answer JSON.
struct Service<A> {
    app: Router,
    activity: Arc<Activity>,
    peer: A,
    body_timeout: Duration,
    shared: Arc<Shared>,
}

impl<A: Clone + Send + Sync + 'static> hyper::service::Service<Request<Incoming>> for Service<A> {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Response<Answer>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        use tower_service::Service as _;
        self.activity.set(BUSY);
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer.clone()));
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let timed_out = Arc::new(AtomicBool::new(false));
        let body = TimedBody {
            body,
            deadline: Instant::now() + self.body_timeout,
            sleep: None,
            timed_out: timed_out.clone(),
        };
        let request = Request::from_parts(parts, Body::new(body));
        let mut app = self.app.clone();
        let activity = self.activity.clone();
        let shared = self.shared.clone();
        let limit = self.body_timeout;
        Box::pin(async move {
            let response = match app.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if timed_out.load(Ordering::Acquire) {
                shared
                    .counts
                    .closed_slow_body
                    .fetch_add(1, Ordering::Relaxed);
                let mut response = json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request's body took longer than {}",
                        time::Duration(limit)
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            } else {
                json_errors(response, &method, &uri).await
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                activity.set(UPGRADED);
            }
            Ok(response.map(|body| Answer { body, activity }))
        })
    }
}

fn json_error(status: StatusCode, message: String) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer (4xx, 5xx) that is not JSON becomes `{"error":"…"}` with the same status and
/// headers: its text when it had one, else what the status means.
async fn json_errors(response: Response<Body>, method: &Method, uri: &Uri) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| format!("; use {v}"))
            .unwrap_or_default();
        format!("{method} is not allowed on {}{allow}", uri.path())
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = serde_json::json!({ "error": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// The request body, failing once `--body-timeout` has passed since the headers' end.
struct TimedBody {
    body: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

/// The error a request body that took too long ends with (the handler sees a body error; the
/// service answers 408).
#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body took too long")
    }
}

impl std::error::Error for BodyTimeout {}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(BodyTimeout.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The answer's body; when hyper drops it, the whole answer is in hyper's buffer, on its way out.
pub struct Answer {
    body: Body,
    activity: Arc<Activity>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.activity.advance(BUSY, SENDING);
    }
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_keeps_a_reserve_below_the_fd_limit() {
        assert_eq!(cap_for(20_000), 18_000);
        assert_eq!(cap_for(1024), 922);
        assert_eq!(cap_for(100), 36);
        assert_eq!(cap_for(50), 1);
        assert_eq!(cap_for(0), UNLIMITED_CAP);
        assert_eq!(cap_for(u64::MAX), UNLIMITED_CAP);
    }

    #[test]
    fn refusals_use_half_the_room_above_the_cap() {
        assert_eq!(refusals_for(20_000, 500), MAX_REFUSING);
        assert_eq!(refusals_for(1024, cap_for(1024)), 51);
        assert_eq!(refusals_for(100, 100), 1);
        assert_eq!(refusals_for(u64::MAX, 10), MAX_REFUSING);
    }

    #[test]
    fn error_heads_are_whole_json_answers() {
        let head = error_head(StatusCode::REQUEST_TIMEOUT, "slow");
        let (top, body) = head.split_once("\r\n\r\n").unwrap();
        assert!(top.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{top}");
        assert!(top.contains(&format!("content-length: {}", body.len())));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            serde_json::json!({"error": "slow"})
        );
    }
}
