//! What one flow of one connection must do under a snapshot.
//!
//! A [`FlowPlan`] is compiled from the route snapshot when the connection starts and again each
//! time the snapshot changes; the per-chunk path only reads it. Whether a fault touches a
//! connection (its toxicity) is decided by hashing the connection's random seed with the fault's
//! key: the decision is stable for the connection's life, identical in both flows, and needs no
//! shared mutable state.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::fault::partition::PartitionAction;
use crate::fault::{FaultKind, Flow, KindTag, Latency, Slicer};
use crate::metrics::{FaultCounters, RouteMetrics};
use crate::route::{ActiveFault, RouteSnapshot, RouteState};

/// Per-connection facts the plan depends on.
#[derive(Clone, Debug)]
pub struct ConnCtx {
    pub seed: u64,
    pub started: Instant,
    pub client: SocketAddr,
    pub upstream: Option<SocketAddr>,
}

/// How a connection is ended by a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Orderly close (FIN).
    Close,
    /// Abortive close (RST, via `SO_LINGER` 0).
    Reset,
}

#[derive(Clone, Debug, Default)]
pub struct FlowPlan {
    /// End the connection now.
    pub cut: Option<Cut>,
    /// Partition blackhole: read nothing, forward nothing, keep the connection open.
    pub hold: bool,
    /// Timeout fault: read and drop everything.
    pub drop_data: bool,
    /// Close the connection at this instant (timeout fault).
    pub close_at: Option<Instant>,
    /// Reset the connection at this instant (reset_peer fault).
    pub reset_at: Option<Instant>,
    /// limit_data: `(fault key, bytes)`.
    pub limit: Option<(u64, u64)>,
    pub latency: Option<Latency>,
    /// Bytes per second.
    pub bandwidth: Option<u64>,
    pub slicer: Option<Slicer>,
    pub slow_close: Option<Duration>,
    /// Faults this flow counts, once per connection: injected (its toxicity roll said yes) or
    /// passed (it said no).
    pub injected: Vec<Counted>,
}

impl FlowPlan {
    pub fn is_passthrough(&self) -> bool {
        self.cut.is_none()
            && !self.hold
            && !self.drop_data
            && self.close_at.is_none()
            && self.reset_at.is_none()
            && self.limit.is_none()
            && self.latency.is_none()
            && self.bandwidth.is_none()
            && self.slicer.is_none()
            && self.slow_close.is_none()
    }

    /// The next timer that ends the connection, and how.
    pub fn deadline(&self) -> Option<(Instant, Cut)> {
        match (self.close_at, self.reset_at) {
            (Some(c), Some(r)) if r <= c => Some((r, Cut::Reset)),
            (Some(c), _) => Some((c, Cut::Close)),
            (None, Some(r)) => Some((r, Cut::Reset)),
            (None, None) => None,
        }
    }

    /// Counts each newly seen fault once per connection, in `seen`: on the fault's own
    /// matched / injected / passed counters, and injected ones per kind on the route.
    pub fn count(&self, seen: &mut Vec<u64>, metrics: &RouteMetrics) {
        for c in &self.injected {
            if !seen.contains(&c.key) {
                seen.push(c.key);
                c.counters.record(c.injected);
                if c.injected {
                    metrics.injected(c.kind);
                }
            }
        }
    }
}

/// A fault this flow counts for a connection.
#[derive(Clone, Debug)]
pub struct Counted {
    pub key: u64,
    pub kind: KindTag,
    pub counters: std::sync::Arc<FaultCounters>,
    pub injected: bool,
}

/// Whether the fault applies to this connection at all (its toxicity roll).
pub fn affects(ctx: &ConnCtx, f: &ActiveFault) -> bool {
    f.fault.toxicity.admits(mix(ctx.seed ^ f.key))
}

/// splitmix64's finaliser: spreads a seed into a uniform 64-bit draw.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Both flows of the connection can take the fast path.
pub fn all_passthrough(snap: &RouteSnapshot, ctx: &ConnCtx) -> bool {
    snap.is_clean()
        || (build(snap, Flow::Upstream, ctx).is_passthrough()
            && build(snap, Flow::Downstream, ctx).is_passthrough())
}

pub fn build(snap: &RouteSnapshot, flow: Flow, ctx: &ConnCtx) -> FlowPlan {
    let mut plan = FlowPlan::default();
    match snap.state {
        RouteState::Serving => {}
        RouteState::Disabled | RouteState::Removed => {
            plan.cut = Some(Cut::Close);
            return plan;
        }
    }
    for af in snap.faults.iter() {
        let f = &af.fault;
        // down and partition act on the whole connection whatever their direction; they are
        // counted on the upstream flow. Flow faults are counted on the flow they act on (a
        // `both` fault on the upstream flow), so each is counted once per connection.
        if f.kind.tag().is_request_level() {
            continue; // applied per request by the HTTP data plane
        }
        let connection_wide = matches!(f.kind, FaultKind::Down(_) | FaultKind::Partition(_));
        if !connection_wide && !f.direction.covers(flow) {
            continue;
        }
        let counts_here = if connection_wide {
            flow == Flow::Upstream
        } else {
            f.direction == crate::fault::Direction::Both && flow == Flow::Upstream
                || f.direction != crate::fault::Direction::Both
        };
        let counted = |injected| Counted {
            key: af.key,
            kind: f.kind.tag(),
            counters: af.counters.clone(),
            injected,
        };
        if !affects(ctx, af) {
            // A partition only concerns the connections it separates.
            let concerns = match &f.kind {
                FaultKind::Partition(p) => {
                    p.separates(ctx.client.ip(), ctx.upstream.map(|u| u.ip()))
                }
                _ => true,
            };
            if counts_here && concerns {
                plan.injected.push(counted(false));
            }
            continue;
        }
        let start = ctx.started.max(af.since);
        let mut applied = true;
        match &f.kind {
            FaultKind::Latency(l) => {
                plan.latency = Some(plan.latency.map_or(*l, |p| p.plus(*l)));
            }
            FaultKind::Bandwidth(b) => {
                plan.bandwidth = Some(
                    plan.bandwidth
                        .map_or(b.bytes_per_sec, |p| p.min(b.bytes_per_sec)),
                );
            }
            FaultKind::Slicer(s) => plan.slicer = Some(*s),
            FaultKind::SlowClose(s) => {
                plan.slow_close = Some(plan.slow_close.map_or(s.delay, |p| p.max(s.delay)));
            }
            FaultKind::Timeout(t) => {
                plan.drop_data = true;
                if let Some(after) = t.closes_after() {
                    let at = start + after;
                    plan.close_at = Some(plan.close_at.map_or(at, |p| p.min(at)));
                }
            }
            FaultKind::ResetPeer(r) => {
                let at = start + r.timeout;
                plan.reset_at = Some(plan.reset_at.map_or(at, |p| p.min(at)));
            }
            FaultKind::LimitData(l) => {
                if plan.limit.is_none_or(|(_, b)| l.bytes < b) {
                    plan.limit = Some((af.key, l.bytes));
                }
            }
            FaultKind::Down(_) => plan.cut = Some(Cut::Close),
            FaultKind::HttpAbort(_)
            | FaultKind::HttpDelay(_)
            | FaultKind::HttpThrottle(_)
            | FaultKind::HttpReset(_)
            | FaultKind::GrpcAbort(_)
            | FaultKind::GrpcStream(_) => applied = false,
            FaultKind::Partition(p) => {
                if p.separates(ctx.client.ip(), ctx.upstream.map(|u| u.ip())) {
                    match p.action {
                        PartitionAction::Refuse => plan.cut = Some(Cut::Reset),
                        PartitionAction::Blackhole => plan.hold = true,
                    }
                } else {
                    applied = false;
                }
            }
        }
        if applied && counts_here {
            plan.injected.push(counted(true));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fault::{Direction, Fault, Origin, Probability, ResetPeer};
    use crate::route::Upstream;

    fn snap(faults: Vec<Fault>) -> RouteSnapshot {
        let now = Instant::now();
        RouteSnapshot {
            name: "r".into(),
            upstream: Upstream::Addr("127.0.0.1:1".parse().unwrap()),
            protocol: crate::route::Protocol::Tcp,
            http: Default::default(),
            state: RouteState::Serving,
            faults: faults
                .into_iter()
                .enumerate()
                .map(|(i, fault)| ActiveFault {
                    key: i as u64 + 1,
                    since: now,
                    fault,
                    counters: Default::default(),
                })
                .collect(),
            metrics: Arc::new(RouteMetrics::default()),
        }
    }

    fn fault(kind: FaultKind, direction: Direction, p: f64) -> Fault {
        Fault {
            name: "f".into(),
            kind,
            direction,
            toxicity: Probability::new(p).unwrap(),
            expires_at: None,
            origin: Origin::Admin,
            matcher: None,
            cohort: None,
        }
    }

    fn ctx(seed: u64) -> ConnCtx {
        ConnCtx {
            seed,
            started: Instant::now(),
            client: "127.0.0.1:5000".parse().unwrap(),
            upstream: None,
        }
    }

    #[test]
    fn a_fault_acts_only_on_its_direction() {
        let lat = FaultKind::Latency(Latency {
            latency: Duration::from_millis(5),
            jitter: Duration::ZERO,
        });
        let s = snap(vec![fault(lat, Direction::Downstream, 1.0)]);
        assert!(build(&s, Flow::Upstream, &ctx(1)).is_passthrough());
        assert!(build(&s, Flow::Downstream, &ctx(1)).latency.is_some());
        assert!(!all_passthrough(&s, &ctx(1)));
    }

    #[test]
    fn toxicity_is_decided_per_connection_and_lands_near_its_ratio() {
        let kind = FaultKind::ResetPeer(ResetPeer {
            timeout: Duration::ZERO,
        });
        let s = snap(vec![fault(kind, Direction::Both, 0.3)]);
        let hit = (0..10_000u64)
            .filter(|&seed| {
                build(&s, Flow::Upstream, &ctx(mix(seed)))
                    .reset_at
                    .is_some()
            })
            .count();
        assert!((2700..3300).contains(&hit), "{hit}");
        // The same connection gets the same answer in both flows.
        for seed in 0..100 {
            let c = ctx(mix(seed));
            assert_eq!(
                build(&s, Flow::Upstream, &c).reset_at.is_some(),
                build(&s, Flow::Downstream, &c).reset_at.is_some()
            );
        }
    }

    #[test]
    fn a_both_direction_fault_is_counted_once() {
        let kind = FaultKind::ResetPeer(ResetPeer {
            timeout: Duration::ZERO,
        });
        let s = snap(vec![fault(kind, Direction::Both, 1.0)]);
        let c = ctx(7);
        assert_eq!(build(&s, Flow::Upstream, &c).injected.len(), 1);
        assert_eq!(build(&s, Flow::Downstream, &c).injected.len(), 0);
    }
}
