//! Route names: every request is classified into one [`Route`] for counters and fault injection.

use std::fmt;
use std::str::FromStr;

use http::Method;

use crate::Error;

/// The admin surface's path prefix.
pub const ADMIN_PREFIX: &str = "/_emulator";

/// A named group of requests. Counters and faults are keyed by these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `POST /{tenant}/oauth2/v2.0/token` (`entra.token`).
    EntraToken,
    /// `GET /{tenant}/v2.0/.well-known/openid-configuration` (`entra.openid_configuration`).
    EntraOpenIdConfiguration,
    /// `GET /{tenant}/discovery/v2.0/keys` and `/common/discovery/keys` (`entra.jwks`).
    EntraJwks,
    /// `GET /common/discovery/instance` (`entra.instance_discovery`).
    EntraInstanceDiscovery,
    /// `GET .../userAssignedIdentities/{name}` (`arm.identity.get`).
    ArmIdentityGet,
    /// `PUT .../userAssignedIdentities/{name}` (`arm.identity.put`).
    ArmIdentityPut,
    /// `DELETE .../userAssignedIdentities/{name}` (`arm.identity.delete`).
    ArmIdentityDelete,
    /// `GET .../userAssignedIdentities` in a resource group or subscription (`arm.identity.list`).
    ArmIdentityList,
    /// `GET .../federatedIdentityCredentials/{name}` (`arm.fic.get`).
    ArmFicGet,
    /// `PUT .../federatedIdentityCredentials/{name}` (`arm.fic.put`).
    ArmFicPut,
    /// `DELETE .../federatedIdentityCredentials/{name}` (`arm.fic.delete`).
    ArmFicDelete,
    /// `GET .../federatedIdentityCredentials` (`arm.fic.list`).
    ArmFicList,
    /// The admin surface under [`ADMIN_PREFIX`] (`admin`); never faulted, never counted.
    Admin,
    /// Anything else (`other`).
    Other,
}

impl Route {
    /// Every route, in a stable order.
    pub const ALL: [Route; 14] = [
        Route::EntraToken,
        Route::EntraOpenIdConfiguration,
        Route::EntraJwks,
        Route::EntraInstanceDiscovery,
        Route::ArmIdentityGet,
        Route::ArmIdentityPut,
        Route::ArmIdentityDelete,
        Route::ArmIdentityList,
        Route::ArmFicGet,
        Route::ArmFicPut,
        Route::ArmFicDelete,
        Route::ArmFicList,
        Route::Admin,
        Route::Other,
    ];

    /// The route's name, e.g. `arm.fic.put`.
    pub fn name(self) -> &'static str {
        match self {
            Route::EntraToken => "entra.token",
            Route::EntraOpenIdConfiguration => "entra.openid_configuration",
            Route::EntraJwks => "entra.jwks",
            Route::EntraInstanceDiscovery => "entra.instance_discovery",
            Route::ArmIdentityGet => "arm.identity.get",
            Route::ArmIdentityPut => "arm.identity.put",
            Route::ArmIdentityDelete => "arm.identity.delete",
            Route::ArmIdentityList => "arm.identity.list",
            Route::ArmFicGet => "arm.fic.get",
            Route::ArmFicPut => "arm.fic.put",
            Route::ArmFicDelete => "arm.fic.delete",
            Route::ArmFicList => "arm.fic.list",
            Route::Admin => "admin",
            Route::Other => "other",
        }
    }

    /// Whether the route belongs to ARM (errors in ARM's shape) rather than Entra.
    pub fn is_arm(self) -> bool {
        self.name().starts_with("arm.")
    }

    /// Classifies a request by method and path. ARM's fixed path segments match case-insensitively.
    pub fn classify(method: &Method, path: &str) -> Route {
        if path == ADMIN_PREFIX || path.starts_with("/_emulator/") {
            return Route::Admin;
        }
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let Some(arm) = ArmPath::parse(path) {
            return arm.route(method);
        }
        let get = method == Method::GET;
        match segs.as_slice() {
            [_, "oauth2", "v2.0", "token"] if method == Method::POST => Route::EntraToken,
            [_, "v2.0", ".well-known", "openid-configuration"]
            | [_, ".well-known", "openid-configuration"]
                if get =>
            {
                Route::EntraOpenIdConfiguration
            }
            [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] if get => Route::EntraJwks,
            [_, "discovery", "instance"] if get => Route::EntraInstanceDiscovery,
            _ => Route::Other,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Route {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Route::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| Error::InvalidInput {
                what: "route name",
                input: s.to_owned(),
                reason: format!(
                    "expected one of {}",
                    Route::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                ),
            })
    }
}

/// Which routes a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteSelector {
    /// Every route except the admin surface (name `*`).
    All,
    /// One route.
    Route(Route),
}

impl RouteSelector {
    /// `*` or the route's name.
    pub fn name(self) -> &'static str {
        match self {
            RouteSelector::All => "*",
            RouteSelector::Route(r) => r.name(),
        }
    }
}

impl From<Route> for RouteSelector {
    fn from(r: Route) -> Self {
        RouteSelector::Route(r)
    }
}

impl FromStr for RouteSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "*" || s == "all" {
            Ok(RouteSelector::All)
        } else {
            s.parse().map(RouteSelector::Route)
        }
    }
}

impl fmt::Display for RouteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed ARM path of the managed-identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArmPath {
    pub subscription: String,
    /// `None` for the subscription-wide identity list.
    pub resource_group: Option<String>,
    pub identity: Option<String>,
    /// `Some(None)` for the FIC collection, `Some(Some(name))` for one FIC.
    pub fic: Option<Option<String>>,
}

impl ArmPath {
    pub(crate) fn parse(path: &str) -> Option<ArmPath> {
        let segs: Vec<&str> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        let eq = |i: usize, want: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(want));
        if !eq(0, "subscriptions") || segs.get(1).is_none_or(|s| s.is_empty()) {
            return None;
        }
        let subscription = segs[1].to_owned();
        // Subscription-wide list.
        if eq(2, "providers") && eq(3, "Microsoft.ManagedIdentity") && eq(4, "userAssignedIdentities") {
            return (segs.len() == 5).then_some(ArmPath {
                subscription,
                resource_group: None,
                identity: None,
                fic: None,
            });
        }
        if !(eq(2, "resourceGroups")
            && segs.get(3).is_some_and(|s| !s.is_empty())
            && eq(4, "providers")
            && eq(5, "Microsoft.ManagedIdentity")
            && eq(6, "userAssignedIdentities"))
        {
            return None;
        }
        let resource_group = Some(segs[3].to_owned());
        let name = |i: usize| segs.get(i).filter(|s| !s.is_empty()).map(|s| (*s).to_owned());
        match segs.len() {
            7 => Some(ArmPath {
                subscription,
                resource_group,
                identity: None,
                fic: None,
            }),
            8 => Some(ArmPath {
                subscription,
                resource_group,
                identity: name(7),
                fic: None,
            }),
            9 if eq(8, "federatedIdentityCredentials") => Some(ArmPath {
                subscription,
                resource_group,
                identity: name(7),
                fic: Some(None),
            }),
            10 if eq(8, "federatedIdentityCredentials") => Some(ArmPath {
                subscription,
                resource_group,
                identity: name(7),
                fic: Some(name(9)),
            }),
            _ => None,
        }
    }

    pub(crate) fn route(&self, method: &Method) -> Route {
        let m = method.clone();
        match (&self.identity, &self.fic) {
            (None, _) if m == Method::GET => Route::ArmIdentityList,
            (Some(_), None) if m == Method::GET => Route::ArmIdentityGet,
            (Some(_), None) if m == Method::PUT => Route::ArmIdentityPut,
            (Some(_), None) if m == Method::DELETE => Route::ArmIdentityDelete,
            (Some(_), Some(None)) if m == Method::GET => Route::ArmFicList,
            (Some(_), Some(Some(_))) if m == Method::GET => Route::ArmFicGet,
            (Some(_), Some(Some(_))) if m == Method::PUT => Route::ArmFicPut,
            (Some(_), Some(Some(_))) if m == Method::DELETE => Route::ArmFicDelete,
            _ => Route::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_entra_arm_and_admin_paths() {
        let id =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a";
        let cases = [
            (Method::POST, "/t/oauth2/v2.0/token", Route::EntraToken),
            (
                Method::GET,
                "/t/v2.0/.well-known/openid-configuration",
                Route::EntraOpenIdConfiguration,
            ),
            (Method::GET, "/common/discovery/keys", Route::EntraJwks),
            (
                Method::GET,
                "/common/discovery/instance",
                Route::EntraInstanceDiscovery,
            ),
            (Method::GET, id, Route::ArmIdentityGet),
            (Method::PUT, id, Route::ArmIdentityPut),
            (Method::DELETE, id, Route::ArmIdentityDelete),
            (
                Method::GET,
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities",
                Route::ArmIdentityList,
            ),
            (
                Method::GET,
                "/subscriptions/s/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
                Route::ArmIdentityList,
            ),
            (
                Method::GET,
                &format!("{id}/federatedIdentityCredentials"),
                Route::ArmFicList,
            ),
            (
                Method::PUT,
                &format!("{id}/federatedIdentityCredentials/f"),
                Route::ArmFicPut,
            ),
            (
                Method::GET,
                &format!("{id}/federatedIdentityCredentials/f"),
                Route::ArmFicGet,
            ),
            (
                Method::DELETE,
                &format!("{id}/federatedIdentityCredentials/f"),
                Route::ArmFicDelete,
            ),
            (Method::POST, id, Route::Other),
            (Method::GET, "/_emulator/counters", Route::Admin),
            (Method::GET, "/nothing", Route::Other),
        ];
        for (m, p, want) in cases {
            assert_eq!(Route::classify(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn route_names_round_trip() {
        for r in Route::ALL {
            assert_eq!(r.name().parse::<Route>().ok(), Some(r));
        }
        assert_eq!("*".parse::<RouteSelector>().ok(), Some(RouteSelector::All));
        assert!("arm.nope".parse::<Route>().is_err());
    }
}
