//! The shared state: every server's rings, sharded so that concurrent posters for different
//! servers rarely meet on a lock, plus the clock, the server cap, the counters and snapshots.
//!
//! A server name hashes to one of [`SHARDS`] shards, each a mutex around a map of name → rings.
//! Adding a record locks one shard for a few dozen nanoseconds; the clock and the counters are
//! atomics. A report copies one server's rows out under its shard's lock and formats them after.
//!
//! Snapshots are written shard by shard, so each server's state in a snapshot is consistent, but
//! records accepted while the snapshot is being written may or may not be in it (the next
//! snapshot has them). The file is replaced atomically: written to `FILE.tmp`, fsynced, renamed
//! over `FILE`, and the directory fsynced.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ring::{Bucket, Load, Refused, Rows, ServerLoad, HOUR, MINUTE};
use crate::error::{Error, Result};
use crate::time::{self, BadTime, Horizon, MaxFuture, Micros};

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
}

#[derive(Default)]
struct AtomicCounters {
    accepted: AtomicU64,
    too_old: AtomicU64,
    too_new: AtomicU64,
    over_capacity: AtomicU64,
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
        }
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
        let result = self.try_add(record);
        let c = &self.counters;
        let counter = match &result {
            Ok(()) => &c.accepted,
            Err(Rejected::TooOld { .. }) => &c.too_old,
            Err(Rejected::TooNew { .. }) => &c.too_new,
            Err(Rejected::Full { .. }) => &c.over_capacity,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_add(&self, record: &Record) -> std::result::Result<(), Rejected> {
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
            .map_err(|Refused::TooOld| too_old)?;
        if self.servers.fetch_add(1, Ordering::Relaxed) >= self.max_servers {
            self.servers.fetch_sub(1, Ordering::Relaxed);
            return Err(Rejected::Full {
                max_servers: self.max_servers,
            });
        }
        shard.insert(record.server.as_str().into(), load);
        Ok(())
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
        }
    }

    /// Write the state to `path` atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<usize> {
        let tmp = path.with_file_name(format!(
            "{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "snapshot".into())
        ));
        let context = |what: &str| format!("{what} snapshot {}", tmp.display());
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(context("creating"), e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let newest = self.newest.load(Ordering::Relaxed);
        let header = SnapshotHeader {
            version: 1,
            newest: (newest != i64::MIN).then_some(newest),
            counters: self.counters(),
        };
        let write_err = |e: std::io::Error| Error::io(context("writing"), e);
        serde_json::to_writer(&mut out, &header).map_err(|e| write_err(e.into()))?;
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
                serde_json::to_writer(&mut out, server).map_err(|e| write_err(e.into()))?;
                out.write_all(b"\n").map_err(write_err)?;
            }
            count += servers.len();
        }
        let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(count)
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
        Ok(Some(count))
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

    #[test]
    fn caps_servers_and_counts_refusals() {
        let store = Store::new(Clock::Records, 2);
        store
            .add(&record("a", "2016-04-10T16:00:00Z", 1.0))
            .unwrap();
        store
            .add(&record("b", "2016-04-10T16:00:00Z", 1.0))
            .unwrap();
        assert_eq!(
            store.add(&record("c", "2016-04-10T16:00:00Z", 1.0)),
            Err(Rejected::Full { max_servers: 2 })
        );
        store
            .add(&record("a", "2016-04-10T16:01:00Z", 3.0))
            .unwrap();
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
                over_capacity: 1
            }
        );
        let (rows, now) = store.rows("a").unwrap();
        assert_eq!(now, time::parse_timestamp("2016-04-10T16:01:00Z").unwrap());
        assert_eq!(rows.hours.len(), 1);
        assert_eq!(rows.hours[0].1, 2.0);
        assert!(store.rows("c").is_none());
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
            store
                .add(&record(&format!("s{}", i % 7), &at, i as f64 / 3.0))
                .unwrap();
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
