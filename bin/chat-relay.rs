//! chat-relay: serves a WebSocket chat room from forked workers; stdin lines are bot messages,
//! stdout is every message in the room as JSON Lines.

use std::process::ExitCode;

use clap::Parser;
use pipeworks::chat::message::UserId;
use pipeworks::chat::{self, Config, Limits};
use pipeworks::time::Duration;

/// A WebSocket chat room served by several worker processes.
///
/// Open http://ADDR/ in a browser, or connect a WebSocket to ws://ADDR/chat and send text frames
/// `{"message":"…"}`; every client, the sender included, receives `{"message":"…","user":ID}`
/// with the sender's 32-hex-character id. The parent binds the socket once, forks `--workers`
/// processes that accept on it, replaces any that die, and relays messages between them over Unix
/// sockets; with `--redis` the room goes through Redis pub/sub instead, so relays on several
/// machines are one room. Each stdin line is said by the relay's bot user; every message in the
/// room is written to stdout as one JSON line. SIGTERM closes every client with a close frame and
/// exits 0.
#[derive(Parser, Debug)]
#[command(
    name = "chat-relay",
    version,
    after_help = "\
Examples:
  chat-relay --listen 0.0.0.0:8000 --workers 4          # then open http://localhost:8000
  ticker 5s | chat-relay --workers 2 | jq -r '.user[:8] + \": \" + .message'
  chat-relay --listen 0.0.0.0:8001 --redis redis://10.0.0.5:6379   # one room across machines

Output, one line per message in the room:
  {\"message\":\"hello\",\"user\":\"3f2a9c0e4b7d41d6a1e5c8b2f0d9e7a4\"}"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: String,

    /// Worker processes accepting connections (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,

    /// Share the room through Redis pub/sub (redis://HOST:PORT) instead of Unix sockets only.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// Redis channel of the room.
    #[arg(long, default_value = "chat-relay", value_name = "NAME")]
    channel: String,

    /// Largest message a client may send, in bytes; a larger frame closes it with 1009.
    #[arg(long, default_value_t = Limits::default().max_message, value_name = "BYTES")]
    max_message: usize,

    /// Messages per second a connection may send on average (excess is refused).
    #[arg(long, default_value_t = Limits::default().rate, value_name = "N")]
    rate: f64,

    /// Messages a connection may send in a burst before --rate applies.
    #[arg(long, default_value_t = Limits::default().burst, value_name = "N")]
    burst: u32,

    /// Messages waiting for one client before it is disconnected as too slow.
    #[arg(long, default_value_t = Limits::default().queue, value_name = "N")]
    queue: usize,

    /// How long a worker gathers messages before sending them to its clients as one batch (one
    /// write per client per batch instead of one per message; 0s: no wait).
    #[arg(long, default_value = "50ms", value_name = "DURATION")]
    batch_window: Duration,

    /// User id of the relay's bot (32 lowercase hex characters; random by default).
    #[arg(long, value_name = "ID", value_parser = UserId::parse)]
    bot_user: Option<UserId>,

    /// Serve this HTML file at / instead of the built-in page (e.g. the challenge's index.html).
    #[arg(long, value_name = "FILE")]
    page: Option<std::path::PathBuf>,

    #[command(flatten)]
    http: pipeworks::server::HttpArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("chat-relay", || {
        let workers = args.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        chat::run(Config {
            listen: args.listen,
            workers,
            redis: args.redis,
            channel: args.channel,
            limits: Limits {
                max_message: args.max_message,
                rate: args.rate,
                burst: args.burst,
                queue: args.queue,
                batch_window: args.batch_window.0,
            },
            bot: args.bot_user,
            page: args.page,
            http: args.http,
        })
    })
}
