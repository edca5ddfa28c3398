//! price-api: the marketplace stub (the seed's "Amazon API server"), served over HTTP.
//!
//! | request | answer |
//! |---|---|
//! | `POST /register-request` (optional JSON body) | `200 {"id":N}`, ids unique and increasing from 1 |
//! | `GET /request-data/{id}` | `200 {"sold":true}` for an even id, `{"sold":false}` for odd |
//! | `GET /request-data/{id}`, id never issued | `404 {"error":"no request 42"}` |
//! | `GET /request-data/abc` | `400 {"error":"…"}`, also for a body that is not JSON |
//! | another method on a route | `405 {"error":"…"}` with `Allow` |
//! | a body over 2 MiB | `413 {"error":"…"}` |
//! | `GET /health` | `200 {"issued":N}` |
//! | `GET /metrics` | `200`, the Prometheus exposition ([`crate::server::metrics`] and below) |
//!
//! - The state is one counter: whether an id exists is `1 <= id <= issued`, so memory does not grow
//!   with the number of requests served.
//! - `--latency 50ms..500ms` delays every answer by a uniform random time in the range (a timer,
//!   no thread waits); `--fail-rate 0.05` answers that share of requests `503` (an id is not
//!   issued by a failed registration). Both play the "overloaded" server for tests and demos;
//!   `--seed` makes them repeatable.
//! - Slow clients and dropped connections: a connection is a task, a dropped one is cancelled with
//!   its delay, nothing else waits on it; idle, slow and excess connections are closed by the
//!   shared connection limits ([`crate::server::conn`]: `--header-timeout`, `--body-timeout`,
//!   `--idle-timeout`, `--max-connections`).
//! - Metrics: `price_api_registrations_total` (ids issued), `price_api_polls_total{result}`
//!   (`sold`, `unsold`, `unknown` for an id never issued), `price_api_injected_failures_total{route}`
//!   (the 503s of `--fail-rate`), besides the HTTP ones every server has.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

use crate::error::{Error, Result};
use crate::server::{self, ApiError};
use crate::stop::Stop;
use crate::time;

/// What price-api is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub latency: Option<LatencyRange>,
    pub fail_rate: f64,
    pub seed: u64,
    pub threads: usize,
    /// Timeouts and the connection cap (shared by every server).
    pub http: server::HttpArgs,
}

/// `--latency MIN..MAX` (or one duration for a fixed delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyRange {
    pub min: std::time::Duration,
    pub max: std::time::Duration,
}

impl std::str::FromStr for LatencyRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (time::parse_duration(a)?, time::parse_duration(b)?),
            None => {
                let d = time::parse_duration(s)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!("latency range {s:?} runs backwards"));
        }
        Ok(LatencyRange { min, max })
    }
}

/// The shared state of every connection: the id counter and the fault dice.
struct Market {
    issued: AtomicU64,
    latency: Option<LatencyRange>,
    fail_rate: f64,
    dice: AtomicU64,
    counts: Counts,
}

/// What `/metrics` reports beyond the HTTP metrics every server has.
#[derive(Default, Clone)]
struct Counts {
    /// Polls by result: `sold`, `unsold`, `unknown`.
    polls: Family<[(&'static str, &'static str); 1], Counter>,
    /// `--fail-rate`'s refusals by route.
    failures: Family<[(&'static str, &'static str); 1], Counter>,
}

/// The routes' templates, as the HTTP metrics label them.
const ROUTES: [&str; 3] = ["/register-request", "/request-data/{id}", "/health"];

impl Market {
    /// A uniform random number in [0, 1), from a lock-free SplitMix64 sequence.
    fn roll(&self) -> f64 {
        let mut z = self
            .dice
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Play the overloaded server: wait a while, and maybe refuse (on `route`, for the count).
    async fn weather(&self, route: &'static str) -> std::result::Result<(), ApiError> {
        if let Some(range) = self.latency {
            let spread = (range.max - range.min).as_secs_f64();
            let delay = range.min + std::time::Duration::from_secs_f64(spread * self.roll());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        if self.fail_rate > 0.0 && self.roll() < self.fail_rate {
            self.counts
                .failures
                .get_or_create(&[("route", route)])
                .inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded, try again later",
            ));
        }
        Ok(())
    }
}

/// Run price-api until SIGTERM or SIGINT.
pub fn run(config: &Config) -> Result<()> {
    if !(0.0..=1.0).contains(&config.fail_rate) {
        return Err(Error::usage("--fail-rate must be between 0 and 1"));
    }
    let http = config.http.limits()?;
    // Signals are taken from before the address is announced (a test may signal at once), and
    // before the runtime starts its threads.
    let stop = Stop::listen()?;
    let runtime = server::runtime(config.threads)?;
    let mut metrics = server::Metrics::new(&ROUTES)?;
    let app = router_with(config, Some(&mut metrics));
    let stop = runtime.block_on(async {
        let listener = server::bind(&config.listen)?;
        server::serve(listener, app, stop.wait(), http, metrics).await
    })?;
    stop.into_result()
}

/// The routes and their state (tests serve it in-process).
pub fn router(config: &Config) -> Router {
    router_with(config, None)
}

/// The routes, with price-api's own metrics registered in `metrics` when given.
fn router_with(config: &Config, metrics: Option<&mut server::Metrics>) -> Router {
    let market = Arc::new(Market {
        issued: AtomicU64::new(0),
        latency: config.latency,
        fail_rate: config.fail_rate,
        dice: AtomicU64::new(config.seed),
        counts: Counts::default(),
    });
    if let Some(metrics) = metrics {
        let registry = metrics.registry();
        registry.register_collector(Box::new(Registrations(market.clone())));
        registry.register(
            "price_api_polls",
            "GET /request-data answers by result: sold, unsold, unknown (never issued).",
            market.counts.polls.clone(),
        );
        registry.register(
            "price_api_injected_failures",
            "Requests answered 503 by --fail-rate, by route.",
            market.counts.failures.clone(),
        );
    }
    Router::new()
        .route(
            "/register-request",
            post(register).fallback(|| method_not_allowed("POST")),
        )
        .route(
            "/request-data/{id}",
            get(request_data).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/health",
            get(health).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .fallback(server::not_found)
        .with_state(market)
}

/// A JSON body written by hand: these answers are tiny and on the hot path.
fn json_body(body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn register(
    State(market): State<Arc<Market>>,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    }
    market.weather(ROUTES[0]).await?;
    let id = market.issued.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(json_body(format!("{{\"id\":{id}}}")))
}

async fn request_data(
    State(market): State<Arc<Market>>,
    Path(id): Path<String>,
) -> std::result::Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("request id {id:?} is not a number")))?;
    market.weather(ROUTES[1]).await?;
    let poll = |result| {
        market
            .counts
            .polls
            .get_or_create(&[("result", result)])
            .inc()
    };
    if id == 0 || id > market.issued.load(Ordering::Relaxed) {
        poll("unknown");
        return Err(ApiError::not_found(format!("no request {id}")));
    }
    Ok(json_body(if id.is_multiple_of(2) {
        poll("sold");
        r#"{"sold":true}"#
    } else {
        poll("unsold");
        r#"{"sold":false}"#
    }))
}

/// `price_api_registrations_total`: the ids issued, read from the counter itself at each scrape.
#[derive(Debug)]
struct Registrations(Arc<Market>);

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for Registrations {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        server::metrics::encode_counter(
            &mut encoder,
            "price_api_registrations",
            "Requests registered (ids issued) by POST /register-request.",
            self.0.issued.load(Ordering::Relaxed),
        )
    }
}

async fn health(State(market): State<Arc<Market>>) -> Json<serde_json::Value> {
    Json(json!({ "issued": market.issued.load(Ordering::Relaxed) }))
}

async fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; use {allow}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_ranges_parse() {
        let r: LatencyRange = "50ms..500ms".parse().unwrap();
        assert_eq!(r.min, std::time::Duration::from_millis(50));
        assert_eq!(r.max, std::time::Duration::from_millis(500));
        let fixed: LatencyRange = "20ms".parse().unwrap();
        assert_eq!(fixed.min, fixed.max);
        assert!("500ms..50ms".parse::<LatencyRange>().is_err());
        assert!("fast".parse::<LatencyRange>().is_err());
    }

    #[test]
    fn the_dice_are_uniform_enough() {
        let market = Market {
            issued: AtomicU64::new(0),
            latency: None,
            fail_rate: 0.0,
            dice: AtomicU64::new(7),
            counts: Counts::default(),
        };
        let rolls: Vec<f64> = (0..10_000).map(|_| market.roll()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let below = rolls.iter().filter(|&&r| r < 0.05).count();
        assert!((350..650).contains(&below), "{below} of 10000 below 0.05");
    }
}

pub use cli::Args;

/// The command line of `price-api`: its doc comments are `price-api --help`.
mod cli {

    use crate::reprice::api::{self, Config, LatencyRange};
    use clap::Parser;

    /// The "Amazon API server" of the repricing loop: registers price requests and reports sales.
    ///
    /// `POST /register-request` answers `{"id":N}` with unique, increasing ids;
    /// `GET /request-data/{id}` answers `{"sold":true}` for an even id and `{"sold":false}` for an
    /// odd one; unknown ids get 404, malformed ones 400, other methods 405, always with a JSON body.
    /// `GET /metrics` is the Prometheus exposition. `--latency` and `--fail-rate` play the overloaded server. Idle, slow and excess connections
    /// are closed (`--header-timeout`, `--idle-timeout`, `--max-connections`). SIGTERM/SIGINT stop it
    /// gracefully.
    #[derive(Parser, Debug)]
    #[command(
        name = "price-api",
        version,
        after_help = "\
Examples:
  price-api --listen 127.0.0.1:8080 &  ticker 5s | reprice --csv examples/data.csv
  price-api --listen 127.0.0.1:0 --latency 50ms..500ms --fail-rate 0.05
  curl -s -XPOST localhost:8080/register-request   # {\"id\":1}
  curl -s localhost:8080/request-data/1            # {\"sold\":false}"
    )]
    pub struct Args {
        /// Address to listen on; port 0 picks a free port (printed on stderr).
        #[arg(
            help_heading = "Server",
            long,
            value_name = "ADDR",
            default_value = "127.0.0.1:8080"
        )]
        listen: String,

        /// Delay every answer by a random time in MIN..MAX (or a fixed DURATION), e.g. 50ms..500ms.
        #[arg(help_heading = "Market simulation", long, value_name = "MIN..MAX")]
        latency: Option<LatencyRange>,

        /// Answer this share of requests with 503 (0 to 1).
        #[arg(
            help_heading = "Market simulation",
            long,
            value_name = "RATE",
            default_value_t = 0.0
        )]
        fail_rate: f64,

        /// Seed of the latency and failure dice.
        #[arg(help_heading = "Market simulation", long, default_value_t = 1)]
        seed: u64,

        /// Worker threads.
        #[arg(help_heading = "Server", long, default_value_t = 2)]
        threads: usize,

        #[command(flatten)]
        http: crate::server::HttpArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "price-api";

        fn run(self, _process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            api::run(&Config {
                listen: args.listen,
                latency: args.latency,
                fail_rate: args.fail_rate,
                seed: args.seed,
                threads: args.threads,
                http: args.http,
            })
        }
    }
}
