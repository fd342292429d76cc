//! reset_peer: after `timeout` (0 = at once), reset the connection: both sockets are closed
//! with `SO_LINGER` 0, so each peer gets a TCP RST (ECONNRESET), not an orderly FIN.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetPeer {
    pub timeout: Duration,
}
