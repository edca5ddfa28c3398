//! Headless Chromium (Debian's `chromium` + `chromium-driver`) driven over WebDriver with
//! fantoccini: chromedriver on a free port, a browser with a fresh profile and a phone's screen,
//! waiting for a condition in the page, screenshots under `test-artifacts/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port; killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub fn start() -> Driver {
        let port = super::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (make test-deps installs chromium-driver)");
        super::wait_for_port(format!("127.0.0.1:{port}").parse().unwrap(), WAIT);
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless Chromium with its own fresh profile, with a phone's screen (390 x 844 CSS
    /// pixels).
    pub async fn phone(&self, profile: &tempfile::TempDir) -> Client {
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": args,
                "mobileEmulation": {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}},
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("opening a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Evaluate `script` (a JS expression) until it is true.
pub async fn wait_until(browser: &Client, what: &str, script: &str) {
    wait_until_with(browser, what, script, vec![]).await
}

/// Like [`wait_until`], with `arguments[i]` for the script.
pub async fn wait_until_with(browser: &Client, what: &str, script: &str, args: Vec<Value>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = browser
            .execute(&format!("return {script};"), args.clone())
            .await
            .expect("running a script in the page");
        if value == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "page never showed: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keep a screenshot under `test-artifacts/` (gitignored); returns its path.
pub fn artifact(name: &str, png: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    path
}
