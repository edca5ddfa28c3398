//! Time: RFC 3339 timestamps as microseconds since the Unix epoch (UTC), and durations.
//!
//! Input timestamps accept any offset (`Z`, `+05:30`, `-03:00`) and any fraction precision; digits
//! past microseconds are truncated toward the past, so floor-aligned periods stay exact. Output
//! timestamps always read `2017-01-03T15:53:00.000000Z`. Periods are aligned with
//! [`floor`], which is exact for any date, before 1970 included.
//!
//! Durations on the command line read `250ms`, `5s`, `1m`, `2h`, `1d`, `500us`, fractions (`1.5s`)
//! and sums (`1m30s`).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;

/// Parse an RFC 3339 timestamp into microseconds since the epoch, in UTC.
pub fn parse_timestamp(s: &str) -> Result<Micros, String> {
    parse_fast(s.as_bytes())
        .ok_or(())
        .or_else(|()| parse_slow(s))
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

fn is_leap(year: i64) -> bool {
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
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
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

    proptest! {
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
