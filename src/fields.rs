//! The JSON hot path: a few fields out of a JSON object line, validated whole, without copies.
//!
//! Every program that reads JSON Lines in bulk wants two or three fields of each line
//! (`value.event`, `value.trackingId` and `value.timestamp` of a tracking event; `type`, `value`
//! and `timestamp` of a metric). [`FieldReader::read`] parses a line in place with simd-json
//! (SIMD structural indexing and UTF-8 validation, then a tape of the line's values) and picks the
//! wanted fields off the tape by their dotted paths: strings come back as byte ranges of the line,
//! numbers as `f64`, and nothing is allocated.
//!
//! The fast path only ever answers for a line that its program's serde_json reading would accept
//! with the same values. Whenever anything is not as expected it declines (`None`) and the caller
//! reads the line again with serde_json, which decides and words every error exactly as before:
//! the line is not valid JSON anywhere (a field we skip included) or not UTF-8, it is not an
//! object, a wanted field is missing, of another type, or listed twice (serde refuses duplicate
//! fields), a number lies outside what simd-json reads exactly (integers past 64 bits, exponents
//! past `f64`), the nesting is deeper than [`MAX_DEPTH`], or the line holds a backslash anywhere
//! (simd-json decodes escapes in place, which would change the text serde must word errors on).
//! The property tests in this module and in each program check that agreement on generated and
//! mutated lines.
//!
//! Why simd-json and not sonic-rs: on our lines simd-json's tape is the faster of the two (README,
//! "JSON hot path"), it picks AVX2 or SSE4.2 at run time (sonic-rs chooses its SIMD code when it is
//! compiled, so a portable build gets its scalar fallback), and its `fill_tape_padded` parses a
//! line where it lies in the read buffer, the following bytes serving as padding.

use simd_json::tape::Node;
use simd_json::{Buffers, StaticNode, Tape};

/// The deepest nesting the fast path reads; deeper lines go to serde_json (which reads them too).
pub const MAX_DEPTH: usize = 64;

const _: () = assert!(crate::input::PADDING >= simd_json::INPUT_PADDING);

/// What a wanted field must be for the fast path to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A string.
    Str,
    /// A number.
    Number,
    /// Anything, or absent (a field the program's serde struct declares but does not use: listed
    /// so that a duplicate of it is refused as serde refuses it).
    Optional,
}

/// A field as the fast path found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found {
    /// A string without escapes: its bytes are `line[start..end]`.
    Str(usize, usize),
    Number(f64),
    /// An [`Want::Optional`] field that is there.
    Present,
    /// An [`Want::Optional`] field that is not.
    Absent,
}

/// Up to 8 dotted paths, each with what it must hold.
#[derive(Debug, Clone)]
pub struct Fields {
    paths: Vec<Vec<Box<[u8]>>>,
    wants: Vec<Want>,
    /// Per depth, bit `n` set when some path's segment at that depth is `n` bytes long (`n < 64`;
    /// bit 63 stands for every longer segment): most keys of a line are passed over on their
    /// length alone, before any byte of them is compared.
    lengths: Vec<u64>,
    /// Per depth, each distinct segment once with the mask of the paths that have it there: a key
    /// is compared with each segment at most once, however many paths share it.
    segments: Vec<Vec<(Box<[u8]>, u8)>>,
}

impl Fields {
    /// Dotted paths (`value.event`); the caller has checked that no segment is empty.
    pub fn new(paths: &[(&str, Want)]) -> Self {
        assert!(paths.len() <= 8, "at most 8 paths");
        let wants = paths.iter().map(|(_, w)| *w).collect();
        let paths: Vec<Vec<Box<[u8]>>> = paths
            .iter()
            .map(|(p, _)| p.split('.').map(|s| s.as_bytes().into()).collect())
            .collect();
        let deepest = paths.iter().map(Vec::len).max().unwrap_or(0);
        let mut lengths = vec![0u64; deepest];
        let mut segments: Vec<Vec<(Box<[u8]>, u8)>> = vec![Vec::new(); deepest];
        for (p, path) in paths.iter().enumerate() {
            for (depth, segment) in path.iter().enumerate() {
                lengths[depth] |= length_bit(segment.len());
                match segments[depth].iter_mut().find(|(s, _)| s == segment) {
                    Some((_, mask)) => *mask |= 1 << p,
                    None => segments[depth].push((segment.clone(), 1 << p)),
                }
            }
        }
        Fields {
            paths,
            wants,
            lengths,
            segments,
        }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths in `mask` whose segment at `depth` is `key`.
    fn matching(&self, mask: u8, depth: usize, key: &[u8]) -> u8 {
        if self
            .lengths
            .get(depth)
            .is_none_or(|l| l & length_bit(key.len()) == 0)
        {
            return 0;
        }
        for (segment, paths) in &self.segments[depth] {
            // A byte loop: keys are short, and a `memcmp` call costs more than comparing them.
            if segment.len() == key.len() && segment.iter().zip(key).all(|(a, b)| a == b) {
                return paths & mask;
            }
        }
        0
    }
}

/// The bit of [`Fields::lengths`] that stands for a key of `len` bytes.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The positions of the set bits of `mask`, lowest first.
fn bits(mut mask: u8) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let p = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (p < 8).then_some(p)
    })
}

/// One parse thread's simd-json state, reused from line to line.
pub struct FieldReader {
    buffers: Buffers,
    /// The tape's allocation, kept between lines (it borrows each line only while it is read).
    tape: Option<Tape<'static>>,
}

impl Default for FieldReader {
    fn default() -> Self {
        FieldReader {
            buffers: Buffers::with_max_depth(4096, MAX_DEPTH),
            tape: Some(Tape::null()),
        }
    }
}

impl FieldReader {
    /// The `N` fields of `fields` in the line `bytes[..len]`, or `None` when serde must decide
    /// (see the module doc). `bytes` goes on at least [`crate::input::PADDING`] bytes past the
    /// line (any content; [`crate::input::Batch::padded_mut`] hands lines out that way), and is
    /// left as it was.
    pub fn read<const N: usize>(
        &mut self,
        bytes: &mut [u8],
        len: usize,
        fields: &Fields,
    ) -> Option<[Found; N]> {
        debug_assert_eq!(N, fields.len());
        if bytes.len() < len + simd_json::INPUT_PADDING
            || memchr::memchr(b'\\', &bytes[..len]).is_some()
        {
            return None;
        }
        let base = bytes.as_ptr() as usize;
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let mut found = [None; N];
        let all = ((1u16 << N) - 1) as u8;
        let ok = simd_json::fill_tape_padded(bytes, len, &mut self.buffers, &mut tape).is_ok()
            && walk(&tape.0, 0, 0, all, fields, base, len, &mut found).is_some();
        self.tape = Some(tape.reset());
        if !ok {
            return None;
        }
        let mut out = [Found::Absent; N];
        for i in 0..N {
            out[i] = match (found[i], fields.wants[i]) {
                (Some(f), _) => f,
                (None, Want::Optional) => Found::Absent,
                (None, _) => return None,
            };
        }
        Some(out)
    }
}

/// How many tape nodes the value at `tape[i]` spans.
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// Look for the paths in `mask` inside the object at `tape[i]`, at `depth`. `None` when the value
/// is not an object, a wanted key comes twice, or a wanted value has the wrong type.
#[allow(clippy::too_many_arguments)]
fn walk<const N: usize>(
    tape: &[Node<'_>],
    i: usize,
    depth: usize,
    mask: u8,
    fields: &Fields,
    base: usize,
    len: usize,
    found: &mut [Option<Found>; N],
) -> Option<()> {
    let Node::Object { len: keys, .. } = *tape.get(i)? else {
        return None;
    };
    let mut seen = 0u8;
    let mut at = i + 1;
    for _ in 0..keys {
        let Node::String(key) = *tape.get(at)? else {
            return None;
        };
        let value = at + 1;
        let node = tape.get(value)?;
        let matched = fields.matching(mask, depth, key.as_bytes());
        if matched != 0 {
            if seen & matched != 0 {
                return None;
            }
            seen |= matched;
            let mut inner = 0u8;
            for p in bits(matched) {
                if fields.paths[p].len() > depth + 1 {
                    inner |= 1 << p;
                    continue;
                }
                found[p] = Some(match (fields.wants[p], node) {
                    (Want::Str, Node::String(s)) => {
                        let start = (s.as_ptr() as usize).checked_sub(base)?;
                        if start + s.len() > len {
                            return None;
                        }
                        Found::Str(start, start + s.len())
                    }
                    (Want::Number, Node::Static(n)) => Found::Number(number(n)?),
                    (Want::Optional, _) => Found::Present,
                    _ => return None,
                });
            }
            if inner != 0 {
                walk(tape, value, depth + 1, inner, fields, base, len, found)?;
            }
        }
        at = value + span(node);
    }
    Some(())
}

/// A number as serde_json reads it into an `f64` (`-0` included: simd-json reads it as the
/// integer 0 with a sign, serde_json as -0.0).
fn number(n: &StaticNode) -> Option<f64> {
    match *n {
        StaticNode::I64(0) => Some(-0.0),
        StaticNode::I64(v) => Some(v as f64),
        StaticNode::U64(v) => Some(v as f64),
        StaticNode::F64(v) if v.is_finite() => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<const N: usize>(line: &str, fields: &Fields) -> Option<[Found; N]> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(&[b'x'; simd_json::INPUT_PADDING]);
        let before = bytes.clone();
        let got = FieldReader::default().read::<N>(&mut bytes, line.len(), fields);
        assert_eq!(bytes, before, "the line is left as it was");
        got
    }

    fn text(line: &str, f: Found) -> &str {
        match f {
            Found::Str(a, b) => &line[a..b],
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn picks_nested_fields() {
        let f = Fields::new(&[
            ("value.event", Want::Str),
            ("value.trackingId", Want::Str),
            ("value.timestamp", Want::Str),
        ]);
        let line = r#"{"path":"/x","value":{"geo":{"event":"no"},"event":"click","list":[{"event":1}],"trackingId":"INF-a","timestamp":"2019-12-08T07:10:30.485Z"}}"#;
        let [e, t, ts] = read::<3>(line, &f).unwrap();
        assert_eq!(
            (text(line, e), text(line, t), text(line, ts)),
            ("click", "INF-a", "2019-12-08T07:10:30.485Z")
        );
    }

    #[test]
    fn numbers_and_optional_fields() {
        let f = Fields::new(&[
            ("type", Want::Str),
            ("value", Want::Number),
            ("tags", Want::Optional),
        ]);
        let [_, v, tags] = read::<3>(r#"{"type":"a","value":-0,"tags":[1]}"#, &f).unwrap();
        assert!(matches!(v, Found::Number(x) if x == 0.0 && x.is_sign_negative()));
        assert_eq!(tags, Found::Present);
        let [_, v, tags] = read::<3>(r#" {"value" : 2.5e3 , "type":"a"} "#, &f).unwrap();
        assert_eq!((v, tags), (Found::Number(2500.0), Found::Absent));
    }

    #[test]
    fn declines_whatever_serde_must_word() {
        let f = Fields::new(&[("type", Want::Str), ("value", Want::Number)]);
        for line in [
            r#"{"type":"a","value":1,"type":"b"}"#,
            r#"{"type":"a"}"#,
            r#"{"type":1,"value":1}"#,
            r#"{"type":"a","value":"1"}"#,
            r#"{"type":"a","value":1e400}"#,
            r#"{"type":"a","value":18446744073709551616}"#,
            r#"{"type":"a\u0062","value":1}"#,
            r#"{"type":"a","value":1,"x":[1,]}"#,
            r#"{"type":"a","value":1} x"#,
            r#"[{"type":"a","value":1}]"#,
            "{\"type\":\"a\tb\",\"value\":1}",
        ] {
            assert!(read::<2>(line, &f).is_none(), "{line}");
        }
        let deep = format!(
            r#"{{"type":"a","value":1,"x":{}{}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(read::<2>(&deep, &f).is_none());
    }

    #[test]
    fn not_utf8_is_declined() {
        let f = Fields::new(&[("type", Want::Str)]);
        let mut bytes = b"{\"type\":\"\xff\"}".to_vec();
        let len = bytes.len();
        bytes.extend_from_slice(&[b' '; simd_json::INPUT_PADDING]);
        assert!(FieldReader::default()
            .read::<1>(&mut bytes, len, &f)
            .is_none());
    }
}

/// Generated lines for the property tests that hold each program's fast path to its serde reading.
#[cfg(test)]
pub(crate) mod testing {
    use proptest::prelude::*;

    /// A JSON string literal: mostly plain, sometimes with escapes or non-ASCII text.
    pub fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-zA-Z0-9 _:./-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-z]{0,4}(\\\\[\"\\\\/bfnrt]|\\\\u00e9|\\\\u0041)[a-z]{0,4}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-zé€😀]{0,6}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    /// A JSON number in one of the shapes writers use.
    pub fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u32>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-1e6f64..1e6).prop_map(|f| f.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            Just("-0".to_string()),
            Just("0.0".to_string()),
            Just("1E3".to_string()),
            Just("12.50e-2".to_string()),
            Just("18446744073709551616".to_string()),
        ]
    }

    /// Any JSON value, a few levels deep.
    pub fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            string(),
            number(),
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|kv| {
                    let body: Vec<String> =
                        kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    /// An object with the given `(key, value)` members plus a few random ones, in a random order,
    /// with random blanks around the tokens. A wanted member is sometimes listed twice.
    pub fn object(members: Vec<(String, String)>) -> impl Strategy<Value = String> {
        let n = members.len();
        (
            prop::collection::vec(("[a-zA-Z]{1,8}", value()), 0..4),
            Just(members),
            any::<u64>(),
            prop::collection::vec(
                prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\t"), 1 => Just(" \n ")],
                8,
            ),
            prop::option::weighted(0.05, 0..n.max(1)),
        )
            .prop_map(move |(extra, wanted, seed, blanks, dup)| {
                let mut all: Vec<(String, String)> = extra
                    .into_iter()
                    .map(|(k, v)| (format!("\"{k}\""), v))
                    .collect();
                for (k, v) in &wanted {
                    all.push((format!("\"{k}\""), v.clone()));
                }
                if let (Some(d), false) = (dup, wanted.is_empty()) {
                    all.push((format!("\"{}\"", wanted[d].0), wanted[d].1.clone()));
                }
                let mut rng = fastrand::Rng::with_seed(seed);
                rng.shuffle(&mut all);
                let b = |i: usize| blanks[i % blanks.len()];
                let body: Vec<String> = all
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        format!("{}{k}{}:{}{v}{}", b(i), b(i + 1), b(i + 2), b(i + 3))
                    })
                    .collect();
                format!("{}{{{}}}{}", b(5), body.join(","), b(6))
            })
    }

    /// A timestamp as events carry it: mostly valid RFC 3339, sometimes not.
    pub fn timestamp() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (1970i32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60, 0u32..1000)
                .prop_map(|(y, mo, d, h, mi, s, ms)| format!("\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z\"")),
            1 => Just("\"2019-12-08T06:42:57+05:30\"".to_string()),
            1 => Just("\"2019-02-30T00:00:00Z\"".to_string()),
            1 => Just("\"yesterday\"".to_string()),
            1 => number(),
        ]
    }

    /// The line as generated, or with one byte deleted, doubled or replaced.
    pub fn mutated(line: String) -> impl Strategy<Value = Vec<u8>> {
        let len = line.len().max(1);
        (
            0..4u8,
            0..len,
            any::<u8>(),
            prop::sample::select(b"{}[]\",:0-.eE \\tnul".to_vec()),
            any::<bool>(),
        )
            .prop_map(move |(how, at, byte, json_byte, structural)| {
                let mut b = line.clone().into_bytes();
                let at = at.min(b.len().saturating_sub(1));
                let new = if structural { json_byte } else { byte };
                match how {
                    0 => {}
                    1 if !b.is_empty() => {
                        b.remove(at);
                    }
                    2 if !b.is_empty() => b.insert(at, b[at]),
                    _ if !b.is_empty() => b[at] = new,
                    _ => {}
                }
                b
            })
    }
}
