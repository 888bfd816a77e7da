//! TokenReview: validating service-account tokens as kube-apiserver's service-account
//! authenticator does, in the same order and with the same error messages.
//!
//! The checks, in order: the token is a compact JWS whose `iss` is this issuer and whose `alg` is
//! an asymmetric JOSE algorithm (otherwise it is *not recognized*: `invalid bearer token`); the
//! signature verifies with this issuer's key; the token's audiences intersect the requested ones
//! (the API audiences when none are requested); `nbf`, `exp` and `iat` hold with one minute of
//! leeway; the service account exists with the UID in the token; the bound secret, pod and (for
//! node-bound tokens) node exist with their UIDs and are not being deleted for longer than the
//! leeway.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo as KubeUserInfo};

use super::claims::read_claims;
use super::error::{Error, Result};
use super::issuer::ServiceAccountIssuer;
use super::jws;
use super::lookup::{ObjectKind, ObjectLookup};
use super::user::{
    EXTRA_CREDENTIAL_ID, EXTRA_NODE_NAME, EXTRA_NODE_UID, EXTRA_POD_NAME, EXTRA_POD_UID,
    SERVICE_ACCOUNTS_GROUP, UserInfo, service_account_username,
};

/// JOSE algorithms kube-apiserver accepts when parsing service-account tokens. Tokens with any
/// other `alg` (`none`, `HS256`, ...) are not recognized at all.
const ACCEPTED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
];

/// A token that authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The service-account user, with `system:authenticated` added.
    pub user: UserInfo,
    /// The audiences the token is valid for among those requested.
    pub audiences: Vec<String>,
}

/// Why a token did not authenticate. `Display` is the inner message kube-apiserver gives;
/// [`TokenError::status_error`] is the whole `status.error` of a TokenReview.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a service-account token of this issuer: not a JWS, another issuer, or an algorithm
    /// that is not accepted (`none`, HMAC).
    #[error("invalid bearer token")]
    NotRecognized,
    /// The signature does not verify with this issuer's key.
    #[error("go-jose/go-jose: error in cryptographic primitive")]
    BadSignature,
    /// No requested audience is among the token's audiences.
    #[error(
        "token audiences {} is invalid for the target audiences {}",
        go_quote(token),
        go_quote(requested)
    )]
    WrongAudience {
        /// The token's `aud`.
        token: Vec<String>,
        /// The audiences checked against.
        requested: Vec<String>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("service account token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("service account token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("service account token is issued in the future")]
    IssuedInFuture,
    /// The claims have the wrong types.
    #[error("service account token claims could not be validated due to unexpected validation error")]
    MalformedClaims,
    /// The service account does not exist.
    #[error("serviceaccounts {0:?} not found")]
    ServiceAccountNotFound(String),
    /// The service account has been deleted.
    #[error("service account {namespace}/{name} has been deleted")]
    ServiceAccountDeleted {
        /// Namespace of the service account.
        namespace: String,
        /// Name of the service account.
        name: String,
    },
    /// The service account was re-created: its UID is not the one in the token.
    #[error("service account UID ({actual}) does not match claim ({claimed})")]
    ServiceAccountUidMismatch {
        /// UID of the stored service account.
        actual: String,
        /// UID in the token.
        claimed: String,
    },
    /// The bound pod, secret or node is gone or being deleted.
    #[error("service account token has been invalidated")]
    Invalidated,
    /// The bound pod was re-created: its UID is not the one in the token.
    #[error("pod UID ({actual}) does not match service account pod ref claim ({claimed})")]
    PodUidMismatch {
        /// UID of the stored pod.
        actual: String,
        /// UID in the token.
        claimed: String,
    },
    /// The bound secret was re-created.
    #[error("secret UID ({actual}) does not match service account secret ref claim ({claimed})")]
    SecretUidMismatch {
        /// UID of the stored secret.
        actual: String,
        /// UID in the token.
        claimed: String,
    },
    /// The bound node was re-created.
    #[error("node UID ({actual}) does not match service account node ref claim ({claimed})")]
    NodeUidMismatch {
        /// UID of the stored node.
        actual: String,
        /// UID in the token.
        claimed: String,
    },
}

impl TokenError {
    /// The `status.error` of a TokenReview (and the reason logged for a rejected request), as
    /// kube-apiserver's authenticator chain reports it: `invalid bearer token` for tokens no
    /// authenticator recognizes, `[invalid bearer token, <reason>]` otherwise.
    pub fn status_error(&self) -> String {
        match self {
            TokenError::NotRecognized => self.to_string(),
            other => format!("[invalid bearer token, {other}]"),
        }
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

impl ServiceAccountIssuer {
    /// Authenticates a service-account token for `audiences` (empty: the API audiences), with
    /// every check of kube-apiserver's service-account authenticator.
    pub fn authenticate_token(
        &self,
        token: &str,
        audiences: &[String],
        objects: &dyn ObjectLookup,
    ) -> Result<Authenticated, TokenError> {
        let jws = jws::parse(token.trim()).ok_or(TokenError::NotRecognized)?;
        if jws.claims.get("iss").and_then(|v| v.as_str()) != Some(self.issuer()) {
            return Err(TokenError::NotRecognized);
        }
        if !ACCEPTED_ALGORITHMS.contains(&jws.alg.as_str()) {
            return Err(TokenError::NotRecognized);
        }
        if jws.alg != "RS256" || !self.key().verifies(jws.signing_input.as_bytes(), &jws.signature) {
            tracing::debug!(alg = %jws.alg, "service-account token signature does not verify");
            return Err(TokenError::BadSignature);
        }
        let claims = read_claims(&jws.claims).map_err(|reason| {
            tracing::debug!(%reason, "service-account token claims have unexpected types");
            TokenError::MalformedClaims
        })?;

        let requested: Vec<String> = if audiences.is_empty() {
            self.api_audiences().to_vec()
        } else {
            audiences.to_vec()
        };
        let token_audiences = if claims.aud.is_empty() {
            self.api_audiences().to_vec()
        } else {
            claims.aud.clone()
        };
        let granted: Vec<String> = token_audiences
            .iter()
            .filter(|a| requested.contains(a))
            .cloned()
            .collect();
        if granted.is_empty() {
            return Err(TokenError::WrongAudience {
                token: claims.aud,
                requested,
            });
        }

        let now = self.clock().now().as_second();
        let leeway = i64::try_from(self.leeway().as_secs()).unwrap_or(i64::MAX);
        if claims.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp.is_some_and(|exp| now.saturating_sub(leeway) > exp) {
            return Err(TokenError::Expired);
        }
        if claims.iat.is_some_and(|iat| now.saturating_add(leeway) < iat) {
            return Err(TokenError::IssuedInFuture);
        }

        let k = &claims.kubernetes;
        let namespace = k.namespace.as_str();
        // Objects deleted before now - leeway invalidate the token.
        let deleted = |info: &super::lookup::ObjectInfo| {
            info.deletion_timestamp
                .is_some_and(|t| t.as_second() < now.saturating_sub(leeway))
        };
        let sa = objects
            .lookup(ObjectKind::ServiceAccount, namespace, &k.serviceaccount.name)
            .ok_or_else(|| TokenError::ServiceAccountNotFound(k.serviceaccount.name.clone()))?;
        if deleted(&sa) {
            return Err(TokenError::ServiceAccountDeleted {
                namespace: namespace.to_owned(),
                name: k.serviceaccount.name.clone(),
            });
        }
        if sa.uid != k.serviceaccount.uid {
            return Err(TokenError::ServiceAccountUidMismatch {
                actual: sa.uid,
                claimed: k.serviceaccount.uid.clone(),
            });
        }
        if let Some(secret) = &k.secret {
            let stored = objects
                .lookup(ObjectKind::Secret, namespace, &secret.name)
                .ok_or(TokenError::Invalidated)?;
            if deleted(&stored) {
                return Err(TokenError::Invalidated);
            }
            if stored.uid != secret.uid {
                return Err(TokenError::SecretUidMismatch {
                    actual: stored.uid,
                    claimed: secret.uid.clone(),
                });
            }
        }
        let mut extra = BTreeMap::new();
        if let Some(pod) = &k.pod {
            let stored = objects
                .lookup(ObjectKind::Pod, namespace, &pod.name)
                .ok_or(TokenError::Invalidated)?;
            if deleted(&stored) {
                return Err(TokenError::Invalidated);
            }
            if stored.uid != pod.uid {
                return Err(TokenError::PodUidMismatch {
                    actual: stored.uid,
                    claimed: pod.uid.clone(),
                });
            }
            extra.insert(EXTRA_POD_NAME.to_owned(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.to_owned(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &k.node {
            if k.pod.is_none() {
                let stored = objects
                    .lookup(ObjectKind::Node, "", &node.name)
                    .ok_or(TokenError::Invalidated)?;
                if deleted(&stored) {
                    return Err(TokenError::Invalidated);
                }
                if stored.uid != node.uid {
                    return Err(TokenError::NodeUidMismatch {
                        actual: stored.uid,
                        claimed: node.uid.clone(),
                    });
                }
            }
            extra.insert(EXTRA_NODE_NAME.to_owned(), vec![node.name.clone()]);
            if !node.uid.is_empty() {
                extra.insert(EXTRA_NODE_UID.to_owned(), vec![node.uid.clone()]);
            }
        }
        if !claims.jti.is_empty() {
            extra.insert(
                EXTRA_CREDENTIAL_ID.to_owned(),
                vec![format!("JTI={}", claims.jti)],
            );
        }
        tracing::debug!(jti = %claims.jti, namespace, name = %k.serviceaccount.name, "service-account token authenticated");
        let user = UserInfo {
            username: service_account_username(namespace, &k.serviceaccount.name),
            uid: Some(k.serviceaccount.uid.clone()),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_owned(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
            ],
            extra,
        }
        .with_authenticated_group();
        Ok(Authenticated {
            user,
            audiences: granted,
        })
    }

    /// Serves `POST /apis/authentication.k8s.io/v1/tokenreviews`: returns the review with its
    /// status set as kube-apiserver sets it. An empty `spec.token` is a `BadRequest`.
    pub fn review_token(&self, review: &TokenReview, objects: &dyn ObjectLookup) -> Result<TokenReview> {
        let token = review.spec.token.as_str();
        if token.is_empty() {
            return Err(Error::BadRequest(
                "token is required for TokenReview in authentication".into(),
            ));
        }
        let audiences = review.spec.audiences.clone().unwrap_or_default();
        let status = match self.authenticate_token(token, &audiences, objects) {
            Ok(authenticated) => TokenReviewStatus {
                authenticated: Some(true),
                user: Some(authenticated.user.into()),
                audiences: Some(authenticated.audiences),
                error: None,
            },
            Err(err) => TokenReviewStatus {
                authenticated: None,
                user: Some(KubeUserInfo::default()),
                audiences: None,
                error: Some(err.status_error()),
            },
        };
        let mut out = review.clone();
        out.status = Some(status);
        Ok(out)
    }
}
