//! Federated identity credentials: GET, PUT (201 create / 200 update), DELETE (200 / 204) and
//! list with paging, enforcing the documented rules. FIC writes hold their identity for the
//! configured time; a concurrent write to the same identity gets 409.

use std::sync::Arc;

use axum::response::Response;
use serde_json::{Value, json};

use super::errors::ArmError;
use super::{Request, json, json_body, paging};
use crate::server::Shared;
use crate::state::{Fic, Identity, check_fic_body, check_fic_name, identity_key, parent_not_found};

pub(crate) fn fic_json(identity: &Identity, f: &Fic) -> Value {
    json!({
        "id": format!("{}/federatedIdentityCredentials/{}", identity.resource_id(), f.name),
        "name": f.name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        "systemData": {
            "createdBy": f.created_by,
            "createdByType": "Application",
            "createdAt": f.created_at,
            "lastModifiedBy": f.created_by,
            "lastModifiedByType": "Application",
            "lastModifiedAt": f.last_modified_at,
        },
        "properties": {"issuer": f.issuer, "subject": f.subject, "audiences": f.audiences},
    })
}

fn key_of(req: &Request) -> String {
    identity_key(
        &req.path.subscription,
        req.path.resource_group.as_deref().unwrap_or_default(),
        req.path.identity.as_deref().unwrap_or_default(),
    )
}

fn fic_name(req: &Request) -> &str {
    req.path
        .fic
        .as_ref()
        .and_then(|f| f.as_deref())
        .unwrap_or_default()
}

pub(crate) fn get(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let key = key_of(req);
    let state = shared.state.read();
    let identity = state.identity(&key).ok_or_else(|| parent_not_found(&key))?;
    let name = fic_name(req);
    let fic = identity.fics.get(&name.to_ascii_lowercase()).ok_or_else(|| {
        ArmError::new(
            404,
            "NotFound",
            format!("The federated identity credential '{name}' was not found."),
        )
    })?;
    Ok(json(200, fic_json(identity, fic)))
}

pub(crate) async fn put(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let key = key_of(req);
    let name = fic_name(req);
    check_fic_name(name)?;
    let identity_id = {
        let state = shared.state.read();
        state
            .identity(&key)
            .ok_or_else(|| parent_not_found(&key))?
            .resource_id()
    };
    let input = check_fic_body(&json_body(&req.body)?)?;
    let hold = shared.hold_identity(&key, &identity_id)?;
    let now = crate::clock::rfc3339(shared.now());
    let max = shared.settings.max_fics_per_identity;
    let actor = req.caller.app_id.clone();
    let (created, body) = shared.mutate(|s| -> Result<(bool, Value), ArmError> {
        let created = s.put_fic(&key, name, input, max, &actor, &now)?;
        let identity = s.identity(&key).ok_or_else(|| parent_not_found(&key))?;
        let fic = identity
            .fics
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| ArmError::internal("FIC vanished"))?;
        Ok((created, fic_json(identity, fic)))
    })??;
    hold.complete().await;
    tracing::info!(id = %body["id"], created, "federated identity credential written");
    Ok(json(if created { 201 } else { 200 }, body))
}

pub(crate) async fn delete(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let key = key_of(req);
    let identity_id = {
        let state = shared.state.read();
        state
            .identity(&key)
            .ok_or_else(|| parent_not_found(&key))?
            .resource_id()
    };
    let hold = shared.hold_identity(&key, &identity_id)?;
    let name = fic_name(req);
    let existed = shared.mutate(|s| s.delete_fic(&key, name))??;
    if existed {
        hold.complete().await;
    }
    Ok(json(if existed { 200 } else { 204 }, Value::Null))
}

pub(crate) fn list(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let key = key_of(req);
    let items: Vec<(String, Value)> = {
        let state = shared.state.read();
        let identity = state.identity(&key).ok_or_else(|| parent_not_found(&key))?;
        identity
            .fics
            .iter()
            .map(|(k, f)| (k.clone(), fic_json(identity, f)))
            .collect()
    };
    Ok(json(200, paging::page(shared, req, items)?))
}
