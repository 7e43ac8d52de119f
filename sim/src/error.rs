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
    /// 410 Expired (resourceVersion or continue token older than the history window).
    #[error("{0}")]
    Expired(String),
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

impl SimError {
    /// The HTTP status code a real apiserver would answer with.
    pub fn code(&self) -> u16 {
        match self {
            SimError::NotFound { .. } | SimError::UnknownResource(_) => 404,
            SimError::AlreadyExists { .. } | SimError::Conflict { .. } => 409,
            SimError::BadRequest(_) => 400,
            SimError::Invalid { .. } => 422,
            SimError::Expired(_) => 410,
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
            SimError::Conflict { .. } => "Conflict",
            SimError::BadRequest(_) => "BadRequest",
            SimError::Invalid { .. } => "Invalid",
            SimError::Expired(_) => "Expired",
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
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SimError::Io {
            context: context.into(),
            source,
        }
    }
}
