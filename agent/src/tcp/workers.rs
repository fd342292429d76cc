//! The data plane's worker threads: one current-thread Tokio runtime per thread, each with its
//! own listening socket per route (`SO_REUSEPORT`, so the kernel spreads new connections over
//! them).
//!
//! A connection, its upstream connection(s) and every task they spawn (hyper's connection
//! drivers included) stay on the thread that accepted it: waking one from another never crosses
//! threads. This is the thread-per-core shape of haproxy, nginx and Envoy, and it measurably
//! cuts the futex wake-ups and context switches a shared work-stealing pool pays per request.

use std::io;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Cancelled by `stop` (the agent stopping) or when the last handle is dropped: each thread
    /// then leaves its runtime, which drops whatever tasks are left.
    stop: CancellationToken,
}

impl Workers {
    /// Starts `n` worker threads (at least one).
    pub fn start(n: usize) -> io::Result<Arc<Workers>> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("faultline-worker-{i}"))
                .spawn(move || rt.block_on(stop.cancelled()))?;
        }
        Ok(Arc::new(Workers { handles, stop }))
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Asks every worker thread to leave its runtime.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
