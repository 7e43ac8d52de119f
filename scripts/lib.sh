# shellcheck shell=bash
# Shared prologue for scripts/check-*.sh: strict mode, target dir, and a logger.
# Sourced, not executed.
set -euo pipefail

# Inside a Nix build (crane sets CARGO_TARGET_DIR itself, and $HOME is /homeless-shelter)
# keep whatever the builder chose; outside Nix use the team's shared, warm cache.
if [[ -z "${NIX_BUILD_TOP:-}" ]]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/podgrant-target}"
fi

# Repo root = parent of this script's directory, whatever the caller's cwd.
PODGRANT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$PODGRANT_ROOT"

say() { printf '==> [%s] %s\n' "$(basename "$0")" "$*" >&2; }
run() { say "+ $*"; "$@"; }
