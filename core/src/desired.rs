//! Pure: the cluster facts and the operator's policy → the set of accounts that should exist.
//!
//! For every Service that opted in with valid annotations (see [`crate::validate`]) and whose
//! password Secret key resolves to an acceptable password, every pod in the Service's namespace
//! that its selector selects and whose [`crate::model::PodFacts::grantable_ip`] is `Some` gets
//! one [`DesiredAccount`] `'user'@'<pod IP>'`.
//!
//! Conflicts are resolved deterministically and reported as [`ServiceProblem`]s:
//! - **shared IP**: two grantable pods (in any namespaces) report the same IP — the view is
//!   stale or inconsistent, and we cannot tell which pod is really there. No account is granted
//!   at that IP until only one pod claims it; each service that selects one of them gets a problem.
//! - **same account wanted twice**: two services want the same `user@ip` (same user name, and
//!   both select the pod). The service with the lowest `namespace/name` keeps it; the others get
//!   a problem naming the winner.
//!
//! A Service whose annotations are invalid, or whose Secret or key is missing, or whose password
//! is unacceptable, gets one problem and no accounts; other services are unaffected.
//!
//! Tenancy ([`crate::tenancy`], rules 1–4) runs between validation and password resolution:
//! a never-claimable user is refused before its annotations are even validated, then the
//! namespace assignment, then one namespace per user name (given the ledger's holders, see
//! [`desired_state_with`]), and per pod a reserved account. Each refusal is a problem whose
//! [`ProblemKind`] says which rule.
//!
//! # Fingerprint
//!
//! [`fingerprint`] = hex(SHA-256(`"podgrant.io/password-fingerprint/v1\0" ‖ user ‖ "\0" ‖ password`)).
//! It is one-way: the ledger only needs to notice that a password changed, never to recover it.
//! The domain tag and the user name salt it, so it matches neither a plain SHA-256 of the password
//! nor the fingerprint of the same password for another user. It is no weaker than the hash MySQL
//! itself keeps in `mysql.user`, and lives in a schema only the operator's account can read.
//!
//! # Cost
//!
//! Two halves: the Service half ([`ServiceStage`]: validation, tenancy, passwords) depends on
//! Services and Secrets only; the pod half ([`match_pod`]) turns one grantable pod into its
//! accounts. Pods are visited per namespace (the cluster's pod map is ordered by namespace),
//! only in namespaces with a ready Service, and each pod meets only the Services indexed under
//! one of its `(label, value)` pairs. A fingerprint is computed once per (user, password).
//! [`crate::incremental`] reuses both halves to update the result per change instead.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::grant::{AccountKey, Desired, DesiredAccount, GrantSpec};
use crate::model::{Cluster, ObjectRef, PodFacts};
use crate::validate::{self, Policy};

/// Why a Service (or one of its accounts) was skipped; the label of `podgrant_grant_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// Bad annotations, a missing Secret or key, an unacceptable password.
    Invalid,
    /// Two pods at one IP, or the same account wanted by two Services.
    Conflict,
    /// Tenancy rule 2: the user or database is not assigned to the namespace.
    Namespace,
    /// Tenancy rule 3: another namespace owns the user name.
    UserOwned,
    /// Tenancy rules 1 and 4: a never-claimable user or reserved account.
    Reserved,
    /// The account exists in MySQL and is not podgrant's: left untouched.
    Foreign,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 6] = [
        Self::Invalid,
        Self::Conflict,
        Self::Namespace,
        Self::UserOwned,
        Self::Reserved,
        Self::Foreign,
    ];
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::Namespace => "namespace",
            Self::UserOwned => "user_owned",
            Self::Reserved => "reserved",
            Self::Foreign => "foreign",
        }
    }
    /// Whether this is a refusal (Event reason `GrantRefused`) rather than a broken Service
    /// (`InvalidGrantAnnotations`).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::Namespace | Self::UserOwned | Self::Reserved | Self::Foreign
        )
    }
}

/// A Service skipped because of its annotations, its Secret or tenancy; shown as an Event and a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProblem {
    pub service: ObjectRef,
    /// Human-readable, never containing a password.
    pub reason: String,
    pub kind: ProblemKind,
}

/// User name → the namespaces whose Services hold ledger accounts of it (tenancy rule 3).
pub type UserHolders = BTreeMap<String, BTreeSet<String>>;

/// The [`UserHolders`] of a ledger.
pub fn user_holders(owned: &BTreeMap<AccountKey, crate::grant::ObservedAccount>) -> UserHolders {
    let mut out = UserHolders::new();
    for (key, acc) in owned {
        out.entry(key.user.clone())
            .or_default()
            .insert(acc.owner.namespace.clone());
    }
    out
}

/// The ledger's [`UserHolders`], kept up to date from observations of some accounts at a time
/// (the engine's keyed observes between full resyncs), so that tenancy rule 3 sees the whole
/// ledger without re-reading it. [`HolderIndex::holders`] equals [`user_holders`] of the ledger.
#[derive(Debug, Clone, Default)]
pub struct HolderIndex {
    /// The owner namespace of each ledger account.
    owners: HashMap<AccountKey, String>,
    /// User name → namespace → how many ledger accounts of that user it holds.
    counts: BTreeMap<String, BTreeMap<String, usize>>,
}

impl HolderIndex {
    /// Forgets everything and takes in a whole ledger.
    pub fn replace_all(&mut self, owned: &BTreeMap<AccountKey, crate::grant::ObservedAccount>) {
        *self = Self::default();
        for (key, acc) in owned {
            self.insert(key, &acc.owner.namespace);
        }
    }

    /// Takes in a keyed observation: for each of `keys`, its ledger row in `owned` or none.
    pub fn update(
        &mut self,
        keys: &BTreeSet<AccountKey>,
        owned: &BTreeMap<AccountKey, crate::grant::ObservedAccount>,
    ) {
        for key in keys {
            self.remove(key);
            if let Some(acc) = owned.get(key) {
                self.insert(key, &acc.owner.namespace);
            }
        }
    }

    /// Takes in actions the store applied: a `Claim` records its owner, a `Release` forgets.
    pub fn record(&mut self, actions: &[crate::grant::Action]) {
        use crate::grant::Action;
        for a in actions {
            match a {
                Action::Claim { key, owner, .. } => {
                    self.remove(key);
                    self.insert(key, &owner.namespace);
                }
                Action::Release { key } => self.remove(key),
                _ => {}
            }
        }
    }

    fn remove(&mut self, key: &AccountKey) {
        if let Some(ns) = self.owners.remove(key) {
            if let Some(by_ns) = self.counts.get_mut(&key.user) {
                if let Some(n) = by_ns.get_mut(&ns) {
                    *n -= 1;
                    if *n == 0 {
                        by_ns.remove(&ns);
                    }
                }
                if by_ns.is_empty() {
                    self.counts.remove(&key.user);
                }
            }
        }
    }

    fn insert(&mut self, key: &AccountKey, ns: &str) {
        self.owners.insert(key.clone(), ns.to_string());
        *self
            .counts
            .entry(key.user.clone())
            .or_default()
            .entry(ns.to_string())
            .or_default() += 1;
    }

    /// Ledger accounts known.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// User name → the namespaces holding ledger accounts of it.
    pub fn holders(&self) -> UserHolders {
        self.counts
            .iter()
            .map(|(user, by_ns)| (user.clone(), by_ns.keys().cloned().collect()))
            .collect()
    }
}

/// The desired accounts and the services skipped on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub accounts: Desired,
    /// Sorted by service, then reason; at most one per (service, reason).
    pub problems: Vec<ServiceProblem>,
}

/// The one-way password fingerprint kept in the ledger (see the module doc).
pub fn fingerprint(user: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"podgrant.io/password-fingerprint/v1\0");
    h.update(user.as_bytes());
    h.update(b"\0");
    h.update(password.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[(b >> 4) as usize]));
        out.push(char::from(HEX[(b & 0xf) as usize]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A problem before it becomes a [`ServiceProblem`]: ordered, so a set deduplicates it.
pub(crate) type Problem = (ObjectRef, String, ProblemKind);

/// A Service that passed validation and tenancy rules 1–3, whose password resolved and whose
/// selector selects something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadyService {
    pub id: ObjectRef,
    /// Non-empty.
    pub selector: BTreeMap<String, String>,
    pub spec: GrantSpec,
    pub password: crate::model::Password,
    pub fingerprint: String,
}

/// The ready Services of one namespace, in `namespace/name` order, indexed by one
/// `(label, value)` pair of each selector (a pod carries one value per label, so a pod meets
/// each Service at most once through this index).
#[derive(Debug, Clone, Default)]
pub(crate) struct NsServices {
    pub services: Vec<ReadyService>,
    by_pair: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl NsServices {
    fn push(&mut self, ready: ReadyService) {
        let (k, v) = ready
            .selector
            .iter()
            .next()
            .expect("a ReadyService has a non-empty selector");
        self.by_pair
            .entry(k.clone())
            .or_default()
            .entry(v.clone())
            .or_default()
            .push(self.services.len());
        self.services.push(ready);
    }

    /// Indices of the Services that select a pod with these labels, in `namespace/name` order.
    fn selecting(&self, labels: &BTreeMap<String, String>) -> Vec<usize> {
        let mut out = Vec::new();
        for (k, v) in labels {
            if let Some(list) = self.by_pair.get(k).and_then(|by_v| by_v.get(v)) {
                out.extend(list.iter().copied().filter(|&i| {
                    let sel = &self.services[i].selector;
                    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                }));
            }
        }
        out.sort_unstable();
        out
    }

    /// The Services that select a pod with these labels, in no particular order and without
    /// allocating (each Service is indexed under one pair, and a pod has one value per label,
    /// so each is yielded at most once).
    pub(crate) fn selecting_any<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a ReadyService> + 'a {
        labels
            .iter()
            .filter_map(|(k, v)| self.by_pair.get(k)?.get(v))
            .flatten()
            .map(|&i| &self.services[i])
            .filter(|r| r.selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// The Service half of the desired state: validation, tenancy rules 1–3 and passwords, per
/// namespace. Depends on Services, Secrets, the policy and the ledger's holders — never on pods.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceStage {
    pub namespaces: BTreeMap<String, NsServices>,
    pub problems: BTreeSet<Problem>,
}

impl ServiceStage {
    pub fn build(cluster: &Cluster, policy: &Policy, held: &UserHolders) -> Self {
        use ProblemKind::*;
        let mut problems: BTreeSet<Problem> = BTreeSet::new();
        let tenancy = &policy.tenancy;
        let mut claims: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // One fingerprint per (user, password), however many Services share them.
        let mut fingerprints: HashMap<(String, String), String> = HashMap::new();

        // Validate services, apply tenancy rules 1 and 2, resolve their passwords.
        let mut ready: Vec<ReadyService> = Vec::new();
        for service in cluster.services.values() {
            if let Some(user) = service.annotations.get(validate::ANN_USER) {
                if let Some(why) = tenancy.never_claimable(user, &policy.reserved_users) {
                    problems.insert((
                        service.id.clone(),
                        format!("annotation {}: {why}; refused", validate::ANN_USER),
                        Reserved,
                    ));
                    continue;
                }
            }
            let spec = match validate::grant_spec(service, policy) {
                Ok(Some(spec)) => spec,
                Ok(None) => continue,
                Err(e) => {
                    problems.insert((service.id.clone(), e.to_string(), Invalid));
                    continue;
                }
            };
            if let Err(why) =
                tenancy.check_namespace(&service.id.namespace, &spec.user, &spec.database)
            {
                problems.insert((service.id.clone(), format!("{why}; refused"), Namespace));
                continue;
            }
            claims
                .entry(spec.user.clone())
                .or_default()
                .insert(service.id.namespace.clone());
            let Some(secret) = cluster.secrets.get(&spec.password_secret) else {
                problems.insert((
                    service.id.clone(),
                    format!("password Secret {} not found", spec.password_secret),
                    Invalid,
                ));
                continue;
            };
            let Some(password) = secret.data.get(&spec.password_key) else {
                problems.insert((
                    service.id.clone(),
                    format!(
                        "password Secret {} has no key {:?}",
                        spec.password_secret, spec.password_key
                    ),
                    Invalid,
                ));
                continue;
            };
            if let Err(reason) = validate::check_password(password.expose()) {
                problems.insert((
                    service.id.clone(),
                    format!(
                        "password in Secret {} key {:?} refused: {reason}",
                        spec.password_secret, spec.password_key
                    ),
                    Invalid,
                ));
                continue;
            }
            let Some(selector) = service.selector.clone().filter(|s| !s.is_empty()) else {
                continue; // selects no pods
            };
            let fingerprint = fingerprints
                .entry((spec.user.clone(), password.expose().to_string()))
                .or_insert_with(|| fingerprint(&spec.user, password.expose()))
                .clone();
            ready.push(ReadyService {
                id: service.id.clone(),
                selector,
                spec,
                password: password.clone(),
                fingerprint,
            });
        }

        // Tenancy rule 3: one namespace per user name.
        if tenancy.enforced {
            let owners = crate::tenancy::user_owners(&claims, held);
            ready.retain(|r| {
                let owner = &owners[&r.spec.user];
                if *owner == r.id.namespace {
                    return true;
                }
                problems.insert((
                    r.id.clone(),
                    format!(
                        "user {:?} belongs to namespace {owner:?} (a user name is owned by one namespace at a time); refused",
                        r.spec.user
                    ),
                    UserOwned,
                ));
                false
            });
        }

        let mut namespaces: BTreeMap<String, NsServices> = BTreeMap::new();
        for r in ready {
            namespaces
                .entry(r.id.namespace.clone())
                .or_default()
                .push(r);
        }
        Self {
            namespaces,
            problems,
        }
    }

    /// The ready Services of a namespace (empty when none).
    pub fn services_in(&self, ns: &str) -> &[ReadyService] {
        self.namespaces
            .get(ns)
            .map(|n| n.services.as_slice())
            .unwrap_or(&[])
    }
}

/// The pod half: the accounts (and problems) one grantable pod at `ip` yields, given its
/// namespace's ready Services. `shared` names every pod claiming `ip` when there are several.
/// Services are visited in `namespace/name` order, so the first holder of an account is the
/// lowest; the others get a problem naming it.
pub(crate) fn match_pod(
    services: &NsServices,
    pod: &PodFacts,
    ip: IpAddr,
    shared: Option<&str>,
    tenancy: &crate::tenancy::Tenancy,
    accounts: &mut Desired,
    problems: &mut BTreeSet<Problem>,
) {
    use ProblemKind::*;
    for i in services.selecting(&pod.labels) {
        let ready = &services.services[i];
        if let Some(names) = shared {
            problems.insert((
                ready.id.clone(),
                format!(
                    "pod IP {ip} is claimed by several pods ({names}); not granting it until one remains"
                ),
                Conflict,
            ));
            continue;
        }
        if tenancy.account_reserved(&ready.spec.user, ip) {
            problems.insert((
                ready.id.clone(),
                format!(
                    "account '{}'@'{ip}' is reserved by the operator's policy; refused",
                    ready.spec.user
                ),
                Reserved,
            ));
            continue;
        }
        let key = AccountKey {
            user: ready.spec.user.clone(),
            host: ip,
        };
        match accounts.entry(key) {
            Entry::Occupied(existing) => {
                if existing.get().owner != ready.id {
                    problems.insert((
                        ready.id.clone(),
                        format!(
                            "account {} is also wanted by Service {}, which keeps it (lowest namespace/name)",
                            existing.key(),
                            existing.get().owner
                        ),
                        Conflict,
                    ));
                }
            }
            Entry::Vacant(slot) => {
                let key = slot.key().clone();
                slot.insert(account_for(key, ready, pod));
            }
        }
    }
}

/// The account `ready` grants `pod` at `key` (whose user is `ready`'s).
fn account_for(key: AccountKey, ready: &ReadyService, pod: &PodFacts) -> DesiredAccount {
    DesiredAccount {
        key,
        owner: ready.id.clone(),
        pod: pod.id.clone(),
        database: ready.spec.database.clone(),
        privileges: ready.spec.privileges.clone(),
        password: ready.password.clone(),
        fingerprint: ready.fingerprint.clone(),
    }
}

/// Whether `account` is exactly what [`account_for`] would build for `ready` and `pod` (its
/// key aside), compared field by field without building anything.
pub(crate) fn is_account_for(
    account: &DesiredAccount,
    ready: &ReadyService,
    pod: &PodFacts,
) -> bool {
    let DesiredAccount {
        key: _,
        owner,
        pod: pod_id,
        database,
        privileges,
        password,
        fingerprint,
    } = account;
    *owner == ready.id
        && *pod_id == pod.id
        && *database == ready.spec.database
        && *privileges == ready.spec.privileges
        && *password == ready.password
        && *fingerprint == ready.fingerprint
}

/// The names of the pods claiming one IP, as a problem names them.
pub(crate) fn claimant_names<'a>(pods: impl IntoIterator<Item = &'a ObjectRef>) -> String {
    pods.into_iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Problems as the engine reports them: sorted by service, then reason.
pub(crate) fn into_service_problems(problems: BTreeSet<Problem>) -> Vec<ServiceProblem> {
    problems
        .into_iter()
        .map(|(service, reason, kind)| ServiceProblem {
            service,
            reason,
            kind,
        })
        .collect()
}

/// Computes the desired state from the cluster view, as if the ledger held nothing.
pub fn desired_state(cluster: &Cluster, policy: &Policy) -> DesiredState {
    desired_state_with(cluster, policy, &UserHolders::new())
}

/// Computes the desired state; `held` (from the ledger) decides who keeps a contested user name.
///
/// The reference computation: [`crate::incremental::IncrementalDesired`] keeps the same result
/// up to date change by change, and its property test compares the two.
pub fn desired_state_with(cluster: &Cluster, policy: &Policy, held: &UserHolders) -> DesiredState {
    let stage = ServiceStage::build(cluster, policy, held);
    let mut problems = stage.problems.clone();

    // Which IPs are claimed by more than one grantable pod (anywhere in the cluster)?
    let mut ip_owner: HashMap<IpAddr, &ObjectRef> = HashMap::with_capacity(cluster.pods.len());
    let mut shared_ips: HashMap<IpAddr, BTreeSet<&ObjectRef>> = HashMap::new();
    for pod in cluster.pods.values() {
        if let Some(ip) = pod.grantable_ip() {
            if let Some(first) = ip_owner.insert(ip, &pod.id) {
                let set = shared_ips.entry(ip).or_default();
                set.insert(first);
                set.insert(&pod.id);
            }
        }
    }
    let shared_names: HashMap<IpAddr, String> = shared_ips
        .into_iter()
        .map(|(ip, pods)| (ip, claimant_names(pods)))
        .collect();

    // Per namespace with ready Services, each grantable pod meets the Services selecting it.
    let mut accounts: Desired = BTreeMap::new();
    for (ns, services) in &stage.namespaces {
        for pod in pods_in_namespace(cluster, ns) {
            let Some(ip) = pod.grantable_ip() else {
                continue;
            };
            match_pod(
                services,
                pod,
                ip,
                shared_names.get(&ip).map(String::as_str),
                &policy.tenancy,
                &mut accounts,
                &mut problems,
            );
        }
    }

    DesiredState {
        accounts,
        problems: into_service_problems(problems),
    }
}

/// The pods of one namespace, using the map's (namespace, name) order.
pub(crate) fn pods_in_namespace<'a>(
    cluster: &'a Cluster,
    ns: &str,
) -> impl Iterator<Item = &'a PodFacts> {
    let start = ObjectRef::new(ns, "");
    let ns_owned = ns.to_string();
    cluster
        .pods
        .range(start..)
        .take_while(move |(id, _)| id.namespace == ns_owned)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Password, SecretFacts, ServiceFacts};
    use crate::tenancy::Tenancy;
    use crate::validate::{ANN_DATABASE, ANN_PASSWORD_SECRET, ANN_PRIVILEGES, ANN_USER};

    /// Tenancy off: the tests of joining and conflicts use names outside their namespaces.
    fn open() -> Policy {
        Policy::default().with_tenancy(Tenancy::off())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(ns: &str, name: &str, app: &str, ip: &str) -> PodFacts {
        PodFacts {
            id: ObjectRef::new(ns, name),
            uid: format!("uid-{name}"),
            labels: labels(&[("app", app), ("tier", "web")]),
            ip: ip.parse().ok(),
            running: true,
            ready: true,
            terminating: false,
            host_network: false,
        }
    }

    fn service(ns: &str, name: &str, app: &str, user: &str) -> ServiceFacts {
        ServiceFacts {
            id: ObjectRef::new(ns, name),
            uid: format!("uid-{name}"),
            selector: Some(labels(&[("app", app)])),
            annotations: labels(&[
                (ANN_USER, user),
                (ANN_DATABASE, "appdb"),
                (ANN_PRIVILEGES, "SELECT,INSERT"),
                (ANN_PASSWORD_SECRET, "pw/password"),
            ]),
        }
    }

    fn secret(ns: &str, pw: &str) -> SecretFacts {
        SecretFacts {
            id: ObjectRef::new(ns, "pw"),
            data: BTreeMap::from([("password".to_string(), Password::new(pw))]),
        }
    }

    fn cluster(
        services: Vec<ServiceFacts>,
        pods: Vec<PodFacts>,
        secrets: Vec<SecretFacts>,
    ) -> Cluster {
        Cluster {
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            pods: pods.into_iter().map(|p| (p.id.clone(), p)).collect(),
            secrets: secrets.into_iter().map(|s| (s.id.clone(), s)).collect(),
        }
    }

    fn key_of(user: &str, ip: &str) -> AccountKey {
        key(user, ip)
    }

    fn key(user: &str, ip: &str) -> AccountKey {
        AccountKey {
            user: user.into(),
            host: ip.parse().unwrap(),
        }
    }

    #[test]
    fn selected_ready_pods_get_accounts() {
        let mut not_ready = pod("a", "p3", "web", "10.0.0.3");
        not_ready.ready = false;
        let mut hostnet = pod("a", "p4", "web", "10.0.0.4");
        hostnet.host_network = true;
        let mut terminating = pod("a", "p5", "web", "10.0.0.5");
        terminating.terminating = true;
        let mut no_ip = pod("a", "p6", "web", "");
        no_ip.ip = None;
        let c = cluster(
            vec![service("a", "s", "web", "alice")],
            vec![
                pod("a", "p1", "web", "10.0.0.1"),
                pod("a", "p2", "other", "10.0.0.2"),
                not_ready,
                hostnet,
                terminating,
                no_ip,
                pod("b", "p7", "web", "10.0.0.7"), // other namespace
            ],
            vec![secret("a", "hunter2")],
        );
        let d = desired_state(&c, &open());
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let keys: Vec<_> = d.accounts.keys().cloned().collect();
        assert_eq!(keys, vec![key("alice", "10.0.0.1")]);
        let acc = &d.accounts[&key("alice", "10.0.0.1")];
        assert_eq!(acc.owner, ObjectRef::new("a", "s"));
        assert_eq!(acc.pod, ObjectRef::new("a", "p1"));
        assert_eq!(acc.database, "appdb");
        assert_eq!(acc.password.expose(), "hunter2");
        assert_eq!(acc.fingerprint, fingerprint("alice", "hunter2"));
    }

    #[test]
    fn fingerprint_is_one_way_and_salted() {
        let f = fingerprint("alice", "hunter2");
        assert_eq!(f.len(), 64);
        assert!(!f.contains("hunter2"));
        assert_ne!(f, fingerprint("bob", "hunter2"));
        assert_ne!(f, fingerprint("alice", "hunter3"));
        assert_eq!(f, fingerprint("alice", "hunter2"));
    }

    #[test]
    fn missing_secret_or_key_is_a_problem_for_that_service_only() {
        let mut s2 = service("a", "s2", "api", "bob");
        s2.annotations
            .insert(ANN_PASSWORD_SECRET.into(), "nope/password".into());
        let mut s3 = service("a", "s3", "api", "carol");
        s3.annotations
            .insert(ANN_PASSWORD_SECRET.into(), "pw/nokey".into());
        let c = cluster(
            vec![service("a", "s1", "web", "alice"), s2, s3],
            vec![
                pod("a", "p1", "web", "10.0.0.1"),
                pod("a", "p2", "api", "10.0.0.2"),
            ],
            vec![secret("a", "hunter2")],
        );
        let d = desired_state(&c, &open());
        assert_eq!(d.accounts.len(), 1);
        assert!(d.accounts.contains_key(&key("alice", "10.0.0.1")));
        assert_eq!(d.problems.len(), 2);
        assert_eq!(d.problems[0].service, ObjectRef::new("a", "s2"));
        assert!(d.problems[0].reason.contains("not found"));
        assert_eq!(d.problems[1].service, ObjectRef::new("a", "s3"));
        assert!(d.problems[1].reason.contains("no key"));
    }

    #[test]
    fn bad_annotation_or_password_skips_only_that_service() {
        let mut bad = service("a", "bad", "web", "alice");
        bad.annotations
            .insert(ANN_PRIVILEGES.into(), "ALL PRIVILEGES".into());
        let mut badpw = service("b", "badpw", "web", "bob");
        badpw.annotations.insert(ANN_USER.into(), "bob".into());
        let c = cluster(
            vec![bad, badpw, service("a", "good", "web", "carol")],
            vec![
                pod("a", "p1", "web", "10.0.0.1"),
                pod("b", "p2", "web", "10.0.0.2"),
            ],
            vec![secret("a", "ok"), secret("b", "bad\\pw")],
        );
        let d = desired_state(&c, &open());
        let keys: Vec<_> = d.accounts.keys().cloned().collect();
        assert_eq!(keys, vec![key("carol", "10.0.0.1")]);
        assert_eq!(d.problems.len(), 2);
        assert!(d.problems.iter().all(|p| !p.reason.contains("bad\\pw")));
        assert!(d.problems[0].reason.contains("allowlist"));
        assert!(d.problems[1].reason.contains("backslash"));
    }

    #[test]
    fn same_account_wanted_twice_lowest_service_wins() {
        let c = cluster(
            vec![
                service("a", "zeta", "web", "alice"),
                service("a", "alpha", "web", "alice"),
                service("a", "other", "web", "bob"),
            ],
            vec![pod("a", "p1", "web", "10.0.0.1")],
            vec![secret("a", "pw")],
        );
        let d = desired_state(&c, &open());
        assert_eq!(d.accounts.len(), 2);
        assert_eq!(
            d.accounts[&key("alice", "10.0.0.1")].owner,
            ObjectRef::new("a", "alpha")
        );
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].service, ObjectRef::new("a", "zeta"));
        assert!(d.problems[0].reason.contains("a/alpha"));
    }

    #[test]
    fn shared_ip_grants_nobody_and_is_reported() {
        let c = cluster(
            vec![
                service("a", "s", "web", "alice"),
                service("b", "t", "web", "bob"),
            ],
            vec![
                pod("a", "p1", "web", "10.0.0.1"),
                pod("b", "p2", "web", "10.0.0.1"),
                pod("a", "p3", "web", "10.0.0.3"),
            ],
            vec![secret("a", "pw"), secret("b", "pw")],
        );
        let d = desired_state(&c, &open());
        let keys: Vec<_> = d.accounts.keys().cloned().collect();
        assert_eq!(keys, vec![key("alice", "10.0.0.3")]);
        assert_eq!(d.problems.len(), 2);
        assert!(d.problems.iter().all(|p| p.reason.contains("10.0.0.1")));
        // A non-grantable pod at the same IP is no conflict.
        let mut c2 = c.clone();
        c2.pods.get_mut(&ObjectRef::new("b", "p2")).unwrap().ready = false;
        let d2 = desired_state(&c2, &open());
        assert_eq!(d2.accounts.len(), 2);
        assert!(d2.problems.is_empty());
    }

    #[test]
    fn multi_label_selectors_and_empty_selectors() {
        let mut s = service("a", "s", "web", "alice");
        s.selector = Some(labels(&[("app", "web"), ("tier", "web")]));
        let mut empty = service("a", "e", "web", "bob");
        empty.selector = Some(BTreeMap::new());
        let mut none = service("a", "n", "web", "carol");
        none.selector = None;
        let mut p2 = pod("a", "p2", "web", "10.0.0.2");
        p2.labels.insert("tier".into(), "db".into());
        let c = cluster(
            vec![s, empty, none],
            vec![pod("a", "p1", "web", "10.0.0.1"), p2],
            vec![secret("a", "pw")],
        );
        let d = desired_state(&c, &open());
        let keys: Vec<_> = d.accounts.keys().cloned().collect();
        assert_eq!(keys, vec![key("alice", "10.0.0.1")]);
    }

    #[test]
    fn deterministic_and_matches_naive_join() {
        // 3 namespaces x 40 pods x 5 services with overlapping selectors.
        let mut services = vec![];
        let mut pods = vec![];
        let mut secrets = vec![];
        for ns in ["n1", "n2", "n3"] {
            secrets.push(secret(ns, "pw"));
            for i in 0..5 {
                let mut s = service(
                    ns,
                    &format!("s{i}"),
                    &format!("app{}", i % 3),
                    &format!("u{i}"),
                );
                if i == 4 {
                    s.selector = Some(labels(&[("tier", "web")]));
                }
                services.push(s);
            }
            for j in 0..40 {
                let ip = format!("10.{}.0.{}", ns.as_bytes()[1], j);
                pods.push(pod(ns, &format!("p{j}"), &format!("app{}", j % 4), &ip));
            }
        }
        let c = cluster(services, pods, secrets);
        let d = desired_state(&c, &open());
        let mut naive = BTreeSet::new();
        for s in c.services.values() {
            for p in c.pods.values() {
                if p.id.namespace == s.id.namespace && s.selects(&p.labels) {
                    let spec = validate::grant_spec(s, &open()).unwrap().unwrap();
                    naive.insert(AccountKey {
                        user: spec.user,
                        host: p.ip.unwrap(),
                    });
                }
            }
        }
        let got: BTreeSet<_> = d.accounts.keys().cloned().collect();
        assert_eq!(got, naive);
        assert_eq!(d, desired_state(&c, &open()));
    }

    #[test]
    fn hostile_annotations_are_problems_and_grant_nothing() {
        let hostile: &[(&str, &str)] = &[
            (ANN_USER, "x'; DROP USER root; --"),
            (ANN_USER, "x`y"),
            (ANN_USER, "x\"y"),
            (ANN_USER, "x;y"),
            (ANN_USER, "x/*y*/"),
            (ANN_USER, "x#y"),
            (ANN_USER, "x\0y"),
            (ANN_USER, "аdmin"), // Cyrillic а
            (ANN_USER, "alice@localhost"),
            (ANN_USER, "alice%"),
            (ANN_USER, "localhost"),
            (ANN_DATABASE, "db`.*, mysql.* TO x; --"),
            (ANN_DATABASE, "%"),
            (ANN_DATABASE, "mysql"),
            (ANN_PRIVILEGES, "ALL PRIVILEGES"),
            (ANN_PRIVILEGES, "ALL"),
            (ANN_PRIVILEGES, "SELECT, SUPER"),
            (ANN_PRIVILEGES, "SELECT ON *.* TO x; --"),
            (ANN_PRIVILEGES, "GRANT OPTION"),
            (ANN_PRIVILEGES, "FILE"),
            (ANN_PASSWORD_SECRET, "other-ns/../pw"),
            ("podgrant.io/mysql-host", "%"),
        ];
        let long: String = "a".repeat(200);
        let mut cases: Vec<(&str, String)> =
            hostile.iter().map(|(k, v)| (*k, v.to_string())).collect();
        cases.push((ANN_USER, long.clone()));
        cases.push((ANN_DATABASE, long));
        for (key, value) in cases {
            let mut bad = service("a", "bad", "web", "mallory");
            bad.annotations.insert(key.to_string(), value.clone());
            let c = cluster(
                vec![bad, service("a", "good", "web", "carol")],
                vec![pod("a", "p1", "web", "10.0.0.1")],
                vec![secret("a", "pw")],
            );
            let d = desired_state(&c, &open());
            let keys: Vec<_> = d.accounts.keys().cloned().collect();
            assert_eq!(keys, vec![key_of("carol", "10.0.0.1")], "{key}={value:?}");
            assert_eq!(d.problems.len(), 1, "{key}={value:?}");
            assert_eq!(d.problems[0].service, ObjectRef::new("a", "bad"));
            assert!(
                d.problems[0].reason.contains(key),
                "{}",
                d.problems[0].reason
            );
        }
    }

    fn svc_db(ns: &str, name: &str, app: &str, user: &str, db: &str) -> ServiceFacts {
        let mut s = service(ns, name, app, user);
        s.annotations.insert(ANN_DATABASE.into(), db.into());
        s
    }

    fn kinds(d: &DesiredState) -> Vec<(String, ProblemKind)> {
        d.problems
            .iter()
            .map(|p| (p.service.to_string(), p.kind))
            .collect()
    }

    /// Issue 9 item 1: a Service in `other` got another team's database. Now refused by default.
    #[test]
    fn tenancy_confines_a_namespace_to_its_prefix_by_default() {
        let c = cluster(
            vec![
                svc_db("shop", "orders", "web", "shop_orders", "shop"),
                svc_db("other", "thief", "web", "other", "shop"),
                svc_db("other", "thief2", "api", "shop_orders", "other"),
                svc_db("team-a", "rep", "web", "team_a_reports", "team_a"),
            ],
            vec![
                pod("shop", "p1", "web", "10.0.0.1"),
                pod("other", "p2", "web", "10.0.0.2"),
                pod("other", "p3", "api", "10.0.0.3"),
                pod("team-a", "p4", "web", "10.0.0.4"),
            ],
            vec![
                secret("shop", "pw"),
                secret("other", "pw"),
                secret("team-a", "pw"),
            ],
        );
        let d = desired_state(&c, &Policy::default());
        let keys: Vec<_> = d.accounts.keys().cloned().collect();
        assert_eq!(
            keys,
            vec![
                key("shop_orders", "10.0.0.1"),
                key("team_a_reports", "10.0.0.4")
            ]
        );
        assert_eq!(
            kinds(&d),
            vec![
                ("other/thief".into(), ProblemKind::Namespace),
                ("other/thief2".into(), ProblemKind::Namespace)
            ]
        );
        assert!(
            d.problems[0].reason.contains("database \"shop\""),
            "{}",
            d.problems[0].reason
        );
        // With tenancy off, the same cluster grants all four.
        assert_eq!(desired_state(&c, &open()).accounts.len(), 4);
    }

    #[test]
    fn a_user_name_belongs_to_one_namespace_the_ledger_holder_or_the_lowest() {
        // `shop` and `shop-x` may both use `shop_x_api` under the prefix rule.
        let c = cluster(
            vec![
                svc_db("shop-x", "api", "web", "shop_x_api", "shop_x"),
                svc_db("shop", "api", "web", "shop_x_api", "shop"),
            ],
            vec![
                pod("shop", "p1", "web", "10.0.0.1"),
                pod("shop-x", "p2", "web", "10.0.0.2"),
            ],
            vec![secret("shop", "pw"), secret("shop-x", "pw")],
        );
        let d = desired_state(&c, &Policy::default());
        assert_eq!(
            d.accounts.keys().cloned().collect::<Vec<_>>(),
            vec![key("shop_x_api", "10.0.0.1")]
        );
        assert_eq!(
            kinds(&d),
            vec![("shop-x/api".into(), ProblemKind::UserOwned)]
        );
        assert!(d.problems[0].reason.contains("namespace \"shop\""));
        let held = UserHolders::from([(
            "shop_x_api".to_string(),
            BTreeSet::from(["shop-x".to_string()]),
        )]);
        let d = desired_state_with(&c, &Policy::default(), &held);
        assert_eq!(
            d.accounts.keys().cloned().collect::<Vec<_>>(),
            vec![key("shop_x_api", "10.0.0.2")]
        );
        assert_eq!(kinds(&d), vec![("shop/api".into(), ProblemKind::UserOwned)]);
    }

    #[test]
    fn never_claimable_users_and_reserved_accounts_are_refused_even_with_tenancy_off() {
        let tenancy = crate::tenancy::parse_policy(
            "p.json",
            r#"{"reserved": ["shop_dba", "shop_app@10.0.0.2"]}"#,
        )
        .unwrap();
        for t in [
            tenancy.clone(),
            Tenancy {
                enforced: false,
                ..tenancy
            },
        ] {
            let policy = Policy::default()
                .with_reserved_user("shop_engine")
                .with_tenancy(t);
            let c = cluster(
                vec![
                    service("shop", "a", "web", "shop_engine"),
                    service("shop", "b", "web", "root"),
                    service("shop", "c", "web", "mysql.sys"),
                    service("shop", "d", "web", "PUBLIC"),
                    service("shop", "e", "web", "shop_dba"),
                    svc_db("shop", "f", "web", "shop_app", "shop"),
                ],
                vec![
                    pod("shop", "p1", "web", "10.0.0.1"),
                    pod("shop", "p2", "web", "10.0.0.2"),
                ],
                vec![secret("shop", "pw")],
            );
            let d = desired_state(&c, &policy);
            assert_eq!(
                d.accounts.keys().cloned().collect::<Vec<_>>(),
                vec![key("shop_app", "10.0.0.1")]
            );
            let k = kinds(&d);
            assert_eq!(k.len(), 6, "{k:?}");
            assert!(
                k.iter().all(|(_, kind)| *kind == ProblemKind::Reserved),
                "{k:?}"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// The obvious O(services x pods) definition, to check the indexed one against.
        fn reference(c: &Cluster, policy: &Policy) -> Desired {
            let mut ip_count: HashMap<IpAddr, usize> = HashMap::new();
            for p in c.pods.values() {
                if let Some(ip) = p.grantable_ip() {
                    *ip_count.entry(ip).or_default() += 1;
                }
            }
            let mut out = Desired::new();
            for s in c.services.values() {
                let Ok(Some(spec)) = validate::grant_spec(s, policy) else {
                    continue;
                };
                let Some(pw) = c
                    .secrets
                    .get(&spec.password_secret)
                    .and_then(|sec| sec.data.get(&spec.password_key))
                else {
                    continue;
                };
                if validate::check_password(pw.expose()).is_err() {
                    continue;
                }
                for p in c.pods.values() {
                    let Some(ip) = p.grantable_ip() else { continue };
                    if p.id.namespace != s.id.namespace
                        || !s.selects(&p.labels)
                        || ip_count[&ip] > 1
                    {
                        continue;
                    }
                    let key = AccountKey {
                        user: spec.user.clone(),
                        host: ip,
                    };
                    out.entry(key.clone()).or_insert_with(|| DesiredAccount {
                        key,
                        owner: s.id.clone(),
                        pod: p.id.clone(),
                        database: spec.database.clone(),
                        privileges: spec.privileges.clone(),
                        password: pw.clone(),
                        fingerprint: fingerprint(&spec.user, pw.expose()),
                    });
                }
            }
            out
        }

        fn labels_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
            prop::collection::btree_map(
                prop::sample::select(vec!["app", "tier"]).prop_map(String::from),
                prop::sample::select(vec!["a", "b"]).prop_map(String::from),
                0..=2,
            )
        }

        fn cluster_strategy() -> impl Strategy<Value = Cluster> {
            let svc = (
                0..2usize,
                0..4usize,
                prop::option::of(labels_strategy()),
                prop::sample::select(vec!["alice", "bob", "ro'ot"]),
                any::<bool>(),
            );
            let pod_s = (0..2usize, labels_strategy(), 1u8..6, any::<[bool; 4]>());
            let secret_s = (0..2usize, prop::sample::select(vec!["pw", "bad\\pw", "ok"]));
            (
                prop::collection::vec(svc, 0..6),
                prop::collection::vec(pod_s, 0..12),
                prop::collection::vec(secret_s, 0..2),
            )
                .prop_map(|(svcs, pods, secrets)| {
                    let ns = |i: usize| ["n1", "n2"][i].to_string();
                    let mut c = Cluster::default();
                    for (n, i, sel, user, same_secret) in svcs {
                        let mut s = service(&ns(n), &format!("s{i}"), "a", user);
                        s.selector = sel;
                        if !same_secret {
                            s.annotations
                                .insert(ANN_PASSWORD_SECRET.into(), "pw/other".into());
                        }
                        c.services.insert(s.id.clone(), s);
                    }
                    for (j, (n, labels, ip, flags)) in pods.into_iter().enumerate() {
                        let mut p = pod(&ns(n), &format!("p{j}"), "a", &format!("10.0.0.{ip}"));
                        p.labels = labels;
                        p.running = flags[0] || flags[3];
                        p.ready = flags[1] || flags[3];
                        p.terminating = flags[2] && !flags[3];
                        c.pods.insert(p.id.clone(), p);
                    }
                    for (n, pw) in secrets {
                        let mut sec = secret(&ns(n), pw);
                        sec.data.insert("other".into(), Password::new("other-pw"));
                        c.secrets.insert(sec.id.clone(), sec);
                    }
                    c
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn indexed_matches_reference(c in cluster_strategy()) {
                let policy = open();
                let d = desired_state(&c, &policy);
                prop_assert_eq!(&d.accounts, &reference(&c, &policy));
                prop_assert_eq!(&d, &desired_state(&c, &policy));
                for p in &d.problems {
                    prop_assert!(c.services.contains_key(&p.service));
                    prop_assert!(!p.reason.contains("bad\\pw"));
                }
            }

            /// Tenancy enforced, checked against its definition: what is granted is what tenancy
            /// off grants, restricted to names assigned to the owner's namespace and to one
            /// namespace per user name (the ledger holder, else the lowest claimant); every
            /// Service left out for tenancy has a problem saying so.
            #[test]
            fn tenancy_grants_the_open_result_restricted_by_the_rules(
                placed in prop::collection::vec((0..3usize, 0..3usize, 0..5usize, 0..4usize), 0..8),
                held_ns in prop::option::of(0..3usize),
            ) {
                let nss = ["shop", "shop-x", "other"];
                let users = ["shop", "shop_x_api", "other", "other_api", "root"];
                let dbs = ["shop", "shop_x", "other", "shared"];
                let mut c = Cluster::default();
                for (i, (n, svc_app, u, d)) in placed.iter().enumerate() {
                    let ns = nss[*n];
                    let s = svc_db(ns, &format!("s{i}"), &format!("app{svc_app}"), users[*u], dbs[*d]);
                    c.services.insert(s.id.clone(), s);
                    let sec = secret(ns, "pw");
                    c.secrets.insert(sec.id.clone(), sec);
                }
                for (j, ns) in nss.iter().enumerate() {
                    for a in 0..3 {
                        let p = pod(ns, &format!("p{a}"), &format!("app{a}"), &format!("10.0.{j}.{a}"));
                        c.pods.insert(p.id.clone(), p);
                    }
                }
                let held: UserHolders = held_ns
                    .map(|n| UserHolders::from([("shop_x_api".to_string(), BTreeSet::from([nss[n].to_string()]))]))
                    .unwrap_or_default();
                let policy = Policy::default();
                let d = desired_state_with(&c, &policy, &held);
                let o = desired_state(&c, &open());
                // Claimants per user: namespaces with a Service passing rules 1 and 2.
                let mut claims: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
                for s in c.services.values() {
                    let (u, db) = (&s.annotations[ANN_USER], &s.annotations[ANN_DATABASE]);
                    if policy.tenancy.never_claimable(u, &policy.reserved_users).is_none()
                        && policy.tenancy.check_namespace(&s.id.namespace, u, db).is_ok()
                    {
                        claims.entry(u.as_str()).or_default().insert(s.id.namespace.as_str());
                    }
                }
                let owner = |u: &str| -> Option<&str> {
                    let cl = claims.get(u)?;
                    held.get(u)
                        .and_then(|h| cl.iter().find(|ns| h.contains(**ns)).copied())
                        .or_else(|| cl.iter().next().copied())
                };
                let expected: Desired = o
                    .accounts
                    .iter()
                    .filter(|(k, a)| {
                        let ns = a.owner.namespace.as_str();
                        policy.tenancy.check_namespace(ns, &k.user, &a.database).is_ok()
                            && owner(&k.user) == Some(ns)
                    })
                    .map(|(k, a)| (k.clone(), a.clone()))
                    .collect();
                for (k, a) in &d.accounts {
                    prop_assert!(policy.tenancy.check_namespace(&a.owner.namespace, &k.user, &a.database).is_ok());
                    prop_assert_eq!(owner(&k.user), Some(a.owner.namespace.as_str()));
                }
                for (k, a) in &expected {
                    prop_assert_eq!(d.accounts.get(k).map(|x| &x.owner), Some(&a.owner));
                }
                for s in c.services.values() {
                    let granted = d.accounts.values().any(|a| a.owner == s.id);
                    let refused = d.problems.iter().any(|p| p.service == s.id);
                    let selects_any = c.pods.values().any(|p| p.id.namespace == s.id.namespace && s.selects(&p.labels));
                    prop_assert!(granted || refused || !selects_any, "{} neither granted nor refused", s.id);
                }
            }
        }
    }

    /// 100k pods x 100 services in 10 namespaces; prints the time (no assertion on it).
    /// `cargo test -p podgrant-core --release --lib -- --ignored --nocapture desired_state_scale`
    #[test]
    #[ignore]
    fn desired_state_scale() {
        let mut services = vec![];
        let mut pods = vec![];
        let mut secrets = vec![];
        for n in 0..10 {
            let ns = format!("ns{n}");
            secrets.push(secret(&ns, "pw"));
            for s in 0..10 {
                services.push(service(
                    &ns,
                    &format!("s{s}"),
                    &format!("app{s}"),
                    &format!("u{s}"),
                ));
            }
            for p in 0..10_000u32 {
                let ip = format!("10.{n}.{}.{}", p / 250, p % 250 + 1);
                pods.push(pod(&ns, &format!("p{p}"), &format!("app{}", p % 10), &ip));
            }
        }
        let c = cluster(services, pods, secrets);
        let t = std::time::Instant::now();
        let d = desired_state(&c, &open());
        let took = t.elapsed();
        assert_eq!(d.accounts.len(), 100_000);
        assert!(d.problems.is_empty());
        println!("MEASURE desired_state 100k pods x 100 services: {took:?}");
    }

    /// The labels of `podgrant_grant_refusals_total{reason}` and of the "service skipped" log
    /// line: dashboards and alerts select on them, so they are pinned.
    #[test]
    fn problem_kinds_have_their_stable_metric_labels() {
        let labels: Vec<&str> = ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            labels,
            [
                "invalid",
                "conflict",
                "namespace",
                "user_owned",
                "reserved",
                "foreign"
            ]
        );
    }

    /// Tenancy rule 3's input: every namespace whose Services hold accounts of a user.
    #[test]
    fn user_holders_names_every_namespace_holding_each_user() {
        let held = |user: &str, ip: &str, ns: &str| {
            let k = key(user, ip);
            let account = crate::grant::ObservedAccount {
                key: k.clone(),
                owner: ObjectRef::new(ns, "svc"),
                fingerprint: "f".into(),
                exists: true,
                grants: BTreeMap::new(),
                credential: Default::default(),
            };
            (k, account)
        };
        let owned = BTreeMap::from([
            held("shop_app", "10.0.0.1", "shop"),
            held("shop_app", "10.0.0.2", "shop-eu"),
            held("shop_app", "10.0.0.3", "shop"),
            held("blog_ro", "10.0.0.4", "blog"),
        ]);
        let names = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            user_holders(&owned),
            UserHolders::from([
                ("blog_ro".to_string(), names(&["blog"])),
                ("shop_app".to_string(), names(&["shop", "shop-eu"])),
            ])
        );
        assert!(user_holders(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn holder_index_follows_keyed_observations_like_a_full_read() {
        use crate::grant::{Credential, ObservedAccount};
        let acc = |user: &str, ip: &str, ns: &str| {
            let key = key(user, ip);
            (
                key.clone(),
                ObservedAccount {
                    key,
                    owner: ObjectRef::new(ns, "svc"),
                    fingerprint: String::new(),
                    exists: true,
                    grants: BTreeMap::new(),
                    credential: Credential::Unknown,
                },
            )
        };
        let mut ledger: BTreeMap<_, _> = [
            acc("u", "10.0.0.1", "a"),
            acc("u", "10.0.0.2", "a"),
            acc("u", "10.0.0.3", "b"),
            acc("v", "10.0.0.1", "a"),
        ]
        .into();
        let mut ix = HolderIndex::default();
        ix.replace_all(&ledger);
        assert_eq!(ix.holders(), user_holders(&ledger));
        // u@.1 released, u@.3 moves to a, w@.4 claimed by c; u@.2 observed unchanged.
        let keys: BTreeSet<AccountKey> = [
            key("u", "10.0.0.1"),
            key("u", "10.0.0.2"),
            key("u", "10.0.0.3"),
            key("w", "10.0.0.4"),
        ]
        .into();
        ledger.remove(&key("u", "10.0.0.1"));
        ledger.extend([acc("u", "10.0.0.3", "a"), acc("w", "10.0.0.4", "c")]);
        let seen: BTreeMap<_, _> = ledger
            .iter()
            .filter(|(k, _)| keys.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ix.update(&keys, &seen);
        assert_eq!(ix.holders(), user_holders(&ledger));
        assert_eq!(ix.holders()["u"], BTreeSet::from(["a".to_string()]));
        // Everything of v released.
        ledger.remove(&key("v", "10.0.0.1"));
        ix.update(&BTreeSet::from([key("v", "10.0.0.1")]), &BTreeMap::new());
        assert_eq!(ix.holders(), user_holders(&ledger));
        assert!(!ix.holders().contains_key("v"));
        // Applied actions: a Claim records its owner (also over an old one), a Release forgets.
        use crate::grant::Action;
        ix.record(&[
            Action::Claim {
                key: key("u", "10.0.0.2"),
                owner: ObjectRef::new("d", "svc"),
                fingerprint: String::new(),
            },
            Action::Release {
                key: key("w", "10.0.0.4"),
            },
            Action::Drop {
                key: key("u", "10.0.0.3"),
            },
        ]);
        assert_eq!(
            ix.holders()["u"],
            BTreeSet::from(["a".to_string(), "d".to_string()])
        );
        assert!(!ix.holders().contains_key("w"));
        assert_eq!(ix.len(), 2);
    }
}
