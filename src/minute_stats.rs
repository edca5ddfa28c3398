//! minute-stats: per-period min, max, mean and exact median of metric events (seed `004_…`).
//!
//! Input, one event per line (`tags` optional, a `"k:v,k:v"` string, a list of `"k:v"` strings or
//! an object):
//!
//! ```text
//! {"type":"request_duration","value":10,"timestamp":"2017-01-03T15:53:01.494821Z","tags":"company:1,sburbles:barf"}
//! ```
//!
//! Output, one line per non-empty period, written as soon as the period closes:
//!
//! ```text
//! {"aggs":[{"name":"request_duration","min":10,"max":40,"mean":25,"median":25}],"period_start":"2017-01-03T15:53:00.000000Z","period_end":"2017-01-03T15:54:00.000000Z"}
//! ```
//!
//! - Periods are `--period` long (default 1 minute), aligned to the epoch, in UTC.
//! - Within a line, aggregates are ordered by type name, then (with `--group-by-tag`) by tag value,
//!   events without the tag first. Lines come in period order.
//! - A period closes once an event at or past `period_end + lateness` has been read (or, with
//!   `--live`, once the wall clock passes that point). An event is accepted while its period is
//!   open; an event for a period already written is late: reported with its line number, counted
//!   with the bad lines and never merged into another period.
//! - An event time later than the wall clock plus `--max-future` (default 5m; `off` for none) is a
//!   bad line and closes nothing ([`time::Horizon`]), so one far-future stamp cannot make every
//!   later event late.
//! - `value` may be any finite JSON number (the seed says positive integers; negative and fractional
//!   values are aggregated too). Whole results print without a fraction, others as the shortest
//!   decimal that reads back to the same double. The median of an even count is the mean of the
//!   two middle values. Means are summed with Neumaier's compensation.
//! - Memory holds the values of the open periods only: one period, plus whatever `--lateness`
//!   keeps open.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::fmt;
use std::io::Write;
use std::sync::mpsc::RecvTimeoutError;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fields::{FieldReader, Fields, Found, Want};
use crate::input::{parse_object, parse_workers, spawn_parsed_with, Batch, InputArgs, Text};
use crate::output::{Number, Output};
use crate::sum::Sum;
use crate::time::{self, Micros, Timestamp};

/// What minute-stats is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone)]
pub struct Config {
    pub period: time::Duration,
    pub lateness: time::Duration,
    /// `--max-future`: event times later than the wall clock plus this are bad lines.
    pub max_future: time::MaxFuture,
    pub live: bool,
    pub group_by_tag: Option<String>,
    pub input: InputArgs,
}

/// Run minute-stats over the configured input, writing summaries to `out`.
pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    let period = config.period.micros();
    if period <= 0 {
        return Err(Error::usage("--period must be longer than 0"));
    }
    let mut stats = Stats::new(period, config.lateness.micros());
    if let Some(key) = &config.group_by_tag {
        stats = stats.with_group_key(key.clone());
    }
    let horizon = time::Horizon::new(config.max_future).reach(0, period);
    let mut bad = config.input.bad_lines();
    let group_by = config.group_by_tag.clone();
    let workers = parse_workers(4);
    let fast = metric_fields();
    let batches = spawn_parsed_with(
        config.input.open()?,
        workers,
        FieldReader::default,
        move |reader, batch| parse_batch(reader, &fast, batch, group_by.as_deref()),
    );
    loop {
        let next = if config.live {
            match stats.next_deadline() {
                Some(deadline) => {
                    let wait = (deadline - time::now()).max(0) as u64;
                    batches.recv_timeout(std::time::Duration::from_micros(wait))
                }
                None => batches.recv().map_err(|_| RecvTimeoutError::Disconnected),
            }
        } else {
            batches.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(item) => {
                let (batch, parsed) = item?;
                for (i, event) in parsed.into_iter().enumerate() {
                    let (at, kind, tag, value) = match event {
                        Parsed::Event {
                            at,
                            kind,
                            tag,
                            value,
                        } => (at, kind, tag, value),
                        Parsed::Bad(reason) => {
                            bad.report(batch.location(i), reason)?;
                            continue;
                        }
                    };
                    // Before the time may close any period.
                    if let Err(why) = horizon.check(at) {
                        bad.report(batch.location(i), why)?;
                        continue;
                    }
                    emit(out, stats.close_until(at))?;
                    if let Err(late) = stats.add(at, kind.resolve(&batch), tag.as_deref(), value) {
                        bad.report(batch.location(i), late)?;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => emit(out, stats.close_until(time::now()))?,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    emit(out, stats.finish())?;
    out.flush()?;
    bad.finish()
}

/// One line after parsing (on a parse thread): an event, or why the line is bad.
enum Parsed {
    Event {
        at: Micros,
        kind: Text,
        tag: Option<String>,
        value: f64,
    },
    Bad(String),
}

/// The fields the shared fast path reads from a metric line (`tags` is listed so that a
/// duplicate of it is refused, as serde refuses it).
fn metric_fields() -> Fields {
    Fields::new(&[
        ("type", Want::Str),
        ("value", Want::Number),
        ("timestamp", Want::Str),
        ("tags", Want::Optional),
    ])
}

/// Parse a batch: the shared fast path ([`crate::fields`]) first, serde_json's derived reader
/// when it declines or when a tag is wanted (tags come in three shapes).
fn parse_batch(
    reader: &mut FieldReader,
    fast: &Fields,
    batch: &mut Batch,
    group_by: Option<&str>,
) -> Vec<Parsed> {
    (0..batch.len())
        .map(|i| {
            group_by
                .is_none()
                .then(|| parse_fast(reader, fast, batch, i))
                .flatten()
                .unwrap_or_else(|| match batch.line(i).text {
                    Ok(text) => parse_line(text, batch, group_by).unwrap_or_else(Parsed::Bad),
                    Err(e) => Parsed::Bad(e.to_string()),
                })
        })
        .collect()
}

/// The `i`-th line by the shared fast path, or `None` when serde must read it.
fn parse_fast(
    reader: &mut FieldReader,
    fast: &Fields,
    batch: &mut Batch,
    i: usize,
) -> Option<Parsed> {
    let (bytes, len, start) = batch.padded_mut(i).ok()?;
    let [kind, value, timestamp, _] = reader.read::<4>(bytes, len, fast)?;
    let (Found::Str(k0, k1), Found::Number(value), Found::Str(t0, t1)) = (kind, value, timestamp)
    else {
        return None;
    };
    let at = match time::parse_timestamp(batch.str_at(start + t0, start + t1)?) {
        Ok(at) => at,
        Err(reason) => return Some(Parsed::Bad(reason)),
    };
    Some(Parsed::Event {
        at,
        kind: Text::InBatch((start + k0) as u32, (start + k1) as u32),
        tag: None,
        value,
    })
}

fn parse_line(
    text: &str,
    batch: &Batch,
    group_by: Option<&str>,
) -> std::result::Result<Parsed, String> {
    let (event, tag) = match group_by {
        None => (parse_object::<Event<IgnoredAny>>(text)?, None),
        Some(key) => {
            let e = parse_object::<Event<Tags>>(text)?;
            let tag = e
                .tags
                .as_ref()
                .and_then(|t| t.get(key))
                .map(Cow::into_owned);
            (
                Event {
                    kind: e.kind,
                    value: e.value,
                    timestamp: e.timestamp,
                    tags: None,
                },
                tag,
            )
        }
    };
    let at = time::parse_timestamp(&event.timestamp)?;
    Ok(Parsed::Event {
        at,
        kind: Text::new(event.kind, batch),
        tag,
        value: event.value.0,
    })
}

fn emit(out: &mut Output<impl Write>, summaries: Vec<Summary>) -> Result<()> {
    if summaries.is_empty() {
        return Ok(());
    }
    for summary in &summaries {
        out.emit(summary)?;
    }
    out.flush()
}

/// One input event; `T` is the tags' type, `IgnoredAny` when nobody groups by them.
#[derive(Deserialize)]
struct Event<'a, T> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    value: Finite,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(default)]
    tags: Option<T>,
}

/// A JSON number that is finite (JSON cannot spell NaN, but 1e999 overflows to infinity).
struct Finite(f64);

impl<'de> Deserialize<'de> for Finite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Finite;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Finite, E> {
                Ok(Finite(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Finite, E> {
                Ok(Finite(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Finite, E> {
                if v.is_finite() {
                    Ok(Finite(v))
                } else {
                    Err(E::custom("value is not a finite number"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for Finite {
    fn default() -> Self {
        Finite(0.0)
    }
}

/// Tags as the seed writes them (`"company:1,sburbles:barf"`), as a list of `"k:v"`, or an object.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Tags {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
    Map(BTreeMap<String, serde_json::Value>),
}

impl Tags {
    fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        let from_pairs = |pair: &str| -> Option<String> {
            let (k, v) = pair.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        };
        match self {
            Tags::None => None,
            Tags::Text(text) => text.split(',').find_map(from_pairs).map(Cow::Owned),
            Tags::List(list) => list.iter().find_map(|p| from_pairs(p)).map(Cow::Owned),
            Tags::Map(map) => match map.get(key)? {
                serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
                serde_json::Value::Null => None,
                other => Some(Cow::Owned(other.to_string())),
            },
        }
    }
}

/// The summary line of one period.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    pub aggs: Vec<Agg>,
    pub period_start: Timestamp,
    pub period_end: Timestamp,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Agg {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<BTreeMap<String, Option<String>>>,
    pub min: Number,
    pub max: Number,
    pub mean: Number,
    pub median: Number,
}

/// An event that arrived after its period was written.
#[derive(Debug, PartialEq)]
pub struct Late {
    pub at: Micros,
    pub period_start: Micros,
}

impl fmt::Display for Late {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "late event at {}: its period starting {} was already written; dropped",
            Timestamp(self.at),
            Timestamp(self.period_start)
        )
    }
}

/// The pure core: open periods and their values, closed by the event-time watermark.
#[derive(Debug)]
pub struct Stats {
    period: i64,
    lateness: i64,
    open: BTreeMap<Micros, Period>,
    /// Every period starting before this has been written.
    closed_before: Micros,
    group_key: Option<String>,
    key: String,
}

#[derive(Debug, Default)]
struct Period {
    /// `type \0 tag` → values. A flat string key lets us look up without allocating.
    groups: FxHashMap<Box<str>, Vec<f64>>,
}

/// Separates the type from the tag value inside a group key; `\u{1}` marks "no tag".
const SEP: char = '\0';
const NO_TAG: &str = "\u{1}";

impl Stats {
    pub fn new(period: i64, lateness: i64) -> Self {
        Stats {
            period,
            lateness: lateness.max(0),
            open: BTreeMap::new(),
            closed_before: i64::MIN,
            group_key: None,
            key: String::new(),
        }
    }

    /// Name the tag key that `add`'s `tag` values belong to (for the output's `tag` object).
    pub fn with_group_key(mut self, key: impl Into<String>) -> Self {
        self.group_key = Some(key.into());
        self
    }

    /// Add one value at time `at`. Fails only when the event's period was already written.
    pub fn add(
        &mut self,
        at: Micros,
        kind: &str,
        tag: Option<&str>,
        value: f64,
    ) -> std::result::Result<(), Late> {
        let start = time::floor(at, self.period);
        if start < self.closed_before {
            return Err(Late {
                at,
                period_start: start,
            });
        }
        self.key.clear();
        self.key.push_str(kind);
        self.key.push(SEP);
        self.key.push_str(tag.unwrap_or(NO_TAG));
        let groups = &mut self.open.entry(start).or_default().groups;
        match groups.get_mut(self.key.as_str()) {
            Some(values) => values.push(value),
            None => {
                groups.insert(self.key.as_str().into(), vec![value]);
            }
        }
        Ok(())
    }

    /// Close and summarise every period that time `now` (event time or wall clock) has passed by
    /// more than the lateness.
    pub fn close_until(&mut self, now: Micros) -> Vec<Summary> {
        let watermark = now.saturating_sub(self.lateness);
        // Periods ending at or before the watermark close: start + period <= watermark.
        let limit = time::floor(watermark, self.period);
        if limit <= self.closed_before {
            return Vec::new();
        }
        self.closed_before = limit;
        let still_open = self.open.split_off(&self.closed_before);
        let closed = std::mem::replace(&mut self.open, still_open);
        closed
            .into_iter()
            .map(|(start, p)| self.summarise(start, p))
            .collect()
    }

    /// When the wall clock will close the oldest open period (for `--live`).
    pub fn next_deadline(&self) -> Option<Micros> {
        let (&start, _) = self.open.first_key_value()?;
        Some(start + self.period + self.lateness)
    }

    /// End of input: summarise everything still open.
    pub fn finish(mut self) -> Vec<Summary> {
        let open = std::mem::take(&mut self.open);
        open.into_iter()
            .map(|(start, p)| self.summarise(start, p))
            .collect()
    }

    fn summarise(&self, start: Micros, period: Period) -> Summary {
        let mut groups: Vec<(Box<str>, Vec<f64>)> = period.groups.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let aggs = groups
            .into_iter()
            .map(|(key, mut values)| {
                let (name, tag) = key.split_once(SEP).expect("group keys hold a separator");
                let tag = self.group_key.as_ref().map(|k| {
                    let value = (tag != NO_TAG).then(|| tag.to_string());
                    BTreeMap::from([(k.clone(), value)])
                });
                let a = aggregate(&mut values);
                Agg {
                    name: name.to_string(),
                    tag,
                    min: a.min,
                    max: a.max,
                    mean: a.mean,
                    median: a.median,
                }
            })
            .collect();
        Summary {
            aggs,
            period_start: Timestamp(start),
            period_end: Timestamp(start + self.period),
        }
    }
}

pub struct Aggregate {
    pub min: Number,
    pub max: Number,
    pub mean: Number,
    pub median: Number,
}

/// min, max, compensated mean and exact median of a non-empty set of values, in O(n).
/// The values are reordered.
pub fn aggregate(values: &mut [f64]) -> Aggregate {
    assert!(!values.is_empty(), "a group always holds a value");
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut sum = Sum::default();
    for &v in values.iter() {
        min = min.min(v);
        max = max.max(v);
        sum.add(v);
    }
    let n = values.len();
    let mean = (sum.total() / n as f64).clamp(min, max);
    let mid = n / 2;
    let (lower, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    let median = if n % 2 == 1 {
        upper
    } else {
        let lower = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let m = lower / 2.0 + upper / 2.0;
        // Halving first cannot overflow but can lose the last bit of two odd-ulp values.
        let exact = (lower + upper) / 2.0;
        if exact.is_finite() {
            exact
        } else {
            m
        }
    };
    Aggregate {
        min: Number(min),
        max: Number(max),
        mean: Number(mean),
        median: Number(median),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a parse thread made of a line, comparable across the two readings.
    type Outcome = std::result::Result<(Micros, String, f64), String>;

    fn outcome(parsed: Parsed, batch: &Batch) -> Outcome {
        match parsed {
            Parsed::Event {
                at, kind, value, ..
            } => Ok((at, kind.resolve(batch).to_string(), value)),
            Parsed::Bad(reason) => Err(reason),
        }
    }

    /// Each line of `text` by the fast path (when it answers) and by serde.
    fn both_ways(text: Vec<u8>) -> Vec<(Option<Outcome>, Outcome)> {
        let (fast, mut reader) = (metric_fields(), FieldReader::default());
        let mut out = Vec::new();
        for mut batch in crate::input::Reader::from_reader(std::io::Cursor::new(text)).batches() {
            for i in 0..batch.len() {
                let quick =
                    parse_fast(&mut reader, &fast, &mut batch, i).map(|p| outcome(p, &batch));
                let serde = match batch.line(i).text {
                    Ok(text) => parse_line(text, &batch, None).unwrap_or_else(Parsed::Bad),
                    Err(e) => Parsed::Bad(e.to_string()),
                };
                out.push((quick, outcome(serde, &batch)));
            }
        }
        out
    }

    fn metric_line() -> impl Strategy<Value = String> {
        use crate::fields::testing;
        let kind = prop_oneof![
            Just("\"request_duration\"".to_string()),
            testing::string(),
            testing::value()
        ];
        let value = prop_oneof![testing::number(), testing::value()];
        let tags = prop_oneof![
            Just("\"company:1,sburbles:barf\"".to_string()),
            testing::value()
        ];
        (kind, value, testing::timestamp(), tags).prop_flat_map(|(kind, value, ts, tags)| {
            testing::object(vec![
                ("type".into(), kind),
                ("value".into(), value),
                ("timestamp".into(), ts),
                ("tags".into(), tags),
            ])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The fast path answers only as serde would: the same event, or the same message.
        #[test]
        fn the_fast_path_agrees_with_serde(line in metric_line().prop_flat_map(crate::fields::testing::mutated)) {
            for (fast, serde) in both_ways(line) {
                if let Some(fast) = fast {
                    prop_assert_eq!(fast, serde);
                }
            }
        }
    }

    #[test]
    fn the_fast_path_reads_seed_lines_and_refuses_duplicates() {
        let seed = br#"{"type": "request_duration", "value": 3245, "timestamp": "2017-01-03T15:53:00.000236Z", "tags": "company:31,sburbles:barf"}"#;
        let got = both_ways([&seed[..], b"\n"].concat());
        assert_eq!(got.len(), 1);
        assert!(got[0].0.is_some(), "the fast path reads a seed line");
        assert_eq!(got[0].0, Some(got[0].1.clone()));
        let dup =
            br#"{"type":"a","value":1,"timestamp":"2017-01-03T15:53:00Z","tags":"x","tags":"y"}"#;
        let got = both_ways([&dup[..], b"\n"].concat());
        assert_eq!(got[0].0, None, "a duplicate field is left to serde");
        assert!(got[0].1.is_err(), "which refuses it: {:?}", got[0].1);
    }

    const MIN: i64 = 60 * time::MICROS_PER_SEC;

    fn ts(s: &str) -> Micros {
        time::parse_timestamp(s).unwrap()
    }

    #[test]
    fn the_seed_example() {
        let mut stats = Stats::new(MIN, 0);
        for (t, v) in [
            ("2017-01-03T15:53:01.494821Z", 10.0),
            ("2017-01-03T15:53:05.494122Z", 20.0),
            ("2017-01-03T15:53:17.494145Z", 30.0),
            ("2017-01-03T15:53:42.000000Z", 40.0),
        ] {
            assert!(stats.close_until(ts(t)).is_empty());
            stats.add(ts(t), "request_duration", None, v).unwrap();
        }
        let out = stats.finish();
        assert_eq!(
            serde_json::to_string(&out[0]).unwrap(),
            r#"{"aggs":[{"name":"request_duration","min":10,"max":40,"mean":25,"median":25}],"period_start":"2017-01-03T15:53:00.000000Z","period_end":"2017-01-03T15:54:00.000000Z"}"#
        );
    }

    #[test]
    fn a_period_closes_at_the_first_event_of_a_later_one_and_late_events_are_refused() {
        let mut stats = Stats::new(MIN, 0);
        stats
            .add(ts("2017-01-03T15:53:59.999999Z"), "a", None, 1.0)
            .unwrap();
        assert!(stats
            .close_until(ts("2017-01-03T15:53:59.999999Z"))
            .is_empty());
        let closed = stats.close_until(ts("2017-01-03T15:54:00Z"));
        assert_eq!(closed.len(), 1);
        stats
            .add(ts("2017-01-03T15:54:00Z"), "a", None, 2.0)
            .unwrap();
        let late = stats
            .add(ts("2017-01-03T15:53:30Z"), "a", None, 3.0)
            .unwrap_err();
        assert_eq!(late.period_start, ts("2017-01-03T15:53:00Z"));
    }

    #[test]
    fn lateness_keeps_a_period_open() {
        let mut stats = Stats::new(MIN, 5 * time::MICROS_PER_SEC);
        stats
            .add(ts("2017-01-03T15:53:59Z"), "a", None, 1.0)
            .unwrap();
        assert!(stats.close_until(ts("2017-01-03T15:54:04Z")).is_empty());
        stats
            .add(ts("2017-01-03T15:53:58Z"), "a", None, 3.0)
            .unwrap();
        let closed = stats.close_until(ts("2017-01-03T15:54:05Z"));
        assert_eq!(closed[0].aggs[0].mean, Number(2.0));
    }

    #[test]
    fn types_are_ordered_by_name_and_even_medians_average() {
        let mut stats = Stats::new(MIN, 0);
        let t = ts("2017-01-03T15:53:00Z");
        for (k, v) in [("b", 1.0), ("a", 4.0), ("a", 1.0), ("a", 2.0), ("a", 3.0)] {
            stats.add(t, k, None, v).unwrap();
        }
        let out = stats.finish();
        let names: Vec<_> = out[0].aggs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(out[0].aggs[0].median, Number(2.5));
    }

    #[test]
    fn tags_are_found_in_every_shape() {
        let text = Tags::Text("company:1,sburbles:barf".into());
        assert_eq!(text.get("sburbles").as_deref(), Some("barf"));
        let list = Tags::List(vec!["company:7".into()]);
        assert_eq!(list.get("company").as_deref(), Some("7"));
        assert_eq!(list.get("nope"), None);
        let map = Tags::Map(BTreeMap::from([(
            "company".to_string(),
            serde_json::json!(3),
        )]));
        assert_eq!(map.get("company").as_deref(), Some("3"));
    }

    /// The oracle: collect everything per period and type, sort, compute.
    fn oracle(
        events: &[(Micros, u8, f64)],
        period: i64,
    ) -> Vec<(Micros, String, f64, f64, f64, f64)> {
        let mut groups: BTreeMap<(Micros, String), Vec<f64>> = BTreeMap::new();
        for &(t, k, v) in events {
            groups
                .entry((time::floor(t, period), format!("t{}", k)))
                .or_default()
                .push(v);
        }
        groups
            .into_iter()
            .map(|((start, name), mut vs)| {
                vs.sort_by(f64::total_cmp);
                let n = vs.len();
                let median = if n % 2 == 1 {
                    vs[n / 2]
                } else {
                    (vs[n / 2 - 1] + vs[n / 2]) / 2.0
                };
                let mean = vs.iter().sum::<f64>() / n as f64;
                (start, name, vs[0], vs[n - 1], mean, median)
            })
            .collect()
    }

    fn stream() -> impl Strategy<Value = Vec<(Micros, u8, f64)>> {
        // Steps of 0 (duplicates), 1 µs and a minute less/more than 1 µs (period edges:
        // :59.999999 against :00.000000), ordinary steps, and gaps longer than a period.
        let step = prop_oneof![
            Just(0i64),
            Just(1i64),
            Just(59_999_999i64),
            Just(60_000_000i64),
            0i64..2_000_000,
            50_000_000i64..200_000_000
        ];
        let value = prop_oneof![(-1000i64..1000).prop_map(|v| v as f64), -1e6f64..1e6];
        // Starts on a minute boundary or 1 µs before one, far before and after 1970.
        let start = (-3_000_000i64..3_000_000, prop::bool::ANY)
            .prop_map(|(m, edge)| m * MIN - i64::from(edge));
        (start, prop::collection::vec((step, 0u8..4, value), 1..300)).prop_map(|(start, steps)| {
            let mut t = start;
            steps
                .into_iter()
                .map(|(dt, k, v)| {
                    t += dt;
                    (t, k, v)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn matches_the_oracle_on_sorted_streams(events in stream(), period_s in prop::sample::select(vec![1i64, 10, 60, 3600])) {
            let period = period_s * time::MICROS_PER_SEC;
            let mut stats = Stats::new(period, 0);
            let mut got = Vec::new();
            for &(t, k, v) in &events {
                got.extend(stats.close_until(t));
                let name = format!("t{k}");
                prop_assert!(stats.add(t, &name, None, v).is_ok());
            }
            got.extend(stats.finish());
            let flat: Vec<_> = got
                .iter()
                .flat_map(|s| s.aggs.iter().map(move |a| (s.period_start.0, a)))
                .collect();
            let want = oracle(&events, period);
            prop_assert_eq!(flat.len(), want.len());
            for ((start, a), w) in flat.iter().zip(&want) {
                prop_assert_eq!(*start, w.0);
                prop_assert_eq!(&a.name, &w.1);
                prop_assert_eq!(a.min.0, w.2);
                prop_assert_eq!(a.max.0, w.3);
                prop_assert!((a.mean.0 - w.4).abs() <= 1e-9 * w.4.abs().max(1.0));
                prop_assert_eq!(a.median.0, w.5);
                prop_assert!(a.min.0 <= a.median.0 && a.median.0 <= a.max.0);
                prop_assert!(a.min.0 <= a.mean.0 && a.mean.0 <= a.max.0);
            }
        }

        #[test]
        fn shuffled_within_lateness_gives_the_same_answer(events in stream(), seed in any::<u64>()) {
            // Reorder each event by at most `lateness` and check nothing is late or lost.
            let lateness = 3 * time::MICROS_PER_SEC;
            let mut shuffled = events.clone();
            let mut x = seed | 1;
            for i in 1..shuffled.len() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                if x % 3 == 0 && shuffled[i].0 - shuffled[i - 1].0 <= lateness {
                    shuffled.swap(i, i - 1);
                }
            }
            let mut stats = Stats::new(MIN, lateness);
            let mut got = Vec::new();
            let mut max_seen = i64::MIN;
            for &(t, k, v) in &shuffled {
                max_seen = max_seen.max(t);
                got.extend(stats.close_until(max_seen));
                let name = format!("t{k}");
                prop_assert!(stats.add(t, &name, None, v).is_ok());
            }
            got.extend(stats.finish());
            let count: usize = got.iter().map(|s| s.aggs.len()).sum();
            prop_assert_eq!(count, oracle(&events, MIN).len());
        }
    }
}

pub use cli::Args;

/// The command line of `minute-stats`: its doc comments are `minute-stats --help`.
mod cli {

    use crate::input::InputArgs;
    use crate::minute_stats::{self, Config};
    use crate::time::{Duration, MaxFutureArg};
    use clap::Parser;

    /// Per-period statistics of metric events.
    ///
    /// Reads events `{"type","value","timestamp","tags"}` sorted by timestamp and writes, for every
    /// period (default one minute) and every type seen in it, the min, max, mean and exact median of
    /// the values. A period's line is written as soon as an event of a later period arrives, so it
    /// works on a live stream as well as on a file.
    #[derive(Parser, Debug)]
    #[command(
        name = "minute-stats",
        version,
        after_help = "\
Examples:
  minute-stats events.jsonl
  gen-events --profile metrics --rate 1000 | minute-stats --period 10s | jq -c '.aggs[]'
  tail -f app-metrics.jsonl | minute-stats --live --lateness 2s --group-by-tag company

Output, one line per non-empty period:
  {\"aggs\":[{\"name\":\"request_duration\",\"min\":10,\"max\":40,\"mean\":25,\"median\":25}],\
\"period_start\":\"2017-01-03T15:53:00.000000Z\",\"period_end\":\"2017-01-03T15:54:00.000000Z\"}"
    )]
    pub struct Args {
        /// Length of a period, aligned to the epoch in UTC (e.g. 10s, 1m, 1h).
        #[arg(help_heading = "Statistics", long, default_value = "1m")]
        period: Duration,

        /// Accept events this far out of order; later ones are reported and dropped.
        #[arg(help_heading = "Statistics", long, default_value = "0s")]
        lateness: Duration,

        #[command(flatten)]
        max_future: MaxFutureArg,

        /// Also close periods by the wall clock (period end + lateness) while input pauses.
        #[arg(help_heading = "Statistics", long)]
        live: bool,

        /// Split each type's aggregate by the value of this tag (e.g. company).
        #[arg(help_heading = "Statistics", long, value_name = "KEY")]
        group_by_tag: Option<String>,

        #[command(flatten)]
        input: InputArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "minute-stats";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = Config {
                period: args.period,
                lateness: args.lateness,
                max_future: args.max_future.max_future,
                live: args.live,
                group_by_tag: args.group_by_tag,
                input: args.input,
            };
            minute_stats::run(&config, process.output())
        }
    }
}
