//! Whether an agent the selector matches can take an experiment's faults: it must have every
//! route the faults name, and each of those routes must speak a protocol its faults act on.
//! The agent applies a desired state all or nothing, so one fault it cannot place would make
//! it refuse the experiment's whole lease; such agents are skipped with the reason instead.

use faultline_agent::fault::KindTag;
use faultline_agent::route::Protocol;

use super::AgentInfo;
use crate::spec::Experiment;

/// The routes `exp` puts faults on, each once, in spec order.
pub(super) fn fault_routes(exp: &Experiment) -> Vec<&str> {
    let mut routes: Vec<&str> = Vec::new();
    for (route, _) in &exp.faults {
        if !routes.contains(&route.as_str()) {
            routes.push(route);
        }
    }
    routes
}

/// Why `agent` cannot take the faults of `exp`, or `None` when it can. The selector is the
/// caller's business.
pub(super) fn unfit(exp: &Experiment, agent: &AgentInfo) -> Option<String> {
    let mut missing = Vec::new();
    let mut reasons = Vec::new();
    for route in fault_routes(exp) {
        let Some(&protocol) = agent.routes.get(route) else {
            missing.push(route);
            continue;
        };
        for (_, fault) in exp.faults.iter().filter(|(r, _)| r == route) {
            let tag = fault.kind.tag();
            if !fits(protocol, tag) {
                reasons.push(format!(
                    "route {route} is {protocol}, where a {} fault cannot act",
                    tag.name()
                ));
            }
        }
    }
    if !missing.is_empty() {
        let s = if missing.len() == 1 { "" } else { "s" };
        reasons.insert(0, format!("lacks route{s} {}", missing.join(", ")));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Whether a fault of kind `tag` can go on a route speaking `protocol`: byte-level faults need
/// the TCP data plane, request-level faults an HTTP or gRPC route; `down` and `partition` act
/// at admission on any route. An `auto` (captured) route takes every kind: it carries TCP and
/// HTTP connections both, and each fault acts on the connections it fits.
///
/// This is the agent's own rule (`check_protocol` in `agent/src/route/table.rs`, private to
/// that crate), repeated here so the controller skips an agent instead of sending it a lease
/// it would refuse. Keep the two in step.
fn fits(protocol: Protocol, tag: KindTag) -> bool {
    if protocol == Protocol::Auto {
        true
    } else if protocol.is_http() {
        tag.is_request_level() || matches!(tag, KindTag::Down | KindTag::Partition)
    } else {
        !tag.is_request_level()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_fit_follows_the_agent() {
        use KindTag::*;
        let cases = [
            (Latency, [true, false, false, true]),
            (Bandwidth, [true, false, false, true]),
            (ResetPeer, [true, false, false, true]),
            (Down, [true, true, true, true]),
            (Partition, [true, true, true, true]),
            (HttpAbort, [false, true, true, true]),
            (HttpDelay, [false, true, true, true]),
            (GrpcAbort, [false, true, true, true]),
        ];
        let protocols = [
            Protocol::Tcp,
            Protocol::Http,
            Protocol::Grpc,
            Protocol::Auto,
        ];
        for (tag, want) in cases {
            let got = protocols.map(|p| fits(p, tag));
            assert_eq!(got, want, "{tag:?} on tcp, http, grpc, auto");
        }
    }
}
