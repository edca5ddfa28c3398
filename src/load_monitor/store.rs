//! The shared state: every server's rings, sharded so that concurrent posters for different
//! servers rarely meet on a lock, plus the clock, the server cap, the counters and snapshots.
//!
//! A server name hashes to one of [`SHARDS`] shards, each a mutex around a map of name → rings.
//! Adding a record locks one shard for a few dozen nanoseconds; the clock and the counters are
//! atomics. A report copies one server's rows out under its shard's lock and formats them after.
//!
//! A server with nothing left in the day ([`ServerLoad::is_empty_at`]) is forgotten: by
//! [`Store::forget_empty`] (the server calls it every minute, the stdin face before each
//! report), before a snapshot is written, and when the registry is full and a new server posts
//! (at most once a minute), so stale names never hold `--max-servers` places.
//!
//! New servers per client address are capped per wall-clock minute (`--max-new-servers`; an IPv6
//! client counts by its /64): one client posting thousands of invented names cannot fill the
//! registry for everybody. The refusal is counted, answered 429, and reported on stderr once a
//! minute at most; records for servers already known are never held back by it.
//!
//! Snapshots are written shard by shard, so each server's state in a snapshot is consistent, but
//! records accepted while the snapshot is being written may or may not be in it (the next
//! snapshot has them). The file is replaced atomically: written to `FILE.tmp`, fsynced, renamed
//! over `FILE`, and the directory fsynced.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ring::{Bucket, Load, Refused, Rows, ServerLoad, HOUR, MINUTE};
use crate::error::{Error, Result};
use crate::runner::warn;
use crate::time::{self, BadTime, Horizon, MaxFuture, Micros, MICROS_PER_SEC};

/// Enough shards that two cores' worth of handlers seldom wait for each other.
pub const SHARDS: usize = 64;

/// Which clock "the last hour" is measured against. Under either, a record later than the wall
/// clock plus `--max-future` is refused and never moves the clock ([`Store::with_max_future`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The newest record's time: replays of old data report as they would have live.
    Records,
    /// The wall clock.
    Wall,
}

/// One record ready to store: the server's name, when, and the two loads.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub server: String,
    /// `None` means "now" by the store's clock.
    pub at: Option<Micros>,
    pub cpu: Load,
    pub ram: Load,
}

/// Why the store did not take a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    TooOld {
        at: Micros,
        now: Micros,
    },
    /// Later than the wall clock plus `--max-future`.
    TooNew {
        why: BadTime,
    },
    Full {
        max_servers: usize,
    },
    /// The client added its `per_minute` new servers this minute already.
    TooManyNew {
        client: IpAddr,
        per_minute: u32,
        retry_after_secs: u64,
    },
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::TooOld { at, now } => write!(
                f,
                "record time {} is outside the last 24 hours (the clock reads {}); not stored",
                time::Timestamp(*at),
                time::Timestamp(*now)
            ),
            Rejected::TooNew { why } => why.fmt(f),
            Rejected::Full { max_servers } => write!(
                f,
                "already tracking {max_servers} servers, the most --max-servers allows; \
                 a new server's record is not stored"
            ),
            Rejected::TooManyNew {
                client,
                per_minute,
                retry_after_secs,
            } => write!(
                f,
                "client {client} added {per_minute} new servers this minute, the most \
                 --max-new-servers allows; a new server's record is not stored (try again in \
                 {retry_after_secs} s; servers already known are not limited)"
            ),
        }
    }
}

/// Counts of what happened to the records offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub accepted: u64,
    pub too_old: u64,
    pub too_new: u64,
    pub over_capacity: u64,
    /// Records of new servers refused by the per-client cap.
    #[serde(default)]
    pub over_new_server_rate: u64,
    /// Servers forgotten because nothing of theirs was left in the day.
    #[serde(default)]
    pub forgotten: u64,
}

#[derive(Default)]
struct AtomicCounters {
    accepted: AtomicU64,
    too_old: AtomicU64,
    too_new: AtomicU64,
    over_capacity: AtomicU64,
    over_new_server_rate: AtomicU64,
    forgotten: AtomicU64,
}

/// The key a client's new servers are counted under: its address, or an IPv6 client's /64 (one
/// host usually holds a whole /64, so its addresses would be free otherwise).
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// New servers per client in the current wall-clock minute.
struct NewServers {
    per_minute: u32,
    minute: i64,
    counts: HashMap<IpAddr, u32>,
    /// The minute of the last refusal reported on stderr.
    reported: i64,
}

impl NewServers {
    /// Count one new server for `client` at wall time `now`, or say when it may add the next.
    fn admit(&mut self, client: IpAddr, now: Micros) -> std::result::Result<(), Rejected> {
        let minute = now.div_euclid(60 * MICROS_PER_SEC);
        if minute != self.minute {
            // Only this minute's counts matter: the map never outgrows one minute's clients.
            self.minute = minute;
            self.counts.clear();
        }
        let count = self.counts.entry(client_key(client)).or_insert(0);
        if *count < self.per_minute {
            *count += 1;
            return Ok(());
        }
        let next_minute = (minute + 1) * 60 * MICROS_PER_SEC;
        let refused = Rejected::TooManyNew {
            client,
            per_minute: self.per_minute,
            retry_after_secs: ((next_minute - now) as u64).div_ceil(MICROS_PER_SEC as u64),
        };
        if self.reported != minute {
            self.reported = minute;
            warn(format_args!(
                "{refused} (further refusals this minute are counted in /stats, not printed)"
            ));
        }
        Err(refused)
    }
}

/// Rings are boxed: a map grows to up to twice its entries, and empty slots should cost a
/// pointer, not 4 KiB of rings.
type Shard = Mutex<HashMap<Box<str>, Box<ServerLoad>>>;

pub struct Store {
    shards: Vec<Shard>,
    hasher: RandomState,
    clock: Clock,
    horizon: Horizon,
    /// The newest record time seen (the clock under [`Clock::Records`]).
    newest: AtomicI64,
    servers: AtomicUsize,
    max_servers: usize,
    counters: AtomicCounters,
    /// `None`: no per-client cap (the stdin face; a server's clients are capped).
    new_servers: Option<Mutex<NewServers>>,
    /// The clock's minute of the last sweep made because the registry was full.
    swept: AtomicI64,
}

impl Store {
    pub fn new(clock: Clock, max_servers: usize) -> Self {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            clock,
            horizon: Horizon::new(MaxFuture::DEFAULT),
            newest: AtomicI64::new(i64::MIN),
            servers: AtomicUsize::new(0),
            max_servers,
            counters: AtomicCounters::default(),
            new_servers: None,
            swept: AtomicI64::new(i64::MIN),
        }
    }

    /// Cap the new servers one client address may add in a wall-clock minute.
    pub fn with_new_server_limit(mut self, per_minute: u32) -> Self {
        self.new_servers = Some(Mutex::new(NewServers {
            per_minute,
            minute: i64::MIN,
            counts: HashMap::new(),
            reported: i64::MIN,
        }));
        self
    }

    /// Refuse records (and snapshot contents) later than the wall clock plus `max` (default
    /// [`MaxFuture::DEFAULT`]).
    pub fn with_max_future(mut self, max: MaxFuture) -> Self {
        self.horizon = Horizon::new(max);
        self
    }

    fn shard(&self, name: &str) -> &Shard {
        let h = self.hasher.hash_one(name);
        &self.shards[(h as usize) % SHARDS]
    }

    /// The time reports are relative to now.
    pub fn now(&self) -> Micros {
        match self.clock {
            Clock::Records => match self.newest.load(Ordering::Relaxed) {
                i64::MIN => time::now(),
                t => t,
            },
            Clock::Wall => time::now(),
        }
    }

    /// Store one record, or say why not (and count it either way).
    pub fn add(&self, record: &Record) -> std::result::Result<(), Rejected> {
        self.add_from(record, None)
    }

    /// Store one record sent by `client` (whose new servers count against its per-minute cap).
    pub fn add_from(
        &self,
        record: &Record,
        client: Option<IpAddr>,
    ) -> std::result::Result<(), Rejected> {
        let result = self.try_add(record, client);
        let c = &self.counters;
        let counter = match &result {
            Ok(()) => &c.accepted,
            Err(Rejected::TooOld { .. }) => &c.too_old,
            Err(Rejected::TooNew { .. }) => &c.too_new,
            Err(Rejected::Full { .. }) => &c.over_capacity,
            Err(Rejected::TooManyNew { .. }) => &c.over_new_server_rate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_add(
        &self,
        record: &Record,
        client: Option<IpAddr>,
    ) -> std::result::Result<(), Rejected> {
        // Before the time may move the clock.
        if let Some(at) = record.at {
            self.horizon
                .check(at)
                .map_err(|why| Rejected::TooNew { why })?;
        }
        let (at, now) = match self.clock {
            Clock::Records => {
                let at = record.at.unwrap_or_else(|| self.now());
                let before = self.newest.fetch_max(at, Ordering::Relaxed);
                (at, before.max(at))
            }
            Clock::Wall => {
                let now = time::now();
                let at = record.at.unwrap_or(now);
                self.newest.fetch_max(at, Ordering::Relaxed);
                (at, now)
            }
        };
        let too_old = Rejected::TooOld { at, now };
        let mut swept = false;
        loop {
            let mut shard = self
                .shard(&record.server)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(load) = shard.get_mut(record.server.as_str()) {
                return load
                    .add(at, record.cpu, record.ram, now)
                    .map_err(|_| too_old);
            }
            let mut load = Box::new(ServerLoad::new());
            load.add(at, record.cpu, record.ram, now)
                .map_err(|Refused::TooOld| too_old.clone())?;
            if self.servers.fetch_add(1, Ordering::Relaxed) >= self.max_servers {
                self.servers.fetch_sub(1, Ordering::Relaxed);
                // Full: stale servers may hold places. Sweep (at most once a minute of the
                // clock, and without this shard's lock, which the sweep takes) and try again.
                let minute = time::floor(now, 60 * MICROS_PER_SEC);
                if !swept && self.swept.swap(minute, Ordering::Relaxed) != minute {
                    swept = true;
                    drop(shard);
                    self.forget_empty();
                    continue;
                }
                return Err(Rejected::Full {
                    max_servers: self.max_servers,
                });
            }
            if let (Some(limit), Some(client)) = (&self.new_servers, client) {
                let admitted = limit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .admit(client, time::now());
                if let Err(refused) = admitted {
                    self.servers.fetch_sub(1, Ordering::Relaxed);
                    return Err(refused);
                }
            }
            shard.insert(record.server.as_str().into(), load);
            return Ok(());
        }
    }

    /// Forget every server with nothing left in the day at the store's clock; how many went.
    pub fn forget_empty(&self) -> usize {
        let now = self.now();
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, load| !load.is_empty_at(now));
            let gone = before - shard.len();
            if gone > 0 {
                self.servers.fetch_sub(gone, Ordering::Relaxed);
                forgotten += gone;
            }
        }
        self.counters
            .forgotten
            .fetch_add(forgotten as u64, Ordering::Relaxed);
        forgotten
    }

    /// One server's report rows at the store's clock, or `None` for an unknown server.
    pub fn rows(&self, server: &str) -> Option<(Rows, Micros)> {
        let now = self.now();
        let shard = self.shard(server).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(server).map(|load| (load.rows(now), now))
    }

    /// Every server's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shards
            .iter()
            .flat_map(|s| {
                let shard = s.lock().unwrap_or_else(|e| e.into_inner());
                shard.keys().map(|k| k.to_string()).collect::<Vec<_>>()
            })
            .collect();
        names.sort_unstable();
        names
    }

    pub fn server_count(&self) -> usize {
        self.servers.load(Ordering::Relaxed)
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            accepted: c.accepted.load(Ordering::Relaxed),
            too_old: c.too_old.load(Ordering::Relaxed),
            too_new: c.too_new.load(Ordering::Relaxed),
            over_capacity: c.over_capacity.load(Ordering::Relaxed),
            over_new_server_rate: c.over_new_server_rate.load(Ordering::Relaxed),
            forgotten: c.forgotten.load(Ordering::Relaxed),
        }
    }

    /// Write the state to `path` atomically ([`crate::durable::replace`]: temp file, fsync,
    /// rename, fsync of the directory). On failure the last good snapshot stays, and no
    /// temporary file is left behind.
    pub fn save(&self, path: &Path) -> Result<usize> {
        // Servers with nothing left in the day are not worth a line (nor a place after a restart).
        self.forget_empty();
        let tmp = path.with_file_name(format!(
            "{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "snapshot".into())
        ));
        crate::durable::replace(path, &tmp, |out| {
            let write_err =
                |e: std::io::Error| Error::io(format!("writing snapshot {}", tmp.display()), e);
            let newest = self.newest.load(Ordering::Relaxed);
            let header = SnapshotHeader {
                version: 1,
                newest: (newest != i64::MIN).then_some(newest),
                counters: self.counters(),
            };
            serde_json::to_writer(&mut *out, &header).map_err(|e| write_err(e.into()))?;
            out.write_all(b"\n").map_err(write_err)?;
            let mut count = 0;
            for shard in &self.shards {
                let servers: Vec<SnapshotServer> = {
                    let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                    shard
                        .iter()
                        .map(|(name, load)| SnapshotServer::new(name, load))
                        .collect()
                };
                for server in &servers {
                    serde_json::to_writer(&mut *out, server).map_err(|e| write_err(e.into()))?;
                    out.write_all(b"\n").map_err(write_err)?;
                }
                count += servers.len();
            }
            Ok(count)
        })
    }

    /// Load a snapshot written by [`Store::save`] into this (empty) store. A missing file is not
    /// an error (first start): `Ok(None)`. A damaged one is, so it is never silently overwritten.
    ///
    /// A snapshot is held to the records' rule: what it holds from after the wall clock plus
    /// `--max-future` (a record accepted before the rule existed, say one stamped 9999-12-31) is
    /// dropped with a warning, and the clock is taken from what remains. A snapshot *all* of
    /// whose data lies beyond is refused instead: then the wall clock is the likelier culprit,
    /// and the file is left alone (`--max-future off` takes it as it is).
    pub fn load(&self, path: &Path) -> Result<Option<usize>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading snapshot {}", path.display()), e)),
        };
        let bad = |line: usize, why: String| {
            Error::failed(format!(
                "snapshot {}: line {line}: {why} (move the file away to start empty)",
                path.display()
            ))
        };
        // One server per line, read a line at a time: a large snapshot is never held whole.
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(file));
        let mut next_line = |n: usize| -> Result<Option<String>> {
            lines
                .next()
                .transpose()
                .map_err(|e| Error::io(format!("reading snapshot {} line {n}", path.display()), e))
        };
        let first = next_line(1)?.unwrap_or_default();
        let header: SnapshotHeader =
            serde_json::from_str(&first).map_err(|e| bad(1, e.to_string()))?;
        if header.version != 1 {
            return Err(bad(1, format!("unknown version {}", header.version)));
        }
        let c = &self.counters;
        c.accepted
            .fetch_add(header.counters.accepted, Ordering::Relaxed);
        c.too_old
            .fetch_add(header.counters.too_old, Ordering::Relaxed);
        c.too_new
            .fetch_add(header.counters.too_new, Ordering::Relaxed);
        c.over_capacity
            .fetch_add(header.counters.over_capacity, Ordering::Relaxed);
        c.over_new_server_rate
            .fetch_add(header.counters.over_new_server_rate, Ordering::Relaxed);
        c.forgotten
            .fetch_add(header.counters.forgotten, Ordering::Relaxed);
        let latest = self.horizon.latest_now();
        let mut future = Future::default();
        let mut count = 0;
        let mut number = 1;
        while let Some(line) = next_line(number + 1)? {
            number += 1;
            let server: SnapshotServer =
                serde_json::from_str(&line).map_err(|e| bad(number, e.to_string()))?;
            if count >= self.max_servers {
                return Err(bad(
                    number,
                    format!("more servers than --max-servers {}", self.max_servers),
                ));
            }
            let Some(load) = server.load_until(latest, &mut future) else {
                continue;
            };
            let load = Box::new(load);
            let mut shard = self
                .shard(&server.name)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if shard.insert(server.name.into_boxed_str(), load).is_none() {
                count += 1;
            }
        }
        self.servers.store(count, Ordering::Relaxed);
        let newest = match header.newest {
            Some(t) if t > latest => {
                if count == 0 && future.records > 0 {
                    return Err(Error::failed(format!(
                        "snapshot {}: all of it is from after the wall clock plus --max-future \
                         ({} records, its clock reads {}, the wall clock {}): is the wall clock \
                         wrong? Fix it, or take the snapshot as it is with --max-future off",
                        path.display(),
                        future.records,
                        time::Timestamp(t),
                        time::Timestamp(time::now())
                    )));
                }
                future.newest_kept
            }
            t => t.or(future.newest_kept),
        };
        if let Some(t) = newest {
            self.newest.fetch_max(t, Ordering::Relaxed);
        }
        if future.records > 0 || header.newest > newest {
            crate::runner::warn(format_args!(
                "snapshot {}: dropped what it held from after {} (the wall clock plus \
                 --max-future): {} records, {} servers left empty; its clock read {}, now {}",
                path.display(),
                time::Timestamp(latest),
                future.records,
                future.servers,
                header
                    .newest
                    .map_or("nothing".into(), |t| time::Timestamp(t).to_string()),
                newest.map_or("the wall clock".into(), |t| time::Timestamp(t).to_string()),
            ));
        }
        // A snapshot from long ago may hold servers with nothing left in today's window.
        let forgotten = self.forget_empty();
        Ok(Some(count - forgotten))
    }
}

/// What loading a snapshot dropped for being later than the wall clock plus `--max-future`.
#[derive(Default)]
struct Future {
    records: u64,
    /// Servers that had nothing else.
    servers: u64,
    /// The newest time of the data kept (a minute's or hour's last µs).
    newest_kept: Option<Micros>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    version: u32,
    newest: Option<Micros>,
    counters: Counters,
}

/// One server in a snapshot: buckets as `[period, count, cpu_sum, ram_sum]`, sums in millionths.
#[derive(Serialize, Deserialize)]
struct SnapshotServer {
    name: String,
    minutes: Vec<(i64, u64, u128, u128)>,
    hours: Vec<(i64, u64, u128, u128)>,
}

impl SnapshotServer {
    fn new(name: &str, load: &ServerLoad) -> Self {
        let (m, h) = load.buckets();
        let row = |b: &Bucket| (b.period, b.count, b.cpu, b.ram);
        SnapshotServer {
            name: name.to_string(),
            minutes: m.iter().map(row).collect(),
            hours: h.iter().map(row).collect(),
        }
    }

    /// The rings without the buckets that start after `latest` (noted in `future`); `None`
    /// when that leaves nothing of a server that had data.
    fn load_until(&self, latest: Micros, future: &mut Future) -> Option<ServerLoad> {
        let bucket = |&(period, count, cpu, ram): &(i64, u64, u128, u128)| Bucket {
            period,
            count,
            cpu,
            ram,
        };
        let starts = |b: &Bucket, len: Micros| b.period.saturating_mul(len);
        let (m, m_late): (Vec<Bucket>, Vec<Bucket>) = self
            .minutes
            .iter()
            .map(bucket)
            .partition(|b| starts(b, MINUTE) <= latest);
        let (h, h_late): (Vec<Bucket>, Vec<Bucket>) = self
            .hours
            .iter()
            .map(bucket)
            .partition(|b| starts(b, HOUR) <= latest);
        // Each record is in one hour bucket and, if recent, one minute bucket.
        let count = |bs: &[Bucket]| bs.iter().map(|b| b.count).sum::<u64>();
        future.records += count(&m_late).max(count(&h_late));
        let end = |b: &Bucket, len: Micros| starts(b, len).saturating_add(len - 1).min(latest);
        let newest = m
            .iter()
            .map(|b| end(b, MINUTE))
            .max()
            .or_else(|| h.iter().map(|b| end(b, HOUR)).max());
        future.newest_kept = future.newest_kept.max(newest);
        if m.is_empty() && h.is_empty() && !(m_late.is_empty() && h_late.is_empty()) {
            future.servers += 1;
            return None;
        }
        Some(ServerLoad::from_buckets(&m, &h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(server: &str, at: &str, cpu: f64) -> Record {
        Record {
            server: server.into(),
            at: Some(time::parse_timestamp(at).unwrap()),
            cpu: Load::from_f64(cpu).unwrap(),
            ram: Load::from_f64(cpu * 5.0).unwrap(),
        }
    }

    /// Adds a record the test expects the store to take.
    fn accept(store: &Store, server: &str, at: &str, cpu: f64) {
        store.add(&record(server, at, cpu)).unwrap();
    }

    #[test]
    fn caps_servers_and_counts_refusals() {
        let store = Store::new(Clock::Records, 2);
        accept(&store, "a", "2016-04-10T16:00:00Z", 1.0);
        accept(&store, "b", "2016-04-10T16:00:00Z", 1.0);
        assert_eq!(
            store.add(&record("c", "2016-04-10T16:00:00Z", 1.0)),
            Err(Rejected::Full { max_servers: 2 })
        );
        accept(&store, "a", "2016-04-10T16:01:00Z", 3.0);
        assert!(matches!(
            store.add(&record("b", "2016-04-09T16:00:00Z", 1.0)),
            Err(Rejected::TooOld { .. })
        ));
        assert_eq!(store.names(), vec!["a", "b"]);
        assert_eq!(
            store.counters(),
            Counters {
                accepted: 3,
                too_old: 1,
                too_new: 0,
                over_capacity: 1,
                ..Counters::default()
            }
        );
        let (rows, now) = store.rows("a").unwrap();
        assert_eq!(now, time::parse_timestamp("2016-04-10T16:01:00Z").unwrap());
        assert_eq!(rows.hours.len(), 1);
        assert_eq!(rows.hours[0].1, 2.0);
        assert!(store.rows("c").is_none());
    }

    #[test]
    fn servers_with_nothing_left_in_the_day_are_forgotten_and_free_their_place() {
        let store = Store::new(Clock::Records, 2);
        accept(&store, "old", "2016-04-10T10:00:00Z", 1.0);
        accept(&store, "kept", "2016-04-11T09:30:00Z", 1.0);
        assert_eq!(
            store.forget_empty(),
            0,
            "10:00 is still in the day at 09:30"
        );
        // The clock moves past old's hour; the registry is full, so the new server's record
        // sweeps and takes old's place.
        accept(&store, "new", "2016-04-11T10:00:00Z", 1.0);
        assert_eq!(store.names(), vec!["kept", "new"]);
        assert_eq!(store.server_count(), 2);
        assert_eq!(store.counters().forgotten, 1);
        // Full again, and nothing stale: refused. A sweep once a minute, not on every record.
        assert!(matches!(
            store.add(&record("more", "2016-04-11T10:00:01Z", 1.0)),
            Err(Rejected::Full { .. })
        ));
    }

    #[test]
    fn one_client_adds_at_most_its_share_of_new_servers_a_minute() {
        let store = Store::new(Clock::Records, 1000).with_new_server_limit(3);
        let mallory: IpAddr = "10.0.0.1".parse().unwrap();
        let alice: IpAddr = "10.0.0.2".parse().unwrap();
        let add = |name: &str, client| {
            store.add_from(&record(name, "2016-04-10T16:00:00Z", 1.0), Some(client))
        };
        for i in 0..3 {
            add(&format!("m{i}"), mallory).unwrap();
        }
        let refused = add("m3", mallory).unwrap_err();
        assert!(
            matches!(
                refused,
                Rejected::TooManyNew {
                    per_minute: 3,
                    retry_after_secs: 1..=60,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("--max-new-servers"));
        // Its known servers are not limited, and other clients are not held back.
        add("m0", mallory).unwrap();
        add("a0", alice).unwrap();
        // Records without a client (the stdin face) are not limited either.
        accept(&store, "s0", "2016-04-10T16:00:00Z", 1.0);
        assert_eq!(store.counters().over_new_server_rate, 1);
        assert_eq!(store.server_count(), 5);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_wall_clock_refuses_the_future() {
        let store = Store::new(Clock::Wall, 10).with_max_future(MaxFuture::Within(time::Duration(
            std::time::Duration::from_secs(60),
        )));
        let mut r = record("a", "2016-04-10T16:00:00Z", 1.0);
        r.at = Some(time::now() + 3_600_000_000);
        assert!(matches!(store.add(&r), Err(Rejected::TooNew { .. })));
        r.at = None;
        store.add(&r).unwrap();
        assert_eq!(store.rows("a").unwrap().0.minutes.len(), 1);
    }

    #[test]
    fn snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        let store = Store::new(Clock::Records, 100);
        for i in 0..50 {
            let at = format!("2016-04-10T{:02}:{:02}:00Z", 10 + i / 10, i);
            accept(&store, &format!("s{}", i % 7), &at, i as f64 / 3.0);
        }
        assert_eq!(store.save(&path).unwrap(), 7);
        let back = Store::new(Clock::Records, 100);
        assert_eq!(back.load(&path).unwrap(), Some(7));
        assert_eq!(back.names(), store.names());
        assert_eq!(back.now(), store.now());
        assert_eq!(back.counters(), store.counters());
        for name in store.names() {
            assert_eq!(back.rows(&name), store.rows(&name));
        }
        assert!(!path.with_file_name("state.jsonl.tmp").exists());
        std::fs::write(&path, "{\"version\":1}\nnot json\n").unwrap();
        let err = Store::new(Clock::Records, 100).load(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(
            Store::new(Clock::Records, 1)
                .load(&dir.path().join("none"))
                .unwrap(),
            None
        );
    }
}
