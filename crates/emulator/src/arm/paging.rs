//! `$top`/`$skiptoken` paging with `nextLink`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::Request;
use super::errors::ArmError;
use crate::server::Shared;

/// One page of `items` (already sorted by `key`), with a `nextLink` when more remain.
pub(crate) fn page(shared: &Shared, req: &Request, items: Vec<(String, Value)>) -> Result<Value, ArmError> {
    let top = match req.query.get("$top") {
        None => None,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!(
                        "The value '{t}' of query parameter '$top' is invalid; it must be an integer of at least 1."
                    ),
                ));
            }
        },
    };
    let after = match req.query.get("$skiptoken") {
        None => None,
        Some(tok) => Some(
            B64.decode(tok)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ArmError::bad_request(
                        "InvalidParameter",
                        format!("The '$skiptoken' value '{tok}' is invalid."),
                    )
                })?,
        ),
    };
    let rest: Vec<(String, Value)> = items
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    let take = top.unwrap_or(rest.len());
    let more = rest.len() > take;
    let page: Vec<(String, Value)> = rest.into_iter().take(take).collect();
    let mut out = json!({"value": page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()});
    if more && let Some((last, _)) = page.last() {
        out["nextLink"] = json!(format!(
            "{}{}?api-version={}&$top={}&$skiptoken={}",
            shared.base_url(),
            req.raw_path,
            req.api_version,
            take,
            B64.encode(last)
        ));
    }
    Ok(out)
}
