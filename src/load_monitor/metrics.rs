//! load-monitor's own metrics, besides the HTTP ones every server has ([`crate::server::metrics`]).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `load_monitor_servers` | gauge | — |
//! | `load_monitor_records_accepted_total` | counter | — |
//! | `load_monitor_records_refused_total` | counter | `reason`: `invalid`, `too_old`, `too_new`, `over_capacity`, `over_new_server_rate` |
//! | `load_monitor_servers_forgotten_total` | counter | — |
//! | `load_monitor_snapshot_age_seconds` | gauge | — (since the last snapshot saved or loaded; absent before) |
//! | `load_monitor_snapshot_duration_seconds` | histogram | — |
//! | `load_monitor_snapshot_failures_total` | counter | — |
//!
//! The record counts are the store's own counters ([`Store::counters`]), read at each scrape, so
//! the request path pays nothing for them; only a record refused as invalid (400) is counted
//! here, since the store never sees it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::Store;
use crate::server::metrics::{encode_counter, encode_counters, encode_gauge};
use crate::server::Metrics;

/// Snapshot saves: when the last one was, how long they take, how many failed.
#[derive(Debug)]
pub struct Snapshots {
    last: Mutex<Option<Instant>>,
    durations: Histogram,
    failures: Counter,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            last: Mutex::new(None),
            durations: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0]),
            failures: Counter::default(),
        }
    }
}

impl Snapshots {
    /// A snapshot was saved in `took`, or loaded (`None`): the state on disk is this fresh.
    pub fn saved(&self, took: Option<Duration>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        if let Some(took) = took {
            self.durations.observe(took.as_secs_f64());
        }
    }

    pub fn failed(&self) {
        self.failures.inc();
    }

    fn age(&self) -> Option<Duration> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }
}

/// What the HTTP face counts for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub snapshots: Arc<Snapshots>,
    /// Records refused before the store saw them: not JSON, a bad field, a bad name.
    pub invalid: Counter,
}

impl Watch {
    /// Register everything in `metrics`, reading the store's counters at each scrape.
    pub fn register(&self, metrics: &mut Metrics, store: Arc<Store>) {
        let registry = metrics.registry();
        registry.register_collector(Box::new(StoreCollector {
            store,
            watch: self.clone(),
        }));
        registry.register(
            "load_monitor_snapshot_duration_seconds",
            "Time taken to write a snapshot.",
            self.snapshots.durations.clone(),
        );
        registry.register(
            "load_monitor_snapshot_failures",
            "Snapshot saves that failed (the last good snapshot stays).",
            self.snapshots.failures.clone(),
        );
    }
}

struct StoreCollector {
    store: Arc<Store>,
    watch: Watch,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCollector").finish_non_exhaustive()
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let c = self.store.counters();
        encode_gauge(
            &mut encoder,
            "load_monitor_servers",
            "Servers tracked now.",
            i64::try_from(self.store.server_count()).unwrap_or(i64::MAX),
        )?;
        encode_counter(
            &mut encoder,
            "load_monitor_records_accepted",
            "Records stored.",
            c.accepted,
        )?;
        encode_counters(
            &mut encoder,
            "load_monitor_records_refused",
            "Records refused, by reason.",
            "reason",
            [
                ("invalid", self.watch.invalid.get()),
                ("too_old", c.too_old),
                ("too_new", c.too_new),
                ("over_capacity", c.over_capacity),
                ("over_new_server_rate", c.over_new_server_rate),
            ],
        )?;
        encode_counter(
            &mut encoder,
            "load_monitor_servers_forgotten",
            "Servers forgotten because nothing of theirs was left in the day.",
            c.forgotten,
        )?;
        if let Some(age) = self.watch.snapshots.age() {
            encode_gauge(
                &mut encoder,
                "load_monitor_snapshot_age_seconds",
                "Seconds since the snapshot on disk was last written (or loaded).",
                age.as_secs_f64(),
            )?;
        }
        Ok(())
    }
}
