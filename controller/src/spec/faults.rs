//! `spec.faults`: each entry is a rule in the agent's native shape (`name`, `type`, `stream`,
//! `percentage`, `match`, `cohort`, `attributes`) plus the `route` it goes on. Entries are
//! converted by the agent's own parser ([`RuleInput::into_fault`]), so kinds, attribute names,
//! units and messages are those of the agent's API; its error field (`attributes.latency`) is
//! mapped onto the spec (`spec.faults[1].attributes.latency`) and located in the document.

use faultline_agent::admin::error::ApiError;
use faultline_agent::admin::rules::RuleInput;
use faultline_agent::fault::{Fault, Origin};

use super::document::{Fields, Node};
use super::error::{FieldPath, SpecError};

/// The fields of an entry: `route`, then the agent's rule shape.
const FIELDS: [&str; 8] = [
    "route",
    "name",
    "type",
    "stream",
    "percentage",
    "match",
    "cohort",
    "attributes",
];

/// Fields of the agent's other surfaces that an experiment's fault does not take, with why.
const REFUSED: [(&str, &str); 3] = [
    (
        "toxicity",
        "an experiment's fault gives its share of connections or requests as percentage (0..100)",
    ),
    (
        "expires_in",
        "an experiment's fault lasts as long as the experiment (spec.duration)",
    ),
    (
        "expires_at",
        "an experiment's fault lasts as long as the experiment (spec.duration)",
    ),
];

/// Reads `spec.faults` into `(route, fault)` pairs issued on behalf of `experiment`.
pub(crate) fn parse(
    node: &Node,
    path: &FieldPath,
    experiment: &str,
) -> Result<Vec<(String, Fault)>, SpecError> {
    let items = node.seq(path)?;
    if items.is_empty() {
        return Err(SpecError::invalid(
            path.clone(),
            node.field_loc(),
            "an experiment needs at least one fault",
        ));
    }
    let mut out: Vec<(String, Fault)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = path.index(i);
        let (route, fault, fields) = parse_one(item, &at, experiment)?;
        // The agent keys a route's faults by name; unnamed faults are named KIND_STREAM.
        if let Some(j) = out
            .iter()
            .position(|(r, f)| *r == route && f.name == fault.name)
        {
            let (field, loc) = match fields.get("name") {
                Some(n) => (at.key("name"), n.field_loc()),
                None => (at.clone(), item.field_loc()),
            };
            return Err(SpecError::invalid(
                field,
                loc,
                format!(
                    "duplicate fault name {:?} on route {route:?} (also {}); each fault on a \
                     route needs its own name",
                    fault.name,
                    path.index(j)
                ),
            ));
        }
        out.push((route, fault));
    }
    Ok(out)
}

fn parse_one<'a>(
    node: &'a Node,
    path: &FieldPath,
    experiment: &str,
) -> Result<(String, Fault, Fields<'a>), SpecError> {
    let f = Fields::open(node, path, &FIELDS, &[]).map_err(|mut e| {
        let refused = REFUSED
            .iter()
            .find(|(k, _)| e.path == path.key(k))
            .map(|(_, why)| why);
        if let Some(why) = refused {
            e.message = format!("not a field of an experiment's fault: {why}");
        }
        e
    })?;

    let route_node = f.required("route")?;
    let route = route_node.str(&f.path("route"))?;
    if route.is_empty() {
        return Err(SpecError::invalid(
            f.path("route"),
            route_node.field_loc(),
            "must not be empty",
        ));
    }
    // The rule's string fields are typed here, so the agent's parser only sees what it can
    // take and a wrong type is located like any other error.
    for key in ["name", "type", "stream"] {
        if let Some(n) = f.get(key) {
            n.str(&f.path(key))?;
        }
    }

    let fault = to_fault(rule_of(node), node, path, experiment)?;
    Ok((route.to_owned(), fault, f))
}

/// An entry of `spec.faults` as the agent's rule JSON (every field but `route`).
pub(crate) fn rule_of(entry: &Node) -> serde_json::Map<String, serde_json::Value> {
    match &entry.value {
        super::document::Value::Map(entries) => entries
            .iter()
            .filter(|e| e.key != "route" && !e.value.is_null())
            .map(|e| (e.key.clone(), e.value.to_json()))
            .collect(),
        _ => serde_json::Map::new(),
    }
}

/// A rule through the agent's own parser, issued on behalf of `experiment`; errors are
/// located under `path` in `node`.
pub(crate) fn to_fault(
    rule: serde_json::Map<String, serde_json::Value>,
    node: &Node,
    path: &FieldPath,
    experiment: &str,
) -> Result<Fault, SpecError> {
    let input: RuleInput = serde_json::from_value(serde_json::Value::Object(rule))
        .map_err(|e| SpecError::invalid(path.clone(), node.field_loc(), e.to_string()))?;
    let mut fault = input
        .into_fault()
        .map_err(|e| from_agent_error(e, node, path))?;
    fault.origin = Origin::Controller {
        experiment: experiment.to_owned(),
    };
    Ok(fault)
}

/// Maps the agent's error onto the spec: its field becomes a path under the entry, located at
/// the deepest part of it the document has.
fn from_agent_error(e: ApiError, entry: &Node, entry_path: &FieldPath) -> SpecError {
    let Some(field) = e.field else {
        return SpecError::invalid(entry_path.clone(), entry.field_loc(), e.message);
    };
    // `ApiError::bad_request` prefixes its message with "bad request body: FIELD: ".
    let prefix = format!("bad request body: {field}: ");
    let message = match e.message.strip_prefix(&prefix) {
        Some(m) => m.to_owned(),
        None => e.message,
    };
    let relative = FieldPath::root().join_api_field(&field);
    SpecError::invalid(
        entry_path.join_api_field(&field),
        entry.locate(relative.segments()),
        message,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faultline_agent::fault::{Direction, FaultKind, KindTag};

    use super::*;
    use crate::spec::document::Document;

    fn faults(yaml: &str) -> Result<Vec<(String, Fault)>, SpecError> {
        let doc = Document::parse(yaml).unwrap();
        parse(&doc.root, &FieldPath::keys(["spec", "faults"]), "exp")
    }

    #[test]
    fn entries_convert_through_the_agents_rule_parser() {
        let f = faults(concat!(
            "- route: redis\n",
            "  type: latency\n",
            "  attributes: {latency: 250, jitter: 10}\n",
            "- route: api\n",
            "  name: outage\n",
            "  type: http_abort\n",
            "  percentage: 20\n",
            "  match: {path: {prefix: /v1/}}\n",
            "  attributes: {status: 503}\n",
        ))
        .unwrap();
        assert_eq!(f.len(), 2);
        let (route, latency) = &f[0];
        assert_eq!(route, "redis");
        assert_eq!(latency.name, "latency_both");
        assert_eq!(latency.direction, Direction::Both);
        let FaultKind::Latency(l) = &latency.kind else {
            panic!("{latency:?}")
        };
        assert_eq!(l.latency, Duration::from_millis(250));
        assert_eq!(
            latency.origin,
            Origin::Controller {
                experiment: "exp".into()
            }
        );
        let (route, abort) = &f[1];
        assert_eq!(route, "api");
        assert_eq!(abort.kind.tag(), KindTag::HttpAbort);
        assert!((abort.toxicity.get() - 0.2).abs() < 1e-9);
        assert!(abort.matcher.is_some());
    }

    #[test]
    fn agent_errors_become_spec_paths_with_lines() {
        let e =
            faults("- route: r\n  type: latency\n  attributes:\n    latency: -5\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[0].attributes.latency");
        assert_eq!(e.message, "must be a non-negative integer, got -5");
        assert_eq!(e.location.map(|l| (l.line, l.column)), Some((4, 14)));

        let e = faults("- route: r\n  type: http_abort\n  attributes: {}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[0].attributes.status");
        assert_eq!(e.message, "missing required field");
        assert_eq!(e.location.unwrap().line, 3);

        let e = faults("- route: r\n  type: teleport\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[0].type");
        assert!(
            e.message.starts_with("invalid toxic type: \"teleport\""),
            "{e}"
        );
        assert_eq!(e.location.unwrap().line, 2);
    }

    #[test]
    fn match_destination_is_validated_with_its_line() {
        let f = faults(concat!(
            "- route: egress\n",
            "  type: http_abort\n",
            "  match:\n",
            "    destination: {destinations: [10.0.0.0/8, 192.0.2.7], ports: [6379]}\n",
            "  attributes: {status: 503}\n",
        ))
        .unwrap();
        let d = f[0]
            .1
            .matcher
            .as_ref()
            .unwrap()
            .destination
            .clone()
            .unwrap();
        assert_eq!(d.ports, [6379]);
        assert!(d.matches("192.0.2.7:6379".parse().unwrap()));
        assert!(!d.matches("192.0.2.8:6379".parse().unwrap()));

        let e = faults(concat!(
            "- route: egress\n",
            "  type: http_abort\n",
            "  match:\n",
            "    destination:\n",
            "      destinations: [10.0.0.0/8, 10.0.0.300]\n",
            "  attributes: {status: 503}\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.path.to_string(),
            "spec.faults[0].match.destination.destinations[1]"
        );
        assert_eq!(e.message, "\"10.0.0.300\" is not an address or CIDR");
        assert_eq!(e.location.map(|l| l.line), Some(5));

        let e = faults(concat!(
            "- route: egress\n",
            "  type: http_abort\n",
            "  match:\n",
            "    destination:\n",
            "      ports: [80, 70000]\n",
            "  attributes: {status: 503}\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.path.to_string(),
            "spec.faults[0].match.destination.ports[1]"
        );
        assert_eq!(e.location.map(|l| l.line), Some(5));
    }

    #[test]
    fn route_is_required_and_names_are_unique_per_route() {
        let e = faults("- type: down\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[0].route");
        assert_eq!(e.message, "missing required field");

        let e = faults("- {route: a, type: down}\n- {route: a, type: down}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[1]");
        assert!(
            e.message.contains("duplicate fault name \"down_both\""),
            "{e}"
        );
        assert_eq!(e.location.unwrap().line, 2);

        // The same name on two routes is two faults.
        assert_eq!(
            faults("- {route: a, type: down}\n- {route: b, type: down}\n")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn fields_of_other_surfaces_are_explained() {
        let e = faults("- {route: a, type: down, toxicity: 0.5}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.faults[0].toxicity");
        assert!(e.message.contains("percentage (0..100)"), "{e}");
        let e = faults("- {route: a, type: down, expires_in: 5s}\n").unwrap_err();
        assert!(e.message.contains("spec.duration"), "{e}");
        let e = faults("- {route: a, type: down, colour: red}\n").unwrap_err();
        assert!(e.message.starts_with("unknown field"), "{e}");
    }
}
