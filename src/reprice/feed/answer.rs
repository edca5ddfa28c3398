//! Answering requests: which steps a tick needs, what memory covers, each book's window.

use super::*;

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
            history_from: 0,
            history_points: 0,
            per_pass: HashMap::new(),
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
        // After a skip, memory holds whole windows of up to `history_points` points from then on;
        // an earlier tick must find its windows still in memory.
        let short = self.history_from > 0 && points > self.history_points;
        if short || (tick < self.step && !self.covers(tick, points, &wanted)) {
            self.rewind();
        }
        self.skip_passes(tick, points, &wanted);
        let mut pass_known = self.steps_per_pass.is_some();
        while self.step < tick {
            if !self
                .advance()
                .map_err(|e| format!("reading {}: {e}", self.name))?
            {
                break;
            }
            if !pass_known && self.steps_per_pass.is_some() {
                // The first pass just ended: from here on whole passes are computed, not read
                // (a tick of 2^64 - 1 costs one pass, not 2^64 steps).
                pass_known = true;
                self.skip_passes(tick, points, &wanted);
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

    /// With `--at-end wrap` and the length of a pass known, jump to the pass before `tick`'s:
    /// a book with c rows a pass has its last `points` rows within ceil(points / c) passes
    /// before the one the tick falls in, so passes further back cannot affect the windows and are
    /// skipped (by arithmetic) instead of read.
    pub(super) fn skip_passes(&mut self, tick: u64, points: usize, wanted: &Option<Arc<str>>) {
        let (AtEnd::Wrap, Some(n)) = (self.at_end, self.steps_per_pass) else {
            return;
        };
        let passes = self.passes_for(points, wanted);
        let base = tick.saturating_sub(passes.saturating_add(1).saturating_mul(n)) / n * n;
        if base > self.step.saturating_add(n) {
            self.rewind();
            self.step = base;
            self.history_from = base;
            self.history_points = points;
        }
    }

    /// How many whole passes a window of `points` rows of `book` (or of every book) can span.
    pub(super) fn passes_for(&self, points: usize, book: &Option<Arc<str>>) -> u64 {
        let passes = |rows: u64| (points as u64).div_ceil(rows.max(1));
        match book {
            Some(name) => self
                .per_pass
                .get(&Some(name.clone()))
                .map_or(1, |&c| passes(c)),
            None => self
                .per_pass
                .values()
                .map(|&c| passes(c))
                .max()
                .unwrap_or(1),
        }
    }

    /// Whether memory still holds every window of an earlier tick.
    pub(super) fn covers(&self, tick: u64, points: usize, book: &Option<Arc<str>>) -> bool {
        let whole = self.history_from == 0;
        let covered = |b: &Book| {
            (whole && !b.dropped) || b.points.iter().filter(|p| p.step <= tick).count() >= points
        };
        match book {
            Some(name) => self
                .index
                .get(&Some(name.clone()))
                .is_none_or(|&i| covered(&self.books[i])),
            None => self.books.iter().all(covered),
        }
    }
}

impl Book {
    /// The last `points` points at or before `step`.
    pub(super) fn window(&self, step: u64, points: usize) -> Option<Window> {
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
