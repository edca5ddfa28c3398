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
//! channel. Live programs use it to wait for input and a clock at once. The reader thread `read`s
//! straight into a batch's buffer, up to [`CHUNK`] bytes at a time, and sends the batch as soon as
//! a read brought at least one whole line: a slow producer's lines arrive one by one, a file
//! arrives in large batches. Lines are byte ranges of that buffer, found with `memchr`; only the
//! unfinished last line of a read is copied (to the front of the next batch), so no line is copied
//! twice. UTF-8 is checked when a line is looked at ([`Batch::iter`]), on the thread that parses it;
//! the JSON fast path ([`crate::fields`]) validates UTF-8 together with the JSON. Buffers go back to
//! a small pool when a batch is dropped, so a long run allocates a handful of them.

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

/// Buffer size for line-at-a-time reading ([`Reader::next_line`]).
const READ_BUFFER: usize = 64 * 1024;

/// How much one `read` of [`Reader::spawn`] asks for, which also bounds a batch's text when input
/// comes fast (a longer line grows its batch's buffer, up to [`MAX_LINE`]).
pub const CHUNK: usize = 256 * 1024;

/// Bytes kept readable after the end of a batch's text, so a SIMD parser may load whole blocks
/// past a line's end ([`simd_json::INPUT_PADDING`]).
pub const PADDING: usize = 64;

/// The input options every JSON Lines program shares; `#[command(flatten)]` them into `Args`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Input")]
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
    NotUtf8 {
        offset: usize,
    },
    /// A line of `len` bytes, over the limit of `max`.
    TooLong {
        len: usize,
        max: usize,
    },
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
            LineError::TooLong { len, max } => write!(
                f,
                "line is {len} bytes long, over the limit of {max} bytes; skipped"
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
    /// [`Reader::spawn`]: the unfinished last line of the previous batch.
    carry: Vec<u8>,
    /// [`Reader::spawn`]: inside a line over the limit, how many bytes of it went past so far.
    skipping: Option<usize>,
    /// [`Reader::spawn`]: bytes asked for per `read`.
    chunk: usize,
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
            carry: Vec::new(),
            skipping: None,
            chunk: CHUNK,
        }
    }

    /// Lower the line-length limit (for tests of the limit itself).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// Read at most `chunk` bytes at a time in [`Reader::spawn`] (for tests of lines that straddle
    /// reads).
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.clamp(1, CHUNK);
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
        let text = if len > self.max_line {
            Err(LineError::TooLong {
                len,
                max: self.max_line,
            })
        } else {
            line_text(self.buf.strip_suffix(b"\r").unwrap_or(&self.buf))
        };
        Ok(Some(Line { at, text }))
    }

    /// Read into `batch` until it holds at least one line (or its source ends): one `read` of up
    /// to [`CHUNK`] bytes straight into the batch's buffer, the lines it completed split off with
    /// `memchr`, the unfinished rest kept for the next batch. The same rules as
    /// [`Reader::next_line`]: counted blank lines, a dropped trailing `\r`, over-long lines as
    /// errors in their place (skipped as they stream past, never held whole). Returns `false` once
    /// every source has ended.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool> {
        batch.ensure_room(self.carry.len());
        batch.buf[..self.carry.len()].copy_from_slice(&self.carry);
        batch.len = self.carry.len();
        self.carry.clear();
        // Where the line not yet ended begins in the buffer.
        let mut line_start = 0;
        loop {
            let Some(source) = self.current.as_mut() else {
                return Ok(false);
            };
            let from = batch.len;
            if batch.room() < self.chunk / 4 {
                batch.ensure_room(from + self.chunk);
            }
            let end = (from + self.chunk).min(batch.buf.len() - PADDING);
            let n = loop {
                match source.reader.read(&mut batch.buf[from..end]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(read_context(source.name.as_deref()), e)),
                }
            };
            let file = source.name.clone();
            if n == 0 {
                // The source ended: an over-long or unterminated last line still counts.
                if let Some(len) = self.skipping.take() {
                    self.line += 1;
                    batch.push_entry(
                        file.as_ref(),
                        self.line,
                        Err(LineError::TooLong {
                            len,
                            max: self.max_line,
                        }),
                    );
                } else if batch.len > line_start {
                    self.push_line(batch, file.as_ref(), line_start, batch.len);
                }
                self.current = self.pending.next();
                self.line = 0;
                if !batch.is_empty() {
                    return Ok(true);
                }
                batch.len = 0;
                line_start = 0;
                continue;
            }
            batch.len += n;
            if let Some(seen) = self.skipping {
                // Inside an over-long line (which starts at `from`): drop it up to its end.
                match memchr::memchr(b'\n', &batch.buf[from..batch.len]) {
                    None => {
                        self.skipping = Some(seen + n);
                        batch.len = from;
                        continue;
                    }
                    Some(at) => {
                        self.skipping = None;
                        self.line += 1;
                        let len = seen + at;
                        batch.push_entry(
                            file.as_ref(),
                            self.line,
                            Err(LineError::TooLong {
                                len,
                                max: self.max_line,
                            }),
                        );
                        batch.buf.copy_within(from + at + 1..batch.len, from);
                        batch.len -= at + 1;
                        line_start = from;
                    }
                }
            }
            match memchr::memrchr(b'\n', &batch.buf[line_start..batch.len]) {
                Some(last) => {
                    let last = line_start + last;
                    let mut at = line_start;
                    while let Some(nl) = memchr::memchr(b'\n', &batch.buf[at..=last]) {
                        self.push_line(batch, file.as_ref(), at, at + nl);
                        at += nl + 1;
                    }
                    self.carry
                        .extend_from_slice(&batch.buf[last + 1..batch.len]);
                    batch.len = last + 1;
                    return Ok(true);
                }
                None if batch.len - line_start > self.max_line => {
                    self.skipping = Some(batch.len - line_start);
                    batch.len = line_start;
                    if !batch.is_empty() {
                        return Ok(true);
                    }
                }
                None if !batch.is_empty() => {
                    self.carry
                        .extend_from_slice(&batch.buf[line_start..batch.len]);
                    batch.len = line_start;
                    return Ok(true);
                }
                None => {}
            }
        }
    }

    /// Add the line `batch.buf[start..end]` (without its newline) to the batch, or count it when
    /// it is blank.
    fn push_line(&mut self, batch: &mut Batch, file: Option<&Arc<str>>, start: usize, end: usize) {
        self.line += 1;
        let bytes = &batch.buf[start..end];
        let len = end - start;
        if is_blank(bytes, len, self.max_line) {
            return;
        }
        let span = if len > self.max_line {
            Err(LineError::TooLong {
                len,
                max: self.max_line,
            })
        } else {
            let end = if bytes.last() == Some(&b'\r') {
                end - 1
            } else {
                end
            };
            Ok((start as u32, end as u32))
        };
        batch.push_entry(file, self.line, span);
    }

    /// Move the reader onto its own thread, delivering lines in batches over a bounded channel
    /// (see the module doc). An I/O error ends the stream as an `Err` item.
    pub fn spawn(mut self) -> mpsc::Receiver<Result<Batch>> {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || {
                let pool = Pool::default();
                loop {
                    let mut batch = pool.batch();
                    let more = match self.fill(&mut batch) {
                        Ok(more) => more,
                        Err(e) => {
                            if !batch.is_empty() {
                                let _ = tx.send(Ok(batch));
                            }
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
                        return;
                    }
                    if !more {
                        return;
                    }
                }
            })
            .expect("spawning the input thread");
        rx
    }
}

#[cfg(test)]
impl Reader {
    /// Every batch, read on this thread (for tests of what parses a batch).
    pub(crate) fn batches(mut self) -> Vec<Batch> {
        let pool = Pool::default();
        let mut out = Vec::new();
        loop {
            let mut batch = pool.batch();
            let more = self.fill(&mut batch).expect("reading from memory");
            if !batch.is_empty() {
                out.push(batch);
            }
            if !more {
                return out;
            }
        }
    }
}

/// How many parse threads to use: one per core, at most `max`.
pub fn parse_workers(max: usize) -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(max))
}

/// Read on one thread, parse batches on `workers` threads, and deliver `(batch, parsed)` in input
/// order. `parse` sees a whole batch, so per-line results can point into it ([`Batch::str_at`]);
/// it may parse lines in place ([`Batch::padded_mut`]). This is how a program parses on every core
/// while its aggregation stays single-threaded and ordered.
pub fn spawn_parsed<T, F>(
    reader: Reader,
    workers: usize,
    parse: F,
) -> mpsc::Receiver<Result<(Batch, T)>>
where
    T: Send + 'static,
    F: Fn(&mut Batch) -> T + Send + Sync + 'static,
{
    spawn_parsed_with(reader, workers, || (), move |(), batch| parse(batch))
}

/// [`spawn_parsed`] where each parse thread keeps its own state, made by `init` on that thread
/// (buffers a parser reuses from batch to batch).
pub fn spawn_parsed_with<S, T, I, F>(
    reader: Reader,
    workers: usize,
    init: I,
    parse: F,
) -> mpsc::Receiver<Result<(Batch, T)>>
where
    T: Send + 'static,
    I: Fn() -> S + Send + Sync + 'static,
    F: Fn(&mut S, &mut Batch) -> T + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let batches = reader.spawn();
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
                    let item = batch.map(|mut b| {
                        let parsed = parse(&mut state, &mut b);
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

/// The line rules of [`Reader`] for input that a `poll(2)` loop reads itself, a piece at a time
/// (chat-relay's stdin): feed it each read, and it hands out every line the read completed, with
/// its number, in order. Blank lines are counted and skipped, a trailing `\r` is dropped, a line
/// that is not UTF-8 or is over the limit comes out as a [`LineError`] in its place, and an
/// over-long line is dropped as it streams past, never held whole.
#[derive(Debug)]
pub struct Splitter {
    /// The unfinished last line of the reads so far.
    buf: Vec<u8>,
    line: u64,
    /// Inside a line over the limit: how many bytes of it went past so far.
    skipping: Option<usize>,
    max_line: usize,
}

impl Splitter {
    /// Lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Splitter {
            buf: Vec::new(),
            line: 0,
            skipping: None,
            max_line,
        }
    }

    /// The bytes of one read; `each` gets every non-blank line they completed.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(Line<'_>)) {
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let (part, rest) = (&bytes[..nl], &bytes[nl + 1..]);
            bytes = rest;
            if let Some(seen) = self.skipping.take() {
                self.too_long(seen + part.len(), &mut each);
                continue;
            }
            if self.buf.is_empty() {
                self.emit(part, &mut each);
            } else {
                let mut line = std::mem::take(&mut self.buf);
                line.extend_from_slice(part);
                self.emit(&line, &mut each);
                line.clear();
                self.buf = line;
            }
        }
        match self.skipping.as_mut() {
            Some(seen) => *seen += bytes.len(),
            None if self.buf.len() + bytes.len() > self.max_line => {
                self.skipping = Some(self.buf.len() + bytes.len());
                self.buf.clear();
            }
            None => self.buf.extend_from_slice(bytes),
        }
    }

    /// The input ended: a last line without its newline still counts.
    pub fn finish(&mut self, mut each: impl FnMut(Line<'_>)) {
        if let Some(seen) = self.skipping.take() {
            self.too_long(seen, &mut each);
        } else if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line, &mut each);
        }
    }

    fn emit(&mut self, bytes: &[u8], each: &mut impl FnMut(Line<'_>)) {
        self.line += 1;
        if is_blank(bytes, bytes.len(), self.max_line) {
            return;
        }
        let text = if bytes.len() > self.max_line {
            Err(LineError::TooLong {
                len: bytes.len(),
                max: self.max_line,
            })
        } else {
            line_text(bytes.strip_suffix(b"\r").unwrap_or(bytes))
        };
        let at = Location {
            file: None,
            line: self.line,
        };
        each(Line { at, text });
    }

    fn too_long(&mut self, len: usize, each: &mut impl FnMut(Line<'_>)) {
        self.line += 1;
        let at = Location {
            file: None,
            line: self.line,
        };
        let text = Err(LineError::TooLong {
            len,
            max: self.max_line,
        });
        each(Line { at, text });
    }
}

/// Whether a line read as `bytes` (all of it, or its first bytes when it is `len` bytes long and
/// over `max`), without its newline, is blank: skipped, but counted.
fn is_blank(bytes: &[u8], len: usize, max: usize) -> bool {
    len <= max && bytes.iter().all(u8::is_ascii_whitespace)
}

/// The text of a line (its `\r` already dropped), or why it is not UTF-8.
pub fn line_text(bytes: &[u8]) -> std::result::Result<&str, LineError> {
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

/// Lines read on the input thread, in order, as ranges of one buffer (see the module doc).
#[derive(Debug)]
pub struct Batch {
    /// Always fully initialised; the text is `buf[..len]`, and at least [`PADDING`] bytes follow.
    buf: Vec<u8>,
    len: usize,
    entries: Vec<Entry>,
    files: Vec<Arc<str>>,
    pool: Option<Pool>,
}

#[derive(Debug)]
struct Entry {
    file: Option<u32>,
    line: u64,
    /// The line's bytes in the buffer, without newline and trailing `\r`.
    span: std::result::Result<(u32, u32), LineError>,
}

/// Buffers of dropped batches, for the reader to fill again: a steady stream then allocates (and
/// page-faults) a handful of buffers, not one per batch.
#[derive(Debug, Clone, Default)]
struct Pool(Arc<std::sync::Mutex<Vec<Buffers>>>);

/// A batch's text buffer and its line list, kept for reuse.
type Buffers = (Vec<u8>, Vec<Entry>);

/// Buffers kept for reuse; more batches than this are rarely in flight.
const POOLED: usize = 32;

impl Pool {
    fn batch(&self) -> Batch {
        let (buf, entries) = self
            .0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_else(|| (vec![0; CHUNK + PADDING], Vec::with_capacity(1024)));
        Batch {
            buf,
            len: 0,
            entries,
            files: Vec::new(),
            pool: Some(self.clone()),
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        // A buffer grown for a long line is not kept: the pool stays CHUNK-sized.
        if self.buf.len() != CHUNK + PADDING {
            return;
        }
        if let Ok(mut free) = pool.0.lock() {
            if free.len() < POOLED {
                let mut entries = std::mem::take(&mut self.entries);
                entries.clear();
                free.push((std::mem::take(&mut self.buf), entries));
            }
        };
    }
}

impl Batch {
    /// Bytes that can still be read into the buffer.
    fn room(&self) -> usize {
        self.buf.len() - PADDING - self.len
    }

    /// Make the buffer hold at least `text` bytes of text plus the padding.
    fn ensure_room(&mut self, text: usize) {
        if self.buf.len() < text + PADDING {
            self.buf.resize((text + PADDING).max(self.buf.len() * 2), 0);
        }
    }

    fn push_entry(
        &mut self,
        file: Option<&Arc<str>>,
        line: u64,
        span: std::result::Result<(u32, u32), LineError>,
    ) {
        let file = file.map(|name| {
            match self.files.last() {
                Some(last) if Arc::ptr_eq(last, name) => {}
                _ => self.files.push(Arc::clone(name)),
            }
            (self.files.len() - 1) as u32
        });
        self.entries.push(Entry { file, line, span });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the `i`-th line of the batch came from.
    pub fn location(&self, i: usize) -> Location<'_> {
        let e = &self.entries[i];
        Location {
            file: e.file.map(|f| &*self.files[f as usize]),
            line: e.line,
        }
    }

    /// The `i`-th line, its text checked for UTF-8.
    pub fn line(&self, i: usize) -> Line<'_> {
        let text = match &self.entries[i].span {
            Ok((start, end)) => line_text(&self.buf[*start as usize..*end as usize]),
            Err(e) => Err(e.clone()),
        };
        Line {
            at: self.location(i),
            text,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Line<'_>> {
        (0..self.entries.len()).map(|i| self.line(i))
    }

    /// The `i`-th line's bytes for parsing in place: the buffer from the line's start on (at least
    /// [`PADDING`] bytes longer than the line), the line's length, and where it starts in the
    /// batch (for [`Batch::str_at`]). UTF-8 is not checked; an over-long line is its error.
    pub fn padded_mut(
        &mut self,
        i: usize,
    ) -> std::result::Result<(&mut [u8], usize, usize), LineError> {
        match &self.entries[i].span {
            Ok((start, end)) => {
                let (start, end) = (*start as usize, *end as usize);
                debug_assert!(end + PADDING <= self.buf.len());
                Ok((&mut self.buf[start..], end - start, start))
            }
            Err(e) => Err(e.clone()),
        }
    }

    /// Text of the batch at `start..end`, a range inside a line a parser has found to be UTF-8
    /// (`None` if it is not: the caller's bug, reported as a bad line rather than a panic).
    pub fn str_at(&self, start: usize, end: usize) -> Option<&str> {
        let bytes = self.buf.get(start..end)?;
        if bytes.is_ascii() {
            // SAFETY: ASCII is UTF-8. (Type names, ids and timestamps are short and ASCII, and for
            // them `from_utf8` costs several times what `is_ascii` does.)
            return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).ok()
    }
}

/// A string a parse thread found in a line: a range of its batch (no copy), or its own copy when
/// JSON escapes had to be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    InBatch(u32, u32),
    Owned(Box<str>),
}

impl Text {
    /// A string found by serde in one of `batch`'s lines: borrowed ones become ranges.
    pub fn new(s: std::borrow::Cow<'_, str>, batch: &Batch) -> Text {
        let base = batch.buf.as_ptr() as usize;
        match s {
            std::borrow::Cow::Borrowed(s) => match (s.as_ptr() as usize).checked_sub(base) {
                Some(start) if start + s.len() <= batch.len => {
                    Text::InBatch(start as u32, (start + s.len()) as u32)
                }
                _ => Text::Owned(s.into()),
            },
            std::borrow::Cow::Owned(s) => Text::Owned(s.into()),
        }
    }

    /// The string, from the batch it was found in.
    pub fn resolve<'a>(&'a self, batch: &'a Batch) -> &'a str {
        match self {
            Text::InBatch(start, end) => batch
                .str_at(*start as usize, *end as usize)
                .expect("a parse thread's range is UTF-8 inside its batch"),
            Text::Owned(s) => s,
        }
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
        match self.summarize() {
            0 => Ok(()),
            _ => Err(Error::Reported(1)),
        }
    }

    /// Print the summary (`skipped N bad lines`) if anything was skipped, and say how many: for a
    /// program whose input ends while it goes on (chat-relay's stdin), which fails later.
    pub fn summarize(&self) -> u64 {
        match self.skipped {
            0 => {}
            1 => warn("skipped 1 bad line"),
            n => warn(format_args!("skipped {n} bad lines")),
        }
        self.skipped
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
    use proptest::prelude::*;

    /// Every line as the line-at-a-time reader hands it out (the oracle for the chunked one).
    fn lines(
        input: impl Into<Vec<u8>>,
        max: usize,
    ) -> Vec<(u64, std::result::Result<String, LineError>)> {
        let mut reader = Reader::from_reader(io::Cursor::new(input.into())).with_max_line(max);
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
        assert_eq!(got[1], (2, Err(LineError::TooLong { len: 13, max: 10 })));
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
        let reader = Reader::from_reader(io::Cursor::new(text.into_bytes())).with_chunk(100);
        let mut seen = Vec::new();
        for batch in reader.spawn() {
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
        let reader = Reader::from_reader(io::Cursor::new(text.into_bytes())).with_chunk(300);
        let rx = spawn_parsed(reader, 3, |batch: &mut Batch| {
            batch
                .iter()
                .map(|l| l.text.unwrap().parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        });
        let all: Vec<u64> = rx.into_iter().flat_map(|r| r.unwrap().1).collect();
        assert_eq!(all, (1..=50_000).collect::<Vec<u64>>());
    }

    /// Every line as `spawn` hands it out: (number, text or error).
    fn spawned(
        input: Vec<u8>,
        max: usize,
        chunk: usize,
    ) -> Vec<(u64, std::result::Result<String, LineError>)> {
        let reader = Reader::from_reader(io::Cursor::new(input))
            .with_max_line(max)
            .with_chunk(chunk);
        let mut out = Vec::new();
        for batch in reader.spawn() {
            for line in batch.unwrap().iter() {
                out.push((line.at.line, line.text.map(str::to_owned)));
            }
        }
        out
    }

    #[test]
    fn spawned_lines_follow_the_line_rules() {
        let input = b"a\n\n  \r\nb\r\n0123456789abc\n\xff\xfe\nc".to_vec();
        let got = spawned(input.clone(), 10, 3);
        assert_eq!(got, lines(input, 10));
        assert_eq!(
            got,
            vec![
                (1, Ok("a".into())),
                (4, Ok("b".into())),
                (5, Err(LineError::TooLong { len: 13, max: 10 })),
                (6, Err(LineError::NotUtf8 { offset: 0 })),
                (7, Ok("c".into())),
            ]
        );
    }

    #[test]
    fn a_batch_keeps_padding_after_its_last_line() {
        let reader = Reader::from_reader(io::Cursor::new(b"{\"a\":1}\n{}".to_vec()));
        for mut batch in reader.spawn() {
            let batch = batch.as_mut().unwrap();
            for i in 0..batch.len() {
                let (bytes, len, _) = batch.padded_mut(i).unwrap();
                assert!(bytes.len() >= len + PADDING);
            }
        }
    }

    /// Input made of JSON-ish text, any bytes, newlines, `\r\n` and blank lines, in pieces.
    fn line_parts() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(
            prop_oneof![
                "[a-z{}\":,]{0,30}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..40),
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"  \n".to_vec()),
            ],
            0..40,
        )
    }

    proptest! {
        #[test]
        fn spawn_reads_what_next_line_reads(
            parts in line_parts(),
            max in 1usize..60,
            chunk in 1usize..70,
        ) {
            let input: Vec<u8> = parts.concat();
            prop_assert_eq!(spawned(input.clone(), max, chunk), lines(input, max));
        }

        #[test]
        fn splitter_reads_what_next_line_reads(
            parts in line_parts(),
            max in 1usize..60,
            chunk in 1usize..70,
        ) {
            let input: Vec<u8> = parts.concat();
            prop_assert_eq!(split(&input, max, chunk), lines(input, max));
        }
    }

    /// What a [`Splitter`] fed `input` in reads of `chunk` bytes hands out.
    fn split(
        input: &[u8],
        max: usize,
        chunk: usize,
    ) -> Vec<(u64, std::result::Result<String, LineError>)> {
        let mut got = Vec::new();
        let mut each = |line: Line<'_>| got.push((line.at.line, line.text.map(str::to_string)));
        let mut splitter = Splitter::new(max);
        for piece in input.chunks(chunk) {
            splitter.feed(piece, &mut each);
        }
        splitter.finish(&mut each);
        got
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
