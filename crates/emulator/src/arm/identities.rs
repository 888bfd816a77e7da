//! User-assigned identities: GET, PUT (201 create / 200 update), DELETE (200 / 204), list.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::Response;
use serde_json::{Value, json};

use super::errors::ArmError;
use super::{Request, json, json_body, paging};
use crate::server::Shared;
use crate::state::{Identity, identity_key};

pub(crate) fn identity_json(i: &Identity) -> Value {
    json!({
        "id": i.resource_id(),
        "name": i.name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        "location": i.location,
        "tags": i.tags,
        "systemData": {
            "createdBy": i.created_by,
            "createdByType": "Application",
            "createdAt": i.created_at,
            "lastModifiedBy": i.created_by,
            "lastModifiedByType": "Application",
            "lastModifiedAt": i.last_modified_at,
        },
        "properties": {
            "tenantId": i.tenant_id.to_string(),
            "principalId": i.principal_id.to_string(),
            "clientId": i.client_id.to_string(),
            "isolationScope": "None",
        },
    })
}

fn key_of(req: &Request) -> String {
    identity_key(
        &req.path.subscription,
        req.path.resource_group.as_deref().unwrap_or_default(),
        req.path.identity.as_deref().unwrap_or_default(),
    )
}

pub(crate) fn not_found(req: &Request) -> ArmError {
    ArmError::new(
        404,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{}' under resource group '{}' was not found. \
             For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            req.path.identity.as_deref().unwrap_or_default(),
            req.path.resource_group.as_deref().unwrap_or_default()
        ),
    )
}

pub(crate) fn get(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let state = shared.state.read();
    let identity = state.identity(&key_of(req)).ok_or_else(|| not_found(req))?;
    Ok(json(200, identity_json(identity)))
}

fn check_name(name: &str) -> Result<(), ArmError> {
    let ok = (3..=128).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name '{name}' is invalid. The name can contain only letters, numbers, underscores and hyphens, \
                 must start with a letter or number, and must be 3 to 128 characters long."
            ),
        ))
    }
}

pub(crate) fn put(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let name = req.path.identity.as_deref().unwrap_or_default();
    check_name(name)?;
    let body = json_body(&req.body)?;
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            ArmError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            )
        })?;
    let tags: BTreeMap<String, String> = match body.get("tags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(t) => serde_json::from_value(t.clone()).map_err(|_| {
            ArmError::bad_request(
                "InvalidRequestContent",
                "'tags' must be an object of string values.",
            )
        })?,
    };
    let now = crate::clock::rfc3339(shared.now());
    let actor = req.caller.app_id.clone();
    let (created, out) = shared.mutate(|s| {
        let (created, identity) = s.put_identity(
            &req.path.subscription,
            req.path.resource_group.as_deref().unwrap_or_default(),
            name,
            location,
            tags,
            req.caller.tenant,
            &actor,
            &now,
        );
        (created, identity_json(identity))
    })?;
    tracing::info!(id = %out["id"], created, "identity written");
    Ok(json(if created { 201 } else { 200 }, out))
}

pub(crate) fn delete(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let key = key_of(req);
    let existed = shared.mutate(|s| s.delete_identity(&key))?;
    Ok(json(if existed { 200 } else { 204 }, Value::Null))
}

pub(crate) fn list(shared: &Arc<Shared>, req: &Request) -> Result<Response, ArmError> {
    let items: Vec<(String, Value)> = {
        let state = shared.state.read();
        let sub = req.path.subscription.to_ascii_lowercase();
        let rg = req.path.resource_group.as_ref().map(|r| r.to_ascii_lowercase());
        state
            .identities
            .iter()
            .filter(|(_, i)| i.subscription.to_ascii_lowercase() == sub)
            .filter(|(_, i)| {
                rg.as_ref()
                    .is_none_or(|rg| &i.resource_group.to_ascii_lowercase() == rg)
            })
            .map(|(k, i)| (k.clone(), identity_json(i)))
            .collect()
    };
    Ok(json(200, paging::page(shared, req, items)?))
}
