//! allocate through the real binary: the seed's lines byte for byte, the pipeline contract, live
//! inventory, and crash safety under repeated `kill -9`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::run;
use serde_json::{json, Value};

const EXE: &str = env!("CARGO_BIN_EXE_allocate");

fn lines(text: &[&str]) -> Vec<u8> {
    text.iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

#[test]
fn the_seed_examples_byte_for_byte() {
    let input = lines(&[
        r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":1}}]}"#,
        r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":0}}]}"#,
        r#"{"order":{"apple":10},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"apple":5}}]}"#,
        r#"{"order":{"apple":5,"banana":5},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"banana":5}}]}"#,
        r#"{"order":{"apple":10},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"apple":10}}]}"#,
    ]);
    let out = run(EXE, &[], &input);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        "[{\"owd\":{\"apple\":1}}]\n[]\n[{\"owd\":{\"apple\":5}},{\"dm\":{\"apple\":5}}]\n\
         [{\"owd\":{\"apple\":5}},{\"dm\":{\"banana\":5}}]\n[{\"dm\":{\"apple\":10}}]\n",
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn strategies_and_partial_through_the_binary() {
    let problem = r#"{"order":{"apple":10,"pear":1},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"apple":10}}]}"#;
    let input = lines(&[problem]);
    let answer = |args: &[&str]| {
        let out = run(EXE, args, &input);
        out.expect_code(0);
        out.json_lines()
    };
    assert_eq!(answer(&[]), [json!([])]);
    assert_eq!(
        answer(&["--partial"]),
        [json!({"shipments":[{"dm":{"apple":10}}],"unshipped":{"pear":1}})]
    );
    assert_eq!(
        answer(&["--partial", "--strategy", "greedy"]),
        [json!({"shipments":[{"owd":{"apple":5}},{"dm":{"apple":5}}],"unshipped":{"pear":1}})]
    );
    assert_eq!(
        answer(&["--partial", "--strategy", "per-item"]),
        [json!({"shipments":[{"dm":{"apple":10}}],"unshipped":{"pear":1}})]
    );
    let out = run(EXE, &["--strategy", "fastest"], b"");
    out.expect_code(2);
}

#[test]
fn bad_lines_are_reported_and_the_rest_answered() {
    let input = lines(&[
        r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":1}}]}"#,
        r#"{"order":{"apple":-1},"warehouses":[]}"#,
        r#"{"order":{"apple":1},"warehouses":[{"name":"a","inventory":{}},{"name":"a","inventory":{}}]}"#,
        "",
        r#"{"order":{"apple":1},"warehouses":[{"inventory":{"apple":1}}]}"#,
        r#"{"order":{"apple":1},"warehouses":[{"name":"x","inventory":"lots"}]}"#,
        r#"{"order":{"apple":1.5},"warehouses":[]}"#,
        "not json",
        r#"{"order":{"apple":2},"warehouses":[{"name":"owd","inventory":{"apple":1}},{"name":"dm","inventory":{"apple":1}}]}"#,
    ]);
    let out = run(EXE, &[], &input);
    out.expect_code(1);
    assert_eq!(
        out.json_lines(),
        [
            json!([{"owd":{"apple":1}}]),
            json!([{"owd":{"apple":1}},{"dm":{"apple":1}}])
        ]
    );
    let want = [
        r#"allocate: line 2: item "apple": quantity -1 is negative"#,
        r#"allocate: line 3: warehouse "a" is listed twice"#,
        r#"allocate: line 5: warehouse 1: missing field "name""#,
        r#"allocate: line 6: warehouse 1: invalid type: string "lots", expected an object of item → quantity"#,
        r#"allocate: line 7: item "apple": quantity 1.5 is not a whole number"#,
        "allocate: line 8: invalid JSON at column 2: expected ident",
        "allocate: skipped 6 bad lines",
    ];
    assert_eq!(
        out.stderr.lines().collect::<Vec<_>>(),
        want,
        "{}",
        out.describe()
    );

    let strict = run(EXE, &["--strict"], &input);
    strict.expect_code(1);
    assert_eq!(strict.json_lines(), [json!([{"owd":{"apple":1}}])]);
    assert_eq!(
        strict.stderr.trim(),
        r#"allocate: line 2: item "apple": quantity -1 is negative"#
    );
}

#[test]
fn help_version_and_a_closed_stdout() {
    let help = run(EXE, &["--help"], b"");
    help.expect_code(0);
    help.expect_stdout("cheapest shipment");
    help.expect_stdout("| allocate");
    let version = run(EXE, &["--version"], b"");
    version.expect_code(0);
    assert!(version.stdout.starts_with("allocate "));

    let script = format!(
        "yes '{}' | head -n 200000 | {EXE} | head -n 1; echo \"status ${{PIPESTATUS[2]}}\"",
        r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":1}}]}"#
    );
    let out = run("bash", &["-c", &script], b"");
    assert_eq!(
        out.stdout,
        "[{\"owd\":{\"apple\":1}}]\nstatus 0\n",
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr, "", "{}", out.describe());
}

#[test]
fn the_bounded_search_is_noted_once() {
    let warehouses: Vec<Value> = (0..35)
        .map(|i| json!({"name": format!("w{i}"), "inventory": {"apple": 1}}))
        .collect();
    let line = json!({"order": {"apple": 2}, "warehouses": warehouses}).to_string();
    let small = r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":1}}]}"#;
    let out = run(EXE, &[], &lines(&[small, &line, &line]));
    out.expect_code(0);
    assert_eq!(out.json_lines().len(), 3);
    assert_eq!(
        out.json_lines()[1],
        json!([{"w0":{"apple":1}},{"w1":{"apple":1}}])
    );
    let notes: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(notes.len(), 1, "{}", out.describe());
    assert!(
        notes[0].starts_with("allocate: line 2: 35 warehouses stock"),
        "{}",
        out.describe()
    );
}

/// allocate with piped stdio, its stdout lines awaited one at a time.
fn spawn(args: &[&str]) -> Child {
    common::spawn(EXE, args)
}

#[test]
fn answers_stream_while_input_is_still_open() {
    let mut child = spawn(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for apples in [1, 2] {
        let problem = json!({"order": {"apple": apples}, "warehouses": [{"name": "owd", "inventory": {"apple": 5}}]});
        writeln!(stdin, "{problem}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!([{"owd": {"apple": apples}}])
        );
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A temporary folder with `w.json`, one warehouse holding five apples, and the path of a state
/// file `s.json` not written yet.
fn five_apples_and_a_state() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("w.json");
    write_json(
        &inventory,
        &json!([{"name": "owd", "inventory": {"apple": 5}}]),
    );
    let state = dir.path().join("s.json");
    (dir, inventory, state)
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn live_inventory_draws_orders_down_and_resumes_from_state() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("warehouses.json");
    let state = dir.path().join("stock.json");
    write_json(
        &inventory,
        &json!([
            {"name": "owd", "inventory": {"apple": 5, "kiwi": 1}},
            {"name": "dm", "inventory": {"apple": 10}}
        ]),
    );
    let (inv, st) = (inventory.to_str().unwrap(), state.to_str().unwrap());
    let orders = lines(&[
        r#"{"id":"o-1","items":{"apple":10}}"#,
        r#"{"apple":3}"#,
        r#"{"id":"o-3","items":{"apple":3,"kiwi":1}}"#,
        r#"{"id":"bad","items":{"apple":-3}}"#,
        r#"{"id":"o-5","items":{"apple":5}}"#,
    ]);
    let out = run(EXE, &["--inventory", inv, "--state", st], &orders);
    out.expect_code(1);
    let want = [
        json!({"id":"o-1","seq":1,"shipments":[{"dm":{"apple":10}}]}),
        json!({"id":null,"seq":2,"shipments":[{"owd":{"apple":3}}]}),
        json!({"id":"o-3","seq":3,"shipments":[]}),
        json!({"id":"o-5","seq":4,"shipments":[]}),
    ];
    assert_eq!(out.json_lines(), want, "{}", out.describe());
    out.expect_stderr("line 4: item \"apple\": quantity -3 is negative");
    let saved = read_json(&state);
    assert_eq!(saved["seq"], json!(4));
    assert_eq!(saved["last_id"], json!("o-5"));
    assert_eq!(
        saved["warehouses"],
        json!([{"name":"owd","inventory":{"apple":2,"kiwi":1}},{"name":"dm","inventory":{"apple":0}}])
    );

    assert_eq!(
        saved["unconfirmed"],
        json!([]),
        "a clean end leaves nothing to print again"
    );

    // A restart goes on from the state's seq; the state now decides the inventory, not --inventory.
    write_json(
        &inventory,
        &json!([{"name": "elsewhere", "inventory": {"apple": 100}}]),
    );
    let out = run(
        EXE,
        &["--inventory", inv, "--state", st, "--partial"],
        &lines(&[r#"{"id":"o-6","items":{"apple":2,"kiwi":2}}"#]),
    );
    out.expect_code(0);
    assert_eq!(
        out.json_lines(),
        [json!({"id":"o-6","seq":5,"shipments":[{"owd":{"apple":2}}],"unshipped":{"kiwi":2}})],
        "{}",
        out.describe()
    );
    out.expect_stderr("resuming from");

    // Without a state to resume, --state needs --inventory to start from.
    let missing = dir.path().join("none.json");
    let out = run(EXE, &["--state", missing.to_str().unwrap()], b"");
    out.expect_failure(2, "give --inventory FILE");
}

#[test]
fn inventory_files_in_both_shapes_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.json");
    let inv = path.to_str().unwrap();
    let order = b"{\"apple\":1}\n";
    write_json(
        &path,
        &json!({"warehouses": [{"name": "owd", "inventory": {"apple": 1}}]}),
    );
    let out = run(EXE, &["--inventory", inv], order);
    out.expect_code(0);
    assert_eq!(
        out.json_lines(),
        [json!({"id":null,"seq":1,"shipments":[{"owd":{"apple":1}}]})]
    );
    for (content, message) in [
        (
            json!([{"name": "a", "inventory": {}}, {"name": "a", "inventory": {}}]),
            r#"warehouse "a" is listed twice"#,
        ),
        (
            json!({"warehouses": [{"inventory": {}}]}),
            r#"warehouse 1: missing field "name""#,
        ),
        (json!({"stock": []}), r#"missing field "warehouses""#),
        (
            json!([{"name": "a", "inventory": {"apple": -1}}]),
            r#"warehouse 1: item "apple": quantity -1 is negative"#,
        ),
    ] {
        write_json(&path, &content);
        let out = run(EXE, &["--inventory", inv], order);
        out.expect_code(1);
        assert_eq!(out.stdout, "");
        assert_eq!(
            out.stderr.trim(),
            format!("allocate: {inv}: {message}"),
            "{}",
            out.describe()
        );
    }
}

#[test]
fn a_state_file_is_used_by_one_allocate_at_a_time() {
    let (_dir, inventory, state) = five_apples_and_a_state();
    let (inv, st) = (inventory.to_str().unwrap(), state.to_str().unwrap());
    run(
        EXE,
        &["--inventory", inv, "--state", st],
        b"{\"apple\":1}\n",
    )
    .expect_code(0);
    let mut first = spawn(&["--state", st]);
    // It says it resumed once it holds the lock.
    let mut err = BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("resuming from"), "{line}");
    let second = run(EXE, &["--state", st], b"");
    second.expect_failure(1, "in use by another allocate");
    drop(first.stdin.take());
    assert!(first.wait().unwrap().success());
}

/// The crash-safety guarantee under fire: kill -9 the real binary at random moments, restart it
/// on the same state file with the orders after the state's seq, and check that every order is
/// printed, duplicates are identical, and the remaining stock is the initial stock minus exactly
/// the shipments printed — the same as one uninterrupted run.
#[test]
fn committed_but_unprinted_lines_are_printed_on_restart() {
    // stdout's reader is gone before anything is printed: the batch is committed, the print fails
    // (a quiet exit 0), and nothing reached a reader — the moment a kill between the two leaves.
    let (_dir, inventory, state) = five_apples_and_a_state();
    let args = [
        "--inventory",
        inventory.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let mut child = spawn(&args);
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"{\"id\":\"a\",\"items\":{\"apple\":2}}\n{\"id\":\"b\",\"items\":{\"apple\":2}}\n",
        )
        .unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(read_json(&state)["seq"], json!(2));
    let out = run(EXE, &args, b"{\"id\":\"c\",\"items\":{\"apple\":1}}\n");
    out.expect_code(0);
    assert_eq!(
        out.json_lines(),
        [
            json!({"id":"a","seq":1,"shipments":[{"owd":{"apple":2}}]}),
            json!({"id":"b","seq":2,"shipments":[{"owd":{"apple":2}}]}),
            json!({"id":"c","seq":3,"shipments":[{"owd":{"apple":1}}]}),
        ],
        "{}",
        out.describe()
    );
    assert_eq!(
        read_json(&state)["warehouses"],
        json!([{"name":"owd","inventory":{"apple":0}}])
    );
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    kill_repeatedly(1500, 25);
}

/// The long version: `cargo nextest run --test allocate --run-ignored all kill_9`.
#[test]
#[ignore = "soak: a few hundred kills, about a minute"]
fn kill_9_soak() {
    kill_repeatedly(20_000, 400);
}

fn kill_repeatedly(orders: usize, kills: usize) {
    #[allow(non_snake_case)]
    let (ORDERS, KILLS) = (orders, kills);
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("warehouses.json");
    let items = ["apple", "banana", "kiwi", "mango", "pear"];
    let warehouses: Vec<Value> = ["owd", "dm", "nyc", "sfo"]
        .iter()
        .map(|name| json!({"name": name, "inventory": items.iter().map(|i| (i.to_string(), json!(400))).collect::<serde_json::Map<_, _>>()}))
        .collect();
    write_json(&inventory, &Value::Array(warehouses));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let orders: Vec<String> = (0..ORDERS)
        .map(|k| {
            let mut order = serde_json::Map::new();
            for _ in 0..1 + next() % 3 {
                order.insert(
                    items[(next() % 5) as usize].to_string(),
                    json!(1 + next() % 6),
                );
            }
            json!({"id": format!("o-{k}"), "items": order}).to_string()
        })
        .collect();

    // The reference: one run, no kills.
    let reference_state = dir.path().join("reference.json");
    let reference = run(
        EXE,
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "--state",
            reference_state.to_str().unwrap(),
        ],
        &lines(&orders.iter().map(String::as_str).collect::<Vec<_>>()),
    );
    reference.expect_code(0);
    let reference_lines = reference.json_lines();
    assert_eq!(reference_lines.len(), ORDERS);
    assert!(
        reference_lines.iter().any(|l| l["shipments"] == json!([])),
        "the stock should run out for some orders"
    );

    let state = dir.path().join("stock.json");
    let args = [
        "--inventory",
        inventory.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let mut printed: BTreeMap<u64, Value> = BTreeMap::new();
    let mut duplicates = 0;
    let mut kills_with_progress = 0;
    let mut round = 0;
    loop {
        let resume = if state.exists() {
            read_json(&state)["seq"].as_u64().unwrap() as usize
        } else {
            0
        };
        assert!(
            printed.keys().all(|&s| s as usize <= resume),
            "printed beyond the committed state"
        );
        let last = round == KILLS;
        let mut child = spawn(&args);
        let mut stdin = child.stdin.take().unwrap();
        // A killed round is fed only its share of the orders, so however fast this machine is,
        // a kill never finds the input used up; the last round gets the rest and must finish.
        let share = if last {
            ORDERS - resume
        } else {
            (ORDERS - resume).min(ORDERS / (KILLS + 1)).max(1)
        };
        let todo: Vec<Vec<u8>> = orders[resume..resume + share]
            .chunks(5)
            .map(|c| lines(&c.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        let writer = std::thread::spawn(move || {
            // Orders arrive a few at a time, as from a live source, so kills land among many small
            // batches; a killed round keeps stdin open after its share, as a live source would.
            for chunk in todo {
                if stdin.write_all(&chunk).is_err() {
                    return None;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            (!last).then_some(stdin)
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (new_line_seen, new_line) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let mut start = 0;
            while stdout.read_until(b'\n', &mut bytes).unwrap() > 0 {
                // Lines up to `resume` are the last batch printed again; later ones are progress.
                let line: Value = serde_json::from_slice(&bytes[start..]).unwrap_or_default();
                if line["seq"]
                    .as_u64()
                    .is_some_and(|seq| seq as usize > resume)
                {
                    let _ = new_line_seen.send(());
                }
                start = bytes.len();
            }
            bytes
        });
        if !last {
            // Mostly once the run has printed something new, sometimes blind (during startup or
            // the first batch).
            if round % 5 != 4 {
                new_line
                    .recv_timeout(Duration::from_secs(60))
                    .expect("a run printed nothing new");
            }
            std::thread::sleep(Duration::from_micros(next() % 5_000));
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        drop(writer.join().unwrap());
        let bytes = reader.join().unwrap();
        if last {
            assert!(status.success(), "the final run failed: {status:?}");
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "a line was cut: {text:?}"
        );
        let before = printed.len();
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            let seq = value["seq"].as_u64().unwrap();
            match printed.get(&seq) {
                Some(seen) => {
                    assert_eq!(seen, &value, "seq {seq} printed twice, differently");
                    duplicates += 1;
                }
                None => {
                    printed.insert(seq, value);
                }
            }
        }
        if !last && printed.len() > before {
            kills_with_progress += 1;
        }
        if last {
            break;
        }
        round += 1;
    }
    assert!(
        kills_with_progress >= KILLS / 2,
        "too few kills landed mid-stream ({kills_with_progress})"
    );
    eprintln!(
        "{KILLS} kills, {kills_with_progress} after some output, {duplicates} lines printed twice"
    );
    let got: Vec<Value> = printed.into_values().collect();
    assert_eq!(
        got.len(),
        ORDERS,
        "orders lost (duplicates seen: {duplicates})"
    );
    assert_eq!(
        got, reference_lines,
        "a killed run allocated differently from the uninterrupted one"
    );

    // Remaining stock = initial - each printed shipment counted once.
    let mut left: BTreeMap<(String, String), i64> = BTreeMap::new();
    for w in read_json(&inventory).as_array().unwrap() {
        for (item, qty) in w["inventory"].as_object().unwrap() {
            left.insert(
                (w["name"].as_str().unwrap().into(), item.clone()),
                qty.as_i64().unwrap(),
            );
        }
    }
    for line in &got {
        for shipment in line["shipments"].as_array().unwrap() {
            for (name, picked) in shipment.as_object().unwrap() {
                for (item, qty) in picked.as_object().unwrap() {
                    *left.get_mut(&(name.clone(), item.clone())).unwrap() -= qty.as_i64().unwrap();
                }
            }
        }
    }
    let saved = read_json(&state);
    assert_eq!(saved["seq"], json!(ORDERS));
    for w in saved["warehouses"].as_array().unwrap() {
        for (item, qty) in w["inventory"].as_object().unwrap() {
            let key = (w["name"].as_str().unwrap().to_string(), item.clone());
            assert_eq!(qty.as_i64().unwrap(), left[&key], "stock of {key:?}");
            assert!(left[&key] >= 0);
        }
    }
}
