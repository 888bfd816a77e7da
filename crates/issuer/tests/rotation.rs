//! A full key rotation: at every step, every assertion minted verifies against the JWKS published
//! at that step, and another cluster bound to the same identity is never disturbed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use idbind_issuer::{
    AssertionClaims, AssertionPayload, ClusterName, Jwks, KeySet, MemoryStore, MintedAssertion, Publisher,
    RotationPhase, RotationPolicy, RotationStep, mint_assertion,
};
use idbind_model::IssuerBaseUrl;
use jiff::Timestamp;

/// Verifies `assertion` the way Entra does: kid from the header, key from the JWKS, RS256.
fn verify(jwks: &Jwks, assertion: &MintedAssertion, issuer: &str, now: Timestamp) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(&assertion.token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_components(&jwk.n, &jwk.e).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[idbind_model::ENTRA_FIC_AUDIENCE]);
    validation.validate_exp = false; // time is simulated; checked below against `now`
    let data = jsonwebtoken::decode::<AssertionPayload>(&assertion.token, &key, &validation)
        .map_err(|e| e.to_string())?;
    if !(data.claims.nbf <= now.as_second() && now.as_second() < data.claims.exp) {
        return Err("outside its validity window".into());
    }
    Ok(())
}

#[tokio::test]
async fn every_assertion_verifies_through_a_full_rotation() {
    let store = Arc::new(MemoryStore::new());
    let publisher = Publisher::new(store, IssuerBaseUrl::parse("https://issuer.example.com").unwrap());
    let (tenant, client) = support::ids();
    let issuer = publisher.issuer(&tenant, &client);
    let claims = AssertionClaims::new(&issuer, "/subscriptions/s/resourcegroups/rg/providers/x/y/z");
    let policy = RotationPolicy::default();

    // A second cluster bound to the same identity.
    let other = ClusterName::parse("west").unwrap();
    let other_keys = vec![support::fake_jwk("west.k")];
    publisher
        .publish(&tenant, &client, &other, &other_keys)
        .await
        .unwrap();

    let mut now = Timestamp::from_second(1_700_000_000).unwrap();
    let mut keys = KeySet::generate(ClusterName::parse("east").unwrap(), now).unwrap();
    let mut minted: Vec<(RotationPhase, MintedAssertion)> = Vec::new();
    let steps = [
        None,
        Some(RotationStep::PublishNext),
        Some(RotationStep::Activate),
        Some(RotationStep::Retire),
    ];
    for step in steps {
        if let Some(step) = step {
            let (due, at) = keys.next_step_at(&policy);
            assert_eq!(due, step);
            assert_eq!(keys.next_step_due(at, &policy), Some(step));
            now = at;
            keys.apply(step, now).unwrap();
            // The controller persists the key set in a Secret and may restart between steps.
            keys = KeySet::from_secret_data(&keys.to_secret_data()).unwrap();
        }
        publisher
            .publish(&tenant, &client, keys.cluster(), &keys.published_keys())
            .await
            .unwrap();
        let jwks = publisher.read_jwks(&tenant, &client).await.unwrap().unwrap();
        assert!(
            jwks.has_exactly(&other, &other_keys),
            "the other cluster's keys are untouched"
        );
        assert_eq!(jwks.keys.len(), keys.published_keys().len() + 1);

        let assertion = mint_assertion(keys.signing_key(), &claims, now).unwrap();
        verify(&jwks, &assertion, &issuer, now).unwrap_or_else(|e| panic!("phase {}: {e}", keys.phase()));
        // The assertion minted at the previous step, checked at its own time against this step's
        // JWKS, still verifies unless its key has just been retired.
        if let Some((phase, earlier)) = minted.last() {
            let result = verify(&jwks, earlier, &issuer, earlier.issued_at);
            let key_retired = !keys.published_keys().iter().any(|k| k.kid == earlier.kid);
            assert_eq!(
                result.is_ok(),
                !key_retired,
                "{phase} assertion at {}: {result:?}",
                keys.phase()
            );
        }
        minted.push((keys.phase(), assertion));
    }
    assert_eq!(keys.phase(), RotationPhase::Stable);
    let kids: Vec<&str> = minted.iter().map(|(_, a)| a.kid.as_str()).collect();
    assert_eq!(kids[0], kids[1], "the next key does not sign before activation");
    assert_ne!(kids[1], kids[2], "activation switches the signing key");
    assert_eq!(kids[2], kids[3]);

    // After retirement the first key is gone from the JWKS: its assertions no longer verify.
    let jwks = publisher.read_jwks(&tenant, &client).await.unwrap().unwrap();
    assert!(verify(&jwks, &minted[0].1, &issuer, minted[0].1.issued_at).is_err());
}
