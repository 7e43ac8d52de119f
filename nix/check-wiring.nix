# Used by scripts/check-nix.sh: `nix eval .#. --apply 'import nix/check-wiring.nix'` with the
# inputs overridden by nix/stubs/*. Throws naming the first broken piece of wiring, else returns
# a one-line summary. Relies on the stub crane's passthru (kind, artifacts, command).
self:
let
  systems = builtins.attrNames self.packages;
  has = s: re: builtins.match ".*${re}.*" s != null;
  names = drvs: map (d: d.pname or d.name) drvs;
  perSystem =
    system:
    let
      p = self.packages.${system};
      c = self.checks.${system};
      a = self.apps.${system};
      shell = self.devShells.${system}.default;
      deps = "${p.deps}";
      need = cond: msg: if cond then true else throw "${system}: ${msg}";
      reusesDeps = n: need (c.${n}.passthru.artifacts == deps) "checks.${n} does not reuse packages.deps";
      runs =
        n: script:
        need (c.${n}.passthru.command == "bash scripts/${script}") "checks.${n} does not run scripts/${script}";
    in
    need (p.deps.passthru.kind == "deps") "packages.deps is not crane's buildDepsOnly"
    && need (p.default.passthru.kind == "package") "packages.default is not crane's buildPackage"
    && need (p.default.passthru.artifacts == deps) "packages.default does not reuse packages.deps"
    && need (has p.default.stubCargoExtraArgs "-p podgrant-core -p podgrant-harness -p podgrant-sim")
      "packages.default does not build the crates of podgrant, podgrant-harness and podgrant-sim"
    && builtins.all reusesDeps [ "build" "clippy" "test" "scenarios" "bench-smoke" ]
    && need (c.fmt.passthru.artifacts == "none") "checks.fmt should need no dependency artifacts"
    && runs "clippy" "check-clippy.sh"
    && runs "fmt" "check-fmt.sh"
    && runs "test" "check-test.sh"
    && runs "scenarios" "check-scenarios.sh"
    && runs "bench-smoke" "check-bench-smoke.sh"
    && need (builtins.elem "mariadb" (names c.test.nativeBuildInputs)) "checks.test has no mariadb on PATH"
    && need (builtins.elem "mariadb" (names c.scenarios.nativeBuildInputs)) "checks.scenarios has no mariadb on PATH"
    && builtins.all (n: need (builtins.elem n (names shell.nativeBuildInputs)) "devShells.default lacks ${n}") [
      "cargo"
      "clippy"
      "rustfmt"
      "mariadb"
      "kubectl"
      "valgrind"
      "go"
    ]
    && need (a.sim.type == "app" && has a.sim.program "-package/bin/podgrant-sim$") "apps.sim does not run podgrant-sim"
    && need (has a.reproduce-busy-loop.program "/bin/podgrant-reproduce-busy-loop$")
      "apps.reproduce-busy-loop does not run its wrapper"
    && need (a.default.type == "app" && has a.default.program "-package/bin/podgrant$") "apps.default does not run podgrant";
in
if builtins.all perSystem systems then
  "wiring ok for ${toString systems}: one deps derivation reused by the package and every check but fmt; checks run scripts/check-*.sh\n"
else
  throw "unreachable"
