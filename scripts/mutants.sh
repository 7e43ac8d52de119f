#!/usr/bin/env bash
# Mutation testing of core's decision functions with cargo-mutants (issue 8; docs/mutants.md).
# NOT run in CI: a group takes 30-60 minutes on a shared 2-core machine. Scope and test
# selection live in .cargo/mutants.toml; this picks the file group and where output goes.
#
#   scripts/mutants.sh pure       rate.rs watch.rs backoff.rs index.rs   (core lib tests)
#   scripts/mutants.sh validate   validate.rs                            (core lib tests)
#   scripts/mutants.sh sql        sql.rs                                 (core lib tests)
#   scripts/mutants.sh decide     planner.rs desired.rs                  (lib, planner_props, mysql_store; MariaDB)
#   scripts/mutants.sh full       sql.rs planner.rs desired.rs           (all core tests; MariaDB)
#
# Output: $MUTANTS_OUT/<group>/mutants.out (default target/mutants). Needs `cargo install
# cargo-mutants --locked` (27.1.0 was used). Extra arguments go to cargo mutants (e.g. --list).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

group="${1:?usage: scripts/mutants.sh pure|validate|sql|decide|full [cargo-mutants args...]}"
shift
out="${MUTANTS_OUT:-$CARGO_TARGET_DIR/mutants}/$group"
mkdir -p "$out" "$CARGO_TARGET_DIR/mutants-tmp"
# cargo-mutants copies the tree into $TMPDIR; keep that copy off a small /tmp.
export TMPDIR="${TMPDIR_MUTANTS:-$CARGO_TARGET_DIR/mutants-tmp}"

case "$group" in
  # No file under core/tests/ calls these modules: the lib tests are all the tests they have.
  pure) run cargo mutants -j1 --cargo-arg=--lib -F '^core/src/(rate|watch|backoff|index)\.rs:' -o "$out" "$@" ;;
  validate) run cargo mutants -j1 --cargo-arg=--lib -F '^core/src/validate\.rs:' -o "$out" "$@" ;;
  # sql.rs alone with the lib tests only (~15 s a mutant instead of ~45 s): its own tests and
  # the store's pin the SQL text; `full` adds the MariaDB-backed integration tests.
  sql) run cargo mutants -j1 --cargo-arg=--lib -F '^core/src/sql\.rs:' -o "$out" "$@" ;;
  # The tests that reach planner and desired: the lib's, the planner properties and the MariaDB
  # store's (cli.rs runs the binary's flags only).
  decide) run cargo mutants -j1 --cargo-arg=--lib --cargo-arg=--test=planner_props \
    --cargo-arg=--test=mysql_store -F '^core/src/(planner|desired)\.rs:' -o "$out" "$@" ;;
  full) run cargo mutants -j1 -F '^core/src/(sql|planner|desired)\.rs:' -o "$out" "$@" ;;
  *) say "unknown group $group"; exit 2 ;;
esac
