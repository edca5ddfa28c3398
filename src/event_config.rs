//! The configuration file shared by `gen-events` and `window-agg` (`--config FILE`, seed `002_…`:
//! "a rate configured in a JSON based configuration file", "N is specified in the configuration
//! file", "a Memcached server, the IP address of which is stored in the configuration file").
//!
//! Every key is optional; a flag given on the command line overrides the file. Unknown keys are an
//! error, so a typo does not silently fall back to a default. `examples/config.json`:
//!
//! ```json
//! {
//!   "rate": 100,
//!   "tracking_ids": ["INF-yj562hjojbtez", "INF-3gbfcjjdsd6vhvo", "…"],
//!   "kind_weights": {"signup": 1, "user-event": 3, "review": 1},
//!   "servers": 10,
//!   "minutes": 5,
//!   "bucket": "10s",
//!   "type_names": {"formsubmit": "signup", "click": "user-event", "review": "review"},
//!   "fields": {"type": "value.event", "tracking_id": "value.trackingId", "timestamp": "value.timestamp"},
//!   "memcached": "127.0.0.1:11211",
//!   "key_prefix": "pipeworks:"
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::Result;
use crate::time::Duration;

/// The seed's four tracking ids and six more of the same form (`INF-` + 13 to 15 base-36 chars).
pub const DEFAULT_TRACKING_IDS: [&str; 10] = [
    "INF-yj562hjojbtez",
    "INF-3gbfcjjdsd6vhvo",
    "INF-ixpktk3itsk86",
    "INF-1bi5qk0zocqcz",
    "INF-8x2q0k7nvcm3a",
    "INF-q4w1zr9ehdl2s5",
    "INF-m7c0tbgy3p1xk",
    "INF-2vdk8hq6ufjw0",
    "INF-t5nl3e0wazy9r4",
    "INF-gk1u7s4ob2mhq",
];

/// Everything the shared config file may hold; see the module doc.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// gen-events: events per second, a number or `"max"`.
    pub rate: Option<Rate>,
    /// gen-events: the tracking ids events are drawn from.
    pub tracking_ids: Option<Vec<String>>,
    /// gen-events: relative weights of the tracking kinds (`signup`, `user-event`, `review`).
    pub kind_weights: Option<BTreeMap<String, u32>>,
    /// gen-events: profile name (`tracking`, `metrics`, `load`).
    pub profile: Option<String>,
    /// gen-events `--profile load`: how many servers report.
    pub servers: Option<u32>,
    /// window-agg: the window length in minutes (the seed's N).
    pub minutes: Option<u32>,
    /// window-agg: the bucket length (the seed's "approximation of 10 seconds").
    pub bucket: Option<Duration>,
    /// window-agg: event name → type name in the summary.
    pub type_names: Option<BTreeMap<String, String>>,
    /// window-agg: dotted paths of the fields it reads.
    pub fields: Option<FieldPaths>,
    /// window-agg: Memcached servers, `HOST:PORT[,HOST:PORT…]`.
    pub memcached: Option<String>,
    /// window-agg: prefix of every Memcached key.
    pub key_prefix: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        crate::config::load_or_default(path)
    }
}

/// Where window-agg finds an event's type, tracking id and timestamp (dotted paths).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldPaths {
    #[serde(rename = "type")]
    pub kind: String,
    pub tracking_id: String,
    pub timestamp: String,
}

impl Default for FieldPaths {
    fn default() -> Self {
        FieldPaths {
            kind: "value.event".into(),
            tracking_id: "value.trackingId".into(),
            timestamp: "value.timestamp".into(),
        }
    }
}

/// The default event-name → type-name mapping of the seed's three kinds.
pub fn default_type_names() -> BTreeMap<String, String> {
    [
        ("formsubmit", "signup"),
        ("click", "user-event"),
        ("review", "review"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Events per second: a positive number, or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let v: f64 = s.parse().map_err(|_| {
            format!("bad rate {s:?} (expected events per second, e.g. 100, or max)")
        })?;
        Rate::per_second(v)
    }
}

impl Rate {
    fn per_second(v: f64) -> std::result::Result<Self, String> {
        if v.is_finite() && v > 0.0 && v <= 1e9 {
            Ok(Rate::PerSecond(v))
        } else {
            Err(format!(
                "rate {v} must be above 0 and at most 1e9 events per second (or max)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(v) => Rate::per_second(v),
            Raw::Text(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.json");
        let config = FileConfig::load(Some(&path)).unwrap();
        assert_eq!(config.rate, Some(Rate::PerSecond(100.0)));
        assert_eq!(config.tracking_ids.unwrap().len(), 10);
        assert_eq!(config.minutes, Some(5));
        assert_eq!(config.fields, Some(FieldPaths::default()));
        assert_eq!(config.type_names, Some(default_type_names()));
    }

    #[test]
    fn rates() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("2.5".parse::<Rate>(), Ok(Rate::PerSecond(2.5)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        let r: Rate = serde_json::from_str("100").unwrap();
        assert_eq!(r, Rate::PerSecond(100.0));
        let r: Rate = serde_json::from_str("\"max\"").unwrap();
        assert_eq!(r, Rate::Max);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<FileConfig>(r#"{"minuts": 5}"#).unwrap_err();
        assert!(e.to_string().contains("minuts"), "{e}");
    }
}
