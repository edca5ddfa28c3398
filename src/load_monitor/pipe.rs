//! The pipeline face: records as JSON lines in, one report line per server out.
//!
//! Reports are written for every server, sorted by name, at the end of input and, with
//! `--every D`, every D of wall-clock time while input goes on (each burst flushed at once).
//! A line that is not a valid record, or a record the window refuses, is reported with its line
//! number and skipped ([`crate::input::BadLines`]). With `--snapshot FILE` the state is loaded
//! before the first line and saved after the last, so runs over successive files add up.

use std::io::Write;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use super::{parse_record, Config, Report, Store};
use crate::error::Result;
use crate::output::Output;

pub fn run(config: &Config, store: Store, out: &mut Output<impl Write>) -> Result<()> {
    if let Some(path) = &config.snapshot {
        store.load(path)?;
    }
    let mut bad = config.input.bad_lines();
    let batches = config.input.open()?.spawn();
    let every = config.every.map(|d| d.std());
    let mut next_report = every.map(|d| Instant::now() + d);
    loop {
        let next = match next_report {
            Some(due) => batches.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => batches.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(batch) => {
                for line in batch?.iter() {
                    let text = match line.text {
                        Ok(text) => text,
                        Err(e) => {
                            bad.report(line.at, e)?;
                            continue;
                        }
                    };
                    let outcome = parse_record(text, None)
                        .and_then(|record| store.add(&record).map_err(|why| why.to_string()));
                    if let Err(why) = outcome {
                        bad.report(line.at, why)?;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let (Some(due), Some(period)) = (next_report, every) {
            if Instant::now() >= due {
                write_reports(&store, out)?;
                // Skip missed periods instead of bursting reports after a stall.
                let mut due = due + period;
                while due <= Instant::now() {
                    due += period;
                }
                next_report = Some(due);
            }
        }
    }
    write_reports(&store, out)?;
    if let Some(path) = &config.snapshot {
        store.save(path)?;
    }
    bad.finish()
}

/// One report line per server, by name, then a flush.
pub fn write_reports(store: &Store, out: &mut Output<impl Write>) -> Result<()> {
    // A server with nothing left in the day has nothing to report: it is forgotten.
    store.forget_empty();
    for name in store.names() {
        if let Some((rows, _)) = store.rows(&name) {
            out.emit(&Report::new(&name, &rows))?;
        }
    }
    out.flush()
}
