//! The grant planner: a pure function from desired and observed state to actions. No I/O, no clock.
//!
//! Per account key (desired ∪ owned; foreign accounts are never touched):
//!
//! | desired | in ledger | actions |
//! |---------|-----------|---------|
//! | yes | no, not foreign | `Claim`, `Create`, `Grant` |
//! | yes | no, foreign | none — reported in [`Plan::foreign`] |
//! | yes | yes, other owner | `Drop` (ends the old owner's sessions), `Claim` (new owner), `Create`, `Grant` |
//! | yes | yes, account missing | `Claim` if the fingerprint changed, `Create`, `Grant` (crash between Claim and Create) |
//! | yes | yes, account exists | `SetPassword` if the fingerprint changed or the stored credential doesn't match the password (changed by hand); `Revoke`/`Grant` for the privilege difference |
//! | no | yes | `Drop` (always — a crash between `DROP USER` and `KILL` must still end sessions), `Release` |
//!
//! `Drop` and `Revoke` also end the account's open sessions (see [`crate::sql::statements`]);
//! `SetPassword` does not: a pod's established connections stay up across a rotation.
//!
//! The stored credential ([`crate::grant::Credential`]) is compared with the desired password's
//! `mysql_native_password` hash (computed here, per existing account, never logged). Where the
//! server keeps a salted form (MySQL 8.4 `caching_sha2_password`) it can't be compared: there a
//! password changed by hand is not noticed, only a changed fingerprint is.
//!
//! Output order is by phase, then by account key: all `Drop`s, all `Release`s, all `Claim`s,
//! `Create`s, `SetPassword`s, `Revoke`s, then `Grant`s. So a `Claim` precedes its `Create`, a
//! `Drop` precedes its `Release`, revocations land before grants, and consecutive actions of a
//! kind can be batched into one statement by the store.

use std::collections::BTreeSet;

use crate::grant::{AccountKey, Action, Desired, Observed, Privilege};

/// A plan: the actions, plus what the planner refused to touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Desired accounts that exist in MySQL without a ledger row: never adopted, never touched.
    pub foreign: Vec<AccountKey>,
}

/// Plans the actions that take `observed` to `desired`.
///
/// Contract: never an action for an account that is neither desired-and-unowned-by-others
/// nor in the ledger; a `Claim` precedes every `Create`; a `Drop` precedes every `Release`;
/// `plan(d, apply(plan(d, o), o))` is empty (idempotence).
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Action> {
    plan_with_report(desired, observed).actions
}

/// [`plan`], also reporting the desired accounts left alone because they are foreign.
pub fn plan_with_report(desired: &Desired, observed: &Observed) -> Plan {
    let mut drops = Vec::new();
    let mut releases = Vec::new();
    let mut claims = Vec::new();
    let mut creates = Vec::new();
    let mut set_passwords = Vec::new();
    let mut revokes = Vec::new();
    let mut grants = Vec::new();
    let mut foreign = Vec::new();

    // Owned accounts no longer desired.
    for (key, _) in observed
        .owned
        .iter()
        .filter(|(k, _)| !desired.contains_key(*k))
    {
        drops.push(Action::Drop { key: key.clone() });
        releases.push(Action::Release { key: key.clone() });
    }

    for (key, want) in desired {
        let have = match observed.owned.get(key) {
            Some(have) if have.owner == want.owner => have,
            owned => {
                match owned {
                    None if observed.foreign.contains(key) => {
                        foreign.push(key.clone());
                        continue;
                    }
                    // Another service's account at this IP: end it (and its sessions), start afresh.
                    Some(_) => drops.push(Action::Drop { key: key.clone() }),
                    None => {}
                }
                claims.push(Action::Claim {
                    key: key.clone(),
                    owner: want.owner.clone(),
                    fingerprint: want.fingerprint.clone(),
                });
                creates.push(Action::Create {
                    key: key.clone(),
                    password: want.password.clone(),
                });
                grants.push(Action::Grant {
                    key: key.clone(),
                    database: want.database.clone(),
                    privileges: want.privileges.clone(),
                });
                continue;
            }
        };

        let fingerprint_changed = have.fingerprint != want.fingerprint;
        if !have.exists {
            // Ledger row without account (crash between Claim and Create, or dropped by hand).
            if fingerprint_changed {
                claims.push(Action::Claim {
                    key: key.clone(),
                    owner: want.owner.clone(),
                    fingerprint: want.fingerprint.clone(),
                });
            }
            creates.push(Action::Create {
                key: key.clone(),
                password: want.password.clone(),
            });
            grants.push(Action::Grant {
                key: key.clone(),
                database: want.database.clone(),
                privileges: want.privileges.clone(),
            });
            continue;
        }

        let credential_drifted = have.credential.matches(&want.password) == Some(false);
        if fingerprint_changed || credential_drifted {
            set_passwords.push(Action::SetPassword {
                key: key.clone(),
                password: want.password.clone(),
                fingerprint: want.fingerprint.clone(),
            });
        }
        for (database, privileges) in &have.grants {
            let extra: BTreeSet<Privilege> = if *database == want.database {
                privileges.difference(&want.privileges).cloned().collect()
            } else {
                privileges.clone()
            };
            if !extra.is_empty() {
                revokes.push(Action::Revoke {
                    key: key.clone(),
                    database: database.clone(),
                    privileges: extra,
                });
            }
        }
        let held = have.grants.get(&want.database);
        let missing: BTreeSet<Privilege> = want
            .privileges
            .iter()
            .filter(|p| !held.is_some_and(|h| h.contains(*p)))
            .cloned()
            .collect();
        if !missing.is_empty() {
            grants.push(Action::Grant {
                key: key.clone(),
                database: want.database.clone(),
                privileges: missing,
            });
        }
    }

    // Each phase is already in key order (both maps are BTreeMaps iterated in order), except
    // `drops`, which merges two passes: sort it.
    drops.sort_by(|a, b| a.key().cmp(b.key()));

    let mut actions = Vec::with_capacity(
        drops.len()
            + releases.len()
            + claims.len()
            + creates.len()
            + set_passwords.len()
            + revokes.len()
            + grants.len(),
    );
    actions.extend(drops);
    actions.extend(releases);
    actions.extend(claims);
    actions.extend(creates);
    actions.extend(set_passwords);
    actions.extend(revokes);
    actions.extend(grants);
    Plan { actions, foreign }
}
