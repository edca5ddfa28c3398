//! The pure core of window-agg: a ring of buckets over the last N minutes, counts by type and by
//! tracking id, maintained incrementally. It knows nothing of input, output or clocks: the shell
//! feeds it event times and keys, and it answers with the summaries that are due.
//!
//! Bucket `k` holds the events with `k × bucket ≤ t < (k + 1) × bucket` (aligned to the epoch).
//! With `n` buckets per window and newest bucket `c` (the bucket of the latest time seen), the live
//! window is buckets `c − n + 1 ..= c`. When time crosses the boundary `j × bucket`, the window
//! that just closed — buckets `j − n ..= j − 1`, i.e. exactly `[j×bucket − N min, j×bucket)` — is
//! summarised, then bucket `j − n` expires. An event older than the live window is *late*: it is
//! counted and refused, never added. Adding an event and expiring a bucket cost O(keys touched);
//! nothing ever rescans the window.
//!
//! Once the window is empty, further empty summaries are not repeated: after a gap longer than the
//! window one empty summary is written, then nothing until the next event.
//!
//! Memory is O(keys in the window): a (type, tracking id) pair is interned while it has counts in
//! the window and freed, with its name, when its last bucket expires; its number is reused. A
//! type name not in the mapping is freed with its last pair. So a stream of fresh ids (session or
//! user ids) costs a window's worth of them, however long it runs. Counts handed to a shared
//! backend ([`Change`]) carry the names, not the numbers, so freeing never waits for them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::{Micros, Timestamp};

/// The counts of one window, in the output shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub types: BTreeMap<String, TypeCounts>,
}

/// One type's counts, with the seed's field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeCounts {
    pub total_events_captured: u64,
    pub events_captured_by_tracking_ids: BTreeMap<String, u64>,
}

/// An event that fell before the live window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub at: Micros,
    pub window_start: Micros,
}

impl fmt::Display for Late {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "late event at {}, before the window starting {}: not counted",
            Timestamp(self.at),
            Timestamp(self.window_start)
        )
    }
}

/// Counts added to one bucket since the last [`Window::drain_changes`]: what a shared backend adds
/// to its own counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The bucket's number (its start is `bucket × bucket length`).
    pub bucket: i64,
    /// The type name.
    pub kind: Arc<str>,
    pair: PairKey,
    pub count: u64,
}

impl Change {
    pub fn tracking_id(&self) -> &str {
        self.pair.tracking_id()
    }

    /// The pair's identity in the window (its event name, as read, and tracking id): the same
    /// for every change of that pair.
    pub fn pair_key(&self) -> &Arc<str> {
        &self.pair.text
    }
}

/// A pair's lookup key, `<event name length>:<event name><tracking id>` (a length, not a
/// separator, so no name can make two pairs collide), shared by the lookup table and the pair.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PairKey {
    text: Arc<str>,
    /// Where the tracking id starts.
    id_at: usize,
}

impl PairKey {
    fn tracking_id(&self) -> &str {
        &self.text[self.id_at..]
    }
}

/// Write the lookup key of (`event`, `tracking_id`) into `key`; returns where the id starts.
fn write_key(key: &mut String, event: &str, tracking_id: &str) -> usize {
    key.clear();
    let mut digits = [0u8; 20];
    let len = crate::output::decimal(event.len() as u64, &mut digits);
    key.push_str(std::str::from_utf8(len).expect("ASCII digits"));
    key.push(':');
    key.push_str(event);
    let id_at = key.len();
    key.push_str(tracking_id);
    id_at
}

#[derive(Debug, Default)]
struct Bucket {
    /// Which bucket number the slot holds now.
    number: i64,
    /// Count per pair id (dense, grown on demand), and the ids that are non-zero.
    counts: Vec<u64>,
    touched: Vec<u32>,
    /// Counts added since the last drain (only kept when changes are tracked).
    undrained: Vec<u64>,
    dirty: Vec<u32>,
}

/// A (type, tracking id) pair, interned while it has counts in the window.
#[derive(Debug)]
struct Pair {
    kind: u32,
    key: PairKey,
}

/// A type name and how many live pairs use it.
#[derive(Debug)]
struct Kind {
    name: Arc<str>,
    pairs: u32,
}

/// The sliding window; see the module doc.
#[derive(Debug)]
pub struct Window {
    bucket: i64,
    ring: Vec<Bucket>,
    /// The newest bucket number; `None` before the first event.
    newest: Option<i64>,
    /// The latest time seen (the window's clock).
    clock: Micros,
    /// Count in the window per pair id (0 for a free id).
    totals: Vec<u64>,
    in_window: u64,
    /// Pair key ([`PairKey`]) → pair id, so an event costs one lookup.
    pair_ids: HashMap<Arc<str>, u32>,
    /// By pair id; `None` for a free id, listed in `free_pairs` for reuse.
    pairs: Vec<Option<Pair>>,
    free_pairs: Vec<u32>,
    /// Type names by id; the first `always_shown` (the mapping's) are never freed.
    types: Vec<Option<Kind>>,
    type_ids: HashMap<Arc<str>, u32>,
    free_types: Vec<u32>,
    type_names: BTreeMap<String, String>,
    always_shown: usize,
    last_was_empty: bool,
    track_changes: bool,
    expired_changes: Vec<Change>,
    key: String,
}

impl Window {
    /// A window of `buckets` buckets of `bucket` µs each. `type_names` maps event names to type
    /// names (names not in it pass through unchanged); the mapped types are always shown, with 0.
    pub fn new(bucket: i64, buckets: usize, type_names: BTreeMap<String, String>) -> Self {
        assert!(bucket > 0 && buckets > 0, "a window needs buckets");
        let mut types: Vec<Option<Kind>> = Vec::new();
        let mut type_ids = HashMap::new();
        for name in type_names.values() {
            let name: Arc<str> = name.as_str().into();
            if !type_ids.contains_key(&name) {
                type_ids.insert(name.clone(), types.len() as u32);
                types.push(Some(Kind { name, pairs: 0 }));
            }
        }
        Window {
            bucket,
            ring: (0..buckets).map(|_| Bucket::default()).collect(),
            newest: None,
            clock: Micros::MIN,
            totals: Vec::new(),
            in_window: 0,
            pair_ids: HashMap::new(),
            pairs: Vec::new(),
            free_pairs: Vec::new(),
            always_shown: types.len(),
            types,
            type_ids,
            free_types: Vec::new(),
            type_names,
            last_was_empty: false,
            track_changes: false,
            expired_changes: Vec::new(),
            key: String::new(),
        }
    }

    /// Keep the counts added per bucket since the last [`Window::drain_changes`].
    pub fn track_changes(mut self) -> Self {
        self.track_changes = true;
        self
    }

    pub fn bucket_len(&self) -> i64 {
        self.bucket
    }

    pub fn buckets(&self) -> usize {
        self.ring.len()
    }

    /// The latest time seen, if any.
    pub fn clock(&self) -> Option<Micros> {
        self.newest.map(|_| self.clock)
    }

    /// The next bucket boundary, when the next summary is due.
    pub fn next_boundary(&self) -> Option<Micros> {
        self.newest.map(|c| (c + 1) * self.bucket)
    }

    /// The type names in use: the mapping's, and those with counts in the window.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.types.iter().flatten().map(|t| &*t.name)
    }

    /// How many (type, tracking id) pairs are interned: those with counts in the window.
    pub fn keys(&self) -> usize {
        self.pair_ids.len()
    }

    /// How many type names are held (the mapping's, and those with pairs in the window).
    pub fn types_held(&self) -> usize {
        self.type_ids.len()
    }

    fn pair(&self, pair: u32) -> &Pair {
        self.pairs[pair as usize]
            .as_ref()
            .expect("a pair with counts is interned")
    }

    fn change(&self, bucket: i64, pair: u32, count: u64) -> Change {
        let p = self.pair(pair);
        Change {
            bucket,
            kind: self.kind(p.kind).name.clone(),
            pair: p.key.clone(),
            count,
        }
    }

    fn kind(&self, kind: u32) -> &Kind {
        self.types[kind as usize]
            .as_ref()
            .expect("a pair's type is held")
    }

    fn slot(&self, number: i64) -> usize {
        number.rem_euclid(self.ring.len() as i64) as usize
    }

    /// Move the clock to `t` (never backwards) and return the summaries of the windows that closed
    /// on the way, oldest first.
    pub fn advance_to(&mut self, t: Micros) -> Vec<Summary> {
        let mut out = Vec::new();
        let target = t.div_euclid(self.bucket);
        let Some(newest) = self.newest else {
            self.newest = Some(target);
            self.clock = t;
            for b in target - self.ring.len() as i64 + 1..=target {
                let slot = self.slot(b);
                self.ring[slot].number = b;
            }
            return out;
        };
        self.clock = self.clock.max(t);
        if target <= newest {
            return out;
        }
        let n = self.ring.len() as i64;
        // Past n + 1 boundaries everything has expired and one empty summary has been written;
        // the boundaries after that would only repeat it.
        let last_needed = target.min(newest + n + 1);
        for j in newest + 1..=last_needed {
            let summary = self.summary_of((j - n) * self.bucket, j * self.bucket);
            let empty = self.in_window == 0;
            if !(empty && self.last_was_empty) {
                out.push(summary);
            }
            self.last_was_empty = empty;
            self.expire(j - n);
            let slot = self.slot(j);
            self.ring[slot].number = j;
        }
        if target > last_needed {
            for b in target - n + 1..=target {
                let slot = self.slot(b);
                self.ring[slot].number = b;
            }
        }
        self.newest = Some(target);
        out
    }

    /// Drop bucket `number` from the window (its slot is about to be reused), and free the pairs
    /// that leave the window with it.
    fn expire(&mut self, number: i64) {
        let slot = self.slot(number);
        debug_assert_eq!(self.ring[slot].number, number);
        // Undrained counts are handed over (by name) before their pairs may be freed.
        let dirty = std::mem::take(&mut self.ring[slot].dirty);
        for &pair in &dirty {
            let count = std::mem::take(&mut self.ring[slot].undrained[pair as usize]);
            let change = self.change(number, pair, count);
            self.expired_changes.push(change);
        }
        self.ring[slot].dirty = recycle(dirty);
        let touched = std::mem::take(&mut self.ring[slot].touched);
        for &pair in &touched {
            let count = std::mem::take(&mut self.ring[slot].counts[pair as usize]);
            let total = &mut self.totals[pair as usize];
            *total -= count;
            self.in_window -= count;
            if *total == 0 {
                self.free_pair(pair);
            }
        }
        self.ring[slot].touched = recycle(touched);
    }

    /// Forget a pair that has no counts left in the window (and its type, if it was the last
    /// pair of a type the mapping does not name).
    fn free_pair(&mut self, pair: u32) {
        let p = self.pairs[pair as usize]
            .take()
            .expect("a pair with counts is interned");
        self.pair_ids.remove(&p.key.text);
        self.free_pairs.push(pair);
        let kind = self.types[p.kind as usize]
            .as_mut()
            .expect("a pair's type is held");
        kind.pairs -= 1;
        if kind.pairs == 0 && p.kind as usize >= self.always_shown {
            let kind = self.types[p.kind as usize].take().expect("just seen");
            self.type_ids.remove(&kind.name);
            self.free_types.push(p.kind);
        }
    }

    /// Add one event at `t` (call [`Window::advance_to`] first for events past the clock).
    pub fn add(&mut self, t: Micros, event: &str, tracking_id: &str) -> Result<(), Late> {
        let number = t.div_euclid(self.bucket);
        let newest = match self.newest {
            Some(newest) if number <= newest => newest,
            _ => {
                debug_assert!(false, "add before advance_to");
                self.advance_to(t);
                number
            }
        };
        let oldest = newest - self.ring.len() as i64 + 1;
        if number < oldest {
            return Err(Late {
                at: t,
                window_start: oldest * self.bucket,
            });
        }
        let pair = self.pair_id(event, tracking_id);
        let slot = self.slot(number);
        let bucket = &mut self.ring[slot];
        bump(&mut bucket.counts, &mut bucket.touched, pair, 1);
        if self.track_changes {
            bump(&mut bucket.undrained, &mut bucket.dirty, pair, 1);
        }
        self.totals[pair as usize] += 1;
        self.in_window += 1;
        Ok(())
    }

    fn pair_id(&mut self, event: &str, tracking_id: &str) -> u32 {
        let id_at = write_key(&mut self.key, event, tracking_id);
        if let Some(&id) = self.pair_ids.get(self.key.as_str()) {
            return id;
        }
        let name = self.type_names.get(event).map_or(event, String::as_str);
        let kind = match self.type_ids.get(name) {
            Some(&i) => i,
            None => {
                let name: Arc<str> = name.into();
                let kind = Some(Kind {
                    name: name.clone(),
                    pairs: 0,
                });
                let i = match self.free_types.pop() {
                    Some(i) => {
                        self.types[i as usize] = kind;
                        i
                    }
                    None => {
                        self.types.push(kind);
                        (self.types.len() - 1) as u32
                    }
                };
                self.type_ids.insert(name, i);
                i
            }
        };
        if let Some(k) = self.types[kind as usize].as_mut() {
            k.pairs += 1;
        }
        let text: Arc<str> = self.key.as_str().into();
        let pair = Some(Pair {
            kind,
            key: PairKey {
                text: text.clone(),
                id_at,
            },
        });
        let id = match self.free_pairs.pop() {
            Some(id) => {
                self.pairs[id as usize] = pair;
                id
            }
            None => {
                self.pairs.push(pair);
                self.totals.push(0);
                (self.pairs.len() - 1) as u32
            }
        };
        self.pair_ids.insert(text, id);
        id
    }

    /// The summary of the live window, `[oldest bucket start, newest bucket end)`.
    pub fn current(&self) -> Option<Summary> {
        let newest = self.newest?;
        let n = self.ring.len() as i64;
        Some(self.summary_of((newest - n + 1) * self.bucket, (newest + 1) * self.bucket))
    }

    fn summary_of(&self, start: Micros, end: Micros) -> Summary {
        let mut types: BTreeMap<String, TypeCounts> = self.types[..self.always_shown]
            .iter()
            .flatten()
            .map(|t| (t.name.to_string(), TypeCounts::default()))
            .collect();
        for (pair, &count) in self.totals.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let p = self.pair(pair as u32);
            let entry = types.entry(self.kind(p.kind).name.to_string()).or_default();
            entry.total_events_captured += count;
            *entry
                .events_captured_by_tracking_ids
                .entry(p.key.tracking_id().to_string())
                .or_default() += count;
        }
        Summary {
            window_start: Timestamp(start),
            window_end: Timestamp(end),
            types,
        }
    }

    /// Hand over the counts added since the last call, per bucket (expired buckets included), and
    /// forget them. Only with [`Window::track_changes`].
    pub fn drain_changes(&mut self) -> Vec<Change> {
        let mut changes = std::mem::take(&mut self.expired_changes);
        for slot in 0..self.ring.len() {
            let dirty = std::mem::take(&mut self.ring[slot].dirty);
            let number = self.ring[slot].number;
            for &pair in &dirty {
                let count = std::mem::take(&mut self.ring[slot].undrained[pair as usize]);
                changes.push(self.change(number, pair, count));
            }
            self.ring[slot].dirty = recycle(dirty);
        }
        changes
    }

    /// Put back changes a backend could not deliver, to be drained again later.
    pub fn restore_changes(&mut self, changes: Vec<Change>) {
        self.expired_changes.extend(changes);
    }
}

/// An emptied list, keeping its allocation.
fn recycle(mut list: Vec<u32>) -> Vec<u32> {
    list.clear();
    list
}

fn bump(counts: &mut Vec<u64>, touched: &mut Vec<u32>, pair: u32, by: u64) {
    let i = pair as usize;
    if counts.len() <= i {
        counts.resize(i + 1, 0);
    }
    if counts[i] == 0 {
        touched.push(pair);
    }
    counts[i] += by;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: i64 = 10_000_000;

    fn names() -> BTreeMap<String, String> {
        crate::event_config::default_type_names()
    }

    #[test]
    fn the_seed_example() {
        let mut w = Window::new(B, 30, names());
        let start = 1_575_787_377_000_000;
        let mut t = start;
        for (tid, n) in [
            ("trackingIdA", 10),
            ("trackingIdB", 20),
            ("trackingIdC", 20),
        ] {
            for _ in 0..n {
                assert!(w.advance_to(t).is_empty());
                w.add(t, "formsubmit", tid).unwrap();
                t += 1000;
            }
        }
        let s = w.current().unwrap();
        let signup = &s.types["signup"];
        assert_eq!(signup.total_events_captured, 50);
        assert_eq!(signup.events_captured_by_tracking_ids["trackingIdB"], 20);
        assert_eq!(s.types["review"], TypeCounts::default());
        assert_eq!(s.window_end.0 - s.window_start.0, 300_000_000);
        let json = serde_json::to_string(&s.types["signup"]).unwrap();
        assert_eq!(
            json,
            r#"{"totalEventsCaptured":50,"eventsCapturedByTrackingIds":{"trackingIdA":10,"trackingIdB":20,"trackingIdC":20}}"#
        );
    }

    #[test]
    fn a_boundary_closes_the_window_and_late_events_are_refused() {
        let mut w = Window::new(B, 3, names());
        w.advance_to(5 * B);
        w.add(5 * B, "click", "a").unwrap();
        w.advance_to(7 * B + 1);
        w.add(7 * B + 1, "click", "a").unwrap();
        // Crossing 8×B closes the window [5B, 8B).
        let out = w.advance_to(8 * B);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].window_start, Timestamp(5 * B));
        assert_eq!(out[0].types["user-event"].total_events_captured, 2);
        // Now the window is [6B, 9B): an event at 5B is late, one at 6B is not.
        let late = w.add(5 * B + 3, "click", "a").unwrap_err();
        assert_eq!(late.window_start, 6 * B);
        w.add(6 * B, "click", "b").unwrap();
        let now = w.current().unwrap();
        assert_eq!(now.types["user-event"].total_events_captured, 2);
    }

    #[test]
    fn a_gap_longer_than_the_window_empties_it_with_one_empty_line() {
        let mut w = Window::new(B, 3, names());
        w.advance_to(0);
        w.add(0, "review", "a").unwrap();
        let out = w.advance_to(1000 * B);
        assert_eq!(out.len(), 4);
        assert_eq!(out[2].types["review"].total_events_captured, 1);
        assert_eq!(out[3].types["review"].total_events_captured, 0);
        w.add(1000 * B, "review", "a").unwrap();
        assert_eq!(
            w.current().unwrap().types["review"].total_events_captured,
            1
        );
        assert_eq!(w.current().unwrap().window_start, Timestamp(998 * B));
    }

    #[test]
    fn names_with_any_character_never_collide_and_fresh_ids_are_freed() {
        let mut w = Window::new(B, 2, names());
        w.advance_to(0);
        w.add(0, "a\0b", "c").unwrap();
        w.add(0, "a", "b\0c").unwrap();
        let s = w.current().unwrap();
        assert_eq!(s.types["a\0b"].events_captured_by_tracking_ids["c"], 1);
        assert_eq!(s.types["a"].events_captured_by_tracking_ids["b\0c"], 1);
        // 100,000 fresh ids, 2 per bucket of a 2-bucket window: never more than 4 held.
        for i in 0..100_000i64 {
            let t = 10 * B + i * B / 2;
            w.advance_to(t);
            w.add(t, "click", &format!("id-{i}")).unwrap();
            assert!(
                w.keys() <= 4 && w.types_held() <= 3,
                "{i}: {} keys",
                w.keys()
            );
        }
        assert!(w.pairs.len() <= 6, "ids are reused: {}", w.pairs.len());
    }

    /// One step of a random stream: an event `dt` µs after (or before, when negative) the clock.
    #[derive(Debug, Clone)]
    struct Step {
        dt: i64,
        event: u8,
        tid: u8,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let dt = prop_oneof![
            6 => 0i64..2 * B,                  // steady
            2 => Just(0i64),                   // bursts at one instant
            2 => -(40 * B)..0i64,              // out of order, some within, some before the window
            1 => (30 * B)..(200 * B),          // gaps, longer than the window
        ];
        prop::collection::vec(
            (dt, 0u8..4, 0u8..12).prop_map(|(dt, event, tid)| Step { dt, event, tid }),
            0..400,
        )
    }

    const EVENTS: [&str; 4] = ["formsubmit", "click", "review", "purchase"];

    proptest! {
        /// Every summary equals a brute-force count over all events accepted so far, late
        /// events are exactly those before the live window when they arrive, and the interner
        /// holds exactly the keys (and unmapped types) with counts in the live window.
        #[test]
        fn matches_a_brute_force_oracle(steps in steps(), buckets in 1usize..8, base in -1_000i64..1_000) {
            let mut w = Window::new(B, buckets, names()).track_changes();
            let n = buckets as i64;
            let mut accepted: Vec<(Micros, String, String)> = Vec::new();
            let mut clock: Option<Micros> = None;
            let mut emitted_ends = Vec::new();
            let mut drained: BTreeMap<(i64, String, String), u64> = BTreeMap::new();
            let mut raw: Vec<(Micros, &str)> = Vec::new();
            let mut t = base * B;
            let oracle = |accepted: &[(Micros, String, String)], start: Micros, end: Micros| {
                let mut types: BTreeMap<String, TypeCounts> = ["signup", "user-event", "review"]
                    .iter().map(|t| (t.to_string(), TypeCounts::default())).collect();
                for (at, kind, tid) in accepted {
                    if *at >= start && *at < end {
                        let e = types.entry(kind.clone()).or_default();
                        e.total_events_captured += 1;
                        *e.events_captured_by_tracking_ids.entry(tid.clone()).or_default() += 1;
                    }
                }
                types
            };
            for step in &steps {
                t += step.dt;
                let kind = EVENTS[step.event as usize];
                let mapped = names().get(kind).cloned().unwrap_or(kind.to_string());
                let tid = format!("INF-{}", step.tid);
                for s in w.advance_to(t) {
                    prop_assert_eq!(s.window_end.0 - s.window_start.0, n * B);
                    prop_assert_eq!(&s.types, &oracle(&accepted, s.window_start.0, s.window_end.0));
                    emitted_ends.push(s.window_end.0);
                }
                let now = clock.map_or(t, |c: Micros| c.max(t));
                clock = Some(now);
                let oldest = (now.div_euclid(B) - n + 1) * B;
                match w.add(t, kind, &tid) {
                    Ok(()) => {
                        prop_assert!(t >= oldest);
                        accepted.push((t, mapped, tid));
                        raw.push((t, kind));
                    }
                    Err(late) => {
                        prop_assert!(t < oldest);
                        prop_assert_eq!(late.window_start, oldest);
                    }
                }
                let live: std::collections::BTreeSet<(&str, &str)> = accepted
                    .iter()
                    .zip(&raw)
                    .filter(|((at, _, _), _)| *at >= oldest)
                    .map(|((_, _, tid), (_, event))| (*event, tid.as_str()))
                    .collect();
                prop_assert_eq!(w.keys(), live.len());
                let unmapped: std::collections::BTreeSet<&str> =
                    live.iter().map(|(e, _)| *e).filter(|e| !names().contains_key(*e)).collect();
                prop_assert_eq!(w.types_held(), 3 + unmapped.len());
                if step.tid == 0 {
                    for c in w.drain_changes() {
                        *drained.entry((c.bucket, c.kind.to_string(), c.tracking_id().to_string())).or_default() += c.count;
                    }
                }
            }
            // Boundaries come in order and the final window is exact too.
            prop_assert!(emitted_ends.windows(2).all(|p| p[0] < p[1]));
            if let Some(s) = w.current() {
                prop_assert_eq!(s.window_end.0 - s.window_start.0, n * B);
                prop_assert!(clock.unwrap() < s.window_end.0);
                prop_assert_eq!(&s.types, &oracle(&accepted, s.window_start.0, s.window_end.0));
            }
            // Changes handed to a backend add up to every accepted event, each in its bucket.
            for c in w.drain_changes() {
                *drained.entry((c.bucket, c.kind.to_string(), c.tracking_id().to_string())).or_default() += c.count;
            }
            let mut expected: BTreeMap<(i64, String, String), u64> = BTreeMap::new();
            for (at, kind, tid) in &accepted {
                *expected.entry((at.div_euclid(B), kind.clone(), tid.clone())).or_default() += 1;
            }
            drained.retain(|_, count| *count > 0);
            prop_assert_eq!(drained, expected);
        }
    }
}
