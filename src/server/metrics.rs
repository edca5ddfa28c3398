//! `GET /metrics` for every server: the Prometheus text exposition of the HTTP metrics every
//! server shares and the ones its program adds, encoded by the `prometheus-client` crate.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `route` (the route's template, `other` for no route), `status` |
//! | `http_request_duration_seconds` | histogram | `route` |
//! | `http_open_connections` | gauge | — |
//! | `http_connections_refused_total` | counter | — (over `--max-connections`) |
//!
//! The route label is the matched route's template (`/report/{name}`), never the raw path, so
//! the number of series stays bounded whatever clients ask for.
//!
//! The counts live in [`Cells`]: one row of atomics per process, in an anonymous `MAP_SHARED`
//! mapping. A server of one process has one row; chat-relay maps one row per worker before it
//! forks, each worker adds to its own row, and a scrape sums the rows, so whichever worker
//! answers `/metrics` reports the whole relay. Adding is one relaxed atomic add on a cache line
//! no other process writes.

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};

/// Upper bounds of the request latency buckets, in seconds (Prometheus's usual HTTP buckets).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The route label of a request no route matched.
pub const OTHER_ROUTE: &str = "other";
/// Cells per cache line: each process's row starts on a line of its own.
const LINE: usize = 8;
/// Status codes 100 to 599 each have a cell.
const STATUSES: usize = 500;

/// The memory behind [`Cells`]: `rows` rows of `width` counters, never unmapped.
struct Mapping {
    base: NonNull<AtomicU64>,
    rows: usize,
    width: usize,
}

// SAFETY: the mapping is only ever accessed through atomics and lives as long as the process.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// A table of counters with one row per process, shared across `fork` (see the module doc).
#[derive(Clone)]
pub struct Cells {
    map: Arc<Mapping>,
    /// The row this process adds to.
    row: usize,
}

impl std::fmt::Debug for Cells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cells({} rows of {}, row {})",
            self.map.rows, self.map.width, self.row
        )
    }
}

impl Cells {
    /// `rows` rows of `width` zeroed counters; map them before forking so every process shares
    /// them. This process adds to row 0 until [`Cells::row`] picks another.
    pub fn new(rows: usize, width: usize) -> Result<Cells> {
        let rows = rows.max(1);
        let width = width.max(1).div_ceil(LINE) * LINE;
        let bytes = NonZeroUsize::new(rows * width * std::mem::size_of::<AtomicU64>())
            .expect("at least one cell");
        // SAFETY: a fresh anonymous mapping (zero-filled), aliased by nothing else.
        let base = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| Error::io("mapping shared memory for metrics", e.into()))?;
        Ok(Cells {
            map: Arc::new(Mapping {
                base: base.cast(),
                rows,
                width,
            }),
            row: 0,
        })
    }

    /// The same table, adding to row `row` (a worker's slot).
    pub fn row(&self, row: usize) -> Cells {
        assert!(row < self.map.rows, "metrics row {row} out of range");
        Cells {
            map: self.map.clone(),
            row,
        }
    }

    fn cell(&self, row: usize, i: usize) -> &AtomicU64 {
        assert!(i < self.map.width, "metrics cell {i} out of range");
        // SAFETY: in bounds; mmap zero-fills and page-aligns, and AtomicU64 has u64's layout.
        unsafe { &*self.map.base.as_ptr().add(row * self.map.width + i) }
    }

    pub fn add(&self, i: usize, n: u64) {
        self.cell(self.row, i).fetch_add(n, Ordering::Relaxed);
    }

    /// Take `n` off a gauge's cell (the row's sum may go below zero; [`Cells::gauge`] reads it).
    pub fn sub(&self, i: usize, n: u64) {
        self.cell(self.row, i).fetch_sub(n, Ordering::Relaxed);
    }

    /// Cell `i` summed over every row.
    pub fn sum(&self, i: usize) -> u64 {
        (0..self.map.rows).fold(0u64, |sum, row| {
            sum.wrapping_add(self.cell(row, i).load(Ordering::Relaxed))
        })
    }

    /// A gauge's cell summed over every row.
    pub fn gauge(&self, i: usize) -> i64 {
        self.sum(i) as i64
    }

    /// Zero cell `i` of `row`: a gauge of a process that ended (its clients went with it).
    pub fn clear(&self, row: usize, i: usize) {
        self.cell(row, i).store(0, Ordering::Relaxed);
    }
}

/// Encode one counter with no labels.
pub fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Encode one gauge with no labels: a count (`i64`) or a measure such as seconds (`f64`).
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Encode one counter family with one label: a series per `(label value, count)`.
pub fn encode_counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The HTTP metrics of one server (see the module doc), over [`Cells`].
///
/// Layout: open connections, refused connections, then per route (the server's templates,
/// `/metrics`, then [`OTHER_ROUTE`]): a cell per status code, one per latency bucket (not
/// cumulative; the +Inf one last), the latency sum in microseconds and the request count.
#[derive(Debug)]
pub struct Http {
    cells: Cells,
    routes: Vec<&'static str>,
}

const OPEN: usize = 0;
const REFUSED: usize = 1;
const ROUTES_AT: usize = 2;
const PER_ROUTE: usize = STATUSES + LATENCY_BUCKETS.len() + 1 + 2;

impl Http {
    /// Cells needed for `routes` route templates.
    pub fn width(routes: usize) -> usize {
        ROUTES_AT + (routes + 2) * PER_ROUTE
    }

    fn route_base(&self, route: usize) -> usize {
        ROUTES_AT + route * PER_ROUTE
    }

    fn route_index(&self, template: Option<&str>) -> usize {
        template
            .and_then(|t| self.routes.iter().position(|r| *r == t))
            .unwrap_or(self.routes.len() - 1)
    }

    /// Count one answered request.
    pub fn observe(&self, template: Option<&str>, status: StatusCode, took: Duration) {
        let base = self.route_base(self.route_index(template));
        let code = usize::from(status.as_u16()).clamp(100, 599) - 100;
        self.cells.add(base + code, 1);
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.cells.add(base + STATUSES + bucket, 1);
        let after = base + STATUSES + LATENCY_BUCKETS.len() + 1;
        self.cells
            .add(after, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        self.cells.add(after + 1, 1);
    }

    /// A connection was accepted (and `closed` when its socket closes).
    pub fn opened(&self) {
        self.cells.add(OPEN, 1);
    }

    pub fn closed(&self) {
        self.cells.sub(OPEN, 1);
    }

    /// A connection over `--max-connections` was refused.
    pub fn refused(&self) {
        self.cells.add(REFUSED, 1);
    }

    /// Forget the open connections of the process in `row` of `cells`, which ended.
    pub fn row_ended(cells: &Cells, row: usize) {
        cells.clear(row, OPEN);
    }
}

impl Collector for Http {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let cells = &self.cells;
        {
            let mut family = encoder.encode_descriptor(
                "http_requests",
                "HTTP requests answered, by route template and status code.",
                None,
                MetricType::Counter,
            )?;
            for (r, route) in self.routes.iter().enumerate() {
                let base = self.route_base(r);
                for code in 0..STATUSES {
                    let n = cells.sum(base + code);
                    if n > 0 {
                        let status = (code + 100).to_string();
                        let labels = [("route", *route), ("status", status.as_str())];
                        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "http_request_duration_seconds",
                "Time from a request's headers to its answer, by route template.",
                None,
                MetricType::Histogram,
            )?;
            for (r, route) in self.routes.iter().enumerate() {
                let base = self.route_base(r) + STATUSES;
                let count = cells.sum(base + LATENCY_BUCKETS.len() + 2);
                if count == 0 {
                    continue;
                }
                // Per bucket, not cumulative: the encoder adds them up.
                let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                    .iter()
                    .chain([&f64::INFINITY])
                    .enumerate()
                    .map(|(i, le)| (*le, cells.sum(base + i)))
                    .collect();
                let sum = cells.sum(base + LATENCY_BUCKETS.len() + 1) as f64 / 1e6;
                let labels = [("route", *route)];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        encode_gauge(
            &mut encoder,
            "http_open_connections",
            "HTTP connections open now (WebSockets included).",
            cells.gauge(OPEN),
        )?;
        encode_counter(
            &mut encoder,
            "http_connections_refused",
            "Connections refused with 503 over --max-connections.",
            cells.sum(REFUSED),
        )
    }
}

/// A server's metrics: the shared HTTP ones and whatever its program registers.
pub struct Metrics {
    registry: Registry,
    http: Arc<Http>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("http", &self.http).finish()
    }
}

impl Metrics {
    /// Metrics for a server of one process whose router has these route templates.
    pub fn new(routes: &[&'static str]) -> Result<Metrics> {
        let cells = Cells::new(1, Http::width(routes.len()))?;
        Ok(Metrics::over(cells, routes))
    }

    /// Metrics over `cells` (from [`Metrics::cells_for`], mapped before forking), whose HTTP
    /// counts this process adds to its own row of.
    pub fn over(cells: Cells, routes: &[&'static str]) -> Metrics {
        let mut names = routes.to_vec();
        names.push("/metrics");
        names.push(OTHER_ROUTE);
        let http = Arc::new(Http {
            cells,
            routes: names,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(http.clone()));
        Metrics { registry, http }
    }

    /// The cells HTTP metrics for `routes` need, one row per process of `processes`.
    pub fn cells_for(processes: usize, routes: &[&'static str]) -> Result<Cells> {
        Cells::new(processes, Http::width(routes.len()))
    }

    /// The registry, for the program's own metrics.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// The exposition in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        // Writing to a String fails only if a collector fails, and ours do not.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// `app` with `GET /metrics` and every request counted (by route template, status and time).
    pub fn instrument(self, app: Router) -> Router {
        let http = self.http.clone();
        let metrics = Arc::new(self);
        app.route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { exposition(&metrics) }
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let http = http.clone();
                async move {
                    let route = request.extensions().get::<MatchedPath>().cloned();
                    let start = Instant::now();
                    let response = next.run(request).await;
                    http.observe(
                        route.as_ref().map(MatchedPath::as_str),
                        response.status(),
                        start.elapsed(),
                    );
                    response
                }
            },
        ))
    }
}

fn exposition(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
        )],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_across_a_fork() {
        let cells = Cells::new(2, 3).unwrap();
        let child = cells.row(1);
        // SAFETY: the test's child only touches the shared mapping and exits at once.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                child.add(2, 5);
                child.sub(0, 1);
                unsafe { nix::libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child: pid } => {
                nix::sys::wait::waitpid(pid, None).unwrap();
            }
        }
        cells.add(2, 1);
        assert_eq!(cells.sum(2), 6);
        assert_eq!(cells.gauge(0), -1);
        cells.clear(1, 0);
        assert_eq!(cells.gauge(0), 0);
    }

    #[test]
    fn the_exposition_names_routes_by_template() {
        let metrics = Metrics::new(&["/report/{name}"]).unwrap();
        let http = metrics.http().clone();
        http.observe(
            Some("/report/{name}"),
            StatusCode::OK,
            Duration::from_millis(3),
        );
        http.observe(
            Some("/report/{name}"),
            StatusCode::OK,
            Duration::from_millis(30),
        );
        http.observe(None, StatusCode::NOT_FOUND, Duration::from_micros(10));
        http.opened();
        http.refused();
        let text = metrics.render();
        assert!(
            text.contains(r#"http_requests_total{route="/report/{name}",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"http_requests_total{route="other",status="404"} 1"#));
        assert!(text.contains(
            r#"http_request_duration_seconds_bucket{route="/report/{name}",le="0.005"} 1"#
        ));
        assert!(text.contains(
            r#"http_request_duration_seconds_bucket{route="/report/{name}",le="+Inf"} 2"#
        ));
        assert!(text.contains(r#"http_request_duration_seconds_sum{route="/report/{name}"} 0.033"#));
        assert!(text.contains("http_open_connections 1\n"));
        assert!(text.contains("http_connections_refused_total 1\n"));
    }

    #[test]
    fn a_gauge_encodes_counts_and_seconds_alike() {
        #[derive(Debug)]
        struct Gauges;
        impl Collector for Gauges {
            fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
                encode_gauge(&mut encoder, "test_servers", "Servers.", 3i64)?;
                encode_gauge(&mut encoder, "test_age_seconds", "Age.", 1.5f64)
            }
        }
        let mut metrics = Metrics::new(&[]).unwrap();
        metrics.registry().register_collector(Box::new(Gauges));
        let text = metrics.render();
        assert!(
            text.contains("# TYPE test_servers gauge\ntest_servers 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE test_age_seconds gauge\ntest_age_seconds 1.5\n"),
            "{text}"
        );
    }
}
