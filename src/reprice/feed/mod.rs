//! data-manager (the DataManager): the last N competitor prices as of a tick, from a CSV replayed
//! as a live feed and read forward one record at a time.
//!
//! Requests on stdin, one JSON object per line (`points` defaults to 5, `book` is optional):
//!
//! ```text
//! {"id":7,"tick":123,"points":5}
//! ```
//!
//! Replies on stdout, one line per request, in request order, flushed at once:
//!
//! ```text
//! {"id":7,"prices":[6201.85,6160.95,6241.1,6230,6198.5],"first_row":119,"last_row":123}
//! {"id":8,"books":[{"book":"b1","prices":[…],"first_row":3,"last_row":7},…]}
//! {"id":9,"error":"tick must be 1 or more"}
//! ```
//!
//! - The CSV has a header naming `Timestamp` and `Price` (any order, any case) and optionally
//!   `Book`. Without `Book` the file is one series and tick t is data row t: the reply holds the
//!   `points` rows ending at row t. With `Book`, consecutive rows with the same `Timestamp` form
//!   one step of the feed: tick t is the t-th step, and each book's window is its last `points`
//!   rows up to there (`first_row`/`last_row` count that book's rows). A request without `book`
//!   on such a file gets every book seen so far, in order of first appearance; with `book`, that
//!   book alone, in the single-series shape plus `"book"`.
//! - Memory holds, per book, the last `points` prices (the largest `points` asked so far, at most
//!   `--max-points`). A request those cover is answered from memory; a later tick reads forward
//!   one record at a time, never loading the file; an earlier tick that memory no longer covers
//!   re-reads from the start.
//! - After the last row the final windows are held (`--at-end hold`, the default) or the file is
//!   replayed from the start as an endless loop (`--at-end wrap`; row numbers restart, a window
//!   may span the seam, and whole passes far behind a requested tick are skipped, not read).
//!   `--follow` picks up rows appended while it runs: at the end it answers with what it has and
//!   reads on at the next request; a last line still being written (no newline yet) waits for it.
//! - A malformed row is reported once on stderr with its line number and skipped; at the end of
//!   input the data manager exits 1 if there were any (`skipped 2 bad rows`).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::input::{parse_owned, BadLines, Reader};
use crate::output::{Number, Output};
use crate::runner::warn;

/// What happens after the last row of the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AtEnd {
    /// Keep answering with the final windows.
    #[default]
    Hold,
    /// Replay the file from the start, as an endless loop.
    Wrap,
}

impl AtEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            AtEnd::Hold => "hold",
            AtEnd::Wrap => "wrap",
        }
    }
}

/// What data-manager is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone)]
pub struct Config {
    pub csv: PathBuf,
    pub at_end: AtEnd,
    pub follow: bool,
    pub max_points: usize,
}

/// One request of the message queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: Value,
    pub tick: u64,
    #[serde(default = "default_points")]
    pub points: usize,
    #[serde(default)]
    pub book: Option<String>,
}

fn default_points() -> usize {
    5
}

/// One book's window in a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book: Option<String>,
    pub prices: Vec<f64>,
    pub first_row: u64,
    pub last_row: u64,
}

/// What a request is answered with, before the id is attached.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    One(Window),
    Books(Vec<Window>),
}

/// The reply line: the request's id and its answer or error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Vec<Price>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_row: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_row: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub books: Option<Vec<BookWindow>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A book's window as it travels in a reply (prices print whole numbers without `.0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookWindow {
    pub book: String,
    pub prices: Vec<Price>,
    pub first_row: u64,
    pub last_row: u64,
}

/// A price on the wire: printed as [`Number`] prints it (whole numbers without `.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price(pub f64);

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Number(self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        f64::deserialize(d).map(Price)
    }
}

impl Reply {
    pub fn new(id: Value, answer: std::result::Result<Answer, String>) -> Reply {
        let mut reply = Reply {
            id,
            book: None,
            prices: None,
            first_row: None,
            last_row: None,
            books: None,
            error: None,
        };
        match answer {
            Ok(Answer::One(w)) => {
                reply.book = w.book;
                reply.prices = Some(w.prices.into_iter().map(Price).collect());
                reply.first_row = Some(w.first_row);
                reply.last_row = Some(w.last_row);
            }
            Ok(Answer::Books(books)) => {
                let books = books.into_iter().map(|w| BookWindow {
                    book: w.book.unwrap_or_default(),
                    prices: w.prices.into_iter().map(Price).collect(),
                    first_row: w.first_row,
                    last_row: w.last_row,
                });
                reply.books = Some(books.collect());
            }
            Err(e) => reply.error = Some(e),
        }
        reply
    }

    /// The answer carried by a reply line, as the client reads it.
    pub fn into_answer(self) -> std::result::Result<Answer, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if let Some(books) = self.books {
            let books = books.into_iter().map(|b| Window {
                book: Some(b.book),
                prices: b.prices.into_iter().map(|n| n.0).collect(),
                first_row: b.first_row,
                last_row: b.last_row,
            });
            return Ok(Answer::Books(books.collect()));
        }
        match (self.prices, self.first_row, self.last_row) {
            (Some(prices), Some(first_row), Some(last_row)) => Ok(Answer::One(Window {
                book: self.book,
                prices: prices.into_iter().map(|n| n.0).collect(),
                first_row,
                last_row,
            })),
            _ => Err("reply has neither prices, books nor error".into()),
        }
    }
}

/// Run the data manager: requests on stdin, replies on stdout, until stdin ends.
pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    if config.max_points == 0 {
        return Err(Error::usage("--max-points must be at least 1"));
    }
    let path = config.csv.clone();
    let opener: Opener = Box::new(move |offset| open_at(&path, offset));
    let mut feed = Feed::new(opener, config.at_end, config.follow, config.max_points)
        .with_name(config.csv.display().to_string());
    feed.start()
        .map_err(|e| Error::failed(format!("{}: {e}", config.csv.display())))?;
    let mut requests = Reader::open(&[])?;
    let mut bad = BadLines::new(false);
    while let Some(line) = requests.next_line()? {
        let reply = match line.text {
            Err(e) => {
                bad.report(line.at, &e)?;
                Reply::new(Value::Null, Err(format!("{}: {e}", line.at)))
            }
            Ok(text) => match parse_owned::<Request>(text) {
                Ok(req) => {
                    let answer = feed.answer(req.tick, req.points, req.book.as_deref());
                    Reply::new(req.id, answer)
                }
                Err(reason) => {
                    // Echo the id when there is one, so the client can fail that request now.
                    let id = serde_json::from_str::<Value>(text)
                        .ok()
                        .and_then(|v| v.get("id").cloned())
                        .unwrap_or(Value::Null);
                    bad.report(line.at, &reason)?;
                    Reply::new(id, Err(format!("{}: {reason}", line.at)))
                }
            },
        };
        out.emit(&reply)?;
        out.flush()?;
    }
    let rows = feed.bad_rows();
    let requests = bad.finish();
    if rows > 0 {
        warn(format_args!(
            "skipped {rows} bad row{}",
            if rows == 1 { "" } else { "s" }
        ));
        return Err(Error::Reported(1));
    }
    requests
}

fn open_at(path: &Path, offset: u64) -> io::Result<Box<dyn Read + Send>> {
    let mut file = File::open(path)?;
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))?;
    }
    Ok(Box::new(io::BufReader::with_capacity(64 * 1024, file)))
}

/// Opens the CSV positioned at a byte offset (0 = the header).
pub type Opener = Box<dyn FnMut(u64) -> io::Result<Box<dyn Read + Send>> + Send>;

#[derive(Debug, Clone, Copy)]
struct Columns {
    timestamp: usize,
    price: usize,
    book: Option<usize>,
}

#[derive(Debug)]
struct Row {
    /// The pass over the file and the step key (timestamp text, or the row's line with no Book
    /// column): a step is a run of rows with equal `(pass, key)`.
    pass: u64,
    key: String,
    book: Option<Arc<str>>,
    price: f64,
}

/// The CSV reader of one pass, positioned after what it has read.
struct Rows {
    reader: csv::Reader<Tail>,
    tail: Arc<TailSeen>,
    record: csv::StringRecord,
    base_offset: u64,
    base_line: u64,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    step: u64,
    row: u64,
    price: f64,
}

#[derive(Debug)]
struct Book {
    name: Option<Arc<str>>,
    points: VecDeque<Point>,
    /// Whether older points were dropped (memory no longer holds the whole history).
    dropped: bool,
    /// Rows of this book in pass `pass`.
    rows: u64,
    pass: u64,
}

/// The feed: the CSV as a sequence of steps, and each book's latest points.
pub struct Feed {
    open: Opener,
    name: String,
    at_end: AtEnd,
    follow: bool,
    max_points: usize,
    keep: usize,
    columns: Option<Columns>,
    rows: Option<Rows>,
    pending: Option<Row>,
    /// Steps consumed since the (virtual, with wrap) start.
    step: u64,
    /// Steps skipped without reading (wrap): memory holds no history before this one…
    history_from: u64,
    /// …and every window of up to this many points from then on is whole.
    history_points: usize,
    /// Rows per book in one pass (counted in the first pass): how many passes back a window
    /// of `points` rows can reach.
    per_pass: HashMap<Option<Arc<str>>, u64>,
    /// Steps consumed in the current pass, and how many one pass has once known.
    pass_steps: u64,
    steps_per_pass: Option<u64>,
    pass: u64,
    /// Where reading goes on: byte offset and lines before it.
    resume: (u64, u64),
    ended: bool,
    books: Vec<Book>,
    index: HashMap<Option<Arc<str>>, usize>,
    reported_up_to: u64,
    bad_rows: u64,
}

/// The source of the CSV reader, remembering how much it handed out and its last byte.
struct Tail {
    inner: Box<dyn Read + Send>,
    seen: Arc<TailSeen>,
}

#[derive(Default)]
struct TailSeen {
    /// Bytes handed out (or skipped over a record that is too long) since the open.
    bytes: AtomicU64,
    /// Newlines among them.
    newlines: AtomicU64,
    last: AtomicU8,
    /// Where the record being read starts (the CSV reader's position before it).
    record_start: AtomicU64,
    /// Set when the record being read grew past [`MAX_ROW_BYTES`]: the rest of its line was
    /// skipped and `bytes`/`newlines` point after it.
    overlong: AtomicBool,
}

mod answer;
mod rows;
pub use rows::MAX_ROW_BYTES;

#[cfg(test)]
mod tests {
    use super::rows::{shown, SHOWN};
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A CSV held in memory (it may grow, for `--follow`), counting opens and bytes read.
    #[derive(Clone, Default)]
    struct Memory {
        text: Arc<Mutex<Vec<u8>>>,
        opens: Arc<AtomicUsize>,
        bytes: Arc<AtomicUsize>,
    }

    struct Counting {
        inner: io::Cursor<Vec<u8>>,
        bytes: Arc<AtomicUsize>,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.bytes.fetch_add(n, Ordering::Relaxed);
            Ok(n)
        }
    }

    impl Memory {
        fn new(text: &str) -> Memory {
            let m = Memory::default();
            m.text.lock().unwrap().extend_from_slice(text.as_bytes());
            m
        }

        fn append(&self, text: &str) {
            self.text.lock().unwrap().extend_from_slice(text.as_bytes());
        }

        fn feed(&self, at_end: AtEnd, follow: bool) -> Feed {
            let me = self.clone();
            let opener: Opener = Box::new(move |offset| {
                me.opens.fetch_add(1, Ordering::Relaxed);
                let mut inner = io::Cursor::new(me.text.lock().unwrap().clone());
                inner.set_position(offset);
                Ok(Box::new(Counting {
                    inner,
                    bytes: me.bytes.clone(),
                }))
            });
            let mut feed = Feed::new(opener, at_end, follow, 1000);
            feed.start().unwrap();
            feed
        }
    }

    fn series(prices: &[f64]) -> String {
        let mut s = String::from("Timestamp,Price\n");
        for (i, p) in prices.iter().enumerate() {
            s.push_str(&format!("{},{p}\n", i + 1));
        }
        s
    }

    fn one(answer: std::result::Result<Answer, String>) -> Window {
        match answer {
            Ok(Answer::One(w)) => w,
            other => panic!("expected one window, got {other:?}"),
        }
    }

    /// The windows as the module doc defines them, computed from the whole series at once.
    fn oracle(prices: &[f64], at_end: AtEnd, tick: u64, points: usize) -> Window {
        let n = prices.len() as u64;
        let last = match at_end {
            AtEnd::Hold => tick.min(n),
            AtEnd::Wrap => tick,
        };
        let first = last.saturating_sub(points as u64 - 1).max(1);
        let row = |v: u64| (v - 1) % n + 1;
        Window {
            book: None,
            prices: (first..=last)
                .map(|v| prices[(row(v) - 1) as usize])
                .collect(),
            first_row: row(first),
            last_row: row(last),
        }
    }

    #[test]
    fn tick_t_ends_at_row_t_and_the_end_is_held() {
        let prices: Vec<f64> = (1..=20).map(f64::from).collect();
        let mem = Memory::new(&series(&prices));
        let mut feed = mem.feed(AtEnd::Hold, false);
        let w = one(feed.answer(7, 5, None));
        assert_eq!(w.prices, vec![3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!((w.first_row, w.last_row), (3, 7));
        assert_eq!(one(feed.answer(1, 5, None)).prices, vec![1.0]);
        let end = one(feed.answer(500, 5, None));
        assert_eq!(end.prices, vec![16.0, 17.0, 18.0, 19.0, 20.0]);
        assert!(feed.answer(0, 5, None).is_err());
        assert!(feed.answer(3, 0, None).is_err());
        assert!(feed
            .answer(3, 5, Some("b1"))
            .unwrap_err()
            .contains("no Book column"));
    }

    #[test]
    fn reads_forward_lazily_and_answers_from_memory() {
        let prices: Vec<f64> = (1..=20_000).map(f64::from).collect();
        let mem = Memory::new(&series(&prices));
        let total = mem.text.lock().unwrap().len();
        let mut feed = mem.feed(AtEnd::Hold, false);
        one(feed.answer(10, 5, None));
        let read = mem.bytes.load(Ordering::Relaxed);
        assert!(
            read < 64 * 1024 && read < total / 2,
            "read {read} of {total} bytes for tick 10"
        );
        // An earlier tick that memory still covers: no new open, same answer as a fresh feed.
        let opens = mem.opens.load(Ordering::Relaxed);
        assert_eq!(
            one(feed.answer(8, 3, None)),
            oracle(&prices, AtEnd::Hold, 8, 3)
        );
        assert_eq!(mem.opens.load(Ordering::Relaxed), opens);
        // One memory no longer covers: re-read from the start.
        assert_eq!(
            one(feed.answer(2, 5, None)),
            oracle(&prices, AtEnd::Hold, 2, 5)
        );
        assert_eq!(mem.opens.load(Ordering::Relaxed), opens + 1);
    }

    #[test]
    fn bad_rows_are_skipped_and_the_rest_is_kept() {
        let text = "Timestamp,Price\n1,10\n2,abc\n3\n4,NaN\n5,11\n6,12\n";
        let mem = Memory::new(text);
        let mut feed = mem.feed(AtEnd::Hold, false);
        let w = one(feed.answer(3, 5, None));
        assert_eq!(w.prices, vec![10.0, 11.0, 12.0]);
        assert_eq!(feed.bad_rows(), 3);
        // Re-reading does not report them again.
        one(feed.answer(1, 5, None));
        assert_eq!(feed.bad_rows(), 3);
    }

    #[test]
    fn non_positive_prices_and_overlong_rows_are_bad_rows() {
        let huge = "9".repeat(3 * MAX_ROW_BYTES);
        let text =
            format!("Timestamp,Price\n1,10\n2,-5\n3,0\n4,{huge}\n5,\"{huge}\"\n6,11\n7,12\n");
        let mem = Memory::new(&text);
        let mut feed = mem.feed(AtEnd::Hold, false);
        let w = one(feed.answer(3, 5, None));
        assert_eq!(w.prices, vec![10.0, 11.0, 12.0]);
        assert_eq!(feed.bad_rows(), 4);
        assert_eq!(shown(&huge).len(), SHOWN + "\"\"… (196608 bytes)".len());
    }

    #[test]
    fn a_tick_of_u64_max_is_computed_not_iterated() {
        let prices: Vec<f64> = (1..=7).map(f64::from).collect();
        let mem = Memory::new(&series(&prices));
        let mut feed = mem.feed(AtEnd::Wrap, false);
        assert_eq!(
            one(feed.answer(u64::MAX, 5, None)),
            oracle(&prices, AtEnd::Wrap, u64::MAX, 5)
        );
        // The first pass, then at most three after the skip: never 2^64 steps.
        assert!(mem.opens.load(Ordering::Relaxed) <= 6);
    }

    #[test]
    fn a_header_without_price_is_refused() {
        let mem = Memory::new("When,Cost\n1,2\n");
        let me = mem.clone();
        let opener: Opener =
            Box::new(move |_| Ok(Box::new(io::Cursor::new(me.text.lock().unwrap().clone()))));
        let err = Feed::new(opener, AtEnd::Hold, false, 10)
            .start()
            .unwrap_err();
        assert!(err.contains("Timestamp and Price"), "{err}");
    }

    #[test]
    fn books_step_by_timestamp() {
        let text = "Timestamp,Price,Book\n1,10,a\n1,20,b\n2,11,a\n2,21,b\n3,12,a\n3,30,\"c, the third\"\n4,13,a\n";
        let mem = Memory::new(text);
        let mut feed = mem.feed(AtEnd::Hold, false);
        let Ok(Answer::Books(books)) = feed.answer(3, 2, None) else {
            panic!("expected books")
        };
        let got: Vec<(Option<String>, Vec<f64>, u64, u64)> = books
            .into_iter()
            .map(|w| (w.book, w.prices, w.first_row, w.last_row))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("a".into()), vec![11.0, 12.0], 2, 3),
                (Some("b".into()), vec![20.0, 21.0], 1, 2),
                (Some("c, the third".into()), vec![30.0], 1, 1),
            ]
        );
        let b = one(feed.answer(4, 5, Some("b")));
        assert_eq!((b.book.as_deref(), b.prices.len()), (Some("b"), 2));
        assert!(feed
            .answer(4, 5, Some("zz"))
            .unwrap_err()
            .contains("no rows"));
    }

    #[test]
    fn follow_picks_up_appended_rows_and_waits_for_a_whole_line() {
        let mem = Memory::new("Timestamp,Price\n1,10\n2,11\n");
        let mut feed = mem.feed(AtEnd::Hold, true);
        assert_eq!(one(feed.answer(5, 5, None)).prices, vec![10.0, 11.0]);
        mem.append("3,12\n4,1");
        assert_eq!(one(feed.answer(5, 5, None)).prices, vec![10.0, 11.0, 12.0]);
        mem.append("3\n");
        let w = one(feed.answer(5, 5, None));
        assert_eq!(w.prices, vec![10.0, 11.0, 12.0, 13.0]);
        assert_eq!(w.last_row, 4);
    }

    #[test]
    fn wrap_skips_whole_passes_far_behind() {
        let prices: Vec<f64> = (1..=10).map(f64::from).collect();
        let mem = Memory::new(&series(&prices));
        let mut feed = mem.feed(AtEnd::Wrap, false);
        assert_eq!(
            one(feed.answer(12, 5, None)),
            oracle(&prices, AtEnd::Wrap, 12, 5)
        );
        let before = mem.bytes.load(Ordering::Relaxed);
        assert_eq!(
            one(feed.answer(10_000_003, 5, None)),
            oracle(&prices, AtEnd::Wrap, 10_000_003, 5)
        );
        let read = mem.bytes.load(Ordering::Relaxed) - before;
        assert!(read < 10_000, "read {read} bytes to skip a million passes");
    }

    #[test]
    fn wrap_skips_only_passes_no_window_reaches() {
        // Book "b" has one row a pass, so its last 3 rows lie 3 passes back.
        let mem = Memory::new("Timestamp,Price,Book\n1,10,a\n1,20,b\n2,11,a\n3,12,a\n");
        let mut feed = mem.feed(AtEnd::Wrap, false);
        assert_eq!(one(feed.answer(4, 1, Some("a"))).prices, vec![10.0]);
        let b = one(feed.answer(3_000, 3, Some("b")));
        assert_eq!(b.prices, vec![20.0, 20.0, 20.0]);
        let Ok(Answer::Books(all)) = feed.answer(6_001, 5, None) else {
            panic!("expected books")
        };
        let lens: Vec<usize> = all.iter().map(|w| w.prices.len()).collect();
        assert_eq!(lens, vec![5, 5]);
        // A skip made for a small window does not serve a larger one at the same tick.
        assert_eq!(one(feed.answer(9_001, 1, Some("b"))).prices.len(), 1);
        assert_eq!(one(feed.answer(9_001, 4, Some("b"))).prices.len(), 4);
    }

    proptest! {
        /// Any sequence of requests gets the oracle's windows, whatever memory held before.
        #[test]
        fn answers_match_the_oracle(
            prices in prop::collection::vec(1u32..100_000, 1..60),
            requests in prop::collection::vec((1u64..200, 1usize..9), 1..30),
            wrap: bool,
        ) {
            let prices: Vec<f64> = prices.into_iter().map(|p| f64::from(p) / 100.0).collect();
            let at_end = if wrap { AtEnd::Wrap } else { AtEnd::Hold };
            let mem = Memory::new(&series(&prices));
            let mut feed = mem.feed(at_end, false);
            for (tick, points) in requests {
                prop_assert_eq!(one(feed.answer(tick, points, None)), oracle(&prices, at_end, tick, points));
            }
        }
    }
}

pub use cli::Args;

/// The command line of `data-manager`: its doc comments are `data-manager --help`.
mod cli {
    use std::path::PathBuf;

    use crate::reprice::feed::{self, AtEnd, Config};
    use clap::Parser;

    /// The DataManager of the repricing loop: the competitor's last prices as of a tick.
    ///
    /// Reads requests `{"id":7,"tick":123,"points":5}` on stdin and answers each on stdout with
    /// `{"id":7,"prices":[…],"first_row":119,"last_row":123}`: the CSV (header `Timestamp,Price`,
    /// optional `Book` column) is replayed as a live feed where tick t is row t (or, with a Book
    /// column, the t-th timestamp). It keeps only the last prices of each book in memory and reads the
    /// file forward one record at a time, never loading it. `reprice` runs it as a supervised child.
    #[derive(Parser, Debug)]
    #[command(
        name = "data-manager",
        version,
        after_help = "\
Examples:
  echo '{\"id\":1,\"tick\":10}' | data-manager --csv examples/data.csv
  ticker 1s | jq -c '{id:.tick,tick:.tick,points:5}' | data-manager --csv data.csv --at-end wrap

Output, one line per request:
  {\"id\":1,\"prices\":[6160.95,6241.1,6230,6198.5,6205],\"first_row\":6,\"last_row\":10}"
    )]
    pub struct Args {
        /// The competitor's prices: CSV with a `Timestamp,Price` header (and optionally `Book`).
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,

        /// After the last row: hold the final window, or wrap around and replay from the start.
        #[arg(long, value_enum, default_value_t = AtEnd::Hold)]
        at_end: AtEnd,

        /// Pick up rows appended to the file while running (like `tail -f`).
        #[arg(long, conflicts_with = "at_end")]
        follow: bool,

        /// The most points a request may ask for (memory per book is bounded by it).
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_points: usize,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "data-manager";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = Config {
                csv: args.csv,
                at_end: args.at_end,
                follow: args.follow,
                max_points: args.max_points,
            };
            feed::run(&config, process.output())
        }
    }
}
