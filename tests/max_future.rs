//! The one event-time rule, through every program that keeps event time (minute-stats,
//! window-agg, load-monitor's stdin face, its HTTP face under `--clock records`, and its snapshot):
//! a time later than the wall clock plus `--max-future` is a bad line, reported with its number,
//! and never moves a clock, so the good lines after it are still counted. And no output ever
//! prints a year outside 0000–9999.

mod common;
use common::agent;

use common::{run, Daemon, Run};
use pipeworks::time::{format_timestamp, now, parse_timestamp};
use serde_json::{json, Value};

const MINUTE_STATS: &str = env!("CARGO_BIN_EXE_minute-stats");
const WINDOW_AGG: &str = env!("CARGO_BIN_EXE_window-agg");
const LOAD_MONITOR: &str = env!("CARGO_BIN_EXE_load-monitor");

const EVIL: &str = "9999-12-31T23:59:59Z";

/// Every timestamp-looking string in `text` has a four-digit year.
fn assert_four_digit_years(text: &str) {
    for (i, _) in text.match_indices("-01T").chain(text.match_indices("-31T")) {
        let before = &text[..i];
        let year_start = before.rfind(|c: char| !c.is_ascii_digit() && c != '-');
        let token = &before[year_start.map_or(0, |s| s + 1)..];
        let year = token.split('-').next().unwrap_or("");
        assert!(
            year.len() == 4 && !token.starts_with('-'),
            "a timestamp with the year {token:?} in:\n{text}"
        );
    }
}

/// load-monitor's report lines, which must be server a's alone (`why` says why on failure).
fn only_server_a(r: &Run, why: &str) -> Vec<Value> {
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{why}\n{}", r.describe());
    assert_eq!(lines[0]["servername"], "a");
    lines
}

#[test]
fn minute_stats_reports_a_far_future_line_and_keeps_the_later_ones() {
    let ev = |v: u32, t: &str| format!(r#"{{"type":"a","value":{v},"timestamp":"{t}"}}"#);
    let input = [
        ev(1, "2017-01-03T15:53:01Z"),
        ev(3, "2017-01-03T15:53:30Z"),
        ev(5, EVIL),
        ev(7, "2017-01-03T15:53:40Z"),
        ev(9, "2017-01-03T15:54:10Z"),
    ]
    .join("\n");
    let r = run(MINUTE_STATS, &[], input.as_bytes());
    r.expect_failure(1, "line 3: event time 9999-12-31T23:59:59.000000Z")
        .expect_stderr("--max-future");
    r.expect_stderr("skipped 1 bad line");
    let lines = r.json_lines();
    assert_eq!(lines.len(), 2, "{}", r.describe());
    assert_eq!(
        lines[0]["aggs"],
        json!([{"name":"a","min":1,"max":7,"mean":11.0/3.0,"median":3}])
    );
    assert_eq!(lines[1]["period_start"], "2017-01-03T15:54:00.000000Z");
    assert_four_digit_years(&r.stdout);
}

#[test]
fn window_agg_reports_a_far_future_line_and_keeps_the_later_ones() {
    let ev = |t: &str| {
        format!(r#"{{"value":{{"event":"click","trackingId":"INF-a","timestamp":"{t}"}}}}"#)
    };
    let mut input: Vec<String> = (0..4)
        .map(|i| ev(&format!("2019-12-08T06:42:0{i}Z")))
        .collect();
    input.push(ev(EVIL));
    input.extend((4..8).map(|i| ev(&format!("2019-12-08T06:42:0{i}Z"))));
    let r = run(WINDOW_AGG, &[], input.join("\n").as_bytes());
    r.expect_failure(1, "line 5: event time 9999-12-31T23:59:59.000000Z");
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    assert_eq!(lines[0]["types"]["user-event"]["totalEventsCaptured"], 8);
    assert_eq!(lines[0]["window_end"], "2019-12-08T06:42:10.000000Z");
    assert_four_digit_years(&r.stdout);
}

fn load_record(server: &str, t: &str, cpu: u32) -> String {
    format!(r#"{{"server":"{server}","cpu":{cpu},"ram":{cpu},"timestamp":"{t}"}}"#)
}

#[test]
fn load_monitor_stdin_refuses_a_far_future_record_and_keeps_the_later_ones() {
    let mut input: Vec<String> = (0..4)
        .map(|i| load_record("a", &format!("2016-04-10T14:5{i}:00Z"), 1))
        .collect();
    input.push(r#"{"server":"evil","cpu":1,"ram":1,"timestamp":"9999-12-31T23:59:59Z"}"#.into());
    input.push(load_record("a", "2016-04-10T14:54:00Z", 3));
    let r = run(LOAD_MONITOR, &[], input.join("\n").as_bytes());
    r.expect_failure(1, "line 5: event time 9999-12-31T23:59:59.000000Z");
    let lines = only_server_a(&r, "only server a has a report");
    assert_eq!(
        lines[0]["1hourdata"].as_array().unwrap().len(),
        5,
        "{}",
        r.describe()
    );
    assert_eq!(
        lines[0]["24hourdata"],
        json!([["2016-04-10T14:00:00.000000Z", 1.4, 1.4]])
    );
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> (u16, String) {
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    let mut r = agent.get(url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn load_monitor_http_with_the_records_clock_refuses_a_far_future_record() {
    let server = Daemon::ours(
        LOAD_MONITOR,
        &["--listen", "127.0.0.1:0", "--clock", "records"],
    );
    let agent = agent();
    let add = format!("{}/addserver", server.url());
    let minute = 60_000_000;
    let base = now() - now().rem_euclid(minute) - 10 * minute;
    for i in 0..4 {
        let (status, body) = post(
            &agent,
            &add,
            &load_record("a", &format_timestamp(base + i * minute), 1),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(
        &agent,
        &add,
        r#"{"server":"evil","cpu":1,"ram":1,"timestamp":"9999-12-31T23:59:59Z"}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("--max-future"), "{body}");
    // The clock did not move: the next record is not "too old", and a's report is whole.
    let (status, body) = post(
        &agent,
        &add,
        &load_record("a", &format_timestamp(base + 4 * minute), 3),
    );
    assert_eq!(status, 200, "{body}");
    let report = get_json(&agent, &format!("{}/report/a", server.url()));
    assert_eq!(report["1hourdata"].as_array().unwrap().len(), 5, "{report}");
    let stats = get_json(&agent, &format!("{}/stats", server.url()));
    assert_eq!(stats["now"], format_timestamp(base + 4 * minute), "{stats}");
    assert_eq!(stats["too_new"], 1, "{stats}");
    let (status, _) = agent
        .get(format!("{}/report/evil", server.url()))
        .call()
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 404);
}

/// A snapshot written before the rule existed: server `a` with a day of 2016, and `evil` with one
/// record in the year 9999 that moved the clock there.
fn poisoned_snapshot() -> String {
    let minute = |t: &str| parse_timestamp(t).unwrap().div_euclid(60_000_000);
    let hour = |t: &str| parse_timestamp(t).unwrap().div_euclid(3_600_000_000);
    let header = json!({
        "version": 1,
        "newest": parse_timestamp(EVIL).unwrap(),
        "counters": {"accepted": 5, "too_old": 0, "too_new": 0, "over_capacity": 0},
    });
    let a = json!({
        "name": "a",
        "minutes": (0..4).map(|i| json!([minute(&format!("2016-04-10T14:5{i}:00Z")), 1, 1_000_000, 1_000_000])).collect::<Vec<_>>(),
        "hours": [[hour("2016-04-10T14:00:00Z"), 4, 4_000_000, 4_000_000]],
    });
    let evil = json!({
        "name": "evil",
        "minutes": [[minute(EVIL), 1, 1_000_000, 1_000_000]],
        "hours": [[hour(EVIL), 1, 1_000_000, 1_000_000]],
    });
    format!("{header}\n{a}\n{evil}\n")
}

#[test]
fn load_monitor_snapshot_from_the_future_is_clamped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.jsonl");
    std::fs::write(&path, poisoned_snapshot()).unwrap();
    let snapshot = path.to_str().unwrap();
    let r = run(
        LOAD_MONITOR,
        &["--snapshot", snapshot],
        load_record("a", "2016-04-10T14:54:00Z", 3).as_bytes(),
    );
    r.expect_code(0)
        .expect_stderr("snapshot")
        .expect_stderr("--max-future");
    let lines = only_server_a(&r, "evil's future record is dropped");
    assert_eq!(lines[0]["1hourdata"].as_array().unwrap().len(), 5);
    assert_four_digit_years(&r.stdout);
    // The saved snapshot no longer holds the future clock.
    let saved = std::fs::read_to_string(&path).unwrap();
    let header: Value = serde_json::from_str(saved.lines().next().unwrap()).unwrap();
    assert_eq!(
        header["newest"],
        json!(parse_timestamp("2016-04-10T14:54:00Z").unwrap()),
        "{saved}"
    );
}

#[test]
fn a_snapshot_entirely_in_the_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.jsonl");
    let text: String = poisoned_snapshot()
        .lines()
        .filter(|l| !l.contains("\"name\":\"a\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, &text).unwrap();
    let r = run(LOAD_MONITOR, &["--snapshot", path.to_str().unwrap()], b"");
    r.expect_failure(1, "wall clock");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "left as it was"
    );
    // `--max-future off` takes it as it is.
    let r = run(
        LOAD_MONITOR,
        &["--snapshot", path.to_str().unwrap(), "--max-future", "off"],
        b"",
    );
    r.expect_code(0);
    assert_eq!(r.json_lines()[0]["servername"], "evil");
}

#[test]
fn off_accepts_the_future_but_never_a_five_digit_year() {
    // Far in the future but in range: accepted with --max-future off.
    let ev = |v: u32, t: &str| format!(r#"{{"type":"a","value":{v},"timestamp":"{t}"}}"#);
    let input = [
        ev(1, "2400-01-03T15:53:01Z"),
        // Its minute ends at 10000-01-01T00:00:00Z, which four digits cannot print.
        ev(2, "9999-12-31T23:59:30Z"),
        // 9999-12-31T23:30 at -01:00 is 10000-01-01T00:30Z.
        ev(3, "9999-12-31T23:30:00-01:00"),
        ev(4, "2400-01-03T15:53:30Z"),
    ]
    .join("\n");
    let r = run(MINUTE_STATS, &["--max-future", "off"], input.as_bytes());
    r.expect_failure(1, "line 2: ").expect_stderr("line 3: ");
    r.expect_stderr("skipped 2 bad lines");
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    assert_eq!(lines[0]["aggs"][0]["max"], 4);
    assert_four_digit_years(&r.stdout);
    // Without off, every one of them is bad.
    let r = run(MINUTE_STATS, &[], input.as_bytes());
    r.expect_failure(1, "skipped 4 bad lines");
    assert!(r.stdout.is_empty(), "{}", r.describe());
}

#[test]
fn the_limit_is_a_flag_with_a_default_of_five_minutes() {
    let ev = |v: u32, ahead_s: i64| {
        format!(
            r#"{{"type":"a","value":{v},"timestamp":"{}"}}"#,
            format_timestamp(now() + ahead_s * 1_000_000)
        )
    };
    // 2 minutes ahead: within the default, outside --max-future 1m.
    let input = [ev(1, 0), ev(2, 120)].join("\n");
    let r = run(MINUTE_STATS, &[], input.as_bytes());
    r.expect_code(0);
    let r = run(MINUTE_STATS, &["--max-future", "1m"], input.as_bytes());
    r.expect_failure(1, "line 2: ");
    for exe in [MINUTE_STATS, WINDOW_AGG, LOAD_MONITOR] {
        let help = run(exe, &["--help"], b"");
        assert!(
            help.stdout.contains("--max-future") && help.stdout.contains("[default: 5m]"),
            "{exe}\n{}",
            help.describe()
        );
        let bad = run(exe, &["--max-future", "soon"], b"");
        bad.expect_code(2);
    }
}

#[test]
fn gen_events_never_stamps_past_the_year_9999() {
    let r = run(
        env!("CARGO_BIN_EXE_gen-events"),
        &[
            "--simulated",
            "--start",
            "9999-12-31T23:59:59Z",
            "--rate",
            "1",
            "--count",
            "3",
            "--profile",
            "metrics",
        ],
        b"",
    );
    r.expect_code(1);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.describe());
    assert_four_digit_years(&r.stdout);
    r.expect_stderr("after 9999-12-31");
}
