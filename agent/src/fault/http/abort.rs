//! http_abort: answer the request without calling upstream, with a status, body and headers.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    /// 200..=599.
    pub status: StatusCode,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}
