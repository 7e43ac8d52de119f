//! The independent oracle: the accounts the README's rules imply, computed from the sim's raw JSON with no code from core's decisions.
//!
//! The engine learns the cluster through watches that the sim may break on purpose; the harness
//! reads the sim's store directly (no HTTP, no faults). This module turns those stored objects
//! (plain [`serde_json::Value`]s) into the set of accounts that must exist, by its own reading of
//! the rules in `README.md` and `core/src/validate.rs`'s module doc — it never calls core's
//! `pod_facts`, `desired_state`, `grantable_ip`, `selects`, `validate::*` or the planner, so a
//! bug there moves the engine but not the expectation. Only core's plain data types
//! ([`AccountKey`], [`ObjectRef`]) are shared, to compare with the store.
//!
//! # Rules, as implemented here
//!
//! | rule | reading |
//! |---|---|
//! | pod qualifies | `status.phase == "Running"` ∧ a `Ready` condition with status `"True"` ∧ no `metadata.deletionTimestamp` ∧ `spec.hostNetwork` not `true` ∧ a parseable `status.podIP` |
//! | one claimant per IP | two qualifying pods (any namespaces) with one IP: no account at that IP |
//! | opted in | the Service carries `podgrant.io/mysql-user` |
//! | valid | no unknown `podgrant.io/mysql-*` key; user `^[a-z][a-z0-9_]{0,31}$`, not reserved; database `^[a-z][a-z0-9_]{0,63}$`, not a system database; privileges a comma list, each normalised (trim, collapse spaces, upper-case), non-empty, no duplicates, all in [`DEFAULT_ALLOWLIST`]; secret `name/key` or `name` + `podgrant.io/mysql-password-key` (not both); the Secret (same namespace) has the key, and the password is 1–256 characters with no control character and no `\` |
//! | tenancy (switchable) | in namespace `N`, with `p` = `N` with `-` → `_`: user and database are `p` or start with `p_` |
//! | selected | a non-empty selector whose every pair is among the pod's labels; same namespace |
//! | same `user@ip` twice | the lowest `namespace/name` keeps it |
//! | a user claimed by several namespaces (tenancy on) | who wins is not predicted; exclusivity is asserted instead (see [`crate::invariants`]) |
//! | foreign accounts | an account at a key the scenario created without the ledger is never adopted: not expected |

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use base64::Engine as _;
use podgrant_core::grant::AccountKey;
use podgrant_core::model::{ObjectRef, Password};
use podgrant_sim::Sim;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Errors reading the truth.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("the sim holds a {kind} without metadata.name/namespace")]
    Decode { kind: &'static str },
}

/// The privileges a Service may ask for (the README's default allowlist), as data.
pub const DEFAULT_ALLOWLIST: [&str; 18] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "TRIGGER",
    "REFERENCES",
    "EVENT",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
];

/// User names never claimable (compared case-insensitively), besides `mysql.*` and the
/// engine's own login user.
pub const RESERVED_USERS: [&str; 8] = [
    "root",
    "mysql",
    "mariadb",
    "mariadb.sys",
    "public",
    "admin",
    "podgrant",
    "healthcheck",
];

/// Databases never granted on (the ledger schema is added by [`OracleConfig::ledger_schema`]).
pub const SYSTEM_DATABASES: [&str; 5] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "podgrant",
];

const KNOWN_KEYS: [&str; 5] = [
    "podgrant.io/mysql-user",
    "podgrant.io/mysql-database",
    "podgrant.io/mysql-privileges",
    "podgrant.io/mysql-password-secret",
    "podgrant.io/mysql-password-key",
];

/// How a scenario asks the oracle to read the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OracleOptions {
    /// Namespace tenancy of user and database names (on by default).
    pub tenancy: bool,
}

impl Default for OracleOptions {
    fn default() -> Self {
        Self { tenancy: true }
    }
}

/// The oracle's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleConfig {
    pub tenancy: bool,
    /// The user the engine logs in with (never claimable).
    pub engine_user: Option<String>,
    /// A ledger schema other than `podgrant` (never granted on).
    pub ledger_schema: Option<String>,
    pub allowlist: BTreeSet<String>,
}

impl Default for OracleConfig {
    fn default() -> Self {
        Self {
            tenancy: true,
            engine_user: None,
            ledger_schema: None,
            allowlist: DEFAULT_ALLOWLIST.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl OracleConfig {
    pub fn with_options(o: &OracleOptions) -> Self {
        Self {
            tenancy: o.tenancy,
            ..Self::default()
        }
    }
    pub fn without_tenancy() -> Self {
        Self {
            tenancy: false,
            ..Self::default()
        }
    }
}

/// A pod as the oracle reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub id: ObjectRef,
    pub labels: BTreeMap<String, String>,
    pub ip: Option<IpAddr>,
    /// Why the pod does not qualify (empty: it does, selection aside).
    pub disqualified: Vec<&'static str>,
}

impl PodView {
    pub fn qualifies(&self) -> bool {
        self.disqualified.is_empty()
    }
}

/// A Service that opted in, as the oracle reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub id: ObjectRef,
    /// `None`: absent or empty (selects nothing).
    pub selector: Option<BTreeMap<String, String>>,
    /// The annotation values, when present.
    pub annotations: BTreeMap<String, String>,
}

/// What a valid Service grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user: String,
    pub database: String,
    pub privileges: BTreeSet<String>,
    pub password: Password,
}

/// The cluster as stored in the sim: pods, opted-in services, secrets' decoded data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    pub pods: Vec<PodView>,
    pub services: BTreeMap<ObjectRef, ServiceView>,
    pub secrets: BTreeMap<ObjectRef, BTreeMap<String, Password>>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn object_ref(kind: &'static str, v: &Value) -> Result<ObjectRef, TruthError> {
    match (
        str_at(v, &["metadata", "namespace"]),
        str_at(v, &["metadata", "name"]),
    ) {
        (Some(ns), Some(name)) => Ok(ObjectRef::new(ns, name)),
        _ => Err(TruthError::Decode { kind }),
    }
}

/// Reads one pod's raw JSON.
pub fn read_pod(v: &Value) -> Result<PodView, TruthError> {
    let id = object_ref("Pod", v)?;
    let mut disqualified = Vec::new();
    if str_at(v, &["status", "phase"]) != Some("Running") {
        disqualified.push("not Running");
    }
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    if !ready {
        disqualified.push("not Ready");
    }
    if v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        disqualified.push("terminating");
    }
    if v.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        disqualified.push("hostNetwork");
    }
    let ip = str_at(v, &["status", "podIP"]).and_then(|s| s.parse::<IpAddr>().ok());
    if ip.is_none() {
        disqualified.push("no IP");
    }
    Ok(PodView {
        id,
        labels: string_map(v.pointer("/metadata/labels")),
        ip,
        disqualified,
    })
}

impl Truth {
    /// Reads raw objects (as the sim stores them).
    pub fn from_objects(
        pods: &[Value],
        services: &[Value],
        secrets: &[Value],
    ) -> Result<Self, TruthError> {
        let mut t = Truth::default();
        for v in pods {
            t.pods.push(read_pod(v)?);
        }
        for v in services {
            let id = object_ref("Service", v)?;
            let annotations: BTreeMap<String, String> =
                string_map(v.pointer("/metadata/annotations"))
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("podgrant.io/"))
                    .collect();
            if !annotations.contains_key("podgrant.io/mysql-user") {
                continue;
            }
            let selector = Some(string_map(v.pointer("/spec/selector"))).filter(|s| !s.is_empty());
            t.services.insert(
                id.clone(),
                ServiceView {
                    id,
                    selector,
                    annotations,
                },
            );
        }
        for v in secrets {
            let id = object_ref("Secret", v)?;
            let data = v
                .get("data")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(v.as_str()?)
                                .ok()?;
                            Some((k.clone(), Password::new(String::from_utf8(bytes).ok()?)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            t.secrets.insert(id, data);
        }
        Ok(t)
    }

    /// Reads the sim's store.
    pub fn from_sim(sim: &Sim) -> Result<Self, TruthError> {
        Self::from_objects(
            &sim.list("pods", None),
            &sim.list("services", None),
            &sim.list("secrets", None),
        )
    }
}

fn identifier_ok(s: &str, max_rest: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= max_rest + 1
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

fn dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && !b[0].is_ascii_uppercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !b[b.len() - 1].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
}

fn secret_key_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

/// The tenancy prefix of a namespace.
pub fn tenant_prefix(namespace: &str) -> String {
    namespace.replace('-', "_")
}

fn tenant_ok(namespace: &str, name: &str) -> bool {
    let p = tenant_prefix(namespace);
    name == p || name.strip_prefix(&p).is_some_and(|r| r.starts_with('_'))
}

impl OracleConfig {
    /// Whether `user` may never be claimed.
    pub fn reserved(&self, user: &str) -> bool {
        let lower = user.to_ascii_lowercase();
        RESERVED_USERS.contains(&lower.as_str())
            || lower.starts_with("mysql.")
            || self
                .engine_user
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(user))
    }

    fn privileges(&self, raw: &str) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for item in raw.split(',') {
            let words: Vec<&str> = item.split_whitespace().collect();
            if words.is_empty() {
                return Err("an empty privilege".into());
            }
            if !words
                .iter()
                .all(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
            {
                return Err("a privilege that is not letters".into());
            }
            let norm = words.join(" ").to_ascii_uppercase();
            if !self.allowlist.contains(&norm) {
                return Err(format!("{norm} is not allowed"));
            }
            if !out.insert(norm) {
                return Err("a duplicate privilege".into());
            }
        }
        Ok(out)
    }

    /// A Service's claim, or why it has none (strict: from the documented rules).
    pub fn claim(&self, truth: &Truth, svc: &ServiceView) -> Result<Claim, String> {
        let a = &svc.annotations;
        if let Some(k) = a
            .keys()
            .find(|k| k.starts_with("podgrant.io/mysql-") && !KNOWN_KEYS.contains(&k.as_str()))
        {
            return Err(format!("unknown annotation {k}"));
        }
        let get = |k: &str| a.get(k).ok_or_else(|| format!("{k} missing"));
        let user = get("podgrant.io/mysql-user")?;
        if !identifier_ok(user, 31) {
            return Err("user name is not ^[a-z][a-z0-9_]{0,31}$".into());
        }
        if self.reserved(user) {
            return Err(format!("user {user} is reserved"));
        }
        let database = get("podgrant.io/mysql-database")?;
        if !identifier_ok(database, 63) {
            return Err("database name is not ^[a-z][a-z0-9_]{0,63}$".into());
        }
        if SYSTEM_DATABASES.contains(&database.as_str())
            || self.ledger_schema.as_deref() == Some(database.as_str())
        {
            return Err(format!("database {database} is a system database"));
        }
        if self.tenancy && !(tenant_ok(&svc.id.namespace, user)) {
            return Err(format!(
                "user {user} is outside namespace {}'s names",
                svc.id.namespace
            ));
        }
        if self.tenancy && !(tenant_ok(&svc.id.namespace, database)) {
            return Err(format!(
                "database {database} is outside namespace {}'s names",
                svc.id.namespace
            ));
        }
        let privileges = self.privileges(get("podgrant.io/mysql-privileges")?)?;
        let secret = get("podgrant.io/mysql-password-secret")?;
        let (name, key) = match (
            secret.split_once('/'),
            a.get("podgrant.io/mysql-password-key"),
        ) {
            (Some(_), Some(_)) => return Err("secret key given twice".into()),
            (Some((n, k)), None) => (n, k),
            (None, Some(k)) => (secret.as_str(), k.as_str()),
            (None, None) => return Err("no secret key".into()),
        };
        if !dns_subdomain(name) || !secret_key_ok(key) {
            return Err("bad secret name or key".into());
        }
        let password = truth
            .secrets
            .get(&ObjectRef::new(&svc.id.namespace, name))
            .ok_or("secret not found")?
            .get(key)
            .ok_or("secret key not found")?;
        let pw = password.expose();
        let n = pw.chars().count();
        if n == 0 || n > 256 || pw.chars().any(|c| c.is_control() || c == '\\') {
            return Err("password refused".into());
        }
        Ok(Claim {
            user: user.clone(),
            database: database.clone(),
            privileges,
            password: password.clone(),
        })
    }
}

/// Whether `selector` selects `labels` (empty/absent selects nothing).
pub fn selected(
    selector: Option<&BTreeMap<String, String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// One account the oracle expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedAccount {
    pub owner: ObjectRef,
    pub pod: ObjectRef,
    pub database: String,
    pub privileges: BTreeSet<String>,
    pub password: Password,
}

impl ExpectedAccount {
    /// The ledger fingerprint, computed from its documented definition (`core/src/desired.rs`).
    pub fn fingerprint(&self, user: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"podgrant.io/password-fingerprint/v1\0");
        h.update(user.as_bytes());
        h.update(b"\0");
        h.update(self.password.expose().as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What the oracle expects of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Exactly these owned accounts, after convergence (contested users excluded).
    pub accounts: BTreeMap<AccountKey, ExpectedAccount>,
    /// Every (account, owner) pair some valid Service may hold right now: safety's yardstick.
    pub allowed: BTreeMap<AccountKey, BTreeSet<ObjectRef>>,
    /// Users claimed by valid Services of more than one namespace (tenancy on).
    pub contested_users: BTreeSet<String>,
    /// Why each opted-in Service has no claim.
    pub invalid: BTreeMap<ObjectRef, String>,
    pub allowlist: BTreeSet<String>,
    pub tenancy: bool,
}

/// The oracle: truth (+ the accounts foreign to the ledger) → expectation.
pub fn expect(cfg: &OracleConfig, truth: &Truth, foreign: &BTreeSet<AccountKey>) -> Expected {
    let mut e = Expected {
        allowlist: cfg.allowlist.clone(),
        tenancy: cfg.tenancy,
        ..Expected::default()
    };
    let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for p in truth.pods.iter().filter(|p| p.qualifies()) {
        *per_ip
            .entry(p.ip.expect("a qualifying pod has an IP"))
            .or_default() += 1;
    }
    let mut user_namespaces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Services in namespace/name order: the first to want a key keeps it.
    for svc in truth.services.values() {
        let claim = match cfg.claim(truth, svc) {
            Ok(c) => c,
            Err(why) => {
                e.invalid.insert(svc.id.clone(), why);
                continue;
            }
        };
        user_namespaces
            .entry(claim.user.clone())
            .or_default()
            .insert(svc.id.namespace.clone());
        for pod in &truth.pods {
            let Some(ip) = pod.ip else { continue };
            if !pod.qualifies()
                || pod.id.namespace != svc.id.namespace
                || per_ip.get(&ip) != Some(&1)
                || !selected(svc.selector.as_ref(), &pod.labels)
            {
                continue;
            }
            let key = AccountKey {
                user: claim.user.clone(),
                host: ip,
            };
            if foreign.contains(&key) {
                continue;
            }
            e.allowed
                .entry(key.clone())
                .or_default()
                .insert(svc.id.clone());
            e.accounts.entry(key).or_insert_with(|| ExpectedAccount {
                owner: svc.id.clone(),
                pod: pod.id.clone(),
                database: claim.database.clone(),
                privileges: claim.privileges.clone(),
                password: claim.password.clone(),
            });
        }
    }
    if cfg.tenancy {
        e.contested_users = user_namespaces
            .into_iter()
            .filter(|(_, ns)| ns.len() > 1)
            .map(|(u, _)| u)
            .collect();
        e.accounts
            .retain(|k, _| !e.contested_users.contains(&k.user));
    }
    e
}

impl Expected {
    /// Why `owner` may not hold `key` right now (`None`: it may).
    pub fn unsafe_reason(
        &self,
        truth: &Truth,
        owner: &ObjectRef,
        key: &AccountKey,
    ) -> Option<String> {
        if self.allowed.get(key).is_some_and(|o| o.contains(owner)) {
            return None;
        }
        if !truth.services.contains_key(owner) {
            return Some(format!("{owner} does not exist or is not opted in"));
        }
        if let Some(why) = self.invalid.get(owner) {
            return Some(format!("{owner} is invalid: {why}"));
        }
        let here: Vec<&PodView> = truth
            .pods
            .iter()
            .filter(|p| p.ip == Some(key.host))
            .collect();
        if here.is_empty() {
            return Some(format!("no pod has IP {}", key.host));
        }
        let qualifying: Vec<&&PodView> = here.iter().filter(|p| p.qualifies()).collect();
        if qualifying.is_empty() {
            let why: Vec<String> = here
                .iter()
                .map(|p| format!("{} {}", p.id, p.disqualified.join("+")))
                .collect();
            return Some(format!(
                "the pod at {} does not qualify ({})",
                key.host,
                why.join(", ")
            ));
        }
        if qualifying.len() > 1 {
            return Some(format!(
                "{} qualifying pods share IP {}",
                qualifying.len(),
                key.host
            ));
        }
        Some(format!(
            "the pod at {} ({}) is not selected by {owner} for user {}",
            key.host, qualifying[0].id, key.user
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Value {
        json!({
            "metadata": {"namespace": ns, "name": name, "labels": {"app": app, "tier": "web"}},
            "spec": {},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    fn service(ns: &str, name: &str, user: &str, privs: &str) -> Value {
        json!({
            "metadata": {"namespace": ns, "name": name, "annotations": {
                "podgrant.io/mysql-user": user,
                "podgrant.io/mysql-database": user,
                "podgrant.io/mysql-privileges": privs,
                "podgrant.io/mysql-password-secret": "db/password"}},
            "spec": {"selector": {"app": "a", "tier": "web"}}
        })
    }

    fn secret(ns: &str) -> Value {
        json!({"metadata": {"namespace": ns, "name": "db"}, "data": {"password": "cHc="}})
    }

    fn expect_of(pods: Vec<Value>, svcs: Vec<Value>, tenancy: bool) -> Expected {
        let t = Truth::from_objects(&pods, &svcs, &[secret("shop"), secret("shop-eu")]).unwrap();
        let cfg = OracleConfig {
            tenancy,
            ..OracleConfig::default()
        };
        expect(&cfg, &t, &BTreeSet::new())
    }

    #[test]
    fn each_pod_rule_disqualifies() {
        let good = pod("shop", "p", "a", "10.0.0.1");
        let cases: Vec<(&str, Value)> = vec![
            ("ready", {
                let mut p = good.clone();
                p["status"]["conditions"][0]["status"] = json!("False");
                p
            }),
            ("phase", {
                let mut p = good.clone();
                p["status"]["phase"] = json!("Pending");
                p
            }),
            ("terminating", {
                let mut p = good.clone();
                p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
                p
            }),
            ("hostNetwork", {
                let mut p = good.clone();
                p["spec"]["hostNetwork"] = json!(true);
                p
            }),
            ("ip", {
                let mut p = good.clone();
                p["status"]["podIP"] = Value::Null;
                p
            }),
            ("subset selector", {
                let mut p = good.clone();
                p["metadata"]["labels"] = json!({"app": "a"});
                p
            }),
        ];
        let svc = service("shop", "s", "shop_app", "SELECT");
        assert_eq!(
            expect_of(vec![good], vec![svc.clone()], true)
                .accounts
                .len(),
            1
        );
        for (what, p) in cases {
            assert!(
                expect_of(vec![p], vec![svc.clone()], true)
                    .accounts
                    .is_empty(),
                "{what}"
            );
        }
    }

    #[test]
    fn each_annotation_rule_invalidates() {
        let p = pod("shop", "p", "a", "10.0.0.1");
        let cases = [
            ("podgrant.io/mysql-user", json!("Shop")),
            ("podgrant.io/mysql-user", json!("root")),
            ("podgrant.io/mysql-database", json!("mysql")),
            ("podgrant.io/mysql-privileges", json!("SELECT, SUPER")),
            ("podgrant.io/mysql-privileges", json!("ALL")),
            ("podgrant.io/mysql-privileges", json!("SELECT, select")),
            ("podgrant.io/mysql-privileges", json!("SELECT,")),
            ("podgrant.io/mysql-password-secret", json!("db/nokey")),
            ("podgrant.io/mysql-password-secret", json!("Db/password")),
            ("podgrant.io/mysql-typo", json!("x")),
        ];
        for (k, v) in cases {
            let mut s = service("shop", "s", "shop_app", "SELECT");
            s["metadata"]["annotations"][k] = v.clone();
            let e = expect_of(vec![p.clone()], vec![s], true);
            assert!(e.accounts.is_empty(), "{k}={v}");
            assert_eq!(e.invalid.len(), 1, "{k}={v}");
        }
        // Normalisation: case and inner whitespace.
        let s = service("shop", "s", "shop_app", " select ,  lock   tables");
        let e = expect_of(vec![p], vec![s], true);
        let a = e.accounts.values().next().expect("valid");
        assert_eq!(
            a.privileges,
            ["LOCK TABLES".to_string(), "SELECT".to_string()].into()
        );
    }

    #[test]
    fn tenancy_shared_ips_and_lowest_owner() {
        let p = pod("shop", "p", "a", "10.0.0.1");
        let foreign_name = service("shop", "s", "orders", "SELECT");
        assert!(expect_of(vec![p.clone()], vec![foreign_name.clone()], true)
            .accounts
            .is_empty());
        assert_eq!(
            expect_of(vec![p.clone()], vec![foreign_name], false)
                .accounts
                .len(),
            1
        );
        // Two qualifying pods on one IP: nothing there.
        let twin = pod("shop", "q", "a", "10.0.0.1");
        let s = service("shop", "s", "shop_app", "SELECT");
        assert!(expect_of(vec![p.clone(), twin], vec![s.clone()], true)
            .accounts
            .is_empty());
        // Same user@ip from two services: the lowest name keeps it, both are allowed.
        let s2 = service("shop", "r", "shop_app", "SELECT");
        let e = expect_of(vec![p.clone()], vec![s, s2], true);
        let (k, a) = e.accounts.iter().next().unwrap();
        assert_eq!(a.owner, ObjectRef::new("shop", "r"));
        assert_eq!(e.allowed[k].len(), 2);
        // An empty selector selects nothing; the engine's own login user is never claimable.
        let mut empty = service("shop", "s", "shop_app", "SELECT");
        empty["spec"]["selector"] = json!({});
        assert!(expect_of(vec![p.clone()], vec![empty], true)
            .accounts
            .is_empty());
        let t = Truth::from_objects(
            std::slice::from_ref(&p),
            &[service("shop", "s", "shop_app", "SELECT")],
            &[secret("shop")],
        )
        .unwrap();
        let cfg = OracleConfig {
            engine_user: Some("shop_app".into()),
            ..OracleConfig::default()
        };
        assert!(expect(&cfg, &t, &BTreeSet::new()).accounts.is_empty());
        // shop and shop-eu both claim shop_eu: contested, not predicted.
        let mine = service("shop", "s", "shop_eu", "SELECT");
        let theirs = service("shop-eu", "s", "shop_eu", "SELECT");
        let e = expect_of(vec![p], vec![mine, theirs], true);
        assert!(e.contested_users.contains("shop_eu"));
        assert!(e.accounts.is_empty());
        assert_eq!(e.allowed.len(), 1);
    }

    #[test]
    fn fingerprint_matches_the_documented_definition() {
        let a = ExpectedAccount {
            owner: ObjectRef::new("a", "b"),
            pod: ObjectRef::new("a", "p"),
            database: "d".into(),
            privileges: BTreeSet::new(),
            password: Password::new("pw"),
        };
        assert_eq!(
            a.fingerprint("app"),
            podgrant_core::desired::fingerprint("app", "pw"),
            "the ledger's fingerprint, recomputed independently"
        );
    }
}
