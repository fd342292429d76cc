//! What goes wrong in a spec: the field at fault (a [`FieldPath`] such as
//! `spec.faults[1].attributes.latency`), where it is in the document ([`Location`]), and why.

use std::fmt;

/// A position in the spec's text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

/// One step of a [`FieldPath`]: a mapping key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// The path of a field from the document's root, shown as `spec.faults[1].route`; keys that
/// are not plain words are quoted: `metadata.labels["app.kubernetes.io/name"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The document's root (shown as an empty string).
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// A path of keys, e.g. `FieldPath::keys(["spec", "duration"])`.
    pub fn keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        FieldPath(
            keys.into_iter()
                .map(|k| Segment::Key(k.to_owned()))
                .collect(),
        )
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a field named the way the agent's API names them (`match.headers[0].name`,
    /// `attributes.cidrs[1]`): dot-separated keys, each optionally followed by `[N]`.
    pub(crate) fn join_api_field(&self, field: &str) -> Self {
        let mut p = self.clone();
        for part in field.split('.').filter(|s| !s.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                p.0.push(Segment::Key(key.to_owned()));
            }
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(end) = inner.find(']') else { break };
                match inner[..end].parse() {
                    Ok(i) => p.0.push(Segment::Index(i)),
                    Err(_) => p.0.push(Segment::Key(inner[..end].to_owned())),
                }
                rest = &inner[end + 1..];
            }
        }
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) if is_word(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

fn is_word(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The server-side limits a spec can exceed, by the names they have in the caps file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cap {
    MaxDuration,
    MaxPercentOfAgents,
    AllowedSelectors,
}

impl Cap {
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::MaxDuration => "maxDuration",
            Cap::MaxPercentOfAgents => "maxPercentOfAgents",
            Cap::AllowedSelectors => "allowedSelectors",
        }
    }
}

/// Why a spec was refused, so that callers can map it (e.g. a cap to a different gRPC code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not YAML or JSON at all.
    Syntax,
    /// A field is unknown, missing, of the wrong type or has a bad value.
    Invalid,
    /// A field reserved for a later version (`spec.schedule`, `spec.phases`).
    NotSupported,
    /// Well formed, but beyond a server-side cap.
    Cap(Cap),
}

/// A spec (or caps file) refused: the field at fault, where it is, and why.
///
/// `Display` gives `PATH: MESSAGE (line L, column C)`; [`SpecError::render`] gives the
/// compiler-style `FILE:L:C: PATH: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub kind: ErrorKind,
    pub path: FieldPath,
    /// Unknown for errors about a parsed [`super::Experiment`] that were not re-located in its
    /// document, and for JSON documents that only `serde_json` could read.
    pub location: Option<Location>,
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(
        kind: ErrorKind,
        path: FieldPath,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        SpecError {
            kind,
            path,
            location,
            message: one_line(message.into()),
        }
    }

    pub(crate) fn invalid(
        path: FieldPath,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Invalid, path, location, message)
    }

    /// `SOURCE:LINE:COL: PATH: MESSAGE`, leaving out what is unknown.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::from(source);
        if let Some(l) = self.location {
            out.push_str(&format!(":{}:{}", l.line, l.column));
        }
        out.push_str(": ");
        if !self.path.is_root() {
            out.push_str(&format!("{}: ", self.path));
        }
        out.push_str(&self.message);
        out
    }
}

/// Messages are one line, so that every error is one `FILE:L:C: FIELD: message` line. Some
/// come from libraries that draw on several (the regex crate points at the error with `^`
/// under the pattern): their lines are joined and the pointer lines dropped.
fn one_line(message: String) -> String {
    if !message.contains('\n') {
        return message;
    }
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~'))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(l) = self.location {
            write!(f, " (line {}, column {})", l.line, l.column)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_keys_indexes_and_quoted_keys() {
        let p = FieldPath::keys(["spec", "faults"])
            .index(1)
            .key("attributes");
        assert_eq!(p.to_string(), "spec.faults[1].attributes");
        let p = FieldPath::keys(["metadata", "labels", "app.kubernetes.io/name"]);
        assert_eq!(
            p.to_string(),
            r#"metadata.labels["app.kubernetes.io/name"]"#
        );
        assert_eq!(FieldPath::root().to_string(), "");
    }

    #[test]
    fn api_fields_join_as_segments() {
        let p = FieldPath::keys(["spec", "faults"])
            .index(2)
            .join_api_field("match.headers[0].name");
        assert_eq!(
            p.segments(),
            &[
                Segment::Key("spec".into()),
                Segment::Key("faults".into()),
                Segment::Index(2),
                Segment::Key("match".into()),
                Segment::Key("headers".into()),
                Segment::Index(0),
                Segment::Key("name".into()),
            ]
        );
        assert_eq!(p.to_string(), "spec.faults[2].match.headers[0].name");
    }

    #[test]
    fn messages_are_one_line() {
        let e = SpecError::invalid(
            FieldPath::root(),
            None,
            "invalid regex: regex parse error:\n    ([a-z\n    ^\nerror: unclosed character class",
        );
        assert_eq!(
            e.message,
            "invalid regex: regex parse error: ([a-z error: unclosed character class"
        );
    }

    #[test]
    fn render_is_compiler_style() {
        let e = SpecError::invalid(
            FieldPath::keys(["spec", "duration"]),
            Some(Location {
                line: 7,
                column: 13,
            }),
            "bad",
        );
        assert_eq!(e.render("x.yaml"), "x.yaml:7:13: spec.duration: bad");
        assert_eq!(e.to_string(), "spec.duration: bad (line 7, column 13)");
        let e = SpecError::invalid(FieldPath::root(), None, "empty");
        assert_eq!(e.render("x.yaml"), "x.yaml: empty");
    }
}
