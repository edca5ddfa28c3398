//! Reading the CSV forward: one row at a time, passes with `--at-end wrap`, rows appended with
//! `--follow`, bad rows reported once and skipped in bounded memory.

use super::*;

impl Feed {
    pub(super) fn rewind(&mut self) {
        self.rows = None;
        self.pending = None;
        self.step = 0;
        self.history_from = 0;
        self.history_points = 0;
        if self.steps_per_pass.is_none() {
            // The first pass is read again from its start: count its rows again.
            self.per_pass.clear();
        }
        self.pass_steps = 0;
        self.pass = 0;
        self.resume = (0, 0);
        self.ended = false;
        self.books.clear();
        self.index.clear();
    }

    /// Consume one step of the feed; false when there is none (yet).
    pub(super) fn advance(&mut self) -> io::Result<bool> {
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

    pub(super) fn push(&mut self, row: Row) {
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
        if self.steps_per_pass.is_none() {
            *self.per_pass.entry(self.books[i].name.clone()).or_insert(0) += 1;
        }
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
    pub(super) fn open_rows(&mut self) -> io::Result<()> {
        let (offset, line) = self.resume;
        let tail = Arc::new(TailSeen::default());
        let source = Tail {
            inner: (self.open)(offset)?,
            seen: tail.clone(),
        };
        let reader = csv::ReaderBuilder::new()
            .buffer_capacity(CSV_BUFFER)
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(source);
        let mut rows = Rows {
            reader,
            tail,
            record: csv::StringRecord::new(),
            base_offset: offset,
            base_line: line,
        };
        if offset == 0 {
            let read = rows.reader.read_record(&mut rows.record);
            if rows.tail.overlong.load(Ordering::Relaxed) {
                return Err(io::Error::other(format!(
                    "the header is longer than {MAX_ROW_BYTES} bytes"
                )));
            }
            if !read.map_err(csv_io)? {
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
    pub(super) fn read_row(&mut self) -> io::Result<Option<Row>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if self.rows.is_none() {
                self.open_rows()?;
            }
            let columns = self.columns.expect("the header was read");
            let rows = self.rows.as_mut().expect("just opened");
            let start = rows.reader.position().clone();
            rows.tail
                .record_start
                .store(start.byte(), Ordering::Relaxed);
            let read = rows.reader.read_record(&mut rows.record);
            if rows.tail.overlong.load(Ordering::Relaxed) {
                // Go on after the line where the row reached the limit, in a fresh reader.
                let line = rows.base_line + start.line();
                self.resume = (
                    rows.base_offset + rows.tail.bytes.load(Ordering::Relaxed),
                    rows.base_line + rows.tail.newlines.load(Ordering::Relaxed),
                );
                self.rows = None;
                self.bad_row(
                    line,
                    &format!(
                        "row longer than {MAX_ROW_BYTES} bytes (the limit); skipped to the end of its line"
                    ),
                );
                continue;
            }
            let line = rows.base_line + rows.record.position().map_or(0, |p| p.line());
            let complete = match read {
                // A record that ends where the file ends, without a newline, may still be being
                // written: when following, it is read again later.
                Ok(true) => !(self.follow && rows.tail.unfinished(rows.reader.position().byte())),
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
    pub(super) fn end_of_file(&mut self) -> io::Result<()> {
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

    pub(super) fn bad_row(&mut self, line: u64, reason: &str) {
        if line > self.reported_up_to {
            warn(format_args!("{}: line {line}: {reason}", self.name));
            self.reported_up_to = line;
            self.bad_rows += 1;
        }
    }
}

impl TailSeen {
    /// Whether a record ending at stream offset `end` ended at the last byte read, not on a newline.
    pub(super) fn unfinished(&self, end: u64) -> bool {
        end == self.bytes.load(Ordering::Relaxed) && self.last.load(Ordering::Relaxed) != b'\n'
    }
}

impl Read for Tail {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let seen = &self.seen;
        let handed = seen.bytes.load(Ordering::Relaxed);
        // The CSV reader holds at most CSV_BUFFER bytes it has not parsed yet, so a record that
        // started more than MAX_ROW_BYTES + CSV_BUFFER bytes ago is longer than the limit.
        if handed - seen.record_start.load(Ordering::Relaxed) > (MAX_ROW_BYTES + CSV_BUFFER) as u64
        {
            self.skip_line()?;
            return Err(io::Error::new(io::ErrorKind::InvalidData, "row too long"));
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.count(&buf[..n]);
        }
        Ok(n)
    }
}

impl Tail {
    pub(super) fn count(&self, chunk: &[u8]) {
        let newlines = memchr::memchr_iter(b'\n', chunk).count();
        self.seen
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.seen
            .newlines
            .fetch_add(newlines as u64, Ordering::Relaxed);
        self.seen
            .last
            .store(chunk[chunk.len() - 1], Ordering::Relaxed);
    }

    /// Discard input up to and including the next newline (or the end), in bounded memory.
    pub(super) fn skip_line(&mut self) -> io::Result<()> {
        self.seen.overlong.store(true, Ordering::Relaxed);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
                // The bytes after the newline are read again when the file is reopened there.
                self.count(&chunk[..=i]);
                return Ok(());
            }
            self.count(&chunk[..n]);
        }
    }
}

/// The longest CSV record (row) data-manager reads; a longer one is a bad row, skipped to the
/// end of the line where it reaches the limit, so memory per row stays bounded whatever the file.
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// The CSV reader's buffer.
pub(super) const CSV_BUFFER: usize = 8 * 1024;

/// At most this much of a field is echoed in a message.
pub(super) const SHOWN: usize = 40;

/// `text` quoted for a message, cut to its first [`SHOWN`] characters.
pub(super) fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

pub(super) fn parse_header(record: &csv::StringRecord) -> std::result::Result<Columns, String> {
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
            "the header must name Timestamp and Price columns (and optionally Book), got {}",
            shown(&record.iter().collect::<Vec<_>>().join(","))
        )),
    }
}

pub(super) fn parse_row(
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
        .map_err(|_| format!("Price {} is not a number", shown(price_text)))?;
    if !price.is_finite() {
        return Err(format!(
            "Price {} is not a finite number",
            shown(price_text)
        ));
    }
    if price <= 0.0 {
        return Err(format!("Price {} is not positive", shown(price_text)));
    }
    let timestamp = field(columns.timestamp, "Timestamp")?;
    let (key, book) = match columns.book {
        Some(i) => (timestamp.to_owned(), Some(Arc::from(field(i, "Book")?))),
        None => (line.to_string(), None),
    };
    Ok((key, book, price))
}

pub(super) fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// csv's messages carry their own position; the line number is already in ours.
pub(super) fn strip_csv_position(msg: &str) -> String {
    match msg.find(": ") {
        Some(i) if msg.starts_with("CSV") => msg[i + 2..].to_string(),
        _ => msg.to_string(),
    }
}
