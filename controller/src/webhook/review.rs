//! The wire shapes of `admission.k8s.io/v1` `AdmissionReview`: what the API server posts and
//! what the webhook answers. Only the fields the webhook reads are typed; the pod stays a
//! [`serde_json::Value`], read through the few accessors in [`super::pod`].

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::patch::Op;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// The body the API server posts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    pub api_version: String,
    pub kind: String,
    pub request: Option<AdmissionRequest>,
}

/// One admission request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the response; the API server matches them.
    pub uid: String,
    pub kind: GroupVersionKind,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// The namespace of the object; a pod's own `metadata.namespace` is often empty at
    /// creation (a ReplicaSet's pods), this one is not.
    #[serde(default)]
    pub namespace: String,
    /// The pod (for `CREATE`).
    #[serde(default)]
    pub object: serde_json::Value,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    /// A core `v1` `Pod`.
    pub fn is_pod(&self) -> bool {
        self.group.is_empty() && self.version == "v1" && self.kind == "Pod"
    }
}

/// What the webhook answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReviewResponse {
    pub api_version: String,
    pub kind: String,
    pub response: AdmissionResponse,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// `JSONPatch`, the only type `admission.k8s.io/v1` defines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// The patch, base64 (standard alphabet, padded) of its JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// A `metav1.Status`, for a refusal: the API server shows `message` to whoever created the pod.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

// === impl AdmissionResponse ===

impl AdmissionResponse {
    /// Allowed unchanged.
    pub fn allow(uid: String) -> Self {
        AdmissionResponse {
            uid,
            allowed: true,
            status: None,
            patch_type: None,
            patch: None,
        }
    }

    /// Allowed with `ops` applied.
    pub fn patch(uid: String, ops: &[Op]) -> Self {
        let json = serde_json::to_vec(ops).expect("patch operations serialize");
        AdmissionResponse {
            patch_type: Some("JSONPatch".into()),
            patch: Some(base64::engine::general_purpose::STANDARD.encode(json)),
            ..Self::allow(uid)
        }
    }

    /// Refused (400: the pod's annotations are wrong), with a message naming what is wrong.
    pub fn deny(uid: String, message: String) -> Self {
        AdmissionResponse {
            allowed: false,
            status: Some(Status { code: 400, message }),
            ..Self::allow(uid)
        }
    }

    /// Wrapped in the `AdmissionReview` envelope.
    pub fn into_review(self) -> AdmissionReviewResponse {
        AdmissionReviewResponse {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            response: self,
        }
    }
}
