//! Test harness shared by the integration tests: run a real binary, start a real server, start a
//! real memcached or redis on a free loopback port. Every failure message shows the command, its
//! exit status, stdout and stderr.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod daemon;
pub mod procfs;

#[allow(unused_imports)]
pub use daemon::{Daemon, Start, WITHIN};

/// What a finished command did.
pub struct Run {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Assert the exit code, showing everything on failure.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    /// Assert the exit code and that stderr says `message` (a usage error is `expect_failure(2,
    /// "…")`), showing everything on failure.
    pub fn expect_failure(&self, code: i32, message: &str) -> &Self {
        self.expect_code(code).expect_stderr(message)
    }

    /// Assert that stderr says `message`, showing everything on failure.
    pub fn expect_stderr(&self, message: &str) -> &Self {
        self.expect_in("stderr", &self.stderr, message)
    }

    /// Assert that stdout holds `text`, showing everything on failure.
    pub fn expect_stdout(&self, text: &str) -> &Self {
        self.expect_in("stdout", &self.stdout, text)
    }

    fn expect_in(&self, stream: &str, got: &str, text: &str) -> &Self {
        assert!(
            got.contains(text),
            "{stream} does not hold {text:?}\n{}",
            self.describe()
        );
        self
    }

    /// Every stdout line parsed as JSON (panics with context on a line that is not JSON).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line {l:?} is not JSON: {e}\n{}", self.describe())
                })
            })
            .collect()
    }
}

/// Run `exe args…` with `stdin`, wait for it and capture everything.
pub fn run(exe: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        cmd: format!("{exe} {}", args.join(" ")),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What gen-events prints with `args` (it must succeed).
pub fn generate(args: &[&str]) -> String {
    // `option_env!`: the library's unit tests share this file and have no binaries.
    let Some(gen) = option_env!("CARGO_BIN_EXE_gen-events") else {
        panic!("generate() is for the integration tests, which have the binaries")
    };
    let r = run(gen, args, b"");
    r.expect_code(0);
    r.stdout
}

/// The events a window-agg summary line counts, over all its types.
pub fn total_events(summary: &Value) -> u64 {
    summary["types"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["totalEventsCaptured"].as_u64().unwrap())
        .sum()
}

/// A port that was free a moment ago, for servers that cannot bind port 0 themselves.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts TCP connections on `addr` (the event a server's start is).
pub fn wait_for_port(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No arguments, for [`spawn`].
pub const NO_ARGS: [&str; 0] = [];

/// Start `exe args…` with stdin, stdout and stderr piped, for tests that talk to a program while it
/// runs (feed it slowly, read its lines as they come, signal it).
pub fn spawn<S: AsRef<std::ffi::OsStr>>(exe: &str, args: impl IntoIterator<Item = S>) -> Child {
    Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"))
}

/// Headless Chromium over WebDriver.
pub mod browser;
/// A real Prometheus server scraping our servers.
pub mod prometheus;

/// An HTTP client for tests: statuses are answers (not errors), nothing waits over 20 s.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}
