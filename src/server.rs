//! The one way pipeworks servers start, announce themselves, answer errors and stop.
//!
//! Every server (`price-api`, `chat-relay`, `load-monitor`) is an axum `Router` served by
//! [`serve`] on a listener from [`bind`]:
//!
//! - `--listen ADDR` defaults to loopback; port 0 picks a free port, and the bound address is
//!   printed on stderr as `"<name>: listening on http://127.0.0.1:PORT"` so tests and scripts can
//!   find it (tests read that line; its wording is part of the contract).
//! - [`bind`] returns a std listener so a parent can bind once and fork workers that each serve the
//!   same socket (chat-relay); build the runtime *after* forking, with [`runtime`].
//! - SIGTERM and SIGINT stop a server gracefully: no new connections, in-flight requests finish,
//!   then the program returns. SIGTERM ends with exit 0, SIGINT with 130. The server listens with
//!   [`crate::stop::Stop::listen`] before it builds its runtime, and hands [`crate::stop::Stop::wait`]
//!   to [`serve`].
//! - Errors are JSON: `{"error":"…"}` with the right status, never axum's plain-text rejections.
//! - Connections are served by [`conn`]: a header-read, a body and an idle timeout, and a cap on
//!   open connections below the open-file limit ([`HttpArgs`], flattened into every server's
//!   flags).
//! - Every server answers `GET /metrics` in the Prometheus text format ([`metrics`]): requests by
//!   route and status, latency, connections, and the program's own metrics.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::{Error, Result};
use crate::runner::warn;
use crate::stop::Stopped;

pub mod conn;
pub mod metrics;
pub use conn::{HttpArgs, Limits as HttpLimits};
pub use metrics::Metrics;

/// Bind `addr` (e.g. `127.0.0.1:0`) and announce the bound address on stderr.
pub fn bind(addr: &str) -> Result<StdListener> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::usage(format!("--listen {addr}: {e}")))?
        .collect();
    let listener = StdListener::bind(&addrs[..])
        .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("setting the listener non-blocking", e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    warn(format_args!("listening on http://{local}"));
    Ok(listener)
}

/// A tokio runtime for one server process: `threads` workers, or the current thread when 1.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}

/// How long in-flight requests may take to finish after the stop signal, by default.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve `app` on `listener` under `http`'s limits until `stop` resolves, then let in-flight
/// requests finish for up to [`DEFAULT_GRACE`] and return why it stopped. `metrics` adds
/// `GET /metrics` to `app` and counts its requests and connections ([`metrics`]).
pub async fn serve(
    listener: StdListener,
    app: Router,
    stop: impl Future<Output = Stopped> + Send + 'static,
    http: HttpLimits,
    metrics: Metrics,
) -> Result<Stopped> {
    serve_with_grace(listener, app, stop, DEFAULT_GRACE, http, metrics).await
}

/// Like [`serve`] with a chosen grace period.
pub async fn serve_with_grace(
    listener: StdListener,
    app: Router,
    stop: impl Future<Output = Stopped> + Send + 'static,
    grace: std::time::Duration,
    http: HttpLimits,
    metrics: Metrics,
) -> Result<Stopped> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::io("registering the listener", e))?;
    serve_on(listener, app, stop, grace, http, metrics).await
}

/// Serve on any axum [`Listener`](axum::serve::Listener) (chat-relay's workers use one that shares
/// accepts fairly between processes on the same socket). Once `stop` has resolved, idle
/// connections close and in-flight requests get at most `grace` to finish: a client that stalls
/// in the middle of a request (or keeps one open on purpose) cannot hold the stop, and whatever
/// the program does after serving (flushing, saving) still happens. Connections still open at the
/// deadline are dropped with the runtime.
pub async fn serve_on<L>(
    listener: L,
    app: Router,
    stop: impl Future<Output = Stopped> + Send + 'static,
    grace: std::time::Duration,
    http: HttpLimits,
    metrics: Metrics,
) -> Result<Stopped>
where
    L: axum::serve::Listener,
    L::Io: std::os::fd::AsFd,
    L::Addr: Clone + Send + Sync + 'static,
{
    let counts = metrics.http().clone();
    conn::serve(listener, metrics.instrument(app), http, stop, grace, counts).await
}

/// Raise the open-file limit to its hard maximum (servers with many clients need it).
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// An HTTP error answered as `{"error":"…"}` with its status (and `Retry-After` when set).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds after which the client may try again (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// Tell the client when to try again.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

/// The fallback for unknown routes: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The client's address, when the server knows it (it does for every connection [`serve`]
/// accepts; a router served some other way gets `None`).
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}
