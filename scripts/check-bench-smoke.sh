#!/usr/bin/env bash
# Bench smoke: every criterion bench runs each of its functions once (`-- --test`), so a bench
# that panics or no longer compiles fails CI. Measures nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
say "running every bench once (cargo bench --workspace -- --test)"
run cargo bench --workspace "$@" -- --test
say "the MySQL apply bench leaves nothing on the server (its bench profile is built now)"
run cargo test -p podgrant-benches --test mysql_apply_cleanup -- --ignored
say "ok: bench smoke"
