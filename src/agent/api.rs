//! The admin API's JSON shapes (Toxiproxy 2.x's, plus faultline's `both` stream and fault
//! expiry), as far as the CLI reads and writes them. Unknown fields are ignored, so newer
//! agents and plain Toxiproxy servers decode too.

use std::fmt;

use clap::ValueEnum;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A route, as `GET /proxies` and `GET /proxies/{name}` return it.
#[derive(Debug, Deserialize)]
pub struct Proxy {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    #[serde(default)]
    pub toxics: Vec<Toxic>,
}

/// A fault, as `GET /proxies/{name}/toxics` returns it.
#[derive(Debug, Deserialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub toxicity: f64,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// The body of `POST /proxies`.
#[derive(Debug, Serialize)]
pub struct NewProxy<'a> {
    pub name: &'a str,
    pub listen: &'a str,
    pub upstream: &'a str,
    pub enabled: bool,
}

/// The body of `POST /proxies/{name}`: only `enabled` changes.
#[derive(Debug, Serialize)]
pub struct ProxyEnabled {
    pub enabled: bool,
}

/// The body of `POST /proxies/{name}/toxics`. Fields left `None` are omitted, so the agent
/// applies Toxiproxy's defaults (stream downstream, toxicity 1, name TYPE_STREAM).
#[derive(Debug, Serialize)]
pub struct NewToxic {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f64>,
    pub attributes: Map<String, Value>,
    /// faultline: milliseconds until the agent removes the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// The direction a fault acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client to upstream.
    Upstream,
    /// Upstream to client.
    Downstream,
    /// Both directions (faultline only).
    Both,
}

// === errors ===

/// The agent answered a request with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The agent's `error` message (it names the field at fault), or the body as text when
    /// the body is not the agent's JSON error shape.
    pub message: String,
    pub field: Option<String>,
}

/// `{"error": "...", "status": N, "field": "..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    field: Option<String>,
}

impl ApiError {
    pub fn from_response(status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => ApiError {
                status,
                message: e.error,
                field: e.field,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body).trim().to_string();
                ApiError {
                    status,
                    message: if text.is_empty() {
                        status
                            .canonical_reason()
                            .unwrap_or("no message")
                            .to_string()
                    } else {
                        text
                    },
                    field: None,
                }
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the agent refused the request ({}): {}",
            self.status, self.message
        )?;
        // The agent's messages mostly read "...: FIELD: problem"; name the field where not.
        match &self.field {
            Some(field) if !self.message.contains(&format!("{field}:")) => {
                write!(f, " (field: {field})")
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_error_body_is_read() {
        let e = ApiError::from_response(
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad request body: toxicity: must be between 0 and 1, got 1.5","status":400,"field":"toxicity"}"#,
        );
        assert_eq!(e.field.as_deref(), Some("toxicity"));
        assert_eq!(
            e.to_string(),
            "the agent refused the request (400 Bad Request): \
             bad request body: toxicity: must be between 0 and 1, got 1.5"
        );
    }

    #[test]
    fn a_field_missing_from_the_message_is_appended() {
        let e = ApiError::from_response(
            StatusCode::CONFLICT,
            br#"{"error":"proxy already exists: a route named \"api\" exists","status":409,"field":"name"}"#,
        );
        assert!(
            e.to_string()
                .ends_with("named \"api\" exists (field: name)")
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_shown_as_text() {
        let e = ApiError::from_response(StatusCode::NOT_FOUND, b"404 page not found\n");
        assert_eq!(e.message, "404 page not found");
        let e = ApiError::from_response(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(e.message, "Bad Gateway");
    }

    #[test]
    fn a_toxiproxy_listing_decodes() {
        let body = br#"{"api":{"name":"api","listen":"127.0.0.1:1","upstream":"127.0.0.1:2",
            "enabled":true,"toxics":[{"name":"l","type":"latency","stream":"downstream",
            "toxicity":1,"attributes":{"latency":5},"origin":"admin"}]}}"#;
        let all: std::collections::BTreeMap<String, Proxy> = serde_json::from_slice(body).unwrap();
        assert_eq!(all["api"].toxics[0].attributes["latency"], 5);
    }
}
