//! Entra token endpoint: client secrets, federated assertions and every AADSTS code, over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use idbind_emulator::{ARM_SCOPE, EmulatorConfig, FicInfo, IdentityInfo, Route};
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Verifies an access token against the emulator's published JWKS and discovery document.
async fn verify_with_emulator_jwks(emu: &idbind_emulator::Emulator, token: &str, tenant: &str) -> Value {
    let discovery: Value = http()
        .get(format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            emu.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in ["issuer", "token_endpoint", "authorization_endpoint", "jwks_uri"] {
        assert!(discovery[field].is_string(), "discovery lacks {field}");
    }
    let jwks: JwkSet = http()
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("token kid in JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["https://management.azure.com/"]);
    validation.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

async fn identity_with_fic(
    emu: &idbind_emulator::Emulator,
    issuer: &TestIssuer,
    subject: &str,
) -> IdentityInfo {
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    emu.put_fic(
        &identity.resource_id,
        &FicInfo::new("idbind", &issuer.url, subject),
    )
    .unwrap();
    identity
}

#[tokio::test]
async fn client_secret_token_verifies_against_emulator_jwks() {
    let emu = start().await;
    let sp = emu.default_principal();
    let token = arm_token(&emu).await;
    let claims = verify_with_emulator_jwks(&emu, &token, &sp.tenant_id.to_string()).await;
    assert_eq!(claims["appid"], sp.client_id.to_string());
    assert_eq!(claims["oid"], sp.object_id.to_string());
    assert_eq!(claims["sub"], claims["oid"]);
    assert_eq!(claims["tid"], sp.tenant_id.to_string());
    assert_eq!(claims["idtyp"], "app");
    assert!(claims.get("xms_mirid").is_none());
    assert_eq!(claims["iss"], emu.issuer(&sp.tenant_id));
    let (status, body) = token_request(
        &emu,
        &sp.tenant_id.to_string(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &sp.client_id.to_string()),
            ("client_secret", &sp.client_secret),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_i64() && body["ext_expires_in"].is_i64(),
        "{body}"
    );
    assert!(body["expires_in"].as_i64().unwrap() > 23 * 3600);
}

#[tokio::test]
async fn uami_token_from_assertion_verifies_against_emulator_jwks() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let subject =
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/uami";
    let identity = identity_with_fic(&emu, &issuer, subject).await;
    let (status, body) = exchange(&emu, &identity, &issuer.assertion(subject)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = verify_with_emulator_jwks(
        &emu,
        body["access_token"].as_str().unwrap(),
        &identity.tenant_id.to_string(),
    )
    .await;
    assert_eq!(claims["appid"], identity.client_id.to_string());
    assert_eq!(claims["oid"], identity.principal_id.to_string());
    assert_eq!(claims["tid"], identity.tenant_id.to_string());
    assert_eq!(claims["xms_mirid"], identity.resource_id.to_string());
    assert_eq!(claims["idtyp"], "app");
}

#[tokio::test]
async fn aadsts70021_identity_without_any_fic() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "bare")
        .unwrap();
    let (status, body) = exchange(&emu, &identity, &issuer.assertion("s")).await;
    assert_entra_error(status, &body, 401, 70021);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn aadsts700211_issuer_must_match_exactly() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "s").await;
    let other = format!("{}/", issuer.url);
    let (status, body) = exchange(
        &emu,
        &identity,
        &issuer.assertion_with(&issuer.key(), &json!({"sub": "s", "iss": other})),
    )
    .await;
    assert_entra_error(status, &body, 401, 700211);
    assert!(body["error_description"].as_str().unwrap().contains(&other));
}

#[tokio::test]
async fn aadsts700212_audience_must_contain_fic_audience() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "s").await;
    let assertion = issuer.assertion_with(
        &issuer.key(),
        &json!({"sub": "s", "aud": "api://AKSIdentityBinding"}),
    );
    let (status, body) = exchange(&emu, &identity, &assertion).await;
    assert_entra_error(status, &body, 401, 700212);
    // A single-string aud equal to the FIC audience is fine.
    let assertion = issuer.assertion_with(&issuer.key(), &json!({"sub": "s", "aud": AUD}));
    assert_eq!(exchange(&emu, &identity, &assertion).await.0, StatusCode::OK);
}

#[tokio::test]
async fn aadsts700213_subject_is_case_sensitive() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "/subscriptions/abc/x").await;
    let (status, body) = exchange(&emu, &identity, &issuer.assertion("/subscriptions/ABC/x")).await;
    assert_entra_error(status, &body, 401, 700213);
}

#[tokio::test]
async fn aadsts700024_expired_or_not_yet_valid_beyond_skew() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "s").await;
    let now = now_secs();
    let expired = issuer.assertion_with(
        &issuer.key(),
        &json!({"sub": "s", "iat": now - 4000, "nbf": now - 4000, "exp": now - 400}),
    );
    let (status, body) = exchange(&emu, &identity, &expired).await;
    assert_entra_error(status, &body, 401, 700024);
    let future = issuer.assertion_with(
        &issuer.key(),
        &json!({"sub": "s", "nbf": now + 400, "exp": now + 900}),
    );
    let (status, body) = exchange(&emu, &identity, &future).await;
    assert_entra_error(status, &body, 401, 700024);
    // Within the 5 minute skew both directions are accepted.
    let slightly = issuer.assertion_with(
        &issuer.key(),
        &json!({"sub": "s", "nbf": now + 200, "exp": now - 200 + 400}),
    );
    assert_eq!(exchange(&emu, &identity, &slightly).await.0, StatusCode::OK);
    let no_exp = issuer.assertion_with(&issuer.key(), &json!({"sub": "s", "exp": null}));
    let (status, body) = exchange(&emu, &identity, &no_exp).await;
    assert_entra_error(status, &body, 401, 700024);
}

#[tokio::test]
async fn aadsts700027_signature_key_and_algorithm() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "s").await;
    // Signed by a different key that claims the published kid.
    let impostor = TestKey::generate("k1");
    let (status, body) = exchange(
        &emu,
        &identity,
        &issuer.assertion_with(&impostor, &json!({"sub": "s"})),
    )
    .await;
    assert_entra_error(status, &body, 401, 700027);
    // A kid the issuer does not publish.
    let unknown = TestKey::generate("nope");
    let (status, body) = exchange(
        &emu,
        &identity,
        &issuer.assertion_with(&unknown, &json!({"sub": "s"})),
    )
    .await;
    assert_entra_error(status, &body, 401, 700027);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("key was not found")
    );
    // HS256 is refused before any fetch.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": issuer.url, "sub": "s", "aud": AUD, "exp": now_secs() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
    )
    .unwrap();
    let (status, body) = exchange(&emu, &identity, &hs).await;
    assert_entra_error(status, &body, 401, 700027);
    assert!(body["error_description"].as_str().unwrap().contains("RS256"));
}

#[tokio::test]
async fn aadsts700016_unknown_client_id() {
    let emu = start().await;
    let tenant = emu.default_tenant().to_string();
    let (status, body) = token_request(
        &emu,
        &tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "00000000-0000-0000-0000-0000000000aa"),
            ("client_secret", "x"),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_entra_error(status, &body, 400, 700016);
    assert_eq!(body["error"], "unauthorized_client");
    // A principal of another tenant is unknown here too.
    let other = emu.create_tenant().unwrap();
    let sp = emu.create_service_principal(&other).unwrap();
    let (status, body) = token_request(
        &emu,
        &tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &sp.client_id.to_string()),
            ("client_secret", &sp.client_secret),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_entra_error(status, &body, 400, 700016);
}

#[tokio::test]
async fn aadsts7000218_neither_secret_nor_assertion() {
    let emu = start().await;
    let sp = emu.default_principal();
    let (status, body) = token_request(
        &emu,
        &sp.tenant_id.to_string(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &sp.client_id.to_string()),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_entra_error(status, &body, 401, 7000218);
}

#[tokio::test]
async fn aadsts7000215_wrong_client_secret() {
    let emu = start().await;
    let sp = emu.default_principal();
    let (status, body) = token_request(
        &emu,
        &sp.tenant_id.to_string(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &sp.client_id.to_string()),
            ("client_secret", "wrong"),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_entra_error(status, &body, 401, 7000215);
    // Identities have no secrets.
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let (status, body) = token_request(
        &emu,
        &sp.tenant_id.to_string(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &identity.client_id.to_string()),
            ("client_secret", "x"),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_entra_error(status, &body, 401, 7000215);
}

#[tokio::test]
async fn aadsts900144_missing_parameters() {
    let emu = start().await;
    let sp = emu.default_principal();
    let tenant = sp.tenant_id.to_string();
    let client = sp.client_id.to_string();
    let full = [
        ("grant_type", "client_credentials"),
        ("client_id", client.as_str()),
        ("client_secret", sp.client_secret.as_str()),
        ("scope", ARM_SCOPE),
    ];
    for missing in ["grant_type", "client_id", "scope"] {
        let form: Vec<(&str, &str)> = full.iter().copied().filter(|(k, _)| *k != missing).collect();
        let (status, body) = token_request(&emu, &tenant, &form).await;
        assert_entra_error(status, &body, 400, 900144);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(&format!("'{missing}'")),
            "{body}"
        );
    }
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let (status, body) = token_request(
        &emu,
        &tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &identity.client_id.to_string()),
            ("scope", ARM_SCOPE),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    assert_entra_error(status, &body, 400, 900144);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("client_assertion_type")
    );
}

#[tokio::test]
async fn aadsts90002_unknown_tenant() {
    let emu = start().await;
    let (status, body) = token_request(
        &emu,
        "11111111-2222-3333-4444-555555555555",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_entra_error(status, &body, 400, 90002);
    let (status, body) =
        token_request(&emu, "contoso.example", &[("grant_type", "client_credentials")]).await;
    assert_entra_error(status, &body, 400, 90002);
}

#[tokio::test]
async fn aadsts700022_multi_resource_scope() {
    let emu = start().await;
    let sp = emu.default_principal();
    let (status, body) = token_request(
        &emu,
        &sp.tenant_id.to_string(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &sp.client_id.to_string()),
            ("client_secret", &sp.client_secret),
            (
                "scope",
                "https://management.azure.com/.default https://storage.azure.com/.default",
            ),
        ],
    )
    .await;
    assert_entra_error(status, &body, 400, 700022);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn aadsts700222_entra_tokens_are_not_assertions() {
    let emu = start().await;
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "s").await;
    let own = arm_token(&emu).await;
    let (status, body) = exchange(&emu, &identity, &own).await;
    assert_entra_error(status, &body, 401, 700222);
}

#[tokio::test]
async fn jwks_cache_is_used_refetched_on_unknown_kid_and_flushable() {
    let config = EmulatorConfig {
        jwks_cache_ttl: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    };
    let emu = idbind_emulator::start(config).await.unwrap();
    let issuer = TestIssuer::start().await;
    let identity = identity_with_fic(&emu, &issuer, "s").await;
    assert_eq!(
        exchange(&emu, &identity, &issuer.assertion("s")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        exchange(&emu, &identity, &issuer.assertion("s")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        emu.issuer_fetches(),
        1,
        "the second exchange is served from the cache"
    );
    // Rotation: a new key appears; its kid is unknown to the cache, so the JWKS is refetched.
    let k2 = TestKey::generate("k2");
    issuer.set_keys(vec![issuer.key(), k2.clone()]);
    assert_eq!(
        exchange(&emu, &identity, &issuer.assertion_with(&k2, &json!({"sub": "s"})))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(emu.issuer_fetches(), 2);
    // A removed key stays trusted until the cache expires or is flushed (like Entra).
    let k1 = issuer.key();
    issuer.set_keys(vec![k2.clone()]);
    assert_eq!(
        exchange(&emu, &identity, &issuer.assertion_with(&k1, &json!({"sub": "s"})))
            .await
            .0,
        StatusCode::OK
    );
    let resp = http()
        .post(format!("{}/issuer-cache/flush", emu.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, body) = exchange(&emu, &identity, &issuer.assertion_with(&k1, &json!({"sub": "s"}))).await;
    assert_entra_error(status, &body, 401, 700027);
}

#[tokio::test]
async fn unreachable_issuer_is_an_oidc_endpoint_failure() {
    let emu = start().await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    // A loopback port with nothing listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/issuer", l.local_addr().unwrap())
    };
    emu.put_fic(&identity.resource_id, &FicInfo::new("dead", &dead, "s"))
        .unwrap();
    let fake = TestIssuer::start().await;
    let assertion = fake.assertion_with(&fake.key(), &json!({"iss": dead, "sub": "s"}));
    let (status, body) = exchange(&emu, &identity, &assertion).await;
    assert_entra_error(status, &body, 401, 50166);
}

#[tokio::test]
async fn discovery_documents_have_the_entra_shape() {
    let emu = start().await;
    let tenant = emu.default_tenant();
    let doc: Value = http()
        .get(emu.openid_configuration_url(&tenant))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], emu.issuer(&tenant));
    assert_eq!(doc["token_endpoint"], emu.token_url(&tenant));
    let jwks: Value = http()
        .get(emu.jwks_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], emu.signing_kid());
    let instance: Value = http()
        .get(format!(
            "{}/common/discovery/instance?api-version=1.1&authorization_endpoint={}/{tenant}/oauth2/v2.0/authorize",
            emu.base_url(),
            emu.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        instance["tenant_discovery_endpoint"],
        emu.openid_configuration_url(&tenant)
    );
    assert!(instance["metadata"][0]["aliases"].is_array());
    assert_eq!(emu.counters().get(Route::EntraOpenIdConfiguration, 200), 1);
    assert_eq!(emu.counters().get(Route::EntraJwks, 200), 1);
    assert_eq!(emu.counters().get(Route::EntraInstanceDiscovery, 200), 1);
}
