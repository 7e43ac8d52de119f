//! List responses: selector filtering and `limit`/`continue` pagination at a consistent resourceVersion.

use base64::Engine;
use serde_json::{json, Value};

use crate::error::SimError;
use crate::resource::ResourceInfo;
use crate::selector::Selectors;
use std::time::SystemTime;

use crate::store::{Key, Store};
use crate::table::TableOpts;

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    v: String,
    rv: u64,
    start: String,
}

fn encode(rv: u64, ns: &str, name: &str) -> String {
    let t = Token {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: format!("{ns}/{name}"),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode(token: &str) -> Result<(u64, String, String), SimError> {
    let bad = || {
        SimError::BadRequest(format!(
            "continue: Invalid value: \"{token}\": continue key is not valid"
        ))
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let (ns, name) = t.start.split_once('/').ok_or_else(bad)?;
    Ok((t.rv, ns.to_string(), name.to_string()))
}

/// One page of a list, serialized: the `<Kind>List` JSON document, or a `Table` when `table` is set.
/// Items are serialized straight from the store (borrowed), never cloned.
pub fn render(
    store: &Store,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    sel: &Selectors,
    limit: Option<u64>,
    continue_token: Option<&str>,
    table: Option<(TableOpts, SystemTime)>,
) -> Result<Vec<u8>, SimError> {
    let (rv, owned, after) = match continue_token {
        Some(tok) => {
            let (rv, ns, name) = decode(tok)?;
            let items = store
                .state_at(info.plural, namespace, rv)
                .map_err(|_| expired())?;
            (rv, Some(items), Some((ns, name)))
        }
        None => (store.current_rv(), None, None),
    };
    let all: Box<dyn Iterator<Item = (&Key, &Value)>> = match &owned {
        Some(items) => Box::new(items.iter().map(|(k, v)| (k, v))),
        None => store.iter(info.plural, namespace),
    };
    let matching: Vec<(&Key, &Value)> = all
        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        .filter(|(_, v)| sel.matches(v))
        .collect();
    let total = matching.len();
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if total > limit {
        if let Some(((ns, name), _)) = matching.get(limit - 1) {
            metadata["continue"] = json!(encode(rv, ns, name));
            metadata["remainingItemCount"] = json!(total - limit);
        }
    }
    let items: Vec<&Value> = matching.into_iter().take(limit).map(|(_, v)| v).collect();
    if let Some((opts, now)) = table {
        let doc = crate::table::from_items(info, &items, metadata, now, opts);
        return serde_json::to_vec(&doc).map_err(|e| SimError::Internal(e.to_string()));
    }
    let head =
        json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": metadata});
    let mut out = serde_json::to_vec(&head).map_err(|e| SimError::Internal(e.to_string()))?;
    out.pop(); // the closing '}'
    out.extend_from_slice(b",\"items\":[");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, v).map_err(|e| SimError::Internal(e.to_string()))?;
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// The 410 for a continue token older than the history window (what kube-rs and kubectl relist on).
pub fn expired() -> SimError {
    SimError::Expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roundtrip_and_garbage() {
        let t = encode(42, "ns", "a");
        assert_eq!(decode(&t).unwrap(), (42, "ns".into(), "a".into()));
        assert_eq!(decode("!!!").unwrap_err().code(), 400);
    }
}
