#!/usr/bin/env bash
# The whole test suite: `cargo nextest run --workspace` (each test in its own process, each
# bounded by .config/nextest.toml's slow-timeout) plus the doc-tests (`cargo test --doc`);
# without cargo-nextest, `cargo test --workspace` under an overall `timeout`.
#
# MySQL (harness/src/mysql.rs picks the provider; every test prints which one it used):
# - PODGRANT_TEST_MYSQL=spawn (what the Nix checks set; inside a Nix build sandbox it is the
#   default — no server, no network there): ONE private mariadbd for the whole run, started by
#   the podgrant-test-mysql helper (harness/src/bin) with TCP on a free 127.0.0.1 port, exported
#   as MYSQL_URL (+ PODGRANT_SPAWNED_MYSQL) to every crate's tests — core's included — and
#   stopped when this script exits.
# - docker / skip / url / local: left to the provider.
# - otherwise: scripts/ensure-mariadb.sh makes sure a MariaDB answers on 127.0.0.1:3306
#   (starting the machine's mariadbd if it is installed but down).
# A test with no server skips loudly — unless PODGRANT_REQUIRE names mysql (.ci/run and the
# flake set it): then it fails (harness/src/require.rs).
#
# Arguments go to nextest. With -p/--package they replace --workspace (and the doc-tests are
# not run): `scripts/check-test.sh -p podgrant-core --test mysql_store`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${NIX_BUILD_TOP:-}" ]]; then
  export PODGRANT_TEST_MYSQL="${PODGRANT_TEST_MYSQL:-spawn}"
  say "MySQL: inside a Nix sandbox; PODGRANT_TEST_MYSQL=$PODGRANT_TEST_MYSQL ($(command -v mariadbd || echo 'no mariadbd on PATH'))"
fi

# Starts the run's one private mariadbd and exports what the helper wrote (MYSQL_URL, ...).
start_private_mariadbd() {
  local exe envfile deadline
  exe="$(cargo build --quiet -p podgrant-harness --bin podgrant-test-mysql --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*podgrant-test-mysql\)".*/\1/p' | tail -n 1)"
  [[ -x "$exe" ]] || { say "FAIL: could not build podgrant-test-mysql"; exit 1; }
  envfile="$(mktemp -d)/mysql.env"
  "$exe" --env-file "$envfile" &
  MYSQL_HELPER_PID=$!
  trap 'kill -TERM "$MYSQL_HELPER_PID" 2>/dev/null || true; wait "$MYSQL_HELPER_PID" 2>/dev/null || true' EXIT
  deadline=$((SECONDS + 90))
  until [[ -s "$envfile" ]]; do
    kill -0 "$MYSQL_HELPER_PID" 2>/dev/null || { say "FAIL: podgrant-test-mysql exited before its server answered"; exit 1; }
    ((SECONDS < deadline)) || { say "FAIL: no private mariadbd within 90 s"; exit 1; }
    sleep 0.2
  done
  set -a
  # shellcheck disable=SC1090
  source "$envfile"
  set +a
  say "MySQL: one private $PODGRANT_SPAWNED_MYSQL for the whole run at $MYSQL_URL (helper pid $MYSQL_HELPER_PID)"
}

case "${PODGRANT_TEST_MYSQL:-}" in
  spawn) start_private_mariadbd ;;
  url | local | docker | skip) say "MySQL: PODGRANT_TEST_MYSQL=$PODGRANT_TEST_MYSQL, left to the provider" ;;
  *) run bash scripts/ensure-mariadb.sh ;;
esac

scope=(--workspace)
for arg in "$@"; do
  case "$arg" in -p | --package | -p* | --package=*) scope=() ;; esac
done

say "PODGRANT_REQUIRE=${PODGRANT_REQUIRE:-} (these components missing = test failures, not skips)"
if cargo nextest --version >/dev/null 2>&1; then
  say "running cargo nextest run ${scope[*]:-} (per-test bound: .config/nextest.toml)"
  run cargo nextest run "${scope[@]}" "$@"
  if [[ ${#scope[@]} -gt 0 ]]; then run cargo test --workspace --doc; else say "packages named: doc-tests not run"; fi
  # The docker provider a second way: the same image through testcontainers (issue 13). Not in
  # a Nix sandbox, which has no Docker daemon (the flake's PODGRANT_REQUIRE leaves docker out).
  if [[ ${#scope[@]} -gt 0 && -z "${NIX_BUILD_TOP:-}" ]]; then
    run cargo nextest run -p podgrant-harness --features testcontainers --test mysql_docker
  fi
else
  say "cargo-nextest not found: cargo test --workspace, bounded to 45 min in all"
  run timeout --signal=TERM --kill-after=30s 45m cargo test "${scope[@]}" "$@"
fi
say "ok: tests"
