//! chat-relay's pages in a real headless Chromium (Debian's `chromium` + `chromium-driver`),
//! driven over WebDriver with fantoccini: our page in two browsers talking through two workers
//! (text only, no empty messages, connection state, reconnect after the workers die, phone
//! width), and a page in the style of the challenge's original speaking to a Rust client.
//! Screenshots are kept under `test-artifacts/`.

mod common;

use common::browser::{artifact, wait_until_with, Driver, WAIT};
use common::Daemon;
use fantoccini::{Client, Locator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const EXE: &str = env!("CARGO_BIN_EXE_chat-relay");

async fn wait_connected(browser: &Client) {
    wait_until_with(
        browser,
        "connected",
        "document.getElementById('state').className === 'open'",
        vec![],
    )
    .await;
}

/// What `script` returns in the page, read as a `T`.
async fn evaluate<T: serde::de::DeserializeOwned>(browser: &Client, script: &str) -> T {
    let value = browser.execute(script, vec![]).await.unwrap();
    serde_json::from_value(value).unwrap()
}

/// Messages shown in our page's log, as (user, text) pairs.
async fn shown(browser: &Client) -> Vec<(String, String)> {
    evaluate(
        browser,
        "return [...document.querySelectorAll('#log li:not(.notice)')]
            .map(li => [li.querySelector('.user').title, li.querySelector('.message').textContent]);",
    )
    .await
}

async fn click(browser: &Client, css: &str) {
    let button = browser.find(Locator::Css(css)).await.unwrap();
    button.click().await.unwrap();
}

async fn say(browser: &Client, text: &str) {
    let input = browser.find(Locator::Css("#text")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    click(browser, "#go").await;
}

async fn wait_for_message(browser: &Client, text: &str) {
    wait_until_with(
        browser,
        &format!("message {text:?}"),
        "[...document.querySelectorAll('#log .message')].some(m => m.textContent === arguments[0])",
        vec![json!(text)],
    )
    .await;
}

fn wait_for_workers(relay: &Daemon, count: usize) {
    relay.wait_stderr_count(" serving", count, WAIT);
}

fn worker_pids(relay: &Daemon) -> Vec<i32> {
    let text = relay.stderr_text();
    text.match_indices("(pid ")
        .map(|(at, _)| text[at + 5..].split(')').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn two_browsers_chat_through_the_relay() {
    let relay = Daemon::ours(EXE, &["--listen", "127.0.0.1:0", "--workers", "2"]);
    wait_for_workers(&relay, 2);
    let driver = Driver::start();
    let (profile_a, profile_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = driver.phone(&profile_a).await;
    let bob = driver.phone(&profile_b).await;
    let page = relay.url() + "/";
    alice.goto(&page).await.unwrap();
    bob.goto(&page).await.unwrap();
    wait_connected(&alice).await;
    wait_connected(&bob).await;

    say(&alice, "hello bob").await;
    wait_for_message(&bob, "hello bob").await;
    let xss = "<img src=x onerror=alert(1)>";
    say(&alice, xss).await;
    wait_for_message(&bob, xss).await;
    wait_for_message(&alice, xss).await;
    // Shown as text: no element was made of it, no script ran.
    for browser in [&alice, &bob] {
        let images = browser.find_all(Locator::Css("#log img")).await.unwrap();
        assert!(images.is_empty(), "the message became an <img>");
        assert!(browser.get_alert_text().await.is_err(), "an alert ran");
    }
    // An empty (blank) message is not sent: the next thing bob sees is the one after it.
    say(&alice, "   ").await;
    say(&alice, "after the blank one").await;
    wait_for_message(&bob, "after the blank one").await;
    let log = shown(&bob).await;
    let texts: Vec<&str> = log.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["hello bob", xss, "after the blank one"]);
    // Who said it: one 32-hex user for all of alice's messages.
    let users: std::collections::BTreeSet<&str> = log.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(users.len(), 1, "{log:?}");
    assert!(users.iter().all(|u| u.len() == 32));
    bob.find(Locator::Css("#text"))
        .await
        .unwrap()
        .send_keys("hi alice")
        .await
        .unwrap();
    click(&bob, "#go").await;
    wait_for_message(&alice, "hi alice").await;
    // Phone width: nothing sticks out sideways.
    wait_until_with(
        &alice,
        "no horizontal overflow",
        "document.documentElement.scrollWidth <= window.innerWidth",
        vec![],
    )
    .await;
    let shot = artifact("chat-relay-page.png", &alice.screenshot().await.unwrap());

    // Every worker dies: the pages say so, reconnect by themselves, and chat on.
    for pid in worker_pids(&relay) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    for browser in [&alice, &bob] {
        wait_until_with(
            browser,
            "disconnected",
            "document.getElementById('state').className === 'closed'",
            vec![],
        )
        .await;
    }
    wait_connected(&alice).await;
    wait_connected(&bob).await;
    say(&bob, "back again").await;
    wait_for_message(&alice, "back again").await;
    artifact(
        "chat-relay-page-reconnected.png",
        &alice.screenshot().await.unwrap(),
    );
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    assert!(shot.exists());
}

#[tokio::test]
async fn a_page_in_the_original_style_works_unchanged() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat-original.html");
    let relay = Daemon::ours(
        EXE,
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--page",
            fixture,
        ],
    );
    wait_for_workers(&relay, 2);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.phone(&profile).await;
    browser.goto(&(relay.url() + "/")).await.unwrap();
    // The original page shows no connection state: wait until its socket is open.
    wait_until_with(
        &browser,
        "socket open",
        "typeof ws === 'object' && ws.readyState === 1",
        vec![],
    )
    .await;

    let (mut rust, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", relay.addr))
        .await
        .unwrap();
    // The page speaks first: the Rust client hears it, stamped with the page's user.
    let input = browser.find(Locator::Css("#message")).await.unwrap();
    input
        .send_keys("hello from the original page")
        .await
        .unwrap();
    click(&browser, "#send").await;
    let heard: Value = loop {
        let frame = tokio::time::timeout(WAIT, rust.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            break serde_json::from_str(&text).unwrap();
        }
    };
    assert_eq!(heard["message"], "hello from the original page");
    let page_user = heard["user"].as_str().unwrap().to_string();
    assert_eq!(page_user.len(), 32);

    rust.send(Message::text(
        json!({"message": "hello from rust"}).to_string(),
    ))
    .await
    .unwrap();
    wait_until_with(
        &browser,
        "the Rust client's message",
        "[...document.querySelectorAll('#chat p')].some(p => p.innerText.endsWith(': hello from rust'))",
        vec![],
    )
    .await;
    let lines: Vec<String> = evaluate(
        &browser,
        "return [...document.querySelectorAll('#chat p')].map(p => p.innerText);",
    )
    .await;
    assert_eq!(
        lines[0],
        format!("{page_user}: hello from the original page")
    );
    assert!(lines[1].ends_with(": hello from rust") && !lines[1].starts_with(&page_user));
    artifact(
        "chat-relay-original-page.png",
        &browser.screenshot().await.unwrap(),
    );
    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_client_cannot_make_the_page_show_a_server_notice() {
    let relay = Daemon::ours(EXE, &["--listen", "127.0.0.1:0", "--workers", "1"]);
    wait_for_workers(&relay, 1);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.phone(&profile).await;
    browser.goto(&(relay.url() + "/")).await.unwrap();
    wait_connected(&browser).await;

    let (mut mallory, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", relay.addr))
        .await
        .unwrap();
    for frame in [
        json!({"message": "hi", "error": "SPOOFED"}),
        json!({"message": "after the spoof"}),
    ] {
        mallory
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }
    // The relay handles a connection's frames in order: once the second is on the page, the
    // first has been dealt with.
    wait_for_message(&browser, "after the spoof").await;
    let notices: Vec<String> = evaluate(
        &browser,
        "return [...document.querySelectorAll('#log li.notice')].map(li => li.textContent);",
    )
    .await;
    assert!(
        notices.iter().all(|n| !n.contains("SPOOFED")),
        "the page shows a spoofed notice: {notices:?}"
    );
    let texts: Vec<String> = shown(&browser).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["after the spoof"]);
    browser.close().await.unwrap();
}
