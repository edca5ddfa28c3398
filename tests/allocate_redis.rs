//! allocate --inventory redis://…: many processes drawing from one stock in a real redis-server.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{free_port, run, Daemon};
use nix::sys::signal::Signal;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_allocate");
const PROCESSES: usize = 8;
const ORDERS: usize = 20_000;

/// Three warehouses, four items, stock that runs out part way through the orders.
const SEED: &str = r#"[{"name":"owd","inventory":{"apple":2500,"pear":2000,"kiwi":1500}},{"name":"dm","inventory":{"apple":3000,"fig":2500}},{"name":"bx","inventory":{"pear":3000,"kiwi":2000,"fig":1000,"apple":500}}]"#;

fn orders() -> Vec<String> {
    let items = ["apple", "pear", "kiwi", "fig"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    (0..ORDERS)
        .map(|i| {
            let a = items[next(4) as usize];
            let mut line = format!(r#"{{"id":"o-{i}","items":{{"{a}":{}"#, 1 + next(4));
            let b = items[next(4) as usize];
            if b != a && next(2) == 0 {
                line.push_str(&format!(r#","{b}":{}"#, 1 + next(3)));
            }
            line.push_str("}}");
            line
        })
        .collect()
}

fn stock(list: &Value) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for w in list.as_array().unwrap() {
        for (item, q) in w["inventory"].as_object().unwrap() {
            out.insert(
                (w["name"].as_str().unwrap().to_string(), item.clone()),
                q.as_u64().unwrap(),
            );
        }
    }
    out
}

/// Check the answers of every process against the final stock and against one allocate
/// serving the orders one by one in seq order (the oracle: the file inventory).
fn check(answers: &[String], orders: &[String], url: &str, dir: &std::path::Path) {
    let show = run(EXE, &["--inventory", url, "--show"], b"");
    show.expect_code(0);
    let left = stock(&serde_json::from_str(show.stdout.trim()).unwrap());
    let start = stock(&serde_json::from_str(SEED).unwrap());
    let mut by_seq: BTreeMap<u64, Value> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut shipped: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in answers {
        let v: Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_string()),
            "order answered twice: {line}"
        );
        for s in v["shipments"].as_array().unwrap() {
            for (w, items) in s.as_object().unwrap() {
                for (item, q) in items.as_object().unwrap() {
                    *shipped.entry((w.clone(), item.clone())).or_default() += q.as_u64().unwrap();
                }
            }
        }
        assert!(by_seq.insert(seq, v).is_none(), "seq {seq} twice");
    }
    assert_eq!(ids.len(), orders.len(), "every order answered once");
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=orders.len() as u64).collect::<Vec<_>>(),
        "seqs are 1..=N, each once"
    );
    for (cell, &q) in &start {
        let s = shipped.get(cell).copied().unwrap_or(0);
        assert!(s <= q, "{cell:?}: shipped {s} of {q}");
        assert_eq!(s, q - left[cell], "{cell:?}: shipped equals stock drawn");
    }
    assert!(shipped.keys().all(|c| start.contains_key(c)));
    // The oracle: the same orders, in seq order, through one file inventory.
    let seed = dir.join("seed.json");
    std::fs::write(&seed, SEED).unwrap();
    let by_id: BTreeMap<String, &String> = orders
        .iter()
        .map(|o| {
            let v: Value = serde_json::from_str(o).unwrap();
            (v["id"].as_str().unwrap().to_string(), o)
        })
        .collect();
    let mut input = String::new();
    for v in by_seq.values() {
        input.push_str(by_id[v["id"].as_str().unwrap()]);
        input.push('\n');
    }
    let oracle = run(
        EXE,
        &["--inventory", seed.to_str().unwrap()],
        input.as_bytes(),
    );
    oracle.expect_code(0);
    let expect: Vec<Value> = oracle.json_lines();
    let got: Vec<&Value> = by_seq.values().collect();
    assert_eq!(expect.len(), got.len());
    for (e, g) in expect.iter().zip(got) {
        assert_eq!(
            e, g,
            "answer differs from serving the orders one by one in seq order"
        );
    }
    assert!(shipped.values().sum::<u64>() > 0);
    assert!(by_seq
        .values()
        .any(|v| v["shipments"] == Value::Array(vec![])));
}

/// Start the processes, each with its share of the orders; `progress` gets a message per line.
fn start(
    url: &str,
    seed: &std::path::Path,
    orders: &[String],
    progress: mpsc::Sender<()>,
) -> Vec<Daemon> {
    (0..PROCESSES)
        .map(|p| {
            let mut process = Daemon::program(EXE)
                .args(["--inventory", url, "--seed-from", seed.to_str().unwrap()])
                .stdin(Stdio::piped())
                .notify_each_line(progress.clone())
                .start();
            let share: String = orders
                .iter()
                .skip(p)
                .step_by(PROCESSES)
                .map(|o| format!("{o}\n"))
                .collect();
            process.feed(share);
            process
        })
        .collect()
}

fn finish(procs: Vec<Daemon>) -> (Vec<String>, Vec<String>) {
    let mut answers = Vec::new();
    let mut errs = Vec::new();
    for mut p in procs {
        let status = p.wait_exit(Duration::from_secs(600));
        let err = p.stderr_text();
        assert!(status.success(), "allocate failed: {status:?}\n{err}");
        answers.extend(p.stdout_lines());
        errs.push(err);
    }
    (answers, errs)
}

/// The seed file in `dir` and the inventory URL of a shop in `redis`.
fn seeded_shop(redis: &Daemon, dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let seed = dir.join("seed.json");
    std::fs::write(&seed, SEED).unwrap();
    (seed, format!("redis://{}/shop", redis.addr))
}

#[test]
fn eight_processes_share_one_stock() {
    let redis = Daemon::redis();
    let dir = tempfile::tempdir().unwrap();
    let (seed, url) = seeded_shop(&redis, dir.path());
    let orders = orders();
    let (tx, _rx) = mpsc::channel();
    let (answers, _) = finish(start(&url, &seed, &orders, tx));
    check(&answers, &orders, &url, dir.path());
}

#[test]
fn redis_killed_and_restarted_mid_run_loses_nothing_with_appendfsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("redis");
    std::fs::create_dir(&data).unwrap();
    let port = free_port();
    let settings = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        data.to_str().unwrap(),
    ];
    let redis = Daemon::redis_with(port, &settings);
    let (seed, url) = seeded_shop(&redis, dir.path());
    let orders = orders();
    let (tx, rx) = mpsc::channel();
    let procs = start(&url, &seed, &orders, tx);
    // Kill redis once a quarter of the orders are answered.
    for _ in 0..ORDERS / 4 {
        rx.recv().unwrap();
    }
    redis.signal(Signal::SIGKILL);
    drop(redis);
    let _again = Daemon::redis_with(port, &settings);
    let (answers, errs) = finish(procs);
    assert!(
        errs.iter().any(|e| e.contains("reconnecting")),
        "no process saw redis go away: {errs:?}"
    );
    check(&answers, &orders, &url, dir.path());
}

#[test]
fn idempotency_records_are_kept_by_day_and_expire() {
    let redis = Daemon::redis();
    let dir = tempfile::tempdir().unwrap();
    let (seed, url) = seeded_shop(&redis, dir.path());
    let order = b"{\"id\":\"o-1\",\"items\":{\"apple\":2}}\n";
    let args = [
        "--inventory",
        url.as_str(),
        "--seed-from",
        seed.to_str().unwrap(),
    ];
    let first = run(EXE, &args, order);
    first.expect_code(0);
    let again = run(EXE, &args, order);
    again.expect_code(0);
    assert_eq!(
        first.json_lines(),
        again.json_lines(),
        "the same id, the same answer"
    );
    again.expect_stderr("was applied already");
    let mut con = redis::Client::open(format!("redis://{}/", redis.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("{shop}:done*")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    assert_eq!(keys[0], format!("{{shop}}:done:{}", secs / 86_400));
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query(&mut con).unwrap();
    assert!(ttl > 0 && ttl <= 259_200, "ttl {ttl}");
}
