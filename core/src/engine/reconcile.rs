//! One reconcile as a state machine: the store calls it needs, and what each reply decides.
//!
//! A reconcile is rounds of observe → plan → apply. Only the store calls are I/O; the engine
//! runs each in its own task and keeps ingesting watch events meanwhile, then hands the reply to
//! [`Reconcile::step`], which decides (synchronously, against the desired state as it is *now*)
//! the next call or the end. Because the desired state may have moved on while a call was in
//! flight, a plan leaves out every account changed since the reconcile took its work
//! ([`IncrementalDesired::is_dirty`]): those were not observed for their new value, and the next
//! reconcile, which they already wait for, plans them.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::desired::{HolderIndex, ProblemKind, ServiceProblem};
use crate::grant::{AccountKey, Action, Observed};
use crate::incremental::IncrementalDesired;
use crate::model::Cluster;
use crate::planner::{plan_dirty, plan_with_report};
use crate::store::{ApplyReport, StoreError};

/// A store call the reconcile needs next.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    /// [`crate::store::GrantStore::observe`] of these wanted accounts (a whole reconcile).
    Observe(BTreeSet<AccountKey>),
    /// [`crate::store::GrantStore::observe_keys`] of these accounts (a keyed reconcile).
    ObserveKeys(BTreeSet<AccountKey>),
    /// [`crate::store::GrantStore::apply`] of these actions.
    Apply(Arc<[Action]>),
}

/// The store's answer to a [`Call`].
#[derive(Debug)]
pub(crate) enum Reply {
    Observed(Observed),
    Applied(ApplyReport),
}

/// Why a reconcile did not finish.
#[derive(Debug)]
pub(crate) enum ReconcileError {
    Store(StoreError),
    /// Still this many actions to apply after the last round.
    NotConverged(usize),
    /// Leadership was lost during the reconcile: stop applying at once.
    LostLeadership,
}

/// What the engine owns that a step reads and updates.
pub(crate) struct World<'a> {
    pub desired: &'a mut IncrementalDesired,
    pub holders: &'a mut HolderIndex,
    pub cluster: &'a Cluster,
    /// Tenancy rule 3 is enforced: who holds a user name in the ledger changes what is wanted.
    pub tenancy: bool,
    /// This replica still leads (read at the moment of the step).
    pub leading: bool,
}

/// What a step decided.
#[derive(Debug)]
pub(crate) struct Step {
    /// The next store call, or the end of the reconcile.
    pub next: Result<Option<Call>, ReconcileError>,
    /// Desired accounts found to exist in MySQL without a ledger row (to report).
    pub foreign: Vec<ServiceProblem>,
    /// The ledger holders moved and changed what is wanted (its problems are worth reporting).
    pub restaged: bool,
}

/// A reconcile in progress. [`Reconcile::start`], then [`Reconcile::step`] with each reply until
/// it returns no call.
#[derive(Debug)]
pub(crate) struct Reconcile {
    whole: bool,
    /// Keyed: the accounts this reconcile covers (what was dirty when it started, plus what moved
    /// ledger holders changed since).
    keys: BTreeSet<AccountKey>,
    max_rounds: u32,
    /// Observe calls issued so far.
    rounds: u32,
    /// The actions of the apply in flight.
    applying: Option<Arc<[Action]>>,
}

impl Reconcile {
    /// A reconcile of every account (`whole`) or of `keys`; its first call. `None`: nothing to do
    /// (a keyed reconcile of no account).
    pub fn start(
        whole: bool,
        keys: BTreeSet<AccountKey>,
        max_rounds: u32,
        desired: &IncrementalDesired,
    ) -> Option<(Self, Call)> {
        if !whole && keys.is_empty() {
            return None;
        }
        let mut r = Self {
            whole,
            keys,
            max_rounds: max_rounds.max(1),
            rounds: 0,
            applying: None,
        };
        let call = r.observe(desired);
        Some((r, call))
    }

    /// The actions of the apply in flight (empty when none is).
    pub fn applying(&self) -> &[Action] {
        self.applying.as_deref().unwrap_or_default()
    }

    fn observe(&mut self, desired: &IncrementalDesired) -> Call {
        self.rounds += 1;
        self.applying = None;
        if self.whole {
            Call::Observe(desired.accounts().keys().cloned().collect())
        } else {
            Call::ObserveKeys(self.keys.clone())
        }
    }

    /// Another round, if any is left.
    fn again(&mut self, desired: &IncrementalDesired, remaining: usize) -> Step {
        let next = if self.rounds < self.max_rounds {
            Ok(Some(self.observe(desired)))
        } else {
            Err(ReconcileError::NotConverged(remaining))
        };
        Step {
            next,
            foreign: Vec::new(),
            restaged: false,
        }
    }

    /// Tenancy rule 3 with the holders as now known: the accounts that changed join this
    /// reconcile's keys; `true` when there were any.
    fn holders_moved(&mut self, w: &mut World<'_>) -> bool {
        if !w.tenancy {
            return false;
        }
        let moved = w.desired.held_changes(w.cluster, w.holders.holders());
        if moved.is_empty() {
            return false;
        }
        self.keys.extend(moved);
        true
    }

    /// The transition: takes the reply to the last call and decides what comes next.
    pub fn step(&mut self, reply: Result<Reply, StoreError>, w: &mut World<'_>) -> Step {
        let done = |next| Step {
            next,
            foreign: Vec::new(),
            restaged: false,
        };
        match reply {
            Err(e) => done(Err(ReconcileError::Store(e))),
            Ok(Reply::Observed(observed)) => self.observed(observed, w),
            Ok(Reply::Applied(report)) => {
                let actions = self.applying.take().expect("an apply reply with no apply");
                let applied = report.applied.min(actions.len());
                w.holders.record(&actions[..applied]);
                if !self.whole && applied == actions.len() {
                    // Every action applied: by the planner's contract a re-observe of these
                    // accounts would plan nothing, so don't pay for it. (A whole reconcile
                    // still verifies; drift is repaired at the next resync.) Unless the applied
                    // claims and releases moved a user name to another namespace (rule 3).
                    if self.holders_moved(w) {
                        let mut step = self.again(w.desired, 0);
                        step.restaged = true;
                        return step;
                    }
                    return done(Ok(None));
                }
                self.again(w.desired, actions.len() - applied)
            }
        }
    }

    fn observed(&mut self, observed: Observed, w: &mut World<'_>) -> Step {
        if self.whole {
            w.holders.replace_all(&observed.owned);
        } else {
            w.holders.update(&self.keys, &observed.owned);
        }
        if self.holders_moved(w) {
            // Who owns a user name changed what is wanted: observe that instead.
            let mut step = self.again(w.desired, 0);
            step.restaged = true;
            return step;
        }
        let accounts = w.desired.accounts();
        let mut plan = if self.whole {
            plan_with_report(accounts, &observed)
        } else {
            plan_dirty(accounts, &observed, self.keys.iter())
        };
        // Changed since the observation started: planned by the next reconcile instead.
        plan.actions.retain(|a| !w.desired.is_dirty(a.key()));
        plan.foreign.retain(|k| !w.desired.is_dirty(k));
        let foreign = plan
            .foreign
            .iter()
            .filter_map(|key| {
                Some(ServiceProblem {
                    service: accounts.get(key)?.owner.clone(),
                    reason: format!(
                        "account {key} already exists in MySQL and is not podgrant's (no ledger row); left untouched"
                    ),
                    kind: ProblemKind::Foreign,
                })
            })
            .collect();
        let next = if plan.actions.is_empty() {
            Ok(None)
        } else if !w.leading {
            // The elector runs in its own task: if it stepped down meanwhile, apply nothing more.
            Err(ReconcileError::LostLeadership)
        } else {
            let actions: Arc<[Action]> = plan.actions.into();
            self.applying = Some(actions.clone());
            Ok(Some(Call::Apply(actions)))
        };
        Step {
            next,
            foreign,
            restaged: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::index::{Delta, PodDelta};
    use crate::model::{ObjectRef, Password, PodFacts, SecretFacts, ServiceFacts};
    use crate::store::memory::MemoryState;
    use crate::tenancy::Tenancy;
    use crate::validate::{Policy, ANN_DATABASE, ANN_PASSWORD_SECRET, ANN_PRIVILEGES, ANN_USER};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, ip: &str) -> PodFacts {
        PodFacts {
            id: ObjectRef::new("a", name),
            uid: format!("uid-{name}"),
            labels: labels(&[("app", "web")]),
            ip: ip.parse().ok(),
            running: true,
            ready: true,
            terminating: false,
            host_network: false,
        }
    }

    /// One Service granting `alice` to the pods of `app=web`, and `n` such pods.
    fn cluster(n: usize) -> Cluster {
        let service = ServiceFacts {
            id: ObjectRef::new("a", "s"),
            uid: "uid-s".into(),
            selector: Some(labels(&[("app", "web")])),
            annotations: labels(&[
                (ANN_USER, "alice"),
                (ANN_DATABASE, "appdb"),
                (ANN_PRIVILEGES, "SELECT"),
                (ANN_PASSWORD_SECRET, "pw/password"),
            ]),
        };
        let secret = SecretFacts {
            id: ObjectRef::new("a", "pw"),
            data: BTreeMap::from([("password".to_string(), Password::new("s3cret"))]),
        };
        let pods = (1..=n).map(|i| pod(&format!("p{i}"), &format!("10.0.0.{i}")));
        Cluster {
            services: BTreeMap::from([(service.id.clone(), service)]),
            pods: pods.map(|p| (p.id.clone(), p)).collect(),
            secrets: BTreeMap::from([(secret.id.clone(), secret)]),
        }
    }

    struct Rig {
        cluster: Cluster,
        desired: IncrementalDesired,
        holders: HolderIndex,
        db: MemoryState,
        leading: bool,
    }

    impl Rig {
        fn new(pods: usize) -> Self {
            let cluster = cluster(pods);
            let mut desired =
                IncrementalDesired::new(Policy::default().with_tenancy(Tenancy::off()));
            desired.rebuild(&cluster);
            // As the engine starts a whole reconcile: the dirty set is what changes after.
            desired.take_dirty();
            Self {
                cluster,
                desired,
                holders: HolderIndex::default(),
                db: MemoryState::default(),
                leading: true,
            }
        }

        /// Runs `call` against the in-memory database, as the engine's store task would.
        fn serve(&mut self, call: &Call) -> Reply {
            match call {
                Call::Observe(wanted) => Reply::Observed(self.db.observe(wanted)),
                Call::ObserveKeys(keys) => Reply::Observed(self.db.observe_keys(keys)),
                Call::Apply(actions) => {
                    self.db.apply_all(actions).unwrap();
                    Reply::Applied(ApplyReport {
                        applied: actions.len(),
                        statements: 0,
                    })
                }
            }
        }

        fn step(&mut self, rec: &mut Reconcile, reply: Result<Reply, StoreError>) -> Step {
            let mut world = World {
                desired: &mut self.desired,
                holders: &mut self.holders,
                cluster: &self.cluster,
                tenancy: false,
                leading: self.leading,
            };
            rec.step(reply, &mut world)
        }

        /// Serves every call until the reconcile ends; the calls it made, and how it ended.
        fn drive(
            &mut self,
            rec: &mut Reconcile,
            first: Call,
        ) -> (Vec<&'static str>, Result<(), ReconcileError>) {
            let mut calls = Vec::new();
            let mut call = first;
            loop {
                calls.push(match call {
                    Call::Observe(_) => "observe",
                    Call::ObserveKeys(_) => "observe_keys",
                    Call::Apply(_) => "apply",
                });
                let reply = self.serve(&call);
                match self.step(rec, Ok(reply)).next {
                    Ok(Some(next)) => call = next,
                    Ok(None) => return (calls, Ok(())),
                    Err(e) => return (calls, Err(e)),
                }
            }
        }

        fn hosts(&self) -> Vec<String> {
            self.db
                .accounts
                .keys()
                .map(|k| k.host.to_string())
                .collect()
        }
    }

    fn ready_flip(rig: &mut Rig, name: &str, ready: bool) {
        let id = ObjectRef::new("a", name);
        let p = rig.cluster.pods.get_mut(&id).unwrap();
        let before = p.grantable_ip();
        p.ready = ready;
        let after = p.grantable_ip();
        let delta = Delta::Pods(vec![PodDelta { id, before, after }]);
        rig.desired.apply(&rig.cluster, &delta);
    }

    #[test]
    fn a_keyed_reconcile_observes_applies_and_stops_without_re_observing() {
        let mut rig = Rig::new(3);
        let (mut rec, call) = Reconcile::start(true, BTreeSet::new(), 4, &rig.desired).unwrap();
        assert!(matches!(call, Call::Observe(ref w) if w.len() == 3));
        assert_eq!(rig.drive(&mut rec, call).0, ["observe", "apply", "observe"]);

        ready_flip(&mut rig, "p2", false);
        let keys = rig.desired.take_dirty();
        assert_eq!(keys.len(), 1);
        let (mut rec, call) = Reconcile::start(false, keys, 4, &rig.desired).unwrap();
        let (calls, end) = rig.drive(&mut rec, call);
        assert!(end.is_ok());
        assert_eq!(
            calls,
            ["observe_keys", "apply"],
            "all applied: no re-observe"
        );
        assert_eq!(rig.hosts(), ["10.0.0.1", "10.0.0.3"]);
    }

    #[test]
    fn nothing_dirty_is_no_reconcile() {
        let rig = Rig::new(2);
        assert!(Reconcile::start(false, BTreeSet::new(), 4, &rig.desired).is_none());
    }

    #[test]
    fn a_change_while_the_observe_is_in_flight_waits_for_the_next_reconcile() {
        let mut rig = Rig::new(3);
        let (mut rec, call) = Reconcile::start(true, BTreeSet::new(), 4, &rig.desired).unwrap();
        rig.drive(&mut rec, call).1.unwrap();

        // p1 goes unready; while its observe is in flight, p3 goes unready and p1 comes back.
        ready_flip(&mut rig, "p1", false);
        let keys = rig.desired.take_dirty();
        let (mut rec, call) = Reconcile::start(false, keys, 4, &rig.desired).unwrap();
        let reply = rig.serve(&call);
        ready_flip(&mut rig, "p3", false);
        ready_flip(&mut rig, "p1", true);
        let step = rig.step(&mut rec, Ok(reply));
        // p1's desired value is back to what the store has; it changed since the observe, so it
        // is left alone rather than planned from an observation older than the change.
        assert!(matches!(step.next, Ok(None)), "{step:?}");
        assert_eq!(rig.hosts(), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        // Both wait, dirty, for the next reconcile, which converges them.
        let next = rig.desired.take_dirty();
        assert_eq!(next.len(), 2);
        let (mut rec, call) = Reconcile::start(false, next, 4, &rig.desired).unwrap();
        rig.drive(&mut rec, call).1.unwrap();
        assert_eq!(rig.hosts(), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn a_whole_plan_leaves_out_accounts_added_after_its_observe() {
        let mut rig = Rig::new(2);
        let (mut rec, call) = Reconcile::start(true, BTreeSet::new(), 4, &rig.desired).unwrap();
        let reply = rig.serve(&call);
        // A third pod became ready while the whole observe was in flight: not observed, so not
        // planned (it could be a foreign account this observe never looked for).
        let p3 = pod("p3", "10.0.0.3");
        let delta = Delta::Pods(vec![PodDelta {
            id: p3.id.clone(),
            before: None,
            after: p3.grantable_ip(),
        }]);
        rig.cluster.pods.insert(p3.id.clone(), p3);
        rig.desired.apply(&rig.cluster, &delta);
        let Ok(Some(Call::Apply(actions))) = rig.step(&mut rec, Ok(reply)).next else {
            panic!("expected an apply");
        };
        assert!(actions
            .iter()
            .all(|a| a.key().host.to_string() != "10.0.0.3"));
        assert!(rig.desired.is_dirty(&AccountKey {
            user: "alice".into(),
            host: "10.0.0.3".parse().unwrap(),
        }));
    }

    #[test]
    fn a_partial_apply_re_observes_until_the_rounds_run_out() {
        let mut rig = Rig::new(2);
        let (mut rec, call) = Reconcile::start(true, BTreeSet::new(), 2, &rig.desired).unwrap();
        let reply = rig.serve(&call);
        let Ok(Some(Call::Apply(actions))) = rig.step(&mut rec, Ok(reply)).next else {
            panic!("expected an apply");
        };
        // The store applied one action and returned.
        rig.db.apply_all(&actions[..1]).unwrap();
        let partial = Reply::Applied(ApplyReport {
            applied: 1,
            statements: 1,
        });
        let Ok(Some(call @ Call::Observe(_))) = rig.step(&mut rec, Ok(partial)).next else {
            panic!("expected a second round");
        };
        let reply = rig.serve(&call);
        let Ok(Some(Call::Apply(rest))) = rig.step(&mut rec, Ok(reply)).next else {
            panic!("expected an apply");
        };
        assert_eq!(rest.len(), actions.len() - 1);
        let stuck = Reply::Applied(ApplyReport {
            applied: 0,
            statements: 0,
        });
        let step = rig.step(&mut rec, Ok(stuck));
        assert!(
            matches!(step.next, Err(ReconcileError::NotConverged(n)) if n == rest.len()),
            "{step:?}"
        );
    }

    #[test]
    fn a_store_error_or_lost_leadership_ends_the_reconcile() {
        let mut rig = Rig::new(1);
        let (mut rec, _) = Reconcile::start(true, BTreeSet::new(), 4, &rig.desired).unwrap();
        let step = rig.step(&mut rec, Err(StoreError::Transient("gone".into())));
        assert!(matches!(step.next, Err(ReconcileError::Store(_))));

        let (mut rec, call) = Reconcile::start(true, BTreeSet::new(), 4, &rig.desired).unwrap();
        let reply = rig.serve(&call);
        rig.leading = false;
        let step = rig.step(&mut rec, Ok(reply));
        assert!(matches!(step.next, Err(ReconcileError::LostLeadership)));
        assert!(rig.db.accounts.is_empty(), "nothing applied");
    }
}
