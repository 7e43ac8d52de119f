#!/usr/bin/env bash
# Offline evaluation of flake.nix with Debian's Nix (2.8), no network.
#
# What it does:
#   1. `nix-instantiate --parse` on flake.nix and on every stub flake.
#   2. Checks flake.lock: JSON lock version 7, the root node's inputs are exactly flake.nix's
#      inputs, and every input node is locked to a rev with a narHash.
#   3. `nix flake show` and `nix flake check --no-build` on a copy of the working tree, with
#      every input overridden (`--override-input X path:nix/stubs/X`) by the stub flakes in
#      nix/stubs/ (see nix/stubs/README.md). That evaluates every output for both systems:
#      packages, apps, checks, devShells, formatter, and instantiates their derivations.
#   4. Asserts the wiring: packages.default and every check except fmt are built on the ONE
#      dependency-artifacts derivation (packages.deps), fmt on none; each check runs the
#      scripts/check-*.sh it should, and those scripts survive the flake's source filter;
#      the devShell carries mariadb, kubectl, valgrind, go, cargo, clippy, rustfmt; the apps
#      point at podgrant-harness `reproduce busy-loop` and podgrant-sim.
#   5. crane is pinned to a release tag, and the checks' PODGRANT_REQUIRE is .ci/run's default
#      minus docker (no Docker daemon in a Nix build sandbox) and node (the npm client needs a
#      network the sandbox doesn't have).
#
# What it does NOT prove:
#   - that real nixpkgs (nixos-25.11) has these attribute names with the expected contents, or
#     that real crane accepts these arguments (the stubs mimic crane's API; they are not crane);
#   - that anything builds: no Rust is compiled in Nix here, no sandboxed mariadbd is started.
#     Those checks' *scripts* do run outside Nix on every CI run (.ci/run calls them);
#   - that flake.lock's narHashes match the pinned revisions (nothing can be fetched here).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NIX_FLAGS=(--extra-experimental-features 'nix-command flakes')
command -v nix >/dev/null || { say "FAIL: nix is not installed (apt-get install -y nix-bin)"; exit 1; }
say "using $(nix --version)"

say "1. parsing flake.nix and the stub flakes"
for f in flake.nix nix/stubs/*/flake.nix; do
  nix-instantiate --parse "$f" >/dev/null
  say "   parsed $f"
done

say "2. checking flake.lock against flake.nix's inputs"
nix "${NIX_FLAGS[@]}" eval --impure --raw --expr '
  let
    flake = import ./flake.nix;
    lock = builtins.fromJSON (builtins.readFile ./flake.lock);
    wanted = builtins.attrNames flake.inputs;
    rootInputs = builtins.attrNames lock.nodes.${lock.root}.inputs;
    nodeOk = n: let l = lock.nodes.${n}.locked or {}; in
      l ? rev && l ? narHash && l ? lastModified && builtins.stringLength l.rev == 40;
    inputNodes = builtins.filter (n: n != lock.root) (builtins.attrNames lock.nodes);
    bad = builtins.filter (n: !(nodeOk n)) inputNodes;
  in
    if lock.version != 7 then throw "flake.lock: version ${toString lock.version}, want 7"
    else if rootInputs != wanted then throw "flake.lock root inputs ${toString rootInputs} != flake.nix inputs ${toString wanted}"
    else if bad != [] then throw "flake.lock: not locked to a rev+narHash: ${toString bad}"
    else "flake.lock ok: ${toString inputNodes}\n"' >&2

# Evaluate a copy of the working tree (tracked and untracked-but-not-ignored files), so the
# check sees uncommitted edits and never copies build output or .git into the store.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e "$f" ]] || continue
  mkdir -p "$work/src/$(dirname "$f")"
  cp -p "$f" "$work/src/$f"
done
FLAKE="path:$work/src"
OVERRIDES=()
for input in nixpkgs crane flake-utils; do
  OVERRIDES+=(--override-input "$input" "path:$PODGRANT_ROOT/nix/stubs/$input")
done

say "3a. nix flake show (inputs overridden by nix/stubs/*)"
nix "${NIX_FLAGS[@]}" flake show --no-write-lock-file "${OVERRIDES[@]}" "$FLAKE"

say "3b. nix flake check --no-build (inputs overridden by nix/stubs/*)"
nix "${NIX_FLAGS[@]}" flake check --no-build --no-write-lock-file "${OVERRIDES[@]}" "$FLAKE"

say "4. asserting the outputs' wiring (nix/check-wiring.nix)"
# `nix eval` needs one attribute; a throwaway flake exposes the whole evaluated flake to it.
mkdir -p "$work/wiring"
cp nix/check-wiring.nix "$work/wiring/check-wiring.nix"
cat >"$work/wiring/flake.nix" <<NIX
{
  inputs.podgrant.url = "$FLAKE";
  outputs = { self, podgrant }: { wiring = import ./check-wiring.nix podgrant; };
}
NIX
NESTED=()
for input in nixpkgs crane flake-utils; do
  NESTED+=(--override-input "podgrant/$input" "path:$PODGRANT_ROOT/nix/stubs/$input")
done
nix "${NIX_FLAGS[@]}" eval --no-write-lock-file "${NESTED[@]}" --raw "path:$work/wiring#wiring" 2>&1 |
  grep -v -e '^warning: not writing' -e '^•' -e "^    '" -e '^  → ' >&2

say "5. crane pinned to a release tag; the checks' PODGRANT_REQUIRE = .ci/run's, minus docker and node"
crane_url="$(sed -n 's/^ *crane\.url = "\(.*\)";.*/\1/p' flake.nix)"
[[ "$crane_url" =~ ^github:ipetkov/crane/v[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  { say "FAIL: crane.url = ${crane_url:-(none)}: pin a release tag (github:ipetkov/crane/vX.Y.Z)"; exit 1; }
# flake.lock must be locked to that tag, not to a branch head from before the pin.
lock_ref="$(python3 -c 'import json,sys; print(json.load(open("flake.lock"))["nodes"]["crane"]["original"].get("ref", ""))')"
[[ "github:ipetkov/crane/$lock_ref" == "$crane_url" ]] ||
  { say "FAIL: flake.lock locks crane ref '${lock_ref:-(none)}', flake.nix pins $crane_url: run nix flake lock --update-input crane"; exit 1; }
ci_require="$(sed -n 's/^export PODGRANT_REQUIRE=\${PODGRANT_REQUIRE:-\(.*\)}$/\1/p' .ci/run)"
flake_require="$(sed -n 's/^ *PODGRANT_REQUIRE = "\(.*\)";.*/\1/p' flake.nix)"
# A Nix build sandbox has no Docker daemon: everything else CI requires, the checks require too.
want_require="$(tr ',' '\n' <<<"$ci_require" | grep -vx -e docker -e node | paste -sd, -)"
[[ -n "$ci_require" && "$flake_require" == "$want_require" ]] ||
  { say "FAIL: flake PODGRANT_REQUIRE=${flake_require:-(none)}, .ci/run's (minus docker and node) is ${want_require:-(none)}"; exit 1; }
say "   crane.url = $crane_url (flake.lock: ref $lock_ref); PODGRANT_REQUIRE: .ci/run $ci_require, flake $flake_require"

say "ok: flake evaluated offline against nix/stubs (structure and wiring only; nothing built)"
