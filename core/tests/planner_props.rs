//! Property tests of the pure planner against the pure store model (`MemoryState`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use podgrant_core::desired::fingerprint;
use podgrant_core::grant::{
    AccountKey, Action, Credential, Desired, DesiredAccount, Observed, ObservedAccount, Privilege,
};
use podgrant_core::model::{ObjectRef, Password};
use podgrant_core::planner::{plan, plan_with_report};
use podgrant_core::sql::native_hash;
use podgrant_core::store::memory::{AccountState, LedgerRow, MemoryState};
use proptest::prelude::*;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const OWNERS: [&str; 3] = ["svc-a", "svc-b", "svc-c"];
const DBS: [&str; 2] = ["app", "other"];
const PRIVS: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "DELETE HISTORY"];
const PASSWORDS: [&str; 3] = ["pw-0", "it's-1", "pw\"2"];

fn key_strategy() -> impl Strategy<Value = AccountKey> {
    (0..USERS.len(), 1u8..5).prop_map(|(u, h)| AccountKey {
        user: USERS[u].to_string(),
        host: IpAddr::V4(Ipv4Addr::new(10, 0, 0, h)),
    })
}

fn privs_strategy(allow_empty: bool) -> impl Strategy<Value = BTreeSet<Privilege>> {
    // Desired privileges come from the first four (the allowlist); observed may hold a fifth.
    let n = if allow_empty { PRIVS.len() } else { 4 };
    prop::collection::btree_set(0..n, if allow_empty { 0..=n } else { 1..=n })
        .prop_map(|s| s.into_iter().map(|i| Privilege(PRIVS[i].into())).collect())
}

fn owner(i: usize) -> ObjectRef {
    ObjectRef::new("ns", OWNERS[i])
}

fn desired_strategy() -> impl Strategy<Value = Desired> {
    prop::collection::btree_map(
        key_strategy(),
        (
            0..OWNERS.len(),
            0..DBS.len(),
            privs_strategy(false),
            0..PASSWORDS.len(),
        ),
        0..8,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(key, (o, db, privileges, pw))| {
                let account = DesiredAccount {
                    key: key.clone(),
                    owner: owner(o),
                    pod: ObjectRef::new("ns", format!("pod-{}", key.host)),
                    database: DBS[db].into(),
                    privileges,
                    password: Password::new(PASSWORDS[pw]),
                    fingerprint: fingerprint(&key.user, PASSWORDS[pw]),
                };
                (key, account)
            })
            .collect()
    })
}

fn state_strategy() -> impl Strategy<Value = MemoryState> {
    let ledger = prop::collection::btree_map(
        key_strategy(),
        (0..OWNERS.len(), 0..PASSWORDS.len() + 1),
        0..8,
    );
    let accounts = prop::collection::btree_map(
        key_strategy(),
        (
            0..PASSWORDS.len(),
            prop::collection::btree_map(0..DBS.len(), privs_strategy(true), 0..3),
        ),
        0..8,
    );
    // Any account may have any password, whatever its ledger row says: a "stale" fingerprint
    // (a crash between ALTER USER and the ledger update) or a password changed by hand. The
    // stored credential is observed, so convergence must restore it either way.
    (ledger, accounts).prop_map(|(ledger, accounts)| MemoryState {
        ledger: ledger
            .into_iter()
            .map(|(key, (o, pw))| {
                let fingerprint = match PASSWORDS.get(pw) {
                    Some(p) => fingerprint(&key.user, p),
                    None => "stale".to_string(),
                };
                (
                    key,
                    LedgerRow {
                        owner: owner(o),
                        fingerprint,
                    },
                )
            })
            .collect(),
        accounts: accounts
            .into_iter()
            .map(|(key, (pw, grants))| {
                (
                    key,
                    AccountState {
                        password: Password::new(PASSWORDS[pw]),
                        grants: grants
                            .into_iter()
                            .filter(|(_, p)| !p.is_empty())
                            .map(|(db, p)| (DBS[db].to_string(), p))
                            .collect(),
                    },
                )
            })
            .collect(),
        sessions: BTreeMap::new(),
    })
}

fn wanted(desired: &Desired) -> BTreeSet<AccountKey> {
    desired.keys().cloned().collect()
}

/// The keys foreign at the start: desired, existing, not in the ledger.
fn foreign(desired: &Desired, state: &MemoryState) -> BTreeSet<AccountKey> {
    state.observe(&wanted(desired)).foreign
}

/// Checks that `state` is exactly what `desired` asks for, given the initial state.
fn assert_converged(desired: &Desired, initial: &MemoryState, state: &MemoryState) {
    let foreign = foreign(desired, initial);
    for (key, want) in desired {
        if foreign.contains(key) {
            assert_eq!(state.accounts.get(key), initial.accounts.get(key), "{key}");
            assert!(!state.ledger.contains_key(key));
            continue;
        }
        let acc = state.accounts.get(key).expect("desired account exists");
        assert_eq!(acc.password, want.password, "{key}");
        let expect: BTreeMap<String, BTreeSet<Privilege>> =
            BTreeMap::from([(want.database.clone(), want.privileges.clone())]);
        assert_eq!(acc.grants, expect, "{key}");
        let row = state
            .ledger
            .get(key)
            .expect("desired account is in the ledger");
        assert_eq!(row.owner, want.owner);
        assert_eq!(row.fingerprint, want.fingerprint);
    }
    for key in state.ledger.keys() {
        assert!(
            desired.contains_key(key),
            "ledger keeps {key}, which is not desired"
        );
    }
    // Accounts podgrant never owned and does not want are untouched.
    for (key, acc) in &initial.accounts {
        if !initial.ledger.contains_key(key) && !desired.contains_key(key) {
            assert_eq!(state.accounts.get(key), Some(acc), "foreign {key} touched");
        }
    }
    // No account is left that podgrant owned and no longer wants.
    for key in initial.ledger.keys() {
        if !desired.contains_key(key) {
            assert!(!state.accounts.contains_key(key), "{key} not dropped");
        }
    }
}

fn run(desired: &Desired, state: &mut MemoryState) -> Vec<Action> {
    let actions = plan(desired, &state.observe(&wanted(desired)));
    state
        .apply_all(&actions)
        .expect("a plan applies cleanly to the state it was made from");
    actions
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// One plan takes any state to the desired one, and planning again yields nothing.
    #[test]
    fn idempotent_and_convergent(desired in desired_strategy(), initial in state_strategy()) {
        let mut state = initial.clone();
        run(&desired, &mut state);
        assert_converged(&desired, &initial, &state);
        let again = plan(&desired, &state.observe(&wanted(&desired)));
        prop_assert!(again.is_empty(), "second plan not empty: {:?}", again);
    }

    /// Never an action for an account that is neither in the ledger nor desired-and-not-foreign;
    /// nothing at all for foreign accounts; the plan is deterministic.
    #[test]
    fn actions_stay_within_the_ledger(desired in desired_strategy(), initial in state_strategy()) {
        let observed = initial.observe(&wanted(&desired));
        let report = plan_with_report(&desired, &observed);
        prop_assert_eq!(&report, &plan_with_report(&desired, &observed));
        let foreign: BTreeSet<_> = report.foreign.iter().cloned().collect();
        prop_assert_eq!(&foreign, &observed.foreign);
        for a in &report.actions {
            let k = a.key();
            prop_assert!(!foreign.contains(k), "action on foreign {}", k);
            let owned = initial.ledger.contains_key(k);
            match a {
                Action::Claim { .. } => prop_assert!(desired.contains_key(k)),
                _ => prop_assert!(
                    owned || desired.contains_key(k),
                    "{} on {} which is neither owned nor desired", a.kind(), k
                ),
            }
            // Anything but a Claim on an unowned key must follow a Claim for it.
            if !owned && !matches!(a, Action::Claim { .. }) {
                let claimed = report.actions.iter().any(|b| matches!(b, Action::Claim { key, .. } if key == k));
                prop_assert!(claimed, "{} on unowned {} without a Claim", a.kind(), k);
            }
        }
    }

    /// Claim before Create, Drop before Release, and phases in order.
    #[test]
    fn ordering(desired in desired_strategy(), initial in state_strategy()) {
        let actions = plan(&desired, &initial.observe(&wanted(&desired)));
        let phase = |a: &Action| match a {
            Action::Drop { .. } => 0,
            Action::Release { .. } => 1,
            Action::Claim { .. } => 2,
            Action::Create { .. } => 3,
            Action::SetPassword { .. } => 4,
            Action::Revoke { .. } => 5,
            Action::Grant { .. } => 6,
        };
        for w in actions.windows(2) {
            prop_assert!(phase(&w[0]) < phase(&w[1]) || (phase(&w[0]) == phase(&w[1]) && w[0].key() <= w[1].key()));
        }
        for (i, a) in actions.iter().enumerate() {
            if let Action::Create { key, .. } = a {
                let owned_before = initial.ledger.contains_key(key);
                let claimed = actions[..i].iter().any(|b| matches!(b, Action::Claim { key: k, .. } if k == key));
                prop_assert!(owned_before || claimed, "Create {} without Claim", key);
            }
            if let Action::Release { key } = a {
                let dropped = actions[..i].iter().any(|b| matches!(b, Action::Drop { key: k } if k == key));
                prop_assert!(dropped, "Release {} without Drop", key);
            }
        }
    }

    /// A crash after any prefix of a plan leaves a state the next plan repairs; and at every
    /// point, each account podgrant created has a ledger row (Claim came first).
    #[test]
    fn crash_after_any_prefix_converges(
        desired in desired_strategy(),
        initial in state_strategy(),
        cut in any::<prop::sample::Index>(),
    ) {
        let actions = plan(&desired, &initial.observe(&wanted(&desired)));
        let k = if actions.is_empty() { 0 } else { cut.index(actions.len() + 1) };
        let mut state = initial.clone();
        state.apply_all(&actions[..k]).unwrap();
        for key in state.accounts.keys() {
            if !initial.accounts.contains_key(key) {
                prop_assert!(state.ledger.contains_key(key), "{} created without a ledger row", key);
            }
        }
        // The old owner's account at a key is gone before a new owner's is created, so no pod
        // ever holds another service's grants at an IP.
        run(&desired, &mut state);
        assert_converged(&desired, &initial, &state);
        prop_assert!(plan(&desired, &state.observe(&wanted(&desired))).is_empty());
    }

    /// Desired changes over time (services come and go, passwords rotate): always one plan away.
    #[test]
    fn sequence_of_desired_states(
        initial in state_strategy(),
        steps in prop::collection::vec(desired_strategy(), 1..5),
    ) {
        let mut state = initial.clone();
        let mut start = initial;
        for desired in &steps {
            run(desired, &mut state);
            assert_converged(desired, &start, &state);
            prop_assert!(plan(desired, &state.observe(&wanted(desired))).is_empty());
            start = state.clone();
        }
    }
}

#[test]
fn owner_change_drops_then_recreates() {
    let key = AccountKey {
        user: "alice".into(),
        host: "10.0.0.1".parse().unwrap(),
    };
    let mut state = MemoryState::default();
    state.ledger.insert(
        key.clone(),
        LedgerRow {
            owner: owner(0),
            fingerprint: fingerprint("alice", "pw-0"),
        },
    );
    state.accounts.insert(
        key.clone(),
        AccountState {
            password: Password::new("pw-0"),
            grants: BTreeMap::from([(
                "app".to_string(),
                BTreeSet::from([Privilege("SELECT".into())]),
            )]),
        },
    );
    state.sessions.insert(key.clone(), 2);
    let desired: Desired = BTreeMap::from([(
        key.clone(),
        DesiredAccount {
            key: key.clone(),
            owner: owner(1),
            pod: ObjectRef::new("ns", "b-pod"),
            database: "app".into(),
            privileges: BTreeSet::from([Privilege("SELECT".into())]),
            password: Password::new("pw-0"),
            fingerprint: fingerprint("alice", "pw-0"),
        },
    )]);
    let actions = run(&desired, &mut state);
    let kinds: Vec<_> = actions.iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, vec!["drop", "claim", "create", "grant"]);
    assert!(state.sessions.is_empty(), "old owner's sessions ended");
    assert_eq!(state.ledger[&key].owner, owner(1));
}

#[test]
fn ledger_row_without_account_is_created() {
    let key = AccountKey {
        user: "bob".into(),
        host: "10.0.0.2".parse().unwrap(),
    };
    let fp = fingerprint("bob", "pw-0");
    let mut state = MemoryState::default();
    state.ledger.insert(
        key.clone(),
        LedgerRow {
            owner: owner(0),
            fingerprint: fp.clone(),
        },
    );
    let desired: Desired = BTreeMap::from([(
        key.clone(),
        DesiredAccount {
            key: key.clone(),
            owner: owner(0),
            pod: ObjectRef::new("ns", "p"),
            database: "app".into(),
            privileges: BTreeSet::from([Privilege("SELECT".into())]),
            password: Password::new("pw-0"),
            fingerprint: fp,
        },
    )]);
    let kinds: Vec<_> = run(&desired, &mut state).iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, vec!["create", "grant"]);
    // Not desired any more, account already gone: still Drop (to kill sessions), then Release.
    state.accounts.clear();
    let kinds: Vec<_> = run(&Desired::new(), &mut state)
        .iter()
        .map(|a| a.kind())
        .collect();
    assert_eq!(kinds, vec!["drop", "release"]);
}

#[test]
fn password_change_is_set_password_and_privilege_diff_is_grant_revoke() {
    let key = AccountKey {
        user: "carol".into(),
        host: "10.0.0.3".parse().unwrap(),
    };
    let mut state = MemoryState::default();
    let mut desired: Desired = BTreeMap::from([(
        key.clone(),
        DesiredAccount {
            key: key.clone(),
            owner: owner(0),
            pod: ObjectRef::new("ns", "p"),
            database: "app".into(),
            privileges: BTreeSet::from([Privilege("SELECT".into()), Privilege("INSERT".into())]),
            password: Password::new("pw-0"),
            fingerprint: fingerprint("carol", "pw-0"),
        },
    )]);
    run(&desired, &mut state);
    let d = desired.get_mut(&key).unwrap();
    d.password = Password::new("pw-1");
    d.fingerprint = fingerprint("carol", "pw-1");
    d.privileges = BTreeSet::from([Privilege("SELECT".into()), Privilege("UPDATE".into())]);
    let actions = run(&desired, &mut state);
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(matches!(&actions[0], Action::SetPassword { .. }));
    assert!(
        matches!(&actions[1], Action::Revoke { privileges, .. } if privileges == &BTreeSet::from([Privilege("INSERT".into())]))
    );
    assert!(
        matches!(&actions[2], Action::Grant { privileges, .. } if privileges == &BTreeSet::from([Privilege("UPDATE".into())]))
    );
    assert_eq!(state.accounts[&key].password.expose(), "pw-1");
    // Moving to another database revokes everything on the old one.
    desired.get_mut(&key).unwrap().database = "other".into();
    let kinds: Vec<_> = run(&desired, &mut state).iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, vec!["revoke", "grant"]);
    assert_eq!(
        state.accounts[&key].grants.keys().collect::<Vec<_>>(),
        vec!["other"]
    );
}

#[test]
fn a_credential_that_does_not_match_the_password_is_reset_even_with_an_unchanged_fingerprint() {
    let key = AccountKey {
        user: "dave".into(),
        host: "10.0.0.5".parse().unwrap(),
    };
    let want = DesiredAccount {
        key: key.clone(),
        owner: owner(0),
        pod: ObjectRef::new("ns", "p"),
        database: "app".into(),
        privileges: BTreeSet::from([Privilege("SELECT".into())]),
        password: Password::new("pw-0"),
        fingerprint: fingerprint("dave", "pw-0"),
    };
    let desired: Desired = BTreeMap::from([(key.clone(), want.clone())]);
    // (stored credential, does the planner reset the password?)
    let table = [
        (Credential::Native(native_hash("pw-0")), false),
        (
            Credential::Native(native_hash("pw-0").to_lowercase()),
            false,
        ),
        (Credential::Native(native_hash("changed-by-hand")), true),
        (Credential::Native(String::new()), true),
        (Credential::OtherPlugin, true),
        // Not comparable (MySQL 8.4 caching_sha2): the fingerprint alone decides, as before.
        (Credential::Unknown, false),
    ];
    for (credential, reset) in table {
        let label = format!("{credential:?}");
        let observed = Observed {
            owned: BTreeMap::from([(
                key.clone(),
                ObservedAccount {
                    key: key.clone(),
                    owner: want.owner.clone(),
                    fingerprint: want.fingerprint.clone(),
                    exists: true,
                    grants: BTreeMap::from([("app".into(), want.privileges.clone())]),
                    credential,
                },
            )]),
            foreign: BTreeSet::new(),
        };
        let expect = if reset {
            vec![Action::SetPassword {
                key: key.clone(),
                password: want.password.clone(),
                fingerprint: want.fingerprint.clone(),
            }]
        } else {
            vec![]
        };
        assert_eq!(plan(&desired, &observed), expect, "{label}");
    }
}

#[test]
fn a_password_changed_by_hand_is_restored_in_the_model() {
    let key = AccountKey {
        user: "erin".into(),
        host: "10.0.0.6".parse().unwrap(),
    };
    let desired: Desired = BTreeMap::from([(
        key.clone(),
        DesiredAccount {
            key: key.clone(),
            owner: owner(0),
            pod: ObjectRef::new("ns", "p"),
            database: "app".into(),
            privileges: BTreeSet::from([Privilege("SELECT".into())]),
            password: Password::new("pw-0"),
            fingerprint: fingerprint("erin", "pw-0"),
        },
    )]);
    let mut state = MemoryState::default();
    run(&desired, &mut state);
    state.accounts.get_mut(&key).unwrap().password = Password::new("other");
    let kinds: Vec<_> = run(&desired, &mut state).iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, vec!["set_password"]);
    assert_eq!(state.accounts[&key].password.expose(), "pw-0");
    assert!(plan(&desired, &state.observe(&wanted(&desired))).is_empty());
}

#[test]
fn foreign_account_is_reported_not_touched() {
    let key = AccountKey {
        user: "alice".into(),
        host: "10.0.0.4".parse().unwrap(),
    };
    let mut state = MemoryState::default();
    state.accounts.insert(
        key.clone(),
        AccountState {
            password: Password::new("theirs"),
            grants: BTreeMap::new(),
        },
    );
    let desired: Desired = BTreeMap::from([(
        key.clone(),
        DesiredAccount {
            key: key.clone(),
            owner: owner(0),
            pod: ObjectRef::new("ns", "p"),
            database: "app".into(),
            privileges: BTreeSet::from([Privilege("SELECT".into())]),
            password: Password::new("pw-0"),
            fingerprint: fingerprint("alice", "pw-0"),
        },
    )]);
    let report = plan_with_report(&desired, &state.observe(&wanted(&desired)));
    assert!(report.actions.is_empty());
    assert_eq!(report.foreign, vec![key]);
}
