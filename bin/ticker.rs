//! ticker: writes `{"tick":N,"at":…}` lines on an absolute schedule, to stdout or a named pipe.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeworks::reprice::ticker::{self, Config};
use pipeworks::time::Duration;

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

Output, one line per tick:
  {\"tick\":1,\"at\":\"2026-11-21T11:20:05.000000Z\"}"
)]
struct Args {
    /// Time between ticks (e.g. 5s, 250ms, 1m).
    #[arg(value_name = "PERIOD")]
    period: Duration,

    /// Stop after tick N.
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// Start on a wall-clock multiple of the period (5s ticks land on :00, :05, …).
    #[arg(long)]
    align: bool,

    /// Write to this named pipe (created if missing) instead of stdout; keep ticking without a reader.
    #[arg(long, value_name = "FIFO")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("ticker", || {
        ticker::run(&Config {
            period: args.period,
            count: args.count,
            align: args.align,
            out: args.out,
        })
    })
}
