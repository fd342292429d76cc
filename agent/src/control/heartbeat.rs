//! What goes into an `AgentHeartbeat`: per-route SLI changes since the previous beat and the
//! counters of every controller-issued fault.
//!
//! [`SliSnapshot`] counters only grow, so a route's change over an interval is this snapshot
//! minus the previous one ([`sli_delta`]). A route recreated under the same name starts new
//! counters; [`SliTracker`] notices (the metrics are a different `Arc`) and reports the new
//! route's counters whole rather than a bogus negative change.
//!
//! A route with a cohort fault also counts the requests of the cohort's treatment and control
//! arms apart ([`RouteMetrics::treatment`], [`RouteMetrics::control`]); their changes go in
//! `RouteSli.treatment` and `RouteSli.control` when something was counted in them, so that a
//! guard can compare the arms. `RouteSli.sli` stays the whole route, arms included.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use faultline_proto::v1;

use super::convert::duration_to_proto;
use crate::fault::Origin;
use crate::metrics::RouteMetrics;
use crate::metrics::histogram::HistogramSnapshot;
use crate::metrics::http::{ByOrigin, SliSnapshot};
use crate::route::RouteTable;

/// The previous snapshots of each route, to report changes against.
#[derive(Default)]
pub struct SliTracker {
    previous: HashMap<String, Previous>,
}

/// A route's counters as the previous report saw them.
struct Previous {
    /// Which counters they were: a recreated route has new ones.
    metrics: Arc<RouteMetrics>,
    route: SliSnapshot,
    treatment: SliSnapshot,
    control: SliSnapshot,
}

impl SliTracker {
    /// A tracker whose first report covers what happens from now on.
    pub fn starting_now(table: &RouteTable) -> Self {
        let mut t = SliTracker::default();
        t.route_slis(table, Duration::ZERO);
        t
    }

    /// The SLI change of every route that saw HTTP/gRPC traffic since the previous call (idle
    /// routes are left out, as `agent.proto` allows); `window` is the time since then.
    pub fn route_slis(&mut self, table: &RouteTable, window: Duration) -> Vec<v1::RouteSli> {
        let mut out = Vec::new();
        let mut next = HashMap::new();
        for (route, metrics) in table.metrics() {
            let now = Previous {
                route: metrics.http.snapshot(),
                treatment: metrics.treatment.snapshot(),
                control: metrics.control.snapshot(),
                metrics,
            };
            let before = self
                .previous
                .get(&route)
                .filter(|p| Arc::ptr_eq(&p.metrics, &now.metrics));
            let delta = |pick: fn(&Previous) -> &SliSnapshot| match before {
                Some(before) => sli_delta(pick(&now), pick(before)),
                None => pick(&now).clone(),
            };
            let (sli, treatment, control) = (
                delta(|p| &p.route),
                delta(|p| &p.treatment),
                delta(|p| &p.control),
            );
            // An arm is part of the route, but its snapshot is taken a moment later and may
            // hold a request the route's does not yet: report whichever changed.
            if !(sli.is_empty() && treatment.is_empty() && control.is_empty()) {
                let arm = |d: SliSnapshot| (!d.is_empty()).then(|| v1::SliSnapshot::from(&d));
                out.push(v1::RouteSli {
                    route: route.clone(),
                    sli: Some(v1::SliSnapshot::from(&sli)),
                    window: Some(duration_to_proto(window)),
                    treatment: arm(treatment),
                    control: arm(control),
                });
            }
            next.insert(route, now);
        }
        self.previous = next;
        out
    }
}

/// The counters of every controller-issued fault (totals since it was applied).
pub fn rule_counts(table: &RouteTable) -> Vec<v1::RuleCount> {
    table
        .list()
        .into_iter()
        .flat_map(|route| route.faults)
        .filter(|f| matches!(f.fault.origin, Origin::Controller { .. }))
        .map(|f| v1::RuleCount {
            route: f.route,
            fault: f.fault.name,
            matched: f.counters.matched.load(Relaxed),
            injected: f.counters.injected.load(Relaxed),
            passed: f.counters.passed.load(Relaxed),
        })
        .collect()
}

/// A whole heartbeat.
pub fn heartbeat(table: &RouteTable, slis: &mut SliTracker, window: Duration) -> v1::AgentMessage {
    v1::AgentMessage {
        body: Some(v1::agent_message::Body::Heartbeat(v1::AgentHeartbeat {
            sent_at: Some(SystemTime::now().into()),
            generation: table.controller_generation().unwrap_or(0),
            route_slis: slis.route_slis(table, window),
            rule_counts: rule_counts(table),
        })),
    }
}

/// `now - before`, field by field (saturating: counters never go down within one route).
pub fn sli_delta(now: &SliSnapshot, before: &SliSnapshot) -> SliSnapshot {
    SliSnapshot {
        requests: sub_split(&now.requests, &before.requests),
        grpc: sub_split(&now.grpc, &before.grpc),
        upstream_errors: now.upstream_errors.saturating_sub(before.upstream_errors),
        resets: ByOrigin {
            real: now.resets.real.saturating_sub(before.resets.real),
            injected: now.resets.injected.saturating_sub(before.resets.injected),
        },
        latency: histogram_delta(&now.latency, &before.latency),
    }
}

fn sub_split<const N: usize>(
    now: &ByOrigin<[u64; N]>,
    before: &ByOrigin<[u64; N]>,
) -> ByOrigin<[u64; N]> {
    ByOrigin {
        real: std::array::from_fn(|i| now.real[i].saturating_sub(before.real[i])),
        injected: std::array::from_fn(|i| now.injected[i].saturating_sub(before.injected[i])),
    }
}

/// `now - before` for histograms whose buckets are sorted by index, each index once (as
/// [`LatencyHistogram::snapshot`](crate::metrics::histogram::LatencyHistogram::snapshot)
/// makes them); empty buckets are left out.
pub fn histogram_delta(now: &HistogramSnapshot, before: &HistogramSnapshot) -> HistogramSnapshot {
    let earlier: HashMap<u32, u64> = before.buckets.iter().copied().collect();
    HistogramSnapshot {
        buckets: now
            .buckets
            .iter()
            .map(|&(i, n)| (i, n.saturating_sub(earlier.get(&i).copied().unwrap_or(0))))
            .filter(|&(_, n)| n > 0)
            .collect(),
        count: now.count.saturating_sub(before.count),
        sum_micros: now.sum_micros.saturating_sub(before.sum_micros),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::http::Arm;
    use crate::route::{RouteSpec, Upstream};

    const MS: Duration = Duration::from_millis(1);

    fn responses(s: &Option<v1::SliSnapshot>) -> Option<u64> {
        s.clone()
            .map(|s| SliSnapshot::try_from(s).unwrap().responses())
    }

    #[tokio::test]
    async fn arms_are_reported_as_deltas_beside_the_whole_route() {
        let plane = crate::tcp::DataPlane::new(
            Default::default(),
            Duration::from_secs(1),
            1,
            crate::tcp::workers::Pinning::Off,
        )
        .unwrap();
        let table = RouteTable::new(plane);
        let upstream = Upstream::Addr("127.0.0.1:9".parse().unwrap());
        table
            .create(RouteSpec::tcp("r", "127.0.0.1:0", upstream.clone()))
            .unwrap();
        let m = || table.metrics().into_iter().next().unwrap().1;
        let mut tracker = SliTracker::starting_now(&table);

        m().recorder(Arm::Treatment).response(503, true, MS);
        m().recorder(Arm::Treatment).response(503, true, MS);
        m().recorder(Arm::Control).response(200, false, MS);
        m().recorder(Arm::Neither).response(200, false, MS);
        let slis = tracker.route_slis(&table, Duration::from_secs(1));
        assert_eq!(slis.len(), 1);
        let s = &slis[0];
        assert_eq!(
            (
                responses(&s.sli),
                responses(&s.treatment),
                responses(&s.control)
            ),
            (Some(4), Some(2), Some(1))
        );

        // Only a request in neither arm: the arms are left out, not sent empty.
        m().recorder(Arm::Neither).response(200, false, MS);
        m().recorder(Arm::Control).response(200, false, MS);
        let slis = tracker.route_slis(&table, Duration::from_secs(1));
        let s = &slis[0];
        assert_eq!(
            (
                responses(&s.sli),
                responses(&s.treatment),
                responses(&s.control)
            ),
            (Some(2), None, Some(1))
        );
        assert!(
            tracker
                .route_slis(&table, Duration::from_secs(1))
                .is_empty()
        );

        // A route recreated under the same name: its new counters are reported whole.
        table.remove("r").await.unwrap();
        table
            .create(RouteSpec::tcp("r", "127.0.0.1:0", upstream))
            .unwrap();
        m().recorder(Arm::Treatment).response(503, true, MS);
        let slis = tracker.route_slis(&table, Duration::from_secs(1));
        let s = &slis[0];
        assert_eq!(
            (
                responses(&s.sli),
                responses(&s.treatment),
                responses(&s.control)
            ),
            (Some(1), Some(1), None)
        );
    }

    #[test]
    fn a_delta_is_what_happened_between_two_snapshots() {
        let mut before = SliSnapshot::default();
        before.requests.real[1] = 10;
        before.requests.injected[4] = 2;
        before.grpc.real[14] = 1;
        before.upstream_errors = 3;
        before.resets.injected = 1;
        before.latency = HistogramSnapshot {
            buckets: vec![(5, 4), (9, 8)],
            count: 12,
            sum_micros: 1_000,
        };
        let mut now = before.clone();
        now.requests.real[1] = 15;
        now.requests.injected[4] = 7;
        now.upstream_errors = 4;
        now.latency = HistogramSnapshot {
            buckets: vec![(5, 4), (9, 9), (12, 2)],
            count: 15,
            sum_micros: 1_600,
        };
        let d = sli_delta(&now, &before);
        assert_eq!(d.requests.real, [0, 5, 0, 0, 0]);
        assert_eq!(d.requests.injected, [0, 0, 0, 0, 5]);
        assert_eq!(d.grpc.real[14], 0);
        assert_eq!(d.upstream_errors, 1);
        assert_eq!(d.resets, ByOrigin::default());
        assert_eq!(d.latency.buckets, vec![(9, 1), (12, 2)]);
        assert_eq!((d.latency.count, d.latency.sum_micros), (3, 600));
        // Merging the delta back onto the earlier snapshot gives the later one.
        let mut back = before.clone();
        back.merge(&d);
        assert_eq!(back, now);
    }

    #[test]
    fn nothing_new_is_an_empty_delta() {
        let mut s = SliSnapshot::default();
        s.requests.real[1] = 3;
        s.latency = HistogramSnapshot {
            buckets: vec![(1, 3)],
            count: 3,
            sum_micros: 30,
        };
        let d = sli_delta(&s, &s);
        assert!(d.is_empty());
        assert!(d.latency.buckets.is_empty());
    }
}
