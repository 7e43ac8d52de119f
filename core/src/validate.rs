//! Validation of Service annotations into a [`GrantSpec`]; every value is checked before use.
//!
//! # Annotations
//!
//! A Service opts in by carrying `podgrant.io/mysql-user`. Once it does, all of these apply:
//!
//! | key | value |
//! |-----|-------|
//! | `podgrant.io/mysql-user` | the MySQL user name (required) |
//! | `podgrant.io/mysql-database` | the database the privileges apply to (required) |
//! | `podgrant.io/mysql-privileges` | comma-separated privileges, e.g. `SELECT, INSERT` (required) |
//! | `podgrant.io/mysql-password-secret` | `name/key`, or `name` with the key in `podgrant.io/mysql-password-key` (required); the Secret lives in the Service's namespace |
//! | `podgrant.io/mysql-password-key` | the key inside the Secret (only with the plain `name` form; default none) |
//!
//! Any other key under `podgrant.io/` that starts with `mysql-` is rejected as unknown, so a typo
//! never silently changes the meaning of a grant.
//!
//! # Rules (deliberately stricter than MySQL; both MySQL 8 and MariaDB 10.11 accept all of it)
//!
//! - **user**: `^[a-z][a-z0-9_]{0,31}$` — 1 to 32 characters (MySQL 8's limit; MariaDB allows
//!   80), lower-case ASCII letters, digits and `_`, starting with a letter; and not one of
//!   [`Policy::reserved_users`] (`root`, ...). No quotes, backticks, `%`, `@`, spaces or
//!   look-alike characters can get through: anything outside ASCII is refused.
//! - **database**: `^[a-z][a-z0-9_]{0,63}$` — 1 to 64 characters (the MySQL/MariaDB limit), and
//!   not one of [`Policy::forbidden_databases`] (`mysql`, `information_schema`, `sys`, ...,
//!   and the ledger schema). `_` is a wildcard in database-level GRANTs; the SQL layer escapes it.
//! - **privileges**: a non-empty comma-separated list; each item is trimmed, its inner
//!   whitespace collapsed and upper-cased, then must be in [`Policy::allowed_privileges`]
//!   ([`DEFAULT_PRIVILEGES`] unless the operator says otherwise). `ALL`, `ALL PRIVILEGES`,
//!   `SUPER`, `GRANT OPTION`, `FILE`, `PROCESS`, `SHUTDOWN`, `RELOAD`... are refused unless
//!   the operator's policy lists them. Duplicates are refused (they hint at a mistake).
//! - **secret name**: a Kubernetes DNS subdomain (`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`, ≤ 253);
//!   **secret key**: `^[-._a-zA-Z0-9]+$`, ≤ 253 (the Kubernetes Secret key rule).
//! - The host is never an annotation: it is always the pod's literal IP, so `%`, `localhost`
//!   or `@` anywhere in a value is refused.
//!
//! Which namespace may use which user and database names (and which users nobody may claim) is
//! decided after these rules, by [`crate::tenancy`] through [`Policy::tenancy`].
//!
//! Every rejection names the annotation and the reason; rejected values are echoed only when
//! they are short and printable ASCII (never a password: passwords are not annotations).

use std::collections::BTreeSet;

use crate::grant::{GrantSpec, Privilege};
use crate::model::{ObjectRef, ServiceFacts};
use crate::tenancy::Tenancy;

/// The annotation prefix podgrant reads.
pub const ANNOTATION_PREFIX: &str = "podgrant.io/";
/// The MySQL user name; its presence opts the Service in.
pub const ANN_USER: &str = "podgrant.io/mysql-user";
/// The database the privileges are granted on.
pub const ANN_DATABASE: &str = "podgrant.io/mysql-database";
/// Comma-separated privileges.
pub const ANN_PRIVILEGES: &str = "podgrant.io/mysql-privileges";
/// `secret-name/key` or `secret-name` (then [`ANN_PASSWORD_KEY`] names the key).
pub const ANN_PASSWORD_SECRET: &str = "podgrant.io/mysql-password-secret";
/// The key in the password Secret, when [`ANN_PASSWORD_SECRET`] names only the Secret.
pub const ANN_PASSWORD_KEY: &str = "podgrant.io/mysql-password-key";

/// All annotation keys podgrant understands.
pub const KNOWN_ANNOTATIONS: [&str; 5] = [
    ANN_USER,
    ANN_DATABASE,
    ANN_PRIVILEGES,
    ANN_PASSWORD_SECRET,
    ANN_PASSWORD_KEY,
];

/// The default privilege allowlist: what an application needs on its own database, and
/// nothing that reaches beyond it (no `ALL`, `SUPER`, `GRANT OPTION`, `FILE`, `PROCESS`, ...).
pub const DEFAULT_PRIVILEGES: [&str; 18] = [
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

/// Every database-level privilege name MySQL 8 / MariaDB 10.11 know (what an operator may add
/// to the policy). Names outside this list can never be allowed. `ALL [PRIVILEGES]` is not
/// among them: the server expands it into a version-dependent list that could never be
/// observed back as asked, so an operator who wants it lists the privileges instead.
pub const KNOWN_DB_PRIVILEGES: [&str; 20] = [
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
    "GRANT OPTION",
    "DELETE HISTORY",
];

/// User names podgrant never manages, whatever the annotations say.
pub const DEFAULT_RESERVED_USERS: [&str; 6] = [
    "root",
    "mysql",
    "mariadb",
    "admin",
    "podgrant",
    "healthcheck",
];

/// Databases podgrant never grants on.
pub const DEFAULT_FORBIDDEN_DATABASES: [&str; 5] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "podgrant",
];

/// Longest user name accepted (MySQL 8's limit; MariaDB's is 80).
pub const MAX_USER_LEN: usize = 32;
/// Longest database name accepted (the MySQL and MariaDB limit).
pub const MAX_DATABASE_LEN: usize = 64;

/// The operator's policy: which privileges may be granted, and which names are off limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Upper-case privilege names with single spaces, e.g. `CREATE TEMPORARY TABLES`.
    pub allowed_privileges: BTreeSet<String>,
    /// User names never managed (compared exactly; names are lower-case anyway).
    pub reserved_users: BTreeSet<String>,
    /// Databases never granted on (the ledger schema belongs here too).
    pub forbidden_databases: BTreeSet<String>,
    /// Which namespace may use which names (see [`crate::tenancy`]); enforced by default.
    pub tenancy: Tenancy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allowed_privileges: DEFAULT_PRIVILEGES.iter().map(|s| s.to_string()).collect(),
            reserved_users: DEFAULT_RESERVED_USERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            forbidden_databases: DEFAULT_FORBIDDEN_DATABASES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tenancy: Tenancy::default(),
        }
    }
}

impl Policy {
    /// The default policy that also forbids grants on `ledger_schema` (when it is not `podgrant`).
    pub fn with_ledger_schema(mut self, ledger_schema: &str) -> Self {
        self.forbidden_databases.insert(ledger_schema.to_string());
        self
    }

    /// Replaces the tenancy settings (a policy file, or [`Tenancy::off`]).
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Also reserves `user` (e.g. the account podgrant itself logs in with).
    pub fn with_reserved_user(mut self, user: &str) -> Self {
        self.reserved_users.insert(user.to_string());
        self
    }

    /// Replaces the privilege allowlist. Every name is normalised and must be a privilege MySQL
    /// knows at database level ([`KNOWN_DB_PRIVILEGES`]), so the allowlist itself can't inject.
    pub fn with_allowed_privileges<I, S>(mut self, privileges: I) -> Result<Self, AnnotationError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for p in privileges {
            let norm = normalise_privilege(p.as_ref()).ok_or_else(|| AnnotationError::Invalid {
                key: "policy.allowed_privileges".into(),
                reason: format!("{} is not a database privilege", describe(p.as_ref())),
            })?;
            if !KNOWN_DB_PRIVILEGES.contains(&norm.as_str()) {
                return Err(AnnotationError::Invalid {
                    key: "policy.allowed_privileges".into(),
                    reason: format!("{} is not a database privilege", describe(p.as_ref())),
                });
            }
            set.insert(norm);
        }
        self.allowed_privileges = set;
        Ok(self)
    }
}

/// Why a Service's annotations were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("annotation {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> AnnotationError {
    AnnotationError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A value for an error message: quoted when short printable ASCII, described otherwise.
fn describe(value: &str) -> String {
    if value.len() <= 64 && value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        format!("{value:?}")
    } else {
        let non_ascii = value.chars().filter(|c| !c.is_ascii()).count();
        let control = value.chars().filter(|c| c.is_control()).count();
        format!(
            "the value ({} characters, {} non-ASCII, {} control)",
            value.chars().count(),
            non_ascii,
            control
        )
    }
}

/// Explains the first thing wrong with a would-be identifier (user or database name).
fn identifier_problem(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if let Some(c) = value.chars().find(|c| *c == '\0') {
        let _ = c;
        return Some("contains a NUL character".into());
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii()) {
        return Some(format!(
            "contains the non-ASCII character U+{:04X} (look-alikes are refused; use a-z, 0-9, _)",
            c as u32
        ));
    }
    for (needle, what) in [
        ("'", "a quote"),
        ("\"", "a double quote"),
        ("`", "a backtick"),
        (";", "a semicolon"),
        ("--", "an SQL comment"),
        ("/*", "an SQL comment"),
        ("#", "an SQL comment"),
        ("\\", "a backslash"),
        ("%", "a '%' wildcard (the host is always the pod IP)"),
        ("@", "an '@' (the host is always the pod IP)"),
    ] {
        if value.contains(needle) {
            return Some(format!("contains {what}"));
        }
    }
    if value.to_ascii_lowercase().contains("localhost") {
        return Some("mentions localhost (the host is always the pod IP)".into());
    }
    if value.chars().any(|c| c.is_ascii_control()) {
        return Some("contains a control character".into());
    }
    if value.chars().any(|c| c.is_ascii_whitespace()) {
        return Some("contains whitespace".into());
    }
    let len = value.len();
    if len > max {
        return Some(format!("is {len} characters long; the limit is {max}"));
    }
    let first = value.as_bytes()[0];
    if !first.is_ascii_lowercase() {
        return Some("must start with a lower-case letter a-z".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Some(format!(
            "contains {c:?}; only lower-case letters a-z, digits and _ are allowed"
        ));
    }
    None
}

/// Validates a MySQL user name (see the module doc). Returns the reason it is refused.
pub fn check_user(user: &str, policy: &Policy) -> Result<(), String> {
    if let Some(p) = identifier_problem(user, MAX_USER_LEN) {
        return Err(p);
    }
    if policy.reserved_users.contains(user) {
        return Err(format!("{user:?} is a reserved user name"));
    }
    Ok(())
}

/// Validates a database name (see the module doc). Returns the reason it is refused.
pub fn check_database(database: &str, policy: &Policy) -> Result<(), String> {
    if let Some(p) = identifier_problem(database, MAX_DATABASE_LEN) {
        return Err(p);
    }
    if policy.forbidden_databases.contains(database) {
        return Err(format!("{database:?} is a system or forbidden database"));
    }
    Ok(())
}

/// Whether `s` is a syntactically valid, policy-free identifier (user or database shape).
pub fn is_plain_identifier(s: &str, max: usize) -> bool {
    identifier_problem(s, max).is_none()
}

/// Upper-cases and collapses whitespace; `None` if anything but ASCII letters and single
/// spaces between words remains.
fn normalise_privilege(raw: &str) -> Option<String> {
    let words: Vec<&str> = raw.split_ascii_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    if !words
        .iter()
        .all(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
    {
        return None;
    }
    Some(words.join(" ").to_ascii_uppercase())
}

/// Parses a comma-separated privilege list against the policy.
pub fn parse_privileges(value: &str, policy: &Policy) -> Result<BTreeSet<Privilege>, String> {
    if let Some(c) = value.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "contains the non-ASCII character U+{:04X}",
            c as u32
        ));
    }
    if value.contains('\0') {
        return Err("contains a NUL character".into());
    }
    let mut out = BTreeSet::new();
    for item in value.split(',') {
        if item.trim().is_empty() {
            return Err("has an empty item (check the commas)".into());
        }
        let norm = match normalise_privilege(item) {
            Some(n) => n,
            None => {
                return Err(format!(
                    "{} is not a privilege name (letters and spaces only)",
                    describe(item.trim())
                ))
            }
        };
        if !policy.allowed_privileges.contains(&norm) {
            return Err(format!(
                "{norm:?} is not in the operator's privilege allowlist"
            ));
        }
        if !out.insert(Privilege(norm.clone())) {
            return Err(format!("{norm:?} is listed twice"));
        }
    }
    Ok(out)
}

/// Validates a Kubernetes Secret name (DNS subdomain).
fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the Secret name is empty".into());
    }
    if name.len() > 253 {
        return Err(format!("the Secret name is {} characters long", name.len()));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let b = name.as_bytes();
    let ok_ends = b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok_chars || !ok_ends {
        return Err(format!(
            "the Secret name {} is not a valid Kubernetes name",
            describe(name)
        ));
    }
    Ok(())
}

/// Validates a Secret key (Kubernetes: `[-._a-zA-Z0-9]+`).
fn check_secret_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 {
        return Err("the Secret key must be 1 to 253 characters".into());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(format!(
            "the Secret key {} is not a valid key (-._a-zA-Z0-9)",
            describe(key)
        ));
    }
    Ok(())
}

/// `Ok(None)` when the Service has not opted in (no `podgrant.io/mysql-user`).
pub fn grant_spec(
    service: &ServiceFacts,
    policy: &Policy,
) -> Result<Option<GrantSpec>, AnnotationError> {
    let ann = &service.annotations;
    let Some(user) = ann.get(ANN_USER) else {
        return Ok(None);
    };
    for key in ann.keys() {
        if let Some(rest) = key.strip_prefix(ANNOTATION_PREFIX) {
            if rest == "mysql-host" {
                return Err(invalid(
                    key,
                    "the host cannot be set: it is always the pod's own IP",
                ));
            }
            if rest.starts_with("mysql-") && !KNOWN_ANNOTATIONS.contains(&key.as_str()) {
                return Err(invalid(key, "unknown podgrant annotation (typo?)"));
            }
        }
    }
    check_user(user, policy).map_err(|r| invalid(ANN_USER, r))?;

    let database = ann
        .get(ANN_DATABASE)
        .ok_or_else(|| invalid(ANN_DATABASE, "missing (required with mysql-user)"))?;
    check_database(database, policy).map_err(|r| invalid(ANN_DATABASE, r))?;

    let privs = ann
        .get(ANN_PRIVILEGES)
        .ok_or_else(|| invalid(ANN_PRIVILEGES, "missing (required with mysql-user)"))?;
    let privileges = parse_privileges(privs, policy).map_err(|r| invalid(ANN_PRIVILEGES, r))?;

    let secret = ann
        .get(ANN_PASSWORD_SECRET)
        .ok_or_else(|| invalid(ANN_PASSWORD_SECRET, "missing (required with mysql-user)"))?;
    let (name, key) = match secret.split_once('/') {
        Some((name, key)) => {
            if ann.contains_key(ANN_PASSWORD_KEY) {
                return Err(invalid(
                    ANN_PASSWORD_KEY,
                    "conflicts with the key given in mysql-password-secret (name/key)",
                ));
            }
            (name, key)
        }
        None => {
            let key = ann.get(ANN_PASSWORD_KEY).ok_or_else(|| {
                invalid(
                    ANN_PASSWORD_KEY,
                    "missing: mysql-password-secret names no key (use name/key or set mysql-password-key)",
                )
            })?;
            (secret.as_str(), key.as_str())
        }
    };
    check_secret_name(name).map_err(|r| invalid(ANN_PASSWORD_SECRET, r))?;
    let key_ann = if secret.contains('/') {
        ANN_PASSWORD_SECRET
    } else {
        ANN_PASSWORD_KEY
    };
    check_secret_key(key).map_err(|r| invalid(key_ann, r))?;

    Ok(Some(GrantSpec {
        user: user.clone(),
        database: database.clone(),
        privileges,
        password_secret: ObjectRef::new(service.id.namespace.clone(), name),
        password_key: key.to_string(),
    }))
}

/// Longest password accepted (MySQL and MariaDB take longer ones; this bounds statement size).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Validates a password taken from a Secret. The reason never contains the password.
///
/// Accepted: 1 to [`MAX_PASSWORD_LEN`] characters, no control characters (so no NUL), and no
/// backslash. Refusing `\` makes the SQL string literal mean the same with and without
/// `NO_BACKSLASH_ESCAPES`: the only escaping left is doubling `'`, which both modes read alike.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let n = password.chars().count();
    if n > MAX_PASSWORD_LEN {
        return Err(format!(
            "the password is {n} characters long; the limit is {MAX_PASSWORD_LEN}"
        ));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err("the password contains a control character (NUL, newline, ...)".into());
    }
    if password.contains('\\') {
        return Err(
            "the password contains a backslash, which podgrant refuses so that quoting holds with and without NO_BACKSLASH_ESCAPES"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn svc(ann: &[(&str, &str)]) -> ServiceFacts {
        ServiceFacts {
            id: ObjectRef::new("ns", "svc"),
            uid: "u1".into(),
            selector: Some(BTreeMap::from([("app".to_string(), "a".to_string())])),
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            (ANN_USER, "app_user"),
            (ANN_DATABASE, "app_db"),
            (ANN_PRIVILEGES, "select, insert ,Update"),
            (ANN_PASSWORD_SECRET, "db-secret/password"),
        ]
    }

    fn with(key: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut a: Vec<_> = good().into_iter().filter(|(k, _)| *k != key).collect();
        a.push((key, value));
        a
    }

    fn rejected(ann: &[(&str, &str)]) -> (String, String) {
        match grant_spec(&svc(ann), &Policy::default()) {
            Err(AnnotationError::Invalid { key, reason }) => (key, reason),
            Ok(s) => panic!("accepted: {s:?}"),
        }
    }

    #[test]
    fn not_opted_in_is_none() {
        let s = svc(&[(ANN_DATABASE, "x")]);
        assert_eq!(grant_spec(&s, &Policy::default()), Ok(None));
    }

    #[test]
    fn good_annotations_parse() {
        let spec = grant_spec(&svc(&good()), &Policy::default())
            .unwrap()
            .unwrap();
        assert_eq!(spec.user, "app_user");
        assert_eq!(spec.database, "app_db");
        let p: Vec<_> = spec.privileges.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(p, vec!["INSERT", "SELECT", "UPDATE"]);
        assert_eq!(spec.password_secret, ObjectRef::new("ns", "db-secret"));
        assert_eq!(spec.password_key, "password");
    }

    #[test]
    fn secret_name_and_separate_key() {
        let mut a = with(ANN_PASSWORD_SECRET, "db-secret");
        a.push((ANN_PASSWORD_KEY, "pw"));
        let spec = grant_spec(&svc(&a), &Policy::default()).unwrap().unwrap();
        assert_eq!(spec.password_key, "pw");
        let (k, r) = rejected(&with(ANN_PASSWORD_SECRET, "db-secret"));
        assert_eq!(k, ANN_PASSWORD_KEY);
        assert!(r.contains("missing"), "{r}");
        let mut both = good();
        both.push((ANN_PASSWORD_KEY, "pw"));
        assert_eq!(rejected(&both).0, ANN_PASSWORD_KEY);
    }

    #[test]
    fn multi_word_privileges_normalise() {
        let a = with(
            ANN_PRIVILEGES,
            "create   temporary tables, LOCK TABLES,show view",
        );
        let spec = grant_spec(&svc(&a), &Policy::default()).unwrap().unwrap();
        assert!(spec
            .privileges
            .contains(&Privilege("CREATE TEMPORARY TABLES".into())));
        assert!(spec.privileges.contains(&Privilege("LOCK TABLES".into())));
        assert!(spec.privileges.contains(&Privilege("SHOW VIEW".into())));
    }

    #[test]
    fn missing_required_annotations_are_named() {
        for key in [ANN_DATABASE, ANN_PRIVILEGES, ANN_PASSWORD_SECRET] {
            let a: Vec<_> = good().into_iter().filter(|(k, _)| *k != key).collect();
            let (k, r) = rejected(&a);
            assert_eq!(k, key);
            assert!(r.contains("missing"), "{r}");
        }
    }

    #[test]
    fn unknown_annotation_is_rejected() {
        let mut a = good();
        a.push(("podgrant.io/mysql-privilege", "SUPER"));
        let (k, r) = rejected(&a);
        assert_eq!(k, "podgrant.io/mysql-privilege");
        assert!(r.contains("unknown"));
    }

    #[test]
    fn hostile_user_names_are_rejected_with_reason() {
        let cases: &[(&str, &str)] = &[
            ("bob'", "quote"),
            ("bob\"x", "double quote"),
            ("bob`", "backtick"),
            ("bob;drop", "semicolon"),
            ("bob--x", "comment"),
            ("bob/*x", "comment"),
            ("bob#x", "comment"),
            ("bob\0", "NUL"),
            ("bоb", "non-ASCII"), // Cyrillic о
            ("bob\u{200b}", "non-ASCII"),
            ("ｂob", "non-ASCII"),
            ("bob%", "wildcard"),
            ("bob@localhost", "@"),
            ("localhost", "localhost"),
            ("my localhost", "localhost"),
            ("bob x", "whitespace"),
            ("bob\\", "backslash"),
            ("Bob", "lower-case"),
            ("1bob", "lower-case"),
            ("bob-x", "only lower-case"),
            ("", "empty"),
            ("root", "reserved"),
        ];
        for (user, why) in cases {
            let (k, r) = rejected(&with(ANN_USER, user));
            assert_eq!(k, ANN_USER, "{user:?}");
            assert!(r.contains(why), "{user:?}: {r}");
        }
    }

    #[test]
    fn long_names_are_rejected() {
        let long: &'static str = Box::leak("a".repeat(200).into_boxed_str());
        let (_, r) = rejected(&with(ANN_USER, long));
        assert!(r.contains("200 characters"), "{r}");
        let (k, r) = rejected(&with(ANN_DATABASE, long));
        assert_eq!(k, ANN_DATABASE);
        assert!(r.contains("limit is 64"), "{r}");
        let u32: &'static str = Box::leak("u".repeat(32).into_boxed_str());
        assert!(grant_spec(&svc(&with(ANN_USER, u32)), &Policy::default()).is_ok());
        let u33: &'static str = Box::leak("u".repeat(33).into_boxed_str());
        assert!(rejected(&with(ANN_USER, u33)).1.contains("limit is 32"));
    }

    #[test]
    fn hostile_database_names_are_rejected() {
        for db in [
            "db`; DROP DATABASE x; --",
            "db'",
            "d%",
            "mysql",
            "information_schema",
            "podgrant",
            "db.x",
            "*",
            "dbé",
        ] {
            let (k, _) = rejected(&with(ANN_DATABASE, db));
            assert_eq!(k, ANN_DATABASE, "{db:?}");
        }
    }

    #[test]
    fn dangerous_privileges_are_rejected() {
        for p in [
            "ALL",
            "ALL PRIVILEGES",
            "all privileges",
            "SUPER",
            "GRANT OPTION",
            "FILE",
            "PROCESS",
            "SHUTDOWN",
            "RELOAD",
            "SELECT, SUPER",
            "SELECT; DROP TABLE x",
            "SELECT -- x",
            "SELECT,",
            ",SELECT",
            "",
            "SELECT, SELECT",
            "SELECT\0",
            "SELEСT", // Cyrillic С
            "CREATE USER",
        ] {
            let (k, r) = rejected(&with(ANN_PRIVILEGES, p));
            assert_eq!(k, ANN_PRIVILEGES, "{p:?}");
            assert!(!r.is_empty());
        }
        let (_, r) = rejected(&with(ANN_PRIVILEGES, "ALL PRIVILEGES"));
        assert!(r.contains("allowlist"), "{r}");
    }

    #[test]
    fn policy_can_allow_more_but_only_real_privileges() {
        let policy = Policy::default()
            .with_allowed_privileges(["SELECT", "grant option"])
            .unwrap();
        let s = svc(&with(ANN_PRIVILEGES, "SELECT, GRANT OPTION"));
        assert!(grant_spec(&s, &policy).unwrap().is_some());
        let s = svc(&with(ANN_PRIVILEGES, "INSERT"));
        assert!(grant_spec(&s, &policy).is_err());
        assert!(Policy::default()
            .with_allowed_privileges(["SELECT; DROP"])
            .is_err());
        assert!(Policy::default()
            .with_allowed_privileges(["SUPER"])
            .is_err());
    }

    #[test]
    fn hostile_secret_references_are_rejected() {
        for s in ["../x/key", "Sec/key", "x/k'ey", "x/", "/key", "x/k y"] {
            let (k, _) = rejected(&with(ANN_PASSWORD_SECRET, s));
            assert_eq!(k, ANN_PASSWORD_SECRET, "{s:?}");
        }
    }

    #[test]
    fn ledger_schema_is_forbidden() {
        let policy = Policy::default().with_ledger_schema("pg_ledger");
        let s = svc(&with(ANN_DATABASE, "pg_ledger"));
        assert!(grant_spec(&s, &policy).is_err());
    }

    #[test]
    fn passwords_are_checked_without_echo() {
        assert!(check_password("s3cr3t-'quoted' \"ok\" ü").is_ok());
        for (pw, why) in [
            ("", "empty"),
            ("abc\0def", "control"),
            ("abc\ndef", "control"),
            ("abc\\def", "backslash"),
        ] {
            let r = check_password(pw).unwrap_err();
            assert!(r.contains(why), "{r}");
            if !pw.is_empty() {
                assert!(!r.contains(pw));
            }
        }
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(check_password(&long).unwrap_err().contains("limit"));
    }

    #[test]
    fn values_in_reasons_are_quoted_when_short_and_printable_else_described() {
        let long = "a".repeat(65);
        for (value, want) in [
            ("SELECT; DROP", "\"SELECT; DROP\""),
            ("a b", "\"a b\""),
            (&long[..64], &format!("{:?}", &long[..64])[..]),
            (
                &long[..],
                "the value (65 characters, 0 non-ASCII, 0 control)",
            ),
            ("x\ny", "the value (3 characters, 0 non-ASCII, 1 control)"),
            ("é", "the value (1 characters, 1 non-ASCII, 0 control)"),
        ] {
            assert_eq!(describe(value), want, "{value:?}");
        }
        // And a refused privilege item names the value so quoted.
        let (_, r) = rejected(&with(ANN_PRIVILEGES, "SELECT, drop-table"));
        assert!(r.contains("\"drop-table\" is not a privilege name"), "{r}");
    }

    #[test]
    fn secret_names_and_keys_are_kubernetes_shaped_up_to_253_characters() {
        let name = |len: usize| "s".repeat(len);
        // (the password-secret annotation, accepted?)
        let cases: Vec<(String, bool)> = vec![
            (format!("{}/key", name(253)), true),
            (format!("{}/key", name(254)), false),
            ("db.secret-2/key".into(), true),
            ("-db/key".into(), false),
            ("db-/key".into(), false),
            ("db_secret/key".into(), false),
            (format!("db/{}", "k".repeat(253)), true),
            (format!("db/{}", "k".repeat(254)), false),
            ("db/Key-1.x_y".into(), true),
            ("db/k:y".into(), false),
        ];
        for (secret, ok) in cases {
            let s: &'static str = Box::leak(secret.clone().into_boxed_str());
            let got = grant_spec(&svc(&with(ANN_PASSWORD_SECRET, s)), &Policy::default());
            assert_eq!(got.is_ok(), ok, "{secret:?}: {got:?}");
        }
    }

    #[test]
    fn a_password_of_exactly_the_limit_is_accepted() {
        assert!(check_password(&"x".repeat(MAX_PASSWORD_LEN)).is_ok());
        // Counted in characters, not bytes.
        assert!(check_password(&"ü".repeat(MAX_PASSWORD_LEN)).is_ok());
    }

    #[test]
    fn policy_builders_add_to_the_defaults() {
        let p = Policy::default().with_reserved_user("podgrant_admin");
        assert!(check_user("podgrant_admin", &p)
            .unwrap_err()
            .contains("reserved"));
        assert!(
            check_user("root", &p).is_err(),
            "the defaults stay reserved"
        );
        let p = Policy::default().with_tenancy(Tenancy::off());
        assert!(!p.tenancy.enforced);
        assert!(check_database("mysql", &p).is_err());
    }
}
