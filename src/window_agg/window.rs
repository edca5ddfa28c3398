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

use std::collections::{BTreeMap, HashMap};
use std::fmt;

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
    pub pair: u32,
    pub count: u64,
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

/// A (type, tracking id) pair, interned.
#[derive(Debug)]
struct Pair {
    kind: u32,
    tracking_id: Box<str>,
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
    totals: Vec<u64>,
    in_window: u64,
    /// `event name \0 tracking id` → pair id, so an event costs one lookup.
    pair_ids: HashMap<Box<str>, u32>,
    pairs: Vec<Pair>,
    /// Type names; the first ones are those always shown (the mapping's), in order of first use.
    types: Vec<Box<str>>,
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
        let mut types: Vec<Box<str>> = Vec::new();
        for name in type_names.values() {
            if !types.iter().any(|t| **t == **name) {
                types.push(name.as_str().into());
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
            always_shown: types.len(),
            types,
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

    /// The type name and tracking id of a pair (for [`Change`]s).
    pub fn pair_names(&self, pair: u32) -> (&str, &str) {
        let p = &self.pairs[pair as usize];
        (&self.types[p.kind as usize], &p.tracking_id)
    }

    /// Every type name known so far (the mapping's first).
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.types.iter().map(|t| &**t)
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

    /// Drop bucket `number` from the window (its slot is about to be reused).
    fn expire(&mut self, number: i64) {
        let slot = self.slot(number);
        let bucket = &mut self.ring[slot];
        debug_assert_eq!(bucket.number, number);
        for &pair in &bucket.touched {
            let count = std::mem::take(&mut bucket.counts[pair as usize]);
            self.totals[pair as usize] -= count;
            self.in_window -= count;
        }
        bucket.touched.clear();
        for &pair in &bucket.dirty {
            let count = std::mem::take(&mut bucket.undrained[pair as usize]);
            self.expired_changes.push(Change {
                bucket: number,
                pair,
                count,
            });
        }
        bucket.dirty.clear();
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
        self.key.clear();
        self.key.push_str(event);
        self.key.push('\0');
        self.key.push_str(tracking_id);
        if let Some(&id) = self.pair_ids.get(self.key.as_str()) {
            return id;
        }
        let name = self.type_names.get(event).map_or(event, String::as_str);
        let kind = match self.types.iter().position(|t| **t == *name) {
            Some(i) => i as u32,
            None => {
                self.types.push(name.into());
                (self.types.len() - 1) as u32
            }
        };
        let id = self.pairs.len() as u32;
        self.pairs.push(Pair {
            kind,
            tracking_id: tracking_id.into(),
        });
        self.totals.push(0);
        self.pair_ids.insert(self.key.as_str().into(), id);
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
            .map(|t| (t.to_string(), TypeCounts::default()))
            .collect();
        for (pair, &count) in self.totals.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let p = &self.pairs[pair];
            let entry = types
                .entry(self.types[p.kind as usize].to_string())
                .or_default();
            entry.total_events_captured += count;
            *entry
                .events_captured_by_tracking_ids
                .entry(p.tracking_id.to_string())
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
        for bucket in &mut self.ring {
            for &pair in &bucket.dirty {
                let count = std::mem::take(&mut bucket.undrained[pair as usize]);
                changes.push(Change {
                    bucket: bucket.number,
                    pair,
                    count,
                });
            }
            bucket.dirty.clear();
        }
        changes
    }

    /// Put back changes a backend could not deliver, to be drained again later.
    pub fn restore_changes(&mut self, changes: Vec<Change>) {
        self.expired_changes.extend(changes);
    }
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
            (dt, 0u8..4, 0u8..5).prop_map(|(dt, event, tid)| Step { dt, event, tid }),
            0..400,
        )
    }

    const EVENTS: [&str; 4] = ["formsubmit", "click", "review", "purchase"];

    proptest! {
        /// Every summary equals a brute-force count over all events accepted so far, and late
        /// events are exactly those before the live window when they arrive.
        #[test]
        fn matches_a_brute_force_oracle(steps in steps(), buckets in 1usize..8, base in -1_000i64..1_000) {
            let mut w = Window::new(B, buckets, names()).track_changes();
            let n = buckets as i64;
            let mut accepted: Vec<(Micros, String, String)> = Vec::new();
            let mut clock: Option<Micros> = None;
            let mut emitted_ends = Vec::new();
            let mut drained: BTreeMap<(i64, u32), u64> = BTreeMap::new();
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
                    }
                    Err(late) => {
                        prop_assert!(t < oldest);
                        prop_assert_eq!(late.window_start, oldest);
                    }
                }
                if step.tid == 0 {
                    for c in w.drain_changes() {
                        *drained.entry((c.bucket, c.pair)).or_default() += c.count;
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
                *drained.entry((c.bucket, c.pair)).or_default() += c.count;
            }
            let mut expected: BTreeMap<(i64, String, String), u64> = BTreeMap::new();
            for (at, kind, tid) in &accepted {
                *expected.entry((at.div_euclid(B), kind.clone(), tid.clone())).or_default() += 1;
            }
            let mut got: BTreeMap<(i64, String, String), u64> = BTreeMap::new();
            for ((bucket, pair), count) in drained {
                let (kind, tid) = w.pair_names(pair);
                *got.entry((bucket, kind.to_string(), tid.to_string())).or_default() += count;
            }
            prop_assert_eq!(got, expected);
        }
    }
}
