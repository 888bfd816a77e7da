//! What the webhook does to a pod, as a pure function of the pod, its service account and the
//! settings: the azure-workload-identity mutation in identity-binding mode (PROTOCOL.md §4.1).
//!
//! The pod is handled as JSON, so fields this build does not know survive untouched, and the
//! answer is a JSON patch computed by diffing the pod before and after. Every change is
//! "add if absent" (env), or "make it so" on objects only idbind names (the reserved volume and
//! its mount), with fields the API server defaults (`defaultMode`) left alone: admitting an already
//! mutated pod again yields an empty patch.

use std::collections::BTreeSet;

use idbind_model::env;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{Map, Value, json};

/// Prefix of the projected volume's name; the rest is 30 hex digits of `sha256(podName)`, the
/// longest suffix that keeps the name within 63 characters (azure-workload-identity's scheme).
pub const VOLUME_NAME_PREFIX: &str = "azure-workload-identity-reserved-";
/// Key of the CA bundle in the ConfigMap the volume projects.
pub const CA_CONFIGMAP_KEY: &str = "ca.crt";
/// Shortest projected-token lifetime a pod may ask for, in seconds.
pub const MIN_TOKEN_EXPIRATION: i64 = 3600;
/// Longest projected-token lifetime a pod may ask for, in seconds.
pub const MAX_TOKEN_EXPIRATION: i64 = 86_400;
/// Projected-token lifetime when nobody asks for one, in seconds.
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 3600;

/// What the webhook injects besides what the service account says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectionSettings {
    /// `AZURE_TENANT_ID` when the service account has no tenant annotation.
    pub default_tenant_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST`, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: String,
    /// `AZURE_KUBERNETES_TOKEN_PROXY`: `https://host[:port]`, no path.
    pub token_proxy: String,
    /// `AZURE_KUBERNETES_SNI_NAME`.
    pub sni_name: String,
    /// Audience of the projected service-account token.
    pub audience: String,
    /// ConfigMap (in the pod's namespace) whose `ca.crt` is projected as the proxy CA.
    pub ca_configmap: String,
}

/// Why a pod is refused. The message names the object and what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denial {
    /// HTTP-style code of the refusal (400: fix the pod or service account).
    pub code: u16,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Denial {
    fn bad_request(message: String) -> Self {
        Self { code: 400, message }
    }
}

/// The pod after the mutation, and the patch that turns the admitted pod into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    /// The mutated pod.
    pub pod: Value,
    /// JSON patch from the admitted pod to [`Mutation::pod`]; empty when nothing changed.
    pub patch: json_patch::Patch,
}

/// Whether `pod` asked for identity-binding injection: label `azure.workload.identity/use` and
/// annotation `azure.workload.identity/use-identity-binding`, both `true` (any case).
pub fn opted_in(pod: &Value) -> bool {
    let is_true = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
    };
    is_true(pod.pointer(&format!(
        "/metadata/labels/{}",
        escape(idbind_model::POD_USE_LABEL)
    ))) && is_true(pod.pointer(&format!(
        "/metadata/annotations/{}",
        escape(idbind_model::POD_USE_IDENTITY_BINDING_ANNOTATION)
    )))
}

/// The name azure-workload-identity hashes for the volume: `metadata.name`, or for a pod that
/// only has `generateName` (the API server names it after admission), `"<generateName> (prefix)"`.
pub fn pod_name_for_volume(pod: &Value) -> String {
    match pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(name) => name.to_owned(),
        None => {
            let prefix = pod
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("{prefix} (prefix)")
        }
    }
}

/// `azure-workload-identity-reserved-<first 30 hex digits of sha256(pod_name)>`.
pub fn volume_name(pod_name: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pod_name.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let keep = 63 - VOLUME_NAME_PREFIX.len();
    format!("{VOLUME_NAME_PREFIX}{}", &hex[..keep])
}

/// The projected-token lifetime: the pod's annotation, else the service account's, else 3600;
/// it must lie within 3600–86400 seconds.
pub fn token_expiration(
    pod: &Value,
    sa: &ServiceAccount,
    what_pod: &str,
    what_sa: &str,
) -> Result<i64, Denial> {
    let key = idbind_model::TOKEN_EXPIRATION_ANNOTATION;
    let from_pod = annotation(pod, key)
        .filter(|v| !v.is_empty())
        .map(|v| (v, format!("pod {what_pod}")));
    let from_sa = sa
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .filter(|v| !v.is_empty())
        .map(|v| (v.clone(), format!("service account {what_sa}")));
    let Some((raw, source)) = from_pod.or(from_sa) else {
        return Ok(DEFAULT_TOKEN_EXPIRATION);
    };
    let range = format!("between {MIN_TOKEN_EXPIRATION} and {MAX_TOKEN_EXPIRATION} seconds");
    let seconds: i64 = raw.trim().parse().map_err(|_| {
        Denial::bad_request(format!(
            "annotation {key}={raw:?} on {source} is not a whole number of seconds; expected a value {range}"
        ))
    })?;
    if !(MIN_TOKEN_EXPIRATION..=MAX_TOKEN_EXPIRATION).contains(&seconds) {
        return Err(Denial::bad_request(format!(
            "annotation {key}={seconds} on {source} is out of range; expected a value {range}"
        )));
    }
    Ok(seconds)
}

/// Applies the identity-binding mutation to `pod` (which must be [`opted_in`]) whose service
/// account is `sa`. `namespace` is the request's namespace (pods created by controllers may not
/// carry one yet).
pub fn mutate(
    pod: &Value,
    sa: &ServiceAccount,
    namespace: &str,
    settings: &InjectionSettings,
) -> Result<Mutation, Denial> {
    let pod_name = pod_name_for_volume(pod);
    let what_pod = format!("{namespace}/{pod_name}");
    let sa_name = sa.metadata.name.as_deref().unwrap_or("default");
    let what_sa = format!("{namespace}/{sa_name}");
    let sa_annotation = |key: &str| {
        sa.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let client_id = sa_annotation(idbind_model::SA_CLIENT_ID_ANNOTATION).ok_or_else(|| {
        Denial::bad_request(format!(
            "service account {what_sa} used by pod {what_pod} has no {key} annotation; annotate it with the \
             client id of the managed identity: kubectl annotate serviceaccount -n {namespace} {sa_name} \
             {key}=<client-id>",
            key = idbind_model::SA_CLIENT_ID_ANNOTATION,
        ))
    })?;
    let tenant_id = sa_annotation(idbind_model::SA_TENANT_ID_ANNOTATION)
        .or_else(|| settings.default_tenant_id.clone().filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            Denial::bad_request(format!(
                "no tenant for pod {what_pod}: service account {what_sa} has no {} annotation and the \
                 controller runs without --default-tenant-id",
                idbind_model::SA_TENANT_ID_ANNOTATION
            ))
        })?;
    let expiration = token_expiration(pod, sa, &what_pod, &what_sa)?;
    let skip = skip_containers(pod);
    let volume = volume_name(&pod_name);
    let mount_path = idbind_model::WI_MOUNT_PATH;
    let desired_env = [
        (env::AZURE_CLIENT_ID, client_id),
        (env::AZURE_TENANT_ID, tenant_id),
        (
            env::AZURE_FEDERATED_TOKEN_FILE,
            format!("{mount_path}/{}", idbind_model::WI_TOKEN_PATH),
        ),
        (env::AZURE_AUTHORITY_HOST, settings.authority_host.clone()),
        (env::AZURE_KUBERNETES_TOKEN_PROXY, settings.token_proxy.clone()),
        (env::AZURE_KUBERNETES_SNI_NAME, settings.sni_name.clone()),
        (
            env::AZURE_KUBERNETES_CA_FILE,
            format!("{mount_path}/{}", idbind_model::WI_CA_PATH),
        ),
    ];
    let mount = json!({ "name": volume, "mountPath": mount_path, "readOnly": true });
    let projected = json!({
        "name": volume,
        "projected": {
            "sources": [
                { "serviceAccountToken": {
                    "path": idbind_model::WI_TOKEN_PATH,
                    "expirationSeconds": expiration,
                    "audience": settings.audience,
                } },
                { "configMap": {
                    "name": settings.ca_configmap,
                    "items": [{ "key": CA_CONFIGMAP_KEY, "path": idbind_model::WI_CA_PATH }],
                    "optional": false,
                } },
            ],
        },
    });

    let mut mutated = pod.clone();
    let Some(spec) = mutated.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err(Denial::bad_request(format!("pod {what_pod} has no spec")));
    };
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
            if skip.contains(name) {
                continue;
            }
            add_env(container, &desired_env);
            upsert_named(array_field(container, "volumeMounts"), &mount);
        }
    }
    upsert_named(array_field(spec, "volumes"), &projected);
    let patch = json_patch::diff(pod, &mutated);
    Ok(Mutation { pod: mutated, patch })
}

/// Container names listed in `azure.workload.identity/skip-containers` (`;`-separated).
fn skip_containers(pod: &Value) -> BTreeSet<String> {
    annotation(pod, idbind_model::SKIP_CONTAINERS_ANNOTATION)
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn annotation(pod: &Value, key: &str) -> Option<String> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Adds each variable the container does not define yet (by name, whatever its source); skips
/// empty values, as azure-workload-identity does.
fn add_env(container: &mut Map<String, Value>, desired: &[(&str, String)]) {
    let present: BTreeSet<String> = container
        .get("env")
        .and_then(Value::as_array)
        .map(|vars| {
            vars.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<Value> = desired
        .iter()
        .filter(|(name, value)| !value.is_empty() && !present.contains(*name))
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    if !missing.is_empty() {
        array_field(container, "env").extend(missing);
    }
}

/// The array at `key`, created (or, if not an array, replaced) when needed.
fn array_field<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = object.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => items,
        _ => unreachable!("just made an array"),
    }
}

/// Makes the element named like `desired` carry `desired`'s fields (keeping fields only the API
/// server adds, like `defaultMode`), or appends it.
fn upsert_named(items: &mut Vec<Value>, desired: &Value) {
    let name = desired.get("name");
    match items.iter_mut().find(|item| item.get("name") == name) {
        Some(existing) => overlay(existing, desired),
        None => items.push(desired.clone()),
    }
}

/// Writes `desired` over `existing`: objects field by field (other fields kept), anything else
/// (arrays included) replaced.
fn overlay(existing: &mut Value, desired: &Value) {
    match (existing, desired) {
        (Value::Object(have), Value::Object(want)) => {
            for (key, value) in want {
                match have.get_mut(key) {
                    Some(slot) => overlay(slot, value),
                    None => {
                        have.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (slot, want) => *slot = want.clone(),
    }
}

/// JSON pointer escaping of one reference token (`~` → `~0`, `/` → `~1`).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kube::api::ObjectMeta;

    use super::*;

    fn settings() -> InjectionSettings {
        InjectionSettings {
            default_tenant_id: Some("tenant-default".into()),
            authority_host: "https://login.microsoftonline.com/".into(),
            token_proxy: "https://idbind-proxy.idbind.svc".into(),
            sni_name: "proxy.idbind.test".into(),
            audience: "api://AKSIdentityBinding".into(),
            ca_configmap: "idbind-proxy-ca".into(),
        }
    }

    fn sa(annotations: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("apps".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }

    fn client_sa() -> ServiceAccount {
        sa(&[(
            idbind_model::SA_CLIENT_ID_ANNOTATION,
            "11111111-1111-1111-1111-111111111111",
        )])
    }

    fn pod(annotations: Value, spec: Value) -> Value {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-0", "labels": { "azure.workload.identity/use": "true" } },
        });
        pod["metadata"]["annotations"] = annotations;
        pod["spec"] = spec;
        pod
    }

    fn opted(spec: Value) -> Value {
        pod(
            json!({ "azure.workload.identity/use-identity-binding": "true" }),
            spec,
        )
    }

    #[test]
    fn volume_name_is_azwi_compatible() {
        // 33 + 30 = 63 characters, the longest name Kubernetes allows.
        let name = volume_name("web-0");
        assert_eq!(name.len(), 63);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"web-0");
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(name, format!("azure-workload-identity-reserved-{}", &hex[..30]));
        let generated = json!({ "metadata": { "generateName": "web-" } });
        assert_eq!(pod_name_for_volume(&generated), "web- (prefix)");
    }

    #[test]
    fn opt_in_needs_label_and_annotation_case_insensitively() {
        assert!(opted_in(&opted(json!({}))));
        assert!(opted_in(&pod(
            json!({ "azure.workload.identity/use-identity-binding": "TRUE" }),
            json!({})
        )));
        assert!(!opted_in(&pod(
            json!({ "azure.workload.identity/use-identity-binding": "yes" }),
            json!({})
        )));
        assert!(!opted_in(&pod(json!({}), json!({}))));
        let mut no_label = opted(json!({}));
        no_label["metadata"]["labels"] = json!({});
        assert!(!opted_in(&no_label));
    }

    #[test]
    fn mutation_is_idempotent_even_after_api_server_defaulting() {
        let original = opted(json!({ "containers": [{ "name": "app", "image": "app" }] }));
        let first = mutate(&original, &client_sa(), "apps", &settings()).unwrap();
        assert!(!first.patch.0.is_empty());
        let mut patched = original;
        json_patch::patch(&mut patched, &first.patch).unwrap();
        assert_eq!(patched, first.pod);
        let second = mutate(&first.pod, &client_sa(), "apps", &settings()).unwrap();
        assert!(second.patch.0.is_empty(), "{:?}", second.patch);
        // The API server defaults `defaultMode`; that is not a difference either.
        let mut defaulted = first.pod.clone();
        defaulted["spec"]["volumes"][0]["projected"]["defaultMode"] = json!(420);
        assert!(
            mutate(&defaulted, &client_sa(), "apps", &settings())
                .unwrap()
                .patch
                .0
                .is_empty()
        );
    }

    #[test]
    fn user_env_wins_and_value_from_counts_as_set() {
        let original = opted(json!({ "containers": [{ "name": "app", "env": [
            { "name": "AZURE_CLIENT_ID", "value": "mine" },
            { "name": "AZURE_TENANT_ID", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } },
        ] }] }));
        let m = mutate(&original, &client_sa(), "apps", &settings()).unwrap();
        let env = m.pod["spec"]["containers"][0]["env"].as_array().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names.iter().filter(|n| **n == "AZURE_CLIENT_ID").count(), 1);
        assert_eq!(env[0]["value"], "mine");
        assert_eq!(names.len(), 7);
    }

    #[test]
    fn skip_list_is_trimmed_and_applies_to_init_containers() {
        let original = pod(
            json!({ "azure.workload.identity/use-identity-binding": "true",
                    "azure.workload.identity/skip-containers": " init ; sidecar" }),
            json!({ "initContainers": [{ "name": "init" }], "containers": [{ "name": "app" }, { "name": "sidecar" }] }),
        );
        let m = mutate(&original, &client_sa(), "apps", &settings()).unwrap();
        assert!(m.pod["spec"]["initContainers"][0].get("env").is_none());
        assert!(m.pod["spec"]["containers"][1].get("volumeMounts").is_none());
        assert_eq!(m.pod["spec"]["containers"][0]["env"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn expiration_comes_from_pod_then_service_account_within_bounds() {
        let key = idbind_model::TOKEN_EXPIRATION_ANNOTATION;
        let sa_7200 = sa(&[(idbind_model::SA_CLIENT_ID_ANNOTATION, "c"), (key, "7200")]);
        let plain = opted(json!({ "containers": [] }));
        let expiration =
            |pod: &Value, sa: &ServiceAccount| token_expiration(pod, sa, "apps/web-0", "apps/web");
        assert_eq!(expiration(&plain, &client_sa()).unwrap(), 3600);
        assert_eq!(expiration(&plain, &sa_7200).unwrap(), 7200);
        let with = |v: &str| {
            pod(
                json!({ "azure.workload.identity/use-identity-binding": "true", key: v }),
                json!({}),
            )
        };
        assert_eq!(expiration(&with("86400"), &sa_7200).unwrap(), 86_400);
        assert_eq!(expiration(&with("3600"), &sa_7200).unwrap(), 3600);
        let e = expiration(&with("3599"), &sa_7200).unwrap_err();
        assert!(
            e.message.contains("3599") && e.message.contains("between 3600 and 86400"),
            "{e}"
        );
        assert!(e.message.contains("pod apps/web-0"), "{e}");
        let e = expiration(&with("1h"), &sa_7200).unwrap_err();
        assert!(e.message.contains("not a whole number"), "{e}");
        let sa_big = sa(&[(key, "86401")]);
        let e = expiration(&plain, &sa_big).unwrap_err();
        assert!(e.message.contains("service account apps/web"), "{e}");
    }

    #[test]
    fn missing_client_id_or_tenant_is_denied_with_the_fix() {
        let original = opted(json!({ "containers": [{ "name": "app" }] }));
        let e = mutate(&original, &sa(&[]), "apps", &settings()).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("service account apps/web"), "{e}");
        assert!(e.message.contains("azure.workload.identity/client-id"), "{e}");
        let no_tenant = InjectionSettings {
            default_tenant_id: None,
            ..settings()
        };
        let e = mutate(&original, &client_sa(), "apps", &no_tenant).unwrap_err();
        assert!(e.message.contains("--default-tenant-id"), "{e}");
        let own_tenant = sa(&[
            (idbind_model::SA_CLIENT_ID_ANNOTATION, "c"),
            (idbind_model::SA_TENANT_ID_ANNOTATION, "t"),
        ]);
        let m = mutate(&original, &own_tenant, "apps", &no_tenant).unwrap();
        assert_eq!(
            m.pod["spec"]["containers"][0]["env"][1],
            json!({ "name": "AZURE_TENANT_ID", "value": "t" })
        );
    }

    #[test]
    fn unknown_fields_survive() {
        let original =
            opted(json!({ "futureField": { "x": 1 }, "containers": [{ "name": "app", "futureToo": true }] }));
        let m = mutate(&original, &client_sa(), "apps", &settings()).unwrap();
        assert_eq!(m.pod["spec"]["futureField"], json!({ "x": 1 }));
        assert_eq!(m.pod["spec"]["containers"][0]["futureToo"], json!(true));
    }
}
