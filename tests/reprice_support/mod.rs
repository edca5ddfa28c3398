//! Helpers for the repricing-loop tests: a running program whose stdout and stderr lines can be
//! awaited one by one (tests wait for events, not for time), and /proc readings.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::procfs;

pub const WITHIN: Duration = Duration::from_secs(15);

pub fn exe(name: &str) -> String {
    match name {
        "ticker" => env!("CARGO_BIN_EXE_ticker").into(),
        "data-manager" => env!("CARGO_BIN_EXE_data-manager").into(),
        "price-api" => env!("CARGO_BIN_EXE_price-api").into(),
        "reprice" => env!("CARGO_BIN_EXE_reprice").into(),
        other => panic!("no program {other}"),
    }
}

/// The challenge's CSV (never copied into the repository).
pub fn challenge_csv() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/data.csv").into()
}

pub fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Prices of a single-series CSV, in row order (the test's own reading, as an oracle).
pub fn csv_prices(path: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').nth(1).unwrap().trim().parse().unwrap())
        .collect()
}

/// A running program; its output lines arrive on channels as they are written.
pub struct Proc {
    pub name: String,
    pub child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
}

fn pump(stream: impl Read + Send + 'static, keep: Option<Arc<Mutex<String>>>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(keep) = &keep {
                let mut k = keep.lock().unwrap();
                k.push_str(&line);
                k.push('\n');
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Proc {
    pub fn start(name: &str, args: &[&str], stdin: Stdio) -> Proc {
        let mut child = Command::new(exe(name))
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = pump(child.stdout.take().unwrap(), None);
        let err = pump(child.stderr.take().unwrap(), Some(stderr.clone()));
        Proc {
            name: format!("{name} {}", args.join(" ")),
            child,
            out,
            err,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn context(&self) -> String {
        format!(
            "{}\n--- stderr so far ---\n{}",
            self.name,
            self.stderr_text()
        )
    }

    /// The next stdout line, or `None` once stdout is closed.
    pub fn next_line(&self, within: Duration) -> Option<String> {
        match self.out.recv_timeout(within) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no stdout line within {within:?} from {}", self.context())
            }
        }
    }

    /// The next stdout line if one comes within `within`.
    pub fn poll_line(&self, within: Duration) -> Option<String> {
        self.out.recv_timeout(within).ok()
    }

    pub fn json(&self) -> Value {
        let line = self
            .next_line(WITHIN)
            .unwrap_or_else(|| panic!("stdout closed early: {}", self.context()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    /// Every remaining stdout line, until the program closes stdout.
    pub fn rest(&self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(line) = self.next_line(WITHIN) {
            all.push(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}")),
            );
        }
        all
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {within:?} from {}",
                    self.context()
                ),
            }
        }
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin is piped")
    }

    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {within:?}: {}",
                self.context()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (kB), open file descriptors and threads of a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_kb: u64,
    pub fds: usize,
    pub threads: u64,
}

pub fn usage(pid: i32) -> Usage {
    Usage {
        rss_kb: procfs::rss_kb(pid),
        fds: procfs::open_fds(pid),
        threads: procfs::status_field(pid, "Threads"),
    }
}

/// Wait until `pid` has exactly one live child and return it.
pub fn only_child(pid: i32, within: Duration) -> i32 {
    procfs::only_child(pid, within) as i32
}

pub fn alive(pid: i32) -> bool {
    procfs::alive(pid)
}
