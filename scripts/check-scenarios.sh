#!/usr/bin/env bash
# The harness's scenario suite: the JSON scenarios and the bounded proptest run, in-process
# under tokio's paused clock (see harness/tests/).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if compgen -G "harness/tests/scenarios*.rs" >/dev/null || [[ -d harness/tests/scenarios ]]; then
  say "running the harness scenario suite"
  run cargo test -p podgrant-harness --test scenarios "$@"
  say "ok: scenarios"
else
  say "SKIPPED: harness/tests/scenarios.rs does not exist yet; no scenario suite to run"
fi
