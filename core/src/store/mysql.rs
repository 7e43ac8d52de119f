//! The MySQL/MariaDB [`GrantStore`] (mysql_async): a ledger in its own schema, batched idempotent
//! account statements, session kills after drops, and errors classified transient or permanent.
//!
//! - **Ledger**: `` `<schema>`.`ledger` `` (default schema `podgrant`, created if missing), one
//!   row per managed account: `user, host, owner_namespace, owner_name, fingerprint,
//!   created_at, updated_at`. `Claim` writes the row before `Create` makes the account;
//!   `Release` deletes it after `Drop`.
//! - **Accounts**: `CREATE USER IF NOT EXISTS ... IDENTIFIED ...`, then always `ALTER USER IF
//!   EXISTS ... IDENTIFIED ...` (MariaDB keeps an existing account's password on `IF NOT EXISTS`);
//!   `DROP USER IF EXISTS`, then `KILL CONNECTION` for every process-list row of a dropped
//!   account (`DROP USER` leaves open sessions alive) — exactly those: user and IP must both
//!   match ([`crate::store::sessions`]). A row whose host is a name (a server without
//!   `skip_name_resolve`) is never killed on a guess; it is logged and counted
//!   ([`GrantStore::sessions_unmatched`]).
//! - **Passwords**: the password form is found once per store (with the ledger) from `SELECT VERSION()` and, on
//!   MySQL, whether `mysql_native_password` is `ACTIVE` ([`password_form_for`]): MariaDB and
//!   MySQL 8.0 get the native hash computed by the engine, never the password; MySQL 8.4+
//!   without the plugin gets `IDENTIFIED BY '<password>'` (MySQL rewrites it out of its general
//!   and slow logs unless `--log-raw`; see the README).
//! - **Drift**: `observe` reads each account's `plugin` and `authentication_string` with its
//!   existence (same query) as a [`Credential`]; the planner compares a native hash with the
//!   desired password's, so a password changed by hand is reset at the next resync. A
//!   `caching_sha2_password` credential (MySQL 8.4, `Cleartext` form) is salted and can't be
//!   compared: there only the ledger fingerprint counts.
//! - **Batching**: see [`crate::sql`]. MariaDB's multi-account statements are not
//!   all-or-nothing; nothing here trusts a statement's success — [`GrantStore::observe`] reads
//!   `mysql.user` and `information_schema.SCHEMA_PRIVILEGES`, and the engine re-plans from that.
//! - **Errors**: [`classify`] sorts them into [`StoreError::Transient`] (connection lost, server
//!   gone, lock wait, deadlock, read-only during failover, ...) and [`StoreError::Permanent`].
//!   Server messages of statements that carry passwords are cut before MySQL's `near '...'`
//!   excerpt; the connection URL's password is never printed (`Debug` shows host, port, user).
//!
//! The account podgrant logs in with needs: `CREATE USER`; the privileges it hands out on the
//! target databases `WITH GRANT OPTION`; `SELECT` on `mysql.user`; `PROCESS` (to see other
//! sessions) and `CONNECTION ADMIN` / `SUPER` (to kill them); and all privileges on the ledger
//! schema (`CREATE` too, if the schema does not exist yet).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Pool, Value};

use crate::grant::{AccountKey, Action, Credential, Observed, ObservedAccount, Privilege};
use crate::model::ObjectRef;
use crate::sql::{self, PasswordForm, Statement, StatementKind};
use crate::store::sessions::{self, ProcessRow};
use crate::store::{ApplyReport, GrantStore, StoreError};
use crate::validate::{self, MAX_DATABASE_LEN};

/// The default ledger schema.
pub const DEFAULT_LEDGER_SCHEMA: &str = "podgrant";

/// A grant store on MySQL 8 or MariaDB 10.11.
#[derive(Clone)]
pub struct MysqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    schema: String,
    /// `user@host:port`, for Debug and errors (never the password).
    display: String,
    /// The URL's password, scrubbed from any error text that might echo it.
    url_password: Option<String>,
    ledger_ready: AtomicBool,
    statements: AtomicU64,
    /// Fault injection: kill the apply connection after this many more statements (0 = off).
    kill_after: AtomicU64,
    /// How this server takes passwords, found on first apply.
    form: OnceLock<PasswordForm>,
    /// Sessions of a revoked user left open: their host was a name, not an IP.
    sessions_unmatched: AtomicU64,
}

/// The password form a server takes, from `SELECT VERSION()` and whether the
/// `mysql_native_password` plugin is `ACTIVE` (MySQL only; MariaDB always has it).
pub fn password_form_for(version: &str, native_plugin_active: bool) -> PasswordForm {
    if version.to_ascii_lowercase().contains("mariadb") {
        PasswordForm::MariadbHash
    } else if native_plugin_active {
        PasswordForm::MysqlNativeHash
    } else {
        PasswordForm::Cleartext
    }
}

impl fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlStore")
            .field("server", &self.inner.display)
            .field("ledger_schema", &self.inner.schema)
            .field("statements", &self.statements())
            .finish()
    }
}

/// Server error codes worth retrying.
const TRANSIENT_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1152, // aborted connection
    1158, 1159, 1160, 1161, // network read/write errors
    1205, // lock wait timeout
    1213, // deadlock
    1290, // --read-only (failover in progress)
    1317, // query interrupted
    1836, // read-only mode
    1927, // MariaDB: connection was killed
    1969, // MariaDB: max_statement_time exceeded
    2006, // server has gone away
    2013, // lost connection during query
    3024, // MySQL: max_execution_time exceeded
    4031, // MySQL: disconnected for inactivity
    1133, // GRANT to an account that vanished concurrently (MariaDB)
    1410, // GRANT to an account that vanished concurrently (MySQL 8)
    1396, // CREATE/ALTER/DROP USER raced with another client
];

/// "There is no such grant defined": REVOKE of something already gone — nothing to do.
const NO_SUCH_GRANT: &[u16] = &[1141, 1147];
/// "Unknown thread id": KILL of a session that already ended.
const UNKNOWN_THREAD: u16 = 1094;

/// Sorts a driver error into transient or permanent, with a message that holds no secret.
pub fn classify(err: &mysql_async::Error, context: &str, secrets: &[&str]) -> StoreError {
    use mysql_async::{DriverError, Error};
    let (transient, msg) = match err {
        Error::Io(e) => (true, format!("I/O: {e}")),
        Error::Driver(d) => (
            matches!(
                d,
                DriverError::ConnectionClosed
                    | DriverError::PoolDisconnected
                    | DriverError::PacketOutOfOrder
                    | DriverError::UnexpectedPacket { .. }
            ),
            format!("driver: {d}"),
        ),
        Error::Server(s) => {
            // MySQL's syntax errors quote the statement ("near '...'"): cut that part off.
            let message = s.message.split(" near ").next().unwrap_or("");
            (
                TRANSIENT_CODES.contains(&s.code),
                format!("server error {} ({}): {}", s.code, s.state, message),
            )
        }
        Error::Other(e) => (true, format!("other: {e}")),
        Error::Url(_) => (false, "invalid MySQL URL".to_string()),
    };
    let mut msg = format!("{context}: {msg}");
    for s in secrets {
        if !s.is_empty() && msg.contains(s) {
            msg = format!("{context}: error text withheld (it quoted a secret)");
        }
    }
    if transient {
        StoreError::Transient(msg)
    } else {
        StoreError::Permanent(msg)
    }
}

fn server_code(err: &mysql_async::Error) -> Option<u16> {
    match err {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

impl MysqlStore {
    /// Parses the URL and builds the pool; no I/O (the ledger is ensured on first use).
    /// `mysql://user:password@host:port/` — the password is never printed.
    pub fn new(url: &str, ledger_schema: &str) -> Result<Self, StoreError> {
        if !validate::is_plain_identifier(ledger_schema, MAX_DATABASE_LEN) {
            return Err(StoreError::Permanent(format!(
                "ledger schema {ledger_schema:?} must match ^[a-z][a-z0-9_]{{0,63}}$"
            )));
        }
        let opts = Opts::from_url(url).map_err(|e| {
            use mysql_async::UrlError;
            let what = match e {
                UrlError::Parse(p) => format!("cannot parse ({p})"),
                UrlError::UnsupportedScheme { .. } => "the scheme must be mysql://".into(),
                UrlError::UnknownParameter { param } => format!("unknown parameter {param:?}"),
                UrlError::InvalidParamValue { param, .. } => {
                    format!("invalid value for parameter {param:?}")
                }
                _ => "invalid".into(),
            };
            StoreError::Permanent(format!("MySQL URL: {what}"))
        })?;
        let display = format!(
            "{}@{}:{}",
            opts.user().unwrap_or(""),
            opts.ip_or_hostname(),
            opts.tcp_port()
        );
        let url_password = opts.pass().map(str::to_string);
        let opts = OptsBuilder::from_opts(opts);
        Ok(Self {
            inner: Arc::new(Inner {
                pool: Pool::new(opts),
                schema: ledger_schema.to_string(),
                display,
                url_password,
                ledger_ready: AtomicBool::new(false),
                statements: AtomicU64::new(0),
                kill_after: AtomicU64::new(0),
                form: OnceLock::new(),
                sessions_unmatched: AtomicU64::new(0),
            }),
        })
    }

    /// [`MysqlStore::new`], then connects and creates the ledger schema and table if missing:
    /// fails (clearly) when MySQL is unreachable or the account lacks rights.
    pub async fn connect(url: &str, ledger_schema: &str) -> Result<Self, StoreError> {
        let store = Self::new(url, ledger_schema)?;
        let mut conn = store.conn().await?;
        store.ensure_ledger(&mut conn).await?;
        Ok(store)
    }

    /// `user@host:port` of the server (no password).
    pub fn server(&self) -> &str {
        &self.inner.display
    }

    /// The ledger schema.
    pub fn ledger_schema(&self) -> &str {
        &self.inner.schema
    }

    /// SQL statements issued so far (observe queries, DDL/DCL, ledger writes, KILLs).
    pub fn statements(&self) -> u64 {
        self.inner.statements.load(Ordering::Relaxed)
    }

    /// Fault injection (tests, harness): after `n` more statements of an `apply`, the apply's
    /// connection is killed from another connection (`KILL CONNECTION`), like a server-side
    /// kill mid-reconcile. The apply then fails with a transient error.
    pub fn kill_connection_after(&self, n: u64) {
        // Stored as n + 1: the check runs before each statement, and 1 means "kill now".
        self.inner.kill_after.store(n + 1, Ordering::SeqCst);
    }

    /// Reachability (for `/readyz`): a pooled connection answers a ping.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.ping()
            .await
            .map_err(|e| self.classify(&e, "ping", &[]))
    }

    /// Closes the pool.
    pub async fn disconnect(&self) -> Result<(), StoreError> {
        self.inner
            .pool
            .clone()
            .disconnect()
            .await
            .map_err(|e| self.classify(&e, "disconnect", &[]))
    }

    fn classify(&self, e: &mysql_async::Error, context: &str, secrets: &[&str]) -> StoreError {
        let mut all: Vec<&str> = secrets.to_vec();
        if let Some(p) = &self.inner.url_password {
            all.push(p);
        }
        classify(e, context, &all)
    }

    fn count(&self, n: u64) {
        self.inner.statements.fetch_add(n, Ordering::Relaxed);
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        self.inner.pool.get_conn().await.map_err(|e| {
            let err = self.classify(&e, &format!("connecting to {}", self.inner.display), &[]);
            match err {
                // Access denied etc. at connect time is permanent; a refused socket is not.
                StoreError::Permanent(m) if server_code(&e).is_none() => StoreError::Transient(m),
                other => other,
            }
        })
    }

    async fn ensure_ledger(&self, conn: &mut Conn) -> Result<(), StoreError> {
        if self.inner.ledger_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let ddl = sql::ledger_ddl(&self.inner.schema)
            .map_err(|e| StoreError::Permanent(e.to_string()))?;
        for stmt in ddl {
            self.count(1);
            conn.query_drop(stmt)
                .await
                .map_err(|e| self.classify(&e, "creating the ledger", &[]))?;
        }
        // A setup query like the DDL: found once, before any account statement.
        self.password_form(conn).await?;
        self.inner.ledger_ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn run(
        &self,
        conn: &mut Conn,
        st: &Statement,
        secrets: &[&str],
    ) -> Result<u64, StoreError> {
        self.count(1);
        let res = if st.params.is_empty() {
            conn.query_drop(&st.text).await
        } else {
            let params: Vec<Value> = st.params.iter().map(|p| Value::from(p.as_str())).collect();
            conn.exec_drop(&st.text, Params::Positional(params)).await
        };
        res.map_err(|e| self.classify(&e, &format!("{:?}", st.kind), secrets))?;
        Ok(1)
    }

    async fn maybe_inject_kill(&self, conn: &Conn) -> Result<(), StoreError> {
        let left = self.inner.kill_after.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        if left > 1 {
            self.inner.kill_after.store(left - 1, Ordering::SeqCst);
            return Ok(());
        }
        self.inner.kill_after.store(0, Ordering::SeqCst);
        let mut killer = self.conn().await?;
        killer
            .query_drop(format!("KILL CONNECTION {}", conn.id()))
            .await
            .map_err(|e| self.classify(&e, "injected kill", &[]))?;
        Ok(())
    }

    /// How this server takes passwords (queried once, then remembered).
    async fn password_form(&self, conn: &mut Conn) -> Result<PasswordForm, StoreError> {
        if let Some(form) = self.inner.form.get() {
            return Ok(*form);
        }
        self.count(1);
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| self.classify(&e, "reading the server version", &[]))?;
        let version = version.unwrap_or_default();
        let native = if version.to_ascii_lowercase().contains("mariadb") {
            true
        } else {
            self.count(1);
            let status: Option<String> = conn
                .query_first(
                    "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS \
                     WHERE PLUGIN_NAME = 'mysql_native_password'",
                )
                .await
                .map_err(|e| self.classify(&e, "reading the auth plugins", &[]))?;
            status.is_some_and(|s| s.eq_ignore_ascii_case("ACTIVE"))
        };
        let form = password_form_for(&version, native);
        match form {
            PasswordForm::Cleartext => tracing::warn!(
                %version,
                "mysql_native_password is not active: passwords are sent as IDENTIFIED BY '...' \
                 (MySQL rewrites them out of its logs unless --log-raw; see the README)"
            ),
            _ => tracing::info!(%version, ?form, "passwords are sent as native hashes"),
        }
        Ok(*self.inner.form.get_or_init(|| form))
    }

    /// Kills the sessions of exactly the accounts of a `Drop`/`Revoke` batch, from the rows of
    /// its `FindSessions` query ([`sessions::select`]).
    async fn kill_sessions(
        &self,
        conn: &mut Conn,
        st: &Statement,
        batch: &[Action],
    ) -> Result<u64, StoreError> {
        self.count(1);
        let mut issued = 1;
        let rows: Vec<(u64, Option<String>, Option<String>)> = conn
            .query(&st.text)
            .await
            .map_err(|e| self.classify(&e, "finding sessions", &[]))?;
        let rows: Vec<ProcessRow> = rows
            .into_iter()
            .map(|(id, user, host)| ProcessRow { id, user, host })
            .collect();
        let dropped: BTreeSet<AccountKey> = batch.iter().map(|a| a.key().clone()).collect();
        let selection = sessions::select(&rows, &dropped, Some(u64::from(conn.id())));
        if !selection.unmatched.is_empty() {
            self.inner
                .sessions_unmatched
                .fetch_add(selection.unmatched.len() as u64, Ordering::Relaxed);
            for row in rows.iter().filter(|r| selection.unmatched.contains(&r.id)) {
                tracing::warn!(
                    id = row.id,
                    user = row.user.as_deref().unwrap_or(""),
                    host = row.host.as_deref().unwrap_or(""),
                    "left a session open: the server shows a host name, not an IP, so it can't be \
                     matched to the revoked account (set skip_name_resolve)"
                );
            }
        }
        for id in selection.kill {
            let kill = sql::kill_session(id);
            self.count(1);
            issued += 1;
            if let Err(e) = conn.query_drop(&kill.text).await {
                if server_code(&e) != Some(UNKNOWN_THREAD) {
                    return Err(self.classify(&e, "killing a session", &[]));
                }
            }
        }
        Ok(issued)
    }

    /// REVOKE, tolerating "no such grant": a batch falls back to one account at a time.
    async fn revoke(
        &self,
        conn: &mut Conn,
        st: &Statement,
        batch: &[Action],
    ) -> Result<u64, StoreError> {
        self.count(1);
        let mut issued = 1;
        let err = match conn.query_drop(&st.text).await {
            Ok(()) => return Ok(issued),
            Err(e) => e,
        };
        if !server_code(&err).is_some_and(|c| NO_SUCH_GRANT.contains(&c)) {
            return Err(self.classify(&err, "Revoke", &[]));
        }
        if batch.len() == 1 {
            return Ok(issued);
        }
        for action in batch {
            let one = sql::statements(&self.inner.schema, std::slice::from_ref(action))
                .map_err(|e| StoreError::Permanent(e.to_string()))?;
            for st in one.iter().filter(|st| st.kind == StatementKind::Revoke) {
                self.count(1);
                issued += 1;
                if let Err(e) = conn.query_drop(&st.text).await {
                    if !server_code(&e).is_some_and(|c| NO_SUCH_GRANT.contains(&c)) {
                        return Err(self.classify(&e, "Revoke", &[]));
                    }
                }
            }
        }
        Ok(issued)
    }

    /// Observes the whole ledger (`only: None`), or only the accounts `only` names: then every
    /// query is keyed by them, so its cost follows their number, not the ledger's size.
    async fn observe_inner(
        &self,
        wanted: &BTreeSet<AccountKey>,
        only: Option<&BTreeSet<AccountKey>>,
    ) -> Result<Observed, StoreError> {
        let mut conn = self.conn().await?;
        self.ensure_ledger(&mut conn).await?;
        // `(user, host) IN ((?, ?), …)` over `only`, with its parameters.
        let keyed = only.map(|keys| {
            let marks = vec!["(?, ?)"; keys.len()].join(", ");
            let params: Vec<Value> = keys
                .iter()
                .flat_map(|k| {
                    [
                        Value::from(k.user.as_str()),
                        Value::from(k.host.to_string()),
                    ]
                })
                .collect();
            (marks, params)
        });

        // 1. The ledger.
        let q = sql::ledger_select(&self.inner.schema)
            .map_err(|e| StoreError::Permanent(e.to_string()))?;
        self.count(1);
        let rows: Result<Vec<LedgerRow>, _> = match &keyed {
            None => conn.query(q).await,
            Some((marks, params)) => {
                conn.exec(
                    format!("{q} WHERE (user, host) IN ({marks})"),
                    Params::Positional(params.clone()),
                )
                .await
            }
        };
        let rows = rows
            .map_err(|e| {
                if matches!(server_code(&e), Some(1146) | Some(1049)) {
                    // Someone dropped the ledger: recreate it on the next call, loudly.
                    self.inner.ledger_ready.store(false, Ordering::Release);
                    tracing::error!(schema = %self.inner.schema, "the ledger table is missing; recreating it (accounts it listed are now unmanaged)");
                    return StoreError::Transient("the ledger table is missing".into());
                }
                self.classify(&e, "reading the ledger", &[])
            })?;
        let mut ledger: BTreeMap<AccountKey, (ObjectRef, String)> = BTreeMap::new();
        for (user, host, ns, name, fp) in rows {
            let Ok(host) = host.parse::<IpAddr>() else {
                tracing::warn!(%user, %host, "ledger row with a host that is not an IP; ignored");
                continue;
            };
            ledger.insert(AccountKey { user, host }, (ObjectRef::new(ns, name), fp));
        }

        // 2. Which of the accounts of interest exist.
        let users: BTreeSet<&str> = ledger
            .keys()
            .chain(wanted.iter())
            .map(|k| k.user.as_str())
            .collect();
        let mut existing: BTreeMap<AccountKey, Credential> = BTreeMap::new();
        let mut grants: BTreeMap<AccountKey, BTreeMap<String, BTreeSet<Privilege>>> =
            BTreeMap::new();
        if !users.is_empty() {
            let (filter, params) = match &keyed {
                None => (
                    format!("User IN ({})", vec!["?"; users.len()].join(", ")),
                    users.iter().map(|u| Value::from(*u)).collect(),
                ),
                Some((marks, params)) => (format!("(User, Host) IN ({marks})"), params.clone()),
            };
            self.count(1);
            // The stored credential comes in the same query (bytes: a salted form need not
            // be UTF-8). It is password-equivalent: never logged, compared by the planner.
            let rows: Vec<UserRow> = conn
                .exec(
                    format!(
                        "SELECT User, Host, plugin, authentication_string \
                         FROM mysql.user WHERE {filter}"
                    ),
                    Params::Positional(params),
                )
                .await
                .map_err(|e| self.classify(&e, "reading mysql.user", &[]))?;
            let form = self.inner.form.get().copied();
            for (user, host, plugin, auth) in rows {
                if let Ok(ip) = host.parse::<IpAddr>() {
                    let credential = credential_of(plugin.as_deref(), auth, form);
                    existing.insert(AccountKey { user, host: ip }, credential);
                }
            }

            // 3. Their database-level privileges.
            // Only the grantees with our user names (`GRANTEE LIKE 'user'@%`), with `_`
            // escaped by an explicit ESCAPE character (the default one depends on sql_mode).
            let (like, params) = match only {
                None => grantee_filter(&users),
                Some(keys) => grantee_keys(keys),
            };
            self.count(1);
            let rows: Vec<(String, String, String, String)> = conn
                .exec(
                    format!(
                        "SELECT GRANTEE, TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE \
                         FROM information_schema.SCHEMA_PRIVILEGES WHERE {like}"
                    ),
                    Params::Positional(params),
                )
                .await
                .map_err(|e| self.classify(&e, "reading schema privileges", &[]))?;
            for (grantee, schema, privilege, grantable) in rows {
                let Some((user, host)) = sql::parse_grantee(&grantee) else {
                    continue;
                };
                if !users.contains(user.as_str()) {
                    continue;
                }
                let Ok(ip) = host.parse::<IpAddr>() else {
                    continue;
                };
                let key = AccountKey { user, host: ip };
                if !ledger.contains_key(&key) {
                    continue;
                }
                let db = sql::unescape_db_pattern(&schema);
                let set = grants.entry(key).or_default().entry(db).or_default();
                set.insert(Privilege(privilege.to_ascii_uppercase()));
                if grantable.eq_ignore_ascii_case("YES") {
                    set.insert(Privilege("GRANT OPTION".into()));
                }
            }
        }

        let foreign = wanted
            .iter()
            .filter(|k| existing.contains_key(*k) && !ledger.contains_key(*k))
            .cloned()
            .collect();
        let owned = ledger
            .into_iter()
            .map(|(key, (owner, fingerprint))| {
                let credential = existing.remove(&key);
                let exists = credential.is_some();
                let credential = credential.unwrap_or_default();
                let grants = grants.remove(&key).unwrap_or_default();
                (
                    key.clone(),
                    ObservedAccount {
                        key,
                        owner,
                        fingerprint,
                        exists,
                        grants,
                        credential,
                    },
                )
            })
            .collect();
        Ok(Observed { owned, foreign })
    }

    async fn apply_inner(&self, actions: &[Action]) -> Result<ApplyReport, StoreError> {
        let mut report = ApplyReport::default();
        if actions.is_empty() {
            return Ok(report);
        }
        let mut conn = self.conn().await?;
        self.ensure_ledger(&mut conn).await?;
        let form = self.password_form(&mut conn).await?;
        for range in sql::batches(actions) {
            let batch = &actions[range];
            let stmts = sql::statements_for(&self.inner.schema, batch, form)
                .map_err(|e| StoreError::Permanent(e.to_string()))?;
            // The passwords and their hashes (password-equivalent for native logins): never
            // in an error message.
            let mut secrets: Vec<String> = Vec::new();
            for a in batch {
                if let Action::Create { password, .. } | Action::SetPassword { password, .. } = a {
                    secrets.push(password.expose().to_string());
                    secrets.push(sql::native_hash(password.expose()));
                }
            }
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            for st in &stmts {
                self.maybe_inject_kill(&conn).await?;
                report.statements += match st.kind {
                    StatementKind::FindSessions => self.kill_sessions(&mut conn, st, batch).await?,
                    StatementKind::Revoke => self.revoke(&mut conn, st, batch).await?,
                    _ => self.run(&mut conn, st, &secrets).await?,
                };
            }
            report.applied += batch.len();
        }
        Ok(report)
    }
}

/// A `mysql.user` row as observed: `User, Host, plugin, authentication_string`.
type UserRow = (String, String, Option<String>, Option<Vec<u8>>);

/// What a `mysql.user` row's `plugin` and `authentication_string` say about its password.
/// `form` is the server's password form once known (after the first apply): another plugin
/// where podgrant sets native hashes was set by hand; on a `Cleartext` server (or before the
/// form is known) it can't be compared.
pub fn credential_of(
    plugin: Option<&str>,
    auth: Option<Vec<u8>>,
    form: Option<PasswordForm>,
) -> Credential {
    let native = plugin.is_some_and(|p| p.eq_ignore_ascii_case("mysql_native_password"));
    match (native, auth.map(String::from_utf8)) {
        (true, Some(Ok(hash))) => Credential::Native(hash),
        (_, _) => match form {
            Some(PasswordForm::MariadbHash | PasswordForm::MysqlNativeHash) => {
                Credential::OtherPlugin
            }
            Some(PasswordForm::Cleartext) | None => Credential::Unknown,
        },
    }
}

/// `GRANTEE LIKE ? ESCAPE '|' OR ...` for these user names, and the patterns.
/// `GRANTEE IN (?, …)` naming exactly these accounts (`'user'@'host'`, as MySQL writes a
/// grantee; a user name that is not a plain identifier can't be podgrant's and is left out).
/// A ledger row: user, host, owner namespace, owner name, fingerprint.
type LedgerRow = (String, String, String, String, String);

/// Most accounts one keyed observe names (two parameters each); more read the whole ledger.
const MAX_KEYED_OBSERVE: usize = 256;

fn grantee_keys(keys: &BTreeSet<AccountKey>) -> (String, Vec<Value>) {
    let params: Vec<Value> = keys
        .iter()
        .filter_map(|k| sql::account(k).ok())
        .map(Value::from)
        .collect();
    if params.is_empty() {
        return ("FALSE".into(), params);
    }
    (
        format!("GRANTEE IN ({})", vec!["?"; params.len()].join(", ")),
        params,
    )
}

fn grantee_filter(users: &BTreeSet<&str>) -> (String, Vec<Value>) {
    let mut terms = Vec::with_capacity(users.len());
    let mut params = Vec::with_capacity(users.len());
    for u in users {
        let mut pattern = String::from("'");
        for c in u.chars() {
            match c {
                '_' | '%' | '|' => {
                    pattern.push('|');
                    pattern.push(c);
                }
                '\'' => pattern.push_str("''"),
                _ => pattern.push(c),
            }
        }
        pattern.push_str("'@%");
        terms.push("GRANTEE LIKE ? ESCAPE '|'");
        params.push(Value::from(pattern));
    }
    (terms.join(" OR "), params)
}

impl GrantStore for MysqlStore {
    async fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        self.observe_inner(wanted, None).await
    }

    async fn observe_keys(&self, keys: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        if keys.is_empty() {
            return Ok(Observed::default());
        }
        if keys.len() > MAX_KEYED_OBSERVE {
            // A cold start or a large change: one read of everything beats huge statements.
            let mut all = self.observe_inner(keys, None).await?;
            all.owned.retain(|k, _| keys.contains(k));
            all.foreign.retain(|k| keys.contains(k));
            return Ok(all);
        }
        self.observe_inner(keys, Some(keys)).await
    }

    async fn apply(&self, actions: &[Action]) -> Result<ApplyReport, StoreError> {
        self.apply_inner(actions).await
    }

    fn sessions_unmatched(&self) -> u64 {
        self.inner.sessions_unmatched.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::{DriverError, Error, ServerError};

    fn server(code: u16, message: &str) -> Error {
        Error::Server(ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn password_form_by_server() {
        for (version, native, form) in [
            ("10.11.6-MariaDB-0+deb12u1", true, PasswordForm::MariadbHash),
            ("10.11.6-MariaDB", false, PasswordForm::MariadbHash),
            ("8.0.36", true, PasswordForm::MysqlNativeHash),
            ("8.4.0", true, PasswordForm::MysqlNativeHash),
            ("8.4.0", false, PasswordForm::Cleartext),
            ("9.1.0", false, PasswordForm::Cleartext),
        ] {
            assert_eq!(
                password_form_for(version, native),
                form,
                "{version} {native}"
            );
        }
    }

    #[test]
    fn credential_from_plugin_and_authentication_string() {
        let hash = || Some(sql::native_hash("pw").into_bytes());
        let native = Some("mysql_native_password");
        let sha2 = Some("caching_sha2_password");
        let salted = || Some(b"$A$005$\x01\xff salt".to_vec());
        let maria = Some(PasswordForm::MariadbHash);
        let mysql80 = Some(PasswordForm::MysqlNativeHash);
        let mysql84 = Some(PasswordForm::Cleartext);
        for (plugin, auth, form, want) in [
            (
                native,
                hash(),
                maria,
                Credential::Native(sql::native_hash("pw")),
            ),
            (
                native,
                hash(),
                None,
                Credential::Native(sql::native_hash("pw")),
            ),
            (
                native,
                Some(vec![]),
                mysql80,
                Credential::Native(String::new()),
            ),
            (sha2, salted(), mysql84, Credential::Unknown),
            (sha2, salted(), None, Credential::Unknown),
            (sha2, salted(), mysql80, Credential::OtherPlugin),
            (Some("ed25519"), salted(), maria, Credential::OtherPlugin),
            (None, None, maria, Credential::OtherPlugin),
        ] {
            assert_eq!(
                credential_of(plugin, auth, form),
                want,
                "{plugin:?} {form:?}"
            );
        }
        let shown = format!("{:?}", Credential::Native(sql::native_hash("pw")));
        assert!(!shown.contains(&sql::native_hash("pw")[1..9]), "{shown}");
    }

    #[test]
    fn grantee_filter_escapes_like_wildcards() {
        let users: BTreeSet<&str> = ["app_1", "b"].into();
        let (sql, params) = grantee_filter(&users);
        assert_eq!(
            sql,
            "GRANTEE LIKE ? ESCAPE '|' OR GRANTEE LIKE ? ESCAPE '|'"
        );
        assert_eq!(
            params,
            vec![Value::from("'app|_1'@%"), Value::from("'b'@%")]
        );
    }

    #[test]
    fn classification() {
        for code in [1205, 1213, 2006, 2013, 1927, 1053, 1290] {
            assert!(
                classify(&server(code, "x"), "ctx", &[]).is_transient(),
                "{code}"
            );
        }
        for code in [1045, 1044, 1142, 1064, 1819] {
            assert!(
                !classify(&server(code, "x"), "ctx", &[]).is_transient(),
                "{code}"
            );
        }
        let io = Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(classify(&io, "ctx", &[]).is_transient());
        let closed = Error::Driver(DriverError::ConnectionClosed);
        assert!(classify(&closed, "ctx", &[]).is_transient());
    }

    #[test]
    fn messages_never_carry_secrets() {
        let e = server(
            1064,
            "You have an error in your SQL syntax; check the manual near 'IDENTIFIED BY 'hunter2'' at line 1",
        );
        let msg = classify(&e, "CreateUsers", &["hunter2"]).to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("1064"), "{msg}");
        let e = server(1819, "policy rejects hunter2");
        let msg = classify(&e, "SetPasswords", &["hunter2"]).to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("withheld"), "{msg}");
    }

    #[test]
    fn debug_and_errors_hide_the_url_password() {
        let store = MysqlStore::new("mysql://bot:s3cret@127.0.0.1:3306/", "podgrant").unwrap();
        let dbg = format!("{store:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("bot@127.0.0.1:3306"), "{dbg}");
        let e = server(1045, "Access denied for user 'bot' using password s3cret");
        let msg = store.classify(&e, "connecting", &[]).to_string();
        assert!(!msg.contains("s3cret"), "{msg}");
        for bad in [
            "mysql://bot:s3cret@[::1/",
            "http://bot:s3cret@h/",
            "mysql://bot:s3cret@h/?nope=1",
        ] {
            let err = MysqlStore::new(bad, "podgrant").unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
