//! Local guards: the in-band guards marked `local`, as the desired state gives them to each
//! targeted agent, which judges its own traffic and clears the experiment's faults itself.

use faultline_agent::control::convert::duration_to_proto;
use faultline_proto::v1;

use crate::spec::{self, Condition, Metric, NoData, Source};
use crate::targets::AgentInfo;

/// The local guards `exp` gives `agent`: its in-band guards marked `local` on a route the
/// agent has, each clearing the experiment's faults.
pub(super) fn local_guards(exp: &spec::Experiment, agent: &AgentInfo) -> Vec<v1::LocalGuard> {
    let faults: Vec<v1::FaultRef> = exp
        .faults
        .iter()
        .filter(|(route, _)| agent.routes.contains_key(route))
        .map(|(route, f)| v1::FaultRef {
            route: route.clone(),
            name: f.name.clone(),
        })
        .collect();
    exp.guards
        .iter()
        .filter_map(|g| {
            let Source::Agents(a) = &g.source else {
                return None;
            };
            if !a.local || !agent.routes.contains_key(&a.route) || faults.is_empty() {
                return None;
            }
            let kind = match &a.metric {
                Metric::ErrorRate { grpc_codes } => {
                    v1::guard_metric::Kind::ErrorRate(v1::ErrorRate {
                        grpc_codes: if *grpc_codes == spec::GrpcCodes::NOT_OK {
                            Vec::new()
                        } else {
                            grpc_codes.codes().collect()
                        },
                    })
                }
                Metric::Latency { quantile } => v1::guard_metric::Kind::LatencyQuantile(*quantile),
                Metric::RequestRate => v1::guard_metric::Kind::RequestRate(v1::RequestRate {}),
            };
            let comparison = match g.condition {
                Condition::Above(_) => v1::Comparison::Above,
                Condition::Below(_) => v1::Comparison::Below,
            };
            Some(v1::LocalGuard {
                name: g.name.clone(),
                experiment: exp.name.clone(),
                route: a.route.clone(),
                metric: Some(v1::GuardMetric { kind: Some(kind) }),
                comparison: comparison as i32,
                threshold: g.condition.threshold(),
                window: Some(duration_to_proto(g.window)),
                hold: Some(duration_to_proto(g.hold)),
                min_requests: a.min_requests,
                trip_on_no_data: a.no_data == NoData::Trip,
                faults: faults.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use faultline_agent::route::Protocol;

    const SPEC: &str = "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {name: local}
spec:
  targets: {all: true}
  faults:
    - {route: api, name: abort, type: http_abort, attributes: {status: 503}}
    - {route: db, name: slow, type: latency, attributes: {latency: 50}}
  duration: 1m
  guards:
    - name: mine
      agents: {route: api, metric: latency, quantile: 0.99, minRequests: 5, noData: trip, local: true}
      above: 0.25
      window: 2s
      for: 500ms
    - name: central
      agents: {route: api, metric: errorRate}
      above: 0.05
      window: 2s
";

    fn agent(routes: &[&str]) -> AgentInfo {
        AgentInfo {
            id: "a".into(),
            labels: Default::default(),
            routes: routes
                .iter()
                .map(|r| (r.to_string(), Protocol::Http))
                .collect(),
        }
    }

    #[test]
    fn local_guards_go_to_agents_with_the_route_and_name_the_faults_they_clear() {
        let exp = spec::Experiment::parse(SPEC).unwrap();
        let guards = local_guards(&exp, &agent(&["api", "db"]));
        assert_eq!(guards.len(), 1, "only the guard marked local");
        let g = &guards[0];
        assert_eq!(
            (g.name.as_str(), g.experiment.as_str(), g.route.as_str()),
            ("mine", "local", "api")
        );
        assert_eq!(
            g.metric.as_ref().unwrap().kind,
            Some(v1::guard_metric::Kind::LatencyQuantile(0.99))
        );
        assert_eq!(g.comparison(), v1::Comparison::Above);
        assert_eq!(g.threshold, 0.25);
        assert_eq!(g.window, Some(duration_to_proto(Duration::from_secs(2))));
        assert_eq!(g.hold, Some(duration_to_proto(Duration::from_millis(500))));
        assert_eq!(g.min_requests, 5);
        assert!(g.trip_on_no_data);
        let faults: Vec<(&str, &str)> = g
            .faults
            .iter()
            .map(|f| (f.route.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(faults, [("api", "abort"), ("db", "slow")]);
        // An agent without the guard's route gets no local guard; one with only that route
        // clears only the faults it runs.
        assert!(local_guards(&exp, &agent(&["db"])).is_empty());
        let only_api = local_guards(&exp, &agent(&["api"]));
        assert_eq!(only_api[0].faults.len(), 1);
    }
}
