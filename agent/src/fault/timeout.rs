//! timeout: stop forwarding data (it is read and dropped), then close the connection after
//! `timeout`. A zero timeout never closes: the connection becomes a blackhole until the fault
//! is removed, as with Toxiproxy's timeout toxic.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub timeout: Duration,
}

impl Timeout {
    /// `None` means hold the connection open for as long as the fault lasts.
    pub fn closes_after(&self) -> Option<Duration> {
        (!self.timeout.is_zero()).then_some(self.timeout)
    }
}
