//! Label selectors with Kubernetes semantics: `matchLabels` (every pair must match) and
//! `matchExpressions` (`In`, `NotIn`, `Exists`, `DoesNotExist`), all ANDed. Used for an
//! experiment's targets and for the caps' allow-list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::document::{Fields, Node};
use super::error::{FieldPath, SpecError};

/// A validated label selector. An empty one selects every agent; a spec only gets one by
/// saying `all: true`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

/// An operator with its values; `In` and `NotIn` always have at least one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

impl Selector {
    /// The selector that matches every agent.
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn is_everything(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether an agent with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements().all(|r| r.matches(labels))
    }

    /// Whether every agent this selector matches is also matched by `outer`, judged from the
    /// two selectors alone: each requirement of `outer` must follow from one of ours.
    /// (`app=api` is within `app in (api,web)`; `tier=db` is not within `app=api`.)
    pub fn is_within(&self, outer: &Selector) -> bool {
        outer
            .requirements()
            .all(|r| self.requirements().any(|ours| ours.implies(&r)))
    }

    /// `matchLabels` as `In` requirements of one value, followed by `matchExpressions`.
    fn requirements(&self) -> impl Iterator<Item = Requirement> + '_ {
        self.match_labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::In(BTreeSet::from([v.clone()])),
            })
            .chain(self.match_expressions.iter().cloned())
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            // Kubernetes: NotIn also matches agents without the label.
            Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    /// Whether every label set matching `self` also matches `other`.
    fn implies(&self, other: &Requirement) -> bool {
        if self.key != other.key {
            return false;
        }
        use Operator::*;
        match (&self.operator, &other.operator) {
            (In(ours), In(theirs)) => ours.is_subset(theirs),
            (In(ours), NotIn(theirs)) => ours.is_disjoint(theirs),
            (In(_), Exists) => true,
            (NotIn(ours), NotIn(theirs)) => ours.is_superset(theirs),
            (DoesNotExist, NotIn(_) | DoesNotExist) => true,
            (Exists, Exists) => true,
            _ => false,
        }
    }
}

// === Display: kubectl's -l syntax ===

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_everything() {
            return f.write_str("(everything)");
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if !std::mem::take(&mut first) {
                f.write_str(",")?;
            }
            Ok::<_, fmt::Error>(())
        };
        for (k, v) in &self.match_labels {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        for r in &self.match_expressions {
            sep(f)?;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>().join(",");
        match &self.operator {
            Operator::In(v) => write!(f, "{} in ({})", self.key, list(v)),
            Operator::NotIn(v) => write!(f, "{} notin ({})", self.key, list(v)),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

// === parsing ===

/// Reads `{matchLabels, matchExpressions}` at `path`. The result may be empty; whether that
/// is allowed is the caller's decision.
pub(crate) fn parse(node: &Node, path: &FieldPath) -> Result<Selector, SpecError> {
    let fields = Fields::open(node, path, &["matchLabels", "matchExpressions"], &[])?;
    let mut selector = Selector::default();
    if let Some(labels) = fields.get("matchLabels") {
        selector.match_labels = parse_labels(labels, &fields.path("matchLabels"))?;
    }
    if let Some(exprs) = fields.get("matchExpressions") {
        let path = fields.path("matchExpressions");
        for (i, expr) in exprs.seq(&path)?.iter().enumerate() {
            selector
                .match_expressions
                .push(parse_requirement(expr, &path.index(i))?);
        }
    }
    Ok(selector)
}

/// Reads a `{key: value}` mapping of labels, checking Kubernetes' syntax for both.
pub(crate) fn parse_labels(
    node: &Node,
    path: &FieldPath,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut labels = BTreeMap::new();
    for e in node.entries(path)? {
        let at = path.key(&e.key);
        check_key(&e.key).map_err(|m| SpecError::invalid(at.clone(), e.value.key_loc, m))?;
        let v = e.value.str(&at)?;
        check_value(v).map_err(|m| SpecError::invalid(at.clone(), e.value.field_loc(), m))?;
        labels.insert(e.key.clone(), v.to_owned());
    }
    Ok(labels)
}

fn parse_requirement(node: &Node, path: &FieldPath) -> Result<Requirement, SpecError> {
    let fields = Fields::open(node, path, &["key", "operator", "values"], &[])?;
    let key_node = fields.required("key")?;
    let key = key_node.str(&fields.path("key"))?;
    check_key(key).map_err(|m| SpecError::invalid(fields.path("key"), key_node.field_loc(), m))?;

    let op_path = fields.path("operator");
    let op_node = fields.required("operator")?;
    let op = op_node.str(&op_path)?;

    let values_path = fields.path("values");
    let mut values = BTreeSet::new();
    if let Some(list) = fields.get("values") {
        for (i, v) in list.seq(&values_path)?.iter().enumerate() {
            let at = values_path.index(i);
            let s = v.str(&at)?;
            check_value(s).map_err(|m| SpecError::invalid(at.clone(), v.field_loc(), m))?;
            values.insert(s.to_owned());
        }
    }
    let operator = match op {
        "In" | "NotIn" => {
            if values.is_empty() {
                let loc = fields
                    .get("values")
                    .and_then(Node::field_loc)
                    .or_else(|| op_node.field_loc());
                return Err(SpecError::invalid(
                    values_path,
                    loc,
                    format!("operator {op} needs at least one value"),
                ));
            }
            if op == "In" {
                Operator::In(values)
            } else {
                Operator::NotIn(values)
            }
        }
        "Exists" | "DoesNotExist" => {
            if let Some(list) = fields.get("values").filter(|_| !values.is_empty()) {
                return Err(SpecError::invalid(
                    values_path,
                    list.field_loc(),
                    format!("operator {op} takes no values"),
                ));
            }
            if op == "Exists" {
                Operator::Exists
            } else {
                Operator::DoesNotExist
            }
        }
        other => {
            return Err(SpecError::invalid(
                op_path,
                op_node.field_loc(),
                format!("unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"),
            ));
        }
    };
    Ok(Requirement {
        key: key.to_owned(),
        operator,
    })
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters, alphanumeric at both ends with `-`, `_`, `.` between.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "label key {key:?}: the prefix must be a DNS subdomain (lowercase, like example.com)"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("label key {key:?}: the name part is empty"));
    }
    check_name_part(name).map_err(|why| format!("label key {key:?}: {why}"))
}

/// A label value: empty, or at most 63 characters, alphanumeric at both ends with `-`,
/// `_`, `.` between.
pub(crate) fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value).map_err(|why| format!("label value {value:?}: {why}"))
}

fn check_name_part(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("must be at most 63 characters");
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err("must start and end with a letter or digit");
    }
    if !s
        .chars()
        .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
    {
        return Err("may only contain letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::document::Document;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(yaml: &str) -> Result<Selector, SpecError> {
        let doc = Document::parse(yaml).unwrap();
        parse(&doc.root, &FieldPath::keys(["selector"]))
    }

    #[test]
    fn kubernetes_matching_semantics() {
        let s = sel(concat!(
            "matchLabels: {app: api}\n",
            "matchExpressions:\n",
            "  - {key: track, operator: In, values: [canary, beta]}\n",
            "  - {key: zone, operator: NotIn, values: [eu-1]}\n",
            "  - {key: tier, operator: Exists}\n",
            "  - {key: legacy, operator: DoesNotExist}\n",
        ))
        .unwrap();
        let base = [("app", "api"), ("track", "canary"), ("tier", "1")];
        assert!(s.matches(&labels(&base)));
        // NotIn matches when the label is absent, and refuses a listed value.
        assert!(!s.matches(&labels(&[base[0], base[1], base[2], ("zone", "eu-1")])));
        assert!(s.matches(&labels(&[base[0], base[1], base[2], ("zone", "us-1")])));
        assert!(!s.matches(&labels(&[base[0], base[1]])));
        assert!(!s.matches(&labels(&[base[0], base[1], base[2], ("legacy", "")])));
        assert!(!s.matches(&labels(&[("app", "web"), base[1], base[2]])));
        assert_eq!(
            s.to_string(),
            "app=api,track in (beta,canary),zone notin (eu-1),tier,!legacy"
        );
        assert!(Selector::everything().matches(&labels(&[])));
    }

    #[test]
    fn within_is_judged_requirement_by_requirement() {
        let outer = sel("matchLabels: {env: staging}").unwrap();
        assert!(
            sel("matchLabels: {env: staging, app: api}")
                .unwrap()
                .is_within(&outer)
        );
        assert!(!sel("matchLabels: {app: api}").unwrap().is_within(&outer));
        assert!(!Selector::everything().is_within(&outer));
        assert!(Selector::everything().is_within(&Selector::everything()));

        let outer =
            sel("matchExpressions: [{key: track, operator: In, values: [canary, beta]}]").unwrap();
        assert!(
            sel("matchLabels: {track: canary}")
                .unwrap()
                .is_within(&outer)
        );
        assert!(
            !sel("matchLabels: {track: stable}")
                .unwrap()
                .is_within(&outer)
        );

        let outer = sel("matchExpressions: [{key: env, operator: NotIn, values: [prod]}]").unwrap();
        assert!(sel("matchLabels: {env: dev}").unwrap().is_within(&outer));
        assert!(
            sel("matchExpressions: [{key: env, operator: DoesNotExist}]")
                .unwrap()
                .is_within(&outer)
        );
        assert!(!sel("matchLabels: {app: x}").unwrap().is_within(&outer));
    }

    #[test]
    fn bad_requirements_name_their_field() {
        let e = sel("matchExpressions:\n  - {key: a, operator: Like, values: [x]}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "selector.matchExpressions[0].operator");
        assert_eq!(e.location.unwrap().line, 2);

        let e = sel("matchExpressions:\n  - key: a\n    operator: In\n").unwrap_err();
        assert_eq!(e.path.to_string(), "selector.matchExpressions[0].values");
        assert_eq!(e.message, "operator In needs at least one value");
        assert_eq!(e.location.unwrap().line, 3);

        let e =
            sel("matchExpressions:\n  - {key: a, operator: Exists, values: [x]}\n").unwrap_err();
        assert_eq!(e.message, "operator Exists takes no values");

        let e = sel("matchLabels: {version: 2}\n").unwrap_err();
        assert_eq!(e.path.to_string(), "selector.matchLabels.version");

        let e = sel("matchLabels: {\"-bad\": x}\n").unwrap_err();
        assert!(e.message.contains("start and end"), "{e}");
    }

    #[test]
    fn label_syntax() {
        assert!(check_key("app.kubernetes.io/name").is_ok());
        assert!(check_key("Example.com/x").is_err());
        assert!(check_key("a/").is_err());
        assert!(check_value("").is_ok());
        assert!(check_value(&"x".repeat(64)).is_err());
        assert!(check_value("a b").is_err());
    }
}
