//! Pure SQL building: actions → batched statements, from validated values with safe quoting.
//!
//! MySQL placeholders cannot stand for account names or passwords, so those statements are
//! text. Everything interpolated is re-checked here, whatever the caller validated before:
//!
//! - **user names** must match `^[a-z][a-z0-9_]{0,31}$` and are quoted `'user'` — nothing in
//!   that alphabet needs escaping.
//! - **hosts** are always `IpAddr`s printed by Rust (digits, `.`, `:`, hex): `'10.0.0.7'`.
//! - **database names** must match `^[a-z][a-z0-9_]{0,63}$` and are written in backticks. In
//!   `GRANT`/`REVOKE ... ON db.*`, `_` is a wildcard, so it is written `\_` (a backslash inside
//!   backticks is no escape in any SQL mode; MySQL and MariaDB then match `_` literally).
//! - **privileges** must be names from [`crate::validate::KNOWN_DB_PRIVILEGES`] to be granted;
//!   a `REVOKE` also takes any upper-case, privilege-shaped name the server itself reported.
//! - **passwords** must pass [`crate::validate::check_password`] — printable, no control
//!   characters, no backslash. They are not sent at all where the server takes a hash
//!   ([`PasswordForm`]): MariaDB gets `IDENTIFIED BY PASSWORD '*…'`, MySQL 8.0 `IDENTIFIED WITH
//!   mysql_native_password AS '*…'`, both the [`native_hash`] computed here, so no statement log
//!   ever holds the password. Only [`PasswordForm::Cleartext`] (MySQL 8.4+ without the native
//!   plugin) sends a literal, quoted by doubling `'`: without backslashes a single-quoted literal
//!   reads the same with and without `NO_BACKSLASH_ESCAPES`, so the quoting holds in every SQL
//!   mode (and the connection uses utf8mb4, so no multi-byte tricks).
//!
//! Ledger rows are written with placeholders ([`Statement::params`]).
//!
//! Batching: consecutive actions of one kind become one statement where MySQL allows it
//! (`CREATE USER IF NOT EXISTS a, b`, `DROP USER IF EXISTS a, b`, `GRANT ... TO a, b` for the
//! same database and privileges, one multi-row ledger `INSERT`). MariaDB's multi-account
//! statements are not all-or-nothing, so callers verify by observing, never by trusting success.

use std::fmt;
use std::ops::Range;

use crate::grant::{AccountKey, Action, Privilege};
use crate::validate::{self, KNOWN_DB_PRIVILEGES, MAX_DATABASE_LEN, MAX_USER_LEN};

/// Most accounts in one statement (bounds statement size well under `max_allowed_packet`).
pub const MAX_BATCH: usize = 500;

/// A value refused by the SQL builder. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("refusing user name {0:?}: not a plain identifier")]
    User(String),
    #[error("refusing database name {0:?}: not a plain identifier")]
    Database(String),
    #[error("refusing schema name {0:?}: not a plain identifier")]
    Schema(String),
    #[error("refusing privilege {0:?}: not a database privilege")]
    Privilege(String),
    #[error("refusing password for {account}: {reason}")]
    Password { account: String, reason: String },
    #[error("empty privilege list for {0}")]
    NoPrivileges(String),
}

/// What a statement does (for counting, logging and error classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatementKind {
    DropUsers,
    /// Finds the dropped accounts' sessions; the store then issues one `KILL` per session.
    FindSessions,
    /// `KILL CONNECTION <id>` of one session chosen by [`crate::store::sessions::select`].
    KillSession,
    ReleaseRows,
    ClaimRows,
    CreateUsers,
    SetPasswords,
    UpdateFingerprints,
    Grant,
    Revoke,
}

/// One SQL statement. `Debug` never shows the text, which may hold passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    pub kind: StatementKind,
    pub text: String,
    /// Values for `?` placeholders (ledger statements only).
    pub params: Vec<String>,
    /// How many accounts it covers.
    pub accounts: usize,
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statement")
            .field("kind", &self.kind)
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

/// `'user'@'ip'`, after re-checking the user name.
pub fn account(key: &AccountKey) -> Result<String, SqlError> {
    if !validate::is_plain_identifier(&key.user, MAX_USER_LEN) {
        return Err(SqlError::User(key.user.clone()));
    }
    Ok(format!("'{}'@'{}'", key.user, key.host))
}

/// `` `name` `` for a database or schema name (plain identifiers only).
pub fn ident(name: &str) -> Result<String, SqlError> {
    if !validate::is_plain_identifier(name, MAX_DATABASE_LEN) {
        return Err(SqlError::Schema(name.to_string()));
    }
    Ok(format!("`{name}`"))
}

/// `` `db`.* `` for GRANT/REVOKE, with `_` escaped so it is not a wildcard.
pub fn grant_target(database: &str) -> Result<String, SqlError> {
    if !validate::is_plain_identifier(database, MAX_DATABASE_LEN) {
        return Err(SqlError::Database(database.to_string()));
    }
    Ok(format!("`{}`.*", database.replace('_', "\\_")))
}

/// The inverse of the escaping in [`grant_target`], for names read back from the grant tables.
pub fn unescape_db_pattern(pattern: &str) -> String {
    pattern.replace("\\_", "_").replace("\\%", "%")
}

/// `'...'` with `'` doubled, after checking the password (see the module doc).
pub fn password_literal(key: &AccountKey, password: &str) -> Result<String, SqlError> {
    validate::check_password(password).map_err(|reason| SqlError::Password {
        account: key.to_string(),
        reason,
    })?;
    let mut s = String::with_capacity(password.len() + 2);
    s.push('\'');
    for c in password.chars() {
        if c == '\'' {
            s.push('\'');
        }
        s.push(c);
    }
    s.push('\'');
    Ok(s)
}

/// How `CREATE USER` / `ALTER USER` carry a password: which one a server takes is found by the
/// store ([`crate::store::mysql`]) from `VERSION()` and the loaded plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PasswordForm {
    /// MariaDB: `IDENTIFIED BY PASSWORD '*<native hash>'`.
    #[default]
    MariadbHash,
    /// MySQL 8.0 (or later with the plugin loaded): `IDENTIFIED WITH mysql_native_password AS
    /// '*<native hash>'`.
    MysqlNativeHash,
    /// MySQL 8.4+ without `mysql_native_password`: `IDENTIFIED BY '<password>'` — the server
    /// hashes it with its default plugin (`caching_sha2_password`), whose stored form is salted
    /// by the server. The README says how to keep this statement out of logs.
    Cleartext,
}

pub use crate::native::native_hash;

/// `IDENTIFIED ...` for one account in the given form (the password is checked in every form,
/// so a refused password is refused on every server alike).
pub fn identified(
    key: &AccountKey,
    password: &str,
    form: PasswordForm,
) -> Result<String, SqlError> {
    let literal = password_literal(key, password)?;
    Ok(match form {
        PasswordForm::MariadbHash => format!("IDENTIFIED BY PASSWORD '{}'", native_hash(password)),
        PasswordForm::MysqlNativeHash => format!(
            "IDENTIFIED WITH mysql_native_password AS '{}'",
            native_hash(password)
        ),
        PasswordForm::Cleartext => format!("IDENTIFIED BY {literal}"),
    })
}

/// `KILL CONNECTION <id>`.
pub fn kill_session(id: u64) -> Statement {
    Statement {
        kind: StatementKind::KillSession,
        text: format!("KILL CONNECTION {id}"),
        params: vec![],
        accounts: 1,
    }
}

/// `SELECT, INSERT`. With `known_only`, from [`KNOWN_DB_PRIVILEGES`] only (for `GRANT`);
/// otherwise any name shaped like a privilege (upper-case words; for `REVOKE` of what the server
/// reported, e.g. a privilege only a newer server knows).
pub fn privilege_list(
    privileges: &std::collections::BTreeSet<Privilege>,
    known_only: bool,
) -> Result<String, SqlError> {
    let mut parts = Vec::with_capacity(privileges.len());
    for p in privileges {
        let shaped = !p.0.is_empty()
            && p.0.len() <= 64
            && p.0
                .split(' ')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase()));
        let ok = if known_only {
            KNOWN_DB_PRIVILEGES.contains(&p.0.as_str())
        } else {
            shaped
        };
        if !ok {
            return Err(SqlError::Privilege(p.0.clone()));
        }
        parts.push(p.0.as_str());
    }
    Ok(parts.join(", "))
}

/// Splits `actions` into runs that one statement group can carry: same kind, and for
/// `Grant`/`Revoke` the same database and privileges; at most [`MAX_BATCH`] actions each.
pub fn batches(actions: &[Action]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=actions.len() {
        let split = i == actions.len()
            || i - start >= MAX_BATCH
            || !same_batch(&actions[start], &actions[i]);
        if split {
            out.push(start..i);
            start = i;
        }
    }
    out
}

fn same_batch(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (
            Action::Grant {
                database: d1,
                privileges: p1,
                ..
            },
            Action::Grant {
                database: d2,
                privileges: p2,
                ..
            },
        )
        | (
            Action::Revoke {
                database: d1,
                privileges: p1,
                ..
            },
            Action::Revoke {
                database: d2,
                privileges: p2,
                ..
            },
        ) => d1 == d2 && p1 == p2,
        _ => a.kind() == b.kind(),
    }
}

fn accounts_of(batch: &[Action]) -> Result<Vec<String>, SqlError> {
    batch.iter().map(|a| account(a.key())).collect()
}

/// The ledger table, `` `schema`.`ledger` ``.
pub fn ledger_table(schema: &str) -> Result<String, SqlError> {
    Ok(format!("{}.`ledger`", ident(schema)?))
}

/// Statements creating the ledger schema and table if missing.
pub fn ledger_ddl(schema: &str) -> Result<Vec<String>, SqlError> {
    Ok(vec![
        format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
            ident(schema)?
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             user VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             host VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             owner_namespace VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             owner_name VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             fingerprint CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (user, host)) ENGINE=InnoDB",
            ledger_table(schema)?
        ),
    ])
}

/// The query reading the whole ledger: `user, host, owner_namespace, owner_name, fingerprint`.
pub fn ledger_select(schema: &str) -> Result<String, SqlError> {
    Ok(format!(
        "SELECT user, host, owner_namespace, owner_name, fingerprint FROM {}",
        ledger_table(schema)?
    ))
}

/// Builds the statements for one batch (a range from [`batches`]). `DropUsers` and `Revoke` are
/// followed by a `FindSessions` query whose rows the store turns into `KILL CONNECTION`s: neither
/// `DROP USER` nor `REVOKE` ends a session's access (a session keeps the database-level
/// privileges of a database it already `USE`d).
pub fn statements(schema: &str, batch: &[Action]) -> Result<Vec<Statement>, SqlError> {
    statements_for(schema, batch, PasswordForm::default())
}

/// [`statements`] for a server that takes passwords in `form`.
pub fn statements_for(
    schema: &str,
    batch: &[Action],
    form: PasswordForm,
) -> Result<Vec<Statement>, SqlError> {
    let Some(first) = batch.first() else {
        return Ok(vec![]);
    };
    let n = batch.len();
    let table = ledger_table(schema)?;
    let st = |kind, text: String, params: Vec<String>| Statement {
        kind,
        text,
        params,
        accounts: n,
    };
    Ok(match first {
        Action::Drop { .. } => {
            let accounts = accounts_of(batch)?;
            vec![
                st(
                    StatementKind::DropUsers,
                    format!("DROP USER IF EXISTS {}", accounts.join(", ")),
                    vec![],
                ),
                st(StatementKind::FindSessions, find_sessions(batch), vec![]),
            ]
        }
        Action::Release { .. } => {
            accounts_of(batch)?;
            let mut params = Vec::with_capacity(2 * n);
            for a in batch {
                params.push(a.key().user.clone());
                params.push(a.key().host.to_string());
            }
            let tuples = vec!["(?, ?)"; n].join(", ");
            vec![st(
                StatementKind::ReleaseRows,
                format!("DELETE FROM {table} WHERE (user, host) IN ({tuples})"),
                params,
            )]
        }
        Action::Claim { .. } => {
            let mut params = Vec::with_capacity(5 * n);
            for a in batch {
                let Action::Claim {
                    key,
                    owner,
                    fingerprint,
                } = a
                else {
                    unreachable!("batches() groups by kind")
                };
                account(key)?;
                params.push(key.user.clone());
                params.push(key.host.to_string());
                params.push(owner.namespace.clone());
                params.push(owner.name.clone());
                params.push(fingerprint.clone());
            }
            let rows = vec!["(?, ?, ?, ?, ?)"; n].join(", ");
            vec![st(
                StatementKind::ClaimRows,
                format!(
                    "INSERT INTO {table} (user, host, owner_namespace, owner_name, fingerprint) \
                     VALUES {rows} ON DUPLICATE KEY UPDATE owner_namespace = VALUES(owner_namespace), \
                     owner_name = VALUES(owner_name), fingerprint = VALUES(fingerprint), \
                     updated_at = CURRENT_TIMESTAMP(6)"
                ),
                params,
            )]
        }
        Action::Create { .. } => {
            let mut specs = Vec::with_capacity(n);
            for a in batch {
                let Action::Create { key, password } = a else {
                    unreachable!("batches() groups by kind")
                };
                specs.push(format!(
                    "{} {}",
                    account(key)?,
                    identified(key, password.expose(), form)?
                ));
            }
            let specs = specs.join(", ");
            vec![
                st(
                    StatementKind::CreateUsers,
                    format!("CREATE USER IF NOT EXISTS {specs}"),
                    vec![],
                ),
                // MariaDB keeps an existing account's password on IF NOT EXISTS: always set it.
                st(
                    StatementKind::SetPasswords,
                    format!("ALTER USER IF EXISTS {specs}"),
                    vec![],
                ),
            ]
        }
        Action::SetPassword { .. } => {
            let mut specs = Vec::with_capacity(n);
            // fingerprint -> (user, host) pairs
            let mut by_fp: std::collections::BTreeMap<&str, Vec<&AccountKey>> =
                std::collections::BTreeMap::new();
            for a in batch {
                let Action::SetPassword {
                    key,
                    password,
                    fingerprint,
                } = a
                else {
                    unreachable!("batches() groups by kind")
                };
                specs.push(format!(
                    "{} {}",
                    account(key)?,
                    identified(key, password.expose(), form)?
                ));
                by_fp.entry(fingerprint.as_str()).or_default().push(key);
            }
            let mut out = vec![st(
                StatementKind::SetPasswords,
                format!("ALTER USER IF EXISTS {}", specs.join(", ")),
                vec![],
            )];
            // The ledger learns the new fingerprint only after the password is set.
            for (fp, keys) in by_fp {
                let mut params = vec![fp.to_string()];
                for k in &keys {
                    params.push(k.user.clone());
                    params.push(k.host.to_string());
                }
                let tuples = vec!["(?, ?)"; keys.len()].join(", ");
                out.push(Statement {
                    kind: StatementKind::UpdateFingerprints,
                    text: format!(
                        "UPDATE {table} SET fingerprint = ?, updated_at = CURRENT_TIMESTAMP(6) \
                         WHERE (user, host) IN ({tuples})"
                    ),
                    params,
                    accounts: keys.len(),
                });
            }
            out
        }
        Action::Grant {
            database,
            privileges,
            ..
        } => {
            if privileges.is_empty() {
                return Err(SqlError::NoPrivileges(first.key().to_string()));
            }
            vec![st(
                StatementKind::Grant,
                format!(
                    "GRANT {} ON {} TO {}",
                    privilege_list(privileges, true)?,
                    grant_target(database)?,
                    accounts_of(batch)?.join(", ")
                ),
                vec![],
            )]
        }
        Action::Revoke {
            database,
            privileges,
            ..
        } => {
            if privileges.is_empty() {
                return Err(SqlError::NoPrivileges(first.key().to_string()));
            }
            vec![
                st(
                    StatementKind::Revoke,
                    format!(
                        "REVOKE {} ON {} FROM {}",
                        privilege_list(privileges, false)?,
                        grant_target(database)?,
                        accounts_of(batch)?.join(", ")
                    ),
                    vec![],
                ),
                // An open session keeps database-level privileges it has already USEd
                // until it reconnects: end the sessions so the revocation takes effect.
                st(StatementKind::FindSessions, find_sessions(batch), vec![]),
            ]
        }
    })
}

/// The process-list query for the sessions of a batch's user names (validated by the caller).
fn find_sessions(batch: &[Action]) -> String {
    let mut users: Vec<&str> = batch.iter().map(|a| a.key().user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let users: Vec<String> = users.iter().map(|u| format!("'{u}'")).collect();
    format!(
        "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST WHERE USER IN ({})",
        users.join(", ")
    )
}

/// Parses `'user'@'host'` (the `GRANTEE` column of `information_schema` tables).
pub fn parse_grantee(grantee: &str) -> Option<(String, String)> {
    let (user, host) = grantee.split_once("'@'")?;
    let user = user.strip_prefix('\'')?;
    let host = host.strip_suffix('\'')?;
    Some((user.replace("''", "'"), host.replace("''", "'")))
}

/// The address part of a `PROCESSLIST.HOST` value (`ip:port`, `[v6]:port`, `v6:port`, `name`).
pub fn processlist_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((addr, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => addr,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectRef, Password};
    use std::collections::BTreeSet;

    fn key(user: &str, ip: &str) -> AccountKey {
        AccountKey {
            user: user.into(),
            host: ip.parse().unwrap(),
        }
    }

    fn privs(p: &[&str]) -> BTreeSet<Privilege> {
        p.iter().map(|s| Privilege(s.to_string())).collect()
    }

    #[test]
    fn passwords_double_quotes_only_and_refuse_backslash() {
        let k = key("app", "10.0.0.1");
        assert_eq!(password_literal(&k, "it's").unwrap(), "'it''s'");
        assert_eq!(password_literal(&k, "''").unwrap(), "''''''");
        assert_eq!(
            password_literal(&k, "a\"b`c;--d/*e").unwrap(),
            "'a\"b`c;--d/*e'"
        );
        let e = password_literal(&k, "x\\'; DROP USER root; --").unwrap_err();
        assert!(!e.to_string().contains("DROP"), "{e}");
        assert!(password_literal(&k, "nul\0").is_err());
    }

    #[test]
    fn native_hash_matches_the_servers_password_function() {
        // Vectors from MariaDB 10.11's PASSWORD() on a utf8mb4 connection.
        for (pw, hash) in [
            ("password", "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            ("mypass", "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"),
            (
                "pä\"ss;--/*wörd'",
                "*395DE5D719993AC9F32C6C93A5FCC5B9CF38E151",
            ),
            ("密码", "*E04600BB4BC876C4A82BB0860EDE6F7829AE5D2A"),
        ] {
            assert_eq!(native_hash(pw), hash, "{pw}");
        }
    }

    #[test]
    fn passwords_are_sent_as_hashes_except_where_the_server_cannot_take_one() {
        let k = key("shop_app", "10.0.0.1");
        let pw = "it's;--/*\"ü";
        let h = native_hash(pw);
        let set = |form| {
            let a = [Action::SetPassword {
                key: k.clone(),
                password: Password::new(pw),
                fingerprint: "f".into(),
            }];
            statements_for("pg", &a, form).unwrap()
        };
        let create = |form| {
            let a = [Action::Create {
                key: k.clone(),
                password: Password::new(pw),
            }];
            statements_for("pg", &a, form).unwrap()
        };
        for (form, clause) in [
            (
                PasswordForm::MariadbHash,
                format!("IDENTIFIED BY PASSWORD '{h}'"),
            ),
            (
                PasswordForm::MysqlNativeHash,
                format!("IDENTIFIED WITH mysql_native_password AS '{h}'"),
            ),
        ] {
            let stmts: Vec<Statement> = create(form).into_iter().chain(set(form)).collect();
            for st in stmts
                .iter()
                .filter(|st| st.kind != StatementKind::UpdateFingerprints)
            {
                assert!(st.text.ends_with(&clause), "{form:?}: {}", st.text);
                for piece in ["it''s", "--/*", "ü"] {
                    assert!(!st.text.contains(piece), "{form:?} leaks: {}", st.text);
                }
            }
        }
        let clear = set(PasswordForm::Cleartext);
        assert!(
            clear[0].text.ends_with("IDENTIFIED BY 'it''s;--/*\"ü'"),
            "{}",
            clear[0].text
        );
        // A refused password is refused in every form, not only where it would be sent.
        let bad = [Action::Create {
            key: k.clone(),
            password: Password::new("back\\slash"),
        }];
        assert!(statements_for("pg", &bad, PasswordForm::MariadbHash).is_err());
        assert_eq!(kill_session(42).text, "KILL CONNECTION 42");
    }

    #[test]
    fn identifiers_are_rechecked() {
        assert!(account(&key("bad'", "10.0.0.1")).is_err());
        assert_eq!(
            account(&key("app", "10.0.0.1")).unwrap(),
            "'app'@'10.0.0.1'"
        );
        assert_eq!(account(&key("app", "fd00::1")).unwrap(), "'app'@'fd00::1'");
        assert!(ident("x`y").is_err());
        assert_eq!(grant_target("app_db").unwrap(), "`app\\_db`.*");
        assert_eq!(unescape_db_pattern("app\\_db"), "app_db");
        assert!(privilege_list(&privs(&["SELECT; DROP"]), true).is_err());
        assert!(privilege_list(&privs(&["SELECT; DROP"]), false).is_err());
        assert!(privilege_list(&privs(&["SELECT  X"]), false).is_err());
        assert!(privilege_list(&privs(&["SHOW CREATE ROUTINE"]), true).is_err());
        assert!(privilege_list(&privs(&["SHOW CREATE ROUTINE"]), false).is_ok());
        assert_eq!(
            privilege_list(&privs(&["SELECT", "LOCK TABLES"]), true).unwrap(),
            "LOCK TABLES, SELECT"
        );
    }

    #[test]
    fn consecutive_actions_batch_into_one_statement() {
        let actions = vec![
            Action::Drop {
                key: key("a", "10.0.0.1"),
            },
            Action::Drop {
                key: key("b", "10.0.0.2"),
            },
            Action::Release {
                key: key("a", "10.0.0.1"),
            },
            Action::Claim {
                key: key("c", "10.0.0.3"),
                owner: ObjectRef::new("ns", "s"),
                fingerprint: "f".into(),
            },
            Action::Create {
                key: key("c", "10.0.0.3"),
                password: Password::new("p'w"),
            },
            Action::Grant {
                key: key("c", "10.0.0.3"),
                database: "db".into(),
                privileges: privs(&["SELECT"]),
            },
            Action::Grant {
                key: key("c", "10.0.0.4"),
                database: "db".into(),
                privileges: privs(&["SELECT"]),
            },
            Action::Grant {
                key: key("c", "10.0.0.5"),
                database: "db".into(),
                privileges: privs(&["INSERT"]),
            },
        ];
        let b = batches(&actions);
        assert_eq!(b, vec![0..2, 2..3, 3..4, 4..5, 5..7, 7..8]);
        let drop = statements("pg", &actions[b[0].clone()]).unwrap();
        assert_eq!(
            drop[0].text,
            "DROP USER IF EXISTS 'a'@'10.0.0.1', 'b'@'10.0.0.2'"
        );
        assert_eq!(drop[1].kind, StatementKind::FindSessions);
        let create = statements("pg", &actions[b[3].clone()]).unwrap();
        let hash = native_hash("p'w");
        assert_eq!(
            create[0].text,
            format!("CREATE USER IF NOT EXISTS 'c'@'10.0.0.3' IDENTIFIED BY PASSWORD '{hash}'")
        );
        assert_eq!(
            create[1].text,
            format!("ALTER USER IF EXISTS 'c'@'10.0.0.3' IDENTIFIED BY PASSWORD '{hash}'")
        );
        assert!(!format!("{create:?}").contains(&hash));
        let grant = statements("pg", &actions[b[4].clone()]).unwrap();
        assert_eq!(
            grant[0].text,
            "GRANT SELECT ON `db`.* TO 'c'@'10.0.0.3', 'c'@'10.0.0.4'"
        );
        let claim = statements("pg", &actions[b[2].clone()]).unwrap();
        assert_eq!(claim[0].params, vec!["c", "10.0.0.3", "ns", "s", "f"]);
    }

    #[test]
    fn batches_are_capped() {
        let actions: Vec<Action> = (0..(MAX_BATCH * 2 + 1))
            .map(|i| Action::Release {
                key: key("a", &format!("10.0.{}.{}", i / 250, i % 250)),
            })
            .collect();
        let b = batches(&actions);
        assert_eq!(b.len(), 3);
        assert_eq!(b[2].len(), 1);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn grantee_and_processlist_parsing() {
        assert_eq!(
            parse_grantee("'app'@'10.0.0.1'"),
            Some(("app".into(), "10.0.0.1".into()))
        );
        assert_eq!(parse_grantee("garbage"), None);
        assert_eq!(processlist_host("10.0.0.1:5555"), "10.0.0.1");
        assert_eq!(processlist_host("[fd00::1]:5555"), "fd00::1");
        assert_eq!(processlist_host("localhost"), "localhost");
        assert_eq!(processlist_host("fd00::1:5555"), "fd00::1");
    }

    #[test]
    fn statement_debug_shows_kind_and_account_count_but_not_text() {
        let d = format!("{:?}", kill_session(7));
        assert!(d.starts_with("Statement"), "{d}");
        assert!(d.contains("KillSession"), "{d}");
        assert!(d.contains("accounts: 1"), "{d}");
        assert!(!d.contains("KILL CONNECTION"), "{d}");
    }

    #[test]
    fn ledger_statements_name_the_backticked_schema_table() {
        assert_eq!(ident("podgrant").unwrap(), "`podgrant`");
        // Backticks, not a GRANT pattern: `_` is not escaped in a plain identifier.
        assert_eq!(ledger_table("pg_meta").unwrap(), "`pg_meta`.`ledger`");
        assert_eq!(
            ledger_select("pg").unwrap(),
            "SELECT user, host, owner_namespace, owner_name, fingerprint FROM `pg`.`ledger`"
        );
        let ddl = ledger_ddl("pg").unwrap();
        assert_eq!(ddl.len(), 2, "{ddl:?}");
        assert_eq!(
            ddl[0],
            "CREATE DATABASE IF NOT EXISTS `pg` CHARACTER SET utf8mb4"
        );
        assert!(
            ddl[1].starts_with("CREATE TABLE IF NOT EXISTS `pg`.`ledger` (user VARCHAR(32)"),
            "{}",
            ddl[1]
        );
        assert!(
            ddl[1].ends_with("PRIMARY KEY (user, host)) ENGINE=InnoDB"),
            "{}",
            ddl[1]
        );
        for bad in ["pg`; DROP DATABASE x; --", "PG", ""] {
            assert!(ledger_table(bad).is_err(), "{bad}");
            assert!(ledger_ddl(bad).is_err(), "{bad}");
            assert!(ledger_select(bad).is_err(), "{bad}");
        }
        let release = statements(
            "pg",
            &[
                Action::Release {
                    key: key("a", "10.0.0.1"),
                },
                Action::Release {
                    key: key("b", "fd00::2"),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            release[0].text,
            "DELETE FROM `pg`.`ledger` WHERE (user, host) IN ((?, ?), (?, ?))"
        );
        assert_eq!(release[0].params, vec!["a", "10.0.0.1", "b", "fd00::2"]);
    }

    #[test]
    fn session_queries_name_each_user_once_sorted() {
        let drop: Vec<Action> = [("b", "10.0.0.1"), ("a", "10.0.0.2"), ("b", "10.0.0.3")]
            .into_iter()
            .map(|(u, ip)| Action::Drop { key: key(u, ip) })
            .collect();
        let st = statements("pg", &drop).unwrap();
        assert_eq!(st[1].kind, StatementKind::FindSessions);
        assert_eq!(
            st[1].text,
            "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST WHERE USER IN ('a', 'b')"
        );
        let revoke = [Action::Revoke {
            key: key("shop_app", "10.0.0.1"),
            database: "shop".into(),
            privileges: privs(&["SELECT"]),
        }];
        let st = statements("pg", &revoke).unwrap();
        assert_eq!(
            st[0].text,
            "REVOKE SELECT ON `shop`.* FROM 'shop_app'@'10.0.0.1'"
        );
        assert_eq!(
            st[1].text,
            "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST WHERE USER IN ('shop_app')"
        );
    }

    #[test]
    fn processlist_host_strips_only_a_numeric_port() {
        // An IPv6 address whose last group is not all digits has no port to strip.
        assert_eq!(processlist_host("fd00::abc"), "fd00::abc");
        assert_eq!(processlist_host("fd00::abc:3306"), "fd00::abc");
        assert_eq!(processlist_host("db.example:x1"), "db.example:x1");
    }
}
