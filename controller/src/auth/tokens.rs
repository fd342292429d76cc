//! Operators' bearer tokens, from `--tokens-file`.
//!
//! The file holds one `NAME TOKEN` per line (separated by spaces or tabs); blank lines and
//! lines starting with `#` are skipped. NAME (what the audit log records) is 1 to 128 of
//! `[A-Za-z0-9._-]`; TOKEN is at least [`MIN_TOKEN_LEN`] printable ASCII characters without
//! spaces. Names and tokens are unique.
//!
//! The file is read at start (a bad file stops the controller from starting) and again on
//! SIGHUP and every [`RELOAD_EVERY`] ([`Tokens::watch`]), so a token is rotated by editing the
//! file or its Kubernetes Secret, without a restart (which would abort running experiments).
//! A changed file that cannot be used is logged and the tokens in force stay.
//!
//! A presented token is compared with every configured token in constant time (`subtle`), and
//! all of them are always compared, so the time a check takes says nothing about which byte
//! differed or which entry matched.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::principal::valid_name;

/// The shortest token accepted: 16 characters (e.g. `openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_LEN: usize = 16;

/// How often the tokens file is read again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

type Entries = Vec<(String, Vec<u8>)>;

/// The configured tokens. `Debug` never shows a token.
pub struct Tokens {
    entries: ArcSwap<Entries>,
    /// The file they came from, and its text as last read (for [`Tokens::reload`]).
    file: Option<(PathBuf, Mutex<String>)>,
}

/// What [`Tokens::reload`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The file is as it was.
    Unchanged,
    /// The file changed: these many tokens are now in force.
    Replaced(usize),
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
        let entries = self.entries.load();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

impl Tokens {
    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = read(path)?;
        let entries = parse_entries(&text).map_err(|e| e.in_file(path))?;
        Ok(Tokens {
            entries: ArcSwap::from_pointee(entries),
            file: Some((path.to_owned(), Mutex::new(text))),
        })
    }

    /// Reads the file again; a changed file that parses replaces the tokens in force, one that
    /// does not leaves them (the error says why). Tokens not read from a file never change.
    pub fn reload(&self) -> Result<Reloaded, TokensError> {
        let Some((path, last)) = &self.file else {
            return Ok(Reloaded::Unchanged);
        };
        let text = read(path)?;
        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == text {
            return Ok(Reloaded::Unchanged);
        }
        let entries = parse_entries(&text).map_err(|e| e.in_file(path))?;
        let n = entries.len();
        self.entries.store(Arc::new(entries));
        *last = text;
        Ok(Reloaded::Replaced(n))
    }

    /// Reloads on SIGHUP and every [`RELOAD_EVERY`] until `stop`, logging what changed.
    pub async fn watch(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let Some((path, _)) = &self.file else {
            return;
        };
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let sighup = async |h: &mut Option<tokio::signal::unix::Signal>| match h {
            Some(h) => {
                h.recv().await;
            }
            None => std::future::pending().await,
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
                () = sighup(&mut hangup) => {}
            }
            match self.reload() {
                Ok(Reloaded::Unchanged) => {}
                Ok(Reloaded::Replaced(n)) => {
                    tracing::info!(file = %path.display(), tokens = n, "tokens file reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tokens file not reloaded; the tokens in force stay");
                }
            }
        }
    }

    /// Parses a tokens file's text (tokens that are never reloaded).
    pub fn parse(text: &str) -> Result<Tokens, ParseError> {
        Ok(Tokens {
            entries: ArcSwap::from_pointee(parse_entries(text)?),
            file: None,
        })
    }

    /// The name of the token `presented`, if it is one of them.
    pub fn check(&self, presented: &str) -> Option<String> {
        let entries = self.entries.load();
        let presented = presented.as_bytes();
        let mut found = 0u32; // index + 1, 0 for none
        for (i, (_, token)) in entries.iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &index, token.as_slice().ct_eq(presented));
        }
        let found = usize::try_from(found).ok()?;
        found.checked_sub(1).map(|i| entries[i].0.clone())
    }

    pub fn len(&self) -> usize {
        self.entries.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.load().is_empty()
    }
}

fn read(path: &Path) -> Result<String, TokensError> {
    std::fs::read_to_string(path).map_err(|source| TokensError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_entries(text: &str) -> Result<Entries, ParseError> {
    let mut entries: Entries = Vec::new();
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
    Ok(entries)
}

/// What is wrong with a tokens file's text.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The 1-based line, and why.
    Line(usize, String),
    Empty,
}

impl ParseError {
    fn in_file(self, path: &Path) -> TokensError {
        match self {
            ParseError::Line(line, message) => TokensError::Line {
                path: path.to_owned(),
                line,
                message,
            },
            ParseError::Empty => TokensError::Empty {
                path: path.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# operators\n\nalice  0123456789abcdef0123\nci\tsecret-token-for-ci-1\n";

    #[test]
    fn a_token_answers_its_name_and_nothing_else_matches() {
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.check("0123456789abcdef0123").as_deref(), Some("alice"));
        assert_eq!(t.check("secret-token-for-ci-1").as_deref(), Some("ci"));
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

    fn temp_file(tag: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "faultline-tokens-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reload_takes_a_changed_file_and_keeps_the_tokens_when_it_is_bad() {
        let path = temp_file("reload", FILE);
        let t = Tokens::load(&path).unwrap();
        assert_eq!(t.reload().unwrap(), Reloaded::Unchanged);

        std::fs::write(&path, "alice rotated-token-0123456789\n").unwrap();
        assert_eq!(t.reload().unwrap(), Reloaded::Replaced(1));
        assert_eq!(
            t.check("rotated-token-0123456789").as_deref(),
            Some("alice")
        );
        assert_eq!(
            t.check("0123456789abcdef0123"),
            None,
            "the old token is gone"
        );
        assert_eq!(t.check("secret-token-for-ci-1"), None);

        // A bad edit is refused, naming the line; the tokens in force stay.
        std::fs::write(&path, "alice short\n").unwrap();
        let e = t.reload().unwrap_err().to_string();
        assert!(
            e.ends_with(":1: the token of \"alice\" must be at least 16 printable characters"),
            "{e}"
        );
        assert_eq!(
            t.check("rotated-token-0123456789").as_deref(),
            Some("alice")
        );
        // So does a vanished file.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(t.reload(), Err(TokensError::Read { .. })));
        assert_eq!(t.len(), 1);
        // Tokens not read from a file never change.
        assert_eq!(
            Tokens::parse(FILE).unwrap().reload().unwrap(),
            Reloaded::Unchanged
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watch_reloads_the_file_every_period_until_stopped() {
        let path = temp_file("watch", FILE);
        let t = Arc::new(Tokens::load(&path).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(t.clone().watch(async move {
            let _ = stopped.await;
        }));
        std::fs::write(&path, "bob bob-token-0123456789abcdef\n").unwrap();
        assert_eq!(
            t.check("bob-token-0123456789abcdef"),
            None,
            "not before a period"
        );
        tokio::time::sleep(RELOAD_EVERY + Duration::from_millis(1)).await;
        assert_eq!(
            t.check("bob-token-0123456789abcdef").as_deref(),
            Some("bob")
        );
        stop.send(()).unwrap();
        task.await.unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
