#!/usr/bin/env bash
# Formatting check: fails if any crate in the workspace is not rustfmt-clean.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
say "checking formatting of the whole workspace"
run cargo fmt --all -- --check
say "ok: formatting"
