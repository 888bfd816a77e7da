//! The emulator's service-account issuer: one RSA-2048 key per instance, the OIDC discovery and
//! JWKS documents kube-apiserver serves, and TokenRequest minting of projected-style tokens.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Value, json};

use super::claims::{KubernetesClaims, ObjectRef, ServiceAccountClaims};
use super::clock::{Clock, SystemClock};
use super::error::{Error, FieldError, Result};
use super::jws::SigningKey;
use super::lookup::{ObjectKind, ObjectLookup};
use super::user::service_account_username;

/// Path of the OIDC discovery document.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
/// Path of the JWKS document.
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Content type kube-apiserver serves the JWKS with.
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";
/// Default `spec.expirationSeconds` of a TokenRequest.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Smallest `spec.expirationSeconds` a TokenRequest may ask for (10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Largest `spec.expirationSeconds` a TokenRequest may ask for (2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// Clock skew allowed when validating `exp`, `nbf` and `iat` (go-jose's `DefaultLeeway`).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The service-account token issuer of one emulator instance.
///
/// ```
/// use idbind_testkit::auth::{MemoryObjects, ObjectInfo, ObjectKind, ServiceAccountIssuer};
/// use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec};
///
/// let issuer = ServiceAccountIssuer::new("https://127.0.0.1:6443")?;
/// assert_eq!(issuer.openid_configuration()["jwks_uri"], "https://127.0.0.1:6443/openid/v1/jwks");
///
/// let objects = MemoryObjects::new();
/// objects.insert(ObjectKind::ServiceAccount, "apps", "web", ObjectInfo::new("sa-uid"));
/// let request = TokenRequest {
///     spec: Some(TokenRequestSpec { audiences: Some(vec!["api://AKSIdentityBinding".into()]), ..Default::default() }),
///     ..Default::default()
/// };
/// let minted = issuer.request_token("apps", "web", &request, &objects)?;
/// let token = minted.status.unwrap().token.unwrap();
///
/// let review = TokenReview {
///     spec: TokenReviewSpec { token, audiences: Some(vec!["api://AKSIdentityBinding".into()]) },
///     ..Default::default()
/// };
/// let status = issuer.review_token(&review, &objects)?.status.unwrap();
/// assert_eq!(status.authenticated, Some(true));
/// assert_eq!(status.user.unwrap().username.as_deref(), Some("system:serviceaccount:apps:web"));
/// # Ok::<(), idbind_testkit::auth::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServiceAccountIssuer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    jwks_uri: String,
    api_audiences: Vec<String>,
    max_expiration_seconds: Option<i64>,
    leeway: Duration,
    key: SigningKey,
    clock: Arc<dyn Clock>,
}

/// A minted service-account token with its claims.
#[derive(Clone, Debug)]
pub struct MintedToken {
    /// The compact JWS.
    pub token: String,
    /// The claims it carries.
    pub claims: ServiceAccountClaims,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// What a token is bound to: the service account and optionally a pod (with its node), a secret
/// or a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenBinding {
    /// Namespace of the service account.
    pub namespace: String,
    /// The service account (name and UID).
    pub service_account: ObjectRef,
    /// The bound pod.
    pub pod: Option<ObjectRef>,
    /// The bound secret.
    pub secret: Option<ObjectRef>,
    /// The bound node, or the node of the bound pod.
    pub node: Option<ObjectRef>,
}

/// Configures a [`ServiceAccountIssuer`] before its key is generated.
#[derive(Debug, Clone)]
pub struct IssuerBuilder {
    issuer: String,
    jwks_uri: Option<String>,
    api_audiences: Option<Vec<String>>,
    max_expiration_seconds: Option<i64>,
    leeway: Duration,
    clock: Arc<dyn Clock>,
}

impl IssuerBuilder {
    /// Uses `clock` for minting and validation (a [`ManualClock`](super::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the API server's own audiences (`--api-audiences`; default `[issuer]`): the audiences
    /// of TokenRequests that name none, and those a TokenReview without audiences checks.
    pub fn api_audiences(mut self, audiences: Vec<String>) -> Self {
        self.api_audiences = Some(audiences);
        self
    }

    /// Caps token lifetimes (`--service-account-max-token-expiration`).
    pub fn max_expiration(mut self, max: Duration) -> Self {
        self.max_expiration_seconds = Some(i64::try_from(max.as_secs()).unwrap_or(i64::MAX));
        self
    }

    /// Overrides the JWKS URI announced in discovery (`--service-account-jwks-uri`).
    pub fn jwks_uri(mut self, jwks_uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(jwks_uri.into());
        self
    }

    /// Sets the clock skew allowed on `exp`, `nbf` and `iat` (default [`DEFAULT_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Generates the RSA-2048 key and builds the issuer.
    pub fn build(self) -> Result<ServiceAccountIssuer> {
        let jwks_uri = self
            .jwks_uri
            .unwrap_or_else(|| format!("{}{JWKS_PATH}", self.issuer.trim_end_matches('/')));
        Ok(ServiceAccountIssuer {
            inner: Arc::new(Inner {
                api_audiences: self.api_audiences.unwrap_or_else(|| vec![self.issuer.clone()]),
                issuer: self.issuer,
                jwks_uri,
                max_expiration_seconds: self.max_expiration_seconds,
                leeway: self.leeway,
                key: SigningKey::generate()?,
                clock: self.clock,
            }),
        })
    }
}

impl ServiceAccountIssuer {
    /// An issuer with a fresh RSA-2048 key, issuer URL `issuer` (the emulator's base URL; kept as
    /// given), JWKS at `<issuer>/openid/v1/jwks`, API audiences `[issuer]`, the system clock and
    /// no maximum token lifetime.
    pub fn new(issuer: impl Into<String>) -> Result<Self> {
        Self::builder(issuer).build()
    }

    /// A builder for an issuer with URL `issuer`, to change the defaults of
    /// [`ServiceAccountIssuer::new`].
    pub fn builder(issuer: impl Into<String>) -> IssuerBuilder {
        IssuerBuilder {
            issuer: issuer.into(),
            jwks_uri: None,
            api_audiences: None,
            max_expiration_seconds: None,
            leeway: DEFAULT_LEEWAY,
            clock: Arc::new(SystemClock),
        }
    }

    /// The issuer URL (`iss` of every token).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The API server's audiences.
    pub fn api_audiences(&self) -> &[String] {
        &self.inner.api_audiences
    }

    /// The key id (`kid`) of the signing key.
    pub fn key_id(&self) -> &str {
        self.inner.key.kid()
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub(crate) fn key(&self) -> &SigningKey {
        &self.inner.key
    }

    pub(crate) fn leeway(&self) -> Duration {
        self.inner.leeway
    }

    /// The document served at `/.well-known/openid-configuration`, as kube-apiserver writes it.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.inner.issuer,
            "jwks_uri": self.inner.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// The document served at `/openid/v1/jwks` (content type [`JWKS_CONTENT_TYPE`]).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.inner.key.jwk()] })
    }

    /// Signs arbitrary claims with this issuer's key (header `{"alg":"RS256","kid":...}`): for
    /// tests that need tokens kube-apiserver would never mint.
    pub fn sign_claims(&self, claims: &Value) -> Result<String> {
        self.inner.key.sign(claims)
    }

    /// Mints a token bound to `binding`, for `audiences`, valid `expiration_seconds` from now.
    /// No validation: [`ServiceAccountIssuer::request_token`] is the checked path.
    pub fn mint(
        &self,
        binding: &TokenBinding,
        audiences: &[String],
        expiration_seconds: i64,
    ) -> Result<MintedToken> {
        let now = self.inner.clock.now();
        let iat = now.as_second();
        let exp = iat.saturating_add(expiration_seconds);
        let claims = ServiceAccountClaims {
            aud: audiences.to_vec(),
            exp,
            iat,
            iss: self.inner.issuer.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaims {
                namespace: binding.namespace.clone(),
                node: binding.node.clone(),
                pod: binding.pod.clone(),
                secret: binding.secret.clone(),
                serviceaccount: binding.service_account.clone(),
            },
            nbf: iat,
            sub: service_account_username(&binding.namespace, &binding.service_account.name),
        };
        let value = serde_json::to_value(&claims).map_err(|e| Error::Key(e.to_string()))?;
        let token = self.inner.key.sign(&value)?;
        let expires_at = Timestamp::from_second(exp).map_err(|e| Error::Key(format!("expiry {exp}: {e}")))?;
        tracing::debug!(jti = %claims.jti, sub = %claims.sub, "minted service-account token");
        Ok(MintedToken {
            token,
            claims,
            expires_at,
        })
    }

    /// Serves `POST /api/v1/namespaces/{namespace}/serviceaccounts/{name}/token`: validates the
    /// request as kube-apiserver does, binds the token to the referenced Pod, Secret or Node
    /// (checking it exists and, when given, its UID) and returns the TokenRequest with
    /// `spec` defaulted and `status {token, expirationTimestamp}` set.
    pub fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
        objects: &dyn ObjectLookup,
    ) -> Result<TokenRequest> {
        let mut out = request.clone();
        let spec = out.spec.get_or_insert_with(TokenRequestSpec::default);
        let expiration = spec.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        let mut causes = Vec::new();
        if expiration < MIN_EXPIRATION_SECONDS {
            causes.push(FieldError {
                field: "spec.expirationSeconds".into(),
                value: expiration.to_string(),
                detail: "may not specify a duration less than 10 minutes".into(),
            });
        }
        if expiration > MAX_EXPIRATION_SECONDS {
            causes.push(FieldError {
                field: "spec.expirationSeconds".into(),
                value: expiration.to_string(),
                detail: "may not specify a duration larger than 2^32 seconds".into(),
            });
        }
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "TokenRequest",
                group: "authentication.k8s.io",
                name: service_account.to_owned(),
                causes,
            });
        }

        let sa = objects
            .lookup(ObjectKind::ServiceAccount, namespace, service_account)
            .ok_or_else(|| Error::NotFound {
                resource: "serviceaccounts".into(),
                name: service_account.to_owned(),
            })?;
        let mut binding = TokenBinding {
            namespace: namespace.to_owned(),
            service_account: ObjectRef::new(service_account, sa.uid),
            ..TokenBinding::default()
        };

        if let Some(reference) = &spec.bound_object_ref {
            let kind = reference.kind.as_deref().unwrap_or_default();
            let api_version = reference.api_version.as_deref().unwrap_or("v1");
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let name = reference.name.as_deref().unwrap_or_default();
            let bound_kind = match (group, kind) {
                ("", "Pod") => ObjectKind::Pod,
                ("", "Secret") => ObjectKind::Secret,
                ("", "Node") => ObjectKind::Node,
                _ => {
                    let gvk = if group.is_empty() {
                        format!("/{api_version}, Kind={kind}")
                    } else {
                        format!("{api_version}, Kind={kind}")
                    };
                    return Err(Error::BadRequest(format!(
                        "cannot bind token to object of type {gvk}"
                    )));
                }
            };
            let object_namespace = if bound_kind == ObjectKind::Node {
                ""
            } else {
                namespace
            };
            let object = objects
                .lookup(bound_kind, object_namespace, name)
                .ok_or_else(|| Error::NotFound {
                    resource: bound_kind.resource().into(),
                    name: name.to_owned(),
                })?;
            if let Some(expected) = reference.uid.as_deref().filter(|u| !u.is_empty())
                && expected != object.uid
            {
                return Err(Error::Conflict {
                    resource: bound_kind.kind().into(),
                    name: name.to_owned(),
                    message: format!(
                        "the UID in the bound object reference ({expected}) does not match the UID in record. \
                         The object might have been deleted and then recreated"
                    ),
                });
            }
            match bound_kind {
                ObjectKind::Pod => {
                    if object.service_account_name.as_deref().unwrap_or("default") != service_account {
                        return Err(Error::BadRequest(format!(
                            "cannot bind token for serviceaccount {service_account:?} to pod running with \
                             different serviceaccount name."
                        )));
                    }
                    if let Some(node) = object.node_name.as_deref() {
                        let uid = objects
                            .lookup(ObjectKind::Node, "", node)
                            .map(|n| n.uid)
                            .unwrap_or_default();
                        binding.node = Some(ObjectRef::new(node, uid));
                    }
                    binding.pod = Some(ObjectRef::new(name, object.uid));
                }
                ObjectKind::Secret => binding.secret = Some(ObjectRef::new(name, object.uid)),
                ObjectKind::Node => binding.node = Some(ObjectRef::new(name, object.uid)),
                ObjectKind::ServiceAccount => {}
            }
        }

        let audiences = match spec.audiences.as_ref().filter(|a| !a.is_empty()) {
            Some(audiences) => audiences.clone(),
            None => self.inner.api_audiences.clone(),
        };
        spec.audiences = Some(audiences.clone());
        let expiration = match self.inner.max_expiration_seconds {
            Some(max) if expiration > max => max,
            _ => expiration,
        };
        spec.expiration_seconds = Some(expiration);
        let minted = self.mint(&binding, &audiences, expiration)?;
        out.metadata = ObjectMeta {
            name: Some(service_account.to_owned()),
            namespace: Some(namespace.to_owned()),
            creation_timestamp: Some(Time(
                Timestamp::from_second(minted.claims.iat).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
            ..ObjectMeta::default()
        };
        out.status = Some(TokenRequestStatus {
            token: Some(minted.token),
            expiration_timestamp: Some(Time(minted.expires_at)),
        });
        Ok(out)
    }
}
