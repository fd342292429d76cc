//! A run made from its template: the name (`TEMPLATE-YYYYMMDDHHMM`) and the spec (the
//! template's canonical JSON without `schedule`, under the run's name).

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::spec::{self, Caps, Schedule};
use crate::store;

/// The longest an experiment name may be (a DNS label).
const MAX_NAME: usize = 63;
/// `-YYYYMMDDHHMM`.
const SUFFIX_LEN: usize = 13;

/// The schedule of a stored experiment's spec, if it has a valid one.
pub(super) fn schedule_of(e: &store::Experiment) -> Option<Schedule> {
    spec::Experiment::parse(&e.spec_json).ok()?.schedule
}

/// `TEMPLATE-YYYYMMDDHHMM`, the fire time in UTC; the template part is cut (and any `-` it
/// then ends with dropped) so the whole stays within 63 characters.
pub(super) fn run_name(template: &str, fire_at: SystemTime) -> String {
    let stamp = DateTime::<Utc>::from(fire_at).format("%Y%m%d%H%M");
    let mut base = &template[..template.len().min(MAX_NAME - SUFFIX_LEN)];
    base = base.trim_end_matches('-');
    format!("{base}-{stamp}")
}

/// The run's spec: the template's without `schedule`, named `name`, checked against `caps`
/// like a spec sent to Create. An error says why the run cannot be made.
pub(super) fn run_spec(
    template: &store::Experiment,
    name: &str,
    caps: &Caps,
) -> Result<String, String> {
    let mut doc: Value = serde_json::from_str(&template.spec_json)
        .map_err(|e| format!("the template's stored spec is not JSON: {e}"))?;
    if let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("schedule");
    }
    match doc.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(metadata) => metadata.insert("name".into(), name.into()),
        None => return Err("the template's stored spec has no metadata".into()),
    };
    let text = doc.to_string();
    spec::validate(&text, caps).map_err(|e| format!("the run's spec is not valid: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn run_names_are_dns_labels_stamped_with_the_fire_minute() {
        // 2026-03-02T09:05:42Z
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_442_342);
        assert_eq!(run_name("nightly", at), "nightly-202603020905");
        let long = format!("{}-x", "a".repeat(49));
        let name = run_name(&long, at);
        assert_eq!(name, format!("{}-202603020905", "a".repeat(49)));
        assert_eq!(run_name(&"b".repeat(63), at).len(), 63);
        assert!(
            crate::spec::Experiment::parse(&format!(
                "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\n\
             spec: {{targets: {{all: true}}, faults: [{{route: r, type: down}}], duration: 1s}}\n"
            ))
            .is_ok()
        );
    }
}
