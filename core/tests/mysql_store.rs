//! `MysqlStore` against a real MariaDB/MySQL, obtained from the harness's one test-MySQL provider.
//!
//! The provider (`harness/src/mysql.rs`, with `harness/src/require.rs`) is included by path:
//! `core` must not depend on the harness, not even as a dev-dependency, yet every crate must
//! find MySQL the same way — `MYSQL_URL`, the local server, a self-started `mariadbd`
//! (`PODGRANT_TEST_MYSQL=spawn`, what the Nix checks set), Docker. With none, a test prints a loud
//! SKIPPED line and returns — unless `PODGRANT_REQUIRE` contains `mysql`, then it fails.
//!
//! Every test uses its own ledger schema and user names (`pgt_<random>_...`), and removes only
//! what it created. Accounts are at loopback addresses; sessions are opened from 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use podgrant_core::desired::fingerprint;
use podgrant_core::grant::{AccountKey, Action, Desired, DesiredAccount, Privilege};
use podgrant_core::model::{ObjectRef, Password};
use podgrant_core::planner::{plan, plan_with_report};
use podgrant_core::sql;
use podgrant_core::store::{GrantStore, MemoryStore, MysqlStore, StoreError};

/// The shared provider's decision (`PODGRANT_REQUIRE`), included by path (see the module doc).
#[path = "../../harness/src/require.rs"]
#[allow(dead_code)]
mod require;

/// The shared test-MySQL provider, included by path (see the module doc).
#[path = "../../harness/src/mysql.rs"]
#[allow(dead_code, unexpected_cfgs)]
mod mysql;

fn admin_opts(url: &str) -> OptsBuilder {
    let opts = Opts::from_url(url).expect("provider URL parses");
    OptsBuilder::from_opts(opts).prefer_socket(false)
}

/// A test's namespace on the server: a ledger schema and a user-name prefix.
struct Ctx {
    tag: String,
    schema: String,
    store: MysqlStore,
    admin: Conn,
    url: String,
    /// Keeps a self-started server alive; dropped after [`Ctx`]'s own `Drop` cleaned up.
    _server: mysql::TestMysql,
}

impl Ctx {
    /// `None` (the provider printed a loud SKIPPED line) when no server is available and
    /// `PODGRANT_REQUIRE` does not contain `mysql`; with it, the test fails here.
    async fn new(test: &str) -> Option<Ctx> {
        let server = match mysql::provide(test).await {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => panic!("[{test}] no MySQL: {e}"),
        };
        let url = server.url().to_string();
        let admin = Conn::new(admin_opts(&url)).await.unwrap_or_else(|e| {
            panic!(
                "[{test}] admin connection to {}: {e}",
                server.redacted_url()
            )
        });
        let tag = format!("pgt_{:08x}", rand::random::<u32>());
        let schema = format!("{tag}_ledger");
        let store = MysqlStore::connect(&url, &schema)
            .await
            .expect("store connects");
        Some(Ctx {
            tag,
            schema,
            store,
            admin,
            url,
            _server: server,
        })
    }

    fn user(&self, name: &str) -> String {
        format!("{}_{name}", self.tag)
    }

    fn db(&self) -> String {
        format!("{}_db", self.tag)
    }

    fn key(&self, name: &str, ip: &str) -> AccountKey {
        AccountKey {
            user: self.user(name),
            host: ip.parse().unwrap(),
        }
    }

    /// Every account of this test that exists on the server.
    async fn accounts(&mut self) -> BTreeSet<AccountKey> {
        let rows: Vec<(String, String)> = self
            .admin
            .exec(
                "SELECT User, Host FROM mysql.user WHERE User LIKE CONCAT(?, '\\_%')",
                (self.tag.clone(),),
            )
            .await
            .unwrap();
        rows.into_iter()
            .map(|(user, host)| AccountKey {
                user,
                host: host.parse().unwrap(),
            })
            .collect()
    }

    /// `SHOW GRANTS` lines for one account, minus the USAGE line.
    async fn show_grants(&mut self, key: &AccountKey) -> Vec<String> {
        let rows: Vec<String> = self
            .admin
            .query(format!("SHOW GRANTS FOR {}", sql::account(key).unwrap()))
            .await
            .unwrap();
        rows.into_iter()
            .filter(|l| !l.starts_with("GRANT USAGE"))
            .collect()
    }

    async fn ledger_rows(&mut self) -> usize {
        let n: Option<u64> = self
            .admin
            .query_first(format!("SELECT COUNT(*) FROM `{}`.`ledger`", self.schema))
            .await
            .unwrap();
        n.unwrap_or(0) as usize
    }

    /// Observe → plan → apply until the plan is empty; returns (rounds, statements).
    async fn converge(&self, desired: &Desired) -> (usize, u64) {
        let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
        let before = self.store.statements();
        for round in 0..5 {
            let observed = self.store.observe(&wanted).await.expect("observe");
            let actions = plan(desired, &observed);
            if actions.is_empty() {
                return (round, self.store.statements() - before);
            }
            self.store.apply(&actions).await.expect("apply");
        }
        panic!("no convergence in 5 rounds");
    }

    /// Drops this test's accounts and schemas (also done on drop, so a failing test cleans up).
    async fn cleanup(self) {
        let _ = self.store.disconnect().await;
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let tag = self.tag.clone();
        let url = self.url.clone();
        // Runs on its own thread and runtime: Drop may run while a test is unwinding.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(drop_everything_tagged(&url, &tag));
        })
        .join();
    }
}

/// Drops the accounts and schemas named after `tag` (created by this test only).
async fn drop_everything_tagged(url: &str, tag: &str) {
    let Ok(mut c) = Conn::new(admin_opts(url)).await else {
        return;
    };
    let users: Vec<(String, String)> = c
        .exec(
            "SELECT User, Host FROM mysql.user WHERE User LIKE CONCAT(?, '\\_%')",
            (tag,),
        )
        .await
        .unwrap_or_default();
    for (user, host) in users {
        let _ = c
            .query_drop(format!("DROP USER IF EXISTS '{user}'@'{host}'"))
            .await;
    }
    for schema in [
        format!("{tag}_ledger"),
        format!("{tag}_db"),
        format!("{tag}xdb"),
    ] {
        let _ = c
            .query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
            .await;
    }
    let _ = c.disconnect().await;
}

fn privs(p: &[&str]) -> BTreeSet<Privilege> {
    p.iter().map(|s| Privilege(s.to_string())).collect()
}

fn want(
    key: &AccountKey,
    owner: &str,
    db: &str,
    p: &[&str],
    password: &str,
) -> (AccountKey, DesiredAccount) {
    (
        key.clone(),
        DesiredAccount {
            key: key.clone(),
            owner: ObjectRef::new("ns", owner),
            pod: ObjectRef::new("ns", format!("pod-{}", key.host)),
            database: db.to_string(),
            privileges: privs(p),
            password: Password::new(password),
            fingerprint: fingerprint(&key.user, password),
        },
    )
}

/// Logs in as `user` from 127.0.0.1 over TCP.
async fn login(url: &str, user: &str, password: &str) -> Result<Conn, mysql_async::Error> {
    Conn::new(
        admin_opts(url)
            .user(Some(user))
            .pass(Some(password))
            .db_name(None::<String>),
    )
    .await
}

#[tokio::test]
async fn grants_appear_with_exact_privileges_and_vanish_when_not_desired() {
    let Some(mut ctx) = Ctx::new("grants_appear").await else {
        return;
    };
    let db = ctx.db();
    let keys: Vec<AccountKey> = (1..=3)
        .map(|i| ctx.key("app", &format!("127.0.1.{i}")))
        .collect();
    let mut desired: Desired = keys
        .iter()
        .map(|k| want(k, "svc", &db, &["SELECT", "INSERT"], "pw-1"))
        .collect();
    let (rounds, _) = ctx.converge(&desired).await;
    assert_eq!(rounds, 1);
    assert_eq!(ctx.accounts().await, keys.iter().cloned().collect());
    let escaped = db.replace('_', "\\_");
    for k in &keys {
        let grants = ctx.show_grants(k).await;
        assert_eq!(
            grants,
            vec![format!(
                "GRANT SELECT, INSERT ON `{escaped}`.* TO `{}`@`{}`",
                k.user, k.host
            )]
        );
    }
    assert_eq!(ctx.ledger_rows().await, 3);

    // Privileges change: INSERT revoked, UPDATE granted.
    for d in desired.values_mut() {
        d.privileges = privs(&["SELECT", "UPDATE"]);
    }
    ctx.converge(&desired).await;
    for k in &keys {
        let grants = ctx.show_grants(k).await;
        assert_eq!(
            grants,
            vec![format!(
                "GRANT SELECT, UPDATE ON `{escaped}`.* TO `{}`@`{}`",
                k.user, k.host
            )]
        );
    }

    // One pod goes: its account vanishes, the others stay.
    desired.remove(&keys[0]);
    ctx.converge(&desired).await;
    assert_eq!(ctx.accounts().await, keys[1..].iter().cloned().collect());
    assert_eq!(ctx.ledger_rows().await, 2);

    // All go.
    let (_, _) = ctx.converge(&Desired::new()).await;
    assert!(ctx.accounts().await.is_empty());
    assert_eq!(ctx.ledger_rows().await, 0);
    ctx.cleanup().await;
}

#[tokio::test]
async fn password_change_takes_effect_with_hostile_characters() {
    let Some(ctx) = Ctx::new("password_change").await else {
        return;
    };
    let db = ctx.db();
    let key = ctx.key("pw", "127.0.0.1");
    let old = "old'pass\"word;-- /*x*/ `tick` é";
    let new = "new''pa'ss 100% _x_ #";
    let mut desired: Desired = [want(&key, "svc", &db, &["SELECT"], old)].into();
    ctx.converge(&desired).await;
    let mut c = login(&ctx.url, &key.user, old)
        .await
        .expect("old password logs in");
    let n: Option<u32> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(n, Some(1));
    drop(c);

    desired = [want(&key, "svc", &db, &["SELECT"], new)].into();
    let observed = ctx.store.observe(&[key.clone()].into()).await.unwrap();
    let actions = plan(&desired, &observed);
    assert_eq!(
        actions.iter().map(|a| a.kind()).collect::<Vec<_>>(),
        vec!["set_password"]
    );
    ctx.store.apply(&actions).await.unwrap();
    assert!(
        login(&ctx.url, &key.user, old).await.is_err(),
        "old password refused"
    );
    login(&ctx.url, &key.user, new)
        .await
        .expect("new password logs in");
    ctx.converge(&desired).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_password_changed_behind_the_stores_back_is_restored_by_the_next_plan() {
    let Some(mut ctx) = Ctx::new("password_drift").await else {
        return;
    };
    let key = ctx.key("drift", "127.0.0.1");
    let desired: Desired = [want(&key, "svc", &ctx.db(), &["SELECT"], "the-desired")].into();
    ctx.converge(&desired).await;
    login(&ctx.url, &key.user, "the-desired")
        .await
        .expect("desired password logs in");

    ctx.admin
        .query_drop(format!(
            "ALTER USER {} IDENTIFIED BY 'other'",
            sql::account(&key).unwrap()
        ))
        .await
        .unwrap();
    assert!(login(&ctx.url, &key.user, "the-desired").await.is_err());

    let wanted: BTreeSet<AccountKey> = [key.clone()].into();
    let before = ctx.store.statements();
    let observed = ctx.store.observe(&wanted).await.unwrap();
    assert_eq!(
        ctx.store.statements() - before,
        3,
        "the credential comes with the existence query: no extra statement"
    );
    assert_eq!(
        observed.owned[&key]
            .credential
            .matches(&Password::new("the-desired")),
        Some(false),
        "{:?}",
        observed.owned[&key].credential
    );
    let actions = plan(&desired, &observed);
    assert_eq!(
        actions.iter().map(|a| a.kind()).collect::<Vec<_>>(),
        vec!["set_password"]
    );
    ctx.store.apply(&actions).await.unwrap();
    login(&ctx.url, &key.user, "the-desired")
        .await
        .expect("the desired password logs in again");
    assert!(login(&ctx.url, &key.user, "other").await.is_err());
    let (rounds, _) = ctx.converge(&desired).await;
    assert_eq!(rounds, 0, "restored: nothing left to do");
    ctx.cleanup().await;
}

#[tokio::test]
async fn create_over_existing_account_still_sets_the_password() {
    // MariaDB's CREATE USER IF NOT EXISTS keeps an existing account's password; the store
    // always follows it with ALTER USER, so a Create over a leftover account converges.
    let Some(ctx) = Ctx::new("create_existing").await else {
        return;
    };
    let key = ctx.key("exist", "127.0.0.1");
    let desired: Desired = [want(&key, "svc", &ctx.db(), &["SELECT"], "first")].into();
    ctx.converge(&desired).await;
    let again = [Action::Create {
        key: key.clone(),
        password: Password::new("second"),
    }];
    ctx.store.apply(&again).await.unwrap();
    assert!(login(&ctx.url, &key.user, "first").await.is_err());
    login(&ctx.url, &key.user, "second")
        .await
        .expect("the Create's password is in force");
    ctx.cleanup().await;
}

#[tokio::test]
async fn drop_kills_open_sessions() {
    let Some(ctx) = Ctx::new("drop_kills").await else {
        return;
    };
    let key = ctx.key("sess", "127.0.0.1");
    let other = ctx.key("sess", "127.0.0.2");
    let desired: Desired = [
        want(&key, "svc", &ctx.db(), &["SELECT"], "pw"),
        want(&other, "svc", &ctx.db(), &["SELECT"], "pw"),
    ]
    .into();
    ctx.converge(&desired).await;
    let mut s1 = login(&ctx.url, &key.user, "pw").await.expect("login");
    let mut s2 = login(&ctx.url, &key.user, "pw").await.expect("login");
    let _: Option<u32> = s1.query_first("SELECT 1").await.unwrap();

    let before = ctx.store.statements();
    let remaining: Desired = [want(&other, "svc", &ctx.db(), &["SELECT"], "pw")].into();
    ctx.converge(&remaining).await;
    // DROP + FindSessions + 2 KILLs + Release, plus observes.
    assert!(ctx.store.statements() - before >= 5);
    let r1: Result<Option<u32>, _> = s1.query_first("SELECT 1").await;
    let r2: Result<Option<u32>, _> = s2.query_first("SELECT 1").await;
    assert!(r1.is_err(), "session 1 still alive after DROP");
    assert!(r2.is_err(), "session 2 still alive after DROP");
    assert!(login(&ctx.url, &key.user, "pw").await.is_err());
    ctx.cleanup().await;
}

#[tokio::test]
async fn revoke_ends_open_sessions() {
    // A session keeps database-level privileges of a database it already USEd after REVOKE;
    // the store kills the account's sessions so the revocation takes effect.
    let Some(mut ctx) = Ctx::new("revoke_kills").await else {
        return;
    };
    let key = ctx.key("rv", "127.0.0.1");
    let db = ctx.db();
    ctx.admin
        .query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    ctx.admin
        .query_drop(format!("CREATE TABLE `{db}`.t (x INT)"))
        .await
        .unwrap();
    ctx.converge(&[want(&key, "svc", &db, &["SELECT", "DELETE"], "pw")].into())
        .await;
    let mut s = login(&ctx.url, &key.user, "pw").await.unwrap();
    s.query_drop(format!("USE `{db}`")).await.unwrap();
    s.query_drop("DELETE FROM t").await.unwrap();
    ctx.converge(&[want(&key, "svc", &db, &["SELECT"], "pw")].into())
        .await;
    assert!(
        s.query_drop("DELETE FROM t").await.is_err(),
        "the old session lost DELETE"
    );
    let mut fresh = login(&ctx.url, &key.user, "pw").await.unwrap();
    fresh.query_drop(format!("USE `{db}`")).await.unwrap();
    fresh.query_drop("SELECT * FROM t").await.unwrap();
    assert!(fresh.query_drop("DELETE FROM t").await.is_err());
    drop(fresh);
    ctx.converge(&Desired::new()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn crash_between_statements_converges() {
    let Some(mut ctx) = Ctx::new("crash_prefix").await else {
        return;
    };
    let db = ctx.db();
    let a: Vec<AccountKey> = (1..=4)
        .map(|i| ctx.key("a", &format!("127.0.2.{i}")))
        .collect();
    let b: Vec<AccountKey> = (1..=4)
        .map(|i| ctx.key("b", &format!("127.0.2.{i}")))
        .collect();
    let first: Desired = a
        .iter()
        .map(|k| want(k, "svc-a", &db, &["SELECT", "INSERT"], "pa"))
        .collect();
    ctx.converge(&first).await;
    // The next desired state touches every kind of action: drops, claims, creates,
    // password changes, revokes and grants.
    let mut second: Desired = a[..2]
        .iter()
        .map(|k| want(k, "svc-a", &db, &["SELECT", "UPDATE"], "pa2"))
        .collect();
    second.extend(b.iter().map(|k| want(k, "svc-b", &db, &["SELECT"], "pb")));
    let wanted: BTreeSet<AccountKey> = second.keys().cloned().collect();
    let observed = ctx.store.observe(&wanted).await.unwrap();
    let actions = plan(&second, &observed);
    let kinds: BTreeSet<&str> = actions.iter().map(|a| a.kind()).collect();
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    for cut in [1, 3, actions.len() / 2, actions.len() - 1] {
        // Back to the first state, then a crash after `cut` actions, then a fresh run.
        ctx.converge(&first).await;
        let observed = ctx.store.observe(&wanted).await.unwrap();
        let actions = plan(&second, &observed);
        ctx.store.apply(&actions[..cut]).await.unwrap();
        let (rounds, _) = ctx.converge(&second).await;
        assert_eq!(rounds, 1, "one plan repairs a crash after {cut} actions");
        assert_eq!(ctx.accounts().await, wanted);
        for k in &b {
            assert_eq!(
                ctx.show_grants(k).await,
                vec![format!(
                    "GRANT SELECT ON `{}`.* TO `{}`@`{}`",
                    db.replace('_', "\\_"),
                    k.user,
                    k.host
                )]
            );
        }
    }
    ctx.converge(&Desired::new()).await;
    assert!(ctx.accounts().await.is_empty());
    ctx.cleanup().await;
}

#[tokio::test]
async fn partial_multi_account_statement_converges() {
    // MariaDB's multi-account GRANT is not all-or-nothing: an account dropped behind our back
    // between observe and apply makes it fail part-way. The error is transient, and one more
    // observe/plan/apply repairs everything.
    let Some(mut ctx) = Ctx::new("partial").await else {
        return;
    };
    let db = ctx.db();
    let keys: Vec<AccountKey> = (1..=3)
        .map(|i| ctx.key("p", &format!("127.0.5.{i}")))
        .collect();
    let first: Desired = keys
        .iter()
        .map(|k| want(k, "svc", &db, &["SELECT"], "pw"))
        .collect();
    ctx.converge(&first).await;
    let second: Desired = keys
        .iter()
        .map(|k| want(k, "svc", &db, &["SELECT", "INSERT"], "pw"))
        .collect();
    let wanted: BTreeSet<AccountKey> = second.keys().cloned().collect();
    let actions = plan(&second, &ctx.store.observe(&wanted).await.unwrap());
    assert_eq!(actions.len(), 3);
    ctx.admin
        .query_drop(format!("DROP USER {}", sql::account(&keys[1]).unwrap()))
        .await
        .unwrap();
    let err = ctx.store.apply(&actions).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let (rounds, _) = ctx.converge(&second).await;
    assert_eq!(rounds, 1);
    assert_eq!(ctx.accounts().await, wanted);
    for k in &keys {
        assert_eq!(
            ctx.show_grants(k).await,
            vec![format!(
                "GRANT SELECT, INSERT ON `{}`.* TO `{}`@`{}`",
                db.replace('_', "\\_"),
                k.user,
                k.host
            )]
        );
    }
    ctx.converge(&Desired::new()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn dropped_ledger_table_is_recreated() {
    let Some(mut ctx) = Ctx::new("ledger_gone").await else {
        return;
    };
    ctx.store.observe(&BTreeSet::new()).await.unwrap();
    ctx.admin
        .query_drop(format!("DROP DATABASE `{}`", ctx.schema))
        .await
        .unwrap();
    let err = ctx.store.observe(&BTreeSet::new()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let observed = ctx.store.observe(&BTreeSet::new()).await.unwrap();
    assert!(observed.owned.is_empty());
    assert_eq!(ctx.ledger_rows().await, 0);
    ctx.cleanup().await;
}

#[tokio::test]
async fn ledger_row_without_account_is_created() {
    let Some(mut ctx) = Ctx::new("claim_only").await else {
        return;
    };
    let key = ctx.key("claim", "127.0.0.9");
    let desired: Desired = [want(&key, "svc", &ctx.db(), &["SELECT"], "pw")].into();
    let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
    let actions = plan(&desired, &ctx.store.observe(&wanted).await.unwrap());
    assert_eq!(actions[0].kind(), "claim");
    ctx.store.apply(&actions[..1]).await.unwrap();
    let observed = ctx.store.observe(&wanted).await.unwrap();
    assert!(!observed.owned[&key].exists);
    let kinds: Vec<_> = plan(&desired, &observed).iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, vec!["create", "grant"]);
    ctx.converge(&desired).await;
    assert_eq!(ctx.accounts().await, wanted);
    ctx.converge(&Desired::new()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn connection_killed_mid_reconcile_is_transient_then_converges() {
    let Some(mut ctx) = Ctx::new("conn_killed").await else {
        return;
    };
    let db = ctx.db();
    let keys: Vec<AccountKey> = (1..=6)
        .map(|i| ctx.key("k", &format!("127.0.3.{i}")))
        .collect();
    let desired: Desired = keys
        .iter()
        .map(|k| want(k, "svc", &db, &["SELECT"], "pw"))
        .collect();
    let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
    let actions = plan(&desired, &ctx.store.observe(&wanted).await.unwrap());
    // Claim rows, CREATE, then the kill lands before ALTER USER.
    ctx.store.kill_connection_after(2);
    let err = ctx.store.apply(&actions).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // It died mid-reconcile: ledger rows and accounts exist, grants do not.
    assert_eq!(ctx.ledger_rows().await, 6);
    assert_eq!(ctx.accounts().await, wanted);
    assert!(ctx.show_grants(&keys[0]).await.is_empty());
    let (rounds, _) = ctx.converge(&desired).await;
    assert_eq!(rounds, 1);
    assert_eq!(ctx.show_grants(&keys[0]).await.len(), 1);
    ctx.converge(&Desired::new()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn foreign_accounts_are_reported_and_never_touched() {
    let Some(mut ctx) = Ctx::new("foreign").await else {
        return;
    };
    let key = ctx.key("theirs", "127.0.0.1");
    ctx.admin
        .query_drop(format!(
            "CREATE USER {} IDENTIFIED BY 'theirs'",
            sql::account(&key).unwrap()
        ))
        .await
        .unwrap();
    let desired: Desired = [want(&key, "svc", &ctx.db(), &["SELECT"], "ours")].into();
    let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
    let observed = ctx.store.observe(&wanted).await.unwrap();
    let report = plan_with_report(&desired, &observed);
    assert!(report.actions.is_empty());
    assert_eq!(report.foreign, vec![key.clone()]);
    login(&ctx.url, &key.user, "theirs")
        .await
        .expect("untouched foreign account");
    assert!(ctx.show_grants(&key).await.is_empty());
    assert_eq!(ctx.ledger_rows().await, 0);
    ctx.cleanup().await;
}

#[tokio::test]
async fn owner_change_recreates_the_account_for_the_new_service() {
    let Some(mut ctx) = Ctx::new("owner_change").await else {
        return;
    };
    let key = ctx.key("shared", "127.0.0.1");
    let db = ctx.db();
    ctx.converge(&[want(&key, "svc-a", &db, &["SELECT", "DELETE"], "pa")].into())
        .await;
    let mut session = login(&ctx.url, &key.user, "pa")
        .await
        .expect("login as A's pod");
    let desired: Desired = [want(&key, "svc-b", &db, &["SELECT"], "pb")].into();
    let observed = ctx.store.observe(&[key.clone()].into()).await.unwrap();
    let kinds: Vec<_> = plan(&desired, &observed).iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, vec!["drop", "claim", "create", "grant"]);
    ctx.converge(&desired).await;
    let r: Result<Option<u32>, _> = session.query_first("SELECT 1").await;
    assert!(r.is_err(), "A's session ended");
    assert!(login(&ctx.url, &key.user, "pa").await.is_err());
    login(&ctx.url, &key.user, "pb")
        .await
        .expect("B's password");
    assert_eq!(
        ctx.show_grants(&key).await,
        vec![format!(
            "GRANT SELECT ON `{}`.* TO `{}`@`{}`",
            db.replace('_', "\\_"),
            key.user,
            key.host
        )]
    );
    let observed = ctx.store.observe(&[key.clone()].into()).await.unwrap();
    assert_eq!(observed.owned[&key].owner, ObjectRef::new("ns", "svc-b"));
    ctx.converge(&Desired::new()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn underscore_in_database_is_not_a_wildcard() {
    let Some(mut ctx) = Ctx::new("underscore").await else {
        return;
    };
    let key = ctx.key("us", "127.0.0.1");
    let db = ctx.db(); // contains '_'
    let lookalike = format!("{}xdb", ctx.tag); // matches `<tag>_db` if `_` were a wildcard
    ctx.admin
        .query_drop(format!("CREATE DATABASE `{lookalike}`"))
        .await
        .unwrap();
    ctx.converge(&[want(&key, "svc", &db, &["SELECT"], "pw")].into())
        .await;
    let mut c = login(&ctx.url, &key.user, "pw").await.unwrap();
    let visible: Vec<String> = c.query("SHOW DATABASES").await.unwrap();
    assert!(
        !visible.contains(&lookalike),
        "grant on {db} leaked to {lookalike}: {visible:?}"
    );
    drop(c);
    ctx.admin
        .query_drop(format!("DROP DATABASE `{lookalike}`"))
        .await
        .unwrap();
    ctx.converge(&Desired::new()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn password_quoting_holds_with_and_without_no_backslash_escapes() {
    let Some(ctx) = Ctx::new("quoting").await else {
        return;
    };
    for (i, mode) in ["NO_BACKSLASH_ESCAPES", ""].iter().enumerate() {
        let key = ctx.key(&format!("q{i}"), "127.0.0.1");
        let password = "a'b''c\"d`e;f--g/*h*/%_";
        let actions = [Action::Create {
            key: key.clone(),
            password: Password::new(password),
        }];
        let stmts = sql::statements(&ctx.schema, &actions).unwrap();
        let mut c = Conn::new(admin_opts(&ctx.url)).await.unwrap();
        c.query_drop(format!("SET SESSION sql_mode = '{mode}'"))
            .await
            .unwrap();
        for st in &stmts {
            c.query_drop(&st.text).await.unwrap();
        }
        login(&ctx.url, &key.user, password)
            .await
            .unwrap_or_else(|e| panic!("password in force under sql_mode={mode:?}: {e}"));
    }
    // A backslash is refused before any SQL is built.
    let key = ctx.key("bs", "127.0.0.1");
    let err = ctx
        .store
        .apply(&[Action::Create {
            key,
            password: Password::new("x\\' OR 1 -- secret"),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)));
    assert!(!err.to_string().contains("secret"), "{err}");
    ctx.cleanup().await;
}

#[tokio::test]
async fn url_password_never_printed_and_unreachable_is_transient() {
    let store = MysqlStore::new("mysql://root:sup3rsecret@127.0.0.1:1/", "pgt_unused").unwrap();
    assert!(!format!("{store:?}").contains("sup3rsecret"));
    let err = store.observe(&BTreeSet::new()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("sup3rsecret"), "{err}");
    let err = MysqlStore::new("postgres://u:sup3rsecret@h/", "pgt_unused").unwrap_err();
    assert!(!err.to_string().contains("sup3rsecret"), "{err}");
    let err = MysqlStore::new("mysql://root@127.0.0.1/", "bad`schema").unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)));
}

/// The in-memory store has MySQL's semantics: the same sequence of desired states gives the same
/// observed states and the same statement counts on both.
#[tokio::test]
async fn memory_store_agrees_with_mysql() {
    let Some(ctx) = Ctx::new("agree").await else {
        return;
    };
    let memory = MemoryStore::new();
    let db = ctx.db();
    let k = |n: &str, ip: &str| ctx.key(n, ip);
    let steps: Vec<Desired> = vec![
        [
            want(&k("a", "127.0.4.1"), "svc-a", &db, &["SELECT"], "p1"),
            want(&k("a", "127.0.4.2"), "svc-a", &db, &["SELECT"], "p1"),
            want(
                &k("b", "127.0.4.3"),
                "svc-b",
                &db,
                &["SELECT", "INSERT"],
                "p2",
            ),
        ]
        .into(),
        [
            want(
                &k("a", "127.0.4.1"),
                "svc-a",
                &db,
                &["SELECT", "DELETE"],
                "p3",
            ),
            want(&k("a", "127.0.4.3"), "svc-b", &db, &["SELECT"], "p2"),
            want(&k("b", "127.0.4.3"), "svc-c", &db, &["INSERT"], "p2"),
        ]
        .into(),
        Desired::new(),
    ];
    for desired in &steps {
        let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
        let (m0, s0) = (memory.statements(), ctx.store.statements());
        let om = memory.observe(&wanted).await.unwrap();
        let os = ctx.store.observe(&wanted).await.unwrap();
        assert_eq!(om, os, "observed states agree");
        let actions = plan(desired, &os);
        let rm = memory.apply(&actions).await.unwrap();
        let rs = ctx.store.apply(&actions).await.unwrap();
        assert_eq!(rm, rs, "same statements for {} actions", actions.len());
        assert_eq!(
            memory.statements() - m0,
            ctx.store.statements() - s0,
            "same total statements"
        );
        assert_eq!(
            memory.observe(&wanted).await.unwrap(),
            ctx.store.observe(&wanted).await.unwrap()
        );
    }
    ctx.cleanup().await;
}

/// Grants 1,000 accounts across 10 services, then revokes them; prints statements and time.
/// `cargo test -p podgrant-core --test mysql_store -- --ignored --nocapture measure`
#[tokio::test]
#[ignore]
async fn measure_grant_and_revoke_1000_accounts_10_services() {
    let Some(mut ctx) = Ctx::new("measure").await else {
        return;
    };
    let db = ctx.db();
    let mut desired = Desired::new();
    for s in 0..10u32 {
        let user = ctx.user(&format!("s{s}"));
        for p in 0..100u32 {
            let key = AccountKey {
                user: user.clone(),
                host: IpAddr::from([127, 10 + s as u8, (p / 250) as u8, (p % 250 + 1) as u8]),
            };
            desired.insert(
                key.clone(),
                want(
                    &key,
                    &format!("svc-{s}"),
                    &format!("{db}{s}"), // one database per service (never created)
                    &["SELECT", "INSERT", "UPDATE"],
                    &format!("pw-{s}"),
                )
                .1,
            );
        }
    }
    let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
    let t = Instant::now();
    let (rounds, statements) = ctx.converge(&desired).await;
    let grant_time = t.elapsed();
    assert_eq!(rounds, 1);
    let k = desired.keys().next().unwrap().clone();
    assert_eq!(ctx.show_grants(&k).await.len(), 1);
    assert_eq!(ctx.accounts().await, wanted);
    let per_kind: BTreeMap<&str, usize> = {
        let observed = ctx.store.observe(&BTreeSet::new()).await.unwrap();
        let mut m = BTreeMap::new();
        for a in &plan(&Desired::new(), &observed) {
            *m.entry(a.kind()).or_insert(0) += 1;
        }
        m
    };
    let t = Instant::now();
    let (_, revoke_statements) = ctx.converge(&Desired::new()).await;
    let revoke_time = t.elapsed();
    assert!(ctx.accounts().await.is_empty());
    println!(
        "MEASURE grant 1000 accounts / 10 services: {statements} statements (incl. 2 observes) in {grant_time:?}"
    );
    println!(
        "MEASURE revoke 1000 accounts: {revoke_statements} statements (incl. 2 observes) in {revoke_time:?}; revoke plan {per_kind:?}"
    );
    ctx.cleanup().await;
}

/// The server stores exactly the hash the engine computed (sent as `IDENTIFIED BY PASSWORD`,
/// not re-hashed), and the pod logs in with the password itself.
#[tokio::test]
async fn the_server_stores_the_engines_native_hash_and_the_password_logs_in() {
    let Some(mut ctx) = Ctx::new("native_hash").await else {
        return;
    };
    let key = ctx.key("hash", "127.0.0.1");
    let pw = "it's \"x\"; -- /* ü密";
    ctx.converge(&[want(&key, "svc", &ctx.db(), &["SELECT"], pw)].into())
        .await;
    let (stored, plugin): (String, String) = ctx
        .admin
        .exec_first(
            "SELECT authentication_string, plugin FROM mysql.user WHERE user = ? AND host = ?",
            (key.user.as_str(), key.host.to_string()),
        )
        .await
        .unwrap()
        .expect("the account exists");
    assert_eq!(stored, sql::native_hash(pw));
    assert_eq!(plugin, "mysql_native_password");
    let mut s = login(&ctx.url, &key.user, pw)
        .await
        .expect("login with the password");
    let _: Option<u32> = s.query_first("SELECT 1").await.unwrap();
    drop(s);
    ctx.cleanup().await;
}

/// A keyed observe reads exactly the named accounts: the same rows as the whole observe
/// restricted to them (ledger, existence, credential, grants, foreign), in three statements.
#[tokio::test]
async fn observing_some_keys_reads_exactly_those_accounts() {
    let Some(mut ctx) = Ctx::new("observe_keys").await else {
        return;
    };
    let db = ctx.db();
    let desired: Desired = (1..=6)
        .map(|i| {
            want(
                &ctx.key("app", &format!("127.0.0.{i}")),
                "svc",
                &db,
                &["SELECT"],
                "pw-1",
            )
        })
        .chain([want(
            &ctx.key("other", "::1"),
            "svc2",
            &db,
            &["SELECT", "INSERT"],
            "pw-2",
        )])
        .collect();
    ctx.converge(&desired).await;
    // A foreign account (no ledger row) and an owned one with an extra privilege.
    let foreign = ctx.key("app", "127.0.0.9");
    ctx.admin
        .query_drop(format!(
            "CREATE USER {} IDENTIFIED BY 'x'",
            sql::account(&foreign).unwrap()
        ))
        .await
        .unwrap();
    let drifted = ctx.key("app", "127.0.0.2");
    ctx.admin
        .query_drop(format!(
            "GRANT INSERT ON `{db}`.* TO {}",
            sql::account(&drifted).unwrap()
        ))
        .await
        .unwrap();

    let all_keys: BTreeSet<AccountKey> = desired.keys().cloned().chain([foreign.clone()]).collect();
    let whole = ctx.store.observe(&all_keys).await.unwrap();
    let some: BTreeSet<AccountKey> = [
        drifted.clone(),
        ctx.key("other", "::1"),
        foreign.clone(),
        ctx.key("app", "127.0.0.77"), // neither in the ledger nor on the server
    ]
    .into();
    let before = ctx.store.statements();
    let keyed = ctx.store.observe_keys(&some).await.unwrap();
    assert_eq!(
        ctx.store.statements() - before,
        3,
        "ledger, mysql.user, schema privileges"
    );
    let mut expected = whole.clone();
    expected.owned.retain(|k, _| some.contains(k));
    expected.foreign.retain(|k| some.contains(k));
    assert_eq!(keyed, expected);
    assert_eq!(keyed.owned.len(), 2);
    assert_eq!(keyed.foreign, BTreeSet::from([foreign]));
    assert!(keyed.owned[&drifted].grants[&db].contains(&Privilege("INSERT".into())));
    assert!(ctx
        .store
        .observe_keys(&BTreeSet::new())
        .await
        .unwrap()
        .owned
        .is_empty());
    ctx.cleanup().await;
}
