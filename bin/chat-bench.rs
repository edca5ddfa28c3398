//! chat-bench: opens many WebSocket chat clients against a server and writes one JSON line per
//! measured step (and `{"max_clients":N}` after a search).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeworks::chat_bench::{self, Config, Plan};
use pipeworks::output::Output;
use pipeworks::time::Duration;

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
struct Args {
    /// The chat server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/chat")]
    url: String,

    /// Number of clients (without --search).
    #[arg(long, short = 'n', default_value_t = 100)]
    clients: u32,

    /// How long the clients chat in each step.
    #[arg(long, default_value = "30s")]
    duration: Duration,

    /// Each client sends one message per interval.
    #[arg(long, default_value = "3s")]
    interval: Duration,

    /// Every message must reach every client within this time.
    #[arg(long, default_value = "1s")]
    budget: Duration,

    /// After the last send and the budget, wait this long for stragglers before counting them lost.
    #[arg(long, default_value = "2s")]
    grace: Duration,

    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,

    /// Give up on a connection whose WebSocket handshake takes longer.
    #[arg(long, default_value = "10s")]
    connect_timeout: Duration,

    /// Find the largest number of clients that holds: double from --start, then bisect.
    #[arg(long)]
    search: bool,

    /// First number of clients of a search.
    #[arg(long, default_value_t = 100)]
    start: u32,

    /// Largest number of clients a search tries.
    #[arg(long, default_value_t = 20_000)]
    max: u32,

    /// A search stops when the answer is known to within this percent.
    #[arg(long, default_value_t = 5)]
    tolerance: u32,

    /// Rest between search steps.
    #[arg(long, default_value = "2s")]
    pause: Duration,

    /// Draw latency percentiles against the number of clients into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,

    /// Also report the CPU time of this process and its descendants (repeatable: e.g. the relay
    /// and redis-server).
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<i32>,

    /// Threads of the client's async runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("chat-bench", || {
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
            },
            search: args.search,
            start: args.start,
            max: args.max,
            tolerance_pct: args.tolerance,
            pause: args.pause.std(),
            plot: args.plot,
            threads: args.threads,
        };
        chat_bench::run(&config, &mut Output::stdout())
    })
}
