//! Pure tenancy: which namespace may use which MySQL user and database names, and which names nobody may claim.
//!
//! # Rules
//!
//! Checked in this order for every opted-in Service with valid annotations; the first that
//! fails refuses the Service (a [`crate::desired::ProblemKind`] refusal: Event `GrantRefused`,
//! a log line and `podgrant_grant_refusals_total{reason}`):
//!
//! | # | rule | applies with `--tenancy=off` | refusal reason |
//! |---|------|------------------------------|----------------|
//! | 1 | **never claimable**: the user is the engine's own login user, `root`, starts with `mysql.`, is `mariadb.sys` or `PUBLIC`, or is in the reserved users (the built-in list, `--mysql-url`'s user, the policy's `reserved`) — all compared case-insensitively | yes | `reserved` |
//! | 2 | **namespace assignment**: both the user and the database are assigned to the Service's namespace (below) | no | `namespace` |
//! | 3 | **one namespace per user name**: among the namespaces whose Services passed 1 and 2 for a user name, the one that already holds ledger accounts of that user keeps it (if several do, the lowest of those); otherwise the lowest namespace name wins. Every other namespace's claim is refused | no | `user_owned` |
//! | 4 | **reserved account**: `'user'@'<pod IP>'` is listed in the policy's `reserved` as `user@ip` (checked per pod) | yes | `reserved` |
//!
//! Rule 2, for a Service in namespace `N`:
//!
//! | policy | names `N` may use (user and database alike) |
//! |--------|---------------------------------------------|
//! | none, or `N` not listed and `default: allow` (the default) | `p` and every name starting with `p_`, where `p` = `N` with each `-` replaced by `_` (`shop` → `shop`, `shop_orders`; `team-a` → `team_a`, `team_a_reports`) |
//! | `N` listed | exactly its `users` / `databases` entries; the prefix rule no longer applies to `N` |
//! | `N` not listed and `default: deny` | nothing |
//!
//! An entry is an exact name (`orders`) or a pattern `prefix_*`, which matches every name
//! starting with `prefix_` (not `prefix` itself; list it too if it is wanted).
//!
//! # Policy file (`--policy FILE`)
//!
//! JSON (`serde_json`), or YAML (`serde_yaml_ng`: a `.yaml`/`.yml` name, or text not starting
//! with `{`; all of YAML, anchors included), into the same `deny_unknown_fields` structures; see
//! the README for an example. Unknown fields, a namespace listed twice, bad patterns, bad
//! namespace names and bad reserved entries are refused at start with an error naming the file
//! and the problem (for YAML with its line and column where the library knows them), and
//! nothing of the file is applied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// Users nobody may claim besides the reserved list (compared case-insensitively).
pub const SYSTEM_USERS: [&str; 3] = ["root", "mariadb.sys", "public"];

/// One `users` / `databases` entry of a policy: an exact name or `prefix_*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NamePattern {
    Exact(String),
    /// Matches names starting with this string (which ends with `_`).
    Prefix(String),
}

impl NamePattern {
    /// Parses `name` or `prefix_*`; names are lower-case letters, digits and `_`, starting with a letter.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        if prefix && !body.ends_with('_') {
            return Err(format!(
                "pattern {raw:?}: a wildcard must be the final \"_*\" (as in \"shop_*\")"
            ));
        }
        let ok = body.len() <= 64
            && body.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(format!(
                "pattern {raw:?}: use a-z, 0-9 and _, starting with a letter, optionally ending in \"_*\""
            ));
        }
        Ok(if prefix {
            Self::Prefix(body.to_string())
        } else {
            Self::Exact(body.to_string())
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(n) => n == name,
            Self::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// What one namespace may use, from the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub users: Vec<NamePattern>,
    pub databases: Vec<NamePattern>,
}

/// The tenancy settings: enforced or off, the policy's assignments and reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenancy {
    /// `false` with `--tenancy=off`: rules 2 and 3 are not applied.
    pub enforced: bool,
    /// Namespace → what it may use (replaces the prefix rule for that namespace).
    pub assignments: BTreeMap<String, Assignment>,
    /// Unlisted namespaces get nothing (`default: deny`) instead of the prefix rule.
    pub default_deny: bool,
    /// Lower-case user names nobody may claim (in addition to [`SYSTEM_USERS`] and `mysql.*`).
    pub reserved_users: BTreeSet<String>,
    /// Accounts nobody may claim.
    pub reserved_accounts: BTreeSet<(String, IpAddr)>,
}

impl Default for Tenancy {
    /// Enforced, no policy file: the prefix rule everywhere.
    fn default() -> Self {
        Self {
            enforced: true,
            assignments: BTreeMap::new(),
            default_deny: false,
            reserved_users: BTreeSet::new(),
            reserved_accounts: BTreeSet::new(),
        }
    }
}

/// The prefix a namespace owns without a policy: `team-a` → `team_a`.
pub fn namespace_prefix(namespace: &str) -> String {
    namespace.replace('-', "_")
}

fn prefix_rule(namespace: &str, name: &str) -> bool {
    let p = namespace_prefix(namespace);
    name == p
        || name
            .strip_prefix(p.as_str())
            .is_some_and(|r| r.starts_with('_'))
}

impl Tenancy {
    /// Any namespace may use any name (rules 1 and 4 still hold).
    pub fn off() -> Self {
        Self {
            enforced: false,
            ..Self::default()
        }
    }

    /// Rule 1: why `user` can never be claimed, or `None`. `extra` are more reserved names
    /// (the validation policy's list, which holds the engine's own login user).
    pub fn never_claimable(&self, user: &str, extra: &BTreeSet<String>) -> Option<String> {
        let lower = user.to_ascii_lowercase();
        // Echo only short printable names (this runs before the annotation is validated).
        let shown = if user.len() <= 64 && user.bytes().all(|b| b.is_ascii_graphic()) {
            format!("{user:?}")
        } else {
            format!("of {} characters", user.chars().count())
        };
        let user = shown.as_str();
        if lower.starts_with("mysql.") || SYSTEM_USERS.contains(&lower.as_str()) {
            return Some(format!("user {user} is a system account"));
        }
        let reserved = |set: &BTreeSet<String>| set.iter().any(|r| r.eq_ignore_ascii_case(&lower));
        if reserved(&self.reserved_users) || reserved(extra) {
            return Some(format!(
                "user {user} is reserved (the engine's own login or the operator's reserved list)"
            ));
        }
        None
    }

    /// Rule 4: whether the account `user@host` is reserved.
    pub fn account_reserved(&self, user: &str, host: IpAddr) -> bool {
        self.reserved_accounts
            .iter()
            .any(|(u, h)| *h == host && u.eq_ignore_ascii_case(user))
    }

    /// Rule 2: may a Service in `namespace` use `user` and `database`? `Err` says which not.
    pub fn check_namespace(
        &self,
        namespace: &str,
        user: &str,
        database: &str,
    ) -> Result<(), String> {
        if !self.enforced {
            return Ok(());
        }
        let (user_ok, db_ok, rule) = match self.assignments.get(namespace) {
            Some(a) => (
                a.users.iter().any(|p| p.matches(user)),
                a.databases.iter().any(|p| p.matches(database)),
                "the names the policy assigns to it".to_string(),
            ),
            None if self.default_deny => (
                false,
                false,
                "nothing (the policy says default: deny)".to_string(),
            ),
            None => {
                let p = namespace_prefix(namespace);
                (
                    prefix_rule(namespace, user),
                    prefix_rule(namespace, database),
                    format!("only names that are {p:?} or start with \"{p}_\""),
                )
            }
        };
        match (user_ok, db_ok) {
            (true, true) => Ok(()),
            (false, _) => Err(format!(
                "user {user:?} is not assigned to namespace {namespace:?}, which may use {rule}"
            )),
            (true, false) => Err(format!(
                "database {database:?} is not assigned to namespace {namespace:?}, which may use {rule}"
            )),
        }
    }
}

/// Rule 3: the namespace that owns each claimed user name. `claims`: user → namespaces whose
/// Services claim it (after rules 1 and 2); `held`: user → namespaces with ledger accounts of it.
pub fn user_owners(
    claims: &BTreeMap<String, BTreeSet<String>>,
    held: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, String> {
    claims
        .iter()
        .filter_map(|(user, claimants)| {
            let holder = held
                .get(user)
                .and_then(|h| claimants.iter().find(|ns| h.contains(*ns)));
            holder
                .or_else(|| claimants.iter().next())
                .map(|ns| (user.clone(), ns.clone()))
        })
        .collect()
}

/// The user name of a `mysql://user:pw@host/db` URL (percent-decoded), if any: the engine's
/// own login, which the binary reserves (rule 1).
pub fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let raw = userinfo.split_once(':').map(|(u, _)| u).unwrap_or(userinfo);
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    let user = String::from_utf8_lossy(&out).into_owned();
    (!user.is_empty()).then_some(user)
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {file}: {problem}")]
    Invalid { file: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAssignment {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    databases: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileDefault {
    Allow,
    Deny,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    default: Option<FileDefault>,
    #[serde(default, deserialize_with = "unique_keys")]
    namespaces: BTreeMap<String, FileAssignment>,
    #[serde(default)]
    reserved: Vec<String>,
}

/// A map that refuses a key given twice (serde's maps would silently keep the last one).
fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of namespace names")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = m.next_key::<String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!("{k:?} is listed twice")));
                }
                let v = m.next_value()?;
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// A Kubernetes namespace name (DNS label): `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63.
fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A reserved user name: 1 to 80 printable ASCII characters, no quotes, spaces or `@`.
fn is_reservable_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && !matches!(c, b'\'' | b'"' | b'`' | b'@' | b'\\'))
}

/// Parses a policy file's text (JSON, or YAML: a `.yaml`/`.yml` name or text not starting with `{`);
/// `file` names it in errors. The result is enforced.
pub fn parse_policy(file: &str, text: &str) -> Result<Tenancy, PolicyError> {
    let bad = |problem: String| PolicyError::Invalid {
        file: file.to_string(),
        problem,
    };
    let is_yaml_name = file.ends_with(".yaml") || file.ends_with(".yml");
    let parsed: PolicyFile = if !is_yaml_name && text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
    } else {
        // An empty (or comments-only) YAML document is no policy: `None`.
        serde_yaml_ng::from_str::<Option<PolicyFile>>(text)
            .map_err(|e| bad(format!("YAML: {e}")))?
            .unwrap_or_default()
    };
    let mut t = Tenancy {
        default_deny: parsed.default == Some(FileDefault::Deny),
        ..Tenancy::default()
    };
    for (ns, a) in parsed.namespaces {
        if !is_namespace_name(&ns) {
            return Err(bad(format!(
                "namespaces: {ns:?} is not a Kubernetes namespace name"
            )));
        }
        let parse_all = |what: &str, items: &[String]| -> Result<Vec<NamePattern>, PolicyError> {
            items
                .iter()
                .map(|i| {
                    NamePattern::parse(i).map_err(|e| bad(format!("namespaces.{ns}.{what}: {e}")))
                })
                .collect()
        };
        let assignment = Assignment {
            users: parse_all("users", &a.users)?,
            databases: parse_all("databases", &a.databases)?,
        };
        t.assignments.insert(ns, assignment);
    }
    for r in parsed.reserved {
        match r.split_once('@') {
            None if is_reservable_user(&r) => {
                t.reserved_users.insert(r.to_ascii_lowercase());
            }
            Some((u, h)) if is_reservable_user(u) => {
                let host: IpAddr = h.parse().map_err(|_| {
                    bad(format!(
                        "reserved: {r:?}: the host must be an IP address (accounts are always user@<pod IP>)"
                    ))
                })?;
                t.reserved_accounts.insert((u.to_ascii_lowercase(), host));
            }
            _ => {
                return Err(bad(format!(
                "reserved: {r:?} is not a user name or user@ip (no quotes, spaces or backslashes)"
            )))
            }
        }
    }
    Ok(t)
}

/// Reads and parses a policy file.
pub fn load_policy(path: &Path) -> Result<Tenancy, PolicyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Invalid {
        file: file.clone(),
        problem: format!("cannot read it: {e}"),
    })?;
    parse_policy(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Tenancy {
        parse_policy("p.json", json).unwrap()
    }

    #[test]
    fn default_prefix_rule_table() {
        let t = Tenancy::default();
        let cases: &[(&str, &str, &str, bool)] = &[
            ("shop", "shop", "shop", true),
            ("shop", "shop_orders", "shop_orders", true),
            ("shop", "shop_", "shop", true),
            ("shop", "shopper", "shop", false),
            ("shop", "shop", "shopdb", false),
            ("shop", "orders", "shop", false),
            ("team-a", "team_a", "team_a_reports", true),
            ("team-a", "team_a_x", "team_a", true),
            ("team-a", "team", "team_a", false),
            ("team-a", "team_ab", "team_a", false),
            ("other", "shop_orders", "other", false),
            ("other", "other", "shop", false),
            ("a-b-c", "a_b_c_1", "a_b_c", true),
        ];
        for (ns, user, db, ok) in cases {
            assert_eq!(
                t.check_namespace(ns, user, db).is_ok(),
                *ok,
                "{ns} {user} {db}"
            );
            assert!(Tenancy::off().check_namespace(ns, user, db).is_ok());
        }
        let e = t.check_namespace("other", "shop_x", "other").unwrap_err();
        assert!(
            e.contains("user \"shop_x\"") && e.contains("\"other\""),
            "{e}"
        );
        let e = t.check_namespace("other", "other", "shop").unwrap_err();
        assert!(e.contains("database \"shop\""), "{e}");
    }

    #[test]
    fn policy_assignment_replaces_the_prefix_rule_for_listed_namespaces() {
        let t = policy(
            r#"{"namespaces": {"shop": {"users": ["orders", "api_*"], "databases": ["legacy", "shop_*"]}},
                "reserved": ["dba", "app@10.0.0.5"]}"#,
        );
        let cases: &[(&str, &str, &str, bool)] = &[
            ("shop", "orders", "legacy", true),
            ("shop", "api_v2", "shop_x", true),
            ("shop", "api", "legacy", false),
            ("shop", "shop", "shop", false),
            ("shop", "orders", "shop", false),
            // unlisted: the prefix rule
            ("team-a", "team_a", "team_a", true),
            ("team-a", "orders", "legacy", false),
        ];
        for (ns, user, db, ok) in cases {
            assert_eq!(
                t.check_namespace(ns, user, db).is_ok(),
                *ok,
                "{ns} {user} {db}"
            );
        }
        let deny = policy(
            r#"{"default": "deny", "namespaces": {"shop": {"users": ["shop"], "databases": ["shop"]}}}"#,
        );
        assert!(deny.check_namespace("shop", "shop", "shop").is_ok());
        assert!(deny.check_namespace("team-a", "team_a", "team_a").is_err());
        assert!(t.never_claimable("DBA", &BTreeSet::new()).is_some());
        assert!(t.account_reserved("app", "10.0.0.5".parse().unwrap()));
        assert!(!t.account_reserved("app", "10.0.0.6".parse().unwrap()));
    }

    #[test]
    fn never_claimable_table() {
        let t = Tenancy::off();
        let extra = BTreeSet::from(["engine_login".to_string()]);
        for user in [
            "root",
            "ROOT",
            "mysql.sys",
            "mysql.session",
            "MySQL.infoschema",
            "mariadb.sys",
            "PUBLIC",
            "public",
            "engine_login",
            "Engine_Login",
        ] {
            assert!(t.never_claimable(user, &extra).is_some(), "{user}");
        }
        for user in ["rooted", "mysqlx", "mariadb_sys", "publics", "shop"] {
            assert!(t.never_claimable(user, &extra).is_none(), "{user}");
        }
    }

    #[test]
    fn user_owner_is_the_ledger_holder_else_the_lowest_claimant() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let claims = BTreeMap::from([
            ("shared".to_string(), set(&["beta", "alpha", "gamma"])),
            ("held".to_string(), set(&["beta", "alpha"])),
            ("stale".to_string(), set(&["beta", "alpha"])),
        ]);
        let held = BTreeMap::from([
            ("held".to_string(), set(&["beta"])),
            // a holder that no longer claims it keeps nothing
            ("stale".to_string(), set(&["zeta"])),
        ]);
        let o = user_owners(&claims, &held);
        assert_eq!(o["shared"], "alpha");
        assert_eq!(o["held"], "beta");
        assert_eq!(o["stale"], "alpha");
    }

    #[test]
    fn a_yaml_policy_means_the_same_as_its_json() {
        let json = policy(
            r#"{"default": "deny",
                "namespaces": {"shop": {"users": ["orders", "shop_*"], "databases": ["legacy"]},
                               "team-a": {"users": ["reports"], "databases": ["warehouse", "team_a_*"]},
                               "empty": {}},
                "reserved": ["dba", "app@10.0.0.5"]}"#,
        );
        let yamls: &[(&str, &str)] = &[
            (
                "block, flow and comments",
                "---\n# the operator's policy\ndefault: deny   # unlisted get nothing\nnamespaces:\n  shop:\n    users:\n      - orders\n      - \"shop_*\"\n    databases: [legacy]\n  team-a: { users: [reports], databases: [warehouse, 'team_a_*'] }\n  empty: {}\nreserved:\n- dba\n- app@10.0.0.5\n",
            ),
            (
                "anchors, an empty assignment, block scalars",
                "default: deny\nnamespaces:\n  shop: {users: &o [orders, shop_*], databases: [legacy]}\n  team-a:\n    users: [reports]\n    databases: [warehouse, team_a_*]\n  empty:\nreserved:\n  - dba\n  - >-\n    app@10.0.0.5\n",
            ),
        ];
        for (what, yaml) in yamls {
            for file in ["p.yaml", "p.yml", "policy"] {
                assert_eq!(parse_policy(file, yaml).unwrap(), json, "{what}: {file}");
            }
        }
        let anchored = parse_policy(
            "p.yaml",
            "namespaces:\n  a: &same {users: [x], databases: [y]}\n  b: *same\n",
        )
        .unwrap();
        assert_eq!(
            anchored,
            policy(
                r#"{"namespaces": {"a": {"users": ["x"], "databases": ["y"]}, "b": {"users": ["x"], "databases": ["y"]}}}"#
            )
        );
        for empty in ["", "# nothing yet\n", "---\n", "~\n"] {
            assert_eq!(
                parse_policy("p.yaml", empty).unwrap(),
                Tenancy::default(),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn bad_policy_files_are_refused_with_the_file_and_the_problem() {
        let cases: &[(&str, &str)] = &[
            (r#"{"namespace": {}}"#, "unknown field `namespace`"),
            (
                r#"{"namespaces": {"shop": {"user": []}}}"#,
                "unknown field `user`",
            ),
            (
                r#"{"namespaces": {"Shop": {}}}"#,
                "\"Shop\" is not a Kubernetes namespace name",
            ),
            (
                r#"{"namespaces": {"-x": {}}}"#,
                "not a Kubernetes namespace name",
            ),
            (
                r#"{"namespaces": {"shop": {"users": ["sh*p"]}}}"#,
                "namespaces.shop.users: pattern \"sh*p\"",
            ),
            (
                r#"{"namespaces": {"shop": {"users": ["shop*"]}}}"#,
                "final \"_*\"",
            ),
            (
                r#"{"namespaces": {"shop": {"databases": ["*"]}}}"#,
                "namespaces.shop.databases",
            ),
            (
                r#"{"namespaces": {"shop": {"databases": ["Shop"]}}}"#,
                "use a-z",
            ),
            (r#"{"default": "maybe"}"#, "unknown variant `maybe`"),
            (r#"{"reserved": ["a@b"]}"#, "must be an IP address"),
            (r#"{"reserved": ["it's"]}"#, "is not a user name"),
            (r#"{"reserved": [""]}"#, "is not a user name"),
            (r#"{"namespaces": "#, "EOF"),
            (
                r#"{"namespaces": {"shop": {}, "shop": {"users": ["x"]}}}"#,
                "\"shop\" is listed twice",
            ),
            (
                "namespaces:\n  shop:\n    users: [a]\n   databases: [b]\n",
                "YAML: did not find expected key at line 4 column 4",
            ),
            (
                "namespaces:\n\tshop: {}\n",
                "YAML: found character that cannot start any token at line 2 column 1",
            ),
            ("reserved: [a\n", "did not find expected ',' or ']'"),
            ("namespace:\n  shop: {}\n", "YAML: unknown field `namespace`"),
            (
                "namespaces:\n  shop:\n    users: [shop_*]\n    databses: [shop]\n",
                "YAML: namespaces.shop: unknown field `databses`, expected `users` or `databases` at line 4 column 5",
            ),
            (
                "default: maybe\n",
                "YAML: default: unknown variant `maybe`, expected `allow` or `deny` at line 1 column 10",
            ),
            (
                "namespaces:\n  shop: {}\n  shop: {users: [x]}\n",
                "\"shop\" is listed twice",
            ),
            ("reserved: [a]\nreserved: [b]\n", "duplicate field `reserved`"),
            ("- shop\n", "YAML: invalid type: sequence, expected struct PolicyFile"),
            ("reserved: *nowhere\n", "YAML: unknown anchor"),
            (
                "namespaces:\n  Shop: {}\n",
                "\"Shop\" is not a Kubernetes namespace name",
            ),
            (
                "namespaces: {shop: {users: [\"sh*p\"]}}\n",
                "namespaces.shop.users: pattern \"sh*p\"",
            ),
            ("reserved: [a@b]\n", "must be an IP address"),
        ];
        for (text, want) in cases {
            let e = parse_policy("/etc/podgrant/policy.json", text)
                .expect_err(text)
                .to_string();
            assert!(
                e.starts_with("policy file /etc/podgrant/policy.json: "),
                "{e}"
            );
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = load_policy(Path::new("/nonexistent/policy.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/policy.json") && e.contains("cannot read"),
            "{e}"
        );
    }
}
