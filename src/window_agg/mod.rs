//! window-agg: a sliding summary of the last N minutes of events, by type and, within each type,
//! by tracking id (seed `002_…`, parts B and C).
//!
//! Input, one event per line; only three fields are read, by configurable dotted paths (default
//! `value.event`, `value.trackingId`, `value.timestamp`, the seed's shape):
//!
//! ```text
//! {"path":"/visitors/events/","value":{…,"trackingId":"INF-yj562hjojbtez",…,"timestamp":"2019-12-08T06:42:57.289Z","event":"formsubmit",…}}
//! ```
//!
//! Output, one line per bucket boundary (the window that just closed) and one at the end of input
//! (the live window, up to the end of the newest bucket):
//!
//! ```text
//! {"window_start":"2019-12-08T06:38:00.000000Z","window_end":"2019-12-08T06:43:00.000000Z","types":{"review":{"totalEventsCaptured":0,"eventsCapturedByTrackingIds":{}},"signup":{"totalEventsCaptured":50,"eventsCapturedByTrackingIds":{"INF-yj562hjojbtez":10,…}},"user-event":{…}}}
//! ```
//!
//! - Event names map to type names (`formsubmit`→`signup`, `click`→`user-event`,
//!   `review`→`review` by default; names not in the map pass through). Mapped types are always
//!   shown, with 0 when absent. Types and tracking ids are sorted by name.
//! - Every count is exact for the window the line states, `[window_start, window_end)`: the seed's
//!   "approximation of 10 seconds" is only that the window's edges fall on bucket boundaries.
//! - Clock: event time (the event's timestamp; the newest seen is "now") or, with
//!   `--clock arrival`, the time a line was read. Events older than the live window are late:
//!   reported on stderr (the first ten one by one, then counted) and not added; the run then
//!   exits 1, as for bad lines (`--strict` stops at the first). An event time later than the
//!   wall clock plus `--max-future` (default 5m) is a bad line and never moves the clock
//!   ([`time::Horizon`]).
//! - Live input (a pipe or terminal): a line is also written at every bucket boundary while input
//!   pauses (after a grace of half a bucket, at most 1 s, for events still on their way); the
//!   event clock then moves on with the wall clock from the last event. File input is read as fast
//!   as possible and gives the lines a live run of the same events would.
//! - SIGINT and SIGTERM end a run as the end of input does (the live window is written), then
//!   the exit code is 130 or 0.
//! - With `--memcached`, counts also go to Memcached so several processes share one summary; see
//!   [`memcached`].

pub mod extract;
pub mod memcached;
pub mod window;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;

use crate::error::{Error, Result};
use crate::event_config::{default_type_names, FieldPaths, FileConfig};
use crate::fields::{FieldReader, Fields, Found, Want};
use crate::input::{parse_workers, spawn_parsed_with, BadLines, Batch, InputArgs, Location, Text};
use crate::output::Output;
use crate::runner::warn;
use crate::stop::Stop;
use crate::time::{self, Micros};
use extract::Paths;
use window::{Summary, Window};

/// Where the window's "now" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// The event's own timestamp.
    Event,
    /// The time the line was read.
    Arrival,
}

/// window-agg's flags; the binary flattens them into its arguments. Unset flags fall back to the
/// `--config` file, then to the defaults named here.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Window length in minutes (the seed's N) [default: config's minutes, else 5].
    #[arg(help_heading = "Window", long)]
    pub minutes: Option<u32>,

    /// Bucket length: the window moves in these steps [default: config's bucket, else 10s].
    #[arg(help_heading = "Window", long)]
    pub bucket: Option<time::Duration>,

    /// Event time (the timestamp field) or arrival time (when the line is read).
    #[arg(help_heading = "Window", long, value_enum, default_value = "event")]
    pub clock: Clock,

    /// Map an event name to a type name, e.g. formsubmit=signup (repeat; replaces the config's
    /// map) [default: formsubmit=signup, click=user-event, review=review].
    #[arg(
        help_heading = "Event fields",
        long = "type-name",
        value_name = "EVENT=TYPE"
    )]
    pub type_names: Vec<String>,

    /// Dotted path of the event type [default: value.event].
    #[arg(help_heading = "Event fields", long, value_name = "PATH")]
    pub type_field: Option<String>,

    /// Dotted path of the tracking id [default: value.trackingId].
    #[arg(help_heading = "Event fields", long, value_name = "PATH")]
    pub tracking_id_field: Option<String>,

    /// Dotted path of the timestamp [default: value.timestamp].
    #[arg(help_heading = "Event fields", long, value_name = "PATH")]
    pub timestamp_field: Option<String>,

    /// Keep the counts in Memcached, shared with other window-agg processes:
    /// HOST:PORT[,HOST:PORT…]; without a value (last on the line, or `--memcached=`), the config
    /// file's `memcached` address.
    #[arg(help_heading = "Memcached", long, value_name = "SERVERS", num_args = 0..=1, default_missing_value = "")]
    pub memcached: Option<String>,

    /// Prefix of every Memcached key [default: config's key_prefix, else "pipeworks:"].
    #[arg(help_heading = "Memcached", long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,

    /// With --memcached: the most distinct types shared per window (the mapping's not counted), so
    /// the type registry stays within one Memcached item; a new type past it is counted here only,
    /// and reported.
    #[arg(
        help_heading = "Memcached",
        long,
        value_name = "N",
        default_value_t = 1000
    )]
    pub max_types: usize,

    /// Print the current summary from Memcached as one line and exit (Memcached's address from
    /// --memcached or the config file).
    #[arg(help_heading = "Memcached", long)]
    pub read: bool,

    #[command(flatten)]
    pub max_future: time::MaxFutureArg,

    /// JSON config file (minutes, bucket, type_names, fields, memcached…); flags override it.
    #[arg(help_heading = "Input", long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub input: InputArgs,
}

/// What window-agg is asked to do, flags and config file merged.
#[derive(Debug, Clone)]
pub struct Config {
    pub minutes: u32,
    pub bucket: time::Duration,
    pub clock: Clock,
    /// `--max-future`: event times later than the wall clock plus this are bad lines.
    pub max_future: time::MaxFuture,
    pub type_names: BTreeMap<String, String>,
    pub fields: FieldPaths,
    pub memcached: Option<String>,
    pub key_prefix: String,
    pub max_types: usize,
    pub read: bool,
    pub input: InputArgs,
}

impl Flags {
    pub fn resolve(&self) -> Result<Config> {
        let file = FileConfig::load(self.config.as_deref())?;
        let type_names = if self.type_names.is_empty() {
            file.type_names.unwrap_or_else(default_type_names)
        } else {
            let mut map = BTreeMap::new();
            for pair in &self.type_names {
                let (event, kind) = pair.split_once('=').ok_or_else(|| {
                    Error::usage(format!("--type-name {pair:?}: expected EVENT=TYPE"))
                })?;
                map.insert(event.to_string(), kind.to_string());
            }
            map
        };
        let from_file = file.memcached.clone();
        let memcached_from_file = || {
            from_file.clone().ok_or_else(|| {
                Error::usage(
                    "no Memcached address: give --memcached HOST:PORT or put \"memcached\" in the --config file",
                )
            })
        };
        let mut fields = file.fields.unwrap_or_default();
        if let Some(p) = &self.type_field {
            fields.kind = p.clone();
        }
        if let Some(p) = &self.tracking_id_field {
            fields.tracking_id = p.clone();
        }
        if let Some(p) = &self.timestamp_field {
            fields.timestamp = p.clone();
        }
        let config = Config {
            minutes: self.minutes.or(file.minutes).unwrap_or(5),
            bucket: self
                .bucket
                .or(file.bucket)
                .unwrap_or(time::Duration(std::time::Duration::from_secs(10))),
            clock: self.clock,
            max_future: self.max_future.max_future,
            type_names,
            fields,
            memcached: match self.memcached.as_deref() {
                Some(servers) if !servers.is_empty() => Some(servers.to_string()),
                Some(_) => Some(memcached_from_file()?),
                None if self.read => Some(memcached_from_file()?),
                None => None,
            },
            key_prefix: self
                .key_prefix
                .clone()
                .or(file.key_prefix)
                .unwrap_or_else(|| "pipeworks:".to_string()),
            max_types: self.max_types,
            read: self.read,
            input: self.input.clone(),
        };
        config.buckets()?;
        Ok(config)
    }
}

impl Config {
    /// How many buckets make a window; the window must be a whole number of buckets.
    pub fn buckets(&self) -> Result<usize> {
        let bucket = self.bucket.micros();
        let window = i64::from(self.minutes) * 60 * time::MICROS_PER_SEC;
        if self.minutes == 0 {
            return Err(Error::usage("--minutes must be at least 1"));
        }
        if bucket <= 0 || window % bucket != 0 {
            return Err(Error::usage(format!(
                "--bucket {} must divide the {}-minute window evenly",
                self.bucket, self.minutes
            )));
        }
        let n = window / bucket;
        if n > 1_000_000 {
            return Err(Error::usage(format!(
                "{n} buckets per window is too many: use a longer --bucket"
            )));
        }
        Ok(n as usize)
    }

    fn window(&self) -> Result<Window> {
        Ok(Window::new(
            self.bucket.micros(),
            self.buckets()?,
            self.type_names.clone(),
        ))
    }

    /// The event-time rule, with the window's reach: a summary for an event at `t` starts up to
    /// a window before it and ends up to a bucket after it.
    fn horizon(&self) -> time::Horizon {
        let window = i64::from(self.minutes) * 60 * time::MICROS_PER_SEC;
        time::Horizon::new(self.max_future).reach(window, self.bucket.micros())
    }

    /// The fields to read from each event: the type and tracking id, and the timestamp unless
    /// the clock is the arrival time.
    fn event_fields(&self) -> Result<EventFields> {
        let f = &self.fields;
        let mut paths: Vec<&str> = vec![&f.kind, &f.tracking_id];
        if self.clock == Clock::Event {
            paths.push(&f.timestamp);
        }
        Ok(EventFields {
            serde: Paths::new(&paths).map_err(Error::usage)?,
            fast: Fields::new(&paths.iter().map(|p| (*p, Want::Str)).collect::<Vec<_>>()),
            timestamp: self.clock == Clock::Event,
        })
    }
}

/// How a parse thread reads an event line: the shared fast path first, serde when it declines.
struct EventFields {
    serde: Paths,
    fast: Fields,
    /// Whether the third field, the timestamp, is read.
    timestamp: bool,
}

/// One line after parsing (on a parse thread): an event, or why the line is bad.
enum Parsed {
    Event {
        kind: Text,
        tracking_id: Text,
        /// Event time; `None` with `--clock arrival`.
        at: Option<Micros>,
    },
    Bad(String),
}

impl EventFields {
    fn parse_batch(&self, reader: &mut FieldReader, batch: &mut Batch) -> Vec<Parsed> {
        (0..batch.len())
            .map(|i| {
                self.parse_fast(reader, batch, i)
                    .unwrap_or_else(|| self.parse_serde(batch, i))
            })
            .collect()
    }

    /// The `i`-th line by the shared fast path, or `None` when serde must read it.
    fn parse_fast(&self, reader: &mut FieldReader, batch: &mut Batch, i: usize) -> Option<Parsed> {
        let (bytes, len, start) = batch.padded_mut(i).ok()?;
        let range = |f: Found| match f {
            Found::Str(a, b) => Some(((start + a) as u32, (start + b) as u32)),
            _ => None,
        };
        let (kind, tracking_id, ts) = if self.timestamp {
            let [k, t, ts] = reader.read::<3>(bytes, len, &self.fast)?;
            (range(k)?, range(t)?, Some(range(ts)?))
        } else {
            let [k, t] = reader.read::<2>(bytes, len, &self.fast)?;
            (range(k)?, range(t)?, None)
        };
        let at = match ts {
            Some((a, b)) => match time::parse_timestamp(batch.str_at(a as usize, b as usize)?) {
                Ok(at) => Some(at),
                Err(reason) => return Some(Parsed::Bad(reason)),
            },
            None => None,
        };
        Some(Parsed::Event {
            kind: Text::InBatch(kind.0, kind.1),
            tracking_id: Text::InBatch(tracking_id.0, tracking_id.1),
            at,
        })
    }

    /// The `i`-th line by serde: the reference reading, and the author of every error message.
    fn parse_serde(&self, batch: &Batch, i: usize) -> Parsed {
        let text = match batch.line(i).text {
            Ok(text) => text,
            Err(e) => return Parsed::Bad(e.to_string()),
        };
        let read = if self.timestamp {
            self.serde.extract::<3>(text).and_then(|[k, t, ts]| {
                let at = time::parse_timestamp(&ts)?;
                Ok((k, t, Some(at)))
            })
        } else {
            self.serde.extract::<2>(text).map(|[k, t]| (k, t, None))
        };
        match read {
            Ok((kind, tracking_id, at)) => Parsed::Event {
                kind: Text::new(kind, batch),
                tracking_id: Text::new(tracking_id, batch),
                at,
            },
            Err(reason) => Parsed::Bad(reason),
        }
    }
}

/// Run window-agg over the configured input, writing summaries to `out`.
pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    if config.read {
        return memcached::read(config, out);
    }
    // Before any thread starts (the Memcached client's, the parse threads): SIGINT and SIGTERM end
    // window-agg the way the end of input does (the live window is written and, with Memcached,
    // the last counts delivered), then it exits 130 (SIGINT) or 0 (SIGTERM).
    let mut stop = Stop::listen()?;
    let mut window = config.window()?;
    let shared = match &config.memcached {
        Some(servers) => {
            window = window.track_changes();
            Some(memcached::Shared::connect(servers, config)?)
        }
        None => None,
    };
    let fields = config.event_fields()?;
    let mut agg = Aggregator {
        window,
        clock: config.clock,
        horizon: config.horizon(),
        bad: config.input.bad_lines(),
        strict: config.input.strict,
        late: 0,
        events: 0,
        idle_from: None,
        shared,
    };
    let live = is_live(&config.input);
    // Lines are parsed on every core; the window stays on this thread, in input order.
    let batches = spawn_parsed_with(
        config.input.open()?,
        parse_workers(4),
        FieldReader::default,
        move |reader, batch| fields.parse_batch(reader, batch),
    );
    loop {
        // Wake up at least every STOP_POLL to notice SIGINT/SIGTERM; a timeout before the
        // deadline is only that check.
        let deadline = agg.deadline().filter(|_| live);
        let wait = deadline.map_or(STOP_POLL, |d| (d - time::now()).clamp(0, STOP_POLL));
        let next = batches.recv_timeout(std::time::Duration::from_micros(wait as u64));
        match next {
            Ok(item) => agg.batch(item?, out)?,
            Err(RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| time::now() >= d) {
                    agg.tick(time::now(), out)?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(why) = stop.requested() {
            // Lines already read are still on their way through the parse threads: count them
            // (while they keep coming, for at most STOP_DRAIN), as the end of input would.
            let until = std::time::Instant::now() + STOP_DRAIN;
            while let Ok(item) = batches.recv_timeout(STOP_DRAIN / 10) {
                agg.batch(item?, out)?;
                if std::time::Instant::now() >= until {
                    break;
                }
            }
            agg.finish(out)?;
            return why.into_result();
        }
    }
    agg.finish(out)
}

/// Whether input may pause (a pipe, terminal or socket) rather than being a regular file.
fn is_live(input: &InputArgs) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let stdin_is_file = || {
        std::fs::metadata("/dev/stdin")
            .map(|m| m.is_file() || m.file_type().is_block_device())
            .unwrap_or(false)
    };
    if input.files.is_empty() {
        return !stdin_is_file();
    }
    input.files.iter().any(|f| {
        if f.as_os_str() == "-" {
            !stdin_is_file()
        } else {
            std::fs::metadata(f).map(|m| !m.is_file()).unwrap_or(true)
        }
    })
}

/// How often the main loop looks for a stop request, in µs.
const STOP_POLL: Micros = 200_000;

/// How long a stop signal lets lines already read finish their way through the parse threads.
const STOP_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Late events reported one by one before they are only counted.
const LATE_REPORTED: u64 = 10;

struct Aggregator {
    window: Window,
    clock: Clock,
    horizon: time::Horizon,
    bad: BadLines,
    /// `--strict`: a late event stops the run, as a bad line does.
    strict: bool,
    late: u64,
    events: u64,
    /// The window's clock and the wall time when input last arrived: while input pauses, the
    /// event clock moves on with the wall clock from there.
    idle_from: Option<(Micros, Micros)>,
    shared: Option<memcached::Shared>,
}

impl Aggregator {
    /// Take a batch's lines, as its parse thread read them.
    fn batch(
        &mut self,
        (batch, parsed): (Batch, Vec<Parsed>),
        out: &mut Output<impl Write>,
    ) -> Result<()> {
        let arrival = time::now();
        for (i, event) in parsed.into_iter().enumerate() {
            self.line(&batch, i, event, arrival, out)?;
        }
        if let Some(clock) = self.window.clock() {
            self.idle_from = Some((clock, time::now()));
        }
        Ok(())
    }

    /// Take the `i`-th line of `batch`, as its parse thread read it.
    fn line(
        &mut self,
        batch: &Batch,
        i: usize,
        parsed: Parsed,
        arrival: Micros,
        out: &mut Output<impl Write>,
    ) -> Result<()> {
        match parsed {
            Parsed::Event {
                kind,
                tracking_id,
                at,
            } => {
                let at = at.unwrap_or(arrival);
                let event = kind.resolve(batch);
                self.event(
                    at,
                    event,
                    tracking_id.resolve(batch),
                    batch.location(i),
                    out,
                )
            }
            Parsed::Bad(reason) => self.bad.report(batch.location(i), reason),
        }
    }

    /// One parsed event: the event-time rule first, so a refused time never moves the window's
    /// clock, then the window.
    fn event(
        &mut self,
        at: Micros,
        event: &str,
        tracking_id: &str,
        line: Location<'_>,
        out: &mut Output<impl Write>,
    ) -> Result<()> {
        if self.clock == Clock::Event {
            if let Err(why) = self.horizon.check(at) {
                return self.bad.report(line, why);
            }
        }
        let closed = self.window.advance_to(at);
        self.publish(closed, out)?;
        self.events += 1;
        if let Err(late) = self.window.add(at, event, tracking_id) {
            if self.strict {
                return Err(Error::failed(format!("{line}: {late}")));
            }
            self.late += 1;
            if self.late <= LATE_REPORTED {
                warn(format_args!("{line}: {late}"));
                if self.late == LATE_REPORTED {
                    warn("further late events are counted, not reported one by one");
                }
            }
        }
        Ok(())
    }

    /// The wall time at which the next summary is due while input pauses: the next boundary plus
    /// a grace period for events of the closing bucket still on their way (half a bucket, at most
    /// a second), so a live run writes the same lines as a run over the same events from a file.
    fn deadline(&self) -> Option<Micros> {
        let boundary = self.window.next_boundary()?;
        let grace = (self.window.bucket_len() / 2).min(time::MICROS_PER_SEC);
        match self.clock {
            Clock::Arrival => Some(boundary + grace),
            Clock::Event => {
                let (clock, wall) = self.idle_from?;
                Some(wall + (boundary - clock) + grace)
            }
        }
    }

    /// Input paused past a boundary: move the clock on by the wall time that passed.
    fn tick(&mut self, now: Micros, out: &mut Output<impl Write>) -> Result<()> {
        let to = match (self.clock, self.idle_from) {
            (Clock::Arrival, _) => now,
            (Clock::Event, Some((clock, wall))) => clock + (now - wall),
            (Clock::Event, None) => return Ok(()),
        };
        // Never past what a window's end can print (only reachable with --max-future off).
        let to = to.min(time::LATEST - self.window.bucket_len());
        let closed = self.window.advance_to(to);
        self.idle_from = Some((to, now));
        self.publish(closed, out)
    }

    /// Write the summaries of closed windows; with Memcached, first hand over the counts and
    /// write the shared summary instead of the local one.
    fn publish(&mut self, closed: Vec<Summary>, out: &mut Output<impl Write>) -> Result<()> {
        if closed.is_empty() {
            return Ok(());
        }
        match &mut self.shared {
            None => {
                for summary in &closed {
                    out.emit(summary)?;
                }
            }
            Some(shared) => {
                let last = closed.last().expect("not empty");
                if let Some(summary) = shared.sync(&mut self.window, last) {
                    out.emit(&summary)?;
                }
            }
        }
        out.flush()
    }

    fn finish(mut self, out: &mut Output<impl Write>) -> Result<()> {
        let mut unshared = 0;
        if let Some(summary) = self.window.current() {
            match &mut self.shared {
                None => out.emit(&summary)?,
                Some(shared) => {
                    let last = shared.finish(&mut self.window, summary.window_end.0)?;
                    out.emit(&last)?;
                    warn(format_args!(
                        "memcached: {} requests for {} events ({:.5} per event)",
                        shared.requests(),
                        self.events,
                        shared.requests() as f64 / self.events.max(1) as f64
                    ));
                    unshared = shared.unshared_events();
                    if unshared > 0 {
                        warn(format_args!(
                            "{unshared} event{} counted here only, not in the shared summary \
                             (reasons above)",
                            if unshared == 1 { " was" } else { "s were" }
                        ));
                    }
                }
            }
        }
        out.flush()?;
        if self.late > 0 {
            warn(format_args!(
                "{} late event{} before the window, not counted",
                self.late,
                if self.late == 1 { " was" } else { "s were" }
            ));
        }
        // Bad lines, late events and counts left out of the shared summary all mean input that
        // is not in the output: exit 1.
        let bad = self.bad.finish();
        if self.late > 0 || unshared > 0 {
            bad?;
            return Err(Error::Reported(1));
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::testing;
    use crate::input::Reader;
    use proptest::prelude::*;

    type Outcome = std::result::Result<(String, String, Option<Micros>), String>;

    fn outcome(parsed: Parsed, batch: &Batch) -> Outcome {
        match parsed {
            Parsed::Event {
                kind,
                tracking_id,
                at,
            } => Ok((
                kind.resolve(batch).to_string(),
                tracking_id.resolve(batch).to_string(),
                at,
            )),
            Parsed::Bad(reason) => Err(reason),
        }
    }

    fn event_fields(clock: Clock) -> EventFields {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: Flags,
        }
        let mut config = <Cli as clap::Parser>::parse_from(["window-agg"])
            .flags
            .resolve()
            .unwrap();
        config.clock = clock;
        config.event_fields().unwrap()
    }

    /// Each line of `text` by the fast path (when it answers) and by serde.
    fn both_ways(fields: &EventFields, text: Vec<u8>) -> Vec<(Option<Outcome>, Outcome)> {
        let mut reader = FieldReader::default();
        let mut out = Vec::new();
        for mut batch in Reader::from_reader(std::io::Cursor::new(text)).batches() {
            for i in 0..batch.len() {
                let fast = fields.parse_fast(&mut reader, &mut batch, i);
                let fast = fast.map(|p| outcome(p, &batch));
                let serde = outcome(fields.parse_serde(&batch, i), &batch);
                out.push((fast, serde));
            }
        }
        out
    }

    fn event_line() -> impl Strategy<Value = String> {
        let event = prop_oneof![
            Just("\"click\"".to_string()),
            Just("\"formsubmit\"".to_string()),
            testing::string(),
            testing::value()
        ];
        (event, testing::string(), testing::timestamp())
            .prop_flat_map(|(event, tid, ts)| {
                testing::object(vec![
                    ("event".into(), event),
                    ("trackingId".into(), tid),
                    ("timestamp".into(), ts),
                ])
            })
            .prop_flat_map(|value| testing::object(vec![("value".into(), value)]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The fast path answers only as serde would: the same events with the same values, and
        /// for a bad line (a bad timestamp) the same message.
        #[test]
        fn the_fast_path_agrees_with_serde(line in event_line().prop_flat_map(testing::mutated)) {
            for clock in [Clock::Event, Clock::Arrival] {
                for (fast, serde) in both_ways(&event_fields(clock), line.clone()) {
                    if let Some(fast) = fast {
                        prop_assert_eq!(fast, serde);
                    }
                }
            }
        }
    }

    /// gen-events' tracking profile over the default tracking ids: realistic input lines.
    fn tracking_events() -> crate::gen_events::tracking::Tracking {
        let ids: Vec<String> = crate::event_config::DEFAULT_TRACKING_IDS
            .iter()
            .map(|s| s.to_string())
            .collect();
        crate::gen_events::tracking::Tracking::new(&ids, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn the_fast_path_reads_generated_events_and_refuses_duplicates() {
        let mut gen = tracking_events();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut text = Vec::new();
        for i in 0..500 {
            gen.write(&mut rng, 1_575_784_800_000_000 + i * 100, &mut text);
            text.push(b'\n');
        }
        let fields = event_fields(Clock::Event);
        let got = both_ways(&fields, text);
        assert_eq!(got.len(), 500);
        for (fast, serde) in got {
            assert!(serde.is_ok());
            assert_eq!(fast, Some(serde));
        }
        let dup = br#"{"value":{"event":"click","trackingId":"a","timestamp":"2019-12-08T06:00:00Z","event":"review"}}"#;
        let [(fast, serde)] = <[_; 1]>::try_from(both_ways(&fields, dup.to_vec())).unwrap();
        assert_eq!(fast, None);
        assert_eq!(serde, Err(r#"duplicate field "value.event""#.to_string()));
        let dup = br#"{"value":{"event":"click","trackingId":"a","timestamp":"2019-12-08T06:00:00Z"},"value":{}}"#;
        let [(_, serde)] = <[_; 1]>::try_from(both_ways(&fields, dup.to_vec())).unwrap();
        assert_eq!(serde, Err(r#"duplicate field "value""#.to_string()));
    }

    /// Single-thread cost of the per-event work (field extraction, timestamp, window), without
    /// I/O: `cargo test --release --lib window_agg::tests::per_event_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn per_event_throughput() {
        let mut gen = tracking_events();
        let mut rng = fastrand::Rng::with_seed(1);
        let lines: Vec<String> = (0..200_000)
            .map(|i| {
                let mut out = Vec::new();
                gen.write(&mut rng, 1_575_784_800_000_000 + i * 100, &mut out);
                String::from_utf8(out).unwrap()
            })
            .collect();
        let bytes: usize = lines.iter().map(String::len).sum();
        let paths = Paths::new(&["value.event", "value.trackingId", "value.timestamp"]).unwrap();
        // CPU time of this thread, not wall time: the machine may be busy with other work.
        let cpu = || {
            use nix::sys::resource::{getrusage, UsageWho};
            let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut window = Window::new(10_000_000, 30, default_type_names());
            let started = cpu();
            for line in &lines {
                let [event, tid, ts] = paths.extract::<3>(line).unwrap();
                let at = time::parse_timestamp(&ts).unwrap();
                window.advance_to(at);
                window.add(at, &event, &tid).unwrap();
            }
            best = best.min(cpu() - started);
        }
        eprintln!(
            "{:.0} events per CPU-second, {:.0} MB/s on one thread (best of 5, {} events of {} bytes on average)",
            lines.len() as f64 / best,
            bytes as f64 / best / 1e6,
            lines.len(),
            bytes / lines.len()
        );
    }
}

pub use cli::Args;

/// The command line of `window-agg`: its doc comments are `window-agg --help`.
mod cli {

    use crate::window_agg::{self, Flags};
    use clap::Parser;

    /// Sliding summary of the last N minutes of events.
    ///
    /// Counts events by type and, within each type, by tracking id over the last N minutes (default
    /// 5), in buckets (default 10 s): one line at every bucket boundary (the window that just closed)
    /// and one at the end of input. Every count is exact for the window the line states. Works on the
    /// event's timestamp by default (--clock arrival for arrival time); on live input a line still
    /// comes every bucket while input pauses. With --memcached the counts are shared through Memcached
    /// by any number of window-agg processes, and --read prints the shared summary.
    #[derive(Parser, Debug)]
    #[command(
        name = "window-agg",
        version,
        after_help = "\
Examples:
  gen-events --rate 100 | window-agg --minutes 5
  window-agg --config examples/config.json events.jsonl | jq .types.signup
  gen-events --rate 1000 | window-agg --memcached 127.0.0.1:11211 --bucket 5s
  window-agg --read --memcached 127.0.0.1:11211

Output, one line per bucket boundary:
  {\"window_start\":\"2019-12-08T06:38:00.000000Z\",\"window_end\":\"2019-12-08T06:43:00.000000Z\",\
\"types\":{\"signup\":{\"totalEventsCaptured\":50,\"eventsCapturedByTrackingIds\":{\"INF-yj562hjojbtez\":10,…}},…}}"
    )]
    pub struct Args {
        #[command(flatten)]
        flags: Flags,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "window-agg";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = args.flags.resolve()?;
            window_agg::run(&config, process.output())
        }
    }
}
