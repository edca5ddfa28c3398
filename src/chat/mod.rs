//! chat-relay: a WebSocket chat room served by forked worker processes, whose broadcast crosses
//! processes over Unix sockets, or processes and machines over Redis pub/sub.
//!
//! Protocol (the one the challenge's original page speaks, so that page works unchanged):
//! - `GET /` is the chat page; a WebSocket upgrade on `/chat` joins the room.
//! - Client → server: a text frame holding a JSON object with a string `"message"`:
//!   `{"message":"hello"}`.
//! - Server → every client, the sender included: the same object with `"user"` set to the
//!   sender's 32-hex-character id, fixed for the connection (any `"user"` the client sent is
//!   overwritten; other keys pass through): `{"message":"hello","user":"9f0c…"}`.
//! - Server → the sender only, when a frame is refused: `{"error":"missing \"message\""}`.
//!   `"error"` is reserved ([`message::RESERVED`]): a client frame holding it is refused, so no
//!   client can make pages show a server notice to everybody.
//!
//! stdin: each line is said by the relay's own bot user (a line that is a JSON object with a string
//! `"message"` is used as it is, any other line is the text of a message). stdout: every message
//! the room hears, one JSON line each, flushed as it comes.
//!
//! Layers, one file each:
//! - [`hub`]: the parent. Binds once, forks `--workers` processes that accept on the shared socket,
//!   replaces dead ones, relays messages between them over Unix socket pairs, owns stdin/stdout;
//! - [`link`]: the line format on the parent–worker sockets and the bounded outbox;
//! - [`worker`]: a worker process: one single-threaded tokio runtime and the HTTP routes;
//! - [`room`]: the room inside a worker: messages in batches, one shared ring;
//! - [`balance`]: accepts shared fairly between workers on the one socket;
//! - [`connection`]: one client's session and the slow-client, size and rate policies;
//! - [`ws`]: the WebSocket layer: the handshake, the client's frames, frames encoded once;
//! - [`redis_bus`]: the Redis pub/sub backend with reconnect and backoff;
//! - [`message`]: the pure core: user ids, stamping, bot lines, the rate limiter;
//! - [`metrics`]: what `GET /metrics` reports, for all the workers together.

pub mod balance;
pub mod connection;
pub mod hub;
pub mod link;
pub mod message;
pub mod metrics;
pub mod redis_bus;
pub mod room;
pub mod worker;
pub mod ws;

use crate::error::{Error, Result};
use crate::runner::warn;
use crate::server;
use message::UserId;

/// Limits that apply to every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest text frame accepted, in bytes.
    pub max_message: usize,
    /// Messages per second a connection may send, on average.
    pub rate: f64,
    /// Messages a connection may send at once before the rate applies.
    pub burst: u32,
    /// Messages waiting for one client before it is disconnected as too slow.
    pub queue: usize,
    /// A worker closes a batch at most once per window (a message after a quiet window goes out
    /// at once).
    pub batch_window: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 4096,
            rate: 20.0,
            burst: 40,
            queue: 4096,
            batch_window: std::time::Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub workers: usize,
    pub redis: Option<String>,
    pub channel: String,
    pub limits: Limits,
    /// The bot user's id (random when not given).
    pub bot: Option<UserId>,
    /// Serve this page at `/` instead of the built-in one (e.g. the challenge's original page).
    pub page: Option<std::path::PathBuf>,
    /// Each worker's HTTP timeouts and connection cap (`--max-connections` is per worker).
    pub http: server::HttpArgs,
}

/// Run the relay until SIGTERM/SIGINT (or until stdout's reader goes away).
pub fn run(mut config: Config) -> Result<()> {
    if config.workers == 0 || config.workers > 256 {
        return Err(Error::usage("--workers must be between 1 and 256"));
    }
    if config.limits.max_message < 16 {
        return Err(Error::usage("--max-message must be at least 16 bytes"));
    }
    if config.limits.rate <= 0.0 || config.limits.rate.is_nan() {
        return Err(Error::usage("--rate must be above 0"));
    }
    if let Some(url) = &config.redis {
        redis::Client::open(url.as_str())
            .map_err(|e| Error::usage(format!("--redis {url}: {e}")))?;
    }
    let page: std::sync::Arc<str> = match &config.page {
        None => worker::PAGE.into(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read --page {}", path.display()), e))?
            .into(),
    };
    // Checked (and the cap resolved against the open-file limit, which the workers inherit)
    // once here, so a usage error stops the relay before it forks and a warning is said once.
    let http = config.http.limits()?;
    config.http.max_connections = Some(http.max_connections);
    let fd_limit = server::raise_fd_limit();
    let signals = hub::listen_for_signals()?;
    let listener = server::bind(&config.listen)?;
    let mut seed = [0u8; 24];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom")
            .map_err(|e| Error::io("opening /dev/urandom", e))?,
        &mut seed,
    )
    .map_err(|e| Error::io("reading /dev/urandom", e))?;
    let mut bot_bytes = [0u8; 16];
    bot_bytes.copy_from_slice(&seed[..16]);
    let bot = config.bot.unwrap_or_else(|| UserId::from_bytes(bot_bytes));
    // Tells this instance's messages from other instances' on a shared Redis channel.
    let instance: String = seed[16..].iter().map(|b| format!("{b:02x}")).collect();
    warn(format_args!(
        "{} workers, {}, open-file limit {fd_limit}, at most {} connections per worker, bot user {bot}",
        config.workers,
        match &config.redis {
            Some(url) => format!("room shared through {url} channel {:?}", config.channel),
            None => "room shared between workers over Unix sockets".to_string(),
        },
        http.max_connections
    ));
    hub::run(config, signals, listener, bot, instance, page)
}

pub use cli::Args;

/// The command line of `chat-relay`: its doc comments are `chat-relay --help`.
mod cli {

    use crate::chat::message::UserId;
    use crate::chat::{self, Config, Limits};
    use crate::time::Duration;
    use clap::Parser;

    /// A WebSocket chat room served by several worker processes.
    ///
    /// Open http://ADDR/ in a browser, or connect a WebSocket to ws://ADDR/chat and send text frames
    /// `{"message":"…"}`; every client, the sender included, receives `{"message":"…","user":ID}`
    /// with the sender's 32-hex-character id. The parent binds the socket once, forks `--workers`
    /// processes that accept on it, replaces any that die, and relays messages between them over Unix
    /// sockets; with `--redis` the room goes through Redis pub/sub instead, so relays on several
    /// machines are one room. Each stdin line is said by the relay's bot user; every message in the
    /// room is written to stdout as one JSON line. GET /metrics is the Prometheus exposition, for all
    /// the workers together. SIGTERM closes every client with a close frame and exits 0.
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
    pub struct Args {
        /// Address to listen on (port 0 picks a free port; the bound address is printed on stderr).
        #[arg(help_heading = "Server", long, default_value = "127.0.0.1:8000")]
        listen: String,

        /// Worker processes accepting connections (default: one per CPU).
        #[arg(help_heading = "Server", long)]
        workers: Option<usize>,

        /// Share the room through Redis pub/sub (redis://HOST:PORT) instead of Unix sockets only.
        #[arg(help_heading = "Room across machines", long, value_name = "URL")]
        redis: Option<String>,

        /// Redis channel of the room.
        #[arg(
            help_heading = "Room across machines",
            long,
            default_value = "chat-relay",
            value_name = "NAME"
        )]
        channel: String,

        /// Largest message a client may send, in bytes; a larger frame closes it with 1009.
        #[arg(help_heading = "Per-client limits", long, default_value_t = Limits::default().max_message, value_name = "BYTES")]
        max_message: usize,

        /// Messages per second a connection may send on average (excess is refused).
        #[arg(help_heading = "Per-client limits", long, default_value_t = Limits::default().rate, value_name = "N")]
        rate: f64,

        /// Messages a connection may send in a burst before --rate applies.
        #[arg(help_heading = "Per-client limits", long, default_value_t = Limits::default().burst, value_name = "N")]
        burst: u32,

        /// Messages waiting for one client before it is disconnected as too slow.
        #[arg(help_heading = "Per-client limits", long, default_value_t = Limits::default().queue, value_name = "N")]
        queue: usize,

        /// A worker sends its clients what they must hear at most once per window, as one batch (one
        /// write per client per batch instead of one per message); a message after a quiet window
        /// goes out at once. 0s: no wait.
        #[arg(
            help_heading = "Delivery",
            long,
            default_value = "100ms",
            value_name = "DURATION"
        )]
        batch_window: Duration,

        /// User id of the relay's bot (32 lowercase hex characters; random by default).
        #[arg(help_heading = "Bot (stdin and stdout)", long, value_name = "ID", value_parser = UserId::parse)]
        bot_user: Option<UserId>,

        /// Serve this HTML file at / instead of the built-in page (e.g. the challenge's index.html).
        #[arg(help_heading = "Server", long, value_name = "FILE")]
        page: Option<std::path::PathBuf>,

        #[command(flatten)]
        http: crate::server::HttpArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "chat-relay";

        fn run(self, _process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
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
        }
    }
}
