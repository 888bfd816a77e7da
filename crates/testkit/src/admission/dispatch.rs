//! The mutating webhook chain: selection, calls, patches, failure policies and reinvocation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusDetails;
use serde_json::Value;

use super::client::{CallFailure, Endpoint, ServiceMap, post};
use super::matching::{namespace_matches, object_matches, rules_match};
use super::review::{
    ADMISSION_REVIEW_API_VERSION, ADMISSION_REVIEW_KIND, AdmissionRequest, AdmissionReview, WebhookStatus,
};
use super::selector::Selector;
use super::{AdmissionAttributes, Admitted, Rejected};

/// Default `timeoutSeconds` of a webhook.
const DEFAULT_TIMEOUT_SECONDS: i32 = 10;

/// Runs the mutating admission chain. Cheap to clone; clones share the [`ServiceMap`].
#[derive(Clone, Debug, Default)]
pub struct MutatingAdmission {
    services: Arc<ServiceMap>,
}

/// What calling one webhook did.
enum Called {
    /// Selectors or rules did not match.
    Skipped,
    /// Called; whether its patch changed the object.
    Done { changed: bool },
    /// The call failed and `failurePolicy` is `Ignore`.
    FailedOpen,
}

impl MutatingAdmission {
    /// A chain with an empty service table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A chain resolving `clientConfig.service` through `services`.
    pub fn with_services(services: Arc<ServiceMap>) -> Self {
        Self { services }
    }

    /// The table `clientConfig.service` references are resolved through.
    pub fn services(&self) -> &ServiceMap {
        &self.services
    }

    /// Admits `attributes` through the matching webhooks of `configurations`.
    /// `namespace_labels` are the labels of the request's namespace (include
    /// `kubernetes.io/metadata.name`, which the API server sets on every namespace); `None`
    /// when unknown or cluster-scoped.
    pub async fn admit(
        &self,
        attributes: &AdmissionAttributes,
        configurations: &[MutatingWebhookConfiguration],
        namespace_labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Admitted, Rejected> {
        let mut ordered: Vec<&MutatingWebhookConfiguration> = configurations.iter().collect();
        ordered.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let hooks: Vec<(&str, &MutatingWebhook)> = ordered
            .iter()
            .flat_map(|c| {
                let name = c.metadata.name.as_deref().unwrap_or_default();
                c.webhooks.iter().flatten().map(move |w| (name, w))
            })
            .collect();

        let mut current = attributes.clone();
        let mut admitted = Admitted::default();
        // Webhooks with `reinvocationPolicy: IfNeeded` called so far, and whether the object
        // changed after their call.
        let mut reinvoke = vec![false; hooks.len()];
        let mut if_needed_called = Vec::new();
        for (index, (configuration, hook)) in hooks.iter().enumerate() {
            let called = self
                .call(
                    configuration,
                    hook,
                    &mut current,
                    namespace_labels,
                    (0, index),
                    &mut admitted,
                )
                .await?;
            if let Called::Done { changed } = called {
                if changed {
                    for &earlier in &if_needed_called {
                        reinvoke[earlier] = true;
                    }
                }
                if hook.reinvocation_policy.as_deref() == Some("IfNeeded") {
                    if_needed_called.push(index);
                }
            }
        }
        for (index, (configuration, hook)) in hooks.iter().enumerate() {
            if reinvoke[index] {
                self.call(
                    configuration,
                    hook,
                    &mut current,
                    namespace_labels,
                    (1, index),
                    &mut admitted,
                )
                .await?;
            }
        }
        admitted.object = current.object;
        Ok(admitted)
    }

    async fn call(
        &self,
        configuration: &str,
        hook: &MutatingWebhook,
        attributes: &mut AdmissionAttributes,
        namespace_labels: Option<&BTreeMap<String, String>>,
        (round, index): (usize, usize),
        admitted: &mut Admitted,
    ) -> Result<Called, Rejected> {
        let name = hook.name.as_str();
        let namespace_selector = Selector::compile(hook.namespace_selector.as_ref())
            .map_err(|e| Rejected::internal(format!("webhook {name:?}: invalid namespaceSelector: {e}")))?;
        let object_selector = Selector::compile(hook.object_selector.as_ref())
            .map_err(|e| Rejected::internal(format!("webhook {name:?}: invalid objectSelector: {e}")))?;
        if !namespace_matches(&namespace_selector, attributes, namespace_labels)
            || !object_matches(&object_selector, attributes)
            || !rules_match(hook, attributes)
        {
            return Ok(Called::Skipped);
        }
        if attributes.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
            return Err(Rejected::new(
                400,
                "BadRequest",
                format!("admission webhook {name:?} does not support dry run"),
            ));
        }

        admitted.called.push(name.to_owned());
        let outcome = match self.invoke(hook, attributes).await {
            Ok(outcome) => outcome,
            Err(Failure::Call(reason)) => {
                let message = format!("failed calling webhook {name:?}: {reason}");
                if hook.failure_policy.as_deref() == Some("Ignore") {
                    tracing::warn!(webhook = name, %message, "webhook failed, ignored (failurePolicy Ignore)");
                    admitted.failed_open.push(message);
                    admitted.audit_annotations.insert(
                        format!("failed-open.mutation.webhook.admission.k8s.io/round_{round}_index_{index}"),
                        name.to_owned(),
                    );
                    return Ok(Called::FailedOpen);
                }
                tracing::warn!(webhook = name, %message, "webhook failed, request rejected (failurePolicy Fail)");
                return Err(Rejected::internal(message));
            }
        };

        admitted.warnings.extend(outcome.warnings);
        for (key, value) in outcome.audit_annotations {
            admitted.audit_annotations.insert(format!("{name}/{key}"), value);
        }
        if !outcome.allowed {
            tracing::debug!(webhook = name, "webhook denied the request");
            return Err(denied(name, outcome.status));
        }
        let changed = match outcome.patch {
            Some(patch) => apply_patch(name, attributes, &patch)?,
            None => false,
        };
        if changed {
            admitted.mutated_by.push(name.to_owned());
        }
        admitted.audit_annotations.insert(
            format!("mutation.webhook.admission.k8s.io/round_{round}_index_{index}"),
            serde_json::json!({ "configuration": configuration, "webhook": name, "mutated": changed })
                .to_string(),
        );
        tracing::debug!(webhook = name, changed, "webhook admitted the request");
        Ok(Called::Done { changed })
    }

    /// Sends the AdmissionReview and checks the response as kube-apiserver does.
    async fn invoke(
        &self,
        hook: &MutatingWebhook,
        attributes: &AdmissionAttributes,
    ) -> Result<Outcome, Failure> {
        if hook.match_conditions.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(Failure::Call(
                "matchConditions are not supported by the emulator".into(),
            ));
        }
        if !hook.admission_review_versions.iter().any(|v| v == "v1") {
            return Err(Failure::Call(format!(
                "webhook does not accept known AdmissionReview versions (accepts {:?}, the emulator sends v1)",
                hook.admission_review_versions
            )));
        }
        let seconds = hook.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS).max(1);
        let timeout = Duration::from_secs(u64::try_from(seconds).unwrap_or(10));
        let endpoint =
            Endpoint::resolve(&hook.client_config, &self.services, timeout).map_err(Failure::Call)?;

        let uid = uuid::Uuid::new_v4().to_string();
        let review = AdmissionReview {
            api_version: ADMISSION_REVIEW_API_VERSION.into(),
            kind: ADMISSION_REVIEW_KIND.into(),
            request: Some(AdmissionRequest {
                uid: uid.clone(),
                kind: attributes.kind.clone(),
                resource: attributes.resource.clone(),
                sub_resource: non_empty(&attributes.sub_resource),
                request_kind: Some(attributes.kind.clone()),
                request_resource: Some(attributes.resource.clone()),
                request_sub_resource: non_empty(&attributes.sub_resource),
                name: non_empty(&attributes.name),
                namespace: non_empty(&attributes.namespace),
                operation: attributes.operation.as_str().into(),
                user_info: attributes.user.clone().into(),
                object: attributes.object.clone(),
                old_object: attributes.old_object.clone(),
                dry_run: Some(attributes.dry_run),
                options: attributes.operation.options(),
            }),
            response: None,
        };
        let body =
            serde_json::to_vec(&review).map_err(|e| Failure::Call(format!("encoding the request: {e}")))?;
        let ca_bundle = hook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
        let bytes = post(&endpoint, ca_bundle, body, timeout)
            .await
            .map_err(|CallFailure(m)| Failure::Call(m))?;

        let invalid = |reason: String| Failure::Call(format!("received invalid webhook response: {reason}"));
        let answer: AdmissionReview = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let response = answer
            .response
            .ok_or_else(|| invalid("webhook response was absent".into()))?;
        if response.uid != uid {
            return Err(invalid(format!(
                "expected response.uid={uid:?}, got {:?}",
                response.uid
            )));
        }
        if answer.api_version != ADMISSION_REVIEW_API_VERSION || answer.kind != ADMISSION_REVIEW_KIND {
            return Err(invalid(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
                answer.api_version, answer.kind
            )));
        }
        let patch = match response.patch.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(encoded) => {
                match response.patch_type.as_deref() {
                    None => {
                        return Err(invalid(
                            "webhook returned response.patch but not response.patchType".into(),
                        ));
                    }
                    Some("JSONPatch") => {}
                    Some(other) => return Err(Failure::Call(format!("unsupported patch type {other:?}"))),
                }
                let decoded = STANDARD
                    .decode(encoded)
                    .map_err(|e| invalid(format!("response.patch is not base64: {e}")))?;
                Some(decoded)
            }
        };
        Ok(Outcome {
            allowed: response.allowed,
            status: response.status,
            patch,
            warnings: response.warnings.unwrap_or_default(),
            audit_annotations: response.audit_annotations.unwrap_or_default(),
        })
    }
}

/// What a webhook answered, after validation.
struct Outcome {
    allowed: bool,
    status: Option<WebhookStatus>,
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
    audit_annotations: BTreeMap<String, String>,
}

/// A failed call, subject to the failure policy.
enum Failure {
    Call(String),
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Applies a JSON patch to the object; `Ok(changed)`. Errors are internal errors whatever the
/// failure policy, as in kube-apiserver.
fn apply_patch(name: &str, attributes: &mut AdmissionAttributes, patch: &[u8]) -> Result<bool, Rejected> {
    let patch: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|e| Rejected::internal(format!("webhook {name:?}: invalid JSON patch: {e}")))?;
    if patch.0.is_empty() {
        return Ok(false);
    }
    let Some(object) = attributes.object.as_mut() else {
        return Err(Rejected::internal(format!(
            "admission webhook {name:?} attempted to modify the object, which is not supported for this operation"
        )));
    };
    let mut patched: Value = object.clone();
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| Rejected::internal(format!("webhook {name:?}: applying its JSON patch: {e}")))?;
    let changed = patched != *object;
    *object = patched;
    Ok(changed)
}

/// The rejection for `allowed: false`, as `webhookerrors.ToStatusErr` builds it.
fn denied(name: &str, status: Option<WebhookStatus>) -> Rejected {
    let status = status.unwrap_or_default();
    let denied_by = format!("admission webhook {name:?} denied the request");
    let message = match (status.message.as_deref(), status.reason.as_deref()) {
        (Some(m), _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = status.code.filter(|c| *c >= 400).unwrap_or(400);
    let mut rejected = Rejected::new(
        u16::try_from(code).unwrap_or(400),
        status.reason.as_deref().unwrap_or(""),
        message,
    );
    if status.reason.as_deref().is_none_or(str::is_empty) {
        rejected.status.reason = None;
    }
    rejected.status.details = status
        .details
        .and_then(|d| serde_json::from_value::<StatusDetails>(d).ok());
    rejected
}
