//! The kinds the emulator serves: built-in kinds and the kinds registered by
//! CustomResourceDefinitions.

use std::sync::Arc;

use serde_json::Value;

/// Where objects of a kind are stored: group and plural resource of the storage bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// A group-resource pair.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// How objects of a kind are presented to clients in one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Stored as served.
    Plain,
    /// `events.k8s.io/v1` Events, stored as core/v1 Events.
    EventsV1,
}

/// What a kind supports beyond storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// An ordinary stored kind (CRUD, list, watch).
    Stored,
    /// A virtual kind that only supports `create` (reviews).
    CreateOnly,
}

/// A column of `kubectl get` (CRD `additionalPrinterColumns` or a built-in equivalent).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// Column type (`string`, `integer`, `number`, `boolean`, `date`).
    pub type_: String,
    /// Column format.
    pub format: String,
    /// Description.
    pub description: String,
    /// Priority (0 is shown by default, higher only with `-o wide`).
    pub priority: i64,
    /// Kubernetes JSONPath relative to the object, or a computed column of a built-in kind
    /// (`#data`, `#secrets`, `#pod-ready`, `#pod-restarts`).
    pub json_path: String,
}

impl PrinterColumn {
    fn builtin(name: &str, type_: &str, json_path: &str, priority: i64) -> Self {
        Self {
            name: name.to_string(),
            type_: type_.to_string(),
            format: if name == "Name" {
                "name".to_string()
            } else {
                String::new()
            },
            description: String::new(),
            priority,
            json_path: json_path.to_string(),
        }
    }
}

/// One served resource in one version.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Served version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`cm`, `ib`, ...).
    pub short_names: Vec<String>,
    /// Categories (`all`, ...).
    pub categories: Vec<String>,
    /// Whether the kind has a `status` subresource.
    pub status_subresource: bool,
    /// Other subresources (name, kind, verbs), e.g. `token` on serviceaccounts.
    pub extra_subresources: Vec<(String, String, Vec<String>)>,
    /// Whether `metadata.generation` is maintained.
    pub has_generation: bool,
    /// Storage bucket.
    pub storage: GroupResource,
    /// How objects are presented in this version.
    pub view: View,
    /// Stored or virtual.
    pub behaviour: Behaviour,
    /// The CRD's `openAPIV3Schema` for this version (custom resources only).
    pub schema: Option<Arc<Value>>,
    /// Printer columns (without the implicit `Name`).
    pub columns: Vec<PrinterColumn>,
    /// Whether this kind comes from a CRD.
    pub custom: bool,
    /// Whether this is the CRD's storage version (or the only version of a built-in).
    pub storage_version: bool,
}

impl ResourceType {
    /// `group/version` or `version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-resource of this type as served (not its storage).
    pub fn gr(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// The verbs of the main resource.
    pub fn verbs(&self) -> Vec<&'static str> {
        match self.behaviour {
            Behaviour::CreateOnly => vec!["create"],
            Behaviour::Stored => vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        }
    }

    /// Whether `sub` is a subresource of this type.
    pub fn has_subresource(&self, sub: &str) -> bool {
        (sub == "status" && self.status_subresource)
            || self.extra_subresources.iter().any(|(name, _, _)| name == sub)
    }
}

struct Builtin<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    plural: &'a str,
    namespaced: bool,
    short: &'a [&'a str],
    status: bool,
    generation: bool,
}

fn builtin(b: &Builtin<'_>) -> ResourceType {
    ResourceType {
        group: b.group.to_string(),
        version: b.version.to_string(),
        kind: b.kind.to_string(),
        plural: b.plural.to_string(),
        singular: b.kind.to_lowercase(),
        namespaced: b.namespaced,
        short_names: b.short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: b.status,
        extra_subresources: Vec::new(),
        has_generation: b.generation,
        storage: GroupResource::new(b.group, b.plural),
        view: View::Plain,
        behaviour: Behaviour::Stored,
        schema: None,
        columns: Vec::new(),
        custom: false,
        storage_version: true,
    }
}

fn age() -> PrinterColumn {
    PrinterColumn::builtin("Age", "date", ".metadata.creationTimestamp", 0)
}

/// The built-in kinds.
pub fn builtins() -> Vec<ResourceType> {
    let b = |group, version, kind, plural, namespaced, short, status, generation| {
        builtin(&Builtin {
            group,
            version,
            kind,
            plural,
            namespaced,
            short,
            status,
            generation,
        })
    };
    let mut namespaces = b("", "v1", "Namespace", "namespaces", false, &["ns"], true, false);
    namespaces
        .extra_subresources
        .push(("finalize".into(), "Namespace".into(), vec!["update".into()]));
    namespaces.columns = vec![
        PrinterColumn::builtin("Status", "string", ".status.phase", 0),
        age(),
    ];
    let mut serviceaccounts = b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
    );
    serviceaccounts
        .extra_subresources
        .push(("token".into(), "TokenRequest".into(), vec!["create".into()]));
    serviceaccounts.columns = vec![PrinterColumn::builtin("Secrets", "integer", "#secrets", 0), age()];
    let mut secrets = b("", "v1", "Secret", "secrets", true, &[], false, false);
    secrets.columns = vec![
        PrinterColumn::builtin("Type", "string", ".type", 0),
        PrinterColumn::builtin("Data", "integer", "#data", 0),
        age(),
    ];
    let mut configmaps = b("", "v1", "ConfigMap", "configmaps", true, &["cm"], false, false);
    configmaps.columns = vec![PrinterColumn::builtin("Data", "integer", "#data", 0), age()];
    let mut pods = b("", "v1", "Pod", "pods", true, &["po"], true, false);
    pods.categories = vec!["all".into()];
    pods.columns = vec![
        PrinterColumn::builtin("Ready", "string", "#pod-ready", 0),
        PrinterColumn::builtin("Status", "string", ".status.phase", 0),
        PrinterColumn::builtin("Restarts", "string", "#pod-restarts", 0),
        age(),
        PrinterColumn::builtin("IP", "string", ".status.podIP", 1),
        PrinterColumn::builtin("Node", "string", ".spec.nodeName", 1),
    ];
    let mut services = b("", "v1", "Service", "services", true, &["svc"], true, false);
    services.categories = vec!["all".into()];
    services.columns = vec![
        PrinterColumn::builtin("Type", "string", ".spec.type", 0),
        PrinterColumn::builtin("Cluster-IP", "string", ".spec.clusterIP", 0),
        age(),
    ];
    let mut core_events = b("", "v1", "Event", "events", true, &["ev"], false, false);
    core_events.columns = vec![
        PrinterColumn::builtin("Type", "string", ".type", 0),
        PrinterColumn::builtin("Reason", "string", ".reason", 0),
        PrinterColumn::builtin("Object", "string", ".involvedObject.name", 0),
        PrinterColumn::builtin("Message", "string", ".message", 0),
    ];
    let mut events_v1 = b(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        false,
    );
    events_v1.storage = GroupResource::new("", "events");
    events_v1.view = View::EventsV1;
    events_v1.columns = vec![
        PrinterColumn::builtin("Type", "string", ".type", 0),
        PrinterColumn::builtin("Reason", "string", ".reason", 0),
        PrinterColumn::builtin("Object", "string", ".regarding.name", 0),
        PrinterColumn::builtin("Note", "string", ".note", 0),
    ];
    let mut leases = b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
        false,
    );
    leases.columns = vec![
        PrinterColumn::builtin("Holder", "string", ".spec.holderIdentity", 0),
        age(),
    ];
    let rbac = "rbac.authorization.k8s.io";
    let mut roles = b(rbac, "v1", "Role", "roles", true, &[], false, false);
    roles.columns = vec![PrinterColumn::builtin(
        "Created At",
        "string",
        ".metadata.creationTimestamp",
        0,
    )];
    let mut clusterroles = b(
        rbac,
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
        false,
    );
    clusterroles.columns = roles.columns.clone();
    let mut rolebindings = b(rbac, "v1", "RoleBinding", "rolebindings", true, &[], false, false);
    rolebindings.columns = vec![
        PrinterColumn::builtin("Role", "string", ".roleRef.name", 0),
        age(),
        PrinterColumn::builtin("Users", "string", ".subjects[?(@.kind==\"User\")].name", 1),
        PrinterColumn::builtin("Groups", "string", ".subjects[?(@.kind==\"Group\")].name", 1),
        PrinterColumn::builtin(
            "ServiceAccounts",
            "string",
            ".subjects[?(@.kind==\"ServiceAccount\")].name",
            1,
        ),
    ];
    let mut clusterrolebindings = b(
        rbac,
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
        false,
    );
    clusterrolebindings.columns = rolebindings.columns.clone();
    let mut crds = b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
        true,
    );
    crds.columns = vec![PrinterColumn::builtin(
        "Created At",
        "string",
        ".metadata.creationTimestamp",
        0,
    )];
    let adm = "admissionregistration.k8s.io";
    let mut mwc = b(
        adm,
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
        false,
        true,
    );
    mwc.columns = vec![age()];
    let mut vwc = b(
        adm,
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
        false,
        true,
    );
    vwc.columns = vec![age()];
    let mut deployments = b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        true,
    );
    deployments.categories = vec!["all".into()];
    deployments.columns = vec![age()];

    let review = |group: &str, kind: &str, plural: &str, namespaced: bool| {
        let mut rt = builtin(&Builtin {
            group,
            version: "v1",
            kind,
            plural,
            namespaced,
            short: &[],
            status: false,
            generation: false,
        });
        rt.behaviour = Behaviour::CreateOnly;
        rt
    };
    vec![
        namespaces,
        serviceaccounts,
        secrets,
        configmaps,
        pods,
        services,
        core_events,
        events_v1,
        leases,
        roles,
        clusterroles,
        rolebindings,
        clusterrolebindings,
        crds,
        mwc,
        vwc,
        deployments,
        review("authentication.k8s.io", "TokenReview", "tokenreviews", false),
        review(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        ),
        review(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        ),
        review(
            "authorization.k8s.io",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        ),
    ]
}

/// The served kinds: built-ins plus CRD-registered kinds.
#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with the built-in kinds.
    pub fn new() -> Self {
        Self {
            types: builtins().into_iter().map(Arc::new).collect(),
        }
    }

    /// The type served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The storage version of a group-resource (the type whose view is the storage layout).
    pub fn storage_type(&self, gr: &GroupResource) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.storage == *gr && t.view == View::Plain && t.storage_version && t.gr() == *gr)
            .cloned()
    }

    /// The served type of a kind in an apiVersion.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    /// Groups in discovery order, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// The types of one group-version.
    pub fn group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    /// Replaces the kinds registered by the CRD named `crd_name` (`plural.group`).
    pub fn set_custom(&mut self, storage: &GroupResource, types: Vec<ResourceType>) {
        self.types.retain(|t| !(t.custom && t.storage == *storage));
        self.types.extend(types.into_iter().map(Arc::new));
    }

    /// Whether a non-custom kind already uses this group-resource.
    pub fn is_builtin(&self, gr: &GroupResource) -> bool {
        self.types.iter().any(|t| !t.custom && t.storage == *gr)
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first (`v1` > `v1beta2` > `v1alpha1`).
pub fn version_priority(version: &str) -> (u8, u64, u64) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, minor) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match minor.parse::<u64>() {
        Ok(minor) => (level, major, minor),
        Err(_) => (0, 0, 0),
    }
}

/// The types a CustomResourceDefinition object registers (one per served version).
pub fn crd_types(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"].as_bool() == Some(false) {
            continue;
        }
        let name = version["name"].as_str().unwrap_or_default().to_string();
        let schema = version["schema"]["openAPIV3Schema"].clone();
        let mut columns: Vec<PrinterColumn> = version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| PrinterColumn {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                type_: c["type"].as_str().unwrap_or("string").to_string(),
                format: c["format"].as_str().unwrap_or_default().to_string(),
                description: c["description"].as_str().unwrap_or_default().to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
                json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        if version.get("additionalPrinterColumns").is_none() {
            columns.push(age());
        }
        out.push(ResourceType {
            group: group.clone(),
            version: name,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: version["subresources"].get("status").is_some(),
            extra_subresources: Vec::new(),
            has_generation: true,
            storage: GroupResource::new(&group, &plural),
            view: View::Plain,
            behaviour: Behaviour::Stored,
            schema: (!schema.is_null()).then(|| Arc::new(schema)),
            columns,
            custom: true,
            storage_version: version["storage"].as_bool() == Some(true),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "v1beta1", "v1", "v1beta2"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }

    #[test]
    fn builtins_resolve() {
        let r = Registry::new();
        assert!(r.find("", "v1", "configmaps").is_some_and(|t| t.namespaced));
        assert!(
            r.find("rbac.authorization.k8s.io", "v1", "clusterroles")
                .is_some_and(|t| !t.namespaced)
        );
        let ev = r.find("events.k8s.io", "v1", "events");
        assert_eq!(
            ev.map(|t| t.storage.clone()),
            Some(GroupResource::new("", "events"))
        );
    }
}
