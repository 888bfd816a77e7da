//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), compiled and matched as
//! apimachinery's `metav1.LabelSelectorAsSelector` does.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{Error, Result};

/// A compiled label selector. No requirements selects everything, as an empty `{}` selector does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    /// `In`, and the `key: value` pairs of `matchLabels`.
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Compiles a selector, rejecting what the API server's validation would reject.
    pub(crate) fn compile(selector: &LabelSelector) -> Result<Self> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::In, std::slice::from_ref(value))?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(invalid(
                        &expression.key,
                        format!(
                            "{other:?} is not a valid label selector operator, expected In, NotIn, Exists or DoesNotExist"
                        ),
                    ));
                }
            };
            let values = expression.values.as_deref().unwrap_or_default();
            requirements.push(Requirement::new(&expression.key, operator, values)?);
        }
        Ok(Self { requirements })
    }

    /// Whether an object with these labels is selected: every requirement must hold.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }
}

impl Requirement {
    fn new(key: &str, operator: Operator, values: &[String]) -> Result<Self> {
        check_key(key).map_err(|reason| invalid(key, reason))?;
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    key,
                    "values must not be empty for the In and NotIn operators",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    key,
                    "values must be empty for the Exists and DoesNotExist operators",
                ));
            }
            _ => {}
        }
        for value in values {
            check_value(value).map_err(|reason| invalid(key, format!("value {value:?}: {reason}")))?;
        }
        Ok(Self {
            key: key.to_owned(),
            operator,
            values: values.iter().cloned().collect(),
        })
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> Error {
    Error::InvalidLabelSelector {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// A label key is a qualified name: an optional DNS subdomain prefix and `/`, then a name.
fn check_key(key: &str) -> std::result::Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 || !is_dns_subdomain(prefix) {
                return Err(format!(
                    "prefix {prefix:?} must be a DNS subdomain of at most 253 characters (lower case \
                     alphanumerics, '-' and '.')"
                ));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(format!(
            "name {name:?} must be 1 to 63 characters, alphanumerics, '-', '_' or '.', starting and ending \
             with an alphanumeric"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_name(value)) {
        Ok(())
    } else {
        Err(
            "must be at most 63 characters, alphanumerics, '-', '_' or '.', starting and ending with an \
             alphanumeric"
                .to_owned(),
        )
    }
}

fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        edge_ok(bytes.first())
            && edge_ok(bytes.last())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn empty_selector_selects_everything() {
        let selector = Selector::compile(&LabelSelector::default()).unwrap();
        assert!(selector.matches(&labels(&[])));
        assert!(selector.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_require_every_pair() {
        let selector = Selector::compile(&LabelSelector {
            match_labels: Some(labels(&[
                ("rbac.example.com/aggregate-to-monitoring", "true"),
                ("tier", "a"),
            ])),
            match_expressions: None,
        })
        .unwrap();
        assert!(selector.matches(&labels(&[
            ("rbac.example.com/aggregate-to-monitoring", "true"),
            ("tier", "a"),
            ("other", "x")
        ])));
        assert!(!selector.matches(&labels(&[("rbac.example.com/aggregate-to-monitoring", "true")])));
        assert!(!selector.matches(&labels(&[
            ("rbac.example.com/aggregate-to-monitoring", "false"),
            ("tier", "a")
        ])));
    }

    #[test]
    fn operators_follow_apimachinery() {
        let cases = [
            (
                "In",
                vec!["a", "b"],
                vec![(Some("a"), true), (Some("c"), false), (None, false)],
            ),
            (
                "NotIn",
                vec!["a"],
                vec![(Some("a"), false), (Some("c"), true), (None, true)],
            ),
            ("Exists", vec![], vec![(Some(""), true), (None, false)]),
            ("DoesNotExist", vec![], vec![(Some("x"), false), (None, true)]),
        ];
        for (operator, values, checks) in cases {
            let selector = Selector::compile(&expression("k", operator, &values)).unwrap();
            for (value, expected) in checks {
                let set = value.map(|v| labels(&[("k", v)])).unwrap_or_default();
                assert_eq!(
                    selector.matches(&set),
                    expected,
                    "{operator} {values:?} on {value:?}"
                );
            }
        }
    }

    #[test]
    fn invalid_selectors_are_rejected_with_the_reason() {
        let cases = [
            (
                expression("k", "Equals", &["a"]),
                "not a valid label selector operator",
            ),
            (expression("k", "In", &[]), "must not be empty"),
            (expression("k", "NotIn", &[]), "must not be empty"),
            (expression("k", "Exists", &["a"]), "must be empty"),
            (expression("k", "DoesNotExist", &["a"]), "must be empty"),
            (expression("Bad_Prefix/k", "Exists", &[]), "prefix"),
            (expression("a/b/c", "Exists", &[]), "name \"b/c\""),
            (expression("", "Exists", &[]), "name \"\""),
            (expression("-k", "Exists", &[]), "name"),
            (expression(&"k".repeat(64), "Exists", &[]), "name"),
            (expression("k", "In", &["not valid"]), "value \"not valid\""),
        ];
        for (selector, needle) in cases {
            let err = Selector::compile(&selector).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }

    #[test]
    fn valid_keys_and_values_are_accepted() {
        for key in ["app", "app.kubernetes.io/name", "a_b.c-d", "example.com/X_y", "K"] {
            Selector::compile(&expression(key, "In", &["", "v", "v.1_2-3"])).unwrap();
        }
    }
}
