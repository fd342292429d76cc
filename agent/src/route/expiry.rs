//! The expiry task: removes each fault when its `expires_at` passes, so a forgotten fault
//! cannot outlive what its creator asked for, and retries listeners that could not re-bind.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::RouteTable;

/// How often to retry a listener that could not be re-bound.
const RELISTEN_RETRY: Duration = Duration::from_secs(1);

pub async fn run(table: Arc<RouteTable>, shutdown: CancellationToken) {
    loop {
        let (next, retry) = table.expire(Instant::now()).await;
        let wake = match (next, retry) {
            (Some(at), true) => Some(at.min(Instant::now() + RELISTEN_RETRY)),
            (Some(at), false) => Some(at),
            (None, true) => Some(Instant::now() + RELISTEN_RETRY),
            (None, false) => None,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = table.changed.notified() => {}
            _ = sleep_until_opt(wake) => {}
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
