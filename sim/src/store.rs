//! The object store: one store-wide resourceVersion, objects encoded once, a bounded event history window, and a broadcast to watchers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::encoded::{Obj, Pending};

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
    /// The store key of the object's resource ([`crate::resource::ResourceInfo::id`]).
    pub resource: Arc<str>,
    pub namespace: String,
    pub name: String,
    pub kind: EventType,
    /// The object after the change (for `Deleted`, the last state, carrying the deletion RV).
    pub object: Arc<Obj>,
    /// The object before the change (`Modified` and `Deleted`).
    pub old: Option<Arc<Obj>>,
    /// The encoded watch line `{"type":<kind>,"object":<object>}\n`, shared by every watcher.
    pub line: Bytes,
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

type Objects = BTreeMap<Key, Arc<Obj>>;

/// The in-memory store (callers hold it behind a mutex). Objects are kept encoded ([`Obj`]).
pub struct Store {
    rv: u64,
    objects: BTreeMap<Arc<str>, Objects>,
    /// What is served: swapped (never edited) when a CRD comes or goes, under this lock, so
    /// a CRD's API appears and disappears in the same commit as its objects' changes.
    registry: Arc<crate::resource::Registry>,
    history: VecDeque<Arc<Event>>,
    window: usize,
    watch_buffer: usize,
    compacted_rv: u64,
    tx: broadcast::Sender<Arc<Event>>,
    /// The latest resourceVersion, for readers waiting for the store to reach one ([`wait_fresh`]).
    rv_tx: watch::Sender<u64>,
    /// Owner uid → the objects whose `metadata.ownerReferences` name it (the garbage
    /// collector's graph, kept on commit; objects without ownerReferences cost a byte scan).
    dependents: HashMap<String, BTreeSet<(Arc<str>, Key)>>,
}

/// How long a read at a resourceVersion the store has not reached waits for it before a 504
/// (the apiserver watch cache's `blockTimeout` in `waitUntilFreshAndBlock`).
pub const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Wait until `store` has reached resourceVersion `rv`, at most `limit` (on tokio's clock), as
/// the watch cache's `waitUntilFreshAndBlock` does. Woken by each commit (no polling); the lock
/// is held only to read the current RV. `Err` is the 504 `TooLargeResourceVersion` naming the RV
/// the store had when the wait ran out.
pub async fn wait_fresh(
    store: &std::sync::Mutex<Store>,
    rv: u64,
    limit: std::time::Duration,
) -> Result<(), crate::error::SimError> {
    let mut changes = {
        let s = store.lock().unwrap_or_else(|p| p.into_inner());
        if s.rv >= rv {
            return Ok(());
        }
        s.rv_tx.subscribe()
    };
    let reached = tokio::time::timeout(limit, changes.wait_for(|now| *now >= rv)).await;
    match reached {
        Ok(Ok(_)) => Ok(()),
        _ => {
            let current = store.lock().unwrap_or_else(|p| p.into_inner()).rv;
            if current >= rv {
                return Ok(());
            }
            Err(crate::error::SimError::TooLargeResourceVersion {
                requested: rv,
                current,
            })
        }
    }
}

fn in_namespace<'a>(
    map: &'a Objects,
    namespace: Option<&'a str>,
) -> Box<dyn Iterator<Item = (&'a Key, &'a Arc<Obj>)> + 'a> {
    match namespace {
        None => Box::new(map.iter()),
        Some(ns) => Box::new(
            map.range((ns.to_string(), String::new())..)
                .take_while(move |(k, _)| k.0 == ns),
        ),
    }
}

fn stamp(o: &mut Value, rv: u64) {
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Pure: `obj` as it reads with its resourceVersion set to `rv`, encoded as a watch line of `kind`.
pub fn restamped(resource: &str, kind: &str, obj: &Obj, rv: u64) -> (Arc<Obj>, Bytes) {
    let mut v = obj.to_value();
    stamp(&mut v, rv);
    Obj::encode(resource, kind, &v)
}

impl Store {
    /// An empty store keeping at most `window` events and `watch_buffer` undelivered events per watcher.
    pub fn new(window: usize, watch_buffer: usize) -> Self {
        let watch_buffer = watch_buffer.max(1);
        let (tx, _) = broadcast::channel(watch_buffer);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            registry: Arc::default(),
            history: VecDeque::new(),
            window: window.max(1),
            watch_buffer,
            compacted_rv: 1,
            tx,
            rv_tx: watch::Sender::new(1),
            dependents: HashMap::new(),
        }
    }

    /// The served resources now.
    pub fn registry(&self) -> &Arc<crate::resource::Registry> {
        &self.registry
    }

    /// Serve `registry` from now on (a CRD established or gone).
    pub fn set_registry(&mut self, registry: crate::resource::Registry) {
        self.registry = Arc::new(registry);
    }

    /// The shared key of `resource`'s objects, made on first use.
    fn table(&mut self, resource: &str) -> (Arc<str>, &mut Objects) {
        let id = match self.objects.get_key_value(resource) {
            Some((k, _)) => k.clone(),
            None => Arc::from(resource),
        };
        (id.clone(), self.objects.entry(id).or_default())
    }

    /// Drop every object of `resource` (its CRD is gone), one `DELETED` event each, as the
    /// apiextensions finalizer deletes them; returns how many went.
    pub fn drop_resource(&mut self, resource: &str) -> usize {
        let keys = self.keys(resource, None);
        for k in &keys {
            self.commit(resource, k.clone(), None);
        }
        self.objects.remove(resource);
        keys.len()
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// One object (parsed on first access, then kept with the object).
    pub fn get(&self, resource: &str, key: &Key) -> Option<&Value> {
        self.get_obj(resource, key).map(|o| o.value())
    }

    /// One object, encoded.
    pub fn get_obj(&self, resource: &str, key: &Key) -> Option<&Arc<Obj>> {
        self.objects.get(resource)?.get(key)
    }

    /// Whether an object exists (without parsing it).
    pub fn contains(&self, resource: &str, key: &Key) -> bool {
        self.get_obj(resource, key).is_some()
    }

    /// Current objects of a resource, sorted by (namespace, name); `namespace` filters.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<(Key, Value)> {
        self.iter_objs(resource, namespace)
            .map(|(k, v)| (k.clone(), v.to_value()))
            .collect()
    }

    /// The encoded current objects of a resource, sorted; `namespace` filters.
    pub fn objs(&self, resource: &str, namespace: Option<&str>) -> Vec<Arc<Obj>> {
        self.iter_objs(resource, namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Borrowing iteration over the encoded current objects of a resource, sorted; `namespace` filters.
    pub fn iter_objs<'a>(
        &'a self,
        resource: &str,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a Key, &'a Arc<Obj>)> + 'a> {
        match self.objects.get(resource) {
            Some(map) => in_namespace(map, namespace),
            None => Box::new(std::iter::empty()),
        }
    }

    /// Borrowing iteration over current objects of a resource, sorted; `namespace` filters.
    pub fn iter<'a>(
        &'a self,
        resource: &str,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a Key, &'a Value)> + 'a> {
        Box::new(
            self.iter_objs(resource, namespace)
                .map(|(k, v)| (k, v.value())),
        )
    }

    /// The keys of the current objects of a resource, sorted; `namespace` filters.
    pub fn keys(&self, resource: &str, namespace: Option<&str>) -> Vec<Key> {
        self.iter_objs(resource, namespace)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The `i % n`-th of the `n` objects of a resource (in one namespace or all), for round-robin churn.
    pub fn nth(&self, resource: &str, namespace: Option<&str>, i: u64) -> Option<Value> {
        let n = self.iter_objs(resource, namespace).count() as u64;
        if n == 0 {
            return None;
        }
        self.iter_objs(resource, namespace)
            .nth(usize::try_from(i % n).ok()?)
            .map(|(_, v)| v.to_value())
    }

    /// Number of objects of a resource (all namespaces).
    pub fn count(&self, resource: &str) -> usize {
        self.objects.get(resource).map_or(0, |m| m.len())
    }

    /// The objects of a resource as they were at `rv`, sorted, or `Err(compacted_rv)` if `rv` is outside the window.
    pub fn state_at(
        &self,
        resource: &str,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<(Key, Value)>, u64> {
        Ok(self
            .state_at_objs(resource, namespace, rv)?
            .into_iter()
            .map(|(k, v)| (k, v.to_value()))
            .collect())
    }

    /// [`Store::state_at`], encoded.
    pub fn state_at_objs(
        &self,
        resource: &str,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<(Key, Arc<Obj>)>, u64> {
        let current = || {
            self.iter_objs(resource, namespace)
                .map(|(k, v)| (k.clone(), v.clone()))
        };
        if rv >= self.rv {
            return Ok(current().collect());
        }
        if rv < self.compacted_rv {
            return Err(self.compacted_rv);
        }
        let mut state: Objects = current().collect();
        for ev in self.history.iter().rev().take_while(|e| e.rv > rv) {
            if &*ev.resource != resource || namespace.is_some_and(|ns| ns != ev.namespace) {
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

    /// Commit a change: bump the RV, stamp it on the object, encode it once, record and broadcast the event.
    /// `object` is the new state (`None` deletes). Returns the stored (or deleted) object.
    pub fn commit(&mut self, resource: &str, key: Key, object: Option<Value>) -> Value {
        let rv = self.rv + 1;
        let (id, map) = self.table(resource);
        match object {
            Some(mut new) => match Pending::encode(resource, &mut new) {
                Some(pending) => self.commit_pending(resource, key, pending, new),
                None => {
                    let kind = if map.contains_key(&key) {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    let (obj, line) = Obj::encode(resource, kind.as_str(), &new);
                    self.commit_encoded(resource, key, obj, line);
                    new
                }
            },
            None => {
                let Some(old) = map.remove(&key) else {
                    // Nothing to delete: no RV bump.
                    return Value::Null;
                };
                self.unlink(resource, &key, &old);
                let mut last = old.to_value();
                stamp(&mut last, rv);
                let (obj, line) = Obj::encode(resource, EventType::Deleted.as_str(), &last);
                self.rv = rv;
                self.publish(Event {
                    rv,
                    resource: id,
                    namespace: key.0,
                    name: key.1,
                    kind: EventType::Deleted,
                    object: obj,
                    old: Some(old),
                    line,
                });
                last
            }
        }
    }

    /// Commit an object encoded beforehand (outside the lock) as `pending`, whose value is
    /// `value`: the RV is spliced into the bytes and stamped on the returned value.
    pub fn commit_pending(
        &mut self,
        resource: &str,
        key: Key,
        pending: Pending,
        mut value: Value,
    ) -> Value {
        let rv = self.rv + 1;
        let kind = if self.contains(resource, &key) {
            EventType::Modified
        } else {
            EventType::Added
        };
        let (obj, line) = pending.finish(kind.as_str(), rv);
        self.commit_encoded(resource, key, obj, line);
        stamp(&mut value, rv);
        value
    }

    /// The resourceVersion the next commit gets (to encode it into an object before committing it).
    pub fn next_rv(&self) -> u64 {
        self.rv + 1
    }

    /// Commit an object already encoded with [`Store::next_rv`] stamped in it, and its watch line
    /// (`ADDED` for a new key, `MODIFIED` otherwise). Returns the RV.
    pub fn commit_encoded(&mut self, resource: &str, key: Key, obj: Arc<Obj>, line: Bytes) -> u64 {
        self.rv += 1;
        let rv = self.rv;
        let (id, map) = self.table(resource);
        let old = map.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            self.unlink(resource, &key, old);
        }
        for uid in crate::gc::owner_uids(&obj) {
            self.dependents
                .entry(uid)
                .or_default()
                .insert((id.clone(), key.clone()));
        }
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(Event {
            rv,
            resource: id,
            namespace: key.0,
            name: key.1,
            kind,
            object: obj,
            old,
            line,
        });
        rv
    }

    /// Forget `old`'s ownerReferences in the dependents index.
    fn unlink(&mut self, resource: &str, key: &Key, old: &Obj) {
        for uid in crate::gc::owner_uids(old) {
            if let Some(set) = self.dependents.get_mut(&uid) {
                set.remove(&(Arc::from(resource), key.clone()));
                if set.is_empty() {
                    self.dependents.remove(&uid);
                }
            }
        }
    }

    /// The objects whose ownerReferences name `uid`, as `(resource, key)`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(Arc<str>, Key)> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn publish(&mut self, event: Event) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > self.window {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(event);
        self.rv_tx.send_replace(self.rv);
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
