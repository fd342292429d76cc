//! What a route speaks, and its HTTP options.

use std::fmt;
use std::str::FromStr;

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
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_faults: false,
            max_header_faults: 100,
            fault_header: false,
        }
    }
}
