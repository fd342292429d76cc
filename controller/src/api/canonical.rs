//! The canonical JSON of a validated spec, as `Experiment.spec` holds it: the document as
//! written, with the values the controller decided filled in (the duration as a string such as
//! `5m`, the targets' mode and `includeNewAgents`, `allowOverlap`, and the seed, when known).
//!
//! The faults stay as written: they already passed the agent's own rule parser, and the agent
//! reads that shape.

use serde_json::{Map, Value, json};

use crate::spec::{self, Mode};

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
    spec.insert(
        "duration".into(),
        humantime::format_duration(exp.duration).to_string().into(),
    );
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
    doc.to_string()
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
