//! One run's private corner of a shared MySQL server: a unique ledger schema and pod CIDR, held by a server-side lock, removed at the end — and dead runs' leftovers swept.
//!
//! Why (issue 8, cause 6): a run that reused the server's names found the previous run's
//! accounts there — foreign to its fresh ledger, so never adopted — and failed. Now:
//!
//! - **Unique per run, also across concurrent runs.** A run claims a *slot* `n` (1–254, not
//!   244, the sim's default network) by taking the MySQL named lock `podgrant_run_slot_<n>`
//!   with `GET_LOCK(…, 0)`: the server hands each slot to one live connection at a time. The
//!   slot gives the run its pod network `10.<n>.0.0/16` (so its accounts `'user'@'10.<n>.…'`
//!   can't collide with another live run's) and its ledger schema `<prefix>_n<n>_<random>`.
//! - **Removed at the end.** [`RunScope::cleanup`] drops every account its ledger lists and the
//!   schema, then releases the lock; callers run it on success and on failure.
//! - **A crashed run never disturbs the next.** A named lock dies with its connection, so a
//!   schema of a known prefix whose slot lock is free belongs to a dead run. [`RunScope::claim`]
//!   sweeps those (their ledger's accounts, then the schema) before the run starts: nothing of
//!   a dead run is adopted or counted. What it can't see: an account a crashed run created but
//!   had not yet written to its ledger (the window between two statements of one batch).
//!
//! The URL's password never appears in an error (they name the schema, not the server).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// The ledger-schema prefixes of every harness/bench run kind (the sweep looks at these only).
pub const PREFIXES: [&str; 3] = ["podgrant_repro", "pgh_run", "pgbench_ledger"];

/// The named-lock prefix a slot is held by.
const SLOT_LOCK: &str = "podgrant_run_slot_";

/// Errors claiming or cleaning a run's scope.
#[derive(Debug, thiserror::Error)]
pub enum RunScopeError {
    #[error("run scope: unknown prefix {0:?} (add it to run_scope::PREFIXES)")]
    UnknownPrefix(String),
    #[error("run scope: all 253 slots are held by live runs")]
    NoSlot,
    #[error("run scope: {what}: {message}")]
    Sql { what: String, message: String },
}

fn sql(what: &str) -> impl FnOnce(mysql_async::Error) -> RunScopeError + '_ {
    move |e| RunScopeError::Sql {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// What a sweep or cleanup removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub schemas: Vec<String>,
    pub accounts: usize,
}

/// A claimed slot; hold it for the whole run, then [`RunScope::cleanup`].
pub struct RunScope {
    slot: u8,
    schema: String,
    /// The connection holding the slot's lock (the lock dies with it).
    conn: Conn,
    /// What the claim swept from dead runs.
    swept: Removed,
}

impl std::fmt::Debug for RunScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunScope")
            .field("slot", &self.slot)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Pure: the slot of a schema named `<prefix>_n<slot>_<hex>` for a known prefix.
pub fn slot_of(schema: &str) -> Option<u8> {
    let rest = PREFIXES
        .iter()
        .find_map(|p| schema.strip_prefix(p)?.strip_prefix("_n"))?;
    let (slot, id) = rest.split_once('_')?;
    let valid_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
    let slot: u8 = slot.parse().ok()?;
    (valid_id && is_slot(slot)).then_some(slot)
}

/// Pure: slots usable as `10.<n>.0.0/16` (not 0, 255, or 244 — the sim's default network).
pub fn is_slot(n: u8) -> bool {
    !matches!(n, 0 | 244 | 255)
}

impl RunScope {
    /// Connects to `url`, claims a free slot, sweeps dead runs' leftovers and names the run's
    /// ledger schema (not created here: the store creates it).
    pub async fn claim(url: &str, prefix: &str) -> Result<RunScope, RunScopeError> {
        if !PREFIXES.contains(&prefix) {
            return Err(RunScopeError::UnknownPrefix(prefix.to_string()));
        }
        let opts = mysql_async::Opts::from_url(url).map_err(|e| RunScopeError::Sql {
            what: "parsing the server URL".into(),
            message: e.to_string(),
        })?;
        let mut conn = Conn::new(opts).await.map_err(sql("connecting"))?;
        let start: u8 = rand::random();
        let mut slot = None;
        for i in 0..=255u16 {
            let n = start.wrapping_add(i as u8);
            if !is_slot(n) {
                continue;
            }
            let got: Option<Option<i64>> = conn
                .exec_first("SELECT GET_LOCK(?, 0)", (format!("{SLOT_LOCK}{n}"),))
                .await
                .map_err(sql("taking a slot lock"))?;
            if got.flatten() == Some(1) {
                slot = Some(n);
                break;
            }
        }
        let slot = slot.ok_or(RunScopeError::NoSlot)?;
        let schema = format!("{prefix}_n{slot}_{:08x}", rand::random::<u32>());
        let mut scope = RunScope {
            slot,
            schema,
            conn,
            swept: Removed::default(),
        };
        scope.swept = scope.sweep_dead().await?;
        Ok(scope)
    }

    /// The run's ledger schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The run's pod network, for `Sim::builder().pod_cidr(…)`.
    pub fn pod_cidr(&self) -> String {
        format!("10.{}.0.0/16", self.slot)
    }

    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// What the claim swept from dead runs.
    pub fn swept(&self) -> &Removed {
        &self.swept
    }

    /// Drops the schemas of dead runs (known prefix, slot lock free — or our own slot, which
    /// we hold, so whatever is there is a dead predecessor's) and the accounts their ledgers list.
    async fn sweep_dead(&mut self) -> Result<Removed, RunScopeError> {
        let names: Vec<String> = self
            .conn
            .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            .await
            .map_err(sql("listing schemas"))?;
        let mut removed = Removed::default();
        for name in names {
            let Some(slot) = slot_of(&name) else { continue };
            if name == self.schema {
                continue;
            }
            let dead = if slot == self.slot {
                true
            } else {
                let free: Option<Option<i64>> = self
                    .conn
                    .exec_first("SELECT IS_FREE_LOCK(?)", (format!("{SLOT_LOCK}{slot}"),))
                    .await
                    .map_err(sql("checking a slot lock"))?;
                free.flatten() == Some(1)
            };
            if dead {
                removed.accounts += drop_schema_and_accounts(&mut self.conn, &name).await?;
                removed.schemas.push(name);
            }
        }
        Ok(removed)
    }

    /// Drops the accounts the run's ledger lists and the schema, then releases the slot.
    pub async fn cleanup(mut self) -> Result<Removed, RunScopeError> {
        let schema = self.schema.clone();
        let accounts = drop_schema_and_accounts(&mut self.conn, &schema).await?;
        let _ = self
            .conn
            .exec_drop("DO RELEASE_LOCK(?)", (format!("{SLOT_LOCK}{}", self.slot),))
            .await;
        let _ = self.conn.disconnect().await;
        Ok(Removed {
            schemas: vec![schema],
            accounts,
        })
    }
}

/// What of a run is still on the server: `(schemas named schema, accounts in 10.<slot>.0.0/16)`.
/// `(0, 0)` after its [`RunScope::cleanup`] (for tests and post-run checks).
pub async fn leftovers(url: &str, schema: &str, slot: u8) -> Result<(u64, u64), RunScopeError> {
    let opts = mysql_async::Opts::from_url(url).map_err(|e| RunScopeError::Sql {
        what: "parsing the server URL".into(),
        message: e.to_string(),
    })?;
    let mut c = Conn::new(opts).await.map_err(sql("connecting"))?;
    let schemas: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (schema,),
        )
        .await
        .map_err(sql("counting schemas"))?;
    let accounts: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM mysql.user WHERE Host LIKE ?",
            (format!("10.{slot}.%"),),
        )
        .await
        .map_err(sql("counting accounts"))?;
    let _ = c.disconnect().await;
    Ok((schemas.unwrap_or(0), accounts.unwrap_or(0)))
}

/// Drops every account `schema`'s ledger lists (if it has one), then the schema. Returns the
/// number of accounts dropped. Only called on schemas named by [`slot_of`].
async fn drop_schema_and_accounts(conn: &mut Conn, schema: &str) -> Result<usize, RunScopeError> {
    debug_assert!(slot_of(schema).is_some(), "{schema}");
    let exists: Option<String> = conn
        .exec_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ledger'",
            (schema,),
        )
        .await
        .map_err(sql("looking for a ledger"))?;
    let mut dropped = 0;
    if exists.is_some() {
        let rows: Vec<(String, String)> = conn
            .query(format!("SELECT `user`, `host` FROM `{schema}`.`ledger`"))
            .await
            .map_err(sql("reading a ledger"))?;
        for (user, host) in rows {
            // Ledger rows are written by the store from validated names and IPs; anything else
            // is not an account a run made.
            let Ok(host) = host.parse() else { continue };
            let key = podgrant_core::grant::AccountKey { user, host };
            let Ok(account) = podgrant_core::sql::account(&key) else {
                continue;
            };
            conn.query_drop(format!("DROP USER IF EXISTS {account}"))
                .await
                .map_err(sql("dropping an account"))?;
            dropped += 1;
        }
    }
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
        .await
        .map_err(sql("dropping a ledger schema"))?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_schemas_of_known_prefixes_have_a_slot() {
        let table = [
            ("podgrant_repro_n7_0badf00d", Some(7)),
            ("pgh_run_n254_1", Some(254)),
            ("pgbench_ledger_n1_ab", Some(1)),
            ("podgrant_repro_n244_00", None), // the sim's default network is never a slot
            ("podgrant_repro_n0_00", None),
            ("podgrant_repro_n7_", None),
            ("podgrant_repro_n7_xyz", None),
            ("podgrant_repro_1234", None), // the old naming: not ours to sweep
            ("podgrant", None),
            ("someone_else_n7_00", None),
        ];
        for (name, slot) in table {
            assert_eq!(slot_of(name), slot, "{name}");
        }
    }
}
