//! The crate's error type, mapped one-to-one onto Kubernetes `metav1.Status` codes and reasons.

/// Every failure the simulator reports, to Rust callers and (as a `Status`) over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// 404 NotFound for a named object.
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    /// 404 for a path or resource the server does not serve.
    #[error("the server could not find the requested resource")]
    UnknownResource(String),
    /// 409 AlreadyExists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    /// 409 Conflict (stale resourceVersion).
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    /// 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// 422 Invalid.
    #[error("{kind} \"{name}\" is invalid: {message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
    },
    /// 422 Invalid with one `details.causes` entry per offending field.
    #[error("{kind} \"{name}\" is invalid: {}", join_causes(causes))]
    InvalidFields {
        kind: String,
        name: String,
        causes: Vec<FieldCause>,
    },
    /// 409 Conflict of a server-side apply with fields other managers own (`crate::apply`):
    /// each cause is (`conflict with "manager"`, the field path).
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<(String, String)>,
    },
    /// 403 Forbidden: a create in a namespace being deleted (the NamespaceLifecycle admission
    /// plugin's answer, with a `NamespaceTerminating` cause on `metadata.namespace`).
    #[error("{resource} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated")]
    NamespaceTerminating {
        resource: String,
        name: String,
        namespace: String,
    },
    /// 413 RequestEntityTooLarge for something other than the body's byte count (e.g. too many patch operations).
    #[error("Request entity too large: {0}")]
    EntityTooLarge(String),
    /// 408 Timeout: the request body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 410 Expired (resourceVersion or continue token older than the history window).
    #[error("{0}")]
    Expired(String),
    /// 504 Timeout: a read asked for a resourceVersion the store did not reach within the
    /// freshness wait (apiserver `storage.NewTooLargeResourceVersionError`; client-go's reflector
    /// looks for the `ResourceVersionTooLarge` cause).
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
    /// 415 UnsupportedMediaType.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 405 MethodNotAllowed.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 413 RequestEntityTooLarge.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 500 InternalError.
    #[error("internal error: {0}")]
    Internal(String),
    /// A scenario or fault-plan file could not be read or parsed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// I/O failure (binding a socket, writing a kubeconfig).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// One field a validation failed on, as in `metav1.StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueTooLong`, …
    pub reason: &'static str,
    /// The JSON path, e.g. `metadata.labels`.
    pub field: String,
    /// Without the field, e.g. `Invalid value: "a..b": …`.
    pub message: String,
}

fn join_causes(causes: &[FieldCause]) -> String {
    let each: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    match each.len() {
        1 => each.concat(),
        _ => format!("[{}]", each.join(", ")),
    }
}

impl SimError {
    /// The HTTP status code a real apiserver would answer with.
    pub fn code(&self) -> u16 {
        match self {
            SimError::NotFound { .. } | SimError::UnknownResource(_) => 404,
            SimError::AlreadyExists { .. }
            | SimError::Conflict { .. }
            | SimError::ApplyConflict { .. } => 409,
            SimError::BadRequest(_) => 400,
            SimError::NamespaceTerminating { .. } => 403,
            SimError::Invalid { .. } | SimError::InvalidFields { .. } => 422,
            SimError::EntityTooLarge(_) => 413,
            SimError::RequestTimeout(_) => 408,
            SimError::Expired(_) => 410,
            SimError::TooLargeResourceVersion { .. } => 504,
            SimError::UnsupportedMediaType(_) => 415,
            SimError::MethodNotAllowed => 405,
            SimError::TooLarge(_) => 413,
            SimError::Internal(_) | SimError::File { .. } | SimError::Io { .. } => 500,
        }
    }

    /// The `metav1.StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            SimError::NotFound { .. } | SimError::UnknownResource(_) => "NotFound",
            SimError::AlreadyExists { .. } => "AlreadyExists",
            SimError::Conflict { .. } | SimError::ApplyConflict { .. } => "Conflict",
            SimError::BadRequest(_) => "BadRequest",
            SimError::NamespaceTerminating { .. } => "Forbidden",
            SimError::Invalid { .. } | SimError::InvalidFields { .. } => "Invalid",
            SimError::EntityTooLarge(_) => "RequestEntityTooLarge",
            SimError::RequestTimeout(_) => "Timeout",
            SimError::Expired(_) => "Expired",
            SimError::TooLargeResourceVersion { .. } => "Timeout",
            SimError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            SimError::MethodNotAllowed => "MethodNotAllowed",
            SimError::TooLarge(_) => "RequestEntityTooLarge",
            SimError::Internal(_) | SimError::File { .. } | SimError::Io { .. } => "InternalError",
        }
    }

    /// This error as a `metav1.Status` JSON object.
    pub fn to_status(&self) -> serde_json::Value {
        let mut status = crate::status::failure(self.code(), self.reason(), &self.to_string());
        let details = match self {
            SimError::NotFound { resource, name }
            | SimError::AlreadyExists { resource, name }
            | SimError::Conflict { resource, name, .. } => {
                Some(serde_json::json!({"name": name, "kind": resource}))
            }
            SimError::Invalid { kind, name, .. } => {
                Some(serde_json::json!({"name": name, "kind": kind}))
            }
            SimError::InvalidFields { kind, name, causes } => {
                let causes: Vec<_> = causes
                    .iter()
                    .map(|c| serde_json::json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(serde_json::json!({"name": name, "kind": kind, "causes": causes}))
            }
            SimError::ApplyConflict { causes, .. } => {
                let causes: Vec<_> = causes
                    .iter()
                    .map(|(m, f)| serde_json::json!({"reason": "FieldManagerConflict", "message": m, "field": f}))
                    .collect();
                Some(serde_json::json!({"causes": causes}))
            }
            SimError::NamespaceTerminating {
                resource,
                name,
                namespace,
            } => Some(serde_json::json!({
                "name": name,
                "kind": resource,
                "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }],
            })),
            SimError::TooLargeResourceVersion { .. } => Some(serde_json::json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }

    /// The seconds a client should wait before retrying (`details.retryAfterSeconds`, sent as
    /// `Retry-After` too, as the apiserver's error writer does), if the error suggests a retry.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            SimError::TooLargeResourceVersion { .. } => Some(1),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SimError::Io {
            context: context.into(),
            source,
        }
    }
}
