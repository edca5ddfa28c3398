//! data-manager: answers JSON-line requests for the last N competitor prices from a CSV feed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeworks::output::Output;
use pipeworks::reprice::feed::{self, AtEnd, Config};

/// The DataManager of the repricing loop: the competitor's last prices as of a tick.
///
/// Reads requests `{"id":7,"tick":123,"points":5}` on stdin and answers each on stdout with
/// `{"id":7,"prices":[…],"first_row":119,"last_row":123}`: the CSV (header `Timestamp,Price`,
/// optional `Book` column) is replayed as a live feed where tick t is row t (or, with a Book
/// column, the t-th timestamp). It keeps only the last prices of each book in memory and reads the
/// file forward one record at a time, never loading it. `reprice` runs it as a supervised child.
#[derive(Parser, Debug)]
#[command(
    name = "data-manager",
    version,
    after_help = "\
Examples:
  echo '{\"id\":1,\"tick\":10}' | data-manager --csv examples/data.csv
  ticker 1s | jq -c '{id:.tick,tick:.tick,points:5}' | data-manager --csv data.csv --at-end wrap

Output, one line per request:
  {\"id\":1,\"prices\":[6160.95,6241.1,6230,6198.5,6205],\"first_row\":6,\"last_row\":10}"
)]
struct Args {
    /// The competitor's prices: CSV with a `Timestamp,Price` header (and optionally `Book`).
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,

    /// After the last row: hold the final window, or wrap around and replay from the start.
    #[arg(long, value_enum, default_value_t = AtEnd::Hold)]
    at_end: AtEnd,

    /// Pick up rows appended to the file while running (like `tail -f`).
    #[arg(long, conflicts_with = "at_end")]
    follow: bool,

    /// The most points a request may ask for (memory per book is bounded by it).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_points: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("data-manager", || {
        let config = Config {
            csv: args.csv,
            at_end: args.at_end,
            follow: args.follow,
            max_points: args.max_points,
        };
        feed::run(&config, &mut Output::stdout())
    })
}
