//! The pure core: one server's load in two fixed rings, 60 one-minute and 24 one-hour buckets.
//!
//! A bucket holds the sum and count of the loads recorded in its minute (or hour) and the
//! minute (hour) it holds them for, so a slot that still holds an expired period is recognised
//! and reused without any background sweep: the clock only matters when a record is added and
//! when a report is read.
//!
//! Loads are kept as whole millionths ([`Load::from_f64`]), so a bucket's sum is an exact integer
//! that does not depend on the order the records arrived in: concurrent posters, a replay in
//! another order and a snapshot round trip all give the very same averages.
//!
//! The window at time `now`: the minutes `floor(now, 1m) - 59m ..= floor(now, 1m)` and the hours
//! `floor(now, 1h) - 23h ..= floor(now, 1h)`. A record is accepted when its hour is in the hour
//! window (it counts towards the last day); it also enters the minute ring when its minute is in
//! the minute window. Records may arrive in any order within the window.

use crate::time::{self, Micros, MICROS_PER_SEC};

pub const MINUTE: Micros = 60 * MICROS_PER_SEC;
pub const HOUR: Micros = 60 * MINUTE;
pub const MINUTES: usize = 60;
pub const HOURS: usize = 24;

/// Loads are stored in units of one millionth.
pub const UNITS_PER_LOAD: f64 = 1e6;

/// The largest load accepted; anything above is taken for a broken client, not a busy server.
pub const MAX_LOAD: f64 = 1e6;

/// One load value in whole millionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Load(pub u64);

impl Load {
    /// `None` unless `0 <= v <= MAX_LOAD`; digits past the sixth decimal are rounded.
    pub fn from_f64(v: f64) -> Option<Load> {
        if !(0.0..=MAX_LOAD).contains(&v) {
            return None;
        }
        Some(Load((v * UNITS_PER_LOAD).round() as u64))
    }
}

/// The sums and count of one minute or one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    /// The period's start, in periods since the epoch (minutes or hours).
    pub period: i64,
    pub count: u64,
    pub cpu: u128,
    pub ram: u128,
}

impl Bucket {
    /// Average CPU and RAM of the bucket (it must not be empty).
    pub fn averages(&self) -> (f64, f64) {
        (average(self.cpu, self.count), average(self.ram, self.count))
    }
}

/// A sum of millionths over `count` records, as a load.
pub fn average(sum: u128, count: u64) -> f64 {
    sum as f64 / count as f64 / UNITS_PER_LOAD
}

/// Why a record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Before the hour window of the clock (or, at the window's edge, its minute slot already
    /// holds a minute an hour newer, which only a record from the future can have put there).
    TooOld,
}

/// One server's rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLoad {
    minutes: [Bucket; MINUTES],
    hours: [Bucket; HOURS],
}

impl Default for ServerLoad {
    fn default() -> Self {
        ServerLoad::new()
    }
}

/// A report's rows: period start, average CPU, average RAM; oldest first, non-empty only.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub minutes: Vec<(Micros, f64, f64)>,
    pub hours: Vec<(Micros, f64, f64)>,
}

fn empty_bucket() -> Bucket {
    // No real period is i64::MIN, so an unused slot never matches.
    Bucket {
        period: i64::MIN,
        ..Bucket::default()
    }
}

fn slot(period: i64, len: usize) -> usize {
    period.rem_euclid(len as i64) as usize
}

impl ServerLoad {
    pub fn new() -> Self {
        ServerLoad {
            minutes: [empty_bucket(); MINUTES],
            hours: [empty_bucket(); HOURS],
        }
    }

    /// Add one record taken at `at`, with the clock at `now`.
    pub fn add(&mut self, at: Micros, cpu: Load, ram: Load, now: Micros) -> Result<(), Refused> {
        let minute = time::floor(at, MINUTE) / MINUTE;
        let hour = time::floor(at, HOUR) / HOUR;
        let now_minute = time::floor(now, MINUTE) / MINUTE;
        let now_hour = time::floor(now, HOUR) / HOUR;
        if hour < now_hour - (HOURS as i64 - 1) {
            return Err(Refused::TooOld);
        }
        let in_minutes = minute >= now_minute - (MINUTES as i64 - 1);
        // Check both rings before touching either: a record is stored whole or not at all.
        if in_minutes && self.minutes[slot(minute, MINUTES)].period > minute {
            return Err(Refused::TooOld);
        }
        if self.hours[slot(hour, HOURS)].period > hour {
            return Err(Refused::TooOld);
        }
        if in_minutes {
            fill(&mut self.minutes[slot(minute, MINUTES)], minute, cpu, ram);
        }
        fill(&mut self.hours[slot(hour, HOURS)], hour, cpu, ram);
        Ok(())
    }

    /// The non-empty minutes and hours of the window at `now`, oldest first.
    pub fn rows(&self, now: Micros) -> Rows {
        let now_minute = time::floor(now, MINUTE) / MINUTE;
        let now_hour = time::floor(now, HOUR) / HOUR;
        Rows {
            minutes: window(&self.minutes, now_minute, MINUTE),
            hours: window(&self.hours, now_hour, HOUR),
        }
    }

    /// Whether nothing of this server is left in the day at `now`: no hour of the last 24 (nor a
    /// later one) holds a record. Such a server reports nothing and can be forgotten.
    pub fn is_empty_at(&self, now: Micros) -> bool {
        let oldest = time::floor(now, HOUR) / HOUR - (HOURS as i64 - 1);
        !self
            .hours
            .iter()
            .any(|b| b.count > 0 && b.period != i64::MIN && b.period >= oldest)
    }

    /// Every stored bucket (for snapshots), minutes then hours, unused slots left out.
    pub fn buckets(&self) -> (Vec<Bucket>, Vec<Bucket>) {
        let used = |b: &&Bucket| b.period != i64::MIN && b.count > 0;
        (
            self.minutes.iter().filter(used).copied().collect(),
            self.hours.iter().filter(used).copied().collect(),
        )
    }

    /// Rebuild from stored buckets (a snapshot). Two buckets for the same slot keep the newer.
    pub fn from_buckets(minutes: &[Bucket], hours: &[Bucket]) -> Self {
        let mut load = ServerLoad::new();
        for b in minutes {
            let s = &mut load.minutes[slot(b.period, MINUTES)];
            if b.period > s.period {
                *s = *b;
            }
        }
        for b in hours {
            let s = &mut load.hours[slot(b.period, HOURS)];
            if b.period > s.period {
                *s = *b;
            }
        }
        load
    }
}

fn fill(bucket: &mut Bucket, period: i64, cpu: Load, ram: Load) {
    if bucket.period != period {
        *bucket = Bucket {
            period,
            ..Bucket::default()
        };
    }
    bucket.count += 1;
    bucket.cpu += u128::from(cpu.0);
    bucket.ram += u128::from(ram.0);
}

fn window(ring: &[Bucket], newest: i64, length: Micros) -> Vec<(Micros, f64, f64)> {
    let len = ring.len() as i64;
    (newest - (len - 1)..=newest)
        .filter_map(|period| {
            let b = &ring[slot(period, ring.len())];
            (b.period == period && b.count > 0).then(|| {
                let (cpu, ram) = b.averages();
                (period * length, cpu, ram)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn at(text: &str) -> Micros {
        time::parse_timestamp(text).unwrap()
    }

    fn load(v: f64) -> Load {
        Load::from_f64(v).unwrap()
    }

    #[test]
    fn averages_by_minute_and_hour() {
        let mut s = ServerLoad::new();
        let now = at("2016-04-10T16:02:30Z");
        s.add(at("2016-04-10T16:02:10Z"), load(4.0), load(20.0), now)
            .unwrap();
        s.add(at("2016-04-10T16:02:50Z"), load(5.9), load(29.5), now)
            .unwrap();
        s.add(at("2016-04-10T15:21:00Z"), load(1.2), load(6.0), now)
            .unwrap();
        s.add(at("2016-04-09T17:59:59Z"), load(3.0), load(15.0), now)
            .unwrap();
        let rows = s.rows(now);
        assert_eq!(
            rows.minutes,
            vec![
                (at("2016-04-10T15:21:00Z"), 1.2, 6.0),
                (at("2016-04-10T16:02:00Z"), 4.95, 24.75),
            ]
        );
        assert_eq!(
            rows.hours,
            vec![
                (at("2016-04-09T17:00:00Z"), 3.0, 15.0),
                (at("2016-04-10T15:00:00Z"), 1.2, 6.0),
                (at("2016-04-10T16:00:00Z"), 4.95, 24.75),
            ]
        );
    }

    #[test]
    fn a_server_is_empty_once_its_last_hour_leaves_the_day() {
        let mut s = ServerLoad::new();
        assert!(s.is_empty_at(at("2016-04-10T16:00:00Z")));
        let now = at("2016-04-10T16:02:30Z");
        s.add(at("2016-04-10T16:02:10Z"), load(1.0), load(1.0), now)
            .unwrap();
        assert!(!s.is_empty_at(now));
        // Still in the day 23 hours later (its hour is the oldest of the window), gone at 24.
        assert!(!s.is_empty_at(at("2016-04-11T15:59:59Z")));
        assert!(s.is_empty_at(at("2016-04-11T16:00:00Z")));
        // A record ahead of the clock is not "left": it will enter the window.
        assert!(!s.is_empty_at(at("2016-04-10T15:00:00Z")));
    }

    #[test]
    fn the_window_edges() {
        let mut s = ServerLoad::new();
        let now = at("2016-04-10T16:02:30Z");
        // 23 hours before the current hour is the oldest hour kept; 24 is refused.
        assert!(s
            .add(at("2016-04-09T17:00:00Z"), load(1.0), load(1.0), now)
            .is_ok());
        assert_eq!(
            s.add(at("2016-04-09T16:59:59Z"), load(1.0), load(1.0), now),
            Err(Refused::TooOld)
        );
        // 59 minutes before the current minute is the oldest minute reported.
        s.add(at("2016-04-10T15:03:00Z"), load(2.0), load(2.0), now)
            .unwrap();
        s.add(at("2016-04-10T15:02:59Z"), load(8.0), load(8.0), now)
            .unwrap();
        let rows = s.rows(now);
        assert_eq!(rows.minutes, vec![(at("2016-04-10T15:03:00Z"), 2.0, 2.0)]);
        assert_eq!(rows.hours[1], (at("2016-04-10T15:00:00Z"), 5.0, 5.0));
        // A minute later the oldest minute has left the report, the hours have not changed.
        let later = s.rows(now + MINUTE);
        assert!(later.minutes.is_empty());
        assert_eq!(later.hours, rows.hours);
    }

    #[test]
    fn a_slot_is_reused_for_a_newer_period_only() {
        let mut s = ServerLoad::new();
        let t0 = at("2016-04-10T10:00:10Z");
        s.add(t0, load(1.0), load(1.0), t0).unwrap();
        let t1 = t0 + 60 * MINUTE;
        s.add(t1, load(3.0), load(3.0), t1).unwrap();
        let rows = s.rows(t1);
        assert_eq!(rows.minutes, vec![(time::floor(t1, MINUTE), 3.0, 3.0)]);
        assert_eq!(rows.hours.len(), 2);
        // The wall clock may accept a record from a minute ahead; an old one for its slot is
        // refused whole rather than half stored.
        let mut s = ServerLoad::new();
        let now = at("2016-04-10T10:00:30Z");
        s.add(now + MINUTE, load(1.0), load(1.0), now).unwrap();
        assert_eq!(
            s.add(now - 59 * MINUTE, load(1.0), load(1.0), now),
            Err(Refused::TooOld)
        );
        assert_eq!(
            s.rows(now + MINUTE).hours,
            vec![(at("2016-04-10T10:00:00Z"), 1.0, 1.0)]
        );
    }

    #[test]
    fn loads_are_millionths() {
        assert_eq!(Load::from_f64(1.2), Some(Load(1_200_000)));
        assert_eq!(Load::from_f64(0.0000004), Some(Load(0)));
        assert_eq!(Load::from_f64(-0.1), None);
        assert_eq!(Load::from_f64(f64::NAN), None);
        assert_eq!(Load::from_f64(MAX_LOAD + 1.0), None);
        assert_eq!(average(18_500_000, 4), 4.625);
    }

    #[test]
    fn snapshot_buckets_round_trip() {
        let mut s = ServerLoad::new();
        let now = at("2016-04-10T16:02:30Z");
        for i in 0..200 {
            let t = now - i * 7 * MINUTE;
            let _ = s.add(t, load(i as f64), load(2.0), now);
        }
        let (m, h) = s.buckets();
        assert_eq!(ServerLoad::from_buckets(&m, &h), s);
    }

    /// The oracle: keep every record, average what falls in each window period.
    fn oracle(records: &[(Micros, u64, u64)], now: Micros) -> Rows {
        let now_minute = time::floor(now, MINUTE);
        let now_hour = time::floor(now, HOUR);
        let mut minutes: BTreeMap<Micros, (u64, u128, u128)> = BTreeMap::new();
        let mut hours: BTreeMap<Micros, (u64, u128, u128)> = BTreeMap::new();
        for &(t, cpu, ram) in records {
            let (m, h) = (time::floor(t, MINUTE), time::floor(t, HOUR));
            if m <= now_minute && m > now_minute - 60 * MINUTE {
                let e = minutes.entry(m).or_default();
                *e = (e.0 + 1, e.1 + u128::from(cpu), e.2 + u128::from(ram));
            }
            if h <= now_hour && h > now_hour - 24 * HOUR {
                let e = hours.entry(h).or_default();
                *e = (e.0 + 1, e.1 + u128::from(cpu), e.2 + u128::from(ram));
            }
        }
        let rows = |m: BTreeMap<Micros, (u64, u128, u128)>| {
            m.into_iter()
                .map(|(p, (n, c, r))| (p, average(c, n), average(r, n)))
                .collect()
        };
        Rows {
            minutes: rows(minutes),
            hours: rows(hours),
        }
    }

    proptest! {
        /// Records in any order, the clock being the newest record so far (the stdin face):
        /// the rings report exactly what an unbounded store of the accepted records reports.
        #[test]
        fn rings_match_an_unbounded_store(
            steps in prop::collection::vec((0i64..30 * 3600, 0u64..10_000_000, 0u64..10_000_000), 1..300),
            ask_offset in 0i64..7200,
        ) {
            let base = at("2016-04-10T00:00:00Z");
            let mut s = ServerLoad::new();
            let mut now = i64::MIN;
            let mut kept = Vec::new();
            for &(offset, cpu, ram) in &steps {
                let t = base + offset * MICROS_PER_SEC;
                now = now.max(t);
                let expected_ok = time::floor(t, HOUR) > time::floor(now, HOUR) - 24 * HOUR;
                let got = s.add(t, Load(cpu), Load(ram), now);
                prop_assert_eq!(got.is_ok(), expected_ok);
                if got.is_ok() {
                    kept.push((t, cpu, ram));
                }
            }
            for ask in [now, now + ask_offset * MICROS_PER_SEC] {
                prop_assert_eq!(s.rows(ask), oracle(&kept, ask));
            }
        }

        /// The order records arrive in never changes a report.
        #[test]
        fn order_does_not_matter(
            records in prop::collection::vec((0i64..20 * 3600, 0u64..10_000_000, 0u64..10_000_000), 1..200),
            seed in any::<u64>(),
        ) {
            let base = at("2016-04-10T00:00:00Z");
            let now = base + 20 * 3600 * MICROS_PER_SEC;
            let mut a = ServerLoad::new();
            let mut b = ServerLoad::new();
            for &(o, c, r) in &records {
                a.add(base + o * MICROS_PER_SEC, Load(c), Load(r), now).unwrap();
            }
            let mut shuffled = records.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for &(o, c, r) in &shuffled {
                b.add(base + o * MICROS_PER_SEC, Load(c), Load(r), now).unwrap();
            }
            prop_assert_eq!(a.rows(now), b.rows(now));
        }
    }
}
