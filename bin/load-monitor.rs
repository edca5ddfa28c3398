//! load-monitor: records CPU/RAM load per server (HTTP or JSON lines) and reports the last hour
//! by minute and the last day by hour.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeworks::input::InputArgs;
use pipeworks::load_monitor::{self, ClockKind, Config};
use pipeworks::output::Output;
use pipeworks::time::{Duration, MaxFutureArg};

/// Server load monitor: per server, the average CPU and RAM of each minute of the last hour and
/// each hour of the last 24 hours.
///
/// With --listen it is an HTTP service compatible with the original one: POST /addserver with
/// {"server","cpu","ram","dt"}, GET /report/<name>; also POST|GET /servers/<name>/load,
/// GET /servers and GET /stats. Without --listen it reads the same records as JSON lines and
/// prints one report line per server (sorted by name) at the end of input, and every --every.
/// Memory per server is fixed (60 minute and 24 hour buckets); records outside the last 24
/// hours are refused and counted.
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
struct Args {
    /// Serve HTTP on this address (port 0 picks a free port, printed on stderr).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// What "now" is: the newest record's time (stdin default) or the wall clock (server default).
    #[arg(long, value_enum)]
    clock: Option<ClockKind>,

    #[command(flatten)]
    max_future: MaxFutureArg,

    /// The most servers tracked; a new server's records beyond it are refused.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    max_servers: usize,

    /// Load the state from FILE at start and save it there atomically (every --snapshot-every
    /// and on SIGTERM/SIGINT for the server; at the end of input for stdin). What it holds from
    /// past the wall clock plus --max-future is dropped on load, with a warning.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,

    /// How often the server saves its snapshot.
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    snapshot_every: Duration,

    /// After SIGTERM/SIGINT, how long in-flight requests may take before their connections are
    /// closed (the snapshot is saved after).
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    shutdown_grace: Duration,

    /// Without --listen: also print every server's report this often (wall clock).
    #[arg(long, value_name = "DURATION")]
    every: Option<Duration>,

    /// Server worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,

    #[command(flatten)]
    input: InputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("load-monitor", || {
        let config = Config {
            listen: args.listen,
            clock: args.clock,
            max_future: args.max_future.max_future,
            max_servers: args.max_servers,
            snapshot: args.snapshot,
            snapshot_every: args.snapshot_every,
            shutdown_grace: args.shutdown_grace,
            every: args.every,
            threads: args.threads,
            input: args.input,
        };
        load_monitor::run(&config, &mut Output::stdout())
    })
}
