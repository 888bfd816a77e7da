//! The subset of Kubernetes JSONPath used by printer columns: `.a.b`, `['a']`, `[0]`, `[*]`, `.*`
//! and filters `[?(@.a.b=="x")]` / `[?(@.a!="x")]` / `[?(@.a)]`.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

fn parse(expr: &str) -> Result<Vec<Step>, String> {
    let expr = expr.trim();
    let expr = expr
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .unwrap_or(expr);
    let expr = expr.strip_prefix('$').unwrap_or(expr);
    let mut steps = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name == "*" {
                    steps.push(Step::All);
                } else if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let mut depth = 0;
                let start = i + 1;
                while i < chars.len() {
                    match chars[i] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(format!("unclosed [ in {expr:?}"));
                }
                let inner: String = chars[start..i].iter().collect();
                i += 1;
                steps.push(parse_bracket(inner.trim())?);
            }
            c => return Err(format!("unexpected {c:?} in JSONPath {expr:?}")),
        }
    }
    Ok(steps)
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let filter = filter.trim();
        let (lhs, op) = if let Some((l, r)) = filter.split_once("!=") {
            (l, Some((false, r)))
        } else if let Some((l, r)) = filter.split_once("==") {
            (l, Some((true, r)))
        } else {
            (filter, None)
        };
        let path = lhs
            .trim()
            .strip_prefix('@')
            .ok_or_else(|| format!("filter must start with @: {filter:?}"))?
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let op = match op {
            None => None,
            Some((eq, raw)) => {
                let raw = raw.trim();
                let value = if let Some(s) = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Value::String(s.to_string())
                } else if let Some(s) = raw.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    Value::String(s.to_string())
                } else {
                    serde_json::from_str(raw).map_err(|_| format!("bad filter value {raw:?}"))?
                };
                Some((eq, value))
            }
        };
        return Ok(Step::Filter { path, op });
    }
    if let Some(name) = inner.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
        return Ok(Step::Field(name.to_string()));
    }
    if let Some(name) = inner.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return Ok(Step::Field(name.to_string()));
    }
    inner
        .parse::<usize>()
        .map(Step::Index)
        .map_err(|_| format!("unsupported JSONPath subscript [{inner}]"))
}

/// Evaluates `expr` against `value`; returns every match.
pub fn evaluate<'a>(expr: &str, value: &'a Value) -> Result<Vec<&'a Value>, String> {
    let steps = parse(expr)?;
    let mut current = vec![value];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name)),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(map) => next.extend(map.values()),
                    _ => {}
                },
                Step::Filter { path, op } => {
                    for item in v.as_array().into_iter().flatten() {
                        let found = path.iter().try_fold(item, |cur, p| cur.get(p));
                        let keep = match (found, op) {
                            (Some(found), Some((eq, want))) => (found == want) == *eq,
                            (None, Some((eq, _))) => !*eq,
                            (found, None) => found.is_some_and(|f| !f.is_null() && f != &Value::Bool(false)),
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn printer_column_paths() {
        let v = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"}, {"kind": "User", "name": "v"}]});
        assert_eq!(
            evaluate(".status.conditions[?(@.type==\"Ready\")].status", &v),
            Ok(vec![&json!("True")])
        );
        assert_eq!(
            evaluate("{.subjects[?(@.kind==\"User\")].name}", &v),
            Ok(vec![&json!("u"), &json!("v")])
        );
        assert_eq!(evaluate(".subjects[1]['name']", &v), Ok(vec![&json!("g")]));
        assert_eq!(evaluate(".subjects[*].kind", &v).map(|r| r.len()), Ok(3));
        assert_eq!(evaluate(".missing.x", &v), Ok(vec![]));
    }
}
