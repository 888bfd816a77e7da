//! The RBAC authorizer: which bindings apply to a user, and whether their roles grant a request,
//! as Kubernetes' `plugin/pkg/auth/authorizer/rbac` decides it.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::api::{
    authorization::v1::SubjectAccessReviewSpec,
    rbac::v1::{self as rbacv1, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef},
};

use crate::{
    Decision, Error, GeneratedRbac, NonResourceAttributes, ResourceAttributes, Result, Subject, UserInfo,
    aggregate, rules::Rule,
};

/// The RBAC objects of a cluster, as listed from the API. Build an [`Authorizer`] from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RbacSnapshot {
    /// All ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// All ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// All Roles, of every namespace.
    pub roles: Vec<Role>,
    /// All RoleBindings, of every namespace.
    pub role_bindings: Vec<RoleBinding>,
}

impl RbacSnapshot {
    /// The same snapshot with the objects `generate` produced added.
    #[must_use]
    pub fn with_generated(mut self, generated: GeneratedRbac) -> Self {
        self.cluster_roles.push(generated.cluster_role);
        self.cluster_role_bindings.push(generated.cluster_role_binding);
        self
    }

    /// Builds the authorizer for this snapshot.
    pub fn authorizer(&self) -> Authorizer {
        Authorizer::new(self)
    }
}

/// Answers authorization questions over one [`RbacSnapshot`] exactly as the Kubernetes RBAC
/// authorizer does. Pure and immutable: rebuild it when the objects change.
///
/// - A ClusterRoleBinding grants its ClusterRole cluster-wide and in every namespace.
/// - A RoleBinding grants its Role, or the rules of its ClusterRole, only in its own namespace.
/// - Aggregated ClusterRoles have the rules the aggregation controller would give them.
/// - Subjects: `User` by name, `Group` by membership, `ServiceAccount` by the user name
///   `system:serviceaccount:<namespace>:<name>` (namespace defaulting to the RoleBinding's).
/// - Bindings whose role does not exist grant nothing; they are reported, never fatal.
///
/// Bindings are visited in name order (ClusterRoleBindings first), so reasons are deterministic.
#[derive(Clone, Debug)]
pub struct Authorizer {
    cluster_role_bindings: Vec<Binding>,
    role_bindings: BTreeMap<String, Vec<Binding>>,
    cluster_role_rules: BTreeMap<String, Arc<[Rule]>>,
    problems: Vec<Error>,
}

/// A binding with its subjects read and its role resolved.
#[derive(Clone, Debug)]
struct Binding {
    /// `ClusterRoleBinding "x" of ClusterRole "y"` or `RoleBinding "x/ns" of Role "y"`, as the
    /// Kubernetes authorizer writes it.
    description: String,
    subjects: Vec<Subject>,
    /// The role's rules, or why there are none.
    rules: Result<Arc<[Rule]>>,
}

impl Authorizer {
    /// Indexes a snapshot: resolves aggregation and every binding's role. Objects without a name
    /// (namespaced ones also without a namespace) are skipped, as the API cannot hold them.
    pub fn new(snapshot: &RbacSnapshot) -> Self {
        let mut problems = Vec::new();
        let cluster_role_rules: BTreeMap<String, Arc<[Rule]>> =
            aggregate::effective_rules(&snapshot.cluster_roles, &mut problems)
                .into_iter()
                .map(|(name, rules)| (name, Arc::from(rules)))
                .collect();
        let roles = RoleIndex::new(&cluster_role_rules, &snapshot.roles);
        let cluster_role_bindings = roles.cluster_role_bindings(&snapshot.cluster_role_bindings);
        let role_bindings = roles.role_bindings(&snapshot.role_bindings);
        problems.extend(
            cluster_role_bindings
                .iter()
                .chain(role_bindings.values().flatten())
                .filter_map(|binding| binding.rules.as_ref().err().cloned()),
        );
        Self {
            cluster_role_bindings,
            role_bindings,
            cluster_role_rules,
            problems,
        }
    }

    /// Whether `user` may make the request on a resource. An empty `namespace` asks about the
    /// cluster scope, where only ClusterRoleBindings count.
    pub fn can(&self, user: &UserInfo, request: &ResourceAttributes) -> Decision {
        self.decide(user, &request.namespace, |rule| rule.allows_resource(request))
    }

    /// Whether `user` may make the request on a non-resource URL (only ClusterRoleBindings count).
    pub fn can_non_resource(&self, user: &UserInfo, request: &NonResourceAttributes) -> Decision {
        self.decide(user, "", |rule| rule.allows_non_resource(request))
    }

    /// Answers a SubjectAccessReview: the user, groups, uid and extra of the spec, and exactly one
    /// of its resource and non-resource attributes.
    pub fn review(&self, spec: &SubjectAccessReviewSpec) -> Result<Decision> {
        let user = UserInfo::from_review(spec);
        match (&spec.resource_attributes, &spec.non_resource_attributes) {
            (Some(resource), None) => Ok(self.can(&user, &resource.into())),
            (None, Some(non_resource)) => Ok(self.can_non_resource(&user, &non_resource.into())),
            _ => Err(Error::InvalidReview),
        }
    }

    /// The subjects that may perform `verb` on `resource` in `api_group`, cluster-wide
    /// (`namespace` `None`) or in a namespace, sorted and without duplicates. This is what
    /// `idbind rbac who-can` prints; a rule with `resourceNames` never counts, as the request has
    /// no name.
    pub fn who_can(
        &self,
        verb: &str,
        api_group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Vec<Subject> {
        let request =
            ResourceAttributes::new(verb, api_group, resource).in_namespace(namespace.unwrap_or(""));
        self.who_can_request(&request)
    }

    /// The subjects of the bindings granting `request`, sorted and without duplicates. Each of them
    /// is allowed by [`Authorizer::can`] (a Group through any member).
    pub fn who_can_request(&self, request: &ResourceAttributes) -> Vec<Subject> {
        let granting = self
            .bindings_in_scope(&request.namespace)
            .filter(|binding| binding.grants(|rule| rule.allows_resource(request)));
        let subjects: BTreeSet<&Subject> = granting.flat_map(|binding| &binding.subjects).collect();
        subjects.into_iter().cloned().collect()
    }

    /// The effective rules of a ClusterRole (after aggregation), or `None` if it does not exist.
    pub fn cluster_role_rules(&self, name: &str) -> Option<Vec<PolicyRule>> {
        self.cluster_role_rules
            .get(name)
            .map(|rules| rules.iter().map(Into::into).collect())
    }

    /// What was wrong in the snapshot: invalid aggregation rules, bindings to missing roles or of
    /// unsupported kinds. None of it prevents evaluation.
    pub fn problems(&self) -> &[Error] {
        &self.problems
    }

    fn decide(&self, user: &UserInfo, namespace: &str, allows: impl Fn(&Rule) -> bool) -> Decision {
        let mut problems = Vec::new();
        for binding in self.bindings_in_scope(namespace) {
            let Some(subject) = binding.subjects.iter().find(|subject| subject.matches(user)) else {
                continue;
            };
            match &binding.rules {
                Ok(rules) if rules.iter().any(&allows) => {
                    return Decision::allow(format!(
                        "RBAC: allowed by {} to {}",
                        binding.description,
                        subject.describe()
                    ));
                }
                Ok(_) => {}
                Err(problem) => problems.push(problem.to_string()),
            }
        }
        Decision::deny(&problems)
    }

    /// ClusterRoleBindings, then the RoleBindings of `namespace` (none for the cluster scope).
    fn bindings_in_scope<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Binding> {
        let namespaced = (!namespace.is_empty())
            .then(|| self.role_bindings.get(namespace))
            .flatten();
        self.cluster_role_bindings
            .iter()
            .chain(namespaced.into_iter().flatten())
    }
}

impl Binding {
    fn new(
        label: &str,
        role_ref: &RoleRef,
        subjects: &[rbacv1::Subject],
        namespace: Option<&str>,
        rules: Result<Arc<[Rule]>>,
    ) -> Self {
        Self {
            description: format!("{label} of {} {:?}", role_ref.kind, role_ref.name),
            subjects: subjects
                .iter()
                .filter_map(|s| Subject::from_binding(s, namespace))
                .collect(),
            rules,
        }
    }

    fn grants(&self, allows: impl Fn(&Rule) -> bool) -> bool {
        self.rules.as_ref().is_ok_and(|rules| rules.iter().any(allows))
    }
}

/// The rules of every role, to resolve the `roleRef` of bindings.
struct RoleIndex<'a> {
    cluster_roles: &'a BTreeMap<String, Arc<[Rule]>>,
    roles: BTreeMap<(&'a str, &'a str), Arc<[Rule]>>,
}

impl<'a> RoleIndex<'a> {
    fn new(cluster_roles: &'a BTreeMap<String, Arc<[Rule]>>, roles: &'a [Role]) -> Self {
        let roles = roles
            .iter()
            .filter_map(|role| {
                let key = (
                    role.metadata.namespace.as_deref()?,
                    role.metadata.name.as_deref()?,
                );
                Some((key, role.rules.iter().flatten().map(Rule::from).collect()))
            })
            .collect();
        Self { cluster_roles, roles }
    }

    /// ClusterRoleBindings in name order.
    fn cluster_role_bindings(&self, bindings: &[ClusterRoleBinding]) -> Vec<Binding> {
        let mut by_name = BTreeMap::new();
        for binding in bindings {
            let Some(name) = binding.metadata.name.as_deref() else {
                continue;
            };
            let label = format!("ClusterRoleBinding {name:?}");
            let rules = self.resolve(&label, &binding.role_ref, None);
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            by_name.insert(
                name,
                Binding::new(&label, &binding.role_ref, subjects, None, rules),
            );
        }
        by_name.into_values().collect()
    }

    /// RoleBindings by namespace, in name order.
    fn role_bindings(&self, bindings: &[RoleBinding]) -> BTreeMap<String, Vec<Binding>> {
        let mut by_namespace: BTreeMap<&str, BTreeMap<&str, Binding>> = BTreeMap::new();
        for binding in bindings {
            let meta = &binding.metadata;
            let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
                continue;
            };
            let label = format!("RoleBinding \"{name}/{namespace}\"");
            let rules = self.resolve(&label, &binding.role_ref, Some(namespace));
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            let resolved = Binding::new(&label, &binding.role_ref, subjects, Some(namespace), rules);
            by_namespace.entry(namespace).or_default().insert(name, resolved);
        }
        by_namespace
            .into_iter()
            .map(|(namespace, bindings)| (namespace.to_owned(), bindings.into_values().collect()))
            .collect()
    }

    /// The rules of the role a binding references: a ClusterRole, or for a RoleBinding
    /// (`namespace` set) a Role of its namespace.
    fn resolve(&self, binding: &str, role_ref: &RoleRef, namespace: Option<&str>) -> Result<Arc<[Rule]>> {
        let found = match (role_ref.kind.as_str(), namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(role_ref.name.as_str()),
            ("Role", Some(namespace)) => self.roles.get(&(namespace, role_ref.name.as_str())),
            (kind, _) => {
                let expected = if namespace.is_some() {
                    "Role or ClusterRole"
                } else {
                    "ClusterRole"
                };
                return Err(Error::UnsupportedRoleRef {
                    binding: binding.to_owned(),
                    kind: kind.to_owned(),
                    expected,
                });
            }
        };
        found.cloned().ok_or_else(|| Error::RoleNotFound {
            binding: binding.to_owned(),
            kind: role_ref.kind.clone(),
            name: role_ref.name.clone(),
        })
    }
}
