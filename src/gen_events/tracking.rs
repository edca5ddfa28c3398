//! The `tracking` profile: events in the exact shape of the seed's two samples, plus `review`.
//!
//! ```text
//! {"path":"/visitors/events/","value":{"fingerprint":"5d4697775392fc850a737fe225fbd8e9","sessionId":"0da4fc08-3f12-5890-fdce-2455fc17c394","visitorId":"be4ab37a-1de9-a0f0-f973-562b7cd4365e","trackingId":"INF-yj562hjojbtez","userId":null,"userProfile":null,"geo":{"latitude":28.58,"longitude":77.33,"city":"Noida","country":"India","ip":"103.83.128.66"},"form":{"formId":"2bc04127-92d8-eb72-b1d3-26dc63f6ff19","email":"agency@gmail.com","anonymous":"Login"},"timestamp":"2019-12-08T06:42:57.289Z","event":"formsubmit","source":{"url":{"host":"app.useinfluence.co","hostname":"app.useinfluence.co","pathname":"/login","protocol":"https:"}},"referrer":""}}
//! ```
//!
//! Keys come in the seed's order. The kind-specific object sits where the seed has it, after `geo`:
//! `form` for signup (`"event":"formsubmit"`), `target` for user-event (`"event":"click"`),
//! `review` (`{"reviewId","rating","title"}`) for review (`"event":"review"`).

use std::collections::BTreeMap;

use super::text::{self, Stamp};
use crate::error::{Error, Result};
use crate::time::Micros;

/// The three kinds of the seed, by their summary type name.
pub const KINDS: [&str; 3] = ["signup", "user-event", "review"];

/// Cities with plausible coordinates and an IPv4 /24 seen there.
const PLACES: &[(&str, &str, &str, &str, &str)] = &[
    ("28.58", "77.33", "Noida", "India", "103.83.128."),
    ("19.08", "72.88", "Mumbai", "India", "49.36.112."),
    ("12.97", "77.59", "Bengaluru", "India", "106.51.72."),
    (
        "37.77",
        "-122.42",
        "San Francisco",
        "United States",
        "104.28.19.",
    ),
    ("40.71", "-74.01", "New York", "United States", "72.229.28."),
    ("51.51", "-0.13", "London", "United Kingdom", "81.2.69."),
    ("52.52", "13.4", "Berlin", "Germany", "91.64.13."),
    ("-23.55", "-46.63", "São Paulo", "Brazil", "177.79.3."),
    ("-33.87", "151.21", "Sydney", "Australia", "1.129.108."),
    ("1.35", "103.82", "Singapore", "Singapore", "116.86.4."),
];

const SIGNUP_PAGES: &[&str] = &["/login", "/signup", "/register", "/trial"];
const CLICK_PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/features",
    "/blog/social-proof",
    "/integrations",
];
const EMAIL_NAMES: &[&str] = &[
    "agency",
    "hello",
    "team",
    "marketing",
    "founder",
    "sales",
    "ops",
];
const EMAIL_DOMAINS: &[&str] = &["gmail.com", "yahoo.com", "outlook.com", "useinfluence.co"];
const REVIEW_TITLES: &[&str] = &[
    "Great product",
    "Boosted our conversions",
    "Easy to set up",
    "Good support",
    "Could be better",
];

pub struct Tracking {
    tracking_ids: Vec<Box<[u8]>>,
    /// Cumulative weights of signup, user-event, review.
    cumulative: [u32; 3],
    stamp: Stamp,
    places: Vec<Box<[u8]>>,
}

impl Tracking {
    pub fn new(tracking_ids: &[String], weights: &BTreeMap<String, u32>) -> Result<Self> {
        if tracking_ids.is_empty() {
            return Err(Error::usage("the tracking id list is empty"));
        }
        if let Some(unknown) = weights.keys().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(Error::usage(format!(
                "unknown kind {unknown:?} in kind_weights (the kinds are signup, user-event, review)"
            )));
        }
        let mut cumulative = [0u32; 3];
        let mut sum = 0u32;
        for (i, kind) in KINDS.iter().enumerate() {
            sum = sum.saturating_add(weights.get(*kind).copied().unwrap_or(1));
            cumulative[i] = sum;
        }
        if sum == 0 {
            return Err(Error::usage("kind_weights are all 0"));
        }
        let places = PLACES
            .iter()
            .map(|(lat, lon, city, country, _)| {
                format!(
                    r#"{{"latitude":{lat},"longitude":{lon},"city":{},"country":{},"ip":"#,
                    serde_json::Value::from(*city),
                    serde_json::Value::from(*country)
                )
                .into_bytes()
                .into_boxed_slice()
            })
            .collect();
        Ok(Tracking {
            tracking_ids: tracking_ids.iter().map(|t| text::json_string(t)).collect(),
            cumulative,
            stamp: Stamp::default(),
            places,
        })
    }

    /// Append one event (without newline) stamped `at` to `out`.
    pub fn write(&mut self, rng: &mut fastrand::Rng, at: Micros, out: &mut Vec<u8>) {
        let roll = rng.u32(..self.cumulative[2]);
        let kind = self.cumulative.iter().position(|&c| roll < c).unwrap_or(0);
        out.extend_from_slice(br#"{"path":"/visitors/events/","value":{"fingerprint":""#);
        text::push_fingerprint(out, rng);
        out.extend_from_slice(br#"","sessionId":""#);
        text::push_uuid(out, rng);
        out.extend_from_slice(br#"","visitorId":""#);
        text::push_uuid(out, rng);
        out.extend_from_slice(br#"","trackingId":"#);
        out.extend_from_slice(&self.tracking_ids[rng.usize(..self.tracking_ids.len())]);
        out.extend_from_slice(br#","userId":null,"userProfile":null,"geo":"#);
        let place = rng.usize(..PLACES.len());
        out.extend_from_slice(&self.places[place]);
        out.push(b'"');
        out.extend_from_slice(PLACES[place].4.as_bytes());
        text::push_u64(out, rng.u64(1..255));
        out.extend_from_slice(b"\"},");
        let (event, host, page): (&[u8], &[u8], &str) = match kind {
            0 => {
                out.extend_from_slice(br#""form":{"formId":""#);
                text::push_uuid(out, rng);
                out.extend_from_slice(br#"","email":""#);
                out.extend_from_slice(EMAIL_NAMES[rng.usize(..EMAIL_NAMES.len())].as_bytes());
                if rng.bool() {
                    text::push_u64(out, rng.u64(1..1000));
                }
                out.push(b'@');
                out.extend_from_slice(EMAIL_DOMAINS[rng.usize(..EMAIL_DOMAINS.len())].as_bytes());
                out.extend_from_slice(br#"","anonymous":"#);
                out.extend_from_slice(if rng.u8(..4) == 0 {
                    br#""Signup"},"#
                } else {
                    br#""Login"},"#
                });
                let page = SIGNUP_PAGES[rng.usize(..SIGNUP_PAGES.len())];
                (b"formsubmit", b"app.useinfluence.co", page)
            }
            1 => {
                out.extend_from_slice(br#""target":{"id":""#);
                let id_start = out.len();
                push_element_id(out, rng);
                let id_end = out.len();
                out.extend_from_slice(br#"","selector":""#);
                push_selector(out, rng, id_start..id_end);
                out.extend_from_slice(b"\"},");
                let page = CLICK_PAGES[rng.usize(..CLICK_PAGES.len())];
                (b"click", b"useinfluence.co", page)
            }
            _ => {
                out.extend_from_slice(br#""review":{"reviewId":""#);
                text::push_uuid(out, rng);
                out.extend_from_slice(br#"","rating":"#);
                text::push_u64(out, rng.u64(1..=5));
                out.extend_from_slice(br#","title":""#);
                out.extend_from_slice(REVIEW_TITLES[rng.usize(..REVIEW_TITLES.len())].as_bytes());
                out.extend_from_slice(b"\"},");
                (b"review", b"useinfluence.co", "/reviews")
            }
        };
        out.extend_from_slice(br#""timestamp":"#);
        self.stamp.push_millis(out, at);
        out.extend_from_slice(br#","event":""#);
        out.extend_from_slice(event);
        out.extend_from_slice(br#"","source":{"url":{"host":""#);
        out.extend_from_slice(host);
        out.extend_from_slice(br#"","hostname":""#);
        out.extend_from_slice(host);
        out.extend_from_slice(br#"","pathname":""#);
        out.extend_from_slice(page.as_bytes());
        out.extend_from_slice(br#"","protocol":"https:"}},"referrer":""}}"#);
    }
}

const ALNUM: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

fn push_alnum(out: &mut Vec<u8>, rng: &mut fastrand::Rng, n: usize) {
    let mut bits = rng.u64(..);
    for _ in 0..n {
        // Only 62 of the 64 are word characters: fold `_` and `-` back onto letters.
        out.push(ALNUM[(bits & 63) as usize % 62]);
        bits >>= 6;
    }
}

/// An element id like the seed's `FPqR3acHqJeA3ach7MM9_0`.
fn push_element_id(out: &mut Vec<u8>, rng: &mut fastrand::Rng) {
    out.extend_from_slice(b"FPqR");
    push_alnum(out, rng, 4);
    out.extend_from_slice(b"qJeA");
    push_alnum(out, rng, 4);
    out.extend_from_slice(b"7MM9_");
    text::push_u64(out, rng.u64(..3));
}

/// A CSS path like the seed's, ending at the element whose id is `out[id]`.
fn push_selector(out: &mut Vec<u8>, rng: &mut fastrand::Rng, id: std::ops::Range<usize>) {
    let depth = rng.usize(3..9);
    for level in 0..depth {
        match rng.u8(..4) {
            0 => {
                out.extend_from_slice(b"div#");
                push_element_id(out, rng);
            }
            1 => {
                out.extend_from_slice(b"div.");
                push_element_id(out, rng);
                out.extend_from_slice(b".rounded");
            }
            _ => out.extend_from_slice(b"div"),
        }
        out.extend_from_slice(b":nth-child(");
        text::push_u64(out, rng.u64(1..30));
        out.extend_from_slice(b")>");
        if level == depth - 1 {
            out.extend_from_slice(b"div#");
            out.extend_from_within(id.clone());
            out.extend_from_slice(b":nth-child(1)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The seed's signup sample, verbatim.
    const SEED_SIGNUP: &str = r#"{ "path": "/visitors/events/", "value": { "fingerprint": "5d4697775392fc850a737fe225fbd8e9", "sessionId": "0da4fc08-3f12-5890-fdce-2455fc17c394", "visitorId": "be4ab37a-1de9-a0f0-f973-562b7cd4365e", "trackingId": "INF-yj562hjojbtez", "userId": null, "userProfile": null, "geo": { "latitude": 28.58, "longitude": 77.33, "city": "Noida", "country": "India", "ip": "103.83.128.66"}, "form": { "formId": "2bc04127-92d8-eb72-b1d3-26dc63f6ff19", "email": "agency@gmail.com", "anonymous": "Login"}, "timestamp": "2019-12-08T06:42:57.289Z", "event": "formsubmit", "source": { "url": { "host": "app.useinfluence.co", "hostname": "app.useinfluence.co", "pathname": "/login", "protocol": "https:" } }, "referrer": "" } }"#;

    /// The seed's click sample, verbatim.
    const SEED_CLICK: &str = r#"{ "path": "/visitors/events/", "value": { "fingerprint": "5d4697775392fc850a737fe225fbd8e9", "sessionId": "25ad9867-e9a5-cedf-0fc4-0c30b1c2a505", "visitorId": "1bfdd0e4-2629-6ef9-21ea-9f1b1f11fe02", "trackingId": "INF-yj562hjojbtez", "userId": null, "userProfile": null, "geo": { "latitude": 28.58, "longitude": 77.33, "city": "Noida", "country": "India", "ip": "103.83.128.17"}, "target": { "id": "FPqR3acHqJeA3ach7MM9_0", "selector": "div#FPqR2DbIqJeA2DbI7MM9_0.animated_FPqR2bI7Mf_c.slideInDown:nth-child(23)>div#FPqR3tRBqJeA3tRB7MM9_0:nth-child(1)>div:nth-child(1)>div:nth-child(1)>div:nth-child(2)>div#FPqR3dGiQJeA3dGi7MM9_0:nth-child(1)>div.FPqR2B_4qJeA2B_47MM9_0.rounded.FPqRD2zVqJeAD2zV7MM9_0:nth-child(1)>div#FPqR3acHqJeA3ach7MM9_0:nth-child(1)" }, "timestamp": "2019-12-08T07:10:30.485Z", "event": "click", "source": { "url": { "host": "useinfluence.co", "hostname": "useinfluence.co", "pathname": "/", "protocol": "https:" } }, "referrer": "" } }"#;

    /// The structure of a JSON value: keys in order, nesting, and each leaf's JSON type.
    fn shape(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Array(
                map.iter()
                    .map(|(k, v)| Value::Array(vec![Value::from(k.as_str()), shape(v)]))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
            Value::String(_) => "string".into(),
            Value::Number(_) => "number".into(),
            Value::Bool(_) => "bool".into(),
            Value::Null => "null".into(),
        }
    }

    fn generate(n: usize) -> Vec<Value> {
        let ids: Vec<String> = crate::event_config::DEFAULT_TRACKING_IDS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut gen = Tracking::new(&ids, &BTreeMap::new()).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                gen.write(&mut rng, 1_575_787_377_289_000 + i as i64 * 1000, &mut out);
                serde_json::from_slice(&out).unwrap()
            })
            .collect()
    }

    #[test]
    fn signup_and_click_have_the_seeds_exact_structure() {
        let signup = shape(&serde_json::from_str(SEED_SIGNUP).unwrap());
        let click = shape(&serde_json::from_str(SEED_CLICK).unwrap());
        let events = generate(300);
        let mut seen = [0; 3];
        for event in &events {
            match event["value"]["event"].as_str().unwrap() {
                "formsubmit" => {
                    assert_eq!(shape(event), signup, "{event}");
                    seen[0] += 1;
                }
                "click" => {
                    assert_eq!(shape(event), click, "{event}");
                    seen[1] += 1;
                }
                "review" => {
                    // Same envelope, with `review` where the others carry `form` / `target`.
                    let mut s = event.clone();
                    let value = s["value"].as_object_mut().unwrap();
                    let review = value.remove("review").unwrap();
                    assert!(review["rating"]
                        .as_u64()
                        .is_some_and(|r| (1..=5).contains(&r)));
                    let mut envelope = serde_json::from_str::<Value>(SEED_SIGNUP).unwrap();
                    envelope["value"].as_object_mut().unwrap().remove("form");
                    assert_eq!(shape(&s), shape(&envelope), "{event}");
                    seen[2] += 1;
                }
                other => panic!("unexpected event {other}"),
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[test]
    fn ids_are_seed_shaped_and_tracking_ids_come_from_the_list() {
        for event in generate(200) {
            let v = &event["value"];
            let fp = v["fingerprint"].as_str().unwrap();
            assert!(fp.len() == 32 && fp.bytes().all(|c| c.is_ascii_hexdigit()));
            for key in ["sessionId", "visitorId"] {
                let id = v[key].as_str().unwrap();
                let parts: Vec<usize> = id.split('-').map(str::len).collect();
                assert_eq!(parts, vec![8, 4, 4, 4, 12], "{id}");
            }
            let tid = v["trackingId"].as_str().unwrap();
            assert!(crate::event_config::DEFAULT_TRACKING_IDS.contains(&tid));
            let ip: Vec<u8> = v["geo"]["ip"]
                .as_str()
                .unwrap()
                .split('.')
                .map(|p| p.parse().unwrap())
                .collect();
            assert_eq!(ip.len(), 4);
            let lat = v["geo"]["latitude"].as_f64().unwrap();
            assert!((-90.0..=90.0).contains(&lat));
            if let Some(target) = v.get("target") {
                let id = target["id"].as_str().unwrap();
                assert!(target["selector"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("div#{id}:nth-child(1)")));
            }
        }
    }

    #[test]
    fn weights_pick_the_kinds() {
        let ids = vec!["INF-a".to_string()];
        let weights: BTreeMap<String, u32> = [("signup".to_string(), 0), ("review".to_string(), 0)]
            .into_iter()
            .collect();
        let mut gen = Tracking::new(&ids, &weights).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            let mut out = Vec::new();
            gen.write(&mut rng, 0, &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["value"]["event"], "click");
        }
        let bad: BTreeMap<String, u32> = [("purchase".to_string(), 1)].into_iter().collect();
        assert!(Tracking::new(&ids, &bad).is_err());
    }
}
