#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `who_can`: the subjects of the bindings that grant a request, consistent with `can`.

mod common;

use idbind_model::{AllowedSubject, ClientId, RBAC_API_GROUP, RBAC_VERB};
use idbind_rbac::{Authorizer, RbacSnapshot, ResourceAttributes, Subject, UserInfo, generate};

fn client_id() -> ClientId {
    ClientId::parse("aaaaaaaa-0000-0000-0000-000000000001").unwrap()
}

fn generated_only() -> Authorizer {
    let allowed: Vec<_> = ["team-a/api", "team-b", "team-a/api"]
        .iter()
        .map(|s| AllowedSubject::parse(s).unwrap())
        .collect();
    RbacSnapshot::default()
        .with_generated(generate(&client_id(), &allowed))
        .authorizer()
}

fn names(subjects: &[Subject]) -> Vec<String> {
    subjects.iter().map(ToString::to_string).collect()
}

/// A user that is `subject`: the service account's user, a member of the group, the user.
fn user_of(subject: &Subject) -> UserInfo {
    match subject {
        Subject::ServiceAccount { namespace, name } => UserInfo::service_account(namespace, name),
        Subject::Group(group) => UserInfo::new("some-member").with_groups([group.as_str()]),
        Subject::User(name) => UserInfo::new(name.as_str()),
    }
}

#[test]
fn who_can_use_an_identity_lists_exactly_the_allowed_subjects() {
    let authorizer = generated_only();
    let who = authorizer.who_can(RBAC_VERB, RBAC_API_GROUP, &client_id().to_string(), None);
    assert_eq!(
        names(&who),
        ["Group system:serviceaccounts:team-b", "ServiceAccount team-a/api"]
    );
    assert_eq!(
        who,
        authorizer.who_can_request(&ResourceAttributes::use_managed_identity(&client_id()))
    );
    let other = ClientId::parse("bbbbbbbb-0000-0000-0000-000000000002").unwrap();
    assert!(
        authorizer
            .who_can(RBAC_VERB, RBAC_API_GROUP, &other.to_string(), None)
            .is_empty()
    );
    assert!(
        authorizer
            .who_can("get", RBAC_API_GROUP, &client_id().to_string(), None)
            .is_empty()
    );
}

#[test]
fn cluster_admins_appear_next_to_the_generated_subjects() {
    let authorizer = common::fixture_snapshot()
        .with_generated(generate(
            &client_id(),
            &[AllowedSubject::parse("team-a/api").unwrap()],
        ))
        .authorizer();
    let who = authorizer.who_can(RBAC_VERB, RBAC_API_GROUP, &client_id().to_string(), None);
    assert_eq!(names(&who), ["Group system:masters", "ServiceAccount team-a/api"]);
}

#[test]
fn namespace_scope_adds_the_role_bindings_of_that_namespace_only() {
    let authorizer = common::fixture_snapshot().authorizer();
    let cluster_wide = authorizer.who_can("get", "", "secrets", None);
    assert_eq!(
        names(&cluster_wide),
        [
            "Group manager",
            "Group system:masters",
            "ServiceAccount kube-system/default"
        ]
    );
    let development = authorizer.who_can("get", "", "secrets", Some("development"));
    assert_eq!(
        names(&development),
        [
            "Group manager",
            "Group system:masters",
            "ServiceAccount kube-system/default",
            "User dave"
        ]
    );
    assert_eq!(
        authorizer.who_can("get", "", "secrets", Some("default")),
        cluster_wide
    );
}

#[test]
fn service_account_subjects_get_the_role_binding_namespace() {
    let authorizer = common::fixture_snapshot().authorizer();
    let who = authorizer.who_can("get", "", "pods", Some("ci"));
    assert!(who.contains(&Subject::ServiceAccount {
        namespace: "ci".into(),
        name: "builder".into()
    }));
    assert!(who.contains(&Subject::User("system:serviceaccount:ci:deployer".into())));
    let everywhere = authorizer.who_can("get", "", "pods", None);
    assert!(
        !everywhere
            .iter()
            .any(|s| matches!(s, Subject::ServiceAccount { name, .. } if name == "builder"))
    );
}

#[test]
fn rules_with_resource_names_count_only_for_named_requests() {
    let authorizer = common::fixture_snapshot().authorizer();
    let carol = Subject::User("carol".into());
    assert!(
        !authorizer
            .who_can("get", "", "configmaps", Some("default"))
            .contains(&carol)
    );
    let named = ResourceAttributes::new("get", "", "configmaps")
        .in_namespace("default")
        .named("my-configmap");
    assert!(authorizer.who_can_request(&named).contains(&carol));
}

#[test]
fn bindings_to_missing_roles_list_no_one() {
    let authorizer = common::fixture_snapshot().authorizer();
    let ghost = Subject::User("ghost".into());
    for namespace in [None, Some("default")] {
        assert!(!authorizer.who_can("get", "", "pods", namespace).contains(&ghost));
    }
}

#[test]
fn every_subject_listed_is_allowed_by_can() {
    let authorizer = common::fixture_snapshot()
        .with_generated(generate(
            &client_id(),
            &[AllowedSubject::parse("team-b").unwrap()],
        ))
        .authorizer();
    let requests = [
        ResourceAttributes::use_managed_identity(&client_id()),
        ResourceAttributes::new("get", "", "secrets").in_namespace("development"),
        ResourceAttributes::new("get", "", "pods")
            .in_namespace("ci")
            .with_subresource("log"),
        ResourceAttributes::new("list", "stable.example.com", "crontabs").in_namespace("crds"),
        ResourceAttributes::new("watch", "", "services"),
    ];
    for request in &requests {
        let who = authorizer.who_can_request(request);
        assert!(!who.is_empty(), "{request:?}");
        assert!(
            who.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted and unique: {who:?}"
        );
        for subject in &who {
            let decision = authorizer.can(&user_of(subject), request);
            assert!(decision.allowed, "{subject} for {request:?}: {decision:?}");
        }
    }
}
