//! `--plot FILE.svg`: latency percentiles (log scale) against the number of clients, one point per
//! measured step, with the budget drawn across. Plain SVG text, readable in any browser.

use std::fmt::Write;

use super::tally::StepReport;

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A percentile's legend, colour and value in a step.
type Series = (&'static str, &'static str, fn(&StepReport) -> Option<f64>);

/// The SVG document for these steps (in any order) and this budget.
pub fn svg(steps: &[StepReport], budget_ms: f64, title: &str) -> String {
    let mut steps: Vec<&StepReport> = steps.iter().filter(|s| s.p50_ms.is_some()).collect();
    steps.sort_by_key(|s| s.clients);
    let series: [Series; 4] = [
        ("p50", "#1f77b4", |s| s.p50_ms),
        ("p99", "#ff7f0e", |s| s.p99_ms),
        ("p99.9", "#2ca02c", |s| s.p999_ms),
        ("max", "#7f7f7f", |s| s.max_ms),
    ];
    let values = steps
        .iter()
        .flat_map(|s| series.iter().filter_map(move |(_, _, f)| f(s)))
        .chain([budget_ms]);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| {
        (lo.min(v.max(0.01)), hi.max(v))
    });
    let (dec_lo, dec_hi) = (
        lo.log10().floor() as i32,
        hi.log10().ceil().max(lo.log10().floor() + 1.0) as i32,
    );
    let max_clients = steps.iter().map(|s| s.clients).max().unwrap_or(1).max(1);
    let x_top = nice_ceiling(f64::from(max_clients));

    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |c: f64| LEFT + pw * c / x_top;
    let y = |ms: f64| {
        let t = (ms.max(0.01).log10() - f64::from(dec_lo)) / f64::from(dec_hi - dec_lo);
        TOP + ph * (1.0 - t)
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Axes, decade grid lines and labels.
    for d in dec_lo..=dec_hi {
        let v = 10f64.powi(d);
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{} ms</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            yy + 4.0,
            trim(v)
        );
    }
    for i in 0..=5 {
        let c = x_top * f64::from(i) / 5.0;
        let xx = x(c);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            c.round()
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">clients</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">delivery latency</text>"#,
        TOP + ph / 2.0
    );
    // The budget.
    let yb = y(budget_ms);
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="#d62728" stroke-dasharray="6 4"/>"##,
        LEFT + pw
    );
    // One polyline per percentile; ok steps are filled dots, failed ones hollow.
    for (i, (name, color, f)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64, bool)> = steps
            .iter()
            .filter_map(|s| f(s).map(|v| (x(f64::from(s.clients)), y(v), s.ok)))
            .collect();
        let path: Vec<String> = pts
            .iter()
            .map(|(a, b, _)| format!("{a:.1},{b:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (a, b, ok) in pts {
            let fill = if ok { color } else { "white" };
            let _ = writeln!(
                out,
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3.5" fill="{fill}" stroke="{color}"/>"#
            );
        }
        let ly = TOP + 14.0 + 20.0 * i as f64;
        let lx = LEFT + pw + 16.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    let ly = TOP + 14.0 + 20.0 * series.len() as f64;
    let lx = LEFT + pw + 16.0;
    let _ = writeln!(
        out,
        r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="#d62728" stroke-dasharray="6 4"/><text x="{}" y="{}">budget</text>"##,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{lx}" y="{}" font-size="11">hollow = not ok</text>"#,
        ly + 26.0
    );
    out.push_str("</svg>\n");
    out
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn trim(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(clients: u32, p50: f64, ok: bool) -> StepReport {
        StepReport {
            clients,
            connected: clients,
            disconnected: 0,
            rounds: 1,
            sent: 1,
            unsent: 0,
            expected: 1,
            delivered: 1,
            lost: 0,
            late: 0,
            duplicates: 0,
            p50_ms: Some(p50),
            p90_ms: Some(p50 * 2.0),
            p99_ms: Some(p50 * 3.0),
            p999_ms: Some(p50 * 4.0),
            max_ms: Some(p50 * 5.0),
            send_lag_max_ms: 0.0,
            wall_s: 1.0,
            client_cpu_s: 0.0,
            client_cpu_pct: 0.0,
            server_cpu_s: None,
            server_cpu_pct: None,
            client_cpu_us_per_delivery: None,
            server_cpu_us_per_delivery: None,
            ok,
        }
    }

    #[test]
    fn draws_one_point_per_step_and_series() {
        let doc = svg(
            &[step(400, 30.0, false), step(100, 0.5, true)],
            1000.0,
            "a <b>",
        );
        assert!(doc.starts_with("<svg"));
        assert!(doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<circle").count(), 8);
        assert_eq!(doc.matches("<polyline").count(), 4);
        assert!(doc.contains("a &lt;b&gt;"));
        assert!(doc.contains("1000 ms"));
        assert!(!doc.contains("NaN"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(3001.0), 5000.0);
        assert_eq!(nice_ceiling(6000.0), 10000.0);
    }
}
