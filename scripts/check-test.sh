#!/usr/bin/env bash
# The whole test suite: `cargo nextest run --workspace` (each test in its own process, each
# bounded by .config/nextest.toml's slow-timeout) plus the doc-tests (`cargo test --doc`);
# without cargo-nextest, `cargo test --workspace` under an overall `timeout`.
#
# MySQL: outside Nix, scripts/ensure-mariadb.sh makes sure a MariaDB answers on
# 127.0.0.1:3306 (starting the machine's mariadbd if it is installed but down). Inside a Nix
# build sandbox there is no such server and no network: PODGRANT_TEST_MYSQL=spawn tells the
# harness to start its own mariadbd (from nixpkgs, on PATH) in a temp datadir on a unix
# socket. Either way the tests themselves print which provider they used, and skip loudly
# when there is none — unless PODGRANT_REQUIRE names it (.ci/run and the flake set
# mysql,kubectl,go): then a missing component fails the test (harness/src/require.rs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${NIX_BUILD_TOP:-}" ]]; then
  export PODGRANT_TEST_MYSQL="${PODGRANT_TEST_MYSQL:-spawn}"
  say "MySQL: inside a Nix sandbox; PODGRANT_TEST_MYSQL=$PODGRANT_TEST_MYSQL ($(command -v mariadbd || echo 'no mariadbd on PATH'))"
else
  run bash scripts/ensure-mariadb.sh
fi

say "PODGRANT_REQUIRE=${PODGRANT_REQUIRE:-} (these components missing = test failures, not skips)"
if cargo nextest --version >/dev/null 2>&1; then
  say "running cargo nextest run --workspace (per-test bound: .config/nextest.toml)"
  run cargo nextest run --workspace "$@"
  run cargo test --workspace --doc
else
  say "cargo-nextest not found: cargo test --workspace, bounded to 45 min in all"
  run timeout --signal=TERM --kill-after=30s 45m cargo test --workspace "$@"
fi
say "ok: tests"
