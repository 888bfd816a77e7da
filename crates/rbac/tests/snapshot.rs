#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Building an authorizer from a snapshot: aggregation as the controller computes it, problems
//! reported instead of failures, SubjectAccessReviews, and bad data that must not panic.

mod common;

use std::collections::BTreeMap;

use idbind_rbac::{Authorizer, Error, RbacSnapshot, ResourceAttributes, UserInfo};
use k8s_openapi::{
    api::{
        authorization::v1::{self as authorizationv1, SubjectAccessReviewSpec},
        rbac::v1::{
            AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

fn rule(verb: &str, resource: &str) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: vec![verb.to_owned()],
        ..PolicyRule::default()
    }
}

fn rules(list: &[(&str, &str)]) -> Option<Vec<PolicyRule>> {
    Some(list.iter().map(|(verb, resource)| rule(verb, resource)).collect())
}

fn role(name: &str, labels: &[(&str, &str)], rules: Option<Vec<PolicyRule>>) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        rules,
        aggregation_rule: None,
    }
}

fn aggregating(mut role: ClusterRole, selectors: &[(&str, &str)]) -> ClusterRole {
    let selectors = selectors
        .iter()
        .map(|(k, v)| LabelSelector {
            match_labels: Some(BTreeMap::from([((*k).to_owned(), (*v).to_owned())])),
            match_expressions: None,
        })
        .collect();
    role.aggregation_rule = Some(AggregationRule {
        cluster_role_selectors: Some(selectors),
    });
    role
}

fn bind(name: &str, kind: &str, role: &str, user: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: None,
            kind: kind.to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: user.into(),
            ..Subject::default()
        }]),
    }
}

#[test]
fn aggregation_replaces_rules_in_selector_then_name_order() {
    let authorizer = common::fixture_snapshot().authorizer();
    let endpoints = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["services".into(), "endpoints".into(), "pods".into()]),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    }];
    assert_eq!(
        authorizer.cluster_role_rules("monitoring"),
        Some(endpoints.clone())
    );
    assert_eq!(authorizer.cluster_role_rules("monitoring-plus"), Some(endpoints));
    let crd_rules = authorizer.cluster_role_rules("crd-reader").unwrap();
    let resources: Vec<_> = crd_rules
        .iter()
        .map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        resources,
        [vec!["crontabs".to_owned()], vec!["gadgets".to_owned()]]
    );
    assert_eq!(authorizer.cluster_role_rules("no-such-role"), None);
}

#[test]
fn aggregation_removes_duplicates_skips_itself_and_terminates_on_cycles() {
    let snapshot = RbacSnapshot {
        cluster_roles: vec![
            aggregating(
                // Selects itself too; its own rules are overwritten, never aggregated.
                role(
                    "a",
                    &[("to-b", "true"), ("to-a", "true")],
                    rules(&[("delete", "nodes")]),
                ),
                &[("to-a", "true")],
            ),
            aggregating(role("b", &[("to-a", "true")], None), &[("to-b", "true")]),
            role(
                "c",
                &[("to-a", "true")],
                rules(&[("get", "pods"), ("list", "pods")]),
            ),
            role(
                "d",
                &[("to-a", "true")],
                rules(&[("list", "pods"), ("get", "services")]),
            ),
        ],
        ..RbacSnapshot::default()
    };
    let authorizer = snapshot.authorizer();
    // In a cycle the controller's result depends on which role it syncs first; here it is name order.
    let expected = rules(&[("get", "pods"), ("list", "pods"), ("get", "services")]);
    assert_eq!(authorizer.cluster_role_rules("a"), expected);
    assert_eq!(authorizer.cluster_role_rules("b"), expected);
    assert!(authorizer.problems().is_empty());
}

#[test]
fn an_aggregation_rule_without_selectors_leaves_no_rules() {
    let mut empty = role("empty", &[], rules(&[("get", "pods")]));
    empty.aggregation_rule = Some(AggregationRule {
        cluster_role_selectors: None,
    });
    let snapshot = RbacSnapshot {
        cluster_roles: vec![empty, role("other", &[], rules(&[("get", "nodes")]))],
        cluster_role_bindings: vec![bind("b", "ClusterRole", "empty", "u")],
        ..RbacSnapshot::default()
    };
    let authorizer = snapshot.authorizer();
    assert_eq!(authorizer.cluster_role_rules("empty"), Some(vec![]));
    assert!(
        !authorizer
            .can(&UserInfo::new("u"), &ResourceAttributes::new("get", "", "pods"))
            .allowed
    );
}

#[test]
fn an_empty_selector_aggregates_every_other_role() {
    let mut all = role("all", &[], None);
    all.aggregation_rule = Some(AggregationRule {
        cluster_role_selectors: Some(vec![LabelSelector::default()]),
    });
    let snapshot = RbacSnapshot {
        cluster_roles: vec![
            all,
            role("x", &[], rules(&[("get", "pods")])),
            role("y", &[], rules(&[("get", "nodes")])),
        ],
        ..RbacSnapshot::default()
    };
    assert_eq!(
        snapshot.authorizer().cluster_role_rules("all"),
        rules(&[("get", "pods"), ("get", "nodes")])
    );
}

#[test]
fn problems_list_invalid_aggregation_and_missing_roles() {
    let authorizer = common::fixture_snapshot().authorizer();
    let problems: Vec<String> = authorizer.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "ClusterRole \"broken-aggregate\": aggregationRule ignored, its own rules are kept: invalid label \
             selector requirement for key \"rbac.example.com/aggregate-to\": \"Equals\" is not a valid label \
             selector operator, expected In, NotIn, Exists or DoesNotExist",
            "ClusterRoleBinding \"dangling\": ClusterRole \"does-not-exist\" not found",
            "RoleBinding \"dangling-role/default\": Role \"pod-reader-typo\" not found",
        ]
    );
    assert!(
        matches!(&authorizer.problems()[0], Error::InvalidAggregationRule { cluster_role, .. } if cluster_role == "broken-aggregate")
    );
}

#[test]
fn unsupported_role_references_grant_nothing() {
    let snapshot = RbacSnapshot {
        cluster_roles: vec![role("r", &[], rules(&[("get", "pods")]))],
        cluster_role_bindings: vec![
            bind("to-role", "Role", "r", "u"),
            bind("to-group", "Group", "r", "u"),
        ],
        role_bindings: vec![RoleBinding {
            metadata: ObjectMeta {
                name: Some("odd".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: None,
                kind: "Policy".into(),
                name: "r".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "u".into(),
                ..Subject::default()
            }]),
        }],
        ..RbacSnapshot::default()
    };
    let authorizer = snapshot.authorizer();
    let decision = authorizer.can(
        &UserInfo::new("u"),
        &ResourceAttributes::new("get", "", "pods").in_namespace("ns"),
    );
    assert!(!decision.allowed);
    assert_eq!(authorizer.problems().len(), 3);
    assert!(
        decision
            .reason
            .contains("unsupported role reference kind \"Role\", expected ClusterRole"),
        "{decision:?}"
    );
    assert!(
        decision
            .reason
            .contains("\"Policy\", expected Role or ClusterRole"),
        "{decision:?}"
    );
}

#[test]
fn malformed_objects_are_skipped_without_panicking() {
    let mut nameless_role = role("x", &[], rules(&[("get", "pods")]));
    nameless_role.metadata.name = None;
    let mut nameless_binding = bind("b", "ClusterRole", "x", "u");
    nameless_binding.metadata.name = None;
    let mut bad_expression = role("bad", &[], None);
    bad_expression.aggregation_rule = Some(AggregationRule {
        cluster_role_selectors: Some(vec![LabelSelector {
            match_expressions: Some(vec![Default::default()]),
            match_labels: Some(BTreeMap::from([(String::new(), String::new())])),
        }]),
    });
    let snapshot = RbacSnapshot {
        cluster_roles: vec![nameless_role, bad_expression, ClusterRole::default()],
        cluster_role_bindings: vec![nameless_binding, ClusterRoleBinding::default()],
        roles: vec![Default::default()],
        role_bindings: vec![Default::default()],
    };
    let authorizer = Authorizer::new(&snapshot);
    assert!(
        !authorizer
            .can(&UserInfo::default(), &ResourceAttributes::default())
            .allowed
    );
    assert!(authorizer.who_can("", "", "", Some("")).is_empty());
    assert!(
        authorizer
            .problems()
            .iter()
            .any(|p| matches!(p, Error::InvalidAggregationRule { .. }))
    );
}

#[test]
fn subject_access_reviews_take_exactly_one_kind_of_attributes() {
    let authorizer = common::fixture_snapshot().authorizer();
    let spec = |resource, non_resource| SubjectAccessReviewSpec {
        user: Some("system:serviceaccount:qa:tester".into()),
        groups: Some(vec!["system:serviceaccounts:qa".into()]),
        resource_attributes: resource,
        non_resource_attributes: non_resource,
        ..SubjectAccessReviewSpec::default()
    };
    let pods = authorizationv1::ResourceAttributes {
        verb: Some("get".into()),
        resource: Some("pods".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let healthz = authorizationv1::NonResourceAttributes {
        path: Some("/healthz".into()),
        verb: Some("get".into()),
    };
    assert!(
        authorizer
            .review(&spec(Some(pods.clone()), None))
            .unwrap()
            .allowed
    );
    assert!(
        !authorizer
            .review(&spec(None, Some(healthz.clone())))
            .unwrap()
            .allowed
    );
    assert_eq!(authorizer.review(&spec(None, None)), Err(Error::InvalidReview));
    assert_eq!(
        authorizer.review(&spec(Some(pods), Some(healthz))),
        Err(Error::InvalidReview)
    );
}

#[test]
fn authorizer_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Authorizer>();
}
