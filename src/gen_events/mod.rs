//! gen-events: random events at a steady rate (seed `002_…`, part A).
//!
//! Output, one event per line, in one of three profiles (each in its own module):
//!
//! - [`tracking`] (default): the seed's event shape, kinds signup / user-event / review;
//! - [`metrics`]: `{"type","value","timestamp","tags"}` for `minute-stats`;
//! - [`load`]: `{"server","cpu","ram","timestamp"}` for `load-monitor`.
//!
//! ```text
//! {"path":"/visitors/events/","value":{"fingerprint":"…","sessionId":"…","visitorId":"…","trackingId":"INF-yj562hjojbtez",…,"timestamp":"2019-12-08T06:42:57.289Z","event":"formsubmit",…}}
//! ```
//!
//! Pacing follows an absolute schedule: event i is due at `start + i / rate`, so the count never
//! drifts from rate × elapsed. Between events the generator flushes its sink and sleeps until the
//! next one is due. A small lag (a late wake-up, up to `--max-lag`, default 100 ms) is caught up
//! at once; a longer stall is not made up in a burst: the events whose time passed are skipped,
//! the skip is reported on stderr, and the schedule carries on where the clock is.
//!
//! Each event is stamped with its scheduled time (live), with `start + i / rate` (`--simulated`,
//! no sleeping), or with the current time (`--rate max`). The same `--seed` gives the same events
//! (live runs differ only in their timestamps).
//!
//! Where events go is a [`Sink`]: stdout by default ([`crate::output::Output`] is one); another
//! destination (an HTTP poster, say) implements the same two methods.

pub mod check;
pub mod load;
pub mod metrics;
pub mod post;
mod text;
pub mod tracking;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::event_config::{FileConfig, Rate, DEFAULT_TRACKING_IDS};
use crate::output::Output;
use crate::runner::warn;
use crate::time::{self, Micros, Timestamp, MICROS_PER_SEC};

/// Where generated events go. `send` gets one complete JSON object (no newline); `flush` is called
/// before every pause of the schedule and at the end, so a live consumer sees events on time.
pub trait Sink {
    fn send(&mut self, event: &[u8]) -> Result<()>;
    fn flush(&mut self) -> Result<()>;
}

impl<W: Write> Sink for Output<W> {
    fn send(&mut self, event: &[u8]) -> Result<()> {
        self.emit_raw(event)
    }

    fn flush(&mut self) -> Result<()> {
        Output::flush(self)
    }
}

/// Which events to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The seed's tracking events (signup, user-event, review).
    Tracking,
    /// Metric events for minute-stats.
    Metrics,
    /// Server CPU/RAM readings for load-monitor.
    Load,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Profile as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("unknown profile {s:?} (tracking, metrics or load)"))
    }
}

/// gen-events' flags; the binary flattens them into its arguments. Unset flags fall back to the
/// `--config` file, then to the defaults named here.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Which events: tracking (default), metrics or load.
    #[arg(help_heading = "Events", long, value_enum)]
    pub profile: Option<Profile>,

    /// Events per second, or `max` for as fast as possible [default: config's rate, else 100].
    #[arg(help_heading = "Events", long)]
    pub rate: Option<Rate>,

    /// Stop after this many events.
    #[arg(help_heading = "Events", long)]
    pub count: Option<u64>,

    /// Stop after this long (of schedule time: with --simulated, of event time).
    #[arg(help_heading = "Events", long)]
    pub duration: Option<time::Duration>,

    /// Seed of the random choices: the same seed gives the same events.
    #[arg(help_heading = "Events", long)]
    pub seed: Option<u64>,

    /// Do not sleep: stamp event i with START + i/rate and write as fast as possible.
    #[arg(help_heading = "Events", long)]
    pub simulated: bool,

    /// First event time for --simulated (RFC 3339) [default: now].
    #[arg(
        help_heading = "Events",
        long,
        value_name = "TIME",
        requires = "simulated"
    )]
    pub start: Option<Timestamp>,

    /// With --profile load: how many servers report, named server0001 … [default: 10].
    #[arg(help_heading = "Events", long)]
    pub servers: Option<u32>,

    /// Catch up a lag up to this long at once; a longer stall skips the missed events (reported).
    #[arg(help_heading = "Events", long, default_value = "100ms")]
    pub max_lag: time::Duration,

    /// JSON config file (rate, tracking_ids, kind_weights, servers…); flags override it.
    #[arg(help_heading = "Events", long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What gen-events is asked to do, flags and config file merged.
#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    pub rate: Rate,
    pub count: Option<u64>,
    pub duration: Option<time::Duration>,
    pub seed: Option<u64>,
    pub simulated: bool,
    pub start: Option<Micros>,
    pub tracking_ids: Vec<String>,
    pub kind_weights: BTreeMap<String, u32>,
    pub servers: u32,
    pub max_lag: time::Duration,
}

impl Flags {
    /// Merge the flags over the config file (when one is named) over the defaults.
    pub fn resolve(&self) -> Result<Config> {
        let file = FileConfig::load(self.config.as_deref())?;
        let profile = match (self.profile, &file.profile) {
            (Some(p), _) => p,
            (None, Some(name)) => name.parse().map_err(Error::usage)?,
            (None, None) => Profile::Tracking,
        };
        let config = Config {
            profile,
            rate: self.rate.or(file.rate).unwrap_or(Rate::PerSecond(100.0)),
            count: self.count,
            duration: self.duration,
            seed: self.seed,
            simulated: self.simulated,
            start: self.start.map(|t| t.0),
            tracking_ids: file
                .tracking_ids
                .unwrap_or_else(|| DEFAULT_TRACKING_IDS.iter().map(|s| s.to_string()).collect()),
            kind_weights: file.kind_weights.unwrap_or_default(),
            servers: self.servers.or(file.servers).unwrap_or(10),
            max_lag: self.max_lag,
        };
        if config.simulated && config.rate == Rate::Max {
            return Err(Error::usage(
                "--simulated needs a numeric --rate (events are stamped 1/rate apart)",
            ));
        }
        Ok(config)
    }
}

/// The events of one profile, written into a byte buffer.
enum Generator {
    Tracking(tracking::Tracking),
    Metrics(metrics::Metrics),
    Load(load::Load),
}

impl Generator {
    fn new(config: &Config, rng: &mut fastrand::Rng) -> Result<Self> {
        Ok(match config.profile {
            Profile::Tracking => Generator::Tracking(tracking::Tracking::new(
                &config.tracking_ids,
                &config.kind_weights,
            )?),
            Profile::Metrics => Generator::Metrics(metrics::Metrics::default()),
            Profile::Load => Generator::Load(load::Load::new(config.servers, rng)?),
        })
    }

    fn write(&mut self, rng: &mut fastrand::Rng, at: Micros, out: &mut Vec<u8>) {
        match self {
            Generator::Tracking(g) => g.write(rng, at, out),
            Generator::Metrics(g) => g.write(rng, at, out),
            Generator::Load(g) => g.write(rng, at, out),
        }
    }
}

/// The absolute schedule: event i is due `offset(i)` µs after the start.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    micros_per_event: f64,
}

impl Schedule {
    pub fn new(rate: f64) -> Self {
        Schedule {
            micros_per_event: MICROS_PER_SEC as f64 / rate,
        }
    }

    /// When event `i` is due, in µs after the start (computed from `i`, so errors never add up).
    pub fn offset(&self, i: u64) -> Micros {
        (i as f64 * self.micros_per_event) as Micros
    }

    /// The first event due at or after `elapsed` µs.
    pub fn first_due_from(&self, elapsed: Micros) -> u64 {
        let mut i = (elapsed as f64 / self.micros_per_event).floor().max(0.0) as u64;
        while self.offset(i) < elapsed {
            i += 1;
        }
        i
    }
}

/// Generate events as configured into `sink`.
pub fn run(config: &Config, sink: &mut impl Sink) -> Result<()> {
    let mut rng = match config.seed {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    };
    let mut generator = Generator::new(config, &mut rng)?;
    let mut events = Events {
        generator: &mut generator,
        rng: &mut rng,
        buf: Vec::with_capacity(4096),
        sent: 0,
        count: config.count.unwrap_or(u64::MAX),
    };
    let until = config.duration.map_or(i64::MAX, |d| d.micros());
    match config.rate {
        Rate::Max => events.as_fast_as_possible(until, sink)?,
        Rate::PerSecond(rate) if config.simulated => {
            let start = config.start.unwrap_or_else(time::now);
            events.simulated(Schedule::new(rate), start, until, sink)?
        }
        Rate::PerSecond(rate) => {
            events.paced(Schedule::new(rate), until, config.max_lag.micros(), sink)?
        }
    }
    sink.flush()
}

struct Events<'a> {
    generator: &'a mut Generator,
    rng: &'a mut fastrand::Rng,
    buf: Vec<u8>,
    sent: u64,
    count: u64,
}

impl Events<'_> {
    fn send(&mut self, at: Micros, sink: &mut impl Sink) -> Result<()> {
        self.buf.clear();
        self.generator.write(self.rng, at, &mut self.buf);
        self.sent += 1;
        sink.send(&self.buf)
    }

    fn done(&self) -> bool {
        self.sent >= self.count
    }

    fn simulated(
        &mut self,
        schedule: Schedule,
        start: Micros,
        until: Micros,
        sink: &mut impl Sink,
    ) -> Result<()> {
        let mut i = 0u64;
        while !self.done() {
            let offset = schedule.offset(i);
            if offset >= until {
                break;
            }
            let at = start.saturating_add(offset);
            if at > time::LATEST {
                return Err(crate::Error::failed(format!(
                    "event {} would be stamped after 9999-12-31T23:59:59.999999Z, the last time a \
                     timestamp can print; stopped after {} events",
                    i + 1,
                    self.sent
                )));
            }
            self.send(at, sink)?;
            i += 1;
        }
        Ok(())
    }

    fn as_fast_as_possible(&mut self, until: Micros, sink: &mut impl Sink) -> Result<()> {
        let origin = Instant::now();
        let mut now = time::now();
        while !self.done() {
            // Reading the clock costs more than writing a short event: look every 256 events.
            if self.sent.is_multiple_of(256) {
                now = time::now();
                if origin.elapsed().as_micros() as Micros >= until {
                    break;
                }
            }
            self.send(now, sink)?;
        }
        Ok(())
    }

    fn paced(
        &mut self,
        schedule: Schedule,
        until: Micros,
        max_lag: Micros,
        sink: &mut impl Sink,
    ) -> Result<()> {
        let origin = Instant::now();
        let wall_origin = time::now();
        let mut i = 0u64;
        while !self.done() {
            let due = schedule.offset(i);
            if due >= until {
                break;
            }
            let elapsed = origin.elapsed().as_micros() as Micros;
            if due > elapsed {
                sink.flush()?;
                std::thread::sleep(std::time::Duration::from_micros((due - elapsed) as u64));
                continue;
            }
            if elapsed - due > max_lag {
                let next = schedule.first_due_from(elapsed);
                warn(format_args!(
                    "{} ms behind schedule: skipped {} events due from {} (not sent in a burst)",
                    (elapsed - due) / 1000,
                    next - i,
                    Timestamp(wall_origin + due)
                ));
                i = next;
                continue;
            }
            self.send(wall_origin + due, sink)?;
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Collect(Vec<String>, usize);

    impl Sink for Collect {
        fn send(&mut self, event: &[u8]) -> Result<()> {
            self.0.push(String::from_utf8(event.to_vec()).unwrap());
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            self.1 += 1;
            Ok(())
        }
    }

    fn config(profile: Profile) -> Config {
        Config {
            profile,
            rate: Rate::PerSecond(4.0),
            count: Some(10),
            duration: None,
            seed: Some(42),
            simulated: true,
            start: Some(time::parse_timestamp("2019-12-08T06:42:57Z").unwrap()),
            tracking_ids: DEFAULT_TRACKING_IDS.iter().map(|s| s.to_string()).collect(),
            kind_weights: BTreeMap::new(),
            servers: 3,
            max_lag: time::Duration(std::time::Duration::from_millis(100)),
        }
    }

    #[test]
    fn simulated_events_are_stamped_one_over_rate_apart_and_the_seed_repeats_them() {
        for profile in [Profile::Tracking, Profile::Metrics, Profile::Load] {
            let mut a = Collect(Vec::new(), 0);
            run(&config(profile), &mut a).unwrap();
            let mut b = Collect(Vec::new(), 0);
            run(&config(profile), &mut b).unwrap();
            assert_eq!(a.0, b.0);
            assert_eq!(a.0.len(), 10);
            let stamps: Vec<Micros> =
                a.0.iter()
                    .map(|e| {
                        let v: serde_json::Value = serde_json::from_str(e).unwrap();
                        let t = v.get("timestamp").unwrap_or(&v["value"]["timestamp"]);
                        time::parse_timestamp(t.as_str().unwrap()).unwrap()
                    })
                    .collect();
            let start = config(profile).start.unwrap();
            let want: Vec<Micros> = (0..10).map(|i| start + i * 250_000).collect();
            assert_eq!(stamps, want, "{profile:?}");
        }
    }

    #[test]
    fn duration_bounds_simulated_time() {
        let mut c = config(Profile::Metrics);
        c.count = None;
        c.duration = Some(time::Duration(std::time::Duration::from_secs(2)));
        let mut out = Collect(Vec::new(), 0);
        run(&c, &mut out).unwrap();
        assert_eq!(out.0.len(), 8);
    }

    proptest! {
        #[test]
        fn schedule_is_absolute(rate in 0.01f64..1e7, i in 0u64..1_000_000_000) {
            let s = Schedule::new(rate);
            let expected = i as f64 * 1e6 / rate;
            prop_assert!((s.offset(i) as f64 - expected).abs() <= 1.0 + expected * 1e-12);
            let elapsed = s.offset(i);
            let j = s.first_due_from(elapsed);
            prop_assert!(s.offset(j) >= elapsed);
            prop_assert!(j == 0 || s.offset(j - 1) < elapsed);
        }
    }
}

pub use cli::Args;

/// The command line of `gen-events`: its doc comments are `gen-events --help`.
mod cli {

    use crate::gen_events::post::PostArgs;
    use crate::gen_events::{self, Flags};
    use clap::Parser;

    /// Random events at a steady rate.
    ///
    /// Writes one JSON event per line: by default tracking events in the exact shape of the seed's
    /// samples (signup, user-event and review, with tracking ids drawn from a list of ten), or metric
    /// events for minute-stats (--profile metrics), or server CPU/RAM readings for load-monitor
    /// (--profile load). Events follow an absolute schedule (event i at start + i/rate), so the count
    /// never drifts; --simulated stamps the same schedule without sleeping. Rate, tracking ids and kind
    /// weights can come from a JSON config file; flags override it.
    #[derive(Parser, Debug)]
    #[command(
        name = "gen-events",
        version,
        after_help = "\
Examples:
  gen-events --rate 100 | window-agg --minutes 5
  gen-events --config examples/config.json --duration 1m > events.jsonl
  gen-events --profile metrics --simulated --start 2017-01-03T15:53:00Z --rate 50 --count 1000 --seed 7 | minute-stats
  gen-events --profile load --servers 20 --rate 20 | load-monitor
  gen-events --profile load --servers 1000 --rate max --count 100000 \\
    --post http://127.0.0.1:8080/addserver --concurrency 8 --check
  gen-events --rate max --count 2000000 > /dev/null"
    )]
    pub struct Args {
        #[command(flatten)]
        flags: Flags,

        #[command(flatten)]
        post: PostArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "gen-events";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = args.flags.resolve()?;
            let out = process.output();
            match args.post.poster(config.profile)? {
                Some(mut poster) => {
                    let sent = gen_events::run(&config, &mut poster);
                    // Report what was posted even when the generator stopped early; the poster's
                    // error (why a connection failed) says more than the generator's.
                    let finished = poster.finish(out);
                    finished.and(sent)
                }
                None => gen_events::run(&config, out),
            }
        }
    }
}
