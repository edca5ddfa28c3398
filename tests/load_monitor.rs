//! load-monitor through the real binary: the stdin face, the HTTP routes, many concurrent
//! posters checked exactly against an oracle, and a restart from a snapshot.

mod common;
use common::agent;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};

use std::time::{Duration, Instant};

use common::{run, Daemon};
use serde_json::{json, Value};

const EXE: &str = env!("CARGO_BIN_EXE_load-monitor");

/// Status, body text and the X-Report-Time header of one request.
struct Answer {
    status: u16,
    body: String,
    report_time: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
    let status = r.status().as_u16();
    let report_time = r
        .headers()
        .get("x-report-time")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.body_mut().read_to_string().unwrap();
    Answer {
        status,
        body,
        report_time,
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Answer {
    answer(
        agent
            .post(url)
            .header("content-type", "application/json")
            .send(body)
            .unwrap(),
    )
}

fn get(agent: &ureq::Agent, url: &str) -> Answer {
    answer(agent.get(url).call().unwrap())
}

fn ts(micros: i64) -> String {
    pipeworks::time::format_timestamp(micros)
}

fn at(text: &str) -> i64 {
    pipeworks::time::parse_timestamp(text).unwrap()
}

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;

/// The oracle: every record kept; averages of millionths per minute/hour of the window at `now`.
#[derive(Default)]
struct Oracle {
    records: HashMap<String, Vec<(i64, u64, u64)>>,
}

impl Oracle {
    /// `cpu` and `ram` in hundredths, as the posters send them.
    fn add(&mut self, server: &str, t: i64, cpu: u64, ram: u64) {
        self.records
            .entry(server.to_string())
            .or_default()
            .push((t, cpu * 10_000, ram * 10_000));
    }

    /// The exact text of the report: the averages must be the very same doubles, and a JSON
    /// round trip could change a last digit (serde_json parses floats to within one ulp).
    fn report(&self, server: &str, now: i64) -> String {
        let floor = |t: i64, p: i64| t - t.rem_euclid(p);
        let rows = |period: i64, len: i64| {
            let newest = floor(now, period);
            let mut sums: BTreeMap<i64, (u64, u128, u128)> = BTreeMap::new();
            for &(t, cpu, ram) in &self.records[server] {
                let p = floor(t, period);
                if p <= newest && p > newest - len * period {
                    let e = sums.entry(p).or_default();
                    *e = (e.0 + 1, e.1 + cpu as u128, e.2 + ram as u128);
                }
            }
            let avg = |s: u128, n: u64| s as f64 / n as f64 / 1e6;
            sums.into_iter()
                .map(|(p, (n, c, r))| {
                    format!("[\"{}\",{},{}]", ts(p), num(avg(c, n)), num(avg(r, n)))
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{{\"servername\":\"{server}\",\"1hourdata\":[{}],\"24hourdata\":[{}]}}",
            rows(MIN, 60),
            rows(HOUR, 24)
        )
    }
}

/// A number as load-monitor prints it: whole numbers without a fraction, others shortest.
fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        serde_json::to_string(&v).unwrap()
    }
}

fn lines(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn stdin_reports_every_server_by_name_relative_to_the_newest_record() {
    let input = lines(&[
        json!({"server":"server005","cpu":1.2,"ram":6.0,"dt":1460300000}),
        json!({"server":"b","cpu":3,"ram":4,"timestamp":"2016-04-10T15:30:10+02:00"}),
        json!({"server":"server005","cpu":2.4,"ram":6.0,"timestamp":"2016-04-10T14:53:50Z"}),
        // Out of order, an hour and a half older: in the day, not in the hour.
        json!({"server":"server005","cpu":4,"ram":1,"timestamp":"2016-04-10T13:20:00Z"}),
        json!({"server":"server005","cpu":0.5,"ram":0.25,"dt":1460303000}),
    ]);
    let r = run(EXE, &[], &input);
    r.expect_code(0);
    assert_eq!(r.stderr, "", "{}", r.describe());
    assert_eq!(
        r.json_lines(),
        vec![
            json!({"servername":"b","1hourdata":[],"24hourdata":[["2016-04-10T13:00:00.000000Z",3,4]]}),
            json!({"servername":"server005",
                "1hourdata":[["2016-04-10T14:53:00.000000Z",1.8,6],["2016-04-10T15:43:00.000000Z",0.5,0.25]],
                "24hourdata":[["2016-04-10T13:00:00.000000Z",4,1],["2016-04-10T14:00:00.000000Z",1.8,6],
                              ["2016-04-10T15:00:00.000000Z",0.5,0.25]]}),
        ]
    );
}

#[test]
fn stdin_bad_lines_are_reported_and_the_rest_counted() {
    let input = b"{\"server\":\"a\",\"cpu\":1,\"ram\":2,\"dt\":1460300000}\n\
not json\n\
{\"server\":\"a\",\"cpu\":\"high\",\"ram\":2}\n\
{\"server\":\"a\",\"cpu\":1,\"ram\":2,\"dt\":1460000000}\n\
{\"server\":\"a b\",\"cpu\":1,\"ram\":2}\n\
{\"server\":\"a\",\"cpu\":3,\"ram\":4,\"dt\":1460300001}\n";
    let r = run(EXE, &[], input);
    r.expect_code(1);
    let err = &r.stderr;
    assert!(err.contains("load-monitor: line 2: invalid JSON"), "{err}");
    assert!(err.contains("line 3: \"cpu\" must be a number"), "{err}");
    assert!(
        err.contains(
            "line 4: record time 2016-04-07T03:33:20.000000Z is outside the last 24 hours"
        ),
        "{err}"
    );
    assert!(err.contains("line 5: the server name \"a b\""), "{err}");
    assert!(err.contains("skipped 4 bad lines"), "{err}");
    assert_eq!(
        r.json_lines(),
        vec![
            json!({"servername":"a","1hourdata":[["2016-04-10T14:53:00.000000Z",2,3]],
                     "24hourdata":[["2016-04-10T14:00:00.000000Z",2,3]]})
        ]
    );
    let strict = run(EXE, &["--strict"], input);
    strict.expect_failure(1, "line 2");
    assert_eq!(strict.stdout, "");
}

#[test]
fn stdin_face_ends_quietly_when_its_reader_goes_away() {
    let input: Vec<Value> = (0..20_000)
        .map(|i| json!({"server": format!("s{i}"), "cpu": 1, "ram": 2, "dt": 1460300000}))
        .collect();
    let mut child = common::spawn(EXE, common::NO_ARGS);
    let mut stdin = child.stdin.take().unwrap();
    let data = lines(&input);
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"servername\":\"s0\""), "{first}");
    // stdout is closed here, as `| head -1` does.
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let mut stderr = String::new();
    child.stderr.unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn stdin_every_prints_reports_while_input_goes_on() {
    let mut child = common::spawn(EXE, ["--every", "200ms"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"server\":\"a\",\"cpu\":1,\"ram\":2,\"dt\":1460300000}\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The input is still open: this line can only come from the periodic report.
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["servername"], "a");
    assert_eq!(
        v["1hourdata"],
        json!([["2016-04-10T14:53:00.000000Z", 1, 2]])
    );
    drop(stdin);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn http_routes_answer_like_the_original_service_and_ours() {
    let d = load_monitor(&["--clock", "records"]);
    let a = agent();
    let url = d.url();
    let ok = post(
        &a,
        &format!("{url}/addserver"),
        r#"{"server":"server005","cpu":1.2,"ram":6.0,"dt":1460300000}"#,
    );
    assert_eq!((ok.status, ok.body.as_str()), (200, "OK"));
    let r = post(
        &a,
        &format!("{url}/servers/server005/load"),
        r#"{"cpu":2.4,"ram":6,"timestamp":"2016-04-10T14:53:59Z"}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post(
        &a,
        &format!("{url}/servers/web-1/load"),
        r#"{"server":"web-1","cpu":0,"ram":0,"dt":1460300100}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);

    let expected = json!({"servername":"server005",
        "1hourdata":[["2016-04-10T14:53:00.000000Z",1.8,6]],
        "24hourdata":[["2016-04-10T14:00:00.000000Z",1.8,6]]});
    let report = get(&a, &format!("{url}/report/server005"));
    assert_eq!(report.status, 200);
    assert_eq!(report.json(), expected);
    assert_eq!(
        report.report_time.as_deref(),
        Some("2016-04-10T14:55:00.000000Z")
    );
    assert_eq!(
        get(&a, &format!("{url}/servers/server005/load")).json(),
        expected
    );
    assert_eq!(
        get(&a, &format!("{url}/servers")).json(),
        json!({"servers":["server005","web-1"]})
    );

    let missing = get(&a, &format!("{url}/report/server006"));
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"error":"no records for server \"server006\""})
    );
    assert_eq!(get(&a, &format!("{url}/nowhere")).status, 404);
    let wrong = answer(a.delete(format!("{url}/servers")).call().unwrap());
    assert_eq!(wrong.status, 405);
    assert!(wrong.json()["error"].is_string());

    // Every bad request is a 400 naming the problem, and stores nothing.
    let long_name = "x".repeat(200);
    let huge = format!(
        r#"{{"server":"a","cpu":1,"ram":1,"pad":"{}"}}"#,
        "x".repeat(5000)
    );
    let cases: Vec<(String, String, &str)> = vec![
        ("/addserver".into(), "{\"server\":\"a\",".into(), "JSON"),
        ("/addserver".into(), "".into(), "empty"),
        ("/addserver".into(), "[1]".into(), "expected a JSON object"),
        (
            "/addserver".into(),
            r#"{"cpu":1,"ram":1}"#.into(),
            "missing field \"server\"",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","ram":1}"#.into(),
            "missing field \"cpu\"",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","cpu":1}"#.into(),
            "missing field \"ram\"",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","cpu":"1","ram":1}"#.into(),
            "\"cpu\" must be a number",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","cpu":1,"ram":-1}"#.into(),
            "\"ram\" must be between 0",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","cpu":1e12,"ram":1}"#.into(),
            "\"cpu\" must be between 0",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","cpu":1,"ram":1,"dt":"today"}"#.into(),
            "\"dt\" must be a number",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a","cpu":1,"ram":1,"dt":1e20}"#.into(),
            "\"dt\"",
        ),
        (
            "/addserver".into(),
            r#"{"server":"a/b","cpu":1,"ram":1}"#.into(),
            "server name",
        ),
        (
            "/addserver".into(),
            format!(r#"{{"server":"{long_name}","cpu":1,"ram":1}}"#),
            "over the limit",
        ),
        (
            "/addserver".into(),
            r#"{"server":7,"cpu":1,"ram":1}"#.into(),
            "\"server\" must be a string",
        ),
        (
            format!("/servers/{long_name}/load"),
            r#"{"cpu":1,"ram":1}"#.into(),
            "over the limit",
        ),
        (
            "/servers/web-1/load".into(),
            r#"{"server":"web-2","cpu":1,"ram":1}"#.into(),
            "differs",
        ),
    ];
    for (path, body, needle) in &cases {
        let r = post(&a, &format!("{url}{path}"), body);
        assert_eq!(r.status, 400, "{path} {body:.80}: {}", r.body);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains(needle),
            "{path} {body:.80}: {msg:?} should mention {needle:?}"
        );
    }
    // A body over the limit is refused as too large, before it is read as a record.
    let r = post(&a, &format!("{url}/addserver"), &huge);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("over 4096 bytes"));
    let bad_utf8 = answer(
        a.post(format!("{url}/addserver"))
            .send(&[0xff, 0xfe][..])
            .unwrap(),
    );
    assert_eq!(bad_utf8.status, 400);
    // Too old for the window: a valid record, refused and counted.
    let old = post(
        &a,
        &format!("{url}/addserver"),
        r#"{"server":"a","cpu":1,"ram":1,"dt":1400000000}"#,
    );
    assert_eq!(old.status, 422, "{}", old.body);
    assert!(old.json()["error"]
        .as_str()
        .unwrap()
        .contains("outside the last 24 hours"));

    assert_eq!(
        get(&a, &format!("{url}/servers")).json(),
        json!({"servers":["server005","web-1"]})
    );
    let stats = get(&a, &format!("{url}/stats")).json();
    assert_eq!(
        (stats["accepted"].clone(), stats["too_old"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(get(&a, &format!("{url}/report/server005")).json(), expected);

    // The bulk route stores the good lines and describes the bad ones.
    let bulk = post(
        &a,
        &format!("{url}/records"),
        "{\"server\":\"c\",\"cpu\":1,\"ram\":1,\"dt\":1460300100}\n\nnope\n{\"server\":\"c\",\"cpu\":3,\"ram\":3,\"dt\":1460300101}\n",
    );
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    assert_eq!(bulk.json()["accepted"], 2);
    assert_eq!(bulk.json()["refused"], 1);
    assert_eq!(bulk.json()["errors"][0]["line"], 3);
    assert_eq!(
        get(&a, &format!("{url}/report/c")).json()["1hourdata"],
        json!([["2016-04-10T14:55:00.000000Z", 2, 2]])
    );
    let line = "{\"server\":\"d\",\"cpu\":1,\"ram\":1,\"dt\":1460300100}\n";
    let too_big = post(
        &a,
        &format!("{url}/records"),
        &line.repeat((1 << 20) / line.len() + 1),
    );
    assert_eq!(too_big.status, 413);
    assert!(
        too_big.json()["error"]
            .as_str()
            .unwrap()
            .contains("over 1048576 bytes"),
        "{}",
        too_big.body
    );
    assert_eq!(get(&a, &format!("{url}/report/d")).status, 404);
}

#[test]
fn http_caps_the_number_of_servers() {
    let d = load_monitor(&["--max-servers", "2"]);
    let a = agent();
    let url = format!("{}/addserver", d.url());
    for name in ["a", "b"] {
        assert_eq!(
            post(
                &a,
                &url,
                &format!(r#"{{"server":"{name}","cpu":1,"ram":1}}"#)
            )
            .status,
            200
        );
    }
    let full = post(&a, &url, r#"{"server":"c","cpu":1,"ram":1}"#);
    assert_eq!(full.status, 507);
    assert!(
        full.json()["error"]
            .as_str()
            .unwrap()
            .contains("--max-servers"),
        "{}",
        full.body
    );
    // Known servers still take records.
    assert_eq!(
        post(&a, &url, r#"{"server":"a","cpu":3,"ram":3}"#).status,
        200
    );
    let far = post(
        &a,
        &url,
        &format!(
            r#"{{"server":"a","cpu":3,"ram":3,"dt":{}}}"#,
            now_secs() + 3600
        ),
    );
    assert_eq!(far.status, 422);
    assert!(
        far.json()["error"]
            .as_str()
            .unwrap()
            .contains("ahead of the wall clock"),
        "{}",
        far.body
    );
    let stats = get(&a, &format!("{}/stats", d.url())).json();
    assert_eq!(stats["over_capacity"], 1);
    assert_eq!(stats["too_new"], 1);
}

fn now_secs() -> i64 {
    pipeworks::time::now() / 1_000_000
}

/// The per-client cap counts per wall-clock minute: a test that must stay within one minute
/// starts well clear of the minute's end.
fn clear_of_a_minute_boundary(needed: Duration) {
    let into = Duration::from_micros((pipeworks::time::now() % 60_000_000) as u64);
    if into + needed > Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(60) - into + Duration::from_millis(50));
    }
}

/// The fault of the issue: one client posting batches of invented names filled the registry,
/// and then every new server got 507. Now one address adds at most --max-new-servers a minute.
#[test]
fn one_client_cannot_fill_the_registry() {
    let d = load_monitor(&["--clock", "records", "--max-new-servers", "20"]);
    let a = agent();
    clear_of_a_minute_boundary(Duration::from_secs(5));
    // 30 invented names in one batch: 20 are taken, the rest refused line by line.
    let batch: String = (0..30)
        .map(|i| format!("{{\"server\":\"fake{i}\",\"cpu\":1,\"ram\":1,\"dt\":1460300000}}\n"))
        .collect();
    let bulk = post(&a, &format!("{}/records", d.url()), &batch).json();
    assert_eq!(
        (bulk["accepted"].as_u64(), bulk["refused"].as_u64()),
        (Some(20), Some(10)),
        "{bulk}"
    );
    assert!(
        bulk["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("--max-new-servers"),
        "{bulk}"
    );
    // One more new name on the original route: 429 with a JSON body and Retry-After.
    let url = format!("{}/addserver", d.url());
    let refused = agent()
        .post(&url)
        .send(r#"{"server":"fake99","cpu":1,"ram":1,"dt":1460300000}"#)
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = answer(refused);
    assert!(
        body.json()["error"]
            .as_str()
            .unwrap()
            .contains("try again in"),
        "{}",
        body.body
    );
    // Servers it already added still take records.
    assert_eq!(
        post(
            &a,
            &url,
            r#"{"server":"fake3","cpu":5,"ram":5,"dt":1460300060}"#
        )
        .status,
        200
    );
    let stats = get(&a, &format!("{}/stats", d.url())).json();
    assert_eq!(stats["servers"], 20);
    assert_eq!(stats["over_new_server_rate"], 11);
    // Said once on stderr, not once per refusal.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.stderr_text().contains("--max-new-servers") {
        assert!(Instant::now() < deadline, "{}", d.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        d.stderr_text().matches("--max-new-servers").count(),
        1,
        "{}",
        d.stderr_text()
    );
}

/// The other half of the fault: servers with nothing left in the day kept their place for ever.
#[test]
fn servers_with_nothing_left_in_the_day_are_forgotten() {
    let d = load_monitor(&["--clock", "records", "--max-servers", "2"]);
    let a = agent();
    let url = format!("{}/addserver", d.url());
    let day = 86_400;
    assert_eq!(
        post(
            &a,
            &url,
            r#"{"server":"old","cpu":1,"ram":1,"dt":1460300000}"#
        )
        .status,
        200
    );
    assert_eq!(
        post(
            &a,
            &url,
            &format!(
                r#"{{"server":"kept","cpu":1,"ram":1,"dt":{}}}"#,
                1460300000 + day - 600
            )
        )
        .status,
        200
    );
    // A day and an hour later: old has nothing left, and the new server takes its place.
    let new = post(
        &a,
        &url,
        &format!(
            r#"{{"server":"new","cpu":1,"ram":1,"dt":{}}}"#,
            1460300000 + day + 3600
        ),
    );
    assert_eq!(new.status, 200, "{}", new.body);
    assert_eq!(
        get(&a, &format!("{}/servers", d.url())).json()["servers"],
        json!(["kept", "new"])
    );
    assert_eq!(get(&a, &format!("{}/report/old", d.url())).status, 404);
    assert_eq!(
        get(&a, &format!("{}/stats", d.url())).json()["forgotten"],
        1
    );

    // The stdin face forgets them too: no empty report for a server gone from the day.
    let input = lines(&[
        json!({"server":"old","cpu":1,"ram":1,"dt":1460300000}),
        json!({"server":"new","cpu":2,"ram":2,"dt":1460300000 + day + 3600}),
    ]);
    let r = run(EXE, &[], &input);
    r.expect_code(0);
    let names: Vec<Value> = r
        .json_lines()
        .iter()
        .map(|l| l["servername"].clone())
        .collect();
    assert_eq!(names, vec![json!("new")], "{}", r.describe());
}

/// A small deterministic generator, so a failing run can be repeated.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn concurrent_posters_every_report_exact() {
    let d = load_monitor(&[]);
    let url = d.url();
    const POSTERS: u64 = 16;
    const EACH: u64 = 400;
    const SERVERS: u64 = 150;
    // Wall clock: records between 2 and 50 minutes old (and a few hours old), in random order,
    // so the window holds every one of them for the whole test.
    let base = pipeworks::time::now();
    let handles: Vec<_> = (0..POSTERS)
        .map(|p| {
            let url = url.clone();
            std::thread::spawn(move || {
                let a = agent();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((p + 1) * 7919));
                let mut sent = Vec::new();
                for i in 0..EACH {
                    let server = format!("srv-{:03}", rng.below(SERVERS));
                    let age = if i % 10 == 0 {
                        rng.below(5 * 3600) + 3600
                    } else {
                        rng.below(48 * 60) + 120
                    };
                    let t = base - age as i64 * 1_000_000 - rng.below(1_000_000) as i64;
                    let (cpu, ram) = (rng.below(10_000), rng.below(100_000));
                    let time = if i % 2 == 0 {
                        format!("\"dt\":{}.{:06}", t / 1_000_000, t % 1_000_000)
                    } else {
                        format!("\"timestamp\":\"{}\"", ts(t))
                    };
                    let body = format!(
                        r#"{{"server":"{server}","cpu":{}.{:02},"ram":{}.{:02},{time}}}"#,
                        cpu / 100,
                        cpu % 100,
                        ram / 100,
                        ram % 100
                    );
                    let route = if i % 3 == 0 {
                        format!("{url}/servers/{server}/load")
                    } else {
                        format!("{url}/addserver")
                    };
                    let r = post(&a, &route, &body);
                    assert!(
                        r.status == 200 || r.status == 204,
                        "{body}: {} {}",
                        r.status,
                        r.body
                    );
                    sent.push((server, t, cpu, ram));
                }
                sent
            })
        })
        .collect();
    let mut oracle = Oracle::default();
    let mut total = 0;
    for h in handles {
        for (server, t, cpu, ram) in h.join().unwrap() {
            oracle.add(&server, t, cpu, ram);
            total += 1;
        }
    }
    let a = agent();
    assert_eq!(get(&a, &format!("{url}/stats")).json()["accepted"], total);
    let names = get(&a, &format!("{url}/servers")).json();
    let mut expected_names: Vec<&String> = oracle.records.keys().collect();
    expected_names.sort();
    assert_eq!(names, json!({"servers": expected_names}));
    for name in oracle.records.keys() {
        let r = get(&a, &format!("{url}/report/{name}"));
        let now = at(r.report_time.as_deref().expect("X-Report-Time header"));
        assert_eq!(
            r.body,
            oracle.report(name, now),
            "server {name} at {}",
            ts(now)
        );
    }
}

/// A temporary folder and the path of a snapshot file in it.
fn snapshot_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.jsonl");
    (dir, snap)
}

/// load-monitor on a free port with `extra` flags, once it says where it listens.
fn load_monitor(extra: &[&str]) -> Daemon {
    Daemon::program(EXE)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .listening()
        .start()
}

/// Wait until `check` holds, polling a file the server writes on its own schedule.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn restart_with_snapshot_keeps_the_reports() {
    let (_dir, snap) = snapshot_file();
    let snap_arg = snap.to_str().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--clock",
        "records",
        "--snapshot",
        snap_arg,
    ];
    let a = agent();
    let mut reports = BTreeMap::new();
    {
        let d = Daemon::ours(EXE, &args);
        let mut rng = Rng(42);
        let t0 = at("2016-04-10T16:02:30Z") / 1_000_000;
        let mut body = String::new();
        for _ in 0..2000 {
            let dt = t0 - rng.below(30 * 3600) as i64;
            body.push_str(&format!(
                "{{\"server\":\"s{}\",\"cpu\":{},\"ram\":{},\"dt\":{dt}}}\n",
                rng.below(20),
                rng.below(1000) as f64 / 10.0,
                rng.below(1000) as f64 / 4.0
            ));
        }
        let bulk = post(&a, &format!("{}/records", d.url()), &body);
        assert_eq!(bulk.status, 200, "{}", bulk.body);
        for name in get(&a, &format!("{}/servers", d.url())).json()["servers"]
            .as_array()
            .unwrap()
        {
            let name = name.as_str().unwrap();
            reports.insert(
                name.to_string(),
                get(&a, &format!("{}/report/{name}", d.url())).json(),
            );
        }
        assert_eq!(reports.len(), 20);
        d.signal(nix::sys::signal::Signal::SIGTERM);
        let mut d = d;
        let status = d.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{}", d.stderr_text());
        d.wait_stderr("saved 20 servers", Duration::from_secs(5));
    }
    let d = Daemon::ours(EXE, &args);
    assert!(
        d.stderr_text().contains("loaded 20 servers"),
        "{}",
        d.stderr_text()
    );
    for (name, report) in &reports {
        assert_eq!(
            &get(&a, &format!("{}/report/{name}", d.url())).json(),
            report,
            "{name}"
        );
    }
    assert_eq!(
        get(&a, &format!("{}/stats", d.url())).json()["accepted"],
        2000 - get(&a, &format!("{}/stats", d.url())).json()["too_old"]
            .as_u64()
            .unwrap()
    );
}

#[test]
fn periodic_snapshot_survives_a_kill() {
    let (_dir, snap) = snapshot_file();
    let snap_arg = snap.to_str().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--snapshot",
        snap_arg,
        "--snapshot-every",
        "200ms",
    ];
    let a = agent();
    let d = Daemon::ours(EXE, &args);
    let r = post(
        &a,
        &format!("{}/addserver", d.url()),
        r#"{"server":"kept","cpu":1.5,"ram":2.5}"#,
    );
    assert_eq!(r.status, 200);
    let before = get(&a, &format!("{}/report/kept", d.url())).json();
    wait_until(
        "a periodic snapshot holding the record",
        Duration::from_secs(10),
        || std::fs::read_to_string(&snap).is_ok_and(|t| t.contains("\"kept\"")),
    );
    drop(d); // SIGKILL: no chance to save on the way out
    let d = Daemon::ours(EXE, &args);
    assert_eq!(get(&a, &format!("{}/report/kept", d.url())).json(), before);
    // A damaged snapshot is an error, not a silent fresh start.
    drop(d);
    std::fs::write(&snap, "garbage\n").unwrap();
    let r = run(EXE, &args, b"");
    r.expect_failure(1, "snapshot").expect_stderr("line 1");
}

const GEN: &str = env!("CARGO_BIN_EXE_gen-events");

#[test]
fn gen_events_posts_concurrently_and_checks_every_report() {
    let d = load_monitor(&[]);
    let url = format!("{}/addserver", d.url());
    let r = run(
        GEN,
        &[
            "--profile",
            "load",
            "--servers",
            "50",
            "--rate",
            "max",
            "--count",
            "3000",
            "--seed",
            "3",
            "--post",
            &url,
            "--concurrency",
            "8",
            "--check",
        ],
        b"",
    );
    r.expect_code(0);
    assert_eq!(
        r.stdout,
        "{\"check\":\"passed\",\"servers\":50,\"records\":3000}\n",
        "{}",
        r.describe()
    );
    r.expect_stderr("posted 3000 records in 3000 requests on 8 connections");
    r.expect_stderr("3000 accepted, 0 refused");
    let stats = get(&agent(), &format!("{}/stats", d.url())).json();
    assert_eq!(
        (stats["accepted"].clone(), stats["servers"].clone()),
        (json!(3000), json!(50))
    );
}

#[test]
fn gen_events_batches_a_replay_and_the_check_catches_foreign_records() {
    let d = load_monitor(&["--clock", "records"]);
    let url = format!("{}/records", d.url());
    let replay = |url: &str| {
        run(
            GEN,
            &[
                "--profile",
                "load",
                "--servers",
                "20",
                "--simulated",
                "--start",
                "2016-04-10T00:00:00Z",
                "--rate",
                "2",
                "--count",
                "20000",
                "--seed",
                "9",
                "--post",
                url,
                "--batch",
                "250",
                "--concurrency",
                "4",
                "--check",
            ],
            b"",
        )
    };
    let r = replay(&url);
    r.expect_code(0);
    assert_eq!(
        r.stdout,
        "{\"check\":\"passed\",\"servers\":20,\"records\":20000}\n",
        "{}",
        r.describe()
    );
    r.expect_stderr("in 80 requests");
    // Posting the same records again doubles every sum and count, so every average stays; one
    // more record for one server changes that server's last minute and hour, and only those.
    let extra = post(
        &agent(),
        &format!("{}/addserver", d.url()),
        r#"{"server":"server0007","cpu":100,"ram":100,"timestamp":"2016-04-10T02:46:00Z"}"#,
    );
    assert_eq!(extra.status, 200, "{}", extra.body);
    let r = replay(&url);
    r.expect_code(1);
    let verdict: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}", r.describe()));
    assert_eq!(
        (
            &verdict["check"],
            &verdict["server"],
            &verdict["report"],
            &verdict["row"]
        ),
        (
            &json!("failed"),
            &json!("server0007"),
            &json!("1hourdata"),
            &json!(60)
        ),
        "{}",
        r.describe()
    );
    assert_eq!(verdict["expected"][0], "2016-04-10T02:46:00.000000Z");
    r.expect_stderr(
        "FAILED: server server0007, 1hourdata row 60: expected [\"2016-04-10T02:46:00.000000Z\"",
    );
}

#[test]
fn gen_events_reports_refusals_and_an_unreachable_service() {
    let d = load_monitor(&[]);
    // Wall clock: a replay of 2016 is refused record by record.
    let r = run(
        GEN,
        &[
            "--profile",
            "load",
            "--simulated",
            "--start",
            "2016-04-10T00:00:00Z",
            "--rate",
            "10",
            "--count",
            "30",
            "--post",
            &format!("{}/addserver", d.url()),
            "--check",
        ],
        b"",
    );
    r.expect_failure(1, "0 accepted, 30 refused");
    r.expect_stderr("HTTP 422");
    r.expect_stderr("nothing to check");
    let url = d.url();
    drop(d);
    let r = run(
        GEN,
        &[
            "--profile",
            "load",
            "--rate",
            "max",
            "--count",
            "100",
            "--post",
            &format!("{url}/addserver"),
        ],
        b"",
    );
    r.expect_failure(1, "cannot post to");
    let r = run(GEN, &["--check"], b"");
    r.expect_code(2);
}

#[test]
fn a_stalled_client_and_a_dropped_one_do_not_stop_the_others() {
    use std::net::TcpStream;
    let d = load_monitor(&[]);
    let a = agent();
    // Half a request, then silence: the connection stays open for the whole test.
    let mut stalled = TcpStream::connect(d.addr).unwrap();
    stalled
        .write_all(
            b"POST /addserver HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"server\":",
        )
        .unwrap();
    // Half a request, then gone.
    let mut dropped = TcpStream::connect(d.addr).unwrap();
    dropped
        .write_all(b"POST /addserver HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        .unwrap();
    drop(dropped);
    let r = post(
        &a,
        &format!("{}/addserver", d.url()),
        r#"{"server":"ok","cpu":1,"ram":1}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    assert_eq!(
        get(&a, &format!("{}/servers", d.url())).json(),
        json!({"servers":["ok"]})
    );
    drop(stalled);
}

#[test]
fn sigterm_right_after_the_listening_line_is_a_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.jsonl");
    let mut d = load_monitor(&["--snapshot", snap.to_str().unwrap()]);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(snap.exists(), "the snapshot is written on the way out");
    let mut d = load_monitor(&[]);
    d.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(d.child.wait().unwrap().code(), Some(130));
}

#[test]
fn usage_errors_exit_2_and_help_shows_an_example() {
    for args in [
        &["--listen", "127.0.0.1:0", "--every", "1m"][..],
        &["--listen", "127.0.0.1:0", "records.jsonl"][..],
        &["--max-servers", "0"][..],
        &["--clock", "sometimes"][..],
    ] {
        let r = run(EXE, args, b"");
        r.expect_code(2);
        assert!(!r.stderr.is_empty(), "{}", r.describe());
    }
    let help = run(EXE, &["--help"], b"");
    help.expect_code(0);
    help.expect_stdout("gen-events --profile load");
    run(EXE, &["--version"], b"").expect_code(0);
}

#[test]
fn a_client_stalled_mid_request_cannot_hold_the_stop() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.jsonl");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--snapshot",
        snap.to_str().unwrap(),
        "--shutdown-grace",
        "300ms",
    ];
    let mut d = Daemon::ours(EXE, &args);
    let r = post(
        &agent(),
        &format!("{}/addserver", d.url()),
        r#"{"server":"kept","cpu":1,"ram":1}"#,
    );
    assert_eq!(r.status, 200);
    let mut stalled = TcpStream::connect(d.addr).unwrap();
    stalled
        .write_all(
            b"POST /addserver HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"server\":",
        )
        .unwrap();
    // The server has read the partial request once it answers a later one on another connection.
    assert_eq!(get(&agent(), &format!("{}/servers", d.url())).status, 200);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let started = Instant::now();
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", d.stderr_text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(std::fs::read_to_string(&snap).unwrap().contains("\"kept\""));
    drop(stalled);
}

/// A snapshot save that fails (here: the file size limit, as a full disk would) keeps the last
/// good snapshot and leaves no half-written temporary file; the run says so and exits 1.
#[test]
fn a_failed_snapshot_save_keeps_the_last_good_one_and_no_tmp() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.jsonl");
    let tmp = dir.path().join("state.jsonl.tmp");
    let snap_arg = snap.to_str().unwrap().to_string();
    let record = |name: String| json!({"server": name, "cpu": 1, "ram": 2, "dt": 1460300000});
    let good = run(
        EXE,
        &["--snapshot", &snap_arg],
        &lines(&[record("a".into())]),
    );
    good.expect_code(0);
    let saved = std::fs::read_to_string(&snap).unwrap();
    // 500 servers make a snapshot far over 16 KiB: writing it fails part way.
    let many: Vec<Value> = (0..500).map(|i| record(format!("s{i}"))).collect();
    let mut command = std::process::Command::new(EXE);
    command
        .args(["--snapshot", &snap_arg])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            use nix::sys::resource::{setrlimit, Resource};
            use nix::sys::signal::{signal, SigHandler, Signal};
            signal(Signal::SIGXFSZ, SigHandler::SigIgn).map_err(std::io::Error::from)?;
            setrlimit(Resource::RLIMIT_FSIZE, 16 * 1024, 16 * 1024).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&lines(&many))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("state.jsonl.tmp"), "{stderr}");
    // Every report was still printed before the save.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 501);
    assert_eq!(
        std::fs::read_to_string(&snap).unwrap(),
        saved,
        "the last good snapshot"
    );
    assert!(!tmp.exists(), "a half-written {} was left", tmp.display());
    // And it still loads.
    let again = run(EXE, &["--snapshot", &snap_arg], b"");
    again.expect_code(0);
    assert_eq!(again.json_lines().len(), 1);
}
