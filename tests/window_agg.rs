//! window-agg (in memory) through the real binary: exact counts against a brute-force count of the
//! same file, bad and late lines, configurable shapes, and live pipelines with a stalled producer.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{generate, run, total_events, Run};
use pipeworks::time::{format_timestamp, parse_timestamp};
use serde_json::{json, Value};

const EXE: &str = env!("CARGO_BIN_EXE_window-agg");
const GEN: &str = env!("CARGO_BIN_EXE_gen-events");

/// window-agg over the events in `file` (it must succeed).
fn run_on_file(minutes: &str, bucket: &str, file: &std::path::Path) -> Run {
    let file = file.to_str().unwrap();
    let r = run(EXE, &["--minutes", minutes, "--bucket", bucket, file], b"");
    r.expect_code(0);
    r
}

fn type_name(event: &str) -> String {
    match event {
        "formsubmit" => "signup".into(),
        "click" => "user-event".into(),
        other => other.into(),
    }
}

/// Count the events of `text` whose timestamp lies in [start, end), in the output shape.
fn brute_force(text: &str, start: i64, end: i64) -> Value {
    let mut types: BTreeMap<String, (u64, BTreeMap<String, u64>)> =
        ["signup", "user-event", "review"]
            .iter()
            .map(|t| (t.to_string(), (0, BTreeMap::new())))
            .collect();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let at = parse_timestamp(e["value"]["timestamp"].as_str().unwrap()).unwrap();
        if at >= start && at < end {
            let entry = types
                .entry(type_name(e["value"]["event"].as_str().unwrap()))
                .or_default();
            entry.0 += 1;
            *entry
                .1
                .entry(e["value"]["trackingId"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let types: serde_json::Map<String, Value> = types
        .into_iter()
        .map(|(k, (total, by))| {
            (
                k,
                json!({"totalEventsCaptured": total, "eventsCapturedByTrackingIds": by}),
            )
        })
        .collect();
    Value::Object(types)
}

fn window_of(line: &Value) -> (i64, i64) {
    (
        parse_timestamp(line["window_start"].as_str().unwrap()).unwrap(),
        parse_timestamp(line["window_end"].as_str().unwrap()).unwrap(),
    )
}

#[test]
fn help_version_and_usage_errors() {
    let r = run(EXE, &["--help"], b"");
    r.expect_code(0);
    assert!(r
        .stdout
        .contains("gen-events --rate 100 | window-agg --minutes 5"));
    run(EXE, &["--version"], b"").expect_code(0);
    let r = run(EXE, &["--bucket", "7s"], b"");
    r.expect_failure(2, "must divide");
    run(EXE, &["--minutes", "0"], b"").expect_code(2);
    run(EXE, &["--read"], b"").expect_code(2);
}

#[test]
fn every_line_is_the_exact_count_of_its_window() {
    let events = generate(&[
        "--simulated",
        "--start",
        "2019-12-08T06:42:57.289Z",
        "--rate",
        "7",
        "--count",
        "3000",
        "--seed",
        "4",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, &events).unwrap();
    let r = run_on_file("2", "15s", &path);
    let lines = r.json_lines();
    // 3000 events at 7/s span 428.6 s: one line per 15 s boundary crossed, plus the final one.
    let first = parse_timestamp("2019-12-08T06:42:57.289Z").unwrap();
    let last = first + 2999 * 1_000_000 / 7;
    let boundaries = (last.div_euclid(15_000_000) - first.div_euclid(15_000_000)) as usize;
    assert_eq!(lines.len(), boundaries + 1, "{}", r.describe());
    for line in &lines {
        let (start, end) = window_of(line);
        assert_eq!(end - start, 120_000_000);
        assert_eq!(
            line["types"],
            brute_force(&events, start, end),
            "window {start}..{end}"
        );
    }
    // The last line covers the live window: the newest event is inside it.
    let (_, end) = window_of(lines.last().unwrap());
    assert!(last < end && end - last <= 15_000_000);
    // Fed through a pipe instead of a file, the same lines.
    let piped = run(
        EXE,
        &["--minutes", "2", "--bucket", "15s"],
        events.as_bytes(),
    );
    assert_eq!(piped.stdout, r.stdout);
}

#[test]
fn the_config_file_sets_the_window() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.json");
    let events = generate(&[
        "--config",
        config,
        "--simulated",
        "--start",
        "2020-01-01T00:00:00Z",
        "--rate",
        "10",
        "--count",
        "100",
        "--seed",
        "2",
    ]);
    let r = run(EXE, &["--config", config], events.as_bytes());
    r.expect_code(0);
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["window_start"], "2019-12-31T23:55:10.000000Z");
    assert_eq!(lines[0]["window_end"], "2020-01-01T00:00:10.000000Z");
    let total = total_events(&lines[0]);
    assert_eq!(total, 100);
    // Flags override the file.
    let r = run(
        EXE,
        &["--config", config, "--minutes", "1", "--bucket", "1s"],
        events.as_bytes(),
    );
    let lines = r.json_lines();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[9]["window_start"], "2019-12-31T23:59:10.000000Z");
}

#[test]
fn bad_lines_are_reported_and_the_rest_counted() {
    let input = concat!(
        r#"{"value":{"event":"click","trackingId":"INF-a","timestamp":"2020-01-01T00:00:01Z"}}"#,
        "\n",
        "not json\n",
        r#"{"value":{"event":"click","timestamp":"2020-01-01T00:00:02Z"}}"#,
        "\n",
        r#"{"value":{"event":"click","trackingId":"INF-a","timestamp":"yesterday"}}"#,
        "\n",
        r#"{"value":{"event":"formsubmit","trackingId":"INF-b","timestamp":"2020-01-01T00:00:03Z"}}"#,
        "\n",
    );
    let r = run(EXE, &[], input.as_bytes());
    r.expect_failure(1, "window-agg: line 2: invalid JSON");
    r.expect_stderr(r#"line 3: missing field "value.trackingId""#);
    r.expect_stderr("line 4: timestamp \"yesterday\"");
    r.expect_stderr("skipped 3 bad lines");
    let lines = r.json_lines();
    assert_eq!(lines[0]["types"]["user-event"]["totalEventsCaptured"], 1);
    assert_eq!(
        lines[0]["types"]["signup"]["eventsCapturedByTrackingIds"]["INF-b"],
        1
    );
    let strict = run(EXE, &["--strict"], input.as_bytes());
    strict.expect_code(1);
    assert!(strict.stdout.is_empty());
}

/// A wanted key listed twice is refused, as minute-stats (serde's derived reader) refuses it, and
/// the events around it are counted; a duplicate of a key window-agg does not read is no matter.
#[test]
fn duplicate_keys_on_a_field_path_are_bad_lines() {
    let input = concat!(
        r#"{"value":{"event":"click","trackingId":"INF-a","timestamp":"2020-01-01T00:00:01Z"}}"#,
        "\n",
        r#"{"value":{"event":"click","trackingId":"INF-a","timestamp":"2020-01-01T00:00:02Z","event":"review"}}"#,
        "\n",
        r#"{"value":{"event":"click","trackingId":"INF-a","timestamp":"2020-01-01T00:00:02Z"},"value":{}}"#,
        "\n",
        r#"{"path":"/a","path":"/b","value":{"event":"click","trackingId":"INF-a","timestamp":"2020-01-01T00:00:03Z"}}"#,
        "\n",
    );
    let r = run(EXE, &[], input.as_bytes());
    r.expect_code(1);
    for want in [
        r#"window-agg: line 2: duplicate field "value.event""#,
        r#"window-agg: line 3: duplicate field "value""#,
        "skipped 2 bad lines",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.describe());
    }
    let lines = r.json_lines();
    assert_eq!(
        lines.last().unwrap()["types"]["user-event"]["totalEventsCaptured"],
        2
    );
    let stats = run(
        env!("CARGO_BIN_EXE_minute-stats"),
        &[],
        br#"{"type":"a","value":1,"timestamp":"2020-01-01T00:00:01Z","type":"b"}"#,
    );
    stats.expect_stderr(r#"line 1: duplicate field "type""#);
}

#[test]
fn late_events_are_reported_not_added_and_out_of_order_ones_are_kept() {
    let ev = |t: &str, tid: &str| {
        format!(r#"{{"value":{{"event":"review","trackingId":"{tid}","timestamp":"{t}"}}}}"#)
    };
    let input = [
        ev("2020-01-01T00:10:00Z", "INF-a"),
        ev("2020-01-01T00:06:00Z", "INF-b"), // out of order, inside the 5-minute window
        ev("2020-01-01T00:01:00Z", "INF-c"), // before the window: late
        ev("2020-01-01T00:10:05Z", "INF-a"),
    ]
    .join("\n");
    // A late event is input missing from the output: exit 1, as minute-stats does.
    let r = run(EXE, &[], input.as_bytes());
    r.expect_failure(1, "line 3: late event at 2020-01-01T00:01:00.000000Z");
    r.expect_stderr("1 late event was before the window, not counted");
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["types"]["review"],
        json!({"totalEventsCaptured": 3, "eventsCapturedByTrackingIds": {"INF-a": 2, "INF-b": 1}})
    );
    // --strict stops at it, as at a bad line.
    let strict = run(EXE, &["--strict"], input.as_bytes());
    strict.expect_failure(1, "line 3: late event");
    assert!(strict.stdout.is_empty(), "{}", strict.describe());
}

#[test]
fn a_gap_longer_than_the_window_expires_everything() {
    let ev = |t: &str| {
        format!(r#"{{"value":{{"event":"click","trackingId":"INF-a","timestamp":"{t}"}}}}"#)
    };
    let input = [ev("2020-01-01T00:00:00Z"), ev("2020-01-02T00:00:00Z")].join("\n");
    let r = run(EXE, &["--minutes", "1"], input.as_bytes());
    r.expect_code(0);
    let lines = r.json_lines();
    let totals: Vec<u64> = lines
        .iter()
        .map(|l| {
            l["types"]["user-event"]["totalEventsCaptured"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // Six boundaries with the event in the window, one empty window, then the day after.
    assert_eq!(totals, vec![1, 1, 1, 1, 1, 1, 0, 1]);
    assert_eq!(lines[6]["window_end"], "2020-01-01T00:01:10.000000Z");
}

#[test]
fn other_event_shapes_with_configured_fields_and_names() {
    let events = generate(&[
        "--profile",
        "metrics",
        "--simulated",
        "--start",
        "2017-01-03T15:53:00Z",
        "--rate",
        "10",
        "--count",
        "200",
        "--seed",
        "5",
    ]);
    let r = run(
        EXE,
        &[
            "--type-field",
            "type",
            "--tracking-id-field",
            "tags",
            "--timestamp-field",
            "timestamp",
            "--type-name",
            "user_signup=signups",
        ],
        events.as_bytes(),
    );
    r.expect_code(0);
    let lines = r.json_lines();
    let line = lines.last().unwrap();
    let types = line["types"].as_object().unwrap();
    assert!(
        types.contains_key("signups") && types.contains_key("request_duration"),
        "{line}"
    );
    let total = total_events(line);
    assert_eq!(total, 200);
}

#[test]
fn arrival_clock_counts_old_events_now() {
    let events = generate(&[
        "--simulated",
        "--start",
        "2001-01-01T00:00:00Z",
        "--rate",
        "1000",
        "--count",
        "50",
        "--seed",
        "1",
    ]);
    let before = pipeworks::time::now();
    let r = run(EXE, &["--clock", "arrival"], events.as_bytes());
    r.expect_code(0);
    let line = &r.json_lines()[0];
    let (start, end) = window_of(line);
    assert!(start <= before && end > before, "{line}");
    let total = total_events(line);
    assert_eq!(total, 50);
}

#[test]
fn head_ends_it_quietly() {
    let out = Command::new("bash")
        .args(["-c", &format!("{GEN} --simulated --rate 1000 --count 100000 | {EXE} --minutes 1 --bucket 1s | head -1; echo \"${{PIPESTATUS[1]}}\"")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[1], "0");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines of a live window-agg as they arrive, with their arrival time.
fn live_lines(child: &mut std::process::Child) -> mpsc::Receiver<(Instant, Value)> {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let _ = tx.send((Instant::now(), serde_json::from_str(&line).unwrap()));
        }
    });
    rx
}

#[test]
fn live_a_line_comes_every_bucket_while_the_producer_stalls() {
    let mut child = common::spawn(EXE, ["--minutes", "1", "--bucket", "1s"]);
    let mut stdin = child.stdin.take().unwrap();
    let lines = live_lines(&mut child);
    let now = pipeworks::time::now();
    let ev = format!(
        r#"{{"value":{{"event":"click","trackingId":"INF-a","timestamp":"{}"}}}}"#,
        format_timestamp(now)
    );
    writeln!(stdin, "{ev}").unwrap();
    stdin.flush().unwrap();
    // The producer now stalls (stdin stays open, nothing written): lines must keep coming.
    let mut got = Vec::new();
    while got.len() < 3 {
        let (at, line) = lines
            .recv_timeout(Duration::from_secs(5))
            .expect("a line within a bucket period");
        got.push((at, line));
    }
    for pair in got.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > Duration::from_millis(300) && gap < Duration::from_millis(2000),
            "lines {gap:?} apart"
        );
        let (_, e0) = window_of(&pair[0].1);
        let (_, e1) = window_of(&pair[1].1);
        assert_eq!(e1 - e0, 1_000_000);
    }
    for (_, line) in &got {
        assert_eq!(
            line["types"]["user-event"]["totalEventsCaptured"], 1,
            "{line}"
        );
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn live_pipeline_from_gen_events_matches_the_file_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let script = format!(
        "{GEN} --rate 200 --duration 5s --seed 8 | tee {} | {EXE} --minutes 1 --bucket 2s",
        file.display()
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = live_lines(&mut child);
    let mut live = Vec::new();
    while let Ok((at, line)) = lines.recv_timeout(Duration::from_secs(10)) {
        live.push((at, line));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A 5 s run with 2 s buckets crosses 2 or 3 boundaries, plus the end-of-input line. (2 s
    // buckets give a 1 s grace, so a busy machine delaying the producer does not split them.)
    assert!((3..=4).contains(&live.len()), "{live:?}");
    for pair in live[..live.len() - 1].windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > Duration::from_millis(1000) && gap < Duration::from_millis(3000),
            "{gap:?}"
        );
    }
    let from_file = run_on_file("1", "2s", &file).json_lines();
    let live: Vec<Value> = live.into_iter().map(|(_, l)| l).collect();
    assert_eq!(live, from_file);
}

/// SIGINT and SIGTERM end a live run like the end of input: the live window is written, then the
/// exit code is 130 (SIGINT) or 0 (SIGTERM).
#[test]
fn a_stop_signal_writes_the_live_window_first() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (signal, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 0)] {
        let mut child = common::spawn(EXE, common::NO_ARGS);
        let mut stdin = child.stdin.take().unwrap();
        for t in [
            "2020-01-01T00:00:01Z",
            "2020-01-01T00:00:02Z",
            "2020-01-01T00:00:15Z",
        ] {
            writeln!(
                stdin,
                r#"{{"value":{{"event":"review","trackingId":"INF-a","timestamp":"{t}"}}}}"#
            )
            .unwrap();
        }
        stdin.flush().unwrap();
        // The third event crosses a boundary: once that line is out, all three have been read.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let first: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(first["types"]["review"]["totalEventsCaptured"], 2);
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{signal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value =
            serde_json::from_str(rest.lines().last().expect("the live window")).unwrap();
        assert_eq!(
            line["types"]["review"]["totalEventsCaptured"], 3,
            "{signal}"
        );
        drop(stdin);
    }
}

/// A stream where every event brings a new tracking id (a session or user id, say): the window
/// never holds more than a minute of them, so memory must stop growing once the first minute has
/// passed, whatever the stream's length. Measured as the process's peak RSS after two windows of
/// events and again after five, while it runs.
#[test]
fn memory_stays_bounded_on_a_stream_of_fresh_ids() {
    const EVENTS_PER_MINUTE: i64 = 60_000; // 1 ms apart
    let base = parse_timestamp("2019-12-08T06:00:00Z").unwrap();
    let mut child = common::spawn(EXE, ["--minutes", "1"]);
    let pid = child.id();
    let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
    let (ends_tx, ends) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // Only the window's end is needed, and a line holds 60,000 ids: skip parsing it all.
            let end = line
                .split("\"window_end\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_string();
            if ends_tx.send(end).is_err() {
                break;
            }
        }
    });
    let mut feed = |from: i64, to: i64| {
        for i in from..to {
            writeln!(
                stdin,
                r#"{{"value":{{"event":"click","trackingId":"id-{i:09}","timestamp":"{}"}}}}"#,
                format_timestamp(base + i * 1000)
            )
            .unwrap();
        }
        stdin.flush().unwrap();
        // The last event of minute k crosses the boundary 10 s before its end; once that
        // window's line is out, every event before it has been read and counted.
        let want = format_timestamp(base + (to - 1) * 1000 - (base + (to - 1) * 1000) % 10_000_000);
        loop {
            let end = ends
                .recv_timeout(Duration::from_secs(120))
                .expect("window-agg keeps writing lines");
            if end == want {
                break;
            }
        }
        common::procfs::peak_rss_kb(pid)
    };
    let after_two = feed(0, 2 * EVENTS_PER_MINUTE);
    let after_five = feed(2 * EVENTS_PER_MINUTE, 5 * EVENTS_PER_MINUTE);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three more minutes of fresh ids (180,000 of them, ~30 MB if they were all kept) may not
    // raise the peak by more than noise.
    assert!(
        after_five <= after_two + (after_two / 2).max(10 * 1024),
        "peak RSS grew from {after_two} KiB after two minutes of fresh ids to {after_five} KiB after five"
    );
    eprintln!("peak RSS: {after_two} KiB after 2 windows, {after_five} KiB after 5");
}
