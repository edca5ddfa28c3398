//! The three HTTP servers (price-api, load-monitor, chat-relay) through the real binaries, spoken
//! to over raw sockets: the connection limits they share (header, body and idle timeouts, the cap
//! on open connections) and a JSON body on every error answer of every route.

mod common;
mod raw_http;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Daemon;
use raw_http::{get, raise_fd_limit, read_to_close, request, Answer};

/// One of the servers, started on a free port with `args` added.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Server {
    PriceApi,
    LoadMonitor,
    ChatRelay,
}

const SERVERS: [Server; 3] = [Server::PriceApi, Server::LoadMonitor, Server::ChatRelay];

impl Server {
    fn exe(self) -> &'static str {
        match self {
            Server::PriceApi => env!("CARGO_BIN_EXE_price-api"),
            Server::LoadMonitor => env!("CARGO_BIN_EXE_load-monitor"),
            Server::ChatRelay => env!("CARGO_BIN_EXE_chat-relay"),
        }
    }

    /// A route that answers 200 to a plain GET.
    fn healthy(self) -> &'static str {
        match self {
            Server::PriceApi => "/health",
            Server::LoadMonitor => "/stats",
            Server::ChatRelay => "/stats",
        }
    }

    fn start(self, args: &[&str]) -> Running {
        self.start_with_fd_limit(args, None)
    }

    /// Start under an open-file limit of `fds` (soft and hard), as a small machine has.
    fn start_with_fd_limit(self, args: &[&str], fds: Option<u64>) -> Running {
        let limit = fds.map(|n| format!("--nofile={n}:{n}"));
        let mut all = Vec::new();
        if let Some(limit) = &limit {
            all.extend([limit.as_str(), self.exe()]);
        }
        all.extend(["--listen", "127.0.0.1:0"]);
        if self == Server::ChatRelay {
            all.extend(["--workers", "1"]);
        }
        all.extend_from_slice(args);
        let daemon = match fds {
            // prlimit sets the limit and execs the server in its place (same pid).
            Some(_) => Daemon::ours("prlimit", &all),
            None => Daemon::ours(self.exe(), &all),
        };
        // chat-relay's parent listens; its worker serves (and holds the connections).
        let pid = if self == Server::ChatRelay {
            assert!(
                daemon.stderr_says(" serving", Duration::from_secs(15)),
                "no worker serves:\n{}",
                daemon.stderr_text()
            );
            let text = daemon.stderr_text();
            let pid = text
                .split("(pid ")
                .nth(1)
                .and_then(|rest| rest.split(')').next());
            pid.unwrap().parse().unwrap()
        } else {
            daemon.pid()
        };
        Running {
            server: self,
            daemon,
            pid,
        }
    }
}

/// A server under test: its process, and the one that holds the connections.
struct Running {
    server: Server,
    daemon: Daemon,
    /// The process that holds the connections.
    pid: u32,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.daemon.addr
    }

    fn connect(&self) -> TcpStream {
        raw_http::connect(self.addr())
    }

    /// Send `request` on a new connection and read one whole answer.
    fn exchange(&self, request: &[u8]) -> Answer {
        raw_http::exchange(self.addr(), request)
    }

    /// Wait until the server has said `needle` on stderr (it writes before it answers, but our
    /// reader thread may not have read it yet).
    fn wait_stderr(&self, needle: &str) {
        assert!(
            self.daemon.stderr_says(needle, Duration::from_secs(10)),
            "{:?} never said {needle:?}:\n{}",
            self.server,
            self.daemon.stderr_text()
        );
    }

    fn open_fds(&self) -> usize {
        raw_http::open_fds(self.pid)
    }
}

#[test]
fn every_error_answer_is_json_on_every_route() {
    let huge = vec![b' '; 3 << 20];
    let big_record = format!(
        "{{\"server\":\"a\",\"cpu\":1,\"ram\":1,\"pad\":\"{}\"}}",
        "x".repeat(5000)
    );
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Long: {}\r\n\r\n",
        "a".repeat(500_000)
    );
    let ws_upgrade = |version: &str| {
        format!(
            "GET /chat HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .into_bytes()
    };
    let mut cases: Vec<(Server, &str, Vec<u8>, u16)> = vec![
        (Server::PriceApi, "unknown route", get("/nope"), 404),
        (Server::PriceApi, "wrong method", request("DELETE", "/health", b""), 405),
        (Server::PriceApi, "GET a POST route", get("/register-request"), 405),
        (Server::PriceApi, "a body that is not JSON", request("POST", "/register-request", b"{oops"), 400),
        (Server::PriceApi, "an id that is not a number", get("/request-data/abc"), 400),
        (Server::PriceApi, "an id never issued", get("/request-data/99"), 404),
        (Server::PriceApi, "a body over the limit", request("POST", "/register-request", &huge), 413),
        (Server::LoadMonitor, "unknown route", get("/nope"), 404),
        (Server::LoadMonitor, "wrong method", request("DELETE", "/servers", b""), 405),
        (Server::LoadMonitor, "PUT a record", request("PUT", "/addserver", b"{}"), 405),
        (Server::LoadMonitor, "a record that is not JSON", request("POST", "/addserver", b"{oops"), 400),
        (Server::LoadMonitor, "a record without a server", request("POST", "/addserver", br#"{"cpu":1,"ram":1}"#), 400),
        (Server::LoadMonitor, "an unknown server", get("/report/nobody"), 404),
        (Server::LoadMonitor, "a bad server name", get("/report/a%20b"), 400),
        (Server::LoadMonitor, "a body over the limit", request("POST", "/addserver", big_record.as_bytes()), 413),
        (Server::LoadMonitor, "a bulk body over the limit", request("POST", "/records", &huge), 413),
        (Server::LoadMonitor, "a record from the far past", request("POST", "/addserver", br#"{"server":"a","cpu":1,"ram":1,"dt":1000}"#), 422),
        (Server::ChatRelay, "unknown route", get("/nope"), 404),
        (Server::ChatRelay, "POST the chat", request("POST", "/chat", br#"{"message":"hi"}"#), 405),
        (Server::ChatRelay, "POST the page", request("POST", "/", b""), 405),
        (Server::ChatRelay, "the chat without an upgrade", get("/chat"), 400),
        (Server::ChatRelay, "a WebSocket version not spoken", ws_upgrade("8"), 400),
        (Server::ChatRelay, "a WebSocket upgrade without a key", b"GET /chat HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(), 400),
    ];
    for server in SERVERS {
        cases.push((
            server,
            "not HTTP at all",
            b"HELLO THERE\r\n\r\n".to_vec(),
            400,
        ));
        cases.push((
            server,
            "headers too large",
            long_header.clone().into_bytes(),
            431,
        ));
    }
    for server in SERVERS {
        let running = server.start(&[]);
        for (s, what, bytes, status) in &cases {
            if *s == server {
                let answer = running.exchange(bytes);
                let message = answer.expect_json_error(*status, &format!("{server:?}: {what}"));
                assert!(!message.is_empty(), "{server:?}: {what}");
            }
        }
    }
}

#[test]
fn a_405_says_which_methods_the_route_takes() {
    let relay = Server::ChatRelay.start(&[]);
    let answer = relay.exchange(&request("POST", "/chat", b""));
    let message = answer.expect_json_error(405, "POST /chat");
    assert!(
        message.contains("POST") && message.contains("/chat") && message.contains("GET"),
        "{message}"
    );
    assert!(
        answer.header("allow").is_some_and(|v| v.contains("GET")),
        "{answer:?}"
    );
}

#[test]
fn silent_and_half_sent_connections_are_closed_after_the_header_timeout() {
    for server in SERVERS {
        let running = server.start(&["--header-timeout", "1s", "--idle-timeout", "30s"]);
        // Connected, nothing sent: closed without a word.
        let mut silent = running.connect();
        let (said, took) = read_to_close(&mut silent);
        assert!(said.is_empty(), "{server:?}: {said:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{server:?}: a silent connection closed after {took:?}"
        );
        // Slowloris: a header line every 200 ms never completes the request. The deadline runs
        // from the first byte, so the trickle does not extend it.
        let mut slow = running.connect();
        let started = Instant::now();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n").unwrap();
        slow.set_nonblocking(true).unwrap();
        let mut said = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{server:?}: a slowloris is still open after {:?}",
                started.elapsed()
            );
            match slow.read(&mut buf) {
                Ok(0) => break started.elapsed(),
                Ok(n) => said.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = slow.write_all(b"X-Slow: 1\r\n");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(_) => break started.elapsed(),
            }
        };
        assert!(
            closed >= Duration::from_millis(900),
            "{server:?}: {closed:?}"
        );
        let answer = Answer::parse(&said).unwrap_or_else(|| panic!("{server:?}: {said:?}"));
        answer.expect_json_error(408, &format!("{server:?} slowloris"));
        // The server still answers everybody else.
        assert_eq!(running.exchange(&get(server.healthy())).status, 200);
    }
}

#[test]
fn a_kept_alive_connection_is_closed_after_the_idle_timeout_not_the_header_timeout() {
    for server in SERVERS {
        let running = server.start(&["--header-timeout", "1s", "--idle-timeout", "3s"]);
        let mut stream = running.connect();
        let ask = format!("GET {} HTTP/1.1\r\nHost: test\r\n\r\n", server.healthy());
        stream.write_all(ask.as_bytes()).unwrap();
        // Past the header timeout but within the idle one, the connection still takes a request.
        std::thread::sleep(Duration::from_millis(1500));
        stream.write_all(ask.as_bytes()).unwrap();
        let second_sent = Instant::now();
        let (said, _) = read_to_close(&mut stream);
        let idle = second_sent.elapsed();
        let answers = Answer::parse_all(&said);
        assert_eq!(answers.len(), 2, "{server:?}: {answers:?}");
        assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
        assert!(
            idle >= Duration::from_millis(2800) && idle < Duration::from_secs(8),
            "{server:?}: closed {idle:?} after the last request"
        );
    }
}

#[test]
fn a_body_that_does_not_arrive_gets_408() {
    for (server, path) in [
        (Server::PriceApi, "/register-request"),
        (Server::LoadMonitor, "/addserver"),
    ] {
        let running = server.start(&["--body-timeout", "1s"]);
        let mut stream = running.connect();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let (said, took) = read_to_close(&mut stream);
        assert!(took < Duration::from_secs(5), "{server:?}: {took:?}");
        Answer::parse(&said)
            .unwrap_or_else(|| panic!("{server:?}: {said:?}"))
            .expect_json_error(408, &format!("{server:?} slow body"));
    }
}

#[test]
fn connections_over_the_cap_get_a_json_503_and_are_counted() {
    for server in SERVERS {
        let running = server.start(&["--max-connections", "3", "--header-timeout", "30s"]);
        // Accepts are in arrival order: the three take the seats before the fourth comes.
        let held: Vec<TcpStream> = (0..3).map(|_| running.connect()).collect();
        let answer = running.exchange(&get(server.healthy()));
        let message = answer.expect_json_error(503, &format!("{server:?} over the cap"));
        assert!(message.contains("connection limit"), "{message}");
        assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
        running.wait_stderr("(--max-connections 3): refused 1 connection with 503");
        drop(held);
        // The seats come back as the server sees the closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = running.exchange(&get(server.healthy()));
            if answer.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{server:?}: still {answer:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The fault of the issue: clients holding thousands of idle sockets took a server to its fd
/// limit, and then nobody was served. Here 2,000 idle clients meet a server whose open-file limit
/// is 1,024, with the default cap: the excess is refused with a JSON 503, the held ones are closed
/// after the header timeout, the server's fds stay under the cap (plus the refusals in progress)
/// all along, it never fails an accept, and it serves again at once.
#[test]
fn two_thousand_idle_connections_cannot_exhaust_a_server() {
    const CONNECTIONS: usize = 2000;
    const FD_LIMIT: u64 = 1024;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    raise_fd_limit(CONNECTIONS as u64 + 500);
    let cap = pipeworks::server::conn::cap_for(FD_LIMIT);
    let refusing = pipeworks::server::conn::refusals_for(FD_LIMIT, cap);
    for server in SERVERS {
        let running = server.start_with_fd_limit(&["--header-timeout", "2s"], Some(FD_LIMIT));
        let before = running.open_fds();
        let addr = running.addr();
        let peak_fds = common::procfs::PeakFds::watch(running.pid);
        let outcomes = raw_http::idle_clients(addr, CONNECTIONS, Duration::from_secs(20), || {});
        let peak = peak_fds.stop();
        let mut refused = 0;
        for (said, ended) in &outcomes {
            let after = ended.unwrap_or_else(|| panic!("{server:?}: a socket is still open"));
            match Answer::parse(said) {
                Some(answer) => {
                    answer.expect_json_error(503, "over the cap");
                    refused += 1;
                }
                // Held, then closed by the header timeout (not dropped early).
                None => assert!(
                    after >= HEADER_TIMEOUT - Duration::from_millis(100),
                    "{server:?}: closed without a word after {after:?}"
                ),
            }
        }
        assert!(refused > 0, "{server:?}: nothing was refused");
        // The accept loop holds one more socket while it waits for a refusal permit.
        assert!(
            peak <= before + cap + refusing + 1,
            "{server:?}: {peak} fds open with {CONNECTIONS} idle clients \
             (cap {cap}, {refusing} refusals, {before} before)"
        );
        let text = running.daemon.stderr_text();
        assert!(!text.contains("Too many open files"), "{server:?}: {text}");
        // Everybody else is served again, and the fds came back.
        assert_eq!(running.exchange(&get(server.healthy())).status, 200);
        let deadline = Instant::now() + Duration::from_secs(10);
        while running.open_fds() > before + 2 {
            assert!(
                Instant::now() < deadline,
                "{server:?}: fds stay at {}",
                running.open_fds()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{server:?}: {CONNECTIONS} idle connections: {refused} refused with 503, \
             peak {peak} fds ({before} before)"
        );
    }
}
