//! reprice: reads tick lines, writes one new price line per book per tick.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeworks::input::InputArgs;
use pipeworks::reprice::algorithm::{self, Config};
use pipeworks::reprice::feed::AtEnd;
use pipeworks::time::Duration;

/// The Algorithm of the repricing loop: on every tick, reprice every book.
///
/// For each tick line it asks its data manager (a child process it supervises and restarts,
/// talking JSON lines) for the competitor's last prices, averages them, registers a request with
/// price-api, polls the request after `--poll-after` and prints the new price: the average × 1.1
/// if the book sold, × 0.9 if not. Ticks overlap: a book's next tick starts while its previous
/// poll waits (up to --max-in-flight per book; more are skipped with a warning), and each book's
/// lines still come out in tick order. Any failure costs only that tick's result and is reported
/// on stderr.
#[derive(Parser, Debug)]
#[command(
    name = "reprice",
    version,
    args_override_self = true,
    after_help = "\
Examples:
  price-api &  ticker 5s | reprice --csv examples/data.csv
  ticker 5s --out /tmp/ticks.fifo &  reprice --csv data.csv --api http://127.0.0.1:8080 /tmp/ticks.fifo

Output, one line per book per tick:
  {\"tick\":12,\"book\":null,\"avg_comp_price\":6210.35,\"first_row\":8,\"last_row\":12,\
\"request_id\":24,\"sold\":true,\"price\":6831.39,\"at\":\"2026-11-21T11:21:01.004000Z\"}"
)]
struct Args {
    /// The competitor's prices (header `Timestamp,Price`, optional `Book` column).
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,

    /// Base URL of price-api.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    api: String,

    /// Wait this long after registering a request before asking whether the book sold.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    poll_after: Duration,

    /// How many of the competitor's last prices to average.
    #[arg(long, value_name = "N", default_value_t = 5)]
    points: usize,

    /// Give up on one HTTP request after this long (connect included).
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    http_timeout: Duration,

    /// Give up on one data-manager request after this long.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    dm_timeout: Duration,

    /// At most this many HTTP requests at once (connections are kept alive and reused).
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_connections: usize,

    /// Ticks of one book in flight at once (waiting for their poll); a tick beyond is skipped
    /// for that book with a warning.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_in_flight: usize,

    /// The data-manager program to run (default: the one beside this program, else on PATH).
    #[arg(long, value_name = "PATH")]
    data_manager: Option<PathBuf>,

    /// Passed to the data manager: after the last row, hold the final window or wrap around.
    #[arg(long, value_enum, default_value_t = AtEnd::Hold)]
    at_end: AtEnd,

    /// Passed to the data manager: pick up rows appended to the CSV.
    #[arg(long, conflicts_with = "at_end")]
    follow: bool,

    /// Worker threads of the async runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,

    #[command(flatten)]
    input: InputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("reprice", || {
        algorithm::run(&Config {
            csv: args.csv,
            api: args.api,
            poll_after: args.poll_after,
            points: args.points,
            http_timeout: args.http_timeout,
            dm_timeout: args.dm_timeout,
            max_connections: args.max_connections,
            max_in_flight: args.max_in_flight,
            data_manager: args.data_manager,
            at_end: args.at_end,
            follow: args.follow,
            threads: args.threads,
            input: args.input,
        })
    })
}
