//! minute-stats: reads metric events as JSON Lines, writes min/max/mean/median per type per period.

use std::process::ExitCode;

use clap::Parser;
use pipeworks::input::InputArgs;
use pipeworks::minute_stats::{self, Config};
use pipeworks::output::Output;
use pipeworks::time::{Duration, MaxFutureArg};

/// Per-period statistics of metric events.
///
/// Reads events `{"type","value","timestamp","tags"}` sorted by timestamp and writes, for every
/// period (default one minute) and every type seen in it, the min, max, mean and exact median of
/// the values. A period's line is written as soon as an event of a later period arrives, so it
/// works on a live stream as well as on a file.
#[derive(Parser, Debug)]
#[command(
    name = "minute-stats",
    version,
    after_help = "\
Examples:
  minute-stats events.jsonl
  gen-events --profile metrics --rate 1000 | minute-stats --period 10s | jq -c '.aggs[]'
  tail -f app-metrics.jsonl | minute-stats --live --lateness 2s --group-by-tag company

Output, one line per non-empty period:
  {\"aggs\":[{\"name\":\"request_duration\",\"min\":10,\"max\":40,\"mean\":25,\"median\":25}],\
\"period_start\":\"2017-01-03T15:53:00.000000Z\",\"period_end\":\"2017-01-03T15:54:00.000000Z\"}"
)]
struct Args {
    /// Length of a period, aligned to the epoch in UTC (e.g. 10s, 1m, 1h).
    #[arg(long, default_value = "1m")]
    period: Duration,

    /// Accept events this far out of order; later ones are reported and dropped.
    #[arg(long, default_value = "0s")]
    lateness: Duration,

    #[command(flatten)]
    max_future: MaxFutureArg,

    /// Also close periods by the wall clock (period end + lateness) while input pauses.
    #[arg(long)]
    live: bool,

    /// Split each type's aggregate by the value of this tag (e.g. company).
    #[arg(long, value_name = "KEY")]
    group_by_tag: Option<String>,

    #[command(flatten)]
    input: InputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("minute-stats", || {
        let config = Config {
            period: args.period,
            lateness: args.lateness,
            max_future: args.max_future.max_future,
            live: args.live,
            group_by_tag: args.group_by_tag,
            input: args.input,
        };
        minute_stats::run(&config, &mut Output::stdout())
    })
}
