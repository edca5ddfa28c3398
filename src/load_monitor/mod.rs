//! load-monitor: records CPU and RAM load per server and reports, per server, the average of each
//! minute of the last hour and each hour of the last 24 hours (seed `003_…`).
//!
//! Input, one record per line on stdin or one per HTTP request body (`dt` is epoch seconds,
//! `timestamp` RFC 3339 as `gen-events --profile load` writes it; neither means "now"):
//!
//! ```text
//! {"server":"server005","cpu":1.2,"ram":6.0,"dt":1460300000}
//! {"server":"server005","cpu":1.2,"ram":6.0,"timestamp":"2016-04-10T14:53:20Z"}
//! ```
//!
//! Output, one report per server (stdin face: one line per server, by name, at end of input and
//! every `--every`; HTTP: `GET /report/<name>`):
//!
//! ```text
//! {"servername":"server005","1hourdata":[["2016-04-10T15:21:00.000000Z",1.2,6]],"24hourdata":[["2016-04-10T15:00:00.000000Z",1.2,6]]}
//! ```
//!
//! - Rows are `[period start, average cpu, average ram]`, only non-empty minutes / hours, oldest
//!   first. The last hour is the current minute and the 59 before it; the last day the current
//!   hour and the 23 before it ([`ring`]).
//! - "Now" is the newest record's time (`--clock records`, the stdin default, so a replay reports
//!   as it would have live) or the wall clock (`--clock wall`, the server default). Under either
//!   clock a record later than the wall clock plus `--max-future` (default 5m) is refused and
//!   never moves the clock ([`crate::time::Horizon`]), and so is a record whose hour is not among
//!   the last 24. Refused records are counted. A snapshot is held to the same rule on load
//!   ([`Store::load`]).
//! - `cpu` and `ram` are numbers from 0 to 1,000,000, kept to a millionth. Server names are 1 to
//!   128 characters from `A-Z a-z 0-9 . _ - :`.
//! - Memory per server is fixed: 84 buckets of 48 bytes plus the name and map entry (about 4 KiB).
//!   A server with nothing left in the last 24 hours is forgotten, and over HTTP one client
//!   address adds at most `--max-new-servers` new servers a minute ([`store`]).
//!
//! Layers, one file each: [`ring`] (the pure per-server rings) → [`store`] (sharded shared state,
//! clock, cap, snapshots) → [`http`] (routes; [`dashboard`], the HTML pages; [`metrics`], what
//! `/metrics` adds) and [`pipe`] (the stdin face).

pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod pipe;
pub mod ring;
pub mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::input::{parse_object, InputArgs};
use crate::output::{Number, Output};
use crate::time::{self, Micros, MICROS_PER_SEC};
use ring::{Load, Rows, MAX_LOAD};
pub use store::{Clock, Record, Store};

/// The longest server name accepted, in bytes.
pub const MAX_NAME: usize = 128;

/// The latest `dt` accepted: the last second of year 9999.
const MAX_DT: f64 = 253_402_300_799.0;

/// Which clock the user asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockKind {
    Records,
    Wall,
}

/// What load-monitor is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone)]
pub struct Config {
    /// Serve HTTP on this address; `None` reads records from the input instead.
    pub listen: Option<String>,
    /// `None`: wall for the server, records for stdin.
    pub clock: Option<ClockKind>,
    /// `--max-future`: records later than the wall clock plus this are refused, under either
    /// clock, and so is a snapshot's content from after it.
    pub max_future: time::MaxFuture,
    pub max_servers: usize,
    /// New servers one client address may add per wall-clock minute (HTTP only).
    pub max_new_servers: u32,
    pub snapshot: Option<PathBuf>,
    pub snapshot_every: time::Duration,
    /// After SIGTERM/SIGINT, how long in-flight requests may take before their connections close.
    pub shutdown_grace: time::Duration,
    pub every: Option<time::Duration>,
    pub threads: usize,
    pub input: InputArgs,
    /// The server's timeouts and connection cap (shared by every server).
    pub http: crate::server::HttpArgs,
}

impl Config {
    fn clock(&self) -> Clock {
        let kind = self.clock.unwrap_or(if self.listen.is_some() {
            ClockKind::Wall
        } else {
            ClockKind::Records
        });
        match kind {
            ClockKind::Records => Clock::Records,
            ClockKind::Wall => Clock::Wall,
        }
    }
}

/// Run load-monitor: the HTTP service with `--listen`, the stdin face without.
pub fn run(config: &Config, out: &mut Output<impl std::io::Write>) -> Result<()> {
    if config.max_servers == 0 {
        return Err(crate::Error::usage("--max-servers must be at least 1"));
    }
    if config.listen.is_some() {
        if config.every.is_some() {
            return Err(crate::Error::usage(
                "--every is for the stdin face; the server reports on request (GET /report/<name>)",
            ));
        }
        if !config.input.files.is_empty() {
            return Err(crate::Error::usage(
                "input files are for the stdin face; the server takes records over HTTP",
            ));
        }
    }
    if config.snapshot_every.micros() <= 0 {
        return Err(crate::Error::usage(
            "--snapshot-every must be longer than 0",
        ));
    }
    let store = Store::new(config.clock(), config.max_servers).with_max_future(config.max_future);
    match &config.listen {
        Some(addr) => {
            if config.max_new_servers == 0 {
                return Err(crate::Error::usage("--max-new-servers must be at least 1"));
            }
            http::serve(
                config,
                addr,
                store.with_new_server_limit(config.max_new_servers),
            )
        }
        None => pipe::run(config, store, out),
    }
}

/// One server's report in the original service's shape.
#[derive(Debug, Serialize, PartialEq)]
pub struct Report<'a> {
    pub servername: &'a str,
    #[serde(rename = "1hourdata")]
    pub last_hour: Vec<(Label, Number, Number)>,
    #[serde(rename = "24hourdata")]
    pub last_day: Vec<(Label, Number, Number)>,
}

/// A row's period start, `2016-04-10T15:21:00.000000Z`. A full report has 84 of them, and
/// formatting each through `fmt` and `collect_str` cost more than the rest of a report request,
/// so the digits are written straight into a stack buffer and handed over as one string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(pub Micros);

impl Label {
    /// The label's text; `t` is a whole minute between the years 0 and 9999.
    fn text(self) -> Option<[u8; 27]> {
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = time::civil_from_days(days);
        if !(0..=9999).contains(&year) || self.0.rem_euclid(60 * MICROS_PER_SEC) != 0 {
            return None;
        }
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, v: u32, width: usize| {
            let mut v = v;
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year as u32, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, (sod / 3600) as u32, 2);
        put(14, (sod / 60 % 60) as u32, 2);
        Some(b)
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.text() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).unwrap_or_default()),
            None => s.collect_str(&time::Timestamp(self.0)),
        }
    }
}

impl<'a> Report<'a> {
    pub fn new(servername: &'a str, rows: &Rows) -> Self {
        let row = |&(t, cpu, ram): &(Micros, f64, f64)| (Label(t), Number(cpu), Number(ram));
        Report {
            servername,
            last_hour: rows.minutes.iter().map(row).collect(),
            last_day: rows.hours.iter().map(row).collect(),
        }
    }
}

/// The fields of a record as sent; each is checked by hand so an error names the field.
#[derive(Deserialize)]
struct RawRecord {
    server: Option<Value>,
    cpu: Option<Value>,
    ram: Option<Value>,
    dt: Option<Value>,
    timestamp: Option<Value>,
}

/// Parse and check one record. `server` is the name from the URL on the resource-style route; a
/// `server` field in the body must then agree with it.
pub fn parse_record(text: &str, server: Option<&str>) -> std::result::Result<Record, String> {
    let raw: RawRecord = parse_object(text)?;
    let name = match (server, raw.server) {
        (Some(path), None) => path.to_string(),
        (Some(path), Some(Value::String(body))) if body == path => body,
        (Some(path), Some(_)) => {
            return Err(format!(
                "the body's \"server\" differs from the URL's server {path:?}"
            ))
        }
        (None, Some(Value::String(name))) => name,
        (None, None) => return Err("missing field \"server\"".into()),
        (None, Some(other)) => {
            return Err(format!("\"server\" must be a string, got {}", kind(&other)))
        }
    };
    check_name(&name)?;
    let cpu = load_field("cpu", raw.cpu)?;
    let ram = load_field("ram", raw.ram)?;
    let at = match (raw.dt, raw.timestamp) {
        (Some(_), Some(_)) => {
            return Err("give \"dt\" or \"timestamp\", not both".into());
        }
        (Some(dt), None) => Some(epoch_seconds(&dt)?),
        (None, Some(Value::String(ts))) => Some(time::parse_timestamp(&ts)?),
        (None, Some(other)) => {
            return Err(format!(
                "\"timestamp\" must be an RFC 3339 string, got {}",
                kind(&other)
            ))
        }
        (None, None) => None,
    };
    Ok(Record {
        server: name,
        at,
        cpu,
        ram,
    })
}

/// Server names are path segments and log words: short, printable, no surprises.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the server name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "the server name is {} bytes long, over the limit of {MAX_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        return Err(format!(
            "the server name {name:?} holds {c:?}; use letters, digits and . _ - :"
        ));
    }
    Ok(())
}

fn load_field(field: &str, value: Option<Value>) -> std::result::Result<Load, String> {
    match value {
        None | Some(Value::Null) => Err(format!("missing field \"{field}\"")),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            Load::from_f64(v)
                .ok_or_else(|| format!("\"{field}\" must be between 0 and {MAX_LOAD}, got {n}"))
        }
        Some(other) => Err(format!(
            "\"{field}\" must be a number, got {}",
            kind(&other)
        )),
    }
}

fn epoch_seconds(dt: &Value) -> std::result::Result<Micros, String> {
    let Value::Number(n) = dt else {
        return Err(format!(
            "\"dt\" must be a number of seconds since 1970, got {}",
            kind(dt)
        ));
    };
    let secs = n.as_f64().unwrap_or(f64::NAN);
    if !(0.0..=MAX_DT).contains(&secs) {
        return Err(format!(
            "\"dt\" {n} is not a time between 1970 and 9999 in seconds since 1970"
        ));
    }
    Ok(match n.as_i64() {
        Some(whole) => whole * MICROS_PER_SEC,
        None => (secs * MICROS_PER_SEC as f64).round() as Micros,
    })
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_body_and_ours() {
        let r = parse_record(
            r#"{"server":"server005","cpu":1.2,"ram":6.0,"dt":1460300000}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.server, "server005");
        assert_eq!(r.at, Some(1_460_300_000 * MICROS_PER_SEC));
        assert_eq!((r.cpu, r.ram), (Load(1_200_000), Load(6_000_000)));
        let r = parse_record(
            r#"{"cpu":1,"ram":2,"timestamp":"2016-04-10T14:53:20Z"}"#,
            Some("web-1"),
        )
        .unwrap();
        assert_eq!(r.at, Some(1_460_300_000 * MICROS_PER_SEC));
        assert_eq!(r.server, "web-1");
        assert_eq!(
            parse_record(r#"{"server":"a","cpu":1,"ram":2,"dt":1.5}"#, None)
                .unwrap()
                .at,
            Some(1_500_000)
        );
        assert_eq!(
            parse_record(r#"{"server":"a","cpu":1,"ram":2}"#, None)
                .unwrap()
                .at,
            None
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |body: &str| parse_record(body, None).unwrap_err();
        assert_eq!(err(r#"{"cpu":1,"ram":2}"#), "missing field \"server\"");
        assert_eq!(err(r#"{"server":"a","ram":2}"#), "missing field \"cpu\"");
        assert!(err(r#"{"server":"a","cpu":"1.2","ram":2}"#).contains("\"cpu\" must be a number"));
        assert!(err(r#"{"server":"a","cpu":1,"ram":-2}"#).contains("\"ram\" must be between 0"));
        assert!(err(r#"{"server":"a","cpu":1,"ram":1e9}"#).contains("\"ram\" must be between 0"));
        assert!(err(r#"{"server":"a b","cpu":1,"ram":1}"#).contains("' '"));
        assert!(err(&format!(
            r#"{{"server":"{}","cpu":1,"ram":1}}"#,
            "x".repeat(129)
        ))
        .contains("over the limit"));
        assert!(err(r#"{"server":"a","cpu":1,"ram":1,"dt":-5}"#).contains("\"dt\""));
        assert!(err(r#"{"server":"a","cpu":1,"ram":1,"dt":1e300}"#).contains("\"dt\""));
        assert!(err(r#"{"server":"a","cpu":1,"ram":1,"timestamp":"soon"}"#).contains("RFC 3339"));
        assert!(err(r#"[1,2]"#).contains("expected a JSON object"));
        assert!(err(r#"{"server":"a","#).contains("JSON"));
        assert!(parse_record(r#"{"server":"b","cpu":1,"ram":1}"#, Some("a"))
            .unwrap_err()
            .contains("differs"));
    }

    #[test]
    fn labels_match_the_shared_timestamp_format() {
        let minute = 60 * MICROS_PER_SEC;
        let mut t = time::parse_timestamp("1970-01-01T00:00:00Z").unwrap();
        let end = time::parse_timestamp("2101-01-01T00:00:00Z").unwrap();
        while t < end {
            let text = serde_json::to_string(&Label(t)).unwrap();
            assert_eq!(text, format!("\"{}\"", time::format_timestamp(t)));
            t += 7_919 * minute; // a prime step visits every hour, month and leap day in turn
        }
        // Not a whole minute, or out of the four-digit years: the shared formatter decides.
        let odd = 90 * MICROS_PER_SEC + 5;
        assert_eq!(
            serde_json::to_string(&Label(odd)).unwrap(),
            format!("\"{}\"", time::format_timestamp(odd))
        );
    }

    #[test]
    fn reports_have_the_original_shape() {
        let rows = Rows {
            minutes: vec![(1_460_301_660 * MICROS_PER_SEC, 1.2, 6.0)],
            hours: vec![(1_460_300_400 * MICROS_PER_SEC, 4.625, 23.125)],
        };
        let text = serde_json::to_string(&Report::new("server005", &rows)).unwrap();
        assert_eq!(
            text,
            r#"{"servername":"server005","1hourdata":[["2016-04-10T15:21:00.000000Z",1.2,6]],"24hourdata":[["2016-04-10T15:00:00.000000Z",4.625,23.125]]}"#
        );
    }
}

pub use cli::Args;

/// The command line of `load-monitor`: its doc comments are `load-monitor --help`.
mod cli {
    use std::path::PathBuf;

    use crate::input::InputArgs;
    use crate::load_monitor::{self, ClockKind, Config};
    use crate::time::{Duration, MaxFutureArg};
    use clap::Parser;

    /// Server load monitor: per server, the average CPU and RAM of each minute of the last hour and
    /// each hour of the last 24 hours.
    ///
    /// With --listen it is an HTTP service compatible with the original one: POST /addserver with
    /// {"server","cpu","ram","dt"}, GET /report/<name>; also POST|GET /servers/<name>/load,
    /// GET /servers, GET /stats, GET /metrics (Prometheus) and a dashboard in the browser at GET /
    /// (live charts at /dashboard/<name>). Without --listen it reads the same records as JSON lines and
    /// prints one report line per server (sorted by name) at the end of input, and every --every.
    /// Memory per server is fixed (60 minute and 24 hour buckets); records outside the last 24
    /// hours are refused and counted; a server with nothing left in the day is forgotten.
    #[derive(Parser, Debug)]
    #[command(
        name = "load-monitor",
        version,
        after_help = "\
Examples:
  gen-events --profile load --servers 100 --simulated --start 2016-04-10T00:00:00Z --count 100000 \\
    | load-monitor | jq -c '{servername, minutes: (.\"1hourdata\" | length)}'
  load-monitor --listen 127.0.0.1:8080 --snapshot /var/lib/load-monitor.jsonl &
  curl -d '{\"server\":\"server005\",\"cpu\":1.2,\"ram\":6.0}' http://127.0.0.1:8080/addserver
  curl http://127.0.0.1:8080/report/server005

Report, one per server:
  {\"servername\":\"server005\",\"1hourdata\":[[\"2016-04-10T15:21:00.000000Z\",1.2,6]],\
\"24hourdata\":[[\"2016-04-10T15:00:00.000000Z\",1.2,6]]}"
    )]
    pub struct Args {
        /// Serve HTTP on this address (port 0 picks a free port, printed on stderr).
        #[arg(help_heading = "Server", long, value_name = "ADDR")]
        listen: Option<String>,

        /// What "now" is: the newest record's time (stdin default) or the wall clock (server default).
        #[arg(help_heading = "Records", long, value_enum)]
        clock: Option<ClockKind>,

        #[command(flatten)]
        max_future: MaxFutureArg,

        /// The most servers tracked; a new server's records beyond it are refused (507). A server
        /// with nothing left in the last 24 hours is forgotten and frees its place.
        #[arg(
            help_heading = "Records",
            long,
            default_value_t = 100_000,
            value_name = "N"
        )]
        max_servers: usize,

        /// Over HTTP: the most new servers one client address (an IPv6 client: its /64) may add in
        /// a wall-clock minute; more are refused with 429 and Retry-After. Known servers are never
        /// limited.
        #[arg(
            help_heading = "Records",
            long,
            default_value_t = 1000,
            value_name = "N"
        )]
        max_new_servers: u32,

        /// Load the state from FILE at start and save it there atomically (every --snapshot-every
        /// and on SIGTERM/SIGINT for the server; at the end of input for stdin). What it holds from
        /// past the wall clock plus --max-future is dropped on load, with a warning.
        #[arg(help_heading = "Snapshot", long, value_name = "FILE")]
        snapshot: Option<PathBuf>,

        /// How often the server saves its snapshot.
        #[arg(
            help_heading = "Snapshot",
            long,
            default_value = "1m",
            value_name = "DURATION"
        )]
        snapshot_every: Duration,

        /// After SIGTERM/SIGINT, how long in-flight requests may take before their connections are
        /// closed (the snapshot is saved after).
        #[arg(
            help_heading = "Server",
            long,
            default_value = "5s",
            value_name = "DURATION"
        )]
        shutdown_grace: Duration,

        /// Without --listen: also print every server's report this often (wall clock).
        #[arg(help_heading = "Stdin (no --listen)", long, value_name = "DURATION")]
        every: Option<Duration>,

        /// Server worker threads (0: one per core).
        #[arg(help_heading = "Server", long, default_value_t = 0)]
        threads: usize,

        #[command(flatten)]
        input: InputArgs,

        #[command(flatten)]
        http: crate::server::HttpArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "load-monitor";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = Config {
                listen: args.listen,
                clock: args.clock,
                max_future: args.max_future.max_future,
                max_servers: args.max_servers,
                max_new_servers: args.max_new_servers,
                snapshot: args.snapshot,
                snapshot_every: args.snapshot_every,
                shutdown_grace: args.shutdown_grace,
                every: args.every,
                threads: args.threads,
                input: args.input,
                http: args.http,
            };
            load_monitor::run(&config, process.output())
        }
    }
}
