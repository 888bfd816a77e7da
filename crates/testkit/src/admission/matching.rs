//! Which webhooks a request goes to: `rules` (operations, API groups, versions, resources and
//! subresources, scope), `namespaceSelector` and `objectSelector`, as kube-apiserver's webhook
//! predicates decide it.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, RuleWithOperations};
use serde_json::Value;

use super::AdmissionAttributes;
use super::selector::Selector;

/// Whether any of the webhook's rules matches the request. No rules match nothing.
pub(crate) fn rules_match(webhook: &MutatingWebhook, attributes: &AdmissionAttributes) -> bool {
    webhook
        .rules
        .iter()
        .flatten()
        .any(|rule| rule_matches(rule, attributes))
}

fn exact_or_wildcard(items: Option<&Vec<String>>, requested: &str) -> bool {
    items
        .into_iter()
        .flatten()
        .any(|item| item == "*" || item == requested)
}

fn rule_matches(rule: &RuleWithOperations, attributes: &AdmissionAttributes) -> bool {
    let is_namespace = attributes.resource.group.is_empty() && attributes.resource.resource == "namespaces";
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => !is_namespace && !attributes.namespace.is_empty(),
        Some("Cluster") => is_namespace || attributes.namespace.is_empty(),
        Some(_) => false,
    };
    let operation = exact_or_wildcard(rule.operations.as_ref(), attributes.operation.as_str());
    let group = exact_or_wildcard(rule.api_groups.as_ref(), &attributes.resource.group);
    let version = exact_or_wildcard(rule.api_versions.as_ref(), &attributes.resource.version);
    let resource = rule.resources.iter().flatten().any(|pattern| {
        let (resource, sub) = pattern.split_once('/').unwrap_or((pattern.as_str(), ""));
        (resource == "*" || resource == attributes.resource.resource)
            && (sub == "*" || sub == attributes.sub_resource)
    });
    scope && operation && group && version && resource
}

/// Whether the namespace selector lets the request through. Cluster-scoped requests (other than
/// for namespaces) are never exempted; a namespace's own labels are used for namespace objects.
pub(crate) fn namespace_matches(
    selector: &Selector,
    attributes: &AdmissionAttributes,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let is_namespace = attributes.resource.group.is_empty() && attributes.resource.resource == "namespaces";
    if attributes.namespace.is_empty() && !is_namespace {
        return true;
    }
    if selector.is_empty() {
        return true;
    }
    let labels = if is_namespace {
        attributes
            .object
            .as_ref()
            .or(attributes.old_object.as_ref())
            .map(object_labels)
            .unwrap_or_default()
    } else {
        namespace_labels.cloned().unwrap_or_default()
    };
    selector.matches(&labels)
}

/// Whether the object selector matches the new or the old object.
pub(crate) fn object_matches(selector: &Selector, attributes: &AdmissionAttributes) -> bool {
    if selector.is_empty() {
        return true;
    }
    [attributes.object.as_ref(), attributes.old_object.as_ref()]
        .into_iter()
        .flatten()
        .any(|object| selector.matches(&object_labels(object)))
}

/// `metadata.labels` of an object (string values only).
pub(crate) fn object_labels(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}
