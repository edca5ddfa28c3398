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
    reader: csv::Reader<Box<dyn Read + Send>>,
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

impl Feed {
    pub fn new(open: Opener, at_end: AtEnd, follow: bool, max_points: usize) -> Feed {
        Feed {
            open,
            name: "csv".into(),
            at_end,
            follow,
            max_points,
            keep: default_points().min(max_points),
            columns: None,
            rows: None,
            pending: None,
            step: 0,
            pass_steps: 0,
            steps_per_pass: None,
            pass: 0,
            resume: (0, 0),
            ended: false,
            books: Vec::new(),
            index: HashMap::new(),
            reported_up_to: 0,
            bad_rows: 0,
        }
    }

    /// The name bad rows are reported under (the CSV's path).
    pub fn with_name(mut self, name: String) -> Feed {
        self.name = name;
        self
    }

    /// Open the file and read its header, so a missing file or header fails before any request.
    pub fn start(&mut self) -> std::result::Result<(), String> {
        self.open_rows().map_err(|e| e.to_string())
    }

    pub fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    /// The window(s) as of tick `tick`: see the module doc.
    pub fn answer(
        &mut self,
        tick: u64,
        points: usize,
        book: Option<&str>,
    ) -> std::result::Result<Answer, String> {
        if tick == 0 {
            return Err("tick must be 1 or more".into());
        }
        if points == 0 || points > self.max_points {
            return Err(format!(
                "points must be between 1 and {} (--max-points)",
                self.max_points
            ));
        }
        let columns = self.columns.ok_or("the CSV was never opened")?;
        if book.is_some() && columns.book.is_none() {
            return Err("this CSV has no Book column; ask without \"book\"".into());
        }
        if points > self.keep {
            self.keep = points;
            if self.books.iter().any(|b| b.dropped) {
                self.rewind();
            }
        }
        let wanted = book.map(Arc::<str>::from);
        if tick < self.step && !self.covers(tick, points, &wanted) {
            self.rewind();
        }
        if let (AtEnd::Wrap, Some(n)) = (self.at_end, self.steps_per_pass) {
            if tick > self.step.saturating_add(2 * n) {
                // Whole passes far behind the tick cannot affect its windows: skip them.
                self.rewind();
                self.step = (tick / n - 1) * n;
            }
        }
        while self.step < tick {
            if !self
                .advance()
                .map_err(|e| format!("reading {}: {e}", self.name))?
            {
                break;
            }
        }
        let at = tick.min(self.step);
        if columns.book.is_none() || wanted.is_some() {
            let key = if columns.book.is_none() { None } else { wanted };
            let window = self
                .index
                .get(&key)
                .and_then(|&i| self.books[i].window(at, points));
            return match window {
                Some(w) => Ok(Answer::One(w)),
                None if key.is_none() => Err(format!("no rows by tick {tick}")),
                None => Err(format!(
                    "book {:?} has no rows by tick {tick}",
                    book.unwrap_or("")
                )),
            };
        }
        let windows = self.books.iter().filter_map(|b| b.window(at, points));
        Ok(Answer::Books(windows.collect()))
    }

    /// Whether memory still holds every window of an earlier tick.
    fn covers(&self, tick: u64, points: usize, book: &Option<Arc<str>>) -> bool {
        let covered =
            |b: &Book| !b.dropped || b.points.iter().filter(|p| p.step <= tick).count() >= points;
        match book {
            Some(name) => self
                .index
                .get(&Some(name.clone()))
                .is_none_or(|&i| covered(&self.books[i])),
            None => self.books.iter().all(covered),
        }
    }

    fn rewind(&mut self) {
        self.rows = None;
        self.pending = None;
        self.step = 0;
        self.pass_steps = 0;
        self.pass = 0;
        self.resume = (0, 0);
        self.ended = false;
        self.books.clear();
        self.index.clear();
    }

    /// Consume one step of the feed; false when there is none (yet).
    fn advance(&mut self) -> io::Result<bool> {
        let first = match self.pending.take() {
            Some(row) => row,
            None => match self.read_row()? {
                Some(row) => row,
                None => return Ok(false),
            },
        };
        self.step += 1;
        self.pass_steps += 1;
        let (pass, key) = (first.pass, first.key.clone());
        self.push(first);
        loop {
            match self.read_row()? {
                Some(row) if row.pass == pass && row.key == key => self.push(row),
                Some(row) => {
                    self.pending = Some(row);
                    break;
                }
                None => break,
            }
        }
        Ok(true)
    }

    fn push(&mut self, row: Row) {
        let i = match self.index.get(&row.book) {
            Some(&i) => i,
            None => {
                self.books.push(Book {
                    name: row.book.clone(),
                    points: VecDeque::with_capacity(self.keep + 1),
                    dropped: false,
                    rows: 0,
                    pass: row.pass,
                });
                self.index.insert(row.book, self.books.len() - 1);
                self.books.len() - 1
            }
        };
        let book = &mut self.books[i];
        if book.pass != row.pass {
            // Row numbers count within a pass over the file.
            book.pass = row.pass;
            book.rows = 0;
        }
        book.rows += 1;
        book.points.push_back(Point {
            step: self.step,
            row: book.rows,
            price: row.price,
        });
        while book.points.len() > self.keep {
            book.points.pop_front();
            book.dropped = true;
        }
    }

    /// Open the CSV where reading goes on; at offset 0 read and check the header.
    fn open_rows(&mut self) -> io::Result<()> {
        let (offset, line) = self.resume;
        let source = (self.open)(offset)?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(source);
        let mut rows = Rows {
            reader,
            record: csv::StringRecord::new(),
            base_offset: offset,
            base_line: line,
        };
        if offset == 0 {
            if !rows.reader.read_record(&mut rows.record).map_err(csv_io)? {
                return Err(io::Error::other("the file is empty (no header)"));
            }
            let columns = parse_header(&rows.record).map_err(io::Error::other)?;
            self.columns = Some(columns);
            let next = rows.reader.position();
            self.resume = (next.byte(), next.line() - 1);
        }
        self.rows = Some(rows);
        Ok(())
    }

    /// The next good row, or `None` at the end (after which a wrap reopens the file).
    fn read_row(&mut self) -> io::Result<Option<Row>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if self.rows.is_none() {
                self.open_rows()?;
            }
            let columns = self.columns.expect("the header was read");
            let rows = self.rows.as_mut().expect("just opened");
            let read = rows.reader.read_record(&mut rows.record);
            let line = rows.base_line + rows.record.position().map_or(0, |p| p.line());
            let complete = match read {
                // A record the reader only finished at the end of the file had no newline: when
                // following, it may still be being written, so it is read again later.
                Ok(true) => !(self.follow && rows.reader.is_done()),
                Ok(false) => false,
                Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(csv_io(e)),
                Err(e) => {
                    let next = rows.reader.position();
                    self.resume = (
                        rows.base_offset + next.byte(),
                        rows.base_line + next.line() - 1,
                    );
                    self.bad_row(line, &strip_csv_position(&e.to_string()));
                    continue;
                }
            };
            if !complete {
                self.end_of_file()?;
                if self.rows.is_some() {
                    continue;
                }
                return Ok(None);
            }
            let next = rows.reader.position();
            self.resume = (
                rows.base_offset + next.byte(),
                rows.base_line + next.line() - 1,
            );
            match parse_row(&rows.record, columns, line) {
                Ok((key, book, price)) => {
                    return Ok(Some(Row {
                        pass: self.pass,
                        key,
                        book,
                        price,
                    }))
                }
                Err(reason) => self.bad_row(line, &reason),
            }
        }
    }

    /// At the end of the data: wrap (reopen), hold (stop for good) or follow (retry later).
    fn end_of_file(&mut self) -> io::Result<()> {
        self.rows = None;
        if self.follow {
            return Ok(());
        }
        match self.at_end {
            AtEnd::Hold => self.ended = true,
            AtEnd::Wrap if self.pass_steps == 0 => self.ended = true,
            AtEnd::Wrap => {
                self.steps_per_pass = Some(self.pass_steps);
                self.pass_steps = 0;
                self.pass += 1;
                self.resume = (0, 0);
                self.open_rows()?;
            }
        }
        Ok(())
    }

    fn bad_row(&mut self, line: u64, reason: &str) {
        if line > self.reported_up_to {
            warn(format_args!("{}: line {line}: {reason}", self.name));
            self.reported_up_to = line;
            self.bad_rows += 1;
        }
    }
}

impl Book {
    /// The last `points` points at or before `step`.
    fn window(&self, step: u64, points: usize) -> Option<Window> {
        let upto = self.points.partition_point(|p| p.step <= step);
        if upto == 0 {
            return None;
        }
        let from = upto.saturating_sub(points);
        let slice: Vec<Point> = self.points.range(from..upto).copied().collect();
        Some(Window {
            book: self.name.as_deref().map(str::to_owned),
            prices: slice.iter().map(|p| p.price).collect(),
            first_row: slice[0].row,
            last_row: slice[slice.len() - 1].row,
        })
    }
}

fn parse_header(record: &csv::StringRecord) -> std::result::Result<Columns, String> {
    let find = |name: &str| {
        record
            .iter()
            .position(|f| f.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    match (find("Timestamp"), find("Price")) {
        (Some(timestamp), Some(price)) => Ok(Columns {
            timestamp,
            price,
            book: find("Book"),
        }),
        _ => Err(format!(
            "the header must name Timestamp and Price columns (and optionally Book), got {:?}",
            record.iter().collect::<Vec<_>>().join(",")
        )),
    }
}

fn parse_row(
    record: &csv::StringRecord,
    columns: Columns,
    line: u64,
) -> std::result::Result<(String, Option<Arc<str>>, f64), String> {
    let field = |i: usize, name: &str| -> std::result::Result<&str, String> {
        match record.get(i) {
            Some("") => Err(format!("empty {name}")),
            Some(text) => Ok(text),
            None => Err(format!(
                "{} fields, expected a {name} in field {}",
                record.len(),
                i + 1
            )),
        }
    };
    let price_text = field(columns.price, "Price")?;
    let price: f64 = price_text
        .parse()
        .map_err(|_| format!("Price {price_text:?} is not a number"))?;
    if !price.is_finite() {
        return Err(format!("Price {price_text:?} is not a finite number"));
    }
    let timestamp = field(columns.timestamp, "Timestamp")?;
    let (key, book) = match columns.book {
        Some(i) => (timestamp.to_owned(), Some(Arc::from(field(i, "Book")?))),
        None => (line.to_string(), None),
    };
    Ok((key, book, price))
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// csv's messages carry their own position; the line number is already in ours.
fn strip_csv_position(msg: &str) -> String {
    match msg.find(": ") {
        Some(i) if msg.starts_with("CSV") => msg[i + 2..].to_string(),
        _ => msg.to_string(),
    }
}
