//! grpc_abort: a trailers-only gRPC response (HTTP 200, `grpc-status`, `grpc-message`), so a
//! real gRPC client sees the status (e.g. UNAVAILABLE) with the message.

/// The gRPC status code names, indexed by code.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Parses a non-OK gRPC code given as a number (`14`) or a name (`UNAVAILABLE`).
pub fn parse_code(s: &str) -> Option<u8> {
    let code = match s.parse::<u8>() {
        Ok(n) => n,
        Err(_) => CODE_NAMES.iter().position(|n| n.eq_ignore_ascii_case(s))? as u8,
    };
    (1..=16).contains(&code).then_some(code)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcAbort {
    /// 1..=16.
    pub code: u8,
    pub message: String,
}

/// Percent-encodes a `grpc-message` value as the gRPC HTTP/2 protocol requires.
pub fn encode_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_number_or_name() {
        assert_eq!(parse_code("14"), Some(14));
        assert_eq!(parse_code("unavailable"), Some(14));
        assert_eq!(parse_code("0"), None);
        assert_eq!(parse_code("17"), None);
        assert_eq!(parse_code("NOPE"), None);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("down for 5%"), "down for 5%25");
        assert_eq!(encode_message("é"), "%C3%A9");
    }
}
