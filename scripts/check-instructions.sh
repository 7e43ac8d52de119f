#!/usr/bin/env bash
# CPU gate: the gungraun instruction-count benches (benches/benches/instructions.rs: planner
# one event and full diff, pod event decode, the watch guard's decision, the sim's encode path)
# against the limits committed in benches/instruction-limits.json. Over a limit fails, with the
# bench's callgrind profile as profile.pb.gz (`go tool pprof -top`) and flamegraph.svg in the
# artifacts folder it prints. Instruction counts do not move with a busy machine, so this gates
# every change. `--update` rewrites the limits from this run instead (then commit the file).
# Needs valgrind and gungraun-runner 0.20.0 (installed here when missing).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GUNGRAUN_VERSION=0.20.0
ARTIFACTS="${PODGRANT_INSTRUCTION_ARTIFACTS:-$CARGO_TARGET_DIR/instruction-gate}"

if ! command -v valgrind >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing valgrind"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  else
    say "valgrind is not installed (and cannot be installed here)"; exit 1
  fi
fi
if ! gungraun-runner --version 2>/dev/null | grep -qF "$GUNGRAUN_VERSION"; then
  say "installing gungraun-runner $GUNGRAUN_VERSION (once; the library and runner versions must match)"
  run cargo install gungraun-runner --version "$GUNGRAUN_VERSION" --locked
fi

# a bench renamed or removed must not pass on last run's summary
run rm -rf "$CARGO_TARGET_DIR/gungraun/podgrant-benches/instructions"
say "instruction counts under callgrind (a few minutes: ~50x slower than native)"
GUNGRAUN_SAVE_SUMMARY=json run cargo bench -p podgrant-benches --features gungraun --bench instructions
say "checking them against benches/instruction-limits.json (artifacts: $ARTIFACTS)"
run cargo run -q -p podgrant-benches --bin podgrant-instruction-gate -- \
  --limits benches/instruction-limits.json \
  --gungraun-dir "$CARGO_TARGET_DIR/gungraun" \
  --out "$ARTIFACTS" "$@"
say "ok: CPU gate"
