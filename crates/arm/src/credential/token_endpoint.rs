//! One request to an OAuth token endpoint (Entra or IMDS) with retries, and the decoding of its
//! answer.

use serde::Deserialize;

use super::AccessToken;
use crate::error::CredentialError;
use crate::http::{body_snippet, retry_after};
use crate::retry::{Attempt, RetryPolicy};
use crate::{Error, Result};

/// Sends the request `build` makes until it yields a token, retrying per `policy` the statuses
/// `retryable` accepts and transport failures.
pub(crate) async fn fetch_token(
    credential: &'static str,
    policy: &RetryPolicy,
    retryable: fn(u16) -> bool,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<AccessToken> {
    policy
        .run("token", |_attempt| {
            let request = build();
            async move {
                let response = match request.send().await {
                    Ok(r) => r,
                    Err(e) => return Err(transport(credential, e)),
                };
                let status = response.status().as_u16();
                let wait = retry_after(response.headers());
                let body = match response.bytes().await {
                    Ok(b) => b,
                    Err(e) => return Err(transport(credential, e)),
                };
                if (200..300).contains(&status) {
                    return decode_success(credential, &body).map_err(Attempt::Fatal);
                }
                let error = Error::from(decode_failure(credential, status, &body));
                if retryable(status) {
                    Err(Attempt::Retry {
                        error,
                        status: Some(status),
                        retry_after: wait,
                    })
                } else {
                    Err(Attempt::Fatal(error))
                }
            }
        })
        .await
}

fn transport(credential: &'static str, e: reqwest::Error) -> Attempt {
    let message = if e.is_timeout() {
        "the token endpoint did not answer in time"
    } else if e.is_connect() {
        "could not connect to the token endpoint"
    } else {
        "the request to the token endpoint failed"
    };
    let error = CredentialError::local(credential, message).with_source(e.without_url());
    Attempt::Retry {
        error: error.into(),
        status: None,
        retry_after: None,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(f64),
    Str(String),
}

impl NumOrString {
    fn seconds(&self) -> Option<i64> {
        let n = match self {
            NumOrString::Num(n) => *n,
            NumOrString::Str(s) => s.trim().parse().ok()?,
        };
        #[allow(clippy::cast_possible_truncation)]
        (0.0..1e12).contains(&n).then_some(n as i64)
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_in: Option<NumOrString>,
    expires_on: Option<NumOrString>,
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<i64>,
}

fn decode_success(credential: &'static str, body: &[u8]) -> Result<AccessToken> {
    let err = |m: &str| {
        Error::from(CredentialError::local(
            credential,
            format!("the token response {m}"),
        ))
    };
    let parsed: TokenBody =
        serde_json::from_slice(body).map_err(|e| err(&format!("is not the expected JSON object ({e})")))?;
    let secret = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err("has no access_token"))?;
    let now = jiff::Timestamp::now();
    let from_epoch = parsed
        .expires_on
        .as_ref()
        .and_then(NumOrString::seconds)
        .and_then(|s| jiff::Timestamp::from_second(s).ok());
    let from_lifetime = parsed
        .expires_in
        .as_ref()
        .and_then(NumOrString::seconds)
        .and_then(|s| now.checked_add(jiff::SignedDuration::from_secs(s)).ok());
    let expires_at = from_epoch
        .or(from_lifetime)
        .ok_or_else(|| err("has neither a numeric expires_in nor expires_on"))?;
    Ok(AccessToken::new(secret, expires_at))
}

fn decode_failure(credential: &'static str, status: u16, body: &[u8]) -> CredentialError {
    match serde_json::from_slice::<TokenBody>(body) {
        Ok(b) if b.error.is_some() || b.error_description.is_some() => CredentialError {
            credential,
            status: Some(status),
            message: b
                .error_description
                .or_else(|| b.error.clone())
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            code: b.error,
            error_codes: b.error_codes,
            source: None,
        },
        _ => CredentialError {
            status: Some(status),
            ..CredentialError::local(
                credential,
                format!("the token endpoint answered {}", body_snippet(body)),
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_and_imds_token_bodies_decode() {
        let entra = decode_success(
            "c",
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#,
        )
        .unwrap();
        assert_eq!(entra.secret.expose(), "abc");
        let left = entra.expires_at.duration_since(jiff::Timestamp::now()).as_secs();
        assert!((3590..=3599).contains(&left), "{left}");
        let v1 = decode_success("c", br#"{"expires_in":"3599","access_token":"abc"}"#).unwrap();
        assert!(v1.expires_at > jiff::Timestamp::now());
        let imds = decode_success(
            "c",
            br#"{"access_token":"x","expires_on":"1893456000","expires_in":"86399","resource":"https://management.azure.com/"}"#,
        )
        .unwrap();
        assert_eq!(imds.expires_at.as_second(), 1_893_456_000);
    }

    #[test]
    fn bad_token_bodies_say_what_is_missing() {
        for (body, want) in [
            (&br#"{"expires_in":1}"#[..], "no access_token"),
            (br#"{"access_token":"x"}"#, "neither a numeric expires_in"),
            (
                br#"{"access_token":"x","expires_in":"soon"}"#,
                "neither a numeric expires_in",
            ),
            (b"<html>", "not the expected JSON"),
        ] {
            let err = decode_success("WorkloadIdentityCredential", body)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("WorkloadIdentityCredential"),
                "{err}"
            );
        }
    }

    #[test]
    fn entra_errors_keep_code_codes_and_first_line() {
        let e = decode_failure(
            "c",
            400,
            br#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found.\r\nTrace ID: x","error_codes":[70021]}"#,
        );
        assert_eq!(e.status, Some(400));
        assert_eq!(e.code.as_deref(), Some("invalid_client"));
        assert_eq!(e.error_codes, vec![70021]);
        assert_eq!(
            e.message,
            "AADSTS70021: No matching federated identity record found."
        );
        let other = decode_failure("c", 502, b"bad gateway");
        assert!(other.message.contains("bad gateway"));
    }
}
