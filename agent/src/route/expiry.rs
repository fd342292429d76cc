//! The expiry task: removes each fault when its `expires_at` passes, so a forgotten fault
//! cannot outlive what its creator asked for; ends the controller's lease at its deadline,
//! clearing every controller-issued fault; and retries listeners that could not re-bind.
//!
//! It sleeps until the earliest of those instants. A change that could make one earlier (a
//! fault added, a desired state applied, a lease renewed for less) wakes it through
//! `RouteTable::changed`; a renewal that pushes the lease later does not, and the task, woken
//! at the old deadline, finds nothing due and sleeps again.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Direction, Fault, FaultKind, Latency, Origin, Probability};
    use crate::route::{DesiredState, RouteSpec, Upstream};
    use crate::tcp::DataPlane;

    fn latency(name: &str, origin: Origin) -> Fault {
        Fault {
            name: name.into(),
            kind: FaultKind::Latency(Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO,
            }),
            direction: Direction::Downstream,
            toxicity: Probability::ALWAYS,
            matcher: None,
            cohort: None,
            expires_at: None,
            origin,
        }
    }

    /// A table with route `r` holding an admin fault, and the expiry task running on it.
    async fn table() -> (Arc<RouteTable>, CancellationToken) {
        let drain = CancellationToken::new();
        let plane = DataPlane::new(
            drain.clone(),
            Duration::from_secs(1),
            1,
            crate::tcp::workers::Pinning::Off,
        )
        .unwrap();
        let table = RouteTable::new(plane);
        let upstream = Upstream::Addr("127.0.0.1:9".parse().unwrap());
        table
            .create(RouteSpec::tcp("r", "127.0.0.1:0", upstream))
            .unwrap();
        table
            .add_fault("r", latency("admin", Origin::Admin))
            .await
            .unwrap();
        tokio::spawn(run(table.clone(), drain.clone()));
        (table, drain)
    }

    fn desired(generation: u64, lease: Duration) -> DesiredState {
        let origin = Origin::Controller {
            experiment: "exp".into(),
        };
        DesiredState {
            generation,
            lease,
            faults: vec![("r".into(), latency("ctl", origin))],
            guards: Vec::new(),
        }
    }

    fn names(table: &RouteTable) -> Vec<String> {
        let snap = table.subscribe("r").unwrap().borrow().clone();
        snap.faults.iter().map(|f| f.fault.name.clone()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_ends_at_its_deadline_unless_renewed() {
        let (table, drain) = table().await;
        let t0 = Instant::now();
        table
            .apply_desired(desired(1, Duration::from_secs(3)))
            .await
            .unwrap();
        assert_eq!(names(&table), ["admin", "ctl"]);

        tokio::time::sleep_until(t0 + Duration::from_secs(2)).await;
        let renewed = table.renew_lease(Duration::from_secs(3)).unwrap();
        assert_eq!(renewed.deadline, t0 + Duration::from_secs(5));

        // Past the first deadline: the task wakes, finds the lease renewed, sleeps again.
        tokio::time::sleep_until(t0 + Duration::from_millis(4999)).await;
        assert_eq!(names(&table), ["admin", "ctl"]);
        assert_eq!(table.controller_generation(), Some(1));

        tokio::time::sleep_until(t0 + Duration::from_millis(5001)).await;
        assert_eq!(names(&table), ["admin"], "the lease ended at t0 + 5 s");
        assert_eq!(table.lease(), None);
        assert_eq!(table.renew_lease(Duration::from_secs(3)), None);
        assert_eq!(
            names(&table),
            ["admin"],
            "a late heartbeat brings nothing back"
        );
        drain.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_renewal_wakes_the_task_for_the_earlier_deadline() {
        let (table, drain) = table().await;
        let t0 = Instant::now();
        table
            .apply_desired(desired(1, Duration::from_secs(10)))
            .await
            .unwrap();
        tokio::time::sleep_until(t0 + Duration::from_secs(1)).await;
        table.renew_lease(Duration::from_secs(1)).unwrap();
        tokio::time::sleep_until(t0 + Duration::from_millis(1999)).await;
        assert_eq!(names(&table), ["admin", "ctl"]);
        tokio::time::sleep_until(t0 + Duration::from_millis(2001)).await;
        assert_eq!(names(&table), ["admin"]);
        drain.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_run_out_unseen_ends_before_the_next_desired_state() {
        let drain = CancellationToken::new();
        let plane = DataPlane::new(
            drain.clone(),
            Duration::from_secs(1),
            1,
            crate::tcp::workers::Pinning::Off,
        )
        .unwrap();
        let table = RouteTable::new(plane);
        let upstream = Upstream::Addr("127.0.0.1:9".parse().unwrap());
        table
            .create(RouteSpec::tcp("r", "127.0.0.1:0", upstream))
            .unwrap();
        // No expiry task: the table itself must not let the run-out lease count.
        table
            .apply_desired(desired(5, Duration::from_secs(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(table.controller_generation(), None);
        let applied = table
            .apply_desired(desired(1, Duration::from_secs(1)))
            .await
            .expect("a new lease starts afresh");
        assert_eq!(applied.generation, 1);
        drain.cancel();
    }
}
