//! One guard's chart as inline SVG: its value over time (ms since the faults started), the
//! threshold, the fault window and phases shaded, the trip, abort, end of faults and recovery
//! marked. Plain SVG elements, no script, no external reference (inline SVG in HTML needs no
//! namespace declaration).

use std::fmt::Write;

use super::model::{Guard, Report};
use super::{escape, millis, number};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 30.0;

/// Moments worth a vertical line, in ms since the faults started.
struct Marks {
    faults_end: Option<f64>,
    trip: Option<f64>,
    abort: Option<f64>,
    recovered: Option<f64>,
}

impl Marks {
    fn of(r: &Report) -> Marks {
        let at = |kind: &str| {
            r.timeline
                .iter()
                .find(|e| e.kind == kind)
                .and_then(|e| e.at_ms)
                .map(|ms| ms.max(0) as f64)
        };
        let faults_end = r
            .recovery
            .as_ref()
            .and_then(|rec| rec.faults_ended_ms)
            .map(|ms| ms as f64)
            .or_else(|| at("completed"))
            .or_else(|| at("aborted"));
        let recovered = r.recovery.as_ref().and_then(|rec| {
            Some(rec.faults_ended_ms? as f64 + rec.recovery_time_ms? as f64)
                .filter(|_| rec.recovered)
        });
        Marks {
            faults_end,
            trip: r
                .trip
                .as_ref()
                .and_then(|t| t.time_to_detect_ms)
                .map(|ms| ms as f64),
            abort: at("aborted").filter(|_| r.trip.is_some() || r.state == "aborted"),
            recovered,
        }
    }
}

pub fn svg(r: &Report, g: &Guard) -> String {
    let marks = Marks::of(r);
    let series_end = g.series.last().map(|p| p[0]);
    let x_max = [
        series_end,
        marks.faults_end,
        marks.trip,
        marks.abort,
        marks.recovered,
    ]
    .into_iter()
    .flatten()
    .fold(1000.0_f64, f64::max)
        * 1.03;
    let values = g.series.iter().map(|p| p[1]).chain(g.threshold);
    let (lo, hi) = values.fold((0.0_f64, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi <= lo {
        lo + 1.0
    } else {
        hi + (hi - lo) * 0.15
    };
    let x = |ms: f64| LEFT + ms / x_max * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (HEIGHT - TOP - BOTTOM);
    let (plot_top, plot_bottom) = (TOP, HEIGHT - BOTTOM);

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"guard {name}\"><title>guard {name}: value over time</title>",
        name = escape(&g.name)
    );
    // The fault window, then the phases inside it.
    if let Some(end) = marks.faults_end {
        band(
            &mut s,
            x(0.0),
            x(end),
            plot_top,
            plot_bottom,
            "faults",
            "faults",
        );
    }
    for (i, p) in r.phases.iter().enumerate() {
        let start = p.start_ms as f64;
        let end = p
            .duration_ms
            .map(|d| start + d as f64)
            .or(marks.faults_end)
            .unwrap_or(x_max)
            .min(x_max);
        let class = if i % 2 == 0 { "phase" } else { "phase alt" };
        band(
            &mut s,
            x(start),
            x(end),
            plot_top,
            plot_bottom,
            class,
            &p.name,
        );
    }
    // Axes and their labels.
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{plot_bottom}\" x2=\"{}\" y2=\"{plot_bottom}\"/><line class=\"axis\" x1=\"{LEFT}\" y1=\"{plot_top}\" x2=\"{LEFT}\" y2=\"{plot_bottom}\"/>",
        WIDTH - RIGHT
    );
    for i in 0..=4 {
        let ms = x_max * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(ms),
            HEIGHT - 10.0,
            millis(ms as u64)
        );
    }
    for v in [lo, hi] {
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y(v) + 4.0,
            number(v)
        );
    }
    if let Some(t) = g.threshold {
        let _ = write!(
            s,
            "<line class=\"threshold\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{} {}</text>",
            WIDTH - RIGHT,
            WIDTH - RIGHT,
            y(t) - 4.0,
            g.condition,
            number(t),
            y = y(t)
        );
    }
    // The series.
    if g.series.is_empty() {
        let _ = write!(
            s,
            "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no samples recorded</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    } else {
        let points: Vec<String> = g
            .series
            .iter()
            .map(|[t, v]| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"series\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    // The moments.
    let moments = [
        (marks.faults_end, "end", "faults end"),
        (marks.trip.filter(|_| g.tripped), "trip", "trip"),
        (marks.abort, "abort", "abort"),
        (marks.recovered, "recovered", "recovered"),
    ];
    for (i, (at, class, label)) in moments.into_iter().enumerate() {
        if let Some(ms) = at {
            let _ = write!(
                s,
                "<line class=\"mark {class}\" x1=\"{x:.1}\" y1=\"{plot_top}\" x2=\"{x:.1}\" y2=\"{plot_bottom}\"/><text class=\"mark-label {class}\" x=\"{:.1}\" y=\"{}\">{label}</text>",
                x(ms) + 3.0,
                plot_top + 10.0 + 11.0 * i as f64,
                x = x(ms)
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn band(s: &mut String, x0: f64, x1: f64, top: f64, bottom: f64, class: &str, title: &str) {
    let _ = write!(
        s,
        "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{}\"><title>{}</title></rect>",
        (x1 - x0).max(0.0),
        bottom - top,
        escape(title)
    );
}
