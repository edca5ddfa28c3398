//! window-agg: reads events as JSON Lines, writes the sliding N-minute summary by type and tracking id.

use std::process::ExitCode;

use clap::Parser;
use pipeworks::output::Output;
use pipeworks::window_agg::{self, Flags};

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
struct Args {
    #[command(flatten)]
    flags: Flags,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("window-agg", || {
        let config = args.flags.resolve()?;
        window_agg::run(&config, &mut Output::stdout())
    })
}
