//! The repricing loop over Redis Streams: `ticker --redis` and `reprice --redis … --group G`,
//! with a real redis-server and a real price-api, several reprice consumers in one group.

mod common;
mod reprice_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, run, Daemon};
use nix::sys::signal::Signal;
use redis::Commands;
use reprice_support::{exe, start};
use serde_json::Value;

const TICKS: u64 = 600;
const BOOKS: u64 = 100;
const GROUP: &str = "pricing";

/// `BOOKS` books over `TICKS` steps; the price of book b at step s is a function the test knows.
fn price(book: u64, step: u64) -> f64 {
    (1000 * (book + 1) + (step * 37 + book * 11) % 500) as f64 / 100.0
}

fn book_name(book: u64) -> String {
    format!("b{book:03}")
}

fn write_csv(dir: &std::path::Path) -> String {
    let mut text = String::from("Timestamp,Book,Price\n");
    for step in 1..=TICKS {
        for book in 0..BOOKS {
            text.push_str(&format!(
                "{step},{},{}\n",
                book_name(book),
                price(book, step)
            ));
        }
    }
    let path = dir.join("books.csv");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// What a tick's book should average: its last 5 prices up to that step, to a millionth.
fn expected_avg(book: u64, tick: u64) -> f64 {
    let steps: Vec<u64> = (tick.saturating_sub(4).max(1)..=tick).collect();
    let sum: f64 = steps.iter().map(|&s| price(book, s)).sum();
    (sum / steps.len() as f64 * 1e6).round() / 1e6
}

struct Loop {
    redis: Daemon,
    api: Daemon,
    csv: String,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn start() -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let csv = write_csv(dir.path());
        Loop {
            redis: Daemon::redis(),
            api: Daemon::ours(&exe("price-api"), &["--listen", "127.0.0.1:0"]),
            csv,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/ticks", self.redis.addr)
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.redis.addr))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn consumer(&self, name: &str, extra: &[&str]) -> Daemon {
        let url = self.url();
        let api = self.api.url();
        let mut args = vec![
            "--csv",
            &self.csv,
            "--api",
            &api,
            "--poll-after",
            "20ms",
            "--redis",
            &url,
            "--group",
            GROUP,
            "--consumer",
            name,
            // Long enough that a live consumer slowed down by a loaded machine keeps its entries
            // (its heartbeat is every 1 s), short enough that a dead one's are claimed soon.
            "--claim-after",
            "3s",
            "--books-per-entry",
            "10",
            "--max-entries",
            "16",
            // A claimed old tick makes a data manager read the 60,000-row CSV again from the
            // start; a debug build on a loaded machine can take longer than the default 2 s.
            "--dm-timeout",
            "20s",
        ];
        args.extend_from_slice(extra);
        let p = start("reprice", &args, Stdio::null());
        p.wait_stderr(
            &format!("consumer {name} of group"),
            Duration::from_secs(20),
        );
        p
    }

    /// Append ticks 1..=count to the stream as `ticker --redis` does (fields `tick`, `at`,
    /// `line`), one every 2 ms from a thread. Not `ticker` itself: on a loaded machine a ticker
    /// that stalls skips ticks (`"missed":k`), and these tests need all 600.
    fn ticks(&self, count: u64) -> std::thread::JoinHandle<()> {
        let mut con = self.con();
        std::thread::spawn(move || {
            for tick in 1..=count {
                let at = format!("2026-12-02T19:00:{:02}.{:06}Z", tick / 100, tick % 100);
                let line = format!(r#"{{"tick":{tick},"at":"{at}"}}"#);
                let _: String = con
                    .xadd(
                        "ticks",
                        "*",
                        &[("tick", tick.to_string()), ("at", at), ("line", line)],
                    )
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    }

    /// Every line published in the group's prices stream.
    fn published(&self) -> Vec<Value> {
        let entries: redis::streams::StreamRangeReply = self
            .con()
            .xrange_all(format!("{{ticks}}:prices:{GROUP}"))
            .unwrap();
        entries
            .ids
            .iter()
            .map(|e| {
                let line: String = e.get("line").unwrap();
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }

    /// Wait until the prices stream holds `n` lines.
    fn await_published(&self, n: usize, within: Duration, procs: &[&Daemon]) {
        let deadline = Instant::now() + within;
        let mut con = self.con();
        loop {
            let len: usize = con.xlen(format!("{{ticks}}:prices:{GROUP}")).unwrap();
            if len >= n {
                return;
            }
            if Instant::now() > deadline {
                let errs: Vec<String> = procs.iter().map(|p| p.stderr_text()).collect();
                panic!("only {len} of {n} lines published after {within:?}; stderr: {errs:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn issued(&self) -> u64 {
        let body = ureq::get(&format!("{}/health", self.api.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["issued"]
            .as_u64()
            .unwrap()
    }

    fn pending(&self, key: &str) -> u64 {
        let reply: redis::streams::StreamPendingReply = self.con().xpending(key, GROUP).unwrap();
        reply.count() as u64
    }
}

/// Stop a consumer gracefully and take every line it printed; it exits with `code` (1 when it
/// published reports).
fn stop_with(mut p: Daemon, code: i32) -> (Vec<Value>, String) {
    p.signal(Signal::SIGTERM);
    let lines = p.rest();
    let status = p.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(code), "{}", p.stderr_text());
    (lines, p.stderr_text())
}

fn stop(p: Daemon) -> (Vec<Value>, String) {
    stop_with(p, 0)
}

/// Every (tick, book) once among `published`, each a correct price; returns its request ids.
fn check_exactly_once(published: &[Value]) -> HashSet<u64> {
    let mut seen: BTreeMap<(u64, String), &Value> = BTreeMap::new();
    let mut ids = HashSet::new();
    for line in published {
        assert!(line.get("error").is_none(), "a report: {line}");
        let tick = line["tick"].as_u64().unwrap();
        let book = line["book"].as_str().unwrap().to_string();
        let b: u64 = book[1..].parse().unwrap();
        assert_eq!(
            line["avg_comp_price"].as_f64().unwrap(),
            expected_avg(b, tick),
            "{line}"
        );
        let id = line["request_id"].as_u64().unwrap();
        assert_eq!(line["sold"].as_bool().unwrap(), id % 2 == 0, "{line}");
        let factor = if id % 2 == 0 { 1.1 } else { 0.9 };
        let want = (expected_avg(b, tick) * factor * 100.0).round() / 100.0;
        assert!(
            (line["price"].as_f64().unwrap() - want).abs() < 1e-9,
            "{line}"
        );
        assert!(ids.insert(id), "request id {id} priced twice: {line}");
        if let Some(before) = seen.insert((tick, book), line) {
            panic!("priced twice: {before} and {line}");
        }
    }
    let want: Vec<(u64, String)> = (1..=TICKS)
        .flat_map(|t| (0..BOOKS).map(move |b| (t, book_name(b))))
        .collect();
    let got: Vec<(u64, String)> = seen.into_keys().collect();
    assert_eq!(got.len(), want.len(), "every (tick, book) priced");
    assert_eq!(got, want);
    ids
}

/// What the consumers printed: each line is a published one, and none is printed twice.
fn check_printed(printed: &[Vec<Value>], published: &[Value]) {
    let key = |v: &Value| (v["tick"].as_u64().unwrap(), v["book"].to_string());
    let published: HashMap<_, &Value> = published.iter().map(|v| (key(v), v)).collect();
    let mut all = HashSet::new();
    for lines in printed {
        for line in lines {
            assert_eq!(
                Some(&line),
                published.get(&key(line)),
                "printed, not published"
            );
            assert!(all.insert(key(line)), "printed twice: {line}");
        }
    }
}

#[test]
fn three_consumers_price_every_tick_and_book_exactly_once() {
    let lp = Loop::start();
    let consumers: Vec<Daemon> = ["c1", "c2", "c3"]
        .iter()
        .map(|n| lp.consumer(n, &[]))
        .collect();
    let ticker = lp.ticks(TICKS);
    let refs: Vec<&Daemon> = consumers.iter().collect();
    lp.await_published((TICKS * BOOKS) as usize, Duration::from_secs(300), &refs);
    ticker.join().unwrap();
    let mut printed = Vec::new();
    for p in consumers {
        let (lines, stderr) = stop(p);
        assert!(!lines.is_empty(), "a consumer priced nothing: {stderr}");
        printed.push(lines);
    }
    let published = lp.published();
    assert_eq!(published.len(), (TICKS * BOOKS) as usize);
    let ids = check_exactly_once(&published);
    check_printed(&printed, &published);
    // Nobody died: every printed line, and price-api saw one registration per (tick, book).
    assert_eq!(printed.iter().map(Vec::len).sum::<usize>(), published.len());
    assert_eq!(
        lp.issued(),
        ids.len() as u64,
        "price-api registrations, one per (tick, book)"
    );
    assert_eq!(lp.pending("ticks"), 0);
    assert_eq!(lp.pending(&format!("{{ticks}}:books:{GROUP}")), 0);
}

#[test]
fn a_consumer_killed_mid_run_leaves_its_entries_to_the_others() {
    let lp = Loop::start();
    let victim = lp.consumer("c1", &[]);
    let others: Vec<Daemon> = ["c2", "c3"].iter().map(|n| lp.consumer(n, &[])).collect();
    let ticker = lp.ticks(TICKS);
    // Once the victim has priced 500 books, kill -9 it with entries in its hands.
    let mut victim_lines = Vec::new();
    while victim_lines.len() < 500 {
        let line = victim.next_line(Duration::from_secs(60)).unwrap();
        victim_lines.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    victim.signal(Signal::SIGKILL);
    let mut victim = victim;
    victim.wait_exit(Duration::from_secs(10));
    while let Some(line) = victim.poll_line(Duration::from_millis(100)) {
        victim_lines.push(serde_json::from_str(&line).unwrap());
    }
    let mut con = lp.con();
    let held: redis::streams::StreamPendingCountReply = con
        .xpending_consumer_count(
            format!("{{ticks}}:books:{GROUP}"),
            GROUP,
            "-",
            "+",
            1000,
            "c1",
        )
        .unwrap();
    let held_ticks: redis::streams::StreamPendingCountReply = con
        .xpending_consumer_count("ticks", GROUP, "-", "+", 1000, "c1")
        .unwrap();
    assert!(
        !held.ids.is_empty() || !held_ticks.ids.is_empty(),
        "the victim held no entries when it was killed"
    );
    let refs: Vec<&Daemon> = others.iter().collect();
    lp.await_published((TICKS * BOOKS) as usize, Duration::from_secs(300), &refs);
    ticker.join().unwrap();
    let mut printed = vec![victim_lines];
    let mut claims = String::new();
    for p in others {
        let (lines, stderr) = stop(p);
        claims.push_str(&stderr);
        printed.push(lines);
    }
    assert!(claims.contains("claimed"), "nobody claimed: {claims}");
    let published = lp.published();
    assert_eq!(published.len(), (TICKS * BOOKS) as usize);
    let ids = check_exactly_once(&published);
    check_printed(&printed, &published);
    // The claimers polled the victim's recorded registrations instead of registering again: at
    // most the registrations of its entries in flight (16 of 10 books) went unpolled.
    let issued = lp.issued();
    assert!(
        issued >= ids.len() as u64 && issued <= ids.len() as u64 + 160,
        "price-api issued {issued} ids for {} prices",
        ids.len()
    );
    assert_eq!(lp.pending("ticks"), 0);
    assert_eq!(lp.pending(&format!("{{ticks}}:books:{GROUP}")), 0);
}

#[test]
fn ticker_appends_ticks_to_a_stream_and_keeps_ticking_while_redis_is_down() {
    let redis = Daemon::redis();
    let url = format!("redis://{}/t", redis.addr);
    let run1 = run(
        &exe("ticker"),
        &["20ms", "--count", "3", "--redis", &url],
        b"",
    );
    run1.expect_code(0);
    assert_eq!(run1.stdout, "", "ticks go to the stream, not stdout");
    let mut con = redis::Client::open(format!("redis://{}/", redis.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: redis::streams::StreamRangeReply = con.xrange_all("t").unwrap();
    let ticks: Vec<u64> = entries
        .ids
        .iter()
        .map(|e| e.get::<u64>("tick").unwrap())
        .collect();
    assert_eq!(ticks, [1, 2, 3]);
    let line: String = entries.ids[2].get("line").unwrap();
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["tick"], 3);

    // Nothing listening: the ticker says so once and ticks to the end.
    let down = format!("redis://127.0.0.1:{}/t", free_port());
    let run2 = run(
        &exe("ticker"),
        &["10ms", "--count", "5", "--redis", &down],
        b"",
    );
    run2.expect_code(0);
    assert_eq!(
        run2.stderr
            .matches("ticking on, counting the ticks not added")
            .count(),
        1,
        "{}",
        run2.describe()
    );
}

#[test]
fn ticker_counts_the_ticks_redis_missed_on_the_next_one() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/t");
    let ticker = start("ticker", &["20ms", "--redis", &url], Stdio::null());
    ticker.wait_stderr("ticking on", Duration::from_secs(10));
    let redis = Daemon::redis_on(port);
    ticker.wait_stderr("adding ticks again", Duration::from_secs(10));
    let mut con = redis::Client::open(format!("redis://{}/", redis.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: redis::streams::StreamRangeReply = con.xrange_all("t").unwrap();
    let first: String = entries.ids[0].get("line").unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert!(first["unread"].as_u64().unwrap() >= 1, "{first}");
}

#[test]
fn bad_flags_and_an_unreachable_redis_are_clear() {
    let csv = reprice_support::example("books.csv");
    let reprice = exe("reprice");
    let usage_errors: [(&[&str], &str); 3] = [
        (
            &["--redis", "http://127.0.0.1:6379/t", "--group", "g"],
            "--redis http://127.0.0.1:6379/t: not a redis:// URL",
        ),
        (
            &["--redis", "redis://127.0.0.1:6379", "--group", "g"],
            "give the key as redis://HOST:PORT/KEY",
        ),
        (&["--redis", "redis://127.0.0.1:6379/t"], "--group"),
    ];
    for (flags, message) in usage_errors {
        let mut args = vec!["--csv", csv.as_str()];
        args.extend_from_slice(flags);
        run(&reprice, &args, b"").expect_failure(2, message);
    }
    let group_alone = run(&reprice, &["--csv", &csv, "--group", "g"], b"");
    group_alone.expect_failure(2, "--redis");
    let files = run(
        &reprice,
        &[
            "--csv",
            &csv,
            "--redis",
            "redis://127.0.0.1:6379/t",
            "--group",
            "g",
            "ticks.jsonl",
        ],
        b"",
    );
    files.expect_failure(2, "give no input files");
    let down = format!("redis://127.0.0.1:{}/t", free_port());
    let unreachable = run(
        &reprice,
        &["--csv", &csv, "--redis", &down, "--group", "g"],
        b"",
    );
    unreachable.expect_failure(1, &format!("reprice: redis {down}: cannot connect"));
    let ticker = run(&exe("ticker"), &["1s", "--redis", "redis://h:1"], b"");
    ticker.expect_failure(2, "give the key");
    let both = run(
        &exe("ticker"),
        &["1s", "--redis", "redis://h:1/t", "--out", "/tmp/x.fifo"],
        b"",
    );
    both.expect_code(2);
}

#[test]
fn a_bad_tick_entry_is_reported_and_later_ticks_are_priced() {
    let lp = Loop::start();
    let mut con = lp.con();
    let _: String = con.xadd("ticks", "*", &[("tick", "soon")]).unwrap();
    let _: String = con.xadd("ticks", "*", &[("tick", "7")]).unwrap();
    let c = lp.consumer("c1", &[]);
    lp.await_published(1 + BOOKS as usize, Duration::from_secs(60), &[&c]);
    let (lines, stderr) = stop_with(c, 1);
    assert!(
        stderr.contains("bad tick entry: field \"tick\" is \"soon\""),
        "{stderr}"
    );
    let reports: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(reports.len(), 1, "{lines:?}");
    assert_eq!(reports[0]["tick"], Value::Null);
    let priced: HashSet<String> = lines
        .iter()
        .filter(|l| l["tick"] == 7)
        .map(|l| l["book"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(priced.len(), BOOKS as usize);
    assert_eq!(lp.published().len(), 1 + BOOKS as usize);
}

#[test]
fn an_entry_delivered_too_many_times_is_reported_not_dropped() {
    let lp = Loop::start();
    let mut con = lp.con();
    let books = format!("{{ticks}}:books:{GROUP}");
    for key in ["ticks", books.as_str()] {
        let _: () = con.xgroup_create_mkstream(key, GROUP, "0").unwrap();
    }
    let windows = r#"[{"book":"b001","prices":[1,2],"first_row":1,"last_row":2},{"book":"b002","prices":[3],"first_row":1,"last_row":1}]"#;
    let id: String = con
        .xadd(
            &books,
            "*",
            &[("tick", "9"), ("from", "0-1"), ("windows", windows)],
        )
        .unwrap();
    // A ghost consumer takes it and "dies" three times over (each XCLAIM counts a delivery).
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP", GROUP, "ghost", "COUNT", "1", "STREAMS", &books, ">",
        ])
        .query(&mut con)
        .unwrap();
    for _ in 0..2 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&[&books, GROUP, "ghost", "0", &id])
            .query(&mut con)
            .unwrap();
    }
    let c = lp.consumer("c1", &["--claim-after", "100ms", "--max-deliveries", "3"]);
    lp.await_published(2, Duration::from_secs(30), &[&c]);
    let (lines, stderr) = stop_with(c, 1);
    assert!(
        stderr.contains("given up after 4 deliveries (--max-deliveries 3)"),
        "{stderr}"
    );
    let books_reported: Vec<&str> = lines.iter().map(|l| l["book"].as_str().unwrap()).collect();
    assert_eq!(books_reported, ["b001", "b002"]);
    assert!(lines
        .iter()
        .all(|l| l["tick"] == 9 && l["entry"] == id.as_str()));
    assert_eq!(lp.published(), lines);
    assert_eq!(lp.pending(&books), 0);
    assert_eq!(lp.issued(), 0, "a given-up entry is not priced");
}
