//! Parsing request paths into what they address.

/// A resource path: `/api/v1/...` or `/apis/<group>/<version>/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, for namespaced paths.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`.
    Root,
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their sub-paths).
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`.
    Resources {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`.
    OpenApiDocument {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v2` (not served).
    OpenApiV2,
    /// `/.well-known/openid-configuration`.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`.
    Jwks,
    /// A resource or object.
    Resource(ResourcePath),
    /// Nothing.
    NotFound,
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let s = |v: &str| v.to_string();
    let namespaced = rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !(group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced {
        (Some(s(rest[1])), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 || rest.iter().any(|p| p.is_empty()) {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        group: s(group),
        version: s(version),
        namespace,
        resource: s(rest[0]),
        name: rest.get(1).map(|n| s(n)),
        subresource: rest.get(2).map(|n| s(n)),
    })
}

/// Parses a request path (without query).
pub fn parse(path: &str) -> Route {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
    match parts.as_slice() {
        [] | [""] => Route::Root,
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", "v1"] => Route::Resources {
            group: String::new(),
            version: "v1".into(),
        },
        ["api", "v1", rest @ ..] => resource("", "v1", rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", "api", "v1"] => Route::OpenApiDocument {
            group: String::new(),
            version: "v1".into(),
        },
        ["openapi", "v3", "apis", group, version] => Route::OpenApiDocument {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        [".well-known", "openid-configuration"] => Route::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Route::Jwks,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, ns: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>) -> Route {
        Route::Resource(ResourcePath {
            group: group.into(),
            version: if group.is_empty() {
                "v1".into()
            } else {
                "v1alpha1".into()
            },
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse("/api/v1/namespaces"),
            res("", None, "namespaces", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a"),
            res("", None, "namespaces", Some("a"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/status"),
            res("", None, "namespaces", Some("a"), Some("status"))
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/pods"),
            res("", Some("a"), "pods", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/pods/p/status"),
            res("", Some("a"), "pods", Some("p"), Some("status"))
        );
        assert_eq!(
            parse("/apis/idbind.dev/v1alpha1/identitybindings/x/status"),
            res("idbind.dev", None, "identitybindings", Some("x"), Some("status"))
        );
        assert_eq!(parse("/api/v1/namespaces/a/pods/p/status/x"), Route::NotFound);
        assert_eq!(parse("/apis/g"), Route::Group("g".into()));
        assert_eq!(
            parse("/openapi/v3/apis/g/v1"),
            Route::OpenApiDocument {
                group: "g".into(),
                version: "v1".into()
            }
        );
    }
}
