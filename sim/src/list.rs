//! List responses: which state a list reads (resourceVersion semantics), selector filtering, and `limit`/`continue` pagination at a consistent resourceVersion.
//!
//! Which state a list reads (API conventions, "Resource versions" / "Semantics for get and list"):
//!
//! | `resourceVersion` | `resourceVersionMatch` | read |
//! |---|---|---|
//! | unset | unset | most recent |
//! | `0` | unset, `NotOlderThan` | any (the sim serves the most recent) |
//! | N | unset, `NotOlderThan` | most recent, once the store has reached N (else 504 after 3 s) |
//! | N | `Exact` | the state at N from the history window (410 if compacted; 504 after 3 s if N is ahead) |
//!
//! A `continue` token carries the RV its first page was read at, so every page of a list, an
//! `Exact` one included, is read at that RV.

use base64::Engine;
use serde_json::{json, Value};

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::encoded::Obj;
use crate::error::SimError;
use crate::protobuf::Wire;
use crate::query::{Rv, RvMatch};
use crate::resource::Resource;
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

/// Which state a list reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The most recent state (also what `resourceVersion=0`, "any", gets here).
    Latest,
    /// The most recent state, once the store has reached this RV.
    NotOlderThan(u64),
    /// The state exactly at this RV.
    Exact(u64),
}

/// Pure: the read a list's parameters ask for (after `ValidateListOptions`), or the 400 the
/// apiserver's etcd3 store answers for a resourceVersion sent with a `continue` token.
pub fn read(rv: Rv, rv_match: Option<RvMatch>, has_continue: bool) -> Result<Read, SimError> {
    match rv {
        Rv::Unset | Rv::Any => Ok(Read::Latest),
        Rv::At(_) if has_continue => Err(SimError::BadRequest(
            "specifying resource version is not allowed when using continue".into(),
        )),
        Rv::At(n) if rv_match == Some(RvMatch::Exact) => Ok(Read::Exact(n)),
        Rv::At(n) => Ok(Read::NotOlderThan(n)),
    }
}

/// Wait (bounded, no lock held) until the store can answer `read`: a read at an RV the store
/// has not reached waits up to [`crate::store::FRESH_WAIT`] for it, then is a 504.
pub async fn wait_for(store: &Mutex<Store>, read: Read) -> Result<(), SimError> {
    match read {
        Read::Latest => Ok(()),
        Read::NotOlderThan(n) | Read::Exact(n) => {
            crate::store::wait_fresh(store, n, crate::store::FRESH_WAIT).await
        }
    }
}

/// Which page of which state a list asks for.
#[derive(Clone, Copy, Debug)]
pub struct PageSpec<'a> {
    /// The state to read (ignored for a `continue`: the token names its RV).
    pub read: Read,
    pub limit: Option<u64>,
    pub continue_token: Option<&'a str>,
}

/// One page of a list, serialized: the `<Kind>List` JSON document (protobuf when `wire` says so
/// and the kind has a message), or a `Table` when `table` is set.
/// The page's objects are picked under the store lock (shared, never cloned); the document is
/// put together from their encoded JSON after the lock is released. Also returns whether this
/// is the list's last page.
pub(crate) fn render(
    store: &Mutex<Store>,
    info: &Resource,
    namespace: Option<&str>,
    sel: &Selectors,
    PageSpec {
        read,
        limit,
        continue_token,
    }: PageSpec<'_>,
    table: Option<(TableOpts, SystemTime)>,
    wire: Wire,
) -> Result<(Vec<u8>, bool), SimError> {
    let after = continue_token.map(decode).transpose()?;
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let page = {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        match &after {
            Some((rv, ns, name)) => {
                let items = store
                    .state_at_objs(&info.id, namespace, *rv)
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
            None => match read {
                Read::Exact(rv) if rv > store.current_rv() => {
                    return Err(SimError::TooLargeResourceVersion {
                        requested: rv,
                        current: store.current_rv(),
                    });
                }
                Read::Exact(rv) => {
                    let items = store
                        .state_at_objs(&info.id, namespace, rv)
                        .map_err(|_| too_old())?;
                    pick(rv, items.iter().map(|(k, v)| (k, v)), None, sel, limit)
                }
                Read::Latest | Read::NotOlderThan(_) => pick(
                    store.current_rv(),
                    store.iter_objs(&info.id, namespace),
                    None,
                    sel,
                    limit,
                ),
            },
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
    if wire == Wire::Protobuf {
        if let Some(bytes) = crate::protobuf::list(info, &metadata, &page.items) {
            return Ok((bytes, page.more.is_none()));
        }
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

/// The 410 for an `Exact` list at an RV older than the history window (the apiserver's etcd3
/// store for a compacted revision).
pub fn too_old() -> SimError {
    SimError::Expired("The resourceVersion for the provided list is too old.".into())
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

    /// The read each parameter combination gets (API conventions, "Semantics for get and list").
    #[test]
    fn read_table() {
        let nt = Some(RvMatch::NotOlderThan);
        let ex = Some(RvMatch::Exact);
        let cases = [
            (Rv::Unset, None, false, Ok(Read::Latest)),
            (Rv::Unset, None, true, Ok(Read::Latest)),
            (Rv::Any, None, false, Ok(Read::Latest)),
            (Rv::Any, nt, false, Ok(Read::Latest)),
            (Rv::Any, None, true, Ok(Read::Latest)),
            (Rv::At(7), None, false, Ok(Read::NotOlderThan(7))),
            (Rv::At(7), nt, false, Ok(Read::NotOlderThan(7))),
            (Rv::At(7), ex, false, Ok(Read::Exact(7))),
            (Rv::At(7), None, true, Err(400)),
        ];
        for (rv, m, cont, want) in cases {
            let got = read(rv, m, cont).map_err(|e| e.code());
            assert_eq!(got, want, "{rv:?} {m:?} continue={cont}");
        }
    }

    #[test]
    fn token_roundtrip_and_garbage() {
        let t = encode(42, "ns", "a");
        assert_eq!(decode(&t).unwrap(), (42, "ns".into(), "a".into()));
        assert_eq!(decode("!!!").unwrap_err().code(), 400);
    }
}
