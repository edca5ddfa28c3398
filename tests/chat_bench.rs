//! chat-bench against a real chat-relay (started here on a free loopback port): a small room holds
//! by the rule, a relay stalled with SIGSTOP for 2 s is reported late/lost (not ok), a search ends
//! with `{"max_clients":…}`, and the command-line contract (help, usage errors, exit codes).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{free_port, run, Daemon, Start, WITHIN};
use nix::sys::signal::Signal;
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_chat-bench");

/// chat-relay is a binary of the same package, built beside chat-bench.
fn relay_exe() -> PathBuf {
    let exe = PathBuf::from(BENCH).with_file_name("chat-relay");
    assert!(
        exe.exists(),
        "{} is missing: these tests run chat-bench against the real chat-relay",
        exe.display()
    );
    exe
}

/// A chat-relay in its own process group, so a signal reaches the parent and every worker.
/// chat-bench against `relay`'s chat URL.
fn bench_on(relay: &Daemon) -> Start {
    Daemon::program(BENCH).args(["--url", &ws_url(relay)])
}

fn start_relay(workers: u32) -> Daemon {
    let exe = relay_exe();
    let workers = workers.to_string();
    Daemon::ours_in_group(
        exe.to_str().unwrap(),
        &["--listen", "127.0.0.1:0", "--workers", &workers],
    )
}

fn ws_url(relay: &Daemon) -> String {
    format!("ws://{}/chat", relay.addr)
}

fn only_line(r: &common::Run) -> Value {
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "expected one result line\n{}", r.describe());
    lines.into_iter().next().unwrap()
}

#[test]
fn a_small_room_on_chat_relay_holds_and_every_delivery_is_counted() {
    let relay = start_relay(2);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("latency.svg");
    let url = ws_url(&relay);
    let pid = relay.child.id().to_string();
    let r = run(
        BENCH,
        &[
            "--url",
            &url,
            "--clients",
            "40",
            "--duration",
            "2s",
            "--interval",
            "500ms",
            "--server-pid",
            &pid,
            "--plot",
            svg.to_str().unwrap(),
        ],
        b"",
    );
    r.expect_code(0);
    let line = only_line(&r);
    assert_eq!(line["ok"], true, "{}", r.describe());
    assert_eq!(line["clients"], 40);
    assert_eq!(line["connected"], 40);
    assert_eq!(line["rounds"], 4);
    assert_eq!(line["sent"], 160);
    assert_eq!(line["expected"], 160 * 40);
    assert_eq!(line["delivered"], 160 * 40);
    assert_eq!(line["lost"], 0);
    assert_eq!(line["late"], 0);
    assert_eq!(line["duplicates"], 0);
    let ms = |k: &str| {
        line[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing\n{}", r.describe()))
    };
    assert!(ms("p50_ms") <= ms("p99_ms") && ms("p99_ms") <= ms("p999_ms"));
    assert!(ms("p999_ms") <= ms("max_ms") && ms("max_ms") <= 1000.0);
    assert!(ms("client_cpu_s") >= 0.0);
    assert!(line["server_cpu_s"].as_f64().is_some(), "{}", r.describe());
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(doc.starts_with("<svg") && doc.contains("<circle"), "{doc}");
}

#[test]
fn a_relay_stalled_for_two_seconds_is_not_ok() {
    let relay = start_relay(1);
    let mut bench = bench_on(&relay)
        .args(["--clients", "10", "--duration", "4s", "--interval", "250ms"])
        .args(["--budget", "1s", "--grace", "1s"])
        .start();
    // Stall the relay as soon as the clients are chatting.
    bench.wait_stderr("chatting", WITHIN);
    relay.signal_group(Signal::SIGSTOP);
    let stalled = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    relay.signal_group(Signal::SIGCONT);
    assert!(stalled.elapsed() < Duration::from_secs(3));
    let status = bench.wait_exit(Duration::from_secs(60));
    let stdout = bench.stdout_lines().join("\n");
    let line: Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(line["ok"], false, "{line}");
    let late = line["late"].as_u64().unwrap();
    let lost = line["lost"].as_u64().unwrap();
    assert!(late + lost > 0, "{line}");
    assert!(line["max_ms"].as_f64().unwrap() > 1000.0, "{line}");
    assert_eq!(
        status.code(),
        Some(1),
        "a run that is not ok exits 1: {line}"
    );
}

#[test]
fn a_search_grows_and_ends_with_max_clients() {
    let relay = start_relay(2);
    let url = ws_url(&relay);
    let r = run(
        BENCH,
        &[
            "--url",
            &url,
            "--search",
            "--start",
            "5",
            "--max",
            "20",
            "--duration",
            "1s",
            "--interval",
            "250ms",
            "--pause",
            "100ms",
        ],
        b"",
    );
    r.expect_code(0);
    let lines = r.json_lines();
    let steps: Vec<u64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["clients"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [5, 10, 20], "{}", r.describe());
    assert!(
        lines[..3].iter().all(|l| l["ok"] == true),
        "{}",
        r.describe()
    );
    assert_eq!(lines[3], serde_json::json!({"max_clients": 20}));
}

#[test]
fn a_closed_stdout_ends_a_search_quietly() {
    let relay = start_relay(1);
    let mut bench = bench_on(&relay)
        .args([
            "--search",
            "--start",
            "2",
            "--max",
            "64",
            "--duration",
            "500ms",
        ])
        .args(["--interval", "250ms", "--pause", "10ms"])
        .stdout_to_test()
        .start();
    let mut first = String::new();
    BufReader::new(bench.child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let line: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["clients"], 2);
    // The reader is gone (as with `| head -1`): the next line fails to write and chat-bench stops.
    let status = bench.wait_exit(Duration::from_secs(60));
    let stderr = bench.stderr_text();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panick"), "{stderr}");
}

#[test]
fn an_unreachable_server_is_an_error() {
    let url = format!("ws://127.0.0.1:{}/chat", free_port());
    let r = run(
        BENCH,
        &["--url", &url, "--clients", "3", "--duration", "1s"],
        b"",
    );
    r.expect_failure(1, "chat-bench: cannot connect to");
    assert!(r.stdout.is_empty());
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--url", "http://127.0.0.1:1/chat"][..],
        &["--url", "wss://127.0.0.1:1/chat"],
        &["--interval", "0s"],
        &["--clients", "0"],
        &["--duration", "soon"],
        &["--server-pid", "999999999"],
    ] {
        let r = run(BENCH, args, b"");
        r.expect_code(2);
        assert!(
            r.stderr.contains("chat-bench") || r.stderr.contains("error:"),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn help_and_version() {
    let r = run(BENCH, &["--help"], b"");
    r.expect_code(0);
    r.expect_stdout("every client sends a message every 3 seconds");
    assert!(r
        .stdout
        .contains("chat-bench --url ws://127.0.0.1:8000/chat"));
    let r = run(BENCH, &["--version"], b"");
    r.expect_code(0);
    assert!(r.stdout.starts_with("chat-bench "));
}
