//! slow_close: when the source closes its side, wait this long before passing the close on.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowClose {
    pub delay: Duration,
}
