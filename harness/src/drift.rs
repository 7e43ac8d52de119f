//! `store_drift` steps: changes made to the grant store behind the engine's back (memory store or MySQL).
//!
//! An account is named by its user and the pod whose current IP is its host:
//!
//! ```json
//! {"at": "20s", "drift": {"op": "drop_account", "namespace": "shop", "pod": "shop-orders-0", "user": "shop_orders"}}
//! ```
//!
//! | op | effect | expected of the engine |
//! |---|---|---|
//! | `drop_account` | the owned account disappears (its ledger row stays) | re-created within the resync bound |
//! | `alter_privileges` (`database`, `privileges`) | its grants are replaced | restored within the resync bound |
//! | `alter_password` (`password`) | its password is changed | restored within the resync bound: the engine compares the stored native hash with the desired password's (the harness checks the password itself on the memory store; on MySQL 8.4 `caching_sha2_password` it can't be compared and is not restored) |
//! | `add_foreign` (`password`) | an account the ledger doesn't know appears | never touched, never adopted |

use std::net::IpAddr;
use std::time::Duration;

use podgrant_core::grant::{AccountKey, Privilege};
use podgrant_core::model::{ObjectRef, Password};
use podgrant_core::store::memory::{AccountState, MemoryState};
use podgrant_sim::Sim;
use serde::{Deserialize, Serialize};

/// Why a drift step could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("pod {0} does not exist or has no IP")]
    NoPod(ObjectRef),
    #[error("{0} is not an owned account: nothing to drift")]
    NotOwned(AccountKey),
    #[error("{0} already exists: a foreign account must be new")]
    Exists(AccountKey),
    #[error(
        "{0}: not a plain identifier or privilege list (refused, the drift SQL is built from it)"
    )]
    Unsafe(String),
    #[error("MySQL: {0}")]
    Mysql(String),
}

/// A change to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreDrift {
    DropAccount {
        namespace: String,
        pod: String,
        user: String,
    },
    AlterPrivileges {
        namespace: String,
        pod: String,
        user: String,
        database: String,
        privileges: Vec<String>,
    },
    AlterPassword {
        namespace: String,
        pod: String,
        user: String,
        password: String,
    },
    AddForeign {
        namespace: String,
        pod: String,
        user: String,
        password: String,
    },
}

/// A drift step at a simulated offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedDrift {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    pub drift: StoreDrift,
}

impl StoreDrift {
    fn parts(&self) -> (&str, &str, &str) {
        match self {
            StoreDrift::DropAccount {
                namespace,
                pod,
                user,
            }
            | StoreDrift::AlterPrivileges {
                namespace,
                pod,
                user,
                ..
            }
            | StoreDrift::AlterPassword {
                namespace,
                pod,
                user,
                ..
            }
            | StoreDrift::AddForeign {
                namespace,
                pod,
                user,
                ..
            } => (namespace, pod, user),
        }
    }

    /// Whether the engine must put the account back (all but `add_foreign`).
    pub fn expects_repair(&self) -> bool {
        !matches!(self, StoreDrift::AddForeign { .. })
    }

    /// A short description (never the password).
    pub fn describe(&self, key: &AccountKey) -> String {
        let op = match self {
            StoreDrift::DropAccount { .. } => "drop_account",
            StoreDrift::AlterPrivileges { .. } => "alter_privileges",
            StoreDrift::AlterPassword { .. } => "alter_password",
            StoreDrift::AddForeign { .. } => "add_foreign",
        };
        format!("store_drift {op} of {key}")
    }

    /// The account it names: the user at the pod's current IP (read from the sim's store).
    pub fn key(&self, sim: &Sim) -> Result<AccountKey, DriftError> {
        let (ns, pod, user) = self.parts();
        let id = ObjectRef::new(ns, pod);
        let ip = sim
            .list("pods", Some(ns))
            .into_iter()
            .find(|p| p.pointer("/metadata/name").and_then(|v| v.as_str()) == Some(pod))
            .and_then(|p| {
                p.pointer("/status/podIP")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<IpAddr>().ok())
            })
            .ok_or(DriftError::NoPod(id))?;
        Ok(AccountKey {
            user: user.to_string(),
            host: ip,
        })
    }

    /// Applies it to a memory store's state.
    pub fn apply_memory(&self, key: &AccountKey, s: &mut MemoryState) -> Result<(), DriftError> {
        let owned = s.ledger.contains_key(key) && s.accounts.contains_key(key);
        match self {
            StoreDrift::AddForeign { password, .. } => {
                if s.accounts.contains_key(key) || s.ledger.contains_key(key) {
                    return Err(DriftError::Exists(key.clone()));
                }
                s.accounts.insert(
                    key.clone(),
                    AccountState {
                        password: Password::new(password),
                        grants: Default::default(),
                    },
                );
            }
            _ if !owned => return Err(DriftError::NotOwned(key.clone())),
            StoreDrift::DropAccount { .. } => {
                s.accounts.remove(key);
                s.sessions.remove(key);
            }
            StoreDrift::AlterPrivileges {
                database,
                privileges,
                ..
            } => {
                let acct = s.accounts.get_mut(key).expect("owned: checked above");
                acct.grants = [(
                    database.clone(),
                    privileges.iter().map(|p| Privilege(p.clone())).collect(),
                )]
                .into();
            }
            StoreDrift::AlterPassword { password, .. } => {
                s.accounts
                    .get_mut(key)
                    .expect("owned: checked above")
                    .password = Password::new(password);
            }
        }
        Ok(())
    }

    /// The statements that apply it to MySQL (identifiers checked, the password quoted).
    pub fn statements(&self, key: &AccountKey) -> Result<Vec<String>, DriftError> {
        let ident = |s: &str| {
            let mut c = s.chars();
            if matches!(c.next(), Some('a'..='z'))
                && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
            {
                Ok(())
            } else {
                Err(DriftError::Unsafe(s.to_string()))
            }
        };
        ident(&key.user)?;
        let account = format!("'{}'@'{}'", key.user, key.host);
        let quote = |p: &str| -> Result<String, DriftError> {
            if p.chars().any(|c| c == '\\' || c.is_control()) {
                return Err(DriftError::Unsafe("the drift password".into()));
            }
            Ok(format!("'{}'", p.replace('\'', "''")))
        };
        Ok(match self {
            StoreDrift::DropAccount { .. } => vec![format!("DROP USER {account}")],
            StoreDrift::AlterPrivileges {
                database,
                privileges,
                ..
            } => {
                ident(database)?;
                if privileges.is_empty()
                    || privileges.iter().any(|p| {
                        p.is_empty() || !p.chars().all(|c| c.is_ascii_uppercase() || c == ' ')
                    })
                {
                    return Err(DriftError::Unsafe(privileges.join(", ")));
                }
                vec![
                    format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"),
                    format!(
                        "GRANT {} ON `{}`.* TO {account}",
                        privileges.join(", "),
                        database.replace('_', "\\_")
                    ),
                ]
            }
            StoreDrift::AlterPassword { password, .. } => {
                vec![format!(
                    "ALTER USER {account} IDENTIFIED BY {}",
                    quote(password)?
                )]
            }
            StoreDrift::AddForeign { password, .. } => {
                vec![format!(
                    "CREATE USER {account} IDENTIFIED BY {}",
                    quote(password)?
                )]
            }
        })
    }
}

/// Runs drift statements on a MySQL server (a connection of the harness's own, not the engine's).
pub async fn apply_mysql(url: &str, statements: &[String]) -> Result<(), DriftError> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::Opts::from_url(url).map_err(|e| DriftError::Mysql(e.to_string()))?;
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| DriftError::Mysql(e.to_string()))?;
    for s in statements {
        conn.query_drop(s)
            .await
            .map_err(|e| DriftError::Mysql(e.to_string()))?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccountKey {
        AccountKey {
            user: "shop_app".into(),
            host: "10.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn memory_drifts_and_their_refusals() {
        let mut s = MemoryState::default();
        let d = |op: &str| -> StoreDrift {
            let mut v =
                serde_json::json!({"op": op, "namespace": "shop", "pod": "p", "user": "shop_app"});
            if op != "drop_account" {
                v["password"] = "x'y".into();
            }
            serde_json::from_value(v).unwrap()
        };
        assert!(matches!(
            d("drop_account").apply_memory(&key(), &mut s),
            Err(DriftError::NotOwned(_))
        ));
        d("add_foreign").apply_memory(&key(), &mut s).unwrap();
        assert!(matches!(
            d("add_foreign").apply_memory(&key(), &mut s),
            Err(DriftError::Exists(_))
        ));
        let sql = d("alter_password").statements(&key()).unwrap();
        assert_eq!(
            sql,
            ["ALTER USER 'shop_app'@'10.0.0.1' IDENTIFIED BY 'x''y'"]
        );
        let bad = StoreDrift::AlterPrivileges {
            namespace: "shop".into(),
            pod: "p".into(),
            user: "shop_app".into(),
            database: "shop_app".into(),
            privileges: vec!["SELECT; DROP".into()],
        };
        assert!(matches!(bad.statements(&key()), Err(DriftError::Unsafe(_))));
    }
}
