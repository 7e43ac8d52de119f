//! Which sessions a revoke ends: process-list rows × dropped accounts → ids to kill, and the rows that can't be matched.
//!
//! A revoke (`Drop`, `Revoke`) ends the sessions of exactly the accounts it names and nothing
//! else. A process-list row is one of them when its `USER` is the account's user and its `HOST`
//! (`ip:port`) is the account's IP. The table below is the whole policy:
//!
//! | `USER` | `HOST` | decision |
//! |---|---|---|
//! | not a dropped account's user | anything | untouched, not counted |
//! | a dropped account's user | the dropped account's IP | **killed** |
//! | a dropped account's user | another IP (e.g. a `'user'@'%'` session) | untouched, not counted |
//! | a dropped account's user | a host name, `localhost`, empty | untouched, **counted unmatched** |
//! | — | the store's own connection | untouched |
//!
//! A host name is what a server shows when it resolves client addresses (no
//! `skip_name_resolve`). The name does not prove which address connected — one name can map to
//! several addresses, and the engine's resolver need not agree with the server's — so such a
//! session is never killed on a guess: killing it might end another account's session (a
//! `'legacy'@'%'` client, the DBA's own). It is counted (`podgrant_sessions_unmatched_total`)
//! and logged instead; the README recommends `skip_name_resolve` so that every row carries its
//! IP and a revoked pod's session is always ended.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::grant::AccountKey;
use crate::sql;

/// One row of `information_schema.PROCESSLIST` (`ID, USER, HOST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub id: u64,
    pub user: Option<String>,
    pub host: Option<String>,
}

/// What [`select`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillSelection {
    /// Sessions of a dropped account, by id, in process-list order.
    pub kill: Vec<u64>,
    /// Sessions of a dropped account's user whose host is not an IP: left alone, counted.
    pub unmatched: Vec<u64>,
}

/// The sessions to end for `dropped` (see the module doc). `own` is the id of the connection
/// asking (never killed).
pub fn select(
    rows: &[ProcessRow],
    dropped: &BTreeSet<AccountKey>,
    own: Option<u64>,
) -> KillSelection {
    let mut out = KillSelection::default();
    for row in rows {
        if Some(row.id) == own {
            continue;
        }
        let (Some(user), Some(host)) = (row.user.as_deref(), row.host.as_deref()) else {
            continue;
        };
        if !dropped.iter().any(|k| k.user == user) {
            continue;
        }
        match sql::processlist_host(host).parse::<IpAddr>() {
            Ok(ip) => {
                let key = AccountKey {
                    user: user.to_string(),
                    host: ip.to_canonical(),
                };
                if dropped.contains(&key) {
                    out.kill.push(row.id);
                }
            }
            Err(_) => out.unmatched.push(row.id),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, user: &str, host: &str) -> ProcessRow {
        ProcessRow {
            id,
            user: Some(user.into()),
            host: Some(host.into()),
        }
    }

    fn key(user: &str, ip: &str) -> AccountKey {
        AccountKey {
            user: user.into(),
            host: ip.parse().unwrap(),
        }
    }

    #[test]
    fn only_the_dropped_accounts_sessions_are_killed() {
        let dropped = BTreeSet::from([key("shop_app", "10.0.0.5"), key("shop_ro", "fd00::7")]);
        let rows = vec![
            // (row, killed?, unmatched?)
            row(1, "shop_app", "10.0.0.5:40001"), // the pod's own session
            row(2, "shop_app", "10.0.0.6:40002"), // same user, another pod / a '%' account
            row(3, "shop_app", "legacy-host:4003"), // a name: can't prove the address
            row(4, "shop_app", "localhost"),      // a unix-socket session (the DBA's, say)
            row(5, "root", "10.0.0.5:40005"),     // another user from the pod's IP
            row(6, "shop_ro", "[fd00::7]:40006"), // v6, bracketed
            row(7, "shop_ro", "fd00::7:40007"),   // v6, bare
            row(8, "shop_ro", "::ffff:10.0.0.5:1"), // v4-mapped: not the account's host
            row(9, "shop_app", "10.0.0.5:40009"), // the store's own connection
            ProcessRow {
                id: 10,
                user: None,
                host: None,
            }, // a system thread
            row(11, "shop_app", ""),
        ];
        let sel = select(&rows, &dropped, Some(9));
        assert_eq!(sel.kill, vec![1, 6, 7]);
        assert_eq!(sel.unmatched, vec![3, 4, 11]);
    }

    #[test]
    fn a_mapped_v4_row_matches_a_v4_account() {
        let dropped = BTreeSet::from([key("a", "10.0.0.5")]);
        let sel = select(&[row(1, "a", "::ffff:10.0.0.5:5")], &dropped, None);
        assert_eq!(sel.kill, vec![1]);
        assert!(select(&[row(1, "a", "10.0.0.5:5")], &BTreeSet::new(), None)
            .kill
            .is_empty());
    }
}
