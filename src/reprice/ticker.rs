//! ticker (the Scheduler): one tick line per period on an absolute schedule.
//!
//! Output, one line per tick, flushed at once:
//!
//! ```text
//! {"tick":3,"at":"2026-11-21T11:20:15.000000Z"}
//! {"tick":7,"at":"2026-11-21T11:20:35.000000Z","missed":3}
//! {"tick":9,"at":"2026-11-21T11:20:45.000000Z","unread":1}
//! ```
//!
//! - Tick N is due at `start + N × period` (tick 1 one period after start), measured on the
//!   monotonic clock, so the schedule never drifts however long it runs. `at` is the tick's due
//!   time on the wall clock. With `--align` the start is floored to a wall-clock multiple of the
//!   period (`5s` ticks land on :00, :05, …).
//! - A process stalled past several due times does not burst: it emits the latest due tick with
//!   `"missed":k`, the number of ticks skipped since the previous line.
//! - `--out PATH` writes to a named pipe (created if missing). The pipe is opened write-only and
//!   non-blocking: while no reader is attached (`ENXIO`), a reader stops reading (`EAGAIN`) or a
//!   reader goes away (`EPIPE`), ticking goes on and the ticks that could not be delivered are
//!   counted; the next delivered line carries `"unread":k`. Changes are reported on stderr once
//!   each, not per tick. A tick line is shorter than `PIPE_BUF`, so a write is all or nothing.
//!   Lines a dying reader had not yet consumed from the pipe's buffer are lost with it.
//! - `--redis redis://HOST:PORT/STREAM` appends each tick to a Redis stream instead (`XADD STREAM
//!   MAXLEN ~ N * tick N at T line {…}`, the tick line in `line`), for `reprice --redis … --group`
//!   consumers. Redis being unreachable is handled as a FIFO without a reader: ticking goes on,
//!   the ticks not added are counted, the next added one carries `"unread":k`. A tick whose reply
//!   was lost after Redis applied it counts as unread although it is in the stream.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;
use crate::time::{self, Micros, Timestamp};

/// What ticker is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone)]
pub struct Config {
    pub period: time::Duration,
    pub count: Option<u64>,
    pub align: bool,
    pub out: Option<PathBuf>,
    /// `--redis redis://HOST:PORT/STREAM` and `--maxlen`.
    pub redis: Option<(String, u64)>,
}

/// One tick line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tick {
    pub tick: u64,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "is_zero")]
    pub missed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unread: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The absolute schedule: which tick is due at a given time since the start. Pure, no clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    period: Micros,
    next: u64,
}

/// A tick that is due now, and how many earlier ones were skipped to get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub tick: u64,
    pub missed: u64,
}

impl Schedule {
    pub fn new(period: Micros) -> Self {
        assert!(period > 0, "a schedule needs a period");
        Schedule { period, next: 1 }
    }

    /// Time since the start at which the next tick is due.
    pub fn next_due(&self) -> Micros {
        self.period.saturating_mul(self.next as i64)
    }

    /// The tick to emit at `elapsed` since the start, if one is due: the latest due tick, with the
    /// number of due ticks passed over since the last one emitted.
    pub fn due(&mut self, elapsed: Micros) -> Option<Due> {
        if elapsed < self.next_due() {
            return None;
        }
        let latest = (elapsed / self.period) as u64;
        let due = Due {
            tick: latest,
            missed: latest - self.next,
        };
        self.next = latest + 1;
        Some(due)
    }
}

/// Run the ticker until `--count` ticks have passed (forever without it).
pub fn run(config: &Config) -> Result<()> {
    let period = config.period.micros();
    if period <= 0 {
        return Err(Error::usage("the period must be longer than 0"));
    }
    let mut sink = match (&config.out, &config.redis) {
        (Some(path), _) => Sink::Fifo(Fifo::create(path)?),
        (None, Some((url, maxlen))) => {
            Sink::Redis(Box::new(Stream::open(url, *maxlen, config.period)?))
        }
        (None, None) => Sink::Stdout(Output::stdout()),
    };
    let wall_now = time::now();
    let wall_start = if config.align {
        time::floor(wall_now, period)
    } else {
        wall_now
    };
    // The monotonic clock drives the schedule; the wall clock only names the ticks.
    let start = Instant::now() - StdDuration::from_micros((wall_now - wall_start) as u64);
    let mut schedule = Schedule::new(period);
    loop {
        let elapsed = start.elapsed().as_micros() as Micros;
        let wait = schedule.next_due() - elapsed;
        if wait > 0 {
            std::thread::sleep(StdDuration::from_micros(wait as u64));
            continue;
        }
        let Some(due) = schedule.due(elapsed) else {
            continue;
        };
        let tick = Tick {
            tick: due.tick,
            at: Timestamp(wall_start + period * due.tick as i64),
            missed: due.missed,
            unread: 0,
        };
        sink.deliver(tick)?;
        if config.count.is_some_and(|count| due.tick >= count) {
            return Ok(());
        }
    }
}

enum Sink {
    Stdout(Output<io::Stdout>),
    Fifo(Fifo),
    Redis(Box<Stream>),
}

impl Sink {
    fn deliver(&mut self, tick: Tick) -> Result<()> {
        match self {
            Sink::Stdout(out) => {
                out.emit(&tick)?;
                out.flush()
            }
            Sink::Fifo(fifo) => {
                fifo.deliver(tick);
                Ok(())
            }
            Sink::Redis(stream) => {
                stream.deliver(tick);
                Ok(())
            }
        }
    }
}

/// A Redis stream, appended to without ever holding up the schedule for long.
struct Stream {
    url: String,
    client: redis::Client,
    con: Option<redis::Connection>,
    key: String,
    maxlen: u64,
    /// Connect and reply timeout: at most a period (the schedule reports what it misses).
    timeout: StdDuration,
    unread: u64,
    reported: bool,
}

impl Stream {
    fn open(url: &str, maxlen: u64, period: time::Duration) -> Result<Stream> {
        let (conn, key) = crate::config::split_redis_url("--redis", url)?;
        let client = redis::Client::open(conn.as_str())
            .map_err(|e| Error::usage(format!("--redis {url}: {e}")))?;
        let timeout = period
            .std()
            .clamp(StdDuration::from_millis(50), StdDuration::from_secs(2));
        Ok(Stream {
            url: url.to_string(),
            client,
            con: None,
            key,
            maxlen: maxlen.max(1),
            timeout,
            unread: 0,
            reported: false,
        })
    }

    fn deliver(&mut self, mut tick: Tick) {
        tick.unread = self.unread;
        let line = serde_json::to_string(&tick).expect("a tick serializes");
        let mut add = redis::cmd("XADD");
        add.arg(&self.key).arg("MAXLEN").arg("~").arg(self.maxlen);
        let added = self.connected().and_then(|con| {
            add.arg("*")
                .arg("tick")
                .arg(tick.tick)
                .arg("at")
                .arg(tick.at.to_string())
                .arg("line")
                .arg(&line)
                .query::<String>(con)
        });
        match added {
            Ok(_) => {
                if self.reported {
                    warn(format_args!(
                        "redis {}: adding ticks again; {} ticks were not added",
                        self.url, self.unread
                    ));
                    self.reported = false;
                }
                self.unread = 0;
            }
            Err(e) => {
                self.con = None;
                self.unread += 1;
                if !self.reported {
                    warn(format_args!(
                        "redis {}: {e}; ticking on, counting the ticks not added",
                        self.url
                    ));
                    self.reported = true;
                }
            }
        }
    }

    fn connected(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.con.is_none() {
            let con = self.client.get_connection_with_timeout(self.timeout)?;
            con.set_read_timeout(Some(self.timeout))?;
            con.set_write_timeout(Some(self.timeout))?;
            self.con = Some(con);
        }
        Ok(self.con.as_mut().expect("just connected"))
    }
}

/// A named pipe written without ever waiting for its reader.
struct Fifo {
    path: PathBuf,
    pipe: Option<File>,
    /// Ticks not delivered since the last delivered one.
    unread: u64,
    /// Whether the current absence of a reader has been reported.
    reported: bool,
    line: Vec<u8>,
}

impl Fifo {
    fn create(path: &Path) -> Result<Fifo> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => {}
            Ok(_) => {
                return Err(Error::usage(format!(
                    "--out {}: exists and is not a named pipe",
                    path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .map_err(|e| {
                        Error::io(format!("cannot create FIFO {}", path.display()), e.into())
                    })?;
            }
            Err(e) => return Err(Error::io(format!("cannot stat {}", path.display()), e)),
        }
        Ok(Fifo {
            path: path.to_path_buf(),
            pipe: None,
            unread: 0,
            reported: false,
            line: Vec::with_capacity(128),
        })
    }

    /// Deliver a tick if a reader takes it now; otherwise count it as unread.
    fn deliver(&mut self, mut tick: Tick) {
        if self.pipe.is_none() {
            self.pipe = self.open();
        }
        let Some(pipe) = self.pipe.as_mut() else {
            self.unread += 1;
            return;
        };
        tick.unread = self.unread;
        self.line.clear();
        serde_json::to_writer(&mut self.line, &tick).expect("a tick serializes");
        self.line.push(b'\n');
        match pipe.write(&self.line) {
            Ok(n) if n == self.line.len() => {
                if self.reported {
                    warn(format_args!(
                        "reader attached to {}; {} ticks were not read",
                        self.path.display(),
                        self.unread
                    ));
                    self.reported = false;
                }
                self.unread = 0;
            }
            // POSIX makes a write of at most PIPE_BUF bytes all or nothing; a short one would
            // mean a broken pipe, so it is handled as one.
            Ok(_) => {
                self.pipe = None;
                self.unread += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.unread += 1;
                self.report(format!(
                    "the reader of {} is not reading; ticking on, counting unread ticks",
                    self.path.display()
                ));
            }
            Err(e) => {
                self.pipe = None;
                self.unread += 1;
                self.report(format!(
                    "the reader of {} went away ({e}); ticking on, counting unread ticks",
                    self.path.display()
                ));
            }
        }
    }

    fn open(&mut self) -> Option<File> {
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&self.path);
        match opened {
            Ok(file) => Some(file),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                self.report(format!(
                    "no reader on {}; ticking on, counting unread ticks",
                    self.path.display()
                ));
                None
            }
            Err(e) => {
                self.report(format!("cannot open {}: {e}", self.path.display()));
                None
            }
        }
    }

    fn report(&mut self, msg: String) {
        if !self.reported {
            warn(msg);
            self.reported = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ticks_come_one_period_apart() {
        let mut s = Schedule::new(10);
        assert_eq!(s.due(9), None);
        assert_eq!(s.due(10), Some(Due { tick: 1, missed: 0 }));
        assert_eq!(s.due(15), None);
        assert_eq!(s.next_due(), 20);
        assert_eq!(s.due(21), Some(Due { tick: 2, missed: 0 }));
    }

    #[test]
    fn a_stall_reports_missed_ticks_instead_of_bursting() {
        let mut s = Schedule::new(10);
        assert_eq!(s.due(10), Some(Due { tick: 1, missed: 0 }));
        assert_eq!(s.due(55), Some(Due { tick: 5, missed: 3 }));
        assert_eq!(s.due(55), None);
        assert_eq!(s.due(60), Some(Due { tick: 6, missed: 0 }));
    }

    #[test]
    fn tick_lines_omit_zero_counts() {
        let tick = Tick {
            tick: 3,
            at: Timestamp(0),
            missed: 0,
            unread: 0,
        };
        assert_eq!(
            serde_json::to_string(&tick).unwrap(),
            r#"{"tick":3,"at":"1970-01-01T00:00:00.000000Z"}"#
        );
    }

    proptest! {
        /// Whatever the wake-up times, every tick number is accounted for exactly once (emitted or
        /// missed), ticks increase, and none is emitted before it is due.
        #[test]
        fn every_tick_is_emitted_or_missed(period in 1i64..1000, mut wakes in prop::collection::vec(0i64..100_000, 1..200)) {
            wakes.sort_unstable();
            let mut s = Schedule::new(period);
            let mut accounted = 0u64;
            let mut last = 0u64;
            for &t in &wakes {
                if let Some(d) = s.due(t) {
                    prop_assert!(d.tick > last);
                    prop_assert!(period * d.tick as i64 <= t);
                    prop_assert_eq!(d.tick - last - 1, d.missed);
                    accounted += d.missed + 1;
                    last = d.tick;
                }
            }
            prop_assert_eq!(accounted, last);
            prop_assert_eq!(last, (*wakes.last().unwrap() / period) as u64);
        }
    }
}

pub use cli::Args;

/// The command line of `ticker`: its doc comments are `ticker --help`.
mod cli {
    use std::path::PathBuf;

    use crate::reprice::ticker::{self, Config};
    use crate::time::Duration;
    use clap::Parser;

    /// The Scheduler of the repricing loop: one tick line every PERIOD.
    ///
    /// Tick N is due N periods after the start, on the monotonic clock, so the schedule never drifts;
    /// a process stalled past several ticks reports `"missed":k` on the next one instead of bursting.
    /// With `--out FIFO` the ticks go to a named pipe that the ticker keeps feeding while no reader is
    /// attached (the undelivered ticks are counted as `"unread":k` on the next delivered line), so the
    /// scheduler outlives a crashed algorithm and a restarted one picks up the ticks.
    #[derive(Parser, Debug)]
    #[command(
        name = "ticker",
        version,
        after_help = "\
Examples:
  ticker 5s | reprice --csv examples/data.csv
  ticker 1s --count 3
  ticker 5s --align --out /tmp/ticks.fifo &  reprice --csv examples/data.csv < /tmp/ticks.fifo
  ticker 5s --redis redis://127.0.0.1:6379/ticks   # for reprice --redis … --group G

Output, one line per tick:
  {\"tick\":1,\"at\":\"2026-11-21T11:20:05.000000Z\"}"
    )]
    pub struct Args {
        /// Time between ticks (e.g. 5s, 250ms, 1m).
        #[arg(help_heading = "Ticks", value_name = "PERIOD")]
        period: Duration,

        /// Stop after tick N.
        #[arg(help_heading = "Ticks", long, value_name = "N")]
        count: Option<u64>,

        /// Start on a wall-clock multiple of the period (5s ticks land on :00, :05, …).
        #[arg(help_heading = "Ticks", long)]
        align: bool,

        /// Write to this named pipe (created if missing) instead of stdout; keep ticking without a reader.
        #[arg(help_heading = "Where ticks go", long, value_name = "FIFO")]
        out: Option<PathBuf>,

        /// Append each tick to the Redis stream at redis://HOST:PORT/STREAM instead of stdout (for
        /// `reprice --redis … --group G`); keep ticking while Redis is unreachable.
        #[arg(
            help_heading = "Where ticks go",
            long,
            value_name = "URL",
            conflicts_with = "out"
        )]
        redis: Option<String>,

        /// Keep about this many ticks in the --redis stream (`XADD … MAXLEN ~`).
        #[arg(
            help_heading = "Where ticks go",
            long,
            value_name = "N",
            default_value_t = 10_000,
            requires = "redis"
        )]
        maxlen: u64,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "ticker";

        fn run(self, _process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            ticker::run(&Config {
                period: args.period,
                count: args.count,
                align: args.align,
                out: args.out,
                redis: args.redis.map(|url| (url, args.maxlen)),
            })
        }
    }
}
