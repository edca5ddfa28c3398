//! `reprice --redis redis://HOST:PORT/STREAM --group G`: any number of reprice processes, on any
//! number of hosts, share the books of each tick through a Redis consumer group.
//!
//! ## Keys and entries
//! `ticker --redis …/STREAM` appends one entry per tick to `STREAM` (fields `tick`, `at`, `line`).
//! The group `G` has two streams of work, both read with `XREADGROUP … >`:
//!
//! | key | entries | written by |
//! |---|---|---|
//! | `STREAM` | one per tick: `tick`, `at`, `line` | `ticker` (trimmed with `MAXLEN ~`) |
//! | `{STREAM}:books:G` | one per (tick, run of `--books-per-entry` books): `tick`, `from`, `windows` | the consumer that took the tick |
//! | `{STREAM}:prices:G` | one per published line: `line` (a price line or a report) | the consumer that priced the books (`MAXLEN ~ --keep`) |
//! | `{STREAM}:req:G:ID` | hash book → price-api request id for book entry ID (expires after a day) | the consumer pricing it |
//!
//! The consumer that takes a tick entry asks its own data manager for every book's window (one
//! request, as in the pipe form), splits the books into runs of `--books-per-entry`, and in one
//! Lua script appends a book entry per run (the windows inside) and `XACK`s the tick. Every
//! consumer takes book entries, registers each book with price-api, waits `--poll-after`, polls,
//! and in one Lua script appends the price lines to the prices stream, `XACK`s and deletes the
//! book entry; only then does it print them. So the data manager keeps its request/reply
//! protocol and price-api sees what it sees from the pipe form: one registration and one poll per
//! (tick, book).
//!
//! ## Exactly once
//! Both scripts first check (`XPENDING … ID ID 1 CONSUMER`) that the entry is still pending *to
//! this consumer*; if another consumer has claimed it meanwhile, nothing is written and the other
//! one's result counts. An acknowledged entry cannot be claimed again, so every (tick, book)
//! reaches the prices stream once, as a price line or as a report.
//!
//! - A consumer killed mid-entry leaves it pending; after `--claim-after` of idleness another
//!   consumer takes it with `XAUTOCLAIM`. A live consumer re-claims its own entries in flight
//!   (`XCLAIM … JUSTID`, which does not count a delivery) every third of `--claim-after`, so only a
//!   dead or stalled consumer loses its entries, however long `--poll-after` is.
//! - price-api: the ids of a book entry's registrations are recorded in `{STREAM}:req:G:ID`
//!   before the poll; a consumer that claims the entry polls those ids instead of registering the
//!   books again, so it prices them as the dead one would have. Only a kill between a
//!   registration's answer and that record (one round trip) leaves price-api with a registration
//!   nobody polls.
//! - An entry delivered more than `--max-deliveries` times (every consumer that took it died) is
//!   not priced again: it is reported on stderr and as a line `{"tick","book","entry","error"}`
//!   on stdout and in the prices stream, one per book it held, and acknowledged.
//! - Failures (price-api down, a data-manager error) cost that (tick, book) as in the pipe form,
//!   and are published the same way as a report line instead of being retried.
//!
//! ## Redis going away
//! Commands reconnect with backoff; a result that cannot be published within 30 s is dropped (its
//! entry stays pending and is claimed later, its request ids reused). Without persistence a
//! restart loses the streams, the group and the records: the ticks and book entries not yet
//! priced then, and the prices stream; the consumers create the group again and go on with the
//! next ticks. With `appendfsync everysec` up to a second of writes may be lost: a publish lost
//! with its acknowledgement is done again (its lines were printed once already).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, RedisResult, Script};
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::algorithm::{self, Config, Market};
use super::feed::{Answer, Window};
use super::supervisor::DataManager;
use crate::config::split_redis_url;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;
use crate::stop::Stop;
use crate::time::{self, Timestamp};

/// The `--redis` flags of reprice, as given.
#[derive(Debug, Clone)]
pub struct Group {
    pub url: String,
    pub group: String,
    pub consumer: Option<String>,
    pub claim_after: time::Duration,
    pub max_deliveries: usize,
    pub books_per_entry: usize,
    pub max_entries: usize,
    pub keep: u64,
}

/// The flags checked: where to connect, the keys, this consumer's name.
#[derive(Debug, Clone)]
pub struct Setup {
    url: String,
    conn: String,
    keys: Keys,
    group: String,
    consumer: String,
    claim_after: Duration,
    max_deliveries: usize,
    books_per_entry: usize,
    max_entries: usize,
    keep: u64,
}

impl Group {
    pub fn check(&self) -> Result<Setup> {
        let (conn, stream) = split_redis_url("--redis", &self.url)?;
        if self.group.is_empty() {
            return Err(Error::usage("--group must not be empty"));
        }
        for (flag, n) in [
            ("--max-deliveries", self.max_deliveries),
            ("--books-per-entry", self.books_per_entry),
            ("--max-entries", self.max_entries),
        ] {
            if n == 0 {
                return Err(Error::usage(format!("{flag} must be at least 1")));
            }
        }
        let claim_after = self.claim_after.std();
        if claim_after < Duration::from_millis(10) {
            return Err(Error::usage("--claim-after must be at least 10ms"));
        }
        let consumer = match &self.consumer {
            Some(name) if name.is_empty() => {
                return Err(Error::usage("--consumer must not be empty"))
            }
            Some(name) => name.clone(),
            None => default_consumer(),
        };
        Ok(Setup {
            url: self.url.clone(),
            conn,
            keys: Keys::new(&stream, &self.group),
            group: self.group.clone(),
            consumer,
            claim_after,
            max_deliveries: self.max_deliveries,
            books_per_entry: self.books_per_entry,
            max_entries: self.max_entries,
            keep: self.keep.max(1),
        })
    }
}

/// `HOST-PID`: unique among live processes, and says where a pending entry's consumer ran.
fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

#[derive(Debug, Clone)]
struct Keys {
    ticks: String,
    books: String,
    prices: String,
    req: String,
}

impl Keys {
    /// Under the stream's name as hash tag, so every script's keys share one cluster slot.
    fn new(stream: &str, group: &str) -> Keys {
        Keys {
            ticks: stream.to_string(),
            books: format!("{{{stream}}}:books:{group}"),
            prices: format!("{{{stream}}}:prices:{group}"),
            req: format!("{{{stream}}}:req:{group}:"),
        }
    }
}

/// Which of the group's two streams an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tick,
    Books,
}

/// How long a recorded request id is kept for a claimer (a book entry priced normally deletes it).
const REQ_TTL_SECS: u64 = 86_400;
/// How long a computed result keeps trying to reach Redis.
const GIVE_UP: Duration = Duration::from_secs(30);
/// How long one `XREADGROUP` blocks: the longest a stop waits for the reader.
const BLOCK_MS: u64 = 500;

/// Fan a tick out: if the tick entry is still ours, append one book entry per run and ack it.
const FAN_OUT: &str = r#"
local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #mine == 0 then return 0 end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[2], '*', 'tick', ARGV[4], 'from', ARGV[3], 'windows', ARGV[i])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
"#;

/// Publish an entry's lines: if it is still ours, append them, ack (and delete a book entry),
/// and forget its request ids.
const PUBLISH: &str = r#"
local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #mine == 0 then return 0 end
for i = 6, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'line', ARGV[i])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
if ARGV[5] == '1' then redis.call('XDEL', KEYS[1], ARGV[3]) end
redis.call('DEL', KEYS[3])
return 1
"#;

/// Reset the idle time of the entries still ours (JUSTID: not counted as a delivery).
const TOUCH: &str = r#"
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
"#;

/// An entry taken from the group, with the slot it occupies.
struct Entry {
    kind: Kind,
    id: String,
    fields: HashMap<String, redis::Value>,
    /// Times delivered (1 when read fresh; more when claimed).
    deliveries: usize,
    _slot: OwnedSemaphorePermit,
}

/// A (tick, book) that was not priced, as published.
#[derive(Serialize)]
struct Unpriced<'a> {
    tick: Option<u64>,
    book: Option<&'a str>,
    entry: &'a str,
    error: &'a str,
    at: Timestamp,
}

fn unpriced(tick: Option<u64>, book: Option<&str>, entry: &str, error: &str) -> String {
    serde_json::to_string(&Unpriced {
        tick,
        book,
        entry,
        error,
        at: Timestamp(time::now()),
    })
    .expect("a report serializes")
}

/// Shared by the reader, the claimer and every entry task.
struct Consumer {
    setup: Setup,
    link: Link,
    dm: DataManager,
    market: Market,
    points: usize,
    fan_out: Script,
    publish: Script,
    touch: Script,
    /// Entries taken and not finished, by stream: the heartbeat keeps them ours.
    in_flight: Mutex<[HashSet<String>; 2]>,
    slots: Arc<Semaphore>,
    out: mpsc::UnboundedSender<String>,
    stopping: AtomicBool,
    priced: AtomicU64,
    failed: AtomicU64,
}

fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("LOADING")
}

/// A multiplexed connection that is made again after it broke (on the next command).
struct Link {
    client: redis::Client,
    config: AsyncConnectionConfig,
    con: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Link {
    fn new(client: redis::Client, response: Duration) -> Link {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response));
        Link {
            client,
            config,
            con: tokio::sync::Mutex::new(None),
        }
    }

    async fn con(&self) -> RedisResult<MultiplexedConnection> {
        let mut con = self.con.lock().await;
        if let Some(con) = con.as_ref() {
            return Ok(con.clone());
        }
        let made = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *con = Some(made.clone());
        Ok(made)
    }

    /// Forget a connection that failed, so the next command connects again.
    async fn checked<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            if transient(e) {
                *self.con.lock().await = None;
            }
        }
        result
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        let result = match self.con().await {
            Ok(mut con) => cmd.query_async(&mut con).await,
            Err(e) => Err(e),
        };
        self.checked(result).await
    }

    async fn pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> RedisResult<T> {
        let result = match self.con().await {
            Ok(mut con) => pipe.query_async(&mut con).await,
            Err(e) => Err(e),
        };
        self.checked(result).await
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let result = match self.con().await {
            Ok(mut con) => call.invoke_async(&mut con).await,
            Err(e) => Err(e),
        };
        self.checked(result).await
    }
}

/// Create the group on both work streams (and the streams), reading them from the start; an
/// existing group is kept as it is.
async fn ensure_groups(link: &Link, setup: &Setup) -> Result<()> {
    for key in [&setup.keys.ticks, &setup.keys.books] {
        let made: RedisResult<()> = link
            .query(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(key)
                    .arg(&setup.group)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match made {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => {
                return Err(Error::failed(format!(
                    "redis {}: cannot create group {} on {key}: {e}",
                    setup.url, setup.group
                )))
            }
        }
    }
    Ok(())
}

/// Run reprice as one consumer of the group until SIGTERM or SIGINT.
pub async fn run(config: &Config, api: String, setup: Setup, stop: Stop) -> Result<()> {
    let client = redis::Client::open(setup.conn.as_str())
        .map_err(|e| Error::usage(format!("--redis {}: {e}", setup.url)))?;
    let link = Link::new(client.clone(), Duration::from_secs(5));
    link.con()
        .await
        .map_err(|e| Error::failed(format!("redis {}: cannot connect: {e}", setup.url)))?;
    ensure_groups(&link, &setup).await?;
    // Its own connection: a blocked XREADGROUP would hold up every command queued behind it.
    let reader = Link::new(
        client,
        Duration::from_millis(BLOCK_MS) + Duration::from_secs(5),
    );
    let market = Market::new(config, &api)?;
    let (dm, supervisor) = DataManager::spawn(algorithm::data_manager_spec(config)?);
    let (out, lines) = mpsc::unbounded_channel();
    let writer = algorithm::start_output(move || write_lines(lines))?;
    warn(format_args!(
        "consumer {} of group {} on {}",
        setup.consumer, setup.group, setup.url
    ));
    let state = Arc::new(Consumer {
        slots: Arc::new(Semaphore::new(setup.max_entries)),
        setup,
        link,
        dm,
        market,
        points: config.points,
        fan_out: Script::new(FAN_OUT),
        publish: Script::new(PUBLISH),
        touch: Script::new(TOUCH),
        in_flight: Mutex::new([HashSet::new(), HashSet::new()]),
        out,
        stopping: AtomicBool::new(false),
        priced: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });

    let (taken, mut entries) = mpsc::channel::<Entry>(64);
    let reader = tokio::spawn(read_loop(state.clone(), reader, taken.clone()));
    let claimer = tokio::spawn(claim_loop(state.clone(), taken));
    let beat = tokio::spawn(heartbeat(state.clone()));
    let mut tasks = JoinSet::new();
    let mut stop = std::pin::pin!(stop.wait());
    let mut stopped = None;
    loop {
        tokio::select! {
            why = &mut stop, if stopped.is_none() => {
                stopped = Some(why);
                state.stopping.store(true, Ordering::Relaxed);
            }
            Some(entry) = entries.recv() => {
                tasks.spawn(work(state.clone(), entry));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            else => break,
        }
        if state.out.is_closed() {
            state.stopping.store(true, Ordering::Relaxed);
        }
    }
    let _ = reader.await;
    let _ = claimer.await;
    let _ = beat.await;
    let priced = state.priced.load(Ordering::Relaxed);
    let failed = state.failed.load(Ordering::Relaxed);
    drop(state);
    algorithm::finish_output(supervisor, writer).await?;
    warn(format_args!(
        "published {priced} price line{} and {failed} report{}",
        if priced == 1 { "" } else { "s" },
        if failed == 1 { "" } else { "s" }
    ));
    if let Some(why) = stopped {
        why.into_result()?;
    }
    if failed > 0 {
        return Err(Error::Reported(1));
    }
    Ok(())
}

/// The output thread: write published lines, flushing whenever no more are waiting.
fn write_lines(mut lines: mpsc::UnboundedReceiver<String>) -> Result<()> {
    let mut out = Output::stdout();
    while let Some(line) = lines.blocking_recv() {
        out.emit_raw(line.as_bytes())?;
        while let Ok(line) = lines.try_recv() {
            out.emit_raw(line.as_bytes())?;
        }
        out.flush()?;
    }
    Ok(())
}

/// Redis trouble that goes on: said once when it starts and once when it ends.
#[derive(Default)]
struct Trouble {
    since: Option<Instant>,
    pause: Duration,
}

impl Trouble {
    async fn hit(&mut self, what: &str, e: &RedisError) {
        if self.since.is_none() {
            warn(format_args!("redis {what}: {e}; retrying"));
            self.since = Some(Instant::now());
            self.pause = Duration::from_millis(100);
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(2));
    }

    fn ok(&mut self, what: &str) {
        if self.since.take().is_some() {
            warn(format_args!("redis {what}: connected again"));
        }
    }
}

impl Consumer {
    fn stream(&self, kind: Kind) -> &str {
        match kind {
            Kind::Tick => &self.setup.keys.ticks,
            Kind::Books => &self.setup.keys.books,
        }
    }

    fn hold(&self, kind: Kind, id: &str) {
        let mut held = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        held[kind as usize].insert(id.to_string());
    }

    fn release(&self, kind: Kind, id: &str) {
        let mut held = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        held[kind as usize].remove(id);
    }

    fn held(&self, kind: Kind) -> Vec<String> {
        let held = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        held[kind as usize].iter().cloned().collect()
    }

    fn holds_any(&self, kind: Kind) -> bool {
        let held = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        !held[kind as usize].is_empty()
    }

    fn idle(&self) -> bool {
        let held = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        held.iter().all(HashSet::is_empty)
    }

    /// Run `f` until it succeeds, retrying transient failures for up to [`GIVE_UP`].
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> RedisResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let start = Instant::now();
        let mut trouble = Trouble::default();
        loop {
            match f().await {
                Ok(v) => {
                    trouble.ok(&self.setup.url);
                    return Ok(v);
                }
                Err(e) if transient(&e) && start.elapsed() < GIVE_UP => {
                    trouble
                        .hit(&format!("{} ({what})", self.setup.url), &e)
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publish `lines` for an entry if it is still ours; print them once published.
    async fn publish(&self, kind: Kind, id: &str, lines: Vec<String>, reports: Vec<String>) {
        let req = format!("{}{id}", self.setup.keys.req);
        let all: Vec<&String> = lines.iter().chain(&reports).collect();
        let done: RedisResult<i64> = self
            .retry("publishing", || {
                let mut call = self.publish.key(self.stream(kind));
                call.key(&self.setup.keys.prices)
                    .key(&req)
                    .arg(&self.setup.group)
                    .arg(&self.setup.consumer)
                    .arg(id)
                    .arg(self.setup.keep)
                    .arg(if kind == Kind::Books { "1" } else { "0" });
                for line in &all {
                    call.arg(line.as_str());
                }
                async move { self.link.invoke(&call).await }
            })
            .await;
        match done {
            Ok(1) => {
                self.priced.fetch_add(lines.len() as u64, Ordering::Relaxed);
                self.failed
                    .fetch_add(reports.len() as u64, Ordering::Relaxed);
                for line in lines.into_iter().chain(reports) {
                    let _ = self.out.send(line);
                }
            }
            Ok(_) => warn(format_args!(
                "entry {id}: another consumer claimed it before its {} line{} could be \
                 published; its result counts, this one is dropped",
                all.len(),
                if all.len() == 1 { "" } else { "s" }
            )),
            Err(e) => warn(format_args!(
                "entry {id}: cannot publish its {} line{} ({e}); the entry stays pending and \
                 will be claimed",
                all.len(),
                if all.len() == 1 { "" } else { "s" }
            )),
        }
    }
}

fn text(fields: &HashMap<String, redis::Value>, name: &str) -> std::result::Result<String, String> {
    let v = fields
        .get(name)
        .ok_or_else(|| format!("no field {name:?}"))?;
    redis::from_redis_value_ref::<String>(v).map_err(|e| format!("field {name:?}: {e}"))
}

fn tick_of(fields: &HashMap<String, redis::Value>) -> std::result::Result<u64, String> {
    let tick = text(fields, "tick")?;
    match tick.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("field \"tick\" is {tick:?}, not a tick number")),
        Ok(t) => Ok(t),
    }
}

fn windows_of(fields: &HashMap<String, redis::Value>) -> std::result::Result<Vec<Window>, String> {
    serde_json::from_str(&text(fields, "windows")?).map_err(|e| format!("field \"windows\": {e}"))
}

/// Take new entries, as many as there are free slots. Runs of books already shared out come
/// first: a new tick is taken only when no run is waiting and this consumer is not sharing out
/// one already, so a backlog of ticks does not pile up data-manager requests (which one data
/// manager answers one by one) while their books wait.
async fn read_loop(state: Arc<Consumer>, link: Link, taken: mpsc::Sender<Entry>) {
    let setup = &state.setup;
    let mut trouble = Trouble::default();
    let mut first: Option<OwnedSemaphorePermit> = None;
    let mut books_first = true;
    while !state.stopping.load(Ordering::Relaxed) {
        let slot = match first.take() {
            Some(slot) => slot,
            None => match state.slots.clone().acquire_owned().await {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP").arg(&setup.group).arg(&setup.consumer);
        if books_first {
            let count = 1 + state.slots.available_permits();
            read.arg("COUNT").arg(count);
            read.arg("STREAMS").arg(&setup.keys.books).arg(">");
        } else if state.holds_any(Kind::Tick) {
            read.arg("COUNT").arg(1 + state.slots.available_permits());
            read.arg("BLOCK").arg(BLOCK_MS);
            read.arg("STREAMS").arg(&setup.keys.books).arg(">");
        } else {
            read.arg("COUNT").arg(1).arg("BLOCK").arg(BLOCK_MS);
            read.arg("STREAMS")
                .arg(&setup.keys.books)
                .arg(&setup.keys.ticks);
            read.arg(">").arg(">");
        }
        let read: RedisResult<Option<StreamReadReply>> = link.query(&read).await;
        let reply = match read {
            Ok(reply) => {
                trouble.ok(&setup.url);
                let got = reply
                    .as_ref()
                    .is_some_and(|r| r.keys.iter().any(|k| !k.ids.is_empty()));
                books_first = !books_first || got;
                reply
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                warn(format_args!(
                    "group {} is gone from {} (a Redis restart without persistence?); creating \
                     it again: the entries that were in it are lost",
                    setup.group, setup.url
                ));
                if let Err(e) = ensure_groups(&state.link, setup).await {
                    warn(e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                first = Some(slot);
                continue;
            }
            Err(e) => {
                trouble.hit(&setup.url, &e).await;
                first = Some(slot);
                continue;
            }
        };
        let mut slot = Some(slot);
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let kind = if key.key == setup.keys.books {
                Kind::Books
            } else {
                Kind::Tick
            };
            for StreamId { id, map, .. } in key.ids {
                state.hold(kind, &id);
                let slot = match slot.take() {
                    Some(slot) => slot,
                    None => match state.slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                };
                let entry = Entry {
                    kind,
                    id,
                    fields: map,
                    deliveries: 1,
                    _slot: slot,
                };
                if taken.send(entry).await.is_err() {
                    return;
                }
            }
        }
        first = slot;
    }
}

/// Keep our entries ours: every third of `--claim-after`, reset their idle time. Its own task,
/// never waiting for anything but Redis, until the consumer stops and its last entry is done.
async fn heartbeat(state: Arc<Consumer>) {
    let every = (state.setup.claim_after / 3).max(Duration::from_millis(3));
    let mut last = Instant::now();
    loop {
        // Wake often enough to notice the end at once.
        tokio::time::sleep(every.min(Duration::from_millis(100))).await;
        if state.stopping.load(Ordering::Relaxed) && state.idle() {
            return;
        }
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        for kind in [Kind::Tick, Kind::Books] {
            touch(&state, kind).await;
        }
    }
}

/// Claim the entries other consumers left idle for `--claim-after`.
async fn claim_loop(state: Arc<Consumer>, taken: mpsc::Sender<Entry>) {
    let setup = &state.setup;
    let every = (setup.claim_after / 3).max(Duration::from_millis(3));
    let mut cursors = [String::from("0-0"), String::from("0-0")];
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(every.min(Duration::from_millis(100))).await;
        if state.stopping.load(Ordering::Relaxed) {
            return;
        }
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        for kind in [Kind::Tick, Kind::Books] {
            let free = state.slots.available_permits();
            if free == 0 {
                continue;
            }
            let cursor = &mut cursors[kind as usize];
            let claimed: RedisResult<StreamAutoClaimReply> = state
                .link
                .query(
                    redis::cmd("XAUTOCLAIM")
                        .arg(state.stream(kind))
                        .arg(&setup.group)
                        .arg(&setup.consumer)
                        .arg(setup.claim_after.as_millis() as u64)
                        .arg(cursor.as_str())
                        .arg("COUNT")
                        .arg(free),
                )
                .await;
            let claimed = match claimed {
                Ok(c) => c,
                // Redis trouble is said by the reader; a missing group is made again there.
                Err(_) => continue,
            };
            *cursor = claimed.next_stream_id;
            for id in &claimed.deleted_ids {
                trimmed(&state, kind, id).await;
            }
            if claimed.claimed.is_empty() {
                continue;
            }
            let counts = deliveries(&state, kind, &claimed.claimed).await;
            warn(format_args!(
                "claimed {} {} entr{} idle for over {} (their consumer died or stalled)",
                claimed.claimed.len(),
                if kind == Kind::Tick { "tick" } else { "book" },
                if claimed.claimed.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                time::Duration(setup.claim_after)
            ));
            for StreamId { id, map, .. } in claimed.claimed {
                state.hold(kind, &id);
                let Ok(slot) = state.slots.clone().acquire_owned().await else {
                    return;
                };
                let entry = Entry {
                    kind,
                    deliveries: counts.get(&id).copied().unwrap_or(2),
                    id,
                    fields: map,
                    _slot: slot,
                };
                if taken.send(entry).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How many times each claimed entry has been delivered (the claim included).
async fn deliveries(state: &Consumer, kind: Kind, claimed: &[StreamId]) -> HashMap<String, usize> {
    let (Some(first), Some(last)) = (claimed.first(), claimed.last()) else {
        return HashMap::new();
    };
    let pending: RedisResult<StreamPendingCountReply> = state
        .link
        .query(
            redis::cmd("XPENDING")
                .arg(state.stream(kind))
                .arg(&state.setup.group)
                .arg(&first.id)
                .arg(&last.id)
                .arg(claimed.len() + state.setup.max_entries * 4)
                .arg(&state.setup.consumer),
        )
        .await;
    pending
        .map(|p| {
            p.ids
                .into_iter()
                .map(|p| (p.id, p.times_delivered))
                .collect()
        })
        .unwrap_or_default()
}

async fn touch(state: &Consumer, kind: Kind) {
    let ids = state.held(kind);
    for batch in ids.chunks(256) {
        let mut call = state.touch.key(state.stream(kind));
        call.arg(&state.setup.group).arg(&state.setup.consumer);
        for id in batch {
            call.arg(id);
        }
        let _: RedisResult<i64> = state.link.invoke(&call).await;
    }
}

/// A pending entry the stream no longer holds (trimmed before anyone priced it): report it.
async fn trimmed(state: &Consumer, kind: Kind, id: &str) {
    let why = format!(
        "entry {id} of {} was deleted from the stream before it was priced (trimmed with a \
         backlog longer than the stream keeps)",
        state.stream(kind)
    );
    warn(&why);
    let line = unpriced(None, None, id, &why);
    let added: RedisResult<String> = state
        .link
        .query(
            redis::cmd("XADD")
                .arg(&state.setup.keys.prices)
                .arg("MAXLEN")
                .arg("~")
                .arg(state.setup.keep)
                .arg("*")
                .arg("line")
                .arg(&line),
        )
        .await;
    if added.is_ok() {
        state.failed.fetch_add(1, Ordering::Relaxed);
        let _ = state.out.send(line);
    }
}

/// Work on one entry, and let it go.
async fn work(state: Arc<Consumer>, entry: Entry) {
    if entry.deliveries > state.setup.max_deliveries {
        give_up(&state, &entry).await;
    } else {
        match entry.kind {
            Kind::Tick => fan_out(&state, &entry).await,
            Kind::Books => price_books(&state, &entry).await,
        }
    }
    state.release(entry.kind, &entry.id);
}

/// An entry every consumer that took it died with: report each (tick, book) it holds.
async fn give_up(state: &Consumer, entry: &Entry) {
    let why = format!(
        "given up after {} deliveries (--max-deliveries {}): every consumer that took it died \
         or stalled",
        entry.deliveries, state.setup.max_deliveries
    );
    let tick = tick_of(&entry.fields).ok();
    let books: Vec<Option<String>> = match entry.kind {
        Kind::Books => match windows_of(&entry.fields) {
            Ok(windows) => windows.into_iter().map(|w| w.book).collect(),
            Err(_) => vec![None],
        },
        Kind::Tick => vec![None],
    };
    let mut reports = Vec::new();
    for book in &books {
        let name = book.as_deref();
        report(tick, name, &entry.id, &why);
        reports.push(unpriced(tick, name, &entry.id, &why));
    }
    state
        .publish(entry.kind, &entry.id, Vec::new(), reports)
        .await;
}

fn report(tick: Option<u64>, book: Option<&str>, id: &str, why: &str) {
    match (tick, book) {
        (Some(tick), Some(book)) => warn(format_args!("tick {tick} book {book:?}: {why}")),
        (Some(tick), None) => warn(format_args!("tick {tick}: {why}")),
        _ => warn(format_args!("entry {id}: {why}")),
    }
}

/// A tick entry: the windows of every book from the data manager, shared out as book entries.
async fn fan_out(state: &Consumer, entry: &Entry) {
    let id = &entry.id;
    let fail = |tick: Option<u64>, why: String| async move {
        report(tick, None, id, &why);
        let line = unpriced(tick, None, id, &why);
        state.publish(Kind::Tick, id, Vec::new(), vec![line]).await;
    };
    let tick = match tick_of(&entry.fields) {
        Ok(tick) => tick,
        Err(why) => return fail(None, format!("bad tick entry: {why}")).await,
    };
    let windows = match state.dm.query(tick, state.points).await {
        Ok(Answer::One(window)) => vec![window],
        Ok(Answer::Books(windows)) => windows,
        Err(e) => return fail(Some(tick), format!("data manager: {e}")).await,
    };
    let runs: Vec<String> = windows
        .chunks(state.setup.books_per_entry)
        .map(|run| serde_json::to_string(run).expect("windows serialize"))
        .collect();
    let done: RedisResult<i64> = state
        .retry("sharing out a tick", || {
            let mut call = state.fan_out.key(&state.setup.keys.ticks);
            call.key(&state.setup.keys.books)
                .arg(&state.setup.group)
                .arg(&state.setup.consumer)
                .arg(id)
                .arg(tick);
            for run in &runs {
                call.arg(run.as_str());
            }
            async move { state.link.invoke(&call).await }
        })
        .await;
    match done {
        Ok(1) => {}
        Ok(_) => warn(format_args!(
            "tick {tick}: another consumer claimed its entry {id} before its books were shared \
             out; left to it"
        )),
        Err(e) => warn(format_args!(
            "tick {tick}: cannot share out its books ({e}); the entry stays pending and will be \
             claimed"
        )),
    }
}

/// A book entry: price every book in it (reusing request ids a dead consumer registered), then
/// publish the lines.
async fn price_books(state: &Consumer, entry: &Entry) {
    let id = &entry.id;
    let tick = tick_of(&entry.fields);
    let (tick, windows) = match (tick, windows_of(&entry.fields)) {
        (Ok(tick), Ok(windows)) => (tick, windows),
        (tick, parsed) => {
            let why = match (&tick, &parsed) {
                (Err(why), _) | (_, Err(why)) => format!("bad book entry: {why}"),
                (Ok(_), Ok(_)) => unreachable!("both parsed"),
            };
            let tick = tick.ok();
            report(tick, None, id, &why);
            let line = unpriced(tick, None, id, &why);
            return state.publish(Kind::Books, id, Vec::new(), vec![line]).await;
        }
    };
    let req = format!("{}{id}", state.setup.keys.req);
    let recorded: HashMap<String, u64> = if entry.deliveries > 1 {
        state
            .link
            .query(redis::cmd("HGETALL").arg(&req))
            .await
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    let registered = join_all(windows.iter().map(|window| {
        let recorded = &recorded;
        async move {
            let avg = algorithm::average(window)?;
            let key = window.book.as_deref().unwrap_or("");
            match recorded.get(key) {
                Some(&request) => Ok((avg, request, false)),
                None => {
                    let request = state.market.register(tick, window, avg).await?;
                    Ok::<_, String>((avg, request, true))
                }
            }
        }
    }))
    .await;
    let fresh: Vec<(&str, u64)> = windows
        .iter()
        .zip(&registered)
        .filter_map(|(w, r)| match r {
            Ok((_, request, true)) => Some((w.book.as_deref().unwrap_or(""), *request)),
            _ => None,
        })
        .collect();
    if !fresh.is_empty() {
        let recorded: RedisResult<()> = state
            .link
            .pipe(
                redis::pipe()
                    .hset_multiple(&req, &fresh)
                    .ignore()
                    .expire(&req, REQ_TTL_SECS as i64)
                    .ignore(),
            )
            .await;
        if let Err(e) = recorded {
            warn(format_args!(
                "tick {tick}: cannot record its price-api request ids ({e}); a consumer that \
                 claims entry {id} registers its books again"
            ));
        }
    }
    let settled = join_all(
        windows
            .iter()
            .zip(registered)
            .map(|(window, registered)| async move {
                match registered {
                    Ok((avg, request, _)) => state.market.settle(tick, window, avg, request).await,
                    Err(why) => Err(why),
                }
            }),
    )
    .await;
    let mut lines = Vec::new();
    let mut reports = Vec::new();
    for (window, outcome) in windows.iter().zip(settled) {
        match outcome {
            Ok(line) => lines.push(serde_json::to_string(&line).expect("a price line serializes")),
            Err(why) => {
                report(Some(tick), window.book.as_deref(), id, &why);
                reports.push(unpriced(Some(tick), window.book.as_deref(), id, &why));
            }
        }
    }
    state.publish(Kind::Books, id, lines, reports).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(url: &str) -> Group {
        Group {
            url: url.into(),
            group: "pricing".into(),
            consumer: Some("c1".into()),
            claim_after: time::Duration(Duration::from_secs(30)),
            max_deliveries: 5,
            books_per_entry: 100,
            max_entries: 64,
            keep: 1000,
        }
    }

    fn usage(g: &Group) -> String {
        match g.check() {
            Err(Error::Usage(msg)) => msg,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn the_keys_share_the_stream_name_as_hash_tag() {
        let setup = group("redis://127.0.0.1:6379/ticks").check().unwrap();
        assert_eq!(setup.conn, "redis://127.0.0.1:6379/");
        assert_eq!(setup.keys.ticks, "ticks");
        assert_eq!(setup.keys.books, "{ticks}:books:pricing");
        assert_eq!(setup.keys.prices, "{ticks}:prices:pricing");
        assert_eq!(setup.keys.req, "{ticks}:req:pricing:");
    }

    #[test]
    fn bad_flags_are_usage_errors_that_name_the_flag() {
        assert!(usage(&group("http://h:1/t")).contains("not a redis:// URL"));
        assert!(usage(&group("redis://h:1")).contains("give the key"));
        let mut g = group("redis://h:1/t");
        g.group.clear();
        assert!(usage(&g).contains("--group"));
        let mut g = group("redis://h:1/t");
        g.max_deliveries = 0;
        assert!(usage(&g).contains("--max-deliveries"));
        let mut g = group("redis://h:1/t");
        g.books_per_entry = 0;
        assert!(usage(&g).contains("--books-per-entry"));
        let mut g = group("redis://h:1/t");
        g.claim_after = time::Duration(Duration::from_millis(1));
        assert!(usage(&g).contains("--claim-after"));
        let mut g = group("redis://h:1/t");
        g.consumer = Some(String::new());
        assert!(usage(&g).contains("--consumer"));
    }

    #[test]
    fn a_consumer_is_named_after_its_host_and_pid() {
        let mut g = group("redis://h:1/t");
        g.consumer = None;
        let name = g.check().unwrap().consumer;
        assert!(
            name.ends_with(&format!("-{}", std::process::id())),
            "{name}"
        );
    }

    #[test]
    fn tick_fields_must_be_tick_numbers() {
        let fields =
            |v: &str| HashMap::from([("tick".to_string(), redis::Value::BulkString(v.into()))]);
        assert_eq!(tick_of(&fields("12")), Ok(12));
        assert!(tick_of(&fields("0")).is_err());
        assert!(tick_of(&fields("soon")).unwrap_err().contains("\"soon\""));
        assert!(tick_of(&HashMap::new()).unwrap_err().contains("no field"));
    }
}
