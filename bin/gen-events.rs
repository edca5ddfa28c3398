//! gen-events: writes random events as JSON Lines on stdout at a steady rate.

use std::process::ExitCode;

use clap::Parser;
use pipeworks::gen_events::post::PostArgs;
use pipeworks::gen_events::{self, Flags};
use pipeworks::output::Output;

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
struct Args {
    #[command(flatten)]
    flags: Flags,

    #[command(flatten)]
    post: PostArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("gen-events", || {
        let config = args.flags.resolve()?;
        let mut out = Output::stdout();
        match args.post.poster(config.profile)? {
            Some(mut poster) => {
                let sent = gen_events::run(&config, &mut poster);
                // Report what was posted even when the generator stopped early; the poster's
                // error (why a connection failed) says more than the generator's.
                let finished = poster.finish(&mut out);
                finished.and(sent)
            }
            None => gen_events::run(&config, &mut out),
        }
    })
}
