//! The canonical JSON of a validated spec, as `Experiment.spec` holds it: the document as
//! written, with the values the controller decided filled in (the duration as a string such as
//! `5m`, the targets' mode and `includeNewAgents`, `allowOverlap`, and the seed, when known;
//! each guard's defaults, `recovery` and `requireTraffic`; a cron schedule's `timeZone`,
//! `concurrencyPolicy` and `historyLimit`).
//!
//! The faults stay as written: they already passed the agent's own rule parser, and the agent
//! reads that shape.

use serde_json::{Map, Value, json};

use std::time::Duration;

use crate::spec::{self, Guard, Mode, Source};

/// The canonical JSON of `text`, which [`spec::validate`] accepted as `exp`.
pub(crate) fn canonical_json(text: &str, exp: &spec::Experiment, seed: Option<u64>) -> String {
    // Both parsers accept what `spec::validate` accepted; `Null` is a safe fallback.
    let mut doc: Value = serde_json::from_str(text)
        .or_else(|_| serde_saphyr::from_str(text))
        .unwrap_or(Value::Null);
    if !doc.is_object() {
        doc = json!({});
    }
    let spec = object_at(&mut doc, "spec");
    spec.insert("duration".into(), written(exp.duration).into());
    spec.insert("allowOverlap".into(), exp.allow_overlap.into());
    if let Some(seed) = seed.or(exp.seed) {
        spec.insert("seed".into(), seed.into());
    }
    let targets = object_at_map(spec, "targets");
    let (mode, value) = match exp.targets.mode {
        Mode::All => ("all", None),
        Mode::Count(n) => ("count", Some(u64::from(n.get()))),
        Mode::Percent(p) => ("percent", Some(u64::from(p.get()))),
    };
    targets.insert("mode".into(), mode.into());
    match value {
        Some(v) => targets.insert("value".into(), v.into()),
        None => targets.remove("value"),
    };
    targets.insert(
        "includeNewAgents".into(),
        exp.targets.include_new_agents.into(),
    );
    if let Some(Value::Array(items)) = spec.get_mut("guards") {
        for (item, guard) in items.iter_mut().zip(&exp.guards) {
            if let Value::Object(g) = item {
                fill_guard(g, guard);
            }
        }
    }
    spec.insert(
        "recovery".into(),
        json!({
            "stable": written(exp.recovery.stable),
            "timeout": written(exp.recovery.timeout),
        }),
    );
    spec.insert("requireTraffic".into(), exp.require_traffic.into());
    if let (Some(Value::Object(s)), Some(schedule)) = (spec.get_mut("schedule"), &exp.schedule) {
        fill_schedule(s, schedule);
    }
    doc.to_string()
}

/// A guard as written, with its defaults filled in. The threshold stays as written (a probe
/// has none: its condition follows from `failures`).
fn fill_guard(g: &mut Map<String, Value>, guard: &Guard) {
    g.insert("for".into(), written(guard.hold).into());
    if let Source::Agents(_) = guard.source {
        g.insert("window".into(), written(guard.window).into());
    }
    let source = object_at_map(g, guard.source.kind());
    match &guard.source {
        Source::Agents(a) => {
            source.insert("minRequests".into(), a.min_requests.into());
            let no_data = match a.no_data {
                spec::NoData::Ignore => "ignore",
                spec::NoData::Trip => "trip",
            };
            source.insert("noData".into(), no_data.into());
            source.insert("local".into(), a.local.into());
        }
        Source::Prometheus(p) => {
            source.insert("interval".into(), written(p.interval).into());
            source.insert("timeout".into(), written(p.timeout).into());
            source.insert(
                "tripAfterErrors".into(),
                p.trip_after_errors.unwrap_or(0).into(),
            );
        }
        Source::Probe(p) => {
            source.insert("method".into(), p.method.clone().into());
            let (low, high) = p.expect_status;
            let status = if low == high {
                low.into()
            } else {
                format!("{low}-{high}").into()
            };
            source.insert("expectStatus".into(), status);
            source.insert("timeout".into(), written(p.timeout).into());
            source.insert("interval".into(), written(p.interval).into());
            source.insert("failures".into(), p.failures.into());
        }
    }
}

/// A schedule as written, with a cron schedule's defaults filled in.
fn fill_schedule(s: &mut Map<String, Value>, schedule: &spec::Schedule) {
    let spec::Schedule::Cron(c) = schedule else {
        return;
    };
    s.insert("timeZone".into(), c.time_zone.name().into());
    s.insert("concurrencyPolicy".into(), c.concurrency.as_str().into());
    s.insert("historyLimit".into(), c.history_limit.into());
}

/// A duration as specs write it (`5m`, `250ms`).
fn written(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn object_at<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    match v {
        Value::Object(m) => object_at_map(m, key),
        _ => unreachable!("the caller made it an object"),
    }
}

fn object_at_map<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("made an object above")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARDED: &str = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {name: g}
spec:
  targets: {all: true}
  faults: [{route: api, type: down}]
  duration: 1m
  guards:
    - {name: errors, agents: {route: api, metric: errorRate}, above: 0.05, window: 10s}
    - {name: p99, prometheus: {url: \"http://prom:9090\", query: up, interval: 10s}, above: 1}
    - {name: health, probe: {url: \"http://app/healthz\", method: post}}
";

    #[test]
    fn guard_defaults_are_filled_in_and_read_back_the_same() {
        let exp = spec::validate(GUARDED, &spec::Caps::default()).unwrap();
        let json = canonical_json(GUARDED, &exp, Some(7));
        let v: Value = serde_json::from_str(&json).unwrap();
        let spec = &v["spec"];
        assert_eq!(
            spec["guards"][0],
            json!({
                "name": "errors",
                "agents": {
                    "route": "api", "metric": "errorRate",
                    "minRequests": 1, "noData": "ignore", "local": false,
                },
                "above": 0.05, "window": "10s", "for": "0s",
            })
        );
        assert_eq!(
            spec["guards"][1]["prometheus"],
            json!({
                "url": "http://prom:9090", "query": "up",
                "interval": "10s", "timeout": "5s", "tripAfterErrors": 3,
            })
        );
        assert_eq!(
            spec["guards"][2],
            json!({
                "name": "health",
                "probe": {
                    "url": "http://app/healthz", "method": "POST", "expectStatus": "200-399",
                    "timeout": "1s", "interval": "1s", "failures": 3,
                },
                "for": "0s",
            })
        );
        assert_eq!(spec["recovery"], json!({"stable": "5s", "timeout": "5m"}));
        assert_eq!(spec["requireTraffic"], false);

        let again = spec::Experiment::parse(&json).unwrap();
        assert_eq!(again.guards, exp.guards);
        assert_eq!(again.recovery, exp.recovery);
    }
}
