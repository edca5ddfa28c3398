//! `gen-events --post URL --check`: the seed's load generator verifies what the service reports.
//!
//! While posting, every record the service accepted goes into [`Accepted`], kept whole (sums per
//! minute and per hour, not rings). After posting, [`verify`] fetches `GET /report/<server>` for
//! every server posted to and compares it with the report worked out here for the clock the
//! service answered with (its `X-Report-Time`): the last 60 minutes and the last 24 hours, each
//! row the average CPU and RAM of the records in that period.
//!
//! The computation is this module's own, on purpose: it shares nothing with load-monitor but the
//! toolkit's timestamp parser, so a mistake in load-monitor's rings, windows or averages shows up
//! as a difference instead of being repeated here. Loads are summed exactly (in millionths, which
//! is the precision gen-events writes), averages compared to within a billionth.
//!
//! The verdict is one JSON line on stdout: `{"check":"passed","servers":N,"records":M}`, or
//! `{"check":"failed",…}` with the server, report, row, and both sides (exit 1, and the first
//! difference said on stderr too).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;
use crate::time::{self, Micros};

const MINUTE: Micros = 60 * 1_000_000;
const HOUR: Micros = 60 * MINUTE;
/// Rows of the last-hour report (by minute) and of the last-day report (by hour).
const HOUR_ROWS: i64 = 60;
const DAY_ROWS: i64 = 24;

/// Sums per period (its start, in µs): records, CPU and RAM in millionths.
type Sums = BTreeMap<Micros, (u64, u128, u128)>;

/// What the service accepted, for the check.
#[derive(Default)]
pub struct Accepted {
    servers: HashMap<String, (Sums, Sums)>,
    records: u64,
}

/// A record as gen-events writes it.
#[derive(Deserialize)]
struct Record {
    server: String,
    cpu: f64,
    ram: f64,
    timestamp: String,
}

impl Accepted {
    /// One accepted record (a line gen-events wrote; anything else is not counted).
    pub fn add(&mut self, line: &str) {
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            return;
        };
        let Ok(at) = time::parse_timestamp(&record.timestamp) else {
            return;
        };
        let millionths = |load: f64| (load * 1e6).round() as u128;
        let (cpu, ram) = (millionths(record.cpu), millionths(record.ram));
        let (minutes, hours) = self.servers.entry(record.server).or_default();
        for (sums, period) in [(minutes, MINUTE), (hours, HOUR)] {
            let sum = sums.entry(at.div_euclid(period) * period).or_default();
            *sum = (sum.0 + 1, sum.1 + cpu, sum.2 + ram);
        }
        self.records += 1;
    }

    pub fn merge(&mut self, other: Accepted) {
        for (name, (m, h)) in other.servers {
            let (mine_m, mine_h) = self.servers.entry(name).or_default();
            for (mine, theirs) in [(mine_m, m), (mine_h, h)] {
                for (at, (n, c, r)) in theirs {
                    let sum = mine.entry(at).or_default();
                    *sum = (sum.0 + n, sum.1 + c, sum.2 + r);
                }
            }
        }
        self.records += other.records;
    }

    /// The rows `server`'s report must hold with the service's clock at `now`: (period start,
    /// average CPU, average RAM), oldest first, for the last hour and the last day.
    fn expected(&self, server: &str, now: Micros) -> [Vec<Row>; 2] {
        let (minutes, hours) = &self.servers[server];
        let rows = |sums: &Sums, period: Micros, count: i64| {
            let newest = now.div_euclid(period) * period;
            sums.range(newest - (count - 1) * period..=newest)
                .map(|(&at, &(n, cpu, ram))| Row {
                    at,
                    cpu: cpu as f64 / 1e6 / n as f64,
                    ram: ram as f64 / 1e6 / n as f64,
                })
                .collect()
        };
        [
            rows(minutes, MINUTE, HOUR_ROWS),
            rows(hours, HOUR, DAY_ROWS),
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct Row {
    at: Micros,
    cpu: f64,
    ram: f64,
}

impl Row {
    fn same(&self, other: &Row) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        self.at == other.at && close(self.cpu, other.cpu) && close(self.ram, other.ram)
    }

    fn to_json(self) -> Value {
        json!([time::format_timestamp(self.at), self.cpu, self.ram])
    }
}

/// The report keys, in the original service's shape.
const REPORTS: [&str; 2] = ["1hourdata", "24hourdata"];

/// A difference between a report and the expected one.
struct Difference {
    server: String,
    report: &'static str,
    /// 1-based; `None` when the report is not even the right shape.
    row: Option<usize>,
    expected: Value,
    got: Value,
}

impl Difference {
    fn verdict(&self) -> Verdict<'_> {
        Verdict {
            server: Some(&self.server),
            report: Some(self.report),
            row: self.row,
            expected: Some(&self.expected),
            got: Some(&self.got),
            ..Verdict::failed()
        }
    }

    fn describe(&self) -> String {
        match self.row {
            Some(row) => format!(
                "server {}, {} row {row}: expected {}, got {}",
                self.server, self.report, self.expected, self.got
            ),
            None => format!(
                "server {}, {}: expected {}, got {}",
                self.server, self.report, self.expected, self.got
            ),
        }
    }
}

/// The verdict line, its keys in this order (`check` first).
#[derive(Serialize, Default)]
struct Verdict<'a> {
    check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    servers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    got: Option<&'a Value>,
}

impl Verdict<'_> {
    fn failed() -> Self {
        Verdict {
            check: "failed",
            ..Verdict::default()
        }
    }
}

/// Compare one report (its JSON text) with the rows expected for it.
fn compare(server: &str, expected: &[Vec<Row>; 2], got: &str) -> Option<Difference> {
    let got: Value = serde_json::from_str(got).unwrap_or(Value::Null);
    let differ = |report, row, expected, got| {
        Some(Difference {
            server: server.to_string(),
            report,
            row,
            expected,
            got,
        })
    };
    if got["servername"] != json!(server) {
        let name = got["servername"].clone();
        return differ("servername", None, json!(server), name);
    }
    for (report, rows) in REPORTS.into_iter().zip(expected) {
        let Some(got_rows) = got[report].as_array() else {
            let want = Value::Array(rows.iter().map(|r| r.to_json()).collect());
            return differ(report, None, want, got[report].clone());
        };
        for i in 0..rows.len().max(got_rows.len()) {
            let want = rows.get(i);
            let have = got_rows.get(i);
            let parsed = have.and_then(parse_row);
            let same = match (want, parsed) {
                (Some(w), Some(h)) => w.same(&h),
                _ => false,
            };
            if !same {
                let show = |v: Option<Value>| v.unwrap_or(Value::Null);
                return differ(
                    report,
                    Some(i + 1),
                    show(want.map(|r| r.to_json())),
                    show(have.cloned()),
                );
            }
        }
    }
    None
}

fn parse_row(value: &Value) -> Option<Row> {
    let [at, cpu, ram] = value.as_array()?.as_slice() else {
        return None;
    };
    Some(Row {
        at: time::parse_timestamp(at.as_str()?).ok()?,
        cpu: cpu.as_f64()?,
        ram: ram.as_f64()?,
    })
}

/// Fetch every server's report from `origin` and compare it with `accepted`; print the verdict.
pub fn verify(
    origin: &str,
    agent: &ureq::Agent,
    accepted: &Accepted,
    out: &mut Output<impl std::io::Write>,
) -> Result<()> {
    let fail = |out: &mut Output<_>, verdict: Verdict<'_>, why: String| {
        out.emit(&verdict)?;
        out.flush()?;
        Err(Error::failed(format!("FAILED: {why}")))
    };
    if accepted.servers.is_empty() {
        let why = "the service accepted none of the records, so there is nothing to check";
        let verdict = Verdict {
            reason: Some(why),
            ..Verdict::failed()
        };
        return fail(out, verdict, why.into());
    }
    let mut names: Vec<&String> = accepted.servers.keys().collect();
    names.sort();
    for name in names {
        let url = format!("{origin}/report/{name}");
        let mut response = agent
            .get(&url)
            .call()
            .map_err(|e| Error::failed(format!("cannot fetch {url}: {e}")))?;
        let status = response.status().as_u16();
        let now = response
            .headers()
            .get("x-report-time")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| time::parse_timestamp(v).ok());
        let got = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Error::failed(format!("reading {url}: {e}")))?;
        if status != 200 {
            let why = format!("{url} answered {status}: {}", got.trim());
            let verdict = Verdict {
                server: Some(name),
                reason: Some(&why),
                ..Verdict::failed()
            };
            return fail(out, verdict, why.clone());
        }
        let now = now.ok_or_else(|| {
            Error::failed(format!(
                "{url} has no X-Report-Time header: is it load-monitor?"
            ))
        })?;
        if let Some(difference) = compare(name, &accepted.expected(name, now), &got) {
            let why = format!(
                "{} (the check assumes the service holds only this run's records for these \
                 servers)",
                difference.describe()
            );
            return fail(out, difference.verdict(), why);
        }
    }
    warn(format_args!(
        "check passed: {} servers, {} records",
        accepted.servers.len(),
        accepted.records
    ));
    out.emit(&Verdict {
        check: "passed",
        servers: Some(accepted.servers.len()),
        records: Some(accepted.records),
        ..Verdict::default()
    })?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        time::parse_timestamp(s).unwrap()
    }

    #[test]
    fn the_oracle_averages_accepted_records_in_the_window() {
        let mut a = Accepted::default();
        a.add(r#"{"server":"s","cpu":1,"ram":2,"timestamp":"2016-04-10T15:00:10Z"}"#);
        a.add(r#"{"server":"s","cpu":2,"ram":4,"timestamp":"2016-04-10T15:00:50Z"}"#);
        a.add(r#"{"server":"s","cpu":9,"ram":9,"timestamp":"2016-04-10T13:00:00Z"}"#);
        // Two hours back is outside the hour but inside the day.
        a.add(r#"{"server":"s","cpu":9,"ram":9,"timestamp":"2016-04-10T14:29:00Z"}"#);
        a.add("not a record");
        assert_eq!(a.records, 4);
        let [hour, day] = a.expected("s", at("2016-04-10T15:30:00Z"));
        assert_eq!(hour.len(), 1);
        assert_eq!(hour[0].at, at("2016-04-10T15:00:00Z"));
        assert_eq!((hour[0].cpu, hour[0].ram), (1.5, 3.0));
        let starts: Vec<Micros> = day.iter().map(|r| r.at).collect();
        let hours = ["13", "14", "15"].map(|h| at(&format!("2016-04-10T{h}:00:00Z")));
        assert_eq!(starts, hours);
    }

    #[test]
    fn a_difference_names_the_report_and_row() {
        let mut a = Accepted::default();
        a.add(r#"{"server":"s","cpu":1,"ram":2,"timestamp":"2016-04-10T15:00:10Z"}"#);
        let expected = a.expected("s", at("2016-04-10T15:00:30Z"));
        let right = r#"{"servername":"s","1hourdata":[["2016-04-10T15:00:00.000000Z",1,2]],
            "24hourdata":[["2016-04-10T15:00:00.000000Z",1.0,2.0]]}"#;
        assert!(compare("s", &expected, right).is_none());
        let wrong = right.replace(",1,2]", ",1,3]");
        let d = compare("s", &expected, &wrong).unwrap();
        assert_eq!(
            d.describe(),
            r#"server s, 1hourdata row 1: expected ["2016-04-10T15:00:00.000000Z",1.0,2.0], got ["2016-04-10T15:00:00.000000Z",1,3]"#
        );
        let verdict = serde_json::to_string(&d.verdict()).unwrap();
        assert!(
            verdict.starts_with(r#"{"check":"failed","server":"s","report":"1hourdata","row":1,"#),
            "{verdict}"
        );
        let short = r#"{"servername":"s","1hourdata":[],"24hourdata":[]}"#;
        let d = compare("s", &expected, short).unwrap();
        assert_eq!(
            (d.report, d.row, d.got),
            ("1hourdata", Some(1), Value::Null)
        );
        let d = compare("s", &expected, "{}").unwrap();
        assert_eq!(d.report, "servername");
    }
}
