//! Label selectors (`matchLabels` and `matchExpressions`) as apimachinery's
//! `LabelSelectorAsSelector` compiles and matches them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A compiled selector. No requirements selects everything (an empty `{}` selector).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Compiles a selector; `None` selects everything. `Err` says what is invalid, as
    /// apimachinery words it.
    pub(crate) fn compile(selector: Option<&LabelSelector>) -> Result<Self, String> {
        let Some(selector) = selector else {
            return Ok(Self::default());
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In,
                values: vec![value.clone()],
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(format!(
                        "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty (key {:?})",
                        expression.key
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(format!(
                        "values: Invalid value: {values:?}: values set must be empty for exists and does not exist \
                         (key {:?})",
                        expression.key
                    ));
                }
                _ => {}
            }
            requirements.push(Requirement {
                key: expression.key.clone(),
                operator,
                values,
            });
        }
        Ok(Self { requirements })
    }

    /// Whether the selector has no requirements (selects everything).
    pub(crate) fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator {
                Operator::In => value.is_some_and(|v| r.values.contains(v)),
                Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
    }
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

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_combine_with_and() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("azure.workload.identity/use", "true")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["web", "api"]),
                expression("legacy", "DoesNotExist", &[]),
                expression("env", "NotIn", &["prod"]),
                expression("team", "Exists", &[]),
            ]),
        };
        let selector = Selector::compile(Some(&selector)).unwrap();
        let good = [
            ("azure.workload.identity/use", "true"),
            ("tier", "web"),
            ("team", "a"),
        ];
        assert!(selector.matches(&labels(&good)));
        assert!(selector.matches(&labels(&[good[0], good[1], good[2], ("env", "dev")])));
        assert!(!selector.matches(&labels(&[good[0], good[1], good[2], ("env", "prod")])));
        assert!(!selector.matches(&labels(&[good[0], good[1], good[2], ("legacy", "")])));
        assert!(!selector.matches(&labels(&[
            ("azure.workload.identity/use", "false"),
            good[1],
            good[2]
        ])));
        assert!(!selector.matches(&labels(&[good[0], ("tier", "db"), good[2]])));
        assert!(!selector.matches(&labels(&[good[0], good[1]])));
    }

    #[test]
    fn empty_and_absent_selectors_select_everything() {
        assert!(Selector::compile(None).unwrap().is_empty());
        let empty = Selector::compile(Some(&LabelSelector::default())).unwrap();
        assert!(empty.is_empty() && empty.matches(&BTreeMap::new()));
    }

    #[test]
    fn invalid_selectors_are_rejected() {
        for (op, values) in [
            ("In", &[][..]),
            ("NotIn", &[][..]),
            ("Exists", &["x"][..]),
            ("Equals", &["x"][..]),
        ] {
            let selector = LabelSelector {
                match_expressions: Some(vec![expression("k", op, values)]),
                ..Default::default()
            };
            assert!(Selector::compile(Some(&selector)).is_err(), "{op} {values:?}");
        }
    }
}
