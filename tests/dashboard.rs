//! load-monitor's dashboard in a real headless Chromium: a server fed a known day of load, its
//! charts' points against `/report`, the list of servers, a phone's width, and a name shaped
//! like markup shown as text. Screenshots are kept under `test-artifacts/`.

mod common;

use common::browser::{artifact, wait_until, Driver};
use common::{agent, Daemon};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_load-monitor");
/// 2016-04-10T00:00:00Z: the known day starts here.
const DAY: i64 = 1_460_246_400;

/// A day of records every 10 minutes for `server`, with loads that differ minute to minute.
fn day_of_load(server: &str, scale: f64) -> String {
    (0..144)
        .map(|i| {
            let cpu = ((i * 7) % 23) as f64 * 0.5 * scale;
            let ram = 10.0 + ((i * 5) % 11) as f64 * 1.25 * scale;
            format!(
                "{{\"server\":\"{server}\",\"cpu\":{cpu},\"ram\":{ram},\"dt\":{}}}\n",
                DAY + i * 600
            )
        })
        .collect()
}

/// The chart's points as `[t, cpu, ram]`, in the report's shape.
async fn points(browser: &fantoccini::Client, chart: &str) -> Value {
    browser
        .execute(
            &format!(
                "return [...document.querySelectorAll('#{chart} g.point')]
                    .map(g => [g.dataset.t, Number(g.dataset.cpu), Number(g.dataset.ram)]);"
            ),
            vec![],
        )
        .await
        .unwrap()
}

/// Numbers compared as numbers (`6` and `6.0` are the same load).
fn rows(v: &Value) -> Vec<(String, f64, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Open `url` and wait until the page says it is in `state` (`drawn`, `error`).
async fn open_until(browser: &fantoccini::Client, url: &str, what: &str, state: &str) {
    browser.goto(url).await.unwrap();
    let script = format!("document.body.dataset.state === '{state}'");
    wait_until(browser, what, &script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_the_report_and_escapes_names() {
    let monitor = Daemon::ours(EXE, &["--listen", "127.0.0.1:0", "--clock", "records"]);
    let url = monitor.url();
    let http = agent();
    for (server, scale) in [("web-1", 1.0), ("db-2", 2.0)] {
        let mut answer = http
            .post(format!("{url}/records"))
            .send(day_of_load(server, scale))
            .unwrap();
        let body: Value = answer.body_mut().read_json().unwrap();
        assert_eq!(body["accepted"], 144, "{body}");
    }
    let mut answer = http.get(format!("{url}/report/web-1")).call().unwrap();
    let report: Value = answer.body_mut().read_json().unwrap();
    assert_eq!(report["1hourdata"].as_array().unwrap().len(), 6);
    assert_eq!(report["24hourdata"].as_array().unwrap().len(), 24);

    // The page's policy: nothing from elsewhere, no inline script.
    let page = http.get(format!("{url}/dashboard/web-1")).call().unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.phone(&profile).await;
    open_until(
        &browser,
        &format!("{url}/dashboard/web-1"),
        "charts drawn",
        "drawn",
    )
    .await;
    assert_eq!(
        rows(&points(&browser, "hour").await),
        rows(&report["1hourdata"])
    );
    assert_eq!(
        rows(&points(&browser, "day").await),
        rows(&report["24hourdata"])
    );
    let layout = browser
        .execute(
            "return {width: document.documentElement.scrollWidth, view: window.innerWidth,
                     external: [...document.querySelectorAll('[src],[href]')]
                        .map(e => e.getAttribute('src') || e.getAttribute('href'))
                        .filter(u => !u.startsWith('/'))};",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        layout["width"].as_f64() <= layout["view"].as_f64(),
        "wider than a phone: {layout}"
    );
    assert_eq!(layout["external"], serde_json::json!([]), "{layout}");
    let shot = artifact("dashboard-web-1.png", &browser.screenshot().await.unwrap());
    eprintln!("screenshot: {}", shot.display());

    // The list: both servers, each with its last minute's load as the report has it.
    browser.goto(&format!("{url}/")).await.unwrap();
    let listed = browser
        .execute(
            "return [...document.querySelectorAll('#servers tbody tr')]
                .map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent));",
            vec![],
        )
        .await
        .unwrap();
    let last = report["1hourdata"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let web = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "web-1")
        .unwrap_or_else(|| panic!("web-1 not listed: {listed}"));
    assert_eq!(web[1], last[0]);
    assert_eq!(
        web[2].as_str().unwrap().parse::<f64>().unwrap(),
        last[1].as_f64().unwrap()
    );
    assert_eq!(
        web[3].as_str().unwrap().parse::<f64>().unwrap(),
        last[2].as_f64().unwrap()
    );
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    artifact("dashboard-list.png", &browser.screenshot().await.unwrap());

    // A name shaped like markup is shown as text, and runs nothing.
    let evil = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>";
    let path: String = evil
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    open_until(
        &browser,
        &format!("{url}/dashboard/{path}"),
        "the report's refusal",
        "error",
    )
    .await;
    let seen = browser
        .execute(
            "return {heading: document.getElementById('server').textContent,
                     status: document.getElementById('status').textContent,
                     scripts: document.querySelectorAll('script').length,
                     images: document.querySelectorAll('img').length,
                     pwned: window.pwned === undefined ? null : window.pwned};",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(seen["heading"], evil, "{seen}");
    assert_eq!(seen["scripts"], 1, "{seen}");
    assert_eq!(seen["images"], 0, "{seen}");
    assert_eq!(seen["pwned"], Value::Null, "{seen}");
    assert!(
        seen["status"].as_str().unwrap().contains("no report"),
        "{seen}"
    );
    artifact(
        "dashboard-markup-name.png",
        &browser.screenshot().await.unwrap(),
    );
    browser.close().await.unwrap();
}
