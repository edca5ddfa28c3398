//! price-api: the marketplace stub of the repricing loop (HTTP, JSON answers).

use std::process::ExitCode;

use clap::Parser;
use pipeworks::reprice::api::{self, Config, LatencyRange};

/// The "Amazon API server" of the repricing loop: registers price requests and reports sales.
///
/// `POST /register-request` answers `{"id":N}` with unique, increasing ids;
/// `GET /request-data/{id}` answers `{"sold":true}` for an even id and `{"sold":false}` for an
/// odd one; unknown ids get 404, malformed ones 400, other methods 405, always with a JSON body.
/// `--latency` and `--fail-rate` play the overloaded server. Idle, slow and excess connections
/// are closed (`--header-timeout`, `--idle-timeout`, `--max-connections`). SIGTERM/SIGINT stop it
/// gracefully.
#[derive(Parser, Debug)]
#[command(
    name = "price-api",
    version,
    after_help = "\
Examples:
  price-api --listen 127.0.0.1:8080 &  ticker 5s | reprice --csv examples/data.csv
  price-api --listen 127.0.0.1:0 --latency 50ms..500ms --fail-rate 0.05
  curl -s -XPOST localhost:8080/register-request   # {\"id\":1}
  curl -s localhost:8080/request-data/1            # {\"sold\":false}"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,

    /// Delay every answer by a random time in MIN..MAX (or a fixed DURATION), e.g. 50ms..500ms.
    #[arg(long, value_name = "MIN..MAX")]
    latency: Option<LatencyRange>,

    /// Answer this share of requests with 503 (0 to 1).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    fail_rate: f64,

    /// Seed of the latency and failure dice.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,

    #[command(flatten)]
    http: pipeworks::server::HttpArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("price-api", || {
        api::run(&Config {
            listen: args.listen,
            latency: args.latency,
            fail_rate: args.fail_rate,
            seed: args.seed,
            threads: args.threads,
            http: args.http,
        })
    })
}
