//! The data manager as a supervised child process, reached over its message queue: JSON request
//! lines on its stdin, reply lines on its stdout (the protocol of [`crate::reprice::feed`]).
//!
//! - One task owns the child. Requests get fresh ids and wait in a table until their reply line
//!   comes back; a reader task drains the child's stdout so the child never blocks on it.
//! - A child that dies (EOF on its stdout), stops reading its requests, or leaves a request
//!   unanswered for twice the request timeout is killed and restarted after a backoff that doubles
//!   from `backoff_min` to `backoff_max` and resets after a good reply. The requests it held fail
//!   at once: at most the ticks in flight are lost. Requests made while it is down wait for the
//!   new child (up to [`HELD_MAX`] of them; their callers' timeout still applies, and one whose
//!   caller gave up is dropped unsent).
//! - Its stderr is ours, so its own diagnostics (`data-manager: …`) show in the same place.
//! - Dropping the last [`DataManager`] handle closes the child's stdin; it exits at that EOF.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use crate::reprice::feed::{Answer, Reply};
use crate::runner::warn;
use crate::time;

/// How to start and watch the child.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// How long a request may wait for its reply.
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

type Answered = std::result::Result<Answer, String>;

/// Requests kept while the child is down; more than this fail at once.
pub const HELD_MAX: usize = 1024;

struct Job {
    tick: u64,
    points: usize,
    reply: oneshot::Sender<Answered>,
}

/// A handle on the supervised data manager; cheap to clone.
#[derive(Clone)]
pub struct DataManager {
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
}

impl DataManager {
    /// Start the supervisor (and the child) on the current tokio runtime.
    pub fn spawn(spec: Spec) -> (DataManager, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(1024);
        let timeout = spec.timeout;
        let task = tokio::spawn(supervise(spec, rx));
        (DataManager { jobs, timeout }, task)
    }

    /// The windows as of `tick`, or why there are none.
    pub async fn query(&self, tick: u64, points: usize) -> Answered {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                tick,
                points,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => "too many requests waiting".to_string(),
                mpsc::error::TrySendError::Closed(_) => "the supervisor has stopped".to_string(),
            })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(_)) => Err("it went away before answering".into()),
            Err(_) => Err(format!("no answer within {}", time::Duration(self.timeout))),
        }
    }
}

async fn supervise(spec: Spec, mut jobs: mpsc::Receiver<Job>) {
    let mut backoff = spec.backoff_min;
    let mut next_id = 0u64;
    let mut held: Vec<Job> = Vec::new();
    loop {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // SAFETY: the hook only calls sigprocmask (async-signal-safe, no allocation). A reprice
        // that takes SIGTERM through crate::stop has it blocked; its child must not.
        unsafe {
            command.pre_exec(crate::stop::unblock_in_child);
        }
        let started = command.spawn();
        let why = match started {
            Ok(child) => match serve(
                &spec,
                child,
                &mut jobs,
                &mut held,
                &mut next_id,
                &mut backoff,
            )
            .await
            {
                Some(why) => why,
                None => return,
            },
            Err(e) => format!("cannot be started ({}: {e})", spec.program.display()),
        };
        warn(format_args!(
            "data manager {why}; restarting it in {}",
            time::Duration(backoff)
        ));
        if !hold_for(&mut jobs, &mut held, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(spec.backoff_max);
    }
}

/// Serve requests with one child until it fails (`Some(why)`) or the handles are gone (`None`).
async fn serve(
    spec: &Spec,
    mut child: Child,
    jobs: &mut mpsc::Receiver<Job>,
    held: &mut Vec<Job>,
    next_id: &mut u64,
    backoff: &mut Duration,
) -> Option<String> {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Some("started without pipes".into());
    };
    let (reply_tx, mut replies) = mpsc::channel::<std::io::Result<String>>(64);
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::with_capacity(256 * 1024, stdout).lines();
        loop {
            let line = lines.next_line().await.transpose();
            let end = !matches!(line, Some(Ok(_)));
            if let Some(line) = line {
                if reply_tx.send(line).await.is_err() {
                    return;
                }
            }
            if end {
                return;
            }
        }
    });
    let mut pending: HashMap<u64, oneshot::Sender<Answered>> = HashMap::new();
    // Requests sent and not yet answered (their callers may have given up), and since when the
    // child has made no progress on them.
    let mut outstanding = 0u64;
    let mut stalled_since: Option<Instant> = None;
    let mut watch = tokio::time::interval(spec.timeout);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Requests held while the child was down go first.
    for job in std::mem::take(held) {
        if job.reply.is_closed() {
            continue;
        }
        *next_id += 1;
        let line = request_line(*next_id, &job);
        if let Err(why) = send(&mut stdin, line.as_bytes(), spec.timeout).await {
            let _ = job.reply.send(Err(format!("data manager {why}")));
            continue;
        }
        pending.insert(*next_id, job.reply);
        outstanding += 1;
        stalled_since.get_or_insert_with(Instant::now);
    }
    let why = loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else {
                    // Every handle is gone: close its stdin, let it finish, and stop.
                    drop(stdin);
                    let _ = tokio::time::timeout(spec.timeout, child.wait()).await;
                    reader.abort();
                    return None;
                };
                if job.reply.is_closed() {
                    continue;
                }
                *next_id += 1;
                let line = request_line(*next_id, &job);
                match send(&mut stdin, line.as_bytes(), spec.timeout).await {
                    Ok(()) => {
                        pending.insert(*next_id, job.reply);
                        outstanding += 1;
                        stalled_since.get_or_insert_with(Instant::now);
                    }
                    Err(why) => {
                        let _ = job.reply.send(Err(format!("data manager {why}")));
                        break why;
                    }
                }
            }
            line = replies.recv() => match line {
                Some(Ok(text)) => {
                    let Ok(reply) = serde_json::from_str::<Reply>(&text) else {
                        warn(format_args!("data manager sent a line that is not a reply: {text:?}"));
                        continue;
                    };
                    let Some(id) = reply.id.as_u64() else { continue };
                    if let Some(waiter) = pending.remove(&id) {
                        let _ = waiter.send(reply.into_answer());
                    }
                    outstanding = outstanding.saturating_sub(1);
                    stalled_since = (outstanding > 0).then(Instant::now);
                    *backoff = spec.backoff_min;
                }
                Some(Err(e)) => break format!("output could not be read ({e})"),
                None => break "closed its output".to_string(),
            },
            _ = watch.tick() => {
                let limit = spec.timeout * 2;
                pending.retain(|_, waiter| !waiter.is_closed());
                if stalled_since.is_some_and(|since| since.elapsed() > limit) {
                    break format!("left a request unanswered for {}", time::Duration(limit));
                }
            }
        }
    };
    for (_, waiter) in pending.drain() {
        let _ = waiter.send(Err(format!("data manager {why}")));
    }
    reader.abort();
    let _ = child.start_kill();
    let status = child.wait().await;
    let how = match status {
        Ok(status) => describe(status),
        Err(e) => format!("could not be waited for ({e})"),
    };
    Some(format!("{why}, {how}"))
}

fn request_line(id: u64, job: &Job) -> String {
    format!(
        "{{\"id\":{id},\"tick\":{},\"points\":{}}}\n",
        job.tick, job.points
    )
}

async fn send(stdin: &mut ChildStdin, line: &[u8], within: Duration) -> Result<(), String> {
    match tokio::time::timeout(within, async {
        stdin.write_all(line).await?;
        stdin.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("stopped taking requests ({e})")),
        Err(_) => Err(format!("took no request for {}", time::Duration(within))),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(sig) => format!("was killed by {sig}"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        _ => "ended".into(),
    }
}

/// While the child is down: keep requests for the next one, for `pause`. False when the handles
/// are gone.
async fn hold_for(jobs: &mut mpsc::Receiver<Job>, held: &mut Vec<Job>, pause: Duration) -> bool {
    let until = tokio::time::Instant::now() + pause;
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => {
                    held.retain(|job| !job.reply.is_closed());
                    if held.len() < HELD_MAX {
                        held.push(job);
                    } else {
                        let _ = job.reply.send(Err("data manager is restarting".into()));
                    }
                }
                None => return false,
            },
            _ = tokio::time::sleep_until(until) => return true,
        }
    }
}
