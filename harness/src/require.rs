//! `PODGRANT_REQUIRE`: the real components a run must have; a missing required one fails the test instead of skipping it.
//!
//! The contract every test that can skip follows, in every crate (`core` and `sim` include this
//! file by path — `#[path = "../../harness/src/require.rs"]` — because they must not depend on
//! the harness; it uses `std` only):
//!
//! - `PODGRANT_REQUIRE` is a comma-separated list of components: `mysql`, `kubectl`, `go`,
//!   `python`, `docker` (case-insensitive, blanks ignored; empty or unset: nothing required). An
//!   unknown name is an error, never ignored: a typo must not turn a requirement off.
//! - A test that finds a component missing asks [`decide`]: not required → [`Verdict::Skip`]
//!   (printed loudly as `SKIPPED`), required → [`Verdict::Fail`] (the test fails with the reason).
//!   [`skip_or_fail`] does both for a test body.
//! - `.ci/run` and the flake's checks set it, so CI never goes green by skipping.

use std::fmt;

/// The environment variable.
pub const REQUIRE_ENV: &str = "PODGRANT_REQUIRE";

/// A real component a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Mysql,
    Kubectl,
    Go,
    Python,
    Docker,
    /// Node.js with `@kubernetes/client-node` (`PODGRANT_NODE_CLIENT`, `.ci/run` installs it).
    Node,
}

impl Component {
    /// Every component, in the order the list documents them.
    pub const ALL: [Component; 6] = [
        Component::Mysql,
        Component::Kubectl,
        Component::Go,
        Component::Python,
        Component::Docker,
        Component::Node,
    ];

    /// The name used in `PODGRANT_REQUIRE`.
    pub fn name(self) -> &'static str {
        match self {
            Component::Mysql => "mysql",
            Component::Kubectl => "kubectl",
            Component::Go => "go",
            Component::Python => "python",
            Component::Docker => "docker",
            Component::Node => "node",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `PODGRANT_REQUIRE` value that names something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequireError {
    pub unknown: String,
}

impl fmt::Display for RequireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{REQUIRE_ENV}: unknown component {:?} (expected a comma-separated list of mysql, kubectl, go, python, docker, node)",
            self.unknown
        )
    }
}

impl std::error::Error for RequireError {}

/// The set of required components.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Required(Vec<Component>);

impl Required {
    /// Nothing required.
    pub fn none() -> Required {
        Required(Vec::new())
    }

    /// Parses a `PODGRANT_REQUIRE` value.
    pub fn parse(value: &str) -> Result<Required, RequireError> {
        let mut out = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let c = Component::ALL
                .into_iter()
                .find(|c| c.name().eq_ignore_ascii_case(part))
                .ok_or_else(|| RequireError {
                    unknown: part.to_string(),
                })?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(Required(out))
    }

    /// Reads [`REQUIRE_ENV`] (unset: nothing required).
    pub fn from_env() -> Result<Required, RequireError> {
        match std::env::var(REQUIRE_ENV) {
            Ok(v) => Required::parse(&v),
            Err(_) => Ok(Required::none()),
        }
    }

    pub fn contains(&self, c: Component) -> bool {
        self.0.contains(&c)
    }
}

/// What a test does about a missing component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not required: skip, loudly.
    Skip(String),
    /// Required: fail with this message.
    Fail(String),
}

/// Pure: the verdict for `component` missing because of `reason`, given what is required.
pub fn decide(component: Component, reason: &str, required: &Required) -> Verdict {
    if required.contains(component) {
        Verdict::Fail(format!(
            "{component} is required ({REQUIRE_ENV} contains {component}) but missing: {reason}"
        ))
    } else {
        Verdict::Skip(format!(
            "{component} missing: {reason} (set {REQUIRE_ENV}={component} to make this a failure)"
        ))
    }
}

/// For a test body: prints a loud `SKIPPED` line when `component` is not required, panics (the
/// test fails) when it is, or when `PODGRANT_REQUIRE` itself is malformed. Returns only to skip.
pub fn skip_or_fail(component: Component, test: &str, reason: &str) {
    let required = Required::from_env().unwrap_or_else(|e| panic!("[{test}] {e}"));
    match decide(component, reason, &required) {
        Verdict::Skip(msg) => eprintln!("\n*** [{test}] SKIPPED: {msg} ***\n"),
        Verdict::Fail(msg) => panic!("[{test}] {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_component_and_rejects_unknown_ones() {
        let r = Required::parse(" MySQL, kubectl,,go ,python,docker,node,mysql").expect("parses");
        for c in Component::ALL {
            assert!(r.contains(c), "{c}");
        }
        assert_eq!(Required::parse("").expect("empty"), Required::none());
        let e = Required::parse("mysql,kubctl").expect_err("typo");
        assert_eq!(e.unknown, "kubctl");
        assert!(e.to_string().contains("kubctl"), "{e}");
    }

    #[test]
    fn a_missing_component_fails_only_when_required() {
        let table = [
            ("", Component::Mysql, false),
            ("kubectl,go", Component::Mysql, false),
            ("mysql", Component::Mysql, true),
            ("mysql,kubectl,go", Component::Kubectl, true),
            ("mysql,kubectl,go", Component::Go, true),
            ("mysql,kubectl,go", Component::Python, false),
        ];
        for (env, c, fails) in table {
            let v = decide(c, "not found", &Required::parse(env).expect("parses"));
            assert_eq!(matches!(v, Verdict::Fail(_)), fails, "{env:?} {c}: {v:?}");
        }
    }
}
