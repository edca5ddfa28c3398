//! A real Prometheus server (Debian's `prometheus`) on a free loopback port, scraping the
//! targets it is given, and its HTTP query API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Prometheus {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrape every `(job, "host:port")` every `interval` (e.g. `"500ms"`).
    pub fn scraping(targets: &[(&str, &[String])], interval: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n"
        );
        for (job, addrs) in targets {
            let list: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = super::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("starting prometheus (make test-deps installs the Debian package)");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = ureq::get(&format!("{}/-/ready", prometheus.url)).call();
            if ready.is_ok_and(|r| r.status() == 200) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never became ready:\n{}",
                prometheus.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The values of an instant query, as `(labels, value)`.
    pub fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let mut answer = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", query)
            .call()
            .unwrap_or_else(|e| panic!("query {query}: {e}"));
        let body: Value = answer.body_mut().read_json().unwrap();
        assert_eq!(body["status"], "success", "query {query}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Wait until `query` has one result equal to `expected`; panics with what it last saw.
    pub fn wait_for(&self, query: &str, expected: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.query(query);
            if got.len() == 1 && got[0].1 == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{query}: expected {expected}, Prometheus says {got:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- prometheus stderr ---\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
