//! One admission request to its answer: leave the pod alone, refuse it (its annotations ask for
//! something that cannot be done, with the message naming the annotation), or inject it (the
//! JSON Patch).

use serde_json::{Map, Value, json};

use super::annotations::{self, AnnotationError};
use super::config::InjectConfig;
use super::patch::{self, Op};
use super::review::{AdmissionRequest, AdmissionResponse};
use super::sidecar;
use super::syntax::Capture;

/// The value of `faultline.dev/status` on injected pods.
pub const INJECTED: &str = "injected";

/// What the webhook does with a pod.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Allowed unchanged; the reason is for the log.
    Skip(&'static str),
    /// Refused with this message.
    Deny(String),
    /// Allowed with these operations.
    Inject(Vec<Op>),
}

/// The answer to `request`.
pub fn review(request: AdmissionRequest, config: &InjectConfig) -> AdmissionResponse {
    let decision = decide(&request, config);
    let uid = request.uid;
    match decision {
        Decision::Skip(reason) => {
            tracing::debug!(%uid, reason, "pod left alone");
            AdmissionResponse::allow(uid)
        }
        Decision::Deny(message) => {
            tracing::info!(%uid, namespace = %request.namespace, %message, "pod refused");
            AdmissionResponse::deny(uid, message)
        }
        Decision::Inject(ops) => {
            tracing::info!(%uid, namespace = %request.namespace, "agent injected");
            AdmissionResponse::patch(uid, &ops)
        }
    }
}

/// What to do with the pod in `request`.
pub fn decide(request: &AdmissionRequest, config: &InjectConfig) -> Decision {
    if !request.kind.is_pod() {
        return Decision::Skip("not a pod");
    }
    if request.operation != "CREATE" {
        return Decision::Skip("not a creation");
    }
    let pod = &request.object;
    let Some(spec) = pod.get("spec").filter(|s| s.is_object()) else {
        return Decision::Skip("no pod spec");
    };
    let list = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let named = |list: &[Value], name: &str| list.iter().any(|c| c["name"] == name);
    // Before the annotations: a pod that has the agent (as a container or a native sidecar)
    // is never refused or patched again.
    if named(list("containers"), sidecar::AGENT) || named(list("initContainers"), sidecar::AGENT) {
        return Decision::Skip("already injected");
    }
    let empty = Map::new();
    let annotations = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let options = match annotations::read(annotations, config) {
        Ok(None) => return Decision::Skip("not annotated faultline.dev/inject: \"true\""),
        Ok(Some(options)) => options,
        Err(AnnotationError {
            annotation,
            message,
        }) => {
            return Decision::Deny(format!("faultline: annotation {annotation}: {message}"));
        }
    };
    if named(list("initContainers"), sidecar::INIT) {
        return Decision::Deny(format!(
            "faultline: the pod already has an init container named {} but no {} container",
            sidecar::INIT,
            sidecar::AGENT
        ));
    }
    if options.capture != Capture::None && spec["hostNetwork"] == json!(true) {
        return Decision::Deny(format!(
            "faultline: annotation {}: a hostNetwork pod shares the node's network, whose \
             traffic the init container would redirect; use {}: none",
            annotations::CAPTURE,
            annotations::CAPTURE
        ));
    }
    if config.tls.is_some() && named(list("volumes"), sidecar::TLS_VOLUME) {
        return Decision::Deny(format!(
            "faultline: the pod already has a volume named {}",
            sidecar::TLS_VOLUME
        ));
    }

    let mut labels: Vec<&str> = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    labels.sort_unstable();

    let mut ops = vec![patch::insert(
        &pod["metadata"],
        "/metadata",
        "annotations",
        annotations::STATUS,
        json!(INJECTED),
    )];
    let mut init = Vec::new();
    if options.capture != Capture::None {
        init.push(sidecar::init(config, &options));
    }
    let agent = sidecar::agent(config, &options, &labels);
    let containers = if options.native_sidecar {
        // After the iptables init container: both run after the pod's own init containers.
        init.push(agent);
        Vec::new()
    } else {
        vec![agent]
    };
    if !init.is_empty() {
        ops.extend(patch::append(spec, "/spec", "initContainers", init));
    }
    if !containers.is_empty() {
        ops.extend(patch::append(spec, "/spec", "containers", containers));
    }
    if let Some(volume) = sidecar::tls_volume(config) {
        ops.extend(patch::append(spec, "/spec", "volumes", vec![volume]));
    }
    Decision::Inject(ops)
}
