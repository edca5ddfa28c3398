//! chat-relay's metrics, for the whole relay whichever worker answers `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `chat_relay_clients_connected` | gauge | — |
//! | `chat_relay_messages_received_total` | counter | — (client messages accepted and broadcast) |
//! | `chat_relay_messages_delivered_total` | counter | — (messages written to clients, one per recipient) |
//! | `chat_relay_frames_refused_total` | counter | `reason`: `invalid`, `rate_limit`, `too_big`, `binary`, `not_utf8`, `protocol` |
//! | `chat_relay_slow_clients_dropped_total` | counter | — |
//! | `chat_relay_worker_restarts_total` | counter | — |
//! | `chat_relay_redis_reconnects_total` | counter | — |
//!
//! The hub maps the counts ([`Cells`], one row per worker slot) before it forks; each worker
//! adds to its slot's row and a scrape sums every row. A worker that ends takes its clients
//! with it, so the hub zeroes its slot's gauges when it reaps it; its counters stay, and the
//! next worker in the slot goes on from them, so the relay's counters never go backwards.
//! Deliveries are counted once per write to a client (a batch of messages), not per message.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::error::Result;
use crate::server::metrics::{encode_counter, encode_counters, encode_gauge, Cells, Http};
use crate::server::Metrics;

/// The worker's routes' templates, as the HTTP metrics label them.
pub const ROUTES: [&str; 3] = ["/", "/chat", "/stats"];

/// Why a client's frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a JSON object with a string `"message"`, or a reserved key.
    Invalid,
    RateLimit,
    TooBig,
    Binary,
    NotUtf8,
    Protocol,
}

const REASONS: [(Refused, &str); 6] = [
    (Refused::Invalid, "invalid"),
    (Refused::RateLimit, "rate_limit"),
    (Refused::TooBig, "too_big"),
    (Refused::Binary, "binary"),
    (Refused::NotUtf8, "not_utf8"),
    (Refused::Protocol, "protocol"),
];

// The cells of one row.
const CLIENTS: usize = 0;
const RECEIVED: usize = 1;
const DELIVERED: usize = 2;
const SLOW: usize = 3;
const RESTARTS: usize = 4;
const REDIS: usize = 5;
const REFUSED_AT: usize = 6;
const WIDTH: usize = REFUSED_AT + REASONS.len();

/// The relay's counts, as one worker (or the hub) sees them.
#[derive(Debug, Clone)]
pub struct Relay {
    cells: Cells,
    /// The workers' HTTP metrics, summed the same way.
    http: Cells,
}

impl Relay {
    /// Counts for `workers` slots; call in the hub before forking.
    pub fn new(workers: usize) -> Result<Relay> {
        Ok(Relay {
            cells: Cells::new(workers, WIDTH)?,
            http: Metrics::cells_for(workers, &ROUTES)?,
        })
    }

    /// The view of the worker in `slot`.
    pub fn slot(&self, slot: usize) -> Relay {
        Relay {
            cells: self.cells.row(slot),
            http: self.http.row(slot),
        }
    }

    /// A worker's `/metrics`: the relay's HTTP metrics and these, all workers together.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = Metrics::over(self.http.clone(), &ROUTES);
        metrics
            .registry()
            .register_collector(Box::new(self.clone()));
        metrics
    }

    pub fn joined(&self) {
        self.cells.add(CLIENTS, 1);
    }

    pub fn left(&self) {
        self.cells.sub(CLIENTS, 1);
    }

    pub fn received(&self) {
        self.cells.add(RECEIVED, 1);
    }

    pub fn delivered(&self, messages: u64) {
        if messages > 0 {
            self.cells.add(DELIVERED, messages);
        }
    }

    pub fn refused(&self, why: Refused) {
        let i = REASONS.iter().position(|(r, _)| *r == why).unwrap_or(0);
        self.cells.add(REFUSED_AT + i, 1);
    }

    pub fn slow_client_dropped(&self) {
        self.cells.add(SLOW, 1);
    }

    pub fn redis_reconnected(&self) {
        self.cells.add(REDIS, 1);
    }

    /// The hub reaped the worker in `slot`: its clients are gone; a new one starts in its place
    /// unless the relay is stopping.
    pub fn worker_ended(&self, slot: usize, restarted: bool) {
        self.cells.clear(slot, CLIENTS);
        Http::row_ended(&self.http, slot);
        if restarted {
            self.cells.row(slot).add(RESTARTS, 1);
        }
    }
}

impl Collector for Relay {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.cells;
        encode_gauge(
            &mut encoder,
            "chat_relay_clients_connected",
            "WebSocket clients in the room now, all workers together.",
            c.gauge(CLIENTS),
        )?;
        encode_counter(
            &mut encoder,
            "chat_relay_messages_received",
            "Client messages accepted and broadcast.",
            c.sum(RECEIVED),
        )?;
        encode_counter(
            &mut encoder,
            "chat_relay_messages_delivered",
            "Messages written to clients, one per recipient.",
            c.sum(DELIVERED),
        )?;
        encode_counters(
            &mut encoder,
            "chat_relay_frames_refused",
            "Client frames refused, by reason.",
            "reason",
            REASONS
                .iter()
                .enumerate()
                .map(|(i, (_, name))| (*name, c.sum(REFUSED_AT + i))),
        )?;
        encode_counter(
            &mut encoder,
            "chat_relay_slow_clients_dropped",
            "Clients disconnected because more than --queue messages waited for them.",
            c.sum(SLOW),
        )?;
        encode_counter(
            &mut encoder,
            "chat_relay_worker_restarts",
            "Workers that ended and were replaced.",
            c.sum(RESTARTS),
        )?;
        encode_counter(
            &mut encoder,
            "chat_relay_redis_reconnects",
            "Times a worker's Redis connection came back after it was lost.",
            c.sum(REDIS),
        )
    }
}
