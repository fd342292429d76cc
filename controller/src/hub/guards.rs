//! The guards of one experiment while the hub runs it and watches it recover: each guard's
//! tracker, the sliding window of an in-band guard, the pollers of the others, and a
//! down-sampled series of values for reports.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::history::History;
use crate::guard::eval::{GuardState, Tracker, show};
use crate::guard::window::{self, SliWindow};
use crate::guard::{Reading, RouteReport, Sample};
use crate::spec::{self, Guard, NoData, Source};
use crate::targets::AgentInfo;

/// One point per this span in a guard's series (the worst value seen in it).
const SERIES_STEP: Duration = Duration::from_secs(1);
/// At most this many points per series (an hour at one a second).
const SERIES_POINTS: usize = 3600;

/// Something a guard did that the timeline records.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Happening {
    Changed {
        guard: usize,
        from: GuardState,
        to: GuardState,
        value: Option<f64>,
        note: Option<String>,
    },
    Tripped {
        guard: usize,
        value: f64,
        note: Option<String>,
    },
}

/// The guards of one experiment.
pub(super) struct Guards {
    pub(super) items: Vec<Item>,
    pollers: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    /// Series times count from here (the fault start, or the pre-flight before it).
    origin: Instant,
}

/// One guard.
pub(super) struct Item {
    pub(super) spec: Guard,
    pub(super) tracker: Tracker,
    window: Option<SliWindow>,
    /// `versus: control`: the control cohort's window (`window` then holds the treatment).
    control: Option<SliWindow>,
    series: Vec<(u64, f64)>,
    pub(super) note: Option<String>,
}

impl Drop for Guards {
    fn drop(&mut self) {
        self.stop.cancel();
        self.pollers.iter().for_each(JoinHandle::abort);
    }
}

impl Guards {
    /// The trackers of `exp`'s guards; in-band windows sum reports in slots of `slot` (the
    /// heartbeat interval). Pollers start with [`Guards::start_pollers`].
    pub(super) fn new(exp: &spec::Experiment, slot: Duration, now: Instant) -> Self {
        let items = exp
            .guards
            .iter()
            .map(|g| {
                let (no_data, window, control) = match &g.source {
                    Source::Agents(a) => (
                        a.no_data,
                        Some(SliWindow::new(g.window, slot)),
                        a.versus.map(|_| SliWindow::new(g.window, slot)),
                    ),
                    _ => (NoData::Ignore, None, None),
                };
                Item {
                    spec: g.clone(),
                    tracker: Tracker::new(g.condition, g.hold, no_data),
                    window,
                    control,
                    series: Vec::new(),
                    note: None,
                }
            })
            .collect();
        Guards {
            items,
            pollers: Vec::new(),
            stop: CancellationToken::new(),
            origin: now,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether any guard polls (Prometheus, probe): pre-flight waits for their first reading.
    pub(super) fn has_pollers(&self) -> bool {
        self.items.iter().any(|i| i.window.is_none())
    }

    /// Starts a poller per Prometheus and probe guard, sending to `tx`.
    pub(super) fn start_pollers(
        &mut self,
        experiment: &str,
        http: &crate::guard::http::Http,
        tx: &mpsc::Sender<Sample>,
    ) {
        for item in &self.items {
            let name = item.spec.name.clone();
            let (http, exp, tx, stop) = (
                http.clone(),
                experiment.to_owned(),
                tx.clone(),
                self.stop.clone(),
            );
            let handle = match &item.spec.source {
                Source::Agents(_) => continue,
                Source::Prometheus(p) => {
                    crate::guard::prometheus::spawn(http, exp, name, p.clone(), tx, stop)
                }
                Source::Probe(p) => {
                    crate::guard::probe::spawn(http, exp, name, p.clone(), tx, stop)
                }
            };
            self.pollers.push(handle);
        }
    }

    /// Whether every polled guard has had a reading (pre-flight can judge them).
    pub(super) fn pollers_read(&self) -> bool {
        self.items
            .iter()
            .filter(|i| i.window.is_none())
            .all(|i| i.tracker.state().is_some())
    }

    /// Pre-flight for in-band guards: each window is filled with what `history` holds of the
    /// agents it covers, then read once.
    pub(super) fn seed(
        &mut self,
        history: &History,
        agents: &[&AgentInfo],
        chosen: &[String],
        now: Instant,
    ) -> Vec<Happening> {
        let mut out = Vec::new();
        for (i, item) in self.items.iter_mut().enumerate() {
            let (Source::Agents(a), Some(window)) = (&item.spec.source, item.window.as_mut())
            else {
                continue;
            };
            // The history keeps whole routes, not cohorts: a comparison starts empty.
            if a.versus.is_none() {
                for agent in agents.iter().filter(|ag| covers(a, ag, chosen)) {
                    for (at, sli) in history.since(&agent.id, &a.route, now, window.span()) {
                        window.add(at, sli);
                    }
                }
            }
            let reading = read(item, now);
            observe(i, item, &reading, None, now, self.origin, &mut out);
        }
        out
    }

    /// An agent's heartbeat: its route SLIs go into the windows of the guards that cover it,
    /// and those guards are read.
    pub(super) fn heartbeat(
        &mut self,
        agent: &AgentInfo,
        chosen: &[String],
        reports: &[RouteReport],
        now: Instant,
    ) -> Vec<Happening> {
        let mut out = Vec::new();
        for (i, item) in self.items.iter_mut().enumerate() {
            let Source::Agents(a) = &item.spec.source else {
                continue;
            };
            if !covers(a, agent, chosen) {
                continue;
            }
            let route = a.route.clone();
            let mut added = false;
            for r in reports.iter().filter(|r| r.route == route) {
                added |= add(item, now, r);
            }
            if added {
                let reading = read(item, now);
                observe(i, item, &reading, None, now, self.origin, &mut out);
            }
        }
        out
    }

    /// A poller's reading.
    pub(super) fn sample(&mut self, sample: Sample) -> Vec<Happening> {
        let mut out = Vec::new();
        if let Some((i, item)) = self
            .items
            .iter_mut()
            .enumerate()
            .find(|(_, it)| it.spec.name == sample.guard)
        {
            let origin = self.origin;
            observe(
                i,
                item,
                &sample.reading,
                sample.note,
                sample.at,
                origin,
                &mut out,
            );
        }
        out
    }

    /// Time passes: in-band windows drop old reports and are read again (traffic that
    /// stopped becomes no data), and breaches that have held long enough trip.
    pub(super) fn tick(&mut self, now: Instant) -> Vec<Happening> {
        let mut out = Vec::new();
        let origin = self.origin;
        for (i, item) in self.items.iter_mut().enumerate() {
            if item.window.is_some() {
                let reading = read(item, now);
                observe(i, item, &reading, None, now, origin, &mut out);
            } else if item.tracker.poll(now) {
                out.push(trip(i, item));
            }
        }
        out
    }

    /// The faults have ended: in-band windows start afresh, so recovery is judged on traffic
    /// after the faults only, and every guard must read ok again.
    pub(super) fn restart(&mut self) {
        for item in &mut self.items {
            for w in [item.window.as_mut(), item.control.as_mut()]
                .into_iter()
                .flatten()
            {
                w.clear();
            }
            item.tracker.reset();
        }
    }

    /// Every guard has read since the last restart and none is breached.
    pub(super) fn all_ok(&self) -> bool {
        self.items
            .iter()
            .all(|i| matches!(i.tracker.state(), Some(GuardState::Ok | GuardState::NoData)))
    }

    /// Each guard's state and value, for the pre-flight event.
    pub(super) fn states(&self) -> Value {
        Value::Array(
            self.items
                .iter()
                .map(|i| {
                    json!({
                        "guard": i.spec.name,
                        "source": i.spec.source.kind(),
                        "state": i.tracker.state().map(GuardState::as_str),
                        "value": i.tracker.last_value(),
                        "threshold": i.spec.condition.threshold(),
                        "note": i.note,
                    })
                })
                .collect(),
        )
    }

    /// Each guard's series: `{guard: [[ms since the origin, value], ...]}`.
    pub(super) fn series(&self) -> Value {
        Value::Object(
            self.items
                .iter()
                .map(|i| (i.spec.name.clone(), json!(i.series)))
                .collect(),
        )
    }

    pub(super) fn origin(&self) -> Instant {
        self.origin
    }

    /// Series times count from `at` (the fault start).
    pub(super) fn set_origin(&mut self, at: Instant) {
        self.origin = at;
    }
}

/// Adds one route report to an in-band guard's windows; answers whether it added anything.
fn add(item: &mut Item, now: Instant, r: &RouteReport) -> bool {
    match (item.window.as_mut(), item.control.as_mut()) {
        (Some(window), None) => {
            window.add(now, &r.all);
            true
        }
        (Some(treatment), Some(control)) => {
            if let Some(t) = &r.treatment {
                treatment.add(now, t);
            }
            if let Some(c) = &r.control {
                control.add(now, c);
            }
            r.treatment.is_some() || r.control.is_some()
        }
        _ => false,
    }
}

/// An in-band guard's reading now (old reports dropped first).
fn read(item: &mut Item, now: Instant) -> Reading {
    let Source::Agents(a) = &item.spec.source else {
        return Reading::NoData {
            why: "not an in-band guard".into(),
        };
    };
    let Some(window) = item.window.as_mut() else {
        return Reading::NoData {
            why: "no window".into(),
        };
    };
    window.expire(now);
    match item.control.as_mut() {
        None => window::reading(&a.metric, window.total(), window.span(), a.min_requests),
        Some(control) => {
            control.expire(now);
            window::versus_reading(
                &a.metric,
                window.total(),
                control.total(),
                window.span(),
                a.min_requests,
            )
        }
    }
}

/// Whether an in-band guard counts `agent`'s reports.
fn covers(a: &spec::AgentsSource, agent: &AgentInfo, chosen: &[String]) -> bool {
    match &a.selector {
        Some(sel) => sel.matches(&agent.labels),
        None => chosen.contains(&agent.id),
    }
}

fn observe(
    i: usize,
    item: &mut Item,
    reading: &Reading,
    note: Option<String>,
    at: Instant,
    origin: Instant,
    out: &mut Vec<Happening>,
) {
    let note = note.or_else(|| match reading {
        Reading::NoData { why } | Reading::Broken { why, .. } => Some(why.clone()),
        Reading::Value(_) => None,
    });
    item.note = note.clone();
    let update = item.tracker.observe(reading, at);
    if let Some(v) = update.value {
        record(
            &mut item.series,
            item.spec.condition,
            at.saturating_duration_since(origin),
            v,
        );
    }
    if let Some((from, to)) = update.changed {
        out.push(Happening::Changed {
            guard: i,
            from,
            to,
            value: update.value,
            note,
        });
    }
    if update.tripped {
        out.push(trip(i, item));
    }
}

fn trip(i: usize, item: &Item) -> Happening {
    Happening::Tripped {
        guard: i,
        value: item.tracker.last_value().unwrap_or(f64::NAN),
        note: item.note.clone(),
    }
}

/// Adds a value to a series, keeping the worst value per step.
fn record(series: &mut Vec<(u64, f64)>, condition: spec::Condition, since: Duration, v: f64) {
    let step =
        (since.as_millis() / SERIES_STEP.as_millis()) as u64 * SERIES_STEP.as_millis() as u64;
    let full = series.len() >= SERIES_POINTS;
    match series.last_mut() {
        Some((t, worst))
            if *t == step
                && (condition.breached(v) && !condition.breached(*worst)
                    || matches!(condition, spec::Condition::Above(_)) && v > *worst
                    || matches!(condition, spec::Condition::Below(_)) && v < *worst) =>
        {
            *worst = v;
        }
        Some((t, _)) if *t == step => {}
        _ if !full => series.push((step, v)),
        _ => {}
    }
}

/// The reason an experiment aborted by `guard` ends with.
pub(super) fn reason(item: &Item, value: f64, local_agent: Option<&str>) -> String {
    let held = if item.spec.hold.is_zero() {
        String::new()
    } else {
        format!(" for {}", humantime::format_duration(item.spec.hold))
    };
    let whose = match local_agent {
        Some(agent) => format!("local on agent {agent}: "),
        None => String::new(),
    };
    let note = match &item.note {
        Some(n) if matches!(item.spec.source, Source::Probe(_) | Source::Prometheus(_)) => {
            format!("; {n}")
        }
        _ => String::new(),
    };
    format!(
        "guard {} ({whose}{}{held}{note})",
        item.spec.name,
        comparison(item, value)
    )
}

/// `value V > threshold T`.
pub(super) fn comparison(item: &Item, value: f64) -> String {
    let c = item.spec.condition;
    format!(
        "value {} {} threshold {}",
        show(value),
        c.symbol(),
        show(c.threshold())
    )
}
