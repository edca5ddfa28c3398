//! The HTTP face, on the toolkit's one server stack ([`crate::server`]).
//!
//! | route | answer |
//! |---|---|
//! | `POST /addserver` (body: a record) | 200 `OK` — the original service's route |
//! | `POST /servers/<name>/load` (body: a record, `server` optional) | 204 |
//! | `POST /records` (body: JSON lines of records, up to [`MAX_BULK`] bytes) | 200 `{"accepted":N,"refused":N,"errors":[{"line":N,"error":"…"}]}` |
//! | `GET /report/<name>`, `GET /servers/<name>/load` | 200 the report (JSON) |
//! | `GET /servers` | 200 `{"servers":[names, sorted]}` |
//! | `GET /stats` | 200 counts: servers, accepted and refused records, the clock |
//! | `GET /` | 200 the dashboard's list of servers (HTML, [`super::dashboard`]) |
//! | `GET /dashboard/<name>` | 200 one server's live charts (HTML) |
//! | `GET /metrics` | 200 the Prometheus exposition ([`super::metrics`]) |
//!
//! Errors are `{"error":"…"}`: 400 for a body or name that is not a valid record (nothing is
//! stored), 404 for an unknown server or route, 405 for a wrong method, 413 for a body over the
//! limit, 422 for a valid record
//! outside the last 24 hours or in the future (counted, not stored), 429 (with `Retry-After`)
//! once a client address has added `--max-new-servers` new servers this minute and posts
//! another new one, 507 once `--max-servers` servers are tracked and a new one posts. Servers
//! with nothing left in the day are forgotten every minute. Every report carries the clock it was computed at in
//! the `X-Report-Time` header, so a checker can compute the same window.
//!
//! Bodies over [`MAX_BODY`] bytes are refused. Slow clients: hyper holds each connection in its
//! own task, so a slow or stalled client costs one idle task and never blocks another; a client
//! that disconnects mid-request just ends its task. The state is saved to `--snapshot` every
//! `--snapshot-every` (on a blocking thread, off the request path) and once more after the
//! graceful stop, when every in-flight request has finished — or `--shutdown-grace` (default 5 s)
//! has passed, so a client stalled mid-request cannot keep the server from stopping and saving.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::metrics::Watch;
use super::store::Rejected;
use super::{check_name, dashboard, parse_record, Config, Report, Store};
use crate::error::Result;
use crate::runner::warn;
use crate::server::{self, ApiError, ClientAddr};
use crate::stop::Stop;
use crate::time::Timestamp;

/// The largest request body accepted; a record is well under 200 bytes.
pub const MAX_BODY: usize = 4096;

/// The largest body of `POST /records` (several thousand records).
pub const MAX_BULK: usize = 1 << 20;

/// At most this many refused lines are described in a `POST /records` answer (all are counted).
const MAX_LISTED_ERRORS: usize = 100;

type Shared = Arc<Store>;

/// The routes' state: the store, and what `/metrics` counts that the store does not.
#[derive(Clone)]
struct App {
    store: Shared,
    watch: Watch,
}

impl FromRef<App> for Shared {
    fn from_ref(app: &App) -> Shared {
        app.store.clone()
    }
}

/// The routes' templates, as the HTTP metrics label them.
const ROUTES: [&str; 9] = [
    "/addserver",
    "/servers/{name}/load",
    "/records",
    "/report/{name}",
    "/servers",
    "/stats",
    "/",
    "/dashboard/{name}",
    "/dashboard/assets/{file}",
];

/// The router over a store (tests and embedders can serve it themselves).
pub fn router(store: Shared) -> Router {
    router_with(store, Watch::default())
}

fn router_with(store: Shared, watch: Watch) -> Router {
    let app = App { store, watch };
    Router::new()
        .route("/addserver", post(add_server))
        .route("/servers/{name}/load", post(add_load).get(report))
        .route(
            "/records",
            post(add_records).layer(DefaultBodyLimit::max(MAX_BULK)),
        )
        .route("/report/{name}", get(report))
        .route("/servers", get(names))
        .route("/stats", get(stats))
        .route("/", get(dashboard::index))
        .route("/dashboard/{name}", get(dashboard::page))
        .route("/dashboard/assets/{file}", get(dashboard::asset))
        .fallback(server::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Serve until SIGTERM/SIGINT, loading and saving the snapshot around it.
pub fn serve(config: &Config, addr: &str, store: Store) -> Result<()> {
    let http = config.http.limits()?;
    if let Some(path) = &config.snapshot {
        match store.load(path)? {
            Some(n) => warn(format_args!(
                "loaded {n} servers from snapshot {}",
                path.display()
            )),
            None => warn(format_args!(
                "snapshot {} does not exist yet; starting empty",
                path.display()
            )),
        }
    }
    let store = Arc::new(store);
    let watch = Watch::default();
    if config.snapshot.is_some() {
        // What was loaded is on disk: the snapshot is as fresh as the process.
        watch.snapshots.saved(None);
    }
    let mut metrics = server::Metrics::new(&ROUTES)?;
    watch.register(&mut metrics, store.clone());
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // Armed before the address is announced, so an early SIGTERM is a graceful stop too, and
    // before the runtime starts its threads.
    let stop = Stop::listen()?;
    let runtime = server::runtime(threads)?;
    let stop = runtime.block_on(async {
        let listener = server::bind(addr)?;
        if let Some(path) = &config.snapshot {
            tokio::spawn(save_every(
                store.clone(),
                path.clone(),
                config.snapshot_every.std(),
                watch.clone(),
            ));
        }
        tokio::spawn(forget_every_minute(store.clone()));
        server::serve_with_grace(
            listener,
            router_with(store.clone(), watch.clone()),
            stop.wait(),
            config.shutdown_grace.std(),
            http,
            metrics,
        )
        .await
    })?;
    drop(runtime);
    if let Some(path) = &config.snapshot {
        let n = store.save(path)?;
        warn(format_args!(
            "saved {n} servers to snapshot {}",
            path.display()
        ));
    }
    let c = store.counters();
    warn(format_args!(
        "stopped: {} servers, {} records accepted, {} too old, {} in the future, {} over \
         --max-servers, {} over --max-new-servers, {} servers forgotten",
        store.server_count(),
        c.accepted,
        c.too_old,
        c.too_new,
        c.over_capacity,
        c.over_new_server_rate,
        c.forgotten
    ));
    stop.into_result()
}

/// Save the snapshot every `every`, on a blocking thread so requests never wait for the disk. A
/// failed save is reported and tried again at the next tick; the server keeps serving.
async fn save_every(
    store: Shared,
    path: std::path::PathBuf,
    every: std::time::Duration,
    watch: Watch,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (store, path) = (store.clone(), path.clone());
        let start = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || store.save(&path)).await {
            Ok(Ok(_)) => watch.snapshots.saved(Some(start.elapsed())),
            Ok(Err(e)) => {
                watch.snapshots.failed();
                warn(format_args!("{e}"));
            }
            Err(e) => {
                watch.snapshots.failed();
                warn(format_args!("saving the snapshot: {e}"));
            }
        }
    }
}

/// Forget servers with nothing left in the day, once a minute, on a blocking thread (a sweep
/// visits every server).
async fn forget_every_minute(store: Shared) {
    let every = std::time::Duration::from_secs(60);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.forget_empty()).await;
    }
}

async fn add_server(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<&'static str, ApiError> {
    store_record(&app, body, None, client)?;
    Ok("OK")
}

async fn add_load(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<StatusCode, ApiError> {
    if let Err(e) = check_name(&name) {
        app.watch.invalid.inc();
        return Err(ApiError::bad_request(e));
    }
    store_record(&app, body, Some(&name), client)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Many records in one request, one per line: each is stored or refused on its own, as the stdin
/// face treats lines, and the answer counts both and describes the first refusals.
async fn add_records(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Json<serde_json::Value>, ApiError> {
    let store = &app.store;
    let body = body_text(body, MAX_BULK)?;
    let (mut accepted, mut refused, mut errors) = (0u64, 0u64, Vec::new());
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let outcome = parse_record(line, None)
            .inspect_err(|_| {
                app.watch.invalid.inc();
            })
            .and_then(|record| {
                store
                    .add_from(&record, client.map(|a| a.ip()))
                    .map_err(|why| why.to_string())
            });
        match outcome {
            Ok(()) => accepted += 1,
            Err(error) => {
                refused += 1;
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(serde_json::json!({ "line": i + 1, "error": error }));
                }
            }
        }
    }
    Ok(Json(serde_json::json!({
        "accepted": accepted,
        "refused": refused,
        "errors": errors,
    })))
}

fn body_text(
    body: std::result::Result<Bytes, BytesRejection>,
    limit: usize,
) -> std::result::Result<String, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("reading the request body: {}", e.body_text()))
        }
    })?;
    String::from_utf8(body.into())
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))
}

fn store_record(
    app: &App,
    body: std::result::Result<Bytes, BytesRejection>,
    name: Option<&str>,
    client: Option<SocketAddr>,
) -> std::result::Result<(), ApiError> {
    let record = body_text(body, MAX_BODY).and_then(|text| {
        if text.trim().is_empty() {
            return Err(ApiError::bad_request(
                "the request body is empty; send a JSON record",
            ));
        }
        parse_record(&text, name).map_err(ApiError::bad_request)
    });
    let record = record.inspect_err(|_| {
        app.watch.invalid.inc();
    })?;
    app.store
        .add_from(&record, client.map(|a| a.ip()))
        .map_err(|why| {
            let status = match why {
                Rejected::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
                Rejected::TooOld { .. } | Rejected::TooNew { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                Rejected::TooManyNew { .. } => StatusCode::TOO_MANY_REQUESTS,
            };
            let error = ApiError::new(status, why.to_string());
            match why {
                Rejected::TooManyNew {
                    retry_after_secs, ..
                } => error.retry_after(retry_after_secs),
                _ => error,
            }
        })
}

async fn report(
    State(store): State<Shared>,
    Path(name): Path<String>,
) -> std::result::Result<Response, ApiError> {
    check_name(&name).map_err(ApiError::bad_request)?;
    let (rows, now) = store
        .rows(&name)
        .ok_or_else(|| ApiError::not_found(format!("no records for server {name:?}")))?;
    // Straight into a Vec sized for the report: fewer, larger writes than axum's `Json`.
    let mut body = Vec::with_capacity(64 + 96 * (rows.minutes.len() + rows.hours.len()));
    serde_json::to_writer(&mut body, &Report::new(&name, &rows))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&Timestamp(now).to_string()) {
        response.headers_mut().insert("x-report-time", v);
    }
    Ok(response)
}

async fn names(State(store): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "servers": store.names() }))
}

async fn stats(State(store): State<Shared>) -> Json<serde_json::Value> {
    let c = store.counters();
    Json(serde_json::json!({
        "servers": store.server_count(),
        "accepted": c.accepted,
        "too_old": c.too_old,
        "too_new": c.too_new,
        "over_capacity": c.over_capacity,
        "over_new_server_rate": c.over_new_server_rate,
        "forgotten": c.forgotten,
        "now": Timestamp(store.now()),
    }))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
