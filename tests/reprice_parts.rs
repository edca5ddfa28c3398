//! ticker, data-manager and price-api through their real binaries.

mod common;
use common::agent;
mod reprice_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{run, Daemon};
use nix::sys::signal::Signal;
use reprice_support::*;
use serde_json::{json, Value};

fn micros(at: &Value) -> i64 {
    let text = at.as_str().unwrap();
    pipeworks::time::parse_timestamp(text).unwrap()
}

// ---------------------------------------------------------------- ticker

#[test]
fn ticker_counts_on_an_absolute_schedule() {
    let r = run(&exe("ticker"), &["20ms", "--count", "5"], b"");
    r.expect_code(0);
    let ticks = r.json_lines();
    // On a loaded machine a tick may be missed (and reported); the schedule still holds exactly.
    let mut expected = 1;
    for t in &ticks {
        let missed = t["missed"].as_u64().unwrap_or(0);
        assert_eq!(t["tick"], json!(expected + missed), "{}", r.describe());
        expected += missed + 1;
    }
    assert_eq!(expected, 6, "ends with tick 5\n{}", r.describe());
    // Due times are exact multiples of the period, whatever the scheduling jitter.
    for pair in ticks.windows(2) {
        let gap = pair[1]["tick"].as_i64().unwrap() - pair[0]["tick"].as_i64().unwrap();
        assert_eq!(
            micros(&pair[1]["at"]) - micros(&pair[0]["at"]),
            20_000 * gap
        );
    }
    let aligned = run(&exe("ticker"), &["100ms", "--align", "--count", "2"], b"");
    for t in aligned.expect_code(0).json_lines() {
        assert_eq!(micros(&t["at"]) % 100_000, 0, "{}", aligned.describe());
    }
}

#[test]
fn ticker_reports_missed_ticks_after_a_stall_instead_of_bursting() {
    let mut ticker = start("ticker", &["50ms"], Stdio::null());
    let first = ticker.json();
    ticker.signal(Signal::SIGSTOP);
    // The stall is the fault under test: it has to last several periods.
    std::thread::sleep(Duration::from_millis(400));
    ticker.signal(Signal::SIGCONT);
    let next = ticker.json();
    let missed = next["missed"].as_u64().unwrap_or(0);
    assert!(missed >= 3, "after a 400 ms stall: {first} then {next}");
    assert_eq!(
        next["tick"].as_u64().unwrap(),
        first["tick"].as_u64().unwrap() + missed + 1
    );
    let after = ticker.json();
    assert_eq!(
        after["tick"].as_u64().unwrap(),
        next["tick"].as_u64().unwrap() + 1
    );
    assert!(after.get("missed").is_none());
    assert!(ticker.is_running());
}

#[test]
fn ticker_ends_quietly_when_its_reader_goes_away() {
    let mut child = std::process::Command::new(exe("ticker"))
        .arg("10ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"tick\":"), "{first}");
    drop(out); // like `| head -1`
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

#[test]
fn ticker_keeps_ticking_into_a_fifo_with_no_reader_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ticks");
    let fifo_s = fifo.to_str().unwrap().to_string();
    let mut ticker = start("ticker", &["20ms", "--out", &fifo_s], Stdio::null());
    ticker.wait_stderr("no reader on", WITHIN);

    // A reader attaches: delivery starts, and the first line counts what nobody read.
    let reader = BufReader::new(std::fs::File::open(&fifo).unwrap());
    let mut lines = reader.lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(first["unread"].as_u64().unwrap() >= 1, "{first}");
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        second["tick"].as_u64().unwrap(),
        first["tick"].as_u64().unwrap() + 1
    );
    ticker.wait_stderr("reader attached", WITHIN);

    // The reader dies: the ticker notices, keeps ticking, and a new reader gets later ticks.
    drop(lines);
    ticker.wait_stderr("went away", WITHIN);
    assert!(ticker.is_running());
    let mut again = BufReader::new(std::fs::File::open(&fifo).unwrap()).lines();
    let resumed: Value = serde_json::from_str(&again.next().unwrap().unwrap()).unwrap();
    assert!(
        resumed["tick"].as_u64().unwrap() > second["tick"].as_u64().unwrap() + 1,
        "{resumed}"
    );
    assert!(resumed["unread"].as_u64().unwrap() >= 1, "{resumed}");
    assert!(ticker.is_running());
}

#[test]
fn ticker_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    let r = run(
        &exe("ticker"),
        &["1s", "--out", plain.to_str().unwrap()],
        b"",
    );
    r.expect_failure(2, "not a named pipe");
    run(&exe("ticker"), &["5"], b"").expect_code(2);
    run(&exe("ticker"), &["0s"], b"").expect_code(2);
    for name in ["ticker", "data-manager", "price-api", "reprice"] {
        let help = run(&exe(name), &["--help"], b"");
        help.expect_code(0);
        help.expect_stdout("Examples:");
        run(&exe(name), &["--version"], b"").expect_code(0);
    }
}

// ---------------------------------------------------------------- data-manager

fn ask(csv: &str, extra: &[&str], requests: &[Value]) -> common::Run {
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let mut args = vec!["--csv", csv];
    args.extend_from_slice(extra);
    run(&exe("data-manager"), &args, input.as_bytes())
}

#[test]
fn data_manager_serves_the_challenge_csv_row_by_row() {
    let csv = challenge_csv();
    let prices = csv_prices(&csv);
    assert_eq!(prices.len(), 977);
    let ticks = [1u64, 5, 6, 123, 977, 978, 5000, 3];
    let requests: Vec<Value> = ticks
        .iter()
        .map(|&t| json!({"id": t, "tick": t, "points": 5}))
        .collect();
    let r = ask(&csv, &[], &requests);
    r.expect_code(0);
    let replies = r.json_lines();
    assert_eq!(replies.len(), ticks.len());
    for (&t, reply) in ticks.iter().zip(&replies) {
        let last = t.min(977);
        let first = last.saturating_sub(4).max(1);
        let want: Vec<f64> = prices[(first - 1) as usize..last as usize].to_vec();
        assert_eq!(reply["id"], json!(t));
        assert_eq!(reply["first_row"], json!(first), "{reply}");
        assert_eq!(reply["last_row"], json!(last), "{reply}");
        let got: Vec<f64> = serde_json::from_value(reply["prices"].clone()).unwrap();
        assert_eq!(got, want, "tick {t}");
    }
}

#[test]
fn data_manager_wraps_and_serves_the_synthetic_example() {
    let csv = example("data.csv");
    let prices = csv_prices(&csv);
    let n = prices.len() as u64;
    let r = ask(
        &csv,
        &["--at-end", "wrap"],
        &[json!({"id": 1, "tick": n + 2, "points": 4})],
    );
    r.expect_code(0);
    let reply = &r.json_lines()[0];
    let got: Vec<f64> = serde_json::from_value(reply["prices"].clone()).unwrap();
    let want = vec![
        prices[n as usize - 2],
        prices[n as usize - 1],
        prices[0],
        prices[1],
    ];
    assert_eq!(got, want, "{reply}");
    assert_eq!(
        (reply["first_row"].as_u64(), reply["last_row"].as_u64()),
        (Some(n - 1), Some(2))
    );
}

#[test]
fn data_manager_reports_bad_rows_and_requests_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("prices.csv");
    std::fs::write(&csv, "Timestamp,Price\n1,10.5\n2,ten\n3,11.5\n4,12.5\n").unwrap();
    let csv = csv.to_str().unwrap();
    let input = "{\"id\":1,\"tick\":3}\nnot json\n{\"id\":2,\"tick\":\"x\"}\n{\"id\":3,\"tick\":2,\"points\":2}\n";
    let r = run(&exe("data-manager"), &["--csv", csv], input.as_bytes());
    r.expect_code(1);
    let replies = r.json_lines();
    assert_eq!(replies.len(), 4, "{}", r.describe());
    assert_eq!(replies[0]["prices"], json!([10.5, 11.5, 12.5]));
    assert!(
        replies[1]["error"].as_str().unwrap().starts_with("line 2:"),
        "{}",
        r.describe()
    );
    assert_eq!(replies[2]["id"], json!(2));
    assert!(replies[2]["error"].is_string());
    assert_eq!(replies[3]["prices"], json!([10.5, 11.5]));
    r.expect_stderr("prices.csv: line 3: Price \"ten\" is not a number");
    r.expect_stderr("data-manager: line 2:");
    r.expect_stderr("skipped 1 bad row");

    let missing = ask("/nonexistent/prices.csv", &[], &[]);
    missing.expect_code(1);
    std::fs::write(dir.path().join("bad.csv"), "When,Cost\n1,2\n").unwrap();
    let header = ask(dir.path().join("bad.csv").to_str().unwrap(), &[], &[]);
    header.expect_failure(1, "Timestamp and Price");
}

#[test]
fn data_manager_answers_for_many_books() {
    let r = ask(
        &example("books.csv"),
        &[],
        &[
            json!({"id": 1, "tick": 7}),
            json!({"id": 2, "tick": 7, "book": "book-00002", "points": 2}),
        ],
    );
    r.expect_code(0);
    let replies = r.json_lines();
    let books = replies[0]["books"].as_array().unwrap();
    let names: Vec<&str> = books.iter().map(|b| b["book"].as_str().unwrap()).collect();
    assert_eq!(names, ["book-00001", "book-00002", "book-00003"]);
    for b in books {
        assert_eq!(b["prices"].as_array().unwrap().len(), 5);
        assert_eq!(
            (b["first_row"].as_u64(), b["last_row"].as_u64()),
            (Some(3), Some(7))
        );
    }
    assert_eq!(replies[1]["book"], json!("book-00002"));
    assert_eq!(
        replies[1]["prices"],
        json!(books[1]["prices"].as_array().unwrap()[3..])
    );
}

#[test]
fn data_manager_follows_a_growing_file() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.csv");
    std::fs::write(&path, "Timestamp,Price\n1,10\n").unwrap();
    let mut dm = start(
        "data-manager",
        &["--csv", path.to_str().unwrap(), "--follow"],
        Stdio::piped(),
    );
    dm.send("{\"id\":1,\"tick\":3}\n");
    assert_eq!(dm.json()["prices"], json!([10]));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"2,11\n3,1").unwrap();
    file.flush().unwrap();
    dm.send("{\"id\":2,\"tick\":3}\n");
    assert_eq!(
        dm.json()["prices"],
        json!([10, 11]),
        "a half-written row is not read yet"
    );
    file.write_all(b"2\n").unwrap();
    dm.send("{\"id\":3,\"tick\":3}\n");
    let reply = dm.json();
    assert_eq!(reply["prices"], json!([10, 11, 12]));
    assert_eq!(reply["last_row"], json!(3));
    dm.close_stdin();
    assert_eq!(dm.wait_exit(WITHIN).code(), Some(0));
}

#[test]
fn data_manager_computes_a_huge_wrapped_tick_and_answers_the_next_request() {
    let csv = example("data.csv");
    let prices = csv_prices(&csv);
    let n = prices.len() as u64;
    let mut dm = start(
        "data-manager",
        &["--csv", &csv, "--at-end", "wrap"],
        Stdio::piped(),
    );
    dm.send("{\"id\":1,\"tick\":18446744073709551615,\"points\":3}\n");
    let reply = dm.json();
    let last = (u64::MAX - 1) % n + 1;
    assert_eq!(reply["last_row"], json!(last), "{reply}");
    let got: Vec<f64> = serde_json::from_value(reply["prices"].clone()).unwrap();
    let want: Vec<f64> = (0..3)
        .map(|k| prices[((u64::MAX - 2 + k - 1) % n) as usize])
        .collect();
    assert_eq!(got, want, "{reply}");
    // Later requests are not held up behind it.
    dm.send("{\"id\":2,\"tick\":2,\"points\":1}\n");
    assert_eq!(dm.json()["prices"], json!([prices[1]]));
    dm.close_stdin();
    assert_eq!(dm.wait_exit(WITHIN).code(), Some(0));
}

#[test]
fn data_manager_refuses_huge_fields_in_bounded_memory_and_non_positive_prices() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(b"Timestamp,Price\n1,10\n2,-5\n3,0\n4,")
        .unwrap();
    let chunk = vec![b'7'; 1 << 20];
    for _ in 0..100 {
        file.write_all(&chunk).unwrap();
    }
    file.write_all(b"\n5,11\n6,12\n").unwrap();
    drop(file);
    let mut dm = start(
        "data-manager",
        &["--csv", path.to_str().unwrap()],
        Stdio::piped(),
    );
    dm.send("{\"id\":1,\"tick\":3}\n");
    let reply = dm.json();
    assert_eq!(reply["prices"], json!([10, 11, 12]), "{reply}");
    // Peak resident memory while the 100 MB row was read: nowhere near the row's size.
    let status = std::fs::read_to_string(format!("/proc/{}/status", dm.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(peak_kb < 30_000, "peak RSS {peak_kb} kB for a 100 MB field");
    dm.close_stdin();
    assert_eq!(dm.wait_exit(WITHIN).code(), Some(1));
    dm.wait_stderr("skipped 3 bad rows", WITHIN);
    let stderr = dm.stderr_text();
    assert!(
        stderr.contains("prices.csv: line 3: Price \"-5\" is not positive"),
        "{stderr}"
    );
    assert!(
        stderr.contains("prices.csv: line 4: Price \"0\" is not positive"),
        "{stderr}"
    );
    assert!(
        stderr.contains("prices.csv: line 5: row longer than 65536 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("skipped 3 bad rows"), "{stderr}");
    assert!(
        stderr.len() < 2_000,
        "stderr echoes the field: {} bytes",
        stderr.len()
    );
}

// ---------------------------------------------------------------- price-api

fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("POST", Some(body)) => agent.post(url).content_type("application/json").send(body),
        ("POST", None) => agent.post(url).send_empty(),
        ("DELETE", _) => agent.delete(url).call(),
        ("PUT", _) => agent.put(url).send_empty(),
        _ => unreachable!(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url}: body {text:?} is not JSON: {e}"));
    (status, json)
}

#[test]
fn price_api_issues_unique_ids_and_answers_sales_by_parity() {
    let api = Daemon::ours(&exe("price-api"), &["--listen", "127.0.0.1:0"]);
    let base = api.url();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let base = base.clone();
        handles.push(std::thread::spawn(move || {
            let agent = agent();
            (0..50)
                .map(|_| {
                    let (status, body) =
                        call(&agent, "POST", &format!("{base}/register-request"), None);
                    assert_eq!(status, 200);
                    body["id"].as_u64().unwrap()
                })
                .collect::<Vec<u64>>()
        }));
    }
    let mut ids: Vec<u64> = Vec::new();
    for h in handles {
        let mine = h.join().unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "ids increase for each client"
        );
        ids.extend(mine);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<u64>>());
    let agent = agent();
    let (status, body) = call(
        &agent,
        "POST",
        &format!("{base}/register-request"),
        Some(r#"{"book":"b1","price":10}"#),
    );
    assert_eq!((status, body), (200, json!({"id": 201})));
    assert_eq!(
        call(&agent, "GET", &format!("{base}/request-data/200"), None),
        (200, json!({"sold": true}))
    );
    assert_eq!(
        call(&agent, "GET", &format!("{base}/request-data/201"), None),
        (200, json!({"sold": false}))
    );
}

#[test]
fn price_api_answers_every_error_with_json() {
    let api = Daemon::ours(&exe("price-api"), &["--listen", "127.0.0.1:0"]);
    let base = api.url();
    let agent = agent();
    call(&agent, "POST", &format!("{base}/register-request"), None);
    let cases = [
        ("GET", "/request-data/2", None, 404),
        ("GET", "/request-data/0", None, 404),
        ("GET", "/request-data/abc", None, 400),
        ("GET", "/request-data/-1", None, 400),
        ("GET", "/request-data/99999999999999999999999", None, 400),
        ("POST", "/register-request", Some("{not json"), 400),
        ("GET", "/register-request", None, 405),
        ("DELETE", "/request-data/1", None, 405),
        ("PUT", "/register-request", None, 405),
        ("GET", "/no/such/route", None, 404),
    ];
    for (method, path, body, want) in cases {
        let (status, json) = call(&agent, method, &format!("{base}{path}"), body);
        assert_eq!(status, want, "{method} {path}: {json}");
        assert!(json["error"].is_string(), "{method} {path}: {json}");
    }
    // A malformed request and a dropped connection do not hurt the server.
    use std::io::{Read, Write};
    let mut raw = std::net::TcpStream::connect(api.addr).unwrap();
    raw.write_all(b"GARBAGE / HTTP/9\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    drop(std::net::TcpStream::connect(api.addr).unwrap());
    assert_eq!(
        call(&agent, "GET", &format!("{base}/request-data/1"), None),
        (200, json!({"sold": false}))
    );
}

/// POST /register-request with no body.
fn register(agent: &ureq::Agent, api: &Daemon) -> (u16, Value) {
    call(
        agent,
        "POST",
        &format!("{}/register-request", api.url()),
        None,
    )
}

#[test]
fn price_api_plays_the_overloaded_server() {
    let failing = Daemon::ours(
        &exe("price-api"),
        &["--listen", "127.0.0.1:0", "--fail-rate", "1"],
    );
    let agent = agent();
    let (status, body) = register(&agent, &failing);
    assert_eq!(status, 503);
    assert!(body["error"].is_string());
    let (_, health) = call(&agent, "GET", &format!("{}/health", failing.url()), None);
    assert_eq!(
        health["issued"],
        json!(0),
        "a refused registration issues no id"
    );

    let slow = Daemon::ours(
        &exe("price-api"),
        &["--listen", "127.0.0.1:0", "--latency", "150ms..200ms"],
    );
    let started = Instant::now();
    let (status, _) = register(&agent, &slow);
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn price_api_stops_gracefully_on_sigterm_and_sigint() {
    for (sig, code) in [(Signal::SIGTERM, 0), (Signal::SIGINT, 130)] {
        let mut api = Daemon::ours(&exe("price-api"), &["--listen", "127.0.0.1:0"]);
        api.signal(sig);
        let status = api.child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{sig}: {}", api.stderr_text());
    }
    let r = run(&exe("price-api"), &["--fail-rate", "2"], b"");
    r.expect_code(2);
}
