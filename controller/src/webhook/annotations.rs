//! The pod annotations that ask for the agent and tune it, read into [`Options`]. A value that
//! cannot be used is an [`AnnotationError`] naming the annotation; the webhook refuses the pod
//! with it rather than inject something other than what was asked.
//!
//! | annotation | value | default |
//! |---|---|---|
//! | `faultline.dev/inject` | `"true"` or `"false"` | not injected |
//! | `faultline.dev/capture` | `outbound`, `inbound`, `both`, `none` | the inject config's `capture` |
//! | `faultline.dev/inbound-ports` | `*` or `P,P,...` | `*` |
//! | `faultline.dev/exclude-inbound-ports` | `P,P,...` | none (the agent's ports always are) |
//! | `faultline.dev/exclude-outbound-ports` | `P,P,...` | none |
//! | `faultline.dev/exclude-outbound-cidrs` | `CIDR,CIDR,...` | none |
//! | `faultline.dev/cpu-request`, `cpu-limit`, `memory-request`, `memory-limit` | a quantity | the inject config's `resources` |
//! | `faultline.dev/native-sidecar` | `"true"` or `"false"` | the inject config's `nativeSidecar` |
//! | `faultline.dev/ipv6` | `"true"` or `"false"` | the inject config's `ipv6` |
//!
//! Any other `faultline.dev/` annotation on a pod that asks for injection is refused as a likely
//! typo, except `faultline.dev/status`, which the webhook writes itself.

use std::fmt;

use serde_json::{Map, Value};

use super::config::InjectConfig;
use super::quantity::Quantity;
use super::resources::Resources;
use super::syntax::{self, Capture, Cidr, InboundPorts};

pub const INJECT: &str = "faultline.dev/inject";
pub const CAPTURE: &str = "faultline.dev/capture";
pub const INBOUND_PORTS: &str = "faultline.dev/inbound-ports";
pub const EXCLUDE_INBOUND_PORTS: &str = "faultline.dev/exclude-inbound-ports";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "faultline.dev/exclude-outbound-ports";
pub const EXCLUDE_OUTBOUND_CIDRS: &str = "faultline.dev/exclude-outbound-cidrs";
pub const CPU_REQUEST: &str = "faultline.dev/cpu-request";
pub const CPU_LIMIT: &str = "faultline.dev/cpu-limit";
pub const MEMORY_REQUEST: &str = "faultline.dev/memory-request";
pub const MEMORY_LIMIT: &str = "faultline.dev/memory-limit";
pub const NATIVE_SIDECAR: &str = "faultline.dev/native-sidecar";
pub const IPV6: &str = "faultline.dev/ipv6";
/// Written by the webhook on the pods it injects.
pub const STATUS: &str = "faultline.dev/status";

/// The annotations a pod may carry to ask for and tune the agent.
const SETTABLE: [&str; 12] = [
    INJECT,
    CAPTURE,
    INBOUND_PORTS,
    EXCLUDE_INBOUND_PORTS,
    EXCLUDE_OUTBOUND_PORTS,
    EXCLUDE_OUTBOUND_CIDRS,
    CPU_REQUEST,
    CPU_LIMIT,
    MEMORY_REQUEST,
    MEMORY_LIMIT,
    NATIVE_SIDECAR,
    IPV6,
];

/// What one pod gets: its annotations merged over the inject config.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub capture: Capture,
    pub inbound_ports: InboundPorts,
    /// The config's, the annotation's and the agent's own ports.
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    pub resources: Resources,
    /// The agent runs as a Kubernetes native sidecar (an init container with
    /// `restartPolicy: Always`, Kubernetes 1.29 and later) instead of an ordinary container.
    pub native_sidecar: bool,
    /// IPv6 is captured too (`init-iptables --ipv6`), and the agent's capture and health
    /// listeners bind `[::]`, dual-stack, which takes IPv4 as well.
    pub ipv6: bool,
}

/// An annotation whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: String,
    pub message: String,
}

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "annotation {}: {}", self.annotation, self.message)
    }
}

impl std::error::Error for AnnotationError {}

fn error(annotation: &str, message: impl Into<String>) -> AnnotationError {
    AnnotationError {
        annotation: annotation.to_owned(),
        message: message.into(),
    }
}

/// Whether the pod asks for the agent (`None`: it does not), and with which options.
pub fn read(
    annotations: &Map<String, Value>,
    config: &InjectConfig,
) -> Result<Option<Options>, AnnotationError> {
    let get = |name: &str| -> Result<Option<&str>, AnnotationError> {
        match annotations.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Err(error(name, "is empty")),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(error(name, format!("{other} is not a string"))),
        }
    };
    match get(INJECT)?.map(str::trim) {
        None | Some("false") => return Ok(None),
        Some("true") => {}
        Some(other) => {
            return Err(error(
                INJECT,
                format!("{other:?} is not \"true\" or \"false\""),
            ));
        }
    }
    if let Some(unknown) = annotations.keys().find(|k| {
        k.starts_with("faultline.dev/") && !SETTABLE.contains(&k.as_str()) && *k != STATUS
    }) {
        return Err(error(
            unknown,
            format!(
                "is not a faultline annotation; known: {}",
                SETTABLE.join(", ")
            ),
        ));
    }

    let flag = |name: &str, default: bool| match get(name)?.map(str::trim) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(error(
            name,
            format!("{other:?} is not \"true\" or \"false\""),
        )),
    };
    let native_sidecar = flag(NATIVE_SIDECAR, config.native_sidecar)?;
    let ipv6 = flag(IPV6, config.ipv6)?;
    let capture = match get(CAPTURE)? {
        Some(s) => s.parse().map_err(|e| error(CAPTURE, e))?,
        None => config.capture,
    };
    // A port or CIDR annotation for a direction that is not captured would be silently ignored.
    let needs = |name: &str, captured: bool, what: &str| {
        if annotations.contains_key(name) && !captured {
            return Err(error(
                name,
                format!("has no effect unless {CAPTURE} is {what} (it is {capture})"),
            ));
        }
        Ok(())
    };
    needs(INBOUND_PORTS, capture.inbound(), "inbound or both")?;
    needs(EXCLUDE_INBOUND_PORTS, capture.inbound(), "inbound or both")?;
    needs(
        EXCLUDE_OUTBOUND_PORTS,
        capture.outbound(),
        "outbound or both",
    )?;
    needs(
        EXCLUDE_OUTBOUND_CIDRS,
        capture.outbound(),
        "outbound or both",
    )?;

    let agent_ports = config.agent_ports();
    let inbound_ports = match get(INBOUND_PORTS)? {
        Some(s) => syntax::inbound_ports(s).map_err(|e| error(INBOUND_PORTS, e))?,
        None => InboundPorts::All,
    };
    if let InboundPorts::Only(ports) = &inbound_ports
        && let Some(p) = ports.iter().find(|p| agent_ports.contains(p))
    {
        return Err(error(
            INBOUND_PORTS,
            format!(
                "{p} is one of the agent's own ports ({}), never captured",
                syntax::join(&agent_ports)
            ),
        ));
    }
    let mut exclude_inbound_ports = config.exclude_inbound_ports.clone();
    if let Some(s) = get(EXCLUDE_INBOUND_PORTS)? {
        exclude_inbound_ports
            .extend(syntax::ports(s).map_err(|e| error(EXCLUDE_INBOUND_PORTS, e))?);
    }
    exclude_inbound_ports.extend(agent_ports);
    let mut exclude_outbound_ports = config.exclude_outbound_ports.clone();
    if let Some(s) = get(EXCLUDE_OUTBOUND_PORTS)? {
        exclude_outbound_ports
            .extend(syntax::ports(s).map_err(|e| error(EXCLUDE_OUTBOUND_PORTS, e))?);
    }
    let mut exclude_outbound_cidrs = config.exclude_outbound_cidrs.clone();
    if let Some(s) = get(EXCLUDE_OUTBOUND_CIDRS)? {
        exclude_outbound_cidrs
            .extend(syntax::cidrs(s).map_err(|e| error(EXCLUDE_OUTBOUND_CIDRS, e))?);
    }

    let mut resources = config.resources.clone();
    for (name, slot) in [
        (CPU_REQUEST, &mut resources.cpu_request),
        (CPU_LIMIT, &mut resources.cpu_limit),
        (MEMORY_REQUEST, &mut resources.memory_request),
        (MEMORY_LIMIT, &mut resources.memory_limit),
    ] {
        if let Some(s) = get(name)? {
            *slot = Some(Quantity::parse(s.trim()).map_err(|e| error(name, e))?);
        }
    }
    if let Some((kind, request, limit)) = resources.request_above_limit() {
        let (req_name, lim_name) = match kind {
            "cpu" => (CPU_REQUEST, CPU_LIMIT),
            _ => (MEMORY_REQUEST, MEMORY_LIMIT),
        };
        let blamed = if annotations.contains_key(req_name) {
            req_name
        } else {
            lim_name
        };
        return Err(error(
            blamed,
            format!("the {kind} request {request} is above the limit {limit}"),
        ));
    }

    Ok(Some(Options {
        capture,
        inbound_ports,
        exclude_inbound_ports: dedup(exclude_inbound_ports),
        exclude_outbound_ports: dedup(exclude_outbound_ports),
        exclude_outbound_cidrs: dedup(exclude_outbound_cidrs),
        resources,
        native_sidecar,
        ipv6,
    }))
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}
