//! Pure: the desired state kept up to date change by change, in proportion to what changed.
//!
//! [`crate::desired::desired_state_with`] recomputes every account from the whole cluster; this
//! keeps its result and, per [`Delta`], recomputes only what the change can affect:
//!
//! - a **pod** change touches the accounts at its IP before and after (an IP's accounts depend
//!   only on the grantable pods claiming it and on their namespace's ready Services);
//! - a **Service** or **Secret** change, or new ledger holders, rebuild the Service half
//!   ([`ServiceStage`], O(services)) and recompute the IPs of the grantable pods in each
//!   namespace whose ready Services changed;
//! - [`IncrementalDesired::rebuild`] recomputes everything (the engine's startup and resync).
//!
//! Every account whose value changed (added, altered or removed) is recorded in a dirty set the
//! engine plans and observes from ([`IncrementalDesired::take_dirty`]). Both computations share
//! the same two halves, and a property test checks that after any sequence of changes the
//! result equals the full one and the dirty set is exactly the accounts that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::desired::{
    claimant_names, into_service_problems, is_account_for, match_pod, pods_in_namespace,
    DesiredState, NsServices, Problem, ServiceProblem, ServiceStage, UserHolders,
};
use crate::grant::{AccountKey, Desired};
use crate::index::Delta;
use crate::model::{Cluster, ObjectRef, PodFacts};
use crate::validate::Policy;

/// The desired state, maintained incrementally. Feed it every [`Delta`] the
/// [`crate::index::Index`] reports, with the cluster as it is after the change.
#[derive(Debug, Clone)]
pub struct IncrementalDesired {
    policy: Policy,
    held: UserHolders,
    stage: ServiceStage,
    /// Grantable pods per IP.
    claimants: HashMap<IpAddr, BTreeSet<ObjectRef>>,
    /// The users of the accounts currently desired at each IP.
    users_at: HashMap<IpAddr, Vec<String>>,
    /// The pod-half problems at each IP that has any.
    problems_at: BTreeMap<IpAddr, Vec<Problem>>,
    accounts: Desired,
    dirty: BTreeSet<AccountKey>,
}

impl IncrementalDesired {
    /// An empty desired state (no cluster seen yet) under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            held: UserHolders::new(),
            stage: ServiceStage::default(),
            claimants: HashMap::new(),
            users_at: HashMap::new(),
            problems_at: BTreeMap::new(),
            accounts: Desired::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// The desired accounts.
    pub fn accounts(&self) -> &Desired {
        &self.accounts
    }

    /// The problems, sorted by service then reason, as [`DesiredState::problems`].
    pub fn problems(&self) -> Vec<ServiceProblem> {
        let mut all = self.stage.problems.clone();
        all.extend(self.problems_at.values().flatten().cloned());
        into_service_problems(all)
    }

    /// A copy of the whole result (tests and tools; the engine reads the parts).
    pub fn state(&self) -> DesiredState {
        DesiredState {
            accounts: self.accounts.clone(),
            problems: self.problems(),
        }
    }

    /// The accounts whose desired value changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<AccountKey> {
        std::mem::take(&mut self.dirty)
    }

    /// Whether `key` changed since the last [`IncrementalDesired::take_dirty`] (the engine leaves
    /// such accounts out of a plan made from an observation older than the change).
    pub fn is_dirty(&self, key: &AccountKey) -> bool {
        self.dirty.contains(key)
    }

    /// Recomputes everything from `cluster`; accounts that differ from before become dirty.
    ///
    /// This is the engine's drift check at every full reconcile, so it is cheap when nothing
    /// drifted: the Service half is rebuilt (O(services)); the claimants are verified against
    /// the pods in place and rebuilt only if they differ; each IP with one claimant and no
    /// problems is compared with the accounts held there without building anything
    /// ([`IncrementalDesired::unchanged_at`]); only the IPs that fail the comparison, or that
    /// hold accounts or problems but no claimant, are recomputed. The result is exactly the
    /// full recomputation's (the property tests compare them after any sequence of changes).
    pub fn rebuild(&mut self, cluster: &Cluster) {
        self.stage = ServiceStage::build(cluster, &self.policy, &self.held);
        if !self.claimants_match(cluster) {
            self.claimants.clear();
            for pod in cluster.pods.values() {
                if let Some(ip) = pod.grantable_ip() {
                    self.claimants.entry(ip).or_default().insert(pod.id.clone());
                }
            }
        }
        let mut stale: Vec<IpAddr> = Vec::new();
        let mut probe = AccountKey {
            user: String::new(),
            host: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        // Pods come in namespace order: look each namespace's Services up once.
        let mut namespace: Option<(&str, Option<&NsServices>)> = None;
        for pod in cluster.pods.values() {
            let Some(ip) = pod.grantable_ip() else {
                continue;
            };
            let services = match namespace {
                Some((ns, services)) if ns == pod.id.namespace => services,
                _ => {
                    let services = self.stage.namespaces.get(&pod.id.namespace);
                    namespace = Some((&pod.id.namespace, services));
                    services
                }
            };
            if !self.unchanged_at(pod, ip, services, &mut probe) {
                stale.push(ip);
            }
        }
        stale.extend(
            self.users_at
                .keys()
                .chain(self.problems_at.keys())
                .filter(|ip| !self.claimants.contains_key(ip))
                .copied(),
        );
        stale.sort_unstable();
        stale.dedup();
        for ip in stale {
            self.recompute_ip(cluster, ip);
        }
    }

    /// Whether the claimants are exactly the grantable pods of `cluster`, by IP.
    fn claimants_match(&self, cluster: &Cluster) -> bool {
        let mut grantable = 0usize;
        for pod in cluster.pods.values() {
            if let Some(ip) = pod.grantable_ip() {
                grantable += 1;
                if !self.claimants.get(&ip).is_some_and(|c| c.contains(&pod.id)) {
                    return false;
                }
            }
        }
        grantable == self.claimants.values().map(BTreeSet::len).sum::<usize>()
    }

    /// Whether recomputing `ip`, claimed by `pod` (a grantable pod, among the claimants), would
    /// change nothing: it is `pod`'s alone, has no problems, and the accounts held there are
    /// exactly those its namespace's ready `services` grant it. `false` means "recompute" (a
    /// shared IP or a problem is always recomputed), never a wrong "unchanged". `probe` is a
    /// reused key, so the check allocates nothing.
    fn unchanged_at(
        &self,
        pod: &PodFacts,
        ip: IpAddr,
        services: Option<&NsServices>,
        probe: &mut AccountKey,
    ) -> bool {
        if self.claimants.get(&ip).is_none_or(|c| c.len() != 1)
            || self.problems_at.contains_key(&ip)
        {
            return false;
        }
        let held: &[String] = self.users_at.get(&ip).map_or(&[], Vec::as_slice);
        let Some(services) = services else {
            return held.is_empty();
        };
        let mut matched = 0;
        for ready in services.selecting_any(&pod.labels) {
            let user = &ready.spec.user;
            if self.policy.tenancy.account_reserved(user, ip) || !held.contains(user) {
                return false;
            }
            probe.user.clear();
            probe.user.push_str(user);
            probe.host = ip;
            match self.accounts.get(probe) {
                Some(account) if is_account_for(account, ready, pod) => matched += 1,
                _ => return false,
            }
        }
        matched == held.len()
    }

    /// Takes in one change; `cluster` is the view after it.
    pub fn apply(&mut self, cluster: &Cluster, delta: &Delta) {
        match delta {
            Delta::None => {}
            Delta::Services | Delta::Secrets => self.restage(cluster),
            Delta::Pods(pods) => {
                let mut ips = BTreeSet::new();
                for p in pods {
                    if let Some(ip) = p.before {
                        if let Some(set) = self.claimants.get_mut(&ip) {
                            set.remove(&p.id);
                            if set.is_empty() {
                                self.claimants.remove(&ip);
                            }
                        }
                        ips.insert(ip);
                    }
                    if let Some(ip) = p.after {
                        self.claimants.entry(ip).or_default().insert(p.id.clone());
                        ips.insert(ip);
                    }
                }
                for ip in ips {
                    self.recompute_ip(cluster, ip);
                }
            }
        }
    }

    /// The ledger's holders of each user name changed (tenancy rule 3); no-op when equal.
    pub fn set_held(&mut self, cluster: &Cluster, held: UserHolders) {
        if held != self.held {
            self.held = held;
            self.restage(cluster);
        }
    }

    /// [`IncrementalDesired::set_held`], returning exactly the accounts the new holders changed
    /// instead of adding them to the dirty set (which keeps the other changes it held).
    pub fn held_changes(&mut self, cluster: &Cluster, held: UserHolders) -> BTreeSet<AccountKey> {
        let earlier = std::mem::take(&mut self.dirty);
        self.set_held(cluster, held);
        std::mem::replace(&mut self.dirty, earlier)
    }

    /// Rebuilds the Service half; recomputes the pods of the namespaces it changed.
    fn restage(&mut self, cluster: &Cluster) {
        let fresh = ServiceStage::build(cluster, &self.policy, &self.held);
        let namespaces: BTreeSet<&String> = self
            .stage
            .namespaces
            .keys()
            .chain(fresh.namespaces.keys())
            .collect();
        let changed: Vec<String> = namespaces
            .into_iter()
            .filter(|ns| self.stage.services_in(ns) != fresh.services_in(ns))
            .cloned()
            .collect();
        self.stage = fresh;
        let ips: BTreeSet<IpAddr> = changed
            .iter()
            .flat_map(|ns| pods_in_namespace(cluster, ns).filter_map(|p| p.grantable_ip()))
            .collect();
        for ip in ips {
            self.recompute_ip(cluster, ip);
        }
    }

    /// Recomputes the accounts and problems at one IP from its claimants.
    fn recompute_ip(&mut self, cluster: &Cluster, ip: IpAddr) {
        let mut fresh = Desired::new();
        let mut problems = BTreeSet::new();
        if let Some(claimants) = self.claimants.get(&ip) {
            let shared = (claimants.len() > 1).then(|| claimant_names(claimants));
            for id in claimants {
                let (Some(pod), Some(services)) = (
                    cluster.pods.get(id),
                    self.stage.namespaces.get(&id.namespace),
                ) else {
                    continue;
                };
                match_pod(
                    services,
                    pod,
                    ip,
                    shared.as_deref(),
                    &self.policy.tenancy,
                    &mut fresh,
                    &mut problems,
                );
            }
        }
        for user in self.users_at.remove(&ip).unwrap_or_default() {
            let key = AccountKey { user, host: ip };
            if !fresh.contains_key(&key) && self.accounts.remove(&key).is_some() {
                self.dirty.insert(key);
            }
        }
        let mut users = Vec::with_capacity(fresh.len());
        for (key, account) in fresh {
            users.push(key.user.clone());
            if self.accounts.get(&key) != Some(&account) {
                self.dirty.insert(key.clone());
                self.accounts.insert(key, account);
            }
        }
        if !users.is_empty() {
            self.users_at.insert(ip, users);
        }
        if problems.is_empty() {
            self.problems_at.remove(&ip);
        } else {
            self.problems_at.insert(ip, problems.into_iter().collect());
        }
    }
}
