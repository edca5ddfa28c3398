//! window-agg on Memcached: many writers, one summary, no lost counts (seed `002_…`, part C).
//!
//! Each process pre-aggregates locally in its [`Window`] and, at every bucket boundary, adds the
//! counts it gathered since the last boundary to per-bucket counters in Memcached; then it
//! recomputes the per-type summaries from the live buckets and stores each under the type's key
//! with check-and-set. Memcached traffic is O(keys) per bucket, never per event.
//!
//! Keys (`P` is `--key-prefix`, default `pipeworks:`; `L` the bucket length in µs, `K` a bucket
//! number, so buckets of different lengths never mix; type names and tracking ids are
//! percent-escaped to printable ASCII without `:`, `%` or `~`):
//!
//! | key | value | written with |
//! |---|---|---|
//! | `P~c:L:K:TYPE:ID` | the count of (TYPE, ID) in bucket K, decimal | `add "0"` then `incr` |
//! | `P~n:L:K` | the (TYPE, ID) pairs of bucket K, one `TYPE:ID` line each | `add ""` then `append` |
//! | `P~types` | every type name ever seen, one per line | `add ""` then `append` |
//! | `PTYPE` (e.g. `pipeworks:signup`) | the type's summary JSON, as the seed asks | `gets` + `cas` |
//!
//! Bucket keys expire a little after the window has passed them (window + 2 buckets + 60 s).
//!
//! Why nothing is lost: counts only ever move through `incr`, which Memcached applies atomically,
//! and creating a key uses `add`, which never overwrites. A process publishes a summary by reading
//! the summary key with its CAS id, *then* reading the counters, then storing with `cas`; if any
//! other process stored in between, the `cas` fails and it starts over. So the summary that stands
//! last was computed from counter reads made after every earlier store — it includes every count
//! any process had added before its own last store. A process whose clock is behind adopts the newer
//! window of a stored summary, so summaries never move back in time.
//!
//! Failures: Memcached unreachable at start is an error (exit 1). Later, a failed request puts the
//! undelivered counts back into the local window; the process retries with exponential backoff
//! (0.1 s to 5 s), writes no summary line meanwhile, and reports the outage and its extent when
//! Memcached answers again. A restarted Memcached has lost the buckets written before it went
//! down, so summaries are whole again once the window has moved past the gap (reported). A value
//! under a summary key that is not a window-agg summary is reported and replaced, never trusted.
//! At the end of input, undelivered counts are retried for up to 10 s, then the run fails (exit 1).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::window::{Summary, TypeCounts, Window};
use super::Config;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;
use crate::time::{self, Micros, Timestamp, MICROS_PER_SEC};

/// Marks a summary value as written by window-agg.
const WRITER: &str = "pipeworks window-agg";
/// Keys per multi-get request.
const GET_CHUNK: usize = 200;
const MAX_PUBLISH_ROUNDS: usize = 50;

/// A summary as stored under a type's key: the seed's two fields plus the window it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    window_start: Timestamp,
    window_end: Timestamp,
    #[serde(rename = "totalEventsCaptured")]
    total: u64,
    #[serde(rename = "eventsCapturedByTrackingIds")]
    by_tracking_id: BTreeMap<String, u64>,
    writer: String,
}

impl Stored {
    fn parse(bytes: &[u8]) -> Option<Stored> {
        serde_json::from_slice::<Stored>(bytes)
            .ok()
            .filter(|s| s.writer == WRITER)
    }
}

/// A stable key hash (FNV-1a), so every process on every host, whatever its build, sends a key
/// to the same server of the list.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn mc_error(servers: &str, e: memcache::MemcacheError) -> Error {
    Error::failed(format!("memcached {servers}: {e}"))
}

/// A connection to the Memcached servers, counting requests.
struct Link {
    servers: String,
    client: memcache::Client,
    requests: u64,
}

impl Link {
    fn connect(servers: &str, timeout: Duration) -> Result<Link> {
        let mut pools = Vec::new();
        for server in servers.split(',').map(str::trim) {
            if server
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(Error::usage(format!(
                    "bad Memcached address {server:?} (expected HOST:PORT[,HOST:PORT…])"
                )));
            }
            let url =
                memcache::Url::parse(&format!("memcache://{server}?protocol=ascii&timeout=2"))
                    .map_err(|e| Error::usage(format!("bad Memcached address {server:?}: {e}")))?;
            // No liveness probe per request (it would double the traffic): a broken connection
            // surfaces as an error, and the whole link is rebuilt on the next attempt.
            let pool = r2d2::Pool::builder()
                .max_size(1)
                .test_on_check_out(false)
                .connection_timeout(timeout)
                .build(memcache::ConnectionManager::new(url))
                .map_err(|e| Error::failed(format!("memcached {server}: cannot connect: {e}")))?;
            pools.push(pool);
        }
        let mut client = memcache::Client::with_pools(pools).map_err(|e| mc_error(servers, e))?;
        client.hash_function = fnv1a;
        let link = Link {
            servers: servers.to_string(),
            client,
            requests: 0,
        };
        link.client
            .version()
            .map_err(|e| Error::failed(format!("memcached {servers}: cannot connect: {e}")))?;
        Ok(link)
    }

    fn err(&self, e: memcache::MemcacheError) -> Error {
        mc_error(&self.servers, e)
    }

    /// `add` then `append`: both atomic, neither overwrites, so concurrent writers only add lines.
    fn append_line(&mut self, key: &str, line: &str, expiry: u32) -> Result<()> {
        self.requests += 2;
        self.client.add(key, "", expiry).map_err(|e| self.err(e))?;
        self.client.append(key, line).map_err(|e| self.err(e))
    }

    /// Add `by` to a counter, creating it at 0 first if needed. Returns false when the counter was
    /// missing although we had created it before (Memcached lost it).
    fn add_to_counter(&mut self, key: &str, by: u64, expiry: u32, created: bool) -> Result<bool> {
        if !created {
            self.requests += 1;
            self.client.add(key, "0", expiry).map_err(|e| self.err(e))?;
        }
        self.requests += 1;
        match self.client.increment(key, by) {
            Ok(_) => Ok(true),
            Err(memcache::MemcacheError::CommandError(memcache::CommandError::KeyNotFound)) => {
                self.requests += 2;
                self.client.add(key, "0", expiry).map_err(|e| self.err(e))?;
                self.client.increment(key, by).map_err(|e| self.err(e))?;
                Ok(!created)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Values (with CAS ids) of `keys` that exist.
    fn get_many(&mut self, keys: &[String]) -> Result<BTreeMap<String, (Vec<u8>, u64)>> {
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(GET_CHUNK) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            self.requests += 1;
            let got: std::collections::HashMap<String, (Vec<u8>, u32, Option<u64>)> =
                self.client.gets(&refs).map_err(|e| self.err(e))?;
            for (k, (v, _, cas)) in got {
                out.insert(k, (v, cas.unwrap_or(0)));
            }
        }
        Ok(out)
    }
}

/// Percent-escape a name for a key segment: printable ASCII except `%`, `:` and `~` stays.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if (0x21..0x7f).contains(&b) && !matches!(b, b'%' | b':' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The key layout of one prefix and bucket length.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    bucket: i64,
}

impl Keys {
    fn counter(&self, bucket: i64, kind: &str, tid: &str) -> String {
        format!("{}~c:{}:{bucket}:{kind}:{tid}", self.prefix, self.bucket)
    }
    fn index(&self, bucket: i64) -> String {
        format!("{}~n:{}:{bucket}", self.prefix, self.bucket)
    }
    fn types(&self) -> String {
        format!("{}~types", self.prefix)
    }
    fn summary(&self, kind: &str) -> String {
        format!("{}{}", self.prefix, escape(kind))
    }
}

/// The Memcached side of one window-agg process.
pub struct Shared {
    servers: String,
    link: Option<Link>,
    keys: Keys,
    buckets: usize,
    expiry: u32,
    /// (bucket, pair) whose index line and counter this process has created.
    created: HashSet<(i64, u32)>,
    types_announced: HashSet<String>,
    /// Since when Memcached has been failing, and when to try again.
    down_since: Option<Micros>,
    retry_at: Micros,
    backoff: Micros,
    warned_foreign: HashSet<String>,
    requests_before: u64,
}

impl Shared {
    /// Connect (failing clearly when no server answers) and register the configured types.
    pub fn connect(servers: &str, config: &Config) -> Result<Self> {
        let link = Link::connect(servers, Duration::from_secs(2))?;
        let bucket = config.bucket.micros();
        let buckets = config.buckets()?;
        let secs = |us: i64| (us + MICROS_PER_SEC - 1) / MICROS_PER_SEC;
        let window_secs = secs(bucket * buckets as i64);
        let expiry = window_secs + 2 * secs(bucket) + 60;
        let mut shared = Shared {
            servers: servers.to_string(),
            link: Some(link),
            keys: Keys {
                prefix: config.key_prefix.clone(),
                bucket,
            },
            buckets,
            expiry: expiry.min(30 * 86_400) as u32,
            created: HashSet::new(),
            types_announced: HashSet::new(),
            down_since: None,
            retry_at: 0,
            backoff: 100_000,
            warned_foreign: HashSet::new(),
            requests_before: 0,
        };
        let types: BTreeSet<&String> = config.type_names.values().collect();
        for kind in types {
            shared.announce_type(kind)?;
        }
        Ok(shared)
    }

    fn link(&mut self) -> Result<&mut Link> {
        if self.link.is_none() {
            // A short timeout: while Memcached is down this runs at every retry, on the main loop.
            self.link = Some(Link::connect(&self.servers, Duration::from_millis(500))?);
        }
        Ok(self.link.as_mut().expect("just connected"))
    }

    fn announce_type(&mut self, kind: &str) -> Result<()> {
        if self.types_announced.contains(kind) {
            return Ok(());
        }
        let key = self.keys.types();
        let line = format!("{}\n", escape(kind));
        self.link()?.append_line(&key, &line, 0)?;
        self.types_announced.insert(kind.to_string());
        Ok(())
    }

    /// Requests sent so far (including those of links dropped after a failure).
    pub fn requests(&self) -> u64 {
        self.requests_before + self.link.as_ref().map_or(0, |l| l.requests)
    }

    /// At a boundary: hand the window's new counts to Memcached and publish the shared summary
    /// for the window ending at `closed.window_end` (or later, if another process is ahead).
    /// Returns the shared summary, or `None` while Memcached is failing (counts are kept).
    pub fn sync(&mut self, window: &mut Window, closed: &Summary) -> Option<Summary> {
        let now = time::now();
        if self.down_since.is_some() && now < self.retry_at {
            return None;
        }
        match self.try_sync(window, closed.window_end.0) {
            Ok(summary) => {
                if let Some(since) = self.down_since.take() {
                    let whole_from = now + (window.bucket_len() * window.buckets() as i64);
                    warn(format_args!(
                        "memcached {} answers again after failing since {}; if it restarted, counts \
                         written before then are lost and summaries are whole again from about {}",
                        self.servers,
                        Timestamp(since),
                        Timestamp(whole_from)
                    ));
                    self.backoff = 100_000;
                }
                Some(summary)
            }
            Err(e) => {
                if self.down_since.is_none() {
                    warn(format_args!(
                        "{e}; keeping the counts locally and retrying with backoff"
                    ));
                    self.down_since = Some(now);
                }
                if let Some(link) = self.link.take() {
                    self.requests_before += link.requests;
                }
                self.retry_at = now + self.backoff;
                self.backoff = (self.backoff * 2).min(5 * MICROS_PER_SEC);
                None
            }
        }
    }

    /// At the end of input: deliver what is left and publish the final summary, retrying for up
    /// to 10 s while Memcached fails.
    pub fn finish(&mut self, window: &mut Window, end: Micros) -> Result<Summary> {
        let deadline = time::now() + 10 * MICROS_PER_SEC;
        loop {
            match self.try_sync(window, end) {
                Ok(summary) => return Ok(summary),
                Err(e) if time::now() >= deadline => {
                    return Err(Error::failed(format!(
                        "{e}; gave up delivering the last counts to Memcached"
                    )))
                }
                Err(_) => {
                    if let Some(link) = self.link.take() {
                        self.requests_before += link.requests;
                    }
                    std::thread::sleep(Duration::from_micros(self.backoff as u64));
                    self.backoff = (self.backoff * 2).min(MICROS_PER_SEC);
                }
            }
        }
    }

    fn try_sync(&mut self, window: &mut Window, end: Micros) -> Result<Summary> {
        self.push(window)?;
        self.publish(window, end)
    }

    /// Add the counts gathered since the last push to the bucket counters.
    fn push(&mut self, window: &mut Window) -> Result<()> {
        let changes = window.drain_changes();
        let mut pending = changes.into_iter();
        while let Some(change) = pending.next() {
            if let Err(e) = self.push_one(window, change.bucket, change.pair, change.count) {
                let mut rest = vec![change];
                rest.extend(pending);
                window.restore_changes(rest);
                return Err(e);
            }
        }
        // Forget creations of buckets that have left the window.
        if let Some(s) = window.current() {
            let oldest = s.window_start.0.div_euclid(window.bucket_len());
            self.created.retain(|(b, _)| *b >= oldest);
        }
        Ok(())
    }

    fn push_one(&mut self, window: &Window, bucket: i64, pair: u32, count: u64) -> Result<()> {
        let (kind, tid) = window.pair_names(pair);
        let (kind_esc, tid_esc) = (escape(kind), escape(tid));
        let counter = self.keys.counter(bucket, &kind_esc, &tid_esc);
        if counter.len() > 250 {
            warn(format_args!(
                "type {kind:?} with tracking id {tid:?} makes a Memcached key over 250 bytes: its {count} counts are not shared"
            ));
            return Ok(());
        }
        self.announce_type(kind)?;
        let created = self.created.contains(&(bucket, pair));
        let expiry = self.expiry;
        if !created {
            let index = self.keys.index(bucket);
            let line = format!("{kind_esc}:{tid_esc}\n");
            self.link()?.append_line(&index, &line, expiry)?;
        }
        let intact = self
            .link()?
            .add_to_counter(&counter, count, expiry, created)?;
        if !intact {
            warn(format_args!(
                "memcached lost the counter {counter} (restarted or evicted): bucket counts written before are gone"
            ));
            let index = self.keys.index(bucket);
            let line = format!("{kind_esc}:{tid_esc}\n");
            self.link()?.append_line(&index, &line, expiry)?;
        }
        self.created.insert((bucket, pair));
        Ok(())
    }

    /// Recompute the summaries of the window ending at `end` (or at a newer stored window) from
    /// the bucket counters and store each type's with CAS, starting over on conflict.
    fn publish(&mut self, window: &Window, end: Micros) -> Result<Summary> {
        self.publish_with(window, end, || {})
    }

    /// [`Shared::publish`], calling `between` after the counters are read and before the store
    /// (tests use it to let another writer in at the worst moment).
    fn publish_with(
        &mut self,
        window: &Window,
        end: Micros,
        mut between: impl FnMut(),
    ) -> Result<Summary> {
        let mut end = end;
        for _ in 0..MAX_PUBLISH_ROUNDS {
            let types = self.known_types(window)?;
            let summary_keys: Vec<String> = types.iter().map(|t| self.keys.summary(t)).collect();
            let stored = self.link()?.get_many(&summary_keys)?;
            for (key, (value, _)) in &stored {
                match Stored::parse(value) {
                    Some(s) => end = end.max(s.window_end.0),
                    None => {
                        if self.warned_foreign.insert(key.clone()) {
                            warn(format_args!(
                                "memcached key {key} holds a value that is not a window-agg summary; not trusted, replacing it"
                            ));
                        }
                    }
                }
            }
            let summary = self.read_window(&types, end)?;
            between();
            let mut conflict = false;
            for (kind, key) in types.iter().zip(&summary_keys) {
                let counts = summary.types.get(kind).cloned().unwrap_or_default();
                let value = serde_json::to_vec(&Stored {
                    window_start: summary.window_start,
                    window_end: summary.window_end,
                    total: counts.total_events_captured,
                    by_tracking_id: counts.events_captured_by_tracking_ids,
                    writer: WRITER.to_string(),
                })
                .expect("serializing a summary");
                let link = self.link()?;
                link.requests += 1;
                match stored.get(key) {
                    Some((_, cas)) => {
                        if !link
                            .client
                            .cas(key, &value[..], 0, *cas)
                            .map_err(|e| link.err(e))?
                        {
                            conflict = true;
                        }
                    }
                    None => {
                        // `add` never overwrites; whether it won or not, one more round stores
                        // the summary with CAS.
                        link.client
                            .add(key, &value[..], 0)
                            .map_err(|e| link.err(e))?;
                        conflict = true;
                    }
                }
            }
            if !conflict {
                return Ok(summary);
            }
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..2000)));
        }
        Err(Error::failed(format!(
            "memcached {}: could not store the summaries after {MAX_PUBLISH_ROUNDS} conflicting rounds",
            self.servers
        )))
    }

    /// Every type name: the registry's (all processes') and our own.
    fn known_types(&mut self, window: &Window) -> Result<Vec<String>> {
        let key = self.keys.types();
        let got = self.link()?.get_many(std::slice::from_ref(&key))?;
        let mut types: BTreeSet<String> = window.type_names().map(str::to_string).collect();
        if let Some((value, _)) = got.get(&key) {
            for line in String::from_utf8_lossy(value).lines() {
                if let Some(name) = unescape(line) {
                    types.insert(name);
                }
            }
        }
        Ok(types.into_iter().collect())
    }

    /// Sum the bucket counters of the window ending at `end`.
    fn read_window(&mut self, types: &[String], end: Micros) -> Result<Summary> {
        let len = self.keys.bucket;
        let last = end.div_euclid(len) - 1;
        let first = last - self.buckets as i64 + 1;
        let index_keys: Vec<String> = (first..=last).map(|b| self.keys.index(b)).collect();
        let indexes = self.link()?.get_many(&index_keys)?;
        let mut counters = Vec::new();
        let mut seen = HashSet::new();
        for bucket in first..=last {
            let Some((value, _)) = indexes.get(&self.keys.index(bucket)) else {
                continue;
            };
            for line in String::from_utf8_lossy(value).lines() {
                if seen.insert((bucket, line.to_string())) {
                    if let Some((kind, tid)) = line.split_once(':') {
                        counters.push((
                            self.keys.counter(bucket, kind, tid),
                            kind.to_string(),
                            tid.to_string(),
                        ));
                    }
                }
            }
        }
        let keys: Vec<String> = counters.iter().map(|(k, _, _)| k.clone()).collect();
        let values = self.link()?.get_many(&keys)?;
        let mut out: BTreeMap<String, TypeCounts> = types
            .iter()
            .map(|t| (t.clone(), TypeCounts::default()))
            .collect();
        for (key, kind, tid) in &counters {
            let Some((value, _)) = values.get(key) else {
                continue;
            };
            let count = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            let (Some(count), Some(kind), Some(tid)) = (count, unescape(kind), unescape(tid))
            else {
                if self.warned_foreign.insert(key.clone()) {
                    warn(format_args!(
                        "memcached key {key} does not hold a count; not trusted"
                    ));
                }
                continue;
            };
            if count == 0 {
                continue;
            }
            let entry = out.entry(kind).or_default();
            entry.total_events_captured += count;
            *entry
                .events_captured_by_tracking_ids
                .entry(tid)
                .or_default() += count;
        }
        Ok(Summary {
            window_start: Timestamp((first) * len),
            window_end: Timestamp((last + 1) * len),
            types: out,
        })
    }
}

/// `window-agg --read`: print the summary stored in Memcached as one line.
pub fn read(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    let servers = config
        .memcached
        .as_deref()
        .expect("resolve checked --read has servers");
    let mut link = Link::connect(servers, Duration::from_secs(2))?;
    let keys = Keys {
        prefix: config.key_prefix.clone(),
        bucket: config.bucket.micros(),
    };
    let got = link.get_many(&[keys.types()])?;
    let mut types: BTreeSet<String> = config.type_names.values().cloned().collect();
    if let Some((value, _)) = got.get(&keys.types()) {
        types.extend(String::from_utf8_lossy(value).lines().filter_map(unescape));
    }
    let types: Vec<String> = types.into_iter().collect();
    let summary_keys: Vec<String> = types.iter().map(|t| keys.summary(t)).collect();
    let stored = link.get_many(&summary_keys)?;
    let mut summaries = BTreeMap::new();
    let mut untrusted = 0;
    for (kind, key) in types.iter().zip(&summary_keys) {
        let Some((value, _)) = stored.get(key) else {
            continue;
        };
        match Stored::parse(value) {
            Some(s) => {
                summaries.insert(kind.clone(), s);
            }
            None => {
                warn(format_args!(
                    "memcached key {key} holds a value that is not a window-agg summary; not trusted"
                ));
                untrusted += 1;
            }
        }
    }
    let Some(newest) = summaries.values().max_by_key(|s| s.window_end).cloned() else {
        return Err(Error::failed(format!(
            "memcached {servers}: no window-agg summary under prefix {:?} yet",
            config.key_prefix
        )));
    };
    let mut summary = Summary {
        window_start: newest.window_start,
        window_end: newest.window_end,
        types: BTreeMap::new(),
    };
    for (kind, s) in summaries {
        if s.window_end != newest.window_end {
            warn(format_args!(
                "the {kind} summary covers an older window ({} to {}) than the others",
                s.window_start, s.window_end
            ));
        }
        summary.types.insert(
            kind,
            TypeCounts {
                total_events_captured: s.total,
                events_captured_by_tracking_ids: s.by_tracking_id,
            },
        );
    }
    out.emit(&summary)?;
    out.flush()?;
    if untrusted > 0 {
        return Err(Error::Reported(1));
    }
    Ok(())
}

/// The integration tests' harness (real servers on free ports, killed when a test ends), shared
/// with this file's unit tests. A `#[path]` on a nested module would resolve from a directory
/// that does not exist, hence here.
#[cfg(test)]
#[path = "../../tests/common/mod.rs"]
mod test_harness;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn escaping_round_trips_and_keeps_keys_clean(name in ".{0,40}") {
            let e = escape(&name);
            prop_assert!(e.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b':' && b != b'~'));
            prop_assert_eq!(unescape(&e), Some(name));
        }
    }

    #[test]
    fn only_our_summaries_are_trusted() {
        assert!(Stored::parse(b"hello").is_none());
        assert!(Stored::parse(br#"{"totalEventsCaptured":5}"#).is_none());
        let ours = br#"{"window_start":"2020-01-01T00:00:00Z","window_end":"2020-01-01T00:05:00Z","totalEventsCaptured":1,"eventsCapturedByTrackingIds":{"a":1},"writer":"pipeworks window-agg"}"#;
        assert_eq!(Stored::parse(ours).unwrap().total, 1);
    }

    /// The worst interleaving, forced: writer A reads the counters, then writer B adds its counts
    /// and publishes, then A stores. A's `cas` must fail and A must start over, so the summary
    /// that stands includes B's counts. (A plain `set` here would leave A's stale summary.)
    #[test]
    fn a_summary_computed_before_another_writers_counts_never_stands() {
        let server = super::test_harness::Daemon::memcached();
        let addr = server.addr.to_string();
        let config = Config {
            minutes: 1,
            bucket: time::Duration(Duration::from_secs(1)),
            clock: super::super::Clock::Event,
            max_future: time::MaxFuture::DEFAULT,
            type_names: crate::event_config::default_type_names(),
            fields: Default::default(),
            memcached: Some(addr.clone()),
            key_prefix: "t:".into(),
            read: false,
            input: Default::default(),
        };
        let window = || Window::new(1_000_000, 60, config.type_names.clone()).track_changes();
        let t = 1_575_784_800_000_000;
        let (mut wa, mut wb) = (window(), window());
        let add = |w: &mut Window, n: usize| {
            w.advance_to(t);
            for _ in 0..n {
                w.add(t, "click", "INF-x").unwrap();
            }
        };
        let end = t + 1_000_000;
        let mut a = Shared::connect(&addr, &config).unwrap();
        let mut b = Shared::connect(&addr, &config).unwrap();
        // A first summary exists, so the next store is a `cas` against it.
        add(&mut wa, 1);
        a.push(&mut wa).unwrap();
        assert_eq!(
            a.publish(&wa, end).unwrap().types["user-event"].total_events_captured,
            1
        );
        add(&mut wa, 3);
        add(&mut wb, 2);
        a.push(&mut wa).unwrap();
        let mut b_went = false;
        let summary = a
            .publish_with(&wa, end, || {
                if !b_went {
                    b_went = true;
                    b.push(&mut wb).unwrap();
                    b.publish(&wb, end).unwrap();
                }
            })
            .unwrap();
        assert!(b_went);
        assert_eq!(summary.types["user-event"].total_events_captured, 6);
        let stored: Option<String> = a.link().unwrap().client.get("t:user-event").unwrap();
        let stored = Stored::parse(stored.unwrap().as_bytes()).unwrap();
        assert_eq!(stored.total, 6);
    }

    #[test]
    fn the_key_hash_is_stable() {
        // FNV-1a test vectors: the same on every build and host.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
