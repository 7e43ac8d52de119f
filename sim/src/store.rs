//! The object store: one store-wide resourceVersion, a bounded event history window, and a broadcast to watchers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// The kind of change an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The watch wire name (`ADDED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
    pub kind: EventType,
    /// The object after the change (for `Deleted`, the last state, carrying the deletion RV).
    pub object: Value,
    /// The object before the change (`Modified` and `Deleted`).
    pub old: Option<Value>,
}

/// Internal sizes, for bounded-memory assertions.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StoreSizes {
    pub objects: usize,
    pub history: usize,
    pub history_window: usize,
    pub watch_buffer: usize,
    pub watchers: usize,
    pub resource_version: u64,
    pub compacted_rv: u64,
}

/// Outcome of asking for the events after a resourceVersion.
pub enum Replay {
    /// The events after the RV, and a receiver for everything later.
    Events(Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>),
    /// The RV is older than the window; `compacted_rv` is the oldest RV still answerable.
    Expired { compacted_rv: u64 },
}

/// The in-memory store (callers hold it behind a mutex).
pub struct Store {
    rv: u64,
    objects: BTreeMap<&'static str, BTreeMap<Key, Value>>,
    history: VecDeque<Arc<Event>>,
    window: usize,
    watch_buffer: usize,
    compacted_rv: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Store {
    /// An empty store keeping at most `window` events and `watch_buffer` undelivered events per watcher.
    pub fn new(window: usize, watch_buffer: usize) -> Self {
        let watch_buffer = watch_buffer.max(1);
        let (tx, _) = broadcast::channel(watch_buffer);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            window: window.max(1),
            watch_buffer,
            compacted_rv: 1,
            tx,
        }
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub fn get(&self, resource: &str, key: &Key) -> Option<&Value> {
        self.objects.get(resource)?.get(key)
    }

    /// Current objects of a resource, sorted by (namespace, name); `namespace` filters.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<(Key, Value)> {
        let Some(map) = self.objects.get(resource) else {
            return Vec::new();
        };
        match namespace {
            None => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(ns) => map
                .range((ns.to_string(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Borrowing iteration over current objects of a resource, sorted; `namespace` filters.
    pub fn iter<'a>(
        &'a self,
        resource: &str,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a Key, &'a Value)> + 'a> {
        let Some(map) = self.objects.get(resource) else {
            return Box::new(std::iter::empty());
        };
        match namespace {
            None => Box::new(map.iter()),
            Some(ns) => Box::new(
                map.range((ns.to_string(), String::new())..)
                    .take_while(move |(k, _)| k.0 == ns),
            ),
        }
    }

    /// The `i % n`-th of the `n` objects of a resource (in one namespace or all), for round-robin churn.
    pub fn nth(&self, resource: &str, namespace: Option<&str>, i: u64) -> Option<Value> {
        let map = self.objects.get(resource)?;
        match namespace {
            None => {
                let n = map.len() as u64;
                if n == 0 {
                    return None;
                }
                map.values().nth(usize::try_from(i % n).ok()?).cloned()
            }
            Some(ns) => {
                let range = || {
                    map.range((ns.to_string(), String::new())..)
                        .take_while(|(k, _)| k.0 == ns)
                };
                let n = range().count() as u64;
                if n == 0 {
                    return None;
                }
                range()
                    .nth(usize::try_from(i % n).ok()?)
                    .map(|(_, v)| v.clone())
            }
        }
    }

    /// Number of objects of a resource (all namespaces).
    pub fn count(&self, resource: &str) -> usize {
        self.objects.get(resource).map_or(0, |m| m.len())
    }

    /// The objects of a resource as they were at `rv`, sorted, or `Err(compacted_rv)` if `rv` is outside the window.
    pub fn state_at(
        &self,
        resource: &'static str,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<(Key, Value)>, u64> {
        if rv >= self.rv {
            return Ok(self.list(resource, namespace));
        }
        if rv < self.compacted_rv {
            return Err(self.compacted_rv);
        }
        let mut state: BTreeMap<Key, Value> = self.list(resource, namespace).into_iter().collect();
        for ev in self.history.iter().rev().take_while(|e| e.rv > rv) {
            if ev.resource != resource || namespace.is_some_and(|ns| ns != ev.namespace) {
                continue;
            }
            let key = (ev.namespace.clone(), ev.name.clone());
            match (&ev.kind, &ev.old) {
                (EventType::Added, _) => {
                    state.remove(&key);
                }
                (_, Some(old)) => {
                    state.insert(key, old.clone());
                }
                (_, None) => {}
            }
        }
        Ok(state.into_iter().collect())
    }

    /// Commit a change: bump the RV, stamp it on the object, record and broadcast the event.
    /// `object` is the new state (`None` deletes). Returns the stored (or deleted) object.
    pub fn commit(&mut self, resource: &'static str, key: Key, object: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let map = self.objects.entry(resource).or_default();
        let stamp = |o: &mut Value| {
            if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            }
        };
        let (kind, old, obj) = match object {
            Some(mut new) => {
                stamp(&mut new);
                match map.insert(key.clone(), new.clone()) {
                    Some(old) => (EventType::Modified, Some(old), new),
                    None => (EventType::Added, None, new),
                }
            }
            None => match map.remove(&key) {
                Some(old) => {
                    let mut last = old.clone();
                    stamp(&mut last);
                    (EventType::Deleted, Some(old), last)
                }
                None => {
                    // Nothing to delete: undo the RV bump.
                    self.rv -= 1;
                    return Value::Null;
                }
            },
        };
        let event = Arc::new(Event {
            rv,
            resource,
            namespace: key.0,
            name: key.1,
            kind,
            object: obj.clone(),
            old,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.window {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(event);
        obj
    }

    /// The events after `rv` and a receiver for later ones, taken atomically.
    pub fn replay_after(&self, rv: u64) -> Replay {
        if rv < self.compacted_rv {
            return Replay::Expired {
                compacted_rv: self.compacted_rv,
            };
        }
        let events = self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Replay::Events(events, self.tx.subscribe())
    }

    /// A receiver for events after the current RV.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Drop the whole history: a watch or continue from any earlier RV now gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Internal sizes.
    pub fn sizes(&self) -> StoreSizes {
        StoreSizes {
            objects: self.objects.values().map(BTreeMap::len).sum(),
            history: self.history.len(),
            history_window: self.window,
            watch_buffer: self.watch_buffer,
            watchers: self.tx.receiver_count(),
            resource_version: self.rv,
            compacted_rv: self.compacted_rv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    #[test]
    fn history_is_bounded_and_state_at_reconstructs() {
        let mut s = Store::new(3, 8);
        s.commit(
            "pods",
            key("a"),
            Some(json!({"metadata": {"name": "a"}, "v": 1})),
        );
        let rv_a = s.current_rv();
        s.commit(
            "pods",
            key("a"),
            Some(json!({"metadata": {"name": "a"}, "v": 2})),
        );
        s.commit("pods", key("b"), Some(json!({"metadata": {"name": "b"}})));
        let at = s.state_at("pods", None, rv_a).unwrap();
        assert_eq!(at.len(), 1);
        assert_eq!(at[0].1["v"], 1);
        s.commit("pods", key("a"), None);
        assert_eq!(s.sizes().history, 3);
        assert_eq!(s.state_at("pods", None, rv_a).unwrap()[0].1["v"], 1);
        assert!(s.state_at("pods", None, rv_a - 1).is_err());
        assert!(matches!(s.replay_after(rv_a - 1), Replay::Expired { .. }));
        s.compact();
        assert_eq!(s.sizes().history, 0);
        assert!(matches!(s.replay_after(s.current_rv()), Replay::Events(..)));
    }
}
