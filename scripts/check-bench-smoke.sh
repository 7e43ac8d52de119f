#!/usr/bin/env bash
# Bench smoke: every criterion bench runs each of its functions once (`-- --test`), so a bench
# that panics or no longer compiles fails CI. Measures nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
say "running every bench once (cargo bench --workspace -- --test)"
run cargo bench --workspace "$@" -- --test
say "ok: bench smoke"
