//! Query-string parsing (percent-decoding) and the typed list/watch parameters with apiserver-style 400s.

use std::time::Duration;

use crate::error::{FieldCause, SimError};
use crate::lifecycle::DeleteOptions;

/// Decoded query pairs, and the User-Agent that names a write's field manager by default.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
    user_agent: String,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parse `a=b&c=d` (empty pairs are skipped, as kube-rs sends `?&watch=true…`).
    pub fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Self {
            pairs,
            user_agent: String::new(),
        }
    }

    /// The request's User-Agent, for [`Query::field_manager`].
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = user_agent.to_string();
        self
    }

    /// The manager a create, update or non-apply patch is recorded under in managedFields:
    /// `fieldManager`, else the User-Agent's first segment; 422 for an invalid `fieldManager`.
    pub fn field_manager(&self) -> Result<String, SimError> {
        let given = self.get("fieldManager");
        if let Some(m) = given {
            crate::apply::validate_field_manager(m)?;
        }
        Ok(crate::apply::manager_or_user_agent(given, &self.user_agent))
    }

    /// The last value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a key, in order (`dryRun=All&dryRun=All`).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `dryRun` on a write: absent = a real write, every value `All` = a dry run, anything
    /// else 422 against `{verb}Options` (apiserver `ValidateDryRun`: the only supported value is
    /// `All`). `options` is `CreateOptions`, `UpdateOptions`, `PatchOptions` or `DeleteOptions`.
    pub fn dry_run(&self, options: &str) -> Result<bool, SimError> {
        dry_run_values(self.all("dryRun").collect(), options)
    }

    /// `DeleteOptions` of a delete or deletecollection: from the query (`gracePeriodSeconds`,
    /// `propagationPolicy`, `orphanDependents`, `dryRun`), overridden field by field by the JSON
    /// body kubectl and kube-rs send (`dryRun` values from both count). A body that is not
    /// DeleteOptions JSON, or a query value of the wrong type, is 400; values
    /// `ValidateDeleteOptions` refuses are 422 against `DeleteOptions.meta.k8s.io`.
    pub fn delete_options(&self, body: &[u8]) -> Result<DeleteOptions, SimError> {
        delete_options(self, body)
    }

    /// A boolean flag (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

/// `fieldValidation` on a write (`options`: `CreateOptions`, `UpdateOptions`, `PatchOptions`):
/// absent or empty = `Warn` (apiserver handlers/rest.go `fieldValidation`); anything but
/// `Ignore`, `Warn`, `Strict` is 422 against `{options}.meta.k8s.io`
/// (apimachinery `ValidateFieldValidation`, a `NotSupported` error listing the sorted set).
pub fn field_validation(
    query: &Query,
    options: &str,
) -> Result<crate::fields::FieldValidation, SimError> {
    use crate::fields::FieldValidation;
    match query.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => Ok(FieldValidation::Warn),
        "Ignore" => Ok(FieldValidation::Ignore),
        "Strict" => Ok(FieldValidation::Strict),
        other => Err(SimError::InvalidFields {
            kind: format!("{options}.meta.k8s.io"),
            name: String::new(),
            causes: vec![crate::error::FieldCause {
                reason: "FieldValueNotSupported",
                field: "fieldValidation".into(),
                message: format!(
                    "Unsupported value: {other:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                ),
            }],
        }),
    }
}

fn dry_run_values(values: Vec<&str>, options: &str) -> Result<bool, SimError> {
    dry_run_cause(&values).map_err(|cause| SimError::InvalidFields {
        kind: format!("{options}.meta.k8s.io"),
        name: String::new(),
        causes: vec![cause],
    })
}

/// `ValidateDryRun`: no value = a real write, every value `All` = a dry run.
fn dry_run_cause(values: &[&str]) -> Result<bool, FieldCause> {
    if values.is_empty() {
        return Ok(false);
    }
    if values.iter().all(|v| *v == "All") {
        return Ok(true);
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    Err(FieldCause {
        reason: "FieldValueNotSupported",
        field: "dryRun".into(),
        message: format!(
            "Unsupported value: []string{{{}}}: supported values: \"All\"",
            quoted.join(", ")
        ),
    })
}

/// The `DeleteOptions` JSON body (`meta/v1`); unknown fields are ignored, as the apiserver's
/// non-strict decoder does.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptionsBody {
    kind: Option<String>,
    dry_run: Option<Vec<String>>,
    grace_period_seconds: Option<i64>,
    preconditions: Option<PreconditionsBody>,
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreconditionsBody {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOptions, SimError> {
    let mut dry_run: Vec<String> = q.all("dryRun").map(str::to_string).collect();
    let mut opts = DeleteOptions {
        grace_period_seconds: match q.get("gracePeriodSeconds") {
            None | Some("") => None,
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                SimError::BadRequest(format!(
                    "gracePeriodSeconds: Invalid value: \"{s}\": must be an integer"
                ))
            })?),
        },
        propagation_policy: q
            .get("propagationPolicy")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        orphan_dependents: match q.get("orphanDependents") {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(s) => {
                return Err(SimError::BadRequest(format!(
                    "orphanDependents: Invalid value: \"{s}\": must be a boolean"
                )))
            }
        },
        ..DeleteOptions::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let b: DeleteOptionsBody = serde_json::from_slice(body)
            .map_err(|e| SimError::BadRequest(format!("error decoding DeleteOptions body: {e}")))?;
        if let Some(kind) = b.kind.filter(|k| !k.is_empty() && k != "DeleteOptions") {
            return Err(SimError::BadRequest(format!(
                "decoded object cannot be converted to DeleteOptions (kind {kind:?})"
            )));
        }
        dry_run.extend(b.dry_run.unwrap_or_default());
        opts.grace_period_seconds = b.grace_period_seconds.or(opts.grace_period_seconds);
        opts.propagation_policy = b.propagation_policy.or(opts.propagation_policy);
        opts.orphan_dependents = b.orphan_dependents.or(opts.orphan_dependents);
        if let Some(p) = b.preconditions {
            opts.uid = p.uid;
            opts.resource_version = p.resource_version;
        }
    }
    // BeforeDelete: a negative grace period means 1 second.
    opts.grace_period_seconds = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
    // ValidateDeleteOptions, in its order.
    let mut causes = Vec::new();
    if let (Some(_), Some(p)) = (opts.orphan_dependents, &opts.propagation_policy) {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: "propagationPolicy".into(),
            message: format!(
                "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set"
            ),
        });
    }
    if let Some(p) = &opts.propagation_policy {
        if !["Foreground", "Background", "Orphan"].contains(&p.as_str()) {
            causes.push(FieldCause {
                reason: "FieldValueNotSupported",
                field: "propagationPolicy".into(),
                message: format!("Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
            });
        }
    }
    match dry_run_cause(&dry_run.iter().map(String::as_str).collect::<Vec<_>>()) {
        Ok(d) => opts.dry_run = d,
        Err(c) => causes.push(c),
    }
    if !causes.is_empty() {
        return Err(SimError::InvalidFields {
            kind: "DeleteOptions.meta.k8s.io".into(),
            name: String::new(),
            causes,
        });
    }
    Ok(opts)
}

/// A parsed `resourceVersion` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rv {
    /// Absent or empty: most recent.
    Unset,
    /// "0": any.
    Any,
    /// A specific RV.
    At(u64),
}

/// A parsed `resourceVersionMatch` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RvMatch {
    /// At least as fresh as the resourceVersion (also what a bare resourceVersion means).
    NotOlderThan,
    /// Exactly the state at the resourceVersion.
    Exact,
}

/// The list/watch query parameters.
#[derive(Debug)]
pub struct ListParams {
    pub watch: bool,
    pub rv: Rv,
    pub rv_match: Option<RvMatch>,
    pub limit: Option<u64>,
    pub continue_token: Option<String>,
    pub label_selector: String,
    pub field_selector: String,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: bool,
}

impl ListParams {
    /// Validate the parameters of a list or watch.
    pub fn from_query(q: &Query) -> Result<Self, SimError> {
        let rv = match q.get("resourceVersion") {
            None | Some("") => Rv::Unset,
            Some("0") => Rv::Any,
            Some(s) => Rv::At(s.parse().map_err(|_| {
                SimError::BadRequest(format!(
                    "resourceVersion: Invalid value: \"{s}\": must be a non-negative integer"
                ))
            })?),
        };
        let limit = match q.get("limit") {
            None | Some("") => None,
            Some(s) => {
                let n: i64 = s.parse().map_err(|_| {
                    SimError::BadRequest(format!(
                        "limit: Invalid value: \"{s}\": must be an integer"
                    ))
                })?;
                if n < 0 {
                    return Err(SimError::BadRequest(format!(
                        "limit: Invalid value: {n}: must be greater than or equal to 0"
                    )));
                }
                (n > 0).then_some(n as u64)
            }
        };
        let timeout = match q.get("timeoutSeconds") {
            None | Some("") => None,
            Some(s) => {
                let n: i64 = s.parse().map_err(|_| {
                    SimError::BadRequest(format!(
                        "timeoutSeconds: Invalid value: \"{s}\": must be an integer"
                    ))
                })?;
                if n < 0 {
                    return Err(SimError::BadRequest(format!(
                        "timeoutSeconds: Invalid value: {n}: must be non-negative"
                    )));
                }
                (n > 0).then(|| Duration::from_secs(n as u64))
            }
        };
        let watch = q.flag("watch");
        let raw_match = q.get("resourceVersionMatch").filter(|s| !s.is_empty());
        let has_continue = q.get("continue").is_some_and(|c| !c.is_empty());
        if !watch {
            validate_list_options(q.get("resourceVersion"), raw_match, has_continue)?;
        }
        let rv_match = match raw_match {
            None => None,
            Some("NotOlderThan") => Some(RvMatch::NotOlderThan),
            Some("Exact") => Some(RvMatch::Exact),
            Some(m) => return Err(SimError::BadRequest(format!("resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""))),
        };
        let send_initial_events = q.flag("sendInitialEvents");
        if send_initial_events && (!watch || rv_match != Some(RvMatch::NotOlderThan)) {
            return Err(SimError::BadRequest(
                "sendInitialEvents: Forbidden: sendInitialEvents is allowed only with watch=true and resourceVersionMatch=NotOlderThan".into(),
            ));
        }
        Ok(Self {
            watch,
            rv,
            rv_match,
            limit,
            continue_token: q
                .get("continue")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            label_selector: q.get("labelSelector").unwrap_or("").to_string(),
            field_selector: q.get("fieldSelector").unwrap_or("").to_string(),
            bookmarks: q.flag("allowWatchBookmarks"),
            timeout,
            send_initial_events,
        })
    }
}

/// Pure: the `resourceVersionMatch` rules of a list's options (apimachinery
/// `pkg/apis/meta/internalversion/validation` `ValidateListOptions`), every violation reported
/// at once as the apiserver's list handler does: 422 `Invalid` against
/// `ListOptions.meta.k8s.io`, one `details.causes` entry per rule broken.
pub fn validate_list_options(
    rv: Option<&str>,
    rv_match: Option<&str>,
    has_continue: bool,
) -> Result<(), SimError> {
    use crate::error::FieldCause;
    let Some(m) = rv_match.filter(|m| !m.is_empty()) else {
        return Ok(());
    };
    let rv = rv.unwrap_or("");
    let forbidden = |why: &str| FieldCause {
        reason: "FieldValueForbidden",
        field: "resourceVersionMatch".into(),
        message: format!("Forbidden: {why}"),
    };
    let mut causes = Vec::new();
    if rv.is_empty() {
        causes.push(forbidden(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if has_continue {
        causes.push(forbidden(
            "resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    if m != "Exact" && m != "NotOlderThan" {
        causes.push(FieldCause {
            reason: "FieldValueNotSupported",
            field: "resourceVersionMatch".into(),
            message: format!(
                "Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
            ),
        });
    }
    if m == "Exact" && rv == "0" {
        causes.push(forbidden(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(SimError::InvalidFields {
        kind: "ListOptions.meta.k8s.io".into(),
        name: String::new(),
        causes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ValidateListOptions`' resourceVersionMatch rules: `(rv, match, continue)` → the causes' messages.
    #[test]
    fn list_options_table() {
        let unless =
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided";
        let cont = "Forbidden: resourceVersionMatch is forbidden when continue is provided";
        let zero =
            "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"";
        type Case<'a> = (Option<&'a str>, Option<&'a str>, bool, &'a [&'a str]);
        let cases: [Case; 9] = [
            (None, None, false, &[]),
            (None, None, true, &[]),
            (Some("5"), None, true, &[]),
            (Some("5"), Some("Exact"), false, &[]),
            (Some("0"), Some("NotOlderThan"), false, &[]),
            (None, Some("Exact"), false, &[unless]),
            (Some(""), Some("NotOlderThan"), true, &[unless, cont]),
            (Some("0"), Some("Exact"), false, &[zero]),
            (
                Some("5"),
                Some("Newest"),
                false,
                &["Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\""],
            ),
        ];
        for (rv, m, c, want) in cases {
            let got: Vec<String> = match validate_list_options(rv, m, c) {
                Ok(()) => vec![],
                Err(SimError::InvalidFields { kind, causes, .. }) => {
                    assert_eq!(kind, "ListOptions.meta.k8s.io");
                    causes.into_iter().map(|c| c.message).collect()
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(got, want, "{rv:?} {m:?} continue={c}");
        }
        assert_eq!(
            ListParams::from_query(&Query::parse(Some("resourceVersionMatch=Exact")))
                .unwrap_err()
                .code(),
            422
        );
    }

    #[test]
    fn parses_kube_rs_queries() {
        let q = Query::parse(Some("&watch=true&timeoutSeconds=290&labelSelector=app%3Dweb%2Ctier+in+%28a%29&resourceVersion=12"));
        let p = ListParams::from_query(&q).unwrap();
        assert!(p.watch);
        assert_eq!(p.rv, Rv::At(12));
        assert_eq!(p.label_selector, "app=web,tier in (a)");
        assert_eq!(p.timeout, Some(Duration::from_secs(290)));
        assert_eq!(
            ListParams::from_query(&Query::parse(Some("resourceVersion=abc")))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            ListParams::from_query(&Query::parse(Some("limit=-1")))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("a%2"), "a%2");
    }
}
