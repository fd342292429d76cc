//! Operators' bearer tokens, read once at start from `--tokens-file`.
//!
//! The file holds one `NAME TOKEN` per line (separated by spaces or tabs); blank lines and
//! lines starting with `#` are skipped. NAME (what the audit log records) is 1 to 128 of
//! `[A-Za-z0-9._-]`; TOKEN is at least [`MIN_TOKEN_LEN`] printable ASCII characters without
//! spaces. Names and tokens are unique. The file is read at start only: rotate a token by
//! editing the file (or the Secret) and restarting the controller.
//!
//! A presented token is compared with every configured token in constant time (`subtle`), and
//! all of them are always compared, so the time a check takes says nothing about which byte
//! differed or which entry matched.

use std::fmt;
use std::path::{Path, PathBuf};

use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::principal::valid_name;

/// The shortest token accepted: 16 characters (e.g. `openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured tokens. `Debug` never shows a token.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<(String, Vec<u8>)>,
}

/// Why a tokens file cannot be used; names the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no tokens (expected lines of `NAME TOKEN`)")]
    Empty { path: PathBuf },
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

impl Tokens {
    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(&text).map_err(|e| match e {
            ParseError::Line(line, message) => TokensError::Line {
                path: path.to_owned(),
                line,
                message,
            },
            ParseError::Empty => TokensError::Empty {
                path: path.to_owned(),
            },
        })
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Tokens, ParseError> {
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |m: &str| ParseError::Line(i + 1, m.to_owned());
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected `NAME TOKEN`"));
            };
            if !valid_name(name) {
                return Err(bad("the name must be 1 to 128 of A-Z a-z 0-9 . _ -"));
            }
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(&format!(
                    "the token of {name:?} must be at least {MIN_TOKEN_LEN} printable characters"
                )));
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err(bad(&format!("{name:?} is named twice")));
            }
            if entries.iter().any(|(_, t)| t == token.as_bytes()) {
                return Err(bad(&format!("the token of {name:?} is given twice")));
            }
            entries.push((name.to_owned(), token.as_bytes().to_vec()));
        }
        if entries.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(Tokens { entries })
    }

    /// The name of the token `presented`, if it is one of them.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let presented = presented.as_bytes();
        let mut found = 0u32; // index + 1, 0 for none
        for (i, (_, token)) in self.entries.iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &index, token.as_slice().ct_eq(presented));
        }
        let found = usize::try_from(found).ok()?;
        found.checked_sub(1).map(|i| self.entries[i].0.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What is wrong with a tokens file's text.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The 1-based line, and why.
    Line(usize, String),
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# operators\n\nalice  0123456789abcdef0123\nci\tsecret-token-for-ci-1\n";

    #[test]
    fn a_token_answers_its_name_and_nothing_else_matches() {
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.check("0123456789abcdef0123"), Some("alice"));
        assert_eq!(t.check("secret-token-for-ci-1"), Some("ci"));
        assert_eq!(t.check("secret-token-for-ci-"), None);
        assert_eq!(t.check("secret-token-for-ci-12"), None);
        assert_eq!(t.check(""), None);
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            ("alice\n", 1),
            ("alice short\n", 1),
            ("# c\nal ice 0123456789abcdef\n", 2),
            ("a/b 0123456789abcdef\n", 1),
            ("a 0123456789abcdef\na 0123456789abcdeg\n", 2),
            ("a 0123456789abcdef\nb 0123456789abcdef\n", 2),
        ];
        for (text, line) in cases {
            match Tokens::parse(text) {
                Err(ParseError::Line(n, _)) => assert_eq!(n, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(Tokens::parse("# nothing\n").unwrap_err(), ParseError::Empty);
    }
}
