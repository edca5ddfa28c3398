//! A fast reader for the common shape of a problem line, in front of the serde reader.
//!
//! Most lines are written by programs, compactly and in one shape:
//! `{"order":{…},"warehouses":[{"name":…,"inventory":{…}},…]}` with plain names and whole
//! quantities. For those, one pass over the bytes is several times faster than serde_json's
//! visitors, and reading is most of the time `allocate` spends on a line. It is also faster than
//! the shared SIMD fast path could be ([`crate::fields`]): `benches/allocate-reader.sh` measures
//! this reader's complete read of a problem line below the cost of simd-json's tape alone (1.3 µs
//! against 1.6 µs on 847-byte lines), before any field is taken off the tape. That is why it stays.
//!
//! The fast reader accepts a strict subset of JSON and fills the same buffers the serde reader
//! ([`super::parse::ProblemSeed`]) fills, with the same result. Whatever it does not handle it
//! declines (`None`), and the caller reads the line again with serde: keys in another order or
//! unknown keys, escapes or control characters in strings, numbers that are not plain whole
//! non-negative integers (`-1`, `2.0`, `1e3`, `007`, over `u64`), a `"cost"` that is not a plain
//! integer, costs on some warehouses only, duplicate names (and the rare hash collision that looks
//! like one), trailing text — and every malformed line. So serde_json stays the one judge of what a
//! line means and the one author of every error message; the fast reader only ever agrees with it,
//! which the tests check on generated and mutated lines.

use std::borrow::Cow;

use super::parse::{name_hash, Problem, ProblemSeed, MAX_COST};

/// Buffers the fast reader reuses from line to line.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The order's items: their keys, and an open-addressed table of item index + 1 by key hash
    /// (0 marks a free slot; small, so clearing it per line is cheap).
    items: Vec<Key>,
    table: Vec<u16>,
    /// Hashes of the warehouse names.
    names: Vec<u64>,
    /// Hashes of one inventory's keys, to find a key listed twice.
    seen: Vec<u64>,
}

/// Read `text` into `seed`'s buffers if it has the common shape; `None` if serde must decide.
pub fn parse<'a>(
    text: &'a str,
    seed: &mut ProblemSeed<'_>,
    scratch: &mut Scratch,
) -> Option<Problem<'a>> {
    let mut s = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    seed.demand.clear();
    seed.stock.clear();
    seed.cost.clear();
    s.byte(b'{')?;
    s.key(b"\"order\":", "order")?;
    let items = s.order(&mut *seed.demand, scratch)?;
    s.byte(b',')?;
    s.key(b"\"warehouses\":", "warehouses")?;
    let (warehouses, with_cost) =
        s.warehouses(&items, &mut *seed.stock, &mut *seed.cost, scratch)?;
    s.byte(b'}')?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    // Warehouse names must be unique; equal hashes send the line to serde, which tells.
    distinct(&mut scratch.names)?;
    let has_cost = match with_cost {
        0 => {
            seed.cost.clear();
            false
        }
        n if n == warehouses.len() => true,
        _ => return None,
    };
    Some(Problem {
        items,
        warehouses,
        has_cost,
    })
}

/// `Some` when no two hashes are equal.
fn distinct(hashes: &mut [u64]) -> Option<()> {
    if hashes.len() <= 8 {
        let dup = (1..hashes.len()).any(|i| hashes[..i].contains(&hashes[i]));
        return (!dup).then_some(());
    }
    hashes.sort_unstable();
    hashes.windows(2).all(|w| w[0] != w[1]).then_some(())
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A mask whose lowest set bit marks the first byte of `v` (little-endian) that ends a plain
/// string: a quote, a backslash or a control character. (Bits above the first may be wrong; only
/// the lowest is used.)
fn string_stop(v: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    zero(v ^ (LO * b'"' as u64))
        | zero(v ^ (LO * b'\\' as u64))
        | (v.wrapping_sub(LO * 0x20) & !v & HI)
}

/// A name as the scan read it. Names of up to 16 bytes are their bytes, zero-padded, in two
/// words, so equal keys are equal names and no byte comparison is needed (a plain name holds no
/// zero byte, so the padding is unambiguous). A longer name has its hash in `lo` and [`LONG`] in
/// `hi` (no 16-byte name ends in eight 0xFF bytes, which are not UTF-8), and equal keys must
/// still compare their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Key {
    lo: u64,
    hi: u64,
}

const LONG: u64 = u64::MAX;

/// The low `n` bytes (`n` < 8) of a little-endian word.
fn low_bytes(word: u64, n: usize) -> u64 {
    word & ((1u64 << (8 * n)) - 1)
}

impl Key {
    /// The key of any name (the scan builds short keys from the words it already loaded).
    fn of(name: &str) -> Key {
        let b = name.as_bytes();
        if b.len() > 16 {
            return Key {
                lo: name_hash(name),
                hi: LONG,
            };
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Key {
            lo: word(0),
            hi: word(8),
        }
    }

    fn is_long(self) -> bool {
        self.hi == LONG
    }

    fn hash(self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let h = (self.lo ^ self.hi.rotate_left(32)).wrapping_mul(K);
        h ^ (h >> 29)
    }
}

/// Where a string's text lies in the line, without its quotes.
#[derive(Debug, Clone, Copy)]
struct Span(usize, usize);

struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next non-blank byte, consumed.
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let mut c = *self.b.get(self.i)?;
        if matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            self.ws();
            c = *self.b.get(self.i)?;
        }
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// `"key":`, compact (`compact` is those exact bytes) or with blanks around it.
    #[inline]
    fn key(&mut self, compact: &[u8], key: &str) -> Option<()> {
        if self.b[self.i..].starts_with(compact) {
            self.i += compact.len();
            return Some(());
        }
        (self.string()? == key).then_some(())?;
        self.byte(b':')
    }

    /// A string without escapes or control characters, borrowed from the line.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let (b, start) = (self.b, self.i);
        let mut i = start;
        while let Some(word) = b.get(i..i + 8) {
            let stop = string_stop(u64::from_le_bytes(word.try_into().expect("8 bytes")));
            if stop != 0 {
                i += (stop.trailing_zeros() / 8) as usize;
                return self.close_string(start, i);
            }
            i += 8;
        }
        while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
            i += 1;
        }
        self.close_string(start, i)
    }

    /// A string and its [`Key`], built from the words the scan loads when it is short. The string
    /// is returned as its span in the line: inventory keys need only their key.
    #[inline(always)]
    fn name(&mut self) -> Option<(Span, Key)> {
        if self.b.get(self.i) != Some(&b'"') {
            self.ws();
        }
        let b = self.b;
        let start = self.i + 1;
        if b.get(self.i) == Some(&b'"') {
            if let Some(word) = b.get(start..start + 8) {
                let lo = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                let stop = string_stop(lo);
                if stop != 0 {
                    let len = (stop.trailing_zeros() / 8) as usize;
                    // The stop byte is in the word already: no second load.
                    if (lo >> (8 * len)) as u8 != b'"' {
                        return None;
                    }
                    self.i = start + len + 1;
                    let lo = low_bytes(lo, len);
                    return Some((Span(start, start + len), Key { lo, hi: 0 }));
                }
                if let Some(word) = b.get(start + 8..start + 16) {
                    let hi = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                    let stop = string_stop(hi);
                    if stop != 0 {
                        let n = (stop.trailing_zeros() / 8) as usize;
                        if (hi >> (8 * n)) as u8 != b'"' {
                            return None;
                        }
                        self.i = start + 8 + n + 1;
                        let hi = low_bytes(hi, n);
                        let span = Span(start, start + 8 + n);
                        return Some((span, Key { lo, hi }));
                    }
                }
            }
        }
        let name = self.string()?;
        let end = self.i - 1;
        Some((Span(end - name.len(), end), Key::of(name)))
    }

    /// The text of a span the scan found between quotes.
    fn text(&self, span: Span) -> Option<&'a str> {
        self.text.get(span.0..span.1)
    }

    /// The string from `start` ends at `end`, if a quote is there.
    #[inline]
    fn close_string(&mut self, start: usize, end: usize) -> Option<&'a str> {
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        // Both ends sit next to ASCII quotes, so they are character boundaries.
        self.text.get(start..end)
    }

    /// A whole non-negative integer written plainly: digits, no leading zero, no fraction or
    /// exponent, within `u64`.
    #[inline]
    fn uint(&mut self) -> Option<u64> {
        let first = self.next()?;
        let mut v = u64::from(first.wrapping_sub(b'0'));
        if v > 9 {
            return None;
        }
        let start = self.i;
        while let Some(&d @ b'0'..=b'9') = self.b.get(self.i) {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        if first == b'0' && self.i > start {
            return None;
        }
        match self.b.get(self.i) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    /// After an element of an object or list: `true` for `,`, `false` for the closing byte.
    #[inline]
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.next()? {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    /// Whether the object or list just opened is empty (and then closed).
    #[inline]
    fn empty(&mut self, close: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The order: item names, their demand, and the lookup table of `scratch`.
    fn order(&mut self, demand: &mut Vec<u64>, scratch: &mut Scratch) -> Option<Vec<Cow<'a, str>>> {
        let mut names = Vec::with_capacity(16);
        let keys = &mut scratch.items;
        keys.clear();
        self.byte(b'{')?;
        if !self.empty(b'}') {
            loop {
                let (span, key) = self.name()?;
                self.byte(b':')?;
                demand.push(self.uint()?);
                keys.push(key);
                names.push(Cow::Borrowed(self.text(span)?));
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        if keys.len() >= usize::from(u16::MAX) {
            return None;
        }
        // A table at most a quarter full: most keys looked up are not in it, and a miss probes
        // until a free slot.
        let size = (keys.len() * 4).next_power_of_two().max(32);
        let table = &mut scratch.table;
        table.clear();
        table.resize(size, 0);
        for (i, key) in keys.iter().enumerate() {
            let mut slot = key.hash() as usize & (size - 1);
            while table[slot] != 0 {
                if keys[usize::from(table[slot]) - 1] == *key {
                    return None; // a duplicate item, or a collision of long names: serde decides
                }
                slot = (slot + 1) & (size - 1);
            }
            table[slot] = i as u16 + 1;
        }
        Some(names)
    }

    /// The warehouse list: names, stock rows, costs; and how many warehouses have a cost. Leaves
    /// the names' hashes in `scratch.names`.
    fn warehouses(
        &mut self,
        items: &[Cow<'a, str>],
        stock: &mut Vec<u64>,
        costs: &mut Vec<f64>,
        scratch: &mut Scratch,
    ) -> Option<(Vec<Cow<'a, str>>, usize)> {
        let mut names = Vec::with_capacity(32);
        let mut with_cost = 0;
        scratch.names.clear();
        let m = items.len();
        self.byte(b'[')?;
        if !self.empty(b']') {
            loop {
                self.byte(b'{')?;
                self.key(b"\"name\":", "name")?;
                let (span, key) = self.name()?;
                let name = self.text(span)?;
                self.byte(b',')?;
                self.key(b"\"inventory\":", "inventory")?;
                let row = stock.len();
                stock.resize(row + m, 0);
                self.inventory(
                    items,
                    &scratch.items,
                    &scratch.table,
                    &mut stock[row..],
                    &mut scratch.seen,
                )?;
                let cost = match self.next()? {
                    b'}' => 0.0,
                    b',' => {
                        self.key(b"\"cost\":", "cost")?;
                        let cost = self.uint()? as f64;
                        self.byte(b'}')?;
                        if cost > MAX_COST {
                            return None;
                        }
                        with_cost += 1;
                        cost
                    }
                    _ => return None,
                };
                costs.push(cost);
                scratch.names.push(key.hash());
                names.push(Cow::Borrowed(name));
                if !self.more(b']')? {
                    break;
                }
            }
        }
        Some((names, with_cost))
    }

    /// One inventory object into its stock row (columns are the order's items, whose `keys` are
    /// found through `table`); declines duplicate keys, which serde's reader refuses.
    fn inventory(
        &mut self,
        items: &[Cow<'a, str>],
        keys: &[Key],
        table: &[u16],
        row: &mut [u64],
        seen: &mut Vec<u64>,
    ) -> Option<()> {
        self.byte(b'{')?;
        if self.empty(b'}') {
            return Some(());
        }
        seen.clear();
        let mask = table.len() - 1;
        loop {
            let (span, key) = self.name()?;
            self.byte(b':')?;
            let qty = self.uint()?;
            let hash = key.hash();
            seen.push(hash);
            let mut slot = hash as usize & mask;
            loop {
                let at = usize::from(table[slot]);
                if at == 0 {
                    break;
                }
                if keys[at - 1] == key && (!key.is_long() || self.text(span)? == items[at - 1]) {
                    row[at - 1] = qty;
                    break;
                }
                slot = (slot + 1) & mask;
            }
            if !self.more(b'}')? {
                break;
            }
        }
        distinct(seen)
    }
}

#[cfg(test)]
mod tests {
    //! The fast reader against serde's, on lines written every way JSON allows and then some.

    use proptest::prelude::*;

    use super::super::parse_problem_serde;
    use super::*;

    /// Both readers on one line: whenever the fast one answers, serde answers the same.
    fn agree(text: &str) -> Result<bool, TestCaseError> {
        let (mut d1, mut s1, mut c1) = (vec![7], vec![7], vec![7.0]);
        let (mut d2, mut s2, mut c2) = (vec![9], vec![9], vec![9.0]);
        let seed = |d, s, c| ProblemSeed {
            demand: d,
            stock: s,
            cost: c,
        };
        let fast = parse(
            text,
            &mut seed(&mut d1, &mut s1, &mut c1),
            &mut Scratch::default(),
        );
        let slow = parse_problem_serde(text, seed(&mut d2, &mut s2, &mut c2));
        let Some(fast) = fast else {
            return Ok(false);
        };
        let slow =
            slow.map_err(|e| TestCaseError::fail(format!("{text}\nfast read it, serde: {e}")))?;
        prop_assert_eq!(&fast, &slow, "{}", text);
        prop_assert_eq!(&d1, &d2, "demand of {}", text);
        prop_assert_eq!(&s1, &s2, "stock of {}", text);
        prop_assert_eq!(&c1, &c2, "costs of {}", text);
        Ok(true)
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\n\t"), 1 => Just(" \r ")]
    }

    /// One of `plain`, or with probability `odd` one of `odd_ones`.
    fn sometimes(
        odd: f64,
        plain: impl Strategy<Value = String>,
        odd_ones: Vec<&'static str>,
    ) -> impl Strategy<Value = String> {
        (
            prop::bool::weighted(odd),
            plain,
            prop::sample::select(odd_ones),
        )
            .prop_map(|(is_odd, plain, other)| if is_odd { other.to_string() } else { plain })
    }

    /// Names as JSON text: plain ones of every length around the 8- and 16-byte words and
    /// non-ASCII ones; with probability `odd`, escapes (some equal to plain names) or a raw control
    /// character (invalid JSON).
    fn name(odd: f64) -> impl Strategy<Value = String> {
        let plain = prop::sample::select(vec![
            "a",
            "b",
            "apple",
            "item36",
            "wh1",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "a long warehouse name, over sixteen bytes",
            "wé",
            "日本",
            "",
        ])
        .prop_map(|s| format!("\"{s}\""));
        sometimes(
            odd,
            plain,
            vec![
                r#""\u0061""#,
                r#""a\"b""#,
                r#""x\\y""#,
                "\"tab\there\"",
                r#""\ud83d\ude00""#,
            ],
        )
    }

    fn quantity(odd: f64) -> impl Strategy<Value = String> {
        sometimes(
            odd,
            (0u64..=12).prop_map(|q| q.to_string()),
            vec![
                "007",
                "5.0",
                "1e3",
                "2E1",
                "-1",
                "-0",
                "0.5",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999",
                "\"3\"",
                "null",
                "true",
                "[]",
                "{}",
            ],
        )
    }

    fn cost(odd: f64) -> impl Strategy<Value = Option<String>> {
        let cost = sometimes(
            odd,
            (0u64..=20).prop_map(|c| c.to_string()),
            vec![
                "2.5",
                "1e15",
                "1000000000000000",
                "1000000000000001",
                "null",
                "-1",
                "\"1\"",
            ],
        );
        prop::option::of(cost)
    }

    /// `{k:v,…}` with blanks anywhere between tokens.
    fn object(entries: Vec<(String, String)>, blanks: &[&str]) -> String {
        let mut blank = blanks.iter().cycle();
        let mut out = format!("{{{}", blank.next().unwrap());
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out += &format!(",{}", blank.next().unwrap());
            }
            out += &format!(
                "{k}{}:{}{v}{}",
                blank.next().unwrap(),
                blank.next().unwrap(),
                blank.next().unwrap()
            );
        }
        out + "}"
    }

    prop_compose! {
        fn items(odd: f64)(entries in prop::collection::vec((name(odd), quantity(odd)), 0..6))
                          -> Vec<(String, String)> {
            unique(entries, odd)
        }
    }

    /// Plain lines name each item and warehouse once (duplicates are errors, which serde reports).
    fn unique(mut entries: Vec<(String, String)>, odd: f64) -> Vec<(String, String)> {
        if odd == 0.0 {
            let mut seen = std::collections::HashSet::new();
            entries.retain(|(name, _)| seen.insert(name.clone()));
        }
        entries
    }

    prop_compose! {
        fn warehouse(odd: f64)(name in name(odd), inventory in items(odd), cost in cost(odd),
                               order in 0..4usize, extra in prop::bool::weighted(odd),
                               blanks in prop::collection::vec(ws(), 8)) -> (String, String) {
            let mut entries = vec![
                ("\"name\"".to_string(), name.clone()),
                ("\"inventory\"".to_string(), object(inventory, &blanks)),
            ];
            if let Some(cost) = cost {
                entries.push(("\"cost\"".to_string(), cost));
            }
            if extra {
                entries.push(("\"note\"".to_string(), "[1,{\"a\":2}]".to_string()));
            }
            if odd > 0.0 {
                let turn = order % entries.len();
                entries.rotate_left(turn);
            }
            (name, object(entries, &blanks))
        }
    }

    prop_compose! {
        fn line(odd: f64)(order in items(odd),
                          warehouses in prop::collection::vec(warehouse(odd), 0..6),
                          swap in prop::bool::weighted(odd), blanks in prop::collection::vec(ws(), 8),
                          tail in sometimes(odd, Just(String::new()), vec![" ", "x", "}", "\n"]))
                          -> String {
            let mut warehouses = unique(warehouses, odd);
            if odd == 0.0 && warehouses.iter().any(|(_, w)| !w.contains("\"cost\"")) {
                // Costs on every warehouse or on none.
                warehouses.retain(|(_, w)| !w.contains("\"cost\""));
            }
            let list: Vec<String> = warehouses.into_iter().map(|(_, w)| w).collect();
            let list = format!("[{}]", list.join(","));
            let mut entries = vec![
                ("\"order\"".to_string(), object(order, &blanks)),
                ("\"warehouses\"".to_string(), list),
            ];
            if swap {
                entries.reverse();
            }
            object(entries, &blanks) + &tail
        }
    }

    /// A line — plain, or with a few odd tokens — then maybe one character deleted, doubled or
    /// replaced.
    fn mutated() -> impl Strategy<Value = String> {
        (
            prop_oneof![line(0.0), line(0.02), line(0.2)],
            prop::option::weighted(
                0.25,
                (
                    any::<prop::sample::Index>(),
                    0..3u8,
                    prop::sample::select(vec![
                        '"', '\\', ',', ':', '{', '}', '[', ']', '0', 'a', ' ', '\u{1}',
                    ]),
                ),
            ),
        )
            .prop_map(|(line, change)| {
                let mut chars: Vec<char> = line.chars().collect();
                if let Some((at, how, c)) = change {
                    let i = at.index(chars.len());
                    match how {
                        0 => {
                            chars.remove(i);
                        }
                        1 => chars.insert(i, chars[i]),
                        _ => chars[i] = c,
                    }
                }
                chars.into_iter().collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn the_fast_reader_only_ever_agrees_with_serde(text in mutated()) {
            agree(&text)?;
        }
    }

    /// The property above is only worth something if both readers get lines to read.
    #[test]
    fn generated_lines_exercise_both_readers() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = mutated();
        let taken = (0..2000)
            .filter(|_| agree(&strategy.new_tree(&mut runner).unwrap().current()).unwrap())
            .count();
        assert!(
            (400..=1600).contains(&taken),
            "fast path took {taken} of 2000 lines"
        );
    }

    #[test]
    fn plain_compact_lines_take_the_fast_path() {
        for line in [
            r#"{"order":{"apple":5,"banana":5},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"banana":5}}]}"#,
            r#"{"order":{},"warehouses":[]}"#,
            r#"{ "order" : { "a" : 1 } , "warehouses" : [ { "name" : "w" , "inventory" : { } , "cost" : 3 } ] } "#,
            r#"{"order":{"a long item name, longer than sixteen":18446744073709551615},"warehouses":[{"name":"日本","inventory":{"a long item name, longer than sixteen":2}}]}"#,
        ] {
            assert!(agree(line).unwrap(), "declined: {line}");
        }
    }

    #[test]
    fn what_the_fast_path_declines_serde_decides() {
        for line in [
            r#"{"warehouses":[],"order":{}}"#,
            r#"{"order":{"a":1,"a":2},"warehouses":[]}"#,
            r#"{"order":{"a":1},"warehouses":[{"name":"w","inventory":{"a":1,"a":1}}]}"#,
            r#"{"order":{"a":1},"warehouses":[{"name":"w","inventory":{}},{"name":"w","inventory":{}}]}"#,
            r#"{"order":{"a":1},"warehouses":[{"name":"w","inventory":{},"cost":1},{"name":"v","inventory":{}}]}"#,
            r#"{"order":{"\u0061":1},"warehouses":[]}"#,
            r#"{"order":{"a":1.0},"warehouses":[]}"#,
            r#"{"order":{"a":01},"warehouses":[]}"#,
            r#"{"order":{"a":1},"warehouses":[]}x"#,
        ] {
            assert!(!agree(line).unwrap(), "fast path took: {line}");
        }
    }
}
