//! Writing JSON text fast: hex ids, UUID-shaped ids, cached timestamp prefixes, pre-escaped strings.
//! The profiles build each event straight into a byte buffer; nothing here allocates per event.

use crate::time::{self, Micros, MICROS_PER_SEC};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `n` random lowercase hex digits (n ≤ 16).
pub fn push_hex(out: &mut Vec<u8>, rng: &mut fastrand::Rng, n: usize) {
    let mut bits = rng.u64(..);
    for _ in 0..n {
        out.push(HEX[(bits & 15) as usize]);
        bits >>= 4;
    }
}

/// A 32-hex-digit fingerprint, as the seed's `fingerprint`.
pub fn push_fingerprint(out: &mut Vec<u8>, rng: &mut fastrand::Rng) {
    push_hex(out, rng, 16);
    push_hex(out, rng, 16);
}

/// An id in the 8-4-4-4-12 hex shape of the seed's `sessionId` and `visitorId` (random hex, as
/// the seed's own are: they carry no UUID version bits).
pub fn push_uuid(out: &mut Vec<u8>, rng: &mut fastrand::Rng) {
    push_hex(out, rng, 8);
    out.push(b'-');
    push_hex(out, rng, 4);
    out.push(b'-');
    push_hex(out, rng, 4);
    out.push(b'-');
    push_hex(out, rng, 4);
    out.push(b'-');
    push_hex(out, rng, 12);
}

/// `s` as a JSON string literal (quotes included), escaped once up front.
pub fn json_string(s: &str) -> Box<[u8]> {
    serde_json::to_string(s)
        .expect("a str always serializes")
        .into_bytes()
        .into_boxed_slice()
}

/// Decimal digits of `v` (no allocation).
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(crate::output::decimal(v, &mut [0u8; 20]));
}

/// `v / 10` with one decimal (`375` → `37.5`, `370` → `37`): percentages of the load profile.
pub fn push_tenths(out: &mut Vec<u8>, v: u32) {
    push_u64(out, u64::from(v / 10));
    if !v.is_multiple_of(10) {
        out.push(b'.');
        out.push(b'0' + (v % 10) as u8);
    }
}

/// Timestamps in RFC 3339 with the date-and-seconds part cached: events come many per second, so
/// only the fraction changes from one to the next.
pub struct Stamp {
    second: i64,
    prefix: Vec<u8>,
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp {
            second: i64::MIN,
            prefix: Vec::with_capacity(20),
        }
    }
}

impl Stamp {
    fn prefix(&mut self, t: Micros) -> &[u8] {
        let second = t.div_euclid(MICROS_PER_SEC);
        if second != self.second {
            self.second = second;
            let full = time::format_timestamp(second * MICROS_PER_SEC);
            self.prefix.clear();
            self.prefix.extend_from_slice(&full.as_bytes()[..19]);
        }
        &self.prefix
    }

    /// `"2019-12-08T06:42:57.289Z"`, quotes included: milliseconds, as the seed's events carry.
    pub fn push_millis(&mut self, out: &mut Vec<u8>, t: Micros) {
        out.push(b'"');
        out.extend_from_slice(self.prefix(t));
        let ms = t.rem_euclid(MICROS_PER_SEC) / 1000;
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
            b'"',
        ]);
    }

    /// `"2017-01-03T15:53:01.494821Z"`, quotes included: microseconds, as pipeworks writes time.
    pub fn push_micros(&mut self, out: &mut Vec<u8>, t: Micros) {
        out.push(b'"');
        out.extend_from_slice(self.prefix(t));
        out.push(b'.');
        let us = t.rem_euclid(MICROS_PER_SEC);
        let mut digits = [b'0'; 6];
        let mut v = us;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&digits);
        out.extend_from_slice(b"Z\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn stamps_match_the_shared_formatter(t in -2_000_000_000_000_000i64..4_000_000_000_000_000i64) {
            let mut stamp = Stamp::default();
            let mut out = Vec::new();
            stamp.push_micros(&mut out, t);
            prop_assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", time::format_timestamp(t)));
            let mut out = Vec::new();
            stamp.push_millis(&mut out, t);
            let full = time::format_timestamp(t);
            prop_assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}Z\"", &full[..23]));
        }

        #[test]
        fn numbers(v in any::<u64>(), p in 0u32..100_000) {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            prop_assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
            let mut out = Vec::new();
            push_tenths(&mut out, p);
            let parsed: f64 = String::from_utf8(out).unwrap().parse().unwrap();
            prop_assert!((parsed - f64::from(p) / 10.0).abs() < 1e-9);
        }
    }

    #[test]
    fn ids_have_the_seed_shape() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut out = Vec::new();
        push_uuid(&mut out, &mut rng);
        let text = String::from_utf8(out).unwrap();
        let parts: Vec<usize> = text.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        let mut out = Vec::new();
        push_fingerprint(&mut out, &mut rng);
        assert_eq!(out.len(), 32);
        assert!(out
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
