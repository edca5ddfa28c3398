//! The `metrics` profile: the metric events of `minute-stats` (seed `004_…`).
//!
//! ```text
//! {"type":"request_duration","value":87,"timestamp":"2017-01-03T15:53:01.494821Z","tags":"company:1,sburbles:barf"}
//! ```
//!
//! `type` is one of the seed's four, uniformly; `value` a positive integer in a range that fits the
//! type (durations in ms 5–2000, skewed low; counts 1–100; signups 1–5; logins 1–50); `tags` the
//! seed's `"company:N,sburbles:barf|borf"` string with companies 1–5.

use super::text::{self, Stamp};
use crate::time::Micros;

pub const TYPES: [&str; 4] = [
    "request_duration",
    "request_count",
    "user_signup",
    "user_logged",
];

#[derive(Default)]
pub struct Metrics {
    stamp: Stamp,
}

impl Metrics {
    pub fn write(&mut self, rng: &mut fastrand::Rng, at: Micros, out: &mut Vec<u8>) {
        let kind = rng.usize(..TYPES.len());
        let value = match kind {
            // Most requests are quick, a few are slow: the product of two uniforms skews low.
            0 => 5 + rng.u64(0..45) * rng.u64(1..45),
            1 => rng.u64(1..=100),
            2 => rng.u64(1..=5),
            _ => rng.u64(1..=50),
        };
        out.extend_from_slice(br#"{"type":""#);
        out.extend_from_slice(TYPES[kind].as_bytes());
        out.extend_from_slice(br#"","value":"#);
        text::push_u64(out, value);
        out.extend_from_slice(br#","timestamp":"#);
        self.stamp.push_micros(out, at);
        out.extend_from_slice(br#","tags":"company:"#);
        text::push_u64(out, rng.u64(1..=5));
        out.extend_from_slice(if rng.bool() {
            b",sburbles:barf\"}"
        } else {
            b",sburbles:borf\"}"
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_minute_stats_shape() {
        let mut gen = Metrics::default();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..400 {
            let mut out = Vec::new();
            gen.write(&mut rng, 1_483_458_781_494_821 + i * 10_000, &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let obj = v.as_object().unwrap();
            assert_eq!(
                obj.keys().collect::<Vec<_>>(),
                ["tags", "timestamp", "type", "value"]
            );
            assert!(v["value"].as_u64().unwrap() >= 1);
            assert!(v["tags"].as_str().unwrap().starts_with("company:"));
            crate::time::parse_timestamp(v["timestamp"].as_str().unwrap()).unwrap();
            seen.insert(v["type"].as_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 4);
    }
}
