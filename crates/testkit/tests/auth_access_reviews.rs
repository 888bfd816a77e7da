#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectAccessReview at the function
//! level: allow and deny cases mirroring `idbind-rbac`'s table (the Kubernetes RBAC documentation
//! examples plus idbind's generated `use-mi-<clientId>` RBAC), `system:masters`, validation, and
//! the bootstrap policy.

use idbind_model::{AllowedSubject, ClientId};
use idbind_testkit::auth::{AccessReviewer, RbacSnapshot, UserInfo, bootstrap_rbac};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

const CLIENT_A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const CLIENT_B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

/// The documentation examples the RBAC table tests use, plus idbind's RBAC for two identities.
fn snapshot() -> RbacSnapshot {
    let objects = json!([
        {"kind": "Role", "metadata": {"namespace": "default", "name": "pod-reader"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "read-pods", "namespace": "default"},
         "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "Role", "name": "pod-reader", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "ClusterRole", "metadata": {"name": "secret-reader"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "read-secrets", "namespace": "development"},
         "subjects": [{"kind": "User", "name": "dave", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "ClusterRole", "name": "secret-reader", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "ClusterRoleBinding", "metadata": {"name": "read-secrets-global"},
         "subjects": [{"kind": "Group", "name": "manager", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "ClusterRole", "name": "secret-reader", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "ClusterRole", "metadata": {"name": "pod-and-pod-logs-reader"},
         "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]},
        {"kind": "ClusterRoleBinding", "metadata": {"name": "read-pod-logs"},
         "subjects": [{"kind": "Group", "name": "log-readers", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "ClusterRole", "name": "pod-and-pod-logs-reader", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "Role", "metadata": {"namespace": "default", "name": "configmap-updater"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["my-configmap"], "verbs": ["update", "get"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "update-my-configmap", "namespace": "default"},
         "subjects": [{"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "Role", "name": "configmap-updater", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "RoleBinding", "metadata": {"name": "builder-reads-pods", "namespace": "ci"},
         "subjects": [{"kind": "ServiceAccount", "name": "builder"}],
         "roleRef": {"kind": "ClusterRole", "name": "pod-and-pod-logs-reader", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "ClusterRole", "metadata": {"name": "healthz-checker"},
         "rules": [{"nonResourceURLs": ["/healthz", "/healthz/*"], "verbs": ["get", "post"]}]},
        {"kind": "ClusterRoleBinding", "metadata": {"name": "healthz-checkers"},
         "subjects": [{"kind": "Group", "name": "probes", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "ClusterRole", "name": "healthz-checker", "apiGroup": "rbac.authorization.k8s.io"}},
        {"kind": "ClusterRoleBinding", "metadata": {"name": "dangling"},
         "subjects": [{"kind": "User", "name": "ghost", "apiGroup": "rbac.authorization.k8s.io"}],
         "roleRef": {"kind": "ClusterRole", "name": "does-not-exist", "apiGroup": "rbac.authorization.k8s.io"}},
        // A namespaced grant of idbind's verb: never counts for the cluster-scoped check.
        {"kind": "Role", "metadata": {"namespace": "team-d", "name": "use-a-in-namespace"},
         "rules": [{"apiGroups": ["cid.wi.aks.azure.com"], "resources": [CLIENT_A], "verbs": ["use-managed-identity"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "use-a-in-namespace", "namespace": "team-d"},
         "subjects": [{"kind": "ServiceAccount", "name": "api", "namespace": "team-d"}],
         "roleRef": {"kind": "Role", "name": "use-a-in-namespace", "apiGroup": "rbac.authorization.k8s.io"}},
    ]);
    let mut snapshot = RbacSnapshot::default();
    for object in objects.as_array().unwrap() {
        let parse = |o: &Value| {
            let mut o = o.clone();
            o["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
            o
        };
        match object["kind"].as_str().unwrap() {
            "Role" => snapshot
                .roles
                .push(serde_json::from_value::<Role>(parse(object)).unwrap()),
            "RoleBinding" => snapshot
                .role_bindings
                .push(serde_json::from_value::<RoleBinding>(parse(object)).unwrap()),
            "ClusterRole" => snapshot
                .cluster_roles
                .push(serde_json::from_value::<ClusterRole>(parse(object)).unwrap()),
            "ClusterRoleBinding" => {
                snapshot
                    .cluster_role_bindings
                    .push(serde_json::from_value::<ClusterRoleBinding>(parse(object)).unwrap());
            }
            other => panic!("{other}"),
        }
    }
    let allowed_a = [
        AllowedSubject::parse("team-a/api").unwrap(),
        AllowedSubject::parse("team-b").unwrap(),
    ];
    let allowed_b = [AllowedSubject::parse("team-c/worker").unwrap()];
    snapshot
        .with_generated(idbind_rbac::generate(
            &ClientId::parse(CLIENT_A).unwrap(),
            &allowed_a,
        ))
        .with_generated(idbind_rbac::generate(
            &ClientId::parse(CLIENT_B).unwrap(),
            &allowed_b,
        ))
}

struct Subject {
    user: &'static str,
    groups: Vec<String>,
}

fn user(name: &'static str) -> Subject {
    Subject {
        user: name,
        groups: Vec::new(),
    }
}

fn member(name: &'static str, group: &str) -> Subject {
    Subject {
        user: name,
        groups: vec![group.to_owned()],
    }
}

/// A service account with the groups TokenReview gives it.
fn sa(namespace: &str, name: &str) -> Subject {
    let user: &'static str = Box::leak(format!("system:serviceaccount:{namespace}:{name}").into_boxed_str());
    Subject {
        user,
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    }
}

fn resource(verb: &str, group: &str, resource: &str, namespace: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(group.into()),
        resource: Some(resource.into()),
        namespace: (!namespace.is_empty()).then(|| namespace.into()),
        ..ResourceAttributes::default()
    }
}

/// idbind's check: `use-managed-identity` on `cid.wi.aks.azure.com/<clientId>`, cluster-scoped.
fn use_identity(client_id: &str) -> ResourceAttributes {
    resource("use-managed-identity", "cid.wi.aks.azure.com", client_id, "")
}

fn sar(subject: &Subject, attributes: ResourceAttributes) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(subject.user.into()),
            groups: Some(subject.groups.clone()),
            resource_attributes: Some(attributes),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

#[test]
fn subject_access_reviews_mirror_the_rbac_table() {
    let reviewer = AccessReviewer::new(&snapshot());
    let named = |mut a: ResourceAttributes, name: &str| {
        a.name = Some(name.into());
        a
    };
    let sub = |mut a: ResourceAttributes, subresource: &str| {
        a.subresource = Some(subresource.into());
        a
    };
    let cases: Vec<(&str, Subject, ResourceAttributes, bool)> = vec![
        (
            "Role: jane gets pods in default",
            user("jane"),
            resource("get", "", "pods", "default"),
            true,
        ),
        (
            "Role: wrong verb",
            user("jane"),
            resource("delete", "", "pods", "default"),
            false,
        ),
        (
            "Role: wrong resource",
            user("jane"),
            resource("get", "", "services", "default"),
            false,
        ),
        (
            "Role: wrong apiGroup",
            user("jane"),
            resource("get", "apps", "pods", "default"),
            false,
        ),
        (
            "RoleBinding: other namespace",
            user("jane"),
            resource("get", "", "pods", "kube-system"),
            false,
        ),
        (
            "RoleBinding: not cluster-wide",
            user("jane"),
            resource("list", "", "pods", ""),
            false,
        ),
        (
            "RoleBinding->ClusterRole in its namespace",
            user("dave"),
            resource("get", "", "secrets", "development"),
            true,
        ),
        (
            "RoleBinding->ClusterRole elsewhere",
            user("dave"),
            resource("get", "", "secrets", "default"),
            false,
        ),
        (
            "ClusterRoleBinding to a group",
            member("mia", "manager"),
            resource("list", "", "secrets", ""),
            true,
        ),
        (
            "Group subject: user named like the group",
            user("manager"),
            resource("get", "", "secrets", "prod"),
            false,
        ),
        (
            "pods/log rule grants the subresource",
            member("lou", "log-readers"),
            sub(resource("get", "", "pods", "x"), "log"),
            true,
        ),
        (
            "pods/log rule does not grant exec",
            member("lou", "log-readers"),
            sub(resource("get", "", "pods", "x"), "exec"),
            false,
        ),
        (
            "resourceNames: the named object",
            user("carol"),
            named(resource("update", "", "configmaps", "default"), "my-configmap"),
            true,
        ),
        (
            "resourceNames: another object",
            user("carol"),
            named(resource("get", "", "configmaps", "default"), "other"),
            false,
        ),
        (
            "resourceNames: list has no name",
            user("carol"),
            resource("list", "", "configmaps", "default"),
            false,
        ),
        (
            "ServiceAccount subject defaults to the binding's namespace",
            sa("ci", "builder"),
            resource("get", "", "pods", "ci"),
            true,
        ),
        (
            "ServiceAccount subject: other namespace",
            sa("qa", "builder"),
            resource("get", "", "pods", "ci"),
            false,
        ),
        (
            "binding to a missing role grants nothing",
            user("ghost"),
            resource("get", "", "pods", "default"),
            false,
        ),
        // idbind's generated RBAC.
        (
            "idbind: allowed service account",
            sa("team-a", "api"),
            use_identity(CLIENT_A),
            true,
        ),
        (
            "idbind: other SA of a namespace allowed per SA",
            sa("team-a", "web"),
            use_identity(CLIENT_A),
            false,
        ),
        (
            "idbind: any SA of a namespace allowed as a whole",
            sa("team-b", "anything"),
            use_identity(CLIENT_A),
            true,
        ),
        (
            "idbind: namespace not allowed",
            sa("team-c", "api"),
            use_identity(CLIENT_A),
            false,
        ),
        (
            "idbind: SA allowed for another identity only",
            sa("team-c", "worker"),
            use_identity(CLIENT_A),
            false,
        ),
        (
            "idbind: that other identity",
            sa("team-c", "worker"),
            use_identity(CLIENT_B),
            true,
        ),
        (
            "idbind: the verb is exact",
            sa("team-a", "api"),
            resource("get", "cid.wi.aks.azure.com", CLIENT_A, ""),
            false,
        ),
        (
            "idbind: the client id is the resource, not a name",
            sa("team-a", "api"),
            named(use_identity(CLIENT_B), CLIENT_A),
            false,
        ),
        (
            "idbind: a namespaced grant does not count cluster-wide",
            sa("team-d", "api"),
            use_identity(CLIENT_A),
            false,
        ),
        (
            "idbind: ... only in its namespace",
            sa("team-d", "api"),
            resource("use-managed-identity", "cid.wi.aks.azure.com", CLIENT_A, "team-d"),
            true,
        ),
    ];
    assert!(cases.iter().filter(|c| !c.3).count() >= 10);
    let mut failures = Vec::new();
    for (name, subject, attributes, allowed) in cases {
        let review = reviewer
            .subject_access_review(&sar(&subject, attributes))
            .unwrap();
        let status = review.status.unwrap();
        if status.allowed != allowed {
            failures.push(format!("{name}: expected allowed={allowed}, got {status:?}"));
            continue;
        }
        if allowed
            && !status
                .reason
                .as_deref()
                .unwrap_or_default()
                .starts_with("RBAC: allowed by ")
        {
            failures.push(format!("{name}: allowed without an RBAC reason: {status:?}"));
        }
        if status.denied.is_some() {
            failures.push(format!("{name}: RBAC never sets `denied`: {status:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reasons_and_wire_shape_match_kube_apiserver() {
    let reviewer = AccessReviewer::new(&snapshot());
    let review = reviewer
        .subject_access_review(&sar(&sa("team-a", "api"), use_identity(CLIENT_A)))
        .unwrap();
    let json = serde_json::to_value(&review).unwrap();
    assert_eq!(json["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(json["kind"], "SubjectAccessReview");
    assert_eq!(
        json["status"],
        json!({
            "allowed": true,
            "reason": format!(
                r#"RBAC: allowed by ClusterRoleBinding "use-mi-{CLIENT_A}" of ClusterRole "use-mi-{CLIENT_A}" to ServiceAccount "api/team-a""#
            ),
        })
    );
    assert_eq!(
        json["spec"]["resourceAttributes"]["resource"], CLIENT_A,
        "the spec is echoed"
    );

    let denied = reviewer
        .subject_access_review(&sar(&sa("team-c", "api"), use_identity(CLIENT_A)))
        .unwrap();
    assert_eq!(
        serde_json::to_value(denied.status.unwrap()).unwrap(),
        json!({ "allowed": false })
    );

    let ghost = reviewer
        .subject_access_review(&sar(&user("ghost"), resource("get", "", "pods", "")))
        .unwrap();
    assert_eq!(
        ghost.status.unwrap().reason.as_deref(),
        Some(r#"RBAC: ClusterRoleBinding "dangling": ClusterRole "does-not-exist" not found"#)
    );
}

#[test]
fn system_masters_is_allowed_everything_without_any_binding() {
    let reviewer = AccessReviewer::new(&RbacSnapshot::default());
    let admin = member("admin", "system:masters");
    let status = reviewer
        .subject_access_review(&sar(&admin, use_identity(CLIENT_A)))
        .unwrap()
        .status
        .unwrap();
    assert!(status.allowed);
    assert_eq!(status.reason, None);
    let non_resource = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("admin".into()),
            groups: Some(vec!["system:masters".into()]),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/metrics".into()),
                verb: Some("get".into()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    assert!(
        reviewer
            .subject_access_review(&non_resource)
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    // The group, not the user name, is what counts.
    let status = reviewer
        .subject_access_review(&sar(&user("admin"), use_identity(CLIENT_A)))
        .unwrap()
        .status
        .unwrap();
    assert!(!status.allowed);
}

#[test]
fn non_resource_urls() {
    let reviewer = AccessReviewer::new(&snapshot());
    let review = |who: &Subject, verb: &str, path: &str| {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.into()),
                groups: Some(who.groups.clone()),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.into()),
                    verb: Some(verb.into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        reviewer
            .subject_access_review(&review)
            .unwrap()
            .status
            .unwrap()
            .allowed
    };
    assert!(review(&member("p", "probes"), "get", "/healthz"));
    assert!(review(&member("p", "probes"), "post", "/healthz/etcd"));
    assert!(!review(&member("p", "probes"), "delete", "/healthz"));
    assert!(!review(&member("p", "probes"), "get", "/metrics"));
    assert!(!review(&user("jane"), "get", "/healthz"));
}

#[test]
fn invalid_reviews_are_rejected_like_kube_apiserver() {
    let reviewer = AccessReviewer::new(&snapshot());
    let mut no_subject = sar(&user("x"), use_identity(CLIENT_A));
    no_subject.spec.user = None;
    no_subject.spec.groups = None;
    let err = reviewer.subject_access_review(&no_subject).unwrap_err();
    assert_eq!(err.code(), 422);
    assert_eq!(
        err.to_string(),
        r#"SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least one of user or group must be specified"#
    );

    let mut neither = sar(&user("x"), use_identity(CLIENT_A));
    neither.spec.resource_attributes = None;
    let err = reviewer.subject_access_review(&neither).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        "{err}"
    );

    let mut both = sar(&user("x"), use_identity(CLIENT_A));
    both.spec.non_resource_attributes = Some(NonResourceAttributes::default());
    let err = reviewer.subject_access_review(&both).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("cannot be specified in combination with resourceAttributes"),
        "{err}"
    );
    assert_eq!(
        serde_json::to_value(err.to_status()).unwrap()["reason"],
        "Invalid"
    );
}

#[test]
fn local_subject_access_reviews_are_confined_to_their_namespace() {
    let reviewer = AccessReviewer::new(&snapshot());
    let local = |namespace: &str| LocalSubjectAccessReview {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: SubjectAccessReviewSpec {
            user: Some("jane".into()),
            resource_attributes: Some(resource("get", "", "pods", namespace)),
            ..SubjectAccessReviewSpec::default()
        },
        status: None,
    };
    assert!(
        reviewer
            .local_subject_access_review("default", &local("default"))
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    let err = reviewer
        .local_subject_access_review("default", &local("kube-system"))
        .unwrap_err();
    assert_eq!(err.code(), 422);
    assert!(err.to_string().contains(r#"spec.resourceAttributes.namespace: Invalid value: "kube-system": must match metadata.namespace"#), "{err}");
}

#[test]
fn self_subject_access_reviews_answer_for_the_requesting_user() {
    let reviewer = AccessReviewer::new(&snapshot());
    let ask = |attributes: ResourceAttributes| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            non_resource_attributes: None,
        },
        ..SelfSubjectAccessReview::default()
    };
    let api = UserInfo::new(
        "system:serviceaccount:team-a:api",
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated",
        ],
    );
    let web = UserInfo::new(
        "system:serviceaccount:team-a:web",
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated",
        ],
    );
    assert!(
        reviewer
            .self_subject_access_review(&api, &ask(use_identity(CLIENT_A)))
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    assert!(
        !reviewer
            .self_subject_access_review(&web, &ask(use_identity(CLIENT_A)))
            .unwrap()
            .status
            .unwrap()
            .allowed
    );

    let empty = SelfSubjectAccessReview::default();
    assert_eq!(
        reviewer
            .self_subject_access_review(&api, &empty)
            .unwrap_err()
            .code(),
        422
    );
}

#[test]
fn the_bootstrap_policy_lets_clients_discover_and_ask() {
    let reviewer = AccessReviewer::new(&bootstrap_rbac());
    let authenticated = UserInfo::new("jane", ["system:authenticated"]);
    let anonymous = UserInfo::anonymous();
    let service_account = UserInfo::new(
        "system:serviceaccount:a:b",
        [
            "system:serviceaccounts",
            "system:serviceaccounts:a",
            "system:authenticated",
        ],
    );
    let url = |verb: &str, path: &str| idbind_testkit::auth::NonResourceAttributes::new(verb, path).into();
    let ssar = idbind_testkit::auth::ResourceAttributes::new(
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
    )
    .into();

    assert!(
        reviewer
            .authorize(&authenticated, &url("get", "/apis/apps/v1"))
            .allowed
    );
    assert!(
        reviewer.authorize(&authenticated, &ssar).allowed,
        "kubectl auth can-i works for everyone"
    );
    assert!(
        !reviewer
            .authorize(&authenticated, &url("get", "/openid/v1/jwks"))
            .allowed
    );
    assert!(
        reviewer
            .authorize(&service_account, &url("get", "/openid/v1/jwks"))
            .allowed
    );
    assert!(reviewer.authorize(&anonymous, &url("get", "/version")).allowed);
    assert!(!reviewer.authorize(&anonymous, &url("get", "/api")).allowed);
    assert!(!reviewer.authorize(&anonymous, &ssar).allowed);
    let admin = UserInfo::new("someone", ["system:masters"]);
    assert!(
        reviewer
            .authorize(
                &admin,
                &idbind_testkit::auth::ResourceAttributes::new("delete", "", "nodes").into()
            )
            .allowed
    );
    // cluster-admin is also stored and grants through RBAC (as `kubectl get clusterroles` shows).
    let snapshot = bootstrap_rbac();
    assert!(
        snapshot
            .cluster_roles
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some("cluster-admin"))
    );
}
