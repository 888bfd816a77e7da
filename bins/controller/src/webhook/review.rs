//! The `admission.k8s.io/v1` AdmissionReview, as much of it as a mutating pod webhook reads and
//! writes.

use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion` of the reviews this webhook speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of a review.
pub const KIND: &str = "AdmissionReview";

/// An AdmissionReview: the API server sends one with `request`, the webhook answers with
/// `response`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// `admission.k8s.io/v1`.
    pub api_version: String,
    /// `AdmissionReview`.
    pub kind: String,
    /// The request (from the API server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    /// The answer (from the webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

/// The fields of a request this webhook uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Identifies this admission call; echoed in the response.
    pub uid: String,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the object (empty for a create with `generateName`).
    #[serde(default)]
    pub name: Option<String>,
    /// `CREATE`, `UPDATE`, ...
    #[serde(default)]
    pub operation: String,
    /// The object being admitted.
    #[serde(default)]
    pub object: Option<Value>,
    /// Whether this is a dry run.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// A webhook's answer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's `uid`.
    pub uid: String,
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not (when refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// A JSON patch (base64 on the wire), with `patch_type` `JSONPatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<ByteString>,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
}

/// The `status` of a refusal (a `metav1.Status` subset).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ResponseStatus {
    /// HTTP-style code.
    pub code: u16,
    /// Human-readable reason.
    pub message: String,
}

impl AdmissionResponse {
    /// Let the request through unchanged.
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            ..Self::default()
        }
    }

    /// Let the request through with `patch` applied (unchanged if the patch is empty).
    pub fn patched(uid: &str, patch: &json_patch::Patch) -> Self {
        if patch.0.is_empty() {
            return Self::allow(uid);
        }
        // A patch is a list of plain JSON values: serializing it cannot fail.
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        Self {
            uid: uid.to_owned(),
            allowed: true,
            patch: Some(ByteString(bytes)),
            patch_type: Some("JSONPatch".to_owned()),
            ..Self::default()
        }
    }

    /// Refuse the request.
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: false,
            status: Some(ResponseStatus {
                code,
                message: message.into(),
            }),
            ..Self::default()
        }
    }

    /// Wraps the response in a review.
    pub fn into_review(self) -> AdmissionReview {
        AdmissionReview {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            request: None,
            response: Some(self),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn wire_shape() {
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::json!([{ "op": "add", "path": "/a", "value": 1 }])).unwrap();
        let review = AdmissionResponse::patched("u-1", &patch).into_review();
        let json = serde_json::to_value(&review).unwrap();
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(json["response"]["uid"], "u-1");
        assert_eq!(json["response"]["patchType"], "JSONPatch");
        assert_eq!(
            json["response"]["patch"],
            "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"
        );
        let empty = AdmissionResponse::patched("u-2", &json_patch::Patch(vec![]));
        let json = serde_json::to_value(empty.into_review()).unwrap();
        assert!(json["response"].get("patch").is_none() && json["response"].get("patchType").is_none());
        let denied = serde_json::to_value(AdmissionResponse::deny("u-3", 400, "no").into_review()).unwrap();
        assert_eq!(denied["response"]["allowed"], false);
        assert_eq!(
            denied["response"]["status"],
            serde_json::json!({ "code": 400, "message": "no" })
        );
    }
}
