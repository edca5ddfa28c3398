//! The book-repricing loop of seed `001_…`, as four programs that talk JSON Lines:
//!
//! ```text
//! price-api &                                   # the marketplace stub (HTTP)
//! ticker 5s | reprice --csv examples/data.csv   # scheduler | algorithm (+ data-manager child)
//! ```
//!
//! - [`ticker`] (Scheduler): `{"tick":N,"at":…}` on an absolute schedule; with `--out FIFO` it keeps
//!   ticking while nobody reads, so it outlives a crashed algorithm.
//! - [`feed`] (DataManager): answers `{"id","tick","points"}` requests with the last prices of a
//!   CSV replayed as a live feed, reading the file forward one record at a time.
//! - [`api`] (Amazon API stub): `POST /register-request`, `GET /request-data/{id}`.
//! - [`algorithm`] (Algorithm): on each tick, asks the data manager (a supervised child process,
//!   see [`supervisor`]) for the last prices, registers a request, polls it after `--poll-after`
//!   and prints the new price; [`pricing`] is its pure rule.
//!
//! Every component may die on its own; the others keep going (see each module's doc).

pub mod algorithm;
pub mod api;
pub mod feed;
pub mod pricing;
pub mod stream;
pub mod supervisor;
pub mod ticker;
