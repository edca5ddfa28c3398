//! gen-events through the real binary: shapes, determinism, config, pacing against the wall clock,
//! stalls, and the pipeline contract (help, version, `| head -1`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::run;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_gen-events");

#[test]
fn help_and_version() {
    let r = run(EXE, &["--help"], b"");
    r.expect_code(0);
    r.expect_stdout("gen-events --rate 100 | window-agg --minutes 5");
    run(EXE, &["--version"], b"").expect_code(0);
    let r = run(EXE, &["--rate", "fast"], b"");
    r.expect_code(2);
    let r = run(EXE, &["--rate", "max", "--simulated"], b"");
    r.expect_failure(2, "--simulated needs a numeric --rate");
}

#[test]
fn the_same_seed_gives_the_same_events() {
    let args = [
        "--simulated",
        "--start",
        "2019-12-08T06:42:57Z",
        "--rate",
        "1000",
        "--count",
        "500",
        "--seed",
        "9",
    ];
    let a = run(EXE, &args, b"");
    let b = run(EXE, &args, b"");
    a.expect_code(0);
    assert_eq!(a.stdout, b.stdout);
    let events = a.json_lines();
    assert_eq!(events.len(), 500);
    assert_eq!(events[0]["value"]["timestamp"], "2019-12-08T06:42:57.000Z");
    assert_eq!(
        events[499]["value"]["timestamp"],
        "2019-12-08T06:42:57.499Z"
    );
    let mut other_seed = args;
    other_seed[8] = "10";
    let other = run(EXE, &other_seed, b"");
    assert_ne!(a.stdout, other.stdout);
}

#[test]
fn tracking_events_use_ten_ids_and_three_kinds() {
    let r = run(
        EXE,
        &[
            "--simulated",
            "--rate",
            "100",
            "--count",
            "3000",
            "--seed",
            "1",
        ],
        b"",
    );
    r.expect_code(0);
    let mut ids = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeMap::new();
    for e in r.json_lines() {
        assert_eq!(e["path"], "/visitors/events/");
        ids.insert(e["value"]["trackingId"].as_str().unwrap().to_string());
        *kinds
            .entry(e["value"]["event"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(ids.len(), 10);
    for seed_id in [
        "INF-yj562hjojbtez",
        "INF-3gbfcjjdsd6vhvo",
        "INF-ixpktk3itsk86",
        "INF-1bi5qk0zocqcz",
    ] {
        assert!(ids.contains(seed_id));
    }
    // Default weights 1:1:1 → each kind about a third.
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds.values().all(|&n| (800..1200).contains(&n)),
        "{kinds:?}"
    );
}

/// Forty events of simulated time from 2020-01-01.
const SIMULATED_40: [&str; 5] = [
    "--simulated",
    "--start",
    "2020-01-01T00:00:00Z",
    "--count",
    "40",
];

#[test]
fn config_file_sets_ids_weights_and_rate_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"rate": 20, "tracking_ids": ["INF-only1", "INF-only2"], "kind_weights": {"signup": 0, "review": 0, "user-event": 1}}"#,
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let r = run(
        EXE,
        &[["--config", config].as_slice(), &SIMULATED_40].concat(),
        b"",
    );
    r.expect_code(0);
    let events = r.json_lines();
    for e in &events {
        assert_eq!(e["value"]["event"], "click");
        assert!(["INF-only1", "INF-only2"].contains(&e["value"]["trackingId"].as_str().unwrap()));
    }
    // 20 per second from the file: the 40th event is at 1.95 s.
    assert_eq!(events[39]["value"]["timestamp"], "2020-01-01T00:00:01.950Z");
    let r = run(
        EXE,
        &[
            ["--config", config, "--rate", "40"].as_slice(),
            &SIMULATED_40,
        ]
        .concat(),
        b"",
    );
    assert_eq!(
        r.json_lines()[39]["value"]["timestamp"],
        "2020-01-01T00:00:00.975Z"
    );

    std::fs::write(&path, r#"{"rate": 20, "minuts": 5}"#).unwrap();
    let r = run(EXE, &["--config", config, "--count", "1"], b"");
    r.expect_failure(2, "minuts");
}

#[test]
fn the_example_config_works() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.json");
    let r = run(
        EXE,
        &["--config", config, "--simulated", "--count", "10"],
        b"",
    );
    r.expect_code(0);
    assert_eq!(r.json_lines().len(), 10);
}

#[test]
fn metrics_and_load_profiles() {
    let r = run(
        EXE,
        &[
            "--profile",
            "metrics",
            "--simulated",
            "--start",
            "2017-01-03T15:53:00Z",
            "--rate",
            "50",
            "--count",
            "100",
        ],
        b"",
    );
    r.expect_code(0);
    for e in r.json_lines() {
        assert!([
            "request_duration",
            "request_count",
            "user_signup",
            "user_logged"
        ]
        .contains(&e["type"].as_str().unwrap()));
        assert!(e["value"].as_u64().unwrap() > 0);
    }
    let r = run(
        EXE,
        &[
            "--profile",
            "load",
            "--servers",
            "25",
            "--simulated",
            "--rate",
            "50",
            "--count",
            "50",
        ],
        b"",
    );
    r.expect_code(0);
    let servers: std::collections::BTreeSet<String> = r
        .json_lines()
        .iter()
        .map(|e| e["server"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(servers.len(), 25);
    assert!(servers.contains("server0001") && servers.contains("server0025"));
}

#[test]
fn head_ends_it_quietly() {
    let child = Command::new("bash")
        .args([
            "-c",
            &format!("{EXE} --rate max | head -1; echo \"${{PIPESTATUS[0]}}\""),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    serde_json::from_str::<Value>(lines[0]).unwrap();
    assert_eq!(lines[1], "0", "exit status of gen-events");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run a live gen-events and note the wall-clock time (µs) at which each line arrived.
fn arrivals(args: &[&str]) -> (Vec<(i64, Value)>, String) {
    let mut child = Command::new(EXE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep the reading loop light (no parsing) so the test, not the generator, is never the one
    // that falls behind.
    let mut stdout = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        lines.push((pipeworks::time::now(), std::mem::take(&mut line)));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got = lines
        .into_iter()
        .map(|(t, l)| (t, serde_json::from_str(&l).unwrap()))
        .collect();
    (got, String::from_utf8(out.stderr).unwrap())
}

/// A live run keeps to its absolute schedule: event i is stamped exactly start + i/rate (no drift,
/// however long the run), none arrives before its time (no bursts ahead), each arrives soon after
/// it (within 50 ms, or 2 s on a busy machine), and the total is exact.
///
/// The short tests raise `--max-lag`: on a machine shared by many builds the whole process can be
/// descheduled for half a second, and the stall policy has its own test below.
fn check_pacing(rate: f64, seconds: u64, strict: bool) {
    let (max_lag, lateness) = if strict {
        ("100ms", 50_000)
    } else {
        ("2s", 2_000_000)
    };
    let duration = format!("{seconds}s");
    let args = [
        "--profile",
        "metrics",
        "--rate",
        &rate.to_string(),
        "--duration",
        &duration,
        "--max-lag",
        max_lag,
    ];
    let (got, stderr) = arrivals(&args);
    assert!(stderr.is_empty(), "the generator lagged: {stderr}");
    assert_eq!(got.len(), (rate * seconds as f64).round() as usize);
    let stamp =
        |v: &Value| pipeworks::time::parse_timestamp(v["timestamp"].as_str().unwrap()).unwrap();
    let start = stamp(&got[0].1);
    let mut worst = 0;
    for (i, (arrived, event)) in got.iter().enumerate() {
        let due = start + (i as f64 * 1e6 / rate) as i64;
        assert_eq!(stamp(event), due, "event {i} is off the absolute schedule");
        assert!(
            *arrived >= due,
            "event {i} arrived {} µs before its time",
            due - arrived
        );
        worst = worst.max(arrived - due);
        assert!(
            arrived - due <= lateness,
            "event {i} arrived {} µs late",
            arrived - due
        );
    }
    eprintln!("rate {rate}: worst lateness {worst} µs over {seconds} s");
}

#[test]
fn pacing_at_100_per_second_follows_the_clock() {
    check_pacing(100.0, 3, false);
}

#[test]
fn pacing_at_10000_per_second_follows_the_clock() {
    check_pacing(10_000.0, 3, false);
}

#[test]
#[ignore = "60 s soak: cargo test --test gen_events -- --ignored"]
fn pacing_holds_for_a_minute() {
    check_pacing(100.0, 60, true);
    check_pacing(10_000.0, 60, true);
}

/// The same minute with stalls tolerated (`--max-lag 2s`): on a busy machine the process can be
/// descheduled for a few hundred ms, which the strict soak reports as a skip. This one still checks
/// that nothing drifts and nothing is early over 60 s.
#[test]
#[ignore = "60 s soak: cargo test --test gen_events -- --ignored"]
fn pacing_holds_for_a_minute_on_a_busy_machine() {
    check_pacing(100.0, 60, false);
    check_pacing(10_000.0, 60, false);
}

#[test]
fn a_stall_is_reported_and_not_made_up_in_a_burst() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    // `--max-lag 300ms` so that the ordinary hiccups of a busy machine are caught up and only
    // the stall this test makes counts as one.
    let mut child = Command::new(EXE)
        .args(["--rate", "1000", "--duration", "3s", "--max-lag", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // The stall itself: the process is frozen for 1 s.
    kill(pid, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    kill(pid, Signal::SIGCONT).unwrap();
    let mut all: Vec<Value> = vec![serde_json::from_str(&line).unwrap()];
    all.extend(
        stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()),
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("behind schedule: skipped"), "{stderr}");
    // Far fewer than the 3000 scheduled: the ~1000 missed events were skipped, not sent late.
    let total = all.len();
    assert!(
        (1500..=2400).contains(&total),
        "{total} events; stderr: {stderr}"
    );
    // Events stay 1 ms apart in schedule, except across the skipped stretch, which is about as
    // long as the stall.
    let stamps: Vec<i64> = all
        .iter()
        .map(|e| {
            pipeworks::time::parse_timestamp(e["value"]["timestamp"].as_str().unwrap()).unwrap()
        })
        .collect();
    let longest = stamps.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest >= 600_000,
        "longest gap in the schedule {longest} µs"
    );
}
