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

use crate::grant::{
    AccountKey, Action, Desired, DesiredAccount, Observed, ObservedAccount, Privilege,
};

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
    // Both maps are ordered by key: one merge walk visits every key of desired ∪ owned once,
    // in order, with no lookup (a full resync at 100,000 accounts is this loop).
    let mut phases = Phases::default();
    let mut owned = observed.owned.iter().peekable();
    for (key, want) in desired {
        while let Some((gone, have)) = owned.next_if(|(k, _)| *k < key) {
            phases.plan_key(gone, None, Some(have), observed);
        }
        let have = owned.next_if(|(k, _)| *k == key).map(|(_, have)| have);
        phases.plan_key(key, Some(want), have, observed);
    }
    for (gone, have) in owned {
        phases.plan_key(gone, None, Some(have), observed);
    }
    phases.into_plan()
}

/// [`plan_with_report`] restricted to `keys`: the actions for exactly those accounts (the
/// engine's dirty set between full resyncs). For every set of keys, the result is the full
/// plan's actions for those keys, in the same order; over all keys it is the full plan.
pub fn plan_dirty<'a>(
    desired: &Desired,
    observed: &Observed,
    keys: impl IntoIterator<Item = &'a AccountKey>,
) -> Plan {
    let mut phases = Phases::default();
    for key in keys {
        let want = desired.get(key);
        let have = observed.owned.get(key);
        if want.is_some() || have.is_some() {
            phases.plan_key(key, want, have, observed);
        }
    }
    phases.into_plan()
}

/// The actions of one plan, by phase.
#[derive(Default)]
struct Phases {
    drops: Vec<Action>,
    releases: Vec<Action>,
    claims: Vec<Action>,
    creates: Vec<Action>,
    set_passwords: Vec<Action>,
    revokes: Vec<Action>,
    grants: Vec<Action>,
    foreign: Vec<AccountKey>,
}

impl Phases {
    /// Plans one account: `want` is its desired value (`None`: not desired).
    /// `have` is `observed.owned.get(key)`, looked up (or walked to) by the caller.
    fn plan_key(
        &mut self,
        key: &AccountKey,
        want: Option<&DesiredAccount>,
        have: Option<&ObservedAccount>,
        observed: &Observed,
    ) {
        let Some(want) = want else {
            if have.is_some() {
                self.drops.push(Action::Drop { key: key.clone() });
                self.releases.push(Action::Release { key: key.clone() });
            }
            return;
        };
        let have = match have {
            Some(have) if have.owner == want.owner => have,
            owned => {
                match owned {
                    None if observed.foreign.contains(key) => {
                        self.foreign.push(key.clone());
                        return;
                    }
                    // Another service's account at this IP: end it (and its sessions), start afresh.
                    Some(_) => self.drops.push(Action::Drop { key: key.clone() }),
                    None => {}
                }
                self.claims.push(Action::Claim {
                    key: key.clone(),
                    owner: want.owner.clone(),
                    fingerprint: want.fingerprint.clone(),
                });
                self.creates.push(Action::Create {
                    key: key.clone(),
                    password: want.password.clone(),
                });
                self.grants.push(Action::Grant {
                    key: key.clone(),
                    database: want.database.clone(),
                    privileges: want.privileges.clone(),
                });
                return;
            }
        };

        let fingerprint_changed = have.fingerprint != want.fingerprint;
        if !have.exists {
            // Ledger row without account (crash between Claim and Create, or dropped by hand).
            if fingerprint_changed {
                self.claims.push(Action::Claim {
                    key: key.clone(),
                    owner: want.owner.clone(),
                    fingerprint: want.fingerprint.clone(),
                });
            }
            self.creates.push(Action::Create {
                key: key.clone(),
                password: want.password.clone(),
            });
            self.grants.push(Action::Grant {
                key: key.clone(),
                database: want.database.clone(),
                privileges: want.privileges.clone(),
            });
            return;
        }

        let credential_drifted = have.credential.matches(&want.password) == Some(false);
        if fingerprint_changed || credential_drifted {
            self.set_passwords.push(Action::SetPassword {
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
                self.revokes.push(Action::Revoke {
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
            self.grants.push(Action::Grant {
                key: key.clone(),
                database: want.database.clone(),
                privileges: missing,
            });
        }
    }

    fn into_plan(mut self) -> Plan {
        // Each phase is in the order the keys were planned (key order for both callers), except
        // `drops`, which the full plan fills in two passes: sort every phase to be sure.
        for phase in [
            &mut self.drops,
            &mut self.releases,
            &mut self.claims,
            &mut self.creates,
            &mut self.set_passwords,
            &mut self.revokes,
            &mut self.grants,
        ] {
            if !phase.is_sorted_by(|a, b| a.key() <= b.key()) {
                phase.sort_by(|a, b| a.key().cmp(b.key()));
            }
        }
        self.foreign.sort();
        let mut actions = Vec::with_capacity(
            self.drops.len()
                + self.releases.len()
                + self.claims.len()
                + self.creates.len()
                + self.set_passwords.len()
                + self.revokes.len()
                + self.grants.len(),
        );
        actions.extend(self.drops);
        actions.extend(self.releases);
        actions.extend(self.claims);
        actions.extend(self.creates);
        actions.extend(self.set_passwords);
        actions.extend(self.revokes);
        actions.extend(self.grants);
        Plan {
            actions,
            foreign: self.foreign,
        }
    }
}
