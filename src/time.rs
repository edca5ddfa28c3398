//! Time: RFC 3339 timestamps as microseconds since the Unix epoch (UTC), and durations.
//!
//! Input timestamps accept any offset (`Z`, `+05:30`, `-03:00`) and any fraction precision; digits
//! past microseconds are truncated toward the past, so floor-aligned periods stay exact. Output
//! timestamps always read `2017-01-03T15:53:00.000000Z`. Periods are aligned with
//! [`floor`], which is exact for any date, before 1970 included.
//!
//! Durations on the command line read `250ms`, `5s`, `1m`, `2h`, `1d`, `500us`, fractions (`1.5s`)
//! and sums (`1m30s`).
//!
//! Timestamps name instants from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z, the years
//! four digits can print: [`parse_timestamp`] refuses anything else (after converting the offset,
//! so `9999-12-31T23:30:00-01:00` is refused too).
//!
//! **The event-time rule** ([`Horizon`]), one for every program that keeps event time: an event
//! time later than the wall clock plus `--max-future` ([`MaxFuture`], default 5 minutes) is a bad
//! line, and a bad line never moves a program's clock. Without it one wrong clock upstream (or
//! one hostile line stamped 9999-12-31) would carry the program's "now" so far ahead that every
//! later good event is refused as late. `--max-future off` is the escape hatch for simulated or
//! replayed data stamped ahead of the wall clock. The same check refuses an event whose outputs
//! (its period, its window) would reach outside the years 0000–9999.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Serialize, Serializer};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;

/// The earliest instant a timestamp can name: 0000-01-01T00:00:00Z.
pub const EARLIEST: Micros = days_from_civil(0, 1, 1) * 86_400 * MICROS_PER_SEC;

/// The latest instant a timestamp can name: 9999-12-31T23:59:59.999999Z.
pub const LATEST: Micros = days_from_civil(10_000, 1, 1) * 86_400 * MICROS_PER_SEC - 1;

/// Parse an RFC 3339 timestamp into microseconds since the epoch, in UTC. Instants outside the
/// years 0000–9999 in UTC are refused: no output could print them with four digits.
pub fn parse_timestamp(s: &str) -> Result<Micros, String> {
    let t = parse_fast(s.as_bytes())
        .ok_or(())
        .or_else(|()| parse_slow(s))?;
    if !(EARLIEST..=LATEST).contains(&t) {
        return Err(format!(
            "timestamp {s:?} is outside the years 0000 to 9999 in UTC"
        ));
    }
    Ok(t)
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, without allocating.
fn parse_fast(b: &[u8]) -> Option<Micros> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // A leap second (:60) is left to chrono, which knows what to make of it.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset_secs = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let m = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * MICROS_PER_SEC + micros)
}

fn parse_slow(s: &str) -> Result<Micros, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| format!("timestamp {s:?} is not RFC 3339 ({e})"))?;
    let secs = t.timestamp();
    let micros = i64::from(t.timestamp_subsec_micros());
    Ok(secs * MICROS_PER_SEC + micros)
}

const fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01 (inverse of
/// `days_from_civil`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Write `2017-01-03T15:53:00.000000Z` into `out`.
pub fn write_timestamp(out: &mut impl fmt::Write, t: Micros) -> fmt::Result {
    let secs = t.div_euclid(MICROS_PER_SEC);
    let micros = t.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

pub fn format_timestamp(t: Micros) -> String {
    let mut s = String::with_capacity(27);
    write_timestamp(&mut s, t).expect("writing to a String");
    s
}

/// The start of the period of length `period` (µs) that holds `t`, aligned to the epoch.
pub fn floor(t: Micros, period: i64) -> Micros {
    t - t.rem_euclid(period)
}

/// The current wall-clock time.
pub fn now() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    d.as_micros() as Micros
}

/// The value of `--max-future`: how far past the wall clock an event time may lie, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxFuture {
    /// No limit (simulated or replayed data stamped ahead of the wall clock).
    Off,
    Within(Duration),
}

impl MaxFuture {
    /// Five minutes: well past the skew of hosts that keep time with NTP (milliseconds) and of
    /// a producer that batches for a while before it sends, small enough that one wrong stamp
    /// can hold a program's clock ahead by minutes at most. It is the clock skew Kerberos
    /// tolerates by default, for the same reason.
    pub const DEFAULT: MaxFuture = MaxFuture::Within(Duration(std::time::Duration::from_secs(300)));

    /// The limit in µs, `None` when off.
    pub fn micros(self) -> Option<Micros> {
        match self {
            MaxFuture::Off => None,
            MaxFuture::Within(d) => Some(d.micros()),
        }
    }
}

impl Default for MaxFuture {
    fn default() -> Self {
        MaxFuture::DEFAULT
    }
}

impl FromStr for MaxFuture {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "off" {
            return Ok(MaxFuture::Off);
        }
        s.parse::<Duration>()
            .map(MaxFuture::Within)
            .map_err(|e| format!("{e}; or off for no limit"))
    }
}

impl fmt::Display for MaxFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxFuture::Off => f.write_str("off"),
            MaxFuture::Within(d) => d.fmt(f),
        }
    }
}

/// The `--max-future` flag, the same in every program that keeps event time; flatten it into
/// the program's `Args`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
#[command(next_help_heading = "Input")]
pub struct MaxFutureArg {
    /// An event time later than the wall clock plus this is a bad line (reported with its
    /// number, skipped, and it never moves the clock). 5m covers the clock skew of NTP-synced
    /// hosts many times over; `off` accepts any time, for simulated or replayed data stamped
    /// ahead of the wall clock.
    #[arg(long, value_name = "DURATION|off", default_value_t = MaxFuture::DEFAULT)]
    pub max_future: MaxFuture,
}

/// The event-time rule of the module doc, built once per program from `--max-future` and
/// asked once per event time, before that time may move any clock. `check` is one comparison
/// in the common case (the wall clock is read again only for a time past the last horizon
/// seen), takes `&self` and is `Sync`, so any thread may ask.
#[derive(Debug)]
pub struct Horizon {
    limit: Option<Micros>,
    /// Every time up to this is within the limit without reading the clock: the wall clock as
    /// last read, plus the limit. It only grows (were the wall clock stepped back, times the
    /// old clock allowed stay allowed until it catches up).
    known_good: AtomicI64,
    /// Event times outside these bounds would put the program's outputs (a period's end, a
    /// window's start) outside the years 0000–9999.
    earliest: Micros,
    latest: Micros,
}

impl Clone for Horizon {
    fn clone(&self) -> Self {
        Horizon {
            limit: self.limit,
            known_good: AtomicI64::new(self.known_good.load(Ordering::Relaxed)),
            earliest: self.earliest,
            latest: self.latest,
        }
    }
}

impl Horizon {
    pub fn new(max: MaxFuture) -> Self {
        Horizon {
            limit: max.micros(),
            known_good: AtomicI64::new(i64::MIN),
            earliest: EARLIEST,
            latest: LATEST,
        }
    }

    /// A program whose outputs for an event at `t` reach from `t - before` to `t + after` (a
    /// window's start, a period's end) refuses events whose reach leaves the years 0000–9999.
    pub fn reach(mut self, before: Micros, after: Micros) -> Self {
        self.earliest = EARLIEST.saturating_add(before.max(0));
        self.latest = LATEST.saturating_sub(after.max(0));
        self
    }

    /// The limit in µs (`None`: `--max-future off`).
    pub fn limit(&self) -> Option<Micros> {
        self.limit
    }

    /// Whether the event time `at` may be used, or why not (a bad line).
    pub fn check(&self, at: Micros) -> Result<(), BadTime> {
        if at <= self.known_good.load(Ordering::Relaxed) && at >= self.earliest {
            return Ok(());
        }
        self.check_slow(at)
    }

    #[cold]
    fn check_slow(&self, at: Micros) -> Result<(), BadTime> {
        if let Some(limit) = self.limit {
            let now = now();
            let horizon = now.saturating_add(limit);
            self.known_good
                .fetch_max(horizon.min(self.latest), Ordering::Relaxed);
            if at > horizon {
                return Err(BadTime::Ahead {
                    at,
                    now,
                    limit: MaxFuture::Within(Duration(std::time::Duration::from_micros(
                        limit as u64,
                    ))),
                });
            }
        }
        if at < self.earliest || at > self.latest {
            return Err(BadTime::OutOfRange {
                at,
                late: at > self.latest,
            });
        }
        if self.limit.is_none() {
            self.known_good.store(self.latest, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The latest time allowed right now (state loaded from disk is held to it too).
    pub fn latest_now(&self) -> Micros {
        match self.limit {
            None => self.latest,
            Some(limit) => now().saturating_add(limit).min(self.latest),
        }
    }
}

/// Why an event time was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTime {
    /// Later than the wall clock `now` plus `limit`.
    Ahead {
        at: Micros,
        now: Micros,
        limit: MaxFuture,
    },
    /// So close to the ends of the years 0000–9999 that an output for it could not be printed
    /// (`late`: at the far end).
    OutOfRange { at: Micros, late: bool },
}

impl fmt::Display for BadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadTime::Ahead { at, now, limit } => write!(
                f,
                "event time {} is {} ahead of the wall clock ({}), more than --max-future {limit} \
                 allows; skipped, the clock does not move (simulated or replayed data ahead of \
                 the clock: --max-future off)",
                Timestamp(at),
                roughly(at - now),
                Timestamp(now)
            ),
            BadTime::OutOfRange { at, late: true } => write!(
                f,
                "event time {} is too close to the end of year 9999: its period would end past \
                 what a timestamp can print; skipped",
                Timestamp(at)
            ),
            BadTime::OutOfRange { at, late: false } => write!(
                f,
                "event time {} is too close to the start of year 0000: its window would start \
                 before what a timestamp can print; skipped",
                Timestamp(at)
            ),
        }
    }
}

/// A span for people: `3 years`, `12 days`, `5h`, `2m30s`, `4s`.
fn roughly(us: Micros) -> String {
    let secs = us.max(0) / MICROS_PER_SEC;
    let (day, year) = (86_400, 365 * 86_400 + 86_400 / 4);
    match secs {
        s if s >= 2 * year => format!("{} years", s / year),
        s if s >= 2 * day => format!("{} days", s / day),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A timestamp that serializes as `"2017-01-03T15:53:00.000000Z"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub Micros);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_timestamp(f, self.0)
    }
}

/// Reads any RFC 3339 timestamp (as [`parse_timestamp`] does).
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        parse_timestamp(&s)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_timestamp(s).map(Timestamp)
    }
}

/// A command-line duration (`250ms`, `5s`, `1m`, `2h`); see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn micros(self) -> i64 {
        self.0.as_micros() as i64
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(Duration)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        let units = [
            (86_400_000_000u128, "d"),
            (3_600_000_000, "h"),
            (60_000_000, "m"),
            (1_000_000, "s"),
            (1_000, "ms"),
        ];
        for (size, unit) in units {
            if us >= size && us.is_multiple_of(size) {
                return write!(f, "{}{unit}", us / size);
            }
        }
        write!(f, "{us}us")
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parse `250ms`, `5s`, `1.5m`, `1h30m`, … into a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. 250ms, 5s, 1m, 2h)".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "bad duration {s:?} (expected e.g. 250ms, 5s, 1m, 2h)"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number in duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let micros_per_unit = match &rest[..unit_len] {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            "" => {
                return Err(format!(
                    "duration {s:?} needs a unit: us, ms, s, m, h or d (e.g. 5s)"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {s:?} (use us, ms, s, m, h, d)"
                ))
            }
        };
        total += value * micros_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e17 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok(std::time::Duration::from_micros(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_seed_timestamp() {
        let t = parse_timestamp("2017-01-03T15:53:01.494821Z").unwrap();
        assert_eq!(format_timestamp(t), "2017-01-03T15:53:01.494821Z");
        assert_eq!(
            format_timestamp(floor(t, 60 * MICROS_PER_SEC)),
            "2017-01-03T15:53:00.000000Z"
        );
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let t = parse_timestamp("2017-01-03T12:53:01-03:00").unwrap();
        assert_eq!(format_timestamp(t), "2017-01-03T15:53:01.000000Z");
        let t = parse_timestamp("2017-01-03T21:23:01.5+05:30").unwrap();
        assert_eq!(format_timestamp(t), "2017-01-03T15:53:01.500000Z");
    }

    #[test]
    fn before_1970_floors_down() {
        let t = parse_timestamp("1969-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(t, -1);
        assert_eq!(
            format_timestamp(floor(t, 60 * MICROS_PER_SEC)),
            "1969-12-31T23:59:00.000000Z"
        );
    }

    #[test]
    fn extra_precision_truncates_and_bad_text_is_an_error() {
        let t = parse_timestamp("2019-12-08T06:42:57.289123999Z").unwrap();
        assert_eq!(format_timestamp(t), "2019-12-08T06:42:57.289123Z");
        assert!(parse_timestamp("2019-02-30T00:00:00Z").is_err());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2019-12-08T06:42:57").is_err());
    }

    #[test]
    fn durations() {
        let d = |s: &str| parse_duration(s).unwrap().as_micros();
        assert_eq!(d("250ms"), 250_000);
        assert_eq!(d("5s"), 5_000_000);
        assert_eq!(d("1m"), 60_000_000);
        assert_eq!(d("2h"), 7_200_000_000);
        assert_eq!(d("1.5s"), 1_500_000);
        assert_eq!(d("1m30s"), 90_000_000);
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(Duration(parse_duration("90s").unwrap()).to_string(), "90s");
        assert_eq!(Duration(parse_duration("2h").unwrap()).to_string(), "2h");
    }

    #[test]
    fn only_four_digit_years_parse() {
        assert_eq!(format_timestamp(EARLIEST), "0000-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(LATEST), "9999-12-31T23:59:59.999999Z");
        assert_eq!(parse_timestamp("9999-12-31T23:59:59.999999Z"), Ok(LATEST));
        assert_eq!(parse_timestamp("0000-01-01T00:00:00Z"), Ok(EARLIEST));
        // In range as written, out of it in UTC.
        assert!(parse_timestamp("9999-12-31T23:30:00-01:00").is_err());
        assert!(parse_timestamp("0000-01-01T00:30:00+01:00").is_err());
        assert!(parse_timestamp("+10000-01-01T00:00:00Z").is_err());
        assert!(parse_timestamp("10000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn the_horizon_refuses_past_the_limit_and_near_the_ends_of_time() {
        let five = Horizon::new(MaxFuture::DEFAULT);
        let wall = now();
        five.check(wall).unwrap();
        five.check(wall + 299 * MICROS_PER_SEC).unwrap();
        let err = five.check(wall + 400 * MICROS_PER_SEC).unwrap_err();
        assert!(matches!(err, BadTime::Ahead { .. }), "{err}");
        assert!(err.to_string().contains("--max-future 5m"), "{err}");
        // A refusal does not widen what is known good.
        assert!(five.check(wall + 400 * MICROS_PER_SEC).is_err());
        five.check(parse_timestamp("2017-01-03T15:53:00Z").unwrap())
            .unwrap();
        let off = Horizon::new(MaxFuture::Off).reach(60 * MICROS_PER_SEC, 10 * MICROS_PER_SEC);
        off.check(parse_timestamp("9999-12-31T23:59:49Z").unwrap())
            .unwrap();
        let end = off.check(parse_timestamp("9999-12-31T23:59:51Z").unwrap());
        assert!(matches!(end, Err(BadTime::OutOfRange { late: true, .. })));
        let start = off.check(parse_timestamp("0000-01-01T00:00:30Z").unwrap());
        assert!(matches!(
            start,
            Err(BadTime::OutOfRange { late: false, .. })
        ));
        off.check(parse_timestamp("0000-01-01T00:01:00Z").unwrap())
            .unwrap();
        assert_eq!("off".parse::<MaxFuture>(), Ok(MaxFuture::Off));
        assert_eq!("5m".parse::<MaxFuture>(), Ok(MaxFuture::DEFAULT));
        assert_eq!(MaxFuture::DEFAULT.to_string(), "5m");
        assert!("soon".parse::<MaxFuture>().unwrap_err().contains("or off"));
    }

    proptest! {
        /// Whatever parses prints back with a four-digit year, whatever its offset.
        #[test]
        fn every_parsed_time_prints_four_digits(year in 0i64..=9999, day in 0i64..365, secs in 0i64..86_400, off_min in -1439i64..1439) {
            let (y, m, d) = civil_from_days(days_from_civil(year, 1, 1) + day);
            let sign = if off_min < 0 { '-' } else { '+' };
            let text = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                secs / 3600, secs / 60 % 60, secs % 60, off_min.abs() / 60, off_min.abs() % 60
            );
            if let Ok(t) = parse_timestamp(&text) {
                let out = format_timestamp(t);
                prop_assert!(out.as_bytes()[4] == b'-' && out[..4].bytes().all(|b| b.is_ascii_digit()), "{} -> {}", text, out);
            }
        }

        #[test]
        fn fast_parser_agrees_with_chrono(secs in -5_000_000_000i64..5_000_000_000i64, micros in 0i64..1_000_000, off_min in -1439i64..1439) {
            let t = secs * MICROS_PER_SEC + micros;
            let offset = chrono::FixedOffset::east_opt((off_min * 60) as i32).unwrap();
            let dt = chrono::DateTime::from_timestamp_micros(t).unwrap().with_timezone(&offset);
            let text = dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            prop_assert_eq!(parse_fast(text.as_bytes()), Some(t));
            prop_assert_eq!(format_timestamp(t), chrono::DateTime::from_timestamp_micros(t).unwrap().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        }
    }
}
