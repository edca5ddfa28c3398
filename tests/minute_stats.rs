//! minute-stats through the real binary: the seed's example, streaming, lateness, bad input, and
//! the pipeline contract every program shares (exit codes, broken pipes, line numbers).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::run;
use serde_json::{json, Value};

const EXE: &str = env!("CARGO_BIN_EXE_minute-stats");

const SEED: &str = r#"{ "type": "request_duration", "value": 10, "timestamp": "2017-01-03T15:53:01.494821Z", "tags": "company:1,sburbles:barf" }
{ "type": "request_duration", "value": 20, "timestamp": "2017-01-03T15:53:05.494122Z", "tags": "company:2,sburbles:barf" }
{ "type": "request_duration", "value": 30, "timestamp": "2017-01-03T15:53:17.494145Z", "tags": "company:3,sburbles:borf" }
{ "type": "request_duration", "value": 40, "timestamp": "2017-01-03T15:53:42.000000Z", "tags": "company:1,sburbles:borf" }
"#;

const SEED_OUTPUT: &str = r#"{"aggs":[{"name":"request_duration","min":10,"max":40,"mean":25,"median":25}],"period_start":"2017-01-03T15:53:00.000000Z","period_end":"2017-01-03T15:54:00.000000Z"}"#;

fn event(kind: &str, value: f64, ts: &str) -> String {
    json!({"type": kind, "value": value, "timestamp": ts, "tags": "company:1"}).to_string()
}

#[test]
fn the_seed_example_byte_for_byte() {
    let r = run(EXE, &[], SEED.as_bytes());
    r.expect_code(0);
    assert_eq!(r.stdout, format!("{SEED_OUTPUT}\n"), "{}", r.describe());
    assert_eq!(r.stderr, "", "{}", r.describe());
}

#[test]
fn files_and_stdin_in_order_and_a_last_line_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.jsonl");
    std::fs::write(&file, event("a", 1.0, "2017-01-03T15:53:00Z")).unwrap();
    let stdin = event("a", 3.0, "2017-01-03T15:53:10Z");
    let r = run(EXE, &[file.to_str().unwrap(), "-"], stdin.as_bytes());
    r.expect_code(0);
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["aggs"][0]["mean"], json!(2));
}

#[test]
fn bad_lines_are_reported_with_their_number_and_the_good_ones_around_them_count() {
    let mut input = Vec::new();
    writeln!(input, "{}", event("a", 1.0, "2017-01-03T15:53:00Z")).unwrap();
    input.extend_from_slice(b"{\"type\":\"a\",\"value\":5,\"timestamp\":\"\xff\xfe\"}\n");
    input.extend_from_slice(
        format!(
            "{{\"type\":\"a\",\"value\":7,\"pad\":\"{}\"}}\n",
            "x".repeat(10 << 20)
        )
        .as_bytes(),
    );
    writeln!(input, "[1,2,3]").unwrap();
    writeln!(
        input,
        r#"{{"type":"a","timestamp":"2017-01-03T15:53:01Z"}}"#
    )
    .unwrap();
    writeln!(
        input,
        r#"{{"type":"a","value":"9","timestamp":"2017-01-03T15:53:01Z"}}"#
    )
    .unwrap();
    writeln!(
        input,
        r#"{{"type":"a","value":null,"timestamp":"2017-01-03T15:53:01Z"}}"#
    )
    .unwrap();
    writeln!(
        input,
        r#"{{"type":"a","value":1e999,"timestamp":"2017-01-03T15:53:01Z"}}"#
    )
    .unwrap();
    writeln!(input, r#"{{"type":"a","value":4,"timestamp":"yesterday"}}"#).unwrap();
    writeln!(input, "{}", event("a", 3.0, "2017-01-03T15:53:30Z")).unwrap();
    let r = run(EXE, &[], &input);
    r.expect_code(1);
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    assert_eq!(
        lines[0]["aggs"][0],
        json!({"name":"a","min":1,"max":3,"mean":2,"median":2})
    );
    let errs: Vec<&str> = r.stderr.lines().collect();
    let expect = [
        "minute-stats: line 2: not valid UTF-8",
        "minute-stats: line 3: line is 10485",
        "minute-stats: line 4: expected a JSON object, got an array",
        "minute-stats: line 5: missing field \"value\"",
        "minute-stats: line 6: invalid type: string \"9\"",
        "minute-stats: line 7: invalid type: null",
        "minute-stats: line 8:",
        "minute-stats: line 9: timestamp \"yesterday\"",
        "minute-stats: skipped 8 bad lines",
    ];
    assert_eq!(errs.len(), expect.len(), "{}", r.describe());
    for (got, want) in errs.iter().zip(expect) {
        assert!(
            got.starts_with(want),
            "stderr line {got:?} should start with {want:?}\n{}",
            r.describe()
        );
    }
}

#[test]
fn strict_stops_at_the_first_bad_line() {
    let input = format!(
        "{}\nnot json\n{}\n",
        event("a", 1.0, "2017-01-03T15:53:00Z"),
        event("a", 2.0, "2017-01-03T15:54:00Z")
    );
    let r = run(EXE, &["--strict"], input.as_bytes());
    r.expect_code(1);
    assert!(
        r.stderr.starts_with("minute-stats: line 2: invalid JSON"),
        "{}",
        r.describe()
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.describe());
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_1() {
    run(EXE, &["--period", "5"], b"").expect_code(2);
    run(EXE, &["--no-such-flag"], b"").expect_code(2);
    let r = run(EXE, &["/no/such/file.jsonl"], b"");
    r.expect_failure(1, "cannot open /no/such/file.jsonl");
    let r = run(EXE, &["--version"], b"");
    r.expect_code(0);
    assert!(r.stdout.starts_with("minute-stats "));
    let r = run(EXE, &["--help"], b"");
    assert!(
        r.stdout.contains("| minute-stats"),
        "help shows a pipeline\n{}",
        r.describe()
    );
}

#[test]
fn a_closed_reader_ends_the_program_quietly() {
    // Enough periods that minute-stats is still writing when `head` has gone.
    let mut input = String::new();
    for i in 0..200_000i64 {
        let t = 1_483_458_780 + i * 60;
        let ts = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
        input.push_str(&event("a", i as f64, &ts));
        input.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.jsonl");
    std::fs::write(&file, input).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{EXE}' '{}' | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
            file.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.ends_with("status=0\n"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stderr, "", "nothing on stderr");
}

/// A child whose stdin we hold open, and whose stdout we read line by line as it arrives.
struct Live {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Live {
    fn start(args: &[&str]) -> Live {
        let mut child = common::spawn(EXE, args);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live { child, lines }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn next(&self, within: Duration) -> Option<Value> {
        self.lines
            .recv_timeout(within)
            .ok()
            .map(|l| serde_json::from_str(&l).unwrap())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_period_is_written_when_the_next_one_starts_not_at_eof() {
    let mut live = Live::start(&[]);
    live.send(&event("a", 1.0, "2017-01-03T15:53:10Z"));
    live.send(&event("a", 2.0, "2017-01-03T15:53:59.999999Z"));
    // Nothing yet: the period is still open. (A short wait for a line that must not come.)
    assert!(live.next(Duration::from_millis(300)).is_none());
    live.send(&event("a", 5.0, "2017-01-03T15:54:00Z"));
    let first = live
        .next(Duration::from_secs(10))
        .expect("the 15:53 period while input is open");
    assert_eq!(first["period_start"], "2017-01-03T15:53:00.000000Z");
    assert_eq!(first["aggs"][0]["median"], json!(1.5));
    drop(live.child.stdin.take());
    let last = live
        .next(Duration::from_secs(10))
        .expect("the 15:54 period at EOF");
    assert_eq!(last["period_start"], "2017-01-03T15:54:00.000000Z");
    assert!(live.child.wait().unwrap().success());
}

#[test]
fn live_mode_closes_a_period_by_the_wall_clock_while_input_pauses() {
    let mut live = Live::start(&["--live", "--period", "1s"]);
    let now = chrono::Utc::now();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let started = Instant::now();
    live.send(&event("a", 4.0, &ts));
    let line = live
        .next(Duration::from_secs(5))
        .expect("a line while stdin is still open");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(line["aggs"][0]["max"], json!(4));
    // A second event for that closed period is late: reported, not merged.
    live.send(&event("a", 9.0, &ts));
    drop(live.child.stdin.take());
    let status = live.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(live.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("line 2: late event"), "{stderr}");
}

#[test]
fn lateness_accepts_reordered_events_and_reports_later_ones() {
    let input = [
        event("a", 1.0, "2017-01-03T15:53:58Z"),
        event("a", 2.0, "2017-01-03T15:54:01Z"),
        event("a", 3.0, "2017-01-03T15:53:59Z"), // 2 s out of order: accepted with --lateness 5s
        event("a", 4.0, "2017-01-03T15:54:06Z"), // closes 15:53
        event("a", 5.0, "2017-01-03T15:53:30Z"), // its period is written: late
    ]
    .join("\n");
    let r = run(EXE, &["--lateness", "5s"], input.as_bytes());
    r.expect_code(1);
    let lines = r.json_lines();
    assert_eq!(
        lines[0]["aggs"][0],
        json!({"name":"a","min":1,"max":3,"mean":2,"median":2})
    );
    assert_eq!(
        lines[1]["aggs"][0],
        json!({"name":"a","min":2,"max":4,"mean":3,"median":3})
    );
    r.expect_stderr("line 5: late event at 2017-01-03T15:53:30.000000Z");
}

#[test]
fn offsets_old_dates_periods_and_groups() {
    let input = [
        json!({"type":"b","value":1.5,"timestamp":"1969-12-31T20:59:59.5-03:00","tags":["company:2"]}),
        json!({"type":"a","value":-2,"timestamp":"1969-12-31T23:59:30Z","tags":{"company":"1"}}),
        json!({"type":"a","value":4,"timestamp":"1969-12-31T23:59:45Z"}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    let r = run(
        EXE,
        &["--period", "1h", "--group-by-tag", "company"],
        input.as_bytes(),
    );
    r.expect_code(0);
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    assert_eq!(lines[0]["period_start"], "1969-12-31T23:00:00.000000Z");
    assert_eq!(lines[0]["period_end"], "1970-01-01T00:00:00.000000Z");
    let aggs = &lines[0]["aggs"];
    assert_eq!(
        aggs[0],
        json!({"name":"a","tag":{"company":null},"min":4,"max":4,"mean":4,"median":4})
    );
    assert_eq!(
        aggs[1],
        json!({"name":"a","tag":{"company":"1"},"min":-2,"max":-2,"mean":-2,"median":-2})
    );
    assert_eq!(
        aggs[2],
        json!({"name":"b","tag":{"company":"2"},"min":1.5,"max":1.5,"mean":1.5,"median":1.5})
    );
}
