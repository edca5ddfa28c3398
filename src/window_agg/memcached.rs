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
//! | `P~types` | the registry: the types of the shared window, one per line | `add ""` then `append`; pruned with `gets` + `cas` |
//! | `PTYPE` (e.g. `pipeworks:signup`) | the type's summary JSON, as the seed asks | `gets` + `cas` |
//!
//! Bucket keys expire a little after the window has passed them (window + 2 buckets + 60 s).
//!
//! Every key is checked before it is used: at most 250 bytes, printable ASCII without spaces (the
//! escaping makes any name printable; the length is what a name can break). A bad
//! `--key-prefix` is a usage error. A (type, tracking id) whose counter or summary key cannot be
//! built, whose type finds the registry full, or whose bucket index Memcached refuses to grow
//! (an item is 1 MB at most) is counted in the local window only: reported (the first ten one
//! by one), counted, and the run exits 1 at the end. It never holds up another key: only a
//! failure of the connection is retried as an outage.
//!
//! The registry stays within one item: after each publish it is rewritten (with CAS, skipped if
//! another writer changed it meanwhile) to the mapping's types and those with counts in the
//! window, and a writer shares at most `--max-types` (default 1000) other types per window
//! (reported when reached; new types past it are counted locally until types leave the window).
//! Writers check the cap against the registry as they last read it, so concurrent writers can
//! overshoot it by the new types of one bucket each. A publish covers the mapping's types, the
//! registry's, this writer's and every type named in the window's bucket indexes, so a type with
//! counts is never missed whoever wrote them, and a type that left the window gets a zero
//! summary before it leaves the registry. A summary too large for an item (a type with tens of
//! thousands of tracking ids in the window) is reported and left as it was; the printed summary
//! still has it.
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

use std::sync::Arc;

use super::window::{Change, Summary, TypeCounts, Window};
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

/// Whether Memcached refused one key or value (a key too long or malformed, a value over the
/// item size) rather than failing as a whole: such a fault concerns that key only and must never
/// hold up the others, so it is not retried like an outage.
fn refused(e: &memcache::MemcacheError) -> bool {
    use memcache::{CommandError, MemcacheError as M, ServerError};
    match e {
        M::ClientError(_) | M::CommandError(CommandError::ValueTooLarge) => true,
        M::ServerError(ServerError::Error(s)) => s.contains("too large"),
        _ => false,
    }
}

/// A failed request: Memcached refused this key or value (see [`refused`]), or the link failed.
#[derive(Debug)]
enum Fault {
    Refused(String),
    Link(Error),
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Error {
        match f {
            Fault::Refused(why) => Error::failed(format!("memcached refused a request: {why}")),
            Fault::Link(e) => e,
        }
    }
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

    fn fault(&self, e: memcache::MemcacheError) -> Fault {
        if refused(&e) {
            Fault::Refused(e.to_string())
        } else {
            Fault::Link(self.err(e))
        }
    }

    /// `add` then `append`: both atomic, neither overwrites, so concurrent writers only add lines.
    fn append_line(&mut self, key: &str, line: &str, expiry: u32) -> Result<(), Fault> {
        self.requests += 2;
        self.client
            .add(key, "", expiry)
            .map_err(|e| self.fault(e))?;
        self.client.append(key, line).map_err(|e| self.fault(e))
    }

    /// Add `by` to a counter, creating it at 0 first if needed. Returns false when the counter was
    /// missing although we had created it before (Memcached lost it).
    fn add_to_counter(
        &mut self,
        key: &str,
        by: u64,
        expiry: u32,
        created: bool,
    ) -> Result<bool, Fault> {
        if !created {
            self.requests += 1;
            self.client
                .add(key, "0", expiry)
                .map_err(|e| self.fault(e))?;
        }
        self.requests += 1;
        match self.client.increment(key, by) {
            Ok(_) => Ok(true),
            Err(memcache::MemcacheError::CommandError(memcache::CommandError::KeyNotFound)) => {
                self.requests += 2;
                self.client
                    .add(key, "0", expiry)
                    .map_err(|e| self.fault(e))?;
                self.client.increment(key, by).map_err(|e| self.fault(e))?;
                Ok(!created)
            }
            Err(e) => Err(self.fault(e)),
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

/// The longest key Memcached takes.
const MAX_KEY: usize = 250;

/// Whether Memcached takes `key`: at most 250 bytes, and none of the bytes its text protocol
/// cannot carry in a key (space, control characters, anything outside printable ASCII).
fn check_key(key: &str) -> std::result::Result<(), String> {
    if key.len() > MAX_KEY {
        return Err(format!(
            "its Memcached key would be {} bytes long, over Memcached's {MAX_KEY}",
            key.len()
        ));
    }
    if let Some(b) = key.bytes().find(|b| !(0x21..0x7f).contains(b)) {
        return Err(format!(
            "its Memcached key would hold the byte {b:#04x}, which Memcached refuses in a key"
        ));
    }
    Ok(())
}

/// The key layout of one prefix and bucket length. Every key is checked before use: the fixed
/// ones once, when the layout is made; those holding a type name or tracking id each time.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    bucket: i64,
}

impl Keys {
    /// The layout, or a usage error when the prefix cannot start a key.
    fn new(prefix: &str, bucket: i64) -> Result<Keys> {
        let keys = Keys {
            prefix: prefix.to_string(),
            bucket,
        };
        // The longest fixed key: an index key with the widest bucket number.
        for key in [keys.index(i64::MIN), keys.types()] {
            check_key(&key).map_err(|why| {
                Error::usage(format!(
                    "--key-prefix {prefix:?} cannot start a Memcached key: {why}"
                ))
            })?;
        }
        Ok(keys)
    }

    /// The counter of an escaped (type, id) in a bucket, if it can be a key.
    fn counter(&self, bucket: i64, kind: &str, tid: &str) -> std::result::Result<String, String> {
        let key = format!("{}~c:{}:{bucket}:{kind}:{tid}", self.prefix, self.bucket);
        check_key(&key).map(|()| key)
    }
    fn index(&self, bucket: i64) -> String {
        format!("{}~n:{}:{bucket}", self.prefix, self.bucket)
    }
    fn types(&self) -> String {
        format!("{}~types", self.prefix)
    }
    /// The summary key of a type, if it can be a key.
    fn summary(&self, kind: &str) -> std::result::Result<String, String> {
        let key = format!("{}{}", self.prefix, escape(kind));
        check_key(&key).map(|()| key)
    }

    /// The type names listed in a registry value that can have a summary key, at most `limit`.
    fn registry_names(&self, value: &[u8], limit: usize) -> Vec<String> {
        String::from_utf8_lossy(value)
            .lines()
            .filter_map(unescape)
            .filter(|t| self.summary(t).is_ok())
            .take(limit)
            .collect()
    }
}

/// A name in a message: the first 40 characters and the length, for a name that may be huge.
fn shown(name: &str) -> String {
    if name.chars().count() <= 40 {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(40).collect();
        format!("{head:?}… ({} bytes)", name.len())
    }
}

/// Keys that could not be shared, reported one by one up to this many, then only counted.
const UNSHARED_REPORTED: usize = 10;
/// Foreign values reported one by one up to this many.
const FOREIGN_REPORTED: usize = 20;

/// The Memcached side of one window-agg process.
pub struct Shared {
    servers: String,
    link: Option<Link>,
    keys: Keys,
    buckets: usize,
    expiry: u32,
    /// The most distinct types shared per window (`--max-types`), the mapping's not counted.
    max_types: usize,
    /// The mapping's types: always shared, always published.
    configured: BTreeSet<String>,
    /// (bucket, pair key) whose index line and counter this process has created; only buckets
    /// in the window are kept.
    created: HashSet<(i64, Arc<str>)>,
    /// Buckets whose index is full (Memcached refused to make it longer).
    full_indexes: HashSet<i64>,
    /// Types this process has put in the registry and may share; pruned to the registry at every
    /// publish, so it holds a window's worth at most.
    shared_types: HashSet<Arc<str>>,
    /// How many types the registry held when last read, plus those added since.
    registry_len: usize,
    /// Counts kept here only, because their type or id cannot be a key or the type cap is full.
    unshared_events: u64,
    unshared_reported: usize,
    cap_reported: bool,
    /// Summaries Memcached refused to store (too large), reported once per type.
    summaries_refused: HashSet<String>,
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
        let keys = Keys::new(&config.key_prefix, config.bucket.micros())?;
        let configured: BTreeSet<String> = config.type_names.values().cloned().collect();
        for kind in &configured {
            keys.summary(kind).map_err(|why| {
                Error::usage(format!(
                    "the type name {} cannot be shared: {why}",
                    shown(kind)
                ))
            })?;
        }
        let link = Link::connect(servers, Duration::from_secs(2))?;
        let bucket = config.bucket.micros();
        let buckets = config.buckets()?;
        let secs = |us: i64| (us + MICROS_PER_SEC - 1) / MICROS_PER_SEC;
        let window_secs = secs(bucket * buckets as i64);
        let expiry = window_secs + 2 * secs(bucket) + 60;
        let mut shared = Shared {
            servers: servers.to_string(),
            link: Some(link),
            keys,
            buckets,
            expiry: expiry.min(30 * 86_400) as u32,
            max_types: config.max_types,
            configured,
            created: HashSet::new(),
            full_indexes: HashSet::new(),
            shared_types: HashSet::new(),
            registry_len: 0,
            unshared_events: 0,
            unshared_reported: 0,
            cap_reported: false,
            summaries_refused: HashSet::new(),
            down_since: None,
            retry_at: 0,
            backoff: 100_000,
            warned_foreign: HashSet::new(),
            requests_before: 0,
        };
        for kind in shared.configured.clone() {
            shared.announce_type(&kind).map_err(Error::from)?;
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

    /// Put a type in the registry, so that readers and other writers find its summary.
    fn announce_type(&mut self, kind: &str) -> Result<(), Fault> {
        let key = self.keys.types();
        let line = format!("{}\n", escape(kind));
        self.link()
            .map_err(Fault::Link)?
            .append_line(&key, &line, 0)?;
        self.shared_types.insert(kind.into());
        self.registry_len += 1;
        Ok(())
    }

    /// Requests sent so far (including those of links dropped after a failure).
    pub fn requests(&self) -> u64 {
        self.requests_before + self.link.as_ref().map_or(0, |l| l.requests)
    }

    /// Events counted here only, not in the shared summary (their type or tracking id cannot be
    /// a key, the type cap was full, or Memcached refused a value as too large).
    pub fn unshared_events(&self) -> u64 {
        self.unshared_events
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
        self.publish(end)
    }

    /// Add the counts gathered since the last push to the bucket counters.
    fn push(&mut self, window: &mut Window) -> Result<()> {
        let changes = window.drain_changes();
        let mut pending = changes.into_iter();
        while let Some(change) = pending.next() {
            if let Err(e) = self.push_one(&change) {
                let mut rest = vec![change];
                rest.extend(pending);
                window.restore_changes(rest);
                return Err(e);
            }
        }
        // Forget what concerns buckets that have left the window.
        if let Some(s) = window.current() {
            let oldest = s.window_start.0.div_euclid(window.bucket_len());
            self.created.retain(|(b, _)| *b >= oldest);
            self.full_indexes.retain(|b| *b >= oldest);
        }
        Ok(())
    }

    /// Keep `change`'s counts here only, and say why (the first few times).
    fn unshared(&mut self, change: &Change, why: &str) {
        self.unshared_events += change.count;
        if self.unshared_reported < UNSHARED_REPORTED {
            self.unshared_reported += 1;
            warn(format_args!(
                "type {} with tracking id {}: {why}; its counts are kept here only, not shared",
                shown(&change.kind),
                shown(change.tracking_id())
            ));
            if self.unshared_reported == UNSHARED_REPORTED {
                warn("further counts that cannot be shared are counted, not reported one by one");
            }
        }
    }

    /// Add one change to its counter; a change that cannot be shared is kept here and reported.
    /// Only a failure of the link is an error.
    fn push_one(&mut self, change: &Change) -> Result<()> {
        let (kind, tid) = (&change.kind, change.tracking_id());
        let (kind_esc, tid_esc) = (escape(kind), escape(tid));
        let counter = match self
            .keys
            .summary(kind)
            .and_then(|_| self.keys.counter(change.bucket, &kind_esc, &tid_esc))
        {
            Ok(key) => key,
            Err(why) => {
                self.unshared(change, &why);
                return Ok(());
            }
        };
        if !self.shared_types.contains(&**kind) && !self.configured.contains(&**kind) {
            if self.registry_len >= self.max_types + self.configured.len() {
                if !self.cap_reported {
                    self.cap_reported = true;
                    warn(format_args!(
                        "the shared window holds {} types, the most --max-types allows: type {} \
                         and further new types are counted here only, not shared, until types \
                         leave the window",
                        self.max_types,
                        shown(kind)
                    ));
                }
                self.unshared_events += change.count;
                return Ok(());
            }
            match self.announce_type(kind) {
                Ok(()) => {}
                Err(Fault::Refused(why)) => {
                    self.unshared(change, &format!("the type registry is full ({why})"));
                    return Ok(());
                }
                Err(Fault::Link(e)) => return Err(e),
            }
        }
        let created = self
            .created
            .contains(&(change.bucket, change.pair_key().clone()));
        let expiry = self.expiry;
        let line = format!("{kind_esc}:{tid_esc}\n");
        if !created {
            if self.full_indexes.contains(&change.bucket) {
                self.unshared(change, "its bucket's index in Memcached is full");
                return Ok(());
            }
            let index = self.keys.index(change.bucket);
            match self.link()?.append_line(&index, &line, expiry) {
                Ok(()) => {}
                Err(Fault::Refused(why)) => {
                    self.full_indexes.insert(change.bucket);
                    self.unshared(
                        change,
                        &format!("Memcached refused to grow its bucket's index ({why})"),
                    );
                    return Ok(());
                }
                Err(Fault::Link(e)) => return Err(e),
            }
        }
        let intact = match self
            .link()?
            .add_to_counter(&counter, change.count, expiry, created)
        {
            Ok(intact) => intact,
            Err(Fault::Refused(why)) => {
                self.unshared(change, &format!("Memcached refused its counter ({why})"));
                return Ok(());
            }
            Err(Fault::Link(e)) => return Err(e),
        };
        if !intact {
            warn(format_args!(
                "memcached lost the counter {counter} (restarted or evicted): bucket counts written before are gone"
            ));
            let index = self.keys.index(change.bucket);
            self.link()?
                .append_line(&index, &line, expiry)
                .map_err(Error::from)?;
        }
        self.created
            .insert((change.bucket, change.pair_key().clone()));
        Ok(())
    }

    /// Recompute the summaries of the window ending at `end` (or at a newer stored window) from
    /// the bucket counters and store each type's with CAS, starting over on conflict.
    fn publish(&mut self, end: Micros) -> Result<Summary> {
        self.publish_with(end, || {})
    }

    fn warn_foreign(&mut self, key: &str, what: &str) {
        if self.warned_foreign.len() < FOREIGN_REPORTED && self.warned_foreign.insert(key.into()) {
            warn(format_args!("memcached key {key} {what}"));
        }
    }

    /// The newest window end among stored summaries (ours only), from `end` on.
    fn adopt_newer(
        &mut self,
        stored: &BTreeMap<String, (Vec<u8>, u64)>,
        mut end: Micros,
    ) -> Micros {
        for (key, (value, _)) in stored {
            match Stored::parse(value) {
                Some(s) => end = end.max(s.window_end.0),
                None => self.warn_foreign(
                    key,
                    "holds a value that is not a window-agg summary; not trusted, replacing it",
                ),
            }
        }
        end
    }

    /// [`Shared::publish`], calling `between` after the counters are read and before the store
    /// (tests use it to let another writer in at the worst moment).
    ///
    /// The types published are the mapping's, those this process shares, those the registry
    /// lists (a type that has just left the window gets its summary set to zero) and every type
    /// in the window's bucket indexes (so no type with counts is missed, whoever wrote them).
    /// Afterwards the registry is rewritten to the types with counts in the window, so it never
    /// outgrows one window.
    fn publish_with(&mut self, end: Micros, mut between: impl FnMut()) -> Result<Summary> {
        let mut end = end;
        let limit = 4 * (self.max_types + self.configured.len());
        'round: for _ in 0..MAX_PUBLISH_ROUNDS {
            let registry_key = self.keys.types();
            let got = self.link()?.get_many(std::slice::from_ref(&registry_key))?;
            let registry: Option<(BTreeSet<String>, u64)> =
                got.get(&registry_key).map(|(v, cas)| {
                    (
                        self.keys.registry_names(v, limit).into_iter().collect(),
                        *cas,
                    )
                });
            self.registry_len = registry.as_ref().map_or(0, |(r, _)| r.len());
            let mut types: BTreeSet<String> = self.configured.clone();
            types.extend(self.shared_types.iter().map(|t| t.to_string()));
            if let Some((r, _)) = &registry {
                types.extend(r.iter().cloned());
            }
            let summary_key = |keys: &Keys, t: &str| keys.summary(t).expect("checked names");
            let keys_of = |keys: &Keys, types: &BTreeSet<String>| -> Vec<String> {
                types.iter().map(|t| summary_key(keys, t)).collect()
            };
            let wanted = keys_of(&self.keys, &types);
            let mut stored = self.link()?.get_many(&wanted)?;
            end = self.adopt_newer(&stored, end);
            let (first, last) = self.bucket_range(end);
            let pairs = self.read_indexes(first, last)?;
            let extra: BTreeSet<String> = pairs
                .iter()
                .filter_map(|(_, kind, _)| unescape(kind))
                .filter(|t| !types.contains(t) && self.keys.summary(t).is_ok())
                .collect();
            if !extra.is_empty() {
                let wanted = keys_of(&self.keys, &extra);
                let more = self.link()?.get_many(&wanted)?;
                let newer = self.adopt_newer(&more, end);
                stored.extend(more);
                types.extend(extra);
                if newer > end {
                    end = newer;
                    continue 'round;
                }
            }
            let summary = self.read_counters(&pairs, &types, first, last)?;
            between();
            let mut conflict = false;
            for kind in &types {
                let key = summary_key(&self.keys, kind);
                let counts = summary.types.get(kind).cloned().unwrap_or_default();
                let ids = counts.events_captured_by_tracking_ids.len();
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
                let result = match stored.get(&key) {
                    Some((_, cas)) => link.client.cas(&key, &value[..], 0, *cas).map(|ok| !ok),
                    // `add` never overwrites; whether it won or not, one more round stores the
                    // summary with CAS.
                    None => link.client.add(&key, &value[..], 0).map(|()| true),
                };
                match result {
                    Ok(lost) => conflict |= lost,
                    Err(e) if refused(&e) => {
                        if self.summaries_refused.len() < FOREIGN_REPORTED
                            && self.summaries_refused.insert(kind.clone())
                        {
                            warn(format_args!(
                                "memcached refused the summary of type {} ({ids} tracking ids, {} \
                                 bytes): {e}; the printed summary has it, {key} stays as it was",
                                shown(kind),
                                value.len()
                            ));
                        }
                    }
                    Err(e) => return Err(link.err(e)),
                }
            }
            if conflict {
                std::thread::sleep(Duration::from_micros(fastrand::u64(0..2000)));
                continue;
            }
            self.prune_registry(registry, &summary)?;
            // As the in-memory window shows them: the mapping's types, and those with counts.
            let mut summary = summary;
            let configured = &self.configured;
            summary
                .types
                .retain(|t, c| c.total_events_captured > 0 || configured.contains(t));
            return Ok(summary);
        }
        Err(Error::failed(format!(
            "memcached {}: could not store the summaries after {MAX_PUBLISH_ROUNDS} conflicting rounds",
            self.servers
        )))
    }

    /// Rewrite the registry to the mapping's types and those with counts in `summary`, when that
    /// drops any. With CAS against the registry as read: if another writer changed it meanwhile
    /// (a new type), this round leaves it be, a later one prunes it.
    fn prune_registry(
        &mut self,
        registry: Option<(BTreeSet<String>, u64)>,
        summary: &Summary,
    ) -> Result<()> {
        let Some((listed, cas)) = registry else {
            self.shared_types.clear();
            return Ok(());
        };
        // What another writer pruned is no longer ours to share without announcing it again.
        self.shared_types.retain(|t| listed.contains(&**t));
        let live: BTreeSet<String> = summary
            .types
            .iter()
            .filter(|(_, c)| c.total_events_captured > 0)
            .map(|(t, _)| t.clone())
            .chain(self.configured.iter().cloned())
            .collect();
        if listed.is_subset(&live) {
            return Ok(());
        }
        let value: String = live.iter().map(|t| format!("{}\n", escape(t))).collect();
        let key = self.keys.types();
        let link = self.link()?;
        link.requests += 1;
        match link.client.cas(&key, value.as_bytes(), 0, cas) {
            Ok(true) => {
                self.shared_types.retain(|t| live.contains(&**t));
                self.registry_len = live.len();
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) if refused(&e) => Ok(()),
            Err(e) => Err(link.err(e)),
        }
    }

    /// The first and last bucket of the window ending at `end`.
    fn bucket_range(&self, end: Micros) -> (i64, i64) {
        let last = end.div_euclid(self.keys.bucket) - 1;
        (last - self.buckets as i64 + 1, last)
    }

    /// The (bucket, escaped type, escaped id) lines of the window's bucket indexes, once each.
    fn read_indexes(&mut self, first: i64, last: i64) -> Result<Vec<(i64, String, String)>> {
        let index_keys: Vec<String> = (first..=last).map(|b| self.keys.index(b)).collect();
        let indexes = self.link()?.get_many(&index_keys)?;
        let mut pairs = Vec::new();
        let mut seen = HashSet::new();
        for bucket in first..=last {
            let Some((value, _)) = indexes.get(&self.keys.index(bucket)) else {
                continue;
            };
            for line in String::from_utf8_lossy(value).lines() {
                if seen.insert((bucket, line.to_string())) {
                    if let Some((kind, tid)) = line.split_once(':') {
                        pairs.push((bucket, kind.to_string(), tid.to_string()));
                    }
                }
            }
        }
        Ok(pairs)
    }

    /// Sum the bucket counters of the window `first..=last` listed in `pairs`.
    fn read_counters(
        &mut self,
        pairs: &[(i64, String, String)],
        types: &BTreeSet<String>,
        first: i64,
        last: i64,
    ) -> Result<Summary> {
        let len = self.keys.bucket;
        let counters: Vec<(String, &str, &str)> = pairs
            .iter()
            .filter_map(|(bucket, kind, tid)| {
                let key = self.keys.counter(*bucket, kind, tid).ok()?;
                Some((key, kind.as_str(), tid.as_str()))
            })
            .collect();
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
                self.warn_foreign(key, "does not hold a count; not trusted");
                continue;
            };
            if count == 0 || !types.contains(&kind) {
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
            window_start: Timestamp(first * len),
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
    let keys = Keys::new(&config.key_prefix, config.bucket.micros())?;
    let mut link = Link::connect(servers, Duration::from_secs(2))?;
    let got = link.get_many(&[keys.types()])?;
    let mut types: BTreeSet<String> = config
        .type_names
        .values()
        .filter(|t| keys.summary(t).is_ok())
        .cloned()
        .collect();
    if let Some((value, _)) = got.get(&keys.types()) {
        types.extend(keys.registry_names(value, 4 * (config.max_types + types.len())));
    }
    let types: Vec<String> = types.into_iter().collect();
    let summary_keys: Vec<String> = types
        .iter()
        .map(|t| keys.summary(t).expect("checked names"))
        .collect();
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
        // A type that has just left the window (its summary set to zero, about to leave the
        // registry) is not shown, as the in-memory output does not show it.
        if s.total == 0 && !config.type_names.values().any(|t| *t == kind) {
            continue;
        }
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
        let config = test_config(&addr, "t:");
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
            a.publish(end).unwrap().types["user-event"].total_events_captured,
            1
        );
        add(&mut wa, 3);
        add(&mut wb, 2);
        a.push(&mut wa).unwrap();
        let mut b_went = false;
        let summary = a
            .publish_with(end, || {
                if !b_went {
                    b_went = true;
                    b.push(&mut wb).unwrap();
                    b.publish(end).unwrap();
                }
            })
            .unwrap();
        assert!(b_went);
        assert_eq!(summary.types["user-event"].total_events_captured, 6);
        let stored: Option<String> = a.link().unwrap().client.get("t:user-event").unwrap();
        let stored = Stored::parse(stored.unwrap().as_bytes()).unwrap();
        assert_eq!(stored.total, 6);
    }

    fn test_config(addr: &str, prefix: &str) -> Config {
        Config {
            minutes: 1,
            bucket: time::Duration(Duration::from_secs(1)),
            clock: super::super::Clock::Event,
            max_future: time::MaxFuture::DEFAULT,
            type_names: crate::event_config::default_type_names(),
            fields: Default::default(),
            memcached: Some(addr.to_string()),
            key_prefix: prefix.into(),
            max_types: 1000,
            read: false,
            input: Default::default(),
        }
    }

    /// Five windows of fresh tracking ids and fresh types through a shared window: the local
    /// window, the process's Memcached bookkeeping and the registry in Memcached all hold one
    /// window's worth at most, and each shared summary is the live window's exact counts.
    #[test]
    fn local_state_and_the_registry_hold_one_window_of_fresh_keys() {
        let server = super::test_harness::Daemon::memcached();
        let addr = server.addr.to_string();
        let mut config = test_config(&addr, "f:");
        config.bucket = time::Duration(Duration::from_secs(5));
        let mut window = Window::new(5_000_000, 12, config.type_names.clone()).track_changes();
        let mut shared = Shared::connect(&addr, &config).unwrap();
        let t0 = 1_575_784_800_000_000;
        for second in 0..300i64 {
            let t = t0 + second * 1_000_000;
            for closed in window.advance_to(t) {
                let summary = shared.sync(&mut window, &closed).expect("memcached is up");
                assert_eq!(summary.types, closed.types, "at {}", closed.window_end);
            }
            for i in 0..5 {
                window.add(t, "click", &format!("id-{second}-{i}")).unwrap();
            }
            window.add(t, &format!("kind-{second}"), "id").unwrap();
        }
        // 12 buckets of 5 s: 300 clicks' ids and 60 types with their ids.
        assert!(window.keys() <= 360, "{} keys", window.keys());
        assert!(window.types_held() <= 3 + 60);
        assert!(shared.created.len() <= 360 + 30, "{}", shared.created.len());
        assert!(
            shared.shared_types.len() <= 3 + 60 + 5,
            "{}",
            shared.shared_types.len()
        );
        let registry: String = shared
            .link()
            .unwrap()
            .client
            .get("f:~types")
            .unwrap()
            .unwrap();
        assert!(
            registry.lines().count() <= 3 + 60 + 5,
            "{} lines",
            registry.lines().count()
        );
        assert_eq!(shared.unshared_events(), 0);
    }

    #[test]
    fn the_key_hash_is_stable() {
        // FNV-1a test vectors: the same on every build and host.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
