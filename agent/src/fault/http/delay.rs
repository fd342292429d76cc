//! http_delay: hold the request before forwarding it, or hold the response head, by a fixed
//! time plus uniform jitter.

use std::time::Duration;

use crate::fault::Latency;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayPhase {
    /// Before the request is sent upstream.
    Request,
    /// After the upstream answered, before the response head goes to the client.
    Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delay {
    pub delay: Latency,
    pub phase: DelayPhase,
}

impl Delay {
    pub fn sample(&self, draw: u64) -> Duration {
        self.delay.sample(draw)
    }
}
