#!/usr/bin/env bash
# The test suite (the README's test command): every crate's unit and integration tests, against
# the real MariaDB, the real kubectl and `go tool pprof` where installed. Extra args go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/podgrant-target}
scripts/ensure-mariadb.sh
cargo test --workspace "$@"
