//! Pure validation of names and labels as kube-apiserver does it (DNS-1123 names, qualified label keys and values).

use serde_json::Value;

use crate::error::{FieldCause, SimError};
use crate::resource::ResourceInfo;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;

const LABEL_FMT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_FMT: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_FMT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_FMT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn label_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with `s` as a DNS-1123 label (namespace and service names): at most 63 characters.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !label_shaped(s) {
        errs.push(LABEL_FMT.to_string());
    }
    errs
}

/// Problems with `s` as a DNS-1123 subdomain (most object names): dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !s.split('.').all(label_shaped) {
        errs.push(SUBDOMAIN_FMT.to_string());
    }
    errs
}

fn qualified_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
pub fn label_key(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            errs.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX {
            errs.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX} characters"
            ));
        }
        if !qualified_shaped(name) {
            errs.push(QUALIFIED_FMT.to_string());
        }
    }
    errs
}

/// Problems with a label value: empty, or at most 63 characters of the qualified-name charset.
pub fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > LABEL_VALUE_MAX {
        errs.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !v.is_empty() && !qualified_shaped(v) {
        errs.push(VALUE_FMT.to_string());
    }
    errs
}

/// Names of these kinds are DNS-1123 labels; every other kind's are subdomains.
fn name_is_label(info: &ResourceInfo) -> bool {
    matches!(info.builtin_kind(), "Namespace" | "Service")
}

/// Problems with an object name of this kind.
pub fn object_name(info: &ResourceInfo, name: &str) -> Vec<String> {
    if name_is_label(info) {
        dns1123_label(name)
    } else {
        dns1123_subdomain(name)
    }
}

/// Go's `%q`-ish quoting for messages (control characters escaped, at most 100 characters shown).
fn quote(s: &str) -> String {
    let shown: String = s.chars().take(100).collect();
    serde_json::to_string(&shown).unwrap_or_default()
}

fn invalid(field: &str, value: &str, errs: Vec<String>) -> Vec<FieldCause> {
    errs.into_iter()
        .map(|e| FieldCause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {}: {e}", quote(value)),
        })
        .collect()
}

/// Validate the name (when `check_name`; a `generateName` stands for the name it will become)
/// and the labels of an object about to be written: 422 `Invalid` naming every bad field.
pub fn object_meta(info: &ResourceInfo, obj: &Value, check_name: bool) -> Result<(), SimError> {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut causes = Vec::new();
    if check_name {
        if !name.is_empty() {
            causes.extend(invalid("metadata.name", name, object_name(info, name)));
        } else if let Some(g) = meta
            .and_then(|m| m.get("generateName"))
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty())
        {
            // The generated suffix is five lowercase alphanumerics.
            let errs = object_name(info, &format!("{g}xxxxx"));
            causes.extend(invalid("metadata.generateName", g, errs));
        }
    }
    if let Some(labels) = meta
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            causes.extend(invalid("metadata.labels", k, label_key(k)));
            if let Some(v) = v.as_str() {
                causes.extend(invalid("metadata.labels", v, label_value(v)));
            }
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(SimError::InvalidFields {
        kind: info.kind.to_string(),
        name: name.to_string(),
        causes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1123_subdomain(".a").is_empty());
        assert!(!dns1123_subdomain("a.-b").is_empty());
        assert!(!dns1123_subdomain("A").is_empty());
        assert!(!dns1123_subdomain("").is_empty());
        assert!(dns1123_subdomain(&"a".repeat(253)).is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(dns1123_label(&"a".repeat(63)).is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(!dns1123_label("a.b").is_empty());
    }

    #[test]
    fn labels() {
        assert!(label_key("app").is_empty());
        assert!(label_key("example.com/App_1.x").is_empty());
        assert!(!label_key("/app").is_empty());
        assert!(!label_key("example.com/").is_empty());
        assert!(!label_key("Bad_Prefix/app").is_empty());
        assert!(!label_key(&"k".repeat(64)).is_empty());
        assert!(!label_key("a/b/c").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value(&"v".repeat(63)).is_empty());
        assert!(!label_value(&"v".repeat(64)).is_empty());
        assert!(!label_value("a\0b").is_empty());
        assert!(!label_value("-a").is_empty());
    }

    #[test]
    fn object_meta_names_each_bad_field() {
        let pods = crate::resource::by_plural("pods").unwrap();
        let ns = crate::resource::by_plural("namespaces").unwrap();
        assert!(object_meta(
            pods,
            &json!({"metadata": {"name": "a.b", "labels": {"k": ""}}}),
            true
        )
        .is_ok());
        let e = object_meta(
            pods,
            &json!({"metadata": {"name": "a..b", "labels": {"k": "a\u{0}b"}}}),
            true,
        )
        .unwrap_err();
        let SimError::InvalidFields { causes, .. } = &e else {
            panic!("{e:?}")
        };
        let fields: Vec<_> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.labels"]);
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_status()["details"]["causes"][0]["field"],
            "metadata.name"
        );
        assert!(object_meta(ns, &json!({"metadata": {"name": "a.b"}}), true).is_err());
        assert!(object_meta(pods, &json!({"metadata": {"name": "a..b"}}), false).is_ok());
        assert!(object_meta(pods, &json!({"metadata": {"generateName": "Web-"}}), true).is_err());
        assert!(object_meta(pods, &json!({"metadata": {"generateName": "web-"}}), true).is_ok());
    }
}
