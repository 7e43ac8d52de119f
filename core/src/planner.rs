//! The grant planner: a pure function from desired and observed state to actions. No I/O, no clock.

use crate::grant::{Action, Desired, Observed};

/// Plans the actions that take `observed` to `desired`.
///
/// Contract: never an action for an account that is neither desired-and-unowned-by-others
/// nor in the ledger; a `Claim` precedes every `Create`; a `Drop` precedes every `Release`;
/// `plan(d, apply(plan(d, o), o))` is empty (idempotence).
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Action> {
    let _ = (desired, observed);
    todo!("planner")
}
