//! reprice (the Algorithm): on every tick, reprice every book from the competitor's last prices
//! and the marketplace's answer.
//!
//! Input: tick lines from `ticker` (other keys ignored):
//!
//! ```text
//! {"tick":12,"at":"2026-11-21T11:21:00.000000Z"}
//! ```
//!
//! Output, one line per book per tick; a book's lines come in tick order (books interleave as
//! they finish):
//!
//! ```text
//! {"tick":12,"book":null,"avg_comp_price":6210.35,"first_row":8,"last_row":12,"request_id":24,"sold":true,"price":6831.39,"at":"2026-11-21T11:21:01.004000Z"}
//! ```
//!
//! For each tick: ask the data manager (a supervised child, [`super::supervisor`]) for the last
//! `--points` prices of every book; then, per book, `POST /register-request`, wait
//! `--poll-after`, `GET /request-data/{id}`, and print `price` = avg × 1.1 if sold, × 0.9 if not,
//! rounded to cents (`avg_comp_price` is the mean rounded to a millionth). `book` is `null` for a
//! CSV without a Book column.
//!
//! - Ticks overlap: each tick is a task, each book a task within it, and the wait before polling
//!   is a timer, so no thread is held while it runs. A book's next tick starts while its previous
//!   poll still waits (`ticker 5s | reprice --poll-after 5s` prices every tick), up to
//!   `--max-in-flight` ticks per book; a book's finished tick waits for its earlier ones, so its
//!   lines (and its error lines) come out in tick order.
//! - Work is bounded: a book with `--max-in-flight` ticks in flight skips this tick, with a
//!   warning (a skip is load shedding, not a failure); HTTP requests run at most
//!   `--max-connections` at a time over kept-alive connections with `--http-timeout`, half the
//!   slots for registrations and half for polls (so due polls are not queued behind the
//!   registrations of later books); a data-manager request waits at most `--dm-timeout`.
//! - Every tick ends, for every book, in a price line on stdout or a line on stderr
//!   (`reprice: tick 12: price-api: …`, `reprice: tick 12 book "b7": skipped: …`); a failure
//!   costs that tick's result and nothing else. Bad tick lines are reported with their line
//!   number and skipped.
//! - At the end of input, in-flight ticks finish; the exit code is 1 if any tick failed or any
//!   line was bad (with a summary on stderr); skipped ticks are summed up as a warning.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::input::{parse_object, InputArgs};
use crate::output::{Number, Output};
use crate::reprice::feed::{Answer, AtEnd, Window};
use crate::reprice::pricing;
use crate::reprice::stream;
use crate::reprice::supervisor::{DataManager, Spec};
use crate::runner::warn;
use crate::server;
use crate::time::{self, Timestamp};

/// What reprice is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone)]
pub struct Config {
    pub csv: PathBuf,
    pub api: String,
    pub poll_after: time::Duration,
    pub points: usize,
    pub http_timeout: time::Duration,
    pub dm_timeout: time::Duration,
    pub max_connections: usize,
    /// Ticks of one book in flight at once, at most; a tick over it is skipped for that book.
    pub max_in_flight: usize,
    pub data_manager: Option<PathBuf>,
    pub at_end: AtEnd,
    pub follow: bool,
    pub threads: usize,
    pub input: InputArgs,
    /// `--redis URL --group G`: ticks from a Redis stream, shared with the group's other
    /// consumers ([`super::stream`]) instead of from the input.
    pub redis: Option<stream::Group>,
}

/// One output line: a book's new price for a tick.
#[derive(Debug, Clone, Serialize)]
pub struct PriceLine {
    pub tick: u64,
    pub book: Option<String>,
    pub avg_comp_price: Number,
    pub first_row: u64,
    pub last_row: u64,
    pub request_id: u64,
    pub sold: bool,
    pub price: Number,
    pub at: Timestamp,
}

#[derive(Deserialize)]
struct TickLine {
    tick: u64,
}

#[derive(Deserialize)]
struct Registered {
    id: u64,
}

#[derive(Deserialize)]
struct Sale {
    sold: bool,
}

/// Run reprice until its input ends and the ticks in flight have finished.
pub fn run(config: &Config) -> Result<()> {
    if config.points == 0 {
        return Err(Error::usage("--points must be at least 1"));
    }
    if config.max_connections == 0 {
        return Err(Error::usage("--max-connections must be at least 1"));
    }
    if config.max_in_flight == 0 {
        return Err(Error::usage("--max-in-flight must be at least 1"));
    }
    let api = config.api.trim_end_matches('/').to_string();
    if !api.starts_with("http://") && !api.starts_with("https://") {
        return Err(Error::usage(format!(
            "--api {api}: expected a URL like http://127.0.0.1:8080"
        )));
    }
    if !config.csv.exists() {
        return Err(Error::usage(format!(
            "--csv {}: no such file",
            config.csv.display()
        )));
    }
    server::raise_fd_limit();
    if let Some(group) = &config.redis {
        if !config.input.files.is_empty() {
            return Err(Error::usage(
                "--redis reads the ticks from the stream; give no input files",
            ));
        }
        let group = group.check()?;
        // Before the runtime's threads: SIGTERM/SIGINT let the entries in hand finish.
        let stop = crate::stop::Stop::listen()?;
        let runtime = server::runtime(config.threads)?;
        return runtime.block_on(stream::run(config, api, group, stop));
    }
    let runtime = server::runtime(config.threads)?;
    runtime.block_on(reprice(config, api))
}

/// Shared by every tick and book task.
struct Loop {
    dm: DataManager,
    market: Market,
    points: usize,
    max_in_flight: usize,
    /// Books with ticks in flight (only those: a book leaves when its last tick is out).
    books: Mutex<HashMap<Arc<str>, InFlight>>,
    out: mpsc::UnboundedSender<PriceLine>,
    failed: AtomicU64,
    skipped: AtomicU64,
}

/// One book's ticks in flight, by arrival: a finished tick's outcome waits here until every
/// earlier tick of the book is out, so the book's lines keep tick order.
#[derive(Default)]
struct InFlight {
    ticks: BTreeMap<u64, Option<Outcome>>,
}

/// How one book's tick ended.
enum Outcome {
    Priced(PriceLine),
    Failed { tick: u64, why: String },
}

async fn reprice(config: &Config, api: String) -> Result<()> {
    let market = Market::new(config, &api)?;
    let (dm, supervisor) = DataManager::spawn(data_manager_spec(config)?);
    let (out, lines) = mpsc::unbounded_channel();
    let writer = start_output(move || write_lines(lines))?;
    let state = Arc::new(Loop {
        dm,
        market,
        points: config.points,
        max_in_flight: config.max_in_flight,
        books: Mutex::new(HashMap::new()),
        out,
        failed: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
    });

    let (ticks_tx, mut ticks) = mpsc::channel::<u64>(1024);
    let input = config.input.clone();
    let reader = start_thread("ticks", "input", move || read_ticks(&input, ticks_tx))?;

    let mut tasks = JoinSet::new();
    // Ticks claim their books in arrival order: each waits for the one before it to have
    // claimed (or given up), while their data-manager requests still overlap.
    let (first, mut before) = oneshot::channel::<()>();
    drop(first);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            tick = ticks.recv() => match tick {
                Some(tick) => {
                    seq += 1;
                    let (claimed, next) = oneshot::channel();
                    let earlier = std::mem::replace(&mut before, next);
                    tasks.spawn(run_tick(state.clone(), seq, tick, earlier, claimed));
                }
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
        if state.out.is_closed() {
            break;
        }
    }
    while tasks.join_next().await.is_some() {}
    let failed = state.failed.load(Ordering::Relaxed);
    let skipped = state.skipped.load(Ordering::Relaxed);
    drop(state);
    // A broken pipe ends here, quietly, without waiting for more input.
    finish_output(supervisor, writer).await?;
    let read = joined(reader, "input")?;
    if skipped > 0 {
        warn(format_args!(
            "skipped {skipped} book tick{} with --max-in-flight ticks of the book still in flight",
            if skipped == 1 { "" } else { "s" }
        ));
    }
    if failed > 0 {
        warn(format_args!(
            "{failed} book tick{} failed",
            if failed == 1 { "" } else { "s" }
        ));
    }
    read?;
    if failed > 0 {
        return Err(Error::Reported(1));
    }
    Ok(())
}

/// Starts the thread that writes the price lines, so that a slow stdout holds up no tick.
pub(crate) fn start_output(
    write: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    start_thread("output", "output", write)
}

/// Ends a run whose state is dropped: with the last `DataManager` gone the data managers
/// stop, and with the last sender of lines gone the output thread drains and ends. Its error
/// (a broken pipe among them) is the run's.
pub(crate) async fn finish_output(
    supervisor: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<Result<()>>,
) -> Result<()> {
    let _ = supervisor.await;
    joined(writer, "output")?
}

/// Starts a named thread; `what` names it in errors ("starting the {what} thread").
fn start_thread<T: Send + 'static>(
    name: &str,
    what: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| Error::io(format!("starting the {what} thread"), e))
}

/// What a thread returned, or an error saying that it panicked.
fn joined<T>(thread: std::thread::JoinHandle<T>, what: &str) -> Result<T> {
    thread
        .join()
        .map_err(|_| Error::failed(format!("the {what} thread panicked")))
}

pub(crate) fn data_manager_spec(config: &Config) -> Result<Spec> {
    let program = match &config.data_manager {
        Some(path) => path.clone(),
        None => sibling("data-manager")?,
    };
    let mut args: Vec<OsString> = vec!["--csv".into(), config.csv.clone().into_os_string()];
    args.push("--at-end".into());
    args.push(config.at_end.as_str().into());
    args.push("--max-points".into());
    args.push(config.points.max(5).to_string().into());
    if config.follow {
        args.push("--follow".into());
    }
    Ok(Spec {
        program,
        args,
        timeout: config.dm_timeout.std(),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
    })
}

/// The `data-manager` installed next to this program, else the one on `PATH`.
fn sibling(name: &str) -> Result<PathBuf> {
    let here = std::env::current_exe().map_err(|e| Error::io("finding this program", e))?;
    let beside = here.with_file_name(name);
    Ok(if beside.exists() {
        beside
    } else {
        PathBuf::from(name)
    })
}

/// The input thread: parse tick lines, report bad ones, hand ticks to the loop.
fn read_ticks(input: &InputArgs, ticks: mpsc::Sender<u64>) -> Result<()> {
    let mut reader = input.open()?;
    let mut bad = input.bad_lines();
    while let Some(line) = reader.next_line()? {
        let text = match line.text {
            Ok(text) => text,
            Err(e) => {
                bad.report(line.at, e)?;
                continue;
            }
        };
        match parse_object::<TickLine>(text) {
            Ok(TickLine { tick: 0 }) => bad.report(line.at, "tick must be 1 or more")?,
            Ok(TickLine { tick }) => {
                if ticks.blocking_send(tick).is_err() {
                    break;
                }
            }
            Err(reason) => bad.report(line.at, reason)?,
        }
    }
    bad.finish()
}

/// The output thread: write price lines, flushing whenever no more are waiting.
fn write_lines(mut lines: mpsc::UnboundedReceiver<PriceLine>) -> Result<()> {
    let mut out = Output::stdout();
    while let Some(line) = lines.blocking_recv() {
        out.emit(&line)?;
        while let Ok(line) = lines.try_recv() {
            out.emit(&line)?;
        }
        out.flush()?;
    }
    Ok(())
}

impl Loop {
    fn fail(&self, tick: u64, book: Option<&str>, why: impl std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        match book {
            Some(book) => warn(format_args!("tick {tick} book {book:?}: {why}")),
            None => warn(format_args!("tick {tick}: {why}")),
        }
    }

    /// Start tick `seq` of `key`'s book, unless the book has `--max-in-flight` ticks in flight
    /// already: then say so, and name the oldest.
    fn claim(&self, key: &Arc<str>, seq: u64) -> std::result::Result<(), usize> {
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let book = books.entry(key.clone()).or_default();
        if book.ticks.len() >= self.max_in_flight {
            return Err(book.ticks.len());
        }
        book.ticks.insert(seq, None);
        Ok(())
    }

    /// Tick `seq` of `key`'s book ended: put out its outcome and every later one that waited
    /// for it, in order. They are handed to the output while the lock is held: a later tick that
    /// finishes on another thread the moment it is released must not overtake them.
    fn finish(&self, key: &Arc<str>, seq: u64, outcome: Outcome) {
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let Some(in_flight) = books.get_mut(key) else {
            return;
        };
        in_flight.ticks.insert(seq, Some(outcome));
        let book = (!key.is_empty()).then_some(&**key);
        while let Some(mut first) = in_flight.ticks.first_entry() {
            let Some(outcome) = first.get_mut().take() else {
                break;
            };
            first.remove();
            match outcome {
                // Unbounded: the send never waits, so holding the lock for it is cheap.
                Outcome::Priced(line) => {
                    let _ = self.out.send(line);
                }
                Outcome::Failed { tick, why } => self.fail(tick, book, why),
            }
        }
        if in_flight.ticks.is_empty() {
            books.remove(key);
        }
    }
}

async fn run_tick(
    state: Arc<Loop>,
    seq: u64,
    tick: u64,
    earlier: oneshot::Receiver<()>,
    claimed: oneshot::Sender<()>,
) {
    let answer = state.dm.query(tick, state.points).await;
    // The tick before this one has claimed its books (or given up): claim ours after it.
    let _ = earlier.await;
    let windows = match answer {
        Ok(Answer::One(window)) => vec![window],
        Ok(Answer::Books(windows)) => windows,
        Err(e) => return state.fail(tick, None, format_args!("data manager: {e}")),
    };
    let mut books = JoinSet::new();
    for window in windows {
        let key: Arc<str> = Arc::from(window.book.as_deref().unwrap_or(""));
        if let Err(in_flight) = state.claim(&key, seq) {
            state.skipped.fetch_add(1, Ordering::Relaxed);
            let book = match window.book.as_deref() {
                Some(book) => format!(" book {book:?}"),
                None => String::new(),
            };
            let (ticks, are) = if in_flight == 1 {
                ("tick", "is")
            } else {
                ("ticks", "are")
            };
            warn(format_args!(
                "tick {tick}{book}: skipped: {in_flight} earlier {ticks} {are} still in flight \
                 (--max-in-flight {})",
                state.max_in_flight
            ));
            continue;
        }
        books.spawn(price_book(state.clone(), seq, tick, window, key));
    }
    drop(claimed);
    while books.join_next().await.is_some() {}
}

async fn price_book(state: Arc<Loop>, seq: u64, tick: u64, window: Window, key: Arc<str>) {
    let outcome = match repriced(&state, tick, &window).await {
        Ok(line) => Outcome::Priced(line),
        Err(why) => Outcome::Failed { tick, why },
    };
    state.finish(&key, seq, outcome);
}

async fn repriced(
    state: &Loop,
    tick: u64,
    window: &Window,
) -> std::result::Result<PriceLine, String> {
    let avg = average(window)?;
    let id = state.market.register(tick, window, avg).await?;
    state.market.settle(tick, window, avg, id).await
}

/// The average of a window as it is priced: rounded to a millionth (no float noise in the output).
pub(crate) fn average(window: &Window) -> std::result::Result<f64, String> {
    let avg = pricing::average(&window.prices).ok_or("the data manager sent no prices")?;
    Ok((avg * 1e6).round() / 1e6)
}

/// price-api as reprice talks to it: one HTTP client with kept-alive connections, and request
/// slots, half for registrations and half for polls, so a poll that is due is never queued
/// behind the registrations of thousands of later books.
pub(crate) struct Market {
    http: reqwest::Client,
    register_slots: Semaphore,
    poll_slots: Semaphore,
    register_url: String,
    data_url: String,
    poll_after: Duration,
}

impl Market {
    pub(crate) fn new(config: &Config, api: &str) -> Result<Market> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout.std())
            .connect_timeout(config.http_timeout.std())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(config.max_connections)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
        let half = config.max_connections / 2;
        Ok(Market {
            http,
            register_slots: Semaphore::new(half.max(1)),
            poll_slots: Semaphore::new((config.max_connections - half).max(1)),
            register_url: format!("{api}/register-request"),
            data_url: format!("{api}/request-data/"),
            poll_after: config.poll_after.std(),
        })
    }

    /// `POST /register-request` for a book's tick: the request id.
    pub(crate) async fn register(
        &self,
        tick: u64,
        window: &Window,
        avg: f64,
    ) -> std::result::Result<u64, String> {
        let body = serde_json::json!({
            "tick": tick,
            "book": window.book,
            "avg_comp_price": Number(avg),
        });
        let _slot = self
            .register_slots
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        let request = self.http.post(&self.register_url).json(&body);
        let registered: Registered = call(request, "POST /register-request").await?;
        Ok(registered.id)
    }

    /// Wait `--poll-after`, ask whether request `id` sold, and price the book.
    pub(crate) async fn settle(
        &self,
        tick: u64,
        window: &Window,
        avg: f64,
        id: u64,
    ) -> std::result::Result<PriceLine, String> {
        tokio::time::sleep(self.poll_after).await;
        let sale: Sale = {
            let _slot = self.poll_slots.acquire().await.map_err(|e| e.to_string())?;
            let url = format!("{}{}", self.data_url, id);
            let what = format!("GET /request-data/{id}");
            call(self.http.get(url), &what).await?
        };
        let price = pricing::new_price(avg, sale.sold);
        Ok(PriceLine {
            tick,
            book: window.book.clone(),
            avg_comp_price: Number(avg),
            first_row: window.first_row,
            last_row: window.last_row,
            request_id: id,
            sold: sale.sold,
            // Money: the price to the cent.
            price: Number((price * 100.0).round() / 100.0),
            at: Timestamp(time::now()),
        })
    }
}

/// One HTTP exchange with price-api: a 200 with the expected JSON, or why not.
async fn call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> std::result::Result<T, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("price-api: {what}: {}", chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("price-api: {what}: reading the answer: {}", chain(&e)))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "price-api answered {status} to {what}: {}",
            text.trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        format!(
            "price-api: {what}: unexpected answer {:?}: {e}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// An error with its causes, `outer: inner: innermost` (reqwest's own text stops at the outer one).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub use cli::Args;

/// The command line of `reprice`: its doc comments are `reprice --help`.
mod cli {
    use std::path::PathBuf;

    use crate::input::InputArgs;
    use crate::reprice::algorithm::{self, Config};
    use crate::reprice::feed::AtEnd;
    use crate::reprice::stream;
    use crate::time::Duration;
    use clap::Parser;

    /// The Algorithm of the repricing loop: on every tick, reprice every book.
    ///
    /// For each tick line it asks its data manager (a child process it supervises and restarts,
    /// talking JSON lines) for the competitor's last prices, averages them, registers a request with
    /// price-api, polls the request after `--poll-after` and prints the new price: the average × 1.1
    /// if the book sold, × 0.9 if not. Ticks overlap: a book's next tick starts while its previous
    /// poll waits (up to --max-in-flight per book; more are skipped with a warning), and each book's
    /// lines still come out in tick order. Any failure costs only that tick's result and is reported
    /// on stderr.
    #[derive(Parser, Debug)]
    #[command(
        name = "reprice",
        version,
        args_override_self = true,
        after_help = "\
Examples:
  price-api &  ticker 5s | reprice --csv examples/data.csv
  ticker 5s --out /tmp/ticks.fifo &  reprice --csv data.csv --api http://127.0.0.1:8080 /tmp/ticks.fifo
  ticker 5s --redis redis://127.0.0.1:6379/ticks &
  reprice --csv books.csv --redis redis://127.0.0.1:6379/ticks --group pricing   # on each host

Output, one line per book per tick:
  {\"tick\":12,\"book\":null,\"avg_comp_price\":6210.35,\"first_row\":8,\"last_row\":12,\
\"request_id\":24,\"sold\":true,\"price\":6831.39,\"at\":\"2026-11-21T11:21:01.004000Z\"}
With --redis, a book that could not be priced is published and printed as a report:
  {\"tick\":12,\"book\":\"b7\",\"entry\":\"1764700000000-0\",\"error\":\"price-api: …\",\"at\":\"…\"}"
    )]
    pub struct Args {
        /// The competitor's prices (header `Timestamp,Price`, optional `Book` column).
        #[arg(help_heading = "Pricing", long, value_name = "FILE")]
        csv: PathBuf,

        /// Base URL of price-api.
        #[arg(
            help_heading = "Pricing",
            long,
            value_name = "URL",
            default_value = "http://127.0.0.1:8080"
        )]
        api: String,

        /// Wait this long after registering a request before asking whether the book sold.
        #[arg(
            help_heading = "Pricing",
            long,
            value_name = "DURATION",
            default_value = "1s"
        )]
        poll_after: Duration,

        /// How many of the competitor's last prices to average.
        #[arg(help_heading = "Pricing", long, value_name = "N", default_value_t = 5)]
        points: usize,

        /// Give up on one HTTP request after this long (connect included).
        #[arg(
            help_heading = "Limits and timeouts",
            long,
            value_name = "DURATION",
            default_value = "2s"
        )]
        http_timeout: Duration,

        /// Give up on one data-manager request after this long.
        #[arg(
            help_heading = "Limits and timeouts",
            long,
            value_name = "DURATION",
            default_value = "2s"
        )]
        dm_timeout: Duration,

        /// At most this many HTTP requests at once (connections are kept alive and reused).
        #[arg(
            help_heading = "Limits and timeouts",
            long,
            value_name = "N",
            default_value_t = 64
        )]
        max_connections: usize,

        /// Ticks of one book in flight at once (waiting for their poll); a tick beyond is skipped
        /// for that book with a warning.
        #[arg(help_heading = "Pricing", long, value_name = "N", default_value_t = 4)]
        max_in_flight: usize,

        /// The data-manager program to run (default: the one beside this program, else on PATH).
        #[arg(help_heading = "Data manager", long, value_name = "PATH")]
        data_manager: Option<PathBuf>,

        /// Passed to the data manager: after the last row, hold the final window or wrap around.
        #[arg(help_heading = "Data manager", long, value_enum, default_value_t = AtEnd::Hold)]
        at_end: AtEnd,

        /// Passed to the data manager: pick up rows appended to the CSV.
        #[arg(help_heading = "Data manager", long, conflicts_with = "at_end")]
        follow: bool,

        /// Worker threads of the async runtime.
        #[arg(help_heading = "Limits and timeouts", long, default_value_t = 2)]
        threads: usize,

        /// Take the ticks from the Redis stream at redis://HOST:PORT/STREAM (written by `ticker
        /// --redis`) and share their books with the other consumers of --group, instead of reading
        /// tick lines. Runs until SIGTERM or SIGINT.
        #[arg(long, value_name = "URL", requires = "group", help_heading = "Redis")]
        redis: Option<String>,

        /// The consumer group whose members share the books of each tick (created if missing;
        /// another group on the same stream is another strategy, pricing every book again).
        #[arg(long, value_name = "G", requires = "redis", help_heading = "Redis")]
        group: Option<String>,

        /// This consumer's name in the group [default: HOST-PID].
        #[arg(long, value_name = "NAME", requires = "redis", help_heading = "Redis")]
        consumer: Option<String>,

        /// Claim the entries another consumer has left unfinished this long (it died or stalled;
        /// a live consumer keeps its entries fresh).
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "30s",
            help_heading = "Redis"
        )]
        claim_after: Duration,

        /// An entry delivered more times than this is reported instead of priced again.
        #[arg(long, value_name = "N", default_value_t = 5, help_heading = "Redis")]
        max_deliveries: usize,

        /// Books per work entry when a tick is shared out.
        #[arg(long, value_name = "N", default_value_t = 100, help_heading = "Redis")]
        books_per_entry: usize,

        /// Entries this consumer works on at once.
        #[arg(long, value_name = "N", default_value_t = 64, help_heading = "Redis")]
        max_entries: usize,

        /// Keep about this many lines in the group's prices stream (`MAXLEN ~`).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 1_000_000,
            help_heading = "Redis"
        )]
        keep: u64,

        #[command(flatten)]
        input: InputArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "reprice";

        fn run(self, _process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            algorithm::run(&Config {
                csv: args.csv,
                api: args.api,
                poll_after: args.poll_after,
                points: args.points,
                http_timeout: args.http_timeout,
                dm_timeout: args.dm_timeout,
                max_connections: args.max_connections,
                max_in_flight: args.max_in_flight,
                data_manager: args.data_manager,
                at_end: args.at_end,
                follow: args.follow,
                threads: args.threads,
                input: args.input,
                redis: args.redis.map(|url| stream::Group {
                    url,
                    group: args.group.unwrap_or_default(),
                    consumer: args.consumer,
                    claim_after: args.claim_after,
                    max_deliveries: args.max_deliveries,
                    books_per_entry: args.books_per_entry,
                    max_entries: args.max_entries,
                    keep: args.keep,
                }),
            })
        }
    }
}
