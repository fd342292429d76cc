//! JSON Patch (RFC 6902) operations, as few as the webhook needs: `add`, with a JSON Pointer
//! (RFC 6901) path. A pointer token escapes `~` as `~0` and `/` as `~1`, so the annotation
//! `faultline.dev/status` is `/metadata/annotations/faultline.dev~1status`.
//!
//! `add` on an array member needs the array: `/spec/initContainers/-` fails on a pod without
//! init containers, so [`append`] adds the whole array when it is missing.

use serde::Serialize;
use serde_json::Value;

/// One operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    op: &'static str,
    path: String,
    value: Value,
}

impl Op {
    /// `add` at `path` (already a pointer).
    pub fn add(path: String, value: Value) -> Op {
        Op {
            op: "add",
            path,
            value,
        }
    }
}

/// `token` escaped for a JSON Pointer.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Appends `items` to the array at `path` in `parent` (the object holding it, as read from the
/// pod): one `add` of the whole array if the pod has none, otherwise one `add .../-` per item.
pub fn append(parent: &Value, path: &str, key: &str, items: Vec<Value>) -> Vec<Op> {
    let pointer = format!("{path}/{}", escape(key));
    match parent.get(key) {
        Some(Value::Array(_)) => items
            .into_iter()
            .map(|v| Op::add(format!("{pointer}/-"), v))
            .collect(),
        // Missing or `null` (a client may send `"volumes": null`): `add` replaces it.
        _ if items.is_empty() => Vec::new(),
        _ => vec![Op::add(pointer, Value::Array(items))],
    }
}

/// Sets `key` in the object at `path` in `parent`: `add .../key` if the object exists,
/// otherwise `add` of the object with that one member.
pub fn insert(parent: &Value, path: &str, object: &str, key: &str, value: Value) -> Op {
    let pointer = format!("{path}/{}", escape(object));
    match parent.get(object) {
        Some(Value::Object(_)) => Op::add(format!("{pointer}/{}", escape(key)), value),
        _ => Op::add(pointer, serde_json::json!({ key: value })),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointer_tokens_escape_tilde_then_slash() {
        assert_eq!(escape("faultline.dev/status"), "faultline.dev~1status");
        assert_eq!(escape("a~/b"), "a~0~1b");
        assert_eq!(escape("~1"), "~01");
    }

    #[test]
    fn append_creates_a_missing_array() {
        let spec = json!({"containers": []});
        assert_eq!(
            append(&spec, "/spec", "volumes", vec![json!(1), json!(2)]),
            vec![Op::add("/spec/volumes".into(), json!([1, 2]))]
        );
        let spec = json!({"volumes": [0]});
        assert_eq!(
            append(&spec, "/spec", "volumes", vec![json!(1)]),
            vec![Op::add("/spec/volumes/-".into(), json!(1))]
        );
        assert!(append(&json!({}), "/spec", "volumes", vec![]).is_empty());
    }

    #[test]
    fn insert_creates_a_missing_object() {
        let meta = json!({"annotations": {"a": "b"}});
        assert_eq!(
            insert(
                &meta,
                "/metadata",
                "annotations",
                "faultline.dev/status",
                json!("injected")
            ),
            Op::add(
                "/metadata/annotations/faultline.dev~1status".into(),
                json!("injected")
            )
        );
        assert_eq!(
            insert(
                &json!({}),
                "/metadata",
                "annotations",
                "faultline.dev/status",
                json!("x")
            ),
            Op::add(
                "/metadata/annotations".into(),
                json!({"faultline.dev/status": "x"})
            )
        );
    }
}
