//! Request handling: authentication, routing, authorization and the API verbs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::{Value, json};

use super::ServerState;
use super::access::ClusterObjects;
use super::path::{ResourcePath, Route, parse};
use super::watch::{self, WatchRendering};
use crate::admission::AdmissionAttributes;
use crate::auth::{NonResourceAttributes, RequestAttributes, ResourceAttributes, UserInfo};
use crate::cluster::{DeleteOptions, ListOptions, Propagation, Sub, WatchOptions, WriteOptions};
use crate::patch::PatchType;
use crate::registry::{Behaviour, GroupResource, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::table::{Rendering, partial_metadata, table};
use crate::{discovery, openapi};

const MAX_BODY: usize = 3 * 1024 * 1024;
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// The query string as pairs.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    json_response_typed(code, body, "application/json")
}

fn json_response_typed(code: u16, body: &Value, content_type: &str) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", content_type)
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.to_status())
}

/// The single handler of every request.
pub async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query =
        Query(serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).unwrap_or_default());
    let headers = request.headers().clone();
    let body = request.into_body();
    let response = match dispatch(&state, &method, &path, &query, &headers, body).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        ApiError::custom(
            413,
            "RequestEntityTooLarge",
            format!("request body too large or unreadable: {e}"),
        )
    })
}

fn parse_value(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if content_type.starts_with(crate::protobuf::MEDIA_TYPE) {
        return crate::protobuf::decode(bytes).map_err(|e| {
            ApiError::unsupported_media_type(content_type, &["application/json", "application/yaml"])
                .with_message(e)
        });
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            if content_type.contains("yaml") || content_type.is_empty() {
                serde_saphyr::from_str::<Value>(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
            } else {
                Err(ApiError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {json_err}"
                )))
            }
        }
    }
}

async fn dispatch(
    state: &Arc<ServerState>,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let route = parse(path);
    let access = &state.access;
    match route {
        Route::Health => return Ok(Response::new(Body::from("ok"))),
        Route::OpenIdConfiguration => return Ok(json_response(200, &access.issuer().openid_configuration())),
        Route::Jwks => {
            return Ok(json_response_typed(
                200,
                &access.issuer().jwks(),
                crate::auth::JWKS_CONTENT_TYPE,
            ));
        }
        _ => {}
    }
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = access.authenticate(&state.cluster, authorization)?;
    let user = access.impersonate(&state.cluster, user, headers)?;
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Route::Resource(rp) = route {
        return resource(state, &user, method, &rp, query, accept, content_type, body).await;
    }
    let verb = method.as_str().to_lowercase();
    access.authorize(
        &state.cluster,
        &user,
        &RequestAttributes::NonResource(NonResourceAttributes::new(verb, path)),
    )?;
    if method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let registry = state.cluster.registry();
    let aggregated = discovery::wants_aggregated(accept);
    let doc = match route {
        Route::Root => {
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]})
        }
        Route::Version => discovery::version(),
        Route::CoreVersions if aggregated => {
            return Ok(json_response_typed(
                200,
                &discovery::aggregated_core(&registry),
                discovery::AGGREGATED_V2,
            ));
        }
        Route::CoreVersions => discovery::api_versions(&state.settings.server_address),
        Route::Groups if aggregated => {
            return Ok(json_response_typed(
                200,
                &discovery::aggregated_apis(&registry),
                discovery::AGGREGATED_V2,
            ));
        }
        Route::Groups => discovery::api_group_list(&registry),
        Route::Group(group) => discovery::api_group(&registry, &group).ok_or_else(ApiError::no_route)?,
        Route::Resources { group, version } => {
            discovery::api_resource_list(&registry, &group, &version).ok_or_else(ApiError::no_route)?
        }
        Route::OpenApiIndex => openapi::index(&registry),
        Route::OpenApiDocument { group, version } => {
            openapi::group_version_document(&registry, &group, &version).ok_or_else(ApiError::no_route)?
        }
        _ => return Err(ApiError::no_route()),
    };
    Ok(json_response(200, &doc))
}

fn write_options(query: &Query) -> Result<WriteOptions, ApiError> {
    let strict = match query.get("fieldValidation") {
        None | Some("" | "Ignore" | "Warn") => false,
        Some("Strict") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            )));
        }
    };
    Ok(WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: query.get("fieldManager").map(str::to_string),
        strict,
        force: query.flag("force"),
    })
}

fn list_options(query: &Query) -> Result<ListOptions, ApiError> {
    Ok(ListOptions {
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?,
        limit: query.get("limit").and_then(|l| l.parse().ok()),
        continue_token: query.get("continue").map(str::to_string),
        resource_version: query.get("resourceVersion").map(str::to_string),
        resource_version_match: query.get("resourceVersionMatch").map(str::to_string),
    })
}

fn delete_options(query: &Query, body: &Value) -> Result<DeleteOptions, ApiError> {
    let policy = body["propagationPolicy"]
        .as_str()
        .or_else(|| query.get("propagationPolicy"));
    let mut propagation = match policy {
        None | Some("") => None,
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy must be one of Orphan, Background or Foreground, got {other:?}"
            )));
        }
    };
    if body["orphanDependents"].as_bool() == Some(true) || query.flag("orphanDependents") {
        propagation = Some(Propagation::Orphan);
    }
    let dry_run = body["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"))
        || query.get("dryRun").is_some_and(|d| d == "All");
    Ok(DeleteOptions {
        dry_run,
        propagation,
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    })
}

fn render_object(
    rt: &ResourceType,
    object: Value,
    code: u16,
    rendering: Rendering,
    query: &Query,
) -> Response {
    match rendering {
        Rendering::Object => json_response(code, &object),
        Rendering::Metadata => json_response(code, &partial_metadata(&object)),
        Rendering::Table => {
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            json_response(
                code,
                &table(
                    rt,
                    &[object],
                    &rv,
                    query.get("includeObject").unwrap_or("Metadata"),
                    None,
                ),
            )
        }
    }
}

fn render_list(rt: &ResourceType, list: &Value, rendering: Rendering, query: &Query) -> Response {
    match rendering {
        Rendering::Object => json_response(200, list),
        Rendering::Metadata => {
            let items: Vec<Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(partial_metadata)
                .collect();
            json_response(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list["metadata"], "items": items}),
            )
        }
        Rendering::Table => {
            let rv = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let items = list["items"].as_array().cloned().unwrap_or_default();
            json_response(
                200,
                &table(
                    rt,
                    &items,
                    &rv,
                    query.get("includeObject").unwrap_or("Metadata"),
                    Some(&list["metadata"]),
                ),
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    state: &Arc<ServerState>,
    user: &UserInfo,
    method: &Method,
    rp: &ResourcePath,
    query: &Query,
    accept: &str,
    content_type: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let cluster = &state.cluster;
    let rt = cluster
        .find(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(ApiError::no_route)?;
    let scope_ok = match (rt.namespaced, rp.namespace.is_some()) {
        (true, true) | (false, false) => true,
        (true, false) => rp.name.is_none() && *method == Method::GET,
        (false, true) => false,
    };
    if !scope_ok {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &rp.subresource
        && !rt.has_subresource(sub)
    {
        return Err(ApiError::no_route());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let watching = query.flag("watch");
    let verb = match (method.as_str(), rp.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    let attributes = ResourceAttributes {
        verb: verb.to_string(),
        api_group: rp.group.clone(),
        resource: rp.resource.clone(),
        subresource: rp.subresource.clone().unwrap_or_default(),
        name: name.clone(),
        namespace: ns.clone(),
    };
    state
        .access
        .authorize(cluster, user, &RequestAttributes::Resource(attributes))?;
    let rendering = Rendering::from_accept(accept);
    if rt.behaviour == Behaviour::CreateOnly {
        if verb != "create" {
            return Err(ApiError::method_not_allowed());
        }
        let body = parse_value(&read_body(body).await?, content_type)?;
        return review(state, user, &rt, &ns, body);
    }
    let sub = match rp.subresource.as_deref() {
        None => Sub::Main,
        Some("status") => Sub::Status,
        Some("token") => {
            if verb != "create" {
                return Err(ApiError::method_not_allowed());
            }
            let body = parse_value(&read_body(body).await?, content_type)?;
            return token_request(state, &ns, &name, body);
        }
        Some(_) => return Err(ApiError::method_not_allowed()),
    };
    match verb {
        "get" => Ok(render_object(
            &rt,
            cluster.get(&rt, &ns, &name)?,
            200,
            rendering,
            query,
        )),
        "list" => {
            let list = cluster.list(&rt, rp.namespace.as_deref(), &list_options(query)?)?;
            Ok(render_list(&rt, &list, rendering, query))
        }
        "watch" => {
            let list = list_options(query)?;
            let opts = WatchOptions {
                labels: list.labels,
                fields: list.fields,
                resource_version: list.resource_version,
                send_initial_events: query.flag("sendInitialEvents"),
                bookmarks: query.flag("allowWatchBookmarks"),
            };
            let start = cluster.watch(&rt, rp.namespace.as_deref(), &opts)?;
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_WATCH_TIMEOUT);
            let how = WatchRendering {
                rendering,
                include_object: query.get("includeObject").unwrap_or("Metadata").to_string(),
            };
            Ok(watch::respond(
                start,
                how,
                timeout,
                opts.bookmarks,
                state.settings.bookmark_interval,
                state.watch_token(),
            ))
        }
        "create" => {
            if rp.name.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let body = parse_value(&read_body(body).await?, content_type)?;
            let (body, warnings) = admit_create(state, user, &rt, &ns, body, query).await?;
            let written = cluster.create(&rt, &ns, body, &write_options(query)?)?;
            let mut response = render_object(&rt, written.object, written.code, rendering, query);
            for warning in warnings {
                // Warning headers as kube-apiserver sends them (RFC 7234 code 299).
                let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
                if let Ok(value) = http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
                    response.headers_mut().append(http::header::WARNING, value);
                }
            }
            Ok(response)
        }
        "update" => {
            let body = parse_value(&read_body(body).await?, content_type)?;
            let written = cluster.update(&rt, &ns, &name, body, sub, &write_options(query)?)?;
            Ok(render_object(&rt, written.object, written.code, rendering, query))
        }
        "patch" => {
            let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
                ApiError::unsupported_media_type(
                    content_type,
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/strategic-merge-patch+json",
                        "application/apply-patch+yaml",
                    ],
                )
            })?;
            let body = parse_value(
                &read_body(body).await?,
                if patch_type == PatchType::Apply {
                    "yaml"
                } else {
                    content_type
                },
            )?;
            let written = cluster.patch(&rt, &ns, &name, patch_type, &body, sub, &write_options(query)?)?;
            Ok(render_object(&rt, written.object, written.code, rendering, query))
        }
        "delete" => {
            let body = parse_value(&read_body(body).await?, content_type)?;
            let written = cluster.delete(&rt, &ns, &name, &delete_options(query, &body)?)?;
            Ok(render_object(&rt, written.object, written.code, rendering, query))
        }
        "deletecollection" => {
            let body = parse_value(&read_body(body).await?, content_type)?;
            let list = cluster.delete_collection(
                &rt,
                rp.namespace.as_deref(),
                &list_options(query)?,
                &delete_options(query, &body)?,
            )?;
            Ok(render_list(&rt, &list, rendering, query))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Mutating admission of creates: pods go through the MutatingWebhookConfigurations, whose
/// patches are applied (or whose denial is the answer) before the object is stored. Returns the
/// object and the webhooks' warnings (sent back as `Warning` headers).
async fn admit_create(
    state: &Arc<ServerState>,
    user: &UserInfo,
    rt: &ResourceType,
    ns: &str,
    mut body: Value,
    query: &Query,
) -> Result<(Value, Vec<String>), ApiError> {
    if !rt.group.is_empty() || rt.plural != "pods" || !body.is_object() {
        return Ok((body, Vec::new()));
    }
    let cluster = &state.cluster;
    let configurations: Vec<MutatingWebhookConfiguration> = cluster
        .stored(&GroupResource::new(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ))
        .into_iter()
        .filter_map(|c| serde_json::from_value(c).ok())
        .collect();
    if configurations.is_empty() {
        return Ok((body, Vec::new()));
    }
    if body["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
        body["metadata"]["namespace"] = json!(ns);
    }
    let labels: Option<BTreeMap<String, String>> = cluster
        .stored_one(&GroupResource::new("", "namespaces"), "", ns)
        .and_then(|n| serde_json::from_value(n["metadata"]["labels"].clone()).ok());
    let mut attributes = AdmissionAttributes::pod_create(ns, body.clone(), user.clone());
    attributes.dry_run = query.get("dryRun").is_some_and(|d| d == "All");
    match state
        .admission
        .admit(&attributes, &configurations, labels.as_ref())
        .await
    {
        Ok(admitted) => Ok((admitted.object.unwrap_or(body), admitted.warnings)),
        Err(rejected) => {
            let status = serde_json::to_value(&rejected.status).unwrap_or_default();
            let mut err = ApiError::custom(rejected.code(), rejected.reason(), rejected.message());
            err.details = status.get("details").cloned();
            Err(err)
        }
    }
}

fn auth_error(err: &crate::auth::Error) -> ApiError {
    let status = serde_json::to_value(err.to_status()).unwrap_or_default();
    let mut api = ApiError::custom(
        err.code(),
        err.reason(),
        status["message"].as_str().unwrap_or_default(),
    );
    api.details = status.get("details").cloned();
    api
}

fn typed<T: serde::de::DeserializeOwned>(body: Value, kind: &str) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))
}

/// Creates of the virtual review kinds.
fn review(
    state: &Arc<ServerState>,
    user: &UserInfo,
    rt: &ResourceType,
    ns: &str,
    body: Value,
) -> Result<Response, ApiError> {
    let cluster = &state.cluster;
    let reviewer = state.access.reviewer(cluster);
    let out = match rt.kind.as_str() {
        "TokenReview" => {
            let review = typed(body, "TokenReview")?;
            to_json(
                &state
                    .access
                    .issuer()
                    .review_token(&review, &ClusterObjects(cluster))
                    .map_err(|e| auth_error(&e))?,
            )?
        }
        "SubjectAccessReview" => {
            let review = typed(body, "SubjectAccessReview")?;
            to_json(
                &reviewer
                    .subject_access_review(&review)
                    .map_err(|e| auth_error(&e))?,
            )?
        }
        "SelfSubjectAccessReview" => {
            let review = typed(body, "SelfSubjectAccessReview")?;
            to_json(
                &reviewer
                    .self_subject_access_review(user, &review)
                    .map_err(|e| auth_error(&e))?,
            )?
        }
        "LocalSubjectAccessReview" => {
            let review = typed(body, "LocalSubjectAccessReview")?;
            to_json(
                &reviewer
                    .local_subject_access_review(ns, &review)
                    .map_err(|e| auth_error(&e))?,
            )?
        }
        "SelfSubjectReview" => json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {
                "username": user.username,
                "uid": user.uid,
                "groups": user.groups,
                "extra": user.extra,
            }},
        }),
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(201, &out))
}

/// `POST serviceaccounts/<name>/token`.
fn token_request(state: &Arc<ServerState>, ns: &str, name: &str, body: Value) -> Result<Response, ApiError> {
    let cluster = &state.cluster;
    if cluster
        .stored_one(&GroupResource::new("", "serviceaccounts"), ns, name)
        .is_none()
    {
        return Err(ApiError::not_found(
            crate::status::Gr {
                group: "",
                resource: "serviceaccounts",
            },
            name,
        ));
    }
    let request = typed(body, "TokenRequest")?;
    let minted = state
        .access
        .issuer()
        .request_token(ns, name, &request, &ClusterObjects(cluster))
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(201, &to_json(&minted)?))
}
