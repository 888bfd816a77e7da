//! `deploy/` against the binaries' own definitions, on what `kubectl kustomize` renders from each
//! overlay (what an operator applies):
//!
//! - every `IDBIND_*` variable a Deployment sets is a flag of its binary, and the flags parse and
//!   pass the binary's own validation (controller: `idbind_controller::args::Args`; proxy: its
//!   `args.rs`, included below since the proxy has no library target);
//! - names and ports agree across objects and with the flags (RBAC `resourceNames`, mounts,
//!   Services, probes, the webhook configuration the controller would create);
//! - the RBAC grants every request the binaries make and none of a list they must not make,
//!   evaluated with `idbind-rbac` as kube-apiserver would;
//! - the ValidatingAdmissionPolicy admits the controller's own writes and refuses others,
//!   evaluated with a CEL interpreter;
//! - every pod is hardened, and every Secret and ConfigMap it mounts exists or is documented;
//! - the e2e overlay's emulator seed parses and matches the controller's settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../bins/proxy/src/args.rs"]
mod proxy_args;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use clap::{CommandFactory, Parser};
use idbind_rbac::{RbacSnapshot, ResourceAttributes, UserInfo};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};

const NAMESPACE: &str = "idbind";
const OVERLAYS: [&str; 3] = ["single-cluster-directory-issuer", "fleet-blob-issuer", "e2e-kind"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The objects `kubectl kustomize` renders from `dir`; `None` (after a SKIP line) when kubectl is
/// missing outside CI.
fn render(dir: &str) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !in_ci() => {
            println!("SKIP: kubectl is not installed; it renders the kustomize overlays");
            return None;
        }
        Err(e) => panic!("running kubectl kustomize {dir}: {e}"),
        Ok(out) => out,
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_saphyr::from_multiple::<Value>(&text)
            .unwrap()
            .into_iter()
            .filter(|v| !v.is_null())
            .collect(),
    )
}

fn overlay(name: &str) -> Option<Vec<Value>> {
    render(&format!("deploy/overlays/{name}"))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn all<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

fn typed<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<T> {
    all(docs, kind)
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The environment of a Deployment's first container, as the kubelet would build it (`envFrom`
/// first, `env` wins); values from Secrets become a placeholder.
fn environment(docs: &[Value], deployment: &Value) -> BTreeMap<String, String> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let name = from["configMapRef"]["name"]
            .as_str()
            .expect("envFrom only from ConfigMaps");
        let config_map = find(docs, "ConfigMap", name);
        assert_eq!(config_map["metadata"]["namespace"], namespace);
        for (k, v) in config_map["data"].as_object().unwrap() {
            env.insert(k.clone(), v.as_str().unwrap().to_owned());
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_owned()
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" {
            namespace.to_owned()
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
            "pod-0".to_owned()
        } else if var["valueFrom"]["secretKeyRef"].is_object() {
            "secret-value".to_owned()
        } else {
            panic!("unexpected env source {var}");
        };
        env.insert(name, value);
    }
    env
}

/// `--flag=value` for every variable with `prefix`; a variable that is no flag's `env` fails.
fn argv(program: &str, command: &clap::Command, env: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    let mut argv = vec![program.to_owned()];
    for (key, value) in env.iter().filter(|(k, _)| k.starts_with(prefix)) {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == key.as_str()))
            .unwrap_or_else(|| {
                panic!("{program}: {key} is set but no flag reads it (typo, or a removed flag?)")
            });
        argv.push(format!("--{}={value}", arg.get_long().unwrap()));
    }
    argv
}

fn controller_args(docs: &[Value]) -> idbind_controller::args::Args {
    let env = environment(docs, find(docs, "Deployment", "idbind-controller"));
    let command = idbind_controller::args::Args::command();
    let argv = argv("idbind-controller", &command, &env, "IDBIND_");
    idbind_controller::args::Args::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn proxy_args(docs: &[Value]) -> proxy_args::Args {
    let env = environment(docs, find(docs, "Deployment", "idbind-proxy"));
    let command = proxy_args::Args::command();
    let argv = argv("idbind-proxy", &command, &env, "IDBIND_PROXY_");
    proxy_args::Args::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn container_port(deployment: &Value, name: &str) -> u16 {
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name} in {}", deployment["metadata"]["name"]))
        as u16
}

/// The Secret mounted at the directory holding `path`.
fn secret_mounted_for(deployment: &Value, path: &std::path::Path) -> String {
    let pod = &deployment["spec"]["template"]["spec"];
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("nothing is mounted at {}", path.display()));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    volume["secret"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("{volume} is no Secret"))
        .to_owned()
}

fn service_target(docs: &[Value], service: &str, port: u16) -> String {
    let svc = find(docs, "Service", service);
    let entry = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| {
            panic!("Service {service} has no port {port}: {svc}");
        });
    entry["targetPort"].as_str().unwrap().to_owned()
}

#[test]
fn the_controller_s_flags_parse_and_agree_with_the_other_objects() {
    for name in OVERLAYS {
        let Some(docs) = overlay(name) else { return };
        let args = controller_args(&docs);
        let ns = args.cluster.namespace.clone();
        assert_eq!(ns, NAMESPACE, "{name}");
        // The controller's own checks of its flags.
        idbind_controller::webhook::args::WebhookArgs::injection(&args)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        args.proxy_tls.policy().unwrap();
        args.proxy_tls.subject(&ns).unwrap();
        args.webhook.policy().unwrap();
        idbind_controller::setup::cloud(&args.azure).unwrap_or_else(|e| panic!("{name}: {e}"));
        idbind_model::validate_fic_name(&args.reconcile.fic_name).unwrap();

        // The MutatingWebhookConfiguration is the one the controller would create.
        let target = args.webhook.target(&ns, None).unwrap();
        let mut expected = serde_json::to_value(args.webhook.configuration(&ns, target).webhook("")).unwrap();
        expected["clientConfig"]
            .as_object_mut()
            .unwrap()
            .remove("caBundle");
        let mwc = find(
            &docs,
            "MutatingWebhookConfiguration",
            &args.webhook.webhook_configuration,
        );
        assert_eq!(mwc["webhooks"].as_array().unwrap().len(), 1);
        assert_eq!(
            mwc["webhooks"][0], expected,
            "{name}: the shipped webhook differs from the controller's"
        );

        let deployment = find(&docs, "Deployment", "idbind-controller");
        assert_eq!(
            container_port(deployment, "admin"),
            args.admin.admin_listen.port()
        );
        assert_eq!(
            container_port(deployment, "webhook"),
            args.webhook.webhook_listen.port()
        );
        assert_eq!(
            service_target(
                &docs,
                &args.webhook.webhook_service,
                args.webhook.webhook_service_port
            ),
            "webhook"
        );
        find(&docs, "Service", &args.proxy_tls.proxy_service);
        if let Some(listen) = args.issuer.issuer_listen {
            assert_eq!(container_port(deployment, "issuer"), listen.port(), "{name}");
            assert_eq!(service_target(&docs, "idbind-issuer", 443), "issuer", "{name}");
            assert!(
                args.issuer.issuer_tls_cert.is_some(),
                "{name}: the issuer must serve HTTPS"
            );
        }

        // The names its RBAC and admission policy allow are the ones it uses.
        let role = find(&docs, "Role", "idbind-controller");
        let names_of = |resource: &str| -> BTreeSet<String> {
            role["rules"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| strs(&r["resources"]).contains(&resource.to_owned()))
                .flat_map(|r| strs(&r["resourceNames"]))
                .collect()
        };
        for secret in [
            &args.keys.signing_key_secret,
            &args.proxy_tls.proxy_ca_secret,
            &args.proxy_tls.proxy_tls_secret,
            &args.webhook.webhook_secret,
        ] {
            assert!(
                names_of("secrets").contains(secret),
                "{name}: the Role does not name Secret {secret}"
            );
        }
        assert!(names_of("leases").contains(&args.leader.lease_name));
        let policy = serde_json::to_string(find(
            &docs,
            "ValidatingAdmissionPolicy",
            "idbind-controller-writes",
        ))
        .unwrap();
        for object in [
            &args.keys.signing_key_secret,
            &args.proxy_tls.proxy_ca_configmap,
            &args.webhook.webhook_configuration,
        ] {
            assert!(
                policy.contains(&format!("'{object}'")),
                "{name}: the admission policy does not name {object}"
            );
        }
    }
}

#[test]
fn the_proxy_s_flags_parse_and_agree_with_the_controller() {
    for name in OVERLAYS {
        let Some(docs) = overlay(name) else { return };
        let controller = controller_args(&docs);
        let proxy = proxy_args(&docs);
        let deployment = find(&docs, "Deployment", "idbind-proxy");
        assert_eq!(
            secret_mounted_for(deployment, &proxy.keys_dir.join("x")),
            controller.keys.signing_key_secret
        );
        assert_eq!(
            secret_mounted_for(deployment, &proxy.tls_cert),
            controller.proxy_tls.proxy_tls_secret
        );
        assert_eq!(
            secret_mounted_for(deployment, &proxy.tls_key),
            controller.proxy_tls.proxy_tls_secret
        );
        assert_eq!(container_port(deployment, "https"), proxy.listen.port());
        assert_eq!(container_port(deployment, "admin"), proxy.admin_listen.port());
        // AZURE_KUBERNETES_TOKEN_PROXY is https://<proxy-service>.<ns>.svc: port 443.
        assert_eq!(
            service_target(&docs, &controller.proxy_tls.proxy_service, 443),
            "https"
        );
        assert_eq!(proxy.audience, controller.webhook.sa_token_audience, "{name}");
        let injection = idbind_controller::webhook::args::WebhookArgs::injection(&controller).unwrap();
        let advertised = proxy
            .advertised_authority
            .clone()
            .unwrap_or_else(|| proxy.authority_host.clone());
        assert_eq!(
            advertised.as_str().trim_end_matches('/'),
            injection.authority_host.trim_end_matches('/'),
            "{name}: pods get AZURE_AUTHORITY_HOST {} but the proxy advertises {advertised}",
            injection.authority_host
        );
    }
}

/// Secrets and ConfigMaps that exist without being rendered: (namespace, name).
fn created_elsewhere(overlay: &str) -> BTreeSet<(&'static str, &'static str)> {
    let mut names = BTreeSet::from([
        // Written by the controller.
        (NAMESPACE, "idbind-signing-keys"),
        (NAMESPACE, "idbind-proxy-tls"),
    ]);
    match overlay {
        "single-cluster-directory-issuer" => {
            names.extend([
                (NAMESPACE, "idbind-azure-credentials"),
                (NAMESPACE, "idbind-issuer-tls"),
            ]);
        }
        "e2e-kind" => names.extend([
            (NAMESPACE, "idbind-issuer-tls"),
            (NAMESPACE, "idbind-e2e-ca"),
            ("idbind-e2e", "idbind-e2e-ca"),
            ("idbind-e2e", "azure-emulator-tls"),
        ]),
        _ => {}
    }
    names
}

#[test]
fn every_pod_is_hardened_and_mounts_what_exists() {
    for name in OVERLAYS {
        let Some(docs) = overlay(name) else { return };
        let rendered: BTreeSet<(String, String)> = docs
            .iter()
            .filter(|d| d["kind"] == "Secret" || d["kind"] == "ConfigMap")
            .map(|d| {
                (
                    d["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    d["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let elsewhere = created_elsewhere(name);
        let exists = |ns: &str, object: &str| {
            rendered.contains(&(ns.to_owned(), object.to_owned())) || elsewhere.contains(&(ns, object))
        };
        for deployment in all(&docs, "Deployment") {
            let what = format!("{name}: Deployment {}", deployment["metadata"]["name"]);
            let ns = deployment["metadata"]["namespace"].as_str().unwrap();
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["enableServiceLinks"], false, "{what}");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            for (label, value) in deployment["metadata"]["labels"].as_object().unwrap() {
                assert_eq!(
                    &deployment["spec"]["template"]["metadata"]["labels"][label], value,
                    "{what}: pods carry the Deployment's labels"
                );
            }
            for key in ["name", "component", "part-of", "managed-by", "version"] {
                assert!(
                    deployment["metadata"]["labels"][format!("app.kubernetes.io/{key}")].is_string(),
                    "{what}: {key}"
                );
            }
            for container in pod["containers"].as_array().unwrap() {
                let sc = &container["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
                for kind in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][kind][resource].is_string(),
                            "{what}: {kind}.{resource}"
                        );
                    }
                }
                assert!(container["readinessProbe"].is_object(), "{what}: readiness probe");
            }
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                if let Some(secret) = volume["secret"]["secretName"].as_str() {
                    assert!(
                        exists(ns, secret),
                        "{what} mounts Secret {ns}/{secret}, which nothing creates"
                    );
                }
                if let Some(config_map) = volume["configMap"]["name"].as_str() {
                    assert!(
                        exists(ns, config_map),
                        "{what} mounts ConfigMap {ns}/{config_map}, which nothing creates"
                    );
                }
            }
            if ns == NAMESPACE {
                assert_eq!(pod["priorityClassName"], "system-cluster-critical", "{what}");
                assert!(pod["topologySpreadConstraints"].is_array(), "{what}");
                assert!(
                    pod["containers"][0]["livenessProbe"].is_object(),
                    "{what}: liveness probe"
                );
                let selector = &deployment["spec"]["selector"]["matchLabels"];
                let budgets: Vec<_> = all(&docs, "PodDisruptionBudget")
                    .filter(|b| &b["spec"]["selector"]["matchLabels"] == selector)
                    .collect();
                assert_eq!(budgets.len(), 1, "{what}: one PodDisruptionBudget");
            }
        }
        // The webhook never sees idbind's own pods.
        let mwc = find(&docs, "MutatingWebhookConfiguration", "idbind");
        assert_eq!(
            mwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0],
            json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAMESPACE]})
        );
        assert_eq!(
            find(&docs, "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
    }
}

fn snapshot(docs: &[Value]) -> RbacSnapshot {
    RbacSnapshot {
        cluster_roles: typed::<ClusterRole>(docs, "ClusterRole"),
        cluster_role_bindings: typed::<ClusterRoleBinding>(docs, "ClusterRoleBinding"),
        roles: typed::<Role>(docs, "Role"),
        role_bindings: typed::<RoleBinding>(docs, "RoleBinding"),
    }
}

fn request(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> ResourceAttributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    ResourceAttributes::new(verb, group, resource)
        .in_namespace(namespace)
        .named(name)
        .with_subresource(subresource)
}

#[test]
fn rbac_grants_what_the_binaries_do_and_nothing_else() {
    let Some(docs) = render("deploy/base") else { return };
    let Some(directory) = overlay("single-cluster-directory-issuer") else {
        return;
    };
    let args = controller_args(&directory);
    let authorizer = snapshot(&docs).authorizer();
    let client_id = idbind_model::ClientId::parse("3f2504e0-4f89-41d3-9a0c-0305e82c3301").unwrap();
    let use_mi = format!("use-mi-{client_id}");
    let (ib, rbac, adm, core) = (
        "idbind.dev",
        "rbac.authorization.k8s.io",
        "admissionregistration.k8s.io",
        "",
    );
    let lease = args.leader.lease_name.as_str();
    let cm = args.proxy_tls.proxy_ca_configmap.as_str();
    let mwc = args.webhook.webhook_configuration.as_str();

    let controller = UserInfo::service_account(NAMESPACE, "idbind-controller");
    let mut needed = vec![
        request("list", ib, "identitybindings", "", ""),
        request("watch", ib, "identitybindings", "", ""),
        request("patch", ib, "identitybindings", "", "b"),
        request("patch", ib, "identitybindings/status", "", "b"),
        request("list", rbac, "clusterrolebindings", "", ""),
        request("watch", rbac, "clusterrolebindings", "", ""),
        ResourceAttributes::use_managed_identity(&client_id),
        request("create", adm, "mutatingwebhookconfigurations", "", ""),
        request("get", adm, "mutatingwebhookconfigurations", "", mwc),
        request("update", adm, "mutatingwebhookconfigurations", "", mwc),
        request("get", core, "serviceaccounts", "apps", "web"),
        request("list", core, "namespaces", "", ""),
        request("watch", core, "namespaces", "", ""),
        // A cluster-wide list with `fieldSelector=metadata.name=<name>` is authorized by name.
        request("list", core, "configmaps", "", cm),
        request("create", core, "configmaps", "apps", ""),
        request("update", core, "configmaps", "apps", cm),
        request("create", core, "secrets", NAMESPACE, ""),
        request("create", "coordination.k8s.io", "leases", NAMESPACE, ""),
        request("get", "coordination.k8s.io", "leases", NAMESPACE, lease),
        request("update", "coordination.k8s.io", "leases", NAMESPACE, lease),
        request("create", "events.k8s.io", "events", "default", ""),
        request("patch", "events.k8s.io", "events", "default", "e"),
    ];
    for verb in ["get", "create", "update", "delete"] {
        needed.push(request(verb, rbac, "clusterroles", "", &use_mi));
        needed.push(request(verb, rbac, "clusterrolebindings", "", &use_mi));
    }
    for secret in [
        &args.keys.signing_key_secret,
        &args.proxy_tls.proxy_ca_secret,
        &args.proxy_tls.proxy_tls_secret,
        &args.webhook.webhook_secret,
    ] {
        for verb in ["get", "list", "watch", "update"] {
            needed.push(request(verb, core, "secrets", NAMESPACE, secret));
        }
    }
    for r in &needed {
        assert!(
            authorizer.can(&controller, r).allowed,
            "the controller cannot {r:?}"
        );
    }
    let forbidden = [
        request(
            "get",
            core,
            "secrets",
            "kube-system",
            &args.keys.signing_key_secret,
        ),
        request("list", core, "secrets", NAMESPACE, ""),
        request("get", core, "secrets", NAMESPACE, "someone-else"),
        request(
            "delete",
            core,
            "secrets",
            NAMESPACE,
            &args.keys.signing_key_secret,
        ),
        request("update", core, "configmaps", "apps", "app-settings"),
        request("get", core, "configmaps", "apps", "app-settings"),
        request("delete", core, "configmaps", "apps", cm),
        request("create", core, "pods", "apps", ""),
        request("list", core, "pods", "", ""),
        request("escalate", rbac, "clusterroles", "", &use_mi),
        request("bind", rbac, "clusterroles", "", "cluster-admin"),
        request("create", rbac, "roles", "apps", ""),
        request("impersonate", core, "serviceaccounts", "apps", "web"),
        request("update", adm, "mutatingwebhookconfigurations", "", "other"),
        request(
            "update",
            adm,
            "validatingadmissionpolicies",
            "",
            "idbind-controller-writes",
        ),
        request(
            "delete",
            adm,
            "validatingadmissionpolicybindings",
            "",
            "idbind-controller-writes",
        ),
        request("create", "authentication.k8s.io", "tokenreviews", "", ""),
        request("update", ib, "identitybindings", "", "b"),
        request(
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-system",
            "kube-controller-manager",
        ),
    ];
    for r in &forbidden {
        assert!(
            !authorizer.can(&controller, r).allowed,
            "the controller can {r:?}"
        );
    }

    let proxy = UserInfo::service_account(NAMESPACE, "idbind-proxy");
    for r in [
        request("create", "authentication.k8s.io", "tokenreviews", "", ""),
        request("create", "authorization.k8s.io", "subjectaccessreviews", "", ""),
        request("list", ib, "identitybindings", "", ""),
        request("watch", ib, "identitybindings", "", ""),
    ] {
        assert!(authorizer.can(&proxy, &r).allowed, "the proxy cannot {r:?}");
    }
    for r in [
        request("get", core, "secrets", NAMESPACE, &args.keys.signing_key_secret),
        request("patch", ib, "identitybindings", "", "b"),
        request("get", core, "configmaps", NAMESPACE, cm),
        ResourceAttributes::use_managed_identity(&client_id),
        request("create", core, "serviceaccounts/token", "apps", "web"),
    ] {
        assert!(!authorizer.can(&proxy, &r).allowed, "the proxy can {r:?}");
    }
    assert!(
        !authorizer
            .can(
                &UserInfo::service_account("apps", "web"),
                &ResourceAttributes::use_managed_identity(&client_id)
            )
            .allowed
    );
}

/// Whether the admission policy lets `request` (with `object`/`old_object`) through.
fn admitted(policy: &Value, request: &Value, object: &Value, old_object: &Value) -> Result<(), String> {
    let eval = |expression: &str| -> Result<bool, String> {
        let program = cel::Program::compile(expression).map_err(|e| format!("{expression}: {e}"))?;
        let mut ctx = cel::Context::default();
        ctx.add_variable("request", request.clone())
            .map_err(|e| e.to_string())?;
        ctx.add_variable("object", object.clone())
            .map_err(|e| e.to_string())?;
        ctx.add_variable("oldObject", old_object.clone())
            .map_err(|e| e.to_string())?;
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("{expression} gave {other:?}, not a bool")),
            // failurePolicy: Fail
            Err(e) => Err(format!("{expression} failed: {e}")),
        }
    };
    let spec = &policy["spec"];
    for condition in spec["matchConditions"].as_array().unwrap() {
        if !eval(condition["expression"].as_str().unwrap())? {
            return Ok(());
        }
    }
    for validation in spec["validations"].as_array().unwrap() {
        if !eval(validation["expression"].as_str().unwrap())? {
            return Err(validation["message"].as_str().unwrap().to_owned());
        }
    }
    Ok(())
}

fn admission_request(
    user: &str,
    operation: &str,
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Value {
    json!({
        "operation": operation,
        "name": name,
        "namespace": namespace,
        "resource": {"group": group, "version": "v1", "resource": resource},
        "userInfo": {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]},
    })
}

#[test]
fn the_admission_policy_admits_the_controller_s_own_writes_only() {
    let Some(docs) = render("deploy/base") else { return };
    let policy = find(&docs, "ValidatingAdmissionPolicy", "idbind-controller-writes");
    let binding = find(
        &docs,
        "ValidatingAdmissionPolicyBinding",
        "idbind-controller-writes",
    );
    assert_eq!(binding["spec"]["policyName"], "idbind-controller-writes");
    assert_eq!(strs(&binding["spec"]["validationActions"]), ["Deny"]);
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");

    let me = "system:serviceaccount:idbind:idbind-controller";
    let client_id = idbind_model::ClientId::parse("3f2504e0-4f89-41d3-9a0c-0305e82c3301").unwrap();
    let subjects = [
        idbind_model::AllowedSubject {
            namespace: "apps".into(),
            service_account: Some("web".into()),
        },
        idbind_model::AllowedSubject {
            namespace: "batch".into(),
            service_account: None,
        },
    ];
    let generated = idbind_rbac::generate(&client_id, &subjects);
    let role = serde_json::to_value(&generated.cluster_role).unwrap();
    let role_binding = serde_json::to_value(&generated.cluster_role_binding).unwrap();
    let name = format!("use-mi-{client_id}");
    let rbac = "rbac.authorization.k8s.io";
    let write =
        |user: &str, op: &str, group: &str, resource: &str, ns: &str, object_name: &str, object: &Value| {
            let request = admission_request(user, op, group, resource, ns, object_name);
            let (new, old) = if op == "DELETE" {
                (Value::Null, object.clone())
            } else {
                (object.clone(), Value::Null)
            };
            admitted(policy, &request, &new, &old)
        };
    let secret = json!({"metadata": {"name": "idbind-signing-keys"}});

    // What the controller does.
    for op in ["CREATE", "UPDATE", "DELETE"] {
        write(me, op, rbac, "clusterroles", "", &name, &role).unwrap();
        write(me, op, rbac, "clusterrolebindings", "", &name, &role_binding).unwrap();
    }
    let empty_binding =
        serde_json::to_value(idbind_rbac::generate(&client_id, &[]).cluster_role_binding).unwrap();
    write(
        me,
        "UPDATE",
        rbac,
        "clusterrolebindings",
        "",
        &name,
        &empty_binding,
    )
    .unwrap();
    write(
        me,
        "CREATE",
        "",
        "configmaps",
        "apps",
        "idbind-proxy-ca",
        &json!({}),
    )
    .unwrap();
    write(
        me,
        "UPDATE",
        "",
        "configmaps",
        "idbind",
        "idbind-proxy-ca",
        &json!({}),
    )
    .unwrap();
    for s in [
        "idbind-signing-keys",
        "idbind-proxy-ca-key",
        "idbind-proxy-tls",
        "idbind-webhook-tls",
    ] {
        write(me, "CREATE", "", "secrets", "idbind", s, &secret).unwrap();
    }
    write(
        me,
        "UPDATE",
        "coordination.k8s.io",
        "leases",
        "idbind",
        "idbind-controller",
        &json!({}),
    )
    .unwrap();
    write(
        me,
        "CREATE",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "",
        "idbind",
        &json!({}),
    )
    .unwrap();

    // What it must not do.
    let other_client = idbind_model::ClientId::parse("11111111-2222-4333-8444-555555555555").unwrap();
    let mut wrong_target = role.clone();
    wrong_target["rules"][0]["resources"] = json!([other_client.to_string()]);
    let mut extra_rule = role.clone();
    extra_rule["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}));
    let mut aggregated = role;
    aggregated["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]});
    let mut admin_binding = role_binding.clone();
    admin_binding["roleRef"]["name"] = json!("cluster-admin");
    let mut user_subject = role_binding;
    user_subject["subjects"] = json!([{"kind": "User", "name": "mallory", "apiGroup": rbac}]);
    let denied = [
        write(
            me,
            "DELETE",
            rbac,
            "clusterroles",
            "",
            "cluster-admin",
            &json!({"metadata": {"name": "cluster-admin"}}),
        ),
        write(
            me,
            "UPDATE",
            rbac,
            "clusterrolebindings",
            "",
            "cluster-admin",
            &admin_binding,
        ),
        write(me, "CREATE", rbac, "clusterroles", "", &name, &wrong_target),
        write(me, "CREATE", rbac, "clusterroles", "", &name, &extra_rule),
        write(me, "CREATE", rbac, "clusterroles", "", &name, &aggregated),
        write(
            me,
            "CREATE",
            rbac,
            "clusterrolebindings",
            "",
            &name,
            &admin_binding,
        ),
        write(
            me,
            "CREATE",
            rbac,
            "clusterrolebindings",
            "",
            &name,
            &user_subject,
        ),
        write(me, "UPDATE", "", "configmaps", "apps", "app-settings", &json!({})),
        write(me, "CREATE", "", "secrets", "idbind", "other", &secret),
        write(
            me,
            "CREATE",
            "",
            "secrets",
            "kube-system",
            "idbind-signing-keys",
            &secret,
        ),
        write(
            me,
            "UPDATE",
            "coordination.k8s.io",
            "leases",
            "kube-system",
            "kube-scheduler",
            &json!({}),
        ),
        write(
            me,
            "DELETE",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "",
            "other",
            &json!({}),
        ),
    ];
    for (i, outcome) in denied.iter().enumerate() {
        assert!(outcome.is_err(), "write #{i} was admitted");
    }
    assert!(
        denied[0].as_ref().unwrap_err().contains("use-mi-"),
        "{:?}",
        denied[0]
    );

    // Nobody else is affected.
    write(
        "admin",
        "DELETE",
        rbac,
        "clusterroles",
        "",
        "cluster-admin",
        &json!({}),
    )
    .unwrap();
    write(
        "system:serviceaccount:idbind:idbind-proxy",
        "CREATE",
        "",
        "secrets",
        "idbind",
        "x",
        &secret,
    )
    .unwrap();
}

#[test]
fn the_e2e_seed_matches_the_controller_s_settings() {
    let Some(docs) = overlay("e2e-kind") else { return };
    let config_map = find(&docs, "ConfigMap", "azure-emulator-seed");
    let seed: idbind_emulator::Seed = config_map["data"]["seed.json"].as_str().unwrap().parse().unwrap();
    let args = controller_args(&docs);
    let tenant = seed
        .tenants
        .iter()
        .find(|t| Some(t.id.to_string()) == args.azure.azure_tenant_id)
        .expect("the tenant");
    let principal = tenant
        .service_principals
        .iter()
        .find(|p| Some(p.client_id.to_string()) == args.azure.azure_client_id)
        .expect("the controller's principal");
    let secret = all(&docs, "Secret")
        .find(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("idbind-azure-credentials")
        })
        .unwrap();
    let encoded = secret["data"]["client-secret"].as_str().unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), principal.secret);
    assert_eq!(
        args.azure.azure_client_secret_file.as_deref(),
        Some(std::path::Path::new(
            "/var/run/secrets/idbind/azure/client-secret"
        ))
    );
    let identities: Vec<_> = tenant
        .subscriptions
        .iter()
        .flat_map(|s| &s.resource_groups)
        .flat_map(|g| &g.identities)
        .collect();
    assert_eq!(identities.len(), 1);
    assert!(
        args.issuer
            .issuer_base_url
            .as_str()
            .starts_with("https://idbind-issuer.idbind.svc")
    );
}
