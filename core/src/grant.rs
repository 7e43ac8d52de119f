//! Accounts and grants as plain data: desired state, observed state, and the actions between them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::model::{ObjectRef, Password};

/// A MySQL account: `'user'@'<pod IP>'`. The host is always a literal IP, never a pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountKey {
    pub user: String,
    pub host: IpAddr,
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'@'{}'", self.user, self.host)
    }
}

/// A privilege from the allowlist (validated; upper-case, e.g. `SELECT`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Privilege(pub String);

/// What a Service's annotations ask for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpec {
    pub user: String,
    pub database: String,
    pub privileges: BTreeSet<Privilege>,
    /// The Secret (same namespace as the Service) and the key holding the password.
    pub password_secret: ObjectRef,
    pub password_key: String,
}

/// One account the engine wants to exist, exactly as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredAccount {
    pub key: AccountKey,
    /// The Service this account is for.
    pub owner: ObjectRef,
    /// The pod whose IP this is (for logs and events).
    pub pod: ObjectRef,
    pub database: String,
    pub privileges: BTreeSet<Privilege>,
    pub password: Password,
    /// A one-way fingerprint of the password, stored in the ledger to notice a change.
    pub fingerprint: String,
}

/// The whole desired set, keyed by account.
pub type Desired = BTreeMap<AccountKey, DesiredAccount>;

/// An account podgrant owns, as recorded in its ledger and as found in MySQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedAccount {
    pub key: AccountKey,
    /// From the ledger: the Service it was created for.
    pub owner: ObjectRef,
    /// From the ledger: the password fingerprint last set.
    pub fingerprint: String,
    /// From MySQL: whether the account exists at all (a ledger row may precede the account).
    pub exists: bool,
    /// From MySQL: the database it has privileges on, and which (empty if none).
    pub grants: BTreeMap<String, BTreeSet<Privilege>>,
    /// From MySQL: the credential it stores, read in the same query as `exists`.
    pub credential: Credential,
}

/// The credential MySQL stores for an account, as far as podgrant can compare it with a
/// password. The hash is password-equivalent: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credential {
    /// Not comparable: a salted server-side form (`caching_sha2_password` on MySQL 8.4 without
    /// `mysql_native_password`), or a plugin seen before the store knew the server's form. Only
    /// the ledger fingerprint can tell a change.
    #[default]
    Unknown,
    /// A `mysql_native_password` hash, as stored (`*` + 40 upper-case hex digits).
    Native(String),
    /// Another plugin on a server that takes native hashes: changed by hand, never by podgrant.
    OtherPlugin,
}

impl Credential {
    /// Whether this credential is known to log in with `password` (`None`: can't tell).
    pub fn matches(&self, password: &Password) -> Option<bool> {
        match self {
            Credential::Unknown => None,
            Credential::Native(hash) => Some(hash.eq_ignore_ascii_case(password.native_hash())),
            Credential::OtherPlugin => Some(false),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Unknown => f.write_str("Unknown"),
            Credential::Native(_) => f.write_str("Native(<redacted>)"),
            Credential::OtherPlugin => f.write_str("OtherPlugin"),
        }
    }
}

/// Observed state: the ledger joined with what MySQL really has. Accounts not in the ledger
/// are not podgrant's and never appear here, except as [`Observed::foreign`] (to avoid clobbering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub owned: BTreeMap<AccountKey, ObservedAccount>,
    /// Accounts that exist in MySQL, that podgrant would want, but that it does not own.
    pub foreign: BTreeSet<AccountKey>,
}

/// One step for a [`crate::store::GrantStore`] to execute. Plain data; `Debug` never shows a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record ownership in the ledger — always before the account is created.
    Claim {
        key: AccountKey,
        owner: ObjectRef,
        fingerprint: String,
    },
    /// Create the account (idempotent) with this password.
    Create { key: AccountKey, password: Password },
    /// Set the password of an existing owned account, and record the new fingerprint.
    SetPassword {
        key: AccountKey,
        password: Password,
        fingerprint: String,
    },
    /// Grant privileges on a database.
    Grant {
        key: AccountKey,
        database: String,
        privileges: BTreeSet<Privilege>,
    },
    /// Revoke privileges on a database.
    Revoke {
        key: AccountKey,
        database: String,
        privileges: BTreeSet<Privilege>,
    },
    /// Drop the account (idempotent) and kill its open sessions.
    Drop { key: AccountKey },
    /// Remove the ledger row — only after the account is gone.
    Release { key: AccountKey },
}

impl Action {
    /// The account this action is about.
    pub fn key(&self) -> &AccountKey {
        match self {
            Action::Claim { key, .. }
            | Action::Create { key, .. }
            | Action::SetPassword { key, .. }
            | Action::Grant { key, .. }
            | Action::Revoke { key, .. }
            | Action::Drop { key }
            | Action::Release { key } => key,
        }
    }

    /// A short stable name, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Claim { .. } => "claim",
            Action::Create { .. } => "create",
            Action::SetPassword { .. } => "set_password",
            Action::Grant { .. } => "grant",
            Action::Revoke { .. } => "revoke",
            Action::Drop { .. } => "drop",
            Action::Release { .. } => "release",
        }
    }
}
