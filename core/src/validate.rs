//! Validation of Service annotations into a [`GrantSpec`]; every value is checked before use.

use crate::grant::GrantSpec;
use crate::model::ServiceFacts;

/// The annotation prefix podgrant reads.
pub const ANNOTATION_PREFIX: &str = "podgrant.io/";

/// The operator's policy: which privileges may be granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allowed_privileges: std::collections::BTreeSet<String>,
}

impl Default for Policy {
    fn default() -> Self {
        todo!("default privilege allowlist")
    }
}

/// Why a Service's annotations were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("annotation {key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// `Ok(None)` when the Service has not opted in.
pub fn grant_spec(
    service: &ServiceFacts,
    policy: &Policy,
) -> Result<Option<GrantSpec>, AnnotationError> {
    let _ = (service, policy);
    todo!("validate annotations")
}
