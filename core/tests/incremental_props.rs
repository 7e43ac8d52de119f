//! Property: the incremental desired state equals the full recomputation after any sequence of
//! changes, and its dirty set is exactly the accounts whose desired value changed; the dirty
//! planner plans exactly the full plan's actions for the keys it is given.

use std::collections::{BTreeMap, BTreeSet};

use podgrant_core::desired::{desired_state_with, UserHolders};
use podgrant_core::grant::{AccountKey, Desired, Observed};
use podgrant_core::incremental::IncrementalDesired;
use podgrant_core::index::{ClusterEvent, Index};
use podgrant_core::model::{ObjectRef, Password, PodFacts, SecretFacts, ServiceFacts};
use podgrant_core::planner::{plan_dirty, plan_with_report};
use podgrant_core::store::MemoryStore;
use podgrant_core::tenancy::Tenancy;
use podgrant_core::validate::{
    Policy, ANN_DATABASE, ANN_PASSWORD_SECRET, ANN_PRIVILEGES, ANN_USER,
};
use podgrant_core::watch::Change;
use proptest::prelude::*;

const NSS: [&str; 3] = ["shop", "shop-x", "other"];

fn labels_strategy() -> impl Strategy<Value = BTreeMap<String, String>> + Clone {
    prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier"]).prop_map(String::from),
        prop::sample::select(vec!["a", "b"]).prop_map(String::from),
        0..=2,
    )
}

fn pod_strategy() -> impl Strategy<Value = PodFacts> + Clone {
    (
        0..3usize,
        0..6usize,
        labels_strategy(),
        1u8..6,
        any::<[bool; 5]>(),
    )
        .prop_map(|(n, i, labels, ip, f)| PodFacts {
            id: ObjectRef::new(NSS[n], format!("p{i}")),
            uid: format!("uid-{n}-{i}"),
            labels,
            ip: Some(format!("10.0.0.{ip}").parse().unwrap()),
            running: f[0] || f[4],
            ready: f[1] || f[4],
            terminating: f[2] && !f[4],
            host_network: f[3] && !f[4],
        })
}

fn service_strategy() -> impl Strategy<Value = ServiceFacts> + Clone {
    (
        0..3usize,
        0..4usize,
        prop::option::of(labels_strategy()),
        prop::sample::select(vec!["shop", "shop_x_api", "other", "root", "ro'ot"]),
        prop::sample::select(vec!["shop", "shop_x", "other"]),
        prop::sample::select(vec!["pw/password", "pw/other", "missing/password"]),
    )
        .prop_map(|(n, i, selector, user, db, secret)| ServiceFacts {
            id: ObjectRef::new(NSS[n], format!("s{i}")),
            uid: format!("uid-s{n}-{i}"),
            selector,
            annotations: BTreeMap::from([
                (ANN_USER.to_string(), user.to_string()),
                (ANN_DATABASE.to_string(), db.to_string()),
                (ANN_PRIVILEGES.to_string(), "SELECT,INSERT".to_string()),
                (ANN_PASSWORD_SECRET.to_string(), secret.to_string()),
            ]),
        })
}

fn secret_strategy() -> impl Strategy<Value = SecretFacts> + Clone {
    (
        0..3usize,
        prop::sample::select(vec!["pw-one", "pw-two", "bad\\pw"]),
    )
        .prop_map(|(n, pw)| SecretFacts {
            id: ObjectRef::new(NSS[n], "pw"),
            data: BTreeMap::from([
                ("password".to_string(), Password::new(pw)),
                ("other".to_string(), Password::new("other-pw")),
            ]),
        })
}

fn change<T: std::fmt::Debug + Clone + 'static>(
    item: impl Strategy<Value = T> + Clone + 'static,
) -> impl Strategy<Value = Change<T>> {
    prop_oneof![
        4 => item.clone().prop_map(Change::Applied),
        2 => item.clone().prop_map(Change::Deleted),
        1 => prop::collection::vec(item, 0..8).prop_map(Change::Relisted),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Event(ClusterEvent),
    /// The ledger's holders of user `shop_x_api` (tenancy rule 3).
    Held(Option<usize>),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => change(pod_strategy()).prop_map(|c| Step::Event(ClusterEvent::Pods(c))),
        2 => change(service_strategy()).prop_map(|c| Step::Event(ClusterEvent::Services(c))),
        1 => change(secret_strategy()).prop_map(|c| Step::Event(ClusterEvent::Secrets(c))),
        1 => prop::option::of(0..3usize).prop_map(Step::Held),
    ]
}

fn held(n: Option<usize>) -> UserHolders {
    n.map(|n| {
        UserHolders::from([(
            "shop_x_api".to_string(),
            BTreeSet::from([NSS[n].to_string()]),
        )])
    })
    .unwrap_or_default()
}

/// Keys whose value differs between two desired sets.
fn changed(a: &Desired, b: &Desired) -> BTreeSet<AccountKey> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn check(policy: Policy, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut index = Index::new();
    let mut inc = IncrementalDesired::new(policy.clone());
    let mut holders = UserHolders::new();
    let mut before = Desired::new();
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Event(ev) => {
                let delta = index.apply_delta(ev);
                inc.apply(index.cluster(), &delta);
            }
            Step::Held(n) => {
                holders = held(n);
                inc.set_held(index.cluster(), holders.clone());
            }
        }
        let full = desired_state_with(index.cluster(), &policy, &holders);
        prop_assert_eq!(&inc.state(), &full, "after step {}", i);
        prop_assert_eq!(
            inc.take_dirty(),
            changed(&before, &full.accounts),
            "dirty after step {}",
            i
        );
        before = full.accounts;
    }
    // A rebuild from scratch finds nothing to change.
    inc.rebuild(index.cluster());
    prop_assert!(inc.take_dirty().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full_with_tenancy_off(steps in prop::collection::vec(step_strategy(), 1..40)) {
        check(Policy::default().with_tenancy(Tenancy::off()), steps)?;
    }

    #[test]
    fn incremental_equals_full_with_tenancy_enforced(steps in prop::collection::vec(step_strategy(), 1..40)) {
        check(Policy::default(), steps)?;
    }

    /// A rebuild repairs any drift: changes the incremental state never saw (a bug that
    /// skipped its updates) are found by the resync's rebuild, which then equals the full
    /// recomputation and marks exactly the accounts that differ as dirty.
    #[test]
    fn a_rebuild_repairs_changes_the_incremental_state_missed(
        seen in prop::collection::vec(step_strategy(), 1..30),
        missed in prop::collection::vec(step_strategy(), 1..15),
        enforced in any::<bool>(),
    ) {
        let policy = if enforced { Policy::default() } else { Policy::default().with_tenancy(Tenancy::off()) };
        let mut index = Index::new();
        let mut inc = IncrementalDesired::new(policy.clone());
        let mut holders = UserHolders::new();
        for step in seen {
            match step {
                Step::Event(ev) => {
                    let delta = index.apply_delta(ev);
                    inc.apply(index.cluster(), &delta);
                }
                Step::Held(n) => {
                    holders = held(n);
                    inc.set_held(index.cluster(), holders.clone());
                }
            }
        }
        inc.take_dirty();
        let before = inc.accounts().clone();
        for step in missed {
            if let Step::Event(ev) = step {
                index.apply(ev);
            }
        }
        inc.rebuild(index.cluster());
        let full = desired_state_with(index.cluster(), &policy, &holders);
        prop_assert_eq!(&inc.state(), &full);
        prop_assert_eq!(inc.take_dirty(), changed(&before, &full.accounts));
    }

    /// Planning a subset of keys gives the full plan's actions for those keys, in order.
    #[test]
    fn dirty_plan_is_the_full_plan_restricted_to_its_keys(
        before in prop::collection::vec(step_strategy(), 1..20),
        after in prop::collection::vec(step_strategy(), 1..20),
        pick in prop::collection::vec(any::<bool>(), 16),
    ) {
        let policy = Policy::default().with_tenancy(Tenancy::off());
        let mut index = Index::new();
        let run = |index: &mut Index, steps: Vec<Step>| {
            for s in steps {
                if let Step::Event(ev) = s {
                    index.apply(ev);
                }
            }
            desired_state_with(index.cluster(), &policy, &UserHolders::new()).accounts
        };
        let first = run(&mut index, before);
        let second = run(&mut index, after);
        // The store converged on `first`; `second` is what is wanted now.
        let store = MemoryStore::new();
        let observed = futures::executor::block_on(async {
            use podgrant_core::store::GrantStore;
            store.apply(&plan_with_report(&first, &Observed::default()).actions).await.unwrap();
            let wanted: BTreeSet<AccountKey> = second.keys().cloned().collect();
            store.observe(&wanted).await.unwrap()
        });
        let full = plan_with_report(&second, &observed);
        let all: BTreeSet<AccountKey> = second.keys().chain(observed.owned.keys()).cloned().collect();
        prop_assert_eq!(&plan_dirty(&second, &observed, &all), &full);
        let subset: BTreeSet<AccountKey> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| pick[i % pick.len()])
            .map(|(_, k)| k.clone())
            .collect();
        let restricted: Vec<_> = full.actions.iter().filter(|a| subset.contains(a.key())).cloned().collect();
        prop_assert_eq!(plan_dirty(&second, &observed, &subset).actions, restricted);
    }
}
