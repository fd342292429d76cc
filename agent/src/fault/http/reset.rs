//! http_reset: drop the connection (HTTP/1) or reset the stream (HTTP/2 RST_STREAM), before the
//! response or in the middle of its body.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetPhase {
    /// Instead of any response.
    BeforeResponse,
    /// After this many bytes of the response body have been sent.
    MidResponse { after_bytes: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpReset {
    pub phase: ResetPhase,
}
