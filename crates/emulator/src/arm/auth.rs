//! ARM authentication (a bearer token from this emulator's Entra, for the ARM audience) and
//! authorization (the caller's ARM scopes must cover the resource).

use http::HeaderMap;
use idbind_model::TenantId;

use super::errors::ArmError;
use crate::clock::{rfc3339, unix_secs};
use crate::server::Shared;

/// Audiences ARM accepts.
pub(crate) const ARM_AUDIENCES: [&str; 4] = [
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
];

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub object_id: String,
    pub tenant: TenantId,
    pub app_id: String,
}

fn unauthorized(shared: &Shared, code: &str, message: &str, tenant: Option<&TenantId>) -> ArmError {
    let tenant = tenant
        .copied()
        .unwrap_or_else(|| shared.state.read().default_tenant);
    let mut e = ArmError::new(401, code, message);
    e.www_authenticate = Some(format!(
        "Bearer authorization_uri=\"{}/{tenant}\", error=\"invalid_token\", error_description=\"{}\"",
        shared.base_url(),
        message.replace('"', "'")
    ));
    e
}

pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, ArmError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(unauthorized(
            shared,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            None,
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized(
                shared,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                None,
            )
        })?;
    let claims = shared.signer.verify(token).ok_or_else(|| {
        unauthorized(
            shared,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            None,
        )
    })?;
    let tenant = claims
        .get("tid")
        .and_then(|v| v.as_str())
        .and_then(|t| TenantId::parse(t).ok());
    let now = unix_secs(shared.now());
    let skew = i64::try_from(shared.settings.clock_skew.as_secs()).unwrap_or(300);
    let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0);
    if now > exp + skew {
        let at = |s: i64| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.max(0) as u64));
        return Err(unauthorized(
            shared,
            "ExpiredAuthenticationToken",
            &format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                at(exp),
                at(now)
            ),
            tenant.as_ref(),
        ));
    }
    if claims
        .get("nbf")
        .and_then(|v| v.as_i64())
        .is_some_and(|nbf| now + skew < nbf)
    {
        return Err(unauthorized(
            shared,
            "InvalidAuthenticationToken",
            "The access token is not yet valid.",
            tenant.as_ref(),
        ));
    }
    let aud = claims.get("aud").and_then(|v| v.as_str()).unwrap_or_default();
    if !ARM_AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(unauthorized(
            shared,
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match \
                 with one of the allowed audiences '{}'.",
                ARM_AUDIENCES.join("','")
            ),
            tenant.as_ref(),
        ));
    }
    let (Some(tenant), Some(oid)) = (tenant, claims.get("oid").and_then(|v| v.as_str())) else {
        return Err(unauthorized(
            shared,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            None,
        ));
    };
    Ok(Caller {
        object_id: oid.to_owned(),
        tenant,
        app_id: claims
            .get("appid")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
    })
}

/// 401 when the token's tenant does not own the subscription.
pub(crate) fn check_tenant(
    shared: &Shared,
    caller: &Caller,
    subscription_tenant: TenantId,
) -> Result<(), ArmError> {
    if caller.tenant == subscription_tenant {
        return Ok(());
    }
    let base = shared.base_url();
    Err(unauthorized(
        shared,
        "InvalidAuthenticationTokenTenant",
        &format!(
            "The access token is from the wrong issuer '{base}/{}/v2.0'. It must match the tenant \
             '{base}/{subscription_tenant}/v2.0' associated with this subscription. Please use the authority (URL) \
             '{base}/{subscription_tenant}' to get the token.",
            caller.tenant
        ),
        Some(&subscription_tenant),
    ))
}

/// 403 unless the caller's ARM scopes cover `resource`.
pub(crate) fn authorize(
    shared: &Shared,
    caller: &Caller,
    action: &str,
    resource: &str,
) -> Result<(), ArmError> {
    let scopes = shared.state.read().arm_scopes_of(&caller.object_id);
    let allowed = match scopes {
        Some(None) => true,
        Some(Some(scopes)) => scopes.iter().any(|s| covers(s, resource)),
        None => false,
    };
    if allowed {
        return Ok(());
    }
    Err(ArmError::new(
        403,
        "AuthorizationFailed",
        format!(
            "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{action}' over \
             scope '{resource}' or the scope is invalid. If access was recently granted, please refresh your \
             credentials.",
            oid = caller.object_id
        ),
    ))
}

fn covers(scope: &str, resource: &str) -> bool {
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    let resource = resource.trim_end_matches('/').to_ascii_lowercase();
    scope.is_empty() || resource == scope || resource.starts_with(&format!("{scope}/"))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn scopes_cover_by_path_prefix_case_insensitively() {
        assert!(covers("/", "/subscriptions/a"));
        assert!(covers("/subscriptions/A", "/subscriptions/a/resourceGroups/x"));
        assert!(!covers("/subscriptions/a", "/subscriptions/ab/resourceGroups/x"));
        assert!(covers(
            "/subscriptions/a/resourceGroups/x/",
            "/subscriptions/a/resourcegroups/X"
        ));
    }
}
