//! API errors and their `Status` bodies, worded like kube-apiserver's.

use serde_json::{Value, json};

/// One cause of an `Invalid` error (a field path and what is wrong with it).
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: String,
    /// Human-readable message, without the field path.
    pub message: String,
    /// The field path, e.g. `spec.allowedSubjects[0].namespace`.
    pub field: String,
}

impl Cause {
    /// A cause with the given reason, field and message.
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// `field: Required value`.
    pub fn required(field: impl Into<String>) -> Self {
        Self::new("FieldValueRequired", field, "Required value")
    }

    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {}: {detail}", show_value(value)),
        )
    }

    /// `field: Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }

    /// The cause as it reads in a Status message.
    pub fn render(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Renders a value the way Go's `%#v`-ish field errors do: strings quoted, others as JSON.
pub fn show_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

/// An error answered with a `Status` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `reason` of the Status.
    pub reason: String,
    /// `message` of the Status.
    pub message: String,
    /// `details` of the Status, if any.
    pub details: Option<Value>,
}

/// The resource an error is about: group and plural resource (as in `details`).
#[derive(Clone, Copy, Debug)]
pub struct Gr<'a> {
    /// API group ("" for core).
    pub group: &'a str,
    /// Plural resource name.
    pub resource: &'a str,
}

impl Gr<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = json!({ "kind": self.resource });
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    fn new(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `<resource> "<name>" not found`.
    pub fn not_found(gr: Gr<'_>, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} {name:?} not found", gr.qualified()))
            .with_details(gr.details(name))
    }

    /// 404 for a path no resource serves.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(gr: Gr<'_>, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", gr.qualified()),
        )
        .with_details(gr.details(name))
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(gr: Gr<'_>, name: &str, detail: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {detail}",
                gr.qualified()
            ),
        )
        .with_details(gr.details(name))
    }

    /// The standard stale-update conflict.
    pub fn stale(gr: Gr<'_>, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with field causes; `kind` is the object's kind.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let list = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let mut details = json!({
            "name": name,
            "kind": kind,
            "causes": causes
                .into_iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self::new(422, "Invalid", format!("{qualified} {name:?} is invalid: {list}")).with_details(details)
    }

    /// 410 Expired (a resourceVersion older than the retained history).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 403 Forbidden with a message.
    pub fn forbidden(gr: Gr<'_>, name: &str, message: impl Into<String>) -> Self {
        let subject = if name.is_empty() {
            gr.qualified()
        } else {
            format!("{} {name:?}", gr.qualified())
        };
        Self::new(
            403,
            "Forbidden",
            format!("{subject} is forbidden: {}", message.into()),
        )
        .with_details(gr.details(name))
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
        .with_details(json!({ "causes": [{ "reason": "UnexpectedHeader", "message": content_type, "field": "Content-Type" }] }))
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// A Status with an arbitrary code and reason (admission denials carry the webhook's).
    pub fn custom(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(code, reason, message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty()
            && let Some(map) = status.as_object_mut()
        {
            map.remove("reason");
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_lists_causes_like_the_apiserver() {
        let err = ApiError::invalid(
            "idbind.dev",
            "IdentityBinding",
            "b",
            vec![Cause::required("spec.managedIdentity"), Cause::required("spec.x")],
        );
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "IdentityBinding.idbind.dev \"b\" is invalid: [spec.managedIdentity: Required value, spec.x: Required value]"
        );
        let status = err.to_status();
        assert_eq!(status["details"]["causes"][0]["field"], "spec.managedIdentity");
        assert_eq!(status["details"]["group"], "idbind.dev");
    }

    #[test]
    fn not_found_names_the_qualified_resource() {
        let err = ApiError::not_found(
            Gr {
                group: "",
                resource: "configmaps",
            },
            "x",
        );
        assert_eq!(err.message, "configmaps \"x\" not found");
        assert_eq!(
            err.to_status()["details"],
            json!({"name": "x", "kind": "configmaps"})
        );
    }
}
