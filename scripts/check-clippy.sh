#!/usr/bin/env bash
# Lint check: clippy on every crate and every target (tests, benches, bins), warnings are errors.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
say "clippy --workspace --all-targets, -D warnings (CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-<nix>})"
run cargo clippy --workspace --all-targets -- -D warnings
run cargo clippy -p podgrant-harness --features testcontainers --lib -- -D warnings
say "ok: clippy"
