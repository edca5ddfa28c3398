//! window-agg on a real memcached (started on a free loopback port): several concurrent writers
//! give exactly the in-memory counts, memcached dying and coming back mid-stream, foreign values,
//! and the read mode.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, generate, run, total_events, Daemon, WITHIN};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_window-agg");

/// `count` events of simulated time from 2019-12-08T06:00Z at `rate` a second, from `seed`.
fn simulated(rate: u32, count: u32, seed: u32) -> String {
    let (rate, count, seed) = (rate.to_string(), count.to_string(), seed.to_string());
    generate(&[
        "--simulated",
        "--start",
        "2019-12-08T06:00:00Z",
        "--rate",
        &rate,
        "--count",
        &count,
        "--seed",
        &seed,
    ])
}

/// The in-memory window-agg's last line for `events`.
fn in_memory(events: &str, flags: &[&str]) -> Value {
    let r = run(EXE, flags, events.as_bytes());
    r.expect_code(0);
    r.json_lines().pop().expect("a summary line")
}

fn read_shared(addr: SocketAddr, flags: &[&str]) -> Value {
    let server = addr.to_string();
    let mut args = vec!["--read", "--memcached", &server];
    args.extend_from_slice(flags);
    let r = run(EXE, &args, b"");
    r.expect_code(0);
    let mut lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    lines.pop().unwrap()
}

/// Split `events` round-robin into `n` shards and run one window-agg per shard concurrently.
fn run_shards(events: &str, n: usize, addr: SocketAddr, flags: &[&str]) {
    let mut shards = vec![String::new(); n];
    for (i, line) in events.lines().enumerate() {
        shards[i % n].push_str(line);
        shards[i % n].push('\n');
    }
    let server = addr.to_string();
    let handles: Vec<_> = shards
        .into_iter()
        .map(|shard| {
            let mut args: Vec<String> = vec!["--memcached".into(), server.clone()];
            args.extend(flags.iter().map(|s| s.to_string()));
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run(EXE, &args, shard.as_bytes())
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        r.expect_code(0);
        assert!(!r.stdout.is_empty(), "{}", r.describe());
    }
}

fn three_ids_config() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(
        br#"{"tracking_ids": ["INF-yj562hjojbtez", "INF-3gbfcjjdsd6vhvo", "INF-ixpktk3itsk86"]}"#,
    )
    .unwrap();
    f
}

#[test]
fn four_concurrent_writers_lose_nothing() {
    let config = three_ids_config();
    let config = config.path().to_str().unwrap();
    // Runs of different seeds, window shapes and a deliberately tiny bucket (100 ms: a sync
    // every 40 events per writer), so interleavings vary and a race would show.
    let runs: [(&str, &str, &str, &str); 4] = [
        ("1", "200", "8000", "1s"),
        ("2", "400", "2000", "100ms"),
        ("3", "400", "2000", "100ms"),
        ("4", "1000", "6000", "500ms"),
    ];
    for (seed, rate, count, bucket) in runs {
        let mc = Daemon::memcached();
        let events = generate(&[
            "--config",
            config,
            "--simulated",
            "--start",
            "2019-12-08T06:00:00Z",
            "--rate",
            rate,
            "--count",
            count,
            "--seed",
            seed,
        ]);
        let flags = ["--minutes", "1", "--bucket", bucket];
        run_shards(&events, 4, mc.addr, &flags);
        let shared = read_shared(mc.addr, &flags);
        let alone = in_memory(&events, &flags);
        assert_eq!(
            shared, alone,
            "seed {seed}, bucket {bucket}: memcached differs from one in-memory process"
        );
        let total = total_events(&alone);
        assert!(total > 0);
    }
}

#[test]
fn several_servers_share_the_keys() {
    let (a, b) = (Daemon::memcached(), Daemon::memcached());
    let events = simulated(100, 3000, 6);
    let servers = format!("{},{}", a.addr, b.addr);
    let flags = ["--minutes", "1", "--bucket", "5s"];
    let mut args = vec!["--memcached", &servers];
    args.extend_from_slice(&flags);
    run(EXE, &args, events.as_bytes()).expect_code(0);
    let mut read = vec!["--read", "--memcached", &servers];
    read.extend_from_slice(&flags);
    let r = run(EXE, &read, b"");
    r.expect_code(0);
    assert_eq!(r.json_lines()[0], in_memory(&events, &flags));
    // Each key lives on exactly one server, and both servers hold some: the summaries and the
    // per-bucket indexes of the six 5 s buckets.
    let first = pipeworks::time::parse_timestamp("2019-12-08T06:00:00Z").unwrap() / 5_000_000;
    let mut keys: Vec<String> = ["signup", "user-event", "review"]
        .iter()
        .map(|t| format!("pipeworks:{t}"))
        .collect();
    keys.extend((first..first + 6).map(|b| format!("pipeworks:~n:5000000:{b}")));
    let mut per_server = Vec::new();
    for mc in [&a, &b] {
        let client =
            memcache::Client::connect(format!("memcache://{}?protocol=ascii", mc.addr)).unwrap();
        let held: Vec<bool> = keys
            .iter()
            .map(|k| client.get::<String>(k).unwrap().is_some())
            .collect();
        per_server.push(held);
    }
    for (i, key) in keys.iter().enumerate() {
        assert!(
            per_server[0][i] ^ per_server[1][i],
            "{key} is not on exactly one server"
        );
    }
    assert!(
        per_server.iter().all(|held| held.iter().any(|&h| h)),
        "one server holds nothing"
    );
}

#[test]
fn unreachable_memcached_is_a_clear_error() {
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let r = run(EXE, &["--memcached", &server], b"");
    r.expect_failure(1, &format!("memcached {server}: cannot connect"));
    let r = run(EXE, &["--read", "--memcached", &server], b"");
    r.expect_code(1);
    let r = run(EXE, &["--memcached", "nohost"], b"");
    r.expect_code(2);
}

#[test]
fn a_foreign_value_under_a_summary_key_is_reported_not_trusted() {
    let mc = Daemon::memcached();
    let client =
        memcache::Client::connect(format!("memcache://{}?protocol=ascii", mc.addr)).unwrap();
    // Someone else's value under our key, claiming a window far in the future.
    client
        .set(
            "pipeworks:signup",
            r#"{"window_end":"2099-01-01T00:00:00Z","totalEventsCaptured":999}"#,
            0,
        )
        .unwrap();
    let events = simulated(50, 500, 2);
    let server = mc.addr.to_string();
    let r = run(EXE, &["--memcached", &server], events.as_bytes());
    r.expect_code(0).expect_stderr(
        "memcached key pipeworks:signup holds a value that is not a window-agg summary",
    );
    assert_eq!(read_shared(mc.addr, &[]), in_memory(&events, &[]));
    // Read mode reports a foreign value too, and fails.
    client.set("pipeworks:review", "not json", 0).unwrap();
    let r = run(EXE, &["--read", "--memcached", &server], b"");
    r.expect_failure(
        1,
        "pipeworks:review holds a value that is not a window-agg summary",
    );
    assert!(r.json_lines()[0]["types"].get("review").is_none());
}

#[test]
fn read_mode_needs_a_summary() {
    let mc = Daemon::memcached();
    let r = run(EXE, &["--read", "--memcached", &mc.addr.to_string()], b"");
    r.expect_failure(1, "no window-agg summary");
}

#[test]
fn the_config_file_names_the_server() {
    let mc = Daemon::memcached();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(
        f,
        r#"{{"memcached": "{}", "key_prefix": "demo:", "minutes": 1}}"#,
        mc.addr
    )
    .unwrap();
    let config = f.path().to_str().unwrap();
    let events = simulated(20, 200, 3);
    // The address alone does not switch Memcached on; `--memcached` without a value does.
    let local = run(EXE, &["--config", config], events.as_bytes());
    local.expect_code(0);
    let shared = run(EXE, &["--config", config, "--memcached"], events.as_bytes());
    shared.expect_code(0);
    assert_eq!(shared.stdout, local.stdout);
    let r = run(EXE, &["--config", config, "--read"], b"");
    r.expect_code(0);
    assert_eq!(r.json_lines()[0], local.json_lines().pop().unwrap());
    let client =
        memcache::Client::connect(format!("memcache://{}?protocol=ascii", mc.addr)).unwrap();
    let value: Option<String> = client.get("demo:signup").unwrap();
    let stored: Value =
        serde_json::from_str(&value.expect("the summary under the type's key")).unwrap();
    assert!(stored["totalEventsCaptured"].as_u64().unwrap() > 0);
}

#[test]
fn memcached_restarted_mid_stream() {
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let mc = Daemon::memcached_on(port);
    // 100 s of event time at 50 events/s, in three parts: before the kill, during the outage,
    // after the restart. Event time drives the window, so the test need not wait for it.
    let events = simulated(50, 5000, 11);
    let lines: Vec<&str> = events.lines().collect();
    let (before, during, after) = (&lines[..500], &lines[500..1000], &lines[1000..]);
    let flags = ["--minutes", "1", "--bucket", "1s"];
    let mut agg = Daemon::program(EXE)
        .args(["--memcached", &server])
        .args(flags)
        .stdin(Stdio::piped())
        .start();
    let feed = |agg: &mut Daemon, part: &[&str]| {
        agg.send(
            &part
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
        );
    };
    feed(&mut agg, before);
    agg.next_line(Duration::from_secs(10))
        .expect("a shared summary before the kill");
    drop(mc);
    feed(&mut agg, during);
    agg.wait_stderr(
        "keeping the counts locally and retrying with backoff",
        Duration::from_secs(10),
    );
    let _mc = Daemon::memcached_on(port);
    // After the restart, feed the rest a bucket at a time until window-agg says it is back.
    let mut rest = after.chunks(50);
    for chunk in rest.by_ref() {
        feed(&mut agg, chunk);
        if agg.stderr_says("answers again", Duration::from_millis(100)) {
            break;
        }
    }
    agg.wait_stderr("answers again", Duration::from_secs(15));
    for chunk in rest {
        feed(&mut agg, chunk);
    }
    agg.close_stdin();
    let status = agg.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", agg.stderr_text());
    // The final window (the last minute of event time) lies past the gap: whole again, exactly
    // the in-memory counts, including the events read while memcached was down.
    let shared = read_shared(format!("127.0.0.1:{port}").parse().unwrap(), &flags);
    assert_eq!(shared, in_memory(&events, &flags));
}

/// SIGTERM on a live writer delivers its last counts before it exits 0.
#[test]
fn sigterm_delivers_the_last_counts() {
    use nix::sys::signal::Signal;
    let mc = Daemon::memcached();
    let events = simulated(10, 300, 12);
    let mut agg = Daemon::program(EXE)
        .args(["--memcached", &mc.addr.to_string()])
        .stdin(Stdio::piped())
        .start();
    agg.send(&events);
    // 30 s of event time crosses two 10 s boundaries: after both lines every event has been read.
    for _ in 0..2 {
        let line = agg.next_line(WITHIN).expect("a summary line");
        assert!(line.starts_with('{'), "{line:?}");
    }
    agg.signal(Signal::SIGTERM);
    let status = agg.wait_exit(WITHIN);
    assert_eq!(status.code(), Some(0), "{}", agg.stderr_text());
    assert_eq!(read_shared(mc.addr, &[]), in_memory(&events, &[]));
}

fn event_at(t: i64, event: &str, tid: &str) -> String {
    serde_json::json!({"value": {"event": event, "trackingId": tid, "timestamp": pipeworks::time::format_timestamp(t)}})
        .to_string()
}

const SEC: i64 = 1_000_000;

fn base_time() -> i64 {
    pipeworks::time::parse_timestamp("2019-12-08T06:00:00Z").unwrap()
}

/// A type name or tracking id that cannot be part of a Memcached key (245 characters: the
/// summary key `pipeworks:<type>` would pass 250 bytes) is reported once and counted here only;
/// every other summary keeps being shared at every boundary. Names with spaces and control
/// characters are escaped into valid keys and shared.
#[test]
fn a_name_that_cannot_be_a_key_holds_up_no_other_summary() {
    let mc = Daemon::memcached();
    let base = base_time();
    let long = "x".repeat(245);
    let mut lines: Vec<String> = (0..20)
        .map(|i| event_at(base + i * SEC, "click", "INF-a"))
        .collect();
    lines.push(event_at(base + 20 * SEC, &long, "INF-a"));
    lines.push(event_at(base + 20 * SEC, "click", &long));
    lines.push(event_at(base + 20 * SEC, "click", "a b\u{1}"));
    lines.extend((21..39).map(|i| event_at(base + i * SEC, "click", "INF-a")));
    let input = lines.join("\n");
    let r = run(
        EXE,
        &["--memcached", &mc.addr.to_string()],
        input.as_bytes(),
    );
    r.expect_code(1);
    assert!(!r.stderr.contains("gave up"), "{}", r.describe());
    assert_eq!(
        r.stderr.matches("kept here only").count(),
        2,
        "the type and the id, once each\n{}",
        r.describe()
    );
    r.expect_stderr("2 events were counted here only");
    // A shared summary at each of the three boundaries crossed, and at the end.
    let out = r.json_lines();
    assert_eq!(out.len(), 4, "{}", r.describe());
    let last = out.last().unwrap();
    assert_eq!(
        last["types"]["user-event"]["totalEventsCaptured"], 39,
        "{last}"
    );
    assert_eq!(
        last["types"]["user-event"]["eventsCapturedByTrackingIds"]["a b\u{1}"],
        1
    );
    assert!(last["types"].get(&long).is_none());
    let shared = read_shared(mc.addr, &[]);
    assert_eq!(shared["types"], last["types"]);
    // In memory, nothing is left out.
    let local = in_memory_any(&input, &[]);
    assert_eq!(local["types"]["user-event"]["totalEventsCaptured"], 40);
    assert_eq!(local["types"][&long]["totalEventsCaptured"], 1);
}

/// The in-memory window-agg's last line, whatever its exit code.
fn in_memory_any(events: &str, flags: &[&str]) -> Value {
    run(EXE, flags, events.as_bytes())
        .json_lines()
        .pop()
        .expect("a summary line")
}

/// 60,000 distinct types in one window: the shared type registry stays well within one
/// Memcached item (--max-types, default 1000, reported when reached), summaries keep coming, and
/// the types under the cap are exact.
#[test]
fn sixty_thousand_types_stay_within_one_item() {
    let mc = Daemon::memcached();
    let base = base_time();
    let mut lines = Vec::new();
    for i in 0..60_000i64 {
        let t = base + i * 1000;
        lines.push(event_at(t, &format!("a-rather-long-type-{i:05}"), "INF-a"));
        if i % 100 == 0 {
            lines.push(event_at(t, "click", "INF-b"));
        }
    }
    let started = Instant::now();
    let r = run(
        EXE,
        &["--memcached", &mc.addr.to_string()],
        lines.join("\n").as_bytes(),
    );
    let took = started.elapsed();
    r.expect_code(1);
    assert!(
        took < Duration::from_secs(60),
        "took {took:?}\n{}",
        r.describe()
    );
    r.expect_stderr("--max-types");
    assert!(!r.stderr.contains("gave up"), "{}", r.describe());
    let out = r.json_lines();
    assert_eq!(
        out.len(),
        6,
        "five boundaries and the end\n{}",
        r.describe()
    );
    let last = out.last().unwrap();
    assert_eq!(last["types"]["user-event"]["totalEventsCaptured"], 600);
    let types = last["types"].as_object().unwrap();
    assert_eq!(
        types.len(),
        1003,
        "1000 shared types and the mapping's three"
    );
    for (name, counts) in types {
        if name.starts_with("a-rather-long-type-") {
            assert_eq!(counts["totalEventsCaptured"], 1, "{name}");
        }
    }
    let client =
        memcache::Client::connect(format!("memcache://{}?protocol=ascii", mc.addr)).unwrap();
    let registry: String = client.get("pipeworks:~types").unwrap().unwrap();
    assert!(registry.len() < 100_000, "{} bytes", registry.len());
    assert_eq!(registry.lines().count(), 1003);
    assert_eq!(read_shared(mc.addr, &[])["types"], last["types"]);
}

/// A --key-prefix Memcached cannot take is a usage error, not an endless retry.
#[test]
fn a_prefix_that_cannot_start_a_key_is_a_usage_error() {
    let mc = Daemon::memcached();
    for prefix in ["my app:", &"p".repeat(240)] {
        let r = run(
            EXE,
            &["--memcached", &mc.addr.to_string(), "--key-prefix", prefix],
            b"",
        );
        r.expect_failure(2, "--key-prefix");
    }
}
