//! Label and field selectors: parsing (with apiserver-style errors) and matching against JSON objects.

use serde_json::Value;

use crate::error::SimError;
use crate::resource::ResourceInfo;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed `labelSelector` (requirements ANDed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected '(<values>)', found '{rest}'"))?;
    let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    for v in &vals {
        if !valid_value(v) {
            return Err(format!("invalid label value: \"{v}\""));
        }
    }
    Ok(vals)
}

fn parse_requirement(r: &str) -> Result<(String, Op), String> {
    let r = r.trim();
    if r.is_empty() {
        return Err("found '', expected: identifier".into());
    }
    if let Some(k) = r.strip_prefix('!') {
        let k = k.trim();
        if !valid_key(k) {
            return Err(format!("invalid label key \"{k}\""));
        }
        return Ok((k.to_string(), Op::NotExists));
    }
    let (key, op) = if let Some((k, v)) = r.split_once("!=") {
        (k, Op::NotEq(v.trim().to_string()))
    } else if let Some((k, v)) = r.split_once("==") {
        (k, Op::Eq(v.trim().to_string()))
    } else if let Some((k, v)) = r.split_once('=') {
        (k, Op::Eq(v.trim().to_string()))
    } else if let Some(idx) = r.find(" notin ").or_else(|| r.find(" notin(")) {
        (&r[..idx], Op::NotIn(parse_set(&r[idx + 6..])?))
    } else if let Some(idx) = r.find(" in ").or_else(|| r.find(" in(")) {
        (&r[..idx], Op::In(parse_set(&r[idx + 3..])?))
    } else {
        (r, Op::Exists)
    };
    let key = key.trim();
    if !valid_key(key) {
        return Err(format!("invalid label key \"{key}\""));
    }
    match &op {
        Op::Eq(v) | Op::NotEq(v) if !valid_value(v) => Err(format!("invalid label value: \"{v}\"")),
        _ => Ok((key.to_string(), op)),
    }
}

impl LabelSelector {
    /// Parse the `labelSelector` query value; empty means everything.
    pub fn parse(s: &str) -> Result<Self, SimError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut reqs = Vec::new();
        let parts = split_top_level(s).map_err(|e| bad_label(s, &e))?;
        for part in parts {
            reqs.push(parse_requirement(part).map_err(|e| bad_label(s, &e))?);
        }
        Ok(Self { reqs })
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether labels read through `get` (a label's string value) satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.reqs.iter().all(|(k, op)| match op {
            Op::Eq(v) => get(k) == Some(v.as_str()),
            Op::NotEq(v) => get(k) != Some(v.as_str()),
            Op::In(vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Op::Exists => get(k).is_some(),
            Op::NotExists => get(k).is_none(),
        })
    }
}

fn bad_label(s: &str, e: &str) -> SimError {
    SimError::BadRequest(format!(
        "unable to parse requirement: {e} (labelSelector \"{s}\")"
    ))
}

/// A parsed `fieldSelector` (`field=value`, `field==value`, `field!=value`, comma = AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parse the `fieldSelector` query value for a resource; unsupported fields are a 400 like the real apiserver.
    pub fn parse(s: &str, info: &ResourceInfo) -> Result<Self, SimError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(SimError::BadRequest(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = field == "metadata.name"
                || field == "metadata.namespace"
                || info.fields.contains(&field);
            if !supported {
                return Err(SimError::BadRequest(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether the object's fields satisfy every requirement (a missing field reads as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_with(|field| {
            let mut cur = obj;
            let mut found = true;
            for seg in field.split('.') {
                match cur.get(seg) {
                    Some(v) => cur = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if found {
                cur.as_str().unwrap_or("")
            } else {
                ""
            }
        })
    }

    /// Whether fields read through `get` (a field's string value, "" when missing) satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> &'a str) -> bool {
        self.reqs
            .iter()
            .all(|(field, eq, value)| (get(field) == value) == *eq)
    }
}

/// A label selector and a field selector together.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    /// Both selectors match.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// Both selectors match values read through the getters (see the `matches_with` of each).
    pub fn matches_with<'a>(
        &self,
        label: impl Fn(&str) -> Option<&'a str>,
        field: impl Fn(&str) -> &'a str,
    ) -> bool {
        self.labels.matches_with(label) && self.fields.matches_with(field)
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_operators() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web)"));
        assert!(m("missing notin (x)"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert!(LabelSelector::parse("a=b,,").is_err());
    }

    #[test]
    fn field_selectors() {
        let info = crate::resource::by_plural("pods").unwrap();
        let o = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("status.phase=Running", info)
            .unwrap()
            .matches(&o));
        assert!(FieldSelector::parse("spec.nodeName=", info)
            .unwrap()
            .matches(&o));
        assert!(!FieldSelector::parse("metadata.name!=p", info)
            .unwrap()
            .matches(&o));
        assert!(FieldSelector::parse("spec.bogus=1", info).is_err());
    }
}
