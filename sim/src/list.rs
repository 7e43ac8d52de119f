//! List responses: selector filtering and `limit`/`continue` pagination at a consistent resourceVersion.

use base64::Engine;
use serde_json::{json, Value};

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::encoded::Obj;
use crate::error::SimError;
use crate::resource::ResourceInfo;
use crate::selector::Selectors;
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
/// The page's objects are picked under the store lock (shared, never cloned); the document is
/// put together from their encoded JSON after the lock is released. Also returns whether this
/// is the list's last page.
pub fn render(
    store: &Mutex<Store>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    sel: &Selectors,
    limit: Option<u64>,
    continue_token: Option<&str>,
    table: Option<(TableOpts, SystemTime)>,
) -> Result<(Vec<u8>, bool), SimError> {
    let after = continue_token.map(decode).transpose()?;
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let page = {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        match &after {
            Some((rv, ns, name)) => {
                let items = store
                    .state_at_objs(info.plural, namespace, *rv)
                    .map_err(|_| expired())?;
                let start = (ns.clone(), name.clone());
                pick(
                    *rv,
                    items.iter().map(|(k, v)| (k, v)),
                    Some(&start),
                    sel,
                    limit,
                )
            }
            None => pick(
                store.current_rv(),
                store.iter_objs(info.plural, namespace),
                None,
                sel,
                limit,
            ),
        }
    };
    let mut metadata = json!({"resourceVersion": page.rv.to_string()});
    if let Some(((ns, name), remaining)) = &page.more {
        metadata["continue"] = json!(encode(page.rv, ns, name));
        metadata["remainingItemCount"] = json!(remaining);
    }
    if let Some((opts, now)) = table {
        let items: Vec<&Value> = page.items.iter().map(|o| o.value()).collect();
        let doc = crate::table::from_items(info, &items, metadata, now, opts);
        let bytes = serde_json::to_vec(&doc).map_err(|e| SimError::Internal(e.to_string()))?;
        return Ok((bytes, page.more.is_none()));
    }
    let head =
        json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": metadata});
    let mut out = serde_json::to_vec(&head).map_err(|e| SimError::Internal(e.to_string()))?;
    out.pop(); // the closing '}'
    let body: usize = page.items.iter().map(|o| o.json().len() + 1).sum();
    out.reserve(body + 16);
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(o.json());
    }
    out.extend_from_slice(b"]}");
    Ok((out, page.more.is_none()))
}

/// One page's objects, the RV it is consistent at, and (when it is not the last page) the key
/// of its last item and how many items remain.
struct Page {
    rv: u64,
    items: Vec<Arc<Obj>>,
    more: Option<(Key, usize)>,
}

/// Pure: the first `limit` objects after `after` that match, counting those beyond.
fn pick<'a>(
    rv: u64,
    all: impl Iterator<Item = (&'a Key, &'a Arc<Obj>)>,
    after: Option<&Key>,
    sel: &Selectors,
    limit: usize,
) -> Page {
    let mut items = Vec::new();
    let mut last = None;
    let mut remaining = 0usize;
    for (k, o) in all {
        if after.is_some_and(|a| k <= a) || !o.matches(sel) {
            continue;
        }
        if items.len() < limit {
            items.push(o.clone());
            last = Some(k);
        } else {
            remaining += 1;
        }
    }
    let more = (remaining > 0)
        .then(|| last.map(|k| (k.clone(), remaining)))
        .flatten();
    Page { rv, items, more }
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
