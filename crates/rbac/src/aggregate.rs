//! ClusterRole aggregation, computed as kube-controller-manager's `clusterrole-aggregation`
//! controller leaves it once it has settled.
//!
//! For a ClusterRole with an `aggregationRule`, the controller replaces the role's rules with the
//! rules of every *other* ClusterRole matched by any of its selectors, selectors in order, matched
//! roles by name, duplicates dropped. Its own rules are overwritten, and a role with an empty
//! selector list ends with no rules. A selector that does not compile stops the sync: the role keeps
//! the rules it has. Aggregated roles can select each other; the controller re-syncs a role whenever
//! a role it selects changes, which this module reproduces by repeating the pass, in name order,
//! until nothing changes (bounded, so that a cycle between aggregated roles still terminates).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::ClusterRole;

use crate::{Error, rules::Rule, selector::Selector};

/// A ClusterRole as aggregation sees it.
struct Entry<'a> {
    labels: &'a BTreeMap<String, String>,
    rules: Vec<Rule>,
    /// The compiled selectors of an aggregated role.
    selectors: Option<Vec<Selector>>,
}

/// The effective rules of every ClusterRole, by name. Problems (invalid selectors) are appended to
/// `problems`.
pub(crate) fn effective_rules(
    cluster_roles: &[ClusterRole],
    problems: &mut Vec<Error>,
) -> BTreeMap<String, Vec<Rule>> {
    let empty = BTreeMap::new();
    let mut roles: BTreeMap<&str, Entry<'_>> = BTreeMap::new();
    for role in cluster_roles {
        let Some(name) = role.metadata.name.as_deref() else {
            continue;
        };
        let selectors = role.aggregation_rule.as_ref().and_then(|rule| {
            let compiled: Result<Vec<_>, _> = rule
                .cluster_role_selectors
                .iter()
                .flatten()
                .map(Selector::compile)
                .collect();
            compiled
                .map_err(|err| {
                    problems.push(Error::InvalidAggregationRule {
                        cluster_role: name.to_owned(),
                        source: Box::new(err),
                    });
                })
                .ok()
        });
        let entry = Entry {
            labels: role.metadata.labels.as_ref().unwrap_or(&empty),
            rules: role.rules.iter().flatten().map(Rule::from).collect(),
            selectors,
        };
        roles.insert(name, entry);
    }

    let aggregated: Vec<&str> = roles
        .iter()
        .filter(|(_, entry)| entry.selectors.is_some())
        .map(|(name, _)| *name)
        .collect();
    for _round in 0..=aggregated.len() {
        let mut changed = false;
        for name in &aggregated {
            let rules = aggregate_one(&roles, name);
            if let Some(entry) = roles.get_mut(name)
                && entry.rules != rules
            {
                entry.rules = rules;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    roles
        .into_iter()
        .map(|(name, entry)| (name.to_owned(), entry.rules))
        .collect()
}

/// One sync of one aggregated role, from the current rules of the others.
fn aggregate_one(roles: &BTreeMap<&str, Entry<'_>>, name: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    let selectors = roles
        .get(name)
        .and_then(|entry| entry.selectors.as_deref())
        .unwrap_or_default();
    for selector in selectors {
        let selected = roles
            .iter()
            .filter(|(other, entry)| **other != name && selector.matches(entry.labels));
        for (_, entry) in selected {
            for rule in &entry.rules {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    rules
}
