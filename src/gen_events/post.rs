//! `gen-events --post URL`: send the events by HTTP POST instead of printing them — the seed's
//! test generator for load-monitor, without its 500 greenlets.
//!
//! - `--concurrency K` worker threads, each with its own keep-alive connection (a ureq agent),
//!   so K requests are in flight at once. The generator hands events over a bounded channel, so it
//!   never runs ahead of what the connections can carry (no unbounded queue, no burst).
//! - `--batch N` sends N events per request as JSON lines (load-monitor's `POST /records`); the
//!   default, 1, sends each event as the body of its own request (`POST /addserver`).
//! - At the end a summary goes to stderr: records, requests, elapsed time, records per second,
//!   and how many the server accepted or refused (with the first refusals). Any refusal or
//!   transport error makes the exit code 1; a server that cannot be reached stops the run.
//! - `--check` (load profile): after posting, compare every server's `GET /report/<server>`
//!   with the report worked out from the records the server accepted ([`super::check`]), and
//!   print the verdict as one JSON line (exit 1 on a difference). The check assumes the
//!   service holds only this run's records for these servers (a fresh load-monitor); a replay of
//!   old data (`--simulated --start 2016-…`) needs `load-monitor --clock records`, since the wall
//!   clock refuses records older than a day.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::check::{self, Accepted};
use super::{Profile, Sink};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;

/// The poster's flags; gen-events flattens them into its arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PostArgs {
    /// Send the events by HTTP POST to URL instead of printing them
    /// (e.g. http://127.0.0.1:8080/addserver, or /records with --batch).
    #[arg(help_heading = "Posting", long, value_name = "URL")]
    pub post: Option<String>,

    /// With --post: requests in flight at once, each on its own keep-alive connection.
    #[arg(help_heading = "Posting", long, default_value_t = 8, value_name = "K")]
    pub concurrency: usize,

    /// With --post: events per request, sent as JSON lines (load-monitor's POST /records).
    #[arg(help_heading = "Posting", long, default_value_t = 1, value_name = "N")]
    pub batch: usize,

    /// With --post and --profile load: compare every server's load-monitor report with the
    /// averages of the records it accepted; print the verdict as a JSON line
    /// ({"check":"passed",…} or {"check":"failed",…}, exit 1).
    #[arg(help_heading = "Posting", long)]
    pub check: bool,
}

impl PostArgs {
    /// A poster when `--post` was given, after checking the flags that go with it.
    pub fn poster(&self, profile: Profile) -> Result<Option<Poster>> {
        if self.check && profile != Profile::Load {
            return Err(Error::usage(
                "--check compares load-monitor reports: it needs --profile load",
            ));
        }
        let Some(url) = &self.post else {
            if self.check {
                return Err(Error::usage("--check needs --post URL"));
            }
            return Ok(None);
        };
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(Error::usage("--concurrency must be between 1 and 4096"));
        }
        if self.batch == 0 {
            return Err(Error::usage("--batch must be at least 1"));
        }
        let origin = origin(url)?;
        Ok(Some(Poster::start(
            url.clone(),
            origin,
            self.concurrency,
            self.batch,
            self.check,
        )))
    }
}

/// `scheme://host:port` of a URL: where the reports of the service posted to are.
fn origin(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::usage(format!("--post {url}: only http:// URLs are supported")))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(Error::usage(format!("--post {url}: no host")));
    }
    Ok(format!("http://{host}"))
}

/// What one connection did.
#[derive(Default)]
struct Tally {
    requests: u64,
    records: u64,
    accepted: u64,
    refused: u64,
    /// The first few refusals, as the server explained them.
    refusals: Vec<String>,
    /// A transport failure (the server went away): the run stops.
    fatal: Option<String>,
    oracle: Accepted,
    /// A batch answer listed fewer refused lines than it counted, so which records were stored
    /// is unknown and the check cannot be exact.
    unknown_refusals: bool,
}

const LISTED_REFUSALS: usize = 5;

impl Tally {
    fn refusal(&mut self, why: String) {
        self.refused += 1;
        if self.refusals.len() < LISTED_REFUSALS {
            self.refusals.push(why);
        }
    }
}

/// A bulk of events on its way: the body and how many events it holds.
struct Body {
    text: String,
    events: usize,
}

/// Bodies handed to a connection at once: one channel hand-off (a thread wake-up) per this many
/// requests instead of one per request, which matters when each request is one small record.
/// A flush hands over whatever is waiting, so a paced run still posts each event on time.
const BODIES_PER_HANDOFF: usize = 16;

/// Posts events on `concurrency` keep-alive connections; see the module doc.
pub struct Poster {
    url: String,
    origin: String,
    batch: usize,
    check: bool,
    concurrency: usize,
    tx: Option<SyncSender<Vec<Body>>>,
    workers: Vec<JoinHandle<Tally>>,
    pending: Body,
    ready: Vec<Body>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Poster {
    fn start(url: String, origin: String, concurrency: usize, batch: usize, check: bool) -> Self {
        let (tx, rx) = sync_channel::<Vec<Body>>(concurrency * 2);
        let rx = Arc::new(Mutex::new(rx));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..concurrency)
            .map(|i| {
                let (rx, stop, url) = (rx.clone(), stop.clone(), url.clone());
                std::thread::Builder::new()
                    .name(format!("post-{i}"))
                    .spawn(move || connection(&url, &rx, &stop, batch > 1, check))
                    .expect("spawning a poster thread")
            })
            .collect();
        Poster {
            url,
            origin,
            batch,
            check,
            concurrency,
            tx: Some(tx),
            workers,
            pending: Body {
                text: String::new(),
                events: 0,
            },
            ready: Vec::with_capacity(BODIES_PER_HANDOFF),
            stop,
            started: Instant::now(),
        }
    }

    /// Close the body being filled; hand the ready bodies over when there are enough, or when
    /// `now` (a flush).
    fn dispatch(&mut self, now: bool) -> Result<()> {
        if self.pending.events > 0 {
            let body = std::mem::replace(
                &mut self.pending,
                Body {
                    text: String::with_capacity(self.batch * 96),
                    events: 0,
                },
            );
            self.ready.push(body);
        }
        if self.ready.is_empty() || (!now && self.ready.len() < BODIES_PER_HANDOFF) {
            return Ok(());
        }
        let bodies = std::mem::replace(&mut self.ready, Vec::with_capacity(BODIES_PER_HANDOFF));
        let sent = match &self.tx {
            Some(tx) => tx.send(bodies).is_ok(),
            None => false,
        };
        if !sent || self.stop.load(Ordering::Relaxed) {
            // A connection failed for good; `finish` says why.
            return Err(Error::failed(format!("posting to {} stopped", self.url)));
        }
        Ok(())
    }

    /// Wait for every request, print the summary and, with `--check`, check the reports.
    pub fn finish(mut self, out: &mut Output<impl std::io::Write>) -> Result<()> {
        let flushed = self.dispatch(true);
        self.tx = None;
        let mut total = Tally::default();
        for w in std::mem::take(&mut self.workers) {
            let t = w.join().unwrap_or_else(|_| Tally {
                fatal: Some("a poster thread panicked".into()),
                ..Tally::default()
            });
            total.requests += t.requests;
            total.records += t.records;
            total.accepted += t.accepted;
            total.refused += t.refused;
            for r in t.refusals {
                if total.refusals.len() < LISTED_REFUSALS {
                    total.refusals.push(r);
                }
            }
            total.fatal = total.fatal.or(t.fatal);
            total.unknown_refusals |= t.unknown_refusals;
            total.oracle.merge(t.oracle);
        }
        let secs = self.started.elapsed().as_secs_f64();
        warn(format_args!(
            "posted {} records in {} requests on {} connections in {:.2} s: {:.0} records/s; \
             {} accepted, {} refused",
            total.records,
            total.requests,
            self.concurrency,
            secs,
            total.records as f64 / secs.max(1e-9),
            total.accepted,
            total.refused
        ));
        for r in &total.refusals {
            warn(format_args!("refused: {r}"));
        }
        if let Some(fatal) = total.fatal {
            return Err(Error::failed(fatal));
        }
        flushed?;
        if self.check {
            if total.unknown_refusals {
                return Err(Error::failed(
                    "cannot check: a batch refused more records than it listed",
                ));
            }
            check::verify(&self.origin, &agent(), &total.oracle, out)?;
        }
        if total.refused > 0 {
            return Err(Error::Reported(1));
        }
        Ok(())
    }
}

impl Sink for Poster {
    fn send(&mut self, event: &[u8]) -> Result<()> {
        if self.pending.events > 0 {
            self.pending.text.push('\n');
        }
        self.pending.text.push_str(&String::from_utf8_lossy(event));
        self.pending.events += 1;
        if self.pending.events >= self.batch {
            self.dispatch(false)?;
        }
        Ok(())
    }

    /// The schedule is about to pause: send what is waiting so the server sees it on time.
    fn flush(&mut self) -> Result<()> {
        self.dispatch(true)
    }
}

/// An agent with one keep-alive connection. No global or resolve timeout: with one, ureq resolves
/// the host on a new thread for every request, which would cost more than the request itself.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(1)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_send_request(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// One keep-alive connection: post bodies until the channel closes or the server is gone.
fn connection(
    url: &str,
    rx: &Mutex<Receiver<Vec<Body>>>,
    stop: &AtomicBool,
    bulk: bool,
    check: bool,
) -> Tally {
    let agent = agent();
    let mut tally = Tally::default();
    loop {
        let bodies = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(b) => b,
                Err(_) => break,
            }
        };
        for body in bodies {
            if stop.load(Ordering::Relaxed) {
                return tally;
            }
            post_one(&agent, url, body, stop, bulk, check, &mut tally);
        }
    }
    tally
}

/// Post one body and account for the answer.
fn post_one(
    agent: &ureq::Agent,
    url: &str,
    body: Body,
    stop: &AtomicBool,
    bulk: bool,
    check: bool,
    tally: &mut Tally,
) {
    tally.requests += 1;
    tally.records += body.events as u64;
    let sent = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.text.as_str());
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            tally.fatal = Some(format!("cannot post to {url}: {e}"));
            stop.store(true, Ordering::Relaxed);
            return;
        }
    };
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| format!("(unreadable answer: {e})"));
    if !(200..300).contains(&status) {
        for _ in 0..body.events {
            tally.refusal(format!("HTTP {status}: {}", answer.trim()));
        }
        return;
    }
    if !bulk {
        tally.accepted += 1;
        if check {
            tally.oracle.add(&body.text);
        }
        return;
    }
    // A bulk answer: {"accepted":N,"refused":N,"errors":[{"line":N,"error":"…"}]}.
    let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let refused = parsed["refused"].as_u64().unwrap_or(0);
    let mut bad_lines = Vec::new();
    for e in parsed["errors"].as_array().into_iter().flatten() {
        if let Some(line) = e["line"].as_u64() {
            bad_lines.push(line as usize);
        }
        tally.refusal(e["error"].as_str().unwrap_or("refused").to_string());
    }
    tally.refused += refused.saturating_sub(bad_lines.len() as u64);
    tally.unknown_refusals |= refused > bad_lines.len() as u64;
    tally.accepted += parsed["accepted"].as_u64().unwrap_or(0);
    if check {
        for (i, line) in body.text.lines().enumerate() {
            if !bad_lines.contains(&(i + 1)) {
                tally.oracle.add(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_a_post_url() {
        assert_eq!(
            origin("http://127.0.0.1:8080/addserver").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(origin("https://x/addserver").is_err());
        assert!(origin("http:///addserver").is_err());
    }
}
