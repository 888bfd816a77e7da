//! Validating a federated client assertion as Entra does (PROTOCOL.md §3.2), in this order:
//! well-formed JWT (50027) → not issued by this emulator (700222) → FIC match on `iss` (700211),
//! `sub` (700213, exact and case-sensitive), `aud` (700212), with 70021 when the identity has no
//! credential at all → RS256 only (700027) → `exp`/`nbf` within the allowed skew (700024) →
//! the issuer's discovery document and JWKS (50166 when unreachable), the key by `kid` (refetched
//! once when unknown) and the signature (700027).

use serde_json::Value;

use super::errors::EntraError;
use crate::clock::unix_secs;
use crate::jwt::Jwt;
use crate::server::Shared;
use crate::state::Fic;

pub(crate) async fn validate(shared: &Shared, assertion: &str, fics: &[Fic]) -> Result<(), EntraError> {
    let jwt = Jwt::parse(assertion).map_err(|e| EntraError::malformed_assertion(&e))?;
    let iss = jwt.str_claim("iss").unwrap_or_default().to_owned();
    if shared.is_own_issuer(&iss) {
        return Err(EntraError::entra_token_as_assertion());
    }
    if fics.is_empty() {
        return Err(EntraError::no_matching_fic());
    }
    let by_issuer: Vec<&Fic> = fics.iter().filter(|f| f.issuer == iss).collect();
    if by_issuer.is_empty() {
        return Err(EntraError::issuer_mismatch(&iss));
    }
    let sub = jwt.str_claim("sub").unwrap_or_default();
    let by_subject: Vec<&Fic> = by_issuer.into_iter().filter(|f| f.subject == sub).collect();
    if by_subject.is_empty() {
        return Err(EntraError::subject_mismatch(sub));
    }
    let auds = jwt.audiences();
    if !by_subject
        .iter()
        .any(|f| f.audiences.iter().any(|a| auds.contains(a)))
    {
        return Err(EntraError::audience_mismatch(&auds.join(",")));
    }
    match jwt.alg() {
        Some("RS256") => {}
        other => {
            return Err(EntraError::signature(&format!(
                "The token is signed with '{}'; only RS256 is supported.",
                other.unwrap_or("none")
            )));
        }
    }
    check_times(shared, &jwt)?;
    verify_signature(shared, &iss, &jwt).await
}

fn check_times(shared: &Shared, jwt: &Jwt) -> Result<(), EntraError> {
    let now = unix_secs(shared.now());
    let skew = i64::try_from(shared.settings.clock_skew.as_secs()).unwrap_or(300);
    let exp = jwt
        .time_claim("exp")
        .ok_or_else(|| EntraError::time_range("The assertion has no 'exp' claim."))?;
    if now > exp + skew {
        return Err(EntraError::time_range(&format!(
            "Current time: {now}, expiry time of assertion {exp} (allowed clock skew {skew} s)."
        )));
    }
    if let Some(nbf) = jwt.time_claim("nbf")
        && now + skew < nbf
    {
        return Err(EntraError::time_range(&format!(
            "Current time: {now}, assertion not valid before {nbf} (allowed clock skew {skew} s)."
        )));
    }
    Ok(())
}

async fn verify_signature(shared: &Shared, iss: &str, jwt: &Jwt) -> Result<(), EntraError> {
    let kid = jwt.kid().map(str::to_owned);
    let mut keys = shared
        .issuers
        .keys(iss, false)
        .await
        .map_err(|e| EntraError::issuer_fetch(&e))?;
    let mut candidates = select(&keys, kid.as_deref());
    if candidates.is_empty() && kid.is_some() {
        keys = shared
            .issuers
            .keys(iss, true)
            .await
            .map_err(|e| EntraError::issuer_fetch(&e))?;
        candidates = select(&keys, kid.as_deref());
    }
    if candidates.is_empty() {
        return Err(EntraError::signature(&format!(
            "The key was not found. No key with kid '{}' in the issuer's JWKS (first 100 keys).",
            kid.unwrap_or_default()
        )));
    }
    for key in candidates {
        let (Some(n), Some(e)) = (
            key.get("n").and_then(Value::as_str),
            key.get("e").and_then(Value::as_str),
        ) else {
            continue;
        };
        if jwt.verify_rs256(n, e).is_ok() {
            return Ok(());
        }
    }
    Err(EntraError::signature(
        "The signature does not verify with the issuer's key.",
    ))
}

/// RSA keys usable for signatures, matching `kid` when the token names one.
fn select<'a>(keys: &'a [Value], kid: Option<&str>) -> Vec<&'a Value> {
    keys.iter()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"))
        .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
        .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .collect()
}
