//! Request, fault and watch counters (`Sim::stats`, `GET /_sim/stats`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of every counter. Keys of `requests` are `"<verb> <resource>"` (e.g. `"watch pods"`);
/// keys of `faults` are fault kinds (see [`crate::fault::Fault::kind_name`] and `flood_event`, `compact`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    /// The part of `faults` that hit a watch: its request, or its stream while it was open.
    #[serde(default)]
    pub watch_faults: BTreeMap<String, u64>,
    /// The part of `watch_faults` that a plan with `apply_to_open_watches` dealt to a watch
    /// opened before the plan was set.
    #[serde(default)]
    pub open_watch_faults: BTreeMap<String, u64>,
    pub watch_starts: BTreeMap<String, u64>,
    pub events_sent: u64,
    pub bookmarks_sent: u64,
    /// Requests the server could not route (unknown paths and resources).
    pub unrouted: u64,
    /// Lists answered in full, per resource: the last (or only) page served with 200.
    #[serde(default)]
    pub lists_served: BTreeMap<String, u64>,
    /// Watches open and delivering right now, per resource (a gauge): counted from the first
    /// event line a watch may send until it ends or stalls; a watch refused with 410 never counts.
    #[serde(default)]
    pub live_watches: BTreeMap<String, u64>,
}

/// What the server has let clients see of one resource (see [`crate::Sim::visibility`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Visibility {
    /// Watches open and delivering now.
    pub live_watches: u64,
    /// Lists answered in full so far.
    pub lists_served: u64,
}

impl Stats {
    /// Requests with this verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`) on this resource (plural).
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.requests
            .get(&format!("{verb} {resource}"))
            .copied()
            .unwrap_or(0)
    }

    /// All counted resource requests.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Injected faults of one kind.
    pub fn faults(&self, kind: &str) -> u64 {
        self.faults.get(kind).copied().unwrap_or(0)
    }

    /// Injected faults of one kind that hit a watch (its request or its open stream).
    pub fn watch_faults(&self, kind: &str) -> u64 {
        self.watch_faults.get(kind).copied().unwrap_or(0)
    }

    /// Injected faults of one kind dealt to already-open watches by a plan change.
    pub fn open_watch_faults(&self, kind: &str) -> u64 {
        self.open_watch_faults.get(kind).copied().unwrap_or(0)
    }

    /// All injected faults.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Watches started on a resource.
    pub fn watch_starts(&self, resource: &str) -> u64 {
        self.watch_starts.get(resource).copied().unwrap_or(0)
    }

    pub(crate) fn count_request(&mut self, verb: &str, resource: &str) {
        *self
            .requests
            .entry(format!("{verb} {resource}"))
            .or_default() += 1;
    }

    pub(crate) fn count_list_served(&mut self, resource: &str) {
        *self.lists_served.entry(resource.to_string()).or_default() += 1;
    }

    /// A watch on `resource` starts (`true`) or stops (`false`) delivering events.
    pub(crate) fn watch_live(&mut self, resource: &str, live: bool) {
        let n = self.live_watches.entry(resource.to_string()).or_default();
        *n = if live { *n + 1 } else { n.saturating_sub(1) };
    }

    /// Per watched resource (one with a watch request), what clients can see of it now.
    pub fn visibility(&self) -> BTreeMap<String, Visibility> {
        self.requests
            .keys()
            .filter_map(|k| k.strip_prefix("watch "))
            .map(|r| {
                let v = Visibility {
                    live_watches: self.live_watches.get(r).copied().unwrap_or(0),
                    lists_served: self.lists_served.get(r).copied().unwrap_or(0),
                };
                (r.to_string(), v)
            })
            .collect()
    }

    pub(crate) fn count_fault(&mut self, kind: &str) {
        self.count_faults(kind, 1);
    }

    /// `n` faults of one kind at once (`n == 0` records nothing).
    pub(crate) fn count_faults(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.faults.entry(kind.to_string()).or_default() += n;
        }
    }

    /// A fault that hit a watch; `open` if a plan change dealt it to an already-open one.
    pub(crate) fn count_watch_fault(&mut self, kind: &str, open: bool) {
        self.count_fault(kind);
        *self.watch_faults.entry(kind.to_string()).or_default() += 1;
        if open {
            *self.open_watch_faults.entry(kind.to_string()).or_default() += 1;
        }
    }
}
