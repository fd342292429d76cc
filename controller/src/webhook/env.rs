//! The agent's environment that depends on the pod: its identity and labels through the
//! Downward API, its admin and health listeners, and the capture listeners its annotations ask
//! for. Everything else in the agent's environment comes from the chart
//! (`helm/faultline/templates/_agent-env.tpl`, through the inject config's `env`), so the two
//! never set the same variable ([`is_reserved`]).
//!
//! Labels: the agent takes them as one variable, `FAULTLINE_LABELS=k1=v1,k2=v2`. A Downward API
//! `fieldRef` yields one label per variable (`metadata.labels['app.kubernetes.io/name']`), so
//! each label gets its own `FAULTLINE_LABEL_<i>` and `FAULTLINE_LABELS` is composed from them
//! with Kubernetes' `$(VAR)` expansion, which only sees variables defined *earlier* in the same
//! container, hence the order. Label keys and values cannot contain `$`, `(`, `)` or `,`, so the
//! expansion cannot be fooled and the list cannot be misread. The keys are those the pod has
//! at admission; the values are read by the kubelet when the container starts.

use serde_json::{Value, json};

use std::net::{Ipv6Addr, SocketAddr};

use super::annotations::Options;
use super::config::InjectConfig;
use super::syntax::Capture;

pub const POD_NAME: &str = "FAULTLINE_POD_NAME";
pub const POD_NAMESPACE: &str = "FAULTLINE_POD_NAMESPACE";
pub const AGENT_ID: &str = "FAULTLINE_AGENT_ID";
pub const LABELS: &str = "FAULTLINE_LABELS";
/// `FAULTLINE_LABEL_0`, `FAULTLINE_LABEL_1`, ...: one label each.
pub const LABEL_PREFIX: &str = "FAULTLINE_LABEL_";
pub const ADMIN: &str = "FAULTLINE_ADMIN";
pub const HEALTH: &str = "FAULTLINE_HEALTH";
pub const CAPTURE_OUTBOUND: &str = "FAULTLINE_CAPTURE_OUTBOUND";
pub const CAPTURE_INBOUND: &str = "FAULTLINE_CAPTURE_INBOUND";
pub const MARK: &str = "FAULTLINE_MARK";

const SET_HERE: [&str; 9] = [
    POD_NAME,
    POD_NAMESPACE,
    AGENT_ID,
    LABELS,
    ADMIN,
    HEALTH,
    CAPTURE_OUTBOUND,
    CAPTURE_INBOUND,
    MARK,
];

/// Whether the webhook sets `name` itself.
pub fn is_reserved(name: &str) -> bool {
    SET_HERE.contains(&name) || name.starts_with(LABEL_PREFIX)
}

/// The pod-dependent variables, in the order `$(VAR)` expansion needs, then the config's.
/// `labels` are the pod's label keys, sorted.
///
/// The capture listeners bind every address: `0.0.0.0`, or `[::]` in a pod that captures IPv6
/// (a dual-stack socket, which takes IPv4 too). In such a pod a health listener left on
/// `0.0.0.0` moves to `[::]` as well, so the kubelet can probe an IPv6 pod address.
pub fn agent_env(config: &InjectConfig, labels: &[&str], options: &Options) -> Vec<Value> {
    let capture = options.capture;
    let mut env = vec![
        field_ref(POD_NAME, "metadata.name"),
        field_ref(POD_NAMESPACE, "metadata.namespace"),
        // Unique in the cluster and stable for the pod's life; a Deployment's pod gets its name
        // (generateName) after admission, which the Downward API reads at start.
        json!({"name": AGENT_ID, "value": format!("$({POD_NAMESPACE})/$({POD_NAME})")}),
    ];
    let mut composed = Vec::with_capacity(labels.len());
    for (i, key) in labels.iter().enumerate() {
        let var = format!("{LABEL_PREFIX}{i}");
        env.push(field_ref(&var, &format!("metadata.labels['{key}']")));
        composed.push(format!("{key}=$({var})"));
    }
    if !composed.is_empty() {
        env.push(json!({"name": LABELS, "value": composed.join(",")}));
    }
    env.push(json!({"name": ADMIN, "value": config.admin.to_string()}));
    let any = |port: u16| {
        if options.ipv6 {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
        } else {
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    };
    let health = match config.health {
        SocketAddr::V4(a) if a.ip().is_unspecified() => any(a.port()),
        other => other,
    };
    env.push(json!({"name": HEALTH, "value": health.to_string()}));
    if capture.outbound() {
        env.push(json!({"name": CAPTURE_OUTBOUND, "value": any(config.outbound_port).to_string()}));
    }
    if capture.inbound() {
        env.push(json!({"name": CAPTURE_INBOUND, "value": any(config.inbound_port).to_string()}));
    }
    if let (Some(mark), true) = (config.mark, capture != Capture::None) {
        env.push(json!({"name": MARK, "value": mark.to_string()}));
    }
    env.extend(config.env.iter().cloned());
    env
}

fn field_ref(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}
