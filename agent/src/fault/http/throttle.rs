//! http_throttle: limit the response body to a number of bytes per second (token bucket, see
//! `fault::bandwidth`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub bytes_per_sec: u64,
}
