//! pipeworks: small programs that read and write JSON Lines and snap together with pipes.
//!
//! The crate is one library and one thin binary per program (`bin/<name>.rs`, one call to
//! [`runner::main`]). The library has two layers, and imports only go down:
//!
//! **Plumbing**, shared by every program and knowing none of them:
//!
//! - [`error`]: the one error type and the exit-code table;
//! - [`runner`]: parses a program's flags, hands it a [`runner::Process`] (name, stdout), flushes
//!   what is left, prints `"<name>: <error>"` and maps errors to exit codes;
//! - [`stop`]: SIGINT/SIGTERM as a graceful stop, for blocking loops, tokio servers and poll loops;
//! - [`input`]: JSON Lines from files or stdin with line numbers, and the bad-line policy;
//! - [`fields`]: the JSON hot path, a few fields out of each line with the whole line validated;
//! - [`output`]: buffered JSON Lines on stdout, flushed at emission points;
//! - [`sum`]: a float sum with Neumaier's compensation, for means exact to the last digit;
//! - [`time`]: RFC 3339 timestamps as microseconds, and durations such as `250ms` or `2h`;
//! - [`config`]: JSON config files that flags override;
//! - [`durable`]: replacing a state file atomically, leaving no partial file on failure;
//! - [`server`]: the one HTTP stack, startup announcement and graceful stop of every server;
//! - `docs` (with the `docs` feature): man pages and completions from [`runner::commands`].
//!
//! **Programs**, one module per problem; a program module uses the plumbing and never another
//! program's module (tests aside: window-agg's use gen-events' generator for data; the one
//! shared piece, [`event_config`], is plumbing for two of them). The only plumbing that names the
//! programs is [`runner::commands`], their list for the man-page generator:
//!
//! - [`minute_stats`]: per-period min/max/mean/median of metric events;
//! - [`event_config`]: the config file shared by gen-events and window-agg;
//! - [`gen_events`]: random tracking, metric and load events at a steady rate;
//! - [`window_agg`]: sliding N-minute counts by event type and tracking id, in memory or Memcached;
//! - [`load_monitor`]: per-server CPU/RAM averages of the last hour by minute and day by hour;
//! - [`allocate`]: the cheapest shipment of an order from ranked warehouses, and a crash-safe live
//!   inventory;
//! - [`chat`]: chat-relay, a forking WebSocket chat whose broadcast crosses processes and machines;
//! - [`chat_bench`]: how many WebSocket chat clients a server sustains (sends, deliveries, latency);
//! - [`reprice`]: the book-repricing loop (ticker, data-manager, price-api, reprice).

pub mod allocate;
pub mod chat;
pub mod chat_bench;
pub mod config;
#[cfg(feature = "docs")]
pub mod docs;
pub mod durable;
pub mod error;
pub mod event_config;
pub mod fields;
pub mod gen_events;
pub mod input;
pub mod load_monitor;
pub mod minute_stats;
pub mod output;
pub mod reprice;
pub mod runner;
pub mod server;
pub mod stop;
pub mod sum;
pub mod time;
pub mod window_agg;

pub use error::{Error, Result};
pub use runner::run;
