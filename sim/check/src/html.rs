//! A self-contained HTML page of a check: the operations drawn per process on a time axis
//! (an SVG, no scripts, no external resources), the failing window marked, and the report.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::history::{History, Status};
use super::Verdict;

/// Most operations drawn; beyond that, those nearest the failing window (or the first).
pub const MAX_DRAWN_OPS: usize = 5000;
const LANE_HEIGHT: f64 = 22.0;
const LABEL_WIDTH: f64 = 60.0;
const WIDTH: f64 = 1400.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The operations to draw: all of them when few, else the [`MAX_DRAWN_OPS`] whose
/// invocations are nearest to the window's first operation.
fn drawn(h: &History, window: &[usize]) -> Vec<usize> {
    let centre = window.first().copied().unwrap_or(0);
    let first = centre
        .saturating_sub(MAX_DRAWN_OPS / 2)
        .min(h.ops.len().saturating_sub(MAX_DRAWN_OPS));
    (first..h.ops.len().min(first + MAX_DRAWN_OPS)).collect()
}

/// Renders the page for `h` checked as `verdict`, with `title` as its heading.
pub fn render(h: &History, verdict: &Verdict, title: &str) -> String {
    let (window, blocking, report) = match verdict {
        Verdict::NotLinearizable(r) => (r.window.clone(), Some(r.blocking), r.to_string()),
        Verdict::Unknown { window, .. } => (
            window.clone(),
            None,
            verdict.why_unknown(h).unwrap_or_default(),
        ),
        Verdict::Linearizable => (Vec::new(), None, String::new()),
    };
    let ops = drawn(h, &window);
    let end_of = |i: usize| h.ops[i].complete_time;
    let t0 = ops.iter().map(|&i| h.ops[i].invoke_time).min().unwrap_or(0);
    let t1 = ops
        .iter()
        .filter_map(|&i| end_of(i))
        .chain(ops.iter().map(|&i| h.ops[i].invoke_time))
        .max()
        .unwrap_or(0);
    let span = (t1 - t0).max(1) as f64;
    let x = |t: u64| LABEL_WIDTH + (t - t0) as f64 / span * (WIDTH - LABEL_WIDTH - 10.0);
    let lanes: BTreeMap<u64, usize> = {
        let mut procs: Vec<u64> = ops.iter().map(|&i| h.ops[i].process).collect();
        procs.sort_unstable();
        procs.dedup();
        procs.into_iter().enumerate().map(|(n, p)| (p, n)).collect()
    };
    let height = (lanes.len() as f64 + 1.0) * LANE_HEIGHT;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}">"#
    );
    if let (Some(&a), Some(_)) = (window.first(), window.last()) {
        let from = window
            .iter()
            .map(|&i| h.ops[i].invoke_time)
            .min()
            .unwrap_or(h.ops[a].invoke_time);
        let to = window
            .iter()
            .map(|&i| end_of(i).unwrap_or(t1))
            .max()
            .unwrap_or(t1);
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{height}" fill="#fdd"/>"##,
            x(from),
            (x(to) - x(from)).max(2.0)
        );
    }
    for (p, lane) in &lanes {
        let y = (*lane as f64 + 0.5) * LANE_HEIGHT;
        let _ = write!(
            svg,
            r#"<text x="2" y="{:.1}" font-size="11">p{p}</text>"#,
            y + 4.0
        );
    }
    for &i in &ops {
        let op = &h.ops[i];
        let y = lanes[&op.process] as f64 * LANE_HEIGHT + 4.0;
        let (from, to) = (x(op.invoke_time), x(end_of(i).unwrap_or(t1)));
        let fill = match op.status {
            Status::Ok => "#9c9",
            Status::Fail => "#ccc",
            Status::Info => "#fc8",
        };
        let fill = if Some(i) == blocking { "#e44" } else { fill };
        let stroke = if window.contains(&i) {
            r##"stroke="#a00" stroke-width="2""##
        } else {
            r##"stroke="#555""##
        };
        let dash = if end_of(i).is_none() {
            r#" stroke-dasharray="4 2""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<rect x="{from:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" {stroke}{dash}><title>{}</title></rect>"#,
            (to - from).max(1.0),
            LANE_HEIGHT - 8.0,
            escape(&h.describe(i))
        );
    }
    svg.push_str("</svg>");
    let shown = if ops.len() < h.ops.len() {
        format!(" ({} of {} operations shown)", ops.len(), h.ops.len())
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body style=\"font-family:sans-serif\">\n<h1>{t}: {v}</h1>\n<p>Green ok, grey fail, orange info (dashed: no completion); red outline: the failing window (for unknown: where the search was stuck), red fill: the operation no order gets past. Hover for details{shown}.</p>\n{svg}\n<pre>{r}</pre>\n</body></html>\n",
        t = escape(title),
        v = verdict.word(),
        r = escape(&report),
    )
}
