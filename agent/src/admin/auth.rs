//! The admin API's bearer token (`--admin-token-file`).
//!
//! Without a token the admin API is open, as Toxiproxy's is, and the agent only lets it bind a
//! loopback address. With one, every request but `GET /ready` and `GET /metrics` (probes and
//! scrapers) needs `Authorization: Bearer TOKEN`, compared in constant time; others get 401.

use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin API's token. `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token from text (surrounding whitespace, such as a file's final newline, is dropped).
    pub fn new(text: &str) -> Result<AdminToken, String> {
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_LEN} printable characters without spaces"
            ));
        }
        Ok(AdminToken(token.as_bytes().into()))
    }

    /// Reads the token from `path`.
    pub fn load(path: &Path) -> Result<AdminToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        AdminToken::new(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ") && bool::from(token.ct_eq(&self.0))
    }
}

/// Requests served without the token: readiness probes and Prometheus scrapes.
pub fn exempt(method: &http::Method, path: &str) -> bool {
    method == http::Method::GET && matches!(path, "/ready" | "/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_token_is_admitted() {
        let t = AdminToken::new("0123456789abcdef\n").unwrap();
        assert!(t.admits(Some(b"Bearer 0123456789abcdef")));
        assert!(t.admits(Some(b"bearer 0123456789abcdef")));
        assert!(!t.admits(Some(b"Bearer 0123456789abcde")));
        assert!(!t.admits(Some(b"Basic 0123456789abcdef")));
        assert!(!t.admits(Some(b"Bearer")));
        assert!(!t.admits(None));
        assert!(AdminToken::new("short").is_err());
        assert!(!format!("{t:?}").contains("0123"));
    }
}
