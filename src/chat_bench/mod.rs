//! chat-bench: how many clients a chat server sustains by the challenge's rule — every client
//! sends a message every 3 s (`--interval`), and every message reaches every client within 1 s
//! (`--budget`), nothing lost.
//!
//! It speaks the chat protocol of `chat-relay` and of the challenge's original server: it sends
//! text frames `{"message":"…"}` and expects every message broadcast back to every client, the
//! sender included, as a JSON object holding the same `message` (`user` and other keys are
//! ignored). The message text is a stamp, `chat-bench:RUN:SENDER:ROUND:SENT_US` (see [`stamp`]).
//!
//! One step opens N connections (ramped, `--ramp` per second), sends a roll call until every client
//! has heard it (so all are in the room), then each client sends every interval, the clients'
//! sends spread evenly over the interval, for `--duration`. Every client records every delivery;
//! after the last send the step waits up to budget + `--grace` for stragglers. Output, one line per
//! step:
//!
//! ```text
//! {"clients":300,"connected":300,"disconnected":0,"rounds":10,"sent":3000,"unsent":0,
//!  "expected":900000,"delivered":900000,"lost":0,"late":0,"duplicates":0,"p50_ms":0.61,
//!  "p90_ms":1.2,"p99_ms":2.3,"p999_ms":4.1,"max_ms":9.8,"send_lag_max_ms":0.4,"wall_s":31.2,
//!  "client_cpu_s":3.1,"client_cpu_pct":9.94,"server_cpu_s":5.2,"server_cpu_pct":16.67,
//!  "client_cpu_us_per_delivery":3.444,"server_cpu_us_per_delivery":5.778,"ok":true}
//! ```
//!
//! `expected` = sent × connected; `lost` = expected − delivered (a delivery after the deadline is
//! lost); `late` = delivered later than the budget; latency percentiles from an HdrHistogram (3
//! significant digits; `max_ms` exact). `ok` holds only if every client connected and stayed,
//! every planned message was sent, and nothing was lost or late. `send_lag_max_ms` is how far the
//! benchmark's own sends fell behind schedule and `client_cpu_pct` its CPU use (percent of one
//! core over the step): when they are high, the client, not the server, is the limit. The
//! `*_cpu_us_per_delivery` figures divide CPU time by deliveries, which stays comparable when the
//! machine is shared and the percentages are not.
//!
//! `--protocol socket.io` speaks the same messages as Socket.IO events over its WebSocket
//! transport (see [`wire::Protocol`]), so a Socket.IO server is measured by the same client.
//!
//! `--search` runs steps growing from `--start` (doubling) until one fails, then bisects to within
//! `--tolerance` percent, printing each step's line and then `{"max_clients":N}`.

mod clients;
pub mod cpu;
pub mod plot;
mod progress;
pub mod search;
pub mod stamp;
pub mod tally;
pub mod wire;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;
pub use clients::Plan;
use clients::Target;
use progress::Progress;
use search::Search;
use tally::StepReport;

/// Everything a run needs, from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    /// How each step runs; a search changes only its `clients`.
    pub plan: Plan,
    pub search: bool,
    pub start: u32,
    pub max: u32,
    pub tolerance_pct: u32,
    /// Rest between search steps, so the server has let the last step's connections go.
    pub pause: Duration,
    pub plot: Option<PathBuf>,
    pub threads: usize,
}

#[derive(Serialize)]
struct Answer {
    max_clients: u32,
}

/// File descriptors kept free for everything but the client sockets.
const SPARE_FDS: u64 = 64;

/// Run one step (or a search) and write the result lines. A single step that is not ok ends with
/// exit 1, after its line; a finished search is a success whatever it found.
pub fn run<W: Write>(config: &Config, out: &mut Output<W>) -> Result<()> {
    if config.plan.interval.is_zero() || config.plan.budget.is_zero() {
        return Err(Error::usage(
            "--interval and --budget must be more than zero",
        ));
    }
    if config.plan.clients == 0 || config.start == 0 {
        return Err(Error::usage("--clients and --start must be at least 1"));
    }
    if config.plan.ramp.is_nan() || config.plan.ramp <= 0.0 {
        return Err(Error::usage("--ramp must be more than zero"));
    }
    for &pid in &config.plan.server_pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(Error::usage(format!("--server-pid {pid}: no such process")));
        }
    }
    let fds = crate::server::raise_fd_limit();
    let fit = u32::try_from(fds.saturating_sub(SPARE_FDS)).unwrap_or(u32::MAX);
    if !config.search && config.plan.clients > fit {
        return Err(Error::usage(format!(
            "{} clients need as many file descriptors; the limit here is {fds} (raise it with ulimit -Hn)",
            config.plan.clients
        )));
    }
    // Before the client runtimes' threads start. A stop cuts the run short: no result line,
    // exit 130 for SIGINT and 1 for SIGTERM (a bench without its result did not succeed).
    let stop = crate::stop::Stop::listen()?;
    // The main thread only orchestrates; the clients live on `threads` runtimes of their own.
    let shards = clients::Shards::start(config.threads)?;
    let runtime = crate::server::runtime(1)?;
    runtime.block_on(async {
        tokio::select! {
            r = bench(config, fit, &shards, out) => r,
            why = stop.wait() => match why {
                crate::stop::Stopped::Interrupted => Err(Error::Interrupted),
                crate::stop::Stopped::Terminated => Err(Error::failed(
                    "stopped by SIGTERM before the run had its result",
                )),
            },
        }
    })
}

async fn bench<W: Write>(
    config: &Config,
    fit: u32,
    shards: &clients::Shards,
    out: &mut Output<W>,
) -> Result<()> {
    let target = Target::resolve(&config.url).await?;
    let mut progress = Progress::stderr();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut run_id = std::process::id().rotate_left(16) ^ (crate::time::now() as u32);
    let plan = |clients| Plan {
        clients,
        ..config.plan.clone()
    };

    let outcome = if config.search {
        let max = config.max.min(fit);
        if max < config.max {
            warn(format_args!(
                "searching up to {max} clients: the file-descriptor limit allows no more"
            ));
        }
        let mut search = Search::new(config.start, max, config.tolerance_pct);
        let mut first = true;
        while let Some(n) = search.next() {
            if !first {
                tokio::time::sleep(config.pause).await;
            }
            first = false;
            run_id = run_id.wrapping_add(1);
            let report = step(&target, &plan(n), run_id, shards, &mut progress).await?;
            search.record(n, report.ok);
            out.emit(&report)?;
            out.flush()?;
            steps.push(report);
        }
        out.emit(&Answer {
            max_clients: search.max_clients(),
        })?;
        out.flush()?;
        Ok(())
    } else {
        let report = step(
            &target,
            &plan(config.plan.clients),
            run_id,
            shards,
            &mut progress,
        )
        .await?;
        out.emit(&report)?;
        out.flush()?;
        let ok = report.ok;
        steps.push(report);
        if ok {
            Ok(())
        } else {
            Err(Error::Reported(1))
        }
    };
    progress.finish();
    if let Some(path) = &config.plot {
        let title = format!(
            "chat-bench {} — a message every {:?} per client, budget {:?}",
            config.url, config.plan.interval, config.plan.budget
        );
        let svg = plot::svg(&steps, config.plan.budget.as_secs_f64() * 1000.0, &title);
        std::fs::write(path, svg)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    outcome
}

async fn step(
    target: &Target,
    plan: &Plan,
    run_id: u32,
    shards: &clients::Shards,
    progress: &mut Progress,
) -> Result<StepReport> {
    progress.step(format!("{} clients", plan.clients));
    let report = clients::measure(target, plan, run_id, shards, progress).await?;
    let verdict = if report.ok { "ok" } else { "NOT ok" };
    progress.note(format_args!(
        "{verdict}: {} lost, {} late, p99 {} ms, client CPU {}%{}",
        report.lost,
        report.late,
        report.p99_ms.map_or("-".into(), |v| v.to_string()),
        report.client_cpu_pct,
        report
            .server_cpu_pct
            .map_or(String::new(), |p| format!(", server CPU {p}%"))
    ));
    Ok(report)
}

pub use cli::Args;

/// The command line of `chat-bench`: its doc comments are `chat-bench --help`.
mod cli {
    use std::path::PathBuf;

    use crate::chat_bench::wire::Protocol;
    use crate::chat_bench::{self, Config, Plan};
    use crate::time::Duration;
    use clap::Parser;

    /// Measure how many clients a WebSocket chat server sustains.
    ///
    /// The challenge's rule: every client sends a message every 3 seconds, and every message must
    /// reach every client within 1 second, none lost. chat-bench opens the clients (ramped), spreads
    /// their sends evenly over the interval, stamps each message with sender, sequence and send time,
    /// records every delivery at every client, and prints one JSON line per step with the deliveries
    /// expected, delivered, lost and late, latency percentiles, and the CPU time of itself and (with
    /// --server-pid) of the server. --search finds the largest number of clients that holds.
    /// It speaks the challenge's protocol: {"message":…} out, {"message":…,"user":…} back to all.
    #[derive(Parser, Debug)]
    #[command(
        name = "chat-bench",
        version,
        after_help = "\
Examples:
  chat-relay --workers 4 --listen 127.0.0.1:8000 &
  chat-bench --url ws://127.0.0.1:8000/chat --clients 500 --duration 30s | jq .p99_ms
  chat-bench --url ws://127.0.0.1:8000/chat --search --server-pid $(pgrep -o chat-relay) --plot capacity.svg

Exit status: 0 when the run (or the search) finished; 1 when a single run was not ok (its line is
still printed) or the server could not be reached; 2 for bad flags; 130 on Ctrl-C."
    )]
    pub struct Args {
        /// The chat server's WebSocket URL.
        #[arg(
            help_heading = "Server under test",
            long,
            default_value = "ws://127.0.0.1:8000/chat"
        )]
        url: String,

        /// Number of clients (without --search).
        #[arg(help_heading = "One step", long, short = 'n', default_value_t = 100)]
        clients: u32,

        /// How long the clients chat in each step.
        #[arg(help_heading = "One step", long, default_value = "30s")]
        duration: Duration,

        /// Each client sends one message per interval.
        #[arg(help_heading = "One step", long, default_value = "3s")]
        interval: Duration,

        /// Every message must reach every client within this time.
        #[arg(help_heading = "One step", long, default_value = "1s")]
        budget: Duration,

        /// After the last send and the budget, wait this long for stragglers before counting them lost.
        #[arg(help_heading = "One step", long, default_value = "2s")]
        grace: Duration,

        /// New connections per second while ramping up.
        #[arg(help_heading = "One step", long, default_value_t = 1000.0)]
        ramp: f64,

        /// Give up on a connection whose WebSocket handshake takes longer.
        #[arg(help_heading = "One step", long, default_value = "10s")]
        connect_timeout: Duration,

        /// Find the largest number of clients that holds: double from --start, then bisect.
        #[arg(help_heading = "Search", long)]
        search: bool,

        /// First number of clients of a search.
        #[arg(help_heading = "Search", long, default_value_t = 100)]
        start: u32,

        /// Largest number of clients a search tries.
        #[arg(help_heading = "Search", long, default_value_t = 20_000)]
        max: u32,

        /// A search stops when the answer is known to within this percent.
        #[arg(help_heading = "Search", long, default_value_t = 5)]
        tolerance: u32,

        /// Rest between search steps.
        #[arg(help_heading = "Search", long, default_value = "2s")]
        pause: Duration,

        /// Draw latency percentiles against the number of clients into this SVG file.
        #[arg(help_heading = "Output", long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,

        /// Also report the CPU time of this process and its descendants (repeatable: e.g. the relay
        /// and redis-server).
        #[arg(
            help_heading = "Server under test",
            long = "server-pid",
            value_name = "PID"
        )]
        server_pids: Vec<i32>,

        /// Threads of the client's async runtime.
        #[arg(help_heading = "One step", long, default_value_t = 2)]
        threads: usize,

        /// What the clients speak: the challenge's chat protocol, or the same messages as
        /// Socket.IO `message` events over its WebSocket transport (give the URL
        /// ws://HOST:PORT/socket.io/?EIO=4&transport=websocket).
        #[arg(help_heading = "Server under test", long, value_enum, default_value_t = Protocol::Chat)]
        protocol: Protocol,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "chat-bench";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = Config {
                url: args.url,
                plan: Plan {
                    clients: args.clients,
                    duration: args.duration.std(),
                    interval: args.interval.std(),
                    budget: args.budget.std(),
                    grace: args.grace.std(),
                    ramp: args.ramp,
                    connect_timeout: args.connect_timeout.std(),
                    server_pids: args.server_pids,
                    protocol: args.protocol,
                },
                search: args.search,
                start: args.start,
                max: args.max,
                tolerance_pct: args.tolerance,
                pause: args.pause.std(),
                plot: args.plot,
                threads: args.threads,
            };
            chat_bench::run(&config, process.output())
        }
    }
}
