//! The data plane's worker threads: one current-thread Tokio runtime per thread, each with its
//! own listening socket per route (`SO_REUSEPORT`, so the kernel spreads new connections over
//! them).
//!
//! A connection, its upstream connection(s) and every task they spawn (hyper's connection
//! drivers included) stay on the thread that accepted it: waking one from another never crosses
//! threads. This is the thread-per-core shape of haproxy, nginx and Envoy, and it measurably
//! cuts the futex wake-ups and context switches a shared work-stealing pool pays per request.
//!
//! **Pinning** ([`Pinning`]). When there is one worker per CPU the agent may run on, each worker
//! is pinned to a CPU of its own (as nginx's `worker_cpu_affinity auto`). Unpinned, the kernel
//! sometimes stacks two workers on one CPU for a while; each then waits out the other's time
//! slice (4 ms here), and every request in flight on the waiting worker waits with it: that was
//! the agent's saturated keep-alive p99 tail (BENCHMARKS.md). With fewer workers than allowed
//! CPUs (a container whose CPU quota is smaller than its CPU set, say) nothing is pinned by
//! default: which CPUs to use is then the kernel's choice to make.

use std::io;
use std::sync::Arc;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Whether each worker thread is pinned to one CPU (`--pin-workers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pinning {
    /// Pinned when there are as many workers as CPUs the process may run on (and more than one).
    #[default]
    Auto,
    /// Worker `i` on the `i`-th allowed CPU, wrapping around when there are more workers.
    On,
    /// Not pinned: the kernel places the workers.
    Off,
}

/// The CPU for each of `n` workers, given the CPUs the process may run on.
fn placement(n: usize, allowed: &[usize], pinning: Pinning) -> Vec<Option<usize>> {
    let pin = match pinning {
        Pinning::Off => false,
        Pinning::On => !allowed.is_empty(),
        Pinning::Auto => n > 1 && allowed.len() == n,
    };
    (0..n)
        .map(|i| pin.then(|| allowed[i % allowed.len()]))
        .collect()
}

/// The CPUs the calling thread may run on.
fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the CPU affinity; workers stay unpinned");
            Vec::new()
        }
    }
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// The CPU each worker is pinned to, if it is.
    cpus: Vec<Option<usize>>,
    /// Cancelled by `stop` (the agent stopping) or when the last handle is dropped: each thread
    /// then leaves its runtime, which drops whatever tasks are left.
    stop: CancellationToken,
}

impl Workers {
    /// Starts `n` worker threads (at least one), pinned as `pinning` says.
    pub fn start(n: usize, pinning: Pinning) -> io::Result<Arc<Workers>> {
        let n = n.max(1);
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n);
        let allowed = match pinning {
            Pinning::Off => Vec::new(),
            _ => allowed_cpus(),
        };
        let mut cpus = placement(n, &allowed, pinning);
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        for (i, cpu) in cpus.iter().enumerate() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            let cpu = *cpu;
            let pinned = pinned_tx.clone();
            std::thread::Builder::new()
                .name(format!("faultline-worker-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        let _ = pinned.send((i, pin_to(cpu)));
                    }
                    drop(pinned);
                    rt.block_on(stop.cancelled())
                })?;
        }
        drop(pinned_tx);
        // Every worker has tried its pinning before the first connection can reach it.
        for (i, r) in pinned_rx {
            if let Err(e) = r {
                tracing::warn!(worker = i, cpu = ?cpus[i], error = %e, "cannot pin the worker to its CPU");
                cpus[i] = None;
            }
        }
        if cpus.iter().any(Option::is_some) {
            tracing::info!(cpus = ?cpus, "data-plane workers pinned, one per CPU");
        }
        Ok(Arc::new(Workers {
            handles,
            cpus,
            stop,
        }))
    }

    /// The CPU each worker is pinned to, if it is.
    pub fn cpus(&self) -> &[Option<usize>] {
        &self.cpus
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_one_worker_per_allowed_cpu() {
        let two = [0, 1];
        assert_eq!(
            placement(2, &two, Pinning::Auto),
            [Some(0), Some(1)],
            "one worker per CPU: pinned"
        );
        assert_eq!(placement(2, &[2, 5], Pinning::Auto), [Some(2), Some(5)]);
        // Fewer workers than CPUs (a CPU quota smaller than the CPU set), more workers than
        // CPUs, or a single worker: the kernel places them.
        assert_eq!(placement(2, &[0, 1, 2, 3], Pinning::Auto), [None, None]);
        assert_eq!(placement(3, &two, Pinning::Auto), [None, None, None]);
        assert_eq!(placement(1, &[0], Pinning::Auto), [None]);
        assert_eq!(placement(2, &[], Pinning::Auto), [None, None]);
    }

    #[test]
    fn on_pins_every_worker_wrapping_and_off_pins_none() {
        assert_eq!(
            placement(3, &[0, 1], Pinning::On),
            [Some(0), Some(1), Some(0)]
        );
        assert_eq!(placement(2, &[0, 1, 2, 3], Pinning::On), [Some(0), Some(1)]);
        assert_eq!(placement(2, &[], Pinning::On), [None, None]);
        assert_eq!(placement(2, &[0, 1], Pinning::Off), [None, None]);
    }

    /// The CPUs the worker thread behind `handle` may run on, asked from that thread.
    fn affinity_of(handle: &Handle) -> Vec<usize> {
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(allowed_cpus());
        });
        rx.recv().expect("the worker answers")
    }

    #[test]
    fn pinned_workers_run_on_their_cpu_only() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        let workers = Workers::start(2, Pinning::On).unwrap();
        for (i, h) in workers.handles().iter().enumerate() {
            let cpu = allowed[i % allowed.len()];
            assert_eq!(workers.cpus()[i], Some(cpu));
            assert_eq!(affinity_of(h), [cpu], "worker {i}");
        }
        let unpinned = Workers::start(2, Pinning::Off).unwrap();
        for h in unpinned.handles() {
            assert_eq!(
                affinity_of(h),
                allowed,
                "unpinned workers keep the process's CPUs"
            );
        }
        assert_eq!(unpinned.cpus(), [None, None]);
    }
}
