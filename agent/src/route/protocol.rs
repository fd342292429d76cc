//! What a route speaks, and its HTTP options.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Bytes: the TCP data plane and its faults.
    #[default]
    Tcp,
    /// HTTP/1.1 and cleartext HTTP/2 (told apart by the connection preface).
    Http,
    /// gRPC over cleartext HTTP/2.
    Grpc,
    /// Captured routes only: told per connection from its first bytes (an HTTP/2 preface or an
    /// HTTP/1 request line is HTTP, anything else TCP). Byte-level faults act on the TCP
    /// connections, request-level faults on the HTTP ones; down and partition on both.
    Auto,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Auto => "auto",
        }
    }

    /// Served by the HTTP data plane on every connection.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Grpc)
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            "auto" => Ok(Protocol::Auto),
            other => Err(format!(
                "{other:?} is not a protocol (tcp, http, grpc, or auto for captured routes)"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options of `http` and `grpc` routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// Honour `x-faultline-abort`, `x-faultline-delay` and `x-faultline-grpc-status` request
    /// headers (like Envoy's `x-envoy-fault-*`). Off by default.
    pub header_faults: bool,
    /// At most this many header-triggered faults in progress at once on the route.
    pub max_header_faults: u32,
    /// Add `x-faultline-fault: NAME` to responses a fault acted on.
    pub fault_header: bool,
    /// How long the upstream has to start answering (its response head) once the request is
    /// on its way; then the client gets 504 (gRPC: DEADLINE_EXCEEDED). `None`: no limit, as
    /// before there was this setting; a default would cut users' long polls.
    pub response_timeout: Option<Duration>,
}

/// Parses a route's `response_timeout` (`30s`, `1m30s`, `250ms`): more than zero, at most a day.
pub fn parse_response_timeout(s: &str) -> Result<Duration, String> {
    let d: Duration = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 30s or 250ms: {e}"))?;
    if d.is_zero() {
        return Err("must be more than 0 (leave it out for no limit)".into());
    }
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!("{s:?} is more than a day"));
    }
    Ok(d)
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_faults: false,
            max_header_faults: 100,
            fault_header: false,
            response_timeout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_timeout_takes_a_positive_duration_up_to_a_day() {
        assert_eq!(parse_response_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(
            parse_response_timeout("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert!(
            parse_response_timeout("0s")
                .unwrap_err()
                .contains("more than 0")
        );
        assert!(
            parse_response_timeout("soon")
                .unwrap_err()
                .contains("\"soon\"")
        );
        assert!(
            parse_response_timeout("2days")
                .unwrap_err()
                .contains("more than a day")
        );
    }
}
