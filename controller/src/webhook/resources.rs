//! The agent's and init container's CPU and memory requests and limits: from the inject config,
//! overridden per pod by annotations, checked (a request above its limit is refused) and written
//! as a container's `resources`.

use serde_json::{Map, Value, json};

use super::quantity::Quantity;

/// Requests and limits; `None` leaves one out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub cpu_request: Option<Quantity>,
    pub cpu_limit: Option<Quantity>,
    pub memory_request: Option<Quantity>,
    pub memory_limit: Option<Quantity>,
}

impl Resources {
    /// The first pair whose request is above its limit, as (resource, request, limit).
    pub fn request_above_limit(&self) -> Option<(&'static str, &Quantity, &Quantity)> {
        [
            ("cpu", &self.cpu_request, &self.cpu_limit),
            ("memory", &self.memory_request, &self.memory_limit),
        ]
        .into_iter()
        .find_map(|(name, request, limit)| match (request, limit) {
            (Some(r), Some(l)) if r.value() > l.value() => Some((name, r, l)),
            _ => None,
        })
    }

    /// A container's `resources` object.
    pub fn to_json(&self) -> Value {
        let pair = |cpu: &Option<Quantity>, memory: &Option<Quantity>| {
            let mut m = Map::new();
            if let Some(q) = cpu {
                m.insert("cpu".into(), json!(q.as_str()));
            }
            if let Some(q) = memory {
                m.insert("memory".into(), json!(q.as_str()));
            }
            m
        };
        let mut out = Map::new();
        let requests = pair(&self.cpu_request, &self.memory_request);
        if !requests.is_empty() {
            out.insert("requests".into(), Value::Object(requests));
        }
        let limits = pair(&self.cpu_limit, &self.memory_limit);
        if !limits.is_empty() {
            out.insert("limits".into(), Value::Object(limits));
        }
        Value::Object(out)
    }
}
