//! Policy rules and how one rule matches a request, following `RuleAllows` and the helpers of
//! Kubernetes' `pkg/apis/rbac/v1/evaluation_helpers.go`.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::{NonResourceAttributes, ResourceAttributes};

/// The wildcard for verbs, API groups, resources and non-resource URLs.
const ALL: &str = "*";

/// A policy rule with absent lists read as empty lists (Kubernetes treats nil and empty alike).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

impl From<&PolicyRule> for Rule {
    fn from(rule: &PolicyRule) -> Self {
        let list = |field: &Option<Vec<String>>| field.clone().unwrap_or_default();
        Self {
            verbs: rule.verbs.clone(),
            api_groups: list(&rule.api_groups),
            resources: list(&rule.resources),
            resource_names: list(&rule.resource_names),
            non_resource_urls: list(&rule.non_resource_urls),
        }
    }
}

impl From<&Rule> for PolicyRule {
    fn from(rule: &Rule) -> Self {
        let list = |field: &Vec<String>| (!field.is_empty()).then(|| field.clone());
        Self {
            verbs: rule.verbs.clone(),
            api_groups: list(&rule.api_groups),
            resources: list(&rule.resources),
            resource_names: list(&rule.resource_names),
            non_resource_urls: list(&rule.non_resource_urls),
        }
    }
}

impl Rule {
    /// Whether this rule grants a request on a resource.
    pub(crate) fn allows_resource(&self, request: &ResourceAttributes) -> bool {
        self.verb_matches(&request.verb)
            && self.api_group_matches(&request.api_group)
            && self.resource_matches(&request.resource, &request.subresource)
            && self.resource_name_matches(&request.name)
    }

    /// Whether this rule grants a request on a non-resource URL.
    pub(crate) fn allows_non_resource(&self, request: &NonResourceAttributes) -> bool {
        self.verb_matches(&request.verb) && self.non_resource_url_matches(&request.path)
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `*` matches everything, `pods` only `pods` (not `pods/log`), `pods/log` only that
    /// subresource, and `*/log` the `log` subresource of any resource.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            let is_subresource_of = |prefix: &str| {
                r.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('/')) == Some(subresource)
            };
            is_subresource_of(resource) || is_subresource_of(ALL)
        })
    }

    /// A rule without resourceNames matches any name; one with resourceNames matches only those
    /// names, so never a request without a name (`list`, `create`, `deletecollection`).
    fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*` matches every path, `/healthz` exactly that path, and a trailing `*` is a prefix match.
    fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|url| {
            url == ALL
                || url == path
                || url
                    .strip_suffix('*')
                    .is_some_and(|_| path.starts_with(url.trim_end_matches('*')))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
        Rule {
            verbs: strings(verbs),
            api_groups: strings(groups),
            resources: strings(resources),
            resource_names: strings(names),
            non_resource_urls: vec![],
        }
    }

    #[test]
    fn subresources_match_only_their_own_forms() {
        let get_log = ResourceAttributes::new("get", "", "pods").with_subresource("log");
        assert!(rule(&["get"], &[""], &["pods/log"], &[]).allows_resource(&get_log));
        assert!(rule(&["get"], &[""], &["*/log"], &[]).allows_resource(&get_log));
        assert!(rule(&["get"], &[""], &["*"], &[]).allows_resource(&get_log));
        assert!(!rule(&["get"], &[""], &["pods"], &[]).allows_resource(&get_log));
        assert!(!rule(&["get"], &[""], &["*/status"], &[]).allows_resource(&get_log));
        assert!(!rule(&["get"], &[""], &["*/logs"], &[]).allows_resource(&get_log));
        assert!(!rule(&["get"], &[""], &["services/log"], &[]).allows_resource(&get_log));
        let get_pod = ResourceAttributes::new("get", "", "pods");
        assert!(!rule(&["get"], &[""], &["pods/log"], &[]).allows_resource(&get_pod));
        assert!(!rule(&["get"], &[""], &["*/log"], &[]).allows_resource(&get_pod));
    }

    #[test]
    fn a_resource_name_containing_a_slash_is_not_a_subresource_wildcard() {
        // Kubernetes compares `*/x` only by length, prefix and suffix; `a/*/x` is not `*/x`.
        let request = ResourceAttributes::new("get", "", "pods").with_subresource("x");
        assert!(!rule(&["get"], &[""], &["a/*/x"], &[]).allows_resource(&request));
        assert!(!rule(&["get"], &[""], &["*/*/x"], &[]).allows_resource(&request));
    }

    #[test]
    fn non_resource_urls_glob_on_a_trailing_star() {
        let mut r = rule(&["get"], &[], &[], &[]);
        r.non_resource_urls = strings(&["/healthz", "/logs/*", "/api**"]);
        let get = |path: &str| NonResourceAttributes::new("get", path);
        assert!(r.allows_non_resource(&get("/healthz")));
        assert!(!r.allows_non_resource(&get("/healthz/ready")));
        assert!(r.allows_non_resource(&get("/logs/")));
        assert!(r.allows_non_resource(&get("/logs/kube-apiserver.log")));
        assert!(!r.allows_non_resource(&get("/logs")));
        assert!(r.allows_non_resource(&get("/apis/apps")));
        assert!(!r.allows_non_resource(&NonResourceAttributes::new("post", "/healthz")));
    }

    #[test]
    fn policy_rule_round_trip_reads_absent_lists_as_empty() {
        let policy = PolicyRule {
            verbs: strings(&["get"]),
            resources: Some(vec![]),
            ..Default::default()
        };
        let rule = Rule::from(&policy);
        assert_eq!(
            rule,
            Rule::from(&PolicyRule {
                resources: None,
                ..policy
            })
        );
        assert_eq!(
            PolicyRule::from(&rule),
            PolicyRule {
                verbs: strings(&["get"]),
                ..Default::default()
            }
        );
    }
}
