//! The containers and volume the webhook adds to a pod, as Kubernetes JSON.
//!
//! - `faultline-agent`: the agent, as the fixed non-root user of the inject config (`uid`), which
//!   the init container's rules exempt from capture so the agent's own upstream connections
//!   are not sent back to itself; read-only root, no privilege escalation, every capability
//!   dropped except `NET_ADMIN` when it marks its sockets (`mark`, `SO_MARK` needs it). Its
//!   admin API stays on loopback; the kubelet probes its health listener (`healthListen`):
//!   `/ready` (not ready while it drains) and `/version`; Prometheus can scrape the agent's
//!   `/metrics` on the same port. No `ports` entry is declared: a name there could clash with
//!   the app's, and the probes do not need one.
//!   As a native sidecar (`nativeSidecar`, `faultline.dev/native-sidecar`; Kubernetes 1.29+)
//!   it is an init container with `restartPolicy: Always` right after `faultline-init`: the
//!   app's containers start once its startup probe passes (so the app never sends into a
//!   capture port nobody listens on yet), and the kubelet stops it after them, so a Job's pod
//!   completes.
//! - `faultline-init`: `faultline-agent init-iptables`, as root with `NET_ADMIN` and `NET_RAW`
//!   only, which installs the pod's redirect rules and exits. It is appended *after* the pod's
//!   own init containers: those run before any redirect exists, when no agent would be there to
//!   take their connections.

use serde_json::{Value, json};

use super::annotations::Options;
use super::config::InjectConfig;
use super::env;
use super::syntax::{self, Capture};

pub const AGENT: &str = "faultline-agent";
pub const INIT: &str = "faultline-init";
/// The volume of the agent's TLS Secret.
pub const TLS_VOLUME: &str = "faultline-agent-tls";

/// The agent container.
pub fn agent(config: &InjectConfig, options: &Options, labels: &[&str]) -> Value {
    let mut capabilities = json!({"drop": ["ALL"]});
    if config.mark.is_some() && options.capture != Capture::None {
        capabilities["add"] = json!(["NET_ADMIN"]);
    }
    let health = config.health.port();
    let mut container = json!({
        "name": AGENT,
        "image": config.image,
        "imagePullPolicy": config.pull_policy,
        "env": env::agent_env(config, labels, options),
        "resources": options.resources.to_json(),
        "securityContext": {
            "runAsUser": config.uid,
            "runAsGroup": config.uid,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": capabilities,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": health},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/version", "port": health},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if let Some(tls) = &config.tls {
        container["volumeMounts"] = json!([
            {"name": TLS_VOLUME, "mountPath": tls.mount_path, "readOnly": true}
        ]);
    }
    if options.native_sidecar {
        container["restartPolicy"] = json!("Always");
        // Up to a minute to start (image pull aside); the app's containers wait for it.
        container["startupProbe"] = json!({
            "httpGet": {"path": "/ready", "port": health},
            "periodSeconds": 1,
            "failureThreshold": 60,
        });
    }
    container
}

/// The init container, for a pod that captures traffic (`options.capture` is not `none`).
pub fn init(config: &InjectConfig, options: &Options) -> Value {
    let mut args: Vec<String> = vec!["init-iptables".into()];
    let mut flag = |name: &str, value: String| {
        args.push(name.into());
        args.push(value);
    };
    if options.capture.outbound() {
        flag("--outbound-port", config.outbound_port.to_string());
        if !options.exclude_outbound_ports.is_empty() {
            flag(
                "--exclude-outbound-ports",
                syntax::join(&options.exclude_outbound_ports),
            );
        }
        if !options.exclude_outbound_cidrs.is_empty() {
            flag(
                "--exclude-outbound-cidrs",
                syntax::join(&options.exclude_outbound_cidrs),
            );
        }
    }
    if options.capture.inbound() {
        flag("--inbound-port", config.inbound_port.to_string());
        flag("--inbound-ports", options.inbound_ports.to_string());
        flag(
            "--exclude-inbound-ports",
            syntax::join(&options.exclude_inbound_ports),
        );
    }
    flag("--uid", config.uid.to_string());
    if let Some(mark) = config.mark {
        flag("--mark", mark.to_string());
    }
    if options.ipv6 {
        args.push("--ipv6".into());
    }
    json!({
        "name": INIT,
        "image": config.image,
        "imagePullPolicy": config.pull_policy,
        "args": args,
        "resources": config.init_resources.to_json(),
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            // iptables takes its lock file under /run.
            "readOnlyRootFilesystem": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    })
}

/// The Secret volume of the agent's TLS files, when the config names one: readable by all
/// (0444), since the agent is not root; no other container mounts it.
pub fn tls_volume(config: &InjectConfig) -> Option<Value> {
    config.tls.as_ref().map(|tls| {
        json!({
            "name": TLS_VOLUME,
            "secret": {"secretName": tls.secret_name, "defaultMode": 0o444},
        })
    })
}
