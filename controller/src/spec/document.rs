//! The document as written: a tree of mappings, lists and scalars in which every node knows
//! where it is in the text. Specs are read in two steps: text -> [`Node`] tree here (YAML, or
//! JSON, which is YAML's flow syntax), then tree -> domain types in the sibling modules. The
//! tree keeps locations through that second step, so a semantic error (an unknown fault kind,
//! a percent of 101, a cap exceeded) points at its line and column like a syntax error does.
//!
//! serde-saphyr reports locations through `Spanned<T>`; its `Spanned` loses them behind
//! `#[serde(flatten)]` and internally tagged enums, so the tree has its own visitor and no
//! derive, and every key and value of every mapping is read as a `Spanned`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use super::error::{ErrorKind, FieldPath, Location, Segment, SpecError};

/// One value of the document with where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    /// Where the value starts (for a block mapping: its first key).
    pub(crate) loc: Option<Location>,
    /// For a mapping's value: where its key starts, the line a reader looks for.
    pub(crate) key_loc: Option<Location>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: Node,
}

/// A parsed spec document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Document {
    pub(crate) root: Node,
}

impl Document {
    /// Reads YAML or JSON (a document starting with `{` or `[`).
    pub(crate) fn parse(text: &str) -> Result<Document, SpecError> {
        let start = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
        if start.starts_with('{') || start.starts_with('[') {
            // serde_json knows JSON's own syntax rules (and says so in its errors); serde-saphyr
            // then reads the same text again for locations. Should it refuse valid JSON for a
            // YAML reason, the tree is built from serde_json's value, without locations; a
            // duplicate key, which serde_json lets pass, stays an error.
            let value: serde_json::Value = serde_json::from_str(text).map_err(json_syntax_error)?;
            return match yaml_tree(text) {
                Ok(root) => Ok(Document { root }),
                Err((e, YamlError::DuplicateKey)) => Err(e),
                Err((_, YamlError::Other)) => Ok(Document {
                    root: Node::from_json(value),
                }),
            };
        }
        yaml_tree(text)
            .map(|root| Document { root })
            .map_err(|(e, _)| e)
    }

    /// Where `path` is in the document: the value if it is there (for a mapping or list, the
    /// key naming it), otherwise the key of the deepest field of the path that is there.
    pub(crate) fn locate(&self, path: &FieldPath) -> Option<Location> {
        self.root.locate(path.segments())
    }
}

fn location(l: serde_saphyr::Location) -> Option<Location> {
    (l.line() > 0).then(|| Location {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        column: u32::try_from(l.column()).unwrap_or(u32::MAX),
    })
}

/// What kind of YAML error `yaml_tree` met, for JSON's fallback.
enum YamlError {
    DuplicateKey,
    Other,
}

fn yaml_tree(text: &str) -> Result<Node, (SpecError, YamlError)> {
    // YAML 1.2 booleans only: `on`, `no`, `y` stay strings (`n: 1` is not `false: 1`).
    let options = serde_saphyr::options! { strict_booleans: true };
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let e = e.without_snippet();
        let message = serde_saphyr::UserMessageFormatter.format_message(e);
        let error = SpecError::new(
            ErrorKind::Syntax,
            FieldPath::root(),
            e.location().and_then(location),
            format!("not valid YAML: {message}"),
        );
        match e {
            serde_saphyr::Error::DuplicateMappingKey { .. } => (error, YamlError::DuplicateKey),
            _ => (error, YamlError::Other),
        }
    })?;
    Ok(Node::from_raw(raw, None))
}

fn json_syntax_error(e: serde_json::Error) -> SpecError {
    // serde_json appends " at line L column C"; the location has its own fields.
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    let location = (e.line() > 0).then(|| Location {
        line: u32::try_from(e.line()).unwrap_or(u32::MAX),
        column: u32::try_from(e.column()).unwrap_or(u32::MAX),
    });
    SpecError::new(
        ErrorKind::Syntax,
        FieldPath::root(),
        location,
        format!("not valid JSON: {message}"),
    )
}

// === impl Node ===

impl Node {
    fn from_raw(raw: Spanned<Raw>, key_loc: Option<Location>) -> Node {
        let value = match raw.value {
            Raw::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Entry {
                        key: k.value,
                        value: Node::from_raw(v, location(k.referenced)),
                    })
                    .collect(),
            ),
            Raw::Seq(items) => {
                Value::Seq(items.into_iter().map(|v| Node::from_raw(v, None)).collect())
            }
            Raw::Scalar(v) => v,
        };
        Node {
            value,
            loc: location(raw.referenced),
            key_loc,
        }
    }

    fn from_json(v: serde_json::Value) -> Node {
        use serde_json::Value as J;
        let value = match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Value::UInt(u),
                (None, Some(i)) => Value::Int(i),
                _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s),
            J::Array(a) => Value::Seq(a.into_iter().map(Node::from_json).collect()),
            J::Object(o) => Value::Map(
                o.into_iter()
                    .map(|(key, v)| Entry {
                        key,
                        value: Node::from_json(v),
                    })
                    .collect(),
            ),
        };
        Node {
            value,
            loc: None,
            key_loc: None,
        }
    }

    /// The value as JSON, for the agent's parsers (which read `serde_json::Value`).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Str(s) => J::String(s.clone()),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::Null => J::Null,
        }
    }

    /// The location a reader looks for when this node is named in an error: a scalar's own,
    /// or the key that introduces a mapping or list.
    pub(crate) fn field_loc(&self) -> Option<Location> {
        match self.value {
            Value::Map(_) | Value::Seq(_) => self.key_loc.or(self.loc),
            _ => self.loc.or(self.key_loc),
        }
    }

    /// See [`Document::locate`]; `path` is relative to this node.
    pub(crate) fn locate(&self, path: &[Segment]) -> Option<Location> {
        let Some((first, rest)) = path.split_first() else {
            return self.field_loc();
        };
        let child = match (first, &self.value) {
            (Segment::Key(k), Value::Map(entries)) => {
                entries.iter().find(|e| &e.key == k).map(|e| &e.value)
            }
            (Segment::Index(i), Value::Seq(items)) => items.get(*i),
            _ => None,
        };
        match child {
            Some(c) => c.locate(rest),
            None => self.key_loc.or(self.loc),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// What the value is, for "must be X, got Y" messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Map(_) => "a mapping".into(),
            Value::Seq(_) => "a list".into(),
            Value::Str(s) => format!("the string {s:?}"),
            Value::Int(i) => format!("the number {i}"),
            Value::UInt(u) => format!("the number {u}"),
            Value::Float(f) => format!("the number {f}"),
            Value::Bool(b) => format!("{b}"),
            Value::Null => "null".into(),
        }
    }

    fn expected(&self, path: &FieldPath, what: &str) -> SpecError {
        let hint = match self.value {
            Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Bool(_)
                if what == "a string" =>
            {
                " (quote it to make it one)"
            }
            _ => "",
        };
        SpecError::invalid(
            path.clone(),
            self.field_loc(),
            format!("must be {what}, got {}{hint}", self.describe()),
        )
    }

    pub(crate) fn str(&self, path: &FieldPath) -> Result<&str, SpecError> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.expected(path, "a string")),
        }
    }

    pub(crate) fn bool(&self, path: &FieldPath) -> Result<bool, SpecError> {
        match self.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.expected(path, "true or false")),
        }
    }

    pub(crate) fn u64(&self, path: &FieldPath) -> Result<u64, SpecError> {
        match self.value {
            Value::UInt(u) => Ok(u),
            Value::Int(i) if i >= 0 => Ok(i as u64),
            _ => Err(self.expected(path, "a non-negative integer")),
        }
    }

    /// An integer or a float, finite: thresholds and quantiles.
    pub(crate) fn number(&self, path: &FieldPath) -> Result<f64, SpecError> {
        let n = match self.value {
            Value::Int(i) => i as f64,
            Value::UInt(u) => u as f64,
            Value::Float(f) => f,
            _ => return Err(self.expected(path, "a number")),
        };
        if !n.is_finite() {
            return Err(self.expected(path, "a finite number"));
        }
        Ok(n)
    }

    /// A duration string such as `250ms` or `5m` (humantime's syntax); zero is allowed.
    pub(crate) fn duration(&self, path: &FieldPath) -> Result<Duration, SpecError> {
        let bad = |msg: String| SpecError::invalid(path.clone(), self.field_loc(), msg);
        let Value::Str(s) = &self.value else {
            return Err(bad(format!(
                "must be a duration such as \"250ms\" or \"5m\", got {}",
                self.describe()
            )));
        };
        humantime::parse_duration(s.trim()).map_err(|e| {
            bad(format!(
                "{s:?} is not a duration such as \"250ms\" or \"5m\" ({e})"
            ))
        })
    }

    /// A [`Node::duration`] longer than zero.
    pub(crate) fn positive_duration(&self, path: &FieldPath) -> Result<Duration, SpecError> {
        let d = self.duration(path)?;
        if d.is_zero() {
            return Err(SpecError::invalid(
                path.clone(),
                self.field_loc(),
                "must be longer than zero",
            ));
        }
        Ok(d)
    }

    pub(crate) fn seq(&self, path: &FieldPath) -> Result<&[Node], SpecError> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.expected(path, "a list")),
        }
    }

    pub(crate) fn entries(&self, path: &FieldPath) -> Result<&[Entry], SpecError> {
        match &self.value {
            Value::Map(entries) => Ok(entries),
            _ => Err(self.expected(path, "a mapping")),
        }
    }
}

// === impl Fields ===

/// A mapping being read into a struct: its keys checked against the known ones, its fields
/// taken by name, errors named and located.
pub(crate) struct Fields<'a> {
    node: &'a Node,
    entries: &'a [Entry],
    path: FieldPath,
}

/// A field reserved for a later version, with the reason to show.
pub(crate) type Later<'a> = (&'a str, &'a str);

impl<'a> Fields<'a> {
    /// Opens `node` as a mapping whose keys are all in `known`; a key in `later` is refused as
    /// not supported yet, any other as unknown. The first offending key, in document order,
    /// is the error.
    pub(crate) fn open(
        node: &'a Node,
        path: &FieldPath,
        known: &[&str],
        later: &[Later<'_>],
    ) -> Result<Fields<'a>, SpecError> {
        let entries = node.entries(path)?;
        for e in entries {
            if known.contains(&e.key.as_str()) {
                continue;
            }
            let at = path.key(&e.key);
            let loc = e.value.key_loc.or(e.value.loc);
            if let Some((_, why)) = later.iter().find(|(k, _)| *k == e.key) {
                return Err(SpecError::new(
                    ErrorKind::NotSupported,
                    at,
                    loc,
                    format!("not supported yet: {why}"),
                ));
            }
            return Err(SpecError::invalid(
                at,
                loc,
                format!("unknown field (expected one of: {})", known.join(", ")),
            ));
        }
        Ok(Fields {
            node,
            entries,
            path: path.clone(),
        })
    }

    /// The field, if present and not null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
            .filter(|n| !n.is_null())
    }

    pub(crate) fn required(&self, key: &str) -> Result<&'a Node, SpecError> {
        self.get(key).ok_or_else(|| self.missing(key))
    }

    /// "missing required field", located at the mapping's own key (the line a reader scans).
    pub(crate) fn missing(&self, key: &str) -> SpecError {
        SpecError::invalid(
            self.path.key(key),
            self.node.key_loc.or(self.node.loc),
            "missing required field",
        )
    }

    pub(crate) fn path(&self, key: &str) -> FieldPath {
        self.path.key(key)
    }
}

// === the serde side ===

/// The tree as serde-saphyr hands it over: every key and value `Spanned`.
enum Raw {
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
    Seq(Vec<Spanned<Raw>>),
    Scalar(Value),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::UInt(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Float(v as f64)))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Float(v as f64)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Float(v)))
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Str(v.to_string())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Str(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Str(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Str(
            String::from_utf8_lossy(v).into_owned(),
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value()?;
            let key = Spanned::new(key.value.0, key.referenced, key.defined);
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

/// A mapping key as written (`1: x` has the key `"1"`).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
        }
        // As a string, not inferred: the key's text is what a field name is compared with.
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Option<Location> {
        Some(Location { line, column })
    }

    #[test]
    fn yaml_nodes_carry_value_and_key_locations() {
        let doc = Document::parse("a:\n  b: 1\n  c: [x, {d: true}]\n").unwrap();
        let Value::Map(top) = &doc.root.value else {
            panic!("{doc:?}")
        };
        assert_eq!(top[0].key, "a");
        assert_eq!(top[0].value.key_loc, at(1, 1));
        assert_eq!(doc.locate(&FieldPath::keys(["a", "b"])), at(2, 6));
        assert_eq!(doc.locate(&FieldPath::keys(["a", "c"])), at(3, 3));
        assert_eq!(
            doc.locate(&FieldPath::keys(["a", "c"]).index(1).key("d")),
            at(3, 14)
        );
        // Missing fields locate at the deepest field that is there.
        assert_eq!(doc.locate(&FieldPath::keys(["a", "zzz", "q"])), at(1, 1));
    }

    #[test]
    fn json_is_read_with_locations() {
        let doc = Document::parse("{\n\t\"a\": {\"b\": [1, -2, 2.5, null, \"s\"]}\n}\n").unwrap();
        assert_eq!(doc.locate(&FieldPath::keys(["a", "b"]).index(1)), at(2, 17));
        assert_eq!(
            doc.root.to_json(),
            serde_json::json!({"a": {"b": [1, -2, 2.5, null, "s"]}})
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = Document::parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert_eq!(e.location, at(3, 2));
        assert!(e.message.starts_with("not valid YAML: "), "{e}");

        let e = Document::parse("{\"a\": 1,}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert_eq!(e.location, at(1, 9));
        assert!(
            e.message.starts_with("not valid JSON: trailing comma"),
            "{e}"
        );
    }

    #[test]
    fn scalars_follow_yaml_1_2() {
        let doc = Document::parse("n: no\ny: on\n1: true\n").unwrap();
        assert_eq!(
            doc.root.to_json(),
            serde_json::json!({"n": "no", "y": "on", "1": true})
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = Document::parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.location, at(2, 1));
        assert!(e.message.contains("duplicate"), "{e}");
        let e = Document::parse("{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert_eq!(e.location, at(2, 2));
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn fields_refuse_unknown_and_later_keys_in_document_order() {
        let doc = Document::parse("x: 1\nguards: []\nzz: 2\n").unwrap();
        let e = Fields::open(
            &doc.root,
            &FieldPath::root(),
            &["x"],
            &[("guards", "later")],
        )
        .err()
        .unwrap();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        assert_eq!(e.path.to_string(), "guards");
        assert_eq!(e.location, at(2, 1));

        let e = Fields::open(&doc.root, &FieldPath::root(), &["x", "guards"], &[])
            .err()
            .unwrap();
        assert_eq!(e.path.to_string(), "zz");
        assert_eq!(e.message, "unknown field (expected one of: x, guards)");
    }

    #[test]
    fn type_errors_say_what_was_found() {
        let doc = Document::parse("n: 5\n").unwrap();
        let f = Fields::open(&doc.root, &FieldPath::root(), &["n"], &[]).unwrap();
        let e = f.required("n").unwrap().str(&f.path("n")).unwrap_err();
        assert_eq!(
            e.message,
            "must be a string, got the number 5 (quote it to make it one)"
        );
        assert_eq!(e.location, at(1, 4));
        let e = f.required("missing").unwrap_err();
        assert_eq!(e.message, "missing required field");
    }
}
