//! Reading only the fields window-agg needs from an event line, by dotted path (`value.event`).
//!
//! The line is parsed by serde_json with a visitor that descends only into the keys on a wanted
//! path and skips everything else without building it. Strings come out borrowed from the line
//! (owned only when they contain escapes). A key on a wanted path that comes twice in one object
//! is refused, as serde refuses a duplicate field (`duplicate field "value.event"`).
//!
//! This is the reference reading and the author of every error message; window-agg reads most
//! lines with the shared fast path ([`crate::fields`]), which agrees with it (tested below).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Up to three dotted paths to pick out of an object.
#[derive(Debug, Clone)]
pub struct Paths {
    paths: Vec<Vec<String>>,
    names: Vec<String>,
}

impl Paths {
    /// Each path is dotted (`value.event`); an empty segment is refused.
    pub fn new(paths: &[&str]) -> Result<Self, String> {
        assert!(paths.len() <= 8, "at most 8 paths");
        let mut split = Vec::new();
        for p in paths {
            let segments: Vec<String> = p.split('.').map(str::to_string).collect();
            if segments.iter().any(String::is_empty) {
                return Err(format!("bad field path {p:?} (expected e.g. value.event)"));
            }
            split.push(segments);
        }
        Ok(Paths {
            paths: split,
            names: paths.iter().map(|p| p.to_string()).collect(),
        })
    }

    /// The string at each path, or a message naming the first missing or non-string one.
    pub fn extract<'a, const N: usize>(&self, line: &'a str) -> Result<[Cow<'a, str>; N], String> {
        debug_assert_eq!(N, self.paths.len());
        let mut found: [Option<Cow<'a, str>>; N] = std::array::from_fn(|_| None);
        let mut de = serde_json::Deserializer::from_str(line);
        let all = (1u8 << N) - 1;
        let level = Level {
            paths: self,
            depth: 0,
            mask: all,
            found: &mut found,
        };
        match de.deserialize_any(level).and_then(|()| de.end()) {
            Ok(()) => {}
            Err(e) => return Err(crate::input::describe_json_error(line, &e)),
        }
        let mut out: [Cow<'a, str>; N] = std::array::from_fn(|_| Cow::Borrowed(""));
        for (i, slot) in found.into_iter().enumerate() {
            match slot {
                Some(v) => out[i] = v,
                None => return Err(format!("missing field {:?}", self.names[i])),
            }
        }
        Ok(out)
    }
}

/// Visits one object at `depth` along the paths in `mask`.
struct Level<'p, 'f, 'a, const N: usize> {
    paths: &'p Paths,
    depth: usize,
    mask: u8,
    found: &'f mut [Option<Cow<'a, str>>; N],
}

impl<'de, const N: usize> Visitor<'de> for Level<'_, '_, 'de, N> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.depth == 0 {
            f.write_str("a JSON object")
        } else {
            let path = &self.paths.paths[self.mask.trailing_zeros() as usize];
            write!(f, "an object at {:?}", path[..self.depth].join("."))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0u8;
        while let Some(mask) = map.next_key_seed(KeyMatch {
            paths: self.paths,
            depth: self.depth,
            mask: self.mask,
        })? {
            if mask == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen & mask != 0 {
                let path = &self.paths.paths[mask.trailing_zeros() as usize];
                return Err(de::Error::custom(format_args!(
                    "duplicate field \"{}\"",
                    path[..=self.depth].join(".")
                )));
            }
            seen |= mask;
            let leaves = (0..N)
                .filter(|&i| mask & (1 << i) != 0 && self.paths.paths[i].len() == self.depth + 1)
                .fold(0u8, |m, i| m | (1 << i));
            if leaves != 0 {
                let value = map.next_value_seed(Leaf {
                    path: &self.paths.names[leaves.trailing_zeros() as usize],
                })?;
                for i in 0..N {
                    if leaves & (1 << i) != 0 {
                        self.found[i] = Some(value.clone());
                    }
                }
            } else {
                map.next_value_seed(Level {
                    paths: self.paths,
                    depth: self.depth + 1,
                    mask,
                    found: &mut *self.found,
                })?;
            }
        }
        Ok(())
    }
}

impl<'de, const N: usize> DeserializeSeed<'de> for Level<'_, '_, 'de, N> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Reads a key and answers which of the paths continue through it.
struct KeyMatch<'p> {
    paths: &'p Paths,
    depth: usize,
    mask: u8,
}

impl KeyMatch<'_> {
    fn matching(&self, key: &str) -> u8 {
        let mut out = 0;
        for (i, path) in self.paths.paths.iter().enumerate() {
            if self.mask & (1 << i) != 0 && path.get(self.depth).is_some_and(|s| s == key) {
                out |= 1 << i;
            }
        }
        out
    }
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = u8;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u8, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyMatch<'_> {
    type Value = u8;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<u8, E> {
        Ok(self.matching(key))
    }
}

/// A wanted string value.
struct Leaf<'n> {
    path: &'n str,
}

impl<'de> DeserializeSeed<'de> for Leaf<'_> {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Leaf<'_> {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string at {:?}", self.path)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths::new(&["value.event", "value.trackingId", "value.timestamp"]).unwrap()
    }

    #[test]
    fn picks_the_fields_and_borrows_them() {
        let line = r#"{"path":"/x","value":{"geo":{"event":"no"},"event":"click","trackingId":"INF-a","timestamp":"2019-12-08T07:10:30.485Z","target":{"id":"x"}}}"#;
        let [event, tid, ts] = paths().extract::<3>(line).unwrap();
        assert_eq!(event, "click");
        assert!(matches!(event, Cow::Borrowed(_)));
        assert_eq!(tid, "INF-a");
        assert_eq!(ts, "2019-12-08T07:10:30.485Z");
        let escaped = r#"{"value":{"event":"cl\u0069ck","trackingId":"a","timestamp":"t"}}"#;
        assert_eq!(paths().extract::<3>(escaped).unwrap()[0], "click");
    }

    #[test]
    fn problems_are_named() {
        let p = paths();
        let e = p
            .extract::<3>(r#"{"value":{"event":"click","timestamp":"t"}}"#)
            .unwrap_err();
        assert_eq!(e, r#"missing field "value.trackingId""#);
        let e = p
            .extract::<3>(r#"{"value":{"event":"click","trackingId":null,"timestamp":"t"}}"#)
            .unwrap_err();
        assert!(e.contains("a string at \"value.trackingId\""), "{e}");
        let e = p.extract::<3>(r#"{"value":[1]}"#).unwrap_err();
        assert!(e.contains("an object at \"value\""), "{e}");
        let e = p.extract::<3>(r#"[1]"#).unwrap_err();
        assert!(e.contains("a JSON object"), "{e}");
        let e = p.extract::<3>(r#"{"value":{"event":"click""#).unwrap_err();
        assert!(e.starts_with("truncated JSON"), "{e}");
        let e = p.extract::<3>(r#"{"value":{}} x"#).unwrap_err();
        assert!(e.starts_with("invalid JSON"), "{e}");
        assert!(Paths::new(&["value..event"]).is_err());
    }

    #[test]
    fn other_shapes_work_too() {
        let p = Paths::new(&["type", "tags.site", "at"]).unwrap();
        let [t, s, a] = p
            .extract::<3>(r#"{"type":"buy","at":"x","tags":{"site":"s1"}}"#)
            .unwrap();
        assert_eq!((&*t, &*s, &*a), ("buy", "s1", "x"));
    }
}
