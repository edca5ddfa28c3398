//! HTTP/1.1 spoken over raw sockets, for tests that need what a client library hides: half-sent
//! requests, idle connections, exact bytes, and every answer parsed whatever its status.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One HTTP answer: status, headers (lower-case names), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The whole body (by its Content-Length) was there.
    pub complete: bool,
}

impl Answer {
    /// The first answer in `bytes` (`None` when there is none).
    pub fn parse(bytes: &[u8]) -> Option<Answer> {
        Answer::parse_all(bytes).into_iter().next()
    }

    /// Every answer in `bytes`, in order (a kept-alive connection carries several).
    pub fn parse_all(mut bytes: &[u8]) -> Vec<Answer> {
        let mut answers = Vec::new();
        while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let Some(status) = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
            else {
                break;
            };
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let rest = &bytes[end + 4..];
            let body = String::from_utf8_lossy(&rest[..length.min(rest.len())]).into_owned();
            answers.push(Answer {
                status,
                headers,
                body,
                complete: rest.len() >= length,
            });
            bytes = &rest[length.min(rest.len())..];
        }
        answers
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body's `"error"` text when this is a JSON error answer `{"error":"…"}`.
    pub fn json_error(&self) -> Option<String> {
        let is_json = self
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json"));
        let body: Value = serde_json::from_str(&self.body).ok()?;
        is_json.then(|| body["error"].as_str().map(str::to_string))?
    }

    /// Assert this is a JSON error answer `{"error":"…"}` with `status`; returns the message.
    pub fn expect_json_error(&self, status: u16, what: &str) -> String {
        assert_eq!(self.status, status, "{what}: {self:?}");
        self.json_error()
            .unwrap_or_else(|| panic!("{what}: not a JSON error answer: {self:?}"))
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Send `request` on a new connection and read one whole answer (`None`: the server closed
/// without one).
pub fn try_exchange(addr: SocketAddr, request: &[u8]) -> Option<Answer> {
    let mut stream = connect(addr);
    // A server may answer (and close) before it has read all of a large request.
    let _ = stream.write_all(request);
    let mut said = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(answer) = Answer::parse(&said).filter(|a| a.complete) {
            return Some(answer);
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
        }
    }
    Answer::parse(&said)
}

/// [`try_exchange`], panicking when there is no answer.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    try_exchange(addr, request)
        .unwrap_or_else(|| panic!("{addr}: no HTTP answer to {request:.80?}"))
}

/// Everything the server sends until it closes, and how long that took.
pub fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "reading after {:?}: {e}; so far {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&all)
            ),
        }
    }
    (all, started.elapsed())
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

pub fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

pub use crate::common::procfs::open_fds;

/// Raise this process's open-file limit to hold `need` descriptors.
pub fn raise_fd_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= need,
        "this test needs {need} open files; the hard limit is {hard} (raise it with ulimit -Hn)"
    );
    if soft < need {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

/// The runtime the many-clients helpers run their connections on.
fn clients_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Open `count` connections to `addr` that never send a byte, and wait for each to end (the
/// server's answer, if any, and how long after connecting it closed). `on_open` runs once all
/// are open.
pub fn idle_clients(
    addr: SocketAddr,
    count: usize,
    give_up: Duration,
    on_open: impl FnOnce(),
) -> Vec<(Vec<u8>, Option<Duration>)> {
    clients_runtime().block_on(async {
        use tokio::io::AsyncReadExt;
        let mut tasks = Vec::new();
        for _ in 0..count {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connected = Instant::now();
            tasks.push(tokio::spawn(async move {
                let mut said = Vec::new();
                let read = tokio::time::timeout(give_up, stream.read_to_end(&mut said)).await;
                (said, read.is_ok().then(|| connected.elapsed()))
            }));
        }
        on_open();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    })
}

/// Slowloris: `count` connections that each send a request's first line, then one more header
/// line every `every`, never finishing. Returns what each got and when it was closed.
pub fn slowloris(
    addr: SocketAddr,
    count: usize,
    every: Duration,
    give_up: Duration,
) -> Vec<(Vec<u8>, Option<Duration>)> {
    clients_runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tasks = Vec::new();
        for _ in 0..count {
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    return (Vec::new(), Some(started.elapsed()));
                };
                let (mut read, mut write) = stream.into_split();
                let _ = write.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n").await;
                let trickle = async {
                    loop {
                        tokio::time::sleep(every).await;
                        if write.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            // The server closed: wait for the reader to see it.
                            std::future::pending::<()>().await;
                        }
                    }
                };
                let mut said = Vec::new();
                let ended = tokio::select! {
                    _ = read.read_to_end(&mut said) => Some(started.elapsed()),
                    () = trickle => None,
                    () = tokio::time::sleep(give_up) => None,
                };
                (said, ended)
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    })
}
