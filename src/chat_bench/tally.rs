//! The pure accounting of one measurement: the send schedule, what each client received, and the
//! step's report. No sockets and no clocks here: the I/O layer feeds it stamps and times.
//!
//! Every message has an index `round × clients + sender`; each client keeps one bit per index, so a
//! delivery is counted once however often it arrives (repeats are counted as duplicates), and what
//! never arrived is exactly `expected − delivered`.

use hdrhistogram::Histogram;
use serde::Serialize;

/// When each client sends: every `interval`, client `i` offset by `i / clients` of an interval, so
/// the room's sends are spread evenly instead of arriving in bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub clients: u32,
    pub rounds: u32,
    pub interval_us: u64,
}

impl Schedule {
    /// `duration` of sending at one message per `interval` per client: at least one round.
    pub fn new(clients: u32, duration_us: u64, interval_us: u64) -> Schedule {
        let interval_us = interval_us.max(1);
        let rounds = duration_us
            .div_ceil(interval_us)
            .clamp(1, u64::from(u32::MAX - 1)) as u32;
        Schedule {
            clients,
            rounds,
            interval_us,
        }
    }

    /// When `sender` sends its `round`-th message, µs after the first send.
    pub fn offset_us(&self, sender: u32, round: u32) -> u64 {
        u64::from(round) * self.interval_us
            + self.interval_us * u64::from(sender) / u64::from(self.clients.max(1))
    }

    /// The message's place in every client's record, or `None` if no such message was planned.
    pub fn index(&self, sender: u32, round: u32) -> Option<usize> {
        (sender < self.clients && round < self.rounds)
            .then(|| round as usize * self.clients as usize + sender as usize)
    }

    /// Messages planned in all: `clients × rounds`.
    pub fn messages(&self) -> u64 {
        u64::from(self.clients) * u64::from(self.rounds)
    }

    /// The offset of the last planned send.
    pub fn last_offset_us(&self) -> u64 {
        self.offset_us(self.clients.saturating_sub(1), self.rounds - 1)
    }
}

/// What one client received.
#[derive(Debug, Clone)]
pub struct ClientTally {
    seen: Vec<u64>,
    pub delivered: u64,
    pub late: u64,
    pub duplicates: u64,
    pub max_us: u64,
}

impl ClientTally {
    pub fn new(schedule: &Schedule) -> ClientTally {
        ClientTally {
            seen: vec![0; (schedule.messages() as usize).div_ceil(64)],
            delivered: 0,
            late: 0,
            duplicates: 0,
            max_us: 0,
        }
    }

    /// Record the arrival of message `index` after `latency_us`; false if it had already arrived.
    pub fn record(&mut self, index: usize, latency_us: u64, budget_us: u64) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        let Some(slot) = self.seen.get_mut(word) else {
            return false;
        };
        if *slot & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        *slot |= bit;
        self.delivered += 1;
        if latency_us > budget_us {
            self.late += 1;
        }
        self.max_us = self.max_us.max(latency_us);
        true
    }
}

/// Delivery latencies of a whole step, in µs, to 3 significant digits (HdrHistogram).
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // 1 µs to one hour; anything slower is clamped to an hour (it is late either way).
        Latencies(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, latency_us: u64) {
        self.0.saturating_record(latency_us.max(1));
    }

    /// Add every latency of `other` (same bounds and precision, so nothing is lost).
    pub fn add(&mut self, other: &Latencies) {
        self.0
            .add(&other.0)
            .expect("histograms of the same bounds add up");
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency at quantile `q` (0..=1) in µs, `None` when nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q))
    }
}

/// The totals the I/O layer gathers over one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Clients asked for.
    pub clients: u32,
    /// Clients whose WebSocket handshake succeeded.
    pub connected: u32,
    /// Clients the server closed or dropped before the step ended.
    pub disconnected: u32,
    /// Messages the schedule planned (`clients × rounds`).
    pub planned: u64,
    /// Messages actually written to the server.
    pub sent: u64,
    pub delivered: u64,
    pub late: u64,
    pub duplicates: u64,
    pub max_us: u64,
    /// How far behind its schedule the client's worst send was (the client's own saturation).
    pub send_lag_max_us: u64,
}

impl Totals {
    pub fn add_client(&mut self, tally: &ClientTally) {
        self.delivered += tally.delivered;
        self.late += tally.late;
        self.duplicates += tally.duplicates;
        self.max_us = self.max_us.max(tally.max_us);
    }
}

/// CPU seconds used during the step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    pub client_s: f64,
    pub server_s: Option<f64>,
    pub wall_s: f64,
}

/// One step's result line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    pub clients: u32,
    pub connected: u32,
    pub disconnected: u32,
    pub rounds: u32,
    pub sent: u64,
    pub unsent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub send_lag_max_ms: f64,
    pub wall_s: f64,
    pub client_cpu_s: f64,
    pub client_cpu_pct: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_pct: Option<f64>,
    /// CPU time per delivery: comparable across machines and loads, unlike the percentages.
    pub client_cpu_us_per_delivery: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub ok: bool,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Two decimals are plenty for seconds and percentages.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl StepReport {
    /// The step's verdict: ok only if every client connected and stayed, every planned message was
    /// sent, and every message reached every client within the budget.
    pub fn new(totals: &Totals, rounds: u32, latencies: &Latencies, cpu: Cpu) -> StepReport {
        let expected = totals.sent * u64::from(totals.connected);
        let lost = expected.saturating_sub(totals.delivered);
        let unsent = totals.planned.saturating_sub(totals.sent);
        // The histogram rounds up to its bucket's top; never past the exact maximum.
        let q = |q: f64| latencies.quantile_us(q).map(|v| ms(v.min(totals.max_us)));
        let per_delivery = |s: Option<f64>| {
            let n = totals.delivered as f64;
            s.filter(|_| n > 0.0).map(|s| round3(s * 1e6 / n))
        };
        let pct = |s: f64| {
            if cpu.wall_s > 0.0 {
                round2(100.0 * s / cpu.wall_s)
            } else {
                0.0
            }
        };
        StepReport {
            clients: totals.clients,
            connected: totals.connected,
            disconnected: totals.disconnected,
            rounds,
            sent: totals.sent,
            unsent,
            expected,
            delivered: totals.delivered,
            lost,
            late: totals.late,
            duplicates: totals.duplicates,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: (totals.delivered > 0).then(|| ms(totals.max_us)),
            send_lag_max_ms: ms(totals.send_lag_max_us),
            wall_s: round2(cpu.wall_s),
            client_cpu_s: round2(cpu.client_s),
            client_cpu_pct: pct(cpu.client_s),
            server_cpu_s: cpu.server_s.map(round2),
            server_cpu_pct: cpu.server_s.map(pct),
            client_cpu_us_per_delivery: per_delivery(Some(cpu.client_s)),
            server_cpu_us_per_delivery: per_delivery(cpu.server_s),
            ok: totals.connected == totals.clients
                && totals.disconnected == 0
                && unsent == 0
                && totals.sent > 0
                && lost == 0
                && totals.late == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sends_are_spread_evenly_over_the_interval() {
        let s = Schedule::new(4, 9_000_000, 3_000_000);
        assert_eq!(s.rounds, 3);
        let offsets: Vec<u64> = (0..4).map(|i| s.offset_us(i, 0)).collect();
        assert_eq!(offsets, [0, 750_000, 1_500_000, 2_250_000]);
        assert_eq!(s.offset_us(1, 2), 6_750_000);
        assert_eq!(s.last_offset_us(), 8_250_000);
        assert_eq!(s.index(3, 2), Some(11));
        assert_eq!(s.index(4, 0), None);
        assert_eq!(s.index(0, 3), None);
        // A duration shorter than the interval still sends once.
        assert_eq!(Schedule::new(2, 100, 3_000_000).rounds, 1);
    }

    #[test]
    fn a_client_counts_each_message_once_and_the_late_ones() {
        let s = Schedule::new(2, 6_000_000, 3_000_000);
        let mut t = ClientTally::new(&s);
        assert!(t.record(0, 500, 1_000_000));
        assert!(!t.record(0, 700, 1_000_000));
        assert!(t.record(3, 1_000_001, 1_000_000));
        assert!(!t.record(99, 1, 1_000_000));
        assert_eq!(
            (t.delivered, t.duplicates, t.late, t.max_us),
            (2, 1, 1, 1_000_001)
        );
    }

    /// The shards' histograms added up say what one histogram of every latency says.
    #[test]
    fn shard_histograms_add_up_to_one() {
        let (mut whole, mut odd, mut even) = Default::default();
        let mut merged = Latencies::default();
        for (i, latency) in (1..=20_000u64).map(|i| i * 37 % 1_500_000).enumerate() {
            Latencies::record(&mut whole, latency);
            Latencies::record(if i % 2 == 0 { &mut even } else { &mut odd }, latency);
        }
        merged.add(&odd);
        merged.add(&even);
        assert_eq!(merged.len(), 20_000);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.quantile_us(q), whole.quantile_us(q), "quantile {q}");
        }
    }

    fn totals(connected: u32, sent: u64, delivered: u64, late: u64) -> Totals {
        Totals {
            clients: 3,
            connected,
            planned: 6,
            sent,
            delivered,
            late,
            ..Totals::default()
        }
    }

    #[test]
    fn ok_needs_everything_delivered_in_time() {
        let lat = Latencies::default();
        let cpu = Cpu::default();
        let good = StepReport::new(&totals(3, 6, 18, 0), 2, &lat, cpu);
        assert!(good.ok);
        assert_eq!((good.expected, good.lost), (18, 0));
        let lost = StepReport::new(&totals(3, 6, 17, 0), 2, &lat, cpu);
        assert_eq!((lost.lost, lost.ok), (1, false));
        assert!(!StepReport::new(&totals(3, 6, 18, 1), 2, &lat, cpu).ok);
        assert!(!StepReport::new(&totals(2, 6, 12, 0), 2, &lat, cpu).ok);
        let unsent = StepReport::new(&totals(3, 5, 15, 0), 2, &lat, cpu);
        assert_eq!((unsent.unsent, unsent.ok), (1, false));
    }

    proptest! {
        #[test]
        fn every_planned_message_has_its_own_index(clients in 1u32..50, rounds in 1u32..20) {
            let s = Schedule::new(clients, u64::from(rounds) * 1000, 1000);
            prop_assert_eq!(s.rounds, rounds);
            let mut seen = vec![false; s.messages() as usize];
            for r in 0..rounds {
                for c in 0..clients {
                    let i = s.index(c, r).unwrap();
                    prop_assert!(!seen[i]);
                    seen[i] = true;
                    // Offsets never go backwards within a round, and stay inside it.
                    prop_assert!(s.offset_us(c, r) < u64::from(r + 1) * 1000);
                }
            }
            prop_assert!(seen.iter().all(|&b| b));
        }

        #[test]
        fn percentiles_agree_with_sorting(mut v in prop::collection::vec(1u64..10_000_000, 1..500)) {
            let mut lat = Latencies::default();
            for &x in &v {
                lat.record(x);
            }
            v.sort_unstable();
            for q in [0.5, 0.9, 0.99, 0.999] {
                // The exact rank-q value; HdrHistogram keeps 3 significant digits of it.
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
                let exact = v[rank - 1] as f64;
                let got = lat.quantile_us(q).unwrap() as f64;
                prop_assert!((got - exact).abs() <= exact * 0.001 + 1.0, "q={} exact={} got={}", q, exact, got);
            }
        }
    }
}
