//! JSON Lines input: files or stdin, line numbers, and the bad-line policy.
//!
//! [`Reader`] reads the files named on the command line in order (`-` or no file at all means
//! stdin) and hands out one line at a time with its [`Location`]. Blank lines are skipped but
//! counted, a last line without a newline still counts, a trailing `\r` is dropped. A line that is
//! not UTF-8 or is longer than [`MAX_LINE`] comes out as a [`LineError`] in its place, so the
//! program reports it and goes on with the lines around it; a long line is skipped without ever
//! being held in memory.
//!
//! [`BadLines`] is the policy every program applies to a line it cannot use: report
//! `"<name>: line N: reason"`, count, go on, and print `skipped N bad lines` at the end (exit 1);
//! with `--strict` the first bad line stops the program.
//!
//! [`Reader::spawn`] moves the reader onto its own thread and delivers [`Batch`]es of lines over a
//! channel. Live programs use it to wait for input and a clock at once; because a batch is sent as
//! soon as the reader has nothing more buffered, a slow producer's lines arrive one by one while a
//! file arrives in large batches.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::runner::warn;

/// The longest line accepted, in bytes. Longer lines are reported and skipped.
pub const MAX_LINE: usize = 1 << 20;

/// Read buffer size, which also bounds a batch's text when input comes fast: small enough that a
/// batch stays in cache between the reader and a parse thread, and that its buffer comes from
/// malloc's heap rather than a fresh `mmap` (whose page faults cost more than parsing a batch).
const READ_BUFFER: usize = 64 * 1024;

/// The input options every JSON Lines program shares; `#[command(flatten)]` them into `Args`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InputArgs {
    /// Input files of JSON Lines, read in order; `-` or none reads stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Stop at the first bad input line instead of reporting it and going on.
    #[arg(long)]
    pub strict: bool,
}

impl InputArgs {
    pub fn open(&self) -> Result<Reader> {
        Reader::open(&self.files)
    }

    pub fn bad_lines(&self) -> BadLines {
        BadLines::new(self.strict)
    }
}

/// Where a line came from: its 1-based number, and its file when it was not stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    pub file: Option<&'a str>,
    pub line: u64,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file {
            Some(file) => write!(f, "{file}: line {}", self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Why a line could not even be read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    NotUtf8 { offset: usize },
    TooLong { len: usize },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::NotUtf8 { offset } => {
                write!(
                    f,
                    "not valid UTF-8 (first bad byte at column {})",
                    offset + 1
                )
            }
            LineError::TooLong { len } => write!(
                f,
                "line is {len} bytes long, over the limit of {MAX_LINE} bytes; skipped"
            ),
        }
    }
}

/// One input line as the reader hands it out.
#[derive(Debug)]
pub struct Line<'a> {
    pub at: Location<'a>,
    pub text: std::result::Result<&'a str, LineError>,
}

struct Source {
    name: Option<Arc<str>>,
    reader: BufReader<Box<dyn Read + Send>>,
}

/// Reads JSON Lines text from a sequence of files or stdin; see the module doc.
pub struct Reader {
    pending: std::vec::IntoIter<Source>,
    current: Option<Source>,
    line: u64,
    buf: Vec<u8>,
    max_line: usize,
}

impl Reader {
    /// Open every named file now (so a missing file fails before any output); `-` or an empty list
    /// means stdin.
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let mut sources = Vec::new();
        for path in files {
            if path.as_os_str() == "-" {
                sources.push(Source {
                    name: None,
                    reader: stdin_reader(),
                });
            } else {
                let file = File::open(path)
                    .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
                sources.push(Source {
                    name: Some(Arc::from(path.display().to_string())),
                    reader: BufReader::with_capacity(READ_BUFFER, Box::new(file)),
                });
            }
        }
        if sources.is_empty() {
            sources.push(Source {
                name: None,
                reader: stdin_reader(),
            });
        }
        Ok(Reader::from_sources(sources))
    }

    /// Read from any reader (tests pass byte slices); lines are located as stdin's.
    pub fn from_reader(reader: impl Read + Send + 'static) -> Self {
        let reader =
            BufReader::with_capacity(READ_BUFFER, Box::new(reader) as Box<dyn Read + Send>);
        Reader::from_sources(vec![Source { name: None, reader }])
    }

    fn from_sources(sources: Vec<Source>) -> Self {
        let mut pending = sources.into_iter();
        let current = pending.next();
        Reader {
            pending,
            current,
            line: 0,
            buf: Vec::new(),
            max_line: MAX_LINE,
        }
    }

    /// Lower the line-length limit (for tests of the limit itself).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// The next non-blank line, or `None` at the end of the last source.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        let len = loop {
            let Some(source) = self.current.as_mut() else {
                return Ok(None);
            };
            self.buf.clear();
            let read = read_line_limited(&mut source.reader, &mut self.buf, self.max_line)
                .map_err(|e| Error::io(read_context(source.name.as_deref()), e))?;
            match read {
                ReadOutcome::Eof => {
                    self.current = self.pending.next();
                    self.line = 0;
                }
                ReadOutcome::Line(len) => {
                    self.line += 1;
                    if !is_blank(&self.buf, len, self.max_line) {
                        break len;
                    }
                }
            }
        };
        let source = self.current.as_ref().expect("a line was just read from it");
        let at = Location {
            file: source.name.as_deref(),
            line: self.line,
        };
        Ok(Some(Line {
            at,
            text: line_text(&self.buf, len, self.max_line),
        }))
    }

    /// Move the complete lines already buffered from the current source into `batch`, at most
    /// `room` of them, straight from the read buffer (where [`Reader::next_line`] copies each line
    /// into a line buffer first). The same rules as `next_line`: counted blank lines, a dropped
    /// trailing `\r`, long and non-UTF-8 lines as errors in their place.
    fn drain_buffered(&mut self, batch: &mut Batch, room: usize) {
        let Some(source) = self.current.as_mut() else {
            return;
        };
        let buf = source.reader.buffer();
        let (mut pos, mut added) = (0, 0);
        while added < room {
            let Some(len) = memchr::memchr(b'\n', &buf[pos..]) else {
                break;
            };
            let line = &buf[pos..pos + len];
            pos += len + 1;
            self.line += 1;
            if is_blank(line, len, self.max_line) {
                continue;
            }
            let text = line_text(line, len, self.max_line);
            batch.push_text(source.name.as_ref(), self.line, text);
            added += 1;
        }
        source.reader.consume(pos);
    }

    /// Whether more input is already in memory, so the next line can be had without waiting.
    fn has_buffered(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|s| !s.reader.buffer().is_empty())
    }

    /// Move the reader onto its own thread, delivering lines in batches over a bounded channel.
    /// A batch is sent when it holds `batch_lines` lines or when no more input is buffered. An I/O
    /// error ends the stream as an `Err` item.
    pub fn spawn(mut self, batch_lines: usize) -> mpsc::Receiver<Result<Batch>> {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || {
                let mut batch = Batch::for_reading();
                loop {
                    let line = match self.next_line() {
                        Ok(Some(line)) => line,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Ok(std::mem::take(&mut batch)));
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    batch.push(line);
                    let room = batch_lines.saturating_sub(batch.len());
                    self.drain_buffered(&mut batch, room);
                    let full = batch.len() >= batch_lines || !self.has_buffered();
                    if full {
                        let ready = std::mem::replace(&mut batch, Batch::for_reading());
                        if tx.send(Ok(ready)).is_err() {
                            return;
                        }
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch));
                }
            })
            .expect("spawning the input thread");
        rx
    }
}

/// How many parse threads to use: one per core, at most `max`.
pub fn parse_workers(max: usize) -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(max))
}

/// Read on one thread, parse batches on `workers` threads, and deliver `(batch, parsed)` in input
/// order. `parse` sees a whole batch, so per-line results can point into [`Batch::text`]. This is
/// how a program parses on every core while its aggregation stays single-threaded and ordered.
pub fn spawn_parsed<T, F>(
    reader: Reader,
    batch_lines: usize,
    workers: usize,
    parse: F,
) -> mpsc::Receiver<Result<(Batch, T)>>
where
    T: Send + 'static,
    F: Fn(&Batch) -> T + Send + Sync + 'static,
{
    spawn_parsed_with(
        reader,
        batch_lines,
        workers,
        || (),
        move |(), batch| parse(batch),
    )
}

/// [`spawn_parsed`] where each parse thread keeps its own state, made by `init` on that thread
/// (buffers a parser reuses from batch to batch).
pub fn spawn_parsed_with<S, T, I, F>(
    reader: Reader,
    batch_lines: usize,
    workers: usize,
    init: I,
    parse: F,
) -> mpsc::Receiver<Result<(Batch, T)>>
where
    T: Send + 'static,
    I: Fn() -> S + Send + Sync + 'static,
    F: Fn(&mut S, &Batch) -> T + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let batches = reader.spawn(batch_lines);
    let work = Arc::new((init, parse));
    let mut to_workers = Vec::with_capacity(workers);
    let mut from_workers = Vec::with_capacity(workers);
    for i in 0..workers {
        let (in_tx, in_rx) = mpsc::sync_channel::<Result<Batch>>(2);
        let (out_tx, out_rx) = mpsc::sync_channel::<Result<(Batch, T)>>(2);
        let work = Arc::clone(&work);
        std::thread::Builder::new()
            .name(format!("parse-{i}"))
            .spawn(move || {
                let (init, parse) = &*work;
                let mut state = init();
                for batch in in_rx {
                    let item = batch.map(|b| {
                        let parsed = parse(&mut state, &b);
                        (b, parsed)
                    });
                    if out_tx.send(item).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning a parse thread");
        to_workers.push(in_tx);
        from_workers.push(out_rx);
    }
    // Batches go round-robin to the workers; reading the results round-robin restores the order.
    std::thread::Builder::new()
        .name("dispatch".into())
        .spawn(move || {
            for (n, batch) in batches.into_iter().enumerate() {
                if to_workers[n % workers].send(batch).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the dispatch thread");
    let (tx, rx) = mpsc::sync_channel(2);
    std::thread::Builder::new()
        .name("order".into())
        .spawn(move || {
            for n in 0.. {
                let Ok(item) = from_workers[n % workers].recv() else {
                    return;
                };
                if tx.send(item).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the ordering thread");
    rx
}

/// Whether a line read as `bytes` (all of it, or its first bytes when it is `len` bytes long and
/// over `max`), without its newline, is blank: skipped, but counted.
fn is_blank(bytes: &[u8], len: usize, max: usize) -> bool {
    len <= max && bytes.iter().all(u8::is_ascii_whitespace)
}

/// The text of a line that is not blank, without a trailing `\r`, or why it cannot be used.
fn line_text(bytes: &[u8], len: usize, max: usize) -> std::result::Result<&str, LineError> {
    if len > max {
        return Err(LineError::TooLong { len });
    }
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| LineError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

fn stdin_reader() -> BufReader<Box<dyn Read + Send>> {
    BufReader::with_capacity(READ_BUFFER, Box::new(io::stdin()))
}

fn read_context(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("reading {name}"),
        None => "reading stdin".to_string(),
    }
}

enum ReadOutcome {
    Eof,
    /// A line of this many bytes, without its `\n`; only the first `max` are kept in the buffer.
    Line(usize),
}

/// Read one line into `buf`, keeping at most `max + 1` bytes of it (enough to know it is too long)
/// and discarding the rest as it streams past.
fn read_line_limited(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<ReadOutcome> {
    let mut len = 0usize;
    let mut seen_any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if seen_any {
                ReadOutcome::Line(len)
            } else {
                ReadOutcome::Eof
            });
        }
        seen_any = true;
        let (part, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = (max + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len += part.len();
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(ReadOutcome::Line(len));
        }
    }
}

/// Lines read on the input thread, in order, in one shared buffer.
#[derive(Debug, Default)]
pub struct Batch {
    text: String,
    entries: Vec<Entry>,
    files: Vec<Arc<str>>,
}

#[derive(Debug)]
struct Entry {
    file: Option<u32>,
    line: u64,
    text: std::result::Result<(usize, usize), LineError>,
}

impl Batch {
    /// An empty batch with room for what one read brings, so that filling it does not grow its
    /// buffer past malloc's `mmap` threshold (each such buffer would cost fresh page faults).
    fn for_reading() -> Self {
        Batch {
            text: String::with_capacity(READ_BUFFER + READ_BUFFER / 4),
            entries: Vec::with_capacity(256),
            files: Vec::new(),
        }
    }

    fn push(&mut self, line: Line<'_>) {
        let file = line
            .at
            .file
            .map(|name| self.file_index(name, || Arc::from(name)));
        self.push_entry(file, line.at.line, line.text);
    }

    /// Add a line read from `file` (the reader's own name for it, shared rather than copied).
    fn push_text(
        &mut self,
        file: Option<&Arc<str>>,
        line: u64,
        text: std::result::Result<&str, LineError>,
    ) {
        let file = file.map(|name| self.file_index(name, || Arc::clone(name)));
        self.push_entry(file, line, text);
    }

    /// The index of a file name in `files`: the last one's, or a new one's.
    fn file_index(&mut self, name: &str, make: impl FnOnce() -> Arc<str>) -> u32 {
        match self.files.last() {
            Some(last) if &**last == name => {}
            _ => self.files.push(make()),
        }
        (self.files.len() - 1) as u32
    }

    fn push_entry(
        &mut self,
        file: Option<u32>,
        line: u64,
        text: std::result::Result<&str, LineError>,
    ) {
        let text = text.map(|t| {
            let start = self.text.len();
            self.text.push_str(t);
            (start, self.text.len())
        });
        self.entries.push(Entry { file, line, text });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All the batch's text; every line's text is a slice of it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the `i`-th line of the batch came from.
    pub fn location(&self, i: usize) -> Location<'_> {
        let e = &self.entries[i];
        Location {
            file: e.file.map(|f| &*self.files[f as usize]),
            line: e.line,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Line<'_>> {
        self.entries.iter().enumerate().map(|(i, e)| Line {
            at: self.location(i),
            text: match &e.text {
                Ok((start, end)) => Ok(&self.text[*start..*end]),
                Err(err) => Err(err.clone()),
            },
        })
    }
}

/// The bad-line policy: report, count, go on; or stop at the first one with `--strict`.
#[derive(Debug)]
pub struct BadLines {
    strict: bool,
    skipped: u64,
}

impl BadLines {
    pub fn new(strict: bool) -> Self {
        BadLines { strict, skipped: 0 }
    }

    /// Report a bad line. Returns an error (which stops the program) only in strict mode.
    pub fn report(&mut self, at: Location<'_>, reason: impl fmt::Display) -> Result<()> {
        if self.strict {
            return Err(Error::failed(format!("{at}: {reason}")));
        }
        warn(format_args!("{at}: {reason}"));
        self.skipped += 1;
        Ok(())
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// At the end of input: print the summary and fail with exit 1 if anything was skipped.
    pub fn finish(self) -> Result<()> {
        match self.skipped {
            0 => Ok(()),
            1 => {
                warn("skipped 1 bad line");
                Err(Error::Reported(1))
            }
            n => {
                warn(format_args!("skipped {n} bad lines"));
                Err(Error::Reported(1))
            }
        }
    }
}

/// Parse one line as a JSON object into `T`, with a message fit for `line N: …`. Anything but an
/// object is refused up front: serde would otherwise read `[10]` as a struct by position.
pub fn parse_object<'a, T: Deserialize<'a>>(text: &'a str) -> std::result::Result<T, String> {
    not_an_object(text)?;
    serde_json::from_str(text).map_err(|e| describe_json_error(text, &e))
}

/// Like [`parse_object`] for an owned target.
pub fn parse_owned<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    not_an_object(text)?;
    serde_json::from_str(text).map_err(|e| describe_json_error(text, &e))
}

fn not_an_object(text: &str) -> std::result::Result<(), String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(());
    }
    let kind = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null) => "null",
        Ok(serde_json::Value::Object(_)) => return Ok(()),
        Err(e) => return Err(describe_json_error(text, &e)),
    };
    Err(format!("expected a JSON object, got {kind}"))
}

/// Turn serde_json's error into a message that says what is wrong with the line, not where in a
/// one-line document serde was (`missing field "value"`, `invalid JSON at column 7: …`).
pub fn describe_json_error(_text: &str, err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data | Category::Io => strip_position(&err.to_string()),
        Category::Eof => "truncated JSON (unexpected end of line)".to_string(),
        Category::Syntax => {
            format!(
                "invalid JSON at column {}: {}",
                err.column(),
                strip_position(&err.to_string())
            )
        }
    }
}

fn strip_position(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.replace('`', "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(
        input: &'static [u8],
        max: usize,
    ) -> Vec<(u64, std::result::Result<String, LineError>)> {
        let mut reader = Reader::from_reader(input).with_max_line(max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push((line.at.line, line.text.map(str::to_owned)));
        }
        out
    }

    #[test]
    fn blank_lines_are_skipped_but_counted_and_the_last_line_needs_no_newline() {
        let got = lines(b"a\n\n  \r\nb\r\nc", 100);
        assert_eq!(
            got,
            vec![
                (1, Ok("a".into())),
                (4, Ok("b".into())),
                (5, Ok("c".into()))
            ]
        );
    }

    #[test]
    fn long_and_non_utf8_lines_are_errors_in_place() {
        let got = lines(b"ok\n0123456789abc\n\xff\xfe\nend\n", 10);
        assert_eq!(got[0], (1, Ok("ok".into())));
        assert_eq!(got[1], (2, Err(LineError::TooLong { len: 13 })));
        assert_eq!(got[2], (3, Err(LineError::NotUtf8 { offset: 0 })));
        assert_eq!(got[3], (4, Ok("end".into())));
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_accepted() {
        let got = lines(b"0123456789\n", 10);
        assert_eq!(got, vec![(1, Ok("0123456789".into()))]);
    }

    #[test]
    fn spawned_reader_delivers_every_line_in_order() {
        let text: String = (1..=10_000).map(|i| format!("{i}\n")).collect();
        let reader = Reader::from_reader(io::Cursor::new(text.into_bytes()));
        let mut seen = Vec::new();
        for batch in reader.spawn(100) {
            for line in batch.unwrap().iter() {
                seen.push((line.at.line, line.text.unwrap().parse::<u64>().unwrap()));
            }
        }
        assert_eq!(seen.len(), 10_000);
        assert!(seen.iter().all(|(n, v)| n == v));
    }

    #[test]
    fn parallel_parsing_keeps_the_input_order() {
        let text: String = (1..=50_000).map(|i| format!("{i}\n")).collect();
        let reader = Reader::from_reader(io::Cursor::new(text.into_bytes()));
        let rx = spawn_parsed(reader, 64, 3, |batch: &Batch| {
            batch
                .iter()
                .map(|l| l.text.unwrap().parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        });
        let all: Vec<u64> = rx.into_iter().flat_map(|r| r.unwrap().1).collect();
        assert_eq!(all, (1..=50_000).collect::<Vec<u64>>());
    }

    #[test]
    fn json_errors_name_the_problem() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Ev {
            value: f64,
        }
        let e = parse_object::<Ev>("[1,2]").unwrap_err();
        assert_eq!(e, "expected a JSON object, got an array");
        let e = parse_object::<Ev>(r#"{"x":1}"#).unwrap_err();
        assert_eq!(e, r#"missing field "value""#);
        let e = parse_object::<Ev>(r#"{"value":1"#).unwrap_err();
        assert!(e.starts_with("truncated JSON"), "{e}");
        let e = parse_object::<Ev>("[10]").unwrap_err();
        assert_eq!(e, "expected a JSON object, got an array");
        let e = parse_object::<Ev>("not json").unwrap_err();
        assert!(e.starts_with("invalid JSON at column"), "{e}");
        let e = parse_object::<Ev>(r#"{"value":}"#).unwrap_err();
        assert!(e.starts_with("invalid JSON at column"), "{e}");
    }
}
