//! Typed identifiers: ARM resource IDs and the GUIDs Entra hands out.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The ARM resource provider namespace of user-assigned managed identities.
pub const MANAGED_IDENTITY_PROVIDER: &str = "Microsoft.ManagedIdentity";
/// The ARM resource type of user-assigned managed identities.
pub const USER_ASSIGNED_IDENTITY_TYPE: &str = "userAssignedIdentities";

/// An Azure Resource Manager resource ID such as
/// `/subscriptions/<sub>/resourceGroups/<rg>/providers/<Namespace>/<type>/<name>`.
///
/// Parsing keeps the original spelling (shown by [`fmt::Display`]); equality and hashing ignore
/// ASCII case, as ARM does. Child resources (`.../<type>/<name>/<childType>/<childName>`) are kept
/// as extra type/name pairs.
#[derive(Clone)]
pub struct ArmResourceId {
    raw: String,
    subscription: String,
    resource_group: String,
    provider: String,
    /// `(type, name)` pairs, outermost first; never empty.
    types: Vec<(String, String)>,
}

impl ArmResourceId {
    /// Parses a resource ID. Leading and trailing whitespace and one trailing `/` are rejected,
    /// because an ID that does not round-trip is a bug waiting in a FIC subject.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::InvalidResourceId {
            input: input.to_owned(),
            reason,
        };
        if input.trim() != input {
            return Err(err("it has leading or trailing whitespace".into()));
        }
        if input.is_empty() {
            return Err(err("it is empty".into()));
        }
        let rest = input
            .strip_prefix('/')
            .ok_or_else(|| err("it must start with '/subscriptions/'".into()))?;
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(err(
                "it has an empty path segment (a doubled or trailing '/')".into()
            ));
        }
        let expect = |index: usize, name: &str| -> Result<(), Error> {
            match segments.get(index) {
                Some(s) if s.eq_ignore_ascii_case(name) => Ok(()),
                Some(s) => Err(err(format!(
                    "expected '{name}' at segment {}, found '{s}'",
                    index + 1
                ))),
                None => Err(err(format!("it ends before '{name}'"))),
            }
        };
        expect(0, "subscriptions")?;
        let subscription = segments
            .get(1)
            .ok_or_else(|| err("it has no subscription id".into()))?;
        expect(2, "resourceGroups")?;
        let resource_group = segments
            .get(3)
            .ok_or_else(|| err("it has no resource group name".into()))?;
        expect(4, "providers")?;
        let provider = segments
            .get(5)
            .ok_or_else(|| err("it has no resource provider namespace".into()))?;
        let tail = &segments[6.min(segments.len())..];
        if tail.is_empty() {
            return Err(err("it names no resource type and name after the provider".into()));
        }
        if !tail.len().is_multiple_of(2) {
            return Err(err(format!(
                "resource type '{}' has no name (types and names must come in pairs)",
                tail[tail.len() - 1]
            )));
        }
        let types = tail
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
            .collect();
        Ok(Self {
            raw: input.to_owned(),
            subscription: (*subscription).to_owned(),
            resource_group: (*resource_group).to_owned(),
            provider: (*provider).to_owned(),
            types,
        })
    }

    /// The subscription id segment, as written.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The resource group name, as written.
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// The provider namespace, e.g. `Microsoft.ManagedIdentity`.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The full resource type, e.g. `Microsoft.ManagedIdentity/userAssignedIdentities`.
    pub fn resource_type(&self) -> String {
        let mut out = self.provider.clone();
        for (ty, _) in &self.types {
            out.push('/');
            out.push_str(ty);
        }
        out
    }

    /// The name of the innermost resource.
    pub fn name(&self) -> &str {
        // `types` is never empty: parse rejects IDs without a type/name pair.
        self.types.last().map(|(_, n)| n.as_str()).unwrap_or_default()
    }

    /// The ID as it was written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The ID with every character lower-cased (ARM IDs are case-insensitive).
    pub fn to_lowercase(&self) -> String {
        self.raw.to_ascii_lowercase()
    }

    /// The ID of the parent resource, if this is a child resource.
    pub fn parent(&self) -> Option<ArmResourceId> {
        if self.types.len() < 2 {
            return None;
        }
        let mut types = self.types.clone();
        types.pop();
        let mut raw = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.subscription, self.resource_group, self.provider
        );
        for (t, n) in &types {
            raw.push_str(&format!("/{t}/{n}"));
        }
        ArmResourceId::parse(&raw).ok()
    }
}

impl PartialEq for ArmResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.raw.eq_ignore_ascii_case(&other.raw)
    }
}
impl Eq for ArmResourceId {}

impl Hash for ArmResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.to_ascii_lowercase().hash(state);
    }
}

impl fmt::Display for ArmResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for ArmResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArmResourceId({})", self.raw)
    }
}

impl FromStr for ArmResourceId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// The ARM resource ID of a user-assigned managed identity (UAMI):
/// `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdentityResourceId(ArmResourceId);

impl IdentityResourceId {
    /// Parses and checks that the ID names a user-assigned identity (not a child resource of one).
    pub fn parse(input: &str) -> Result<Self, Error> {
        let id = ArmResourceId::parse(input)?;
        Self::try_from(id)
    }

    /// Builds the ID of identity `name` in a subscription and resource group.
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Result<Self, Error> {
        Self::parse(&format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{MANAGED_IDENTITY_PROVIDER}/{USER_ASSIGNED_IDENTITY_TYPE}/{name}"
        ))
    }

    /// The generic resource ID.
    pub fn as_arm(&self) -> &ArmResourceId {
        &self.0
    }

    /// The ID as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Subscription id segment.
    pub fn subscription(&self) -> &str {
        self.0.subscription()
    }

    /// Resource group name.
    pub fn resource_group(&self) -> &str {
        self.0.resource_group()
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The lower-cased ID: the subject of idbind's federated identity credential.
    pub fn to_lowercase(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<ArmResourceId> for IdentityResourceId {
    type Error = Error;
    fn try_from(id: ArmResourceId) -> Result<Self, Error> {
        let ok = id.types.len() == 1
            && id.provider.eq_ignore_ascii_case(MANAGED_IDENTITY_PROVIDER)
            && id.types[0].0.eq_ignore_ascii_case(USER_ASSIGNED_IDENTITY_TYPE);
        if !ok {
            return Err(Error::InvalidResourceId {
                input: id.raw.clone(),
                reason: format!(
                    "it is a '{}' resource, expected a user-assigned identity \
                     ('{MANAGED_IDENTITY_PROVIDER}/{USER_ASSIGNED_IDENTITY_TYPE}')",
                    id.resource_type()
                ),
            });
        }
        Ok(Self(id))
    }
}

impl fmt::Display for IdentityResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for IdentityResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityResourceId({})", self.0.as_str())
    }
}

impl FromStr for IdentityResourceId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

macro_rules! serde_via_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(ArmResourceId);
serde_via_string!(IdentityResourceId);

macro_rules! guid_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// Parses a GUID in its hyphenated 36-character form (any case).
            pub fn parse(input: &str) -> Result<Self, Error> {
                let err = |reason: &str| Error::InvalidGuid {
                    what: $what,
                    input: input.to_owned(),
                    reason: reason.to_owned(),
                };
                if input.len() != 36 {
                    return Err(err("expected 36 characters like 00000000-0000-0000-0000-000000000000"));
                }
                uuid::Uuid::try_parse(input)
                    .map(Self)
                    .map_err(|_| err("expected hexadecimal digits in groups of 8-4-4-4-12"))
            }

            /// A new random id (emulators and tests).
            pub fn new_random() -> Self {
                Self(uuid::Uuid::new_v4())
            }

            /// Wraps a UUID.
            pub const fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &uuid::Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::parse(s)
            }
        }

        serde_via_string!($name);
    };
}

guid_newtype!(
    /// The client (application) id of a managed identity: `AZURE_CLIENT_ID`, the RBAC resource.
    ClientId,
    "client id"
);
guid_newtype!(
    /// An Entra tenant (directory) id.
    TenantId,
    "tenant id"
);
guid_newtype!(
    /// The object id of a managed identity's service principal (ARM calls it `principalId`).
    PrincipalId,
    "principal (object) id"
);
guid_newtype!(
    /// An Azure subscription id.
    SubscriptionId,
    "subscription id"
);

#[cfg(test)]
mod tests {
    use super::*;

    const UAMI: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-1";

    #[test]
    fn resource_id_round_trips_and_exposes_parts() {
        let id = ArmResourceId::parse(UAMI).unwrap();
        assert_eq!(id.to_string(), UAMI);
        assert_eq!(id.subscription(), "00000000-0000-0000-0000-000000000001");
        assert_eq!(id.resource_group(), "rg-1");
        assert_eq!(id.provider(), "Microsoft.ManagedIdentity");
        assert_eq!(
            id.resource_type(),
            "Microsoft.ManagedIdentity/userAssignedIdentities"
        );
        assert_eq!(id.name(), "id-1");
        assert!(id.parent().is_none());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ArmResourceId>(&json).unwrap(), id);
    }

    #[test]
    fn resource_id_equality_ignores_case_but_display_keeps_it() {
        let a = ArmResourceId::parse(UAMI).unwrap();
        let b = ArmResourceId::parse(&UAMI.to_ascii_uppercase()).unwrap();
        assert_eq!(a, b);
        let hash = |x: &ArmResourceId| {
            use std::collections::hash_map::DefaultHasher;
            let mut h = DefaultHasher::new();
            x.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(a.to_string(), b.to_string());
        assert_eq!(a.to_lowercase(), b.to_lowercase());
    }

    #[test]
    fn child_resource_ids_parse_with_parent() {
        let fic = format!("{UAMI}/federatedIdentityCredentials/idbind");
        let id = ArmResourceId::parse(&fic).unwrap();
        assert_eq!(id.name(), "idbind");
        assert_eq!(
            id.resource_type(),
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
        );
        assert_eq!(id.parent().unwrap().to_string(), UAMI);
        let err = IdentityResourceId::parse(&fic).unwrap_err().to_string();
        assert!(err.contains("expected a user-assigned identity"), "{err}");
    }

    #[test]
    fn resource_id_rejections_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "it is empty"),
            (" /subscriptions/s", "whitespace"),
            (
                "subscriptions/s/resourceGroups/r",
                "must start with '/subscriptions/'",
            ),
            (
                "/subscription/s/resourceGroups/r/providers/P/t/n",
                "expected 'subscriptions'",
            ),
            ("/subscriptions", "no subscription id"),
            (
                "/subscriptions/s/resourceGroup/r/providers/P/t/n",
                "expected 'resourceGroups'",
            ),
            ("/subscriptions/s/resourceGroups", "no resource group name"),
            (
                "/subscriptions/s/resourceGroups/r/provider/P/t/n",
                "expected 'providers'",
            ),
            (
                "/subscriptions/s/resourceGroups/r/providers",
                "no resource provider namespace",
            ),
            (
                "/subscriptions/s/resourceGroups/r/providers/P",
                "names no resource type",
            ),
            ("/subscriptions/s/resourceGroups/r/providers/P/t", "has no name"),
            (
                "/subscriptions/s/resourceGroups/r/providers/P/t/n/",
                "empty path segment",
            ),
            (
                "/subscriptions//resourceGroups/r/providers/P/t/n",
                "empty path segment",
            ),
        ];
        for (input, want) in cases {
            let err = ArmResourceId::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")) || input.is_empty(), "{err}");
        }
    }

    #[test]
    fn identity_ids_accept_only_user_assigned_identities() {
        let ok = IdentityResourceId::parse(UAMI).unwrap();
        assert_eq!(ok.name(), "id-1");
        assert_eq!(ok.to_lowercase(), UAMI.to_ascii_lowercase());
        let lower = IdentityResourceId::parse(&UAMI.to_ascii_lowercase()).unwrap();
        assert_eq!(ok, lower);
        let built = IdentityResourceId::new("00000000-0000-0000-0000-000000000001", "rg-1", "id-1").unwrap();
        assert_eq!(built.to_string(), UAMI);
        let vm = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/vm";
        let err = IdentityResourceId::parse(vm).unwrap_err().to_string();
        assert!(err.contains("Microsoft.Compute/virtualMachines"), "{err}");
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<IdentityResourceId>(&json).unwrap(), ok);
        assert!(serde_json::from_str::<IdentityResourceId>("\"/nope\"").is_err());
    }

    #[test]
    fn guids_round_trip_in_lower_case() {
        let c = ClientId::parse("0A1B2C3D-0000-4000-8000-00000000000F").unwrap();
        assert_eq!(c.to_string(), "0a1b2c3d-0000-4000-8000-00000000000f");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ClientId>(&json).unwrap(), c);
        let t: TenantId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
        assert_eq!(t.to_string(), "11111111-2222-3333-4444-555555555555");
        let p = PrincipalId::new_random();
        assert_eq!(PrincipalId::parse(&p.to_string()).unwrap(), p);
        let s = SubscriptionId::new_random();
        assert_eq!(SubscriptionId::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn guid_rejections_name_the_kind_and_the_expected_form() {
        for bad in [
            "",
            "not-a-guid",
            "0a1b2c3d00004000800000000000000f",
            "{0a1b2c3d-0000-4000-8000-00000000000f}",
            "0a1b2c3d-0000-4000-8000-00000000000g",
        ] {
            let err = ClientId::parse(bad).unwrap_err().to_string();
            assert!(err.contains("client id"), "{err}");
            assert!(err.contains("expected"), "{err}");
        }
        let err = TenantId::parse("x").unwrap_err().to_string();
        assert!(err.contains("tenant id"), "{err}");
    }
}
