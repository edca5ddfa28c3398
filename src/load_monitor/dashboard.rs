//! The dashboard: `GET /` lists the servers tracked (name, last report, current load) and
//! `GET /dashboard/<name>` draws one server's CPU and RAM over the last hour by minute and the
//! last day by hour, the numbers of `/report/<name>`, refreshed every few seconds.
//!
//! - The list is drawn here; a chart page is a shell whose script ([`SCRIPT`], served from
//!   `/dashboard/assets/`) fetches `/report/<name>` and draws the charts as SVG. Each row of the
//!   report is one `<g class="point">` carrying `data-t`, `data-cpu` and `data-ram` as the report
//!   has them, so a checker reads the chart's own numbers.
//! - Nothing comes from elsewhere: the page, its script and its style are served by load-monitor,
//!   and the `Content-Security-Policy` allows nothing else (no inline script, no other origin).
//! - Names and values are escaped: in the HTML drawn here by [`escape`], in the script by setting
//!   text and attributes only (never markup). A name that is not a valid server name (`<script>`)
//!   still gets a page, which shows it as text and says what `/report` answered.
//! - One column under 600 px: readable on a phone.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

use super::Store;
use crate::output::Number;
use crate::time::Timestamp;

/// The chart page's script and style.
pub const SCRIPT: &str = include_str!("dashboard.js");
pub const STYLE: &str = include_str!("dashboard.css");
/// The list shows this many servers at most (sorted by name) and says how many more there are.
pub const MAX_LISTED: usize = 1000;
/// Names longer than this are cut on a chart page's heading (a path can be long; a name is not).
const MAX_SHOWN_NAME: usize = 512;

/// Scripts and styles from this server only, no inline code, fetches to this server only.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// `text` safe inside HTML text and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `name` as one path segment of a URL.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A load as `/report` writes it.
fn number(v: f64) -> String {
    serde_json::to_string(&Number(v)).unwrap_or_default()
}

fn html(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">\n",
        escape(title)
    )
}

/// `GET /`: every server tracked (the first [`MAX_LISTED`] by name), its last report and load.
pub async fn index(State(store): State<Arc<Store>>) -> Response {
    let names = store.names();
    let mut page = head("load-monitor");
    page.push_str("<meta http-equiv=\"refresh\" content=\"10\">\n</head>\n<body>\n");
    let _ = write!(
        page,
        "<h1>load-monitor</h1>\n<p class=\"note\">{} server{} tracked; clock {}</p>\n",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        Timestamp(store.now())
    );
    page.push_str(
        "<table id=\"servers\">\n<thead><tr><th>server</th><th>last report</th>\
         <th>cpu</th><th>ram</th></tr></thead>\n<tbody>\n",
    );
    for name in names.iter().take(MAX_LISTED) {
        let Some((rows, _)) = store.rows(name) else {
            continue; // forgotten since the names were read
        };
        let last = rows.minutes.last().or(rows.hours.last());
        let (at, cpu, ram) = match last {
            Some(&(t, cpu, ram)) => (Timestamp(t).to_string(), number(cpu), number(ram)),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            page,
            "<tr data-server=\"{name}\"><td><a href=\"/dashboard/{href}\">{name}</a></td>\
             <td>{at}</td><td class=\"num\">{cpu}</td><td class=\"num\">{ram}</td></tr>",
            name = escape(name),
            href = escape(&path_segment(name)),
            at = escape(&at),
            cpu = escape(&cpu),
            ram = escape(&ram),
        );
    }
    page.push_str("</tbody>\n</table>\n");
    if names.len() > MAX_LISTED {
        let _ = writeln!(
            page,
            "<p class=\"note\">and {} more (GET /servers lists them all)</p>",
            names.len() - MAX_LISTED
        );
    }
    page.push_str("</body>\n</html>\n");
    html(page)
}

/// `GET /dashboard/<name>`: the chart page of one server; its script draws `/report/<name>`.
pub async fn page(Path(name): Path<String>) -> Response {
    let shown: String = name.chars().take(MAX_SHOWN_NAME).collect();
    let mut page = head(&format!("{shown} — load-monitor"));
    let _ = write!(
        page,
        "<script src=\"/dashboard/assets/dashboard.js\" defer></script>\n</head>\n\
         <body data-server=\"{attr}\" data-report=\"/report/{report}\">\n\
         <p class=\"note\"><a href=\"/\">all servers</a></p>\n\
         <h1 id=\"server\">{text}</h1>\n\
         <p id=\"status\" class=\"note\">loading…</p>\n\
         <section><h2>Last hour, by minute</h2><svg id=\"hour\" class=\"chart\" \
         viewBox=\"0 0 600 220\" role=\"img\" aria-label=\"CPU and RAM, last hour\"></svg></section>\n\
         <section><h2>Last day, by hour</h2><svg id=\"day\" class=\"chart\" \
         viewBox=\"0 0 600 220\" role=\"img\" aria-label=\"CPU and RAM, last day\"></svg></section>\n\
         <p class=\"legend\"><span class=\"cpu\">■ cpu</span> <span class=\"ram\">■ ram</span></p>\n\
         </body>\n</html>\n",
        attr = escape(&name),
        report = escape(&path_segment(&name)),
        text = escape(&shown),
    );
    html(page)
}

/// `GET /dashboard/assets/<file>`: the chart page's script and style.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return crate::server::ApiError::not_found("no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_stays_text() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(path_segment("web-1.a_b"), "web-1.a_b");
        assert_eq!(path_segment("<a b>/:"), "%3Ca%20b%3E%2F%3A");
    }
}
