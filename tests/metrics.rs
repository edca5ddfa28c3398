//! `GET /metrics` on the three servers, read back through a real Prometheus (Debian's
//! `prometheus`) scraping all of them while they serve real traffic (a chat across two workers,
//! books priced by `reprice`, posted load), and checked by `promtool check metrics`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{agent, Daemon};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CHAT: &str = env!("CARGO_BIN_EXE_chat-relay");
const PRICE: &str = env!("CARGO_BIN_EXE_price-api");
const LOAD: &str = env!("CARGO_BIN_EXE_load-monitor");
const REPRICE: &str = env!("CARGO_BIN_EXE_reprice");
const WAIT: Duration = Duration::from_secs(30);

fn post(agent: &ureq::Agent, url: &str, body: &str) -> u16 {
    let mut r = agent.post(url).send(body).unwrap();
    let _ = r.body_mut().read_to_string();
    r.status().as_u16()
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    let mut r = agent.get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A chat client and the worker that took it.
async fn connect(url: &str) -> (Ws, usize) {
    let (ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    let worker = response.headers()["x-chat-worker"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (ws, worker)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame in time")
            .expect("stream ended")
            .expect("websocket error");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn worker_pids(relay: &Daemon) -> Vec<(usize, i32)> {
    let text = relay.stderr_text();
    text.lines()
        .filter(|l| l.contains(" serving"))
        .filter_map(|l| {
            let rest = l.split("worker ").nth(1)?;
            let slot = rest.split(' ').next()?.parse().ok()?;
            let pid = rest
                .split("(pid ")
                .nth(1)?
                .split(')')
                .next()?
                .parse()
                .ok()?;
            Some((slot, pid))
        })
        .collect()
}

fn wait_for_workers(relay: &Daemon, count: usize) {
    relay.wait_stderr_count(" serving", count, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_every_servers_counts() {
    let relay = Daemon::ours(CHAT, &["--workers", "2", "--listen", "127.0.0.1:0"]);
    wait_for_workers(&relay, 2);
    let price = Daemon::ours(PRICE, &["--listen", "127.0.0.1:0"]);
    let failing = Daemon::ours(PRICE, &["--listen", "127.0.0.1:0", "--fail-rate", "1"]);
    let load = Daemon::ours(LOAD, &["--listen", "127.0.0.1:0", "--clock", "records"]);
    let prometheus = Prometheus::scraping(
        &[
            ("chat", &[relay.addr.to_string()]),
            ("price", &[price.addr.to_string(), failing.addr.to_string()]),
            ("load", &[load.addr.to_string()]),
        ],
        "500ms",
    );

    // A chat between clients of both workers: each of 4 says one thing, everybody hears all 4.
    let url = format!("ws://{}/chat", relay.addr);
    let mut clients = Vec::new();
    let deadline = Instant::now() + WAIT;
    while clients.len() < 4 || clients.iter().all(|(_, w)| *w == clients[0].1) {
        assert!(
            Instant::now() < deadline,
            "every client landed on one worker"
        );
        clients.push(connect(&url).await);
    }
    let count = clients.len();
    let n = count as f64;
    for (i, (ws, _)) in clients.iter_mut().enumerate() {
        ws.send(Message::text(
            json!({"message": format!("hi {i}")}).to_string(),
        ))
        .await
        .unwrap();
    }
    for (ws, _) in &mut clients {
        for _ in 0..count {
            assert!(next_json(ws).await["message"].is_string());
        }
    }
    // One frame refused: not a message.
    clients[0]
        .0
        .send(Message::text(r#"{"text":"no message key"}"#))
        .await
        .unwrap();
    assert!(next_json(&mut clients[0].0).await["error"].is_string());

    // Priced books: reprice registers each tick's book with price-api and polls whether it sold
    // (ids 1-4: two sold, two not); one poll of an id never issued; the failing price-api
    // refuses every registration.
    let ticks: String = (1..=4)
        .map(|n| format!("{{\"tick\":{n},\"at\":\"2026-11-21T11:20:00.000000Z\"}}\n"))
        .collect();
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data.csv");
    let priced = common::run(
        REPRICE,
        &["--csv", csv, "--api", &price.url(), "--poll-after", "20ms"],
        ticks.as_bytes(),
    );
    let lines = priced.expect_code(0).json_lines();
    assert_eq!(lines.len(), 4, "{}", priced.describe());
    assert!(
        lines.iter().all(|l| l["sold"].is_boolean()),
        "{}",
        priced.describe()
    );
    let http = agent();
    assert_eq!(
        get(&http, &format!("{}/request-data/99", price.url())).0,
        404
    );
    for _ in 0..3 {
        assert_eq!(
            post(&http, &format!("{}/register-request", failing.url()), ""),
            503
        );
    }

    // Posted load: five records of two servers, one that is not JSON, one a day too old.
    let add = format!("{}/addserver", load.url());
    for (server, dt) in [("a", 0), ("a", 60), ("a", 120), ("b", 0), ("b", 3600)] {
        let body = json!({"server": server, "cpu": 1.5, "ram": 2.5, "dt": 1_460_300_000 + dt});
        assert_eq!(post(&http, &add, &body.to_string()), 200);
    }
    assert_eq!(post(&http, &add, "{not json"), 400);
    let old = json!({"server": "a", "cpu": 1, "ram": 1, "dt": 1_460_300_000 - 2 * 86_400});
    assert_eq!(post(&http, &add, &old.to_string()), 422);

    let expect = [
        // Relay-wide, whichever worker Prometheus's connection landed on.
        ("chat_relay_clients_connected{job='chat'}", n),
        ("chat_relay_messages_received_total{job='chat'}", n),
        ("chat_relay_messages_delivered_total{job='chat'}", n * n),
        (
            "chat_relay_frames_refused_total{job='chat',reason='invalid'}",
            1.0,
        ),
        ("chat_relay_worker_restarts_total{job='chat'}", 0.0),
        (
            "http_requests_total{job='chat',route='/chat',status='101'}",
            n,
        ),
        ("sum(price_api_registrations_total{job='price'})", 4.0),
        ("sum(price_api_polls_total{job='price',result='sold'})", 2.0),
        (
            "sum(price_api_polls_total{job='price',result='unsold'})",
            2.0,
        ),
        (
            "sum(price_api_polls_total{job='price',result='unknown'})",
            1.0,
        ),
        (
            "sum(price_api_injected_failures_total{job='price',route='/register-request'})",
            3.0,
        ),
        (
            "sum(http_requests_total{job='price',route='/register-request',status='200'})",
            4.0,
        ),
        (
            "sum(http_requests_total{job='price',route='/register-request',status='503'})",
            3.0,
        ),
        (
            "sum(http_request_duration_seconds_count{job='price',route='/request-data/{id}'})",
            5.0,
        ),
        ("load_monitor_servers{job='load'}", 2.0),
        ("load_monitor_records_accepted_total{job='load'}", 5.0),
        (
            "load_monitor_records_refused_total{job='load',reason='invalid'}",
            1.0,
        ),
        (
            "load_monitor_records_refused_total{job='load',reason='too_old'}",
            1.0,
        ),
        (
            "http_requests_total{job='load',route='/addserver',status='200'}",
            5.0,
        ),
    ];
    for (query, value) in expect {
        prometheus.wait_for(query, value, WAIT);
    }

    // A worker killed: its clients are gone from the gauge, the restart is counted, and the
    // counters carry on from where they were.
    let (slot, pid) = worker_pids(&relay)[0];
    let on_it = clients.iter().filter(|(_, w)| *w == slot).count() as f64;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    prometheus.wait_for("chat_relay_worker_restarts_total{job='chat'}", 1.0, WAIT);
    prometheus.wait_for("chat_relay_clients_connected{job='chat'}", n - on_it, WAIT);
    prometheus.wait_for(
        "chat_relay_messages_delivered_total{job='chat'}",
        n * n,
        WAIT,
    );
}

/// `promtool check metrics` finds nothing wrong with any server's exposition.
#[test]
fn every_exposition_passes_promtool() {
    let relay = Daemon::ours(CHAT, &["--workers", "2", "--listen", "127.0.0.1:0"]);
    let price = Daemon::ours(PRICE, &["--listen", "127.0.0.1:0", "--fail-rate", "0.5"]);
    let load = Daemon::ours(LOAD, &["--listen", "127.0.0.1:0", "--clock", "records"]);
    let http = agent();
    // Some of every kind of series, so the check sees labels and histograms.
    for _ in 0..10 {
        post(&http, &format!("{}/register-request", price.url()), "");
        get(&http, &format!("{}/request-data/1", price.url()));
    }
    post(
        &http,
        &format!("{}/addserver", load.url()),
        r#"{"server":"a","cpu":1,"ram":2,"dt":1460300000}"#,
    );
    get(&http, &format!("{}/report/a", load.url()));
    get(&http, &format!("{}/stats", relay.url()));
    for server in [&relay, &price, &load] {
        let (status, text) = get(&http, &format!("{}/metrics", server.url()));
        assert_eq!(status, 200);
        assert!(text.contains("http_requests_total{"), "{text}");
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package)");
        std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let out = promtool.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on {}: {}\n{}{}",
            server.url(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let content_type = http
            .get(format!("{}/metrics", server.url()))
            .call()
            .unwrap()
            .headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
    }
}

/// The value of one series (`name{labels}` exactly as the exposition writes it) in `text`.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Poll the relay's `/metrics` (a new connection each time, so any worker may answer) until
/// `name` reads `expected`.
fn wait_for_series(relay: &Daemon, name: &str, expected: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = ureq::get(&format!("{}/metrics", relay.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let got = series(&text, name);
        if got == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: expected {expected}, the relay says {got:?}\n{}",
            relay.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Refused frames by reason, and each worker's Redis coming back, whichever worker answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_redis_reconnects_are_counted_for_the_relay() {
    let port = common::free_port();
    let redis = Daemon::redis_on(port);
    let redis_url = format!("redis://127.0.0.1:{port}");
    let relay = Daemon::ours(
        CHAT,
        &[
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &redis_url,
            "--max-message",
            "64",
        ],
    );
    wait_for_workers(&relay, 2);
    let url = format!("ws://{}/chat", relay.addr);
    let (mut binary, _) = connect(&url).await;
    binary.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let (mut big, _) = connect(&url).await;
    big.send(Message::text("x".repeat(100))).await.unwrap();
    let (mut invalid, _) = connect(&url).await;
    invalid.send(Message::text("[1,2]")).await.unwrap();
    assert!(next_json(&mut invalid).await["error"].is_string());
    let refused = "chat_relay_frames_refused_total{reason=";
    wait_for_series(&relay, &format!("{refused}\"binary\"}}"), 1.0);
    wait_for_series(&relay, &format!("{refused}\"too_big\"}}"), 1.0);
    wait_for_series(&relay, &format!("{refused}\"invalid\"}}"), 1.0);
    // The two closed clients left; the one still here is counted once, by whichever worker.
    wait_for_series(&relay, "chat_relay_clients_connected", 1.0);

    drop(redis);
    let deadline = Instant::now() + WAIT;
    while relay.stderr_text().matches("reconnecting").count() < 2 {
        assert!(Instant::now() < deadline, "{}", relay.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for_series(&relay, "chat_relay_redis_reconnects_total", 0.0);
    let _redis = Daemon::redis_on(port);
    wait_for_series(&relay, "chat_relay_redis_reconnects_total", 2.0);
}
